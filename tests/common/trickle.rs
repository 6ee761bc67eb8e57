//! A hand-scripted upstream on loopback, for the network faults the mock provider cannot make: a
//! response written one byte at a time, a connection closed in the middle of a chunk, a TLS
//! handshake cut short. Each connection reads one request (header and `Content-Length` body), then
//! plays the script; the connection closes when the script ends. It counts what happened, so
//! tests wait on it rather than sleep.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

/// One step of a connection's script.
#[derive(Clone, Debug)]
pub enum Step {
    /// Write these bytes at once.
    Send(Vec<u8>),
    /// Write these bytes one at a time, `every` apart (the first after `every` too).
    Trickle(Vec<u8>, Duration),
    /// Keep the connection open and silent until the peer closes it (or the server is dropped).
    Hold,
}

/// What a connection does once accepted.
#[derive(Clone, Debug)]
pub enum Script {
    /// Read one HTTP request, then play the steps.
    Http(Vec<Step>),
    /// Read up to this many bytes (a TLS ClientHello, say), then close without a word.
    CloseAfterRead(usize),
    /// Read whatever comes and never answer, until the peer closes (or the server is dropped).
    Silent,
}

/// Counters of a `Trickle` server.
#[derive(Default, Debug)]
pub struct Seen {
    /// Connections accepted.
    pub accepted: AtomicUsize,
    /// HTTP requests read in full.
    pub requests: AtomicUsize,
    /// Connections whose script was cut short because the peer closed or reset it (or the server
    /// was dropped).
    pub peer_gone: AtomicUsize,
    /// Connections closed by us at the end of their script.
    pub finished: AtomicUsize,
}

pub struct Trickle {
    pub port: u16,
    pub seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
}

impl Trickle {
    /// Listens on a loopback port; every connection plays `script`.
    pub fn start(script: Script) -> Trickle {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&seen), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                s.accepted.fetch_add(1, SeqCst);
                let (s, st, script) = (Arc::clone(&s), Arc::clone(&st), script.clone());
                std::thread::spawn(move || serve(stream, &script, &s, &st));
            }
        });
        Trickle { port, seen, stop }
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn accepted(&self) -> usize {
        self.seen.accepted.load(SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.seen.requests.load(SeqCst)
    }

    pub fn peer_gone(&self) -> usize {
        self.seen.peer_gone.load(SeqCst)
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut stream: TcpStream, script: &Script, seen: &Seen, stop: &AtomicBool) {
    let steps = match script {
        Script::CloseAfterRead(n) => {
            let mut buf = vec![0; *n];
            let _ = stream.read(&mut buf);
            seen.finished.fetch_add(1, SeqCst);
            return;
        }
        Script::Silent => {
            if hold(&mut stream, stop) {
                seen.finished.fetch_add(1, SeqCst);
            } else {
                seen.peer_gone.fetch_add(1, SeqCst);
            }
            return;
        }
        Script::Http(steps) => steps,
    };
    if read_request(&mut stream).is_none() {
        return;
    }
    seen.requests.fetch_add(1, SeqCst);
    let _ = stream.set_nodelay(true);
    for step in steps {
        let ok = match step {
            Step::Send(bytes) => stream.write_all(bytes).and_then(|()| stream.flush()).is_ok(),
            Step::Trickle(bytes, every) => bytes.iter().all(|b| {
                wait_open(&stream, *every, stop) && stream.write_all(&[*b]).and_then(|()| stream.flush()).is_ok()
            }),
            Step::Hold => hold(&mut stream, stop),
        };
        if !ok {
            seen.peer_gone.fetch_add(1, SeqCst);
            return;
        }
    }
    seen.finished.fetch_add(1, SeqCst);
}

/// Waits `wait`; `false` as soon as the peer closed the connection (or the server is dropped).
/// (A write to a closed connection succeeds once before one fails: watching for the close sees
/// it at once, not one step later.)
fn wait_open(stream: &TcpStream, wait: Duration, stop: &AtomicBool) -> bool {
    let until = std::time::Instant::now() + wait;
    let _ = stream.set_nonblocking(true);
    let open = loop {
        let mut byte = [0u8; 1];
        match stream.peek(&mut byte) {
            Ok(0) => break false,
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break false,
            _ => {}
        }
        if stop.load(SeqCst) {
            break false;
        }
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break true;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    };
    let _ = stream.set_nonblocking(false);
    open
}

/// Reads and discards until the peer closes (`false`) or the server is dropped (`true`).
fn hold(stream: &mut TcpStream, stop: &AtomicBool) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if stop.load(SeqCst) {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
}

/// Reads one request's header and its `Content-Length` body; `None` if the peer closed first.
fn read_request(stream: &mut TcpStream) -> Option<()> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0usize);
    let mut body = vec![0; len];
    stream.read_exact(&mut body).ok()
}

/// A response header: `HTTP/1.1 {status}` with these header lines.
pub fn head(status: u16, headers: &[&str]) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {status} X\r\n");
    for line in headers {
        h.push_str(line);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// One chunk of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut c = format!("{:x}\r\n", data.len()).into_bytes();
    c.extend_from_slice(data);
    c.extend_from_slice(b"\r\n");
    c
}
