//! IDN checks on a host's Unicode form: mixed scripts (UTS-39 "highly
//! restrictive" profile) and look-alikes of hosts named in the policy
//! (a UTS-39-style skeleton with a compact built-in confusables map).
//!
//! Coverage of the map: the Cyrillic, Greek, Armenian and Latin-extension
//! letters that render like basic Latin letters in common fonts, plus the
//! ASCII pairs `0`/`o`, `1`/`l` and `rn`/`m`; diacritics are stripped
//! (NFD, combining marks removed) so `exämple` and `example` share a
//! skeleton. It is not the full Unicode `confusables.txt`.

use icu_normalizer::DecomposingNormalizerBorrowed;
use icu_properties::props::Script;
use icu_properties::script::ScriptWithExtensions;

/// The Unicode form of an ASCII (Punycode) domain. `None` when a label does
/// not decode (the host parser has already rejected such names).
pub(crate) fn to_unicode(ascii: &str) -> Option<String> {
    if !ascii.contains("xn--") {
        return Some(ascii.to_owned());
    }
    let (u, res) = idna::domain_to_unicode(ascii);
    res.ok().map(|()| u)
}

/// Script combinations a single label may mix (UTS-39 highly restrictive).
const COMBOS: &[&[Script]] = &[
    &[
        Script::Latin,
        Script::Han,
        Script::Hiragana,
        Script::Katakana,
    ],
    &[Script::Latin, Script::Han, Script::Bopomofo],
    &[Script::Latin, Script::Han, Script::Hangul],
];

/// True when some label of `unicode` mixes scripts beyond the allowed
/// combinations. Common and Inherited characters (digits, `-`, marks) count
/// for no script; a character with Script_Extensions counts for each.
pub(crate) fn has_mixed_script_label(unicode: &str) -> bool {
    let swe = ScriptWithExtensions::new();
    unicode.split('.').any(|label| {
        if label.is_ascii() {
            return false;
        }
        let sets: Vec<Vec<Script>> = label
            .chars()
            .map(|c| swe.get_script_extensions_val(c).iter().collect::<Vec<_>>())
            .filter(|s| {
                !s.iter()
                    .all(|x| *x == Script::Common || *x == Script::Inherited)
            })
            .collect();
        let Some((first, rest)) = sets.split_first() else {
            return false;
        };
        let single = first.iter().any(|sc| rest.iter().all(|s| s.contains(sc)));
        let combo = COMBOS
            .iter()
            .any(|combo| sets.iter().all(|s| s.iter().any(|sc| combo.contains(sc))));
        !(single || combo)
    })
}

/// The basic Latin letter (or ASCII string) a character is confusable with.
fn prototype(c: char) -> Option<&'static str> {
    Some(match c {
        // ASCII look-alikes within hostnames.
        '0' => "o",
        '1' => "l",
        'm' => "rn",
        // Cyrillic
        'а' => "a",
        'е' => "e",
        'о' => "o",
        'р' => "p",
        'с' => "c",
        'у' => "y",
        'х' => "x",
        'і' => "i",
        'ј' => "j",
        'ѕ' => "s",
        'һ' => "h",
        'ԁ' => "d",
        'ԛ' => "q",
        'ԝ' => "w",
        'ӏ' => "l",
        'к' => "k",
        'п' => "n",
        'г' => "r",
        'ь' => "b",
        'ү' => "y",
        'ҽ' => "e",
        'ѵ' => "v",
        'з' => "3",
        'ɡ' => "g",
        // Greek
        'α' => "a",
        'γ' => "y",
        'η' => "n",
        'ι' => "i",
        'κ' => "k",
        'ν' => "v",
        'ο' => "o",
        'ρ' => "p",
        'σ' => "o",
        'υ' => "u",
        'χ' => "x",
        'ω' => "w",
        'ϲ' => "c",
        'ϳ' => "j",
        'ϱ' => "p",
        'τ' => "t",
        // Armenian
        'օ' => "o",
        'ս' => "u",
        'հ' => "h",
        'ո' => "n",
        'ց' => "g",
        'զ' => "q",
        // Latin extensions and small capitals
        'ı' => "i",
        'ȷ' => "j",
        'ɑ' => "a",
        'ɩ' => "i",
        'ɪ' => "i",
        'ʏ' => "y",
        'ł' => "l",
        'ø' => "o",
        'đ' => "d",
        'ħ' => "h",
        'ƅ' => "b",
        'ɵ' => "o",
        'ᴄ' => "c",
        'ᴏ' => "o",
        'ᴠ' => "v",
        'ᴡ' => "w",
        'ᴢ' => "z",
        'ß' => "b",
        _ => return None,
    })
}

fn is_combining_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// The skeleton of a Unicode host: NFD, combining marks removed, each
/// character replaced by its prototype.
pub(crate) fn skeleton(unicode: &str) -> String {
    let nfd = DecomposingNormalizerBorrowed::new_nfd().normalize(unicode);
    let mut out = String::with_capacity(nfd.len());
    for c in nfd.chars().filter(|c| !is_combining_mark(*c)) {
        match prototype(c) {
            Some(p) => out.push_str(p),
            None => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// True when a label is written entirely in one non-Latin script using only
/// letters that look Latin (`аррӏе`), under an ASCII top-level label: a
/// whole-script look-alike of a Latin name.
pub(crate) fn is_whole_script_lookalike(unicode: &str) -> bool {
    if unicode.is_ascii() {
        return false;
    }
    let tld_ascii = unicode.rsplit('.').next().is_some_and(|t| t.is_ascii());
    if !tld_ascii {
        return false;
    }
    let swe = ScriptWithExtensions::new();
    let nfd = DecomposingNormalizerBorrowed::new_nfd();
    unicode.split('.').any(|label| {
        if label.is_ascii() {
            return false;
        }
        let label = nfd.normalize(label);
        let letters: Vec<char> = label
            .chars()
            .filter(|c| !is_combining_mark(*c) && !c.is_ascii_digit() && *c != '-')
            .collect();
        !letters.is_empty()
            && letters.iter().all(|c| {
                let s = swe.get_script_val(*c);
                matches!(s, Script::Cyrillic | Script::Greek | Script::Armenian)
                    && prototype(*c).is_some()
            })
    })
}
