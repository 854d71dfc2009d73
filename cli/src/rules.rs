//! File-selection rules for `revaer select`: read from JSON or built from
//! `--only`/`--skip` globs, then checked against the torrent's real file
//! list with the API's own semantics (later rules win; every index must
//! exist and every glob must match a file), so a mistake is reported before
//! anything is sent.

use globset::GlobBuilder;
use revaer_api_models::InvalidParam;
use revaer_api_models::torrents::{FileRule, TorrentFile};
use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// Most rules in one request (the API's limit).
pub const MAX_RULES: usize = 10_000;
/// Longest glob, in bytes (the API's limit).
pub const MAX_GLOB_BYTES: usize = 1024;

/// Rules plus where each came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub rules: Vec<FileRule>,
    /// Per rule: the JSON pointer prefix (`/rules/0`) or the option
    /// (`--only *.mkv`) it came from.
    pub origins: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RulesDoc {
    Wrapped { rules: Vec<FileRule> },
    Bare(Vec<FileRule>),
}

/// Parses `{"rules": [...]}` or a bare array of rules.
pub fn from_json(text: &str, source: &str) -> Result<Rules, CliError> {
    let doc: RulesDoc = serde_json::from_str(text).map_err(|e| {
        CliError::usage(format!(
            "{source}: expected {{\"rules\": [...]}} or an array of {{\"index\"|\"glob\", \"priority\"}} rules ({e})"
        ))
    })?;
    let rules = match doc {
        RulesDoc::Wrapped { rules } | RulesDoc::Bare(rules) => rules,
    };
    let origins = (0..rules.len()).map(|i| format!("/rules/{i}")).collect();
    Ok(Rules { rules, origins })
}

/// `--only` globs (everything else skipped) then `--skip` globs.
#[must_use]
pub fn from_globs(only: &[String], skip: &[String], priority: u8) -> Rules {
    let mut rules = Vec::new();
    let mut origins = Vec::new();
    if !only.is_empty() {
        rules.push(FileRule {
            index: None,
            glob: Some("*".to_owned()),
            priority: 0,
        });
        origins.push("--only (skip the rest)".to_owned());
        for glob in only {
            rules.push(FileRule {
                index: None,
                glob: Some(glob.clone()),
                priority,
            });
            origins.push(format!("--only {glob}"));
        }
    }
    for glob in skip {
        rules.push(FileRule {
            index: None,
            glob: Some(glob.clone()),
            priority: 0,
        });
        origins.push(format!("--skip {glob}"));
    }
    Rules { rules, origins }
}

/// The predicted outcome for one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub index: u32,
    pub path: String,
    pub size: u64,
    /// Priority now.
    pub before: u8,
    /// Priority after the rules.
    pub priority: u8,
}

fn invalid(at: &str, field: &str, message: impl Into<String>) -> InvalidParam {
    let pointer = if at.starts_with('/') {
        format!("{at}/{field}")
    } else {
        at.to_owned()
    };
    InvalidParam {
        pointer,
        message: message.into(),
    }
}

