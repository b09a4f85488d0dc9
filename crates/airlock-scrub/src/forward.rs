//! Forward-only matching for rules the engine only ever tries anchored.
//!
//! A keyword-led rule (`Rule::anchored_only`) is only asked "does a match
//! start exactly at `p`, where does it end, and where is its secret
//! group?". A full `meta::Regex` answers that too, but it also builds a
//! reverse NFA, a reverse lazy DFA, a prefilter and maybe a one-pass DFA,
//! none of which an anchored search needs, and each search pays its
//! dispatch. [`Forward`] compiles one Thompson NFA (the same syntax and
//! NFA settings as `rules::build_regex`) and drives:
//!
//! - a forward lazy DFA to find whether and where the match ends;
//! - a bounded backtracker (or, for spans too long for it, a PikeVM) over
//!   the same NFA for the secret group, run only on the match found;
//! - the same backtracker/PikeVM over the whole bounded range when the lazy
//!   DFA gives up (cache thrashing, or a byte it must quit on): a give-up
//!   costs time, never a match.
//!
//! All three implement the same leftmost-first semantics over the same NFA,
//! so the answer is the one `meta::Regex::search_captures` gives with
//! `Input::new(hay).range(p..).anchored(Anchored::Yes)`; the differential
//! test below checks this for every built-in anchored rule.

use regex_automata::dfa::onepass;
use regex_automata::nfa::thompson::{self, NFA, WhichCaptures, backtrack, pikevm};
use regex_automata::util::captures::Captures;
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input, hybrid};
use std::sync::{Arc, OnceLock};

/// The compiled engines of one rule, shared with the cache pool's
/// constructor.
#[derive(Debug)]
struct Engines {
    /// `None` when the lazy DFA cannot be built (its cache capacity cannot
    /// hold the few states it needs): every search then takes the fallback.
    dfa: Option<hybrid::dfa::DFA>,
    /// Built at the first capture search (most rules tried at a keyword
    /// never match, and building it was ≈ 45 % of a rule's compile).
    /// `None` when the pattern is not one-pass (or its one-pass DFA would
    /// be too big): capture searches then take the backtracker.
    onepass: OnceLock<Option<onepass::DFA>>,
    /// The NFA the one-pass DFA is built from (shared, cheap to clone).
    nfa: NFA,
    /// Whether capture searches may use the one-pass DFA (false only in
    /// tests, to exercise the backtracker path).
    use_onepass: bool,
    backtrack: backtrack::BoundedBacktracker,
    pikevm: pikevm::PikeVM,
    /// Whether capture searches may use the backtracker (false only in
    /// tests, to exercise the PikeVM path).
    use_backtrack: bool,
}

impl Engines {
    /// The one-pass DFA, built on first use. Most anchored rules are
    /// one-pass (at each byte at most one way on): their capture searches
    /// then run in one pass over the match with no visited set to clear,
    /// which the backtracker clears on every search (its size: the NFA's
    /// states times the span).
    fn onepass(&self) -> Option<&onepass::DFA> {
        self.onepass
            .get_or_init(|| {
                if !self.use_onepass {
                    return None;
                }
                onepass::Builder::new()
                    .configure(
                        onepass::Config::new()
                            .match_kind(regex_automata::MatchKind::LeftmostFirst)
                            .size_limit(Some(ONEPASS_LIMIT)),
                    )
                    .build_from_nfa(self.nfa.clone())
                    .ok()
            })
            .as_ref()
    }
}

/// Per-thread mutable search state of one rule's engines.
#[derive(Debug)]
struct Caches {
    dfa: Option<hybrid::dfa::Cache>,
    /// Created at the first capture search, with the one-pass DFA.
    onepass: Option<onepass::Cache>,
    backtrack: backtrack::Cache,
    /// Created on first use: most rules never need the PikeVM.
    pikevm: Option<pikevm::Cache>,
    caps: Captures,
}

/// The constructor the cache pool calls for each new thread's caches.
type CacheFn =
    Box<dyn Fn() -> Caches + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>;

/// A rule's forward-only anchored matcher; `Send + Sync` (caches come from
/// a thread-safe pool, as in `meta::Regex`).
#[derive(Debug)]
pub(crate) struct Forward {
    how: How,
}

