//! Step 7: seccomp. A *deny-list*: every syscall is allowed except a fixed
//! set no worker needs and that mostly serve to attack the kernel or other
//! processes. See `docs/adr/003-sandbox-profile.md` for the groups and why a
//! deny-list rather than an allow-list (for now).
//!
//! Filters (stacked; the kernel runs all and the most severe answer wins;
//! their syscall sets are disjoint, and every one ends in "allow"):
//! 1. the deny-list proper → `EPERM`, including `clone` with any
//!    `CLONE_NEW*` flag (the same thing as `unshare`);
//! 2. `clone3` → `ENOSYS`: its flags live in memory a filter cannot read, and
//!    `ENOSYS` makes glibc fall back to `clone`, which filter 1 inspects
//!    (Docker's default profile does the same);
//! 3. on `x86_64`, any x32-ABI syscall number (bit 30 set) → `ENOSYS`: x32
//!    calls carry `AUDIT_ARCH_X86_64` and different numbers, so they would
//!    walk past a deny-list written in x86-64 numbers on kernels built with
//!    x32 support (other foreign ABIs, e.g. i386 `int 0x80`, are killed by
//!    seccompiler's architecture check in every filter);
//! 4. fsops only: `socket(AF_INET | AF_INET6, ..)` → `EACCES`.
//!
//! Each filter is installed with `SECCOMP_FILTER_FLAG_TSYNC`, so it covers
//! every thread even if one slipped in before `apply`.

use std::collections::BTreeMap;

use nix::libc;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

use crate::SandboxError;

/// Syscalls refused outright, by group (see the ADR for the reasons).
const DENIED: &[(&str, libc::c_long)] = &[
    // Other processes: debugging, memory and descriptor theft.
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    // Mounts and root changes (old and new mount API).
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    // Namespaces (see also the clone rules and clone3).
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    // Whole-system administration.
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    // Kernel modules.
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    // Large kernel attack surface no worker uses.
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    // Kernel keyrings.
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    // Opening files by handle escapes every path-based check (Landlock included).
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    // Raw port I/O.
    #[cfg(target_arch = "x86_64")]
    ("iopl", libc::SYS_iopl),
    #[cfg(target_arch = "x86_64")]
    ("ioperm", libc::SYS_ioperm),
];

/// `clone` flags that create namespaces. (`CLONE_NEWTIME` is left out: for
/// `clone` its bit is part of the exit-signal byte; `unshare` covers it.)
const CLONE_NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// Report entries for the conditional and `ENOSYS` rules.
const CLONE_ENTRY: &str = "clone(CLONE_NEW*)";
const CLONE3_ENTRY: &str = "clone3 (ENOSYS)";
const X32_ENTRY: &str = "x32 ABI (ENOSYS)";
const INET_ENTRIES: [&str; 2] = ["socket(AF_INET)", "socket(AF_INET6)"];

