//! Look-alike host names, judged the way browsers decide whether to show an
//! internationalized name in Unicode (Chromium's IDN spoof checker, built on
//! UTS #39). Every check runs on the Unicode form of each non-ASCII label;
//! ASCII labels are already `[a-z0-9_-]`.
//!
//! Per label, in order:
//! 1. **Characters** (`idn_disallowed_character`): each character must have
//!    UTS #39 Identifier_Status=Allowed; it must not look like URL
//!    punctuation (its confusable prototype contains an ASCII character other
//!    than a letter or digit: hyphens, dashes, slashes, dots, colons,
//!    apostrophe-like modifier letters), except `·` between two `l` (Catalan);
//!    a combining mark must not follow a Latin, Greek, Cyrillic or Common
//!    letter (after NFC, a mark left there has no precomposed form: `i̇`,
//!    overlays), nor a U+0300..U+036F mark any other letter.
//! 2. **Numbers** (`idn_mixed_numbers`): decimal digits from one numbering
//!    system only.
//! 3. **Scripts** (`mixed_script_host`): the label must be at most UTS #39
//!    *highly restrictive* (one script, or Latin with Han + Hiragana +
//!    Katakana, Han + Bopomofo, or Han + Hangul).
//! 4. **Dangerous patterns** (`idn_dangerous_pattern`): a Han or Kana
//!    character that looks like a slash, dash, dot or `one` (its prototype
//!    is ASCII punctuation or the long-vowel mark) in a label that also has
//!    Latin letters or ASCII digits, next to a non-CJK character or at an
//!    edge of the label.
//! 5. **Whole-script look-alikes** (`idn_whole_script_confusable`): a label
//!    in one non-Latin script whose every character has a skeleton made of
//!    ASCII letters and digits (`аррӏе`, `зб`), unless the top-level label
//!    is written in that script or is a country code that uses it (`.рф`,
//!    `.ru`, `.gr`, ...).
//!
//! Per host, against precomputed skeleton maps: a name whose skeleton (UTS
//! #39 prototypes, then marks removed, lowercased; with `ß`→`ss` and
//! `ς`→`σ` as a second reading) equals that of a host named in the policy
//! (`confusable_host`) or of a shipped well-known domain (`idn_confusable`,
//! non-ASCII names only) while its characters differ.

use airlock_types::Reason;
use icu_properties::CodePointMapData;
use icu_properties::props::{GeneralCategory, Script};
use icu_properties::script::{ScriptWithExtensions, ScriptWithExtensionsBorrowed};
use std::collections::HashMap;
use unicode_security::{GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

/// The Unicode form of an ASCII (Punycode) domain. `None` when a label does
/// not decode (the host parser has already rejected such names).
pub(crate) fn to_unicode(ascii: &str) -> Option<String> {
    if !ascii.contains("xn--") {
        return Some(ascii.to_owned());
    }
    let (u, res) = idna::domain_to_unicode(ascii);
    res.ok().map(|()| u)
}

/// Prototypes UTS #39 leaves non-Latin (or maps to another non-ASCII
/// letter) that Chromium's skeleton generator adds: letters that render as
/// a basic Latin letter in common fonts. Applied before the UTS #39 map.
fn extra_prototype(c: char) -> Option<&'static str> {
    Some(match c {
        'ĸ' | 'κ' | 'к' | 'қ' | 'ҝ' | 'ҟ' | 'ҡ' | 'ӄ' | 'ԟ' => "k",
        'ŋ' | 'п' | 'ԥ' | 'η' => "n",
        'ħ' | 'н' | 'ћ' | 'ң' | 'ҥ' | 'ӈ' | 'ӊ' | 'ԋ' | 'ԧ' | 'ԩ' => "h",
        'ŧ' | 'т' | 'ҭ' | 'ԏ' | 'τ' => "t",
        'ƅ' | 'ь' | 'ҍ' | 'в' => "b",
        'ω' | 'ш' | 'щ' => "w",
        'м' | 'ӎ' => "m",
        'є' | 'ҽ' | 'ҿ' => "e",
        'ґ' | 'г' => "r",
        'ғ' | 'ӻ' => "f",
        'ҫ' => "c",
        'ұ' | 'ү' | 'γ' => "y",
        'χ' | 'ҳ' | 'ӽ' | 'ӿ' => "x",
        'ԃ' => "d",
        'ԍ' | 'ɡ' => "g",
        'з' | 'ҙ' | 'ӡ' | 'ვ' => "3",
        'þ' | 'ϼ' | 'ҏ' => "p",
        'æ' | 'ӕ' => "ae",
        'œ' => "ce",
        'ı' | 'ɩ' | 'ɪ' => "i",
        'ȷ' => "j",
        'ø' => "o",
        'ł' => "l",
        'đ' => "d",
        _ => return None,
    })
}

