//! Validators that run on a regex match before it becomes a finding:
//! checksums (GitHub/npm CRC32, Luhn, IBAN mod-97), number-plan rules (SSN),
//! structure (JWT header, IP addresses, dates) and entropy. All are pure and
//! total: any input returns `true` or `false`, never panics.

use base64::Engine as _;

/// Which validator a rule uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    None,
    GithubCrc32,
    Jwt,
    Generic,
    NotPlaceholder,
    Email,
    Phone,
    Ssn,
    Card,
    Iban,
    Ipv4,
    Ipv6,
    Date,
    Address,
}

impl Check {
    pub(crate) fn parse(name: &str) -> Option<Check> {
        Some(match name {
            "github_crc32" => Check::GithubCrc32,
            "jwt" => Check::Jwt,
            "generic" => Check::Generic,
            "not_placeholder" => Check::NotPlaceholder,
            "email" => Check::Email,
            "phone" => Check::Phone,
            "ssn" => Check::Ssn,
            "card" => Check::Card,
            "iban" => Check::Iban,
            "ipv4" => Check::Ipv4,
            "ipv6" => Check::Ipv6,
            "date" => Check::Date,
            "address" => Check::Address,
            _ => return None,
        })
    }

    /// Does `value` (the part to mask) pass this check?
    pub(crate) fn passes(self, value: &[u8]) -> bool {
        match self {
            Check::None => true,
            Check::GithubCrc32 => github_crc32_ok(value),
            Check::Jwt => jwt_ok(value),
            Check::Generic => generic_ok(value),
            Check::NotPlaceholder => !is_placeholder(value),
            Check::Email => email_ok(value),
            Check::Phone => phone_ok(value),
            Check::Ssn => ssn_ok(value),
            Check::Card => card_ok(value),
            Check::Iban => iban_ok(value),
            Check::Ipv4 => ipv4_ok(value),
            Check::Ipv6 => ipv6_ok(value),
            Check::Date => date_ok(value),
            Check::Address => true,
        }
    }
}