/// The compiled filters, in installation order, and the report's list of
/// what they refuse.
#[derive(Debug)]
pub(crate) struct Filters {
    pub programs: Vec<(&'static str, BpfProgram)>,
    pub denied: Vec<String>,
}

fn err<E: Into<seccompiler::Error>>(what: &'static str) -> impl FnOnce(E) -> SandboxError {
    move |source| SandboxError::Seccomp {
        what,
        source: source.into(),
    }
}

fn errno(value: libc::c_int) -> SeccompAction {
    SeccompAction::Errno(value.unsigned_abs())
}

fn flag_u64(flag: libc::c_int) -> u64 {
    u64::from(flag.unsigned_abs())
}

/// Builds the filters for `arch` without installing anything.
pub(crate) fn build(deny_inet_sockets: bool, arch: TargetArch) -> Result<Filters, SandboxError> {
    let mut denied: Vec<String> = DENIED.iter().map(|(name, _)| (*name).to_owned()).collect();
    let mut programs = Vec::new();

    // 1. Deny-list → EPERM.
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|(_, nr)| (*nr, Vec::new())).collect();
    let mut clone_rules = Vec::with_capacity(CLONE_NAMESPACE_FLAGS.len());
    for flag in CLONE_NAMESPACE_FLAGS {
        let bit = flag_u64(*flag);
        let condition =
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(bit), bit)
                .map_err(err("clone flag condition"))?;
        clone_rules.push(SeccompRule::new(vec![condition]).map_err(err("clone flag rule"))?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    denied.push(CLONE_ENTRY.to_owned());
    let deny_list = SeccompFilter::new(rules, SeccompAction::Allow, errno(libc::EPERM), arch)
        .map_err(err("deny-list filter"))?;
    programs.push((
        "deny-list",
        BpfProgram::try_from(deny_list).map_err(err("compile deny-list"))?,
    ));

    // 2. clone3 → ENOSYS.
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        errno(libc::ENOSYS),
        arch,
    )
    .map_err(err("clone3 filter"))?;
    programs.push((
        "clone3",
        BpfProgram::try_from(clone3).map_err(err("compile clone3 filter"))?,
    ));
    denied.push(CLONE3_ENTRY.to_owned());

    // 3. x32 guard (x86_64 only).
    if arch == TargetArch::x86_64 {
        programs.push(("x32", x32_guard()));
        denied.push(X32_ENTRY.to_owned());
    }

    // 4. fsops: no IPv4/IPv6 sockets → EACCES.
    if deny_inet_sockets {
        let mut inet_rules = Vec::with_capacity(2);
        for family in [libc::AF_INET, libc::AF_INET6] {
            let condition = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                flag_u64(family),
            )
            .map_err(err("socket family condition"))?;
            inet_rules.push(SeccompRule::new(vec![condition]).map_err(err("socket rule"))?);
        }
        let inet = SeccompFilter::new(
            BTreeMap::from([(libc::SYS_socket, inet_rules)]),
            SeccompAction::Allow,
            errno(libc::EACCES),
            arch,
        )
        .map_err(err("inet socket filter"))?;
        programs.push((
            "inet-sockets",
            BpfProgram::try_from(inet).map_err(err("compile inet socket filter"))?,
        ));
        denied.extend(INET_ENTRIES.iter().map(|s| (*s).to_owned()));
    }

    Ok(Filters { programs, denied })
}

// Classic BPF opcodes and seccomp constants for the hand-written x32 guard.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
/// `EM_X86_64` (62) | `__AUDIT_ARCH_64BIT` | `__AUDIT_ARCH_LE`.
const AUDIT_ARCH_X86_64: u32 = 0x3e | 0x8000_0000 | 0x4000_0000;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// `if arch == X86_64 && nr >= 0x4000_0000 { ENOSYS } else { allow }`.
fn x32_guard() -> BpfProgram {
    vec![
        insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        insn(BPF_JMP_JEQ_K, 0, 2, AUDIT_ARCH_X86_64),
        insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
        insn(BPF_JMP_JGE_K, 1, 0, X32_SYSCALL_BIT),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        insn(
            BPF_RET_K,
            0,
            0,
            SECCOMP_RET_ERRNO | libc::ENOSYS.unsigned_abs(),
        ),
    ]
}

/// Builds and installs the filters for the running architecture; returns the
/// report's list of refused calls.
pub(crate) fn install(deny_inet_sockets: bool) -> Result<Vec<String>, SandboxError> {
    let arch =
        TargetArch::try_from(std::env::consts::ARCH).map_err(err("unsupported architecture"))?;
    let filters = build(deny_inet_sockets, arch)?;
    for (name, program) in &filters.programs {
        tracing::debug!(
            filter = name,
            instructions = program.len(),
            "installing seccomp filter"
        );
        seccompiler::apply_filter_all_threads(program).map_err(err("install filter (TSYNC)"))?;
    }
    Ok(filters.denied)
}

