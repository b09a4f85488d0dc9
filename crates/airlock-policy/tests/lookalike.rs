//! Look-alike hosts (issue 18): each class of spoof a browser refuses to
//! show in Unicode is built here from the Unicode data itself (identifier
//! status, confusable prototypes, scripts, general categories), not from a
//! list of known attacks, and must be refused with its reason; correct
//! single-script IDN hosts in many scripts must pass. Also replays the
//! shared malformed-URL table (`data/malformed_urls.tsv`).

use airlock_policy::{EgressPolicy, Mode, PolicySpec, RuleSpec, parse_host, parse_url};
use airlock_types::{Outcome, Reason};
use unicode_security::GeneralSecurityProfile;

fn check(p: &EgressPolicy, host: &str) -> Result<(), Reason> {
    match parse_host(host) {
        Ok(h) => p.check_host(&h),
        Err(e) => Err(e.reason()),
    }
}

fn skel(c: char) -> String {
    unicode_security::skeleton(c.encode_utf8(&mut [0; 4])).collect()
}

/// Characters that survive UTS-46 unchanged in a label (so the host really
/// carries them), in `range`.
fn surviving(range: std::ops::RangeInclusive<u32>) -> Vec<char> {
    range
        .filter_map(char::from_u32)
        .filter(|c| !c.is_ascii())
        .filter(|c| {
            let host = format!("ab{c}cd.com");
            match parse_host(&host) {
                Ok(airlock_policy::Host::Domain(d)) => {
                    let (u, r) = idna::domain_to_unicode(&d);
                    r.is_ok() && u == host
                }
                _ => false,
            }
        })
        .collect()
}

fn script(c: char) -> unicode_script::Script {
    unicode_script::UnicodeScript::script(&c)
}

#[test]
fn characters_not_allowed_in_identifiers_are_refused() {
    let p = EgressPolicy::read_public();
    let mut n = 0;
    for c in surviving(0x00A0..=0x33FF)
        .into_iter()
        .chain(surviving(0x1F300..=0x1F64F))
    {
        if c.identifier_allowed() {
            continue;
        }
        n += 1;
        let host = format!("ab{c}cd.com");
        assert_eq!(
            check(&p, &host),
            Err(Reason::IdnDisallowedCharacter),
            "{host} U+{:04X}",
            c as u32
        );
    }
    assert!(n > 500, "only {n} restricted characters tried");
}

#[test]
fn ipa_letters_small_capitals_kra_and_script_g_are_refused() {
    let p = EgressPolicy::read_public();
    for c in surviving(0x0250..=0x02AF)
        .into_iter()
        .chain(surviving(0x1D00..=0x1D2B))
        .chain(['ĸ', 'ɡ'])
    {
        if c.identifier_allowed() {
            continue; // letters of living orthographies (ɓ, ɛ, ə): see the skeleton tests
        }
        let host = format!("goo{c}le.com");
        assert!(check(&p, &host).is_err(), "{host} U+{:04X}", c as u32);
    }
}

#[test]
fn punctuation_look_alikes_inside_a_label_are_refused() {
    let p = EgressPolicy::read_public();
    let mut n = 0;
    for c in surviving(0x00A0..=0x2FFF)
        .into_iter()
        .chain(surviving(0xA700..=0xA7FF))
    {
        let s = skel(c);
        let punct = s
            .chars()
            .any(|p| p.is_ascii() && !p.is_ascii_alphanumeric());
        if !punct || matches!(script(c), unicode_script::Script::Han) {
            continue;
        }
        n += 1;
        let host = format!("paypal{c}login.com");
        assert!(
            matches!(
                check(&p, &host),
                Err(Reason::IdnDisallowedCharacter | Reason::MixedScriptHost)
            ),
            "{host} U+{:04X}: {:?}",
            c as u32,
            check(&p, &host)
        );
    }
    assert!(n > 20, "only {n} punctuation look-alikes tried");
    // Modifier letters that read as an apostrophe or a dot.
    for c in surviving(0x02B0..=0x02FF) {
        let host = format!("paypal{c}s.com");
        assert!(check(&p, &host).is_err(), "{host}");
    }
    // The middle dot only in Catalan `l·l`.
    assert_eq!(check(&p, "col·legi.cat"), Ok(()));
    assert_eq!(
        check(&p, "pay·pal.com"),
        Err(Reason::IdnDisallowedCharacter)
    );
}

