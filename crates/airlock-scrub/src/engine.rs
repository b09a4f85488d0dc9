//! The detection engine: anchors (keywords, `@`, digit runs, `:`) select
//! small windows; each rule's bounded regex runs only inside its windows;
//! validators confirm; known secrets are found by one Aho-Corasick pass.
//!
//! `detect(hay, from)` reports every raw regex match that *starts* at or
//! after `from`, using bytes before `from` only as look-behind context. The
//! stream scrubber relies on three properties, which the property tests
//! check: every match is at most `max_len` bytes; a match depends only on
//! bytes within `hold` of it; and the result for the part of a buffer that
//! is far enough from its end does not change when more bytes arrive.

use crate::Category;
use crate::checks;
use crate::digits::{RunFlags, RunStats, Shape};
use crate::keywords::Keywords;
use crate::rules::{Anchor, Rule};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_automata::util::syntax;
use regex_automata::{Input, PatternSet, meta};

/// Digit runs longer than this are treated as matching every digit rule's
/// filter, so that a run's filter result never depends on how much of a
/// very long run a stream has seen.
const LONG_RUN: usize = 256;
/// Extra bytes held back and kept as context beyond the longest rule.
const MARGIN: usize = 2 * LONG_RUN + 128;

/// What a finding is labelled with.
#[derive(Debug, Clone)]
pub(crate) struct Label {
    pub rule: String,
    pub kind: String,
    pub category: Category,
}

/// A raw match. `valid` is false when a validator rejected it; rejected
/// matches still matter to the stream scrubber's cut (they advance a regex
/// search just like accepted ones).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Raw {
    pub full: (usize, usize),
    pub span: (usize, usize),
    /// Index into `labels`; lower is higher priority.
    pub label: u32,
    pub valid: bool,
}

/// A merged, accepted finding (internal form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub start: usize,
    pub end: usize,
    pub label: u32,
}

#[derive(Debug)]
pub(crate) struct Engine {
    rules: Vec<Rule>,
    /// Known secrets first, then `rules` in order.
    pub labels: Vec<Label>,
    /// Regions national phone numbers are validated against.
    pub(crate) phone_regions: crate::phone::Regions,
    known_count: usize,
    /// All keywords, ASCII case-insensitive: every occurrence is reported.
    kw: Option<Keywords>,
    /// Per keyword: the rules searched in windows around its occurrences
    /// (every occurrence of every keyword is reported, so a keyword that is
    /// a prefix of another needs no help from the longer one).
    kw_rules: Vec<Vec<u32>>,
    /// Per keyword: the rules whose every match starts with one of their
    /// keywords (`Rule::starts_with_keyword`), tried anchored at each
    /// occurrence of this keyword.
    kw_anchored: Vec<Vec<u32>>,
    max_kw: usize,
    known_ac: Option<AhoCorasick>,
    known_label: Vec<u32>,
    /// The known secrets' encodings, for [`Engine::known_prefix_tail`].
    known_patterns: Vec<airlock_types::Secret<Vec<u8>>>,
    max_known_len: usize,
    at_rules: Vec<u32>,
    colon_rules: Vec<u32>,
    /// Digit-anchored rules with their run filters, in rule order.
    digit_rules: Vec<DigitRule>,
    /// The smallest `min_digits` of `digit_rules`: shorter runs wake none.
    digit_min: usize,
    /// Per label: the index in `digit_rules` of a rule whose components are
    /// skipped when they meet no run with its shape, or `NO_SHAPE`.
    shape_skip_of: Vec<u32>,
    /// `(index in digit_rules, shape)` of the rules skipped by shape.
    skip_shapes: Vec<(usize, Shape)>,
    /// The smallest `min_run_digits` of `skip_shapes`.
    skip_shape_min: usize,
    /// `skip_shapes` selected by table (bit `j`: `skip_shapes[j]`); `None`
    /// past 32 of them (each is then tried in turn).
    shape_sets: Option<ShapeSets>,
    /// The digit rules' filters as bit sets (bit `k`: `digit_rules[k]`),
    /// so that a run selects its rules in a few operations instead of a
    /// loop of data-dependent branches; `None` past 64 digit rules (the
    /// loop is used then).
    rule_sets: Option<RuleSets>,
    /// Skip shapes that can fit runs with fewer than `digit_min` digits
    /// (which wake no rule): `(min_run_digits, shape)`. A run below
    /// `digit_min` is walked only if one of them passes its cheap
    /// [`Shape::fits_start`] test.
    short_shapes: Vec<(usize, Shape)>,
    /// Per label: the longest match of its rule (0 for known secrets), kept
    /// apart from `rules` so the window pass touches one small array.
    label_max: Vec<usize>,
    max_rule_len: usize,
    /// Multi-pattern regexes over groups of rules that share an anchor
    /// class, used as an exact gate (see `detect`).
    gates: Vec<Gate>,
    /// Per label: `(gate, pattern index in that gate)`, or `NO_GATE`.
    gate_of: Vec<(u32, u32)>,
    /// Bytes a stream must hold back before it can emit.
    pub hold: usize,
    /// Bytes of already-emitted input a stream keeps as look-behind context.
    pub context: usize,
}

/// A multi-pattern regex over the rules of one anchor group, with
/// `MatchKind::All`: one overlapping pass over a region reports every rule
/// whose pattern matches anywhere in it.
#[derive(Debug)]
struct Gate {
    regex: meta::Regex,
}

impl Gate {
    /// `None` when the combined automaton is too big or fails to build:
    /// the rules are then searched one by one, as without a gate.
    fn build(patterns: &[&str]) -> Option<Gate> {
        meta::Regex::builder()
            // Same syntax and empty-match settings as each rule's own regex
            // (`rules::compile`), so "matches in a span" means the same.
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .configure(
                meta::Config::new()
                    .utf8_empty(false)
                    .match_kind(regex_automata::MatchKind::All),
            )
            .build_many(patterns)
            .ok()
            .map(|regex| Gate { regex })
    }
}

/// Rules per gate: bounds the size of each gate's automaton (a gate that
/// fails to build is simply not used; gating never changes results).
const GATE_RULES: usize = 24;
const NO_GATE: (u32, u32) = (u32::MAX, u32::MAX);

fn group_of(anchor: &Anchor) -> usize {
    match anchor {
        Anchor::Keywords(_) => 0,
        Anchor::At => 1,
        Anchor::Colon => 2,
        Anchor::Digits { .. } => 3,
    }
}

/// A digit-anchored rule's run filter (copied out of its `Anchor`) and
/// its run shape, if its pattern has one (see `digits`).
#[derive(Debug, Clone, Copy)]
struct DigitRule {
    label: u32,
    min_digits: usize,
    run_needs: Option<u8>,
    shape: Option<Shape>,
    /// The declared filter is implied by the regex, so windows are pushed
    /// only for runs that also have the shape (every possible match still
    /// lies in a window). Otherwise the shape only skips components.
    shape_filters_windows: bool,
}

const NO_SHAPE: u32 = u32::MAX;

const DIGIT: u8 = 1;
const SEP: u8 = 2;
const AT: u8 = 3;
const COLON: u8 = 4;

/// Byte classes for the anchor pass.
const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = b'0';
    while i <= b'9' {
        t[i as usize] = DIGIT;
        i += 1;
    }
    // The same bytes the block bitmaps call separators.
    let seps = crate::blocks::SEPARATORS;
    let mut j = 0;
    while j < seps.len() {
        t[seps[j] as usize] = SEP;
        j += 1;
    }
    t[b'@' as usize] = AT;
    t[b':' as usize] = COLON;
    t
}
static CLASS: [u8; 256] = classes();

/// Per byte, what the anchor pass records while it walks a run: whether
/// the byte continues a run (`R_DIGIT`, `R_SEP`) and which separators the
/// run filters ask about. One lookup and no branch per byte.
const R_DIGIT: u8 = 1;
const R_SEP: u8 = 2;
const R_PLUS: u8 = 4;
const R_DASH: u8 = 8;
const R_SLASH: u8 = 16;
const R_DOT: u8 = 32;
const R_PAREN: u8 = 64;

