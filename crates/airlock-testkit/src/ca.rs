//! A throwaway CA for test upstreams.

use airlock_fixtures::LocalCa;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};

/// A certificate authority for test upstreams (an [`LocalCa`] that panics,
/// failing the test, instead of returning errors).
#[derive(Debug)]
pub struct TestCa {
    ca: LocalCa,
}

impl TestCa {
    /// A fresh CA.
    pub fn new() -> TestCa {
        TestCa {
            ca: LocalCa::new("Airlock test upstream CA").expect("make the test CA"),
        }
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// Write the CA certificate to `dir/name` and return the path.
    pub fn write_pem(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, self.ca.cert_pem()).expect("write test CA");
        p
    }

    /// A server certificate chain and key for `names` (DNS names or IPs).
    pub fn issue(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        self.ca.issue(names).expect("valid test names")
    }

    /// The CA itself, for fixtures that take one.
    pub fn local_ca(&self) -> &LocalCa {
        &self.ca
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}
