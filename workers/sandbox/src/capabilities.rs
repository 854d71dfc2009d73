//! Step 4: capabilities. Everything not in the profile's keep list leaves
//! every set: bounding (so nothing can come back through an `exec` either),
//! ambient, inheritable, permitted and effective.
//!
//! Capabilities are per-thread; this runs while the process has one thread,
//! so every thread started later inherits the reduced sets. Dropping from the
//! bounding set needs `CAP_SETPCAP`; an unprivileged worker has nothing there
//! to lose that `no_new_privs` (step 5) would not already neutralise, so the
//! bounding set is left alone when `CAP_SETPCAP` is not permitted.

use caps::{CapSet, Capability, CapsHashSet};

use crate::SandboxError;

fn err(what: &'static str) -> impl FnOnce(caps::errors::CapsError) -> SandboxError {
    move |source| SandboxError::Capabilities { what, source }
}

pub(crate) fn restrict(keep: &[Capability]) -> Result<(), SandboxError> {
    let permitted = caps::read(None, CapSet::Permitted).map_err(err("read permitted"))?;

    if permitted.contains(&Capability::CAP_SETPCAP) {
        caps::raise(None, CapSet::Effective, Capability::CAP_SETPCAP)
            .map_err(err("raise CAP_SETPCAP to drop the bounding set"))?;
        let bounding = caps::read(None, CapSet::Bounding).map_err(err("read bounding"))?;
        for cap in bounding.into_iter().filter(|cap| !keep.contains(cap)) {
            caps::drop(None, CapSet::Bounding, cap).map_err(err("drop from bounding"))?;
        }
    } else {
        tracing::debug!(
            "no CAP_SETPCAP: bounding set left as inherited (no_new_privs covers exec)"
        );
    }

    caps::clear(None, CapSet::Ambient).map_err(err("clear ambient"))?;
    caps::clear(None, CapSet::Inheritable).map_err(err("clear inheritable"))?;

    let mut kept = CapsHashSet::new();
    for cap in keep {
        if permitted.contains(cap) {
            kept.insert(*cap);
        } else {
            tracing::warn!(%cap, "capability to keep is not permitted to this process; not kept");
        }
    }
    // Effective first: it must stay a subset of the (shrinking) permitted set.
    caps::set(None, CapSet::Effective, &kept).map_err(err("set effective"))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(err("set permitted"))?;
    Ok(())
}

/// Sorted names of the capabilities in the calling thread's effective set.
pub(crate) fn effective_names() -> Vec<String> {
    match caps::read(None, CapSet::Effective) {
        Ok(set) => {
            let mut names: Vec<String> = set.iter().map(ToString::to_string).collect();
            names.sort();
            names
        }
        Err(err) => {
            tracing::warn!(%err, "cannot read effective capabilities");
            vec!["<unreadable>".to_owned()]
        }
    }
}
