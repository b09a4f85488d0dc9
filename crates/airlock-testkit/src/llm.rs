//! A local model provider speaking the real OpenAI and Anthropic wire
//! formats (JSON and SSE, with usage events), recording every request it
//! receives so tests can check what a provider would have seen.
//!
//! The answer echoes the text of the last message back (`echo: TEXT`), so
//! placeholders sent to it come back and must be restored. Streams send
//! the echo in 3-byte deltas, so every placeholder is split across chunks.
//! When the request has tools (OpenAI) the echo is also sent as a tool
//! call's arguments (`{"echo":"TEXT"}`), streamed in the same pieces.
//!
//! Behaviour by model name: `fail-once-*` answers 500 to the first attempt
//! of each `Idempotency-Key`; `cut-*` cuts the stream after two deltas;
//! `no-usage-*` reports no usage; `reverse-*` echoes the text reversed
//! (so a provider can be made to write a value the client never sent as
//! such, e.g. a registered secret).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

type Body = http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// One request as the provider received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The path.
    pub path: String,
    /// The headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    failed_once: HashSet<String>,
}

/// A running local provider. Stops when dropped.
#[derive(Debug)]
pub struct LlmUpstream {
    addr: SocketAddr,
    state: Arc<Mutex<StateBox>>,
    task: tokio::task::JoinHandle<()>,
}

struct StateBox(State);

impl std::fmt::Debug for StateBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("received", &self.0.received.len())
            .finish()
    }
}

impl Drop for LlmUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LlmUpstream {
    /// Start on 127.0.0.1, ephemeral port (inside a tokio runtime).
    pub async fn start() -> LlmUpstream {
        LlmUpstream::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), None).await
    }

    /// Start on a given address, e.g. a fixed port other processes are
    /// pointed at (inside a tokio runtime; panics if it cannot bind).
    pub async fn start_at(addr: SocketAddr) -> LlmUpstream {
        LlmUpstream::start_on(addr, None).await
    }

    /// HTTPS on `ip` (ephemeral port) with a certificate for `names` from
    /// `ca`, as a provider behind the egress proxy is reached (inside a
    /// tokio runtime).
    pub async fn start_https(ip: IpAddr, ca: &crate::TestCa, names: &[&str]) -> LlmUpstream {
        let cfg = ca
            .local_ca()
            .server_config(names, &[b"http/1.1"])
            .expect("valid test certificate");
        LlmUpstream::start_on(SocketAddr::new(ip, 0), Some(cfg)).await
    }

    async fn start_on(at: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> LlmUpstream {
        let listener = tokio::net::TcpListener::bind(at)
            .await
            .expect("bind llm upstream");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(StateBox(State::default())));
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                // Streams are written one event at a time: without this,
                // Nagle's algorithm holds the second for the peer's delayed
                // ACK (~40 ms).
                let _ = s.set_nodelay(true);
                let (st, tls) = (st.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(st, req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(s), svc).await;
                        }
                        Some(cfg) => {
                            if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(s).await {
                                let _ = http.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                    }
                });
            }
        });
        LlmUpstream { addr, state, task }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state
            .lock()
            .map(|s| s.0.received.clone())
            .unwrap_or_default()
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

fn json_resp(status: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-request-id", "req_local")
        .body(full(v.to_string()))
        .expect("response")
}

