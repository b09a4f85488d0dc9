//! The gateway's own listener: OpenAI- and Anthropic-compatible endpoints
//! for agents outside a sandbox, authenticated with virtual keys.

use crate::engine::{Caller, Gateway, Prepared, Provider, full};
use crate::provider::ProviderKind;
use airlock_hook::{BoxError, HookBody};
use airlock_types::{Reason, RequestId};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The upstream client: one pool of keep-alive connections (plain or
/// rustls) shared by every call, so a call does not pay a TCP and TLS
/// handshake.
type Upstream = Client<HttpsConnector<HttpConnector>, HookBody>;

/// Request headers passed on to the provider (everything else, including
/// the caller's credentials, stays behind).
const FORWARD: &[&str] = &[
    "content-type",
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "openai-organization",
    "openai-project",
    "user-agent",
];

/// Response headers passed back to the caller.
const BACK: &[&str] = &[
    "content-type",
    "x-request-id",
    "request-id",
    "openai-processing-ms",
    "retry-after",
    "x-should-retry",
];

/// Most virtual keys remembered as seen live (then forgotten at once).
const KEY_CACHE: usize = 4096;

/// Serve the gateway on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, gw: Gateway) -> std::io::Result<()> {
    let client = upstream_client();
    loop {
        let (stream, _) = listener.accept().await?;
        // Answers are written in several pieces (head, chunks, end): without
        // this, Nagle's algorithm holds the last piece for the peer's
        // delayed ACK (~40 ms).
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let gw = gw.clone();
                let client = client.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(gw, client, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn upstream_client() -> Upstream {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(30)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https)
}

fn tls_config() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| b.with_root_certificates(roots).with_no_client_auth())
    .unwrap_or_else(|_| {
        rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    })
}

fn presented_key(req: &Request<Incoming>) -> Option<String> {
    let h = req.headers();
    if let Some(k) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim().to_string());
    }
    h.get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|s| s.trim().to_string())
}

async fn handle(gw: Gateway, client: Upstream, req: Request<Incoming>) -> Response<HookBody> {
    let path = req.uri().path().to_string();
    let kind = if path.ends_with("/messages") || req.headers().contains_key("anthropic-version") {
        ProviderKind::Anthropic
    } else {
        ProviderKind::OpenAi
    };
    let request_id = RequestId::new(format!("gw-{:016x}", rand_u64())).ok();
    let wanted = req
        .headers()
        .get("x-airlock-provider")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let provider = gw
        .config()
        .providers
        .iter()
        .find(|p| p.kind == kind && wanted.as_deref().is_none_or(|w| w == p.name))
        .cloned();
    // Authenticate before anything else. A POST (every endpoint that is
    // forwarded only after a reservation) may use a key seen live before:
    // the reservation's store hop checks again that it is not revoked
    // (`Begun::KeyRevoked`), so a revoked key never gets a call through.
    // Anything else (`GET /v1/models`) is looked up every time.
    let cacheable = req.method() == http::Method::POST;
    let caller = match presented_key(&req) {
        Some(k) => {
            let h = crate::keys::key_hash(&k);
            let hit = if cacheable {
                gw.inner.keys.lock().ok().and_then(|m| m.get(&h).cloned())
            } else {
                None
            };
            match hit {
                Some(c) => Some(c),
                None => {
                    let found = gw.inner.writer.key(k).await;
                    if let (Some(c), Ok(mut m)) = (&found, gw.inner.keys.lock()) {
                        if m.len() >= KEY_CACHE {
                            m.clear();
                        }
                        m.insert(h, c.clone());
                    }
                    found
                }
            }
        }
        None => None,
    };
    let Some((_tenant, row)) = caller else {
        let anon = Caller {
            agent: "(unauthenticated)".into(),
            ..Caller::default()
        };
        return gw.refuse(
            kind,
            &anon,
            request_id.as_ref(),
            &path,
            StatusCode::UNAUTHORIZED,
            Reason::VirtualKeyInvalid,
            &[],
        );
    };
    let run = req
        .headers()
        .get("x-airlock-run")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let caller = Caller {
        agent: row.agent,
        team: row.team,
        run,
        key: Some(row.id),
        allowed_models: None,
    };
    let Some(provider) = provider else {
        return gw.refuse(
            kind,
            &caller,
            request_id.as_ref(),
            &path,
            StatusCode::NOT_FOUND,
            Reason::MalformedRequest,
            &[("detail", "no provider of this kind is configured".into())],
        );
    };
    let (parts, body) = req.into_parts();
    let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed();
    match gw
        .prepare(&provider, &caller, request_id.as_ref(), &parts, body)
        .await
    {
        Prepared::Answer(r) => r,
        Prepared::Go { call, body } => {
            let out = match upstream_request(&provider, &parts, call.idem_key(), body) {
                Some(r) => r,
                None => return gw.unreachable(call),
            };
            match client.request(out).await {
                Ok(resp) => {
                    let (mut p, b) = resp.into_parts();
                    let mut headers = http::HeaderMap::new();
                    for n in BACK {
                        if let Some(v) = p.headers.get(*n) {
                            headers.insert(*n, v.clone());
                        }
                    }
                    if let Some(v) = p.headers.get(http::header::CONTENT_ENCODING) {
                        headers.insert(http::header::CONTENT_ENCODING, v.clone());
                    }
                    p.headers = headers;
                    let b = b.map_err(|e| -> BoxError { Box::new(e) }).boxed();
                    gw.respond(call, Response::from_parts(p, b))
                }
                Err(e) => {
                    tracing::warn!(provider = %provider.name, error = %e, "gateway upstream failed");
                    gw.unreachable(call)
                }
            }
        }
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    u64::from_le_bytes(b)
}

fn upstream_request(
    provider: &Provider,
    parts: &http::request::Parts,
    idem_key: &str,
    body: Bytes,
) -> Option<Request<HookBody>> {
    let base = provider.base_url.path().trim_end_matches('/');
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    // A base URL ending in /v1 and an SDK path starting with /v1: once.
    let pq = if base.ends_with("/v1") {
        pq.strip_prefix("/v1").unwrap_or(pq)
    } else {
        pq
    };
    let host = provider.base_url.authority()?.as_str();
    let scheme = provider.base_url.scheme_str().unwrap_or("http");
    // Absolute: the pooled client picks the connection by scheme and host.
    let mut b = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{scheme}://{host}{base}{pq}"));
    let h = b.headers_mut()?;
    for n in FORWARD {
        if let Some(v) = parts.headers.get(*n) {
            h.insert(*n, v.clone());
        }
    }
    h.insert(http::header::HOST, HeaderValue::from_str(host).ok()?);
    h.insert(
        http::header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if !idem_key.is_empty() {
        h.insert("idempotency-key", HeaderValue::from_str(idem_key).ok()?);
    }
    if let Some(s) = &provider.secret {
        let mut v = match provider.kind {
            ProviderKind::OpenAi => {
                HeaderValue::from_str(&format!("Bearer {}", s.expose())).ok()?
            }
            ProviderKind::Anthropic => HeaderValue::from_str(s.expose()).ok()?,
        };
        v.set_sensitive(true);
        let name = match provider.kind {
            ProviderKind::OpenAi => "authorization",
            ProviderKind::Anthropic => "x-api-key",
        };
        h.insert(name, v);
    }
    b.body(full(body)).ok()
}
