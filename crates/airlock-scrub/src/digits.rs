//! Run shapes for the digit-anchored PII rules: cheap necessary conditions
//! on one run of digits and separators (as the engine's anchor pass cuts
//! them) that every match of a rule's regex satisfies.
//!
//! A shape is attached to a rule only when the rule's pattern is exactly the
//! built-in pattern it was derived from ([`Shape::for_pattern`]), like a
//! hand scanner. The engine uses it two ways, both exact:
//! - a component (merged windows) of the rule that meets no run with the
//!   shape holds no match, so its search is skipped (any rule);
//! - for a rule whose `min_digits`/`run_needs` filter is itself implied by
//!   its regex ([`Shape::implied_filter`]), windows are pushed only for runs
//!   that also have the shape: every possible match still lies in a window.
//!
//! The tests check, for every match the regex can report over any range of
//! adversarial inputs, that the run holding its secret has the shape (and
//! passes the implied filter).

/// `\w` with Unicode off.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The byte at `i`, if any (`None` also for `i` before the haystack).
fn at(hay: &[u8], i: Option<usize>) -> Option<u8> {
    i.and_then(|i| hay.get(i).copied())
}

fn digit_at(hay: &[u8], i: usize) -> bool {
    hay.get(i).is_some_and(u8::is_ascii_digit)
}

/// Whether the byte before `i` allows a match's secret to start at `i` for
/// the prefix `(?:^|[^\w<extra>])`: the start of the haystack, or a byte
/// that is neither a word byte nor in `extra`.
fn prefix_ok(hay: &[u8], i: usize, extra: &[u8]) -> bool {
    at(hay, i.checked_sub(1)).is_none_or(|b| !is_word(b) && !extra.contains(&b))
}

/// What the anchor pass counts while it walks a run, so that most runs are
/// ruled out without looking at their bytes again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RunStats {
    /// ASCII digits in the run.
    pub digits: usize,
    /// The run holds a '+'.
    pub plus: bool,
    /// The run holds a '-' or a '/'.
    pub dash_or_slash: bool,
    /// The most digits in a row in the run.
    pub longest_group: usize,
    /// Some group of digits (a digit after a non-digit, or the run's first)
    /// starts with '0'.
    pub zero_led: bool,
    /// The run holds a '('.
    pub paren: bool,
}

impl RunStats {
    /// The stats of `run`, counted the plain way (the reference the anchor
    /// pass's inline counting is tested against).
    #[cfg(test)]
    pub(crate) fn of(run: &[u8]) -> RunStats {
        RunStats {
            digits: run.iter().filter(|b| b.is_ascii_digit()).count(),
            plus: run.contains(&b'+'),
            dash_or_slash: run.iter().any(|&b| b == b'-' || b == b'/'),
            longest_group: run
                .split(|b| !b.is_ascii_digit())
                .map(<[u8]>::len)
                .max()
                .unwrap_or(0),
            zero_led: run
                .split(|b| !b.is_ascii_digit())
                .any(|g| g.first() == Some(&b'0')),
            paren: run.contains(&b'('),
        }
    }
}

/// A digit-anchored rule with a known run shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    PhoneInternational,
    PhoneNanp,
    PhoneUk,
    PhoneFr,
    PhoneDe,
    UsSsn,
    PaymentCard,
    Iban,
    UkPostcode,
    UsSsnSpaced,
    PhoneNational,
    PhoneExtension,
}