#[cfg(test)]
mod tests {
    //! The filters are checked by running them through a small classic-BPF
    //! interpreter on synthetic `seccomp_data`, so the conditional rules
    //! (clone flags, socket families, x32) are verified without installing
    //! anything in the test runner. Real-process checks live in `tests/`.

    use super::*;

    const ALLOW: u32 = SECCOMP_RET_ALLOW;
    const KILL_PROCESS: u32 = 0x8000_0000;

    fn ret_errno(e: libc::c_int) -> u32 {
        SECCOMP_RET_ERRNO | e.unsigned_abs()
    }

    fn arch() -> TargetArch {
        TargetArch::try_from(std::env::consts::ARCH).unwrap()
    }

    fn audit_arch(arch: TargetArch) -> u32 {
        match arch {
            TargetArch::x86_64 => AUDIT_ARCH_X86_64,
            TargetArch::aarch64 => 0xb7 | 0x8000_0000 | 0x4000_0000,
            TargetArch::riscv64 => 0xf3 | 0x8000_0000 | 0x4000_0000,
        }
    }

    /// `struct seccomp_data` (little-endian): nr, arch, ip, args[6].
    fn data(arch: u32, nr: i64, args: [u64; 6]) -> Vec<u8> {
        let mut d = Vec::with_capacity(64);
        d.extend_from_slice(&u32::try_from(nr).unwrap().to_le_bytes());
        d.extend_from_slice(&arch.to_le_bytes());
        d.extend_from_slice(&0_u64.to_le_bytes());
        for a in args {
            d.extend_from_slice(&a.to_le_bytes());
        }
        d
    }

    fn run(prog: &[sock_filter], data: &[u8]) -> u32 {
        let mut acc: u32 = 0;
        let mut pc = 0_usize;
        loop {
            let i = &prog[pc];
            pc += 1;
            let jump = |cond: bool| usize::from(if cond { i.jt } else { i.jf });
            match i.code {
                0x20 => {
                    let k = i.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                0x54 => acc &= i.k,
                0x05 => pc += i.k as usize,
                0x15 => pc += jump(acc == i.k),
                0x25 => pc += jump(acc > i.k),
                0x35 => pc += jump(acc >= i.k),
                0x45 => pc += jump(acc & i.k != 0),
                0x06 => return i.k,
                other => panic!("unsupported BPF opcode {other:#x}"),
            }
        }
    }

    /// Runs the whole stack like the kernel: the most severe action wins
    /// (`KILL_PROCESS` > `ERRNO` > `ALLOW` for what we use).
    fn verdict(filters: &Filters, arch: u32, nr: i64, args: [u64; 6]) -> u32 {
        let d = data(arch, nr, args);
        let rank = |r: u32| match r & 0xffff_0000 {
            KILL_PROCESS => 3,
            SECCOMP_RET_ERRNO => 2,
            ALLOW => 0,
            other => panic!("unexpected action {other:#x}"),
        };
        filters
            .programs
            .iter()
            .map(|(_, p)| run(p, &d))
            .max_by_key(|r| rank(*r))
            .unwrap()
    }

    fn sys(nr: libc::c_long) -> i64 {
        nr
    }

    #[test]
    fn deny_list_refuses_listed_syscalls_with_eperm() {
        let f = build(false, arch()).unwrap();
        let a = audit_arch(arch());
        for (name, nr) in DENIED {
            assert_eq!(
                verdict(&f, a, sys(*nr), [0; 6]),
                ret_errno(libc::EPERM),
                "{name}"
            );
            assert!(f.denied.iter().any(|d| d == name), "{name} reported");
        }
    }

    #[test]
    fn everyday_syscalls_are_allowed() {
        let f = build(true, arch()).unwrap();
        let a = audit_arch(arch());
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_close,
            libc::SYS_mmap,
            libc::SYS_futex,
            libc::SYS_epoll_pwait,
            libc::SYS_connect,
            libc::SYS_renameat2,
            libc::SYS_fsync,
        ] {
            assert_eq!(verdict(&f, a, sys(nr), [0; 6]), ALLOW, "syscall {nr}");
        }
    }

