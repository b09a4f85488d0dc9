//! The apply step: executes a [`SandboxPlan`] inside the init, one step per
//! system call, each with its own error variant naming the control.

use crate::attest::{CapsReport, InitAttestation, LandlockReport, SeccompReport};
use crate::plan::{FileContents, FsAccess, MountStep, RlimitKind, SandboxPlan};
use crate::{seccomp, sys};
use landlock::{
    ABI, Access, AccessFs, AccessNet, NetPort, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::CloneFlags;
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// Where the host's root stays reachable while the new root is built.
const OLD_ROOT: &str = "/.oldroot";
/// Where the new root's tmpfs is mounted before `pivot_root`.
const NEW_ROOT: &str = "/tmp";

/// A control could not be applied. Each variant is one step.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("mark inherited file descriptors close-on-exec: {0}")]
    CloseFds(io::Error),
    #[error("read the sandbox plan: {0}")]
    ReadPlan(String),
    #[error("set the parent-death signal: {0}")]
    ParentDeathSignal(io::Error),
    #[error(
        "unshare namespaces: {0} (user namespaces disabled? check /proc/sys/user/max_user_namespaces and kernel.apparmor_restrict_unprivileged_userns)"
    )]
    Unshare(nix::Error),
    #[error("write {file}: {error}")]
    IdMap {
        file: &'static str,
        error: io::Error,
    },
    #[error("drop supplementary groups: {0}")]
    Groups(nix::Error),
    #[error("write the id maps from the host's user namespace: {0}")]
    MapHelper(String),
    #[error("become uid {uid} gid {gid} inside: {error}")]
    SetIds {
        uid: u32,
        gid: u32,
        error: nix::Error,
    },
    #[error("attach {}: {error}", path.display())]
    Attach { path: PathBuf, error: String },
    #[error("bring loopback up: {0}")]
    LoopbackUp(io::Error),
    #[error("bind the proxy listener on 127.0.0.1:{port}: {error}")]
    BindListener { port: u16, error: io::Error },
    #[error("pass the proxy listener to the supervisor: {0}")]
    SendListener(String),
    #[error("block signals: {0}")]
    Signals(io::Error),
    #[error("fork pid 1 of the new PID namespace: {0}")]
    Fork(io::Error),
    #[error("start a new session: {0}")]
    SetSid(nix::Error),
    #[error("make the mount tree private: {0}")]
    MountPrivate(nix::Error),
    #[error("{step} {}: {error}", path.display())]
    Mount {
        step: &'static str,
        path: PathBuf,
        error: String,
    },
    #[error("pivot_root into the new root: {0}")]
    PivotRoot(nix::Error),
    #[error("detach the host root: {0}")]
    DetachHost(String),
    #[error("change directory to {}: {error}", path.display())]
    Chdir { path: PathBuf, error: io::Error },
    #[error("set the host name: {0}")]
    Hostname(nix::Error),
    #[error("setrlimit {kind:?}: {error}")]
    Rlimit { kind: RlimitKind, error: nix::Error },
    #[error("mark the init not dumpable: {0}")]
    Dumpable(io::Error),
    #[error("set no_new_privs: {0}")]
    NoNewPrivs(nix::Error),
    #[error(
        "kernel Landlock ABI is {have}, this sandbox needs at least {need} (upgrade the kernel, enable Landlock with lsm=...,landlock, or lower sandbox.min_landlock_abi)"
    )]
    LandlockUnavailable { have: i32, need: u8 },
    #[error("{0}")]
    Landlock(String),
    #[error("drop capabilities: {0}")]
    Capabilities(String),
    #[error("install the seccomp filter: {0}")]
    Seccomp(String),
    #[error("command {command:?} could not be started: {error}")]
    Exec { command: String, error: io::Error },
}