/// Each shape with the built-in pattern it was derived from (`pii.toml`).
const PATTERNS: [(Shape, &str); 12] = [
    (
        Shape::PhoneInternational,
        r#"(?:^|[^\w+])(?P<secret>\+[1-9]\d{0,2}[ .\-]?(?:\(\d{1,4}\)[ .\-]?)?\d{1,4}(?:[ .\-]?\d{1,5}){1,5})(?:[^\w]|$)"#,
    ),
    (
        Shape::PhoneNanp,
        r#"(?:^|[^\w+.\-/])(?P<secret>(?:1[ .\-])?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .\-])[2-9]\d{2}[ .\-]\d{4})(?:[^\w.\-/]|\.(?:\s|$)|$)"#,
    ),
    (
        Shape::PhoneUk,
        r#"(?:^|[^\w+.\-/])(?P<secret>0(?:7\d{3} ?\d{6}|[12]\d{2,3} \d{3,4} ?\d{3,4}|20 \d{4} \d{4}))(?:[^\w.\-/]|$)"#,
    ),
    (
        Shape::PhoneFr,
        r#"(?:^|[^\w+.\-/])(?P<secret>0[1-9](?:[ .]\d{2}){4})(?:[^\w.\-/]|\.(?:\s|$)|$)"#,
    ),
    (
        Shape::PhoneDe,
        r#"(?:^|[^\w+.\-/])(?P<secret>0(?:1[5-7]\d|[2-9]\d{1,3}) ?[/\-] ?\d{3,8}(?:[ \-]\d{1,5})?)(?:[^\w.\-/]|$)"#,
    ),
    (
        Shape::UsSsn,
        r#"(?:^|[^\w\-.])(?P<secret>\d{3}-\d{2}-\d{4})(?:[^\w\-]|$)"#,
    ),
    (
        Shape::PaymentCard,
        r#"(?:^|[^\w\-.])(?P<secret>\d{4}(?:[ \-]?\d{2,6}){2,4}|\d{12,19})(?:[^\w\-]|\.(?:[^\w]|$)|$)"#,
    ),
    (
        Shape::Iban,
        r#"\b(?P<secret>[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?)\b"#,
    ),
    (
        Shape::UkPostcode,
        r#"(?:^|[^\w\-])(?P<secret>(?:(?:AB|AL|BA|BB|BD|BF|BH|BL|BN|BR|BS|BT|BX|CA|CB|CF|CH|CM|CO|CR|CT|CV|CW|DA|DD|DE|DG|DH|DL|DN|DT|DY|EC|EH|EN|EX|FK|FY|GL|GU|GY|HA|HD|HG|HP|HR|HS|HU|HX|IG|IM|IP|IV|JE|KA|KT|KW|KY|LA|LD|LE|LL|LN|LS|LU|ME|MK|ML|NE|NG|NN|NP|NR|NW|OL|OX|PA|PE|PH|PL|PO|PR|RG|RH|RM|SA|SE|SG|SK|SL|SM|SN|SO|SP|SR|SS|ST|SW|SY|TA|TD|TF|TN|TQ|TR|TS|TW|UB|WA|WC|WD|WF|WN|WR|WS|WV|YO|ZE|[BEGLMNSW])\d[A-Z\d]?|GIR) \d[ABD-HJLNP-UW-Z]{2})(?:[^\w\-]|$)"#,
    ),
    (
        Shape::UsSsnSpaced,
        r#"(?:^|[^\w\-.])(?P<secret>\d{3} \d{2} \d{4}|\d{3}\.\d{2}\.\d{4})(?:[^\w\-.]|\.(?:\s|$)|$)"#,
    ),
    (
        Shape::PhoneNational,
        r#"(?:^|[^\w+.\-/:])(?P<secret>(?:\(0?\d{2,5}\)[ .\-]?|0\d{1,4}[ .\-/])\d{2,8}(?:[ .\-]\d{2,5}){0,3})(?:[^\w.\-/:]|\.(?:\s|$)|$)"#,
    ),
    (
        Shape::PhoneExtension,
        r#"(?:^|[^\w+.\-/])(?P<secret>(?:\+|00)?\(?\d[\d ().\-]{6,20}\d[ \t]{0,2}(?i:x|ext\.?|extension)[ \t]{0,2}\d{1,6})\b"#,
    ),
];

impl Shape {
    /// The shape derived from exactly this pattern, if any.
    pub(crate) fn for_pattern(pattern: &str) -> Option<Shape> {
        PATTERNS
            .iter()
            .find(|(_, p)| *p == pattern)
            .map(|&(s, _)| s)
    }

    /// The `(min_digits, run_needs)` filter every match of the pattern
    /// passes (tested), when there is one: at least this many digits in
    /// the run, and the byte in it. A rule whose declared filter is no
    /// stricter than this may have its windows filtered by the shape.
    pub(crate) fn implied_filter(self) -> Option<(usize, Option<u8>)> {
        match self {
            Shape::PhoneNanp | Shape::PhoneUk | Shape::PhoneFr => Some((10, None)),
            Shape::UsSsn => Some((9, Some(b'-'))),
            Shape::UsSsnSpaced => Some((9, None)),
            // A match can have fewer digits than the declared filter asks
            // (3, 6, 8 and 2): their windows stay as declared.
            // A postcode's inward digit can be a run of its own (`SW1A 1AA`).
            Shape::PhoneInternational
            | Shape::PhoneDe
            | Shape::PaymentCard
            | Shape::Iban
            | Shape::UkPostcode
            | Shape::PhoneNational
            | Shape::PhoneExtension => None,
        }
    }

    /// The fewest digits a run holding a secret has: `+[1-9]`, `\d{1,4}`
    /// and `\d{1,5}` (3); `0`, two more and `\d{3,8}` (6); `\d{4}` and two
    /// `\d{2,6}` (8); `\d{2}` (2); and the implied filters.
    pub(crate) fn min_run_digits(self) -> usize {
        match self {
            Shape::PhoneInternational => 3,
            Shape::PhoneDe => 6,
            Shape::PaymentCard => 8,
            Shape::Iban => 2,
            Shape::PhoneNanp | Shape::PhoneUk | Shape::PhoneFr => 10,
            Shape::UsSsn => 9,
            Shape::UkPostcode => 1,
            // `\d{3} \d{2} \d{4}`; `\(\d{2}\)\d{2}` or `0\d \d{2}`; the
            // first and last digit of `\d[\d ().\-]{6,20}\d`.
            Shape::UsSsnSpaced => 9,
            Shape::PhoneNational => 4,
            Shape::PhoneExtension => 2,
        }
    }

