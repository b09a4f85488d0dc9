//! Host, authority and URL parsing, following the WHATWG URL standard's host
//! parser for the special schemes `http` and `https`.
//!
//! Untrusted text becomes a typed [`Host`] here, once: every IPv4 spelling
//! (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`, `127.0.0.1.`), percent-encoded
//! and full-width forms, IPv6 literals, and Unicode names (UTS-46 processed to
//! lowercase ASCII) all come out in one canonical form that the address guard
//! and the rule matcher judge.

use crate::percent::percent_decode;
use airlock_types::{Reason, Secret};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The schemes the egress proxy carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// Parse a scheme name, case-insensitively.
    pub fn parse(s: &str) -> Option<Scheme> {
        if s.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else if s.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed, canonical host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name: ASCII, lowercase, UTS-46 processed (non-ASCII labels as
    /// `xn--` Punycode), no trailing dot.
    Domain(String),
    /// An IP address literal, in any spelling the URL standard accepts.
    Ip(IpAddr),
}

impl Host {
    /// The IP address, when the host is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Domain(_) => None,
        }
    }
}

impl fmt::Display for Host {
    /// Domains as they are, IPv4 dotted, IPv6 in brackets (URL form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
        }
    }
}

/// Why a host, authority or URL was refused. Messages never echo userinfo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The host is empty.
    #[error("empty host")]
    Empty,
    /// Percent-decoding produced bytes that are not UTF-8.
    #[error("host is not UTF-8 after percent-decoding")]
    NotUtf8,
    /// UTS-46 (IDNA) processing failed, or a forbidden code point is present.
    #[error("host {0:?} is not a valid domain name (IDNA)")]
    Idna(String),
    /// The host ends in a number but is not a valid IPv4 address.
    #[error("host {0:?} looks like an IPv4 address but is not a valid one")]
    InvalidIpv4(String),
    /// A bracketed IPv6 literal is malformed (zone identifiers are refused).
    #[error("host {0:?} is not a valid IPv6 literal")]
    InvalidIpv6(String),
    /// A character or label shape no DNS name may have.
    #[error("host {0:?} is not a valid DNS name")]
    InvalidName(String),
    /// The port is not a number in 1..=65535.
    #[error("port {0:?} is not a number between 1 and 65535")]
    InvalidPort(String),
    /// A `host:port` authority is malformed.
    #[error("authority {0:?} is not host:port")]
    InvalidAuthority(String),
    /// The URL's scheme is neither `http` nor `https`.
    #[error("scheme {0:?} is not http or https")]
    UnsupportedScheme(String),
    /// The URL is not absolute (`scheme://host/...`).
    #[error("URL is not absolute (scheme://host/...)")]
    NotAbsolute,
    /// The path is spelled in a way servers read differently (`..;`, an
    /// encoded `/` or `\`, double encoding, ...); the phrase says which.
    #[error("ambiguous path: {0}")]
    AmbiguousPath(&'static str),
    /// The URL carries user information (`user:pass@host`). Credentials
    /// belong in the vault; such URLs are a classic parser-confusion and
    /// exfiltration shape. The value is never kept or echoed.
    #[error("URL carries user information (user:pass@host), which is refused")]
    Userinfo,
}

impl HostError {
    /// The reason code a decision carries when a request's host or URL
    /// cannot be parsed: `invalid_host` for the host and authority,
    /// `malformed_request` for the port, scheme or URL shape.
    pub fn reason(&self) -> Reason {
        match self {
            HostError::Empty
            | HostError::NotUtf8
            | HostError::Idna(_)
            | HostError::InvalidIpv4(_)
            | HostError::InvalidIpv6(_)
            | HostError::InvalidName(_)
            | HostError::InvalidAuthority(_) => Reason::InvalidHost,
            HostError::InvalidPort(_)
            | HostError::UnsupportedScheme(_)
            | HostError::NotAbsolute => Reason::MalformedRequest,
            HostError::AmbiguousPath(_) => Reason::AmbiguousPath,
            HostError::Userinfo => Reason::UserinfoInUrl,
        }
    }
}

/// The user information of a URL (`user:pass@` in `http://user:pass@host/`),
/// kept only by [`parse_url_with_userinfo`]. It is a credential: `Debug`
/// prints `[REDACTED]`, it is zeroized on drop, and nothing in Airlock logs
/// or audits it (audit resources are URLs without it).
pub struct Userinfo(Secret<String>);

