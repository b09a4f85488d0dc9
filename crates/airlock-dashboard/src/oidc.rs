//! Single sign-on through an OpenID Connect provider: the
//! authorization-code flow with PKCE (S256), `state` and `nonce`.
//!
//! `/login/oidc` discovers the provider (its document must name exactly
//! the configured issuer), keeps a pending login server-side (state, nonce,
//! PKCE verifier; one use, 10 minutes, bound to a pre-login cookie) and
//! redirects to the provider. `/login/oidc/callback` takes the pending
//! login out (so a replayed callback finds nothing), checks the cookie,
//! exchanges the code (with the verifier) at the token endpoint, fetches
//! the JWKS and validates the ID token ([`validate_id_token`]): RS256 or
//! ES256 only, the key by `kid` (or the only key of a one-key set), the
//! signature, `iss`, `aud` (and `azp` with several audiences), `exp`,
//! `nonce`. Every fetch goes through one hyper client (rustls, the
//! webpki roots), `https://` only, or `http://` to a loopback host.

use airlock_runtime::settings::oidc::{OidcSettings, TenantSource, url_allowed};
use airlock_types::{Secret, TenantId};
use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a started login may take at the provider.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// At most this many logins pending at once (the rest are refused).
const MAX_PENDING: usize = 10_000;
/// The largest discovery document, JWKS or token response read.
const MAX_BODY: usize = 1 << 20;
/// Each request to the provider.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The discovery document is fetched again after this long.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Clock skew allowed on `exp`/`nbf`, in seconds.
const LEEWAY_S: u64 = 60;

/// The pre-login cookie's name.
pub(crate) const PRELOGIN_COOKIE: &str = "airlock_oidc";

/// Why an SSO login was refused: `check` names the check that failed (it
/// goes into the audit record and the page), `detail` is for the server's
/// log only.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub check: &'static str,
    pub detail: String,
}

fn refuse(check: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        check,
        detail: detail.into(),
    }
}

/// The endpoints from the provider's discovery document.
#[derive(Debug)]
struct Provider {
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

struct Pending {
    nonce: String,
    verifier: Secret<String>,
    cookie_hash: [u8; 32],
    expires: Instant,
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The OIDC login's state: the configuration, the HTTP client, the
/// discovered provider and the pending logins.
pub(crate) struct Oidc {
    pub cfg: OidcSettings,
    redirect_url: String,
    http: HttpClient,
    provider: tokio::sync::Mutex<Option<(Instant, Arc<Provider>)>>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("cfg", &self.cfg)
            .field("redirect_url", &self.redirect_url)
            .finish_non_exhaustive()
    }
}

fn tls_config() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| {
        b.with_root_certificates(roots.clone())
            .with_no_client_auth()
    })
    .unwrap_or_else(|_| {
        // No usable provider: an empty root store, so every TLS fetch fails
        // (closed) instead of trusting anything.
        rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    })
}

fn random_b64<const N: usize>() -> Result<String, Refusal> {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| refuse("random", "system random source failed"))?;
    Ok(B64.encode(b))
}

