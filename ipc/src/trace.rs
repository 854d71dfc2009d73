//! W3C trace-context helpers for the `traceparent` carried in every
//! [`Envelope`](crate::protocol::Envelope).
//!
//! A `traceparent` comes from outside (an HTTP client); a process forwards
//! it only after [`validate_traceparent`] accepts it, so a malformed or
//! oversized value never propagates through the system.

use serde::{Deserialize, Serialize};

/// Length of a version-`00` `traceparent`.
pub const TRACEPARENT_LEN: usize = 55;

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == b'0')
}

/// Whether `s` is a valid version-`00` W3C `traceparent`:
/// `00-<32 hex trace id, not all zero>-<16 hex parent id, not all zero>-<2 hex flags>`,
/// lower-case, exactly 55 characters. Other versions (including the invalid
/// `ff`) are refused: we only forward what we fully understand.
#[must_use]
pub fn validate_traceparent(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != TRACEPARENT_LEN {
        return false;
    }
    let (version, trace_id, parent_id, flags) = (&b[0..2], &b[3..35], &b[36..52], &b[53..55]);
    b[2] == b'-'
        && b[35] == b'-'
        && b[52] == b'-'
        && version == b"00"
        && is_lower_hex(trace_id)
        && !all_zero(trace_id)
        && is_lower_hex(parent_id)
        && !all_zero(parent_id)
        && is_lower_hex(flags)
}

/// The ids carried by a valid `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` that [`validate_traceparent`] accepts.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        if !validate_traceparent(s) {
            return None;
        }
        let mut trace_id = [0_u8; 16];
        let mut span_id = [0_u8; 8];
        decode_hex(&s.as_bytes()[3..35], &mut trace_id)?;
        decode_hex(&s.as_bytes()[36..52], &mut span_id)?;
        let mut flags = [0_u8; 1];
        decode_hex(&s.as_bytes()[53..55], &mut flags)?;
        Some(Self {
            trace_id,
            span_id,
            flags: flags[0],
        })
    }

    /// Whether the trace is sampled (exported).
    #[must_use]
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("00-")?;
        for b in self.trace_id {
            write!(f, "{b:02x}")?;
        }
        f.write_str("-")?;
        for b in self.span_id {
            write!(f, "{b:02x}")?;
        }
        write!(f, "-{:02x}", self.flags)
    }
}

fn decode_hex(hex: &[u8], out: &mut [u8]) -> Option<()> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        *out.get_mut(i)? = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(())
}

/// Most spans one message may relay; more are dropped by the receiver.
pub const MAX_RELAYED_SPANS: usize = 64;
/// Longest span name or attribute text a relay keeps.
pub const MAX_RELAYED_TEXT: usize = 256;

/// A finished span recorded by a worker without network access (FsOps),
/// sent to the API, which exports it (ADR 008).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanRecord {
    pub name: String,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The parent span; it lives in another process when
    /// `parent_is_remote`.
    pub parent_span_id: [u8; 8],
    pub parent_is_remote: bool,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(String, String)>,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn accepts_the_spec_example() {
        assert!(validate_traceparent(VALID));
        assert!(validate_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        ));
    }

    #[test]
    fn rejects_wrong_lengths() {
        assert!(!validate_traceparent(""));
        assert!(!validate_traceparent(&VALID[..54]));
        assert!(!validate_traceparent(&format!("{VALID}0")));
        assert!(!validate_traceparent(&format!("{VALID}-")));
    }

    #[test]
    fn rejects_other_versions() {
        assert!(!validate_traceparent(
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!validate_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
    }

    #[test]
    fn rejects_zero_ids() {
        assert!(!validate_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!validate_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"
        ));
    }

    #[test]
    fn rejects_upper_case_and_non_hex() {
        assert!(!validate_traceparent(
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
        ));
        assert!(!validate_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01"
        ));
        assert!(!validate_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0G"
        ));
        assert!(!validate_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"
        ));
    }

    #[test]
    fn rejects_misplaced_separators() {
        assert!(!validate_traceparent(
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!validate_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01"
        ));
        assert!(!validate_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01"
        ));
        assert!(!validate_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e47-3600f067aa0ba902b7-01"
        ));
    }

    #[test]
    fn never_panics_on_multibyte_input() {
        let s = "é".repeat(27) + "a";
        assert_eq!(s.len(), 55);
        assert!(!validate_traceparent(&s));
    }

    #[test]
    fn parses_and_formats_the_ids() {
        let tp = TraceParent::parse(VALID).expect("valid");
        assert_eq!(tp.trace_id[0], 0x4b);
        assert_eq!(tp.span_id[7], 0xb7);
        assert!(tp.sampled());
        assert_eq!(tp.to_string(), VALID);
        assert!(
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g").is_none()
        );
    }
}
