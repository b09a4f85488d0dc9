//! Validators that run on a regex match before it becomes a finding:
//! checksums (GitHub/npm CRC32, Luhn, IBAN mod-97), number-plan rules (SSN),
//! structure (JWT header, IP addresses, dates) and entropy. All are pure and
//! total: any input returns `true` or `false`, never panics.

use crate::phone::{self, Regions};
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
    /// A phone candidate libphonenumber's metadata must also accept (rules
    /// whose regex has no national shape of its own).
    PhoneValid,
    /// A number a phone word states ("Mobile: …"): valid for any region
    /// libphonenumber knows, and ascending digit runs are accepted.
    PhoneStated,
    Ssn,
    /// A number an SSN keyword states: the SSA's structural rules (a number
    /// someone gives as their SSN is masked even when it is one made
    /// famous by advertising); only the filler `123-45-6789` is refused.
    SsnStated,
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
            "phone_valid" => Check::PhoneValid,
            "phone_stated" => Check::PhoneStated,
            "ssn" => Check::Ssn,
            "ssn_stated" => Check::SsnStated,
            "card" => Check::Card,
            "iban" => Check::Iban,
            "ipv4" => Check::Ipv4,
            "ipv6" => Check::Ipv6,
            "date" => Check::Date,
            "address" => Check::Address,
            _ => return None,
        })
    }

    /// Whether this is one of the phone-number checks.
    pub(crate) fn is_phone(self) -> bool {
        matches!(self, Check::Phone | Check::PhoneValid | Check::PhoneStated)
    }

    /// Does `value` (the part to mask) pass this check? `regions` are the
    /// phone regions tried for national numbers.
    pub(crate) fn passes(self, value: &[u8], regions: &Regions) -> bool {
        match self {
            Check::None => true,
            Check::GithubCrc32 => github_crc32_ok(value) || random_bodied(value),
            Check::Jwt => jwt_ok(value),
            Check::Generic => generic_ok(value),
            Check::NotPlaceholder => !is_placeholder(value),
            Check::Email => email_ok(value),
            Check::Phone => phone_ok(value),
            Check::PhoneValid => phone_ok(value) && phone::valid(value, regions),
            Check::PhoneStated => {
                phone_shape_ok(value, true) && phone::valid_anywhere(value, regions)
            }
            Check::Ssn => ssn_ok(value),
            Check::SsnStated => {
                ssn_structure_ok(value) && digits(value) != [1, 2, 3, 4, 5, 6, 7, 8, 9]
            }
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

/// A checksummed token whose checksum fails but whose body (after the
/// prefix's `_`) looks random: a fake from a fixture or document, or a real
/// token copied with a typo. Either way it has the token's exact shape and
/// nothing in it says it is a placeholder, so it is treated as a token; the
/// checksum still vouches for low-information bodies (`EXAMPLE0000…`).
fn random_bodied(token: &[u8]) -> bool {
    token
        .iter()
        .position(|&b| b == b'_')
        .is_some_and(|us| !low_information(&token[us + 1..]))
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

/// Substrings (ASCII case-insensitive) that mark a value as a filler,
/// a template or the output of another redactor. Each is rare in random
/// tokens: the shortest are four symbols no word-like token body spells
/// by chance or a byte no token alphabet has (bare words such as `null`
/// or `true` match only a whole value: `…znuLLIi…` is random).
const PLACEHOLDER_WORDS: &[&str] = &[
    // documentation fillers
    "example",
    "changeme",
    "change_me",
    "change-me",
    "placeholder",
    "your_",
    "your-",
    "yourpass",
    "yourkey",
    "yoursecret",
    "yourtoken",
    "_here",
    "-here",
    "insert_",
    "insert-",
    "replace_me",
    "replaceme",
    "dummy",
    "sample",
    "notreal",
    "not_real",
    "not-a-real",
    "fake_",
    "fake-",
    "secret_here",
    "password_here",
    "token_here",
    "xxxx",
    "0000000",
    "1234567",
    "abcdefg",
    // template syntax and references (`${VAR}`, `{{ x }}`, `<token>` and
    // `$(cmd)` are read by `has_template`: a brace or bracket alone is a
    // byte random values and passwords hold too)
    "<%",
    "{%",
    "#{",
    "%s",
    "%(",
    "%v",
    "process.env",
    "os.environ",
    "getenv",
    "env(",
    "env[",
    "env.",
    "secrets.",
    "vault:",
    "ref+",
    // masked or redacted by another tool
    "****",
    "...",
    "…",
    "•",
    "●",
    "redacted",
    "[secret",
    "[filtered",
    "[masked",
    "[hidden",
    "[removed",
    "<hidden>",
];

/// Values that are obviously not real: templates, masks, documentation fillers.
pub(crate) fn is_placeholder(value: &[u8]) -> bool {
    if has_placeholder_word(value) {
        return true;
    }
    // One repeated character ("aaaaaaaa", "00000000").
    value.windows(2).all(|w| w[0] == w[1])
        || [
            "password",
            "passwd",
            "secret",
            "token",
            "pass",
            "pwd",
            "user",
            "username",
            "null",
            "none",
            "nil",
            "undefined",
            "true",
            "false",
            "todo",
            "fixme",
        ]
        .iter()
        .any(|w| value.eq_ignore_ascii_case(w.as_bytes()))
        || is_reference(value)
        || has_template(value)
}

/// Template or shell syntax standing for a value kept elsewhere: `${VAR}`,
/// `${VAR:-default}`, `${{ secrets.X }}`, `$(command)`, `{{ name }}`,
/// `{{{ name }}}`, `<token>`, `<YOUR KEY>`. Only the well-formed pieces
/// count: a password such as `{{h}o)p${e]nob(ody}}` holds the same
/// bytes without being any of them.
fn has_template(value: &[u8]) -> bool {
    let ident_start = |b: u8| b.is_ascii_alphabetic() || b == b'_';
    let at = |i: usize| value.get(i).copied().unwrap_or(0);
    for i in memchr::memchr3_iter(b'$', b'{', b'<', value) {
        match value[i] {
            b'$' => match at(i + 1) {
                b'{' => {
                    // `${{ … }}` (GitHub Actions), or `${NAME` then an end
                    // or a parameter-expansion operator.
                    if at(i + 2) == b'{' {
                        return true;
                    }
                    let mut j = i + 2;
                    if !ident_start(at(j)) {
                        continue;
                    }
                    while at(j).is_ascii_alphanumeric() || matches!(at(j), b'_' | b'.') {
                        j += 1;
                    }
                    if matches!(at(j), b'}' | b':' | b'-' | b'?' | b'=' | b'+' | b'[' | b'|') {
                        return true;
                    }
                }
                b'(' if ident_start(at(i + 2)) || at(i + 2) == b' ' || at(i + 2) == b'(' => {
                    return true;
                }
                _ => {}
            },
            b'{' if at(i + 1) == b'{' => {
                // `{{ … }}` with no brace between.
                let rest = &value[i + 2..];
                if let Some(k) = memchr::memchr2(b'{', b'}', rest)
                    && rest[k] == b'}'
                    && rest.get(k + 1) == Some(&b'}')
                {
                    return true;
                }
            }
            // `<name …>`: a letter first, then only name bytes.
            b'<' if ident_start(at(i + 1))
                && value[i + 1..]
                    .iter()
                    .take(64)
                    .position(|&b| {
                        !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b' ' | b'.'))
                    })
                    .is_some_and(|k| value[i + 1 + k] == b'>') =>
            {
                return true;
            }
            _ => {}
        }
    }
    false
}

/// Whether the value holds one of [`PLACEHOLDER_WORDS`], ASCII
/// case-insensitive. One automaton over the raw value gives the same answer
/// as looking for each word in the lower-cased value (the words are lower
/// case; the non-ASCII ones are whole UTF-8 characters, which no invalid
/// byte around them can hide) in one pass instead of one substring search
/// per word (that search ran for every credential candidate and cost a few
/// per cent of a scan).
fn has_placeholder_word(value: &[u8]) -> bool {
    static AC: std::sync::OnceLock<Option<aho_corasick::AhoCorasick>> = std::sync::OnceLock::new();
    let ac = AC.get_or_init(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(PLACEHOLDER_WORDS)
            .ok()
    });
    match ac {
        Some(ac) => ac.is_match(value),
        // The automaton of this fixed list always builds; the word-by-word
        // search keeps the function total without a panic.
        None => {
            let lower = value.to_ascii_lowercase();
            PLACEHOLDER_WORDS
                .iter()
                .any(|w| lower.windows(w.len()).any(|x| x == w.as_bytes()))
        }
    }
}

