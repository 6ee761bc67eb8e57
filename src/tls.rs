//! TLS on our own listeners: a certificate and key read from PEM files, swapped on reload.
//!
//! The config layer reads the files (through the secret-file lookup, so the watcher sees them
//! change) and turns them into an `Identity` with `Identity::from_pem`, which refuses a chain
//! that does not match its key. The listener's rustls config asks a `Certs` resolver for its
//! certificate on each handshake: one atomic load, and a reload swaps what it holds. So a renewed
//! certificate (cert-manager, certbot) is served from the next handshake on, without a restart
//! and without dropping a connection.
//!
//! ALPN offers HTTP/2 first and HTTP/1.1; a client that offers neither gets HTTP/1.1.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A listener's certificate chain and key, as loaded from its files.
#[derive(Clone)]
pub struct Identity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub key: Arc<CertifiedKey>,
}

impl Identity {
    /// Parses a PEM chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1), checking
    /// that the key is the leaf's. Errors say which file is wrong, never what it holds.
    pub fn from_pem(cert_file: PathBuf, cert_pem: &str, key_file: PathBuf, key_pem: &str) -> Result<Identity, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: not a PEM certificate chain ({e})", cert_file.display()))?;
        if chain.is_empty() {
            return Err(format!("{}: no certificate in it", cert_file.display()));
        }
        let der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|_| format!("{}: no PEM private key in it", key_file.display()))?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&der)
            .map_err(|e| format!("{}: unsupported private key ({e})", key_file.display()))?;
        let key = CertifiedKey::new(chain, signing);
        key.keys_match().map_err(|_| {
            format!(
                "{} does not hold the private key of the certificate in {}",
                key_file.display(),
                cert_file.display()
            )
        })?;
        Ok(Identity {
            cert_file,
            key_file,
            key: Arc::new(key),
        })
    }
}

/// Equal when the same files hold the same chain (the key follows from the chain: it matched).
impl PartialEq for Identity {
    fn eq(&self, other: &Identity) -> bool {
        self.cert_file == other.cert_file && self.key_file == other.key_file && self.key.cert == other.key.cert
    }
}

impl Eq for Identity {}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// The certificate a listener serves now; a reload swaps it (`set`).
#[derive(Debug)]
pub struct Certs {
    current: ArcSwap<CertifiedKey>,
}

impl Certs {
    pub fn new(identity: &Identity) -> Arc<Certs> {
        Arc::new(Certs {
            current: ArcSwap::new(Arc::clone(&identity.key)),
        })
    }

    /// Serves `identity` from the next handshake on. True when it differs from what was served.
    pub fn set(&self, identity: &Identity) -> bool {
        let old = self.current.swap(Arc::clone(&identity.key));
        old.cert != identity.key.cert
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (c.cert.pem(), c.key_pair.serialize_pem())
    }

    #[test]
    fn loads_a_matching_pair_and_refuses_a_mismatch() {
        let (cert, key) = pair("localhost");
        let id = Identity::from_pem("c.pem".into(), &cert, "k.pem".into(), &key).unwrap();
        assert_eq!(id.key.cert.len(), 1);

        let (_, other_key) = pair("localhost");
        let e = Identity::from_pem("c.pem".into(), &cert, "k.pem".into(), &other_key).unwrap_err();
        assert!(
            e.contains("k.pem does not hold the private key of the certificate in c.pem"),
            "{e}"
        );
        assert!(!e.contains("BEGIN"), "{e}");

        let e = Identity::from_pem("c.pem".into(), "junk", "k.pem".into(), &key).unwrap_err();
        assert!(e.contains("c.pem: no certificate"), "{e}");
        let e = Identity::from_pem("c.pem".into(), &cert, "k.pem".into(), &cert).unwrap_err();
        assert!(e.contains("k.pem: no PEM private key"), "{e}");
    }

    #[test]
    fn a_swap_serves_the_new_certificate() {
        let (c1, k1) = pair("one.test");
        let (c2, k2) = pair("two.test");
        let a = Identity::from_pem("c".into(), &c1, "k".into(), &k1).unwrap();
        let b = Identity::from_pem("c".into(), &c2, "k".into(), &k2).unwrap();
        assert_ne!(a, b);
        let certs = Certs::new(&a);
        assert!(!certs.set(&a));
        assert!(certs.set(&b));
        assert_eq!(certs.current.load().cert, b.key.cert);
    }
}
