//! The compiled policy and its decisions.

use crate::addr;
use crate::host::{Host, Scheme, parse_host};
use crate::idn;
use crate::path::{Glob, PathViews};
use crate::spec::{Mode, PolicyError, PolicySpec, RuleSpec};
use airlock_types::{Decision, Outcome, Reason, RunId};
use std::net::IpAddr;

/// The facts of one HTTP request (plain HTTP, or a request seen inside an
/// intercepted TLS connection).
#[derive(Debug, Clone, Copy)]
pub struct EgressRequest<'a> {
    /// The method exactly as sent.
    pub method: &'a str,
    /// `http` for plain requests, `https` inside TLS.
    pub scheme: Scheme,
    /// The parsed host.
    pub host: &'a Host,
    /// The destination port.
    pub port: u16,
    /// The request path; a query or fragment after it is ignored.
    pub path: &'a str,
    /// Every address the proxy resolved for the host and may dial (for an IP
    /// literal: the literal). Empty means the name did not resolve.
    pub addrs: &'a [IpAddr],
    /// The run the request belongs to, when known.
    pub run: Option<&'a RunId>,
    /// The URL carried user information (`user:pass@host`,
    /// [`Url::userinfo`](crate::Url::userinfo)): refused with
    /// `userinfo_in_url` unless an allow rule with `allow_userinfo`
    /// matches the request.
    pub userinfo: bool,
}

/// What to do with a CONNECT, decided before any handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectDecision {
    /// Refuse the CONNECT (the decision's outcome is `Deny` or `Ask`).
    Deny(Decision),
    /// Relay bytes blindly: the policy allows every request this tunnel could
    /// carry, so nothing inside needs to be seen — provided it is TLS to the
    /// CONNECT host, which the caller must check (its ClientHello's server
    /// name) before relaying anything.
    Tunnel(Decision),
    /// Terminate TLS and judge each request inside with
    /// [`EgressPolicy::decide`].
    Intercept,
}

/// The first stage of a decision, made without DNS
/// ([`EgressPolicy::decide_unresolved`],
/// [`EgressPolicy::decide_connect_unresolved`]). `T` is [`Decision`] for a
/// request and [`ConnectDecision`] for a CONNECT.
#[derive(Debug)]
#[must_use = "a Resolve still needs the name's addresses before anything may be dialled"]
pub enum Unresolved<'a, T> {
    /// Final: no DNS answer could change it (a refusal, or an IP literal).
    Decided(T),
    /// Allowed on every fact but the addresses of a name: resolve it, then
    /// finish with [`Pending::decide_resolved`].
    Resolve(Pending<'a, T>),
}

impl<T: Copy> Unresolved<'_, T> {
    /// The decision when it is final, `None` when the name must be resolved.
    pub fn decided(&self) -> Option<T> {
        match self {
            Unresolved::Decided(d) => Some(*d),
            Unresolved::Resolve(_) => None,
        }
    }
}

/// A decision that waits only for the addresses of its host name. Only the
/// policy makes one (after judging everything that needs no DNS), so the
/// final decision of a name cannot skip that stage; finishing it runs the
/// address guard alone.
#[derive(Debug)]
#[must_use = "finish it with decide_resolved once the name is resolved"]
pub struct Pending<'a, T> {
    policy: &'a EgressPolicy,
    host: &'a Host,
    decision: T,
}

impl Pending<'_, Decision> {
    /// The final decision given every address the name resolved to (empty:
    /// it did not resolve ⇒ `unresolvable_host`). **Every** address must
    /// pass the SSRF guard ([`EgressPolicy::check_addr`]); `localhost` names
    /// must resolve to loopback only, and are refused as loopback.
    pub fn decide_resolved(self, addrs: &[IpAddr]) -> Decision {
        match self.policy.check_addrs(self.host, addrs) {
            Ok(()) => self.decision,
            Err(r) => Decision::deny(r),
        }
    }
}

