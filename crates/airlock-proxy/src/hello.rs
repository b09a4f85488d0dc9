//! The first bytes of a CONNECT tunnel: they must be a TLS ClientHello.
//!
//! A blind tunnel is only chosen when every HTTPS request to the host is
//! allowed, so its bytes must be TLS to that host: plaintext (an HTTP write
//! over a port meant for HTTPS, SMTP, SSH…) or TLS naming another server
//! would pass unjudged. [`read_client_hello`] reads, within a time and size
//! bound, until rustls has parsed a complete ClientHello (or refused the
//! bytes), and returns the bytes read so the caller can replay them.

use std::io::Read;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Most bytes read while waiting for a complete ClientHello. A ClientHello
/// (even with post-quantum key shares) is a few KiB; TLS allows it to span
/// records, so this leaves room without letting a client make us buffer
/// without bound.
pub(crate) const MAX_HELLO: usize = 64 * 1024;

/// What the first bytes of a tunnel were.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hello {
    /// A complete ClientHello; its server name (SNI), if it sent one.
    Tls { sni: Option<String> },
    /// Not TLS, or not a ClientHello rustls accepts; the detail says why
    /// (never the bytes themselves). `looks_http` when the bytes start like
    /// an HTTP request line, so the client can be answered in HTTP.
    NotTls { detail: String, looks_http: bool },
    /// No complete ClientHello within the time or size bound.
    Incomplete { detail: String },
    /// The client closed before sending anything.
    Closed,
}

/// Read the client's first bytes until they form a ClientHello (or cannot).
/// Returns the bytes read (to replay) and what they were.
pub(crate) async fn read_client_hello<S>(io: &mut S, timeout: Duration) -> (Vec<u8>, Hello)
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(4096);
    let mut acceptor = rustls::server::Acceptor::default();
    let read = tokio::time::timeout(timeout, async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = match io.read(&mut chunk).await {
                Ok(0) | Err(_) if buf.is_empty() => return Hello::Closed,
                Ok(0) => {
                    return Hello::Incomplete {
                        detail: format!(
                            "closed after {} bytes, before a complete ClientHello",
                            buf.len()
                        ),
                    };
                }
                Err(e) => {
                    return Hello::Incomplete {
                        detail: format!("read failed before a complete ClientHello: {e}"),
                    };
                }
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            if let Some(h) = feed(&mut acceptor, &chunk[..n], &buf) {
                return h;
            }
            if buf.len() > MAX_HELLO {
                return Hello::Incomplete {
                    detail: format!("no complete ClientHello in the first {MAX_HELLO} bytes"),
                };
            }
        }
    })
    .await;
    let hello = read.unwrap_or_else(|_| Hello::Incomplete {
        detail: format!(
            "no complete ClientHello within {timeout:?} ({} bytes received)",
            buf.len()
        ),
    });
    (buf, hello)
}

/// Give rustls the new bytes; `Some` once it has decided.
fn feed(acceptor: &mut rustls::server::Acceptor, mut new: &[u8], all: &[u8]) -> Option<Hello> {
    let not_tls = |detail: String| Hello::NotTls {
        detail,
        looks_http: looks_like_http(all),
    };
    while !new.is_empty() {
        match acceptor.read_tls(&mut new as &mut dyn Read) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Some(not_tls(format!("not a TLS record: {e}"))),
        }
        match acceptor.accept() {
            Ok(None) => {}
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_owned);
                return Some(Hello::Tls { sni });
            }
            Err((e, _alert)) => return Some(not_tls(format!("not a TLS ClientHello: {e}"))),
        }
    }
    None
}

/// An ASCII method token and a space: the client is speaking HTTP.
fn looks_like_http(bytes: &[u8]) -> bool {
    let Some(sp) = bytes.iter().take(32).position(|b| *b == b' ') else {
        return false;
    };
    sp > 0 && bytes[..sp].iter().all(u8::is_ascii_uppercase)
}

/// Whether `sni` names `host` (case-insensitive, a trailing dot ignored).
pub(crate) fn sni_matches(sni: &str, host: &str) -> bool {
    sni.trim_end_matches('.')
        .eq_ignore_ascii_case(host.trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ClientHello from rustls's client for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let roots = rustls::RootCertStore::empty();
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("name");
        let mut c = rustls::ClientConnection::new(std::sync::Arc::new(cfg), server).expect("conn");
        let mut out = Vec::new();
        c.write_tls(&mut out).expect("hello");
        out
    }

    async fn read(bytes: Vec<u8>) -> Hello {
        let mut io = std::io::Cursor::new(bytes);
        read_client_hello(&mut io, Duration::from_secs(1)).await.1
    }

    #[tokio::test]
    async fn a_client_hello_gives_its_server_name_and_is_replayed_whole() {
        let hello = client_hello("api.test");
        let mut io = std::io::Cursor::new(hello.clone());
        let (buf, h) = read_client_hello(&mut io, Duration::from_secs(1)).await;
        assert_eq!(
            h,
            Hello::Tls {
                sni: Some("api.test".into())
            }
        );
        assert_eq!(buf, hello);
        // An IP literal sends no server name.
        assert_eq!(
            read(client_hello("192.0.2.1")).await,
            Hello::Tls { sni: None }
        );
    }

    #[tokio::test]
    async fn plaintext_is_not_tls() {
        let h = read(b"POST /x HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()).await;
        assert!(
            matches!(
                h,
                Hello::NotTls {
                    looks_http: true,
                    ..
                }
            ),
            "{h:?}"
        );
        let h = read(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()).await;
        assert!(
            matches!(
                h,
                Hello::NotTls {
                    looks_http: false,
                    ..
                }
            ),
            "{h:?}"
        );
        assert_eq!(read(Vec::new()).await, Hello::Closed);
        let mut hello = client_hello("api.test");
        hello.truncate(20);
        assert!(matches!(read(hello).await, Hello::Incomplete { .. }));
    }

    #[test]
    fn server_names_compare_without_case_or_trailing_dot() {
        assert!(sni_matches("API.test.", "api.test"));
        assert!(!sni_matches("evil.test", "api.test"));
    }
}
