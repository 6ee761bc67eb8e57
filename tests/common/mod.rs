//! Integration-test harness: starts the real `tollgate` binary (gateway and mock provider) as
//! child processes on free loopback ports and talks HTTP to them. Processes are killed on drop;
//! when a test panics, the tail of each process's log is printed.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fake;
pub mod pg;
pub mod pki;
pub mod redis;
pub mod trickle;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// Runs one of the repository's helper scripts (`scripts/pg.sh`, `scripts/redis.sh`) with bash;
/// its output is the error when it fails.
pub fn run_script(script: &str, args: &[&str]) -> Result<(), String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = Command::new("bash")
        .arg(&path)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{script} {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A loopback port nothing listens on, never the same twice in this test process: the kernel
/// may hand the port of a listener just closed to the next bind, so two calls in a row (a
/// gateway's listen and admin ports) could otherwise get the same one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

pub struct Proc {
    child: Child,
    pub log: PathBuf,
    name: String,
}

impl Proc {
    fn spawn(name: &str, dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(BIN);
        // Each process works in its own directory: its spend ledger and spill files land there.
        cmd.args(args)
            .current_dir(dir)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .env("RUST_LOG", "info");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        // The common umask, whatever the test runner's: tests of file permissions mean something.
        // SAFETY: umask is async-signal-safe and touches nothing of the parent.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::umask(0o022);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn tollgate");
        Proc {
            child,
            log,
            name: name.to_string(),
        }
    }

    /// Runs `tollgate` with `args` in `dir` without waiting for anything.
    pub fn start(name: &str, dir: &Path, args: &[&str]) -> Proc {
        Proc::spawn(name, dir, args, &[])
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the process to exit on its own; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // scripts/test.sh keeps every gateway's output for its secret scan
        // (scripts/scan-secrets.sh): no key or token the tests use may appear in any of it.
        if let Some(dir) = std::env::var_os("TOLLGATE_LOG_ARCHIVE") {
            if self.name.starts_with("gateway") {
                let dir = std::path::PathBuf::from(dir);
                let _ = std::fs::create_dir_all(&dir);
                let test = std::thread::current().name().unwrap_or("test").replace("::", "-");
                let to = dir.join(format!("{test}-{}-{}.log", self.name, self.child.id()));
                let _ = std::fs::copy(&self.log, to);
            }
        }
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("---- {} log (last lines) ----", self.name);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A client with the tests' timeout (for requests the helpers below do not cover).
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build()
}

/// A response: status, lowercased headers, body text.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn to_resp(r: ureq::Response) -> Resp {
    let status = r.status();
    let headers = r
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = r.header(&n).unwrap_or_default().to_string();
            (n.to_ascii_lowercase(), v)
        })
        .collect();
    let mut body = String::new();
    let _ = r.into_reader().read_to_string(&mut body);
    Resp { status, headers, body }
}

fn finish(r: Result<ureq::Response, ureq::Error>) -> Resp {
    match r {
        Ok(r) => to_resp(r),
        Err(ureq::Error::Status(_, r)) => to_resp(r),
        Err(e) => panic!("transport error: {e}"),
    }
}

pub fn get(url: &str) -> Resp {
    finish(agent().get(url).call())
}

pub fn get_with(url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    finish(req.call())
}

pub fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = agent().post(url).set("content-type", "application/json");
    for (k, v) in headers {
        req = req.set(k, v);
    }
    finish(req.send_string(body))
}

pub fn delete(url: &str) -> Resp {
    finish(agent().delete(url).call())
}

pub fn delete_with(url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = agent().delete(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    finish(req.call())
}

/// An SSE event as received, with the time since the request was sent.
#[derive(Debug)]
pub struct Received {
    pub data: String,
    pub at: Duration,
}

/// POSTs and reads an SSE response line by line, timestamping each `data:` line.
pub fn post_stream(url: &str, body: &str) -> (Resp, Vec<Received>) {
    post_stream_with(url, body, &[])
}

/// `post_stream` with extra request headers.
pub fn post_stream_with(url: &str, body: &str, headers: &[(&str, &str)]) -> (Resp, Vec<Received>) {
    let start = Instant::now();
    let mut req = agent().post(url).set("content-type", "application/json");
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let r = req.send_string(body);
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => return (to_resp(r), Vec::new()),
        Err(e) => panic!("transport error: {e}"),
    };
    let head = Resp {
        status: r.status(),
        headers: r
            .headers_names()
            .into_iter()
            .map(|n| (n.to_ascii_lowercase(), r.header(&n).unwrap_or_default().to_string()))
            .collect(),
        body: String::new(),
    };
    let mut events = Vec::new();
    let mut reader = BufReader::new(r.into_reader());
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {
                if let Some(d) = line.trim_end().strip_prefix("data: ") {
                    events.push(Received {
                        data: d.to_string(),
                        at: start.elapsed(),
                    });
                }
            }
            Err(_) => break, // a cut stream ends the read
        }
    }
    (head, events)
}

