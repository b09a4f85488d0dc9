//! Benchmark ceiling: the same patterns as the built-in rules, compiled into
//! one multi-pattern `regex-automata` meta regex (the engine under the
//! `regex` crate) and run once over the input, with no anchors, windows,
//! validation or masking. `ceiling FILE` prints MB/s and the match count.
use airlock_scrub::Scrubber;
use regex_automata::meta;
use regex_automata::util::syntax;
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("usage: ceiling FILE");
    let data = std::fs::read(&path).expect("read");
    let patterns: Vec<String> = Scrubber::builtin()
        .rules()
        .into_iter()
        .map(|r| r.pattern)
        .collect();
    let re = meta::Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(meta::Config::new().utf8_empty(false))
        .build_many(&patterns)
        .expect("patterns compile");
    let t = Instant::now();
    let n = re.find_iter(&data).count();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:.1} MB/s {n} matches {secs:.3}s",
        data.len() as f64 / secs / 1e6
    );
}
