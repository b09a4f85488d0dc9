//! The init: our own binary re-executed, single-threaded, that applies a
//! [`SandboxPlan`] step by step and then runs the agent.
//!
//! Two processes: **stage 1** unshares the namespaces, writes the id maps,
//! brings loopback up, binds the proxy listener and hands it to the
//! supervisor, then forks **pid 1** of the new PID namespace. Pid 1 builds the
//! new root, applies rlimits, `no_new_privs`, Landlock, drops every
//! capability, installs seccomp, spawns the agent, and reaps and forwards
//! signals until the agent exits. When pid 1 exits, the kernel kills every
//! process left in the namespace; stage 1 and pid 1 die with their parent
//! (`PR_SET_PDEATHSIG`), so nothing outlives the supervisor.

use crate::apply::{self, ApplyError};
use crate::attest::InitAttestation;
use crate::plan::SandboxPlan;
use crate::proto::{self, InitMessage};
use crate::sys;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::os::fd::{OwnedFd, RawFd};
use std::process::ExitCode;

/// The environment variable through which the supervisor tells the
/// re-executed binary that it is the init, and on which fd its control
/// socket is.
pub const INIT_ENV: &str = "AIRLOCK_SANDBOX_INIT_FD";

/// Signals forwarded from the supervisor to the agent.
const FORWARDED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// Call first thing in `main()`. Returns `None` in a normal invocation; in
/// the re-executed init it runs the sandbox and returns the exit code.
pub fn init_entry() -> Option<ExitCode> {
    let fd = std::env::var(INIT_ENV).ok()?;
    let fd: RawFd = match fd.parse() {
        Ok(fd) if fd > 2 => fd,
        _ => {
            eprintln!("airlock: sandbox init: {INIT_ENV} is not a file descriptor number");
            return Some(ExitCode::from(2));
        }
    };
    let ctl = match sys::own_fd(fd) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("airlock: sandbox init: control socket {fd}: {e}");
            return Some(ExitCode::from(2));
        }
    };
    Some(ExitCode::from(stage1(ctl)))
}

fn fail(ctl: &OwnedFd, err: &ApplyError) -> u8 {
    let _ = proto::send(
        ctl,
        &InitMessage::Failed {
            control: err.control().to_owned(),
            error: err.to_string(),
        },
        None,
    );
    2
}

fn block_signals() -> Result<SigSet, ApplyError> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED {
        set.add(*s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| ApplyError::Signals(e.into()))?;
    Ok(set)
}

fn stage1(ctl: OwnedFd) -> u8 {
    if let Err(e) = sys::cloexec_from_3() {
        return fail(&ctl, &ApplyError::CloseFds(e));
    }
    let plan: SandboxPlan = match proto::recv_plan(&ctl) {
        Ok(p) => p,
        Err(e) => return fail(&ctl, &ApplyError::ReadPlan(e.to_string())),
    };
    // Die with the supervisor.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        return fail(&ctl, &ApplyError::ParentDeathSignal(e.into()));
    }
    if nix::unistd::getppid().as_raw() == 1 {
        return 2;
    }
    let mut att = InitAttestation::default();
    // Id-mapped mounts are prepared while we still hold host privileges.
    let prepared = match apply::prepare_mounts(&plan) {
        Ok(p) => p,
        Err(e) => return fail(&ctl, &e),
    };
    if let Err(e) = apply::namespaces(&plan, &mut att) {
        return fail(&ctl, &e);
    }
    // Changing credentials cleared the parent-death signal: set it again.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        return fail(&ctl, &ApplyError::ParentDeathSignal(e.into()));
    }
    if nix::unistd::getppid().as_raw() == 1 {
        return 2;
    }
    let listener = match apply::network(&plan, &mut att) {
        Ok(l) => l,
        Err(e) => return fail(&ctl, &e),
    };
    if let Err(e) = proto::send(&ctl, &InitMessage::Listener, Some(&listener)) {
        return fail(&ctl, &ApplyError::SendListener(e.to_string()));
    }
    // From here only the supervisor holds the listener: if it dies, the
    // sandbox has no network at all.
    drop(listener);
    let set = match block_signals() {
        Ok(s) => s,
        Err(e) => return fail(&ctl, &e),
    };
    match sys::fork() {
        Err(e) => fail(&ctl, &ApplyError::Fork(e)),
        Ok(sys::Forked::Child) => pid1(ctl, plan, prepared, att, set),
        Ok(sys::Forked::Parent(pid)) => {
            drop(ctl);
            drop(prepared);
            supervise(Pid::from_raw(pid), &set)
        }
    }
}

fn pid1(
    ctl: OwnedFd,
    plan: SandboxPlan,
    prepared: apply::Prepared,
    mut att: InitAttestation,
    set: SigSet,
) -> u8 {
    let agent = match apply::inside(&plan, prepared, &mut att) {
        Ok(()) => match apply::spawn_agent(&plan) {
            Ok(child) => child,
            Err(e) => return fail(&ctl, &e),
        },
        Err(e) => return fail(&ctl, &e),
    };
    let pid = Pid::from_raw(agent.id() as i32);
    // The agent is running: report what applied. If the supervisor cannot
    // hear us, stop.
    if proto::send(
        &ctl,
        &InitMessage::Ready {
            attestation: Box::new(att),
        },
        None,
    )
    .is_err()
    {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        return 2;
    }
    drop(ctl);
    supervise(pid, &set)
}

/// Forward signals to `child`, reap every process, and return the child's
/// exit status as a shell would report it (128 + signal when killed).
fn supervise(child: Pid, set: &SigSet) -> u8 {
    loop {
        let sig = match set.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, sig);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return code as u8,
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => {
                    return 128u8.wrapping_add(s as u8);
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}
