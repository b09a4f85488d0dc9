//! Quick throughput loop: `cargo run --release -p airlock-scrub --example speed -- FILE [REPS]`
//! builds each scrubber once, then prints the best of REPS (default 5)
//! `redact_bytes` timings of FILE in MB/s (wall and on-CPU time): all rules,
//! secrets only, PII only. `SPEED_ONLY=all|secrets|pii` picks one.
use airlock_scrub::{Category, Scrubber};
use std::time::Instant;

/// Nanoseconds this thread has spent on a CPU (Linux schedstat), so that a
/// shared, loaded machine disturbs the figure less than wall time does.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn best(s: &Scrubber, data: &[u8], reps: usize) -> (f64, f64, u64) {
    let (mut wall, mut cpu) = (f64::MAX, f64::MAX);
    let mut n = 0;
    for _ in 0..reps {
        let c = cpu_ns();
        let t = Instant::now();
        let r = s.redact_bytes(data);
        wall = wall.min(t.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (c, cpu_ns()) {
            cpu = cpu.min((b - a) as f64 / 1e9);
        }
        n = r.stats.total();
    }
    let mb = data.len() as f64 / 1e6;
    (mb / wall, mb / cpu, n)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: speed FILE [REPS]");
    let reps: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
    let data = std::fs::read(&path).expect("read FILE");
    let which = std::env::var("SPEED_ONLY").unwrap_or_default();
    let all = [
        ("all rules", None),
        ("secrets only", Some(Category::Secret)),
        ("pii only", Some(Category::Pii)),
    ];
    for (name, cat) in all {
        if !which.is_empty() && !name.starts_with(which.as_str()) {
            continue;
        }
        let s = match cat {
            None => Scrubber::builtin(),
            Some(c) => Scrubber::builder().only(c).build().expect("build"),
        };
        let (wall, cpu, n) = best(&s, &data, reps);
        println!("{name}: {wall:.1} MB/s wall, {cpu:.1} MB/s on-CPU ({n} findings)");
    }
}
