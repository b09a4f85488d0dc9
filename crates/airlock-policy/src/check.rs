//! One whole decision for a URL as text, in the proxy's order: parse (userinfo
//! kept for the policy to judge), host checks, everything but DNS, and only
//! then the addresses, from the caller's resolver, which is never asked
//! about a name already refused. For `airlock policy check` now and an API
//! that explains a decision later.

use crate::host::{HostError, Scheme, Url, parse_url_with_userinfo};
use crate::{ConnectDecision, EgressPolicy, EgressRequest, Host};
use airlock_types::Decision;
use std::net::IpAddr;

/// What the policy decided for one URL, with the facts it used.
#[derive(Debug)]
pub struct Checked {
    /// The request's decision.
    pub decision: Decision,
    /// The URL as parsed (`None` when it could not be).
    pub url: Option<Url>,
    /// The addresses judged (empty when none were needed or found).
    pub addrs: Vec<IpAddr>,
    /// For HTTPS, what a CONNECT to the host would get.
    pub connect: Option<ConnectDecision>,
    /// Why the URL was refused as unparsable, when it was.
    pub error: Option<String>,
}

/// Decide `method url` under `policy`. A name's addresses are `given` when
/// the caller names them (judged as given), else `resolve(name, port)`'s
/// answer, asked only when every fact but the addresses allows the request;
/// an empty answer is `unresolvable_host`. Errors only for text that is
/// not an absolute http(s) URL at all (the caller's mistake, not a decision).
pub fn check(
    policy: &EgressPolicy,
    method: &str,
    url: &str,
    given: Option<Vec<IpAddr>>,
    resolve: impl FnOnce(&str, u16) -> Vec<IpAddr>,
) -> Result<Checked, HostError> {
    let url = match parse_url_with_userinfo(url) {
        Ok(u) => u,
        Err(e @ (HostError::NotAbsolute | HostError::UnsupportedScheme(_))) => return Err(e),
        Err(e) => {
            return Ok(Checked {
                decision: Decision::deny(e.reason()),
                url: None,
                addrs: Vec::new(),
                connect: None,
                error: Some(e.to_string()),
            });
        }
    };
    let done = |decision, url, addrs, connect| Checked {
        decision,
        url: Some(url),
        addrs,
        connect,
        error: None,
    };
    // Host-level refusals (mixed script, look-alikes) need no DNS.
    if let Err(r) = policy.check_host(&url.host) {
        return Ok(done(Decision::deny(r), url, Vec::new(), None));
    }
    let unresolved = EgressRequest {
        method,
        scheme: url.scheme,
        host: &url.host,
        port: url.port,
        path: &url.path,
        addrs: &[],
        run: None,
        userinfo: url.userinfo.is_some(),
    };
    let refused_by_name = policy.decide_unresolved(&unresolved).decided().is_some();
    let addrs: Vec<IpAddr> = match (&url.host, given) {
        (Host::Ip(ip), _) => vec![*ip],
        (Host::Domain(_), Some(given)) => given,
        (Host::Domain(_), None) if refused_by_name => Vec::new(),
        (Host::Domain(d), None) => resolve(d, url.port),
    };
    let decision = policy.decide(&EgressRequest {
        addrs: &addrs,
        ..unresolved
    });
    let connect =
        (url.scheme == Scheme::Https).then(|| policy.decide_connect(&url.host, url.port, &addrs));
    Ok(done(decision, url, addrs, connect))
}