fn is_mark(gc: GeneralCategory) -> bool {
    matches!(
        gc,
        GeneralCategory::NonspacingMark
            | GeneralCategory::EnclosingMark
            | GeneralCategory::SpacingMark
    )
}

/// The skeleton of one label: NFD, each character replaced by its
/// prototype (extra map, then UTS #39), every combining mark removed (so
/// `ł`→`l̸`→`l`, `é`→`e`), lowercased, then mapped once more so that
/// prototypes that are themselves confusable (`0`→`O`→`o`) settle.
pub(crate) fn skeleton_label(label: &str) -> String {
    let gc = CodePointMapData::<GeneralCategory>::new();
    let pass = |s: &str| -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match extra_prototype(c) {
                Some(p) => out.push_str(p),
                None => out.extend(unicode_security::skeleton(c.encode_utf8(&mut [0; 4]))),
            }
        }
        out.chars()
            .filter(|c| !is_mark(gc.get(*c)))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let once = pass(&nfd(label));
    pass(&once)
}

fn nfd(s: &str) -> String {
    icu_normalizer::DecomposingNormalizerBorrowed::new_nfd()
        .normalize(s)
        .into_owned()
}

/// The skeleton of a whole host, label by label.
pub(crate) fn skeleton(unicode: &str) -> String {
    unicode
        .split('.')
        .map(skeleton_label)
        .collect::<Vec<_>>()
        .join(".")
}

/// The readings of a host whose skeletons are compared: as written and,
/// when it has IDNA deviation characters, as the transitional mapping reads
/// it (`ß`→`ss`, `ς`→`σ`), which older clients resolve.
fn readings(unicode: &str) -> Vec<Vec<String>> {
    let labels = |s: &str| s.split('.').map(skeleton_label).collect::<Vec<_>>();
    let mut out = vec![labels(unicode)];
    if unicode.contains(['ß', 'ς']) {
        out.push(labels(&unicode.replace('ß', "ss").replace('ς', "σ")));
    }
    out
}

/// A host a skeleton map knows: its ASCII form and whether names below it
/// count as it.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub(crate) ascii: String,
    pub(crate) subdomains: bool,
}

/// Skeleton → the hosts with that skeleton.
#[derive(Debug, Clone, Default)]
pub(crate) struct SkeletonMap(HashMap<String, Vec<Known>>);

