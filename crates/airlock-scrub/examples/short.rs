//! Per-call cost on short strings, the way the MCP gateway scrubs each
//! JSON string of a tool result: `short KIND N` builds the built-in
//! scrubber once, then calls `Scrubber::scan` N times on one string of
//! KIND (`path`, `sentence`, `number`, `uuid`, `empty`). Run under
//! valgrind by `bench/scan/short.sh`, which subtracts N=1 from N=1001.
use airlock_scrub::Scrubber;
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "sentence".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let text = match kind.as_str() {
        "path" => "/home/agent/projects/airlock/crates/airlock-scrub/src/engine.rs",
        "sentence" => "The build finished without errors and all tests passed.",
        "number" => "1732541923",
        "uuid" => "c019c266-182d-4390-aab2-66ae710d9439",
        "empty" => "",
        other => panic!("unknown kind {other:?}"),
    };
    let s = Scrubber::builtin();
    let mut found = 0;
    for _ in 0..n {
        found += black_box(s.scan(black_box(text))).len();
    }
    println!("{kind}: {found} findings in {n} calls");
}
