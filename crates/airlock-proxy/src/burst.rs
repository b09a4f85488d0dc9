//! Aggregation of repeated identical failure records.
//!
//! An agent can open thousands of malformed connections a second; one
//! audit record each floods the log (and its fsyncs) without telling anyone
//! more. A failure (not a decision: every decision keeps its own record) is
//! keyed by everything the record says — action, resource, reason and
//! detail — and the proxy serves one run, so identical means identical for
//! that run. The first failure of a key is recorded at once and opens a
//! one-second window; the identical failures inside that window are only
//! counted, and the count is recorded as one more record (detail
//! `repeated = N`) when the window has passed (flushed by a ticker, by the
//! next failure, by a drain, or when the proxy is dropped). Different keys are
//! never merged, and the client of every refused connection is still
//! answered as before: only the audit records are aggregated.

use airlock_types::Reason;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long identical failures are counted into one record.
pub(crate) const WINDOW: Duration = Duration::from_secs(1);

/// Most keys tracked at once; past it, failures are recorded one by one
/// (never dropped).
const MAX_KEYS: usize = 4096;

/// What makes two failure records identical.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) action: airlock_types::Action,
    pub(crate) resource: String,
    pub(crate) reason: Reason,
    pub(crate) detail: String,
}

#[derive(Debug)]
struct Window {
    opened: Instant,
    repeats: u64,
}

/// Open windows, per key.
#[derive(Debug, Default)]
pub(crate) struct Bursts {
    open: Mutex<HashMap<Key, Window>>,
}

/// What to do with one failure.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Record it now.
    Record,
    /// Counted into an open window: record nothing now.
    Counted,
}

impl Bursts {
    /// Admit one failure at `now`. Also returns the windows that have
    /// closed by then with repeats to record.
    pub(crate) fn admit(&self, key: Key, now: Instant) -> (Admit, Vec<(Key, u64)>) {
        let Ok(mut open) = self.open.lock() else {
            // A poisoned lock must not silence a record.
            return (Admit::Record, Vec::new());
        };
        let closed = take_closed(&mut open, now);
        if let Some(w) = open.get_mut(&key) {
            w.repeats += 1;
            return (Admit::Counted, closed);
        }
        if open.len() < MAX_KEYS {
            open.insert(
                key,
                Window {
                    opened: now,
                    repeats: 0,
                },
            );
        }
        (Admit::Record, closed)
    }

    /// Windows closed by `now` (all of them with `all`) that counted
    /// repeats, removed.
    pub(crate) fn flush(&self, now: Instant, all: bool) -> Vec<(Key, u64)> {
        let Ok(mut open) = self.open.lock() else {
            return Vec::new();
        };
        if all {
            return open
                .drain()
                .filter(|(_, w)| w.repeats > 0)
                .map(|(k, w)| (k, w.repeats))
                .collect();
        }
        take_closed(&mut open, now)
    }
}

fn take_closed(open: &mut HashMap<Key, Window>, now: Instant) -> Vec<(Key, u64)> {
    let mut out = Vec::new();
    open.retain(|k, w| {
        if now.saturating_duration_since(w.opened) < WINDOW {
            return true;
        }
        if w.repeats > 0 {
            out.push((k.clone(), w.repeats));
        }
        false
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(detail: &str) -> Key {
        Key {
            action: airlock_types::Action::EgressConnection,
            resource: "client 127.0.0.1".into(),
            reason: Reason::MalformedRequest,
            detail: detail.into(),
        }
    }

    #[test]
    fn first_is_recorded_repeats_counted_then_reported_once() {
        let b = Bursts::default();
        let t0 = Instant::now();
        assert_eq!(b.admit(key("a"), t0), (Admit::Record, vec![]));
        for i in 1..100u64 {
            let t = t0 + Duration::from_millis(i);
            assert_eq!(b.admit(key("a"), t), (Admit::Counted, vec![]));
        }
        // Another detail is another key.
        assert_eq!(b.admit(key("b"), t0), (Admit::Record, vec![]));
        assert_eq!(b.flush(t0 + Duration::from_millis(500), false), vec![]);
        let closed = b.flush(t0 + WINDOW, false);
        assert_eq!(closed, vec![(key("a"), 99)]);
        // The window is gone: the next one is recorded at once again.
        assert_eq!(b.admit(key("a"), t0 + WINDOW), (Admit::Record, vec![]));
        assert_eq!(b.flush(t0, true), vec![]);
    }
}
