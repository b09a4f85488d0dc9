//! Phone-number validation with libphonenumber's metadata (`phonenumber`
//! crate): a candidate found by a digit-run or context rule is a phone
//! number when it is valid for its own country code (`+CC …`, `00CC …`) or,
//! written nationally, for one of the configured default regions.
//!
//! The parser only ever sees a canonical string it cannot misread: `+` and
//! digits, or digits alone, at most 17 of them. Any panic inside the
//! library is caught and counts as a phone number (fail closed: mask).

use phonenumber::country::Id;

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

fn valid_in(region: Option<Id>, text: &str) -> bool {
    std::panic::catch_unwind(|| {
        phonenumber::parse(region, text).is_ok_and(|n| phonenumber::is_valid(&n))
    })
    .unwrap_or(true)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(v: &str) -> bool {
        valid(v.as_bytes(), &Regions::default())
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

    proptest! {
        #[test]
        fn never_panics(s in "[0-9 +().\\-x#]{0,40}") {
            let _ = valid(s.as_bytes(), &Regions::default());
        }
    }
}