impl Userinfo {
    /// `user[:password]` with percent-escapes decoded, as HTTP Basic
    /// authentication (RFC 7617) carries it: the bytes a client makes its
    /// `Authorization: Basic` value from.
    pub fn basic_credentials(&self) -> Secret<Vec<u8>> {
        Secret::new(percent_decode(self.0.expose().as_bytes()))
    }

    /// Whether it is empty (`http://@host/`): no user and no password.
    pub fn is_empty(&self) -> bool {
        self.0.expose().is_empty()
    }
}

impl Clone for Userinfo {
    fn clone(&self) -> Self {
        Userinfo(self.0.duplicate())
    }
}

impl PartialEq for Userinfo {
    fn eq(&self, other: &Self) -> bool {
        self.0.expose() == other.0.expose()
    }
}

impl Eq for Userinfo {}

impl fmt::Debug for Userinfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Userinfo([REDACTED])")
    }
}

/// A parsed absolute `http`/`https` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The scheme.
    pub scheme: Scheme,
    /// The canonical host.
    pub host: Host,
    /// The port (the scheme's default when none was written).
    pub port: u16,
    /// The canonical path (see the `path` module: dot segments resolved,
    /// unreserved escapes decoded, `\` as `/`, `//` merged), `/` when empty.
    /// The proxy judges and sends exactly this.
    pub path: String,
    /// The query without `?`, when present.
    pub query: Option<String>,
    /// The user information, only from [`parse_url_with_userinfo`] (which
    /// the proxy and `airlock policy check` use, passing
    /// [`EgressRequest::userinfo`](crate::EgressRequest::userinfo) on to the
    /// policy); [`parse_url`] refuses a URL that has one.
    pub userinfo: Option<Userinfo>,
}

/// Parse a host as the WHATWG URL standard's host parser does for special
/// schemes, then canonicalize it: IPv6 in brackets, percent-decoding, UTS-46
/// (`AsciiDenyList::URL`), the IPv4 parser for anything ending in a number, a
/// single trailing dot removed, and DNS shape checks (labels of letters,
/// digits, `-`, `_`; at most 63 bytes each and 253 in total).
pub fn parse_host(input: &str) -> Result<Host, HostError> {
    if input.is_empty() {
        return Err(HostError::Empty);
    }
    if let Some(rest) = input.strip_prefix('[') {
        let inner = rest
            .strip_suffix(']')
            .ok_or_else(|| HostError::InvalidIpv6(input.to_owned()))?;
        return parse_ipv6(inner)
            .map(|a| Host::Ip(IpAddr::V6(a)))
            .ok_or_else(|| HostError::InvalidIpv6(input.to_owned()));
    }
    // A dotted-decimal IPv4 literal (digits and single dots, no empty
    // label but a trailing one) is its own percent-decoding, IDNA mapping
    // and lowercase form: go straight to the number parser, as the slow
    // path below would. The common case on the egress path.
    if is_plain_dotted_digits(input) && ends_in_number(input) {
        return parse_ipv4(input)
            .map(|a| Host::Ip(IpAddr::V4(a)))
            .ok_or_else(|| HostError::InvalidIpv4(input.to_owned()));
    }
    parse_host_general(input)
}

/// [`parse_host`] for any input but a bracketed IPv6 literal: percent
/// decoding, IDNA, lowercase, then a number or a DNS name.
fn parse_host_general(input: &str) -> Result<Host, HostError> {
    // Without a `%`, percent-decoding is the identity: skip its copies.
    let decoded_buf;
    let decoded: &str = if input.contains('%') {
        decoded_buf =
            String::from_utf8(percent_decode(input.as_bytes())).map_err(|_| HostError::NotUtf8)?;
        &decoded_buf
    } else {
        input
    };
    let ascii = idna::domain_to_ascii_cow(decoded.as_bytes(), idna::AsciiDenyList::URL)
        .map_err(|_| HostError::Idna(input.to_owned()))?;
    let ascii = ascii.to_ascii_lowercase();
    if ascii.is_empty() {
        return Err(HostError::Empty);
    }
    if ends_in_number(&ascii) {
        return parse_ipv4(&ascii)
            .map(|a| Host::Ip(IpAddr::V4(a)))
            .ok_or(HostError::InvalidIpv4(ascii));
    }
    let name = ascii.strip_suffix('.').unwrap_or(&ascii);
    check_dns_shape(name).map_err(|()| HostError::InvalidName(ascii.clone()))?;
    Ok(Host::Domain(name.to_owned()))
}