/// Shannon entropy in bits per byte.
pub(crate) fn entropy(value: &[u8]) -> f64 {
    if value.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in value {
        counts[usize::from(b)] += 1;
    }
    let n = value.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Base62 of `n`, left-padded with `0` to six characters (the checksum part
/// of GitHub and npm tokens).
pub fn base62_checksum(mut n: u32) -> [u8; 6] {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// GitHub (`ghp_`, `gho_`, `ghu_`, `ghs_`) and npm (`npm_`) tokens: a prefix,
/// 30 random base62 characters and a 6-character base62 CRC32 of those 30.
fn github_crc32_ok(token: &[u8]) -> bool {
    let Some(us) = token.iter().position(|&b| b == b'_') else {
        return false;
    };
    let body = &token[us + 1..];
    if body.len() != 36 {
        return false;
    }
    let (random, sum) = body.split_at(30);
    base62_checksum(crc32(random)) == sum
}

fn b64url_decode(part: &[u8]) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()
        .or_else(|| base64::engine::general_purpose::URL_SAFE.decode(part).ok())
}

/// A JWT's header must decode to a JSON object naming an algorithm.
fn jwt_ok(token: &[u8]) -> bool {
    let Some(dot) = token.iter().position(|&b| b == b'.') else {
        return false;
    };
    match b64url_decode(&token[..dot]) {
        Some(header) => {
            let h = String::from_utf8_lossy(&header);
            h.trim_start().starts_with('{') && h.contains("\"alg\"")
        }
        None => false,
    }
}

const PLACEHOLDER_WORDS: &[&str] = &[
    "example",
    "changeme",
    "change_me",
    "placeholder",
    "your_",
    "your-",
    "yourpass",
    "<",
    ">",
    "${",
    "{{",
    "%s",
    "xxxx",
    "****",
    "....",
    "redacted",
    "dummy",
    "sample",
    "process.env",
    "os.environ",
    "getenv",
    "env(",
    "secret_here",
    "password_here",
    "token_here",
    "[secret",
    "[redacted",
    "null",
    "none",
    "undefined",
    "true",
    "false",
    "todo",
    "fixme",
];

/// Values that are obviously not real: templates, masks, documentation fillers.
pub(crate) fn is_placeholder(value: &[u8]) -> bool {
    let lower = value.to_ascii_lowercase();
    let s = String::from_utf8_lossy(&lower);
    if PLACEHOLDER_WORDS.iter().any(|w| s.contains(w)) {
        return true;
    }
    // One repeated character ("aaaaaaaa", "00000000").
    value.windows(2).all(|w| w[0] == w[1])
        || matches!(
            s.as_ref(),
            "password" | "passwd" | "secret" | "token" | "pass" | "pwd" | "user" | "username"
        )
}

/// Generic `name = value` secrets: not a placeholder, not an identifier or a
/// path, high enough entropy, more than one character class.
fn generic_ok(value: &[u8]) -> bool {
    if value.len() < 8 || is_placeholder(value) {
        return false;
    }
    let has_lower = value.iter().any(u8::is_ascii_lowercase);
    let has_upper = value.iter().any(u8::is_ascii_uppercase);
    let has_digit = value.iter().any(u8::is_ascii_digit);
    let has_symbol = value.iter().any(|b| !b.is_ascii_alphanumeric());
    let classes = [has_lower, has_upper, has_digit, has_symbol]
        .iter()
        .filter(|&&b| b)
        .count();
    if classes < 2 {
        return false;
    }
    // Dotted or pathed identifiers (`self.config.token`, `a/b/c`, `os.getenv`).
    let dots = value.iter().filter(|&&b| b == b'.').count();
    let slashes = value.iter().filter(|&&b| b == b'/').count();
    if (dots >= 1
        && !has_digit
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'_'))
        || slashes >= 3
    {
        return false;
    }
    // snake_case / camelCase identifiers without digits.
    if !has_digit
        && value
            .iter()
            .all(|b| b.is_ascii_alphabetic() || *b == b'_' || *b == b'-')
    {
        return false;
    }
    // Ends with call parens or is a type annotation-like word.
    let e = entropy(value);
    let needed = if value.len() >= 20 { 3.2 } else { 2.8 };
    e >= needed
}

fn email_ok(value: &[u8]) -> bool {
    let Some(at) = value.iter().rposition(|&b| b == b'@') else {
        return false;
    };
    let (local, domain) = (&value[..at], &value[at + 1..]);
    if local.is_empty()
        || local.first() == Some(&b'.')
        || local.last() == Some(&b'.')
        || local.windows(2).any(|w| w == b"..")
    {
        return false;
    }
    let tld = domain
        .rsplit(|&b| b == b'.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    // File names and retina assets (`logo@2x.png`), not addresses.
    const NOT_TLDS: &[&[u8]] = &[
        b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"js", b"css", b"ts", b"map", b"json",
        b"yaml", b"yml", b"txt", b"lock", b"rs", b"py", b"go", b"java", b"rb", b"html", b"ico",
    ];
    !NOT_TLDS.contains(&tld.as_slice())
}

fn digits(value: &[u8]) -> Vec<u8> {
    value
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| b - b'0')
        .collect()
}

fn phone_ok(value: &[u8]) -> bool {
    let d = digits(value);
    if !(8..=15).contains(&d.len()) {
        return false;
    }
    // Runs like 0000000000 or 1234567890 are filler, not numbers.
    if d.windows(2).all(|w| w[0] == w[1]) {
        return false;
    }
    let ascending = d.windows(2).all(|w| w[1] == (w[0] + 1) % 10);
    !ascending
}

/// SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000;
/// and not one of the numbers famously used in advertising.
fn ssn_ok(value: &[u8]) -> bool {
    let d = digits(value);
    if d.len() != 9 {
        return false;
    }
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = u32::from(d[3]) * 10 + u32::from(d[4]);
    let serial = d[5..].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return false;
    }
    let all: String = d.iter().map(|x| char::from(b'0' + x)).collect();
    !matches!(all.as_str(), "078051120" | "219099999" | "123456789")
}

pub fn luhn_ok(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &x) in d.iter().rev().enumerate() {
        let mut v = u32::from(x);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Well-known test numbers published by card networks and processors; they
/// appear in documentation and test suites and are not personal data.
const TEST_CARDS: &[&str] = &[
    "4111111111111111",
    "4242424242424242",
    "4012888888881881",
    "4222222222222",
    "4000056655665556",
    "5555555555554444",
    "5105105105105100",
    "2223003122003222",
    "5200828282828210",
    "378282246310005",
    "371449635398431",
    "378734493671000",
    "6011111111111117",
    "6011000990139424",
    "3530111333300000",
    "3566002020360505",
    "30569309025904",
    "38520000023237",
    "36227206271667",
    "6200000000000005",
    "4000000000000002",
    "4000000000009995",
    "5431111111111111",
    "4917610000000000",
    "4462030000000000",
];

fn card_ok(value: &[u8]) -> bool {
    // Separators must be consistent: none, or only spaces, or only dashes.
    let has_space = value.contains(&b' ');
    let has_dash = value.contains(&b'-');
    if has_space && has_dash {
        return false;
    }
    let d = digits(value);
    if !(12..=19).contains(&d.len()) || !luhn_ok(&d) {
        return false;
    }
    let s: String = d.iter().map(|x| char::from(b'0' + x)).collect();
    if TEST_CARDS.contains(&s.as_str()) || d.windows(2).all(|w| w[0] == w[1]) {
        return false;
    }
    let p = |n: usize| -> u32 { d[..n].iter().fold(0u32, |a, &x| a * 10 + u32::from(x)) };
    let len = d.len();
    let visa = d[0] == 4 && matches!(len, 13 | 16 | 19);
    let mc = ((51..=55).contains(&p(2)) || (2221..=2720).contains(&p(4))) && len == 16;
    let amex = matches!(p(2), 34 | 37) && len == 15;
    let discover =
        (p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3))) && (16..=19).contains(&len);
    let jcb = (3528..=3589).contains(&p(4)) && (16..=19).contains(&len);
    let diners =
        ((300..=305).contains(&p(3)) || matches!(p(2), 36 | 38 | 39)) && (14..=19).contains(&len);
    let unionpay = p(2) == 62 && (16..=19).contains(&len);
    let maestro = (matches!(p(2), 50 | 56 | 57 | 58) || p(1) == 6) && (12..=19).contains(&len);
    visa || mc || amex || discover || jcb || diners || unionpay || maestro
}

