//! The CLI's `--server URL` mode: the same commands (runs, audit,
//! approvals, budgets, tokens, secrets) through a control-plane API with a
//! token, instead of the local data directory.
//!
//! The token comes from `AIRLOCK_TOKEN` only (never an argument: `ps` and
//! shell history would see it) and is sent only to the named server.
//! HTTPS is verified against the Mozilla roots, or against the CA in
//! `AIRLOCK_SERVER_CA` (for example the development certificate `airlock
//! serve` writes); plain `http://` is accepted only for a loopback address.
//! Answers are printed as the API's JSON, so scripts can rely on them.

use crate::cli::TokenCmd;
use airlock_runtime::approvals::Command as ApprovalsCmd;
use airlock_types::Secret;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a remote command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL cannot be used.
    #[error("--server {url}: {detail}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// No token in the environment.
    #[error("--server needs an API token in AIRLOCK_TOKEN (never on the command line)")]
    NoToken,
    /// The CA file cannot be used.
    #[error("AIRLOCK_SERVER_CA {path}: {detail}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The server could not be reached or the exchange failed.
    #[error("{url}: {detail}")]
    Transport {
        /// The server.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The API refused the request (its own error code and message).
    #[error("{status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// The API's message.
        message: String,
    },
    /// The command has no `--server` form, or its arguments do not fit one.
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// A command to run against the server.
#[derive(Debug)]
pub enum RemoteCmd {
    /// Start a run on the server's node and wait for its end (exit code: the run's).
    Run {
        /// The agent whose active policy it runs with.
        agent: Option<String>,
        /// Vault secrets (on the server's node) granted as handles.
        secrets: Vec<String>,
        /// The program and its arguments.
        command: Vec<String>,
        /// Give up waiting after this long (the run keeps going).
        timeout: Option<Duration>,
    },
    /// The chain's verification status.
    AuditVerify,
    /// The last `n` records.
    AuditTail {
        /// How many.
        n: u64,
    },
    /// Every record from `from`, as OCSF JSON lines (like the local export).
    AuditExport {
        /// The first index.
        from: u64,
    },
    /// An inclusion proof for record `index` (check it with `audit verify --proof`).
    AuditProve {
        /// The record.
        index: u64,
    },
    /// Approvals.
    Approvals(ApprovalsCmd),
    /// Set a budget.
    BudgetSet {
        /// `org`, `team:NAME`, …
        scope: String,
        /// The limit in USD.
        usd: f64,
        /// `day`, `month` or `total`.
        period: String,
    },
    /// Budgets with their use.
    BudgetList,
    /// Tokens.
    Token(TokenCmd),
    /// Secret names and bindings.
    SecretList,
}

/// A server and the token to use with it.
pub struct Remote {
    url: String,
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
    token: Secret<String>,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("token", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Remote {
    /// The server at `url`, with the token and CA from `env`.
    pub fn new(url: &str, env: &HashMap<String, String>) -> Result<Remote, ClientError> {
        let bad = |detail: &str| ClientError::Url {
            url: url.to_owned(),
            detail: detail.to_owned(),
        };
        let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
            return Err(bad("give only scheme, host and port"));
        }
        let auth = uri.authority().ok_or_else(|| bad("no host"))?;
        if auth.as_str().contains('@') {
            return Err(bad("no user information in the URL"));
        }
        let host = auth.host().to_owned();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") if is_loopback(&host) => false,
            Some("http") => return Err(bad("plain http only to a loopback address")),
            _ => return Err(bad("use https://HOST[:PORT]")),
        };
        let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
        let token = env
            .get("AIRLOCK_TOKEN")
            .filter(|t| !t.is_empty())
            .map(|t| Secret::new(t.trim().to_owned()))
            .ok_or(ClientError::NoToken)?;
        let tls = if https {
            Some(connector(env.get("AIRLOCK_SERVER_CA").map(PathBuf::from))?)
        } else {
            None
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Transport {
                url: url.to_owned(),
                detail: format!("runtime: {e}"),
            })?;
        Ok(Remote {
            url: format!("{}://{}", if https { "https" } else { "http" }, auth),
            host,
            port,
            tls,
            token,
            rt,
        })
    }