#[derive(Debug)]
enum How {
    /// The rule's whole pattern, compiled.
    Whole {
        engines: Arc<Engines>,
        pool: Pool<Caches, CacheFn>,
    },
    /// A `context` rule (`(?i:name|…)` then a tail, see
    /// [`crate::pattern::context_pattern`]): its names, lower-cased, in
    /// order, and the matcher of its tail, shared by every rule with the
    /// same secret pattern.
    ///
    /// Leftmost-first, `(?:n1|n2|…)T` anchored at `p` matches through the
    /// first name that occurs at `p` and after which `T` matches, with
    /// `T`'s own leftmost-first match; so does trying the names in turn.
    /// Compiled whole, the names' letters split the byte classes of the
    /// tail too (66 to 89 classes instead of ≈ 20), and the lazy DFA
    /// determinizes a transition for each class a value's bytes meet at
    /// each repetition count: a third of a scan's first-use cost.
    Named {
        names: Vec<Vec<u8>>,
        tail: Arc<Forward>,
    },
}

/// An anchored match: the whole match and the secret group's span (the
/// whole match when the rule has no group or the group did not take part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AnchoredMatch {
    pub full: (usize, usize),
    pub span: (usize, usize),
}

/// Lazy DFA cache capacity, as `meta::Regex` uses by default.
const DFA_CACHE: usize = 2 * (1 << 20);
/// NFA size limit, as `meta::Regex` uses by default.
const NFA_LIMIT: usize = 10 * (1 << 20);
/// One-pass DFA size limit, as `meta::Regex` uses by default.
const ONEPASS_LIMIT: usize = 1 << 20;

impl Forward {
    /// Compile `pattern` the way `rules::build_regex` does (bytes, Unicode
    /// off, no UTF-8 requirement, leftmost-first, all capture groups).
    pub(crate) fn build(pattern: &str) -> Result<Forward, String> {
        Forward::build_with(&crate::syntax::parse(pattern)?, true, true, true)
    }

    /// [`Forward::build`] from the pattern already parsed (a rule keeps
    /// its parse from load, which saves parsing it again here).
    pub(crate) fn build_from_hir(hir: &regex_syntax::hir::Hir) -> Result<Forward, String> {
        Forward::build_with(hir, true, true, true)
    }