/// Checks `rules` against `files` and predicts the resulting priorities.
pub fn plan(rules: &Rules, files: &[TorrentFile]) -> Result<Vec<Planned>, CliError> {
    let mut errors = Vec::new();
    if rules.rules.is_empty() {
        return Err(CliError::usage("give at least one rule"));
    }
    if rules.rules.len() > MAX_RULES {
        return Err(CliError::usage(format!("at most {MAX_RULES} rules")));
    }
    let mut planned: Vec<Planned> = files
        .iter()
        .map(|f| Planned {
            index: f.index,
            path: f.path.clone(),
            size: f.size,
            before: f.priority,
            priority: f.priority,
        })
        .collect();
    for (rule, at) in rules.rules.iter().zip(&rules.origins) {
        if rule.priority > 7 {
            errors.push(invalid(at, "priority", "must be 0 to 7"));
        }
        match (&rule.index, &rule.glob) {
            (Some(_), Some(_)) | (None, None) => {
                errors.push(InvalidParam {
                    pointer: at.clone(),
                    message: "give exactly one of `index` and `glob`".to_owned(),
                });
            }
            (Some(index), None) => match planned.iter_mut().find(|p| p.index == *index) {
                Some(p) => p.priority = rule.priority,
                None => errors.push(invalid(
                    at,
                    "index",
                    format!("no file has index {index} ({} files)", files.len()),
                )),
            },
            (None, Some(glob)) => {
                if glob.is_empty() || glob.len() > MAX_GLOB_BYTES {
                    errors.push(invalid(
                        at,
                        "glob",
                        format!("must be 1 to {MAX_GLOB_BYTES} bytes"),
                    ));
                    continue;
                }
                let matcher = match GlobBuilder::new(glob).build() {
                    Ok(g) => g.compile_matcher(),
                    Err(e) => {
                        errors.push(invalid(at, "glob", e.kind().to_string()));
                        continue;
                    }
                };
                let mut hits = 0_usize;
                for p in planned.iter_mut().filter(|p| matcher.is_match(&p.path)) {
                    p.priority = rule.priority;
                    hits += 1;
                }
                if hits == 0 {
                    errors.push(invalid(at, "glob", format!("`{glob}` matches no file")));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(planned)
    } else {
        Err(CliError::invalid(
            "the rules do not fit this torrent's files",
            errors,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<TorrentFile> {
        ["show/e01.mkv", "show/e02.mkv", "show/info.nfo"]
            .iter()
            .enumerate()
            .map(|(i, p)| TorrentFile {
                index: u32::try_from(i).unwrap(),
                path: (*p).to_owned(),
                size: 10,
                priority: 4,
                done: 0,
                progress: 0.0,
            })
            .collect()
    }

    #[test]
    fn only_and_skip_expand_to_ordered_rules() {
        let rules = from_globs(&["*.mkv".into()], &["*e02*".into()], 6);
        let plan = plan(&rules, &files()).unwrap();
        let prio: Vec<u8> = plan.iter().map(|p| p.priority).collect();
        assert_eq!(prio, vec![6, 0, 0]);
        assert_eq!(rules.origins[1], "--only *.mkv");
    }

    #[test]
    fn json_rules_are_checked_like_the_api_does() {
        let rules = from_json(
            r#"{"rules": [{"glob": "*.nfo", "priority": 0}, {"index": 1, "priority": 7}]}"#,
            "--json",
        )
        .unwrap();
        let plan = plan(&rules, &files()).unwrap();
        assert_eq!(
            plan.iter().map(|p| p.priority).collect::<Vec<_>>(),
            vec![4, 7, 0]
        );
        let bare = from_json(r#"[{"index": 0, "priority": 1}]"#, "--json").unwrap();
        assert_eq!(bare.rules.len(), 1);

        let bad = from_json(
            r#"[{"index": 9, "priority": 1}, {"glob": "*.iso", "priority": 8}, {"priority": 1}, {"glob": "[", "priority": 1}, {"glob": "", "priority": 1}]"#,
            "--json",
        )
        .unwrap();
        let CliError::Invalid { params, .. } = super::plan(&bad, &files()).unwrap_err() else {
            panic!("not a validation error")
        };
        let pointers: Vec<&str> = params.iter().map(|p| p.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            vec![
                "/rules/0/index",
                "/rules/1/priority",
                "/rules/1/glob",
                "/rules/2",
                "/rules/3/glob",
                "/rules/4/glob"
            ]
        );
        assert!(from_json("{}", "--json").is_err());
        assert!(from_json(r#"[{"glob": "x", "priority": 1, "extra": 1}]"#, "--json").is_err());
        let none = Rules {
            rules: vec![],
            origins: vec![],
        };
        assert!(super::plan(&none, &files()).is_err());
        let CliError::Invalid { params, .. } =
            super::plan(&from_globs(&[], &["*.iso".into()], 4), &files()).unwrap_err()
        else {
            panic!("not a validation error")
        };
        assert_eq!(params[0].pointer, "--skip *.iso");
    }
}
