//! The supervisor side: preflight checks, cgroups, spawning the init by
//! re-executing our own binary, receiving the proxy listener and the
//! attestation, and waiting for the end.

use crate::attest::Attestation;
use crate::cgroup::{self, Cgroup, CgroupError, Layout, Peaks};
use crate::init::INIT_ENV;
use crate::plan::{MountStep, SandboxPlan, StdinSource};
use crate::proto::{self, InitMessage, ProtoError};
use crate::sys;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use serde::{Deserialize, Serialize};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the init may take to set everything up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The sandbox could not be started or waited for.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("user namespaces are not available: {0}")]
    UserNamespaces(String),
    #[error(
        "kernel Landlock ABI is {have}, the sandbox needs at least {need} (use Linux >= 6.12 with Landlock enabled, lower sandbox.min_landlock_abi, or for development only pass --dangerously-allow-weaker-sandbox)"
    )]
    Landlock { have: i32, need: u8 },
    #[error("cgroups: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("create the control socket: {0}")]
    Socketpair(nix::Error),
    #[error("start the sandbox init {}: {error}", exe.display())]
    SpawnInit { exe: PathBuf, error: std::io::Error },
    #[error("send the plan to the sandbox init: {0}")]
    SendPlan(ProtoError),
    #[error("sandbox init: {0}")]
    Protocol(ProtoError),
    #[error("sandbox init did not pass the proxy listener")]
    NoListener,
    #[error("{control}: {error}")]
    Control { control: String, error: String },
    #[error("sandbox init exited before the command started ({0})")]
    InitDied(String),
    #[error("wait for the sandbox: {0}")]
    Wait(std::io::Error),
    #[error("cannot measure the file system of {0}")]
    WriteLimit(String),
}

impl SandboxError {
    /// The control that failed, for the refusal message and the audit record.
    pub fn control(&self) -> &str {
        match self {
            SandboxError::UserNamespaces(_) => "namespaces",
            SandboxError::Landlock { .. } => "landlock",
            SandboxError::Cgroup(_) => "cgroups",
            SandboxError::Control { control, .. } => control,
            SandboxError::WriteLimit(_) => "write_limit",
            _ => "init",
        }
    }
}

/// Facts checked before anything is created.
#[derive(Debug, Clone)]
pub struct Preflight {
    pub landlock_abi: i32,
    pub cgroups: Option<Layout>,
    /// Controls that will be skipped (only with `allow_weaker`).
    pub skipped: Vec<String>,
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Check that the kernel offers what the plan needs; nothing is changed.
pub fn preflight(plan: &SandboxPlan) -> Result<Preflight, SandboxError> {
    if read_trim("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Err(SandboxError::UserNamespaces(
            "/proc/sys/user/max_user_namespaces is 0 (enable with `sysctl -w user.max_user_namespaces=15000`)".into(),
        ));
    }
    if !nix::unistd::geteuid().is_root()
        && read_trim("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0")
    {
        return Err(SandboxError::UserNamespaces(
            "kernel.unprivileged_userns_clone is 0 (enable with `sysctl -w kernel.unprivileged_userns_clone=1`, or run as root)".into(),
        ));
    }
    let mut skipped = Vec::new();
    let abi = sys::landlock_abi();
    if abi < i32::from(plan.landlock.min_abi) {
        if !plan.allow_weaker {
            return Err(SandboxError::Landlock {
                have: abi,
                need: plan.landlock.min_abi,
            });
        }
        skipped.push(format!(
            "landlock: kernel ABI {abi} < required {}",
            plan.landlock.min_abi
        ));
    }
    let cgroups = match cgroup::detect_host() {
        Ok(l) => Some(l),
        Err(e) if plan.allow_weaker => {
            skipped.push(format!("cgroups: {e}"));
            None
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Preflight {
        landlock_abi: abi,
        cgroups,
        skipped,
    })
}