    /// [`Forward::build`], optionally without the lazy DFA (every search
    /// takes the give-up fallback), the one-pass DFA (capture searches take
    /// the backtracker) or the backtracker (capture searches take the
    /// PikeVM): tests compare each path against the regex.
    fn build_with(
        hir: &regex_syntax::hir::Hir,
        use_dfa: bool,
        use_onepass: bool,
        use_backtrack: bool,
    ) -> Result<Forward, String> {
        let nfa: NFA = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .utf8(false)
                    .shrink(false)
                    .nfa_size_limit(Some(NFA_LIMIT))
                    .which_captures(WhichCaptures::All),
            )
            .build_from_hir(hir)
            .map_err(|e| format!("regex does not compile: {e}"))?;
        let dfa = hybrid::dfa::Builder::new()
            .configure(
                hybrid::dfa::DFA::config()
                    .match_kind(regex_automata::MatchKind::LeftmostFirst)
                    .cache_capacity(DFA_CACHE)
                    // Build even if the pattern has a Unicode word boundary:
                    // the DFA then quits on non-ASCII bytes and the search
                    // falls back.
                    .unicode_word_boundary(true)
                    // Give up rather than thrash (as meta does): the
                    // fallback is bounded by the rule's `max_len`.
                    .minimum_cache_clear_count(Some(3))
                    .minimum_bytes_per_state(Some(10)),
            )
            .build_from_nfa(nfa.clone())
            .ok()
            .filter(|_| use_dfa);
        let backtrack = backtrack::BoundedBacktracker::new_from_nfa(nfa.clone())
            .map_err(|e| format!("backtracker does not build: {e}"))?;
        let pikevm = pikevm::PikeVM::new_from_nfa(nfa.clone())
            .map_err(|e| format!("pikevm does not build: {e}"))?;
        let engines = Arc::new(Engines {
            dfa,
            onepass: OnceLock::new(),
            nfa,
            use_onepass,
            backtrack,
            pikevm,
            use_backtrack,
        });
        let shared = Arc::clone(&engines);
        let create: CacheFn = Box::new(move || Caches {
            dfa: shared.dfa.as_ref().map(hybrid::dfa::DFA::create_cache),
            onepass: None,
            backtrack: shared.backtrack.create_cache(),
            pikevm: None,
            caps: shared.pikevm.create_captures(),
        });
        Ok(Forward {
            how: How::Whole {
                engines,
                pool: Pool::new(create),
            },
        })
    }

    /// The matcher of a `context` rule with these names and secret
    /// pattern: the same answers as [`Forward::build`] of
    /// [`crate::pattern::context_pattern`]`(names, secret)` (a test holds
    /// them equal for every built-in rule). Names that are not all ASCII
    /// (case-insensitive matching is then more than ASCII folding) compile
    /// with the tail as one pattern.
    pub(crate) fn context(names: &[String], secret: &str) -> Result<Forward, String> {
        if names.is_empty() || names.iter().any(|n| n.is_empty() || !n.is_ascii()) {
            return Forward::build(&crate::pattern::context_pattern(names, secret));
        }
        type Tails = std::collections::HashMap<String, Arc<Forward>>;
        static TAILS: OnceLock<std::sync::Mutex<Tails>> = OnceLock::new();
        let pattern = crate::pattern::context_tail(secret);
        let mut tails = TAILS
            .get_or_init(Default::default)
            .lock()
            .map_err(|_| "matcher cache poisoned".to_string())?;
        let tail = match tails.get(&pattern) {
            Some(t) => Arc::clone(t),
            None => {
                let t = Arc::new(Forward::build(&pattern)?);
                tails.insert(pattern, Arc::clone(&t));
                t
            }
        };
        Ok(Forward {
            how: How::Named {
                names: names
                    .iter()
                    .map(|n| n.to_ascii_lowercase().into_bytes())
                    .collect(),
                tail,
            },
        })
    }

    /// The match that starts exactly at `p`, if any, with the span of
    /// capture group `group` (when given). `max_len` must bound the
    /// length of every match (the rule's `max_len`): the search never reads
    /// past `p + max_len` except as look-ahead, which keeps a try bounded.
    /// Same answer as a leftmost-first anchored search of `hay[p..]`.
    pub(crate) fn find_at(
        &self,
        hay: &[u8],
        p: usize,
        max_len: usize,
        group: Option<usize>,
    ) -> Option<AnchoredMatch> {
        if p > hay.len() {
            return None;
        }
        let end = p.saturating_add(max_len).min(hay.len());
        let (full, span) = self.find_until(hay, p, end, group)?;
        Some(AnchoredMatch {
            full,
            span: span.unwrap_or(full),
        })
    }

    /// [`Forward::find_at`] with the search bounded by `end`: the whole
    /// match, and the group's span when it took part.
    #[allow(clippy::type_complexity)]
    fn find_until(
        &self,
        hay: &[u8],
        p: usize,
        end: usize,
        group: Option<usize>,
    ) -> Option<((usize, usize), Option<(usize, usize)>)> {
        let (engines, pool) = match &self.how {
            How::Whole { engines, pool } => (engines, pool),
            How::Named { names, tail } => {
                return names.iter().find_map(|name| {
                    let after = p + name.len();
                    if after > end || !hay[p..after].eq_ignore_ascii_case(name) {
                        return None;
                    }
                    let (full, span) = tail.find_until(hay, after, end, group)?;
                    Some(((p, full.1), span))
                });
            }
        };
        let input = Input::new(hay).range(p..end).anchored(Anchored::Yes);
        let mut guard = pool.get();
        let caches: &mut Caches = &mut guard;
        let dfa_end = match (&engines.dfa, caches.dfa.as_mut()) {
            (Some(dfa), Some(cache)) => match dfa.try_search_fwd(cache, &input) {
                Ok(None) => return None,
                Ok(Some(hm)) => Some(hm.offset()),
                Err(_) => None,
            },
            _ => None,
        };
        match (dfa_end, group) {
            // No group: the DFA's answer is the whole answer.
            (Some(e), None) => Some(((p, e), None)),
            // The group, from a capture search over the match alone (a
            // leftmost-first match is still the first accepting path when
            // the range ends where it ends; look-around sees the whole
            // haystack either way).
            (Some(e), Some(g)) => {
                let input = input.range(p..e);
                let span = captures(engines, caches, &input)
                    .then(|| caches.caps.get_group(g))
                    .flatten()
                    .map(|s| (s.start, s.end));
                Some(((p, e), span))
            }
            // The DFA gave up (or was not built): the capture engines
            // answer the whole question.
            (None, _) => {
                if !captures(engines, caches, &input) {
                    return None;
                }
                let m = caches.caps.get_match()?;
                let span = group
                    .and_then(|g| caches.caps.get_group(g))
                    .map(|s| (s.start, s.end));
                Some(((m.start(), m.end()), span))
            }
        }
    }
}

