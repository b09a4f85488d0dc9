//! The interception CA: generated at start, held only in memory, never
//! written anywhere. Leaf certificates are minted per host, signed by it,
//! cached, and served with the full chain (leaf, CA).

use crate::error::ProxyError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// ALPN identifiers offered to clients of intercepted tunnels.
pub(crate) const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// How long a minted leaf is valid, and how long it is reused from the cache.
const LEAF_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
const LEAF_REUSE: Duration = Duration::from_secs(24 * 3600);
/// Most leaves kept; the cache is cleared when it grows past this.
const LEAF_CACHE_MAX: usize = 10_000;

/// An ephemeral ECDSA P-256 certificate authority with a per-host leaf cache.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    /// One key pair shared by all leaves: minting is then one signature.
    leaf_key: KeyPair,
    leaf_signing_key: Arc<dyn rustls::sign::SigningKey>,
    serial: AtomicU64,
    cache: Mutex<HashMap<String, (Instant, Arc<rustls::ServerConfig>)>>,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority").finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// Generate a fresh CA and leaf key.
    pub fn generate() -> Result<Self, ProxyError> {
        let ca_key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(ProxyError::GenerateCa)?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(ProxyError::GenerateCa)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            "Airlock egress interception CA (ephemeral)",
        );
        dn.push(DnType::OrganizationName, "Airlock");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365);
        let cert = params
            .self_signed(&ca_key)
            .map_err(ProxyError::GenerateCa)?;
        let ca_der = cert.der().clone();
        let ca_pem = cert.pem();
        let issuer = Issuer::new(params, ca_key);

        let leaf_key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(ProxyError::GenerateCa)?;
        let pkcs8 = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let leaf_signing_key =
            aws_lc_rs::sign::any_ecdsa_type(&pkcs8).map_err(ProxyError::TlsConfig)?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Ok(CertAuthority {
            issuer,
            ca_der,
            ca_pem,
            leaf_key,
            leaf_signing_key,
            serial: AtomicU64::new(seed),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate in PEM, for the sandbox's trust bundle.
    pub fn cert_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Mint a new leaf certificate for `host` (a DNS name or an IP literal)
    /// and return it with the CA as a chain. Not cached.
    pub fn mint(&self, host: &str) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
        let err = |source| ProxyError::MintLeaf {
            host: host.to_owned(),
            source,
        };
        let mut params = CertificateParams::new(vec![host.to_owned()]).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        params.serial_number = Some(SerialNumber::from(serial.to_be_bytes().to_vec()));
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after =
            now + time::Duration::try_from(LEAF_VALIDITY).unwrap_or(time::Duration::days(7));
        let leaf = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(err)?;
        Ok(vec![leaf.der().clone(), self.ca_der.clone()])
    }

    /// A TLS server configuration presenting a leaf for `host`, minted on
    /// first use and cached. ALPN offers h2 and http/1.1.
    pub fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, ProxyError> {
        let key = host.to_ascii_lowercase();
        if let Ok(cache) = self.cache.lock()
            && let Some((at, cfg)) = cache.get(&key)
            && at.elapsed() < LEAF_REUSE
        {
            return Ok(cfg.clone());
        }
        let chain = self.mint(&key)?;
        let certified = Arc::new(CertifiedKey::new(chain, self.leaf_signing_key.clone()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(server_provider())
            .with_safe_default_protocol_versions()
            .map_err(ProxyError::TlsConfig)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(certified)));
        cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        // Our order, not the client's: see `server_provider`.
        cfg.ignore_client_order = true;
        let cfg = Arc::new(cfg);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= LEAF_CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), cfg.clone()));
        }
        Ok(cfg)
    }
}

/// The crypto provider for the agent-facing side of an intercepted tunnel:
/// aws-lc-rs's defaults with AES-128-GCM/SHA-256 preferred over
/// AES-256-GCM/SHA-384. Both are standard TLS 1.3 suites; the SHA-384 key
/// schedule (software SHA-512 blocks, no SHA extensions) was ≈10 % of the
/// proxy's cycles per new intercepted tunnel in perf, SHA-256 runs on the
/// CPU's SHA instructions. The key exchange groups are unchanged.
fn server_provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = aws_lc_rs::default_provider();
    provider.cipher_suites.sort_by_key(|s| {
        match s.suite() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => 1,
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => 2,
            _ => 3, // TLS 1.2 suites keep their relative order (stable sort)
        }
    });
    Arc::new(provider)
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier as _;

    /// The agent-facing side prefers AES-128-GCM/SHA-256 whatever the
    /// client lists first (the SHA-384 key schedule cost ≈10 % per tunnel),
    /// and still offers every default suite.
    #[test]
    fn intercepted_tls_prefers_aes128_and_keeps_the_default_suites() {
        let ca = CertAuthority::generate().expect("ca");
        let cfg = ca.server_config("example.com").expect("config");
        assert!(cfg.ignore_client_order);
        let ours: Vec<_> = cfg
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(ours[0], rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let mut defaults: Vec<_> = aws_lc_rs::default_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        let mut sorted = ours.clone();
        defaults.sort_by_key(|s| u16::from(*s));
        sorted.sort_by_key(|s| u16::from(*s));
        assert_eq!(sorted, defaults);
    }

    #[test]
    fn leaf_chains_to_the_ca_and_names_the_host() {
        let ca = CertAuthority::generate().expect("ca");
        let chain = ca.mint("api.example.com").expect("leaf");
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], ca.ca_der);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.ca_der.clone()).expect("root");
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(aws_lc_rs::default_provider()),
        )
        .build()
        .expect("verifier");
        let name = rustls::pki_types::ServerName::try_from("api.example.com").expect("name");
        let now = rustls::pki_types::UnixTime::now();
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], now)
            .expect("leaf verifies");
        let other = rustls::pki_types::ServerName::try_from("evil.example.com").expect("name");
        assert!(
            verifier
                .verify_server_cert(&chain[0], &chain[1..], &other, &[], now)
                .is_err()
        );
    }

    #[test]
    fn leaf_for_ip_literal_verifies_as_ip() {
        let ca = CertAuthority::generate().expect("ca");
        let chain = ca.mint("127.0.0.9").expect("leaf");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.ca_der.clone()).expect("root");
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(aws_lc_rs::default_provider()),
        )
        .build()
        .expect("verifier");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.9").expect("name");
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .expect("ip leaf verifies");
    }

    #[test]
    fn server_configs_are_cached_per_host() {
        let ca = CertAuthority::generate().expect("ca");
        let a = ca.server_config("A.example").expect("a");
        let b = ca.server_config("a.example").expect("b");
        assert!(Arc::ptr_eq(&a, &b));
        let c = ca.server_config("c.example").expect("c");
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
