//! The seccomp filter, kept as reviewed data: one entry per denied call (or
//! call-with-arguments), each with a one-line justification.
//!
//! The filter is a deny list on top of the other controls (namespaces,
//! Landlock, dropped capabilities), aimed at kernel attack surface and at
//! calls that would undo the sandbox. Most entries return `EPERM` so programs
//! fail gracefully; entries whose only use is to attack the kernel kill the
//! process (`kill`). `clone3` returns `ENOSYS` because its flags live in
//! memory seccomp cannot read; libc then falls back to `clone`, whose flags
//! are filtered. A second, hand-written program refuses the x32 ABI (syscall
//! numbers with bit 30 set), which would otherwise bypass a filter keyed on
//! x86-64 numbers; other architectures' ABIs are killed by seccompiler's
//! architecture check. The `chmod`/`open`/`mknod` entries keep the agent
//! from leaving a set-user-ID or set-group-ID file in its (host) workspace.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use std::collections::BTreeMap;

/// What happens when an entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Fail with `EPERM`.
    Eperm,
    /// Fail with `ENOSYS` (so libc falls back to an older, filterable call).
    Enosys,
    /// Kill the whole process.
    Kill,
}

impl Action {
    /// Stable name, for `--explain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Eperm => "eperm",
            Action::Enosys => "enosys",
            Action::Kill => "kill",
        }
    }
}

/// Which invocations of the call an entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Args {
    /// Every invocation.
    Any,
    /// `socket(domain, ..)` with a domain other than the listed ones.
    DomainNotIn(&'static [u64]),
    /// Argument `index` with `(arg & mask) == value`, for each listed value.
    MaskedEq {
        index: u8,
        mask: u64,
        values: &'static [u64],
    },
    /// 32-bit argument `index` equal to one of the values (ioctl requests).
    Eq32 { index: u8, values: &'static [u64] },
    /// Argument `mode` carries `S_ISUID` or `S_ISGID`; with `create_flags`,
    /// only when that argument also asks to create a file (`O_CREAT` or
    /// `O_TMPFILE`), since `open` ignores the mode otherwise.
    SetIdMode { mode: u8, create_flags: Option<u8> },
}

/// One entry of the deny list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The call's name (and the argument condition, if any).
    pub label: &'static str,
    /// The syscall number on this architecture.
    pub nr: i64,
    pub args: Args,
    pub action: Action,
    /// Why this entry exists.
    pub why: &'static str,
}

impl Rule {
    /// The name shown in plans and attestations.
    pub fn name(&self) -> &'static str {
        self.label
    }
}

/// ioctl requests that push input into a terminal (asm-generic numbers).
const TIOCSTI: u64 = 0x5412;
const TIOCLINUX: u64 = 0x541C;
/// The obsolete packet socket type (libc marks the constant deprecated).
const SOCK_PACKET: u64 = 10;
const AF_UNIX: u64 = libc::AF_UNIX as u64;
const AF_INET: u64 = libc::AF_INET as u64;
const AF_INET6: u64 = libc::AF_INET6 as u64;
/// The set-user-ID and set-group-ID mode bits.
const SET_ID_BITS: &[u64] = &[libc::S_ISUID as u64, libc::S_ISGID as u64];
/// The open flags that create a file (`O_TMPFILE` without `O_DIRECTORY`).
const CREATE_FLAGS: &[u64] = &[
    libc::O_CREAT as u64,
    (libc::O_TMPFILE & !libc::O_DIRECTORY) as u64,
];
/// The file-type bits of a mode, and the device types among them.
const S_IFMT: u64 = libc::S_IFMT as u64;
const DEVICE_TYPES: &[u64] = &[libc::S_IFCHR as u64, libc::S_IFBLK as u64];
const CLONE_NS_FLAGS: &[u64] = &[
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
    0x80, // CLONE_NEWTIME
];

macro_rules! rule {
    ($label:literal, $nr:ident, $args:expr, $action:ident, $why:literal) => {
        Rule {
            label: $label,
            nr: libc::$nr as i64,
            args: $args,
            action: Action::$action,
            why: $why,
        }
    };
}

