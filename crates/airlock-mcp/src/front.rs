//! The front: how an agent's MCP client reaches the gateway. Stdio:
//! newline-delimited JSON-RPC on the process's stdin/stdout, one session.
//! Streamable HTTP: `POST` a message, get JSON (or, for a `tools/call` that
//! sends progress while it waits when the client accepts it, an event
//! stream carrying the progress notifications and then the answer);
//! `Mcp-Session-Id` names the session (a run);
//! `DELETE` ends it; `GET` is 405 (no server-initiated stream).

use crate::gateway::{Gateway, Session};
use crate::upstream::read_line;
use airlock_types::RunContext;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, StreamBody};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;

/// Serve one session over a reader/writer pair (stdin/stdout) until the
/// reader ends. Requests are handled concurrently: a call waiting on a
/// slow server or an approval does not hold up the others.
pub async fn serve_stdio<R, W>(gw: Arc<Gateway>, ctx: RunContext, input: R, mut output: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let session = Session {
        ctx,
        notify: Some(tx.clone()),
    };
    let writer = tokio::spawn(async move {
        while let Some(v) = rx.recv().await {
            let mut b = serde_json::to_vec(&v).unwrap_or_default();
            b.push(b'\n');
            if output.write_all(&b).await.is_err() || output.flush().await.is_err() {
                break;
            }
        }
    });
    let mut changed = gw.tools_changed();
    let tx2 = tx.clone();
    let watcher = tokio::spawn(async move {
        while changed.recv().await.is_ok() {
            let _ = tx2.send(crate::jsonrpc::notification(
                "notifications/tools/list_changed",
                serde_json::json!({}),
            ));
        }
    });
    let mut r = tokio::io::BufReader::new(input);
    let max = gw.config().max_message_bytes;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let mut line = Vec::new();
        match read_line(&mut r, &mut line, max).await {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                // Oversized: refused (and audited), the rest of the line skipped.
                let big = vec![b' '; max + 1];
                if let Some(resp) = gw.handle(&session, &big).await {
                    let _ = tx.send(resp);
                }
                let mut skip = Vec::new();
                loop {
                    skip.clear();
                    match read_line(&mut r, &mut skip, usize::MAX / 2).await {
                        Ok(true) if !skip.ends_with(b"\n") => continue,
                        _ => break,
                    }
                }
                continue;
            }
            Err(_) => break,
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let gw = gw.clone();
        let s = session.clone();
        let tx = tx.clone();
        tasks.spawn(async move {
            if let Some(resp) = gw.handle(&s, &line).await {
                let _ = tx.send(resp);
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    watcher.abort();
    drop(session);
    drop(tx);
    let _ = writer.await;
}

/// Makes a run context for each new HTTP session.
pub type NewContext = Arc<dyn Fn() -> RunContext + Send + Sync>;

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn full(status: http::StatusCode, ct: &str, body: Vec<u8>) -> http::Response<Body> {
    let mut r = http::Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(ct) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// Serve streamable HTTP on `listener` until `shutdown` resolves.
pub async fn serve_http(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    new_context: NewContext,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let sessions: Arc<Mutex<HashMap<String, RunContext>>> = Arc::default();
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = &mut shutdown => return,
        };
        let _ = tcp.set_nodelay(true);
        let gw = gw.clone();
        let sessions = sessions.clone();
        let new_context = new_context.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let gw = gw.clone();
                let sessions = sessions.clone();
                let new_context = new_context.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        http_one(gw, sessions, new_context, req).await,
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn session_id() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut b = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        let h = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        b[..8].copy_from_slice(&h.to_le_bytes());
    }
    hex::encode(b)
}

async fn http_one(
    gw: Arc<Gateway>,
    sessions: Arc<Mutex<HashMap<String, RunContext>>>,
    new_context: NewContext,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<Body> {
    let sid = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let known = |sid: &Option<String>| {
        sid.as_ref()
            .and_then(|s| sessions.lock().ok().and_then(|m| m.get(s).cloned()))
    };
    match *req.method() {
        http::Method::POST => {}
        http::Method::DELETE => {
            if let (Some(s), Ok(mut m)) = (&sid, sessions.lock()) {
                m.remove(s);
            }
            return full(http::StatusCode::OK, "text/plain", Vec::new());
        }
        _ => {
            let mut r = full(
                http::StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"POST only\n".to_vec(),
            );
            r.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("POST, DELETE"),
            );
            return r;
        }
    }
    let sse_ok = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let max = gw.config().max_message_bytes;
    let body = match http_body_util::Limited::new(req.into_body(), max)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let s = Session {
                ctx: new_context(),
                notify: None,
            };
            let big = vec![b' '; max + 1];
            let resp = gw.handle(&s, &big).await.unwrap_or(Value::Null);
            return full(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                "application/json",
                serde_json::to_vec(&resp).unwrap_or_default(),
            );
        }
    };
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let method = parsed
        .as_ref()
        .and_then(|v| v.get("method"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let is_request = parsed
        .as_ref()
        .is_some_and(|v| v.get("id").is_some() && v.get("method").is_some());
    let (ctx, new_sid) = match (known(&sid), method.as_deref()) {
        (Some(ctx), _) => (ctx, None),
        (None, Some("initialize")) => {
            let id = session_id();
            let ctx = new_context();
            if let Ok(mut m) = sessions.lock() {
                m.insert(id.clone(), ctx.clone());
            }
            (ctx, Some(id))
        }
        (None, _) if sid.is_some() => {
            return full(http::StatusCode::NOT_FOUND, "application/json", br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"unknown or ended session","data":{"reason":"malformed_request"}}}"#.to_vec());
        }
        (None, _) => {
            // No session: malformed input is still answered (and audited)
            // in JSON-RPC; anything else needs `initialize` first.
            if parsed.is_some() {
                return full(http::StatusCode::BAD_REQUEST, "application/json", br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"no Mcp-Session-Id: send initialize first","data":{"reason":"malformed_request"}}}"#.to_vec());
            }
            (new_context(), None)
        }
    };
    let with_sid = |mut r: http::Response<Body>| {
        if let Some(id) = &new_sid
            && let Ok(v) = http::HeaderValue::from_str(id)
        {
            r.headers_mut().insert("mcp-session-id", v);
        }
        r
    };
    if !is_request {
        let s = Session { ctx, notify: None };
        return match gw.handle(&s, &body).await {
            Some(resp) => with_sid(full(
                if parsed.is_none() {
                    http::StatusCode::BAD_REQUEST
                } else {
                    http::StatusCode::OK
                },
                "application/json",
                serde_json::to_vec(&resp).unwrap_or_default(),
            )),
            None => with_sid(full(http::StatusCode::ACCEPTED, "text/plain", Vec::new())),
        };
    }
    if method.as_deref() == Some("tools/call") && sse_ok {
        // Progress while the call waits (for an approval), then the
        // answer. The spec lets the server answer a POST with either JSON
        // or an event stream: a call whose answer comes before anything
        // else gets plain JSON (one write with a length, no chunked
        // stream); a call that sends progress first becomes an event
        // stream there and then. The call runs in a task of its own, so a
        // client that goes away does not cut it short between the tool
        // server and its audit record.
        let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
        let s = Session {
            ctx,
            notify: Some(tx.clone()),
        };
        tokio::spawn(async move {
            if let Some(resp) = gw.handle(&s, &body).await {
                let _ = tx.send(resp);
            }
        });
        let head = match rx.recv().await {
            Some(m) if !is_answer(&m) => m,
            answer => {
                let answer = answer.unwrap_or_else(|| no_answer(parsed.as_ref()));
                return with_sid(full(
                    http::StatusCode::OK,
                    "application/json",
                    serde_json::to_vec(&answer).unwrap_or_default(),
                ));
            }
        };
        let stream = futures_stream(head, rx);
        let mut r = http::Response::new(BodyExt_boxed(stream));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        r.headers_mut().insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-cache"),
        );
        return with_sid(r);
    }
    let s = Session { ctx, notify: None };
    let resp = match gw.handle(&s, &body).await {
        Some(resp) => resp,
        None => no_answer(parsed.as_ref()),
    };
    with_sid(full(
        http::StatusCode::OK,
        "application/json",
        serde_json::to_vec(&resp).unwrap_or_default(),
    ))
}

