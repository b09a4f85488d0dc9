//! The stream scrubber on arbitrary bytes and arbitrary chunkings: never
//! panics, and emits exactly what whole-input redaction emits. A registered
//! secret never survives in plain form.
#![no_main]

use airlock_scrub::Scrubber;
use airlock_types::Secret;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const KNOWN: &str = "alh_fuzz-known-secret";

fn scrubber() -> &'static Scrubber {
    static S: OnceLock<Scrubber> = OnceLock::new();
    S.get_or_init(|| {
        Scrubber::builder()
            .known_secret("handle", &Secret::new(KNOWN.to_string()))
            .build()
            .expect("invariant: built-in rules load")
    })
}

fuzz_target!(|data: &[u8]| {
    // First two bytes choose the chunk sizes; the rest is the input.
    let (a, b, input) = match data {
        [a, b, rest @ ..] => (usize::from(*a) + 1, usize::from(*b) * 97 + 1, rest),
        _ => (1, 1, data),
    };
    let s = scrubber();
    let whole = s.redact_bytes(input).bytes;
    let mut st = s.stream();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut turn = false;
    while pos < input.len() {
        let n = if turn { a } else { b }.min(input.len() - pos);
        out.extend(st.push(&input[pos..pos + n]).expect("stream push"));
        pos += n;
        turn = !turn;
    }
    let (tail, _) = st.finish().expect("stream finish");
    out.extend(tail);
    assert!(out == whole, "chunked output differs from whole-input output");
    assert!(!out.windows(KNOWN.len()).any(|w| w == KNOWN.as_bytes()), "known secret survived");
    let _ = s.scan_bytes(input);
});