/// `$VAR`, `$var_name`, `%VAR%`, `@var@`, `:symbol`: a reference to a
/// value kept elsewhere, not the value.
fn is_reference(value: &[u8]) -> bool {
    let ident = |v: &[u8]| {
        !v.is_empty()
            && (v[0].is_ascii_alphabetic() || v[0] == b'_')
            && v.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
    };
    match value {
        [b'$', rest @ ..] => ident(rest),
        [b'%', mid @ .., b'%'] | [b'@', mid @ .., b'@'] => ident(mid),
        _ => false,
    }
}

/// Low information for a credential: a placeholder, a run of one
/// character making up a third of the value, at most three distinct
/// bytes, a short repeated unit (`abcabcabc`), or a sequence (`123456`,
/// `abcdef`, `qwerty`). Random tokens of any alphabet fail each of these
/// with negligible probability at the lengths rules match.
pub(crate) fn low_information(value: &[u8]) -> bool {
    if value.is_empty() || is_placeholder(value) {
        return true;
    }
    let n = value.len();
    // One pass for the longest run of one byte, the distinct bytes and
    // the longest ascending or descending sequence (six or more
    // consecutive symbols, ASCII case-insensitively, each byte lower-cased
    // as it is read: no copy).
    let mut run = 1;
    let mut best = 1;
    let mut up = 1;
    let mut down = 1;
    let mut seen = [0u64; 4];
    let mut mark = |b: u8| seen[usize::from(b >> 6)] |= 1 << (b & 63);
    mark(value[0]);
    for w in value.windows(2) {
        mark(w[1]);
        run = if w[0] == w[1] { run + 1 } else { 1 };
        best = best.max(run);
        let w = [w[0].to_ascii_lowercase(), w[1].to_ascii_lowercase()];
        let seq = w[0].is_ascii_alphanumeric() && w[1].is_ascii_alphanumeric();
        up = if seq && w[1] == w[0].wrapping_add(1) {
            up + 1
        } else {
            1
        };
        down = if seq && w[1].wrapping_add(1) == w[0] {
            down + 1
        } else {
            1
        };
        if up >= 6 || down >= 6 {
            return true;
        }
    }
    if best >= 6 || (n >= 8 && best * 3 >= n) {
        return true;
    }
    let distinct: u32 = seen.iter().map(|w| w.count_ones()).sum();
    if n >= 8 && distinct <= 3 {
        return true;
    }
    // A short unit repeated over the whole value.
    if n >= 8 && (1..=4).any(|p| value.iter().zip(&value[p..]).all(|(a, b)| a == b)) {
        return true;
    }
    holds_keyboard_word(value)
}

