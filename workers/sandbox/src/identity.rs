//! Step 3: become the worker's own uid/gid when the daemon was started as
//! root and the profile asks for it.
//!
//! Order matters: supplementary groups first (root's groups would otherwise
//! survive), then the gid (needs `CAP_SETGID`), then the uid (after which no
//! further switch is possible). `PR_SET_KEEPCAPS` is held across `setuid` so
//! the permitted set survives for step 4, which alone decides what to keep
//! (normally nothing; fsops may keep `CAP_CHOWN`/`CAP_FOWNER`). Without it,
//! `setuid` would empty the permitted set before step 4 could drop the
//! bounding set (which needs `CAP_SETPCAP`) or raise a kept capability.

use nix::unistd::{Gid, Uid, geteuid, getresgid, getresuid, setgid, setgroups, setuid};

use crate::SandboxError;
use crate::hygiene;

pub(crate) fn switch(target: Option<(u32, u32)>) -> Result<(), SandboxError> {
    let Some((uid, gid)) = target else {
        return Ok(());
    };
    if !geteuid().is_root() {
        tracing::warn!(
            uid,
            gid,
            euid = geteuid().as_raw(),
            "switch_identity ignored: not running as root"
        );
        return Ok(());
    }
    let err = |what: &'static str| move |source| SandboxError::Identity { what, source };

    nix::sys::prctl::set_keepcaps(true).map_err(err("prctl(PR_SET_KEEPCAPS, 1)"))?;
    setgroups(&[Gid::from_raw(gid)]).map_err(err("setgroups"))?;
    setgid(Gid::from_raw(gid)).map_err(err("setgid"))?;
    setuid(Uid::from_raw(uid)).map_err(err("setuid"))?;
    nix::sys::prctl::set_keepcaps(false).map_err(err("prctl(PR_SET_KEEPCAPS, 0)"))?;
    // A credential change resets the dumpable flag to the fs.suid_dumpable sysctl.
    hygiene::set_not_dumpable()?;

    let uids = getresuid().map_err(err("getresuid"))?;
    let gids = getresgid().map_err(err("getresgid"))?;
    let uid_ok = [uids.real, uids.effective, uids.saved]
        .iter()
        .all(|u| u.as_raw() == uid);
    let gid_ok = [gids.real, gids.effective, gids.saved]
        .iter()
        .all(|g| g.as_raw() == gid);
    if !(uid_ok && gid_ok) {
        return Err(SandboxError::Identity {
            what: "verify real/effective/saved ids after switch",
            source: nix::Error::EPERM,
        });
    }
    tracing::debug!(uid, gid, "identity switched");
    Ok(())
}