/// ASCII digits and dots, starting with a digit, without two dots in a row.
fn is_plain_dotted_digits(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_digit)
        && b.iter().all(|c| c.is_ascii_digit() || *c == b'.')
        && !s.contains("..")
}

/// Parse a CONNECT target or `Host` header: `host`, `host:port`, `[v6]` or
/// `[v6]:port`. `default_port` applies when no port is written.
pub fn parse_authority(input: &str, default_port: u16) -> Result<(Host, u16), HostError> {
    if input.contains(['@', '/', '\\', '?', '#'])
        || input
            .chars()
            .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return Err(HostError::InvalidAuthority(input.to_owned()));
    }
    let (host, port) =
        split_host_port(input).ok_or_else(|| HostError::InvalidAuthority(input.to_owned()))?;
    let port = match port {
        None => default_port,
        Some(p) => parse_port_from(p, 1)?,
    };
    if host.contains(':') && !host.starts_with('[') {
        return Err(HostError::InvalidAuthority(input.to_owned()));
    }
    Ok((parse_host(host)?, port))
}

/// Parse an absolute `http`/`https` URL the way a WHATWG-conforming client
/// would: surrounding C0 controls and spaces trimmed, tabs and newlines
/// removed, any run of `/` or `\` after the scheme accepted, and the host
/// ending at the first `/`, `\`, `?` or `#`. Any `@` in the authority (the
/// URL standard's userinfo, `user:pass@host`, even empty) is refused with
/// [`HostError::Userinfo`], after the host behind it parsed: a malformed
/// host is reported as such first. [`parse_url_with_userinfo`] keeps it
/// instead, for a policy that may allow it for some hosts.
/// The path comes out canonical, or the URL is refused with
/// [`HostError::AmbiguousPath`] when servers would read it differently; the
/// query is kept as written.
pub fn parse_url(input: &str) -> Result<Url, HostError> {
    let url = parse_url_with_userinfo(input)?;
    if url.userinfo.is_some() {
        return Err(HostError::Userinfo);
    }
    Ok(url)
}

/// [`parse_url`], except that user information is kept in
/// [`Url::userinfo`] rather than refused, so the policy can judge it
/// (refused with `userinfo_in_url` unless a rule with `allow_userinfo`
/// matches the request). A malformed host, port or path is refused as by
/// `parse_url`.
pub fn parse_url_with_userinfo(input: &str) -> Result<Url, HostError> {
    let trimmed = input.trim_matches(|c: char| c <= ' ');
    let cleaned: String = trimmed
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let (scheme, rest) = cleaned.split_once(':').ok_or(HostError::NotAbsolute)?;
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(HostError::NotAbsolute);
    }
    let scheme = Scheme::parse(scheme)
        .ok_or_else(|| HostError::UnsupportedScheme(scheme.to_ascii_lowercase()))?;
    let rest = rest.trim_start_matches(['/', '\\']);
    let auth_end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let (hostport, userinfo) = match authority.rfind('@') {
        Some(i) => (&authority[i + 1..], Some(&authority[..i])),
        None => (authority, None),
    };
    if hostport.is_empty() {
        return Err(HostError::Empty);
    }
    let (host, port) = split_host_port(hostport)
        .ok_or_else(|| HostError::InvalidAuthority(hostport.to_owned()))?;
    let port = match port {
        None | Some("") => scheme.default_port(),
        Some(p) => parse_port_from(p, 0)?,
    };
    let host = parse_host(host)?;
    let tail = tail.split('#').next().unwrap_or("");
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (tail, None),
    };
    let path = crate::path::canonicalize(path).map_err(HostError::AmbiguousPath)?;
    Ok(Url {
        scheme,
        host,
        port,
        path,
        query,
        userinfo: userinfo.map(|u| Userinfo(Secret::new(u.to_owned()))),
    })
}

