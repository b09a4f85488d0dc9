//! Phone-number validation with libphonenumber's metadata (`phonenumber`
//! crate): a candidate found by a digit-run or context rule is a phone
//! number when it is valid for its own country code (`+CC …`, `00CC …`) or,
//! written nationally, for one of the configured default regions.
//!
//! The parser only ever sees a canonical string it cannot misread: `+` and
//! digits, or digits alone, at most 17 of them. Any panic inside the
//! library is caught and counts as a phone number (fail closed: mask).

use phonenumber::country::Id;
use phonenumber::metadata::Database;
use phonenumber::metadata::loader::Metadata as Loaded;
use std::sync::OnceLock;

/// Regions tried for numbers written without a country code, when the
/// caller does not choose (`ScrubberBuilder::phone_regions`): the
/// locales whose national formats are most common in English-language
/// logs, tickets and chat.
pub(crate) const DEFAULT_REGIONS: &[&str] = &[
    "US", "GB", "DE", "FR", "IN", "AU", "CA", "ES", "IT", "NL", "IE", "BR", "MX",
];

/// The regions a scrubber validates national numbers against.
#[derive(Debug, Clone)]
pub(crate) struct Regions(Vec<Id>);

impl Default for Regions {
    fn default() -> Self {
        Regions::parse(DEFAULT_REGIONS).unwrap_or(Regions(Vec::new()))
    }
}

impl Regions {
    /// ISO 3166-1 alpha-2 codes; `Err` names the first one libphonenumber
    /// does not know.
    pub(crate) fn parse<S: AsRef<str>>(codes: &[S]) -> Result<Regions, String> {
        let mut v = Vec::with_capacity(codes.len());
        for c in codes {
            let c = c.as_ref();
            let id: Id = c.to_ascii_uppercase().parse().map_err(|_| c.to_string())?;
            if !v.contains(&id) {
                v.push(id);
            }
        }
        Ok(Regions(v))
    }
}

/// Longest digit string handed to the parser (E.164 allows 15; a trunk
/// prefix or `00` adds two).
const MAX_DIGITS: usize = 17;

/// The number part of a candidate: everything before an extension marker
/// (`x`, `ext`, `#`), as digits, and whether it was written with a
/// leading `+` or `00` international prefix.
fn canonical(value: &[u8]) -> Option<(bool, String)> {
    let end = value
        .iter()
        .position(|b| matches!(b.to_ascii_lowercase(), b'x' | b'e' | b'#' | b',' | b';'))
        .unwrap_or(value.len());
    // `+44 (0)20 …`: the national trunk prefix in parentheses is not
    // dialled from abroad.
    let main: Vec<u8> = {
        let m = &value[..end];
        match m.windows(3).position(|w| w == b"(0)") {
            Some(i) if m[..i].contains(&b'+') => [&m[..i], &m[i + 3..]].concat(),
            _ => m.to_vec(),
        }
    };
    let main = &main[..];
    let first = main.iter().position(|b| b.is_ascii_digit() || *b == b'+')?;
    let plus = main[first] == b'+';
    let mut digits: String = main
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|&b| char::from(b))
        .collect();
    let mut intl = plus;
    if !plus && digits.starts_with("00") && !digits.starts_with("000") {
        digits.drain(..2);
        intl = true;
    }
    if digits.len() < 6 || digits.len() > MAX_DIGITS {
        return None;
    }
    Some((intl, digits))
}

/// libphonenumber's metadata split by region (written by build.rs).
mod meta {
    include!(concat!(env!("OUT_DIR"), "/phone_meta.rs"));
}

const N_REGIONS: usize = meta::REGIONS.len();

/// The metadata of one region alone, built the first time a candidate
/// needs it (the crate's whole database took ≈ 0.1 s to build, the 25
/// regions of calling code 1 ≈ 20 ms). `None`: it did not load.
fn region_db(i: usize) -> Option<&'static Database> {
    static DBS: [OnceLock<Option<Database>>; N_REGIONS] = [const { OnceLock::new() }; N_REGIONS];
    DBS.get(i)?
        .get_or_init(|| {
            let m: Loaded = serde_json::from_str(meta::REGIONS[i].3).ok()?;
            Database::from(vec![m]).ok()
        })
        .as_ref()
}

