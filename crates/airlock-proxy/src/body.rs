//! Body plumbing: bodies are streamed frame by frame, never buffered, and a
//! peer that stops sending mid-body is cut off after a timeout.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Any error travelling in a body.
pub(crate) type BoxError = airlock_hook::BoxError;
/// The body type of every response and forwarded request: the hooks' body
/// type, so passing a body through a hook costs nothing.
pub(crate) type ProxyBody = airlock_hook::HookBody;

/// A small body held in memory (our own responses).
pub(crate) fn full(b: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(b.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub(crate) fn empty() -> ProxyBody {
    full(Bytes::new())
}

/// The peer paused longer than allowed between two frames of a body.
#[derive(Debug, thiserror::Error)]
#[error("body read timed out after {0:?}")]
pub(crate) struct BodyTimeout(Duration);

pin_project_lite::pin_project! {
    /// A body that fails when the next frame takes longer than `limit`.
    pub(crate) struct TimeoutBody<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Sleep,
        limit: Duration,
    }
}

impl<B> TimeoutBody<B> {
    pub(crate) fn new(inner: B, limit: Duration) -> Self {
        TimeoutBody {
            inner,
            sleep: tokio::time::sleep(limit),
            limit,
        }
    }
}

impl<B> Body for TimeoutBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                let limit = *this.limit;
                this.sleep.as_mut().reset(Instant::now() + limit);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(*this.limit))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Runs its closure on drop, but only once the body it guards was complete.
struct EndGuard<F: FnOnce()> {
    on_end: Option<F>,
    complete: bool,
}

impl<F: FnOnce()> Drop for EndGuard<F> {
    fn drop(&mut self) {
        if self.complete
            && let Some(f) = self.on_end.take()
        {
            f();
        }
    }
}

pin_project_lite::pin_project! {
    /// A body that runs `on_end` once it has been read to the end (used to
    /// give an HTTP/1.1 upstream connection back to the pool only when its
    /// response is complete). The server may stop polling as soon as the
    /// body reports its end, so completion is noted either way and the
    /// closure runs when the body is dropped; an incomplete body never
    /// returns its connection.
    pub(crate) struct OnEnd<B, F: FnOnce()> {
        #[pin]
        inner: B,
        guard: EndGuard<F>,
    }
}

impl<B: Body, F: FnOnce()> OnEnd<B, F> {
    pub(crate) fn new(inner: B, on_end: F) -> Self {
        let complete = inner.is_end_stream();
        OnEnd {
            inner,
            guard: EndGuard {
                on_end: Some(on_end),
                complete,
            },
        }
    }
}

impl<B, F> Body for OnEnd<B, F>
where
    B: Body<Data = Bytes, Error = BoxError>,
    F: FnOnce(),
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let res = this.inner.as_mut().poll_frame(cx);
        match &res {
            Poll::Ready(None) => this.guard.complete = true,
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.guard.complete = true,
            Poll::Ready(Some(Err(_))) => this.guard.complete = false,
            _ => {}
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A client stream whose first bytes were already read (to look at the
    /// first request line): they are replayed before the rest.
    pub(crate) struct Prefixed<S> {
        prefix: Vec<u8>,
        pos: usize,
        #[pin]
        inner: S,
    }
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: tokio::io::AsyncRead> tokio::io::AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        if *this.pos < this.prefix.len() {
            let rest = &this.prefix[*this.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            *this.pos += n;
            if *this.pos == this.prefix.len() {
                *this.prefix = Vec::new();
                *this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite> tokio::io::AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
