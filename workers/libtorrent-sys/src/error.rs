//! The crate's error type, and the decoding of the C++ side's encoded
//! exceptions (`cpp/bridge.cpp`, `fail()`) into it.

use crate::types::TorrentId;

/// Everything that can go wrong in the bridge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An unexpected C++ exception (including out-of-memory), caught at the
    /// bridge boundary. The message names the bridge entry point.
    #[error("C++ exception in libtorrent bridge: {0}")]
    Cxx(String),
    /// The bytes are not a valid `.torrent` file (or exceed parser limits).
    #[error("invalid torrent file: {0}")]
    InvalidTorrent(String),
    /// The string is not a usable magnet link.
    #[error("invalid magnet link: {0}")]
    InvalidMagnet(String),
    /// The bytes are not valid libtorrent resume data.
    #[error("invalid resume data: {0}")]
    InvalidResumeData(String),
    /// An argument was refused before reaching libtorrent (or by it).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No torrent with this id is in the session.
    #[error("torrent {0} not found")]
    NotFound(TorrentId),
    /// The torrent is already in the session.
    #[error("torrent {0} is already in the session")]
    AlreadyExists(TorrentId),
    /// An input is larger than the bridge accepts.
    #[error("{what} is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// libtorrent reported an `error_code`.
    #[error("libtorrent error ({category}): {message}")]
    Libtorrent { category: String, message: String },
}

impl Error {
    /// Decodes an exception from the bridge. `id` is the torrent the call was
    /// about, if any; it names a `NotFound` error.
    pub(crate) fn from_cxx(exception: &cxx::Exception, id: Option<&TorrentId>) -> Self {
        decode(exception.what(), id)
    }
}

/// Decodes `"<kind>\x1f<category>\x1f<message>"`; anything else is `Cxx`.
fn decode(what: &str, id: Option<&TorrentId>) -> Error {
    let mut parts = what.splitn(3, '\u{1f}');
    let (Some(kind), Some(category), Some(message)) = (parts.next(), parts.next(), parts.next())
    else {
        return Error::Cxx(what.to_owned());
    };
    let described = || {
        if category.is_empty() {
            message.to_owned()
        } else {
            format!("{message} ({category})")
        }
    };
    match kind {
        "not_found" => match id.copied().or_else(|| message.parse().ok()) {
            Some(id) => Error::NotFound(id),
            None => Error::Libtorrent {
                category: category.to_owned(),
                message: message.to_owned(),
            },
        },
        "duplicate" => match message.parse().ok().or_else(|| id.copied()) {
            Some(id) => Error::AlreadyExists(id),
            None => Error::Libtorrent {
                category: category.to_owned(),
                message: message.to_owned(),
            },
        },
        "invalid_torrent" => Error::InvalidTorrent(described()),
        "invalid_magnet" => Error::InvalidMagnet(described()),
        "invalid_resume" => Error::InvalidResumeData(described()),
        "invalid_argument" => Error::InvalidArgument(described()),
        "libtorrent" => Error::Libtorrent {
            category: category.to_owned(),
            message: message.to_owned(),
        },
        _ => Error::Cxx(message.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_kind() {
        let id: TorrentId = "0123456789abcdef0123456789abcdef01234567".parse().unwrap();
        assert_eq!(
            decode("not_found\u{1f}\u{1f}whatever", Some(&id)),
            Error::NotFound(id)
        );
        assert_eq!(
            decode(&format!("duplicate\u{1f}libtorrent\u{1f}{id}"), None),
            Error::AlreadyExists(id)
        );
        assert_eq!(
            decode("libtorrent\u{1f}system\u{1f}boom", None),
            Error::Libtorrent {
                category: "system".into(),
                message: "boom".into()
            }
        );
        assert_eq!(
            decode("invalid_torrent\u{1f}bdecode\u{1f}bad", None),
            Error::InvalidTorrent("bad (bdecode)".into())
        );
        assert_eq!(
            decode("cxx\u{1f}\u{1f}op: oops", None),
            Error::Cxx("op: oops".into())
        );
        assert_eq!(decode("plain text", None), Error::Cxx("plain text".into()));
    }
}
