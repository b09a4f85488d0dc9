//! A local DNS responder (UDP and TCP on 127.0.0.1) with scripted answers:
//! fixed multi-address answers, sequences (public first, then private: DNS
//! rebinding), and NXDOMAIN. Every answer has TTL 0 so nothing is cached.

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA};
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::FixtureError;
use crate::server::spawn_fixture;

const WHAT: &str = "DNS responder";

/// UDP on an ephemeral port of 127.0.0.1, then TCP on the same port; a few
/// ports are tried, since the TCP port may be taken.
async fn bind() -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener, SocketAddr), FixtureError>
{
    let bind_err = |source| FixtureError::Bind {
        what: WHAT,
        addr: "127.0.0.1:0".to_owned(),
        source,
    };
    let mut last = None;
    for _ in 0..16 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(bind_err)?;
        let addr = udp.local_addr().map_err(bind_err)?;
        match tokio::net::TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp, addr)),
            Err(e) => last = Some(e),
        }
    }
    Err(bind_err(last.unwrap_or_else(|| {
        std::io::Error::other("no port free for both UDP and TCP")
    })))
}

/// What the responder says for a name.
#[derive(Debug, Clone)]
pub enum DnsAnswer {
    /// These addresses, every time (A and AAAA split by family).
    Fixed(Vec<IpAddr>),
    /// The n-th query for the name (A and AAAA counted together per family
    /// query type) gets the n-th entry; the last entry repeats.
    Sequence(Vec<Vec<IpAddr>>),
    /// NXDOMAIN.
    NxDomain,
}

#[derive(Debug, Default)]
struct State {
    answers: HashMap<String, DnsAnswer>,
    /// Queries seen per (name, type).
    seen: HashMap<(String, RecordType), usize>,
}

/// A running DNS responder. Stops when dropped.
#[derive(Debug)]
pub struct DnsResponder {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsResponder {
    /// Start a responder on 127.0.0.1 (an ephemeral port, same for UDP and
    /// TCP). Every name is NXDOMAIN until [`DnsResponder::set`] scripts it.
    pub fn start() -> Result<DnsResponder, FixtureError> {
        let state = Arc::new(Mutex::new(State::default()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let addr = spawn_fixture(WHAT, move |ready| async move {
            let (udp, tcp, addr) = match bind().await {
                Ok(b) => b,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let _ = ready.send(Ok(addr));
            let udp = Arc::new(udp);
            let st2 = st.clone();
            let tcp_task = async move {
                while let Ok((mut s, _)) = tcp.accept().await {
                    let st = st2.clone();
                    tokio::spawn(async move {
                        let mut len = [0u8; 2];
                        while s.read_exact(&mut len).await.is_ok() {
                            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                            if s.read_exact(&mut buf).await.is_err() {
                                return;
                            }
                            let Some(out) = answer(&st, &buf) else { return };
                            let Ok(n) = u16::try_from(out.len()) else {
                                return;
                            };
                            let mut framed = n.to_be_bytes().to_vec();
                            framed.extend_from_slice(&out);
                            if s.write_all(&framed).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            };
            let udp_task = async move {
                let mut buf = vec![0u8; 4096];
                while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                    if let Some(out) = answer(&st, &buf[..n]) {
                        let _ = udp.send_to(&out, peer).await;
                    }
                }
            };
            tokio::select! {
                _ = stop_rx => {},
                () = tcp_task => {},
                () = udp_task => {},
            }
        })?;
        Ok(DnsResponder {
            addr,
            state,
            _stop: stop_tx,
        })
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Script the answer for `name`.
    pub fn set(&self, name: &str, answer: DnsAnswer) {
        if let Ok(mut s) = self.state.lock() {
            s.answers.insert(key(name), answer);
        }
    }

    /// How many A and AAAA queries `name` has received.
    pub fn queries(&self, name: &str) -> usize {
        let k = key(name);
        self.state
            .lock()
            .map(|s| {
                s.seen
                    .iter()
                    .filter(|((n, _), _)| *n == k)
                    .map(|(_, c)| *c)
                    .sum()
            })
            .unwrap_or(0)
    }
}

fn answer(state: &Mutex<State>, bytes: &[u8]) -> Option<Vec<u8>> {
    let req = Message::from_vec(bytes).ok()?;
    let q = req.queries.first()?.clone();
    let name = key(&q.name().to_ascii());
    let qtype = q.query_type();
    let mut resp = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.metadata.authoritative = true;
    resp.add_query(q.clone());
    let mut st = state.lock().ok()?;
    let n = {
        let c = st.seen.entry((name.clone(), qtype)).or_insert(0);
        *c += 1;
        *c - 1
    };
    let addrs = match st.answers.get(&name) {
        None | Some(DnsAnswer::NxDomain) => {
            resp.metadata.response_code = ResponseCode::NXDomain;
            return resp.to_vec().ok();
        }
        Some(DnsAnswer::Fixed(a)) => a.clone(),
        Some(DnsAnswer::Sequence(seq)) => seq.get(n).or(seq.last()).cloned().unwrap_or_default(),
    };
    for ip in addrs {
        let rdata = match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A) => RData::A(A(v4)),
            (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(v6)),
            _ => continue,
        };
        resp.add_answer(Record::from_rdata(q.name().clone(), 0, rdata));
    }
    resp.to_vec().ok()
}