impl SkeletonMap {
    pub(crate) fn insert(&mut self, ascii: &str, subdomains: bool) {
        let unicode = to_unicode(ascii).unwrap_or_else(|| ascii.to_owned());
        self.0.entry(skeleton(&unicode)).or_default().push(Known {
            ascii: ascii.to_owned(),
            subdomains,
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when some suffix of `ascii` (Unicode form `unicode`) has the
    /// skeleton of a known host it is not, and is not itself known.
    pub(crate) fn lookalike(&self, ascii: &str, unicode: &str) -> bool {
        let ascii_labels: Vec<&str> = ascii.split('.').collect();
        readings(unicode).iter().any(|skel| {
            if skel.len() != ascii_labels.len() {
                return false;
            }
            let n = skel.len();
            (1..=n).any(|k| {
                let key = skel[n - k..].join(".");
                let Some(known) = self.0.get(&key) else {
                    return false;
                };
                let written = ascii_labels[n - k..].join(".");
                let applies: Vec<&Known> =
                    known.iter().filter(|h| k == n || h.subdomains).collect();
                !applies.is_empty() && !applies.iter().any(|h| h.ascii == written)
            })
        })
    }

    /// True when `ascii` is a known host or below one that counts its
    /// subdomains.
    pub(crate) fn names(&self, ascii: &str, unicode: &str) -> bool {
        let ascii_labels: Vec<&str> = ascii.split('.').collect();
        let skel: Vec<String> = unicode.split('.').map(skeleton_label).collect();
        let n = ascii_labels.len();
        skel.len() == n
            && (1..=n).any(|k| {
                let written = ascii_labels[n - k..].join(".");
                self.0.get(&skel[n - k..].join(".")).is_some_and(|v| {
                    v.iter()
                        .any(|h| h.ascii == written && (k == n || h.subdomains))
                })
            })
    }
}

/// The well-known registrable domains shipped with Airlock (see
/// `data/well_known_domains.txt` for the source and licence).
const WELL_KNOWN: &str = include_str!("../data/well_known_domains.txt");

/// The skeleton map of the shipped well-known domains, built once.
pub(crate) fn well_known() -> &'static SkeletonMap {
    static MAP: std::sync::OnceLock<SkeletonMap> = std::sync::OnceLock::new();
    MAP.get_or_init(|| {
        let mut m = SkeletonMap::default();
        for line in WELL_KNOWN.lines() {
            let d = line.trim();
            if !d.is_empty() && !d.starts_with('#') {
                m.insert(d, true);
            }
        }
        m
    })
}

fn script_of(swe: &ScriptWithExtensionsBorrowed<'_>, c: char) -> Script {
    swe.get_script_val(c)
}

fn is_cjk(s: Script) -> bool {
    matches!(
        s,
        Script::Han | Script::Hiragana | Script::Katakana | Script::Bopomofo | Script::Hangul
    )
}

/// Character checks of one label (see the module notes, step 1).
fn disallowed_character(label: &str) -> bool {
    let swe = ScriptWithExtensions::new();
    let gc = CodePointMapData::<GeneralCategory>::new();
    let chars: Vec<char> = label.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii() {
            continue;
        }
        if !c.identifier_allowed() {
            return true;
        }
        let script = script_of(&swe, c);
        if is_mark(gc.get(c)) {
            let Some(&base) = i.checked_sub(1).and_then(|p| chars.get(p)) else {
                return true;
            };
            let base_script = script_of(&swe, base);
            let lgc = matches!(
                base_script,
                Script::Latin | Script::Greek | Script::Cyrillic | Script::Common
            );
            if lgc || (0x300..=0x36F).contains(&(c as u32)) {
                return true;
            }
            continue;
        }
        if c == '\u{00B7}' {
            // Catalan `l·l` is the one legitimate use of the middle dot.
            let prev = i.checked_sub(1).and_then(|p| chars.get(p));
            if prev != Some(&'l') || chars.get(i + 1) != Some(&'l') {
                return true;
            }
            continue;
        }
        if is_cjk(script) {
            continue; // judged by the dangerous-pattern check
        }
        let letter = matches!(
            gc.get(c),
            GeneralCategory::UppercaseLetter
                | GeneralCategory::LowercaseLetter
                | GeneralCategory::TitlecaseLetter
                | GeneralCategory::OtherLetter
        ) && !matches!(script, Script::Common | Script::Inherited);
        if letter {
            continue; // a letter of its script (Hebrew yod reads as `'`)
        }
        let looks_like_punct = unicode_security::skeleton(c.encode_utf8(&mut [0; 4]))
            .any(|p| p.is_ascii() && !p.is_ascii_alphanumeric());
        let is_dot_like =
            unicode_security::skeleton(c.encode_utf8(&mut [0; 4])).any(|p| p == '\u{00B7}');
        if looks_like_punct || is_dot_like {
            return true;
        }
    }
    false
}

/// The zero of the numbering system a decimal digit belongs to.
fn digit_zero(gc: &icu_properties::CodePointMapDataBorrowed<'_, GeneralCategory>, c: char) -> u32 {
    // Unicode encodes each decimal numbering system as a run of ten
    // consecutive Nd code points starting at zero; runs may abut.
    let mut start = c as u32;
    while start > 0
        && char::from_u32(start - 1).is_some_and(|p| gc.get(p) == GeneralCategory::DecimalNumber)
    {
        start -= 1;
    }
    let cp = c as u32;
    cp - (cp - start) % 10
}

fn mixed_numbers(label: &str) -> bool {
    let gc = CodePointMapData::<GeneralCategory>::new();
    let mut zero = None;
    for c in label.chars() {
        if gc.get(c) != GeneralCategory::DecimalNumber {
            continue;
        }
        let z = digit_zero(&gc, c);
        match zero {
            None => zero = Some(z),
            Some(prev) if prev != z => return true,
            Some(_) => {}
        }
    }
    false
}

fn mixed_script(label: &str) -> bool {
    let letters: String = label.chars().filter(|c| !matches!(c, '-' | '_')).collect();
    letters.as_str().detect_restriction_level() > RestrictionLevel::HighlyRestrictive
}

/// Han or Kana characters that read as `/`, `-`, `.` or `1` (see step 4).
fn is_cjk_punct_lookalike(c: char) -> bool {
    let skel: String = unicode_security::skeleton(c.encode_utf8(&mut [0; 4])).collect();
    skel.chars()
        .any(|p| (p.is_ascii() && !p.is_ascii_alphabetic()) || p == 'l')
        || skel == "\u{30FC}"
        || skel == "\u{00B7}"
        || c == '\u{30FC}'
        || c == '\u{30FB}'
}

fn dangerous_pattern(label: &str) -> bool {
    let swe = ScriptWithExtensions::new();
    let chars: Vec<char> = label.chars().collect();
    let has_latin = chars
        .iter()
        .any(|c| c.is_ascii_alphanumeric() || script_of(&swe, *c) == Script::Latin);
    if !has_latin {
        return false;
    }
    let cjk_at = |i: Option<usize>| {
        i.and_then(|i| chars.get(i))
            .is_some_and(|c| is_cjk(script_of(&swe, *c)) || *c == '\u{30FC}')
    };
    chars.iter().enumerate().any(|(i, &c)| {
        (is_cjk(script_of(&swe, c)) || matches!(c, '\u{30FC}' | '\u{30FB}'))
            && is_cjk_punct_lookalike(c)
            && !(cjk_at(i.checked_sub(1)) && cjk_at(Some(i + 1)))
    })
}

/// Scripts whose whole-script look-alikes are expected under these
/// country-code top-level domains (the countries write in that script).
fn tld_uses_script(tld: &str, script: Script) -> bool {
    let swe = ScriptWithExtensions::new();
    if !tld.is_ascii() {
        return tld.chars().any(|c| swe.has_script(c, script));
    }
    let list: &[&str] = match script {
        Script::Cyrillic => &[
            "ru", "su", "ua", "by", "bg", "kz", "kg", "tj", "uz", "mk", "rs", "me", "mn", "ba",
        ],
        Script::Greek => &["gr", "cy"],
        Script::Armenian => &["am"],
        Script::Georgian => &["ge"],
        _ => &[],
    };
    list.contains(&tld)
}

/// The one script of a label (ignoring Common and Inherited), if single.
fn single_script(swe: &ScriptWithExtensionsBorrowed<'_>, label: &str) -> Option<Script> {
    let mut found = None;
    for c in label.chars() {
        let s = script_of(swe, c);
        if matches!(s, Script::Common | Script::Inherited) {
            continue;
        }
        match found {
            None => found = Some(s),
            Some(f) if f != s => return None,
            Some(_) => {}
        }
    }
    found
}

fn whole_script_confusable(label: &str, tld: &str) -> bool {
    let swe = ScriptWithExtensions::new();
    let Some(script) = single_script(&swe, label) else {
        return false;
    };
    if script == Script::Latin || tld_uses_script(tld, script) {
        return false;
    }
    let skel = skeleton_label(label);
    !skel.is_empty()
        && skel
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The checks of the module notes' steps 1–5 on a host's Unicode form.
pub(crate) fn check_labels(unicode: &str) -> Result<(), Reason> {
    let tld = unicode.rsplit('.').next().unwrap_or("");
    for label in unicode.split('.') {
        if label.is_ascii() {
            continue;
        }
        if disallowed_character(label) {
            return Err(Reason::IdnDisallowedCharacter);
        }
        if mixed_numbers(label) {
            return Err(Reason::IdnMixedNumbers);
        }
        if mixed_script(label) {
            return Err(Reason::MixedScriptHost);
        }
        if dangerous_pattern(label) {
            return Err(Reason::IdnDangerousPattern);
        }
        if whole_script_confusable(label, tld) {
            return Err(Reason::IdnWholeScriptConfusable);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skeletons_fold_look_alikes_to_latin() {
        assert_eq!(skeleton("аррӏе.org"), "apple.org");
        assert_eq!(skeleton("rn"), skeleton("m"));
        assert_eq!(skeleton("exämple.org"), skeleton("example.org"));
        assert_eq!(skeleton("łđħ"), "ldh");
        assert_eq!(skeleton("examp1e.0rg"), skeleton("example.org"));
        assert_eq!(skeleton("ĸŋɡ"), "kng");
    }

    #[test]
    fn digit_systems_are_told_apart() {
        assert!(mixed_numbers("a1\u{0661}"));
        assert!(mixed_numbers("\u{0661}\u{06F1}"));
        assert!(!mixed_numbers("\u{0661}\u{0669}"));
        assert!(!mixed_numbers("abc123"));
    }
}
