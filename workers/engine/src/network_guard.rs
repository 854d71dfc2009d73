//! The kill switch behind `[engine] interface`: decides whether the network
//! interface the engine is bound to can carry traffic, and wakes the engine
//! the moment the host's interfaces or addresses change.
//!
//! libtorrent already binds listening and outgoing sockets to the interface
//! (`listen_interfaces`, `outgoing_interfaces`), so a connection cannot
//! leave through another one. That alone still lets the session try: it
//! keeps announcing (and resolving tracker names through the system
//! resolver, whose packets follow the routing table, not the binding) and
//! shows torrents as plainly "downloading". So while the interface is
//! missing the engine pauses the whole session (no announces, no peers, no
//! name lookups), every torrent says why, and the engine's health pong
//! carries the reason; when the interface returns the session reopens its
//! sockets and resumes by itself. See ADR 011.
//!
//! Changes are noticed through a `NETLINK_ROUTE` socket subscribed to link
//! and address events (milliseconds after the change), with a periodic
//! re-check as a fallback should netlink be unavailable.

use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use nix::sys::socket::{
    AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, setsockopt, socket,
    sockopt,
};
use nix::sys::time::TimeVal;
use revaer_config::BindTarget;

/// Longest time between two checks when no netlink event arrives.
const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// Check interval when netlink cannot be used at all.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// `RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR`: links appearing,
/// disappearing or changing state, and addresses added or removed.
const NETLINK_GROUPS: u32 = 0x1 | 0x10 | 0x100;

/// Whether `target` can carry traffic now; `Err` says why not, in words an
/// operator reads in `/health/full` and on every torrent.
pub fn check(target: &BindTarget) -> Result<(), String> {
    let addrs = getifaddrs()
        .map_err(|e| format!("cannot list network interfaces ({e}); not transferring"))?;
    match target {
        BindTarget::Device(name) => {
            let mut seen = false;
            let mut up = false;
            let mut addressed = false;
            for a in addrs.filter(|a| a.interface_name == *name) {
                seen = true;
                up |= a.flags.contains(InterfaceFlags::IFF_UP);
                addressed |= a
                    .address
                    .as_ref()
                    .is_some_and(|s| s.as_sockaddr_in().is_some() || s.as_sockaddr_in6().is_some());
            }
            if !seen {
                Err(format!(
                    "network interface {name} is missing; not transferring until it returns (engine.interface kill switch)"
                ))
            } else if !up {
                Err(format!(
                    "network interface {name} is down; not transferring until it is up (engine.interface kill switch)"
                ))
            } else if !addressed {
                Err(format!(
                    "network interface {name} has no IP address; not transferring until it has one (engine.interface kill switch)"
                ))
            } else {
                Ok(())
            }
        }
        BindTarget::Address(ip) => {
            let held = addrs.into_iter().any(|a| {
                a.flags.contains(InterfaceFlags::IFF_UP)
                    && a.address.as_ref().and_then(address_of) == Some(*ip)
            });
            if held {
                Ok(())
            } else {
                Err(format!(
                    "no network interface that is up holds address {ip}; not transferring until one does (engine.interface kill switch)"
                ))
            }
        }
    }
}

fn address_of(s: &nix::sys::socket::SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// A netlink socket that becomes readable whenever a link or an address
/// changes, with a receive timeout of [`RECHECK_EVERY`].
fn netlink_listener() -> nix::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &NetlinkAddr::new(0, NETLINK_GROUPS),
    )?;
    let timeout = TimeVal::new(
        i64::try_from(RECHECK_EVERY.as_secs()).unwrap_or(1),
        i64::from(RECHECK_EVERY.subsec_micros()),
    );
    setsockopt(&fd, sockopt::ReceiveTimeout, &timeout)?;
    Ok(fd)
}

/// Calls `on_change` after every link or address change on the host (and
/// at least every [`RECHECK_EVERY`]) in a thread of its own, until
/// `stopping` is set. The messages themselves are not parsed: any event is
/// only a reason to re-check.
pub fn spawn_watch(
    stopping: Arc<AtomicBool>,
    on_change: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("network-watch".to_owned())
        .spawn(move || {
            let listener = match netlink_listener() {
                Ok(fd) => Some(fd),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "cannot watch network changes over netlink; re-checking every 200 ms"
                    );
                    None
                }
            };
            let mut buffer = vec![0_u8; 16 * 1024];
            while !stopping.load(Ordering::Acquire) {
                match &listener {
                    // A message, a timeout or an overrun (ENOBUFS): each
                    // only means "look again".
                    Some(fd) => {
                        let _ = recv(
                            std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd()),
                            &mut buffer,
                            nix::sys::socket::MsgFlags::empty(),
                        );
                    }
                    None => std::thread::sleep(POLL_EVERY),
                }
                on_change();
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_present_and_a_made_up_device_is_missing() {
        assert_eq!(check(&BindTarget::Device("lo".to_owned())), Ok(()));
        assert_eq!(
            check(&BindTarget::Address("127.0.0.1".parse().unwrap())),
            Ok(())
        );
        let missing = check(&BindTarget::Device("rvnope0".to_owned())).unwrap_err();
        assert!(missing.contains("rvnope0 is missing"), "{missing}");
        let unheld = check(&BindTarget::Address("192.0.2.77".parse().unwrap())).unwrap_err();
        assert!(unheld.contains("192.0.2.77"), "{unheld}");
    }
}