/// Run a capture search over `input` (anchored) into `caches.caps`: the
/// one-pass DFA when the pattern has one, else the bounded backtracker
/// when the span fits its visited set, else the PikeVM (both bounded by
/// span length times NFA size). Whether it matched.
fn captures(e: &Engines, caches: &mut Caches, input: &Input<'_>) -> bool {
    if let Some(dfa) = e.onepass()
        && dfa
            .try_search(
                caches.onepass.get_or_insert_with(|| dfa.create_cache()),
                input,
                &mut caches.caps,
            )
            .is_ok()
    {
        return caches.caps.is_match();
    }
    let span = input.get_span().len();
    if e.use_backtrack
        && span <= e.backtrack.max_haystack_len()
        && e.backtrack
            .try_search(&mut caches.backtrack, input, &mut caches.caps)
            .is_ok()
    {
        return caches.caps.is_match();
    }
    let cache = caches.pikevm.get_or_insert_with(|| e.pikevm.create_cache());
    e.pikevm.search(cache, input, &mut caches.caps);
    caches.caps.is_match()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The ways a [`Forward`] can answer: lazy DFA then one-pass DFA (or,
    /// for a pattern that is not one-pass, the backtracker), lazy DFA then
    /// backtracker, capture engines only (the DFA gave up), PikeVM only.
    pub(crate) fn variants(pattern: &str) -> Vec<Forward> {
        let build = |dfa, op, bt| {
            let hir = crate::syntax::parse(pattern).expect("pattern parses");
            Forward::build_with(&hir, dfa, op, bt).expect("pattern builds")
        };
        vec![
            build(true, true, true),
            build(true, false, true),
            build(false, true, true),
            build(false, false, false),
        ]
    }

    /// What the engine asked a rule's `meta::Regex` before forward
    /// engines: the match anchored at `p` and its group `g`'s span.
    pub(crate) fn reference(
        re: &regex_automata::meta::Regex,
        hay: &[u8],
        p: usize,
        group: Option<usize>,
    ) -> Option<AnchoredMatch> {
        let input = Input::new(hay).range(p..).anchored(Anchored::Yes);
        let m = re.search(&input)?;
        let full = (m.start(), m.end());
        let span = match group {
            Some(g) => {
                let mut caps = re.create_captures();
                re.search_captures(&input, &mut caps);
                caps.get_group(g).map_or(full, |s| (s.start, s.end))
            }
            None => full,
        };
        Some(AnchoredMatch { full, span })
    }

    #[test]
    fn finds_the_match_and_its_group_at_p_only() {
        let pattern = r"(?i:key)[ =]{1,3}(?P<secret>[a-z0-9]{4,8})(?:[^a-z0-9]|$)";
        for f in variants(pattern) {
            let hay = b"xx key = abcd1234!";
            assert_eq!(f.find_at(hay, 0, 40, Some(1)), None);
            assert_eq!(
                f.find_at(hay, 3, 40, Some(1)),
                Some(AnchoredMatch {
                    full: (3, 18),
                    span: (9, 17)
                })
            );
            assert_eq!(f.find_at(hay, 3, 40, None).map(|m| m.span), Some((3, 18)));
            // `$` and `\b`-like look-ahead see past the bounded range.
            assert_eq!(
                f.find_at(b"KEY=abcd", 0, 40, Some(1)).map(|m| m.span),
                Some((4, 8))
            );
            assert_eq!(f.find_at(hay, hay.len(), 40, Some(1)), None);
            assert_eq!(f.find_at(hay, hay.len() + 1, 40, Some(1)), None);
        }
    }
}