    /// Whether the run `hay[start..end]` (digits and separators, cut as the
    /// anchor pass cuts runs) with stats `st` can hold the secret of a
    /// match. `false` means no match of the pattern has its secret inside
    /// this run.
    /// The checks on the stats (and for an IBAN, its one byte check) are
    /// inlined into the anchor pass: most runs stop there.
    #[inline]
    pub(crate) fn fits(self, hay: &[u8], start: usize, end: usize, st: RunStats) -> bool {
        st.digits >= self.min_run_digits()
            && match self {
                // The secret starts with '+'.
                Shape::PhoneInternational => st.plus,
                // The secret holds '/' or '-'.
                // A German, UK or French secret starts with '0' at a group
                // start.
                Shape::PhoneDe => st.dash_or_slash && st.zero_led,
                // And it ends in `\d{4}`.
                Shape::UsSsn => st.dash_or_slash && st.longest_group >= 4,
                // `\d{4}` (nanp, card), `07\d{3}`, `0[12]\d{2,3}`, `020 \d{4}`.
                Shape::PhoneNanp | Shape::PaymentCard => st.longest_group >= 4,
                Shape::PhoneUk => st.longest_group >= 4 && st.zero_led,
                Shape::Iban => iban_fits(hay, start),
                Shape::PhoneFr => st.zero_led,
                Shape::UkPostcode => postcode_fits(hay, end),
                Shape::UsSsnSpaced => st.longest_group >= 4,
                // A national secret opens with '(' or a group led by '0'
                // (the byte before a group start inside the run is in it).
                Shape::PhoneNational => st.zero_led || st.paren,
                // The run ends where the extension marker starts.
                Shape::PhoneExtension => {
                    matches!(hay.get(end), Some(b'x' | b'X' | b'e' | b'E' | b'\t'))
                }
            }
            && (matches!(
                self,
                Shape::Iban | Shape::UkPostcode | Shape::PhoneExtension
            ) || self.fits_bytes(hay, start, end))
    }

    /// A necessary condition of [`Shape::fits`] on an anchor-pass run's
    /// digit count and its [`RunFlags`] alone (tested: `fits` implies it
    /// on every run the anchor pass cuts), so that the anchor pass can
    /// select the shapes a run may fit by table lookups and call `fits`
    /// only for those. Monotone in the flags (no negation: a set flag
    /// never turns it false), which the split tables rely on.
    pub(crate) fn may_fit(self, digits: usize, f: RunFlags) -> bool {
        let has = |bit: u16| f.0 & bit != 0;
        digits >= self.min_run_digits()
            && match self {
                Shape::PhoneInternational => has(RunFlags::PLUS),
                // `de_at`: a 0-led group of 3 to 5 digits.
                Shape::PhoneDe => {
                    has(RunFlags::DASH_OR_SLASH)
                        && has(RunFlags::ZERO_LED)
                        && has(RunFlags::ZERO_LED2)
                }
                // `ssn_at`: `\d{3}-\d{2}-\d{4}` from a group start.
                Shape::UsSsn => {
                    has(RunFlags::DASH_OR_SLASH)
                        && has(RunFlags::GROUP4)
                        && has(RunFlags::GROUP3)
                        && has(RunFlags::GROUP2)
                }
                // `nanp_at`: `[2-9]\d{2}[ .\-]` from a group start.
                Shape::PhoneNanp => has(RunFlags::GROUP4) && has(RunFlags::GROUP3),
                // `card_fits`: a start and an end.
                Shape::PaymentCard => {
                    has(RunFlags::GROUP4) && has(RunFlags::CARD_START) && has(RunFlags::DIGIT_END)
                }
                // `ssn_spaced_at`: `\d{3}[ .]\d{2}[ .]\d{4}` from a group start.
                Shape::UsSsnSpaced => {
                    has(RunFlags::GROUP4) && has(RunFlags::GROUP3) && has(RunFlags::GROUP2)
                }
                // `uk_at`: `0[127]` at a group start.
                Shape::PhoneUk => {
                    has(RunFlags::GROUP4) && has(RunFlags::ZERO_LED) && has(RunFlags::ZERO_LED2)
                }
                // `fr_at`: `0[1-9][ .]` from a group start.
                Shape::PhoneFr => {
                    has(RunFlags::ZERO_LED) && has(RunFlags::ZERO_LED2) && has(RunFlags::GROUP2)
                }
                // `national_at`: a `(` before a group start (inside the
                // run: `(` is a separator, so a run never starts right
                // after one unless it holds four separators before its
                // first digit), or a 0-led group of 2 to 5 digits.
                Shape::PhoneNational => has(RunFlags::ZERO_LED2) || has(RunFlags::PAREN),
                // `iban_fits`: an upper-case letter right before the run.
                Shape::Iban => has(RunFlags::UPPER_BEFORE),
                // `postcode_fits`: an inward-code letter right after it.
                Shape::UkPostcode => has(RunFlags::UPPER_AFTER),
                Shape::PhoneExtension => has(RunFlags::EXT_AFTER),
            }
    }