/// The deny list. Review changes here like code: every entry needs a reason.
pub const RULES: &[Rule] = &[
    rule!(
        "ptrace",
        SYS_ptrace,
        Args::Any,
        Eperm,
        "inspect or control other processes"
    ),
    rule!(
        "process_vm_readv",
        SYS_process_vm_readv,
        Args::Any,
        Eperm,
        "read another process's memory"
    ),
    rule!(
        "process_vm_writev",
        SYS_process_vm_writev,
        Args::Any,
        Eperm,
        "write another process's memory"
    ),
    rule!(
        "pidfd_getfd",
        SYS_pidfd_getfd,
        Args::Any,
        Eperm,
        "steal another process's file descriptors"
    ),
    rule!(
        "process_madvise",
        SYS_process_madvise,
        Args::Any,
        Eperm,
        "act on another process's memory"
    ),
    rule!(
        "kcmp",
        SYS_kcmp,
        Args::Any,
        Eperm,
        "probe other processes' kernel objects"
    ),
    rule!(
        "mount",
        SYS_mount,
        Args::Any,
        Eperm,
        "change the filesystem view"
    ),
    rule!(
        "umount2",
        SYS_umount2,
        Args::Any,
        Eperm,
        "uncover what the sandbox mounted over"
    ),
    rule!(
        "pivot_root",
        SYS_pivot_root,
        Args::Any,
        Eperm,
        "change the root"
    ),
    rule!("chroot", SYS_chroot, Args::Any, Eperm, "change the root"),
    rule!(
        "open_tree",
        SYS_open_tree,
        Args::Any,
        Eperm,
        "new mount API"
    ),
    rule!(
        "move_mount",
        SYS_move_mount,
        Args::Any,
        Eperm,
        "new mount API"
    ),
    rule!("fsopen", SYS_fsopen, Args::Any, Eperm, "new mount API"),
    rule!("fsconfig", SYS_fsconfig, Args::Any, Eperm, "new mount API"),
    rule!("fsmount", SYS_fsmount, Args::Any, Eperm, "new mount API"),
    rule!("fspick", SYS_fspick, Args::Any, Eperm, "new mount API"),
    rule!(
        "mount_setattr",
        SYS_mount_setattr,
        Args::Any,
        Eperm,
        "change mount flags (read-only, nosuid)"
    ),
    rule!(
        "unshare",
        SYS_unshare,
        Args::Any,
        Eperm,
        "new namespaces regain capabilities and kernel surface"
    ),
    rule!(
        "setns",
        SYS_setns,
        Args::Any,
        Eperm,
        "join another namespace"
    ),
    rule!(
        "clone(CLONE_NEW*)",
        SYS_clone,
        Args::MaskedEq {
            index: 0,
            mask: 0,
            values: CLONE_NS_FLAGS
        },
        Eperm,
        "namespace creation through clone"
    ),
    rule!(
        "clone3",
        SYS_clone3,
        Args::Any,
        Enosys,
        "flags unreadable by seccomp; libc falls back to clone"
    ),
    rule!(
        "kexec_load",
        SYS_kexec_load,
        Args::Any,
        Kill,
        "replace the running kernel"
    ),
    rule!(
        "kexec_file_load",
        SYS_kexec_file_load,
        Args::Any,
        Kill,
        "replace the running kernel"
    ),
    rule!(
        "init_module",
        SYS_init_module,
        Args::Any,
        Kill,
        "load kernel code"
    ),
    rule!(
        "finit_module",
        SYS_finit_module,
        Args::Any,
        Kill,
        "load kernel code"
    ),
    rule!(
        "delete_module",
        SYS_delete_module,
        Args::Any,
        Kill,
        "unload kernel code"
    ),
    rule!(
        "reboot",
        SYS_reboot,
        Args::Any,
        Kill,
        "reboot or halt the machine"
    ),
    rule!(
        "bpf",
        SYS_bpf,
        Args::Any,
        Eperm,
        "eBPF programs: large kernel attack surface"
    ),
    rule!(
        "perf_event_open",
        SYS_perf_event_open,
        Args::Any,
        Eperm,
        "performance counters: side channels, kernel bugs"
    ),
    rule!(
        "userfaultfd",
        SYS_userfaultfd,
        Args::Any,
        Eperm,
        "stalls kernel copies; race-exploit primitive"
    ),
    rule!(
        "keyctl",
        SYS_keyctl,
        Args::Any,
        Eperm,
        "kernel keyrings are not namespaced"
    ),
    rule!(
        "add_key",
        SYS_add_key,
        Args::Any,
        Eperm,
        "kernel keyrings are not namespaced"
    ),
    rule!(
        "request_key",
        SYS_request_key,
        Args::Any,
        Eperm,
        "kernel keyrings are not namespaced"
    ),
    rule!(
        "io_uring_setup",
        SYS_io_uring_setup,
        Args::Any,
        Eperm,
        "io_uring bypasses seccomp for its operations"
    ),
    rule!(
        "io_uring_enter",
        SYS_io_uring_enter,
        Args::Any,
        Eperm,
        "io_uring bypasses seccomp for its operations"
    ),
    rule!(
        "io_uring_register",
        SYS_io_uring_register,
        Args::Any,
        Eperm,
        "io_uring bypasses seccomp for its operations"
    ),
    rule!(
        "open_by_handle_at",
        SYS_open_by_handle_at,
        Args::Any,
        Eperm,
        "opens files by inode, escaping mounts"
    ),
    rule!(
        "name_to_handle_at",
        SYS_name_to_handle_at,
        Args::Any,
        Eperm,
        "companion of open_by_handle_at"
    ),
    rule!("swapon", SYS_swapon, Args::Any, Eperm, "system-wide swap"),
    rule!("swapoff", SYS_swapoff, Args::Any, Eperm, "system-wide swap"),
    rule!(
        "acct",
        SYS_acct,
        Args::Any,
        Eperm,
        "system-wide process accounting"
    ),
    rule!(
        "quotactl",
        SYS_quotactl,
        Args::Any,
        Eperm,
        "filesystem quotas"
    ),
    rule!(
        "syslog",
        SYS_syslog,
        Args::Any,
        Eperm,
        "kernel log leaks addresses"
    ),
    rule!("iopl", SYS_iopl, Args::Any, Eperm, "raw I/O port access"),
    rule!(
        "ioperm",
        SYS_ioperm,
        Args::Any,
        Eperm,
        "raw I/O port access"
    ),
    rule!(
        "uselib",
        SYS_uselib,
        Args::Any,
        Eperm,
        "obsolete loader entry point"
    ),
    rule!(
        "personality",
        SYS_personality,
        Args::MaskedEq {
            index: 0,
            mask: 0x0040_0000,
            values: &[0x0040_0000]
        },
        Eperm,
        "READ_IMPLIES_EXEC weakens W^X"
    ),
    rule!(
        "socket(other families)",
        SYS_socket,
        Args::DomainNotIn(&[AF_UNIX, AF_INET, AF_INET6]),
        Eperm,
        "netlink, packet, vsock, bluetooth... only UNIX/INET/INET6 are needed"
    ),
    rule!(
        "socket(SOCK_RAW|SOCK_PACKET)",
        SYS_socket,
        Args::MaskedEq {
            index: 1,
            mask: 0xf,
            values: &[libc::SOCK_RAW as u64, SOCK_PACKET]
        },
        Eperm,
        "raw sockets forge packets and bypass TCP rules"
    ),
    rule!(
        "ioctl(TIOCSTI|TIOCLINUX)",
        SYS_ioctl,
        Args::Eq32 {
            index: 1,
            values: &[TIOCSTI, TIOCLINUX]
        },
        Eperm,
        "inject keystrokes into the controlling terminal"
    ),
    // No file the agent creates or changes may become set-user-ID or
    // set-group-ID: its workspace is a host directory, and such a file, owned
    // on the host by the workspace's owner (root, when Airlock runs as root), is
    // a privilege escalation for whoever runs it there later. The workspace is
    // also mounted `nosuid`, which protects only the sandbox's view. These
    // entries cover every call that sets mode bits: `chmod` and friends, the
    // creating `open`s, and `mknod`. `mkdir` cannot set either bit (the kernel
    // keeps only the permission and sticky bits), a write clears both, `chown`
    // needs a capability the agent lacks, and file capabilities
    // (`security.capability`) need `CAP_SETFCAP`. `openat2` passes its mode in
    // memory that seccomp cannot read, so it answers `ENOSYS` and libc falls back
    // to `openat`.
    rule!(
        "chmod(S_ISUID|S_ISGID)",
        SYS_chmod,
        Args::SetIdMode {
            mode: 1,
            create_flags: None
        },
        Eperm,
        "a setuid/setgid file in the workspace runs as its host owner"
    ),
    rule!(
        "fchmod(S_ISUID|S_ISGID)",
        SYS_fchmod,
        Args::SetIdMode {
            mode: 1,
            create_flags: None
        },
        Eperm,
        "a setuid/setgid file in the workspace runs as its host owner"
    ),
    rule!(
        "fchmodat(S_ISUID|S_ISGID)",
        SYS_fchmodat,
        Args::SetIdMode {
            mode: 2,
            create_flags: None
        },
        Eperm,
        "a setuid/setgid file in the workspace runs as its host owner"
    ),
    rule!(
        "fchmodat2(S_ISUID|S_ISGID)",
        SYS_fchmodat2,
        Args::SetIdMode {
            mode: 2,
            create_flags: None
        },
        Eperm,
        "a setuid/setgid file in the workspace runs as its host owner"
    ),
    rule!(
        "open(O_CREAT, S_ISUID|S_ISGID)",
        SYS_open,
        Args::SetIdMode {
            mode: 2,
            create_flags: Some(1)
        },
        Eperm,
        "creates a setuid/setgid file (umask keeps those bits)"
    ),
    rule!(
        "openat(O_CREAT, S_ISUID|S_ISGID)",
        SYS_openat,
        Args::SetIdMode {
            mode: 3,
            create_flags: Some(2)
        },
        Eperm,
        "creates a setuid/setgid file (umask keeps those bits)"
    ),
    rule!(
        "creat(S_ISUID|S_ISGID)",
        SYS_creat,
        Args::SetIdMode {
            mode: 1,
            create_flags: None
        },
        Eperm,
        "creates a setuid/setgid file (umask keeps those bits)"
    ),
    rule!(
        "openat2",
        SYS_openat2,
        Args::Any,
        Enosys,
        "mode unreadable by seccomp; libc falls back to openat"
    ),
    rule!(
        "mknod(S_ISUID|S_ISGID)",
        SYS_mknod,
        Args::SetIdMode {
            mode: 1,
            create_flags: None
        },
        Eperm,
        "creates a setuid/setgid regular file"
    ),
    rule!(
        "mknodat(S_ISUID|S_ISGID)",
        SYS_mknodat,
        Args::SetIdMode {
            mode: 2,
            create_flags: None
        },
        Eperm,
        "creates a setuid/setgid regular file"
    ),
    rule!(
        "mknod(S_IFCHR|S_IFBLK)",
        SYS_mknod,
        Args::MaskedEq {
            index: 1,
            mask: S_IFMT,
            values: DEVICE_TYPES
        },
        Eperm,
        "device nodes: the host would honour them outside the nodev mount"
    ),
    rule!(
        "mknodat(S_IFCHR|S_IFBLK)",
        SYS_mknodat,
        Args::MaskedEq {
            index: 2,
            mask: S_IFMT,
            values: DEVICE_TYPES
        },
        Eperm,
        "device nodes: the host would honour them outside the nodev mount"
    ),
];