    /// One request: the answer's JSON (or its bytes when not JSON), or the
    /// API's error.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Bytes, ClientError> {
        let fail = |detail: String| ClientError::Transport {
            url: self.url.clone(),
            detail,
        };
        let exchange = async {
            let tcp =
                tokio::net::TcpStream::connect((self.host.trim_matches(['[', ']']), self.port))
                    .await
                    .map_err(|e| fail(format!("connect: {e}")))?;
            let _ = tcp.set_nodelay(true);
            let mut sender = match &self.tls {
                Some(tls) => {
                    let name = rustls_pki_types::ServerName::try_from(
                        self.host.trim_matches(['[', ']']).to_owned(),
                    )
                    .map_err(|e| fail(format!("server name: {e}")))?;
                    let s = tls
                        .connect(name, tcp)
                        .await
                        .map_err(|e| fail(format!("TLS: {e}")))?;
                    handshake(hyper_util::rt::TokioIo::new(s)).await
                }
                None => handshake(hyper_util::rt::TokioIo::new(tcp)).await,
            }
            .map_err(fail)?;
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header(
                    hyper::header::HOST,
                    self.url.split("://").nth(1).unwrap_or(""),
                )
                .header(
                    hyper::header::AUTHORIZATION,
                    format!("Bearer {}", self.token.expose()),
                );
            let payload = match body {
                Some(v) => {
                    req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                    Bytes::from(v.to_string())
                }
                None => Bytes::new(),
            };
            let req = req
                .body(Full::new(payload))
                .map_err(|e| fail(format!("request: {e}")))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| fail(format!("exchange: {e}")))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| fail(format!("answer: {e}")))?
                .to_bytes();
            Ok::<_, ClientError>((status, bytes))
        };
        let (status, bytes) = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), exchange).await })
            .map_err(|_| fail("no answer within 60 s".into()))??;
        if status.is_success() {
            return Ok(bytes);
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Err(ClientError::Api {
            status: status.as_u16(),
            code: v["error"]["code"].as_str().unwrap_or("unknown").to_owned(),
            message: v["error"]["message"]
                .as_str()
                .unwrap_or("(no message)")
                .to_owned(),
        })
    }

    fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let b = self.call(method, path, body)?;
        if b.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&b).map_err(|e| ClientError::Transport {
            url: self.url.clone(),
            detail: format!("the answer is not JSON: {e}"),
        })
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn handshake<T>(io: hyper_util::rt::TokioIo<T>) -> Result<Sender, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