fn sha256(s: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub(crate) fn pkce_challenge(verifier: &str) -> String {
    B64.encode(sha256(verifier))
}

/// A started login: where to send the browser, and the pre-login cookie's
/// value.
pub(crate) struct Started {
    pub location: String,
    pub cookie: Secret<String>,
}

/// What the provider vouched for: the mapped user.
#[derive(Debug)]
pub(crate) struct Identity {
    pub username: String,
    pub tenant: TenantId,
    pub subject: String,
}

impl Oidc {
    pub(crate) fn new(cfg: OidcSettings, redirect_url: String) -> Oidc {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Oidc {
            cfg,
            redirect_url,
            http: Client::builder(TokioExecutor::new()).build(https),
            provider: tokio::sync::Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// The account marker stored in place of a password hash: never a PHC
    /// string, so no password opens an SSO account, and a local account is
    /// never taken over by SSO.
    pub(crate) fn account_marker(&self) -> String {
        format!("oidc:{}", self.cfg.issuer)
    }

    async fn fetch(
        &self,
        what: &'static str,
        req: hyper::Request<Full<Bytes>>,
    ) -> Result<(u16, Value), Refusal> {
        let uri = req.uri().to_string();
        url_allowed(&uri).map_err(|m| refuse(what, format!("{uri}: {m}")))?;
        let resp = tokio::time::timeout(TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| refuse(what, format!("{uri}: timed out")))?
            .map_err(|e| refuse(what, format!("{uri}: {e}")))?;
        let status = resp.status().as_u16();
        let body =
            tokio::time::timeout(TIMEOUT, Limited::new(resp.into_body(), MAX_BODY).collect())
                .await
                .map_err(|_| refuse(what, format!("{uri}: body timed out")))?
                .map_err(|e| refuse(what, format!("{uri}: body: {e}")))?
                .to_bytes();
        let v = serde_json::from_slice(&body)
            .map_err(|e| refuse(what, format!("{uri}: HTTP {status}, not JSON: {e}")))?;
        Ok((status, v))
    }

    async fn get_json(&self, what: &'static str, url: &str) -> Result<Value, Refusal> {
        let req = hyper::Request::get(url)
            .header(hyper::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| refuse(what, format!("{url}: {e}")))?;
        match self.fetch(what, req).await? {
            (200, v) => Ok(v),
            (s, _) => Err(refuse(what, format!("{url}: HTTP {s}"))),
        }
    }

    /// The provider's endpoints (cached for an hour).
    async fn provider(&self) -> Result<Arc<Provider>, Refusal> {
        let mut g = self.provider.lock().await;
        if let Some((at, p)) = g.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(p.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let doc = self.get_json("discovery", &url).await?;
        let field = |k: &str| {
            doc.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| refuse("discovery", format!("{url}: no {k}")))
        };
        let issuer = field("issuer")?;
        if issuer != self.cfg.issuer {
            return Err(refuse(
                "discovery_issuer",
                format!(
                    "{url} names issuer {issuer:?}, configured {:?}",
                    self.cfg.issuer
                ),
            ));
        }
        let p = Provider {
            authorization_endpoint: field("authorization_endpoint")?,
            token_endpoint: field("token_endpoint")?,
            jwks_uri: field("jwks_uri")?,
        };
        for u in [&p.authorization_endpoint, &p.token_endpoint, &p.jwks_uri] {
            url_allowed(u)
                .or_else(|m| {
                    // An authorization endpoint may carry a query.
                    if std::ptr::eq(u, &p.authorization_endpoint) && m == "must not have a query" {
                        Ok(())
                    } else {
                        Err(m)
                    }
                })
                .map_err(|m| refuse("discovery", format!("endpoint {u}: {m}")))?;
        }
        let p = Arc::new(p);
        *g = Some((Instant::now(), p.clone()));
        Ok(p)
    }

    /// Start a login: a pending entry and the provider's authorization URL.
    pub(crate) async fn start(&self) -> Result<Started, Refusal> {
        let p = self.provider().await?;
        let state = random_b64::<32>()?;
        let nonce = random_b64::<32>()?;
        let verifier = random_b64::<32>()?;
        let cookie = random_b64::<32>()?;
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", self.cfg.client_id.as_str()),
            ("redirect_uri", self.redirect_url.as_str()),
            ("scope", self.cfg.scopes.as_str()),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
            ("code_challenge", pkce_challenge(&verifier).as_str()),
            ("code_challenge_method", "S256"),
        ])
        .map_err(|e| refuse("authorization_request", e.to_string()))?;
        let sep = if p.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let location = format!("{}{sep}{query}", p.authorization_endpoint);
        let now = Instant::now();
        let mut g = self
            .pending
            .lock()
            .map_err(|_| refuse("pending", "lock poisoned"))?;
        g.retain(|_, v| v.expires > now);
        if g.len() >= MAX_PENDING {
            return Err(refuse("too_many_pending_logins", format!("{}", g.len())));
        }
        g.insert(
            state,
            Pending {
                nonce,
                verifier: Secret::new(verifier),
                cookie_hash: sha256(&cookie),
                expires: now + PENDING_TTL,
            },
        );
        Ok(Started {
            location,
            cookie: Secret::new(cookie),
        })
    }

    /// Finish a login: the pending entry for `state` (taken out: one use),
    /// the cookie binding, the code exchange, the ID token, the mapping.
    pub(crate) async fn finish(
        &self,
        state: &str,
        code: &str,
        cookie: Option<&str>,
    ) -> Result<Identity, Refusal> {
        let pending = {
            let mut g = self
                .pending
                .lock()
                .map_err(|_| refuse("pending", "lock poisoned"))?;
            g.remove(state)
        };
        let Some(pending) = pending else {
            return Err(refuse(
                "state",
                "no pending login with this state (unknown, used or expired)",
            ));
        };
        if pending.expires <= Instant::now() {
            return Err(refuse("state", "the pending login expired"));
        }
        let bound = cookie.is_some_and(|c| {
            aws_lc_rs::constant_time::verify_slices_are_equal(&sha256(c), &pending.cookie_hash)
                .is_ok()
        });
        if !bound {
            return Err(refuse(
                "prelogin_cookie",
                "the callback did not come from the browser that started the login",
            ));
        }
        let p = self.provider().await?;
        let form = serde_urlencoded::to_string([
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_url.as_str()),
            ("code_verifier", pending.verifier.expose().as_str()),
            ("client_id", self.cfg.client_id.as_str()),
        ])
        .map_err(|e| refuse("token_exchange", e.to_string()))?;
        let mut req = hyper::Request::post(p.token_endpoint.as_str())
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(secret) = &self.cfg.client_secret {
            // RFC 6749 §2.3.1: both parts form-urlencoded, then Basic.
            let enc = |s: &str| {
                serde_urlencoded::to_string([("", s)])
                    .map(|x| x.trim_start_matches('=').to_owned())
                    .unwrap_or_default()
            };
            let basic = B64_STD.encode(format!(
                "{}:{}",
                enc(&self.cfg.client_id),
                enc(secret.expose())
            ));
            req = req.header(hyper::header::AUTHORIZATION, format!("Basic {basic}"));
        }
        let req = req
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| refuse("token_exchange", e.to_string()))?;
        let (status, body) = self.fetch("token_exchange", req).await?;
        if status != 200 {
            let err = body.get("error").and_then(Value::as_str).unwrap_or("?");
            return Err(refuse(
                "token_exchange",
                format!("token endpoint: HTTP {status}, error {err:?}"),
            ));
        }
        let id_token = body
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| refuse("token_exchange", "no id_token in the token response"))?;
        let jwks_v = self.get_json("jwks", &p.jwks_uri).await?;
        let jwks: JwkSet = serde_json::from_value(jwks_v)
            .map_err(|e| refuse("jwks", format!("{}: {e}", p.jwks_uri)))?;
        let claims = validate_id_token(
            id_token,
            &jwks,
            &self.cfg.issuer,
            &self.cfg.client_id,
            &pending.nonce,
        )?;
        map_identity(&self.cfg, &claims)
    }
}