/// The metadata of a calling code's regions together, for the rare
/// international number no single region decides.
fn code_db(code: u16) -> Option<&'static Database> {
    const N: usize = meta::BY_CODE.len();
    static DBS: [OnceLock<Option<Database>>; N] = [const { OnceLock::new() }; N];
    let c = code_index(code)?;
    DBS[c]
        .get_or_init(|| {
            let (_, a, b) = meta::BY_CODE[c];
            let metas: Vec<Loaded> = (a..b).map(with_types).collect::<Option<_>>()?;
            Database::from(metas).ok()
        })
        .as_ref()
}

/// Region `i`'s whole metadata, its number types put back: the crate
/// reads them to decide which of a code's regions a number belongs to.
fn with_types(i: usize) -> Option<Loaded> {
    use phonenumber::metadata::loader::Descriptor;
    let (_, _, _, json, types) = meta::REGIONS[i];
    let mut m: Loaded = serde_json::from_str(json).ok()?;
    for &(kind, pattern, lengths, local) in types {
        let d = Some(Descriptor {
            national_number: Some(pattern.to_string()),
            possible_length: lengths.to_vec(),
            possible_local_length: local.to_vec(),
            example: None,
        });
        match kind {
            0 => m.fixed_line = d,
            1 => m.mobile = d,
            2 => m.toll_free = d,
            3 => m.premium_rate = d,
            4 => m.shared_cost = d,
            5 => m.voip = d,
            6 => m.personal_number = d,
            7 => m.pager = d,
            8 => m.uan = d,
            _ => m.voicemail = d,
        }
    }
    Some(m)
}

/// The one region's metadata in [`region_db`].
fn region_meta(i: usize) -> Option<&'static phonenumber::metadata::Metadata> {
    region_db(i)?.iter().next()
}

/// Region `i`'s leading digits pattern, compiled as the crate compiles
/// its patterns (`regex` syntax, whitespace ignored), on first use.
fn leading(i: usize) -> Option<&'static regex_automata::meta::Regex> {
    static RES: [OnceLock<Option<regex_automata::meta::Regex>>; N_REGIONS] =
        [const { OnceLock::new() }; N_REGIONS];
    RES.get(i)?
        .get_or_init(|| {
            regex_automata::meta::Regex::builder()
                .syntax(regex_automata::util::syntax::Config::new().ignore_whitespace(true))
                .build(meta::REGIONS[i].2?)
                .ok()
        })
        .as_ref()
}

/// Where a calling code stands in [`meta::BY_CODE`] (`None`: no such code).
fn code_index(code: u16) -> Option<usize> {
    meta::BY_CODE
        .binary_search_by_key(&code, |(c, _, _)| *c)
        .ok()
}

/// Where a region stands in [`meta::REGIONS`].
fn region_index(region: Id) -> Option<usize> {
    let r: &str = region.as_ref();
    meta::REGION_INDEX
        .binary_search_by_key(&r, |(id, _)| id)
        .ok()
        .map(|i| meta::REGION_INDEX[i].1)
}

/// Which region's metadata decides about `national` under calling code
/// `code`, as the crate's `validator::source_for` picks it: the code's
/// only region, else the first (in the crate's order) whose leading
/// digits fit, or that has no leading digits and whose number types fit.
/// Each region's metadata is built only when it is asked about its types.
fn deciding(code: u16, national: &str) -> Option<usize> {
    let (_, a, b) = meta::BY_CODE[code_index(code)?];
    if b - a == 1 {
        return Some(a);
    }
    (a..b).find(|&i| match meta::REGIONS[i].2 {
        Some(_) => leading(i)
            .and_then(|re| re.find(national))
            .is_some_and(|m| m.start() == 0),
        None => has_type(i, national),
    })
}

