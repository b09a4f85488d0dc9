//! The proxy's only contact with the policy: facts in, decisions out.

use airlock_policy::{
    ConnectDecision, EgressPolicy, EgressRequest, Host, Pending, Unresolved, Url,
};
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
            userinfo: self.url.userinfo.is_some(),
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

/// The first stage of a request's decision, without DNS: final
/// ([`Unresolved::Decided`]: a refusal, or an IP literal) or waiting for the
/// name's addresses ([`Unresolved::Resolve`]: resolve, then
/// [`Pending::decide_resolved`], which runs only the address guard). An
/// upgrade is judged here too, so a name whose upgrade the policy refuses
/// is never looked up.
pub(crate) fn decide_unresolved<'a>(
    policy: &'a EgressPolicy,
    facts: &'a RequestFacts<'a>,
) -> Unresolved<'a, Decision> {
    let req = facts.request(&[]);
    match policy.decide_unresolved(&req) {
        Unresolved::Decided(d) => Unresolved::Decided(facts.upgrade(policy, &req, d)),
        Unresolved::Resolve(p) => match facts.upgrade {
            Some(proto) => match policy.check_upgrade(&req, proto) {
                Ok(()) => Unresolved::Resolve(p),
                Err(r) => Unresolved::Decided(Decision::deny(r)),
            },
            None => Unresolved::Resolve(p),
        },
    }
}

/// Finish a request's decision with the addresses of its name (`None`: it
/// did not resolve).
pub(crate) fn decide_resolved(p: Pending<'_, Decision>, addrs: Option<&[IpAddr]>) -> Decision {
    p.decide_resolved(addrs.unwrap_or(&[]))
}

/// The first stage of a CONNECT's decision, without DNS (see
/// [`decide_unresolved`]).
pub(crate) fn decide_connect_unresolved<'a>(
    policy: &'a EgressPolicy,
    host: &'a Host,
    port: u16,
) -> Unresolved<'a, ConnectDecision> {
    policy.decide_connect_unresolved(host, port)
}

/// Finish a CONNECT's decision with the addresses of its name.
pub(crate) fn decide_connect_resolved(
    p: Pending<'_, ConnectDecision>,
    addrs: Option<&[IpAddr]>,
) -> ConnectDecision {
    p.decide_resolved(addrs.unwrap_or(&[]))
}

/// What to do with a CONNECT the policy decided. `intercept_all` turns
/// every allowed tunnel into an interception.
pub(crate) fn plan(d: ConnectDecision, intercept_all: bool) -> ConnectPlan {
    let opened = Decision::allow(Reason::Recorded);
    match d {
        ConnectDecision::Deny(d) => ConnectPlan::Deny(d),
        ConnectDecision::Tunnel(_) if intercept_all => ConnectPlan::Intercept(opened),
        ConnectDecision::Tunnel(d) => ConnectPlan::Tunnel(d),
        ConnectDecision::Intercept => ConnectPlan::Intercept(opened),
    }
}