/// The text of the last message (string content or text parts).
fn last_text(body: &Value) -> String {
    let msgs = body.get("messages").or_else(|| body.get("input"));
    let last = match msgs {
        Some(Value::Array(a)) => a.last().cloned().unwrap_or(Value::Null),
        Some(v) => v.clone(),
        None => Value::Null,
    };
    let content = last.get("content").cloned().unwrap_or(last);
    match content {
        Value::String(s) => s,
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn pieces(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        cur.push(c);
        if cur.len() >= 3 {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn sse(events: Vec<String>, cut: bool) -> Body {
    let n = events.len();
    let mut frames: Vec<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>> =
        Vec::new();
    for (i, e) in events.into_iter().enumerate() {
        if cut && i == 4.min(n.saturating_sub(1)) {
            frames.push(Err("cut".into()));
            break;
        }
        frames.push(Ok(Frame::data(Bytes::from(e))));
    }
    // Paced, so the headers and the first events are on the wire before a cut.
    let paced = futures_util::StreamExt::then(futures_util::stream::iter(frames), |f| async move {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        f
    });
    StreamBody::new(paced).boxed()
}

async fn handle(st: Arc<Mutex<StateBox>>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let idem = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    let first_attempt = {
        let Ok(mut s) = st.lock() else {
            return json_resp(500, &json!({}));
        };
        s.0.received.push(Received {
            path: path.clone(),
            headers,
            body: body.clone(),
        });
        s.0.failed_once.insert(idem.clone())
    };
    if path.ends_with("/models") {
        return json_resp(
            200,
            &json!({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "local"}]}),
        );
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return json_resp(
            400,
            &json!({"error": {"message": "bad json", "type": "invalid_request_error"}}),
        );
    };
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if model.starts_with("fail-once") && first_attempt {
        return json_resp(
            500,
            &json!({"error": {"message": "try again", "type": "server_error"}}),
        );
    }
    let cut = model.starts_with("cut");
    let usage = !model.starts_with("no-usage");
    let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let said = last_text(&v);
    let text = if model.starts_with("reverse") {
        format!("echo: {}", said.chars().rev().collect::<String>())
    } else {
        format!("echo: {said}")
    };
    let tools = v
        .get("tools")
        .is_some_and(|t| t.as_array().is_some_and(|a| !a.is_empty()));
    let args = json!({"echo": text}).to_string();
    if path.ends_with("/messages") {
        return anthropic(&model, &text, stream, usage, cut);
    }
    if path.ends_with("/embeddings") {
        let mut r = json!({"object": "list", "model": model, "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}]});
        if usage {
            r["usage"] = json!({"prompt_tokens": 8, "total_tokens": 8});
        }
        return json_resp(200, &r);
    }
    if path.ends_with("/responses") {
        return responses(&model, &text, stream, usage, cut);
    }
    // chat.completions
    if !stream {
        let mut msg = json!({"role": "assistant", "content": text});
        if tools {
            msg["tool_calls"] = json!([{"id": "call_1", "type": "function", "function": {"name": "echo", "arguments": args}}]);
        }
        let mut r = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": msg, "finish_reason": "stop", "logprobs": null}]});
        if usage {
            r["usage"] = json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18});
        }
        return json_resp(200, &r);
    }
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for p in pieces(&text) {
        events.push(chunk(json!({"content": p}), Value::Null));
    }
    if tools {
        events.push(chunk(json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "echo", "arguments": ""}}]}), Value::Null));
        for p in pieces(&args) {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}),
                Value::Null,
            ));
        }
    }
    events.push(chunk(json!({}), json!("stop")));
    let include = v
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if usage && include {
        events.push(format!("data: {}\n\n", json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})));
    }
    events.push("data: [DONE]\n\n".into());
    sse_resp(events, cut)
}

fn sse_resp(events: Vec<String>, cut: bool) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(sse(events, cut))
        .expect("response")
}

fn anthropic(model: &str, text: &str, stream: bool, usage: bool, cut: bool) -> Response<Body> {
    let u = if usage {
        json!({"input_tokens": 11, "output_tokens": 7})
    } else {
        json!({})
    };
    if !stream {
        return json_resp(
            200,
            &json!({"id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null, "usage": u}),
        );
    }
    let ev = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
    let start_usage = if usage {
        json!({"input_tokens": 11, "output_tokens": 1})
    } else {
        json!({})
    };
    let mut events = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    for p in pieces(text) {
        events.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})));
    }
    events.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    let mut md = json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}});
    md["usage"] = if usage {
        json!({"output_tokens": 7})
    } else {
        json!({"output_tokens": 0})
    };
    events.push(ev("message_delta", md));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    sse_resp(events, cut)
}

fn responses(model: &str, text: &str, stream: bool, usage: bool, cut: bool) -> Response<Body> {
    let u = if usage {
        json!({"input_tokens": 11, "output_tokens": 7, "total_tokens": 18})
    } else {
        Value::Null
    };
    let resp = |status: &str, t: &str| {
        json!({"id": "resp_1", "object": "response", "created_at": 1, "status": status, "model": model,
        "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": t, "annotations": []}]}], "usage": u})
    };
    if !stream {
        return json_resp(200, &resp("completed", text));
    }
    let ev = |v: Value| format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap_or(""));
    let mut events = vec![ev(
        json!({"type": "response.created", "sequence_number": 0, "response": resp("in_progress", "")}),
    )];
    let mut seq = 1;
    for p in pieces(text) {
        events.push(ev(json!({"type": "response.output_text.delta", "sequence_number": seq, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": p, "logprobs": []})));
        seq += 1;
    }
    events.push(ev(json!({"type": "response.output_text.done", "sequence_number": seq, "item_id": "msg_1", "output_index": 0, "content_index": 0, "text": text, "logprobs": []})));
    events.push(ev(json!({"type": "response.completed", "sequence_number": seq + 1, "response": resp("completed", text)})));
    sse_resp(events, cut)
}
