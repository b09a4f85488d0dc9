//! The address guard: which IP addresses an agent's traffic may reach.
//!
//! Only globally reachable unicast is allowed. Everything in the IANA IPv4
//! and IPv6 special-purpose address registries (RFC 6890 and successors) is
//! refused, and IPv6 forms that carry an IPv4 address (mapped, compatible,
//! SIIT-translated, NAT64, 6to4, Teredo) are judged by the IPv4 address they
//! would reach. IPv6 outside 2000::/3 (global unicast) is refused.

use airlock_types::Reason;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `addr` may not be reached, or `None` for a public address.
pub fn classify(addr: IpAddr) -> Option<Reason> {
    match addr {
        IpAddr::V4(a) => classify_v4(a),
        IpAddr::V6(a) => classify_v6(a),
    }
}

/// An IPv4 CIDR table entry: network, prefix length, reason.
type V4Range = (u32, u8, Reason);

const fn v4(a: u8, b: u8, c: u8, d: u8) -> u32 {
    u32::from_be_bytes([a, b, c, d])
}

/// IPv4 ranges that are not globally reachable, most specific first where
/// they nest. Source: IANA IPv4 Special-Purpose Address Registry, RFC 6890,
/// RFC 1112 (class E), RFC 5771 (multicast).
const V4_DENY: &[V4Range] = &[
    (v4(0, 0, 0, 0), 8, Reason::ReservedAddress), // "this network", incl. 0.0.0.0 (unspecified; Linux dials loopback)
    (v4(10, 0, 0, 0), 8, Reason::PrivateAddress), // RFC 1918
    (v4(100, 64, 0, 0), 10, Reason::PrivateAddress), // RFC 6598 shared (CGNAT); incl. 100.100.100.200 metadata
    (v4(127, 0, 0, 0), 8, Reason::LoopbackAddress),  // RFC 1122
    (v4(169, 254, 0, 0), 16, Reason::LinkLocalAddress), // RFC 3927; incl. 169.254.169.254 metadata
    (v4(172, 16, 0, 0), 12, Reason::PrivateAddress), // RFC 1918
    (v4(192, 0, 0, 0), 24, Reason::ReservedAddress), // RFC 6890 IETF protocol assignments (DS-Lite, NAT64 disc., 192.0.0.192 metadata)
    (v4(192, 0, 2, 0), 24, Reason::ReservedAddress), // RFC 5737 TEST-NET-1
    (v4(192, 31, 196, 0), 24, Reason::ReservedAddress), // RFC 7535 AS112-v4
    (v4(192, 52, 193, 0), 24, Reason::ReservedAddress), // RFC 7450 AMT
    (v4(192, 88, 99, 0), 24, Reason::ReservedAddress), // RFC 7526 deprecated 6to4 relay anycast
    (v4(192, 168, 0, 0), 16, Reason::PrivateAddress), // RFC 1918
    (v4(192, 175, 48, 0), 24, Reason::ReservedAddress), // RFC 7534 direct delegation AS112
    (v4(198, 18, 0, 0), 15, Reason::ReservedAddress), // RFC 2544 benchmarking
    (v4(198, 51, 100, 0), 24, Reason::ReservedAddress), // RFC 5737 TEST-NET-2
    (v4(203, 0, 113, 0), 24, Reason::ReservedAddress), // RFC 5737 TEST-NET-3
    (v4(224, 0, 0, 0), 4, Reason::ReservedAddress),  // RFC 5771 multicast
    (v4(240, 0, 0, 0), 4, Reason::ReservedAddress), // RFC 1112 class E, incl. 255.255.255.255 broadcast
];

fn classify_v4(a: Ipv4Addr) -> Option<Reason> {
    let x = u32::from(a);
    V4_DENY
        .iter()
        .find(|(net, len, _)| in_prefix32(x, *net, *len))
        .map(|(_, _, r)| *r)
}

fn in_prefix32(x: u32, net: u32, len: u8) -> bool {
    len == 0 || (x >> (32 - u32::from(len))) == (net >> (32 - u32::from(len)))
}

fn in_prefix128(x: u128, net: u128, len: u8) -> bool {
    len == 0 || (x >> (128 - u32::from(len))) == (net >> (128 - u32::from(len)))
}

const fn v6(s: [u16; 8]) -> u128 {
    let mut v: u128 = 0;
    let mut i = 0;
    while i < 8 {
        v = (v << 16) | s[i] as u128;
        i += 1;
    }
    v
}

/// The worse (first non-public) of several embedded IPv4 judgements.
fn embedded(addrs: &[u32]) -> Option<Reason> {
    addrs.iter().find_map(|a| classify_v4(Ipv4Addr::from(*a)))
}

