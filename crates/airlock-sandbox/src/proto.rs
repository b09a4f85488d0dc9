//! The control protocol between supervisor and init: JSON messages over a
//! `SOCK_SEQPACKET` socket pair (one message per packet), with the proxy
//! listener passed as `SCM_RIGHTS`.

use crate::attest::InitAttestation;
use crate::plan::SandboxPlan;
use crate::sys;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd};

/// Largest message accepted.
const MAX_MESSAGE: usize = 1 << 20;

/// What the init tells the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum InitMessage {
    /// The proxy listener, bound inside the sandbox's network namespace, is
    /// attached as SCM_RIGHTS.
    Listener,
    /// Every control applied and the agent is running.
    Ready { attestation: Box<InitAttestation> },
    /// A control could not be applied; nothing was run.
    Failed { control: String, error: String },
}

/// A control message could not be sent or received.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("send on control socket: {0}")]
    Send(nix::Error),
    #[error("receive on control socket: {0}")]
    Recv(nix::Error),
    #[error("control socket closed by the other side")]
    Closed,
    #[error("control message too large or truncated")]
    Truncated,
    #[error("malformed control message: {0}")]
    Malformed(String),
    #[error("received fd is not usable: {0}")]
    Fd(std::io::Error),
}

fn send_bytes(ctl: &OwnedFd, bytes: &[u8], fd: Option<&dyn AsRawFd>) -> Result<(), ProtoError> {
    let raw = fd.map(|f| [f.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage<'_>> = raw
        .as_ref()
        .map(|r| vec![ControlMessage::ScmRights(r)])
        .unwrap_or_default();
    sendmsg::<()>(
        ctl.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &cmsgs,
        MsgFlags::empty(),
        None,
    )
    .map_err(ProtoError::Send)?;
    Ok(())
}

fn recv_bytes(ctl: &OwnedFd) -> Result<(Vec<u8>, Option<OwnedFd>), ProtoError> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let (len, flags, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            ctl.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(ProtoError::Recv)?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(ProtoError::Recv)? {
            if let ControlMessageOwned::ScmRights(v) = c {
                fds.extend(v);
            }
        }
        (msg.bytes, msg.flags, fds)
    };
    let mut owned = fds
        .into_iter()
        .map(sys::own_fd)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ProtoError::Fd)?;
    if flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC) {
        return Err(ProtoError::Truncated);
    }
    if len == 0 {
        return Err(ProtoError::Closed);
    }
    buf.truncate(len);
    Ok((buf, owned.pop()))
}

/// Send a message, optionally passing one fd.
pub fn send(ctl: &OwnedFd, msg: &InitMessage, fd: Option<&dyn AsRawFd>) -> Result<(), ProtoError> {
    let bytes = serde_json::to_vec(msg).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    send_bytes(ctl, &bytes, fd)
}

/// Receive a message and the fd passed with it, if any.
pub fn recv(ctl: &OwnedFd) -> Result<(InitMessage, Option<OwnedFd>), ProtoError> {
    let (bytes, fd) = recv_bytes(ctl)?;
    let msg = serde_json::from_slice(&bytes).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    Ok((msg, fd))
}

/// Supervisor → init: the plan.
pub fn send_plan(ctl: &OwnedFd, plan: &SandboxPlan) -> Result<(), ProtoError> {
    let bytes = serde_json::to_vec(plan).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    if bytes.len() > MAX_MESSAGE {
        return Err(ProtoError::Truncated);
    }
    send_bytes(ctl, &bytes, None)
}

/// Init side: receive the plan.
pub fn recv_plan(ctl: &OwnedFd) -> Result<SandboxPlan, ProtoError> {
    let (bytes, _) = recv_bytes(ctl)?;
    serde_json::from_slice(&bytes).map_err(|e| ProtoError::Malformed(e.to_string()))
}