    #[test]
    fn clone_is_refused_only_with_namespace_flags() {
        let f = build(false, arch()).unwrap();
        let a = audit_arch(arch());
        let thread_flags = flag_u64(
            libc::CLONE_VM
                | libc::CLONE_FS
                | libc::CLONE_FILES
                | libc::CLONE_SIGHAND
                | libc::CLONE_THREAD
                | libc::CLONE_SYSVSEM
                | libc::CLONE_SETTLS
                | libc::CLONE_PARENT_SETTID
                | libc::CLONE_CHILD_CLEARTID,
        );
        let fork_flags =
            flag_u64(libc::SIGCHLD | libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID);
        assert_eq!(
            verdict(&f, a, sys(libc::SYS_clone), [thread_flags, 0, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(
            verdict(&f, a, sys(libc::SYS_clone), [fork_flags, 0, 0, 0, 0, 0]),
            ALLOW
        );
        for flag in CLONE_NAMESPACE_FLAGS {
            let flags = fork_flags | flag_u64(*flag);
            assert_eq!(
                verdict(&f, a, sys(libc::SYS_clone), [flags, 0, 0, 0, 0, 0]),
                ret_errno(libc::EPERM),
                "flag {flag:#x}"
            );
        }
        assert_eq!(
            verdict(&f, a, sys(libc::SYS_clone3), [0; 6]),
            ret_errno(libc::ENOSYS)
        );
    }

    #[test]
    fn inet_sockets_are_refused_only_when_asked() {
        let a = audit_arch(arch());
        let socket = sys(libc::SYS_socket);
        let inet = flag_u64(libc::AF_INET);
        let inet6 = flag_u64(libc::AF_INET6);
        let unix = flag_u64(libc::AF_UNIX);

        let open = build(false, arch()).unwrap();
        assert_eq!(verdict(&open, a, socket, [inet, 1, 0, 0, 0, 0]), ALLOW);
        assert!(!open.denied.iter().any(|d| d.starts_with("socket")));

        let closed = build(true, arch()).unwrap();
        assert_eq!(
            verdict(&closed, a, socket, [inet, 1, 0, 0, 0, 0]),
            ret_errno(libc::EACCES)
        );
        assert_eq!(
            verdict(&closed, a, socket, [inet6, 2, 0, 0, 0, 0]),
            ret_errno(libc::EACCES)
        );
        assert_eq!(verdict(&closed, a, socket, [unix, 1, 0, 0, 0, 0]), ALLOW);
        assert!(closed.denied.iter().any(|d| d == "socket(AF_INET)"));
        assert!(closed.denied.iter().any(|d| d == "socket(AF_INET6)"));
    }

    #[test]
    fn foreign_architectures_are_killed() {
        let f = build(false, arch()).unwrap();
        // AUDIT_ARCH_I386: a 32-bit `int 0x80` call on x86_64.
        assert_eq!(
            verdict(&f, 0x4000_0003, sys(libc::SYS_read), [0; 6]),
            KILL_PROCESS
        );
    }

    #[test]
    fn x32_numbers_get_enosys_on_x86_64() {
        let f = build(false, TargetArch::x86_64).unwrap();
        let x32_ptrace = i64::from(X32_SYSCALL_BIT) + 521;
        assert_eq!(
            verdict(&f, AUDIT_ARCH_X86_64, x32_ptrace, [0; 6]),
            ret_errno(libc::ENOSYS)
        );
        assert_eq!(verdict(&f, AUDIT_ARCH_X86_64, 0, [0; 6]), ALLOW);
        assert!(f.denied.iter().any(|d| d == X32_ENTRY));

        let other = build(false, TargetArch::aarch64).unwrap();
        assert!(!other.programs.iter().any(|(name, _)| *name == "x32"));
    }
}
