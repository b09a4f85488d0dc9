//! The router, the token check in front of it, the response headers, the
//! OpenAPI document, and the TLS listener.

use crate::auth::{self, Authed, Refusal, Scope};
use crate::error::ErrorReason;
use crate::state::AppState;
use crate::{ApiError, approvals, audit, budgets, handlers, secrets, users};
use airlock_types::{
    Action, Actor, ActorKind, AuditEvent, EventResult, Reason, TenantId, Timestamp,
};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi;

/// The scope a route needs; `None`: public (the OpenAPI document).
fn required_scope(method: &Method, route: &str) -> Option<Scope> {
    let write = *method != Method::GET;
    Some(match route {
        "/v1/openapi.json" => return None,
        "/v1/teams" | "/v1/agents" | "/v1/agents/{agent}" if write => Scope::AgentsWrite,
        "/v1/teams" | "/v1/agents" | "/v1/agents/{agent}" => Scope::AgentsRead,
        r if r.starts_with("/v1/agents/") && write => Scope::PoliciesWrite,
        r if r.starts_with("/v1/agents/") => Scope::PoliciesRead,
        r if r.starts_with("/v1/tokens") => Scope::TokensWrite,
        r if r.starts_with("/v1/runs") && write => Scope::RunsWrite,
        r if r.starts_with("/v1/runs") => Scope::RunsRead,
        r if r.starts_with("/v1/audit") => Scope::AuditRead,
        r if r.starts_with("/v1/approvals") && write => Scope::ApprovalsDecide,
        r if r.starts_with("/v1/approvals") => Scope::ApprovalsRead,
        r if r.starts_with("/v1/budgets") && write => Scope::BudgetsWrite,
        r if r.starts_with("/v1/budgets") => Scope::BudgetsRead,
        r if r.starts_with("/v1/secrets") && write => Scope::SecretsWrite,
        r if r.starts_with("/v1/secrets") => Scope::SecretsRead,
        // Users (operators) are administered, read or written.
        r if r.starts_with("/v1/users") => Scope::Admin,
        // A route without an entry here is refused, not opened.
        _ => Scope::Admin,
    })
}

fn api_event(
    tenant: TenantId,
    actor: Actor,
    action: Action,
    resource: String,
    reason: Reason,
    result: EventResult,
) -> AuditEvent {
    AuditEvent::new(tenant, actor, action, resource, reason, result)
}

/// The request's method and path, as recorded (bounded; never the query).
fn resource(req: &Request) -> String {
    let mut p = format!("{} {}", req.method(), req.uri().path());
    if p.len() > 256 {
        let mut cut = 256;
        while !p.is_char_boundary(cut) {
            cut -= 1;
        }
        p.truncate(cut);
    }
    p
}

