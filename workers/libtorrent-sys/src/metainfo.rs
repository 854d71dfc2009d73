//! Session-less metadata work: validating `.torrent` bytes and magnet links,
//! and creating `.torrent` files (for test fixtures and benchmarks).

use std::path::Path;

use crate::error::Error;
use crate::ffi::bridge;
use crate::session::check_size;
use crate::types::{MagnetInfo, TorrentId, TorrentInfo};
use crate::{MAX_MAGNET_BYTES, MAX_TORRENT_BYTES};

/// Parses and validates `.torrent` bytes without a session. Refuses more
/// than [`MAX_TORRENT_BYTES`]; libtorrent parses with bounded limits
/// (buffer size, piece count, bencode depth 100, 3,000,000 tokens).
pub fn parse_torrent(bytes: &[u8]) -> Result<TorrentInfo, Error> {
    check_size("torrent file", bytes.len(), MAX_TORRENT_BYTES)?;
    let info = bridge::parse_torrent(bytes).map_err(|e| Error::from_cxx(&e, None))?;
    TorrentInfo::from_ffi(info)
        .ok_or_else(|| Error::InvalidTorrent("no metadata in torrent file".to_owned()))
}

/// Parses a magnet link (`magnet:?xt=urn:btih:…` or `urn:btmh:…`). Refuses
/// more than [`MAX_MAGNET_BYTES`].
pub fn parse_magnet(uri: &str) -> Result<MagnetInfo, Error> {
    check_size("magnet link", uri.len(), MAX_MAGNET_BYTES)?;
    if !uri
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("magnet:"))
    {
        return Err(Error::InvalidMagnet("not a magnet: URI".to_owned()));
    }
    let magnet = bridge::parse_magnet(uri).map_err(|e| Error::from_cxx(&e, None))?;
    Ok(MagnetInfo {
        id: TorrentId::from_ffi(&magnet.id),
        name: magnet.has_name.then_some(magnet.name),
        trackers: magnet.trackers,
    })
}

/// Which BitTorrent metadata versions a created torrent carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TorrentFormat {
    /// v1 and v2 (libtorrent 2.0's default; adds padding files).
    #[default]
    Hybrid,
    /// v1 only (what older clients understand).
    V1Only,
    /// v2 only (the torrent id is the truncated v2 hash).
    V2Only,
}

/// Options of [`create_torrent_with`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateTorrentOptions {
    /// Bytes per piece: 0 lets libtorrent choose, otherwise a power of two
    /// of at least 16 KiB.
    pub piece_size: i32,
    /// Announce URLs, one tier each, in order.
    pub trackers: Vec<String>,
    pub format: TorrentFormat,
    /// `created by`; empty = `Revaer <version>`.
    pub creator: String,
    pub comment: String,
}

/// Creates a `.torrent` for a file or a directory, hashing its content
/// (`lt::create_torrent` + `set_piece_hashes`). Hybrid v1+v2 unless
/// `v1_only`.
pub fn create_torrent(
    content: &Path,
    piece_size: i32,
    trackers: &[String],
    v1_only: bool,
) -> Result<Vec<u8>, Error> {
    create_torrent_with(
        content,
        &CreateTorrentOptions {
            piece_size,
            trackers: trackers.to_vec(),
            format: if v1_only {
                TorrentFormat::V1Only
            } else {
                TorrentFormat::Hybrid
            },
            ..CreateTorrentOptions::default()
        },
    )
}

/// [`create_torrent`] with every option.
pub fn create_torrent_with(
    content: &Path,
    options: &CreateTorrentOptions,
) -> Result<Vec<u8>, Error> {
    let piece_size = options.piece_size;
    if piece_size != 0 && (piece_size < 16 * 1024 || piece_size.count_ones() != 1) {
        return Err(Error::InvalidArgument(format!(
            "piece size {piece_size} is not 0 or a power of two >= 16 KiB"
        )));
    }
    let content = content.canonicalize().map_err(|err| {
        Error::InvalidArgument(format!("cannot use {}: {err}", content.display()))
    })?;
    let parent = content.parent().ok_or_else(|| {
        Error::InvalidArgument(format!("{} has no parent directory", content.display()))
    })?;
    let utf8 = |path: &Path| {
        path.to_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::InvalidArgument(format!("path is not UTF-8: {}", path.display())))
    };
    let creator = if options.creator.is_empty() {
        concat!("Revaer ", env!("CARGO_PKG_VERSION")).to_owned()
    } else {
        options.creator.clone()
    };
    let ffi_options = bridge::FfiCreateOptions {
        content: utf8(&content)?,
        parent: utf8(parent)?,
        piece_size,
        trackers: options.trackers.clone(),
        format: match options.format {
            TorrentFormat::Hybrid => 0,
            TorrentFormat::V1Only => 1,
            TorrentFormat::V2Only => 2,
        },
        creator,
        comment: options.comment.clone(),
    };
    bridge::create_torrent(&ffi_options).map_err(|e| Error::from_cxx(&e, None))
}