/// Split `host[:port]` / `[v6][:port]`. The port part is returned as written.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if s.starts_with('[') {
        let close = s.find(']')?;
        let (host, rest) = s.split_at(close + 1);
        return match rest {
            "" => Some((host, None)),
            r => Some((host, Some(r.strip_prefix(':')?))),
        };
    }
    match s.split_once(':') {
        Some((h, p)) => Some((h, Some(p))),
        None => Some((s, None)),
    }
}

/// A decimal port in `min..=65535`. URLs accept port 0 as the URL standard
/// does (nothing listens there; the address guard still judges the host);
/// CONNECT targets need a real port.
fn parse_port_from(p: &str, min: u32) -> Result<u16, HostError> {
    if p.is_empty() || p.len() > 10 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::InvalidPort(p.to_owned()));
    }
    match p.parse::<u32>() {
        Ok(n) if (min..=65535).contains(&n) => Ok(n as u16),
        _ => Err(HostError::InvalidPort(p.to_owned())),
    }
}

/// The URL standard's "ends in a number" checker.
fn ends_in_number(s: &str) -> bool {
    let mut parts: Vec<&str> = s.split('.').collect();
    if parts.last() == Some(&"") {
        if parts.len() == 1 {
            return false;
        }
        parts.pop();
    }
    let Some(last) = parts.last() else {
        return false;
    };
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    parse_ipv4_number(last).is_some()
}

/// One IPv4 part: decimal, `0x` hex or leading-zero octal. `None` on failure;
/// values are capped at 2^32 (anything larger is as invalid as 2^32).
fn parse_ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(h) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (h, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        return Some(0);
    }
    let mut v: u64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)?;
        v = (v * u64::from(radix) + u64::from(d)).min(1 << 32);
    }
    Some(v)
}

/// The URL standard's IPv4 parser.
fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    let mut parts: Vec<&str> = s.split('.').collect();
    if parts.last() == Some(&"") && parts.len() > 1 {
        parts.pop();
    }
    if parts.len() > 4 {
        return None;
    }
    let nums: Vec<u64> = parts
        .iter()
        .map(|p| parse_ipv4_number(p))
        .collect::<Option<_>>()?;
    let (last, init) = nums.split_last()?;
    if init.iter().any(|n| *n > 255) {
        return None;
    }
    if *last >= 256u64.pow(5 - nums.len() as u32) {
        return None;
    }
    let mut v = *last;
    for (i, n) in init.iter().enumerate() {
        v += n * 256u64.pow(3 - i as u32);
    }
    u32::try_from(v).ok().map(Ipv4Addr::from)
}

/// IPv6 literal without brackets. Zone identifiers are refused, as the URL
/// standard does: a zone names a local interface, never a public host.
fn parse_ipv6(s: &str) -> Option<Ipv6Addr> {
    if s.contains('%') {
        return None;
    }
    s.parse().ok()
}

