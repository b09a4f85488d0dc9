//! Stage 2, `CONNECT`: the decision (deny, blind tunnel or interception),
//! the blind tunnel, and the check that a tunnel's first bytes are a TLS
//! ClientHello for the CONNECT host.

use super::{Inner, TunnelTarget};
use crate::body::{Prefixed, ProxyBody, empty};
use crate::glue::{self, ConnectPlan};
use crate::hello::{self, Hello};
use crate::idle::{SpliceEnd, splice};
use crate::respond;
use crate::upstream::{self};
use airlock_policy::{ConnectDecision, Host, Unresolved};
use airlock_types::{Decision, Reason, RequestId};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

impl Inner {
    pub(super) async fn connect(
        self: Arc<Self>,
        req: Request<Incoming>,
        rid: RequestId,
    ) -> Response<ProxyBody> {
        let raw = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let parsed = match raw.strip_suffix(":0") {
            Some(h) => airlock_policy::parse_authority(h, 0).map(|(h, _)| (h, 0)),
            None => airlock_policy::parse_authority(&raw, 0),
        };
        let (host, port) = match parsed {
            // A CONNECT target must name its port; an explicit port 0 is
            // judged like any other (the host decides), then fails to dial.
            Ok((h, p)) if p != 0 || raw.ends_with(":0") => (h, p),
            Ok(_) | Err(_) => {
                let d = self.record_decision(
                    airlock_types::Action::EgressConnect,
                    "<invalid CONNECT target>",
                    Decision::deny(Reason::InvalidHost),
                    &rid,
                    &[("detail", "CONNECT target is not host:port".into())],
                );
                return respond::denied(d);
            }
        };
        let res = format!("{}:{port}", host);
        let intercept_all = self.cfg.intercept_all;
        // Refused on the name (host, port, rules, mode): no DNS query.
        let (decision, addrs) = match glue::decide_connect_unresolved(&self.policy, &host, port) {
            // A refusal needs no address; an IP literal is its own.
            Unresolved::Decided(d) => {
                let own = !matches!(d, ConnectDecision::Deny(_));
                (d, host.ip().filter(|_| own).map(|ip| vec![ip]))
            }
            Unresolved::Resolve(p) => {
                let a = self.resolve(&host).await;
                (glue::decide_connect_resolved(p, a.as_deref()), a)
            }
        };
        let plan = glue::plan(decision, intercept_all);
        let (decision, mode) = match plan {
            ConnectPlan::Deny(d) => (d, "deny"),
            ConnectPlan::Tunnel(d) => (d, "tunnel"),
            ConnectPlan::Intercept(d) => (d, "intercept"),
        };
        let decision = self.record_decision(
            airlock_types::Action::EgressConnect,
            &res,
            decision,
            &rid,
            &[("mode", mode.into())],
        );
        let (true, Some(addrs)) = (decision.is_allow(), addrs) else {
            return respond::denied(if decision.is_allow() {
                Decision::deny(Reason::UnresolvableHost)
            } else {
                decision
            });
        };
        match plan {
            ConnectPlan::Deny(_) => respond::denied(decision),
            ConnectPlan::Tunnel(_) => {
                let target = TunnelTarget { host, port, addrs };
                self.tunnel(req, &res, target, rid).await
            }
            ConnectPlan::Intercept(_) => {
                let target = TunnelTarget { host, port, addrs };
                let this = self.clone();
                tokio::spawn(async move {
                    match hyper::upgrade::on(req).await {
                        Ok(up) => this.intercept(TokioIo::new(up), target, res, rid).await,
                        Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                    }
                });
                Response::new(empty())
            }
        }
    }

