//! First-use compile cost of the built-in rules:
//! `cargo run --release -p airlock-scrub --example compile_cost [TOP]`.
//!
//! Rules compile their regex lazily, and a large input wakes nearly all of
//! them, so a short `airlock scan` pays this once. Prints the time to
//! compile every rule's regex as the engine does (meta regex, bytes,
//! Unicode off), the share of it the engine still needs (rules without a
//! hand-written `scanner`, which never compile theirs), and the TOP
//! (default 10) slowest of those.
use airlock_scrub::Scrubber;
use regex_automata::meta;
use regex_automata::util::syntax;
use std::collections::HashSet;
use std::time::Instant;

/// Ids of the built-in rules that name a `scanner` (read from the rule
/// files, as the crate does not expose it).
fn scanner_rules() -> HashSet<String> {
    let mut ids = HashSet::new();
    for text in [
        include_str!("../rules/secrets.toml"),
        include_str!("../rules/pii.toml"),
    ] {
        let file: toml::Table = toml::from_str(text).expect("built-in rule file parses");
        let rules = file.get("rule").and_then(|r| r.as_array());
        for r in rules.into_iter().flatten() {
            if r.get("scanner").is_some()
                && let Some(id) = r.get("id").and_then(|i| i.as_str())
            {
                ids.insert(id.to_string());
            }
        }
    }
    ids
}

fn main() {
    let top: usize = std::env::args()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or(10);
    let rules = Scrubber::builtin().rules();
    let scanned = scanner_rules();
    let mut times = Vec::new();
    let (mut all, mut needed) = (0.0, 0.0);
    for r in &rules {
        let t = Instant::now();
        let re = meta::Regex::builder()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .configure(meta::Config::new().utf8_empty(false))
            .build(&r.pattern)
            .expect("built-in pattern compiles");
        let secs = t.elapsed().as_secs_f64();
        drop(re);
        all += secs;
        if !scanned.contains(&r.id) {
            needed += secs;
            times.push((secs, r.id.clone()));
        }
    }
    println!(
        "{} rules: {:.1} ms to compile all; {:.1} ms for the {} the engine compiles ({} use a scanner)",
        rules.len(),
        all * 1e3,
        needed * 1e3,
        times.len(),
        rules.len() - times.len()
    );
    times.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (secs, id) in times.iter().take(top) {
        println!("  {:6.2} ms  {id}", secs * 1e3);
    }
}