/// Whether `value` holds `qwerty`, `asdfgh`, `zxcvbn`, `abc123`, `letmein`,
/// `p@ssw0rd` or `passw0rd`, ASCII case-insensitively. One pass over the
/// bytes, without a lower-cased copy or a substring searcher built per word
/// (this runs for every generic candidate; the copy and the seven searchers
/// were most of `low_information`'s cost). A reference test holds it equal
/// to searching the lower-cased value for each word.
fn holds_keyboard_word(value: &[u8]) -> bool {
    value.iter().enumerate().any(|(i, &b)| {
        let r = &value[i..];
        match b | 0x20 {
            b'q' => starts_with_ignore_case(r, b"qwerty"),
            b'a' => starts_with_ignore_case(r, b"asdfgh") || starts_with_ignore_case(r, b"abc123"),
            b'z' => starts_with_ignore_case(r, b"zxcvbn"),
            b'l' => starts_with_ignore_case(r, b"letmein"),
            b'p' => {
                starts_with_ignore_case(r, b"p@ssw0rd") || starts_with_ignore_case(r, b"passw0rd")
            }
            _ => false,
        }
    })
}

/// How many different punctuation bytes of the kinds passwords hold and
/// names do not (`!$%^&*()[]{}<>?~@+`) `value` holds.
fn password_punct_kinds(value: &[u8]) -> usize {
    let mut seen = 0u32;
    for &b in value {
        if let Some(k) = b"!$%^&*()[]{}<>?~@+".iter().position(|&p| p == b) {
            seen |= 1 << k;
        }
    }
    seen.count_ones() as usize
}

