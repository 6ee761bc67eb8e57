//! Redis clients for the shared limits and the shared cache: `redis://` in the clear, or
//! `rediss://` over TLS, the server's certificate checked against the system's CAs or the CAs of
//! the section's `ca_file`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// A client for `url`; `ca_pem`: the CAs to trust instead of the system's (`rediss://` only).
/// Errors name `section` and never hold the URL (it may carry a password).
pub fn open(section: &str, url: &str, ca_pem: Option<&[u8]>) -> Result<redis::Client, String> {
    // The Redis crate builds its TLS config from the process's default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = url.starts_with("rediss://");
    let client = match ca_pem {
        None => redis::Client::open(url),
        Some(_) if !tls => return Err(format!("{section}.ca_file needs a rediss:// URL (TLS)")),
        Some(pem) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
    };
    client.map_err(|e| format!("{section}.url: {e}"))
}

/// Checks that `pem` holds at least one certificate.
pub fn check_ca(pem: &[u8]) -> Result<(), String> {
    let certs: Result<Vec<CertificateDer<'static>>, _> = CertificateDer::pem_slice_iter(pem).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(()),
        Ok(_) => Err("no certificate in it".into()),
        Err(e) => Err(format!("not a PEM certificate file ({e})")),
    }
}
