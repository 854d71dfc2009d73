//! A network namespace of the bench's own for Transmission, which refuses
//! peers on 127.0.0.0/8: a veth pair with 10.77.0.1/24 on this side (where
//! the seed and the tracker also listen) and 10.77.0.2/24 inside. Nothing
//! is routed anywhere else; the namespace (and with it the veth pair) is
//! deleted when the guard drops.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use crate::util::command_output;

pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const NS_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const PREFIX: &str = "revaer-bench-";

#[derive(Debug)]
pub struct Netns {
    pub name: String,
    host_if: String,
}

impl Netns {
    /// Creates the namespace and the veth pair; the error is the reason
    /// Transmission is reported as n/a.
    pub fn create() -> Result<Self, String> {
        remove_stale();
        let pid = std::process::id();
        let ns = Self {
            name: format!("{PREFIX}{pid}"),
            host_if: format!("rvb{pid}h"),
        };
        let ns_if = format!("rvb{pid}n");
        let addrs = command_output("ip", &["-o", "-4", "addr", "show"])?;
        if addrs.contains("10.77.0.") {
            return Err(
                "10.77.0.0/24 is already configured on this machine (a stale `revaer-bench-*` namespace?)"
                    .to_owned(),
            );
        }
        command_output("ip", &["netns", "add", &ns.name])?;
        // From here on, dropping `ns` removes what was made.
        let host_cidr = format!("{HOST_ADDR}/24");
        let ns_cidr = format!("{NS_ADDR}/24");
        let steps: [&[&str]; 9] = [
            &[
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &ns_if,
            ],
            &["link", "set", &ns_if, "netns", &ns.name],
            // Loopback's MTU, so that the veth is not the narrower pipe.
            &["link", "set", &ns.host_if, "mtu", "65535"],
            &["addr", "add", &host_cidr, "dev", &ns.host_if],
            &["link", "set", &ns.host_if, "up"],
            &["-n", &ns.name, "link", "set", &ns_if, "mtu", "65535"],
            &["-n", &ns.name, "addr", "add", &ns_cidr, "dev", &ns_if],
            &["-n", &ns.name, "link", "set", &ns_if, "up"],
            &["-n", &ns.name, "link", "set", "lo", "up"],
        ];
        for args in steps {
            command_output("ip", args)?;
        }
        Ok(ns)
    }

    pub fn host_ip() -> IpAddr {
        IpAddr::V4(HOST_ADDR)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth end and so the pair.
        let _ = command_output("ip", &["netns", "del", &self.name]);
        let _ = command_output("ip", &["link", "del", &self.host_if]);
    }
}

/// `ip netns exec <namespace> program …`: `ip` execs the program in place,
/// so the child's pid is the program's.
pub fn command(namespace: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", namespace, program]);
    cmd
}

/// Deletes `revaer-bench-<pid>` namespaces whose bench is gone (left by a
/// run that was killed).
fn remove_stale() {
    let Ok(list) = command_output("ip", &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = command_output("ip", &["netns", "del", name]);
            let _ = command_output("ip", &["link", "del", &format!("rvb{pid}h")]);
        }
    }
}