/// A running sandbox.
#[derive(Debug)]
pub struct Running {
    child: Child,
    listener: Option<TcpListener>,
    attestation: Attestation,
    cgroup: Option<Cgroup>,
    started: Instant,
    _ctl: OwnedFd,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOutcome {
    /// The agent's exit status, shell-style (128 + signal when killed).
    pub exit_code: u8,
    /// Wall-clock duration.
    pub duration_ms: u64,
    /// Cgroup peaks.
    pub peaks: Peaks,
    /// Largest resident set of any process in the sandbox, KiB.
    pub max_rss_kib: u64,
    /// CPU time used (user + system), ms.
    pub cpu_ms: u64,
}

/// Start the sandbox: create the cgroups, re-execute `exe` as the init, hand
/// it the plan, and return once every control applied and the agent runs.
pub fn start(plan: &SandboxPlan, exe: &Path, pre: &Preflight) -> Result<Running, SandboxError> {
    let mut skipped = pre.skipped.clone();
    let cgroup = match &pre.cgroups {
        Some(layout) => match Cgroup::create(layout, &plan.run_id, plan.cgroup) {
            Ok(c) => Some(c),
            Err(e) if plan.allow_weaker => {
                skipped.push(format!("cgroups: {e}"));
                None
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(SandboxError::Socketpair)?;
    let mut cmd = Command::new(exe);
    cmd.env_clear()
        .env(INIT_ENV, theirs.as_raw_fd().to_string())
        .stdin(match plan.stdin {
            StdinSource::Inherit => Stdio::inherit(),
            StdinSource::Null => Stdio::null(),
            StdinSource::Piped => Stdio::piped(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    sys::keep_fd_across_exec(&mut cmd, theirs.as_raw_fd());
    let started = Instant::now();
    let child = cmd.spawn().map_err(|error| SandboxError::SpawnInit {
        exe: exe.to_owned(),
        error,
    })?;
    drop(theirs);
    let mut running = Running {
        child,
        listener: None,
        attestation: Attestation {
            skipped,
            ..Attestation::default()
        },
        cgroup,
        started,
        _ctl: ours,
    };
    match running.handshake(plan) {
        Ok(()) => Ok(running),
        Err(e) => {
            running.kill();
            let _ = running.child.wait();
            Err(e)
        }
    }
}

impl Running {
    fn handshake(&mut self, plan: &SandboxPlan) -> Result<(), SandboxError> {
        if let Some(cg) = &self.cgroup {
            cg.attach(self.child.id())?;
            self.attestation.cgroup = Some(cg.report().clone());
        }
        let ctl = &self._ctl;
        nix::sys::socket::setsockopt(
            ctl,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(SETUP_TIMEOUT.as_secs() as i64, 0),
        )
        .map_err(|e| SandboxError::Protocol(ProtoError::Recv(e)))?;
        proto::send_plan(ctl, plan).map_err(SandboxError::SendPlan)?;
        loop {
            let (msg, fd) = match proto::recv(ctl) {
                Ok(m) => m,
                Err(ProtoError::Closed) => {
                    let status = self
                        .child
                        .wait()
                        .map(|s| s.to_string())
                        .unwrap_or_else(|e| e.to_string());
                    return Err(SandboxError::InitDied(status));
                }
                Err(e) => return Err(SandboxError::Protocol(e)),
            };
            match msg {
                InitMessage::Listener => {
                    let fd = fd.ok_or(SandboxError::NoListener)?;
                    self.listener = Some(TcpListener::from(fd));
                }
                InitMessage::Ready { attestation } => {
                    if self.listener.is_none() {
                        return Err(SandboxError::NoListener);
                    }
                    self.attestation.init = *attestation;
                    return Ok(());
                }
                InitMessage::Failed { control, error } => {
                    return Err(SandboxError::Control { control, error });
                }
            }
        }
    }

    /// The proxy listener bound inside the sandbox's network namespace. The
    /// caller serves the proxy on it; once it is dropped the sandbox has no
    /// network at all.
    pub fn take_listener(&mut self) -> Option<TcpListener> {
        self.listener.take()
    }

    /// The command's stdin, when the plan pipes it ([`StdinSource::Piped`]).
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// The agent's stdout (piped through the supervisor).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// The agent's stderr (piped through the supervisor).
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// What actually applied.
    pub fn attestation(&self) -> &Attestation {
        &self.attestation
    }

    /// The init's pid on the host, for [`signal`].
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill the whole sandbox now (pid 1 of its namespace dies with the
    /// init, taking every process inside with it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        if let Some(cg) = &self.cgroup {
            cg.kill_all();
        }
    }

    /// Wait for the agent to exit, then read peaks and remove the cgroups.
    pub fn wait(mut self) -> Result<RunOutcome, SandboxError> {
        use std::os::unix::process::ExitStatusExt;
        let status = self.child.wait().map_err(SandboxError::Wait)?;
        let exit_code = match (status.code(), status.signal()) {
            (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(255),
            (None, Some(s)) => 128u8.wrapping_add(s as u8),
            _ => 255,
        };
        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let peaks = self.cgroup.as_ref().map(Cgroup::peaks).unwrap_or_default();
        let usage =
            nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).ok();
        let (max_rss_kib, cpu_ms) = usage
            .map(|u| {
                let ms = |t: nix::sys::time::TimeVal| {
                    (t.tv_sec() as u64) * 1000 + (t.tv_usec() as u64) / 1000
                };
                (u.max_rss() as u64, ms(u.user_time()) + ms(u.system_time()))
            })
            .unwrap_or((0, 0));
        drop(self.cgroup.take());
        Ok(RunOutcome {
            exit_code,
            duration_ms,
            peaks,
            max_rss_kib,
            cpu_ms,
        })
    }
}

/// How much a run added to the file systems of its writable host
/// directories (the workspace and `sandbox.read_write`), measured as the
/// growth of each file system's used blocks since the run started
/// (`statvfs`, which counts data not yet written back). It is cheap enough to
/// poll often, but it counts every writer on those file systems, not only the
/// agent, and it sees a limit crossed only when polled.
#[derive(Debug)]
pub struct WriteWatch {
    /// One path per file system, with the lowest used bytes seen on it since
    /// the start. Growth is measured from that low-water mark, so space freed
    /// meanwhile by others (or by the agent) cannot hide later writes.
    fs: Vec<(PathBuf, std::cell::Cell<u64>)>,
    limit: u64,
}

fn used_bytes(path: &Path) -> Result<u64, nix::Error> {
    let st = nix::sys::statvfs::statvfs(path)?;
    Ok((st.blocks().saturating_sub(st.blocks_free()) as u64)
        .saturating_mul(st.fragment_size() as u64))
}

impl WriteWatch {
    /// Take the baseline for the plan's writable host directories.
    pub fn new(plan: &SandboxPlan) -> Result<WriteWatch, SandboxError> {
        use std::os::unix::fs::MetadataExt;
        let mut seen = Vec::new();
        let mut fs = Vec::new();
        for step in &plan.mounts {
            let MountStep::Attach { source, .. } = step else {
                continue;
            };
            let err = |e: &dyn std::fmt::Display| {
                SandboxError::WriteLimit(format!("{}: {e}", source.display()))
            };
            let dev = std::fs::metadata(source).map_err(|e| err(&e))?.dev();
            if seen.contains(&dev) {
                continue;
            }
            seen.push(dev);
            let used = used_bytes(source).map_err(|e| err(&e))?;
            fs.push((source.clone(), std::cell::Cell::new(used)));
        }
        Ok(WriteWatch {
            fs,
            limit: plan.write_limit_bytes,
        })
    }

    /// Bytes added since the lowest point seen (a low-water mark per file
    /// system, lowered whenever usage drops); `None` when a file system
    /// cannot be read (the caller ends the run: fail closed).
    pub fn grown(&self) -> Option<u64> {
        let mut total = 0u64;
        for (path, low) in &self.fs {
            let used = used_bytes(path).ok()?;
            if used < low.get() {
                low.set(used);
            }
            total = total.saturating_add(used - low.get());
        }
        Some(total)
    }

    /// Whether the run wrote more than the limit (or growth cannot be measured).
    pub fn exceeded(&self) -> bool {
        self.grown().is_none_or(|g| g > self.limit)
    }

    /// The limit, bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

/// Send `sig` to the sandbox's init (which forwards it to the agent).
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}
