//! Supervising a started run: serve its proxy on the listener the sandbox's
//! init bound, pump (and scrub) its output, enforce the wall and idle
//! timeouts and the write limit, and pass signals on.

use crate::RuntimeError;
use airlock_proxy::Proxy;
use airlock_sandbox::Signal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A writer for one of the run's output streams.
pub(crate) type Out = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// What ended a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// The command exited (or was killed by a signal).
    Exit,
    /// The wall-clock timeout.
    WallTimeout,
    /// No output for the idle timeout.
    IdleTimeout,
    /// It wrote more than `sandbox.max_write_mib`.
    WriteLimit,
}

impl EndedBy {
    /// The name recorded as `ended_by` in `run.end`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndedBy::Exit => "exit",
            EndedBy::WallTimeout => "timeout",
            EndedBy::IdleTimeout => "idle_timeout",
            EndedBy::WriteLimit => "write_limit",
        }
    }
}

pub(crate) struct SuperviseParts<'a> {
    pub(crate) proxy: &'a Proxy,
    pub(crate) listener: std::net::TcpListener,
    pub(crate) stdout: Option<std::process::ChildStdout>,
    pub(crate) stderr: Option<std::process::ChildStderr>,
    pub(crate) scrubber: Option<airlock_scrub::Scrubber>,
    pub(crate) running: airlock_sandbox::Running,
    pub(crate) pid: u32,
    pub(crate) write_watch: airlock_sandbox::WriteWatch,
    pub(crate) out: Out,
    pub(crate) err: Out,
    pub(crate) terminal_out: bool,
    pub(crate) terminal_err: bool,
    pub(crate) wall: Option<Duration>,
    pub(crate) idle: Option<Duration>,
    pub(crate) signals: tokio::sync::mpsc::Receiver<Signal>,
    pub(crate) process_signals: bool,
    pub(crate) notice: Notice,
}

/// Where a run tells its operator something (the CLI: stderr).
pub type Notice = Arc<dyn Fn(&str) + Send + Sync>;

/// How long output may sit in the scrubber's hold-back before it is flushed
/// (by ending the scrub stream and starting a new one). A match split across
/// such a pause is not seen; see [`crate::Run`].
pub(crate) const SCRUB_FLUSH_AFTER: Duration = Duration::from_millis(150);

/// How often the supervisor measures what the run wrote to disk.
const WRITE_POLL: Duration = Duration::from_millis(100);