/// Authenticate, check the route's scope, run the handler, record the use.
async fn authenticate(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let Some(scope) = required_scope(req.method(), &route) else {
        return next.run(req).await;
    };
    let res = resource(&req);
    let now = Timestamp::now().as_micros();
    let presented = auth::bearer(
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
    .map(auth::token_hash);
    let looked_up = match presented {
        None => Err((Refusal::Missing, None)),
        Some(hash) => match st.db(move |s| s.token_by_hash(&hash)).await {
            Err(e) => return e.into_response(),
            Ok(None) => Err((Refusal::Unknown, None)),
            Ok(Some(row)) => match auth::check(&row, &hash, now, &st.node) {
                Ok(()) => Ok(row),
                Err(r) => Err((r, Some(row))),
            },
        },
    };
    let row = match looked_up {
        Ok(row) => row,
        Err((why, row)) => {
            let (tenant, actor) = match &row {
                Some(r) => (r.tenant.clone(), Actor::new(ActorKind::Token, r.id.clone())),
                None => (
                    TenantId::default_tenant(),
                    Actor::new(ActorKind::Token, "unknown"),
                ),
            };
            let ev = api_event(
                tenant,
                actor,
                Action::ApiAuthFailed,
                res,
                Reason::Unauthenticated,
                EventResult::Denied,
            )
            .with_detail("refusal", why.as_str());
            if let Err(e) = st.record(ev).await {
                return e.into_response();
            }
            return ApiError::Unauthenticated.into_response();
        }
    };
    let authed = Authed::from_row(&row);
    let actor = Actor::new(ActorKind::Token, authed.token_id.clone());
    if let Err(e) = authed.require(scope) {
        let ev = api_event(
            authed.tenant.clone(),
            actor,
            Action::ApiAuthFailed,
            res,
            Reason::ScopeMissing,
            EventResult::Denied,
        )
        .with_detail("scope", scope.as_str());
        if let Err(e) = st.record(ev).await {
            return e.into_response();
        }
        return e.into_response();
    }
    let (tenant, id) = (authed.tenant.clone(), authed.token_id.clone());
    req.extensions_mut().insert(authed.clone());
    let resp = next.run(req).await;
    let status = resp.status();
    let (reason, result) = match resp.extensions().get::<ErrorReason>() {
        Some(ErrorReason(r)) if status.is_client_error() => (*r, EventResult::Denied),
        Some(ErrorReason(r)) => (*r, EventResult::Failure),
        None => (Reason::Recorded, EventResult::Success),
    };
    let ev = api_event(
        authed.tenant.clone(),
        actor,
        Action::ApiRequest,
        res,
        reason,
        result,
    )
    .with_detail("status", status.as_u16());
    if let Err(e) = st.record(ev).await {
        return e.into_response();
    }
    if status.is_success() {
        let _ = st.db(move |s| s.token_touch(&tenant, &id, now)).await;
    }
    resp
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> Response {
    let mut r = ApiError::BadRequest("method not allowed".into()).into_response();
    *r.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    r
}

async fn openapi() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(openapi_json).as_str();
    ([(header::CONTENT_TYPE, "application/json")], doc).into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Airlock control-plane API", description = "Tenants, scoped tokens, agents, versioned policies, runs, approvals, budgets, secrets (set-only values), users (operators) and the audit log. Every route but this document needs `Authorization: Bearer alt_…`; another tenant's object is 404."),
    paths(
        handlers::list_teams, handlers::create_team,
        handlers::list_agents, handlers::create_agent, handlers::get_agent,
        handlers::list_policies, handlers::put_policy, handlers::get_policy, handlers::activate_policy,
        handlers::list_tokens, handlers::create_token, handlers::revoke_token,
        handlers::start_run, handlers::list_runs, handlers::get_run, handlers::stop_run,
        audit::list, audit::verify, audit::export, audit::proof, audit::stream, audit::run_events,
        budgets::list, budgets::put, budgets::reserve, budgets::settle,
        approvals::list, approvals::show, approvals::approve, approvals::deny,
        secrets::list, secrets::show, secrets::put, secrets::remove,
        users::list, users::create, users::remove,
    ),
    components(schemas(crate::ErrorBody, crate::ErrorDetail, Scope)),
    modifiers(&Security),
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("alt_ token")
                    .build(),
            ),
        );
        // What every authenticated operation may answer besides its own
        // responses (the middleware's and the body limit's refusals).
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                if op.security.is_none() {
                    continue;
                }
                let mut common = vec![
                    ("400", "malformed_request: a path or query value is invalid"),
                    ("401", "unauthenticated: no valid token"),
                    ("403", "scope_missing: the token does not grant this"),
                    (
                        "503",
                        "audit_unavailable or store_unavailable: nothing was done",
                    ),
                ];
                if op.request_body.is_some() {
                    common.push(("413", "limit_exceeded: the body is too large"));
                }
                for (code, what) in common {
                    op.responses
                        .responses
                        .entry(code.to_owned())
                        .or_insert_with(|| error(what).into());
                }
            }
        }
    }
}

/// The OpenAPI 3.1 document (pretty JSON with a final newline), as served
/// at `/v1/openapi.json` and committed at `openapi/airlock-api.json`.
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = "1".into();
    doc.info.license = None;
    doc.info.contact = None;
    let mut s = doc.to_pretty_json().unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

/// The API's router over `state`. `tls`: send HSTS.
pub fn router(state: Arc<AppState>, max_body_bytes: usize, tls: bool) -> Router {
    let api = Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route(
            "/v1/teams",
            get(handlers::list_teams).post(handlers::create_team),
        )
        .route(
            "/v1/agents",
            get(handlers::list_agents).post(handlers::create_agent),
        )
        .route("/v1/agents/{agent}", get(handlers::get_agent))
        .route(
            "/v1/agents/{agent}/policies",
            get(handlers::list_policies).post(handlers::put_policy),
        )
        .route(
            "/v1/agents/{agent}/policies/{version}",
            get(handlers::get_policy),
        )
        .route(
            "/v1/agents/{agent}/policies/{version}/activate",
            post(handlers::activate_policy),
        )
        .route(
            "/v1/tokens",
            get(handlers::list_tokens).post(handlers::create_token),
        )
        .route("/v1/tokens/{id}/revoke", post(handlers::revoke_token))
        .route(
            "/v1/runs",
            get(handlers::list_runs).post(handlers::start_run),
        )
        .route("/v1/runs/{id}", get(handlers::get_run))
        .route("/v1/runs/{id}/stop", post(handlers::stop_run))
        .route("/v1/runs/{id}/events", get(audit::run_events))
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/audit/stream", get(audit::stream))
        .route("/v1/audit/export", get(audit::export))
        .route("/v1/audit/proof/{index}", get(audit::proof))
        .route("/v1/approvals", get(approvals::list))
        .route("/v1/approvals/{id}", get(approvals::show))
        .route("/v1/approvals/{id}/approve", post(approvals::approve))
        .route("/v1/approvals/{id}/deny", post(approvals::deny))
        .route("/v1/budgets", get(budgets::list))
        .route("/v1/budgets/{scope}", put(budgets::put))
        .route("/v1/budgets/{scope}/reservations", post(budgets::reserve))
        .route(
            "/v1/budgets/reservations/{id}/settle",
            post(budgets::settle),
        )
        .route("/v1/secrets", get(secrets::list))
        .route(
            "/v1/secrets/{name}",
            get(secrets::show).put(secrets::put).delete(secrets::remove),
        )
        .route("/v1/users", get(users::list).post(users::create))
        .route("/v1/users/{username}", delete(users::remove))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state);
    security_headers(
        api,
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        tls,
    )
}