impl ApplyError {
    /// The control this step belongs to, named in the refusal message.
    pub fn control(&self) -> &'static str {
        use ApplyError::*;
        match self {
            CloseFds(_) | ParentDeathSignal(_) | Signals(_) | Fork(_) | SetSid(_) | Dumpable(_) => {
                "process"
            }
            ReadPlan(_) => "plan",
            Unshare(_) | IdMap { .. } | Groups(_) | MapHelper(_) | SetIds { .. } => "namespaces",
            LoopbackUp(_) | BindListener { .. } | SendListener(_) => "network",
            MountPrivate(_)
            | Mount { .. }
            | Attach { .. }
            | PivotRoot(_)
            | DetachHost(_)
            | Chdir { .. } => "filesystem",
            Hostname(_) => "uts",
            Rlimit { .. } => "rlimits",
            NoNewPrivs(_) => "no_new_privs",
            LandlockUnavailable { .. } | Landlock(_) => "landlock",
            Capabilities(_) => "capabilities",
            Seccomp(_) => "seccomp",
            Exec { .. } => "command",
        }
    }
}

// --- stage 1 --------------------------------------------------------------

/// The detached mounts stage 1 prepared on the host, one slot per plan step.
pub type Prepared = Vec<Option<OwnedFd>>;

fn attach_err(path: &Path, error: impl std::fmt::Display) -> ApplyError {
    ApplyError::Attach {
        path: path.to_owned(),
        error: error.to_string(),
    }
}

/// Stage 1, still holding host privileges: open every id-mapped
/// [`MountStep::Attach`] source (no symlinks followed), check its owner is
/// the one the plan maps, clone it as a detached mount and id-map it
/// `nosuid,nodev`. Id-mapping needs `CAP_SYS_ADMIN` over the file system,
/// which only the host's user namespace has.
pub fn prepare_mounts(plan: &SandboxPlan) -> Result<Prepared, ApplyError> {
    let mut out = Vec::with_capacity(plan.mounts.len());
    for step in &plan.mounts {
        let MountStep::Attach {
            source,
            idmap: Some(m),
            ..
        } = step
        else {
            out.push(None);
            continue;
        };
        let fd = sys::open_path_no_symlinks(source).map_err(|e| attach_err(source, e))?;
        let st = nix::sys::stat::fstat(&fd).map_err(|e| attach_err(source, e))?;
        if (st.st_uid, st.st_gid) != (m.host_uid, m.host_gid) {
            return Err(attach_err(
                source,
                format!(
                    "owner changed since the plan (uid {} gid {}, planned {} {})",
                    st.st_uid, st.st_gid, m.host_uid, m.host_gid
                ),
            ));
        }
        let tree = sys::clone_tree(fd.as_fd()).map_err(|e| attach_err(source, e))?;
        let userns = idmap_userns(
            &format!("{} {} 1", m.host_uid, m.agent_uid),
            &format!("{} {} 1", m.host_gid, m.agent_gid),
        )
        .map_err(|e| attach_err(source, format!("id-mapping user namespace: {e}")))?;
        sys::set_mount_attrs(
            tree.as_fd(),
            libc::MOUNT_ATTR_IDMAP | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
            Some(userns.as_fd()),
        )
        .map_err(|e| {
            attach_err(
                source,
                format!(
                    "id-mapped mount: {e} (the file system must support id-mapped mounts: ext4, xfs, btrfs, tmpfs, overlayfs...)"
                ),
            )
        })?;
        out.push(Some(tree));
    }
    Ok(out)
}