const fn run_flags() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match CLASS[i] {
            DIGIT => R_DIGIT,
            SEP => R_SEP,
            _ => 0,
        };
        i += 1;
    }
    t[b'+' as usize] |= R_PLUS;
    t[b'-' as usize] |= R_DASH;
    t[b'/' as usize] |= R_SLASH;
    t[b'.' as usize] |= R_DOT;
    t[b'(' as usize] |= R_PAREN;
    t
}
static RUN: [u8; 256] = run_flags();

/// Whether `w` holds a run of hex digits, ':' and '.' that contains "::" or
/// at least `n` ':' (the `min_colons` precondition).
pub(crate) fn has_colon_run(w: &[u8], n: usize) -> bool {
    let (mut colons, mut prev_colon) = (0usize, false);
    for &b in w {
        if b == b':' {
            colons += 1;
            if prev_colon || colons >= n {
                return true;
            }
            prev_colon = true;
        } else {
            prev_colon = false;
            if !(b.is_ascii_hexdigit() || b == b'.') {
                colons = 0;
            }
        }
    }
    false
}

/// Which digit rules (bit `k`: rule `k`) a run's counts let through; see
/// [`RuleSets::select`].
#[derive(Debug)]
struct RuleSets {
    /// `by_digits[n]`: rules with `min_digits <= n` (the last entry stands
    /// for every larger `n`).
    by_digits: Vec<u64>,
    /// Rules whose `run_needs` is '+', '-', '.' (three dots), or another
    /// byte (checked one by one).
    plus: u64,
    dash: u64,
    dots: u64,
    other: u64,
    /// Every rule (a long run wakes them all).
    all: u64,
}

impl RuleSets {
    fn new(rules: &[DigitRule]) -> Option<RuleSets> {
        if rules.len() > 64 {
            return None;
        }
        let top = rules.iter().map(|d| d.min_digits).max().unwrap_or(0);
        let mut sets = RuleSets {
            by_digits: vec![0; top.saturating_add(1).min(4096)],
            plus: 0,
            dash: 0,
            dots: 0,
            other: 0,
            all: 0,
        };
        for (k, d) in rules.iter().enumerate() {
            let bit = 1u64 << k;
            sets.all |= bit;
            for (n, set) in sets.by_digits.iter_mut().enumerate() {
                if n >= d.min_digits {
                    *set |= bit;
                }
            }
            match d.run_needs {
                None => {}
                Some(b'+') => sets.plus |= bit,
                Some(b'-') => sets.dash |= bit,
                Some(b'.') => sets.dots |= bit,
                Some(_) => sets.other |= bit,
            }
        }
        // A `min_digits` too large for the table: such rules only wake on
        // long runs (never worth a bigger table).
        Some(sets)
    }

    /// The rules whose digit count and '+', '-', '.' filters the run meets
    /// (rules needing another byte are included, to be checked).
    #[inline]
    fn select(&self, digits: usize, plus: bool, dash: bool, dots: usize) -> u64 {
        let all = |b: bool| if b { !0u64 } else { 0 };
        self.by_digits[digits.min(self.by_digits.len() - 1)]
            & (!self.plus | all(plus))
            & (!self.dash | all(dash))
            & (!self.dots | all(dots >= 3))
    }
}

/// The run shapes a run may fit by necessary conditions alone
/// ([`Shape::may_fit`]): bit sets over `skip_shapes` per digit count and
/// per byte of [`RunFlags`], ANDed, so that most runs (a date, a float, a
/// count) call no shape's `fits` at all. `may_fit` is monotone in the
/// flags, so a table of one byte's flags with the other byte's all set
/// holds every shape that `may_fit` allows: the AND is a superset of the
/// exact selection, and `fits` decides.
#[derive(Debug)]
struct ShapeSets {
    /// Index: the digit count, capped at `DIGITS_CAP`.
    by_digits: [u32; DIGITS_CAP + 1],
    /// By the low flags ([`RunFlags::of`]).
    by_lo: Box<[u32; 256]>,
    /// By the high flags ([`RunFlags::groups`]).
    by_hi: Box<[u32; 256]>,
    /// The shapes that need some high flag (`by_hi[0]` lacks them): the
    /// groups are walked only when one of them is still selected.
    need_hi: u32,
}

/// No shape needs more digits than this (`ShapeSets::new` checks).
const DIGITS_CAP: usize = 16;

impl ShapeSets {
    fn new(shapes: &[(usize, Shape)]) -> Option<ShapeSets> {
        if shapes.len() > 32 || shapes.iter().any(|(_, s)| s.min_run_digits() > DIGITS_CAP) {
            return None;
        }
        let mut by_digits = [0u32; DIGITS_CAP + 1];
        let mut by_lo = Box::new([0u32; 256]);
        let mut by_hi = Box::new([0u32; 256]);
        for (j, (_, shape)) in shapes.iter().enumerate() {
            for (d, m) in by_digits.iter_mut().enumerate() {
                if d >= shape.min_run_digits() {
                    *m |= 1 << j;
                }
            }
            for b in 0u16..=255 {
                if shape.may_fit(usize::MAX, RunFlags(b | 0xFF00)) {
                    by_lo[usize::from(b)] |= 1 << j;
                }
                if shape.may_fit(usize::MAX, RunFlags(b << 8 | 0x00FF)) {
                    by_hi[usize::from(b)] |= 1 << j;
                }
            }
        }
        let need_hi = !by_hi[0];
        Some(ShapeSets {
            by_digits,
            by_lo,
            by_hi,
            need_hi,
        })
    }

    /// The shapes the run `hay[start..end]` with stats `st` may fit.
    #[inline]
    fn select(&self, hay: &[u8], start: usize, end: usize, st: RunStats) -> u32 {
        let lo = RunFlags::of(hay, start, end, st).0;
        let m = self.by_digits[st.digits.min(DIGITS_CAP)] & self.by_lo[usize::from(lo & 0xFF)];
        if m & self.need_hi == 0 {
            return m;
        }
        let hi = RunFlags::groups(hay, start, end).0 >> 8;
        m & self.by_hi[usize::from(hi & 0xFF)]
    }
}

/// The maximal run of hex digits, ':' and '.' around a colon, as
/// [`has_colon_run`] sees it.
#[derive(Debug, Default, Clone, Copy)]
struct ColonRun {
    end: usize,
    colons: usize,
    double: bool,
}

impl ColonRun {
    fn around(hay: &[u8], i: usize) -> ColonRun {
        let hexdot = |b: u8| b.is_ascii_hexdigit() || b == b'.' || b == b':';
        let mut a = i;
        while a > 0 && hexdot(hay[a - 1]) {
            a -= 1;
        }
        let mut run = ColonRun::default();
        let mut prev_colon = false;
        let mut e = a;
        while let Some(&b) = hay.get(e) {
            if !hexdot(b) {
                break;
            }
            let colon = b == b':';
            run.colons += usize::from(colon);
            run.double |= colon && prev_colon;
            prev_colon = colon;
            e += 1;
        }
        run.end = e;
        run
    }

    /// `has_colon_run(run, n)`.
    fn meets(self, n: usize) -> bool {
        self.double || self.colons >= n
    }
}

/// Bytes of input per window reserved up front by `Engine::detect`.
const WINDOW_ROOM: usize = 32;

/// `wins` in `(label, start, end)` order, as `sort_unstable` would give,
/// in linear time: a counting sort on the label (labels are small dense
/// integers), then each label's run sorted by `(start, end)` only if it is
/// not already (windows mostly arrive in ascending order).
/// Few windows (a short input) are sorted directly: the counting sort's
/// passes over every label would cost more than the sort.
fn group_by_label(wins: &[(u32, usize, usize)], labels: usize) -> Vec<(u32, usize, usize)> {
    if wins.len() <= labels / 4 {
        let mut out = wins.to_vec();
        out.sort_unstable();
        return out;
    }
    let mut at = vec![0usize; labels + 1];
    for w in wins {
        at[w.0 as usize + 1] += 1;
    }
    for l in 1..at.len() {
        at[l] += at[l - 1];
    }
    let bounds = at.clone();
    let mut out = vec![(0u32, 0usize, 0usize); wins.len()];
    for w in wins {
        let slot = &mut at[w.0 as usize];
        out[*slot] = *w;
        *slot += 1;
    }
    for l in 0..labels {
        let run = &mut out[bounds[l]..bounds[l + 1]];
        if !run.is_sorted() {
            run.sort_unstable();
        }
    }
    out
}

