//! First-use compile cost of the built-in rules:
//! `cargo run --release -p airlock-scrub --example compile_cost [TOP]`.
//!
//! Rules compile lazily, and a large input wakes nearly all of them, so a
//! short `airlock scan` pays this once. Prints the time to compile every
//! rule's regex as a full `meta::Regex` (bytes, Unicode off), the share of
//! it the engine still needs (rules without a hand-written `scanner`, which
//! never compile theirs), how that share splits between the rules the
//! engine only tries anchored and the others, what the anchored-only rules
//! cost with the forward-only matcher the engine now builds for them, and
//! the TOP (default 10) slowest of what the engine compiles.
use airlock_scrub::testing::{builtin_anchored_only, compile_forward, compile_regex};
use std::collections::{HashMap, HashSet};
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

/// Seconds `f` takes.
fn time(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn main() {
    let top: usize = std::env::args()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or(10);
    let rules = airlock_scrub::Scrubber::builtin().rules();
    let scanned = scanner_rules();
    let anchored: HashMap<String, bool> = builtin_anchored_only().into_iter().collect();
    let mut times = Vec::new();
    let (mut all, mut needed, mut other) = (0.0, 0.0, 0.0);
    let (mut anchored_meta, mut anchored_fwd, mut n_anchored) = (0.0, 0.0, 0);
    for r in &rules {
        let compile = || compile_regex(&r.pattern).expect("built-in pattern compiles");
        let secs = time(compile);
        all += secs;
        if scanned.contains(&r.id) {
            continue;
        }
        needed += secs;
        if anchored.get(&r.id).copied().unwrap_or(false) {
            let forward = || compile_forward(&r.pattern).expect("built-in pattern compiles");
            let fwd = time(forward);
            n_anchored += 1;
            anchored_meta += secs;
            anchored_fwd += fwd;
            times.push((fwd, format!("{} (forward)", r.id)));
        } else {
            other += secs;
            times.push((secs, r.id.clone()));
        }
    }
    println!(
        "{} rules: {:.1} ms to compile all as regexes; {:.1} ms for the {} the engine needs ({} use a scanner)",
        rules.len(),
        all * 1e3,
        needed * 1e3,
        times.len(),
        rules.len() - times.len()
    );
    println!(
        "  {n_anchored} anchored-only rules: {:.1} ms as regexes, {:.1} ms forward-only; {} others: {:.1} ms",
        anchored_meta * 1e3,
        anchored_fwd * 1e3,
        times.len() - n_anchored,
        other * 1e3
    );
    println!(
        "  the engine compiles: {:.1} ms (was {:.1} ms)",
        (anchored_fwd + other) * 1e3,
        needed * 1e3
    );
    times.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (secs, id) in times.iter().take(top) {
        println!("  {:6.2} ms  {id}", secs * 1e3);
    }
}
