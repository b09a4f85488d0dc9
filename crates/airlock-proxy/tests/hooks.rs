//! Hooks on the intercepted path, end to end: test-only hooks (the shape of
//! an LLM gateway) on a real proxy, driven by `curl` through an intercepted
//! tunnel to a local HTTPS upstream. They prove the order (request: as
//! added; response: reversed), that a hook can rewrite a request body and
//! stream a rewritten response body, that a refusal answers in the hook's
//! own format and is audited, and that a hook cannot redirect a request.

use airlock_broker::{Binding, Broker, Grant, RunLimits};
use airlock_hook::{Hook, HookBody, OnRequest, Outcome, Refusal, RequestCtx, Via};
use airlock_policy::{EgressPolicy, Mode, PolicySpec, RuleSpec};
use airlock_proxy::{Proxy, ProxyConfig, ResolverSettings};
use airlock_testkit::{DnsAnswer, DnsResponder, TestCa, Upstream};
use airlock_types::{
    Actor, ActorKind, AuditEvent, Decision, EventResult, MemorySink, Outcome as Verdict, Reason,
    RunId, Secret,
};
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CONTENT_LENGTH, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::Frame;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

mod support;

/// A hook that marks the request and response (`x-trace`, `x-trace-back`),
/// optionally redacts `pii-value` from the request body, and wraps the
/// response body in `NAME[…]`, streamed.
#[derive(Debug)]
struct Marker {
    name: &'static str,
    redact: bool,
}

fn append(headers: &mut http::HeaderMap, key: &'static str, name: &str) {
    let v = match headers.get(key).and_then(|v| v.to_str().ok()) {
        Some(old) => format!("{old}>{name}"),
        None => name.to_owned(),
    };
    headers.insert(key, HeaderValue::from_str(&v).expect("ascii"));
}

impl Hook for Marker {
    fn on_request<'a>(&'a self, ctx: &'a RequestCtx, req: Request<HookBody>) -> OnRequest<'a> {
        Box::pin(async move {
            assert_eq!(ctx.via, Via::InterceptedTunnel);
            let (mut parts, body) = req.into_parts();
            append(&mut parts.headers, "x-trace", self.name);
            let body = if self.redact {
                let bytes = body.collect().await.expect("request body").to_bytes();
                let text = String::from_utf8_lossy(&bytes).replace("pii-value", "[PII]");
                parts.headers.remove(CONTENT_LENGTH);
                Full::new(Bytes::from(text)).map_err(|n| match n {}).boxed()
            } else {
                body
            };
            Outcome::Continue(Request::from_parts(parts, body))
        })
    }

    fn on_response(
        &self,
        _ctx: &RequestCtx,
        resp: Response<HookBody>,
    ) -> Result<Response<HookBody>, airlock_hook::ResponseRefusal> {
        let (mut parts, body) = resp.into_parts();
        append(&mut parts.headers, "x-trace-back", self.name);
        parts.headers.remove(CONTENT_LENGTH);
        let open = Bytes::from(format!("{}[", self.name));
        let frames = futures_util::stream::once(async move { Ok(Frame::data(open)) })
            .chain(BodyStream::new(body))
            .chain(futures_util::stream::once(async {
                Ok(Frame::data(Bytes::from_static(b"]")))
            }));
        Ok(Response::from_parts(
            parts,
            BodyExt::boxed(StreamBody::new(frames)),
        ))
    }
}

/// A hook that refuses `/over-budget` in the caller's own format (429 and
/// a JSON error), with its own audit record.
#[derive(Debug)]
struct Budget;