/// Is this the shape of a UUID (8-4-4-4-12 hex)?
fn is_uuid(value: &[u8]) -> bool {
    value.len() == 36
        && value.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Generic `name = value` secrets, given what the name says
/// ([`crate::names`]): nothing when the name is about a secret rather than
/// one; a UUID when the name ends in a secret word (several vendors' keys
/// are UUIDs); otherwise what [`generic_ok`] accepts.
pub(crate) fn generic_named_ok(value: &[u8], name: crate::names::Name) -> bool {
    if name.not_secret {
        return false;
    }
    if name.secret_tail && is_uuid(value) {
        return !low_information(value);
    }
    generic_ok(value)
}

fn n_last(value: &[u8]) -> usize {
    value.len().saturating_sub(1)
}

/// A dotted name or host in lower case (`jetbrains.mps.v8_elimination`,
/// `sm02915.int.contoso.com`): every dot-separated part starts with a
/// letter and holds only letters, digits, `_` and `-`.
fn dotted_name(value: &[u8]) -> bool {
    value.contains(&b'.')
        && !value.iter().any(u8::is_ascii_uppercase)
        && value.split(|&b| b == b'.').all(|part| {
            part.first().is_some_and(u8::is_ascii_alphabetic)
                && part
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        })
}

/// A name with a version or build number at its end (`jjwt-jackson-0.11.2`,
/// `api-client_v3.2.1`): letters and `_ - . :` before a trailing
/// `[-_.:]v?digits(.digits)+`.
fn versioned_name(value: &[u8]) -> bool {
    let Some(cut) = value
        .iter()
        .rposition(|b| !(b.is_ascii_digit() || *b == b'.'))
    else {
        return false;
    };
    let tail = &value[cut + 1..];
    let dotted = tail.iter().filter(|&&b| b == b'.').count() >= 1
        && tail.first().is_some_and(u8::is_ascii_digit)
        && !tail.ends_with(b".");
    let mut head = &value[..=cut];
    if head.last().is_some_and(|b| matches!(b, b'v' | b'V')) {
        head = &head[..head.len() - 1];
    }
    dotted
        && head.len() >= 3
        && matches!(head.last(), Some(b'-' | b'_' | b'.' | b':'))
        && head
            .iter()
            .all(|b| b.is_ascii_alphabetic() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// Whether `hay` starts with `prefix` (lower case), ASCII
/// case-insensitively.
#[inline]
fn starts_with_ignore_case(hay: &[u8], prefix: &[u8]) -> bool {
    hay.get(..prefix.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(prefix))
}

/// Whether `value` holds `password`, `passwd`, `secret`, `token`, `apikey`,
/// `api_key`, `api-key` or `key`, ASCII case-insensitively. The three
/// `api…key` words hold `key`, so `key` stands for them. One pass over the
/// bytes, without a lower-cased copy: this runs for every generic
/// candidate (a reference test holds it equal to the word list).
fn names_a_secret(value: &[u8]) -> bool {
    value.iter().enumerate().any(|(i, &b)| {
        let r = &value[i..];
        match b | 0x20 {
            b'k' => starts_with_ignore_case(r, b"key"),
            b't' => starts_with_ignore_case(r, b"token"),
            b's' => starts_with_ignore_case(r, b"secret"),
            b'p' => {
                starts_with_ignore_case(r, b"passwd") || starts_with_ignore_case(r, b"password")
            }
            _ => false,
        }
    })
}

/// Generic `name = value` secrets: not a placeholder, not an identifier,
/// a path, a UUID or resource name, high enough entropy, more than one
/// character class.
fn generic_ok(value: &[u8]) -> bool {
    if value.len() < 8 || low_information(value) {
        return false;
    }
    // Identifiers that sit next to secret-ish keywords without being
    // secrets: UUID credential ids, cloud resource names, hashes named by
    // their algorithm, URLs, and values that only name the thing
    // (`my_password_1`, `secret-token-v2`).
    if is_uuid(value)
        || dotted_name(value)
        || versioned_name(value)
        || [
            "arn:",
            "sha1:",
            "sha256:",
            "sha384:",
            "sha512:",
            "sha1-",
            "sha256-",
            "sha384-",
            "sha512-",
            "md5:",
            "http:",
            "https:",
            "file:",
            "projects/",
            "urn:",
        ]
        .iter()
        .any(|p| starts_with_ignore_case(value, p.as_bytes()))
        || names_a_secret(value)
    {
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
    // Lower case and punctuation only: selectors, paths, labels, words
    // (`.password-field`, `/etc/ssl/private`, `app.kubernetes.io/name`) —
    // unless the punctuation is of the kind passwords hold and names do
    // not (`super$ecret`, `open!sesame?`).
    // A value opening or closing with punctuation is a name too, unless it
    // mixes three or more kinds of the punctuation passwords hold
    // (`{{h}o)p${e]nob(ody}}`).
    let is_name_punct = |b: &u8| matches!(b, b'.' | b'-' | b'_' | b'/' | b':' | b'#' | b'=');
    let name_punct = value
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || is_name_punct(b))
        || (!(value[0].is_ascii_alphanumeric() && value[n_last(value)].is_ascii_alphanumeric())
            && password_punct_kinds(value) < 3);
    if classes < 2 || (!has_digit && !has_upper && name_punct) {
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
        || (slashes >= 3 && matches!(value[0], b'/' | b'~' | b'.'))
    {
        return false;
    }
    // snake_case / camelCase / kebab identifiers without digits, and
    // identifiers whose only digits are a trailing version (`token_v2`).
    let body = value
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(value, |i| &value[..=i]);
    if body.len() + 2 >= value.len()
        && body
            .iter()
            .all(|b| b.is_ascii_alphabetic() || matches!(b, b'_' | b'-' | b'.'))
    {
        return false;
    }
    let e = entropy(value);
    // Short values cannot reach high entropy: scale with the length.
    let needed = match value.len() {
        20.. => 3.2,
        12..=19 => 2.8,
        _ => 2.5,
    };
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
    phone_shape_ok(value, false)
}

/// The digits of a phone candidate (without its extension) are 8 to 15,
/// not one digit repeated, not written as an SSN, and — unless a phone
/// word states the number (`stated`) — not an ascending run.
fn phone_shape_ok(value: &[u8], stated: bool) -> bool {
    // The number without its extension (`x204`, `ext. 9`).
    let end = value
        .iter()
        .position(|b| matches!(b.to_ascii_lowercase(), b'x' | b'e' | b'#'))
        .unwrap_or(value.len());
    let main = &value[..end];
    let d = digits(main);
    if !(8..=15).contains(&d.len()) {
        return false;
    }
    // Runs like 0000000000 are filler, not numbers.
    if d.windows(2).all(|w| w[0] == w[1]) {
        return false;
    }
    if ssn_written(main) {
        return false;
    }
    // 1234567890 is filler too, unless someone gives it as their number.
    stated || !d.windows(2).all(|w| w[1] == (w[0] + 1) % 10)
}

/// Nine digits grouped 3-2-4 with one separator throughout (`078-05-1120`,
/// `078 05 1120`, `078.05.1120`): the way SSNs are written (SSA), valid or
/// not, and no national numbering plan's usual grouping; such a value is
/// never read as a phone number.
/// Source: https://www.ssa.gov/history/ssn/geocard.html (the AAA-GG-SSSS form).
fn ssn_written(value: &[u8]) -> bool {
    let v = value.trim_ascii();
    v.len() == 11
        && matches!(v[3], b'-' | b' ' | b'.')
        && v[6] == v[3]
        && v.iter()
            .enumerate()
            .all(|(i, b)| i == 3 || i == 6 || b.is_ascii_digit())
}

/// SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000;
/// and not one of the numbers famously used in advertising.
fn ssn_ok(value: &[u8]) -> bool {
    if !ssn_structure_ok(value) {
        return false;
    }
    let d = digits(value);
    let all: String = d.iter().map(|x| char::from(b'0' + x)).collect();
    !matches!(all.as_str(), "078051120" | "219099999" | "123456789")
}

/// SSA rules alone: nine digits, area not 000, 666 or 900-999; group not
/// 00; serial not 0000.
fn ssn_structure_ok(value: &[u8]) -> bool {
    let d = digits(value);
    if d.len() != 9 {
        return false;
    }
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = u32::from(d[3]) * 10 + u32::from(d[4]);
    let serial = d[5..].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    !(area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0)
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

/// Issuer identification ranges (ISO/IEC 7812 IIN prefixes) and the
/// lengths each scheme issues, from the networks' published rules:
/// `(first, last, prefix digits, min length, max length)`.
/// Sources: Visa, Mastercard (incl. the 2-series), American Express,
/// Discover/Diners Club International, JCB, UnionPay, Maestro, Mir (NSPK),
/// RuPay (NPCI), Troy, Verve, Elo, Dankort, UATP and InstaPayment rules as
/// listed in each network's acceptance guide.
const IIN_RANGES: &[(u32, u32, usize, usize, usize)] = &[
    (4, 4, 1, 13, 19),           // Visa (13 legacy, 16, 19)
    (51, 55, 2, 16, 16),         // Mastercard
    (2221, 2720, 4, 16, 16),     // Mastercard 2-series
    (34, 34, 2, 15, 15),         // American Express
    (37, 37, 2, 15, 15),         // American Express
    (6011, 6011, 4, 16, 19),     // Discover
    (644, 649, 3, 16, 19),       // Discover
    (65, 65, 2, 16, 19),         // Discover / RuPay co-brand
    (622126, 622925, 6, 16, 19), // Discover / UnionPay co-brand
    (300, 305, 3, 14, 19),       // Diners Club International
    (3095, 3095, 4, 14, 19),     // Diners Club International
    (36, 36, 2, 14, 19),         // Diners Club International
    (38, 39, 2, 16, 19),         // Diners Club (Discover network)
    (3528, 3589, 4, 16, 19),     // JCB
    (62, 62, 2, 16, 19),         // UnionPay
    (81, 81, 2, 16, 19),         // UnionPay 81-series
    (2200, 2204, 4, 16, 19),     // Mir
    (60, 60, 2, 16, 16),         // RuPay
    (652, 652, 3, 16, 16),       // RuPay
    (508, 508, 3, 16, 16),       // RuPay
    (9792, 9792, 4, 16, 16),     // Troy
    (506099, 506198, 6, 16, 19), // Verve
    (650002, 650027, 6, 16, 19), // Verve
    (636368, 636368, 6, 16, 16), // Elo
    (438935, 438935, 6, 16, 16), // Elo
    (504175, 504175, 6, 16, 16), // Elo
    (451416, 451416, 6, 16, 16), // Elo
    (5019, 5019, 4, 16, 16),     // Dankort
    (1, 1, 1, 15, 15),           // UATP
    (637, 639, 3, 16, 16),       // InstaPayment
    (50, 50, 2, 12, 19),         // Maestro
    (56, 58, 2, 12, 19),         // Maestro
    (6, 6, 1, 12, 19),           // Maestro (6-series)
];

/// A payment card number: consistent separators, a known issuer range
/// with one of its lengths, and a valid Luhn digit. Published test
/// numbers (`4111 1111 1111 1111`, `4242…`) are card numbers too: in a
/// log or a ticket they are indistinguishable from real ones and are
/// masked alike.
fn card_ok(value: &[u8]) -> bool {
    // Separators must be consistent: none, or only spaces, or only dashes.
    let has_space = value.contains(&b' ');
    let has_dash = value.contains(&b'-');
    if has_space && has_dash {
        return false;
    }
    let d = digits(value);
    if !(12..=19).contains(&d.len()) || !luhn_ok(&d) || d.iter().all(|&x| x == 0) {
        return false;
    }
    let p = |n: usize| -> u32 { d[..n].iter().fold(0u32, |a, &x| a * 10 + u32::from(x)) };
    let len = d.len();
    IIN_RANGES
        .iter()
        .any(|&(lo, hi, n, min, max)| (lo..=hi).contains(&p(n)) && (min..=max).contains(&len))
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
    fn ssn_written_values_are_not_phones() {
        for v in ["078-05-1120", "512 00 7781", "512.44.0000"] {
            assert!(ssn_written(v.as_bytes()), "{v}");
            assert!(!phone_shape_ok(v.as_bytes(), true), "{v}");
        }
        // Other groupings of nine or ten digits stay phone-shaped.
        for v in [
            "0301 23 4567",
            "078-051-1200",
            "512-00-77810",
            "(030) 12-3456",
        ] {
            assert!(!ssn_written(v.as_bytes()), "{v}");
        }
        assert!(phone_shape_ok(b"0301 23 4567", false));
    }

    #[test]
    fn ascending_digits_need_a_phone_word() {
        assert!(!phone_shape_ok(b"01 23 45 67 89", false));
        assert!(phone_shape_ok(b"01 23 45 67 89", true));
        // One digit repeated never is a number.
        assert!(!phone_shape_ok(b"00 00 00 00 00", true));
    }

    #[test]
    fn stated_ssns_skip_only_the_advertising_list() {
        assert!(!Check::Ssn.passes(b"219-09-9999", &Regions::default()));
        assert!(Check::SsnStated.passes(b"219-09-9999", &Regions::default()));
        for v in ["123-45-6789", "512-00-7781", "666-12-3456", "900-12-3456"] {
            assert!(
                !Check::SsnStated.passes(v.as_bytes(), &Regions::default()),
                "{v}"
            );
        }
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
        assert!(
            card_ok(b"4111 1111 1111 1111"),
            "a test number is still a card number"
        );
        for v in [
            "3530 1113 3330 0000", // JCB
            "6200 0000 0000 0005", // UnionPay
            "3056 9309 0259 04",   // Diners, 14 digits
            "3782 822463 10005",   // Amex, 4-6-5
            "2223 0031 2200 3222", // Mastercard 2-series
            "6011-1111-1111-1117", // Discover
        ] {
            assert!(card_ok(v.as_bytes()), "{v}");
        }
        assert!(!card_ok(b"9111 1111 1111 1116"), "no issuer range");
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

    /// Placeholders, templates and values another tool already masked are
    /// low-information; random values of every alphabet rules use are not.
    #[test]
    fn low_information_values() {
        for v in [
            "xxxxxxxxxxxxxxxxxxxxxxxx",
            "XXXXXXXXXXXXXXXX",
            "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx",
            "0000000000000000",
            "AKIAIOSFODNN7EXAMPLE",
            "your-api-key-here",
            "<token>",
            "${API_TOKEN}",
            "$SECRET_KEY",
            "%API_KEY%",
            "{{ secret_key }}",
            "%s",
            "[REDACTED]",
            "abcd****wxyz",
            "sk-abc…",
            "1234567890abcdef",
            "abcdefghijklmnop",
            "abcabcabcabc",
            "qwerty123456",
            "changeme",
        ] {
            assert!(low_information(v.as_bytes()), "{v}");
        }
        for v in [
            "q8Zr2xLm9vTqW3nB",
            "9f86d081884c7d659a2feaa0c55ad015",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzQ4k2LmN8v",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "Tr0ub4dor&3x!",
            "q8Zr2xznuLLIi9vTqW3nB",
            "Qhjmpr4tRueq9gTuU5st",
        ] {
            assert!(!low_information(v.as_bytes()), "{v}");
        }
    }

    /// Identifiers that sit next to a secret keyword are not secrets.
    #[test]
    fn generic_rejects_ids_next_to_keywords() {
        for v in [
            "123e4567-e89b-12d3-a456-426614174000",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbC123",
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            ".password-field",
            "#token-input",
            "user_password",
            "api_key_v2",
            "https://oauth2.example.net/token",
        ] {
            assert!(!generic_ok(v.as_bytes()), "{v}");
        }
        for v in [
            "Tr0ub4dor&3x!Q",
            "xK9#mQ2$vL7pR4tZ",
            "aGVsbG8gd29ybGQgc2VjcmV0",
        ] {
            assert!(generic_ok(v.as_bytes()), "{v}");
        }
    }

    /// The word search as it was before the automaton: each word in the
    /// lossily decoded, lower-cased value.
    fn words_by_search(value: &[u8]) -> bool {
        let lower = value.to_ascii_lowercase();
        let s = String::from_utf8_lossy(&lower);
        PLACEHOLDER_WORDS.iter().any(|w| s.contains(w))
    }

    /// What `low_information` decides, written out test by test.
    fn low_information_spec(value: &[u8]) -> bool {
        if value.is_empty() || is_placeholder(value) {
            return true;
        }
        let n = value.len();
        let longest_run = value
            .chunk_by(|a, b| a == b)
            .map(<[u8]>::len)
            .max()
            .unwrap_or(0);
        let distinct = value.iter().collect::<std::collections::HashSet<_>>().len();
        let periodic = (1..=4).any(|p| (p..n).all(|i| value[i] == value[i - p]));
        let lower = value.to_ascii_lowercase();
        let steps = |d: i16| {
            lower.windows(6).any(|w| {
                w.iter().all(u8::is_ascii_alphanumeric)
                    && w.windows(2).all(|p| i16::from(p[1]) - i16::from(p[0]) == d)
            })
        };
        longest_run >= 6
            || (n >= 8 && (longest_run * 3 >= n || distinct <= 3 || periodic))
            || holds_keyboard_word(value)
            || steps(1)
            || steps(-1)
    }

    /// Values with runs, repeated units, sequences and few distinct bytes
    /// in them, and random bytes.
    fn filler_soup() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            "[a-cA-C0-2]{1,10}",
            (any::<u8>(), 1usize..9)
                .prop_map(|(b, n)| vec![b; n])
                .prop_map(|v| String::from_utf8_lossy(&v).into_owned()),
            "(?:abc|123|xyz|ZYX|987|qwe|Ab){1,3}",
            proptest::sample::select(
                &[
                    "abcde", "abcdef", "uvwxyZ", "45678", "456789", "98765", "FEDCBA", "0123456"
                ][..]
            )
            .prop_map(str::to_string),
            "[a-zA-Z0-9]{1,12}",
            "[ -~]{1,6}",
        ];
        proptest::collection::vec(piece, 0..5).prop_map(|v| v.concat().into_bytes())
    }

    fn word_soup() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            proptest::sample::select(PLACEHOLDER_WORDS).prop_map(|w| w.as_bytes().to_vec()),
            proptest::sample::select(PLACEHOLDER_WORDS)
                .prop_map(|w| w.to_ascii_uppercase().into_bytes()),
            proptest::sample::select(PLACEHOLDER_WORDS)
                .prop_map(|w| w.as_bytes()[..w.len() / 2].to_vec()),
            proptest::collection::vec(any::<u8>(), 0..4),
            proptest::collection::vec(
                proptest::sample::select(&[0xE2u8, 0x80, 0xA6, 0xA2, 0x97, 0x8F, 0xF0, 0xEF][..]),
                0..4
            ),
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|v| v.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 3000, ..Default::default() })]

        #[test]
        fn one_pass_low_information_equals_its_spec(v in filler_soup()) {
            proptest::prop_assert_eq!(low_information(&v), low_information_spec(&v));
        }

        #[test]
        fn placeholder_automaton_equals_the_word_search(v in word_soup()) {
            proptest::prop_assert_eq!(has_placeholder_word(&v), words_by_search(&v));
        }

        #[test]
        fn secret_words_equal_the_word_list(v in secret_word_soup()) {
            // The list `generic_ok` searched a lower-cased copy for.
            let lower = v.to_ascii_lowercase();
            let listed = [
                "password", "passwd", "secret", "token", "apikey", "api_key", "api-key", "key",
            ]
            .iter()
            .any(|w| lower.windows(w.len()).any(|x| x == w.as_bytes()));
            proptest::prop_assert_eq!(names_a_secret(&v), listed);
        }

        #[test]
        fn keyboard_words_equal_the_word_search(v in keyboard_word_soup()) {
            // What `low_information` searched a lower-cased copy for.
            let lower = v.to_ascii_lowercase();
            let listed = [
                "qwerty", "asdfgh", "zxcvbn", "abc123", "letmein", "p@ssw0rd", "passw0rd",
            ]
            .iter()
            .any(|w| memchr::memmem::find(&lower, w.as_bytes()).is_some());
            proptest::prop_assert_eq!(holds_keyboard_word(&v), listed);
        }
    }

    /// Pieces of the keyboard words in both cases, near misses and any byte.
    fn keyboard_word_soup() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            proptest::sample::select(
                &[
                    "qwe", "QWERTY", "rty", "asd", "fgh", "AsDfGh", "zxc", "vbn", "ZXCVBN", "abc",
                    "ABC", "123", "let", "me", "in", "LetMeIn", "p@ss", "pass", "w0rd", "P@SSW0RD",
                    "q", "a", "z", "l", "p", "@",
                ][..]
            )
            .prop_map(|s| s.as_bytes().to_vec()),
            proptest::collection::vec(any::<u8>(), 0..3),
        ];
        proptest::collection::vec(piece, 0..10).prop_map(|v| v.concat())
    }

    /// Pieces of the secret words in both cases, near misses and any byte.
    fn secret_word_soup() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            proptest::sample::select(
                &[
                    "pass", "PassW", "ord", "wd", "d", "sec", "SECRET", "ret", "tok", "en",
                    "Token", "api", "_", "-", "key", "KeY", "ke", "y", "k", "p", "s", "t",
                ][..]
            )
            .prop_map(|s| s.as_bytes().to_vec()),
            proptest::collection::vec(any::<u8>(), 0..3),
        ];
        proptest::collection::vec(piece, 0..10).prop_map(|v| v.concat())
    }

    #[test]
    fn placeholder_words_are_lower_case() {
        for w in PLACEHOLDER_WORDS {
            assert!(!w.is_empty() && w.to_lowercase() == *w, "{w}");
        }
    }
}
