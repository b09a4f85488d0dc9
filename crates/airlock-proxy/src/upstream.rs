//! The upstream side: dial exactly a validated address, optionally wrap it in
//! TLS verified against the web PKI (plus an optional extra CA), and speak
//! HTTP/1.1 or HTTP/2 to it.

use crate::error::ProxyError;
use rustls::RootCertStore;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Why reaching an upstream failed.
#[derive(Debug)]
pub(crate) enum DialError {
    /// No TCP connection to any of the checked addresses.
    Unreachable(String),
    /// The TLS handshake (including certificate verification) failed.
    Tls(String),
}

/// Build the client TLS configuration for upstreams.
pub(crate) fn client_tls(
    extra_ca_pem: Option<&[u8]>,
) -> Result<Arc<rustls::ClientConfig>, ProxyError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_ca_pem {
        use rustls::pki_types::pem::PemObject;
        let mut added = 0usize;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ProxyError::ExtraCa(format!("not valid PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ProxyError::ExtraCa(format!("unusable certificate: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(ProxyError::ExtraCa("no CERTIFICATE block found".into()));
        }
    }
    let mut cfg =
        rustls::ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(ProxyError::TlsConfig)?
            .with_root_certificates(roots)
            .with_no_client_auth();
    cfg.alpn_protocols = crate::ca::ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// Connect to the first of `addrs` that answers. Every address here has been
/// checked by the policy; nothing is looked up again.
pub(crate) async fn dial(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), DialError> {
    let mut last = String::from("no address");
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok((s, *addr));
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: connect timed out"),
        }
    }
    Err(DialError::Unreachable(last))
}

/// TLS over an established connection, verifying the upstream as `host`.
pub(crate) async fn tls(
    cfg: &Arc<rustls::ClientConfig>,
    tcp: TcpStream,
    host: &str,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, DialError> {
    let name = ServerName::try_from(host.trim_end_matches('.').to_owned())
        .map_err(|e| DialError::Tls(format!("{host}: not a valid TLS server name: {e}")))?;
    match tokio::time::timeout(timeout, TlsConnector::from(cfg.clone()).connect(name, tcp)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(DialError::Tls(e.to_string())),
        Err(_) => Err(DialError::Tls("TLS handshake timed out".into())),
    }
}
