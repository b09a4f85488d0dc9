//! What the tests of `airlock serve` share: running the CLI on a data
//! directory, a free loopback port, waiting for a server to listen.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_airlock");

/// `airlock ARGS` on the data directory `dir`, free of the caller's
/// Airlock environment: (exit code, stdout, stderr).
pub fn airlock(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN)
        .args(args)
        .env("AIRLOCK_DATA_DIR", dir)
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_ENV")
        .env_remove("AIRLOCK_TENANT")
        .output()
        .expect("run airlock");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// Wait (at most 20 s) until something listens on the loopback `port`.
pub fn wait_listening(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