/// The byte right after a generic assignment's value, inside its match,
/// shows the value is code or a fragment, not a credential: a call
/// (`get_key()`), an index (`keys[0]`),
/// or a value cut short by another tool (`ya29.a0Af…`, `•••`: UTF-8
/// punctuation opening with 0xE2). Only bytes inside the match are read,
/// so the stream scrubber sees the same bytes.
/// A generic value judged with the name in front of it. Kept out of line:
/// `accept` runs for every digit-run and keyword candidate, and inlining
/// the name reading into it made every call slower.
#[inline(never)]
fn generic_with_name(value: &[u8], hay: &[u8], at: usize) -> bool {
    checks::generic_named_ok(value, crate::names::classify(hay, at))
}

fn calls_or_types(hay: &[u8], span: (usize, usize), full: (usize, usize)) -> bool {
    span.1 < full.1 && matches!(hay.get(span.1), Some(b'(' | b'[' | 0xE2))
}

impl Engine {
    pub(crate) fn new(
        rules: Vec<Rule>,
        known: Vec<(String, Vec<Vec<u8>>)>,
    ) -> Result<Engine, crate::ScrubError> {
        let mut labels = Vec::new();
        let mut known_patterns: Vec<Vec<u8>> = Vec::new();
        let mut known_label = Vec::new();
        let mut max_known_len = 0;
        for (i, (name, encs)) in known.iter().enumerate() {
            labels.push(Label {
                rule: "known_secret".into(),
                kind: name.clone(),
                category: Category::Secret,
            });
            for e in encs {
                max_known_len = max_known_len.max(e.len());
                known_patterns.push(e.clone());
                known_label.push(i as u32);
            }
        }
        let known_count = labels.len();
        let mut words: Vec<String> = Vec::new();
        let mut direct: Vec<Vec<u32>> = Vec::new();
        let mut anchored: Vec<Vec<u32>> = Vec::new();
        let (mut at_rules, mut colon_rules, mut digit_rules) = (vec![], vec![], vec![]);
        let mut max_rule_len = 0;
        for (ri, rule) in rules.iter().enumerate() {
            let li = (known_count + ri) as u32;
            labels.push(Label {
                rule: rule.id.clone(),
                kind: rule.kind.clone(),
                category: rule.category,
            });
            max_rule_len = max_rule_len.max(rule.max_len);
            match &rule.anchor {
                Anchor::Keywords(kws) => {
                    // A rule with a scanner keeps its windows (a scanner
                    // searches a range, it does not try one position).
                    let at_start = rule.anchored_only();
                    for k in kws {
                        let k = k.to_ascii_lowercase();
                        let p = match words.iter().position(|x| *x == k) {
                            Some(p) => p,
                            None => {
                                words.push(k);
                                direct.push(Vec::new());
                                anchored.push(Vec::new());
                                words.len() - 1
                            }
                        };
                        let list = if at_start {
                            &mut anchored[p]
                        } else {
                            &mut direct[p]
                        };
                        if !list.contains(&li) {
                            list.push(li);
                        }
                    }
                }
                Anchor::At => at_rules.push(li),
                Anchor::Colon => colon_rules.push(li),
                Anchor::Digits {
                    min_digits,
                    run_needs,
                } => {
                    let shape = Shape::for_pattern(&rule.pattern);
                    // Filtering windows is exact only when the declared
                    // filter is no stricter than the one the regex implies.
                    let shape_filters_windows = shape.and_then(Shape::implied_filter).is_some_and(
                        |(implied_min, implied_needs)| {
                            *min_digits <= implied_min
                                && (run_needs.is_none() || *run_needs == implied_needs)
                        },
                    );
                    digit_rules.push(DigitRule {
                        label: li,
                        min_digits: *min_digits,
                        run_needs: *run_needs,
                        shape,
                        shape_filters_windows,
                    })
                }
            }
        }
        let max_kw = words.iter().map(String::len).max().unwrap_or(0);
        let kw = if words.is_empty() {
            None
        } else {
            Some(
                Keywords::new(&words).ok_or_else(|| crate::ScrubError::Automaton {
                    what: "keyword",
                    message: "a keyword is shorter than 3 bytes".into(),
                })?,
            )
        };
        let known_ac = if known_patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .build(&known_patterns)
                    .map_err(|e| crate::ScrubError::Automaton {
                        what: "known-secret",
                        message: e.to_string(),
                    })?,
            )
        };
        // Digit rules share windows (every digit run wakes all of them) and
        // most of their windows hold no match, so one pass per region
        // deciding which rules can match there replaces most per-rule
        // searches. (`@` and `:` have one rule each; keyword rules gated this
        // way ran slower: the all-matches automaton over many unrelated
        // patterns thrashes the lazy DFA's cache.)
        let mut gate_of = vec![NO_GATE; labels.len()];
        let mut gates: Vec<Gate> = Vec::new();
        for g in [3] {
            // A rule with a hand-written scanner is cheaper to run than to
            // gate (and leaving it out keeps the gate's automaton smaller).
            // A rule with a run shape is skipped by it instead (far cheaper
            // than the all-matches automaton).
            let members: Vec<usize> = (0..rules.len())
                .filter(|&ri| {
                    group_of(&rules[ri].anchor) == g
                        && rules[ri].scanner.is_none()
                        && Shape::for_pattern(&rules[ri].pattern).is_none()
                })
                .collect();
            for chunk in members.chunks(GATE_RULES) {
                if chunk.len() < 2 {
                    continue;
                }
                let patterns: Vec<&str> =
                    chunk.iter().map(|&ri| rules[ri].pattern.as_str()).collect();
                let Some(gate) = Gate::build(&patterns) else {
                    continue;
                };
                for (pi, &ri) in chunk.iter().enumerate() {
                    gate_of[known_count + ri] = (gates.len() as u32, pi as u32);
                }
                gates.push(gate);
            }
        }
        let digit_min = digit_rules
            .iter()
            .map(|d| d.min_digits)
            .min()
            .unwrap_or(usize::MAX);
        let mut shape_skip_of = vec![NO_SHAPE; labels.len()];
        let mut skip_shapes = Vec::new();
        for (k, d) in digit_rules.iter().enumerate() {
            if let Some(shape) = d.shape
                && !d.shape_filters_windows
            {
                shape_skip_of[d.label as usize] = k as u32;
                skip_shapes.push((k, shape));
            }
        }
        let skip_shape_min = skip_shapes
            .iter()
            .map(|(_, s)| s.min_run_digits())
            .min()
            .unwrap_or(usize::MAX);
        let shape_sets = ShapeSets::new(&skip_shapes);
        let short_shapes = skip_shapes
            .iter()
            .filter(|(_, s)| s.min_run_digits() < digit_min)
            .map(|&(_, s)| (s.min_run_digits(), s))
            .collect();
        let rule_sets = RuleSets::new(&digit_rules);
        let mut label_max = vec![0usize; known_count];
        label_max.extend(rules.iter().map(|r| r.max_len));
        let longest = max_rule_len.max(max_known_len);
        let hold = longest + max_kw + MARGIN;
        Ok(Engine {
            rules,
            labels,
            phone_regions: crate::phone::Regions::default(),
            known_count,
            kw,
            kw_rules: direct,
            kw_anchored: anchored,
            max_kw,
            known_ac,
            known_label,
            known_patterns: known_patterns
                .into_iter()
                .map(airlock_types::Secret::new)
                .collect(),
            max_known_len,
            at_rules,
            colon_rules,
            digit_rules,
            digit_min,
            shape_skip_of,
            skip_shapes,
            skip_shape_min,
            shape_sets,
            rule_sets,
            short_shapes,
            label_max,
            max_rule_len,
            gates,
            gate_of,
            hold,
            context: hold + MARGIN,
        })
    }

    /// The length of the longest suffix of `text` that is a proper,
    /// non-empty prefix of a known secret's encoding (0 if none).
    pub(crate) fn known_prefix_tail(&self, text: &[u8]) -> usize {
        let longest = self.max_known_len.saturating_sub(1).min(text.len());
        for start in text.len() - longest..text.len() {
            let tail = &text[start..];
            if self.known_patterns.iter().any(|p| {
                let p = p.expose();
                p.len() > tail.len() && p.starts_with(tail)
            }) {
                return tail.len();
            }
        }
        0
    }

    pub(crate) fn rules(&self) -> &[Rule] {
        &self.rules
    }

    fn rule(&self, label: u32) -> &Rule {
        &self.rules[label as usize - self.known_count]
    }

    /// Every raw match starting at or after `from`.
    pub(crate) fn detect(&self, hay: &[u8], from: usize) -> Vec<Raw> {
        let len = hay.len();
        let mut out = Vec::new();
        if from >= len {
            return out;
        }
        let back = self.max_rule_len + self.max_kw + 1;
        let kstart = from.saturating_sub(back);
        // One open window per rule; a new window that overlaps the rule's
        // open one extends it (anchors arrive in nearly ascending order), so
        // dense anchors cost O(1) each.
        // Scratch per label is allocated on first use, so that a short
        // input that wakes no rule (a path, a sentence, a number: what the
        // MCP gateway scrubs string by string) allocates nothing per label.
        let mut wins: Vec<(u32, usize, usize)> = Vec::new();
        let mut open: Vec<u32> = Vec::new();
        let push = |label: u32,
                    a: usize,
                    b: usize,
                    wins: &mut Vec<(u32, usize, usize)>,
                    open: &mut Vec<u32>| {
            let m = self.label_max[label as usize];
            let s = a.saturating_sub(m);
            let e = b.saturating_add(m).min(len);
            if e <= from {
                return;
            }
            if open.is_empty() {
                open.resize(self.labels.len(), u32::MAX);
                // Room for a window every `WINDOW_ROOM` bytes (mixed text
                // has one every ~40): growing from empty copied the windows
                // of a large input a dozen times.
                wins.reserve(len / WINDOW_ROOM);
            }
            let slot = &mut open[label as usize];
            if let Some(w) = wins.get_mut(*slot as usize)
                && s <= w.2
                && w.1 <= e
            {
                w.1 = w.1.min(s);
                w.2 = w.2.max(e);
                return;
            }
            *slot = wins.len() as u32;
            wins.push((label, s, e));
        };

        if let Some(kw) = &self.kw {
            // Every occurrence of every keyword, in start order. Rules that
            // start with a keyword are tried right there; since every match
            // of such a rule starts at an occurrence, trying occurrences left
            // to right and skipping those inside the last match gives what a
            // leftmost-first search over windows around them gives. The rest
            // get windows.
            let mut next: Vec<usize> = Vec::new();
            kw.for_each(hay, kstart, &mut |k, a, b| {
                for &li in &self.kw_rules[k] {
                    push(li, a, b, &mut wins, &mut open);
                }
                if a >= from {
                    let anchored = &self.kw_anchored[k];
                    if !anchored.is_empty() && next.is_empty() {
                        next.resize(self.labels.len(), 0);
                    }
                    for &li in anchored {
                        let n = &mut next[li as usize];
                        if a >= *n {
                            *n = self.search_at(hay, li, a, &mut out).unwrap_or(a + 1);
                        }
                    }
                }
            });
        }
        // Per digit rule: the runs with its shape, for rules whose
        // components are skipped by shape (empty for the others).
        let mut shape_runs: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.digit_rules.len()];
        if !(self.at_rules.is_empty() && self.colon_rules.is_empty() && self.digit_rules.is_empty())
        {
            self.scan_classes(hay, kstart, &mut shape_runs, &mut |li, a, b| {
                push(li, a, b, &mut wins, &mut open)
            });
        }

        // Merge windows per rule into components: each rule's regex runs
        // once over each of its components.
        let wins = group_by_label(&wins, self.labels.len());
        let mut comps: Vec<(u32, usize, usize)> = Vec::with_capacity(wins.len());
        let mut k = 0;
        while k < wins.len() {
            let (li, s, mut e) = wins[k];
            let mut j = k + 1;
            while j < wins.len() && wins[j].0 == li && wins[j].1 <= e {
                e = e.max(wins[j].2);
                j += 1;
            }
            k = j;
            let s = s.max(from);
            if s < e {
                comps.push((li, s, e));
            }
        }
        // Gate: for a gated group, take the union of its rules' components
        // and ask the group's multi-pattern regex, once per union region,
        // which rules match anywhere in it. A rule that matches nowhere in
        // a region matches nowhere in any of its components inside it (a
        // match inside a sub-span is a match inside the span; look-around
        // sees the whole haystack either way), so skipping it is exact.
        // Shape skip: a component that meets no run with its rule's shape
        // holds no match (every match's secret lies in a run with the
        // shape, and inside the component). Components of one rule and its
        // runs both ascend, so one cursor per rule suffices.
        if comps.is_empty() {
            return self.known_secrets(hay, from, out);
        }
        let mut skip = vec![false; comps.len()];
        let mut cursor = vec![0usize; shape_runs.len()];
        for (c, skip) in comps.iter().zip(skip.iter_mut()) {
            let k = self.shape_skip_of[c.0 as usize];
            let (Some(runs), Some(p)) = (shape_runs.get(k as usize), cursor.get_mut(k as usize))
            else {
                continue;
            };
            while runs.get(*p).is_some_and(|r| r.1 <= c.1) {
                *p += 1;
            }
            *skip = runs.get(*p).is_none_or(|r| r.0 >= c.2);
        }
        if !self.gates.is_empty() {
            // (gate, start, end, component index), grouped by gate.
            let mut members: Vec<(u32, usize, usize, usize)> = comps
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let (gi, _) = self.gate_of[c.0 as usize];
                    (gi != NO_GATE.0).then_some((gi, c.1, c.2, i))
                })
                .collect();
            // `comps` is grouped by label, each label's components in start
            // order, so within one gate `members` is a few sorted runs, which
            // the stable sort merges in near-linear time. Union regions are
            // the connected pieces of the gate's components, whatever the
            // order of ties.
            members.sort_by_key(|m| (m.0, m.1, m.2));
            let mut set: Option<PatternSet> = None;
            let mut a = 0;
            while a < members.len() {
                let (gi, s, mut e, _) = members[a];
                let mut b = a + 1;
                while b < members.len() && members[b].0 == gi && members[b].1 <= e {
                    e = e.max(members[b].2);
                    b += 1;
                }
                let gate = &self.gates[gi as usize];
                let set = set.get_or_insert_with(|| PatternSet::new(GATE_RULES));
                set.clear();
                gate.regex
                    .which_overlapping_matches(&Input::new(hay).range(s..e), set);
                for &(_, _, _, i) in &members[a..b] {
                    let (_, pi) = self.gate_of[comps[i].0 as usize];
                    skip[i] = !set.contains(regex_automata::PatternID::new_unchecked(pi as usize));
                }
                a = b;
            }
        }
        for (&(li, s, e), skip) in comps.iter().zip(skip) {
            if skip {
                continue;
            }
            // A declared precondition that the window fails rules out every
            // match inside it (a match lies inside its window).
            let rule = self.rule(li);
            if let Some(n) = rule.min_colons
                && !has_colon_run(&hay[s..e], n)
            {
                continue;
            }
            // Nor can a window without one of the bytes every match holds.
            if rule.needs.is_some_and(|n| !n.found_in(&hay[s..e])) {
                continue;
            }
            self.search(hay, li, s, e, &mut out);
        }

        self.known_secrets(hay, from, out)
    }

    /// Appends every occurrence of a known secret starting at or after
    /// `from` to `out`.
    fn known_secrets(&self, hay: &[u8], from: usize, mut out: Vec<Raw>) -> Vec<Raw> {
        if let Some(ac) = &self.known_ac {
            let input = aho_corasick::Input::new(hay).range(from..hay.len());
            for m in ac.find_overlapping_iter(input) {
                out.push(Raw {
                    full: (m.start(), m.end()),
                    span: (m.start(), m.end()),
                    label: self.known_label[m.pattern().as_usize()],
                    valid: true,
                });
            }
        }
        out
    }

    /// One pass over the bytes for the non-keyword anchors: `@`, `:` next
    /// to a hex digit, and runs of digits and separators.
    /// For rules whose components are skipped by shape, appends to
    /// `shape_runs[k]` every run that has rule `k`'s shape.
    fn scan_classes(
        &self,
        hay: &[u8],
        kstart: usize,
        shape_runs: &mut [Vec<(usize, usize)>],
        push: &mut dyn FnMut(u32, usize, usize),
    ) {
        let len = hay.len();
        let dstart = kstart.saturating_sub(2 * LONG_RUN);
        let mut bits = crate::blocks::Cursor::new(hay);
        let mut colon_run = ColonRun::default();

        let mut i = dstart;
        while i < len {
            // Only digits, ':' and '@' start anything here (separators only
            // matter just before a digit, handled below).
            i = bits.next(i, |b| b.digit | b.colon | b.at);
            if i >= len {
                break;
            }
            match CLASS[usize::from(hay[i])] {
                AT => {
                    if i >= kstart {
                        for &li in &self.at_rules {
                            push(li, i, i + 1);
                        }
                    }
                    i += 1;
                }
                COLON => {
                    let hexish = |j: usize| {
                        hay.get(j)
                            .is_some_and(|b| b.is_ascii_hexdigit() || *b == b':')
                    };
                    if i >= kstart && ((i > 0 && hexish(i - 1)) || hexish(i + 1)) {
                        // A rule with a `min_colons` precondition can only
                        // match around colons of a run that meets it (every
                        // match holds such a run, and the colons of that
                        // run are anchors whose windows cover the match).
                        // The run is measured once, at its first anchor.
                        if i >= colon_run.end {
                            colon_run = ColonRun::around(hay, i);
                        }
                        for &li in &self.colon_rules {
                            if self.rule(li).min_colons.is_none_or(|n| colon_run.meets(n)) {
                                push(li, i, i + 1);
                            }
                        }
                    }
                    i += 1;
                }
                DIGIT => {
                    // A run: up to 4 separators before the first digit (for a
                    // leading `+` or `(`), then digits and separators.
                    let mut start = i;
                    while start > dstart
                        && i - start < 4
                        && CLASS[usize::from(hay[start - 1])] == SEP
                    {
                        start -= 1;
                    }
                    // Most runs (a year, a status code, the digits of a hex
                    // id) have too few digits to wake a rule: their end and
                    // digit count come from the bitmaps, and unless a shape
                    // that fits short runs passes its test at the run's
                    // start, the walk below is skipped.
                    let end = bits.next(i, |b| !(b.digit | b.sep));
                    let long = end - start > LONG_RUN || (start == dstart && dstart > 0);
                    if !long {
                        let n = bits.count(i, end, |b| b.digit);
                        if n < self.digit_min
                            && !self
                                .short_shapes
                                .iter()
                                .any(|&(min, sh)| n >= min && sh.fits_start(hay, start, end))
                        {
                            i = end;
                            continue;
                        }
                    }
                    // Leading separators, then the run proper.
                    let (mut seen, mut digits, mut dots) = (0u8, 0usize, 0usize);
                    let (mut group, mut longest_group) = (0usize, 0usize);
                    let mut zero_led = false;
                    for &b in &hay[start..i] {
                        let f = RUN[usize::from(b)];
                        seen |= f;
                        dots += usize::from(f & R_DOT != 0);
                    }
                    // The run's bytes up to the end the bitmaps found.
                    for &b in hay.get(i..end).unwrap_or_default() {
                        let f = RUN[usize::from(b)];
                        seen |= f;
                        let digit = usize::from(f & R_DIGIT);
                        digits += digit;
                        zero_led |= (group == 0) & (b == b'0');
                        group = (group + 1) * digit;
                        longest_group = longest_group.max(group);
                        dots += usize::from(f & R_DOT != 0);
                    }
                    i = end;
                    let (plus, dash) = (seen & R_PLUS != 0, seen & R_DASH != 0);
                    let slash = seen & R_SLASH != 0;
                    let st = RunStats {
                        digits,
                        plus,
                        dash_or_slash: dash || slash,
                        longest_group,
                        zero_led,
                        paren: seen & R_PAREN != 0,
                    };
                    // Runs for the shape skip, short ones included: a match
                    // near a run that wakes a rule may lie in a short run.
                    if long || digits >= self.skip_shape_min {
                        match &self.shape_sets {
                            // Only the shapes whose necessary conditions
                            // the run meets are tried.
                            Some(sets) if !long => {
                                let mut m = sets.select(hay, start, i, st);
                                while m != 0 {
                                    let j = m.trailing_zeros() as usize;
                                    m &= m - 1;
                                    if let Some(&(k, shape)) = self.skip_shapes.get(j)
                                        && shape.fits(hay, start, i, st)
                                        && let Some(runs) = shape_runs.get_mut(k)
                                    {
                                        runs.push((start, i));
                                    }
                                }
                            }
                            _ => {
                                for &(k, shape) in &self.skip_shapes {
                                    if (long || shape.fits(hay, start, i, st))
                                        && let Some(runs) = shape_runs.get_mut(k)
                                    {
                                        runs.push((start, i));
                                    }
                                }
                            }
                        }
                    }
                    if !long && digits < self.digit_min {
                        // Wakes no rule (the loop below would push nothing).
                        continue;
                    }
                    // The rules this run wakes: those whose filters it
                    // meets and, where the shape filters windows, whose
                    // shape it has.
                    // (`may_fit` first: a necessary condition of `fits`
                    // on flags computed once per run.)
                    let flags = std::cell::OnceCell::new();
                    let fits = |sh: Shape| {
                        let f = *flags.get_or_init(|| {
                            RunFlags(
                                RunFlags::of(hay, start, i, st).0
                                    | RunFlags::groups(hay, start, i).0,
                            )
                        });
                        sh.may_fit(digits, f) && sh.fits(hay, start, i, st)
                    };
                    let wakes = |d: &DigitRule| {
                        long || !(d.shape_filters_windows && d.shape.is_some_and(|sh| !fits(sh)))
                    };
                    if let Some(sets) = &self.rule_sets {
                        let mut m = if long {
                            sets.all
                        } else {
                            sets.select(digits, plus, dash, dots)
                        };
                        while m != 0 {
                            let k = m.trailing_zeros() as usize;
                            m &= m - 1;
                            let Some(d) = self.digit_rules.get(k) else {
                                break;
                            };
                            let other_ok = long
                                || sets.other & (1 << k) == 0
                                || d.run_needs.is_some_and(|b| hay[start..i].contains(&b));
                            if other_ok && wakes(d) {
                                push(d.label, start, i);
                            }
                        }
                    } else {
                        for d in &self.digit_rules {
                            let needs_ok = match d.run_needs {
                                None => true,
                                Some(b'+') => plus,
                                Some(b'-') => dash,
                                // A dotted quad needs three dots.
                                Some(b'.') => dots >= 3,
                                Some(b) => hay[start..i].contains(&b),
                            };
                            if long || (digits >= d.min_digits && needs_ok) && wakes(d) {
                                push(d.label, start, i);
                            }
                        }
                    }
                }
                _ => i += 1,
            }
        }
    }

    /// The match of rule `li` that starts at `p`, if any (pushed to `out`);
    /// returns its end. What a leftmost-first search that reaches `p`
    /// reports when a match starts there.
    fn search_at(&self, hay: &[u8], li: u32, p: usize, out: &mut Vec<Raw>) -> Option<usize> {
        let rule = self.rule(li);
        // Necessary conditions first: most keyword occurrences in text
        // ('pat' in "path", 'token' in prose) fail them in a few bytes.
        if !crate::head::head_ok(&rule.head, hay, p)
            || rule
                .assign_run
                .is_some_and(|n| !crate::head::assignment_follows(hay, p, n))
            || rule.follows.is_some_and(|f| !f.ok(hay, p))
        {
            return None;
        }
        let m = rule
            .forward()
            .find_at(hay, p, rule.max_len, rule.secret_group)?;
        self.accept(rule, li, hay, m.full, m.span, out);
        Some(m.full.1)
    }

    fn accept(
        &self,
        rule: &Rule,
        li: u32,
        hay: &[u8],
        full: (usize, usize),
        span: (usize, usize),
        out: &mut Vec<Raw>,
    ) {
        let value = &hay[span.0..span.1];
        // Generic values are judged with the name in front of them (a
        // bounded look-behind of `names::LOOK_BACK` bytes, well inside the
        // context a stream keeps).
        let checked = if rule.check == checks::Check::Generic {
            generic_with_name(value, hay, full.0)
        } else if rule.check.is_phone() {
            // A phone candidate that continues a chain of groups (a card,
            // an IBAN in groups of four) is the tail of another number
            // (bounded look-behind of `phone::LOOK_BACK` bytes).
            !crate::phone::continues_chain(hay, span.0)
                && rule.check.passes(value, &self.phone_regions)
        } else {
            rule.check.passes(value, &self.phone_regions)
        };
        let valid = checked
            && rule
                .min_entropy
                .is_none_or(|min| checks::entropy(value) >= min)
            // (The generic check already refuses low-information values.)
            && !(rule.low_info && rule.check != checks::Check::Generic && checks::low_information(value))
            && !(rule.check == checks::Check::Generic && calls_or_types(hay, span, full));
        out.push(Raw {
            full,
            span,
            label: li,
            valid,
        });
    }

    #[inline]
    fn search(&self, hay: &[u8], li: u32, s: usize, e: usize, out: &mut Vec<Raw>) {
        let rule = self.rule(li);
        let input = Input::new(hay).range(s..e);
        let mut accept = |full: (usize, usize), span: (usize, usize)| {
            self.accept(rule, li, hay, full, span, out)
        };
        if let Some(sc) = rule.scanner {
            sc.find_iter(hay, s, e, &mut accept);
            return;
        }
        match rule.secret_group {
            Some(g) => {
                for caps in rule.regex().captures_iter(input) {
                    let Some(full) = caps.get_match() else {
                        continue;
                    };
                    let span = caps.get_group(g).unwrap_or(full.span());
                    accept((full.start(), full.end()), (span.start, span.end));
                }
            }
            None => {
                for m in rule.regex().find_iter(input) {
                    accept((m.start(), m.end()), (m.start(), m.end()));
                }
            }
        }
    }

    /// Merge accepted matches into non-overlapping hits; overlapping matches
    /// become one hit covering their union, labelled by the highest-priority
    /// member (known secrets, then secret rules in file order, then PII).
    pub(crate) fn merge(raws: &[Raw], below: usize) -> Vec<Hit> {
        let mut v: Vec<Hit> = raws
            .iter()
            .filter(|r| r.valid && r.span.0 < r.span.1 && r.span.1 <= below)
            .map(|r| Hit {
                start: r.span.0,
                end: r.span.1,
                label: r.label,
            })
            .collect();
        // A stable sort, for its speed here: `raws` comes as a few runs
        // already in start order (the keyword pass's, then each rule's
        // components), which it merges instead of partitioning anew. Hits
        // with equal keys are equal, so the order is what any sort gives.
        v.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end), h.label));
        let mut out: Vec<Hit> = Vec::with_capacity(v.len());
        for h in v {
            match out.last_mut() {
                Some(last) if h.start < last.end => {
                    last.end = last.end.max(h.end);
                    last.label = last.label.min(h.label);
                }
                _ => out.push(h),
            }
        }
        out
    }

    /// The largest cut point `<= c0` that no raw match straddles.
    ///
    /// Walking the matches by descending end and moving the cut to the
    /// start of each one that straddles it gives the answer. Only matches
    /// that end past `c0 - CUT_NEAR` are sorted for that walk first: one
    /// that ends at or before a cut it has reached cannot straddle it, so
    /// when the walk stops at or above that bound the rest cannot move it
    /// (a stream step held ≈ 10 k matches, all sorted to find a cut a few
    /// hundred bytes back). A chain of overlapping matches that reaches
    /// further back takes the walk over all of them. `raws` keeps its
    /// order (its runs in start order are what [`Engine::merge`] sorts
    /// fastest).
    pub(crate) fn cut(raws: &[Raw], c0: usize) -> usize {
        fn walk(mut ends: Vec<(usize, usize)>, c0: usize) -> usize {
            ends.sort_unstable_by_key(|&(_, end)| std::cmp::Reverse(end));
            let mut c = c0;
            for (start, end) in ends {
                if start < c && c < end {
                    c = start;
                }
            }
            c
        }
        let lo = c0.saturating_sub(CUT_NEAR);
        let near: Vec<(usize, usize)> = raws
            .iter()
            .filter(|r| r.full.1 > lo)
            .map(|r| r.full)
            .collect();
        let c = walk(near, c0);
        if c >= lo {
            return c;
        }
        walk(raws.iter().map(|r| r.full).collect(), c0)
    }
}

