//! The proxy's only contact with the policy: facts in, decisions out.

use airlock_policy::{ConnectDecision, EgressPolicy, EgressRequest, Host, Url};
use airlock_types::{Decision, Reason, RunId};
use std::net::IpAddr;

/// What to do with a CONNECT.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ConnectPlan {
    Deny(Decision),
    /// Relay bytes blindly, once the first bytes are shown to be a TLS
    /// ClientHello for the CONNECT host.
    Tunnel(Decision),
    /// Open it, terminate TLS, decide each request inside. The decision is
    /// what gets audited for the CONNECT itself.
    Intercept(Decision),
}

/// The facts of one request, without addresses.
pub(crate) struct RequestFacts<'a> {
    pub(crate) method: &'a http::Method,
    pub(crate) url: &'a Url,
    pub(crate) run: Option<&'a RunId>,
    /// The protocol of `Upgrade` when the request asks to upgrade.
    pub(crate) upgrade: Option<&'a str>,
}

impl RequestFacts<'_> {
    fn request<'b>(&'b self, addrs: &'b [IpAddr]) -> EgressRequest<'b> {
        EgressRequest {
            method: self.method.as_str(),
            scheme: self.url.scheme,
            host: &self.url.host,
            port: self.url.port,
            path: &self.url.path,
            addrs,
            run: self.run,
        }
    }

    /// An allowed request that asks to upgrade is judged once more.
    fn upgrade(&self, policy: &EgressPolicy, req: &EgressRequest<'_>, d: Decision) -> Decision {
        match self.upgrade {
            Some(p) if d.is_allow() => match policy.check_upgrade(req, p) {
                Ok(()) => d,
                Err(r) => Decision::deny(r),
            },
            _ => d,
        }
    }
}

/// The decision when no DNS answer could change it (`None`: resolve the
/// name, then call [`decide_request`]).
pub(crate) fn decide_unresolved(
    policy: &EgressPolicy,
    facts: &RequestFacts<'_>,
) -> Option<Decision> {
    let req = facts.request(&[]);
    match policy.decide_unresolved(&req) {
        Some(d) => Some(facts.upgrade(policy, &req, d)),
        // A name the policy would allow: an upgrade it refuses is refused
        // before any lookup too.
        None => match facts.upgrade {
            Some(_) => {
                let d = facts.upgrade(policy, &req, Decision::allow(Reason::RuleAllow));
                (!d.is_allow()).then_some(d)
            }
            None => None,
        },
    }
}

/// Decide one request. `addrs` is `None` when the name did not resolve.
pub(crate) fn decide_request(
    policy: &EgressPolicy,
    facts: &RequestFacts<'_>,
    addrs: Option<&[IpAddr]>,
) -> Decision {
    let req = facts.request(addrs.unwrap_or(&[]));
    let d = policy.decide(&req);
    facts.upgrade(policy, &req, d)
}

/// Decide a CONNECT without resolving its host, when possible (`None`:
/// resolve, then call [`decide_connect`]).
pub(crate) fn decide_connect_unresolved(
    policy: &EgressPolicy,
    host: &Host,
    port: u16,
    intercept_all: bool,
) -> Option<ConnectPlan> {
    policy
        .decide_connect_unresolved(host, port)
        .map(|d| plan(d, intercept_all))
}

/// Decide a CONNECT before any handshake. `intercept_all` turns every
/// allowed tunnel into an interception.
pub(crate) fn decide_connect(
    policy: &EgressPolicy,
    host: &Host,
    port: u16,
    addrs: Option<&[IpAddr]>,
    intercept_all: bool,
) -> ConnectPlan {
    plan(
        policy.decide_connect(host, port, addrs.unwrap_or(&[])),
        intercept_all,
    )
}

fn plan(d: ConnectDecision, intercept_all: bool) -> ConnectPlan {
    let opened = Decision::allow(Reason::Recorded);
    match d {
        ConnectDecision::Deny(d) => ConnectPlan::Deny(d),
        ConnectDecision::Tunnel(_) if intercept_all => ConnectPlan::Intercept(opened),
        ConnectDecision::Tunnel(d) => ConnectPlan::Tunnel(d),
        ConnectDecision::Intercept => ConnectPlan::Intercept(opened),
    }
}