    /// A blind tunnel: dial the checked address first, answer 200 only then.
    /// Nothing is relayed until the client's first bytes are a TLS
    /// ClientHello naming the CONNECT host (they are then replayed to the
    /// upstream): plaintext, another protocol or TLS to another name is
    /// refused (`tunnel_not_tls`, `sni_mismatch`) and the tunnel closed.
    pub(super) async fn tunnel(
        self: Arc<Self>,
        req: Request<Incoming>,
        res: &str,
        target: TunnelTarget,
        rid: RequestId,
    ) -> Response<ProxyBody> {
        let sockets: Vec<SocketAddr> = target
            .addrs
            .iter()
            .map(|ip| SocketAddr::new(*ip, target.port))
            .collect();
        let tcp = match upstream::dial(&sockets, self.cfg.timeouts.connect).await {
            Ok((tcp, _)) => tcp,
            Err(e) => return self.upstream_failed(res, &rid, e),
        };
        let idle = self.cfg.timeouts.idle;
        let this = self.clone();
        let res = res.to_owned();
        tokio::spawn(async move {
            let up = match hyper::upgrade::on(req).await {
                Ok(up) => up,
                Err(e) => return tracing::debug!(error = %e, "CONNECT upgrade failed"),
            };
            let Some(client) = this
                .tunnel_hello(TokioIo::new(up), &target, &res, &rid, true)
                .await
            else {
                return;
            };
            {
                match splice(client, tcp, idle).await {
                    SpliceEnd::Idle => {
                        this.record_failure(
                            airlock_types::Action::EgressConnect,
                            &res,
                            Reason::LimitExceeded,
                            &rid,
                            "tunnel idle timeout".into(),
                        );
                    }
                    SpliceEnd::Done(up, down) => tracing::debug!(%res, up, down, "tunnel closed"),
                    SpliceEnd::Error(e) => {
                        tracing::debug!(%res, error = %e, "tunnel ended with an error")
                    }
                }
            }
        });
        Response::new(empty())
    }

    /// Read a tunnel's first bytes: a TLS ClientHello for the tunnel's host
    /// gives the client stream back with those bytes to replay. Anything
    /// else is refused and audited as an `egress.tls` decision, and the
    /// client (when it spoke HTTP) answered with a 403. A missing server
    /// name is accepted for an IP-literal CONNECT (clients send none for
    /// addresses) and, when `blind` is false, for an intercepted tunnel (the
    /// leaf is minted for the CONNECT host and every request inside is
    /// judged); a blind tunnel to a name requires it.
    pub(super) async fn tunnel_hello<I>(
        &self,
        mut io: I,
        target: &TunnelTarget,
        res: &str,
        rid: &RequestId,
        blind: bool,
    ) -> Option<Prefixed<I>>
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let (buf, hello) = hello::read_client_hello(&mut io, self.cfg.timeouts.tls_handshake).await;
        let mode = if blind { "tunnel" } else { "intercept" };
        let host_name = match &target.host {
            Host::Domain(d) => Some(d.as_str()),
            Host::Ip(_) => None,
        };
        let (reason, detail, answer_http) = match hello {
            Hello::Tls { sni: Some(sni) } => match host_name {
                Some(h) if hello::sni_matches(&sni, h) => return Some(Prefixed::new(buf, io)),
                // An IP-literal CONNECT: a server name would be a name
                // the policy never judged.
                _ => (
                    Reason::SniMismatch,
                    "the ClientHello names another server than the CONNECT host".to_owned(),
                    false,
                ),
            },
            Hello::Tls { sni: None } if host_name.is_none() || !blind => {
                return Some(Prefixed::new(buf, io));
            }
            Hello::Tls { sni: None } => (
                Reason::SniMismatch,
                "the ClientHello names no server (SNI required for a tunnel to a name)".to_owned(),
                false,
            ),
            Hello::NotTls { detail, looks_http } => (Reason::TunnelNotTls, detail, looks_http),
            Hello::Incomplete { detail } => (Reason::TunnelNotTls, detail, false),
            Hello::Closed => {
                tracing::debug!(%res, "client closed the tunnel before sending anything");
                return None;
            }
        };
        let d = self.record_decision(
            airlock_types::Action::EgressTls,
            res,
            Decision::deny(reason),
            rid,
            &[("mode", mode.to_owned()), ("detail", detail)],
        );
        if answer_http {
            let _ = tokio::time::timeout(
                self.cfg.timeouts.header_read,
                io.write_all(&respond::raw_denied(d)),
            )
            .await;
        }
        let _ = io.shutdown().await;
        None
    }
}
