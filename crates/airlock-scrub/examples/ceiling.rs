//! Benchmark reference: the `regex` crate's engine (`regex-automata` meta)
//! alone on the built-in rules' patterns, with no anchors, windows,
//! validation or masking: each pattern compiled on its own and run over the
//! whole input (`find_iter`), one pass per rule. `ceiling FILE` prints MB/s
//! (input size over the total time, compile included), the match count and
//! the slowest patterns.
//!
//! One multi-pattern regex over all ~290 patterns, the obvious one-pass
//! alternative, is not usable: its NFA exceeds the default 10 MB size limit,
//! and with the limit raised, 1 MB of the benchmark corpus took 267 s and
//! 5.3 GB of memory (the lazy DFA gives up and the PikeVM runs).
use airlock_scrub::Scrubber;
use regex_automata::meta;
use regex_automata::util::syntax;
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("usage: ceiling FILE");
    let data = std::fs::read(&path).expect("read");
    let rules = Scrubber::builtin().rules();
    let t = Instant::now();
    let mut n = 0;
    let mut slow = Vec::new();
    for r in &rules {
        let t1 = Instant::now();
        let re = meta::Regex::builder()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .configure(meta::Config::new().utf8_empty(false))
            .build(&r.pattern)
            .expect("pattern compiles");
        n += re.find_iter(&data).count();
        slow.push((t1.elapsed().as_secs_f64(), r.id.clone()));
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:.1} MB/s {n} matches {secs:.3}s ({} patterns, one pass each)",
        data.len() as f64 / secs / 1e6,
        rules.len()
    );
    slow.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (s, id) in slow.iter().take(5) {
        println!("  {s:.3}s {id}");
    }
}
