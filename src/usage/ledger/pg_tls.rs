//! TLS to PostgreSQL, with libpq's `sslmode` and `sslrootcert` URL parameters (the driver
//! itself knows only `disable`, `prefer` and `require`, and no CA file):
//!
//! | `sslmode` | TLS | the server's certificate |
//! | --- | --- | --- |
//! | absent, `disable` | no | – |
//! | `prefer` | if the server offers it | not checked (as libpq) |
//! | `require` | yes, or no connection | checked against `sslrootcert` when given (as libpq), else not |
//! | `verify-ca` | yes | signed by a CA of `sslrootcert` (else the system's roots) |
//! | `verify-full` | yes | as `verify-ca`, and issued for the host connected to |
//!
//! `sslrootcert=system` means the system's roots (as libpq 16). The CA file is read when the URL
//! is parsed (config load); every connection then shares one rustls config.

use std::sync::Arc;

use postgres::config::SslMode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

/// A PostgreSQL connection's settings, TLS included.
#[derive(Clone)]
pub(crate) struct PgConfig {
    pub(crate) config: postgres::Config,
    /// `None`: plain TCP.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl PgConfig {
    /// Splits `sslmode` and `sslrootcert` off `url` (the driver parses the rest) and builds the
    /// TLS settings they ask for. Errors never contain the URL (it may hold a password).
    pub(crate) fn parse(url: &str) -> Result<PgConfig, String> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = None;
        let mut root = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = || {
                url::form_urlencoded::parse(format!("v={v}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            match k {
                "sslmode" => mode = Some(decoded()),
                "sslrootcert" => root = Some(decoded()),
                _ => rest.push(pair),
            }
        }
        let driver_url = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config: postgres::Config = driver_url.parse().map_err(|e: postgres::Error| with_causes(&e))?;
        let (ssl_mode, check) = match mode.as_deref() {
            None | Some("disable") => {
                if root.is_some() {
                    return Err(
                        "sslrootcert is given but sslmode is not: set sslmode=verify-full (or require, verify-ca)"
                            .into(),
                    );
                }
                config.ssl_mode(SslMode::Disable);
                return Ok(PgConfig { config, tls: None });
            }
            Some("prefer") => (SslMode::Prefer, Check::Nothing),
            Some("require") if root.is_none() => (SslMode::Require, Check::Nothing),
            Some("require") | Some("verify-ca") => (SslMode::Require, Check::Chain),
            Some("verify-full") => (SslMode::Require, Check::ChainAndName),
            Some(other) => {
                return Err(format!(
                    "sslmode={other} is not supported (use disable, prefer, require, verify-ca or verify-full)"
                ))
            }
        };
        config.ssl_mode(ssl_mode);
        let tls = client_config(check, root.as_deref())?;
        Ok(PgConfig {
            config,
            tls: Some(tokio_postgres_rustls::MakeRustlsConnect::new(tls)),
        })
    }

    /// Connects (blocking), with TLS when the URL asked for it.
    pub(crate) fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(postgres::NoTls),
        }
    }

    /// Whether connections use TLS (at least try to).
    #[cfg(test)]
    pub(crate) fn tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// The error and what caused it ("error performing TLS handshake: invalid peer certificate:
/// UnknownIssuer"): the driver's own text leaves the cause out.
pub(crate) fn with_causes(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// What is checked of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

fn client_config(check: Check, root: Option<&str>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::Nothing => Arc::new(Unchecked(provider)),
        Check::Chain | Check::ChainAndName => {
            let roots = roots(root)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("sslrootcert: {e}"))?;
            Arc::new(Verified {
                webpki,
                names: check == Check::ChainAndName,
            })
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The CAs of `sslrootcert` (a PEM file), or the system's when absent or `system`.
fn roots(root: Option<&str>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match root {
        Some(path) if path != "system" => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("sslrootcert {path}: no CA certificate in it"));
            }
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err("no system CA certificates found (install ca-certificates or set sslrootcert)".into());
            }
        }
    }
    Ok(store)
}

/// `verify-ca` / `verify-full`: the chain to a trusted root always; the host name for
/// `verify-full` only.
#[derive(Debug)]
struct Verified {
    webpki: Arc<WebPkiServerVerifier>,
    names: bool,
}

impl ServerCertVerifier for Verified {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `prefer` / `require` without a CA: encrypted, the certificate not checked (libpq's meaning of
/// those modes). The handshake's signatures are still verified.
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_their_errors() {
        let plain = PgConfig::parse("postgres://u:pw@h:5432/db?application_name=x").unwrap();
        assert!(!plain.tls());
        assert_eq!(plain.config.get_application_name(), Some("x"));
        assert!(PgConfig::parse("postgres://u@h/db?sslmode=require").unwrap().tls());
        assert!(PgConfig::parse("postgres://u@h/db?sslmode=prefer&connect_timeout=3")
            .unwrap()
            .tls());
        let e = PgConfig::parse("postgres://u:pw@h/db?sslmode=allow").err().unwrap();
        assert!(e.contains("sslmode=allow is not supported") && !e.contains("pw"), "{e}");
        let e = PgConfig::parse("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .err()
            .unwrap();
        assert!(e.contains("sslrootcert /nonexistent/ca.pem"), "{e}");
        let e = PgConfig::parse("postgres://u@h/db?sslrootcert=/ca.pem").err().unwrap();
        assert!(e.contains("sslmode is not"), "{e}");
        let e = PgConfig::parse("postgres://u@h/db?sslcert=/c.pem").err().unwrap();
        assert!(e.contains("sslcert"), "{e}");
    }
}