fn classify_v6(a: Ipv6Addr) -> Option<Reason> {
    let x = u128::from(a);
    let low32 = x as u32;
    // Exact special addresses first.
    if x == 0 {
        return Some(Reason::ReservedAddress); // :: unspecified
    }
    if x == 1 {
        return Some(Reason::LoopbackAddress); // ::1
    }
    // IPv4-mapped ::ffff:0:0/96 and SIIT-translated ::ffff:0:0:0/96: the
    // kernel (or a translator) reaches the embedded IPv4 address.
    if in_prefix128(x, v6([0, 0, 0, 0, 0, 0xffff, 0, 0]), 96)
        || in_prefix128(x, v6([0, 0, 0, 0, 0xffff, 0, 0, 0]), 96)
    {
        return embedded(&[low32]);
    }
    // IPv4-compatible ::/96 (deprecated): judged by the IPv4 address, and
    // refused even when that is public, since nothing routes it any more.
    if in_prefix128(x, 0, 96) {
        return Some(embedded(&[low32]).unwrap_or(Reason::ReservedAddress));
    }
    // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): reaches the embedded IPv4.
    if in_prefix128(x, v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0]), 96) {
        return embedded(&[low32]);
    }
    // Local-use NAT64 64:ff9b:1::/48 (RFC 8215): not globally reachable; the
    // embedded IPv4 decides the reason when it is itself special. Both the
    // /96 position and the RFC 6052 /48 position are judged.
    if in_prefix128(x, v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0]), 48) {
        let at48 = (((x >> 64) & 0xffff) as u32) << 16 | ((x >> 40) & 0xffff) as u32;
        return Some(embedded(&[low32, at48]).unwrap_or(Reason::ReservedAddress));
    }
    // Teredo 2001::/32 (RFC 4380): server IPv4 in bits 32..64, client IPv4
    // obfuscated (inverted) in the low 32 bits. Both must be public.
    if in_prefix128(x, v6([0x2001, 0, 0, 0, 0, 0, 0, 0]), 32) {
        let server = (x >> 64) as u32;
        return embedded(&[server, !low32]);
    }
    // 6to4 2002::/16 (RFC 3056): the IPv4 address in bits 16..48.
    if in_prefix128(x, v6([0x2002, 0, 0, 0, 0, 0, 0, 0]), 16) {
        return embedded(&[(x >> 80) as u32]);
    }
    // Cloud metadata over IPv6 (AWS fd00:ec2::/32 incl. fd00:ec2::254, GCP
    // fd20:ce::254): link-local services wearing ULA addresses.
    if in_prefix128(x, v6([0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0]), 32)
        || x == v6([0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254])
    {
        return Some(Reason::LinkLocalAddress);
    }
    const V6_RANGES: &[(u128, u8, Option<Reason>)] = &[
        (
            v6([0x2001, 0, 0, 0, 0, 0, 0, 0]),
            23,
            Some(Reason::ReservedAddress),
        ), // RFC 2928 IETF protocol assignments (benchmarking 2001:2::/48, ORCHID, AMT, AS112…)
        (
            v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]),
            32,
            Some(Reason::ReservedAddress),
        ), // RFC 3849 documentation
        (
            v6([0x3fff, 0, 0, 0, 0, 0, 0, 0]),
            20,
            Some(Reason::ReservedAddress),
        ), // RFC 9637 documentation
        (
            v6([0xfc00, 0, 0, 0, 0, 0, 0, 0]),
            7,
            Some(Reason::PrivateAddress),
        ), // RFC 4193 unique local
        (
            v6([0xfe80, 0, 0, 0, 0, 0, 0, 0]),
            10,
            Some(Reason::LinkLocalAddress),
        ), // RFC 4291 link-local
        (
            v6([0xfec0, 0, 0, 0, 0, 0, 0, 0]),
            10,
            Some(Reason::PrivateAddress),
        ), // RFC 3879 deprecated site-local
        (
            v6([0xff00, 0, 0, 0, 0, 0, 0, 0]),
            8,
            Some(Reason::ReservedAddress),
        ), // RFC 4291 multicast
        (v6([0x2000, 0, 0, 0, 0, 0, 0, 0]), 3, None), // global unicast: allowed
    ];
    match V6_RANGES
        .iter()
        .find(|(net, len, _)| in_prefix128(x, *net, *len))
    {
        Some((_, _, r)) => *r,
        // Outside 2000::/3: discard-only 100::/64, SRv6 5f00::/16, and all
        // space IANA has not allocated for global unicast.
        None => Some(Reason::ReservedAddress),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Reason::*;

    fn c(s: &str) -> Option<Reason> {
        classify(s.parse().expect("test address"))
    }

    #[test]
    fn ipv4_special_purpose_registry() {
        let cases: &[(&str, Option<Reason>)] = &[
            ("0.0.0.0", Some(ReservedAddress)),
            ("0.255.255.255", Some(ReservedAddress)),
            ("10.0.0.1", Some(PrivateAddress)),
            ("10.255.255.255", Some(PrivateAddress)),
            ("11.0.0.0", None),
            ("100.63.255.255", None),
            ("100.64.0.0", Some(PrivateAddress)),
            ("100.100.100.200", Some(PrivateAddress)),
            ("100.127.255.255", Some(PrivateAddress)),
            ("100.128.0.0", None),
            ("126.255.255.255", None),
            ("127.0.0.1", Some(LoopbackAddress)),
            ("127.255.255.254", Some(LoopbackAddress)),
            ("128.0.0.0", None),
            ("169.253.255.255", None),
            ("169.254.0.0", Some(LinkLocalAddress)),
            ("169.254.169.254", Some(LinkLocalAddress)),
            ("169.254.170.2", Some(LinkLocalAddress)),
            ("169.255.0.0", None),
            ("172.15.255.255", None),
            ("172.16.0.0", Some(PrivateAddress)),
            ("172.31.255.255", Some(PrivateAddress)),
            ("172.32.0.0", None),
            ("192.0.0.0", Some(ReservedAddress)),
            ("192.0.0.8", Some(ReservedAddress)),
            ("192.0.0.170", Some(ReservedAddress)),
            ("192.0.0.192", Some(ReservedAddress)),
            ("192.0.1.0", None),
            ("192.0.2.1", Some(ReservedAddress)),
            ("192.88.99.1", Some(ReservedAddress)),
            ("192.167.255.255", None),
            ("192.168.0.1", Some(PrivateAddress)),
            ("192.169.0.0", None),
            ("198.17.255.255", None),
            ("198.18.0.0", Some(ReservedAddress)),
            ("198.19.255.255", Some(ReservedAddress)),
            ("198.20.0.0", None),
            ("198.51.100.7", Some(ReservedAddress)),
            ("203.0.113.255", Some(ReservedAddress)),
            ("223.255.255.255", None),
            ("224.0.0.1", Some(ReservedAddress)),
            ("239.255.255.250", Some(ReservedAddress)),
            ("240.0.0.1", Some(ReservedAddress)),
            ("255.255.255.255", Some(ReservedAddress)),
            ("1.1.1.1", None),
            ("8.8.8.8", None),
            ("93.184.215.14", None),
        ];
        for (a, want) in cases {
            assert_eq!(c(a), *want, "{a}");
        }
    }

    #[test]
    fn ipv6_special_purpose_registry_and_embeddings() {
        let cases: &[(&str, Option<Reason>)] = &[
            ("::", Some(ReservedAddress)),
            ("::1", Some(LoopbackAddress)),
            ("::ffff:127.0.0.1", Some(LoopbackAddress)),
            ("::ffff:10.0.0.1", Some(PrivateAddress)),
            ("::ffff:169.254.169.254", Some(LinkLocalAddress)),
            ("::ffff:8.8.8.8", None),
            ("::ffff:0:127.0.0.1", Some(LoopbackAddress)),
            ("::127.0.0.1", Some(LoopbackAddress)),
            ("::8.8.8.8", Some(ReservedAddress)),
            ("64:ff9b::127.0.0.1", Some(LoopbackAddress)),
            ("64:ff9b::a9fe:a9fe", Some(LinkLocalAddress)),
            ("64:ff9b::8.8.8.8", None),
            ("64:ff9b:1::8.8.8.8", Some(ReservedAddress)),
            ("64:ff9b:1::10.0.0.1", Some(PrivateAddress)),
            ("100::1", Some(ReservedAddress)),
            ("2001::1", Some(ReservedAddress)), // Teredo: client ~0.0.0.1 = 255.255.255.254
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                Some(ReservedAddress),
            ), // RFC 4380 example: client 192.0.2.45
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", None), // client 8.8.8.8
            (
                "2001:0:4136:e378:8000:63bf:80ff:fffe",
                Some(LoopbackAddress),
            ), // client 127.0.0.1
            ("2001:0:0a00:0001::", Some(PrivateAddress)), // server 10.0.0.1
            ("2001:2::1", Some(ReservedAddress)),
            ("2001:10::1", Some(ReservedAddress)),
            ("2001:db8::1", Some(ReservedAddress)),
            ("2002:7f00:1::", Some(LoopbackAddress)),
            ("2002:a9fe:a9fe::1", Some(LinkLocalAddress)),
            ("2002:0808:0808::1", None),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001:81c::200e", None),
            ("3fff::1", Some(ReservedAddress)),
            ("4000::1", Some(ReservedAddress)),
            ("5f00::1", Some(ReservedAddress)),
            ("fc00::1", Some(PrivateAddress)),
            ("fd12:3456::1", Some(PrivateAddress)),
            ("fd00:ec2::254", Some(LinkLocalAddress)),
            ("fd20:ce::254", Some(LinkLocalAddress)),
            ("fe80::1", Some(LinkLocalAddress)),
            ("febf::1", Some(LinkLocalAddress)),
            ("fec0::1", Some(PrivateAddress)),
            ("ff02::1", Some(ReservedAddress)),
            ("ff0e::1", Some(ReservedAddress)),
        ];
        for (a, want) in cases {
            assert_eq!(c(a), *want, "{a}");
        }
    }
}
