//! `docs/guides/cli.md` matches the implementation: every command and
//! sub-command, every long option and every exit code of `revaer --help`
//! appears in it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use clap::CommandFactory as _;
use revaer_cli::error::exit;

fn guide() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/guides/cli.md");
    std::fs::read_to_string(path).unwrap()
}

fn walk(cmd: &clap::Command, path: &str, guide: &str, missing: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        if arg.is_hide_set() {
            continue;
        }
        if let Some(long) = arg.get_long()
            && !guide.contains(&format!("--{long}"))
        {
            missing.push(format!("{path} --{long}"));
        }
    }
    for sub in cmd.get_subcommands() {
        let name = sub.get_name();
        if name == "help" {
            continue;
        }
        let full = format!("{path} {name}");
        // Top-level and `keys` commands appear as `revaer ...`; actions by
        // name in the action table.
        let found = guide.contains(&format!("`{full}"))
            || guide.contains(&format!("`{name}`"))
            || guide.contains(&format!("`{name} "));
        if !found {
            missing.push(full.clone());
        }
        walk(sub, &full, guide, missing);
    }
}

#[test]
fn every_command_and_option_is_in_the_guide() {
    let guide = guide();
    let mut missing = Vec::new();
    walk(
        &revaer_cli::cli::Cli::command(),
        "revaer",
        &guide,
        &mut missing,
    );
    assert!(
        missing.is_empty(),
        "not in docs/guides/cli.md: {missing:#?}"
    );
}

#[test]
fn every_exit_code_is_in_the_guide_and_the_help() {
    let guide = guide();
    let help = revaer_cli::cli::Cli::command()
        .render_long_help()
        .to_string();
    for code in [0, 2, 3, 4, 5, 6, 7, 130] {
        assert!(
            guide.contains(&format!("| `{code}` |")),
            "exit {code} not in the guide"
        );
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "exit {code} not in --help"
        );
    }
    // The codes the guide promises are the ones the code uses.
    assert_eq!(
        [
            exit::OK,
            exit::USAGE,
            exit::AUTH,
            exit::NOT_FOUND,
            exit::UNAVAILABLE,
            exit::TRANSPORT,
            exit::RUNTIME,
            exit::INTERRUPTED
        ],
        [0, 2, 3, 4, 5, 6, 7, 130]
    );
}