    /// A cheap necessary condition of [`Shape::fits`] on the run
    /// `hay[start..end]`, for the shapes that fit runs of few digits: an
    /// IBAN's whole check (at the run's start), a '+' for an international
    /// number.
    #[inline]
    pub(crate) fn fits_start(self, hay: &[u8], start: usize, end: usize) -> bool {
        match self {
            Shape::Iban => iban_fits(hay, start),
            Shape::UkPostcode => postcode_fits(hay, end),
            Shape::PhoneInternational => hay.get(start..end).is_some_and(|r| r.contains(&b'+')),
            // Its two-digit minimum lets nearly every run through (the
            // digit pieces of hex ids): the marker after the run does not.
            Shape::PhoneExtension => {
                matches!(hay.get(end), Some(b'x' | b'X' | b'e' | b'E' | b'\t'))
            }
            _ => true,
        }
    }

    /// The part of [`Shape::fits`] that walks the run's bytes.
    #[inline(never)]
    fn fits_bytes(self, hay: &[u8], start: usize, end: usize) -> bool {
        let end = end.min(hay.len());
        match self {
            // '+' right before a group's first digit.
            Shape::PhoneInternational => any_group_start(hay, start, end, |i| {
                i.checked_sub(1).is_some_and(|p| intl_at(hay, p))
            }),
            Shape::PhoneNanp => any_group_start(hay, start, end, |i| nanp_at(hay, i)),
            Shape::PhoneUk => any_group_start(hay, start, end, |i| uk_at(hay, i)),
            Shape::PhoneFr => any_group_start(hay, start, end, |i| fr_at(hay, i)),
            Shape::PhoneDe => any_group_start(hay, start, end, |i| de_at(hay, i)),
            Shape::UsSsn => any_group_start(hay, start, end, |i| ssn_at(hay, i)),
            Shape::PaymentCard => card_fits(hay, start, end),
            Shape::Iban => iban_fits(hay, start),
            Shape::UkPostcode => postcode_fits(hay, end),
            Shape::UsSsnSpaced => any_group_start(hay, start, end, |i| ssn_spaced_at(hay, i)),
            Shape::PhoneNational => any_group_start(hay, start, end, |i| national_at(hay, i)),
            Shape::PhoneExtension => {
                matches!(hay.get(end), Some(b'x' | b'X' | b'e' | b'E' | b'\t'))
            }
        }
    }
}

/// What [`Shape::may_fit`] reads of a run besides its digit count, as
/// bits: the low byte from its [`RunStats`] and the bytes around it
/// ([`RunFlags::of`], cheap), the high byte from one walk over its digit
/// groups ([`RunFlags::groups`], done only when a shape needs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunFlags(pub u16);

impl RunFlags {
    pub const PLUS: u16 = 1;
    pub const DASH_OR_SLASH: u16 = 1 << 1;
    pub const ZERO_LED: u16 = 1 << 2;
    pub const PAREN: u16 = 1 << 3;
    /// `longest_group >= 4`.
    pub const GROUP4: u16 = 1 << 4;
    /// The byte before the run is an ASCII upper-case letter.
    pub const UPPER_BEFORE: u16 = 1 << 5;
    /// The byte after the run is an ASCII upper-case letter.
    pub const UPPER_AFTER: u16 = 1 << 6;
    /// The byte after the run can open an extension marker (`x`, `e`, tab).
    pub const EXT_AFTER: u16 = 1 << 7;
    /// A group of at least two digits starts with '0'.
    pub const ZERO_LED2: u16 = 1 << 8;
    /// A group of exactly two digits.
    pub const GROUP2: u16 = 1 << 9;
    /// A group of exactly three digits.
    pub const GROUP3: u16 = 1 << 10;
    /// A group of at least four digits after `^` or `[^\w\-.]` (a card's
    /// start).
    pub const CARD_START: u16 = 1 << 11;
    /// A digit followed by the end or a byte other than a word byte and
    /// '-' (a card's end).
    pub const DIGIT_END: u16 = 1 << 12;

    /// The low flags of the run `hay[start..end]` with stats `st`.
    #[inline]
    pub(crate) fn of(hay: &[u8], start: usize, end: usize, st: RunStats) -> RunFlags {
        let before = start.checked_sub(1).and_then(|j| hay.get(j)).copied();
        let after = hay.get(end).copied();
        RunFlags(
            u16::from(st.plus)
                | u16::from(st.dash_or_slash) << 1
                | u16::from(st.zero_led) << 2
                | u16::from(st.paren) << 3
                | u16::from(st.longest_group >= 4) << 4
                | u16::from(before.is_some_and(|b| b.is_ascii_uppercase())) << 5
                | u16::from(after.is_some_and(|b| b.is_ascii_uppercase())) << 6
                | u16::from(matches!(after, Some(b'x' | b'X' | b'e' | b'E' | b'\t'))) << 7,
        )
    }

