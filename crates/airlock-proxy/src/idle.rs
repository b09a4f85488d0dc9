//! Splicing two byte streams with an idle timeout covering both directions.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// A stream that records when it last read anything.
struct Stamped<S> {
    inner: S,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Stamped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ms = self.start.elapsed().as_millis() as u64;
            self.last.store(ms, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stamped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a splice ended.
#[derive(Debug)]
pub(crate) enum SpliceEnd {
    /// Both sides finished; bytes client→upstream and upstream→client.
    Done(u64, u64),
    /// Nothing moved for longer than the idle timeout.
    Idle,
    /// An I/O error on either side.
    Error(io::Error),
}

/// Copy both ways between `a` and `b` until both close, an error, or `idle`
/// passes with no bytes in either direction.
pub(crate) async fn splice<A, B>(a: A, b: B, idle: Duration) -> SpliceEnd
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut a = Stamped {
        inner: a,
        start,
        last: last.clone(),
    };
    let mut b = Stamped {
        inner: b,
        start,
        last: last.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    loop {
        let since = Duration::from_millis(last.load(Ordering::Relaxed));
        let deadline = start + since + idle;
        tokio::select! {
            r = &mut copy => return match r {
                Ok((up, down)) => SpliceEnd::Done(up, down),
                Err(e) => SpliceEnd::Error(e),
            },
            () = tokio::time::sleep_until(deadline) => {
                let now_since = Duration::from_millis(last.load(Ordering::Relaxed));
                if now_since == since {
                    return SpliceEnd::Idle;
                }
            }
        }
    }
}