#[test]
fn combining_marks_that_form_no_letter_are_refused() {
    let p = EgressPolicy::read_public();
    use unicode_normalization::UnicodeNormalization;
    for base in ['i', 'j', 'l', 'ı', 'ȷ', 'o', 'a'] {
        for m in (0x0300..=0x036F).filter_map(char::from_u32) {
            let s: String = [base, m].iter().collect();
            if s.nfc().count() == 1 {
                continue; // a precomposed letter: é, ö, ...
            }
            let host = format!("w{s}ki.org");
            if parse_host(&host) == parse_host(&format!("w{base}ki.org")) {
                continue; // UTS-46 drops the mark (default ignorable)
            }
            assert!(
                check(&p, &host).is_err(),
                "{host} U+{:04X} after {base}",
                m as u32
            );
        }
    }
}

/// Letters of `script` whose skeleton is one ASCII letter or digit.
fn latin_look_alikes(script_range: std::ops::RangeInclusive<u32>) -> Vec<(char, char)> {
    surviving(script_range)
        .into_iter()
        .filter(|c| c.identifier_allowed())
        .filter_map(|c| {
            let s = skel(c).to_lowercase();
            let mut it = s.chars();
            match (it.next(), it.next()) {
                (Some(a), None) if a.is_ascii_alphanumeric() => Some((c, a)),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn cyrillic_greek_armenian_georgian_look_alikes_mixed_with_latin_are_refused() {
    let p = EgressPolicy::read_public();
    let mut n = 0;
    for range in [
        0x0370..=0x03FF,
        0x0400..=0x04FF,
        0x0530..=0x058F,
        0x10D0..=0x10FF,
    ] {
        for (c, _) in latin_look_alikes(range) {
            n += 1;
            let host = format!("secure{c}bank.com");
            assert_eq!(check(&p, &host), Err(Reason::MixedScriptHost), "{host}");
        }
    }
    assert!(n > 20, "only {n} look-alike letters");
}

#[test]
fn whole_script_look_alikes_are_refused_outside_their_script_tld() {
    let p = EgressPolicy::read_public();
    for (range, own_tld) in [
        (0x0400..=0x04FF, "рф"),
        (0x0370..=0x03FF, "gr"),
        (0x0530..=0x058F, "am"),
    ] {
        let letters: Vec<(char, char)> = latin_look_alikes(range);
        assert!(letters.len() >= 3, "{letters:?}");
        for w in letters.windows(3) {
            let word: String = w.iter().map(|(c, _)| *c).collect();
            let host = format!("{word}.com");
            assert_eq!(
                check(&p, &host),
                Err(Reason::IdnWholeScriptConfusable),
                "{host}"
            );
            assert_eq!(
                check(&p, &format!("{word}.{own_tld}")),
                Ok(()),
                "{word}.{own_tld}"
            );
        }
    }
}

#[test]
fn latin_letters_with_strokes_hooks_or_dots_that_spell_a_well_known_domain_are_refused() {
    let p = EgressPolicy::read_public();
    let mut n = 0;
    for c in surviving(0x00C0..=0x024F) {
        if !c.identifier_allowed() {
            continue;
        }
        let mut lower = c.to_lowercase();
        if lower.next() != Some(c) {
            continue;
        }
        for domain in ["google.com", "github.com", "paypal.com", "wikipedia.org"] {
            let Some(ascii) = domain.chars().find(|a| {
                let s = airlock_types_free_skeleton(c);
                s.len() == 1 && s.starts_with(*a)
            }) else {
                continue;
            };
            let host = domain.replacen(ascii, &c.to_string(), 1);
            n += 1;
            assert_eq!(check(&p, &host), Err(Reason::IdnConfusable), "{host}");
        }
    }
    assert!(n > 40, "only {n} look-alikes of well-known domains");
    // Deviation characters: `ß` read as `ss`.
    assert_eq!(check(&p, "ißuu.com"), Err(Reason::IdnConfusable));
    assert_eq!(check(&p, "aliexpreß.com"), Err(Reason::IdnConfusable));
}

/// Skeleton without marks, lowercased (what the policy compares).
fn airlock_types_free_skeleton(c: char) -> String {
    use unicode_normalization::UnicodeNormalization;
    let s: String = c
        .to_string()
        .nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .collect();
    let sk: String = unicode_security::skeleton(&s).collect();
    sk.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

#[test]
fn digits_from_mixed_numbering_systems_and_digit_look_alikes_are_refused() {
    let p = EgressPolicy::read_public();
    // Every decimal numbering system UTS-46 keeps, mixed with ASCII digits.
    let mut n = 0;
    for zero in surviving(0x0660..=0x1C50).into_iter().filter(|c| {
        unicode_normalization::char::is_public_assigned(*c)
            && c.is_numeric()
            && char::from_u32(*c as u32 + 9).is_some_and(char::is_numeric)
            && !char::from_u32(*c as u32 - 1).is_some_and(char::is_numeric)
    }) {
        n += 1;
        let host = format!("shop1{zero}.com");
        assert!(
            matches!(
                check(&p, &host),
                Err(Reason::IdnMixedNumbers
                    | Reason::IdnDisallowedCharacter
                    | Reason::MixedScriptHost
                    | Reason::InvalidHost)
            ),
            "{host}: {:?}",
            check(&p, &host)
        );
    }
    assert!(n > 5, "only {n} numbering systems");
    assert_eq!(check(&p, "a1\u{0967}.com"), Err(Reason::IdnMixedNumbers));
    assert_eq!(
        check(&p, "\u{0967}\u{09E8}.com"),
        Err(Reason::IdnMixedNumbers)
    );
    assert_eq!(check(&p, "\u{0967}\u{0968}.com"), Ok(()));
}

#[test]
fn cjk_characters_that_look_like_a_slash_dash_or_one_next_to_latin_are_refused() {
    let p = EgressPolicy::read_public();
    let mut n = 0;
    for c in surviving(0x3040..=0x30FF)
        .into_iter()
        .chain(surviving(0x4E00..=0x4EFF))
    {
        let s = skel(c);
        let lookalike = s
            .chars()
            .any(|p| (p.is_ascii() && !p.is_ascii_alphabetic()) || p == 'l')
            || s == "\u{30FC}";
        if !lookalike {
            continue;
        }
        n += 1;
        let host = format!("google{c}com.evil.com");
        assert!(
            matches!(
                check(&p, &host),
                Err(Reason::IdnDangerousPattern
                    | Reason::MixedScriptHost
                    | Reason::IdnDisallowedCharacter)
            ),
            "{host} U+{:04X}: {:?}",
            c as u32,
            check(&p, &host)
        );
    }
    assert!(n >= 4, "only {n} CJK look-alikes");
    // Japanese words with the long-vowel mark stay fine.
    assert_eq!(check(&p, "ソニー.jp"), Ok(()));
    assert_eq!(check(&p, "ノート.jp"), Ok(()));
}

#[test]
fn a_host_whose_skeleton_equals_a_policy_host_is_refused() {
    let p = EgressPolicy::compile(PolicySpec {
        mode: Mode::ReadPublic,
        rules: vec![RuleSpec::for_hosts(
            &["internal-api.corp.example", "*.build.example"],
            Outcome::Allow,
        )],
        ..PolicySpec::default()
    })
    .expect("compiles");
    assert_eq!(
        check(&p, "ïnternal-api.corp.example"),
        Err(Reason::ConfusableHost)
    );
    assert_eq!(
        check(&p, "internal-apí.corp.example"),
        Err(Reason::ConfusableHost)
    );
    assert_eq!(check(&p, "x.bưild.example"), Err(Reason::ConfusableHost));
    assert_eq!(check(&p, "internal-api.corp.example"), Ok(()));
    assert_eq!(check(&p, "x.build.example"), Ok(()));
    // A Unicode host the policy names itself is trusted as named.
    let named = EgressPolicy::compile(PolicySpec {
        rules: vec![RuleSpec::for_hosts(&["gïthub.com"], Outcome::Allow)],
        ..PolicySpec::default()
    })
    .expect("compiles");
    assert_eq!(check(&named, "gïthub.com"), Ok(()));
    assert_eq!(check(&named, "github.com"), Err(Reason::ConfusableHost));
}

/// Over-blocking: correct single-script IDN hosts in many scripts pass.
#[test]
fn correct_single_script_idn_hosts_pass() {
    let p = EgressPolicy::read_public();
    let hosts = [
        // Greek
        "παράδειγμα.δοκιμή",
        "ελλάδα.gr",
        "πανεπιστήμιο.gr",
        // Cyrillic on Cyrillic TLDs
        "пример.рф",
        "президент.рф",
        "яндекс.рф",
        "сайт.укр",
        "пошта.укр",
        "компания.рус",
        "банк.ru",
        // Japanese
        "例え.テスト",
        "日本語.jp",
        "ドメイン名例.jp",
        "ソニー.jp",
        "ウィキペディア.jp",
        "東京大学.jp",
        // Chinese
        "例子.测试",
        "中国互联网络信息中心.中国",
        "政府.香港",
        "台灣.tw",
        // Korean
        "실례.테스트",
        "한국인터넷진흥원.한국",
        "네이버.com",
        // Arabic, Persian
        "مثال.إختبار",
        "موقع.وزارة-الاتصالات.مصر",
        "ایران.ایران",
        // Hebrew
        "בדיקה.ישראל",
        "דוגמה.com",
        // Thai, Hindi, Tamil
        "ตัวอย่าง.ไทย",
        "ทดสอบ.com",
        "उदाहरण.परीक्षा",
        "भारत.भारत",
        "இந்தியா.இந்தியா",
        // German
        "bücher.de",
        "münchen.de",
        "straße.de",
        "größe.de",
        "müller-lüdenscheidt.de",
        // French
        "café.fr",
        "élève.fr",
        "hôtel-de-ville.fr",
        "noël.fr",
        // Turkish
        "türkçe.com.tr",
        "ığdır.com.tr",
        "şişli.com.tr",
        // Others in Latin
        "żółw.pl",
        "česko.cz",
        "dinamarqués.es",
        "köln.de",
        "tiếngviệt.vn",
    ];
    let refused: Vec<String> = hosts
        .iter()
        .filter_map(|h| check(&p, h).err().map(|r| format!("{h}: {r}")))
        .collect();
    assert!(
        refused.is_empty(),
        "{} of {} correct IDN hosts refused:\n{}",
        refused.len(),
        hosts.len(),
        refused.join("\n")
    );
}

/// The shared malformed-URL table, as the policy crate reads it.
pub fn malformed_table() -> Vec<(String, String)> {
    include_str!("data/malformed_urls.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (u, r) = l.split_once('\t').expect("url<TAB>reason");
            (u.replace("\\s", " "), r.to_owned())
        })
        .collect()
}

#[test]
fn malformed_urls_are_refused_with_their_reason() {
    let table = malformed_table();
    assert!(table.len() >= 20);
    for (url, reason) in table {
        let got = parse_url(&url).map(|_| ()).map_err(|e| e.reason().code());
        assert_eq!(got, Err(reason.as_str()), "{url}");
    }
}