/// `phonenumber::is_valid_with` against the whole database, decided alike
/// (the tests below hold it to the crate's own answer) with less built
/// and compiled: the deciding region is found as the crate finds it, but
/// only its metadata is built; and the crate asks a number's type of every
/// descriptor in turn, premium rate first and fixed line and mobile last,
/// compiling each pattern (≈ 1.6 M instructions apiece) the first time it
/// asks, where validity only needs *some* type to match, so the common
/// ones are asked first and most numbers stop there.
fn valid_number(n: &phonenumber::PhoneNumber) -> bool {
    let national = n.national().to_string();
    deciding(n.country().code(), &national).is_some_and(|i| has_type(i, &national))
}

/// Whether `national` has any number type in region `i` (the crate's
/// `number_type(m, national) != Unknown`): the general pattern fits and
/// so does some type's (fixed line and mobile asked first).
fn has_type(i: usize, national: &str) -> bool {
    region_meta(i).is_some_and(|m| {
        let g = m.descriptors().general();
        fits(g.national_number().as_str(), g.possible_length(), national)
            .unwrap_or_else(|| g.is_match(national))
    }) && meta::REGIONS[i].4.iter().any(|&(_, pattern, lengths, _)| {
        fits(pattern, lengths, national).unwrap_or_else(|| full_match(pattern, national))
    })
}

/// A descriptor's pattern compiled only for what [`fits`] asks: a forward
/// lazy DFA over ASCII, searched anchored.
struct Anchored {
    dfa: regex_automata::hybrid::dfa::DFA,
    cache: std::sync::Mutex<regex_automata::hybrid::dfa::Cache>,
}

impl Anchored {
    /// `None` when the pattern does not compile this way (the crate's own
    /// matcher then answers).
    fn build(pattern: &str) -> Option<Anchored> {
        use regex_automata::nfa::thompson;
        let nfa = thompson::Compiler::new()
            .syntax(
                regex_automata::util::syntax::Config::new()
                    .unicode(false)
                    .ignore_whitespace(true),
            )
            .configure(thompson::Config::new().which_captures(thompson::WhichCaptures::None))
            .build(pattern)
            .ok()?;
        let dfa = regex_automata::hybrid::dfa::DFA::builder()
            .build_from_nfa(nfa)
            .ok()?;
        let cache = std::sync::Mutex::new(dfa.create_cache());
        Some(Anchored { dfa, cache })
    }

    /// Whether a match starts at the start of `text`; `None` when the
    /// search gave up.
    fn at_start(&self, text: &str) -> Option<bool> {
        let mut cache = self.cache.lock().ok()?;
        let input = regex_automata::Input::new(text)
            .anchored(regex_automata::Anchored::Yes)
            .earliest(true);
        self.dfa
            .try_search_fwd(&mut cache, &input)
            .ok()
            .map(|m| m.is_some())
    }
}

/// `Descriptor::is_match` of a descriptor with this pattern and these
/// possible lengths (the lengths, then a match of the pattern that starts
/// at the start: the crate takes the leftmost match and compares its
/// start with 0, which is the same question), answered by a matcher that
/// compiles far cheaper than the crate's full regex (≈ 1.6 M instructions
/// apiece, a one-shot `airlock scan` compiled dozens): forward only, no
/// prefilter or reverse search, and `\d` as ASCII digits, which is all a
/// national number holds. `None` when that matcher does not build or
/// gives up (or `national` is not all digits): the caller asks a full
/// regex then. Matchers are kept per pattern for the process's life (the
/// patterns are `'static`, so a pattern's address names it).
fn fits(pattern: &'static str, lengths: &[u16], national: &str) -> Option<bool> {
    static MATCHERS: Compiled<Anchored> = OnceLock::new();
    if !lengths.is_empty() && !u16::try_from(national.len()).is_ok_and(|n| lengths.contains(&n)) {
        return Some(false);
    }
    if !national.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    compiled(&MATCHERS, pattern, Anchored::build)?.at_start(national)
}