impl Hook for Budget {
    fn on_request<'a>(&'a self, ctx: &'a RequestCtx, req: Request<HookBody>) -> OnRequest<'a> {
        Box::pin(async move {
            if ctx.path != "/over-budget" {
                return Outcome::Continue(req);
            }
            let decision = Decision::deny(Reason::LimitExceeded);
            let event = AuditEvent::new(
                ctx.tenant.clone(),
                Actor::new(ActorKind::Agent, "budget-hook"),
                airlock_types::Action::LlmBudget,
                format!("{}://{}{}", ctx.scheme, ctx.host, ctx.path),
                decision.reason,
                EventResult::Failure,
            )
            .with_decision(decision)
            .with_request(ctx.request.clone());
            let answer = Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header("content-type", "application/json")
                .body(
                    Full::new(Bytes::from_static(br#"{"error":"budget exceeded"}"#))
                        .map_err(|n| match n {})
                        .boxed(),
                )
                .expect("static response");
            let refusal = Refusal::new(decision, req.into_body())
                .with_event(event)
                .with_response(answer);
            Outcome::Refuse(refusal)
        })
    }
}

/// A hook that tries to send the request elsewhere (another path).
#[derive(Debug)]
struct Redirect;

impl Hook for Redirect {
    fn on_request<'a>(&'a self, ctx: &'a RequestCtx, req: Request<HookBody>) -> OnRequest<'a> {
        Box::pin(async move {
            if ctx.path != "/redirect-me" {
                return Outcome::Continue(req);
            }
            let (mut parts, body) = req.into_parts();
            parts.uri = "/somewhere-else".parse().expect("uri");
            Outcome::Continue(Request::from_parts(parts, body))
        })
    }
}

/// A hook that notes the `Authorization` header it is given and every
/// response byte that passes it.
#[derive(Debug, Default)]
struct Spy {
    authorization: Mutex<Vec<String>>,
    response: Arc<Mutex<Vec<u8>>>,
}

impl Hook for Spy {
    fn on_request<'a>(&'a self, _ctx: &'a RequestCtx, req: Request<HookBody>) -> OnRequest<'a> {
        let seen = req
            .headers()
            .get("authorization")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if let (Some(v), Ok(mut all)) = (seen, self.authorization.lock()) {
            all.push(v);
        }
        Box::pin(std::future::ready(Outcome::Continue(req)))
    }

    fn on_response(
        &self,
        _ctx: &RequestCtx,
        resp: Response<HookBody>,
    ) -> Result<Response<HookBody>, airlock_hook::ResponseRefusal> {
        let seen = self.response.clone();
        Ok(resp.map(|body| {
            let frames = BodyStream::new(body).map(move |f| {
                if let (Ok(frame), Ok(mut all)) = (&f, seen.lock())
                    && let Some(d) = frame.data_ref()
                {
                    all.extend_from_slice(d);
                }
                f
            });
            BodyExt::boxed(StreamBody::new(frames))
        }))
    }
}

struct Running {
    addr: SocketAddr,
    sink: Arc<MemorySink>,
    ca_path: PathBuf,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn lo(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A proxy with `hooks`, allowing every method to `secure.test` (on any
/// port), in front of an HTTPS upstream on 127.0.0.`n`.
fn start(n: u8, hooks: Vec<Arc<dyn Hook>>) -> (Running, Upstream, DnsResponder) {
    let ca = TestCa::new();
    let up = Upstream::https(lo(n), &ca, &["secure.test"]);
    let (p, dns) = start_for(n, &ca, None, hooks, false);
    (p, up, dns)
}

/// As [`start`], for an upstream already running, with credentials when
/// `creds` is given. `ask_post`: POST is asked, and the policy has an
/// approver on the path.
fn start_for(
    n: u8,
    ca: &TestCa,
    creds: Option<(RunId, Arc<Broker>)>,
    hooks: Vec<Arc<dyn Hook>>,
    ask_post: bool,
) -> (Running, DnsResponder) {
    let dns = DnsResponder::start();
    dns.set("secure.test", DnsAnswer::Fixed(vec![lo(n)]));
    let mut rules = vec![RuleSpec {
        ports: (1..=u16::MAX).collect(),
        ..RuleSpec::for_hosts(&["secure.test"], Verdict::Allow)
    }];
    if ask_post {
        rules.push(RuleSpec {
            methods: vec!["POST".into()],
            ..RuleSpec::for_hosts(&["secure.test"], Verdict::Ask)
        });
    }
    let spec = PolicySpec {
        mode: Mode::DenyAll,
        rules,
        allow_private: vec![(lo(0), 8)],
        inspect_all: true,
    };
    let policy = EgressPolicy::compile(spec)
        .expect("policy compiles")
        .with_approvals(ask_post);
    let policy = Arc::new(policy);
    let cfg = ProxyConfig {
        upstream_extra_ca_pem: Some(ca.cert_pem().as_bytes().to_vec()),
        resolver: ResolverSettings::NameServers(vec![dns.addr()]),
        ..ProxyConfig::default()
    };
    let mem = Arc::new(MemorySink::new());
    let sink = mem.clone();
    let dir = tempfile::tempdir().expect("tmp");
    let served = support::serve(move || {
        let mut proxy = match creds {
            Some((run, broker)) => Proxy::with_credentials(
                cfg,
                policy,
                sink,
                airlock_types::RunContext::new(
                    airlock_types::TenantId::default_tenant(),
                    run,
                    airlock_types::Actor::system(),
                ),
                broker,
            ),
            None => Proxy::new(
                cfg,
                policy,
                sink,
                airlock_proxy::Scope::Tenant(airlock_types::TenantId::default_tenant()),
            ),
        }
        .expect("proxy");
        for h in hooks {
            proxy = proxy.with_hook(h).expect("before serving");
        }
        proxy
    });
    let (addr, stop_tx) = (served.addr, served.stop);
    let ca_path = dir.path().join("proxy-ca.pem");
    std::fs::write(&ca_path, served.ca_pem).expect("write ca");
    let running = Running {
        addr,
        sink: mem,
        ca_path,
        _dir: dir,
        _stop: stop_tx,
    };
    (running, dns)
}

/// `curl` through the proxy: (status, lower-cased headers, body).
fn curl(p: &Running, args: &[&str]) -> (u16, String, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let hdr = dir.path().join("h");
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "", "--max-time", "20", "-x"])
        .arg(format!("http://{}", p.addr))
        .arg("--cacert")
        .arg(&p.ca_path)
        .arg("-D")
        .arg(&hdr)
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .output()
        .expect("curl runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let headers = std::fs::read_to_string(&hdr)
        .unwrap_or_default()
        .to_ascii_lowercase();
    (code.trim().parse().unwrap_or(0), headers, body.to_owned())
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(": "))
            .map(str::trim)
    })
}

#[test]
fn hooks_rewrite_requests_in_order_and_responses_in_reverse_order() {
    let first: Arc<dyn Hook> = Arc::new(Marker {
        name: "a",
        redact: true,
    });
    let second: Arc<dyn Hook> = Arc::new(Marker {
        name: "b",
        redact: false,
    });
    let (p, up, _dns) = start(61, vec![first, second]);
    let url = format!("https://secure.test:{}/v1/chat", up.port());
    for version in ["--http1.1", "--http2"] {
        let (status, headers, body) = curl(&p, &[version, "-d", "name=pii-value", &url]);
        assert_eq!(status, 200, "{version}: {headers}{body}");
        // The response went through b, then a: a's wrapper is outside.
        let inner = body
            .strip_prefix("a[b[")
            .and_then(|b| b.strip_suffix("]]"))
            .unwrap_or_else(|| panic!("{version}: not wrapped a[b[…]]: {body}"));
        let echo: serde_json::Value = serde_json::from_str(inner).expect("upstream JSON");
        // The request went through a, then b; a redacted the body
        // ("name=pii-value" is 14 bytes, "name=[PII]" 10).
        assert_eq!(echo["headers"]["x-trace"], "a>b", "{version}");
        assert_eq!(echo["body_len"], 10, "{version}");
        assert_eq!(header(&headers, "x-trace-back"), Some("b>a"), "{version}");
    }
    assert_eq!(up.hits(), 2);
}

#[test]
fn a_hook_refusal_answers_in_its_own_format_is_audited_and_runs_no_later_hook() {
    let marker: Arc<dyn Hook> = Arc::new(Marker {
        name: "a",
        redact: false,
    });
    let (p, up, _dns) = start(62, vec![Arc::new(Budget), marker]);
    let url = format!("https://secure.test:{}/over-budget", up.port());
    let (status, headers, body) = curl(&p, &["--http2", "-d", "{}", &url]);
    assert_eq!(status, 429, "{headers}{body}");
    assert_eq!(body, r#"{"error":"budget exceeded"}"#);
    assert_eq!(
        header(&headers, "x-trace-back"),
        None,
        "no hook saw the refusal"
    );
    assert_eq!(up.hits(), 0, "nothing went upstream");
    let events = p.sink.events();
    let allowed = events
        .iter()
        .find(|e| e.action == "egress.request")
        .expect("the policy decision");
    let refused = events
        .iter()
        .find(|e| e.action == "llm.budget")
        .expect("the hook's refusal is audited");
    assert_eq!(
        (
            refused.decision,
            refused.reason,
            &refused.request_id,
            refused.resource.as_str()
        ),
        (
            Some(Verdict::Deny),
            Reason::LimitExceeded,
            &allowed.request_id,
            "https://secure.test/over-budget"
        )
    );
    // Other paths pass both hooks.
    let ok = format!("https://secure.test:{}/fine", up.port());
    let (status, headers, _) = curl(&p, &["--http1.1", &ok]);
    assert_eq!(status, 200, "{headers}");
    assert_eq!(header(&headers, "x-trace-back"), Some("a"));
}

/// A stand-in approval hook: marks `/approved` approved, passes anything
/// else on unmarked.
#[derive(Debug)]
struct Approve;

impl Hook for Approve {
    fn on_request<'a>(&'a self, ctx: &'a RequestCtx, mut req: Request<HookBody>) -> OnRequest<'a> {
        if ctx.decision.outcome == Verdict::Ask && ctx.path == "/approved" {
            req.extensions_mut().insert(airlock_hook::Approved {
                id: "apr_1".into(),
                sha256: "ab".into(),
            });
        }
        Box::pin(std::future::ready(Outcome::Continue(req)))
    }
}

#[test]
fn an_ask_is_sent_only_when_a_hook_marked_it_approved() {
    let ca = TestCa::new();
    let up = Upstream::https(lo(65), &ca, &["secure.test"]);
    let (p, _dns) = start_for(65, &ca, None, vec![Arc::new(Approve)], true);
    let url = |path: &str| format!("https://secure.test:{}{path}", up.port());
    let (status, headers, _) = curl(&p, &["--http1.1", "-d", "x", &url("/approved")]);
    assert_eq!(status, 200, "{headers}");
    assert_eq!(up.hits(), 1);
    // No hook took responsibility: refused, fail closed, and audited.
    let (status, headers, _) = curl(&p, &["--http2", "-d", "x", &url("/unmarked")]);
    assert_eq!(status, 403, "{headers}");
    assert_eq!(
        header(&headers, "x-airlock-reason"),
        Some("approval_required")
    );
    assert_eq!(up.hits(), 1, "nothing more went upstream");
    let events = p.sink.events();
    let asked: Vec<_> = events
        .iter()
        .filter(|e| e.action == "egress.request")
        .map(|e| (e.decision, e.reason))
        .collect();
    assert_eq!(
        asked,
        vec![
            (Some(Verdict::Ask), Reason::ApprovalRequired),
            (Some(Verdict::Ask), Reason::ApprovalRequired)
        ]
    );
    let failure = events
        .iter()
        .find(|e| e.action == "egress.hook")
        .expect("audited");
    assert_eq!(failure.reason, Reason::ApprovalRequired);
    // Reads are not asked.
    let (status, _, _) = curl(&p, &["--http1.1", &url("/read")]);
    assert_eq!(status, 200);
}

#[test]
fn a_hook_cannot_change_where_a_request_goes() {
    let (p, up, _dns) = start(63, vec![Arc::new(Redirect)]);
    let url = format!("https://secure.test:{}/redirect-me", up.port());
    let (status, headers, body) = curl(&p, &["--http1.1", &url]);
    assert_eq!(status, 403, "{headers}{body}");
    assert_eq!(header(&headers, "x-airlock-reason"), Some("check_failed"));
    assert_eq!(up.hits(), 0);
    let failure = p
        .sink
        .events()
        .into_iter()
        .find(|e| e.action == "egress.hook")
        .expect("audited");
    assert_eq!(failure.reason, Reason::CheckFailed);
}

#[test]
fn no_other_hook_sees_a_real_credential_value() {
    const VALUE: &str = "real-value-0123456789abcdef";
    let ca = TestCa::new();
    let up = Upstream::https(lo(64), &ca, &["secure.test"]);
    let broker = Arc::new(Broker::new());
    let run = RunId::new("run-hooks").expect("id");
    let host = format!("secure.test:{}", up.port());
    let binding =
        Binding::new("TOK", vec![host], None, None, vec![], vec![], None).expect("binding");
    let minted = broker
        .start_run(
            &run,
            vec![Grant::new("TOK", binding, Secret::new(VALUE.to_owned()))],
            RunLimits::default(),
        )
        .expect("run");
    let handle = minted[0].handle.expose().clone();
    let spy = Arc::new(Spy::default());
    let (p, _dns) = start_for(64, &ca, Some((run, broker)), vec![spy.clone()], false);
    let url = format!("https://secure.test:{}/v1/me", up.port());
    let auth = format!("Authorization: Bearer {handle}");
    let (status, headers, body) = curl(&p, &["--http1.1", "-H", &auth, &url]);
    assert_eq!(status, 200, "{headers}{body}");
    // The upstream got the value (and echoed it); the agent and the spy got
    // the mask, and the spy saw the handle, never the value.
    let echo: serde_json::Value = serde_json::from_str(&body).expect("upstream JSON");
    assert_eq!(echo["headers"]["authorization"], "Bearer [SECRET:TOK]");
    let seen = spy.authorization.lock().expect("lock").clone();
    assert_eq!(seen, vec![format!("Bearer {handle}")]);
    let passed = String::from_utf8(spy.response.lock().expect("lock").clone()).expect("utf-8");
    assert_eq!(passed, body);
    assert!(!passed.contains(VALUE), "{passed}");
    let used: Vec<_> = p
        .sink
        .events()
        .into_iter()
        .filter(|e| e.action == "credential.used")
        .map(|e| e.resource)
        .collect();
    assert_eq!(used.len(), 1, "{used:?}");
}