/// The answer to a request whose handling ended without one (its task
/// failed): a JSON-RPC internal error with the request's id, so the
/// client gets an error it can read instead of a bare `null`.
fn no_answer(request: Option<&Value>) -> Value {
    tracing::error!("an MCP request ended without an answer");
    let id = request.and_then(|m| m.get("id")).unwrap_or(&Value::Null);
    crate::jsonrpc::error(
        id,
        crate::jsonrpc::INTERNAL_ERROR,
        "the request ended without an answer; it may not have run",
        airlock_types::Reason::CheckFailed,
        Value::Null,
    )
}

/// Whether `m` is a response (an id and no method), not a notification.
fn is_answer(m: &Value) -> bool {
    m.get("id").is_some() && m.get("method").is_none()
}

/// An SSE body from a channel of messages; ends after the first response
/// (a message with an id and no method).
#[allow(non_snake_case)]
fn BodyExt_boxed(s: StreamBody<SseStream>) -> Body {
    s.boxed()
}

struct SseStream {
    /// A message already taken from `rx`, sent first.
    head: Option<Value>,
    rx: mpsc::UnboundedReceiver<Value>,
    done: bool,
}

impl futures_core_stream::Stream for SseStream {
    type Item = Result<hyper::body::Frame<Bytes>, std::convert::Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if self.done {
            return std::task::Poll::Ready(None);
        }
        let next = match self.head.take() {
            Some(v) => std::task::Poll::Ready(Some(v)),
            None => self.rx.poll_recv(cx),
        };
        match next {
            std::task::Poll::Ready(Some(v)) => {
                if is_answer(&v) {
                    self.done = true;
                }
                let mut b = b"event: message\ndata: ".to_vec();
                b.extend(serde_json::to_vec(&v).unwrap_or_default());
                b.extend_from_slice(b"\n\n");
                std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(b)))))
            }
            std::task::Poll::Ready(None) => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

fn futures_stream(head: Value, rx: mpsc::UnboundedReceiver<Value>) -> StreamBody<SseStream> {
    StreamBody::new(SseStream {
        head: Some(head),
        rx,
        done: false,
    })
}

mod futures_core_stream {
    pub use futures_util::Stream;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_left_without_an_answer_gets_an_error_with_its_id() {
        let req = json!({"jsonrpc": "2.0", "id": "c-7", "method": "tools/call"});
        let e = no_answer(Some(&req));
        assert_eq!(e["id"], "c-7");
        assert_eq!(e["error"]["code"], crate::jsonrpc::INTERNAL_ERROR);
        assert_eq!(e["error"]["data"]["reason"], "check_failed");
        assert!(e.get("result").is_none());
        assert_eq!(no_answer(None)["id"], Value::Null);
    }
}