/// IBAN lengths per country (SWIFT IBAN registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

pub fn iban_ok(value: &[u8]) -> bool {
    let compact: Vec<u8> = value.iter().copied().filter(|b| *b != b' ').collect();
    if compact.len() < 15 || !compact.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let Some(&(_, want)) = IBAN_LENGTHS.iter().find(|(cc, _)| cc[..] == compact[..2]) else {
        return false;
    };
    if compact.len() != want {
        return false;
    }
    let rotated = compact[4..].iter().chain(compact[..4].iter());
    let mut rem = 0u32;
    for &b in rotated {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b.to_ascii_uppercase() - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn ipv4_ok(value: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(value) else {
        return false;
    };
    match s.parse::<std::net::Ipv4Addr>() {
        // 0.0.0.0 and the like are not addresses of anyone.
        Ok(ip) => !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_loopback(),
        Err(_) => false,
    }
}

fn ipv6_ok(value: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(value) else {
        return false;
    };
    let colons = s.bytes().filter(|&b| b == b':').count();
    let groups = s.split(':').filter(|g| !g.is_empty()).count();
    if colons < 2 || groups < 2 || !s.bytes().any(|b| b.is_ascii_digit()) {
        return false;
    }
    match s.parse::<std::net::Ipv6Addr>() {
        Ok(ip) => !ip.is_unspecified() && !ip.is_loopback(),
        Err(_) => false,
    }
}

fn date_ok(value: &[u8]) -> bool {
    // The regex already constrains shape; reject impossible numeric dates.
    let parts: Vec<u32> = value
        .split(|b| matches!(b, b'-' | b'/' | b'.'))
        .map(|p| {
            if !p.is_empty() && p.iter().all(u8::is_ascii_digit) {
                p.iter().fold(0u32, |a, &x| {
                    a.saturating_mul(10).saturating_add(u32::from(x - b'0'))
                })
            } else {
                u32::MAX
            }
        })
        .collect();
    if parts.len() != 3 || parts.contains(&u32::MAX) {
        return true; // textual month forms
    }
    let (a, b, c) = (parts[0], parts[1], parts[2]);
    if a > 31 {
        // year-month-day
        (1..=12).contains(&b) && (1..=31).contains(&c)
    } else {
        // day/month or month/day first
        (1..=31).contains(&a) && (1..=31).contains(&b) && (a <= 12 || b <= 12)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github_like(prefix: &str, random: &str) -> String {
        let sum = base62_checksum(crc32(random.as_bytes()));
        format!("{prefix}_{random}{}", String::from_utf8_lossy(&sum))
    }

    #[test]
    fn crc32_matches_the_zlib_reference_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn github_checksum_accepts_generated_and_rejects_tampered_tokens() {
        let t = github_like("ghp", "EXAMPLE0000000000000000000TEST");
        assert!(github_crc32_ok(t.as_bytes()));
        let mut bad = t.into_bytes();
        bad[10] = if bad[10] == b'A' { b'B' } else { b'A' };
        assert!(!github_crc32_ok(&bad));
    }

    #[test]
    fn luhn_and_card_rules() {
        assert!(luhn_ok(&digits(b"4539 1488 0343 6467")));
        assert!(card_ok(b"4539 1488 0343 6467"));
        assert!(!card_ok(b"4539 1488 0343 6468"), "bad Luhn");
        assert!(!card_ok(b"4111 1111 1111 1111"), "published test number");
        assert!(!card_ok(b"4539-1488 0343-6467"), "mixed separators");
    }

    #[test]
    fn iban_mod97() {
        assert!(iban_ok(b"DE89 3704 0044 0532 0130 00"));
        assert!(iban_ok(b"GB82WEST12345698765432"));
        assert!(!iban_ok(b"DE89 3704 0044 0532 0130 01"));
        assert!(!iban_ok(b"DE89 3704 0044 0532 0130"), "wrong length");
    }

    #[test]
    fn ssn_rules() {
        assert!(ssn_ok(b"536-22-1234"));
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "536-00-1234",
            "536-22-0000",
            "078-05-1120",
        ] {
            assert!(!ssn_ok(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn generic_rejects_identifiers_and_placeholders() {
        for v in [
            "getToken",
            "self.config.token",
            "your_api_key_here",
            "${API_KEY}",
            "xxxxxxxxxxxx",
            "password",
        ] {
            assert!(!generic_ok(v.as_bytes()), "{v}");
        }
        assert!(generic_ok(b"q8Zr!x2Lm#9vTq"));
    }
}
