//! The proxy's only contact with the policy: facts in, decisions out.

use airlock_policy::{ConnectDecision, EgressPolicy, EgressRequest, Host, Url};
use airlock_types::{Decision, Reason, RunId};
use std::net::IpAddr;

/// What to do with a CONNECT.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ConnectPlan {
    Deny(Decision),
    Tunnel(Decision),
    /// Open it, terminate TLS, decide each request inside. The decision is
    /// what gets audited for the CONNECT itself.
    Intercept(Decision),
}

/// Decide one request. `addrs` is `None` when the name did not resolve.
pub(crate) fn decide_request(
    policy: &EgressPolicy,
    method: &http::Method,
    url: &Url,
    addrs: Option<&[IpAddr]>,
    run: Option<&RunId>,
) -> Decision {
    policy.decide(&EgressRequest {
        method: method.as_str(),
        scheme: url.scheme,
        host: &url.host,
        port: url.port,
        path: &url.path,
        addrs: addrs.unwrap_or(&[]),
        run,
    })
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
    let opened = Decision::allow(Reason::Recorded);
    match policy.decide_connect(host, port, addrs.unwrap_or(&[])) {
        ConnectDecision::Deny(d) => ConnectPlan::Deny(d),
        ConnectDecision::Tunnel(_) if intercept_all => ConnectPlan::Intercept(opened),
        ConnectDecision::Tunnel(d) => ConnectPlan::Tunnel(d),
        ConnectDecision::Intercept => ConnectPlan::Intercept(opened),
    }
}