impl Pending<'_, ConnectDecision> {
    /// The final CONNECT decision given every address the name resolved to,
    /// as a request's are judged.
    pub fn decide_resolved(self, addrs: &[IpAddr]) -> ConnectDecision {
        match self.policy.check_addrs(self.host, addrs) {
            Ok(()) => self.decision,
            Err(r) => ConnectDecision::Deny(Decision::deny(r)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPat {
    Any,
    Exact(Host),
    /// `*.suffix`: stored as the suffix without the leading dot.
    Suffix(String),
}

impl HostPat {
    fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (HostPat::Any, _) => true,
            (HostPat::Exact(Host::Ip(a)), Host::Ip(b)) => canonical_ip(*a) == canonical_ip(*b),
            (HostPat::Exact(h), host) => h == host,
            (HostPat::Suffix(s), Host::Domain(d)) => {
                d.len() > s.len() + 1
                    && d.ends_with(s.as_str())
                    && d.as_bytes()[d.len() - s.len() - 1] == b'.'
            }
            (HostPat::Suffix(_), Host::Ip(_)) => false,
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    hosts: Vec<HostPat>,
    /// Empty: both schemes.
    schemes: Vec<Scheme>,
    /// `None`: every method. Uppercase.
    methods: Option<Vec<String>>,
    /// `None`: every path.
    paths: Option<Vec<Glob>>,
    /// Match paths case-insensitively.
    fold: bool,
    /// `None`: the scheme's default port for an allow rule, every port for
    /// a deny or ask rule.
    ports: Option<Vec<u16>>,
    websocket: bool,
    allow_userinfo: bool,
    action: Outcome,
}

impl Rule {
    fn applies_to(&self, scheme: Scheme, host: &Host) -> bool {
        (self.schemes.is_empty() || self.schemes.contains(&scheme))
            && self.hosts.iter().any(|h| h.matches(host))
    }

    /// Whether the rule covers `port` for `scheme` (see [`RuleSpec::ports`]).
    fn port_matches(&self, scheme: Scheme, port: u16) -> bool {
        match &self.ports {
            Some(ps) => ps.contains(&port),
            None if self.action == Outcome::Allow => port == scheme.default_port(),
            None => true,
        }
    }

    fn method_matches(&self, method: &str) -> bool {
        match &self.methods {
            None => true,
            Some(ms) => ms.iter().any(|m| m.eq_ignore_ascii_case(method)),
        }
    }

    /// Fail closed on ambiguity: restrictive rules match either reading of
    /// the path (as it stands, or as servers that drop `;` parameters and
    /// trailing dots read it), allow rules need both.
    fn path_matches(&self, views: &PathViews) -> bool {
        let Some(globs) = &self.paths else {
            return true;
        };
        let (decoded, lenient) = if self.fold {
            (&views.decoded_folded, &views.lenient_folded)
        } else {
            (&views.decoded, &views.lenient)
        };
        let m = |p: &str| globs.iter().any(|g| g.matches(p, self.fold));
        if self.action == Outcome::Allow {
            m(decoded) && m(lenient)
        } else {
            m(decoded) || m(lenient)
        }
    }

    /// Covers every method and every path.
    fn is_total(&self) -> bool {
        self.methods.is_none()
            && self
                .paths
                .as_ref()
                .is_none_or(|g| g.iter().any(Glob::matches_all))
    }
}

/// A compiled egress policy: immutable, cheap to share (`Send + Sync`).
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    mode: Mode,
    rules: Vec<Rule>,
    allow_private: Vec<(IpAddr, u8)>,
    inspect_all: bool,
    /// An approver is on the request path ([`with_approvals`](Self::with_approvals)).
    approvals: bool,
    /// Skeletons of the domains the rules name, for the look-alike check.
    named: idn::SkeletonMap,
}

/// Methods that only read (`GET`, `HEAD`, `OPTIONS`, as sent). Everything
/// else, including unknown methods, is a write.
pub fn is_read(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// RFC 9110 token characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn in_cidr(addr: IpAddr, net: IpAddr, len: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            len == 0
                || (u32::from(a) >> (32 - u32::from(len)))
                    == (u32::from(n) >> (32 - u32::from(len)))
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            len == 0
                || (u128::from(a) >> (128 - u32::from(len)))
                    == (u128::from(n) >> (128 - u32::from(len)))
        }
        _ => false,
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address it reaches, so a rule
/// naming `192.0.2.1` also covers `[::ffff:192.0.2.1]` (else a deny rule on
/// an address could be dodged by spelling it as IPv6).
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// `localhost` and names under it are loopback by definition (RFC 6761),
/// whatever a resolver answers.
fn is_localhost_name(d: &str) -> bool {
    d == "localhost" || d.ends_with(".localhost")
}

impl Default for EgressPolicy {
    fn default() -> Self {
        EgressPolicy::read_public()
    }
}

impl EgressPolicy {
    /// The default policy: public reads allowed, writes denied, no rules.
    pub fn read_public() -> Self {
        EgressPolicy::compile(PolicySpec::default())
            .expect("invariant: the empty read_public spec compiles")
    }

    /// Nothing allowed.
    pub fn deny_all() -> Self {
        EgressPolicy::compile(PolicySpec {
            mode: Mode::DenyAll,
            ..PolicySpec::default()
        })
        .expect("invariant: the empty deny_all spec compiles")
    }

    /// Validate and compile a spec.
    pub fn compile(spec: PolicySpec) -> Result<Self, PolicyError> {
        let mut rules = Vec::with_capacity(spec.rules.len());
        let mut named = idn::SkeletonMap::default();
        for (ri, r) in spec.rules.iter().enumerate() {
            rules.push(compile_rule(ri, r, &mut named)?);
        }
        for (index, (net, len)) in spec.allow_private.iter().enumerate() {
            let max = if net.is_ipv4() { 32 } else { 128 };
            if *len > max {
                return Err(PolicyError::InvalidCidr {
                    index,
                    message: format!("prefix length {len} exceeds {max}"),
                });
            }
            if !in_cidr(*net, *net, *len) || masked(*net, *len) != *net {
                return Err(PolicyError::InvalidCidr {
                    index,
                    message: format!(
                        "{net}/{len} has host bits set (did you mean {}/{len}?)",
                        masked(*net, *len)
                    ),
                });
            }
        }
        Ok(EgressPolicy {
            mode: spec.mode,
            rules,
            allow_private: spec.allow_private,
            inspect_all: spec.inspect_all,
            approvals: false,
            named,
        })
    }

    /// The mode that applies when no rule matches.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// This policy with an approver on the request path (or not). With
    /// one, an `ask` is finished like an allow — the name is resolved and
    /// every address judged, so the request can be held and sent once
    /// approved — and a CONNECT to a host whose every request is asked is
    /// intercepted (each request inside is then asked) instead of refused.
    /// The decision stays `ask`: the caller must hold the request until an
    /// approver consumed an approval for exactly it, and refuse it
    /// otherwise. Without one (the default), `ask` refuses as it always did.
    pub fn with_approvals(mut self, on: bool) -> Self {
        self.approvals = on;
        self
    }

    /// A deterministic text of everything that decides (mode, rules,
    /// private ranges, inspection), for a caller to hash into the policy's
    /// version (approvals are bound to it). Stable within one build, not
    /// across versions of this crate.
    pub fn fingerprint(&self) -> String {
        format!(
            "{:?}|{:?}|{:?}|{}",
            self.mode, self.rules, self.allow_private, self.inspect_all
        )
    }

    /// Whether an approver is on the request path (see
    /// [`with_approvals`](Self::with_approvals)).
    pub fn approvals(&self) -> bool {
        self.approvals
    }

    /// Whether an allow rule *explicitly* allows this write: it matches the
    /// request (scheme, host, port, method, path) with a host pattern that
    /// names the host exactly (not `*`, not `*.suffix`) and a method list
    /// that names the method (not every method). The lethal-trifecta guard
    /// asks before any other write of a tainted run. A read, or a path the
    /// policy finds ambiguous, is never an explicit write allow.
    pub fn explicitly_allows_write(&self, req: &EgressRequest<'_>) -> bool {
        if is_read(req.method) {
            return false;
        }
        let Ok(views) = PathViews::new(req.path) else {
            return false;
        };
        self.rules.iter().any(|r| {
            r.action == Outcome::Allow
                && (r.schemes.is_empty() || r.schemes.contains(&req.scheme))
                && r.hosts
                    .iter()
                    .any(|h| matches!(h, HostPat::Exact(_)) && h.matches(req.host))
                && r.methods.is_some()
                && r.method_matches(req.method)
                && r.port_matches(req.scheme, req.port)
                && r.path_matches(&views)
        })
    }

    /// Judge a full request. Order: the host itself (IDN), the method token,
    /// an IP literal's address (SSRF guard), then the rules (strictest
    /// matching outcome wins; a rule matches scheme, host, port, method and
    /// path) or, when none matches, the mode (`read_public` allows reads on
    /// the scheme's default port only); an allowed or asked write over plain HTTP
    /// becomes `write_requires_https`; finally, only for a request still
    /// allowed, every resolved address of a name (SSRF guard). Everything
    /// before that last step needs no DNS: see
    /// [`decide_unresolved`](Self::decide_unresolved).
    pub fn decide(&self, req: &EgressRequest<'_>) -> Decision {
        match self.decide_unresolved(req) {
            Unresolved::Decided(d) => d,
            Unresolved::Resolve(p) => p.decide_resolved(req.addrs),
        }
    }

    /// The first stage of [`decide`](Self::decide): everything that needs no
    /// DNS (`req.addrs` is ignored). [`Unresolved::Decided`] when no DNS
    /// answer could change the decision — the request is refused on its
    /// host, method, userinfo, port, path, the rules or the mode, or the
    /// host is an IP literal (judged as itself); [`Unresolved::Resolve`]
    /// when the name must be resolved and the returned [`Pending`] finished
    /// with its addresses ([`Pending::decide_resolved`]), which does only
    /// the address guard: nothing is judged twice. A caller that resolves
    /// only on `Resolve` sends no DNS query for a name the policy refuses
    /// anyway (no DNS exfiltration through refused names), and cannot reach
    /// a final decision for a name without this stage.
    pub fn decide_unresolved<'a>(&'a self, req: &EgressRequest<'a>) -> Unresolved<'a, Decision> {
        let d = self.decide_by_name(req);
        let held = self.approvals && d.outcome == Outcome::Ask;
        if (d.is_allow() || held) && matches!(req.host, Host::Domain(_)) {
            return Unresolved::Resolve(Pending {
                policy: self,
                host: req.host,
                decision: d,
            });
        }
        Unresolved::Decided(d)
    }

    /// Everything but the addresses of a name.
    fn decide_by_name(&self, req: &EgressRequest<'_>) -> Decision {
        let views = PathViews::new(req.path);
        // First, as when the URL parser refused it: a URL with userinfo
        // gets no further unless a rule says so for this request.
        if req.userinfo && !self.userinfo_allowed(req, views.as_ref().ok()) {
            return Decision::deny(Reason::UserinfoInUrl);
        }
        if let Err(r) = self.check_host(req.host) {
            return Decision::deny(r);
        }
        if !is_token(req.method) {
            return Decision::deny(Reason::MalformedRequest);
        }
        if let Host::Ip(ip) = req.host
            && let Err(r) = self.check_addr(*ip)
        {
            return Decision::deny(r);
        }
        let Ok(views) = views else {
            return Decision::deny(Reason::AmbiguousPath);
        };
        let mut port_blocked = false;
        let strictest = self
            .rules
            .iter()
            .filter(|r| {
                r.applies_to(req.scheme, req.host)
                    && r.method_matches(req.method)
                    && r.path_matches(&views)
            })
            .filter(|r| {
                let covered = r.port_matches(req.scheme, req.port);
                port_blocked |= !covered && r.action != Outcome::Deny;
                covered
            })
            .map(|r| r.action)
            .max();
        let read = is_read(req.method);
        let default_port = req.port == req.scheme.default_port();
        let d = match strictest {
            Some(Outcome::Deny) => Decision::deny(Reason::RuleDeny),
            Some(Outcome::Ask) => Decision::ask(Reason::ApprovalRequired),
            Some(Outcome::Allow) => Decision::allow(Reason::RuleAllow),
            None => match self.mode {
                Mode::ReadPublic if read && default_port => Decision::allow(Reason::PublicRead),
                _ if port_blocked => Decision::deny(Reason::PortNotAllowed),
                Mode::ReadPublic if read => Decision::deny(Reason::PortNotAllowed),
                Mode::ReadPublic => Decision::deny(Reason::DefaultDeny),
                Mode::DenyAll => Decision::deny(Reason::DenyAll),
            },
        };
        // Writes need HTTPS, asked ones too (an approval must not send a
        // write in the clear).
        if d.outcome != Outcome::Deny && !read && req.scheme == Scheme::Http {
            return Decision::deny(Reason::WriteRequiresHttps);
        }
        d
    }

    /// Whether an allow rule with `allow_userinfo` matches the request
    /// (scheme, host, port, method and path; an ambiguous path matches
    /// none).
    fn userinfo_allowed(&self, req: &EgressRequest<'_>, views: Option<&PathViews>) -> bool {
        let Some(views) = views else { return false };
        self.rules.iter().any(|r| {
            r.action == Outcome::Allow
                && r.allow_userinfo
                && r.applies_to(req.scheme, req.host)
                && r.port_matches(req.scheme, req.port)
                && r.method_matches(req.method)
                && r.path_matches(views)
        })
    }

    /// Judge a protocol upgrade (`Connection: upgrade` with `Upgrade:
    /// <protocol>`) of a request [`decide`](Self::decide) allows. Only
    /// `websocket` (one token, any case) is ever allowed, and only where an
    /// allow rule with `websocket = true` matches the request (scheme, host,
    /// port, method and path); anything else — `h2c`, a list of protocols,
    /// or no such rule (the `read_public` mode allows no upgrade) — is
    /// `Err(upgrade_refused)`. Needs no DNS.
    pub fn check_upgrade(&self, req: &EgressRequest<'_>, protocol: &str) -> Result<(), Reason> {
        if !protocol.trim().eq_ignore_ascii_case("websocket") {
            return Err(Reason::UpgradeRefused);
        }
        let Ok(views) = PathViews::new(req.path) else {
            return Err(Reason::UpgradeRefused);
        };
        let allowed = self.rules.iter().any(|r| {
            r.action == Outcome::Allow
                && r.websocket
                && r.applies_to(req.scheme, req.host)
                && r.port_matches(req.scheme, req.port)
                && r.method_matches(req.method)
                && r.path_matches(&views)
        });
        if allowed {
            Ok(())
        } else {
            Err(Reason::UpgradeRefused)
        }
    }

    /// Judge a CONNECT to `host:port` before any handshake. The host, an IP
    /// literal's address and, for a name, every address are checked as in
    /// [`decide`](Self::decide). A CONNECT is HTTPS: only rules that apply
    /// to `https` and cover `port` count. Then: a rule denying (or asking
    /// for) every method and path of the host refuses it; a port that no
    /// allow or ask rule covers (and, in `read_public`, other than 443) is
    /// refused (`port_not_allowed`; in `deny_all`, a host no allow or ask
    /// rule names at all is `deny_all`); a blind tunnel is chosen only when
    /// inspection is not forced, a rule allows every method and path of the
    /// host over HTTPS on this port, and no deny or ask rule could apply to
    /// any request inside; everything else is intercepted so each request
    /// can be judged.
    ///
    /// A blind tunnel hides its bytes: the caller must check that they are
    /// TLS whose server name is `host` (a raw tunnel must never carry
    /// plaintext, nor TLS to another name).
    pub fn decide_connect(&self, host: &Host, port: u16, addrs: &[IpAddr]) -> ConnectDecision {
        match self.decide_connect_unresolved(host, port) {
            Unresolved::Decided(d) => d,
            Unresolved::Resolve(p) => p.decide_resolved(addrs),
        }
    }

    /// [`decide_connect`](Self::decide_connect) as far as it can go without
    /// resolving `host`: [`Unresolved::Decided`] when no DNS answer could
    /// change it (a refusal, or an IP literal), [`Unresolved::Resolve`] when
    /// the name must be resolved and the [`Pending`] finished with its
    /// addresses.
    pub fn decide_connect_unresolved<'a>(
        &'a self,
        host: &'a Host,
        port: u16,
    ) -> Unresolved<'a, ConnectDecision> {
        let d = self.decide_connect_by_name(host, port);
        if !matches!(d, ConnectDecision::Deny(_)) && matches!(host, Host::Domain(_)) {
            return Unresolved::Resolve(Pending {
                policy: self,
                host,
                decision: d,
            });
        }
        Unresolved::Decided(d)
    }

    fn decide_connect_by_name(&self, host: &Host, port: u16) -> ConnectDecision {
        if let Err(r) = self.check_host(host) {
            return ConnectDecision::Deny(Decision::deny(r));
        }
        if let Host::Ip(ip) = host
            && let Err(r) = self.check_addr(*ip)
        {
            return ConnectDecision::Deny(Decision::deny(r));
        }
        let named: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.applies_to(Scheme::Https, host))
            .collect();
        let applicable: Vec<&Rule> = named
            .iter()
            .copied()
            .filter(|r| r.port_matches(Scheme::Https, port))
            .collect();
        let total_max = applicable
            .iter()
            .filter(|r| r.is_total())
            .map(|r| r.action)
            .max();
        let any_restrictive = applicable.iter().any(|r| r.action != Outcome::Allow);
        match total_max {
            Some(Outcome::Deny) => return ConnectDecision::Deny(Decision::deny(Reason::RuleDeny)),
            // With an approver, fall through: the tunnel is intercepted
            // and each request inside asked.
            Some(Outcome::Ask) if !self.approvals => {
                return ConnectDecision::Deny(Decision::ask(Reason::ApprovalRequired));
            }
            Some(Outcome::Allow) if !any_restrictive && !self.inspect_all => {
                return ConnectDecision::Tunnel(Decision::allow(Reason::RuleAllow));
            }
            _ => {}
        }
        let covered = applicable.iter().any(|r| r.action != Outcome::Deny)
            || (self.mode == Mode::ReadPublic && port == Scheme::Https.default_port());
        if !covered {
            if self.mode == Mode::DenyAll && !named.iter().any(|r| r.action != Outcome::Deny) {
                return ConnectDecision::Deny(Decision::deny(Reason::DenyAll));
            }
            return ConnectDecision::Deny(Decision::deny(Reason::PortNotAllowed));
        }
        ConnectDecision::Intercept
    }

    /// The address guard alone, for the connector to call on the exact
    /// address it is about to dial. `allow_private` CIDRs are honoured (an
    /// IPv4-mapped IPv6 address also matches IPv4 CIDRs).
    pub fn check_addr(&self, addr: IpAddr) -> Result<(), Reason> {
        let mapped = match addr {
            IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let opted_in = self.allow_private.iter().any(|(net, len)| {
            in_cidr(addr, *net, *len) || mapped.is_some_and(|m| in_cidr(m, *net, *len))
        });
        if opted_in {
            return Ok(());
        }
        match addr::classify(addr) {
            None => Ok(()),
            Some(r) => Err(r),
        }
    }

    /// Host-level checks that need no DNS (see the `idn` module): a host
    /// the policy names itself passes; otherwise each non-ASCII label's
    /// characters, numbering systems, scripts and patterns are checked
    /// (`idn_disallowed_character`, `idn_mixed_numbers`,
    /// `mixed_script_host`, `idn_dangerous_pattern`,
    /// `idn_whole_script_confusable`), then the skeleton against the hosts
    /// the policy names (`confusable_host`, ASCII names too) and, for
    /// non-ASCII names, the shipped well-known domains (`idn_confusable`).
    pub fn check_host(&self, host: &Host) -> Result<(), Reason> {
        let Host::Domain(d) = host else { return Ok(()) };
        let Some(unicode) = idn::to_unicode(d) else {
            return Err(Reason::InvalidHost);
        };
        if !self.named.is_empty() && self.named.names(d, &unicode) {
            return Ok(());
        }
        if unicode.is_ascii() {
            if !self.named.is_empty() && self.named.lookalike(d, &unicode) {
                return Err(Reason::ConfusableHost);
            }
            return Ok(());
        }
        idn::check_labels(&unicode)?;
        if self.named.lookalike(d, &unicode) {
            return Err(Reason::ConfusableHost);
        }
        if idn::well_known().lookalike(d, &unicode) {
            return Err(Reason::IdnConfusable);
        }
        Ok(())
    }

    /// Every address must pass; none means the host did not resolve. An IP
    /// literal is judged as itself; `localhost` names as loopback.
    fn check_addrs(&self, host: &Host, addrs: &[IpAddr]) -> Result<(), Reason> {
        match host {
            Host::Ip(ip) => self.check_addr(*ip)?,
            Host::Domain(d) if is_localhost_name(d) => {
                if addrs.is_empty() {
                    return Err(Reason::LoopbackAddress);
                }
                if let Some(a) = addrs.iter().find(|a| !a.is_loopback()) {
                    // A resolver answering non-loopback for localhost is lying.
                    let _ = a;
                    return Err(Reason::LoopbackAddress);
                }
            }
            Host::Domain(_) if addrs.is_empty() => return Err(Reason::UnresolvableHost),
            Host::Domain(_) => {}
        }
        for a in addrs {
            self.check_addr(*a)?;
        }
        Ok(())
    }
}