/// A user namespace whose only mappings are `uid_map`/`gid_map`, for an
/// id-mapped mount: a forked helper unshares it, we (privileged on the host)
/// write its maps and keep a descriptor of it, and the helper exits.
fn idmap_userns(uid_map: &str, gid_map: &str) -> Result<OwnedFd, String> {
    use nix::fcntl::OFlag;
    let (ready_r, ready_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let (hold_r, hold_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    match sys::fork().map_err(|e| e.to_string())? {
        sys::Forked::Child => {
            drop(ready_r);
            drop(hold_w);
            let code = match nix::sched::unshare(CloneFlags::CLONE_NEWUSER) {
                Ok(()) => {
                    let _ = nix::unistd::write(&ready_w, &[1]);
                    // Live until the parent has the namespace (EOF).
                    let _ = nix::unistd::read(&hold_r, &mut [0u8; 1]);
                    0
                }
                Err(_) => 1,
            };
            sys::exit_now(code)
        }
        sys::Forked::Parent(pid) => {
            drop(ready_w);
            drop(hold_r);
            let result = (|| {
                let mut b = [0u8; 1];
                if nix::unistd::read(&ready_r, &mut b) != Ok(1) {
                    return Err("the helper could not create a user namespace".to_owned());
                }
                let proc = PathBuf::from(format!("/proc/{pid}"));
                std::fs::write(proc.join("uid_map"), uid_map)
                    .map_err(|e| format!("uid_map {uid_map:?}: {e}"))?;
                std::fs::write(proc.join("gid_map"), gid_map)
                    .map_err(|e| format!("gid_map {gid_map:?}: {e}"))?;
                std::fs::File::open(proc.join("ns/user"))
                    .map(OwnedFd::from)
                    .map_err(|e| format!("open its ns/user: {e}"))
            })();
            drop(hold_w);
            let _ = waitpid(Pid::from_raw(pid), None);
            result
        }
    }
}

/// A forked helper, still in the host's user namespace, that writes our
/// uid/gid maps once we have unshared: mapping the agent to a uid other than
/// our own needs a process privileged in the parent namespace.
struct MapWriter {
    pid: libc::pid_t,
    go: OwnedFd,
    done: OwnedFd,
}

impl MapWriter {
    fn start(uid_map: &str, gid_map: &str) -> Result<MapWriter, ApplyError> {
        use nix::fcntl::OFlag;
        let e = |e: nix::Error| ApplyError::MapHelper(e.to_string());
        let me = nix::unistd::getpid();
        let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(e)?;
        let (done_r, done_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(e)?;
        match sys::fork().map_err(|e| ApplyError::MapHelper(e.to_string()))? {
            sys::Forked::Child => {
                drop(go_w);
                drop(done_r);
                let mut b = [0u8; 1];
                let proc = PathBuf::from(format!("/proc/{me}"));
                let ok = nix::unistd::read(&go_r, &mut b) == Ok(1)
                    && std::fs::write(proc.join("uid_map"), uid_map).is_ok()
                    && std::fs::write(proc.join("gid_map"), gid_map).is_ok()
                    && nix::unistd::write(&done_w, &[1]) == Ok(1);
                sys::exit_now(if ok { 0 } else { 1 })
            }
            sys::Forked::Parent(pid) => Ok(MapWriter {
                pid,
                go: go_w,
                done: done_r,
            }),
        }
    }

    /// Tell the helper we have unshared; wait until it wrote the maps.
    fn finish(self) -> Result<(), ApplyError> {
        let sent = nix::unistd::write(&self.go, &[1]) == Ok(1);
        drop(self.go);
        let mut b = [0u8; 1];
        let done = sent && nix::unistd::read(&self.done, &mut b) == Ok(1);
        let _ = waitpid(Pid::from_raw(self.pid), None);
        if done {
            Ok(())
        } else {
            Err(ApplyError::MapHelper(
                "the helper could not write /proc/<init>/uid_map or gid_map".into(),
            ))
        }
    }
}

/// Unshare every namespace, map the sandbox user to the plan's host
/// identity and become it. As root, supplementary groups are dropped first
/// and a helper left on the host writes the maps.
pub fn namespaces(plan: &SandboxPlan, att: &mut InitAttestation) -> Result<(), ApplyError> {
    use crate::plan::Namespace as N;
    let mut flags = CloneFlags::empty();
    for ns in &plan.namespaces {
        flags |= match ns {
            N::User => CloneFlags::CLONE_NEWUSER,
            N::Mount => CloneFlags::CLONE_NEWNS,
            N::Pid => CloneFlags::CLONE_NEWPID,
            N::Ipc => CloneFlags::CLONE_NEWIPC,
            N::Uts => CloneFlags::CLONE_NEWUTS,
            N::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            N::Net => CloneFlags::CLONE_NEWNET,
        };
    }
    let uid_map = format!("{} {} 1", plan.inside_uid, plan.outside_uid);
    let gid_map = format!("{} {} 1", plan.inside_gid, plan.outside_gid);
    let (euid, egid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    if euid == 0 {
        nix::unistd::setgroups(&[]).map_err(ApplyError::Groups)?;
    }
    let helper = if (euid, egid) == (plan.outside_uid, plan.outside_gid) {
        None
    } else {
        Some(MapWriter::start(&uid_map, &gid_map)?)
    };
    nix::sched::unshare(flags).map_err(ApplyError::Unshare)?;
    let write = |file: &'static str, text: &str| {
        std::fs::write(file, text).map_err(|error| ApplyError::IdMap { file, error })
    };
    write("/proc/self/setgroups", "deny")?;
    match helper {
        Some(h) => h.finish()?,
        None => {
            write("/proc/self/uid_map", &uid_map)?;
            write("/proc/self/gid_map", &gid_map)?;
        }
    }
    // Become the sandbox user now: everything created from here on (the new
    // root's files) is its, and no step below runs as host root. The
    // capabilities of the new namespace stay: its root (uid 0) is unmapped,
    // so this is not a change away from root.
    let (uid, gid) = (plan.inside_uid, plan.inside_gid);
    let set = |error| ApplyError::SetIds { uid, gid, error };
    let g = nix::unistd::Gid::from_raw(gid);
    nix::unistd::setresgid(g, g, g).map_err(set)?;
    let u = nix::unistd::Uid::from_raw(uid);
    nix::unistd::setresuid(u, u, u).map_err(set)?;
    att.namespaces = plan.namespaces.clone();
    att.uid_map = uid_map;
    att.gid_map = gid_map;
    Ok(())
}

/// Bring loopback up and bind the proxy listener inside the new network namespace.
pub fn network(plan: &SandboxPlan, att: &mut InitAttestation) -> Result<TcpListener, ApplyError> {
    sys::loopback_up().map_err(ApplyError::LoopbackUp)?;
    let port = plan.network.proxy_port;
    let l = TcpListener::bind(("127.0.0.1", port))
        .map_err(|error| ApplyError::BindListener { port, error })?;
    att.network = format!(
        "own network namespace, loopback only; proxy listener 127.0.0.1:{port} held by the supervisor"
    );
    Ok(l)
}

// --- pid 1 ----------------------------------------------------------------

/// Everything pid 1 applies before it runs the agent, in order.
pub fn inside(
    plan: &SandboxPlan,
    prepared: Prepared,
    att: &mut InitAttestation,
) -> Result<(), ApplyError> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| ApplyError::ParentDeathSignal(e.into()))?;
    // No controlling terminal: closes the TIOCSTI / job-control channel to the host's shell.
    nix::unistd::setsid().map_err(ApplyError::SetSid)?;
    filesystem(plan, prepared, att)?;
    nix::unistd::sethostname(&plan.hostname).map_err(ApplyError::Hostname)?;
    std::env::set_current_dir(&plan.cwd).map_err(|error| ApplyError::Chdir {
        path: plan.cwd.clone(),
        error,
    })?;
    rlimits(plan, att)?;
    sys::set_not_dumpable().map_err(ApplyError::Dumpable)?;
    nix::sys::prctl::set_no_new_privs().map_err(ApplyError::NoNewPrivs)?;
    att.no_new_privs = true;
    landlock(plan, att)?;
    capabilities(att)?;
    seccomp_filter(plan, att)?;
    Ok(())
}

/// Start the agent with exactly the plan's environment.
pub fn spawn_agent(plan: &SandboxPlan) -> Result<Child, ApplyError> {
    let (cmd, args) = plan.argv.split_first().ok_or_else(|| ApplyError::Exec {
        command: String::new(),
        error: io::Error::new(io::ErrorKind::InvalidInput, "empty command"),
    })?;
    let mut command = Command::new(cmd);
    command
        .args(args)
        .env_clear()
        .envs(&plan.env)
        .current_dir(&plan.cwd);
    sys::unblock_signals_on_exec(&mut command);
    command.spawn().map_err(|error| ApplyError::Exec {
        command: cmd.clone(),
        error,
    })
}

fn host(p: &Path) -> PathBuf {
    Path::new(OLD_ROOT).join(p.strip_prefix("/").unwrap_or(p))
}

fn merr(step: &'static str, path: &Path, error: impl std::fmt::Display) -> ApplyError {
    ApplyError::Mount {
        step,
        path: path.to_owned(),
        error: error.to_string(),
    }
}

/// Flags a user namespace may not clear on a remount (the kernel "locks"
/// them), read from the mount as it is.
fn locked_flags(path: &Path) -> Result<MsFlags, ApplyError> {
    let st = statvfs(path).map_err(|e| merr("statvfs", path, e))?;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    Ok(out)
}

fn mkdirs(path: &Path) -> Result<(), ApplyError> {
    std::fs::create_dir_all(path).map_err(|e| merr("create directory", path, e))
}

fn make_file(path: &Path) -> Result<(), ApplyError> {
    if let Some(parent) = path.parent() {
        mkdirs(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| merr("create file", path, e))?;
    Ok(())
}

fn bind(source: &Path, target: &Path, extra: MsFlags) -> Result<(), ApplyError> {
    let src = host(source);
    let meta = std::fs::metadata(&src).map_err(|e| merr("bind source", source, e))?;
    if meta.is_dir() {
        mkdirs(target)?
    } else {
        make_file(target)?
    }
    mount(
        Some(&src),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| merr("bind mount", target, e))?;
    let flags = locked_flags(target)? | extra;
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
        None::<&str>,
    )
    .map_err(|e| merr("remount", target, e))
}

fn filesystem(
    plan: &SandboxPlan,
    mut prepared: Prepared,
    att: &mut InitAttestation,
) -> Result<(), ApplyError> {
    let none = None::<&str>;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(ApplyError::MountPrivate)?;
    let base = Path::new(NEW_ROOT);
    mount(
        Some("tmpfs"),
        base,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=1m,mode=0755"),
    )
    .map_err(|e| merr("mount tmpfs", base, e))?;
    let put_old = base.join(OLD_ROOT.trim_start_matches('/'));
    mkdirs(&put_old)?;
    nix::unistd::pivot_root(base, &put_old).map_err(ApplyError::PivotRoot)?;
    std::env::set_current_dir("/").map_err(|error| ApplyError::Chdir {
        path: "/".into(),
        error,
    })?;

    for (i, step) in plan.mounts.iter().enumerate() {
        match step {
            MountStep::Tmpfs {
                target,
                size_bytes,
                mode,
            } => {
                mkdirs(target)?;
                let opts = format!("size={size_bytes},mode={mode:o}");
                mount(
                    Some("tmpfs"),
                    target,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(opts.as_str()),
                )
                .map_err(|e| merr("mount tmpfs", target, e))?;
            }
            MountStep::Bind {
                source,
                target,
                writable,
            } => {
                let mut extra = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                if !writable {
                    extra |= MsFlags::MS_RDONLY;
                }
                bind(source, target, extra)?;
            }
            MountStep::Attach {
                source,
                target,
                idmap,
            } => {
                let tree = match prepared.get_mut(i).and_then(Option::take) {
                    Some(t) => t,
                    None if idmap.is_some() => {
                        return Err(attach_err(
                            source,
                            "stage 1 did not prepare the id-mapped mount",
                        ));
                    }
                    None => {
                        let fd = sys::open_path_no_symlinks(&host(source))
                            .map_err(|e| attach_err(source, e))?;
                        let t = sys::clone_tree(fd.as_fd()).map_err(|e| attach_err(source, e))?;
                        sys::set_mount_attrs(
                            t.as_fd(),
                            libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
                            None,
                        )
                        .map_err(|e| attach_err(source, e))?;
                        t
                    }
                };
                let st = nix::sys::stat::fstat(&tree).map_err(|e| attach_err(source, e))?;
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    mkdirs(target)?;
                } else {
                    make_file(target)?;
                }
                sys::move_mount(tree.as_fd(), target).map_err(|e| attach_err(target, e))?;
            }
            MountStep::Device { source, target } => {
                bind(source, target, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC)?
            }
            MountStep::Proc { target } => {
                mkdirs(target)?;
                let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
                mount(Some("proc"), target, Some("proc"), flags, none)
                    .map_err(|e| merr("mount proc", target, e))?;
            }
            MountStep::Devpts { target } => {
                mkdirs(target)?;
                mount(
                    Some("devpts"),
                    target,
                    Some("devpts"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                    Some("newinstance,ptmxmode=0666,mode=0620"),
                )
                .map_err(|e| merr("mount devpts", target, e))?;
            }
            MountStep::Symlink { link, points_to } => {
                if let Some(parent) = link.parent() {
                    mkdirs(parent)?;
                }
                std::os::unix::fs::symlink(points_to, link)
                    .map_err(|e| merr("symlink", link, e))?;
            }
            MountStep::File {
                target,
                contents,
                mode,
            } => {
                if let Some(parent) = target.parent() {
                    mkdirs(parent)?;
                }
                let bytes = match contents {
                    FileContents::Text { text } => text.clone().into_bytes(),
                    FileContents::CaBundle {
                        host_bundle,
                        extra_pem,
                    } => {
                        let mut b = match host_bundle {
                            Some(h) => {
                                std::fs::read(host(h)).map_err(|e| merr("read CA bundle", h, e))?
                            }
                            None => Vec::new(),
                        };
                        if !b.is_empty() && !b.ends_with(b"\n") {
                            b.push(b'\n');
                        }
                        b.extend_from_slice(extra_pem.as_bytes());
                        b
                    }
                };
                std::fs::write(target, bytes).map_err(|e| merr("write file", target, e))?;
                std::fs::set_permissions(target, std::fs::Permissions::from_mode(*mode))
                    .map_err(|e| merr("chmod", target, e))?;
            }
            MountStep::DetachHost => {
                let old = Path::new(OLD_ROOT);
                umount2(old, MntFlags::MNT_DETACH)
                    .map_err(|e| ApplyError::DetachHost(e.to_string()))?;
                std::fs::remove_dir(old).map_err(|e| ApplyError::DetachHost(e.to_string()))?;
            }
            MountStep::ReadOnly { target } => {
                let flags = locked_flags(target)?
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV;
                mount(
                    none,
                    target,
                    none,
                    MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
                    none,
                )
                .map_err(|e| merr("remount read-only", target, e))?;
            }
        }
    }
    att.mount_steps = plan.mounts.len();
    Ok(())
}

fn rlimits(plan: &SandboxPlan, att: &mut InitAttestation) -> Result<(), ApplyError> {
    use nix::sys::resource::{Resource, setrlimit};
    for r in &plan.rlimits {
        let res = match r.kind {
            RlimitKind::Core => Resource::RLIMIT_CORE,
            RlimitKind::Fsize => Resource::RLIMIT_FSIZE,
            RlimitKind::Nofile => Resource::RLIMIT_NOFILE,
        };
        setrlimit(res, r.value, r.value).map_err(|error| ApplyError::Rlimit {
            kind: r.kind,
            error,
        })?;
    }
    att.rlimits = plan.rlimits.clone();
    Ok(())
}

fn ll(what: &str, e: impl std::fmt::Display) -> ApplyError {
    ApplyError::Landlock(format!("{what}: {e}"))
}

fn landlock(plan: &SandboxPlan, att: &mut InitAttestation) -> Result<(), ApplyError> {
    let kabi = sys::landlock_abi();
    let lp = &plan.landlock;
    att.landlock.kernel_abi = kabi;
    if kabi < i32::from(lp.min_abi) {
        if plan.allow_weaker {
            let why = format!(
                "landlock: skipped (kernel ABI {kabi} < required {})",
                lp.min_abi
            );
            att.landlock.status = why.clone();
            att.skipped.push(why);
            return Ok(());
        }
        return Err(ApplyError::LandlockUnavailable {
            have: kabi,
            need: lp.min_abi,
        });
    }
    let abi = ABI::from(kabi);
    let mut rs = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| ll("handle fs access", e))?;
    let net = abi >= ABI::V4;
    if net {
        rs = rs
            .handle_access(AccessNet::ConnectTcp)
            .map_err(|e| ll("handle tcp connect", e))?;
    } else if !plan.allow_weaker {
        return Err(ApplyError::LandlockUnavailable {
            have: kabi,
            need: 4,
        });
    }
    let mut scopes = Vec::new();
    if abi >= ABI::V6 {
        if lp.scope_abstract_unix {
            rs = rs
                .scope(Scope::AbstractUnixSocket)
                .map_err(|e| ll("scope abstract unix sockets", e))?;
            scopes.push("abstract_unix_socket".to_owned());
        }
        if lp.scope_signals {
            rs = rs
                .scope(Scope::Signal)
                .map_err(|e| ll("scope signals", e))?;
            scopes.push("signal".to_owned());
        }
    }
    let mut created = rs.create().map_err(|e| ll("create ruleset", e))?;
    for rule in &lp.fs {
        let is_dir = std::fs::metadata(&rule.path)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        let file_rights = AccessFs::from_file(abi);
        let read = AccessFs::ReadFile | AccessFs::ReadDir;
        let access = match rule.access {
            FsAccess::List => AccessFs::ReadDir.into(),
            FsAccess::Read => read,
            FsAccess::ReadExec => AccessFs::from_read(abi),
            FsAccess::Device => (file_rights & !AccessFs::Execute) | AccessFs::ReadDir,
            FsAccess::ReadWrite => AccessFs::from_all(abi),
        };
        let access = if is_dir { access } else { access & file_rights };
        let fd =
            PathFd::new(&rule.path).map_err(|e| ll(&format!("open {}", rule.path.display()), e))?;
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| ll(&format!("add rule for {}", rule.path.display()), e))?;
    }
    if net {
        for port in &lp.connect_tcp {
            created = created
                .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
                .map_err(|e| ll(&format!("add tcp connect rule for port {port}"), e))?;
        }
    }
    let status = created
        .restrict_self()
        .map_err(|e| ll("restrict self", e))?;
    if status.ruleset != RulesetStatus::FullyEnforced && !plan.allow_weaker {
        return Err(ll(
            "enforcement",
            format!("ruleset only {:?}", status.ruleset),
        ));
    }
    att.landlock = LandlockReport {
        kernel_abi: kabi,
        status: match status.ruleset {
            RulesetStatus::FullyEnforced => "fully_enforced".to_owned(),
            RulesetStatus::PartiallyEnforced => "partially_enforced".to_owned(),
            RulesetStatus::NotEnforced => "not_enforced".to_owned(),
        },
        fs_rules: lp.fs.len(),
        connect_tcp: if net {
            lp.connect_tcp.clone()
        } else {
            Vec::new()
        },
        scopes,
    };
    Ok(())
}

