//! Airlock's egress policy: the pure decision of whether an agent's HTTP
//! request or CONNECT may leave the box.
//!
//! **Boundary.** Every request the egress proxy sees is judged here from
//! facts only: method, scheme, canonical host, port, path, the addresses the
//! proxy resolved, and the run. [`EgressPolicy::decide`] and
//! [`EgressPolicy::decide_connect`] are pure and infallible; this crate does
//! no I/O, no DNS and opens no sockets.
//!
//! **Parsing.** Untrusted text becomes a [`Host`] through [`parse_host`],
//! [`parse_authority`] and [`parse_url`], which follow the WHATWG URL host
//! parser: every IPv4 spelling (decimal, octal, hex, shortened, trailing dot,
//! percent-encoded, full-width), IPv6 literals (zone identifiers refused) and
//! UTS-46 processing of names (Punycode `xn--` labels are validated).
//!
//! **Decision order.** Everything that needs no DNS comes first, so a
//! caller can refuse a name without resolving it
//! ([`EgressPolicy::decide_unresolved`],
//! [`EgressPolicy::decide_connect_unresolved`]). (1) the host, as a
//! browser's IDN spoof checker judges it (see the `idn` module): characters
//! not allowed in identifiers or that look like punctuation ⇒
//! `idn_disallowed_character`; mixed numbering systems ⇒
//! `idn_mixed_numbers`; a label beyond UTS-39 highly restrictive ⇒
//! `mixed_script_host`; Han/Kana slash/dash look-alikes next to Latin ⇒
//! `idn_dangerous_pattern`; a whole-script look-alike of Latin outside its
//! script's TLDs ⇒ `idn_whole_script_confusable`; a skeleton equal to a
//! host the policy names ⇒ `confusable_host`, or to a shipped well-known
//! domain ⇒ `idn_confusable`. [`parse_url`] refuses userinfo
//! (`userinfo_in_url`). (2) the method must be an HTTP token. (3) an IP
//! literal is judged by the SSRF guard as itself. (4) rules: a rule matches
//! scheme, host, port, method and path; the strictest matching outcome wins
//! (`Outcome` is ordered Allow < Ask < Deny); `ask` yields
//! `Decision::ask(approval_required)`, which callers must treat as a denial
//! until approvals exist. A rule without `ports` covers, when it allows,
//! only the scheme's default port (443/80), and when it denies or asks,
//! every port. (5) no rule: `read_public` allows GET, HEAD and OPTIONS on the
//! scheme's default port (`public_read`), refuses them on another port
//! (`port_not_allowed`, also when an allow rule would match but for the
//! port) and denies every other method (`default_deny`); `deny_all` denies
//! (`deny_all`). (6) an allowed write (any method but GET/HEAD/OPTIONS) over
//! plain HTTP ⇒ `write_requires_https`. (7) only for a request still
//! allowed, the SSRF guard over the resolved addresses of a name: no
//! address ⇒ `unresolvable_host`; **every** address must be globally
//! reachable unicast (see [`classify_addr`]; IPv6 forms embedding an IPv4
//! address are judged by it), unless an `allow_private` CIDR opts it in;
//! `localhost` names are loopback whatever DNS says.
//!
//! **Upgrades.** [`EgressPolicy::check_upgrade`] allows only `Upgrade:
//! websocket`, and only where an allow rule with `websocket = true` matches
//! the request.
//!
//! **Paths.** A path is judged in one canonical spelling (dot segments
//! resolved, unreserved escapes decoded, `\` as `/`, `//` merged), which
//! [`parse_url`] produces and the proxy sends upstream unchanged; spellings
//! servers read differently (`..;`, encoded `/` or `\`, double encoding,
//! overlong UTF-8, control characters) are refused as `ambiguous_path`.
//! Rules match two readings of it: as it stands and as servers that drop
//! `;` parameters and trailing dots of segments read it (Tomcat, Jetty,
//! IIS). Deny/ask rules match if either reading matches, allow rules only if
//! both do. Deny and ask rules match case-insensitively unless
//! `case_insensitive` says otherwise; allow rules case-sensitively unless it
//! says so.
//!
//! **Tunnel or intercept.** A blind tunnel hides method and path, so
//! [`EgressPolicy::decide_connect`] returns [`ConnectDecision::Tunnel`] only
//! when inspection is not forced, a rule allows every method and path of the
//! host over HTTPS on the CONNECT's port, and no deny or ask rule names the
//! host there (the caller must then check that the tunnel carries TLS to
//! that host); it refuses the CONNECT outright when a rule denies (or asks
//! for) everything on the host, when no allow or ask rule covers the port
//! (`read_public` covers 443: `port_not_allowed`), or in `deny_all` mode
//! when no allow/ask rule names the host; otherwise it
//! returns [`ConnectDecision::Intercept`]. In `read_public` a host without
//! such a rule is therefore intercepted, so writes can be refused.
//!
//! **Documents.** [`parse_document`] turns policy TOML (a `--policy` file,
//! the `[policy]` section of the configuration, a body an API receives) into
//! a compiled [`PolicyDocument`]; every mistake is a [`DocumentError`]
//! naming `source:line:col: field: message`. It reads text, never files.
//!
//! **Trusts.** The caller's facts: that `addrs` is exactly the set of
//! addresses it may dial (resolve, check, connect to the checked address —
//! no second lookup) and that `scheme` reflects the real transport.
//!
//! **Does not guarantee.** That a rule naming a host also covers other
//! names or literals reaching the same server: rules match the canonical
//! host as requested (a name rule does not cover the name's IP address;
//! an IPv4 rule does cover its IPv4-mapped IPv6 spelling). Anything about
//! the bytes inside a blind tunnel (the caller checks that they are TLS to
//! the CONNECT host); that an upstream interprets a path the same way as
//! either reading (e.g. Unicode normalization beyond the listed delimiter
//! look-alikes); look-alikes of domains that are neither named in the
//! policy nor in the shipped well-known list, when every character is
//! allowed and single-script (e.g. `rn` for `m` in ASCII).
#![forbid(unsafe_code)]

mod addr;
mod check;
pub mod document;
mod host;
mod idn;
mod path;
mod percent;
mod policy;
mod spec;

pub use check::{Checked, check};
pub use document::{DocumentError, PolicyDocument, parse_document};
pub use host::{
    Host, HostError, Scheme, Url, Userinfo, parse_authority, parse_host, parse_url,
    parse_url_with_userinfo,
};
pub use policy::{ConnectDecision, EgressPolicy, EgressRequest, Pending, Unresolved, is_read};
pub use spec::{Mode, PolicyError, PolicySpec, RuleSpec};

use airlock_types::Reason;
use std::net::IpAddr;

/// Why an address may never be reached by default (`loopback_address`,
/// `private_address`, `link_local_address`, `reserved_address`), or `None`
/// for a globally reachable unicast address. Ignores `allow_private`; use
/// [`EgressPolicy::check_addr`] for the policy's view.
pub fn classify_addr(addr: IpAddr) -> Option<Reason> {
    addr::classify(addr)
}