/// How far below the wanted cut [`Engine::cut`] first looks for matches
/// that straddle it.
const CUT_NEAR: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{BUILTIN_PII, BUILTIN_SECRETS, load};
    use proptest::prelude::*;
    use std::sync::LazyLock;

    /// The built-in rules; with `anchoring` false every keyword rule is
    /// searched in windows (the reference for the anchored path).
    fn builtin_engine(anchoring: bool) -> Engine {
        let mut rules =
            load("secrets.toml", BUILTIN_SECRETS, Category::Secret, false).expect("secrets load");
        rules.extend(load("pii.toml", BUILTIN_PII, Category::Pii, false).expect("pii load"));
        if !anchoring {
            for r in &mut rules {
                r.starts_with_keyword = false;
            }
        }
        Engine::new(rules, vec![]).expect("engine")
    }

    static ANCHORED: LazyLock<Engine> = LazyLock::new(|| builtin_engine(true));
    static WINDOWED: LazyLock<Engine> = LazyLock::new(|| builtin_engine(false));

    /// A raw match as a sortable tuple: full span, secret span, label, valid.
    type Key = ((usize, usize), (usize, usize), u32, bool);

    fn sorted(v: Vec<Raw>) -> Vec<Key> {
        let mut v: Vec<Key> = v
            .into_iter()
            .map(|r| (r.full, r.span, r.label, r.valid))
            .collect();
        v.sort_unstable();
        v
    }

    /// Text made of built-in keywords in random case, assignment
    /// operators, quotes and runs of token characters: matches, near
    /// misses, keywords inside matches and overlapping candidates.
    fn keyword_soup() -> impl Strategy<Value = Vec<u8>> {
        let words: Vec<String> = ANCHORED
            .rules
            .iter()
            .filter_map(|r| match &r.anchor {
                Anchor::Keywords(k) => Some(k.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        // Strings generated from the keyword rules' own patterns (look-around
        // assertions dropped, long rules left out), so that real matches of
        // every shape occur, including those whose keyword is not at the start.
        let samples: Vec<proptest::strategy::BoxedStrategy<Vec<u8>>> = ANCHORED
            .rules
            .iter()
            .filter(|r| matches!(r.anchor, Anchor::Keywords(_)) && r.max_len <= 300)
            .filter_map(|r| {
                let p = r.pattern.replace("\\b", "");
                proptest::string::bytes_regex(&p).ok().map(|s| s.boxed())
            })
            .collect();
        assert!(
            samples.len() > 150,
            "only {} sample generators",
            samples.len()
        );
        let piece = prop_oneof![
            3 => proptest::strategy::Union::new(samples),
            4 => (prop::sample::select(words), any::<u64>()).prop_map(|(w, bits)| {
                w.bytes()
                    .enumerate()
                    .map(|(i, b)| if bits >> (i % 64) & 1 == 1 { b.to_ascii_uppercase() } else { b })
                    .collect::<Vec<u8>>()
            }),
            3 => "[A-Za-z0-9_/+=.-]{1,90}".prop_map(String::into_bytes),
            2 => prop::sample::select(vec![" = ", "=", ": ", "\"", "'", " ", "\n", "_", "-", ".", "://", "@", ":", "?=", " ?= ", ":=", "=>", "]", "\t"])
                .prop_map(|s| s.as_bytes().to_vec()),
        ];
        prop::collection::vec(piece, 0..30).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// Both ways of grouping windows (a sort for few, a counting sort
        /// for many) give what `sort_unstable` gives.
        #[test]
        fn group_by_label_sorts(
            wins in prop::collection::vec((0u32..40, 0usize..50, 0usize..50), 0..120),
        ) {
            let mut want = wins.clone();
            want.sort_unstable();
            prop_assert_eq!(group_by_label(&wins, 40), want.clone());
            prop_assert_eq!(group_by_label(&wins, 4000), want);
        }
    }

    /// A short input that wakes no rule, and one that does, scanned through
    /// the public API (the MCP gateway's per-string use).
    #[test]
    fn short_inputs() {
        let s = crate::Scrubber::builtin();
        for quiet in [
            "",
            "/home/agent/src/engine.rs",
            "1732541923",
            "All tests passed.",
        ] {
            assert!(s.scan(quiet).is_empty(), "{quiet:?}");
        }
        let f = s.scan("mail bob@example.com now");
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].start, f[0].end), (5, 20));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

        /// Trying keyword-led rules anchored at each keyword finds exactly
        /// the raw matches (spans, labels, validity) that searching windows
        /// around the keywords finds, from any start offset.
        #[test]
        fn anchored_keyword_rules_match_window_search(hay in keyword_soup(), from in 0usize..400) {
            let from = from.min(hay.len());
            prop_assert_eq!(sorted(ANCHORED.detect(&hay, from)), sorted(WINDOWED.detect(&hay, from)));
        }
    }

    /// The cut as found before [`Engine::cut`] looked near the wanted cut
    /// first: every match sorted by descending end, then walked.
    fn cut_by_full_sort(raws: &[Raw], c0: usize) -> usize {
        let mut v = raws.to_vec();
        v.sort_unstable_by_key(|r| std::cmp::Reverse(r.full.1));
        let mut c = c0;
        for r in &v {
            if r.full.0 < c && c < r.full.1 {
                c = r.full.0;
            }
        }
        c
    }

    proptest! {
        /// The cut is the one the full sort finds: with matches anywhere,
        /// and with chains of overlapping matches that lead further back
        /// than the near matches the cut looks at first.
        #[test]
        fn cut_is_what_sorting_every_match_gives(
            spans in prop::collection::vec((0usize..20_000, 1usize..3_000), 0..300),
            chain in prop::collection::vec(1usize..2_500, 0..12),
            c0 in 0usize..22_000,
        ) {
            let raw = |s: usize, e: usize| Raw { full: (s, e), span: (s, e), label: 0, valid: true };
            let mut raws: Vec<Raw> = spans.iter().map(|&(s, n)| raw(s, s + n)).collect();
            // Each link overlaps the one after it, ending past c0 at the top.
            let mut end = c0 + 1;
            for n in chain {
                let start = end.saturating_sub(n + 1);
                raws.push(raw(start, end));
                end = start + 1;
            }
            prop_assert_eq!(Engine::cut(&raws, c0), cut_by_full_sort(&raws, c0));
        }
    }

    /// Per anchored-only built-in rule: its label and its forward matcher
    /// in each of its modes (see `forward::tests::variants`), then the one
    /// the rule builds (for a `context` rule, its names and shared tail).
    static FORWARDS: LazyLock<Vec<(u32, Vec<crate::forward::Forward>)>> = LazyLock::new(|| {
        let e = &*ANCHORED;
        (0..e.rules.len())
            .filter(|&ri| e.rules[ri].anchored_only())
            .map(|ri| {
                let li = (e.known_count + ri) as u32;
                let mut modes = crate::forward::tests::variants(&e.rules[ri].pattern);
                modes.push(e.rules[ri].build_forward().expect("rule's matcher builds"));
                (li, modes)
            })
            .collect()
    });

    /// Checks that every mode of rule `li`'s forward matcher reports, at
    /// `p`, what its regex reports for an anchored search of `hay[p..]`.
    fn forward_agrees(
        li: u32,
        fwd: &[crate::forward::Forward],
        hay: &[u8],
        p: usize,
    ) -> Result<(), TestCaseError> {
        let rule = ANCHORED.rule(li);
        let want = crate::forward::tests::reference(rule.regex(), hay, p, rule.secret_group);
        for (mode, f) in fwd.iter().enumerate() {
            let got = f.find_at(hay, p, rule.max_len, rule.secret_group);
            prop_assert_eq!(
                got,
                want,
                "rule {} mode {} at {} in {:?}",
                &rule.id,
                mode,
                p,
                String::from_utf8_lossy(hay)
            );
        }
        Ok(())
    }

    /// Keyword soup with random bytes spliced in (NUL, high bytes, word
    /// bytes next to matches for the look-around).
    fn soup_and_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            keyword_soup(),
            prop::collection::vec(
                (
                    any::<prop::sample::Index>(),
                    prop::collection::vec(any::<u8>(), 1..6),
                ),
                0..4,
            ),
        )
            .prop_map(|(mut hay, cuts)| {
                for (at, bytes) in cuts {
                    let at = at.index(hay.len() + 1);
                    hay.splice(at..at, bytes);
                }
                hay
            })
    }

    /// Each anchored-only rule with strings generated from its own pattern
    /// (look-around dropped), wrapped in soup: matches, near misses and
    /// truncations of that rule.
    fn one_rule_soup() -> impl Strategy<Value = (usize, Vec<u8>)> {
        let gens: Vec<proptest::strategy::BoxedStrategy<(usize, Vec<u8>)>> = FORWARDS
            .iter()
            .enumerate()
            .filter_map(|(k, (li, _))| {
                // (`$` is dropped from the context rules' tail, whose other
                // branch then closes the match.)
                let p = ANCHORED
                    .rule(*li)
                    .pattern
                    .replace("\\b", "")
                    .replace("|$)", ")");
                proptest::string::bytes_regex(&p)
                    .ok()
                    .map(|s| s.prop_map(move |b| (k, b)).boxed())
            })
            .collect();
        assert_eq!(gens.len(), FORWARDS.len(), "every anchored rule generates");
        (
            proptest::strategy::Union::new(gens),
            prop::collection::vec(any::<u8>(), 0..4),
            "[A-Za-z0-9_ =\"'-]{0,6}",
            0usize..8,
        )
            .prop_map(|((k, sample), pre, post, cut)| {
                let mut hay = pre;
                // Sometimes truncated: a match cut short must not be reported.
                let keep = if cut == 0 {
                    sample.len().saturating_sub(3)
                } else {
                    sample.len()
                };
                hay.extend_from_slice(&sample[..keep]);
                hay.extend_from_slice(post.as_bytes());
                (k, hay)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Every anchored-only rule's forward matcher, in each mode, reports
        /// at every occurrence of the rule's keywords (where the engine asks)
        /// and at random offsets exactly what its regex reports anchored
        /// there: whether a match starts, its end and its secret group.
        #[test]
        fn forward_matchers_equal_the_regex_on_soup(
            hay in soup_and_bytes(),
            extra in prop::collection::vec(any::<prop::sample::Index>(), 4),
        ) {
            let lower = hay.to_ascii_lowercase();
            for (li, fwd) in FORWARDS.iter() {
                let Anchor::Keywords(kws) = &ANCHORED.rule(*li).anchor else { continue };
                let mut ps: Vec<usize> = extra.iter().map(|i| i.index(hay.len() + 1)).collect();
                for k in kws {
                    let k = k.to_ascii_lowercase();
                    ps.extend(memchr::memmem::find_iter(&lower, k.as_bytes()));
                }
                for p in ps {
                    forward_agrees(*li, fwd, &hay, p)?;
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// The same, per rule, on text built from that rule's own pattern
        /// (so every rule meets its own matches), at every offset.
        #[test]
        fn forward_matchers_equal_the_regex_on_own_matches((k, hay) in one_rule_soup()) {
            let (li, fwd) = &FORWARDS[k];
            for p in 0..=hay.len() {
                forward_agrees(*li, fwd, &hay, p)?;
            }
        }
    }

    #[test]
    fn most_keyword_rules_start_with_a_keyword() {
        let keyword_rules = ANCHORED
            .rules
            .iter()
            .filter(|r| matches!(r.anchor, Anchor::Keywords(_)));
        let (n, anchored) = keyword_rules.fold((0, 0), |(n, a), r| {
            (n + 1, a + usize::from(r.starts_with_keyword))
        });
        // Context rules by construction, prefix-literal rules by extraction.
        assert!(
            anchored * 10 >= n * 8,
            "{anchored} of {n} keyword rules anchored"
        );
        let id = |id: &str| ANCHORED.rules.iter().find(|r| r.id == id).expect("rule");
        assert!(id("generic_secret_assignment").starts_with_keyword);
        assert!(id("airtable_pat").starts_with_keyword);
        assert!(id("aws_access_key_id").starts_with_keyword);
    }

    fn pii_rule(id: &str) -> Rule {
        load("pii.toml", BUILTIN_PII, Category::Pii, false)
            .expect("pii rules load")
            .into_iter()
            .find(|r| r.id == id)
            .expect("rule exists")
    }

    /// Hex digits, colons, dots and a few separators, in runs that look
    /// like addresses, timestamps and MACs.
    fn colon_soup() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            "[0-9a-fA-F]{1,5}",
            Just(":".to_string()),
            Just("::".to_string()),
            "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
            Just("ffff".to_string()),
            "[ .\\-\\n/gxz_\\[\\]]",
            // Whole addresses, full and with an IPv4 tail (6 and 7 colons).
            "([0-9a-f]{1,4}:){7}[0-9a-f]{1,4}",
            "([0-9a-f]{1,4}:){6}[0-9]{1,3}(\\.[0-9]{1,3}){3}",
        ];
        prop::collection::vec(piece, 0..40).prop_map(|v| v.concat().into_bytes())
    }

    #[test]
    fn colon_run_examples() {
        assert!(has_colon_run(b"fe80::1", 6));
        assert!(has_colon_run(b"x 1:2:3:4:5:6:1.2.3.4 y", 6));
        assert!(!has_colon_run(b"12:34:56 ab:cd:ef 01:02:03", 6));
        assert!(!has_colon_run(b"1:2:3: :4:5:6", 6));
        assert!(!has_colon_run(b": :", 6));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// The ipv6 rule's declared `min_colons` holds for its regex: every
        /// match satisfies the precondition, so skipping windows that fail
        /// it never loses a match.
        #[test]
        fn ipv6_min_colons_is_implied_by_its_regex(hay in colon_soup()) {
            let rule = pii_rule("ipv6");
            let n = rule.min_colons.expect("ipv6 declares min_colons");
            let mut any = false;
            for m in rule.regex().find_iter(Input::new(&hay)) {
                any = true;
                prop_assert!(has_colon_run(&hay[m.start()..m.end()], n),
                    "match {:?} fails the precondition", String::from_utf8_lossy(&hay[m.range()]));
            }
            if !has_colon_run(&hay, n) {
                prop_assert!(!any);
            }
        }
    }

    /// The built-in PII engine, and the same rules with every pattern
    /// prefixed by the no-op `(?:)`: same regexes, but no run shapes (so
    /// the declared filters and the gate decide, as before shapes).
    fn shaped_and_plain() -> &'static (Engine, Engine) {
        static ENGINES: std::sync::OnceLock<(Engine, Engine)> = std::sync::OnceLock::new();
        ENGINES.get_or_init(build_shaped_and_plain)
    }

    fn build_shaped_and_plain() -> (Engine, Engine) {
        // (The ipv4 scanner is tied to its exact pattern: the plain engine
        // runs the regex, which the scanner equals. Without `min_colons`,
        // every colon next to a hex digit wakes ipv6 and no window is
        // skipped.)
        let plain_toml = BUILTIN_PII
            .replace("regex = '''", "regex = '''(?:)")
            .replace("scanner = \"ipv4\"\n", "")
            .replace("min_colons = 6\n", "");
        let shaped = load("pii.toml", BUILTIN_PII, Category::Pii, false).expect("pii rules load");
        let plain = load("pii.toml", &plain_toml, Category::Pii, false).expect("plain rules load");
        assert!(
            plain
                .iter()
                .all(|r| crate::digits::Shape::for_pattern(&r.pattern).is_none()
                    && r.min_colons.is_none())
        );
        (
            Engine::new(shaped, vec![]).expect("engine"),
            Engine::new(plain, vec![]).expect("engine"),
        )
    }

    /// The built-in PII engine with its rule bit sets, and the same engine
    /// testing each digit rule's filters in a loop.
    fn sets_and_loop() -> &'static (Engine, Engine) {
        static ENGINES: std::sync::OnceLock<(Engine, Engine)> = std::sync::OnceLock::new();
        ENGINES.get_or_init(|| {
            let rules = || load("pii.toml", BUILTIN_PII, Category::Pii, false).expect("pii rules");
            let with_sets = Engine::new(rules(), vec![]).expect("engine");
            assert!(with_sets.rule_sets.is_some());
            let mut with_loop = Engine::new(rules(), vec![]).expect("engine");
            with_loop.rule_sets = None;
            (with_sets, with_loop)
        })
    }

    /// A raw match as a comparable tuple: full span, secret span, label, valid.
    type RawKey = ((usize, usize), (usize, usize), u32, bool);

    fn raws(e: &Engine, hay: &[u8], from: usize) -> Vec<RawKey> {
        let mut v: Vec<_> = e
            .detect(hay, from)
            .into_iter()
            .map(|r| (r.full, r.span, r.label, r.valid))
            .collect();
        v.sort_unstable();
        v
    }

    /// Whether engines `a` and `b` report the same raw matches on `parts`
    /// joined by spaces, from its start and from `from`.
    fn same_raws(
        a: &Engine,
        b: &Engine,
        parts: &[Vec<u8>],
        from: usize,
    ) -> Result<(), TestCaseError> {
        let hay = parts.join(&b" "[..]);
        for from in [0, from.min(hay.len())] {
            prop_assert_eq!(raws(a, &hay, from), raws(b, &hay, from));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

        /// Run shapes change no raw match: the engine with them reports
        /// exactly what the engine without them reports, from any start.
        #[test]
        fn shapes_change_no_match(
            parts in prop::collection::vec(crate::digits::tests::digit_soup(), 1..6),
            from in 0usize..400,
        ) {
            let (shaped, plain) = shaped_and_plain();
            same_raws(shaped, plain, &parts, from)?;
        }

        /// Nor does skipping colons whose run of hex digits, ':' and '.'
        /// fails ipv6's `min_colons`: same raw matches as waking ipv6 at
        /// every colon.
        #[test]
        fn colon_runs_change_no_match(
            parts in prop::collection::vec(colon_soup(), 1..4),
            from in 0usize..200,
        ) {
            let (shaped, plain) = shaped_and_plain();
            same_raws(shaped, plain, &parts, from)?;
        }

        /// Selecting a run's digit rules with bit sets wakes the same rules
        /// as testing each rule's filters in turn.
        #[test]
        fn rule_sets_select_what_the_loop_selects(
            parts in prop::collection::vec(crate::digits::tests::digit_soup(), 1..6),
            from in 0usize..400,
        ) {
            let (with_sets, with_loop) = sets_and_loop();
            same_raws(with_sets, with_loop, &parts, from)?;
        }
    }
}