/// A rule failed to compile (a bug in [`RULES`]).
#[derive(Debug, thiserror::Error)]
#[error("seccomp filter does not compile: {0}")]
pub struct CompileError(String);

/// The compiled filters, installed in order.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// One BPF program per action, plus the x32 guard.
    pub programs: Vec<BpfProgram>,
}

impl Compiled {
    /// SHA-256 over every instruction of every program, hex.
    pub fn digest_hex(&self) -> String {
        let mut bytes = Vec::new();
        for prog in &self.programs {
            for ins in prog {
                bytes.extend_from_slice(&ins.code.to_le_bytes());
                bytes.push(ins.jt);
                bytes.push(ins.jf);
                bytes.extend_from_slice(&ins.k.to_le_bytes());
            }
            bytes.extend_from_slice(b"--");
        }
        hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &bytes,
        ))
    }
}

fn cond(
    index: u8,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, CompileError> {
    SeccompCondition::new(index, len, op, value).map_err(|e| CompileError(e.to_string()))
}

fn rules_for(args: Args) -> Result<Vec<SeccompRule>, CompileError> {
    let mk =
        |c: Vec<SeccompCondition>| SeccompRule::new(c).map_err(|e| CompileError(e.to_string()));
    match args {
        Args::Any => Ok(Vec::new()),
        Args::DomainNotIn(allowed) => {
            let conds = allowed
                .iter()
                .map(|v| cond(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, *v))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(vec![mk(conds)?])
        }
        Args::MaskedEq {
            index,
            mask,
            values,
        } => values
            .iter()
            .map(|v| {
                let m = if mask == 0 { *v } else { mask };
                mk(vec![cond(
                    index,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(m),
                    *v,
                )?])
            })
            .collect(),
        Args::SetIdMode { mode, create_flags } => {
            let mut out = Vec::new();
            for bit in SET_ID_BITS {
                let has_bit = cond(
                    mode,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(*bit),
                    *bit,
                )?;
                match create_flags {
                    None => out.push(mk(vec![has_bit])?),
                    Some(flags) => {
                        for f in CREATE_FLAGS {
                            let creates = cond(
                                flags,
                                SeccompCmpArgLen::Qword,
                                SeccompCmpOp::MaskedEq(*f),
                                *f,
                            )?;
                            out.push(mk(vec![has_bit.clone(), creates])?);
                        }
                    }
                }
            }
            Ok(out)
        }
        Args::Eq32 { index, values } => values
            .iter()
            .map(|v| {
                mk(vec![cond(
                    index,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::Eq,
                    *v,
                )?])
            })
            .collect(),
    }
}

fn arch() -> Result<seccompiler::TargetArch, CompileError> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|e: seccompiler::BackendError| CompileError(e.to_string()))
}

