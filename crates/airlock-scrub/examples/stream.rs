//! `airlock scan FILE` without the binary: the built-in scrubber streams
//! FILE in 4 MiB reads (`STREAM_CHUNK` bytes if set) to stdout, with the
//! binary's allocator. Profile it
//! under valgrind (`valgrind --tool=cachegrind --cache-sim=no`) to see what
//! a one-shot scan pays, start-up and first-use compiles included, without
//! building the whole binary:
//! `cargo build --release -p airlock-scrub --example stream`.
//! `STREAM_REPS=N` scans FILE N times with one scrubber: the difference
//! between N = 2 and N = 1 is what a scan costs once warm, the rest of
//! N = 1 what it pays once.
use airlock_scrub::Scrubber;
use std::io::{Read, Write};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let path = std::env::args().nth(1).expect("usage: stream FILE");
    let reps: usize = std::env::var("STREAM_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let scrubber = Scrubber::builtin();
    for _ in 0..reps {
        once(&scrubber, &path);
    }
}

fn once(scrubber: &Scrubber, path: &str) {
    let mut file = std::fs::File::open(path).expect("open FILE");
    let mut stream = scrubber.stream();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let chunk: usize = std::env::var("STREAM_CHUNK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4 << 20);
    let mut buf = vec![0u8; chunk];
    loop {
        let n = file.read(&mut buf).expect("read FILE");
        if n == 0 {
            break;
        }
        let emitted = stream.push(&buf[..n]).expect("scrub");
        out.write_all(&emitted).expect("write");
    }
    let (tail, stats) = stream.finish().expect("scrub");
    out.write_all(&tail).expect("write");
    out.flush().expect("write");
    eprintln!("{} findings", stats.total());
}