fn connector(ca: Option<PathBuf>) -> Result<tokio_rustls::TlsConnector, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            use rustls_pki_types::pem::PemObject as _;
            let bad = |detail: String| ClientError::Ca {
                path: path.clone(),
                detail,
            };
            let pem = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
            let mut n = 0;
            for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                roots
                    .add(c.map_err(|e| bad(format!("not PEM: {e}")))?)
                    .map_err(|e| bad(e.to_string()))?;
                n += 1;
            }
            if n == 0 {
                return Err(bad("no certificate in the file".into()));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Usage(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

fn enc(segment: &str) -> String {
    let mut s = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

fn pretty(out: &mut dyn Write, v: &serde_json::Value) -> Result<(), ClientError> {
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    )?;
    Ok(())
}

/// Run `cmd` against `remote`, writing its answer to `out`; returns the
/// process exit code (a remote run's own).
pub fn run(remote: &Remote, cmd: RemoteCmd, out: &mut dyn Write) -> Result<u8, ClientError> {
    use serde_json::json;
    match cmd {
        RemoteCmd::Run {
            agent,
            secrets,
            command,
            timeout,
        } => return run_and_wait(remote, agent, secrets, command, timeout, out),
        RemoteCmd::AuditVerify => {
            let v = remote.json("GET", "/v1/audit/verify", None)?;
            pretty(out, &v)?;
            if v["ok"] != true {
                return Ok(1);
            }
        }
        RemoteCmd::AuditTail { n } => {
            let status = remote.json("GET", "/v1/audit/verify", None)?;
            let next = status["records"].as_u64().unwrap_or(0);
            let from = next.saturating_sub(n.min(500));
            let v = remote.json("GET", &format!("/v1/audit?from={from}&limit=500"), None)?;
            let records = v["records"].as_array().cloned().unwrap_or_default();
            let skip = records.len().saturating_sub(n.min(500) as usize);
            for r in &records[skip..] {
                writeln!(out, "{r}")?;
            }
        }
        RemoteCmd::AuditExport { from } => {
            let b = remote.call(
                "GET",
                &format!("/v1/audit/export?from={from}&format=ocsf"),
                None,
            )?;
            out.write_all(&b)?;
        }
        RemoteCmd::AuditProve { index } => {
            pretty(
                out,
                &remote.json("GET", &format!("/v1/audit/proof/{index}"), None)?,
            )?;
        }
        RemoteCmd::Approvals(c) => {
            let v = match c {
                ApprovalsCmd::List { all, .. } => {
                    remote.json("GET", &format!("/v1/approvals?all={all}"), None)?
                }
                ApprovalsCmd::Show { id } => {
                    remote.json("GET", &format!("/v1/approvals/{}", enc(&id)), None)?
                }
                ApprovalsCmd::Approve { id, sha256 } => remote.json(
                    "POST",
                    &format!("/v1/approvals/{}/approve", enc(&id)),
                    Some(json!({ "sha256": sha256 })),
                )?,
                ApprovalsCmd::Deny { id, reason } => remote.json(
                    "POST",
                    &format!("/v1/approvals/{}/deny", enc(&id)),
                    Some(json!({ "reason": reason })),
                )?,
            };
            pretty(out, &v)?;
        }
        RemoteCmd::BudgetSet { scope, usd, period } => {
            if !(usd.is_finite() && usd >= 0.0) {
                return Err(ClientError::Usage("--usd: a non-negative amount".into()));
            }
            let v = remote.json(
                "PUT",
                &format!("/v1/budgets/{}", enc(&scope)),
                Some(json!({ "limit_micros": (usd * 1e6).round() as i64, "period": period })),
            )?;
            pretty(out, &v)?;
        }
        RemoteCmd::BudgetList => pretty(out, &remote.json("GET", "/v1/budgets", None)?)?,
        RemoteCmd::SecretList => pretty(out, &remote.json("GET", "/v1/secrets", None)?)?,
        RemoteCmd::Token(c) => token(remote, c, out)?,
    }
    Ok(0)
}

fn token(remote: &Remote, cmd: TokenCmd, out: &mut dyn Write) -> Result<(), ClientError> {
    match cmd {
        TokenCmd::Create {
            scopes,
            agents,
            nodes,
            expires,
            description,
        } => {
            let expires_in_secs = expires
                .map(|e| crate::cli::parse_duration_secs(&e))
                .transpose()
                .map_err(|e| ClientError::Usage(e.to_string()))?;
            let v = remote.json(
                "POST",
                "/v1/tokens",
                Some(serde_json::json!({
                    "scopes": scopes, "agents": agents, "nodes": nodes,
                    "description": description, "expires_in_secs": expires_in_secs,
                })),
            )?;
            // Like the local command: the token alone on stdout, once.
            eprintln!(
                "created token {} (shown once; store it now)",
                v["id"].as_str().unwrap_or("?")
            );
            writeln!(out, "{}", v["token"].as_str().unwrap_or(""))?;
        }
        TokenCmd::List => pretty(out, &remote.json("GET", "/v1/tokens", None)?)?,
        TokenCmd::Revoke { id } => {
            pretty(
                out,
                &remote.json("POST", &format!("/v1/tokens/{}/revoke", enc(&id)), None)?,
            )?;
        }
    }
    Ok(())
}

fn run_and_wait(
    remote: &Remote,
    agent: Option<String>,
    secrets: Vec<String>,
    command: Vec<String>,
    timeout: Option<Duration>,
    out: &mut dyn Write,
) -> Result<u8, ClientError> {
    if command.is_empty() {
        return Err(ClientError::Usage("run: name a command after --".into()));
    }
    let v = remote.json(
        "POST",
        "/v1/runs",
        Some(serde_json::json!({ "command": command, "agent": agent, "secrets": secrets })),
    )?;
    let id = v["id"].as_str().unwrap_or_default().to_owned();
    eprintln!("started run {id} on {}", remote.url);
    let start = Instant::now();
    loop {
        let r = remote.json("GET", &format!("/v1/runs/{}", enc(&id)), None)?;
        if r["state"] != "running" {
            pretty(out, &r)?;
            return Ok(match r["exit_code"].as_i64() {
                Some(c) => u8::try_from(c).unwrap_or(1),
                None => 1,
            });
        }
        if timeout.is_some_and(|t| start.elapsed() > t) {
            return Err(ClientError::Usage(format!(
                "run {id} is still running (stop it with POST /v1/runs/{id}/stop)"
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