/// The API's security headers on every answer of `r` (HSTS when `tls`),
/// with this Content-Security-Policy. Front ends mounted next to the API
/// (the dashboard) use it too.
pub fn security_headers(r: Router, csp: &'static str, tls: bool) -> Router {
    let headers: [(&str, &str); 5] = [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("content-security-policy", csp),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ];
    let mut r = r;
    for (k, v) in headers {
        r = r.layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static(k),
            HeaderValue::from_static(v),
        ));
    }
    if tls {
        r = r.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ));
    }
    r
}

/// How the server speaks to clients.
#[derive(Debug, Clone)]
pub enum TlsMode {
    /// TLS with this PEM certificate chain and key.
    Files(PathBuf, PathBuf),
    /// TLS with a certificate generated now (development); its PEM is
    /// written to the given path so clients can trust it.
    SelfSigned(PathBuf),
    /// Plain HTTP (loopback only).
    Plain,
}

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Plain HTTP on a non-loopback address.
    #[error("{0}: plain HTTP is served only on a loopback address")]
    PlainNotLoopback(SocketAddr),
    /// TLS material could not be read or used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

fn tls_config(mode: &TlsMode) -> Result<Option<Arc<rustls::ServerConfig>>, ServeError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let (certs, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) = match mode {
        TlsMode::Plain => return Ok(None),
        TlsMode::Files(cert, key) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?;
            (certs, key)
        }
        TlsMode::SelfSigned(out) => {
            let ck = rcgen::generate_simple_self_signed(vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ])
            .map_err(|e| {
                ServeError::Tls(format!("cannot generate a development certificate: {e}"))
            })?;
            std::fs::write(out, ck.cert.pem())
                .map_err(|e| ServeError::Tls(format!("{}: {e}", out.display())))?;
            let key =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
            (vec![ck.cert.der().clone()], key)
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(cfg)))
}

/// Serve `app` on `listen` until `shutdown` resolves. `ready` is called
/// with the bound address once the server accepts connections.
pub async fn serve(
    app: Router,
    listen: SocketAddr,
    mode: TlsMode,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    if matches!(mode, TlsMode::Plain) && !listen.ip().is_loopback() {
        return Err(ServeError::PlainNotLoopback(listen));
    }
    let tls = tls_config(&mode)?.map(tokio_rustls::TlsAcceptor::from);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: listen,
        source,
    })?;
    ready(local);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = hyper_util::service::TowerToHyperService::new(WithPeer { app, peer });
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let res = match tls {
                Some(acc) => {
                    match tokio::time::timeout(Duration::from_secs(10), acc.accept(stream)).await {
                        Ok(Ok(s)) => {
                            builder
                                .serve_connection_with_upgrades(
                                    hyper_util::rt::TokioIo::new(s),
                                    svc,
                                )
                                .await
                        }
                        _ => {
                            tracing::debug!(%peer, "TLS handshake failed");
                            return;
                        }
                    }
                }
                None => {
                    builder
                        .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), svc)
                        .await
                }
            };
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

/// The router with the client's address in every request's extensions
/// (`ConnectInfo<SocketAddr>`: the dashboard throttles failed logins by it).
#[derive(Clone)]
struct WithPeer {
    app: Router,
    peer: SocketAddr,
}

impl<B> tower_service::Service<axum::http::Request<B>> for WithPeer
where
    Router: tower_service::Service<axum::http::Request<B>>,
{
    type Response = <Router as tower_service::Service<axum::http::Request<B>>>::Response;
    type Error = <Router as tower_service::Service<axum::http::Request<B>>>::Error;
    type Future = <Router as tower_service::Service<axum::http::Request<B>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.app.poll_ready(cx)
    }

    fn call(&mut self, mut req: axum::http::Request<B>) -> Self::Future {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        self.app.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_scope_and_unknown_ones_need_admin() {
        assert_eq!(
            required_scope(&Method::GET, "/v1/runs/{id}"),
            Some(Scope::RunsRead)
        );
        assert_eq!(
            required_scope(&Method::POST, "/v1/runs"),
            Some(Scope::RunsWrite)
        );
        assert_eq!(
            required_scope(&Method::POST, "/v1/agents/{agent}/policies"),
            Some(Scope::PoliciesWrite)
        );
        assert_eq!(
            required_scope(&Method::GET, "/v1/agents/{agent}"),
            Some(Scope::AgentsRead)
        );
        assert_eq!(required_scope(&Method::GET, "/v1/openapi.json"), None);
        assert_eq!(
            required_scope(&Method::GET, "/v1/new-thing"),
            Some(Scope::Admin)
        );
    }
}