/// Compile [`RULES`] into BPF programs. Pure.
pub fn compile() -> Result<Compiled, CompileError> {
    let mut programs = Vec::new();
    for (action, on_match) in [
        (Action::Kill, SeccompAction::KillProcess),
        (Action::Eperm, SeccompAction::Errno(libc::EPERM as u32)),
        (Action::Enosys, SeccompAction::Errno(libc::ENOSYS as u32)),
    ] {
        let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for r in RULES.iter().filter(|r| r.action == action) {
            let mut rules = rules_for(r.args)?;
            let entry = map.entry(r.nr).or_default();
            if rules.is_empty() && !entry.is_empty() {
                return Err(CompileError(format!(
                    "{}: unconditional entry mixed with conditional ones",
                    r.label
                )));
            }
            entry.append(&mut rules);
        }
        let filter = SeccompFilter::new(map, SeccompAction::Allow, on_match, arch()?)
            .map_err(|e| CompileError(e.to_string()))?;
        programs.push(BpfProgram::try_from(filter).map_err(|e| CompileError(e.to_string()))?);
    }
    if let Some(guard) = x32_guard() {
        programs.push(guard);
    }
    Ok(Compiled { programs })
}

/// On x86-64: refuse x32-ABI syscall numbers (bit 30 set) with EPERM.
#[cfg(target_arch = "x86_64")]
fn x32_guard() -> Option<BpfProgram> {
    use seccompiler::sock_filter;
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    let ins = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    Some(vec![
        ins(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        ins(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        ins(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        ins(JGE_K, 0, 1, 0x4000_0000),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ])
}

#[cfg(not(target_arch = "x86_64"))]
fn x32_guard() -> Option<BpfProgram> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_compiles_and_digest_is_stable() {
        let a = compile().expect("compiles");
        let b = compile().expect("compiles");
        assert_eq!(a.digest_hex(), b.digest_hex());
        assert_eq!(
            a.programs.len(),
            if cfg!(target_arch = "x86_64") { 4 } else { 3 }
        );
    }

    #[test]
    fn every_entry_is_justified_and_the_issue_list_is_covered() {
        for r in RULES {
            assert!(!r.why.is_empty(), "{} has no justification", r.label);
        }
        let names: Vec<&str> = RULES.iter().map(|r| r.label).collect();
        for required in [
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "mount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "kexec_load",
            "init_module",
            "finit_module",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "keyctl",
            "add_key",
            "request_key",
            "io_uring_setup",
            "open_by_handle_at",
            "reboot",
            "swapon",
            "acct",
            "ioctl(TIOCSTI|TIOCLINUX)",
            "socket(other families)",
            "socket(SOCK_RAW|SOCK_PACKET)",
            "chmod(S_ISUID|S_ISGID)",
            "fchmod(S_ISUID|S_ISGID)",
            "fchmodat(S_ISUID|S_ISGID)",
            "fchmodat2(S_ISUID|S_ISGID)",
            "open(O_CREAT, S_ISUID|S_ISGID)",
            "openat(O_CREAT, S_ISUID|S_ISGID)",
            "creat(S_ISUID|S_ISGID)",
            "openat2",
            "mknod(S_ISUID|S_ISGID)",
            "mknodat(S_ISUID|S_ISGID)",
        ] {
            assert!(
                names.contains(&required),
                "{required} missing from the deny list"
            );
        }
    }
}