fn masked(net: IpAddr, len: u8) -> IpAddr {
    match net {
        IpAddr::V4(a) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

fn compile_rule(
    ri: usize,
    r: &RuleSpec,
    named: &mut idn::SkeletonMap,
) -> Result<Rule, PolicyError> {
    if r.hosts.is_empty() {
        return Err(PolicyError::EmptyHosts { rule: ri });
    }
    let mut hosts = Vec::with_capacity(r.hosts.len());
    for (index, pat) in r.hosts.iter().enumerate() {
        let bad = |message: String| PolicyError::InvalidHostPattern {
            rule: ri,
            index,
            pattern: pat.clone(),
            message,
        };
        if pat == "*" {
            hosts.push(HostPat::Any);
            continue;
        }
        let (suffix, text) = match pat.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, pat.as_str()),
        };
        if text.contains('*') {
            return Err(bad(
                "`*` is only allowed as a leading `*.` label or alone".into()
            ));
        }
        if text.contains(['/', '?', '#', '@']) || text.contains("://") {
            return Err(bad("write a host name, not a URL".into()));
        }
        let host = parse_host(text).map_err(|e| bad(e.to_string()))?;
        match (suffix, host) {
            (true, Host::Ip(_)) => {
                return Err(bad("`*.` needs a domain suffix, not an IP address".into()));
            }
            (true, Host::Domain(d)) => {
                if !d.contains('.') {
                    return Err(bad(
                        "`*.` needs a suffix with at least two labels (e.g. `*.example.com`)"
                            .into(),
                    ));
                }
                named.insert(&d, true);
                hosts.push(HostPat::Suffix(d));
            }
            (false, Host::Domain(d)) => {
                named.insert(&d, false);
                hosts.push(HostPat::Exact(Host::Domain(d)));
            }
            (false, h @ Host::Ip(_)) => hosts.push(HostPat::Exact(h)),
        }
    }
    let methods = if r.methods.is_empty() || r.methods.iter().any(|m| m == "*") {
        None
    } else {
        let mut ms = Vec::with_capacity(r.methods.len());
        for (index, m) in r.methods.iter().enumerate() {
            if !is_token(m) {
                return Err(PolicyError::InvalidMethod {
                    rule: ri,
                    index,
                    method: m.clone(),
                });
            }
            ms.push(m.to_ascii_uppercase());
        }
        Some(ms)
    };
    let paths = if r.paths.is_empty() {
        None
    } else {
        let mut gs = Vec::with_capacity(r.paths.len());
        for (index, p) in r.paths.iter().enumerate() {
            gs.push(
                Glob::compile(p).map_err(|message| PolicyError::InvalidPathPattern {
                    rule: ri,
                    index,
                    pattern: p.clone(),
                    message,
                })?,
            );
        }
        Some(gs)
    };
    let mut schemes = r.schemes.clone();
    schemes.sort();
    schemes.dedup();
    if let Some(index) = r.ports.iter().position(|p| *p == 0) {
        return Err(PolicyError::InvalidPort { rule: ri, index });
    }
    let ports = if r.ports.is_empty() {
        None
    } else {
        let mut ps = r.ports.clone();
        ps.sort_unstable();
        ps.dedup();
        Some(ps)
    };
    Ok(Rule {
        hosts,
        schemes,
        methods,
        paths,
        fold: r.case_insensitive.unwrap_or(r.action != Outcome::Allow),
        ports,
        websocket: r.websocket,
        allow_userinfo: r.allow_userinfo,
        action: r.action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::parse_host;

    const PUBLIC: &[IpAddr] = &[IpAddr::V4(std::net::Ipv4Addr::new(93, 184, 215, 14))];

    fn rule(hosts: &[&str], methods: &[&str], paths: &[&str], action: Outcome) -> RuleSpec {
        RuleSpec {
            hosts: hosts.iter().map(|s| (*s).into()).collect(),
            schemes: vec![],
            methods: methods.iter().map(|s| (*s).into()).collect(),
            paths: paths.iter().map(|s| (*s).into()).collect(),
            ports: vec![],
            websocket: false,
            allow_userinfo: false,
            action,
            case_insensitive: None,
        }
    }

    fn policy(mode: Mode, rules: Vec<RuleSpec>) -> EgressPolicy {
        EgressPolicy::compile(PolicySpec {
            mode,
            rules,
            ..PolicySpec::default()
        })
        .expect("valid test policy")
    }

    fn decide(
        p: &EgressPolicy,
        method: &str,
        scheme: Scheme,
        host: &str,
        path: &str,
        addrs: &[IpAddr],
    ) -> Decision {
        let host = parse_host(host).expect("test host");
        p.decide(&EgressRequest {
            method,
            scheme,
            host: &host,
            port: scheme.default_port(),
            path,
            addrs,
            run: None,
            userinfo: false,
        })
    }

    #[test]
    fn read_public_reads_anywhere_public_writes_only_by_rule() {
        let p = EgressPolicy::read_public();
        for m in ["GET", "HEAD", "OPTIONS"] {
            assert_eq!(
                decide(&p, m, Scheme::Https, "example.com", "/", PUBLIC),
                Decision::allow(Reason::PublicRead)
            );
            assert_eq!(
                decide(&p, m, Scheme::Http, "example.com", "/", PUBLIC),
                Decision::allow(Reason::PublicRead)
            );
        }
        for m in [
            "POST", "PUT", "PATCH", "DELETE", "TRACE", "PROPFIND", "get", "Get",
        ] {
            assert_eq!(
                decide(&p, m, Scheme::Https, "example.com", "/", PUBLIC),
                Decision::deny(Reason::DefaultDeny),
                "{m}"
            );
        }
        assert_eq!(
            decide(&p, "GE T", Scheme::Https, "example.com", "/", PUBLIC),
            Decision::deny(Reason::MalformedRequest)
        );
        assert_eq!(
            decide(&p, "", Scheme::Https, "example.com", "/", PUBLIC),
            Decision::deny(Reason::MalformedRequest)
        );
    }

    #[test]
    fn deny_all_allows_only_rules() {
        let p = policy(
            Mode::DenyAll,
            vec![rule(&["api.example.com"], &["GET"], &[], Outcome::Allow)],
        );
        assert_eq!(
            decide(&p, "GET", Scheme::Https, "api.example.com", "/", PUBLIC),
            Decision::allow(Reason::RuleAllow)
        );
        assert_eq!(
            decide(&p, "HEAD", Scheme::Https, "api.example.com", "/", PUBLIC),
            Decision::deny(Reason::DenyAll)
        );
        assert_eq!(
            decide(&p, "GET", Scheme::Https, "example.com", "/", PUBLIC),
            Decision::deny(Reason::DenyAll)
        );
        assert_eq!(EgressPolicy::deny_all().mode(), Mode::DenyAll);
    }

    #[test]
    fn strictest_matching_outcome_wins_and_writes_need_https() {
        let p = policy(
            Mode::ReadPublic,
            vec![
                rule(&["*.example.com"], &["*"], &["/**"], Outcome::Allow),
                rule(&["api.example.com"], &["DELETE"], &[], Outcome::Deny),
                rule(
                    &["api.example.com"],
                    &["POST"],
                    &["/admin/**"],
                    Outcome::Ask,
                ),
                rule(&["ro.example.com"], &["GET"], &[], Outcome::Deny),
            ],
        );
        let d = |m: &str, s: Scheme, h: &str, path: &str| decide(&p, m, s, h, path, PUBLIC);
        assert_eq!(
            d("POST", Scheme::Https, "api.example.com", "/x"),
            Decision::allow(Reason::RuleAllow)
        );
        assert_eq!(
            d("POST", Scheme::Http, "api.example.com", "/x"),
            Decision::deny(Reason::WriteRequiresHttps)
        );
        assert_eq!(
            d("delete", Scheme::Https, "api.example.com", "/x"),
            Decision::deny(Reason::RuleDeny)
        );
        assert_eq!(
            d("POST", Scheme::Https, "api.example.com", "/admin"),
            Decision::ask(Reason::ApprovalRequired)
        );
        assert_eq!(
            d("POST", Scheme::Https, "api.example.com", "/x/../admin/u"),
            Decision::ask(Reason::ApprovalRequired)
        );
        assert_eq!(
            d("POST", Scheme::Https, "api.example.com", "/x/..%2Fadmin/u"),
            Decision::deny(Reason::AmbiguousPath)
        );
        assert_eq!(
            d("POST", Scheme::Https, "api.example.com", "/%61dmin/u"),
            Decision::ask(Reason::ApprovalRequired)
        );
        assert_eq!(
            d("GET", Scheme::Https, "ro.example.com", "/"),
            Decision::deny(Reason::RuleDeny)
        );
        // `*.example.com` does not cover the apex.
        assert_eq!(
            d("POST", Scheme::Https, "example.com", "/"),
            Decision::deny(Reason::DefaultDeny)
        );
        assert_eq!(
            d("POST", Scheme::Https, "notexample.com", "/"),
            Decision::deny(Reason::DefaultDeny)
        );
    }

    #[test]
    fn allow_rules_need_both_path_views() {
        let p = policy(
            Mode::DenyAll,
            vec![rule(
                &["api.example.com"],
                &["POST"],
                &["/repos/mine/**"],
                Outcome::Allow,
            )],
        );
        let d = |path: &str| decide(&p, "POST", Scheme::Https, "api.example.com", path, PUBLIC);
        assert_eq!(
            d("/repos/mine/issues?x=/repos/other"),
            Decision::allow(Reason::RuleAllow)
        );
        assert_eq!(d("/repos/mine/../other"), Decision::deny(Reason::DenyAll));
        assert_eq!(
            d("/repos/mine/..%2fother"),
            Decision::deny(Reason::AmbiguousPath)
        );
        assert_eq!(
            d("/repos/mine/%2e%2e/other"),
            Decision::deny(Reason::DenyAll)
        );
        assert_eq!(
            d("/repos/other#/repos/mine/"),
            Decision::deny(Reason::DenyAll)
        );
        // Path parameters: `/repos/mine;x/../other` is `/repos/other`;
        // `..;` is refused outright; parameters in a normal segment are fine
        // when both readings stay under the rule.
        assert_eq!(
            d("/repos/mine;x/../other/issues"),
            Decision::deny(Reason::DenyAll)
        );
        assert_eq!(
            d("/repos/mine/..;/other/issues"),
            Decision::deny(Reason::AmbiguousPath)
        );
        assert_eq!(
            d("/repos/mine/issues;jsessionid=1"),
            Decision::allow(Reason::RuleAllow)
        );
        // An allow rule is case-sensitive unless it says otherwise.
        assert_eq!(d("/REPOS/mine/issues"), Decision::deny(Reason::DenyAll));
    }

    /// The review's spellings: none walks around a deny on `/admin/**`, and
    /// `case_insensitive = false` turns the folding off for a deny rule.
    #[test]
    fn path_confusion_spellings_cannot_walk_around_a_deny_rule() {
        let p = policy(
            Mode::ReadPublic,
            vec![rule(
                &["api.example.com"],
                &[],
                &["/admin/**"],
                Outcome::Deny,
            )],
        );
        let d = |path: &str| decide(&p, "GET", Scheme::Https, "api.example.com", path, PUBLIC);
        for path in [
            "/admin/users",
            "/admin;/users",
            "/admin;jsessionid=1/users",
            "/ADMIN",
            "/Admin/users",
            "/%61dmin/users",
            "/x/../admin/users",
            "//admin//users",
            "/./admin/users",
            "/admin./users",
            "/;x/admin/users",
            "/admin%20/users",
        ] {
            assert_eq!(d(path), Decision::deny(Reason::RuleDeny), "{path}");
        }
        for path in [
            "/x/..;/admin/users",
            "/admin%2fusers",
            "/x/%2e%2e%2fadmin",
            "/%2561dmin/users",
            "/x/..%5cadmin",
            "/admin%00/users",
        ] {
            assert_eq!(d(path), Decision::deny(Reason::AmbiguousPath), "{path}");
        }
        assert_eq!(d("/administrator"), Decision::allow(Reason::PublicRead));
        let sensitive = policy(
            Mode::ReadPublic,
            vec![RuleSpec {
                case_insensitive: Some(false),
                ..rule(&["api.example.com"], &[], &["/admin/**"], Outcome::Deny)
            }],
        );
        assert_eq!(
            decide(
                &sensitive,
                "GET",
                Scheme::Https,
                "api.example.com",
                "/ADMIN",
                PUBLIC
            ),
            Decision::allow(Reason::PublicRead)
        );
        let folded_allow = policy(
            Mode::DenyAll,
            vec![RuleSpec {
                case_insensitive: Some(true),
                ..rule(&["api.example.com"], &[], &["/api/**"], Outcome::Allow)
            }],
        );
        assert_eq!(
            decide(
                &folded_allow,
                "GET",
                Scheme::Https,
                "api.example.com",
                "/API/v1",
                PUBLIC
            ),
            Decision::allow(Reason::RuleAllow)
        );
    }

    #[test]
    fn every_address_must_pass() {
        let p = EgressPolicy::read_public();
        let addrs: Vec<IpAddr> = vec![PUBLIC[0], "10.0.0.1".parse().expect("ip")];
        assert_eq!(
            decide(&p, "GET", Scheme::Https, "example.com", "/", &addrs),
            Decision::deny(Reason::PrivateAddress)
        );
        assert_eq!(
            decide(&p, "GET", Scheme::Https, "example.com", "/", &[]),
            Decision::deny(Reason::UnresolvableHost)
        );
        assert_eq!(
            decide(&p, "GET", Scheme::Https, "localhost", "/", PUBLIC),
            Decision::deny(Reason::LoopbackAddress)
        );
        assert_eq!(
            decide(&p, "GET", Scheme::Https, "a.localhost", "/", &[]),
            Decision::deny(Reason::LoopbackAddress)
        );
        // An IP literal is judged as itself, whatever the caller passes.
        assert_eq!(
            decide(&p, "GET", Scheme::Https, "0x7f.1", "/", PUBLIC),
            Decision::deny(Reason::LoopbackAddress)
        );
        assert_eq!(
            decide(&p, "GET", Scheme::Https, "8.8.8.8", "/", &[]),
            Decision::allow(Reason::PublicRead)
        );
    }

    #[test]
    fn allow_private_opts_in_exact_ranges() {
        let p = EgressPolicy::compile(PolicySpec {
            allow_private: vec![
                ("127.0.0.0".parse().expect("ip"), 8),
                ("fd00::".parse().expect("ip"), 64),
            ],
            ..PolicySpec::default()
        })
        .expect("valid");
        assert_eq!(p.check_addr("127.0.0.2".parse().expect("ip")), Ok(()));
        assert_eq!(
            p.check_addr("::ffff:127.0.0.2".parse().expect("ip")),
            Ok(())
        );
        assert_eq!(p.check_addr("fd00::5".parse().expect("ip")), Ok(()));
        assert_eq!(
            p.check_addr("fd00:0:0:1::5".parse().expect("ip")),
            Err(Reason::PrivateAddress)
        );
        assert_eq!(
            p.check_addr("::1".parse().expect("ip")),
            Err(Reason::LoopbackAddress)
        );
        assert_eq!(
            p.check_addr("169.254.169.254".parse().expect("ip")),
            Err(Reason::LinkLocalAddress)
        );
        let bad = PolicySpec {
            allow_private: vec![("10.0.0.1".parse().expect("ip"), 8)],
            ..PolicySpec::default()
        };
        assert!(matches!(
            EgressPolicy::compile(bad),
            Err(PolicyError::InvalidCidr { index: 0, .. })
        ));
    }

    #[test]
    fn idn_mixed_script_and_confusables() {
        let p = policy(
            Mode::ReadPublic,
            vec![rule(
                &["apple.com", "*.github.com", "paypal.com"],
                &["POST"],
                &[],
                Outcome::Allow,
            )],
        );
        let d = |h: &str| decide(&p, "GET", Scheme::Https, h, "/", PUBLIC);
        assert_eq!(
            d("аpple.com"),
            Decision::deny(Reason::MixedScriptHost),
            "Cyrillic а + Latin"
        );
        assert_eq!(
            d("xn--pple-43d.com"),
            Decision::deny(Reason::MixedScriptHost),
            "same, as Punycode"
        );
        assert_eq!(
            d("аррӏе.com"),
            Decision::deny(Reason::IdnWholeScriptConfusable),
            "whole-script Cyrillic"
        );
        assert_eq!(
            d("xn--80ak6aa92e.com"),
            Decision::deny(Reason::IdnWholeScriptConfusable)
        );
        assert_eq!(d("äpple.com"), Decision::deny(Reason::ConfusableHost));
        assert_eq!(d("app1e.com"), Decision::deny(Reason::ConfusableHost));
        assert_eq!(d("paypa1.com"), Decision::deny(Reason::ConfusableHost));
        assert_eq!(d("api.gíthub.com"), Decision::deny(Reason::ConfusableHost));
        assert_eq!(d("gıthub.com"), Decision::deny(Reason::ConfusableHost));
        assert_eq!(d("api.github.com"), Decision::allow(Reason::PublicRead));
        assert_eq!(d("apple.com"), Decision::allow(Reason::PublicRead));
        assert_eq!(d("github.com"), Decision::allow(Reason::PublicRead));
        // Legitimate IDNs.
        for h in [
            "münchen.de",
            "пример.рф",
            "例え.jp",
            "日本語テキスト.jp",
            "ドメイン名例.jp",
            "中文.tw",
            "한국어.kr",
            "ελληνικά.gr",
            "bücher.example",
            "xn--mnchen-3ya.de",
            "テストabc.jp",
        ] {
            assert_eq!(d(h), Decision::allow(Reason::PublicRead), "{h}");
        }
        for h in [
            "pаypal.com",
            "gооgle.com",
            "ѕcript.com",
            "abcдеф.com",
            "exαmple.com",
            "テストпример.com",
        ] {
            assert_eq!(d(h), Decision::deny(Reason::MixedScriptHost), "{h}");
        }
    }

    #[test]
    fn with_approvals_an_ask_is_resolved_and_an_asked_host_intercepted() {
        let p = policy(
            Mode::ReadPublic,
            vec![
                rule(&["held.example.com"], &[], &[], Outcome::Ask),
                rule(&["api.example.com"], &["POST"], &["/v1/**"], Outcome::Allow),
                rule(&["*.example.com"], &["POST"], &[], Outcome::Allow),
                rule(&["all.example.org"], &[], &[], Outcome::Allow),
            ],
        );
        let host = parse_host("held.example.com").expect("host");
        let req = EgressRequest {
            method: "POST",
            scheme: Scheme::Https,
            host: &host,
            port: 443,
            path: "/x",
            addrs: &[],
            run: None,
            userinfo: false,
        };
        // Without an approver: refused on the name, no DNS.
        assert!(matches!(
            p.decide_unresolved(&req),
            Unresolved::Decided(d) if d == Decision::ask(Reason::ApprovalRequired)
        ));
        assert_eq!(
            connect(&p, "held.example.com"),
            ConnectDecision::Deny(Decision::ask(Reason::ApprovalRequired))
        );
        let p = p.with_approvals(true);
        assert!(p.approvals());
        let Unresolved::Resolve(pending) = p.decide_unresolved(&req) else {
            panic!("an ask must be resolved when an approver is on the path");
        };
        assert_eq!(
            pending.decide_resolved(PUBLIC),
            Decision::ask(Reason::ApprovalRequired)
        );
        // The SSRF guard still refuses.
        assert_eq!(
            decide(
                &p,
                "POST",
                Scheme::Https,
                "held.example.com",
                "/",
                &["10.0.0.1".parse().expect("ip")]
            ),
            Decision::deny(Reason::PrivateAddress)
        );
        assert_eq!(connect(&p, "held.example.com"), ConnectDecision::Intercept);
        assert_eq!(
            decide(&p, "POST", Scheme::Http, "held.example.com", "/", PUBLIC),
            Decision::deny(Reason::WriteRequiresHttps)
        );

        let explicit = |m: &str, h: &str, path: &str| {
            let host = parse_host(h).expect("host");
            p.explicitly_allows_write(&EgressRequest {
                method: m,
                scheme: Scheme::Https,
                host: &host,
                port: 443,
                path,
                addrs: &[],
                run: None,
                userinfo: false,
            })
        };
        assert!(explicit("POST", "api.example.com", "/v1/send"));
        assert!(!explicit("POST", "api.example.com", "/v2/send"), "path");
        assert!(!explicit("PUT", "api.example.com", "/v1/send"), "method");
        assert!(!explicit("GET", "api.example.com", "/v1/send"), "a read");
        assert!(!explicit("POST", "other.example.com", "/"), "wildcard host");
        assert!(!explicit("POST", "all.example.org", "/"), "every method");
    }

    fn connect(p: &EgressPolicy, host: &str) -> ConnectDecision {
        p.decide_connect(&parse_host(host).expect("test host"), 443, PUBLIC)
    }

    #[test]
    fn tunnel_only_when_nothing_inside_could_be_refused() {
        let p = policy(
            Mode::ReadPublic,
            vec![
                rule(&["open.example.com"], &[], &[], Outcome::Allow),
                rule(&["glob.example.com"], &["*"], &["/**"], Outcome::Allow),
                rule(&["mixed.example.com"], &[], &[], Outcome::Allow),
                rule(&["mixed.example.com"], &["DELETE"], &[], Outcome::Deny),
                rule(
                    &["part.example.com"],
                    &["POST"],
                    &["/v1/**"],
                    Outcome::Allow,
                ),
                rule(&["blocked.example.com"], &[], &[], Outcome::Deny),
                rule(&["held.example.com"], &[], &[], Outcome::Ask),
            ],
        );
        let tunnel = ConnectDecision::Tunnel(Decision::allow(Reason::RuleAllow));
        assert_eq!(connect(&p, "open.example.com"), tunnel);
        assert_eq!(connect(&p, "glob.example.com"), tunnel);
        assert_eq!(connect(&p, "mixed.example.com"), ConnectDecision::Intercept);
        assert_eq!(connect(&p, "part.example.com"), ConnectDecision::Intercept);
        assert_eq!(
            connect(&p, "other.example.com"),
            ConnectDecision::Intercept,
            "read_public must see writes"
        );
        assert_eq!(
            connect(&p, "blocked.example.com"),
            ConnectDecision::Deny(Decision::deny(Reason::RuleDeny))
        );
        assert_eq!(
            connect(&p, "held.example.com"),
            ConnectDecision::Deny(Decision::ask(Reason::ApprovalRequired))
        );
        assert_eq!(
            p.decide_connect(
                &parse_host("open.example.com").expect("host"),
                443,
                &["10.1.1.1".parse().expect("ip")]
            ),
            ConnectDecision::Deny(Decision::deny(Reason::PrivateAddress))
        );
        assert_eq!(
            connect(&p, "0рen.example.com"),
            ConnectDecision::Deny(Decision::deny(Reason::MixedScriptHost))
        );

        let inspect = EgressPolicy::compile(PolicySpec {
            inspect_all: true,
            rules: vec![rule(&["open.example.com"], &[], &[], Outcome::Allow)],
            ..PolicySpec::default()
        })
        .expect("valid");
        assert_eq!(
            connect(&inspect, "open.example.com"),
            ConnectDecision::Intercept
        );

        let https_only = policy(
            Mode::DenyAll,
            vec![RuleSpec {
                schemes: vec![Scheme::Http],
                ..rule(&["a.example.com"], &[], &[], Outcome::Allow)
            }],
        );
        assert_eq!(
            connect(&https_only, "a.example.com"),
            ConnectDecision::Deny(Decision::deny(Reason::DenyAll))
        );
        let d = policy(
            Mode::DenyAll,
            vec![rule(&["a.example.com"], &["GET"], &[], Outcome::Allow)],
        );
        assert_eq!(connect(&d, "a.example.com"), ConnectDecision::Intercept);
        assert_eq!(
            connect(&d, "b.example.com"),
            ConnectDecision::Deny(Decision::deny(Reason::DenyAll))
        );
    }

    fn on_ports(r: RuleSpec, ports: &[u16]) -> RuleSpec {
        RuleSpec {
            ports: ports.to_vec(),
            ..r
        }
    }

    fn req<'a>(method: &'a str, scheme: Scheme, host: &'a Host, port: u16) -> EgressRequest<'a> {
        EgressRequest {
            method,
            scheme,
            host,
            port,
            path: "/ws",
            addrs: PUBLIC,
            run: None,
            userinfo: false,
        }
    }

    #[test]
    fn ports_allow_rules_default_to_the_scheme_port_deny_rules_to_every_port() {
        let p = policy(
            Mode::ReadPublic,
            vec![
                rule(&["api.example.com"], &[], &[], Outcome::Allow),
                on_ports(
                    rule(&["alt.example.com"], &[], &[], Outcome::Allow),
                    &[8443],
                ),
                rule(&["alt.example.com"], &["DELETE"], &[], Outcome::Deny),
            ],
        );
        let api = parse_host("api.example.com").expect("host");
        let alt = parse_host("alt.example.com").expect("host");
        let other = parse_host("other.example.com").expect("host");
        let d = |m: &str, s: Scheme, h: &Host, port: u16| p.decide(&req(m, s, h, port));
        assert_eq!(
            d("POST", Scheme::Https, &api, 443),
            Decision::allow(Reason::RuleAllow)
        );
        assert_eq!(
            d("POST", Scheme::Https, &api, 8443),
            Decision::deny(Reason::PortNotAllowed)
        );
        assert_eq!(
            d("GET", Scheme::Http, &api, 80),
            Decision::allow(Reason::RuleAllow)
        );
        assert_eq!(
            d("GET", Scheme::Http, &api, 443),
            Decision::deny(Reason::PortNotAllowed)
        );
        assert_eq!(
            d("POST", Scheme::Https, &alt, 8443),
            Decision::allow(Reason::RuleAllow)
        );
        assert_eq!(
            d("DELETE", Scheme::Https, &alt, 8443),
            Decision::deny(Reason::RuleDeny)
        );
        assert_eq!(
            d("GET", Scheme::Https, &other, 443),
            Decision::allow(Reason::PublicRead)
        );
        assert_eq!(
            d("GET", Scheme::Https, &other, 8443),
            Decision::deny(Reason::PortNotAllowed)
        );
        assert_eq!(
            d("POST", Scheme::Https, &other, 443),
            Decision::deny(Reason::DefaultDeny)
        );
        // CONNECT: only covered ports open; a total allow rule on its port
        // tunnels.
        let c = |h: &Host, port: u16| p.decide_connect(h, port, PUBLIC);
        let tunnel = ConnectDecision::Tunnel(Decision::allow(Reason::RuleAllow));
        assert_eq!(c(&api, 443), tunnel);
        for port in [22, 25, 80, 8080] {
            assert_eq!(
                c(&api, port),
                ConnectDecision::Deny(Decision::deny(Reason::PortNotAllowed)),
                "{port}"
            );
        }
        assert_eq!(c(&alt, 8443), ConnectDecision::Intercept);
        assert_eq!(c(&other, 443), ConnectDecision::Intercept);
        assert_eq!(
            c(&other, 8443),
            ConnectDecision::Deny(Decision::deny(Reason::PortNotAllowed))
        );
        let locked = policy(
            Mode::DenyAll,
            vec![rule(&["api.example.com"], &[], &[], Outcome::Allow)],
        );
        assert_eq!(
            locked.decide_connect(&api, 8443, PUBLIC),
            ConnectDecision::Deny(Decision::deny(Reason::PortNotAllowed))
        );
        assert_eq!(
            locked.decide_connect(&other, 443, PUBLIC),
            ConnectDecision::Deny(Decision::deny(Reason::DenyAll))
        );
        assert!(matches!(
            EgressPolicy::compile(PolicySpec {
                rules: vec![on_ports(
                    rule(&["a.com"], &[], &[], Outcome::Allow),
                    &[443, 0]
                )],
                ..PolicySpec::default()
            }),
            Err(PolicyError::InvalidPort { rule: 0, index: 1 })
        ));
    }

    #[test]
    fn a_refusal_on_the_name_needs_no_dns() {
        let p = policy(
            Mode::DenyAll,
            vec![rule(&["docs.example.com"], &["GET"], &[], Outcome::Allow)],
        );
        let docs = parse_host("docs.example.com").expect("host");
        let leak = parse_host("c2VjcmV0.exfil.example.net").expect("host");
        let lit = parse_host("10.0.0.1").expect("host");
        let unresolved = |m: &str, h: &Host| {
            p.decide_unresolved(&req(m, Scheme::Https, h, 443))
                .decided()
        };
        assert_eq!(
            unresolved("GET", &leak),
            Some(Decision::deny(Reason::DenyAll))
        );
        assert_eq!(
            unresolved("POST", &docs),
            Some(Decision::deny(Reason::DenyAll))
        );
        assert_eq!(
            unresolved("GET", &docs),
            None,
            "allowed: resolve, then judge"
        );
        assert_eq!(
            unresolved("GET", &lit),
            Some(Decision::deny(Reason::PrivateAddress)),
            "an IP literal is its own address"
        );
        assert_eq!(
            p.decide_connect_unresolved(&leak, 443).decided(),
            Some(ConnectDecision::Deny(Decision::deny(Reason::DenyAll)))
        );
        assert_eq!(p.decide_connect_unresolved(&docs, 443).decided(), None);
        // The addresses still decide an allowed name.
        let private: &[IpAddr] = &["10.0.0.1".parse().expect("ip")];
        assert_eq!(
            p.decide(&EgressRequest {
                addrs: private,
                ..req("GET", Scheme::Https, &docs, 443)
            }),
            Decision::deny(Reason::PrivateAddress)
        );
    }

    #[test]
    fn userinfo_is_refused_unless_an_allow_rule_for_the_request_allows_it() {
        let p = policy(
            Mode::ReadPublic,
            vec![
                RuleSpec {
                    allow_userinfo: true,
                    schemes: vec![Scheme::Https],
                    ..rule(
                        &["repo.example.com"],
                        &["GET"],
                        &["/simple/**"],
                        Outcome::Allow,
                    )
                },
                RuleSpec {
                    allow_userinfo: true,
                    ..rule(
                        &["repo.example.com"],
                        &[],
                        &["/simple/admin"],
                        Outcome::Deny,
                    )
                },
                // Ignored on a deny rule: it allows nothing.
                RuleSpec {
                    allow_userinfo: true,
                    ..rule(&["blocked.example.com"], &[], &["/x"], Outcome::Deny)
                },
            ],
        );
        let repo = parse_host("repo.example.com").expect("host");
        let other = parse_host("other.example.com").expect("host");
        let blocked = parse_host("blocked.example.com").expect("host");
        let with = |method, scheme, host, path| {
            p.decide(&EgressRequest {
                path,
                userinfo: true,
                ..req(method, scheme, host, scheme.default_port())
            })
        };
        let allow = Decision::allow(Reason::RuleAllow);
        let refused = Decision::deny(Reason::UserinfoInUrl);
        assert_eq!(with("GET", Scheme::Https, &repo, "/simple/pkg"), allow);
        // Outside what the rule matches: method, path, scheme, host.
        assert_eq!(with("POST", Scheme::Https, &repo, "/simple/pkg"), refused);
        assert_eq!(with("GET", Scheme::Https, &repo, "/other"), refused);
        assert_eq!(with("GET", Scheme::Http, &repo, "/simple/pkg"), refused);
        assert_eq!(with("GET", Scheme::Https, &other, "/simple/pkg"), refused);
        assert_eq!(with("GET", Scheme::Https, &blocked, "/x"), refused);
        // A deny rule still wins where both match.
        assert_eq!(
            with("GET", Scheme::Https, &repo, "/simple/admin"),
            Decision::deny(Reason::RuleDeny)
        );
        // Refused on the URL alone, before any DNS, and before the address
        // of an IP literal is judged (as when the URL parser refused it).
        let lit = parse_host("127.0.0.1").expect("host");
        assert_eq!(
            p.decide_unresolved(&EgressRequest {
                userinfo: true,
                ..req("GET", Scheme::Https, &other, 443)
            })
            .decided(),
            Some(refused)
        );
        assert_eq!(with("GET", Scheme::Https, &lit, "/"), refused);
        // Without userinfo nothing changes.
        assert_eq!(
            p.decide(&EgressRequest {
                path: "/",
                ..req("GET", Scheme::Https, &other, 443)
            }),
            Decision::allow(Reason::PublicRead)
        );
    }

    #[test]
    fn a_pending_decision_is_finished_by_the_address_guard_alone() {
        let p = policy(
            Mode::DenyAll,
            vec![rule(
                &["docs.example.com", "localhost"],
                &["GET"],
                &[],
                Outcome::Allow,
            )],
        );
        let docs = parse_host("docs.example.com").expect("host");
        let local = parse_host("localhost").expect("host");
        let pending = |h| match p.decide_unresolved(&req("GET", Scheme::Https, h, 443)) {
            Unresolved::Resolve(pending) => pending,
            Unresolved::Decided(d) => panic!("decided without DNS: {d:?}"),
        };
        assert_eq!(
            pending(&docs).decide_resolved(PUBLIC),
            Decision::allow(Reason::RuleAllow)
        );
        assert_eq!(
            pending(&docs).decide_resolved(&[]),
            Decision::deny(Reason::UnresolvableHost)
        );
        let mixed: &[IpAddr] = &[PUBLIC[0], "169.254.169.254".parse().expect("ip")];
        assert_eq!(
            pending(&docs).decide_resolved(mixed),
            Decision::deny(Reason::LinkLocalAddress)
        );
        assert_eq!(
            pending(&local).decide_resolved(PUBLIC),
            Decision::deny(Reason::LoopbackAddress)
        );
        // The same for a CONNECT.
        let Unresolved::Resolve(c) = p.decide_connect_unresolved(&docs, 443) else {
            panic!("an allowed name needs its addresses");
        };
        assert_eq!(
            c.decide_resolved(mixed),
            ConnectDecision::Deny(Decision::deny(Reason::LinkLocalAddress))
        );
        // `decide` is both stages in one.
        for addrs in [PUBLIC, mixed, &[]] {
            let full = p.decide(&EgressRequest {
                addrs,
                ..req("GET", Scheme::Https, &docs, 443)
            });
            assert_eq!(full, pending(&docs).decide_resolved(addrs));
        }
    }

    #[test]
    fn only_websocket_upgrades_and_only_where_a_rule_says_so() {
        let p = policy(
            Mode::ReadPublic,
            vec![
                RuleSpec {
                    websocket: true,
                    ..rule(&["ws.example.com"], &["GET"], &["/ws"], Outcome::Allow)
                },
                rule(&["open.example.com"], &[], &[], Outcome::Allow),
            ],
        );
        let ws = parse_host("ws.example.com").expect("host");
        let open = parse_host("open.example.com").expect("host");
        let get = req("GET", Scheme::Https, &ws, 443);
        assert_eq!(p.check_upgrade(&get, "websocket"), Ok(()));
        assert_eq!(p.check_upgrade(&get, "WebSocket"), Ok(()));
        for proto in ["h2c", "websocket, h2c", "h2c, websocket", "", "tls/1.0"] {
            assert_eq!(
                p.check_upgrade(&get, proto),
                Err(Reason::UpgradeRefused),
                "{proto:?}"
            );
        }
        let other_path = EgressRequest {
            path: "/api",
            ..get
        };
        assert_eq!(
            p.check_upgrade(&other_path, "websocket"),
            Err(Reason::UpgradeRefused)
        );
        // Allowed without websocket = true: no upgrade; read_public: none.
        assert_eq!(
            p.check_upgrade(&req("GET", Scheme::Https, &open, 443), "websocket"),
            Err(Reason::UpgradeRefused)
        );
        let public = parse_host("example.com").expect("host");
        assert_eq!(
            p.check_upgrade(&req("GET", Scheme::Https, &public, 443), "websocket"),
            Err(Reason::UpgradeRefused)
        );
    }

    #[test]
    fn bad_specs_name_the_item() {
        let bad = |r: RuleSpec| {
            EgressPolicy::compile(PolicySpec {
                rules: vec![r],
                ..PolicySpec::default()
            })
            .expect_err("invalid")
        };
        assert!(matches!(
            bad(rule(&[], &[], &[], Outcome::Allow)),
            PolicyError::EmptyHosts { rule: 0 }
        ));
        for h in [
            "*.com*",
            "a.*.com",
            "http://a.com",
            "a..com",
            "*.1.2.3.4",
            "*.com",
            "a.com/x",
            "",
        ] {
            assert!(
                matches!(
                    bad(rule(&["ok.com", h], &[], &[], Outcome::Allow)),
                    PolicyError::InvalidHostPattern { index: 1, .. }
                ),
                "{h}"
            );
        }
        assert!(matches!(
            bad(rule(&["a.com"], &["GET", "P O"], &[], Outcome::Allow)),
            PolicyError::InvalidMethod { index: 1, .. }
        ));
        assert!(matches!(
            bad(rule(&["a.com"], &[], &["/ok", "nope"], Outcome::Allow)),
            PolicyError::InvalidPathPattern { index: 1, .. }
        ));
    }

    #[test]
    fn policy_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<EgressPolicy>();
    }
}
