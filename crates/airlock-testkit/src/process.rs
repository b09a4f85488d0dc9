//! Running a binary under test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills and reaps the child when dropped.
#[derive(Debug)]
pub struct ProcessGuard {
    /// The child process.
    pub child: Child,
    /// Everything it printed on stderr so far is collected here on drop.
    pub stderr_path: Option<std::path::PathBuf>,
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawn `cmd` with piped stdout and return the first stdout line that
/// contains `marker`, waiting at most `timeout`. Stderr goes to the test's
/// stderr. Panics (failing the test) when the line does not come.
pub fn spawn_and_read_line(
    mut cmd: Command,
    marker: &str,
    timeout: Duration,
) -> (ProcessGuard, String) {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .stdin(Stdio::null());
    let mut child = cmd.spawn().expect("spawn binary under test");
    let stdout = child.stdout.take().expect("invariant: stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let marker_owned = marker.to_owned();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && line.contains(&marker_owned) {
                let _ = tx.send(line);
                sent = true;
            }
        }
    });
    let guard = ProcessGuard {
        child,
        stderr_path: None,
    };
    let deadline = Instant::now() + timeout;
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(line) => (guard, line),
        Err(_) => panic!("binary did not print a line containing {marker:?} within {timeout:?}"),
    }
}
