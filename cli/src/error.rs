//! What can go wrong, and the exit code each failure maps to. The table is
//! part of the CLI's contract (see `revaer --help` and `docs/guides/cli.md`).

use std::fmt::Write as _;

use revaer_api_models::{InvalidParam, Problem};

/// Exit codes.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Usage or validation: bad arguments, input refused locally or by the
    /// API (400, 413, 415, 422).
    pub const USAGE: u8 = 2;
    /// Authentication or authorisation: missing, invalid or too weak key
    /// (401, 403).
    pub const AUTH: u8 = 3;
    /// Not found or conflict (404, 409, 410), e.g. no such torrent, a
    /// duplicate add, metadata not there yet.
    pub const NOT_FOUND: u8 = 4;
    /// Rate-limited or unavailable (429, 502, 503, 504), or `health`
    /// reporting a degraded daemon.
    pub const UNAVAILABLE: u8 = 5;
    /// Network or transport: cannot connect, time-out, connection lost.
    pub const TRANSPORT: u8 = 6;
    /// Any other runtime failure: unexpected answer, 500, local I/O, a
    /// followed torrent entering the error state.
    pub const RUNTIME: u8 = 7;
    /// Interrupted by Ctrl-C while waiting (`status --follow`).
    pub const INTERRUPTED: u8 = 130;
}

/// The exit-code table as printed at the end of `revaer --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  2    usage or validation error (local, or HTTP 400/413/415/422)
  3    authentication or permission (HTTP 401/403)
  4    not found or conflict (HTTP 404/409/410)
  5    rate-limited or unavailable (HTTP 429/502/503/504; `health`: degraded)
  6    network or transport failure (connect, time-out, connection lost)
  7    other runtime failure (unexpected answer, HTTP 500, local I/O)
  130  interrupted (`status --follow`)";

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments or input, found before anything was sent.
    #[error("{message}")]
    Invalid {
        message: String,
        params: Vec<InvalidParam>,
    },
    /// The API answered with an error status.
    #[error("{} (HTTP {})", .problem.title, .problem.status)]
    Api {
        problem: Box<Problem>,
        retry_after: Option<u64>,
        /// Whether the request carried a key (for the hint on 401).
        had_key: bool,
    },
    /// The request did not complete.
    #[error("cannot reach {url}: {message}")]
    Transport { url: String, message: String },
    /// The answer was not what the contract promises.
    #[error("unexpected answer from {url}: {message}")]
    Protocol { url: String, message: String },
    /// Local I/O (files, terminal).
    #[error("{0}")]
    Io(String),
    /// `health` found the daemon degraded (the document was printed).
    #[error("the daemon is degraded: {}", .0.join(", "))]
    Degraded(Vec<String>),
    /// A runtime condition that is neither of the above.
    #[error("{0}")]
    Failed(String),
    /// Ctrl-C while waiting.
    #[error("interrupted")]
    Interrupted,
}

impl CliError {
    /// A local validation failure without field pointers.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            params: Vec::new(),
        }
    }

    /// A local validation failure located by JSON pointers, like the API's.
    pub fn invalid(message: impl Into<String>, params: Vec<InvalidParam>) -> Self {
        Self::Invalid {
            message: message.into(),
            params,
        }
    }

    /// The exit code of this failure.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Invalid { .. } => exit::USAGE,
            CliError::Api { problem, .. } => exit_code_for_status(problem.status),
            CliError::Transport { .. } => exit::TRANSPORT,
            CliError::Degraded(_) => exit::UNAVAILABLE,
            CliError::Protocol { .. } | CliError::Io(_) | CliError::Failed(_) => exit::RUNTIME,
            CliError::Interrupted => exit::INTERRUPTED,
        }
    }

    /// The message for people: one headline, then the detail, each invalid
    /// parameter and a hint, indented.
    #[must_use]
    pub fn render(&self) -> String {
        let mut text = format!("revaer: {self}\n");
        match self {
            CliError::Invalid { params, .. } => {
                for p in params {
                    let _ = writeln!(text, "  {}: {}", p.pointer, p.message);
                }
            }
            CliError::Api {
                problem,
                retry_after,
                had_key,
            } => {
                if let Some(detail) = problem.detail.as_deref().filter(|d| !d.is_empty()) {
                    let _ = writeln!(text, "  {detail}");
                }
                for p in &problem.invalid_params {
                    let _ = writeln!(text, "  {}: {}", p.pointer, p.message);
                }
                if let Some(secs) = retry_after {
                    let _ = writeln!(text, "  retry after {secs} s");
                }
                match (problem.status, had_key) {
                    (401, false) => text.push_str(
                        "  hint: give a key with --api-key-file, --api-key or REVAER_API_KEY\n",
                    ),
                    (401, true) => {
                        text.push_str("  hint: the key is unknown, revoked or expired\n");
                    }
                    (403, _) => text.push_str("  hint: this needs an admin key\n"),
                    _ => {}
                }
            }
            _ => {}
        }
        text
    }
}

/// Exit code of an HTTP error status.
#[must_use]
pub fn exit_code_for_status(status: u16) -> u8 {
    match status {
        400 | 413 | 415 | 422 => exit::USAGE,
        401 | 403 => exit::AUTH,
        404 | 409 | 410 => exit::NOT_FOUND,
        429 | 502..=504 => exit::UNAVAILABLE,
        _ => exit::RUNTIME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_codes() {
        for (status, code) in [
            (400, 2),
            (413, 2),
            (415, 2),
            (422, 2),
            (401, 3),
            (403, 3),
            (404, 4),
            (409, 4),
            (410, 4),
            (429, 5),
            (502, 5),
            (503, 5),
            (504, 5),
            (500, 7),
            (418, 7),
        ] {
            assert_eq!(exit_code_for_status(status), code, "{status}");
        }
        assert_eq!(CliError::usage("x").exit_code(), 2);
        assert_eq!(CliError::Degraded(vec![]).exit_code(), 5);
        assert_eq!(CliError::Io("x".into()).exit_code(), 7);
        assert_eq!(CliError::Failed("x".into()).exit_code(), 7);
        assert_eq!(CliError::Interrupted.exit_code(), 130);
        assert_eq!(
            CliError::Transport {
                url: "u".into(),
                message: "m".into()
            }
            .exit_code(),
            6
        );
        assert_eq!(
            CliError::Protocol {
                url: "u".into(),
                message: "m".into()
            }
            .exit_code(),
            7
        );
    }

    #[test]
    fn problems_render_every_field() {
        let mut problem = Problem::new(400, "Bad Request").with_detail("the rules are invalid");
        problem.invalid_params.push(InvalidParam {
            pointer: "/rules/0/glob".into(),
            message: "matches no file".into(),
        });
        let e = CliError::Api {
            problem: Box::new(problem),
            retry_after: Some(3),
            had_key: true,
        };
        assert_eq!(
            e.render(),
            "revaer: Bad Request (HTTP 400)\n  the rules are invalid\n  /rules/0/glob: matches no file\n  retry after 3 s\n"
        );
        let e = CliError::Api {
            problem: Box::new(Problem::new(401, "Unauthorized")),
            retry_after: None,
            had_key: false,
        };
        assert!(e.render().contains("hint: give a key"));
        let e = CliError::Api {
            problem: Box::new(Problem::new(403, "Forbidden")),
            retry_after: None,
            had_key: true,
        };
        assert!(e.render().contains("admin key"));
        assert_eq!(
            CliError::Degraded(vec!["config".into()]).render(),
            "revaer: the daemon is degraded: config\n"
        );
    }
}