use base64::engine::general_purpose::STANDARD as B64_STD;

/// Validate an ID token against the provider's keys: algorithm RS256 or
/// ES256 (never `none`, never an HMAC), the key named by `kid` (or the
/// only key of a one-key set), the signature, `iss` = `issuer`, `aud`
/// containing `client_id` (and `azp` = `client_id` when there are several
/// audiences), `exp` (60 s leeway), `nbf` if present, `nonce` = `nonce`.
/// Returns the claims.
pub(crate) fn validate_id_token(
    token: &str,
    jwks: &JwkSet,
    issuer: &str,
    client_id: &str,
    nonce: &str,
) -> Result<Map<String, Value>, Refusal> {
    // The header's algorithm first, by name: `none` and the HMACs are not
    // even parsed further.
    let alg_name = token
        .split('.')
        .next()
        .and_then(|h| B64.decode(h).ok())
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| refuse("id_token_malformed", "no readable JOSE header"))?;
    let alg = match alg_name.as_str() {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        other => {
            return Err(refuse(
                "id_token_algorithm",
                format!("algorithm {other:?} is not RS256 or ES256"),
            ));
        }
    };
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| refuse("id_token_malformed", e.to_string()))?;
    let jwk = match &header.kid {
        Some(kid) => jwks
            .find(kid)
            .ok_or_else(|| refuse("id_token_key", format!("no key {kid:?} in the JWKS")))?,
        None => match jwks.keys.as_slice() {
            [only] => only,
            keys => {
                return Err(refuse(
                    "id_token_key",
                    format!("no kid, and the JWKS has {} keys", keys.len()),
                ));
            }
        },
    };
    if let Some(ka) = jwk.common.key_algorithm
        && ka.to_string() != alg_name
    {
        return Err(refuse(
            "id_token_algorithm",
            format!("the key is for {ka}, the token says {alg_name}"),
        ));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| refuse("id_token_key", e.to_string()))?;
    let mut v = Validation::new(alg);
    v.algorithms = vec![alg];
    v.set_issuer(&[issuer]);
    v.set_audience(&[client_id]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = LEEWAY_S;
    v.validate_nbf = true;
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        let check = match e.kind() {
            K::InvalidSignature => "id_token_signature",
            K::ExpiredSignature => "id_token_expired",
            K::ImmatureSignature => "id_token_not_yet_valid",
            K::InvalidIssuer => "id_token_issuer",
            K::InvalidAudience => "id_token_audience",
            K::InvalidAlgorithm | K::MissingAlgorithm => "id_token_algorithm",
            K::MissingRequiredClaim(_) => "id_token_claims",
            _ => "id_token_malformed",
        };
        refuse(check, e.to_string())
    })?;
    let claims = data.claims;
    if let Some(Value::Array(auds)) = claims.get("aud")
        && auds.len() > 1
        && claims.get("azp").and_then(Value::as_str) != Some(client_id)
    {
        return Err(refuse(
            "id_token_audience",
            "several audiences and azp is not this client",
        ));
    }
    let presented = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), nonce.as_bytes())
        .is_err()
    {
        return Err(refuse("id_token_nonce", "the nonce is not this login's"));
    }
    Ok(claims)
}

