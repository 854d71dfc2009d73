//! Embeds the git revision into the build id, so that processes from two
//! different builds refuse each other at the IPC handshake.

use std::process::Command;

fn main() {
    let revision = std::env::var("REVAER_GIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=REVAER_GIT_REVISION={revision}");
    println!("cargo:rerun-if-env-changed=REVAER_GIT_REVISION");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
}
