//! A token endpoint on loopback (the fakes of cloud credential services: IMDS, ECS, STS, Google's
//! token endpoint and metadata server): answers each request with a handler's reply and
//! remembers what it received and how many credentials it issued.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
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
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let fake = Fake {
            port: listener.local_addr().unwrap().port(),
            seen: Arc::default(),
            issued: Arc::default(),
        };
        let f = fake.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (f, h) = (f.clone(), Arc::clone(&handler));
                std::thread::spawn(move || f.serve(stream, &h));
            }
        });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn serve(&self, stream: TcpStream, handler: &Handler) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
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
            if text.contains("mock-secret") || text.contains("ya29.") {
                *self.issued.lock().unwrap() += 1;
            }
            self.seen.lock().unwrap().push(seen);
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\ncontent-type: text/plain\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n{text}",
                text.len()
            );
            if writer.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    }

    pub fn issued(&self) -> u32 {
        *self.issued.lock().unwrap()
    }
}