/// The crate's own question for a type's pattern, with the crate's regex
/// settings (`regex` syntax, whitespace ignored): a match starting at the
/// start. A pattern that does not compile matches nothing, as a region
/// whose metadata did not load has no types. Compiled once per pattern.
fn full_match(pattern: &'static str, national: &str) -> bool {
    static REGEXES: Compiled<regex_automata::meta::Regex> = OnceLock::new();
    compiled(&REGEXES, pattern, |p| {
        regex_automata::meta::Regex::builder()
            .syntax(regex_automata::util::syntax::Config::new().ignore_whitespace(true))
            .build(p)
            .ok()
    })
    .and_then(|re| re.find(national))
    .is_some_and(|m| m.start() == 0)
}

/// Matchers compiled from `'static` metadata patterns, kept for the
/// process's life and named by the pattern's address.
type Compiled<T> =
    OnceLock<std::sync::Mutex<std::collections::HashMap<(usize, usize), Option<&'static T>>>>;

/// `pattern`'s matcher in `cache`, built on first use; `None` when it did
/// not build (or the cache's lock is poisoned).
fn compiled<T: Send + Sync>(
    cache: &'static Compiled<T>,
    pattern: &'static str,
    build: impl FnOnce(&str) -> Option<T>,
) -> Option<&'static T> {
    let key = (pattern.as_ptr() as usize, pattern.len());
    *cache
        .get_or_init(Default::default)
        .lock()
        .ok()?
        .entry(key)
        .or_insert_with(|| build(pattern).map(|t| &*Box::leak(Box::new(t))))
}

/// Whether `text` parses with `db` for `region` and is valid. Any panic
/// inside the library counts as valid (fail closed: mask).
fn decide(db: &Database, region: Option<Id>, text: &str) -> bool {
    std::panic::catch_unwind(|| {
        phonenumber::parse_with(db, region, text).is_ok_and(|n| valid_number(&n))
    })
    .unwrap_or(true)
}

/// Whether `text` is a valid number for `region` (national digits), or
/// for its own calling code (`None`: `+digits`), as libphonenumber's
/// parser decides with its whole database (`parser::helper::
/// country_code`), reading the least metadata that decides alike:
/// - national digits: the parser reads only the region's own metadata,
///   unless the digits start with the region's international (IDD)
///   prefix, after which any code may follow: then the whole database.
/// - `+digits`: the calling code is the first prefix of one to three
///   digits that is a code; the parser then reads the one region that
///   decides about the rest with its leading zeros dropped (alone in a
///   database, that region is the one the parser picks), or, when none
///   does, the code's regions together.
fn valid_in(region: Option<Id>, text: &str) -> bool {
    let Some(region) = region else {
        let digits = text.strip_prefix('+').unwrap_or(text);
        if digits.starts_with('0') {
            return false;
        }
        let Some((code, len)) = (1..=3)
            .filter_map(|n| Some((digits.get(..n)?.parse::<u16>().ok()?, n)))
            .find(|&(c, _)| code_index(c).is_some())
        else {
            return false;
        };
        let rest = digits[len..].trim_start_matches('0');
        let db = match deciding(code, rest) {
            Some(i) => region_db(i),
            None => code_db(code),
        };
        return db.is_some_and(|db| decide(db, None, text));
    };
    let Some(i) = region_index(region) else {
        return false;
    };
    let Some(m) = region_meta(i) else {
        return false;
    };
    let idd = m
        .international_prefix()
        .and_then(|re| re.find(text))
        .is_some_and(|m| m.start() == 0);
    if idd {
        return decide(&phonenumber::metadata::DATABASE, Some(region), text);
    }
    region_db(i).is_some_and(|db| decide(db, Some(region), text))
}

/// Whether `value` is a valid phone number: for its own country code when
/// written internationally, else for one of `regions`.
pub(crate) fn valid(value: &[u8], regions: &Regions) -> bool {
    let Some((intl, digits)) = canonical(value) else {
        return false;
    };
    if intl {
        return valid_in(None, &format!("+{digits}"));
    }
    regions.0.iter().any(|&r| valid_in(Some(r), &digits))
}

