//! A throwaway certificate authority held in memory.

use crate::FixtureError;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// A certificate authority for local servers. Its key never leaves memory;
/// clients trust it through [`LocalCa::cert_pem`].
pub struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalCa")
    }
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> FixtureError + '_ {
    move |source| FixtureError::Certificate {
        what: what.to_owned(),
        source,
    }
}

impl LocalCa {
    /// A fresh CA (ECDSA P-256) whose subject is `CN=<common_name>`.
    pub fn new(common_name: &str) -> Result<LocalCa, FixtureError> {
        let key = KeyPair::generate().map_err(cert_err("CA"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("CA"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(cert_err("CA"))?;
        Ok(LocalCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate (PEM), for clients to trust.
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate chain and key for `names` (DNS names or IP
    /// addresses); the first name is also the subject's common name.
    pub fn issue(
        &self,
        names: &[&str],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), FixtureError> {
        let what = names.join(", ");
        let key = KeyPair::generate().map_err(cert_err(&what))?;
        let mut params =
            CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .map_err(cert_err(&what))?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("upstream"),
        );
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(cert_err(&what))?;
        Ok((
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ))
    }

    /// A TLS server configuration (aws-lc-rs, safe default versions) with a
    /// certificate for `names`, offering `alpn` (empty: no ALPN, so clients
    /// speak HTTP/1.1).
    pub fn server_config(
        &self,
        names: &[&str],
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, FixtureError> {
        let (chain, key) = self.issue(names)?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(cfg))
    }
}