pub struct Mock {
    pub proc: Proc,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Mock {
    pub fn start(args: &[&str]) -> Mock {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut all = vec!["mock-provider", "--listen", &addr];
        all.extend_from_slice(args);
        let proc = Proc::spawn("mock", dir.path(), &all, &[]);
        let url = format!("http://{addr}/_mock/health");
        wait_until("mock health", Duration::from_secs(10), || {
            agent().get(&url).call().is_ok()
        });
        Mock { proc, addr, _dir: dir }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request the mock received, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        let r = get(&format!("http://{}/_mock/requests", self.addr));
        r.json()["requests"].as_array().cloned().unwrap_or_default()
    }

    pub fn clear(&self) {
        delete(&format!("http://{}/_mock/requests", self.addr));
    }
}

pub struct Gateway {
    pub proc: Proc,
    pub addr: String,
    pub admin: String,
    pub config: PathBuf,
    dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts a gateway whose config is `server:` (listeners filled in) plus `rest`.
    pub fn start(server_extra: &str, rest: &str) -> Gateway {
        Self::start_env(server_extra, rest, &[])
    }

    pub fn start_env(server_extra: &str, rest: &str, envs: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, admin_port) = (free_port(), free_port());
        let addr = format!("127.0.0.1:{port}");
        let admin = format!("127.0.0.1:{admin_port}");
        let config = dir.path().join("tollgate.yaml");
        std::fs::write(&config, Self::render(&addr, &admin, server_extra, rest)).expect("write config");
        let run_dir = dir.path().to_string_lossy().to_string();
        let cfg = config.to_string_lossy().to_string();
        let proc = Proc::spawn(
            "gateway",
            dir.path(),
            &["run", "--config", &cfg, "--runtime-dir", &run_dir],
            envs,
        );
        let g = Gateway {
            proc,
            addr,
            admin,
            config,
            dir,
        };
        let health = g.admin_url("/health");
        wait_until("gateway health", Duration::from_secs(15), || {
            agent().get(&health).call().is_ok()
        });
        // The tokenizer loads in the background (a second or more in a debug build): as a load
        // balancer waits for `/ready`, wait until it says the tokenizer is loaded, or the first
        // node of a multi-node test would start serving long before the other. (`/ready` can
        // stay 503 for other reasons a test may want, e.g. no enabled provider.)
        let ready = g.admin_url("/ready");
        wait_until("the tokenizer", Duration::from_secs(60), || {
            get(&ready).json()["tokenizer_loaded"] == serde_json::Value::Bool(true)
        });
        // The admin listener can come up before the data plane's: wait for both.
        let data = g.addr.clone();
        wait_until("the data-plane listener", Duration::from_secs(15), || {
            std::net::TcpStream::connect(&data).is_ok()
        });
        g
    }

    fn render(addr: &str, admin: &str, server_extra: &str, rest: &str) -> String {
        // Tests stop gateways at once unless they set a grace of their own.
        let grace = if server_extra.contains("shutdown_grace:") {
            ""
        } else {
            "  shutdown_grace: 0s\n"
        };
        format!("server:\n  listen: \"{addr}\"\n  admin_listen: \"{admin}\"\n{grace}{server_extra}{rest}")
    }

    /// Rewrites the config file keeping the listeners.
    pub fn rewrite(&self, server_extra: &str, rest: &str) {
        let tmp = self.dir.path().join("next.yaml");
        std::fs::write(&tmp, Self::render(&self.addr, &self.admin, server_extra, rest)).expect("write");
        std::fs::rename(&tmp, &self.config).expect("rename");
    }

    pub fn write_raw(&self, text: &str) {
        let tmp = self.dir.path().join("next.yaml");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &self.config).expect("rename");
    }

    /// The gateway's working directory (its default ledger and spill files live here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The value of one sample in /metrics (`name{labels}`), 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        let text = get(&self.admin_url("/metrics")).body;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    pub fn chat(&self, body: &Value) -> Resp {
        post(&self.url("/v1/chat/completions"), &body.to_string(), &[])
    }
}

/// A provider entry for a mock at `base_url`.
pub fn mock_provider(name: &str, base_url: &str, extra: &str) -> String {
    format!("  {name}:\n    kind: openai_compatible\n    base_url: \"{base_url}\"\n    api_keys: [\"key-of-{name}\"]\n{extra}")
}
