//! Scratch timing probe: `cargo run --release -p airlock-scrub --example probe -- FILE`
//! prints the time to redact FILE with the built-in rules; with
//! `PROBE_RULES=1` also each secret rule alone (on top of the PII rules),
//! slowest first.
use airlock_scrub::{Category, Scrubber};
use std::time::Instant;

fn time(s: &Scrubber, data: &[u8]) -> (f64, u64) {
    let t = Instant::now();
    let r = s.redact_bytes(data);
    (t.elapsed().as_secs_f64(), r.stats.total())
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: probe FILE");
    let data = std::fs::read(&path).expect("read");
    let (secs, n) = time(&Scrubber::builtin(), &data);
    println!(
        "all rules: {:.1} MB/s ({n} findings, {secs:.3}s)",
        data.len() as f64 / secs / 1e6
    );
    for (name, cat) in [
        ("secrets only", Category::Secret),
        ("pii only", Category::Pii),
    ] {
        let s = Scrubber::builder().only(cat).build().expect("build");
        let (secs, n) = time(&s, &data);
        println!(
            "{name}: {:.1} MB/s ({n} findings)",
            data.len() as f64 / secs / 1e6
        );
        let t = Instant::now();
        let f = s.scan_bytes(&data);
        println!(
            "  scan only: {:.1} MB/s ({} findings)",
            data.len() as f64 / t.elapsed().as_secs_f64() / 1e6,
            f.len()
        );
    }
    if std::env::var_os("PROBE_RULES").is_none() {
        return;
    }
    let base = Scrubber::builder()
        .only(Category::Pii)
        .build()
        .expect("pii");
    let (b, _) = time(&base, &data);
    println!("pii only: {:.3}s", b);
    let text = include_str!("../rules/secrets.toml");
    let mut rows = Vec::new();
    for chunk in text.split("[[rule]]").skip(1) {
        let rule = format!("[[rule]]{chunk}");
        let id = chunk
            .lines()
            .find(|l| l.starts_with("id = "))
            .unwrap_or("?")
            .to_string();
        let s = Scrubber::builder()
            .only(Category::Pii)
            .rules_toml("one.toml", &rule, Category::Pii)
            .build()
            .expect("rule");
        let (t, _) = time(&s, &data);
        rows.push((t - b, id));
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (t, id) in rows.iter().take(12) {
        println!("{t:>8.3}s  {id}");
    }
}
