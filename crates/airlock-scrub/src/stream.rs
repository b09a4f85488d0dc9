//! Streaming: arbitrary chunks in, the same bytes out as scrubbing the whole
//! input at once.
//!
//! The scrubber keeps the unemitted tail of the input. On each step it
//! scans the tail (with already-emitted bytes before it as look-behind
//! context), picks a cut point at least `hold_back` bytes before the end
//! that no match straddles, and emits the masked text up to the cut. Since
//! every match is bounded and depends only on nearby bytes, what lies before
//! the cut can no longer change. `finish` emits the rest.
//!
//! Failure is closed: if the tail grows beyond its limit without a safe cut
//! (only an adversarial chain of overlapping matches can do that), the
//! stream reports an error and emits nothing further.

use crate::engine::Engine;
use crate::error::ScrubError;
use crate::mask::{Masker, Stats};
use crate::scrubber::Scrubber;

/// Minimum new bytes beyond the hold-back before a step runs (amortises the
/// rescan of the held-back tail).
const MIN_STEP: usize = 8 * 1024;

/// See the module docs. Create with [`Scrubber::stream`].
#[derive(Debug)]
pub struct StreamScrubber {
    scrubber: Scrubber,
    masker: Masker,
    /// Context (already emitted) followed by pending bytes.
    buf: Vec<u8>,
    /// Length of the context prefix of `buf`.
    ctx: usize,
    limit: usize,
    failed: bool,
}

// `Scrubber::stream` is defined here, beside what it builds, so that the
// scrubber module does not import this one.
impl Scrubber {
    /// A streaming scrubber: push chunks, get output identical to
    /// [`redact_bytes`](Self::redact_bytes) of the whole input.
    pub fn stream(&self) -> StreamScrubber {
        StreamScrubber::new(self.clone())
    }
}

impl StreamScrubber {
    fn new(scrubber: Scrubber) -> StreamScrubber {
        let hold = scrubber.inner.engine.hold;
        let masker = scrubber.inner.masker(false);
        StreamScrubber {
            scrubber,
            masker,
            buf: Vec::new(),
            ctx: 0,
            limit: (16 * hold).max(4 << 20),
            failed: false,
        }
    }

    /// Bytes a stream holds back at most before the next step.
    pub fn hold_back(&self) -> usize {
        self.scrubber.inner.engine.hold
    }

    /// Feed a chunk; returns the output that is now final (possibly empty).
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, ScrubError> {
        if self.failed {
            return Err(ScrubError::StreamFailed);
        }
        self.buf.extend_from_slice(chunk);
        let pending = self.buf.len() - self.ctx;
        if pending < self.hold_back() + MIN_STEP {
            return Ok(Vec::new());
        }
        self.step(false)
    }

    /// End of input: returns the remaining output and the statistics for the
    /// whole stream.
    pub fn finish(mut self) -> Result<(Vec<u8>, Stats), ScrubError> {
        if self.failed {
            return Err(ScrubError::StreamFailed);
        }
        let out = self.step(true)?;
        Ok((out, self.masker.stats))
    }

    /// Statistics so far.
    pub fn stats(&self) -> &Stats {
        &self.masker.stats
    }

    fn step(&mut self, last: bool) -> Result<Vec<u8>, ScrubError> {
        let inner = &self.scrubber.inner;
        let engine = &inner.engine;
        let len = self.buf.len();
        let from = self.ctx;
        let raws = engine.detect(&self.buf, from);
        let cut = if last {
            len
        } else {
            let c0 = len.saturating_sub(engine.hold).max(from);
            Engine::cut(&raws, c0).max(from)
        };
        if !last && len - cut > self.limit {
            self.failed = true;
            self.buf.clear();
            return Err(ScrubError::StreamLimit {
                held: len - cut,
                limit: self.limit,
            });
        }
        let hits = Engine::merge(&raws, cut);
        let mut out = Vec::new();
        inner.apply(&self.buf, from, cut, &hits, &mut self.masker, &mut out);
        // Keep `context` bytes before the cut as look-behind.
        let keep_from = cut.saturating_sub(engine.context);
        self.buf.drain(..keep_from);
        self.ctx = cut - keep_from;
        Ok(out)
    }
}