fn capabilities(att: &mut InitAttestation) -> Result<(), ApplyError> {
    use caps::CapSet;
    let e = |what: &str, err: caps::errors::CapsError| {
        ApplyError::Capabilities(format!("{what}: {err}"))
    };
    for cap in caps::runtime::thread_all_supported() {
        caps::drop(None, CapSet::Bounding, cap).map_err(|err| e("bounding set", err))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|err| e("ambient set", err))?;
    caps::clear(None, CapSet::Inheritable).map_err(|err| e("inheritable set", err))?;
    caps::clear(None, CapSet::Effective).map_err(|err| e("effective set", err))?;
    caps::clear(None, CapSet::Permitted).map_err(|err| e("permitted set", err))?;
    let read = |set: CapSet, what: &str| -> Result<Vec<String>, ApplyError> {
        let mut v: Vec<String> = caps::read(None, set)
            .map_err(|err| e(what, err))?
            .into_iter()
            .map(|c| c.to_string())
            .collect();
        v.sort();
        Ok(v)
    };
    let report = CapsReport {
        effective: read(CapSet::Effective, "read effective")?,
        permitted: read(CapSet::Permitted, "read permitted")?,
        inheritable: read(CapSet::Inheritable, "read inheritable")?,
        ambient: read(CapSet::Ambient, "read ambient")?,
        bounding: read(CapSet::Bounding, "read bounding")?,
    };
    let all_empty = [
        &report.effective,
        &report.permitted,
        &report.inheritable,
        &report.ambient,
        &report.bounding,
    ]
    .iter()
    .all(|s| s.is_empty());
    if !all_empty {
        return Err(ApplyError::Capabilities(format!(
            "capabilities remain after dropping: {report:?}"
        )));
    }
    att.capabilities = report;
    Ok(())
}

fn seccomp_filter(plan: &SandboxPlan, att: &mut InitAttestation) -> Result<(), ApplyError> {
    let compiled = seccomp::compile().map_err(|e| ApplyError::Seccomp(e.to_string()))?;
    let digest = compiled.digest_hex();
    if digest != plan.seccomp_digest {
        return Err(ApplyError::Seccomp(format!(
            "filter digest {digest} differs from the plan's {}",
            plan.seccomp_digest
        )));
    }
    for prog in &compiled.programs {
        seccompiler::apply_filter(prog).map_err(|e| ApplyError::Seccomp(e.to_string()))?;
    }
    att.seccomp = SeccompReport {
        digest,
        rules: seccomp::RULES.len(),
        programs: compiled.programs.len(),
    };
    Ok(())
}