    /// The high flags of the run `hay[start..end]`, from its digit groups
    /// (a run's groups end inside it: the byte after it is no digit).
    pub(crate) fn groups(hay: &[u8], start: usize, end: usize) -> RunFlags {
        let end = end.min(hay.len());
        let mut f = 0u16;
        let mut i = start;
        while i < end {
            if !hay[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let g = i;
            while i < end && hay[i].is_ascii_digit() {
                i += 1;
            }
            let n = i - g;
            if n >= 2 && hay[g] == b'0' {
                f |= RunFlags::ZERO_LED2;
            }
            match n {
                2 => f |= RunFlags::GROUP2,
                3 => f |= RunFlags::GROUP3,
                4.. if prefix_ok(hay, g, b"-.") => f |= RunFlags::CARD_START,
                _ => {}
            }
            if hay.get(i).is_none_or(|&b| !is_word(b) && b != b'-') {
                f |= RunFlags::DIGIT_END;
            }
        }
        RunFlags(f)
    }
}

/// Whether `f` holds at the first digit of some group of digits in
/// `hay[start..end]` (a digit after a non-digit, or at `start`). Every
/// position the per-rule checks below accept is one: each starts with a
/// digit that follows a non-digit (a prefix byte outside `\w`, or a
/// separator of the secret).
fn any_group_start(hay: &[u8], start: usize, end: usize, f: impl Fn(usize) -> bool) -> bool {
    let mut prev_digit = false;
    for (i, b) in hay.iter().enumerate().take(end).skip(start) {
        let digit = b.is_ascii_digit();
        if digit && !prev_digit && f(i) {
            return true;
        }
        prev_digit = digit;
    }
    false
}

/// `+[1-9]` at `i` after `^` or `[^\w+]`.
fn intl_at(hay: &[u8], i: usize) -> bool {
    hay.get(i) == Some(&b'+')
        && matches!(hay.get(i + 1), Some(b'1'..=b'9'))
        && prefix_ok(hay, i, b"+")
}

/// The secret's last part `[2-9]\d{2}[ .\-]\d{4}` at `i`: after ')', ' ',
/// '.' or '-' (what precedes it in the secret), and not followed by a
/// digit or by a byte the suffix `[^\w.\-/]|\.(?:\s|$)|$` refuses besides
/// '.'.
fn nanp_at(hay: &[u8], i: usize) -> bool {
    matches!(hay.get(i), Some(b'2'..=b'9'))
        && matches!(at(hay, i.checked_sub(1)), Some(b')' | b' ' | b'.' | b'-'))
        && digit_at(hay, i + 1)
        && digit_at(hay, i + 2)
        && matches!(hay.get(i + 3), Some(b' ' | b'.' | b'-'))
        && (i + 4..i + 8).all(|j| digit_at(hay, j))
        && hay
            .get(i + 8)
            .is_none_or(|&b| !is_word(b) && b != b'-' && b != b'/')
}

/// A UK secret starting at `i`: '0' then '1', '2' or '7', after `^` or
/// `[^\w+.\-/]`, with at least 10 digits in the digits and single spaces
/// that follow.
fn uk_at(hay: &[u8], i: usize) -> bool {
    if !(hay.get(i) == Some(&b'0')
        && matches!(hay.get(i + 1), Some(b'1' | b'2' | b'7'))
        && prefix_ok(hay, i, b"+.-/"))
    {
        return false;
    }
    let (mut digits, mut prev_digit) = (0, false);
    for &b in hay.get(i..).unwrap_or_default() {
        if b.is_ascii_digit() {
            digits += 1;
            if digits >= 10 {
                return true;
            }
            prev_digit = true;
        } else if b == b' ' && prev_digit {
            prev_digit = false;
        } else {
            break;
        }
    }
    false
}

/// `0[1-9](?:[ .]\d{2}){4}` at `i` after `^` or `[^\w+.\-/]`, not followed
/// by a word byte.
fn fr_at(hay: &[u8], i: usize) -> bool {
    hay.get(i) == Some(&b'0')
        && matches!(hay.get(i + 1), Some(b'1'..=b'9'))
        && (0..4).all(|k| {
            let j = i + 2 + 3 * k;
            matches!(hay.get(j), Some(b' ' | b'.')) && digit_at(hay, j + 1) && digit_at(hay, j + 2)
        })
        && hay.get(i + 14).is_none_or(|&b| !is_word(b))
        && prefix_ok(hay, i, b"+.-/")
}

/// A German secret starting at `i`: '0' after `^` or `[^\w+.\-/]`, then a
/// whole digit group of 2 to 4 digits starting with [1-9], then `[/\-]` or
/// ` [/\-]`.
fn de_at(hay: &[u8], i: usize) -> bool {
    if !(hay.get(i) == Some(&b'0')
        && matches!(hay.get(i + 1), Some(b'1'..=b'9'))
        && prefix_ok(hay, i, b"+.-/"))
    {
        return false;
    }
    let mut j = i + 1;
    while digit_at(hay, j) {
        j += 1;
    }
    (3..=5).contains(&(j - i))
        && match hay.get(j) {
            Some(b'/' | b'-') => true,
            Some(b' ') => matches!(hay.get(j + 1), Some(b'/' | b'-')),
            _ => false,
        }
}

/// `\d{3}-\d{2}-\d{4}` at `i` after `^` or `[^\w\-.]`, followed by the end
/// or a byte that is neither a word byte nor '-'.
fn ssn_at(hay: &[u8], i: usize) -> bool {
    let Some(s) = hay.get(i..i + 11) else {
        return false;
    };
    s.iter().enumerate().all(|(k, &b)| {
        if k == 3 || k == 6 {
            b == b'-'
        } else {
            b.is_ascii_digit()
        }
    }) && hay.get(i + 11).is_none_or(|&b| !is_word(b) && b != b'-')
        && prefix_ok(hay, i, b"-.")
}

/// Whether the run holds a card secret: within one chain of digits joined
/// by single ' ' or '-' (the only bytes of a secret), at least 8 digits
/// (the fewest the pattern allows), a start (4 digits after `^` or
/// `[^\w\-.]`) and, after it, an end (a digit followed by the end or a
/// byte other than a word byte and '-').
fn card_fits(hay: &[u8], start: usize, end: usize) -> bool {
    let (mut digits, mut started, mut ended, mut prev_sep) = (0usize, false, false, false);
    for i in start..end {
        let Some(&b) = hay.get(i) else { break };
        if b.is_ascii_digit() {
            digits += 1;
            if !started
                && !digit_at(hay, i.wrapping_sub(1))
                && (i..i + 4).all(|j| digit_at(hay, j))
                && prefix_ok(hay, i, b"-.")
            {
                started = true;
            }
            if started && hay.get(i + 1).is_none_or(|&n| !is_word(n) && n != b'-') {
                ended = true;
            }
            if ended && digits >= 8 {
                return true;
            }
            prev_sep = false;
        } else if (b == b' ' || b == b'-') && !prev_sep {
            prev_sep = true;
        } else {
            // Another separator, or a second one in a row: a new chain.
            (digits, started, ended, prev_sep) = (0, false, false, b == b' ' || b == b'-');
        }
    }
    false
}

/// `\d{3} \d{2} \d{4}` or `\d{3}\.\d{2}\.\d{4}` at `i` after `^` or
/// `[^\w\-.]`.
fn ssn_spaced_at(hay: &[u8], i: usize) -> bool {
    let Some(s) = hay.get(i..i + 11) else {
        return false;
    };
    matches!(s[3], b' ' | b'.')
        && s[6] == s[3]
        && s.iter()
            .enumerate()
            .all(|(k, b)| k == 3 || k == 6 || b.is_ascii_digit())
        && prefix_ok(hay, i, b"-.")
}

/// A national number's first digit group at `i`: right after a `(` that
/// follows `^` or `[^\w+.\-/:]`, or a `0` after `^` or `[^\w+.\-/:]`
/// opening a group of 2 to 5 digits followed by ' ', '.', '-' or '/'.
fn national_at(hay: &[u8], i: usize) -> bool {
    if i > 0 && hay[i - 1] == b'(' && prefix_ok(hay, i - 1, b"+.-/:") {
        return true;
    }
    if !(hay.get(i) == Some(&b'0') && prefix_ok(hay, i, b"+.-/:")) {
        return false;
    }
    let mut j = i + 1;
    while digit_at(hay, j) {
        j += 1;
    }
    (2..=5).contains(&(j - i)) && matches!(hay.get(j), Some(b' ' | b'.' | b'-' | b'/'))
}

/// Whether the run ending at `end` ends with a postcode's inward code
/// `' ' \d[ABD-HJLNP-UW-Z]{2}` followed by `[^\w\-]` or the end. The
/// inward digit is followed by a letter, so it is the last byte of its run
/// (whatever comes before the space: a digit of the same run, or a letter,
/// which the run then starts after).
fn postcode_fits(hay: &[u8], end: usize) -> bool {
    let inward = |i: usize| {
        hay.get(i)
            .is_some_and(|&b| b.is_ascii_uppercase() && !b"CIKMOV".contains(&b))
    };
    end >= 2
        && hay[end - 2] == b' '
        && digit_at(hay, end - 1)
        && inward(end)
        && inward(end + 1)
        && hay.get(end + 2).is_none_or(|&b| !is_word(b) && b != b'-')
}

/// Whether the run starting at `start` starts an IBAN's check digits:
/// `\b[A-Z]{2}` right before it and a second digit after the first.
fn iban_fits(hay: &[u8], start: usize) -> bool {
    at(hay, start.checked_sub(1)).is_some_and(|b| b.is_ascii_uppercase())
        && start >= 2
        && at(hay, Some(start - 2)).is_some_and(|b| b.is_ascii_uppercase())
        && digit_at(hay, start)
        && digit_at(hay, start + 1)
        && at(hay, start.checked_sub(3)).is_none_or(|b| !is_word(b))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::Category;
    use crate::rules::{BUILTIN_PII, Rule, load};
    use proptest::prelude::*;
    use regex_automata::Input;

    fn pii_rules() -> Vec<Rule> {
        load("pii.toml", BUILTIN_PII, Category::Pii, false).expect("pii rules load")
    }

    /// The rule with this shape among the built-in PII rules.
    fn rule_of(shape: Shape) -> Rule {
        pii_rules()
            .into_iter()
            .find(|r| Shape::for_pattern(&r.pattern) == Some(shape))
            .expect("a built-in rule has this shape")
    }

    /// Byte classes of the anchor pass (`engine::CLASS`): digits, and the
    /// separators that join them into runs.
    fn is_sep(b: u8) -> bool {
        b" -.()/+".contains(&b)
    }

    /// The runs the anchor pass cuts from the whole of `hay`: each digit
    /// not already in a run starts one, reaching back over up to 4
    /// separators and forward over digits and separators.
    fn runs(hay: &[u8]) -> Vec<(usize, usize)> {
        let mut out: Vec<(usize, usize)> = Vec::new();
        let mut i = 0;
        while i < hay.len() {
            if !hay[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let mut start = i;
            while start > 0 && i - start < 4 && is_sep(hay[start - 1]) {
                start -= 1;
            }
            while i < hay.len() && (hay[i].is_ascii_digit() || is_sep(hay[i])) {
                i += 1;
            }
            out.push((start, i));
        }
        out
    }

    /// Every match the rule's regex can report when searched over any
    /// range of `hay` (a component search is a series of such searches):
    /// the secret spans.
    fn possible_secrets(rule: &Rule, hay: &[u8]) -> Vec<(usize, usize)> {
        let g = rule.secret_group.expect("digit rules have a secret group");
        let mut caps = rule.regex().create_captures();
        let mut out = Vec::new();
        for p in 0..=hay.len() {
            for e in p..=hay.len() {
                rule.regex()
                    .search_captures(&Input::new(hay).range(p..e), &mut caps);
                if let Some(s) = caps.get_group(g) {
                    out.push((s.start, s.end));
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The claim the engine relies on, for one shape over one input: every
    /// possible match's secret meets a run that fits the shape (and, when
    /// the shape filters windows, passes the implied filter too).
    fn check_shape(shape: Shape, rule: &Rule, hay: &[u8]) -> Result<(), TestCaseError> {
        let runs = runs(hay);
        for (a, b) in possible_secrets(rule, hay) {
            let ok = runs.iter().any(|&(s, e)| {
                let st = RunStats::of(&hay[s..e]);
                s < b
                    && a < e
                    && shape.fits(hay, s, e, st)
                    && shape.implied_filter().is_none_or(|(min, needs)| {
                        st.digits >= min && needs.is_none_or(|n| hay[s..e].contains(&n))
                    })
            });
            prop_assert!(
                ok,
                "{shape:?}: secret {:?} in {:?} meets no fitting run",
                String::from_utf8_lossy(&hay[a..b]),
                String::from_utf8_lossy(hay)
            );
        }
        Ok(())
    }

    /// Digits, separators, letters and pieces shaped like every digit
    /// rule's secret (and near misses: dates, floats, versions, ids).
    pub(crate) fn digit_soup() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            "[0-9]{1,6}",
            "[0-9]{7,19}",
            "[ .\\-/()+]",
            "[ .\\-/()+]{2,3}",
            "[A-Z]{1,3}",
            "[a-z_:@\\n]",
            "0[1-9]",
            "0[0-9]{1,4} ?[/\\-] ?[0-9]{3,8}",
            "\\+[0-9]{1,3}[ .\\-]?(\\([0-9]{1,4}\\))?[0-9]{1,4}",
            "\\+[1-9]([ .\\-]?[0-9]){2}",
            "(1[ .\\-])?(\\([2-9][0-9]{2}\\) ?|[2-9][0-9]{2}[ .\\-])[2-9][0-9]{2}[ .\\-][0-9]{4}",
            "0[1-9]([ .][0-9]{2}){1,4}",
            "0(7[0-9]{3} ?[0-9]{6}|[12][0-9]{2,3} [0-9]{3,4} ?[0-9]{3,4}|20 [0-9]{4} [0-9]{4})",
            "[0-9]{3}-[0-9]{2}-[0-9]{4}",
            "[0-9]{4}([ \\-]?[0-9]{2,6}){1,4}",
            "[A-Z]{2}[0-9]{2}( ?[A-Z0-9]{4}){1,7}",
            "20[0-9]{2}-[01][0-9]-[0-3][0-9]",
            "[0-9]\\.[0-9]{6,16}",
            "[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}",
            "(GIR|SW1A|EC1|M) [0-9][ABD][A-Z]",
            "[0-9]{3}[ .][0-9]{2}[ .][0-9]{4}",
            "(\\(0?[0-9]{2,5}\\)[ .\\-]?|0[0-9]{1,4}[ .\\-/])[0-9]{2,8}([ .\\-][0-9]{2,5}){0,3}",
            "(\\+|00)?\\(?[0-9][0-9 ().\\-]{6,12}[0-9][ \\t]{0,2}(x|X|ext\\.?|EXT|extension)[ \\t]{0,2}[0-9]{1,6}",
        ];
        prop::collection::vec(piece, 0..12).prop_map(|v| v.concat().into_bytes())
    }

    #[test]
    fn every_digit_rule_with_a_shape_is_recognised() {
        let shaped: Vec<String> = pii_rules()
            .into_iter()
            .filter(|r| Shape::for_pattern(&r.pattern).is_some())
            .map(|r| r.id)
            .collect();
        assert_eq!(
            shaped,
            [
                "us_ssn",
                "payment_card",
                "iban",
                "us_ssn_spaced",
                "phone_international",
                "phone_nanp",
                "phone_uk",
                "phone_fr",
                "phone_de",
                "phone_national",
                "phone_extension",
                "uk_postcode"
            ]
        );
    }

    #[test]
    fn shape_examples() {
        for (shape, hay) in [
            (Shape::PhoneInternational, "call +44 20 7946 0958."),
            (Shape::PhoneNanp, "(415) 555-2671"),
            (Shape::PhoneNanp, "1-415-555-2671"),
            (Shape::PhoneUk, "07700 900123"),
            (Shape::PhoneUk, "tel 0123 456 789,"),
            (Shape::PhoneFr, "01 23 45 67 89"),
            (Shape::PhoneDe, "030 / 1234567"),
            (Shape::UsSsn, "ssn 536-22-1234."),
            (Shape::PaymentCard, "4111 1111 1111 1111"),
            (Shape::PaymentCard, "x 2026-11-22 10:11"),
            (Shape::Iban, "DE89 3704 0044 0532 0130 00"),
            (Shape::Iban, "GB82WEST12345698765432"),
            (Shape::UkPostcode, "London SW1A 1AA."),
            (Shape::UkPostcode, "B33 8TH"),
            (Shape::UkPostcode, "GIR 0AA"),
            (Shape::UsSsnSpaced, "ssn 536 22 1234."),
            (Shape::UsSsnSpaced, "536.22.1234"),
            (Shape::PhoneNational, "(030) 901820"),
            (Shape::PhoneNational, "tel 0301 23 45 67"),
            (Shape::PhoneExtension, "+1 415-867-5309 x204"),
            (Shape::PhoneExtension, "(415) 867 5309\text. 12"),
        ] {
            let (rule, hay) = (rule_of(shape), hay.as_bytes());
            assert!(!possible_secrets(&rule, hay).is_empty(), "{hay:?} matches");
            check_shape(shape, &rule, hay).expect("fits");
        }
        // Runs that wake the rule's declared filter but cannot match.
        for (shape, run) in [
            (Shape::PaymentCard, "0.8083164706748003"),
            (Shape::PaymentCard, "2026-11-22T"),
            (Shape::PhoneNanp, "716-446655440000"),
            (Shape::UsSsn, "2026-11-22 10"),
            (Shape::Iban, "12345678"),
            (Shape::UkPostcode, "B33 8TC"),
            (Shape::UkPostcode, "B33 8THX"),
            (Shape::UkPostcode, "B33-8TH"),
            (Shape::UsSsnSpaced, "536 22-1234"),
            (Shape::PhoneNational, "1030 901820"),
            (Shape::PhoneExtension, "415 867 5309 y"),
        ] {
            let hay = run.as_bytes();
            let (s, e) = runs(hay)[0];
            assert!(!shape.fits(hay, s, e, RunStats::of(&hay[s..e])), "{run:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

        /// `may_fit` and `fits_start` are necessary conditions of `fits` on
        /// the runs the anchor pass cuts: it tries only the shapes
        /// `may_fit` selects, and walks a short run only if `fits_start`
        /// passes for a shape that can fit it.
        /// Random bytes around the soup.
        #[test]
        fn fits_implies_may_fit(
            hay in digit_soup(),
            before in "[ A-Za-z0-9\t(+-]",
            after in "[ A-Za-z0-9\t.x-]",
        ) {
            let hay = [before.as_bytes(), &hay, after.as_bytes()].concat();
            for (s, e) in runs(&hay) {
                {
                    let st = RunStats::of(&hay[s..e]);
                    let flags = RunFlags(RunFlags::of(&hay, s, e, st).0 | RunFlags::groups(&hay, s, e).0);
                    for (shape, _) in PATTERNS {
                        if shape.fits(&hay, s, e, st) {
                            prop_assert!(
                                shape.may_fit(st.digits, flags),
                                "{shape:?} fits {:?} but may_fit says no",
                                String::from_utf8_lossy(&hay[s..e])
                            );
                            prop_assert!(
                                shape.fits_start(&hay, s, e),
                                "{shape:?} fits {:?} but fits_start says no",
                                String::from_utf8_lossy(&hay[s..e])
                            );
                        }
                    }
                }
            }
        }

        /// Each shape is a necessary condition of its rule's regex: every
        /// match it can report over any range lies on a run with the shape.
        #[test]
        fn every_possible_match_meets_a_fitting_run(hay in digit_soup()) {
            for rule in pii_rules() {
                if let Some(shape) = Shape::for_pattern(&rule.pattern) {
                    check_shape(shape, &rule, &hay)?;
                }
            }
        }
    }
}
