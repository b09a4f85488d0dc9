//! Exactness oracle: `dump FILE` prints every finding of the built-in rules
//! (all rules, secrets only, PII only) as `set start end category type rule`
//! lines, and writes each set's redacted output to `FILE.<set>.redacted`.
//! Diff two builds' outputs over the same inputs to prove a change to the
//! engine kept its findings (see `bench/scan/oracle.sh`).
use airlock_scrub::{Category, Scrubber};
use std::io::Write;

fn main() {
    let path = std::env::args().nth(1).expect("usage: dump FILE");
    let data = std::fs::read(&path).expect("read FILE");
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let sets = [
        ("all", None),
        ("secret", Some(Category::Secret)),
        ("pii", Some(Category::Pii)),
    ];
    for (name, only) in sets {
        let s = match only {
            None => Scrubber::builtin(),
            Some(c) => Scrubber::builder().only(c).build().expect("build"),
        };
        for f in s.scan_bytes(&data) {
            writeln!(
                out,
                "{name} {} {} {:?} {} {}",
                f.start, f.end, f.category, f.kind, f.rule
            )
            .expect("write");
        }
        let r = s.redact_bytes(&data);
        std::fs::write(format!("{path}.{name}.redacted"), &r.bytes).expect("write redacted");
    }
}
