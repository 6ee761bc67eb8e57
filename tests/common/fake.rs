//! A token endpoint on loopback (the fakes of cloud credential services: IMDS, ECS, STS, Google's
//! token endpoint and metadata server): answers each request with a handler's reply and
//! remembers what it received and how many credentials it issued.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One request a fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

pub type Handler = Arc<dyn Fn(&Seen, u32) -> (u16, String) + Send + Sync>;

/// A token endpoint on loopback: answers each request with `handler(request, credentials issued
/// so far)`, and remembers what it received.
#[derive(Clone)]
pub struct Fake {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    issued: Arc<Mutex<u32>>,
}

impl Fake {
    pub fn start(handler: Handler) -> Fake {
        Self::listen(handler, None)
    }

    /// The same over TLS, with the certificate chain and key in these PEM files (an endpoint the
    /// client's crate insists be HTTPS, such as Entra ID's).
    pub fn start_tls(handler: Handler, cert: &Path, key: &Path) -> Fake {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("certificate file")
            .map(|c| c.expect("certificate"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(key).expect("key file");
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server certificate");
        Self::listen(handler, Some(Arc::new(config)))
    }

    fn listen(handler: Handler, tls: Option<Arc<rustls::ServerConfig>>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let fake = Fake {
            port: listener.local_addr().unwrap().port(),
            seen: Arc::default(),
            issued: Arc::default(),
        };
        let f = fake.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (f, h, tls) = (f.clone(), Arc::clone(&handler), tls.clone());
                std::thread::spawn(move || match tls {
                    None => f.serve(stream, &h),
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        f.serve(rustls::StreamOwned::new(conn, stream), &h);
                    }
                });
            }
        });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn serve(&self, stream: impl Read + Write, handler: &Handler) {
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            );
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 {
                    return;
                }
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0usize);
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let seen = Seen {
                method,
                path,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            let issued = *self.issued.lock().unwrap();
            let (status, text) = handler(&seen, issued);
            // (Shown with a failing test's output: what each endpoint answered.)
            eprintln!(
                "fake {}: {} {} -> {status} {}",
                self.port,
                seen.method,
                seen.path,
                text.chars().take(200).collect::<String>()
            );
            if text.contains("mock-secret") || text.contains("ya29.") || text.contains("entra-") {
                *self.issued.lock().unwrap() += 1;
            }
            self.seen.lock().unwrap().push(seen);
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\ncontent-type: text/plain\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n{text}",
                text.len()
            );
            if reader
                .get_mut()
                .write_all(reply.as_bytes())
                .and_then(|()| reader.get_mut().flush())
                .is_err()
            {
                return;
            }
        }
    }

    pub fn issued(&self) -> u32 {
        *self.issued.lock().unwrap()
    }
}
