//! API keys as a type that never shows itself: `Debug` and `Display` print
//! a mask (`rvk_…abcd`), and [`redact`] scrubs a key out of any text before
//! it reaches a terminal or a log.

use std::fmt;

/// A secret (an API key). Only [`Secret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`, trimmed of surrounding whitespace (key files usually
    /// end with a newline).
    #[must_use]
    pub fn new(value: &str) -> Self {
        Self(value.trim().to_owned())
    }

    /// The secret itself, for the `Authorization` header only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The masked form shown to people.
    #[must_use]
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.masked())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// `rvk_0123…cdef` → `rvk_…cdef`: the prefix before the first `_` (when
/// short) and the last four characters. Short secrets are fully hidden.
#[must_use]
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 16 {
        return "…".to_owned();
    }
    let prefix = secret
        .split_once('_')
        .map(|(p, _)| p)
        .filter(|p| p.len() <= 4)
        .map_or(String::new(), |p| format!("{p}_"));
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}…{tail}")
}

/// Replaces every occurrence of `secret` in `text` by its mask.
#[must_use]
pub fn redact(text: &str, secret: Option<&Secret>) -> String {
    match secret {
        Some(s) if !s.expose().is_empty() && text.contains(s.expose()) => {
            text.replace(s.expose(), &s.masked())
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "rvk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn keys_are_masked_everywhere() {
        let s = Secret::new(&format!("  {KEY}\n"));
        assert_eq!(s.expose(), KEY);
        assert_eq!(s.masked(), "rvk_…cdef");
        assert_eq!(format!("{s:?}"), "Secret(rvk_…cdef)");
        assert_eq!(format!("{s}"), "rvk_…cdef");
        assert_eq!(
            redact(&format!("bad key {KEY}!"), Some(&s)),
            "bad key rvk_…cdef!"
        );
        assert_eq!(redact("nothing", Some(&s)), "nothing");
        assert_eq!(redact("nothing", None), "nothing");
        assert_eq!(mask("short"), "…");
        assert_eq!(mask("averyveryverylongsecret"), "…cret");
    }
}