/// Whether `value` is a valid phone number for any region libphonenumber
/// knows: used when a phone word states it ("Mobile: …", "call …"), so a
/// national number of a region outside the configured list is still
/// recognized. Without such a word the configured list alone is tried,
/// since most digit groups are valid somewhere.
/// Source: libphonenumber's per-region metadata (`PhoneNumberMetadata.xml`).
pub(crate) fn valid_anywhere(value: &[u8], regions: &Regions) -> bool {
    if valid(value, regions) {
        return true;
    }
    let Some((intl, digits)) = canonical(value) else {
        return false;
    };
    // Every region's metadata is read: the whole database, built once.
    let whole = &*phonenumber::metadata::DATABASE;
    !intl
        && all_regions()
            .iter()
            .any(|&r| decide(whole, Some(r), &digits))
}

/// Every region of libphonenumber's metadata, in a fixed order.
fn all_regions() -> &'static [Id] {
    static ALL: std::sync::OnceLock<Vec<Id>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let mut v = Vec::new();
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                let code = [a, b];
                if let Ok(id) = std::str::from_utf8(&code).unwrap_or_default().parse::<Id>() {
                    v.push(id);
                }
            }
        }
        v
    })
}

/// Bytes before a phone candidate that [`continues_chain`] reads: an
/// IBAN's head is at most eight groups of four (and their blanks) back.
pub(crate) const LOOK_BACK: usize = 48;