/// Copy one output stream of the agent to ours, noting when output last
/// came; through `scrubber` when the run holds secrets, then, when `terminal`
/// (ours is a terminal and `--raw-output` was not given), through a filter
/// that shows control characters instead of sending them. A scrubber failure
/// stops the copy (fail closed).
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    last: Arc<AtomicU64>,
    origin: Instant,
    scrubber: Option<airlock_scrub::Scrubber>,
    terminal: bool,
) where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let mut stream = scrubber.as_ref().map(|s| s.stream());
    let mut pending = false;
    let mut filter = terminal.then(airlock_sandbox::terminal::TerminalFilter::new);
    let mut show = |bytes: Vec<u8>| match filter.as_mut() {
        Some(f) => f.push(&bytes),
        None => bytes,
    };
    loop {
        let read = if pending {
            tokio::time::timeout(SCRUB_FLUSH_AFTER, from.read(&mut buf))
                .await
                .ok()
        } else {
            Some(from.read(&mut buf).await)
        };
        let n = match read {
            // Quiet: flush what the scrubber holds back.
            None => {
                pending = false;
                let (Some(s), Some(sc)) = (stream.take(), scrubber.as_ref()) else {
                    continue;
                };
                stream = Some(sc.stream());
                match s.finish() {
                    Ok((out, _)) => {
                        let out = show(out);
                        if to.write_all(&out).await.is_err() || to.flush().await.is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
                continue;
            }
            Some(Ok(0)) | Some(Err(_)) => break,
            Some(Ok(n)) => n,
        };
        last.store(
            u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let out = match stream.as_mut() {
            None => buf[..n].to_vec(),
            Some(s) => match s.push(&buf[..n]) {
                Ok(out) => {
                    pending = true;
                    out
                }
                Err(_) => return,
            },
        };
        let out = show(out);
        if to.write_all(&out).await.is_err() || to.flush().await.is_err() {
            return;
        }
    }
    let mut tail = Vec::new();
    if let Some(s) = stream
        && let Ok((out, _)) = s.finish()
    {
        tail = show(out);
    }
    if let Some(f) = filter {
        tail.extend(f.finish());
    }
    let _ = to.write_all(&tail).await;
    let _ = to.flush().await;
}

pub(crate) async fn supervise(
    p: SuperviseParts<'_>,
) -> Result<(airlock_sandbox::RunOutcome, EndedBy), RuntimeError> {
    let ctx =
        |what: &'static str| move |source: std::io::Error| RuntimeError::Supervise { what, source };
    let origin = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    p.listener
        .set_nonblocking(true)
        .map_err(ctx("cannot configure the proxy listener"))?;
    let listener = tokio::net::TcpListener::from_std(p.listener)
        .map_err(ctx("cannot adopt the proxy listener"))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = p.proxy.serve(listener, async {
        let _ = stop_rx.await;
    });
    let mut pumps = Vec::new();
    if let Some(out) = p.stdout {
        let out = tokio::process::ChildStdout::from_std(out)
            .map_err(ctx("cannot adopt the command's stdout"))?;
        pumps.push(tokio::spawn(pump(
            out,
            p.out,
            last.clone(),
            origin,
            p.scrubber.clone(),
            p.terminal_out,
        )));
    }
    if let Some(err) = p.stderr {
        let err = tokio::process::ChildStderr::from_std(err)
            .map_err(ctx("cannot adopt the command's stderr"))?;
        pumps.push(tokio::spawn(pump(
            err,
            p.err,
            last.clone(),
            origin,
            p.scrubber.clone(),
            p.terminal_err,
        )));
    }
    let running = p.running;
    let mut wait = tokio::task::spawn_blocking(move || running.wait());
    // Signals reach this run through its own channel; the process's
    // SIGINT/SIGTERM/SIGHUP/SIGQUIT are added only when the caller asks
    // (the CLI): tokio delivers each to every run that listens.
    let mut sig_rx = p.signals;
    let (sig_tx, mut os_rx) = tokio::sync::mpsc::channel::<Signal>(8);
    if p.process_signals {
        let mut sigs = Vec::new();
        for (kind, sig) in [
            (tokio::signal::unix::SignalKind::interrupt(), Signal::SIGINT),
            (
                tokio::signal::unix::SignalKind::terminate(),
                Signal::SIGTERM,
            ),
            (tokio::signal::unix::SignalKind::hangup(), Signal::SIGHUP),
            (tokio::signal::unix::SignalKind::quit(), Signal::SIGQUIT),
        ] {
            let s =
                tokio::signal::unix::signal(kind).map_err(ctx("cannot install signal handlers"))?;
            sigs.push((s, sig));
        }
        for (mut s, sig) in sigs {
            let tx = sig_tx.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    if tx.send(sig).await.is_err() {
                        break;
                    }
                }
            });
        }
    }
    drop(sig_tx);
    let wall = async {
        match p.wall {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(wall);
    tokio::pin!(serve);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut disk_tick = tokio::time::interval(WRITE_POLL);
    let mut ended_by = EndedBy::Exit;
    let mut serving = true;
    let outcome = loop {
        tokio::select! {
            r = &mut wait => break r.map_err(|e| RuntimeError::Supervise {
                what: "the sandbox waiter failed",
                source: std::io::Error::other(e),
            })??,
            () = &mut wall, if ended_by == EndedBy::Exit => {
                ended_by = EndedBy::WallTimeout;
                airlock_sandbox::signal(p.pid, Signal::SIGKILL);
            }
            _ = tick.tick(), if ended_by == EndedBy::Exit && p.idle.is_some() => {
                let idle = p.idle.unwrap_or(Duration::MAX);
                let quiet = origin.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= idle {
                    ended_by = EndedBy::IdleTimeout;
                    airlock_sandbox::signal(p.pid, Signal::SIGKILL);
                }
            }
            _ = disk_tick.tick(), if ended_by == EndedBy::Exit => {
                if p.write_watch.exceeded() {
                    ended_by = EndedBy::WriteLimit;
                    airlock_sandbox::signal(p.pid, Signal::SIGKILL);
                }
            }
            Some(sig) = sig_rx.recv() => airlock_sandbox::signal(p.pid, sig),
            Some(sig) = os_rx.recv() => airlock_sandbox::signal(p.pid, sig),
            r = &mut serve, if serving => {
                serving = false;
                if let Err(e) = r {
                    tracing::error!(error = %e, "egress proxy stopped; the sandbox has no network now");
                    (p.notice)(&format!("egress proxy stopped: {e}; the sandbox has no network now"));
                }
            }
        }
    };
    let _ = stop_tx.send(());
    if serving {
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut serve).await;
    }
    for pump in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
    }
    Ok((outcome, ended_by))
}