/// DNS shape: 1–63 byte labels of `[a-z0-9_-]`, at most 253 bytes.
fn check_dns_shape(name: &str) -> Result<(), ()> {
    if name.is_empty() || name.len() > 253 {
        return Err(());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().expect("test ip"))
    }
    fn dom(s: &str) -> Host {
        Host::Domain(s.into())
    }

    /// The dotted-digits shortcut answers exactly as the general path.
    #[test]
    fn ipv4_shortcut_matches_the_general_path() {
        for s in [
            "127.0.0.1",
            "127.0.0.1.",
            "1.2.3",
            "1",
            "0",
            "255.255.255.255",
            "256.0.0.1",
            "1.2.3.4.5",
            "01.02.03.04",
            "08.1.1.1",
            "4294967295",
            "4294967296",
            "1.2.3.",
            "1.2.3.4..",
            "1..2",
            ".1.2",
            "0.0.0.0",
            "00000000000000000001.1",
        ] {
            if is_plain_dotted_digits(s) && ends_in_number(s) {
                let fast = parse_host(s);
                assert_eq!(fast, parse_host_general(s), "{s}");
            } else {
                assert_eq!(parse_host(s), parse_host_general(s), "{s}");
            }
        }
        assert!(is_plain_dotted_digits("127.0.0.1"));
        assert!(!is_plain_dotted_digits("1..2"));
        assert!(!is_plain_dotted_digits(".1"));
        assert!(!is_plain_dotted_digits("0x7f.1"));
    }

    #[test]
    fn every_ipv4_spelling_of_loopback_is_the_same_host() {
        for s in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0X7F000001",
            "017700000001",
            "0177.0.0.1",
            "0x7f.0.0.1",
            "0x7f.1",
            "127.1",
            "127.0.1",
            "127.0.0.1.",
            "127.000.000.001",
            "0177.0000.0000.0001",
            "%31%32%37.0.0.1",
            "１２７.０.０.１",
            "127。0。0。1",
            "0x7F.0X00.0x0.01",
            "127.0.0.0x1",
        ] {
            assert_eq!(parse_host(s), Ok(ip("127.0.0.1")), "{s}");
        }
        assert_eq!(parse_host("0"), Ok(ip("0.0.0.0")));
        assert_eq!(parse_host("0x"), Ok(ip("0.0.0.0")));
        assert_eq!(parse_host("4294967295"), Ok(ip("255.255.255.255")));
        assert_eq!(parse_host("169.254.43518"), Ok(ip("169.254.169.254")));
        assert_eq!(parse_host("0xa9fea9fe"), Ok(ip("169.254.169.254")));
        assert_eq!(parse_host("0251.0376.0251.0376"), Ok(ip("169.254.169.254")));
        assert_eq!(parse_host("10.1"), Ok(ip("10.0.0.1")));
    }

    #[test]
    fn invalid_ipv4_is_an_error_not_a_name() {
        for s in [
            "4294967296",
            "127.0.0.256",
            "256.0.0.1",
            "1.2.3.4.5",
            "0x100000000",
            "08.0.0.1",
            "127.0.0.09",
            "example.123",
            "99999999999999999999999",
            "127..0.1",
            "0x7f.0x100.0.1",
        ] {
            assert!(
                matches!(parse_host(s), Err(HostError::InvalidIpv4(_))),
                "{s}: {:?}",
                parse_host(s)
            );
        }
        // A last label that is not a number makes it a name.
        assert_eq!(parse_host("127.0.0.1.nip.io"), Ok(dom("127.0.0.1.nip.io")));
        assert_eq!(parse_host("0x7f.example"), Ok(dom("0x7f.example")));
    }

    #[test]
    fn ipv6_forms() {
        assert_eq!(parse_host("[::1]"), Ok(ip("::1")));
        assert_eq!(parse_host("[0:0:0:0:0:0:0:1]"), Ok(ip("::1")));
        assert_eq!(parse_host("[::ffff:127.0.0.1]"), Ok(ip("::ffff:7f00:1")));
        assert_eq!(parse_host("[::FFFF:7F00:1]"), Ok(ip("::ffff:7f00:1")));
        assert_eq!(
            parse_host("[64:ff9b::a9fe:a9fe]"),
            Ok(ip("64:ff9b::169.254.169.254"))
        );
        for s in [
            "[fe80::1%25eth0]",
            "[fe80::1%eth0]",
            "[::1",
            "::1",
            "[1::2::3]",
            "[:::1]",
            "[::1]x",
            "[12345::]",
            "[::1.2.3]",
        ] {
            assert!(parse_host(s).is_err(), "{s}");
        }
    }

    #[test]
    fn names_are_canonical() {
        assert_eq!(parse_host("Example.COM."), Ok(dom("example.com")));
        assert_eq!(parse_host("ex%61mple.com"), Ok(dom("example.com")));
        assert_eq!(parse_host("ＥＸＡＭＰＬＥ.com"), Ok(dom("example.com")));
        assert_eq!(parse_host("münchen.de"), Ok(dom("xn--mnchen-3ya.de")));
        assert_eq!(
            parse_host("xn--mnchen-3ya.de"),
            Ok(dom("xn--mnchen-3ya.de"))
        );
        assert_eq!(
            parse_host("XN--MNCHEN-3YA.DE"),
            Ok(dom("xn--mnchen-3ya.de"))
        );
        assert_eq!(
            parse_host("ex\u{00AD}ample.com"),
            Ok(dom("example.com")),
            "soft hyphen is ignored by UTS-46"
        );
        assert_eq!(
            parse_host("_dmarc.example.com"),
            Ok(dom("_dmarc.example.com"))
        );
        for s in [
            "",
            "a..b",
            "exa mple.com",
            "a%00b",
            "a<b",
            "a|b.com",
            "xn--zz.com",
            "xn--.com",
            "%ff.com",
            "a.com..",
            &"a".repeat(64),
            "a.b*c",
            "a\\b",
            "a%2fb",
        ] {
            assert!(parse_host(s).is_err(), "{s:?}: {:?}", parse_host(s));
        }
    }

    #[test]
    fn authorities() {
        assert_eq!(
            parse_authority("example.com:443", 80),
            Ok((dom("example.com"), 443))
        );
        assert_eq!(
            parse_authority("example.com", 443),
            Ok((dom("example.com"), 443))
        );
        assert_eq!(parse_authority("[::1]:8443", 443), Ok((ip("::1"), 8443)));
        assert_eq!(parse_authority("0x7f.1:22", 443), Ok((ip("127.0.0.1"), 22)));
        for s in [
            "example.com:",
            "example.com:0",
            "example.com:65536",
            "example.com:+1",
            "::1:443",
            "[::1]443",
            "a@b:1",
            "a:1:2",
            ":443",
            "example.com:443/",
            "exa mple.com:1",
        ] {
            assert!(parse_authority(s, 443).is_err(), "{s}");
        }
    }

    #[test]
    fn urls_parse_like_a_browser() {
        let u = parse_url("HTTPS://Example.com:8443/a/b?x=1#f").expect("valid");
        assert_eq!(
            u,
            Url {
                scheme: Scheme::Https,
                host: dom("example.com"),
                port: 8443,
                path: "/a/b".into(),
                query: Some("x=1".into()),
                userinfo: None,
            }
        );
        for s in [
            "http://evil.com@127.0.0.1/",
            "http://a@b@127.1:80/",
            "HTTPS://user:pw@Example.com:8443/a",
            "http://@example.com/",
            "http://:@example.com/",
            "https://user@example.com",
        ] {
            assert_eq!(parse_url(s), Err(HostError::Userinfo), "{s}");
            let kept = parse_url_with_userinfo(s).expect("kept");
            assert!(kept.userinfo.is_some(), "{s}");
        }
        let u = parse_url_with_userinfo("http://b%C3%B6b:p%40ss:w@example.com/x").expect("valid");
        let cred = u.userinfo.as_ref().expect("userinfo");
        assert_eq!(
            cred.basic_credentials().expose().as_slice(),
            "böb:p@ss:w".as_bytes()
        );
        assert!(!format!("{u:?}").contains("p%40ss"), "{u:?}");
        assert!(!cred.is_empty());
        let empty = parse_url_with_userinfo("http://@example.com/").expect("valid");
        assert!(empty.userinfo.as_ref().is_some_and(Userinfo::is_empty));
        // A malformed host behind the userinfo is still a malformed host.
        assert!(matches!(
            parse_url_with_userinfo("http://u:p@exa%20mple.com/"),
            Err(HostError::Idna(_))
        ));
        assert_eq!(
            parse_url("http://127.0.0.1#@evil.com/")
                .expect("valid")
                .host,
            ip("127.0.0.1")
        );
        assert_eq!(
            parse_url("http://127.0.0.1?@evil.com/")
                .expect("valid")
                .host,
            ip("127.0.0.1")
        );
        assert_eq!(
            parse_url("http:\\\\127.0.0.1\\x").expect("valid").path,
            "/x"
        );
        assert_eq!(
            parse_url("http:/127.0.0.1").expect("valid").host,
            ip("127.0.0.1")
        );
        assert_eq!(
            parse_url(" \thttp://exa\nmple.com \n").expect("valid").host,
            dom("example.com")
        );
        assert_eq!(parse_url("http://example.com").expect("valid").path, "/");
        assert_eq!(parse_url("http://example.com:").expect("valid").port, 80);
        assert_eq!(
            parse_url("https://[::1]:1/").expect("valid").host,
            ip("::1")
        );
        assert!(matches!(
            parse_url("ftp://example.com/"),
            Err(HostError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            parse_url("gopher://127.0.0.1/"),
            Err(HostError::UnsupportedScheme(_))
        ));
        assert!(parse_url("example.com/").is_err());
        assert!(parse_url("http:///").is_err());
        assert!(parse_url("http://example.com:99999/").is_err());
        assert_eq!(parse_url("http://127.0.0.1:0/").expect("valid").port, 0);
        assert_eq!(
            parse_url("http://127.0.0.1:00080/").expect("valid").port,
            80
        );
        let err = parse_url("http://user:hunter2@exa mple.com/")
            .expect_err("invalid")
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