/// Whether a phone candidate starting at `at` only continues a chain of
/// groups written before it, so that it is the tail of a longer number
/// and not a phone number of its own: the group right before it (joined
/// by one space, dot or dash; the candidate opens with no parenthesis) holds a digit (`4111 1111 …`, a bank
/// account), or a chain of four-character upper-case groups leads back
/// to one that does (an IBAN written in groups: `NL91 ABNA 0417 …`, the
/// grouping of ISO 13616's paper format). Reads at most 48 bytes before
/// `at`, well inside the context a stream keeps.
/// Source: ISO 13616-1 §5 (IBAN paper format in groups of four).
pub(crate) fn continues_chain(hay: &[u8], at: usize) -> bool {
    let floor = at.saturating_sub(LOOK_BACK);
    let group = |end: usize| -> usize {
        let mut s = end;
        while s > floor && end - s < 8 && hay[s - 1].is_ascii_alphanumeric() {
            s -= 1;
        }
        s
    };
    // An area code in parentheses opens a number of its own, after a
    // trunk prefix or country code (`8 (912) …`, `1 (415) …`).
    if at < 2 || hay.get(at) == Some(&b'(') || !matches!(hay[at - 1], b' ' | b'.' | b'-') {
        return false;
    }
    let mut end = at - 1;
    let s = group(end);
    if s == end {
        return false;
    }
    if hay[s..end].iter().any(u8::is_ascii_digit) {
        return true;
    }
    // Upper-case groups of four: walk back while they last.
    for _ in 0..8 {
        let s = group(end);
        let g = &hay[s..end];
        let iban_group = g.len() == 4
            && g.iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && (s == floor || !hay[s - 1].is_ascii_alphanumeric());
        if !iban_group {
            return false;
        }
        if g.iter().any(u8::is_ascii_digit) {
            return true;
        }
        if s < floor + 2 || hay[s - 1] != b' ' {
            return false;
        }
        end = s - 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the crate's own entry points (its whole database) decide.
    fn whole(region: Option<Id>, text: &str) -> bool {
        phonenumber::parse(region, text).is_ok_and(|n| phonenumber::is_valid(&n))
    }

    /// The per-region databases decide every region's example numbers
    /// exactly as the whole database does: nationally (with and without
    /// the trunk prefix), internationally (`+CC`), and dialled from the US
    /// and the UK through their IDD prefixes (which send the parser to
    /// the whole database); also with a digit changed (mostly invalid).
    #[test]
    fn per_region_metadata_decides_as_the_whole_database() {
        let db = &*phonenumber::metadata::DATABASE;
        let us: Id = "US".parse().expect("US");
        let gb: Id = "GB".parse().expect("GB");
        let mut cases = 0;
        let mut valid_seen = 0;
        // Every region of every calling code (iterating the database by
        // id would see one of the non-geographic codes' regions, which are
        // all named "001").
        let all = (1..1000u16).filter_map(|c| db.by_code(&c)).flatten();
        for m in all {
            let region: Option<Id> = m.id().parse().ok();
            let d = m.descriptors();
            let examples = [
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.voip(),
                d.uan(),
                d.personal_number(),
                d.pager(),
            ]
            .into_iter()
            .flatten()
            .filter_map(|x| x.example());
            for ex in examples {
                let code = m.country_code();
                let altered = {
                    let mut b = ex.as_bytes().to_vec();
                    if let Some(last) = b.last_mut() {
                        *last = if *last == b'9' { b'0' } else { *last + 1 };
                    }
                    String::from_utf8(b).expect("digits")
                };
                for n in [ex.to_string(), altered] {
                    let mut texts: Vec<(Option<Id>, String)> = vec![
                        (None, format!("+{code}{n}")),
                        (Some(us), format!("011{code}{n}")),
                        (Some(gb), format!("00{code}{n}")),
                    ];
                    if let Some(r) = region {
                        texts.push((Some(r), n.clone()));
                        if let Some(p) = m.national_prefix() {
                            texts.push((Some(r), format!("{p}{n}")));
                        }
                    }
                    for (r, t) in texts {
                        let want = whole(r, &t);
                        assert_eq!(valid_in(r, &t), want, "{r:?} {t}");
                        cases += 1;
                        valid_seen += usize::from(want);
                    }
                }
            }
        }
        assert!(
            cases > 3000 && valid_seen > 1000,
            "{cases} cases, {valid_seen} valid"
        );
    }

    /// A region's metadata with its types put back ([`with_types`], what a
    /// code's regions built together read) has the crate's own types.
    #[test]
    fn types_put_back_are_the_crates() {
        let db = &*phonenumber::metadata::DATABASE;
        let view = |d: Option<&phonenumber::metadata::Descriptor>| {
            d.map(|d| {
                (
                    d.national_number().as_str().to_string(),
                    d.possible_length().to_vec(),
                )
            })
        };
        for (i, r) in meta::REGIONS.iter().enumerate() {
            let ours = Database::from(vec![with_types(i).expect("metadata")]).expect("builds");
            let ours = ours.iter().next().expect("one region").descriptors();
            let theirs = db
                .by_code(&r.0)
                .into_iter()
                .flatten()
                .find(|m| m.id() == r.1 && (r.1 != "001" || m.country_code() == r.0))
                .expect("the crate's region")
                .descriptors();
            for (a, b) in [
                (ours.fixed_line(), theirs.fixed_line()),
                (ours.mobile(), theirs.mobile()),
                (ours.toll_free(), theirs.toll_free()),
                (ours.premium_rate(), theirs.premium_rate()),
                (ours.shared_cost(), theirs.shared_cost()),
                (ours.voip(), theirs.voip()),
                (ours.personal_number(), theirs.personal_number()),
                (ours.pager(), theirs.pager()),
                (ours.uan(), theirs.uan()),
                (ours.voicemail(), theirs.voicemail()),
            ] {
                assert_eq!(view(a), view(b), "region {} (+{})", r.1, r.0);
            }
        }
    }

    fn ok(v: &str) -> bool {
        valid(v.as_bytes(), &Regions::default())
    }

    proptest! {
        /// Any digit string, international or national in a default
        /// region, is decided as the whole database decides it.
        #[test]
        fn per_region_metadata_decides_random_digits_alike(
            digits in "[0-9]{6,17}",
            r in 0..DEFAULT_REGIONS.len() + 1,
        ) {
            let region: Option<Id> = DEFAULT_REGIONS.get(r).and_then(|c| c.parse().ok());
            let text = if region.is_some() { digits } else { format!("+{digits}") };
            prop_assert_eq!(valid_in(region, &text), whole(region, &text));
        }
    }

    #[test]
    fn numbers_as_people_write_them() {
        for v in [
            "+1 (415) 867-5309",
            "+44 20 7946 0958",
            "+44 (0)20 7946 0958",
            "+49(0)30 901820",
            "+31 (0) 20 794 6095",
            "020 7946 0958",
            "07700 900123",
            "(415) 867-5309",
            "415.867.5309",
            "+49 30 901820",
            "030 901820",
            "+33 1 42 68 53 00",
            "01 42 68 53 00",
            "0033 1 42 68 53 00",
            "+91 98765 43210",
            "+61 2 9374 4000",
            "(02) 9374 4000",
            "+1-415-867-5309 x204",
            // Non-geographic calling codes: international freephone,
            // satellite.
            "+800 1234 5678",
            "+881 6 0000 0000",
        ] {
            assert!(ok(v), "{v}");
        }
    }

    #[test]
    fn non_numbers_are_refused() {
        for v in ["12345", "000000000000", "+999 123 456 789", "1.2.3"] {
            assert!(!ok(v), "{v}");
        }
    }

    #[test]
    fn regions_are_checked() {
        assert_eq!(Regions::default().0.len(), DEFAULT_REGIONS.len());
        assert!(Regions::parse(&["us", "GB"]).is_ok());
        assert_eq!(Regions::parse(&["US", "ZZZ"]).map(drop), Err("ZZZ".into()));
        // A French national number is refused when only the US is allowed.
        let us = Regions::parse(&["US"]).expect("US");
        assert!(!valid(b"01 42 68 53 00", &us));
    }

    #[test]
    fn stated_numbers_are_valid_for_any_region() {
        let us = Regions::parse(&["US"]).expect("US");
        // Danish (eight digits, no trunk prefix): not American.
        assert!(!valid(b"33 12 45 78", &us));
        assert!(valid_anywhere(b"33 12 45 78", &us));
        // Still no number anywhere: too short, or an unknown country code.
        assert!(!valid_anywhere(b"12 34", &us));
        assert!(!valid_anywhere(b"+999 123 456 789", &us));
    }

    #[test]
    fn chains_of_groups_are_not_phone_starts() {
        let at = |text: &str, cand: &str| {
            let i = text.find(cand).expect("candidate");
            continues_chain(text.as_bytes(), i)
        };
        // The tail of a grouped card or account number.
        assert!(at("card 5412 7534 0001 0402", "0001 0402"));
        assert!(at("acct 12-0401-555", "0401-555"));
        // Groups of an IBAN whose head is letters-and-digits further back.
        assert!(at("GB29 NWBK 0401 2345", "0401 2345"));
        assert!(at("XX12 ABCD EFGH 0401 2345", "0401 2345"));
        // Words before a number do not chain, nor a parenthesized area code.
        assert!(!at("call 0401 2345", "0401 2345"));
        assert!(!at("CALL 0401 2345", "0401 2345"));
        assert!(!at("PLEASE CALL 0401 2345", "0401 2345"));
        assert!(!at("tel: 0401 2345", "0401 2345"));
        assert!(!at("1 (415) 867-5309", "(415) 867-5309"));
        assert!(!at("0401 2345", "0401 2345"));
        // Bounded: a head more than LOOK_BACK bytes back is not read.
        let far = format!("AB12 {}0401 2345", "CDEF ".repeat(10));
        assert!(!at(&far, "0401 2345"));
    }

    proptest! {
        #[test]
        fn never_panics(s in "[0-9 +().\\-x#]{0,40}") {
            let _ = valid(s.as_bytes(), &Regions::default());
        }

        #[test]
        fn chain_look_behind_is_bounded(s in "[A-Z0-9 .\\-]{0,120}", tail in "[0-9 ]{1,12}") {
            let text = format!("{s}{tail}");
            let at = s.len();
            prop_assert_eq!(
                continues_chain(text.as_bytes(), at),
                continues_chain(&text.as_bytes()[at.saturating_sub(LOOK_BACK)..], at.min(LOOK_BACK))
            );
        }
    }
}
