//! Idle upstream connections, reused only for the same scheme, host and port
//! and only when the address they were dialed to is among the addresses the
//! policy just checked.

use crate::body::ProxyBody;
use hyper::client::conn::{http1, http2};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest an idle connection is kept.
const IDLE_MAX: Duration = Duration::from_secs(60);
/// Most idle connections kept per key.
const PER_KEY_MAX: usize = 64;

/// Which upstream a connection serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub(crate) https: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// A ready-to-use connection.
#[derive(Debug)]
pub(crate) enum Sender {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

impl Sender {
    fn usable(&self) -> bool {
        match self {
            // An HTTP/1.1 connection may still be finishing its previous
            // exchange; the caller waits for `ready()` before using it.
            Sender::H1(s) => !s.is_closed(),
            Sender::H2(s) => !s.is_closed(),
        }
    }
}

#[derive(Debug)]
struct Idle {
    addr: SocketAddr,
    sender: Sender,
    since: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
}

impl Pool {
    /// An idle connection for `key` dialed to one of `allowed`.
    pub(crate) fn checkout(
        &self,
        key: &PoolKey,
        allowed: &[SocketAddr],
    ) -> Option<(SocketAddr, Sender)> {
        let mut map = self.idle.lock().ok()?;
        let list = map.get_mut(key)?;
        let now = Instant::now();
        list.retain(|i| i.sender.usable() && now.saturating_duration_since(i.since) < IDLE_MAX);
        let pos = list.iter().rposition(|i| allowed.contains(&i.addr))?;
        match &list[pos].sender {
            // An HTTP/2 connection multiplexes: share it, keep it pooled.
            Sender::H2(s) => Some((list[pos].addr, Sender::H2(s.clone()))),
            Sender::H1(_) => {
                let i = list.swap_remove(pos);
                Some((i.addr, i.sender))
            }
        }
    }

    /// Give a connection back (an HTTP/1.1 one once its response is complete).
    pub(crate) fn checkin(&self, key: PoolKey, addr: SocketAddr, sender: Sender) {
        if !sender.usable() {
            return;
        }
        if let Ok(mut map) = self.idle.lock() {
            let list = map.entry(key).or_default();
            if list.len() < PER_KEY_MAX {
                list.push(Idle {
                    addr,
                    sender,
                    since: Instant::now(),
                });
            }
        }
    }
}