fn claim_str<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

/// The username and tenant an ID token's claims map to.
pub(crate) fn map_identity(
    cfg: &OidcSettings,
    claims: &Map<String, Value>,
) -> Result<Identity, Refusal> {
    let subject = claim_str(claims, "sub")
        .ok_or_else(|| refuse("id_token_claims", "no sub"))?
        .to_owned();
    let username = match &cfg.username_claim {
        Some(c) => claim_str(claims, c),
        None => claim_str(claims, "email").or(Some(subject.as_str())),
    }
    .ok_or_else(|| refuse("username_claim", "the username claim is missing"))?;
    if username.is_empty() || username.len() > 256 || username.chars().any(char::is_control) {
        return Err(refuse(
            "username_claim",
            "the username is empty, too long or has control characters",
        ));
    }
    let tenant = match &cfg.tenant {
        TenantSource::Fixed(t) => t.clone(),
        TenantSource::Claim(c) => {
            let v = claim_str(claims, c)
                .ok_or_else(|| refuse("tenant_claim", format!("no string claim {c:?}")))?;
            TenantId::new(v).map_err(|e| refuse("tenant_claim", e.to_string()))?
        }
    };
    Ok(Identity {
        username: username.to_owned(),
        tenant,
        subject,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const ISS: &str = "https://idp.example";
    const AUD: &str = "airlock";
    const NONCE: &str = "n-0S6_WzA2Mj";

    struct Key {
        enc: EncodingKey,
        jwks: JwkSet,
    }

    fn key(kid: Option<&str>) -> Key {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("keygen");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("pair");
        let pubkey = pair.public_key().as_ref();
        assert_eq!(pubkey.len(), 65, "uncompressed point");
        let mut jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig",
            "x": B64.encode(&pubkey[1..33]), "y": B64.encode(&pubkey[33..]),
        });
        if let Some(k) = kid {
            jwk["kid"] = json!(k);
        }
        Key {
            enc: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwks: serde_json::from_value(json!({ "keys": [jwk] })).expect("jwks"),
        }
    }

    fn now() -> i64 {
        i64::try_from(jsonwebtoken::get_current_timestamp()).expect("time")
    }

    fn claims() -> Value {
        json!({
            "iss": ISS, "aud": AUD, "sub": "alice", "email": "alice@example.com",
            "nonce": NONCE, "iat": now(), "exp": now() + 300,
        })
    }

    fn sign(k: &Key, kid: Option<&str>, c: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&h, c, &k.enc).expect("sign")
    }

    fn check(token: &str, jwks: &JwkSet) -> Result<Map<String, Value>, &'static str> {
        validate_id_token(token, jwks, ISS, AUD, NONCE).map_err(|r| r.check)
    }

    #[test]
    fn a_good_token_passes_with_a_single_keyless_jwks_or_by_kid() {
        let k = key(None);
        let c = check(&sign(&k, None, &claims()), &k.jwks).expect("valid");
        assert_eq!(c.get("sub"), Some(&json!("alice")));
        let k = key(Some("k1"));
        check(&sign(&k, Some("k1"), &claims()), &k.jwks).expect("by kid");
        assert_eq!(
            check(&sign(&k, Some("k2"), &claims()), &k.jwks),
            Err("id_token_key")
        );
    }

    #[test]
    fn each_claim_check_refuses() {
        let k = key(None);
        let with = |f: &dyn Fn(&mut Value)| {
            let mut c = claims();
            f(&mut c);
            check(&sign(&k, None, &c), &k.jwks).map(|_| ())
        };
        assert_eq!(
            with(&|c| c["exp"] = json!(now() - 120)),
            Err("id_token_expired")
        );
        assert_eq!(
            with(&|c| c["iss"] = json!("https://evil.example")),
            Err("id_token_issuer")
        );
        assert_eq!(
            with(&|c| c["aud"] = json!("someone-else")),
            Err("id_token_audience")
        );
        assert_eq!(
            with(&|c| c["aud"] = json!([AUD, "other"])),
            Err("id_token_audience"),
            "several audiences without azp"
        );
        assert_eq!(
            with(&|c| {
                c["aud"] = json!([AUD, "other"]);
                c["azp"] = json!(AUD);
            }),
            Ok(())
        );
        assert_eq!(
            with(&|c| c["nonce"] = json!("another-login")),
            Err("id_token_nonce")
        );
        assert_eq!(
            with(&|c| {
                c.as_object_mut().map(|o| o.remove("nonce"));
            }),
            Err("id_token_nonce")
        );
        assert_eq!(
            with(&|c| {
                c.as_object_mut().map(|o| o.remove("exp"));
            }),
            Err("id_token_claims")
        );
        assert_eq!(
            with(&|c| c["nbf"] = json!(now() + 3600)),
            Err("id_token_not_yet_valid")
        );
    }

    #[test]
    fn forged_tokens_are_refused() {
        let k = key(None);
        let other = key(None);
        // Signed by another key.
        assert_eq!(
            check(&sign(&other, None, &claims()), &k.jwks),
            Err("id_token_signature")
        );
        // A claim changed after signing.
        let good = sign(&k, None, &claims());
        let parts: Vec<&str> = good.split('.').collect();
        let mut c = claims();
        c["sub"] = json!("admin");
        let tampered = format!("{}.{}.{}", parts[0], B64.encode(c.to_string()), parts[2]);
        assert_eq!(check(&tampered, &k.jwks), Err("id_token_signature"));
        // alg none, with and without a signature.
        let none = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = B64.encode(claims().to_string());
        assert_eq!(
            check(&format!("{none}.{body}."), &k.jwks),
            Err("id_token_algorithm")
        );
        assert_eq!(
            check(&format!("{none}.{body}.{}", parts[2]), &k.jwks),
            Err("id_token_algorithm")
        );
        // HS256 keyed with the public key's bytes (key confusion).
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(k.jwks.keys.len().to_string().as_bytes()),
        )
        .expect("hs");
        assert_eq!(check(&hs, &k.jwks), Err("id_token_algorithm"));
        // Garbage.
        assert_eq!(check("not a jwt", &k.jwks), Err("id_token_malformed"));
        // Two keys and no kid: ambiguous.
        let mut two = k.jwks.clone();
        two.keys.extend(other.jwks.keys.clone());
        assert_eq!(check(&good, &two), Err("id_token_key"));
    }

    #[test]
    fn identities_map_by_configured_claims() {
        let cfg = |username_claim: Option<&str>, tenant: TenantSource| OidcSettings {
            issuer: ISS.into(),
            client_id: AUD.into(),
            client_secret: None,
            redirect_url: None,
            tenant,
            username_claim: username_claim.map(str::to_owned),
            scopes: "openid".into(),
            admins: vec![],
        };
        let c = |v: Value| v.as_object().cloned().expect("object");
        let fixed = TenantSource::Fixed(TenantId::new("acme").expect("t"));
        let id = map_identity(
            &cfg(None, fixed.clone()),
            &c(json!({"sub": "s1", "email": "a@x"})),
        )
        .expect("id");
        assert_eq!((id.username.as_str(), id.tenant.as_str()), ("a@x", "acme"));
        let id = map_identity(&cfg(None, fixed.clone()), &c(json!({"sub": "s1"}))).expect("id");
        assert_eq!(id.username, "s1", "sub when there is no email");
        assert_eq!(
            map_identity(&cfg(Some("upn"), fixed), &c(json!({"sub": "s1"})))
                .map(|_| ())
                .map_err(|r| r.check),
            Err("username_claim")
        );
        let by_claim = TenantSource::Claim("org".into());
        let id = map_identity(
            &cfg(None, by_claim.clone()),
            &c(json!({"sub": "s1", "org": "globex"})),
        )
        .expect("id");
        assert_eq!(id.tenant.as_str(), "globex");
        assert_eq!(
            map_identity(
                &cfg(None, by_claim),
                &c(json!({"sub": "s1", "org": "../x"}))
            )
            .map(|_| ())
            .map_err(|r| r.check),
            Err("tenant_claim")
        );
    }

    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
