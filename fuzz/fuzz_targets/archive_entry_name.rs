//! Archive entry names and job paths as FsOps validates them: whatever is
//! accepted stays beneath its root (no absolute path, no `..`).
#![no_main]

use std::path::Component;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(path) = revaer_fsops::roots::RelPath::parse(text) {
        for component in path.as_path().components() {
            assert!(
                matches!(component, Component::Normal(_) | Component::CurDir),
                "{text:?} escaped as {component:?}"
            );
        }
    }
});
