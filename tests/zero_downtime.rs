//! No request fails across a config reload, a binary upgrade (Pingora's listener hand-over:
//! the new process started with `--upgrade`, SIGQUIT to the old one) or a SIGTERM within the
//! grace period, while a bounded loop of JSON and streamed requests runs against the gateway.
//! Every request opens its own connection, so each one is a new accept on whichever process
//! holds the listener at that moment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use serde_json::json;

fn config(mock: &Mock, aliases: &[&str]) -> String {
    let mut s = format!("providers:\n{}models:\n", mock_provider("mock", &mock.base_url(), ""));
    for a in aliases {
        s.push_str(&format!(
            "  {a}:\n    targets: [ {{ provider: mock, model: up-{a} }} ]\n"
        ));
    }
    s
}

/// How one request of the load ended.
enum Outcome {
    Ok,
    /// The connection was refused: no process was accepting (only expected after a SIGTERM).
    Refused,
    Failed(String),
}

/// One request on a connection of its own: JSON or a stream (answered in 4 chunks 20 ms apart),
/// checked whole.
fn one(url: &str, stream: bool) -> Outcome {
    let agent = ureq::AgentBuilder::new()
        .max_idle_connections(0)
        .timeout(Duration::from_secs(20))
        .build();
    let body = if stream {
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "[[mock: chunks=4 chunk_delay_ms=20]]"}]})
    } else {
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    };
    match agent
        .post(url)
        .set("content-type", "application/json")
        .send_string(&body.to_string())
    {
        Ok(r) => {
            let status = r.status();
            let text = match r.into_string() {
                Ok(t) => t,
                Err(e) => return Outcome::Failed(format!("body cut: {e}")),
            };
            let complete = if stream {
                text.trim_end().ends_with("data: [DONE]")
            } else {
                text.contains("\"choices\"")
            };
            if status == 200 && complete {
                Outcome::Ok
            } else {
                Outcome::Failed(format!("{status}: {text}"))
            }
        }
        Err(ureq::Error::Status(code, r)) => {
            Outcome::Failed(format!("{code}: {}", r.into_string().unwrap_or_default()))
        }
        Err(ureq::Error::Transport(t)) if t.kind() == ureq::ErrorKind::ConnectionFailed => Outcome::Refused,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// `clients` threads sending requests (JSON and streams in turn) until `stop` is set.
fn load(url: String, clients: usize, stop: Arc<AtomicBool>) -> Vec<JoinHandle<Vec<Outcome>>> {
    (0..clients)
        .map(|c| {
            let (url, stop) = (url.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let mut i = c;
                while !stop.load(Ordering::SeqCst) {
                    out.push(one(&url, i % 2 == 1));
                    i += 1;
                }
                out
            })
        })
        .collect()
}

fn finish(handles: Vec<JoinHandle<Vec<Outcome>>>) -> Vec<Outcome> {
    handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

fn count(outcomes: &[Outcome], f: impl Fn(&Outcome) -> bool) -> usize {
    outcomes.iter().filter(|o| f(o)).count()
}

/// What went wrong, request by request (a refused connection too, unless `refused_ok`).
fn failures(outcomes: &[Outcome], refused_ok: bool) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Ok => None,
            Outcome::Refused if refused_ok => None,
            Outcome::Refused => Some("connection refused".to_string()),
            Outcome::Failed(why) => Some(why.clone()),
        })
        .collect()
}

#[test]
fn no_request_fails_across_reloads_by_file_change_and_sighup() {
    let mock = Mock::start(&[]);
    let poll = "  reload_poll: 50ms\n  reload_settle: 0s\n";
    let gw = Gateway::start(poll, &config(&mock, &["m"]));
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(gw.url("/v1/chat/completions"), 4, Arc::clone(&stop));
    for i in 0..6 {
        std::thread::sleep(Duration::from_millis(250));
        let extra = format!("x{i}");
        gw.rewrite(poll, &config(&mock, &["m", &extra]));
        if i % 2 == 1 {
            gw.proc.signal(libc::SIGHUP);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let outcomes = finish(clients);
    let failed = failures(&outcomes, false);
    assert!(failed.is_empty(), "{failed:?}");
    assert!(
        outcomes.len() >= 20,
        "too little load to mean anything: {}",
        outcomes.len()
    );
    assert!(gw.metric("tollgate_config_reloads_total") >= 6.0);
}

#[test]
fn no_request_fails_across_a_binary_upgrade() {
    let mock = Mock::start(&[]);
    let gw = Gateway::start("  shutdown_grace: 5s\n", &config(&mock, &["m"]));
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(gw.url("/v1/chat/completions"), 4, Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(500));

    // The new process waits on the upgrade socket for the old one's listeners.
    let cfg = gw.config.to_string_lossy().to_string();
    let dir = gw.dir().to_string_lossy().to_string();
    let mut new = Proc::start(
        "gateway-new",
        gw.dir(),
        &["run", "--config", &cfg, "--runtime-dir", &dir, "--upgrade"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut old = gw;
    old.proc.signal(libc::SIGQUIT);
    let status = old.proc.wait_exit(Duration::from_secs(15));
    assert!(status.is_some(), "the old process did not exit after handing over");
    assert!(new.exited().is_none(), "the new process died: {}", new.log_text());
    // The new process serves on the same addresses (the admin listener too).
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let outcomes = finish(clients);
    let failed = failures(&outcomes, false);
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        outcomes.len()
    );
    let served_by_new = old.metric("tollgate_requests_total{model=\"m\",provider=\"mock\",status=\"200\"}");
    assert!(served_by_new > 0.0, "the new process served nothing");
    // Pingora logs its first look at the upgrade socket, before the old process was told to hand
    // over, as an error ("No incoming socket transfer, sleep 1s and try again"); nothing else.
    let errors: Vec<String> = new
        .log_text()
        .lines()
        .filter(|l| l.contains("ERROR") && !l.contains("No incoming socket transfer"))
        .map(str::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    new.signal(libc::SIGTERM);
    assert!(new.wait_exit(Duration::from_secs(10)).is_some());
}

/// A process not our child (started by the gateway), ended when dropped.
struct Adopted(i32);

impl Adopted {
    fn alive(&self) -> bool {
        // A zombie (ended, not yet reaped by whoever adopted it) counts as gone.
        std::fs::read_to_string(format!("/proc/{}/stat", self.0)).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        })
    }
}

impl Drop for Adopted {
    fn drop(&mut self) {
        // SAFETY: signalling a process this test made the gateway start.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
        }
    }
}

/// The systemd unit's upgrade (`systemctl kill -s USR1 --kill-whom=main tollgate`): the running
/// gateway starts the new binary itself and hands its listeners over; the new process tells
/// systemd it is ready and is the main process now. Checked with a stand-in for systemd's notify
/// socket, under load: nothing fails.
#[test]
fn an_upgrade_started_by_sigusr1_tells_systemd_and_drops_nothing() {
    let sockets = tempfile::tempdir().unwrap();
    let notify_path = sockets.path().join("notify.sock");
    let systemd = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    systemd.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let next_message = || {
        let mut buf = [0u8; 256];
        let n = systemd.recv(&mut buf).expect("a message on the notify socket");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let mock = Mock::start(&[]);
    let notify = notify_path.to_string_lossy().to_string();
    let gw = Gateway::start_env(
        "  shutdown_grace: 5s\n",
        &config(&mock, &["m"]),
        &[("NOTIFY_SOCKET", notify.as_str())],
    );
    assert_eq!(next_message(), format!("READY=1\nMAINPID={}", gw.proc.pid()));

    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(gw.url("/v1/chat/completions"), 4, Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(500));
    let mut old = gw;
    old.proc.signal(libc::SIGUSR1);
    let ready = next_message();
    let new_pid: i32 = ready
        .strip_prefix("READY=1\nMAINPID=")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a readiness message: {ready:?}"));
    let new = Adopted(new_pid);
    assert_ne!(new_pid, old.proc.pid());
    assert!(
        old.proc.wait_exit(Duration::from_secs(15)).is_some(),
        "the old process did not exit after handing over"
    );
    assert!(new.alive(), "the new process died: {}", old.proc.log_text());
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let outcomes = finish(clients);
    let failed = failures(&outcomes, false);
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        outcomes.len()
    );
    let served_by_new = old.metric("tollgate_requests_total{model=\"m\",provider=\"mock\",status=\"200\"}");
    assert!(served_by_new > 0.0, "the new process served nothing");
    // SIGTERM to the new main process: it says it is stopping, and ends.
    // SAFETY: signalling the process the gateway started.
    unsafe {
        libc::kill(new_pid, libc::SIGTERM);
    }
    assert_eq!(next_message(), "STOPPING=1");
    wait_until("the new process to end", Duration::from_secs(15), || !new.alive());
}

#[test]
fn no_accepted_request_fails_across_a_sigterm_within_the_grace() {
    let mock = Mock::start(&[]);
    let mut gw = Gateway::start("  shutdown_grace: 10s\n", &config(&mock, &["m"]));
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(gw.url("/v1/chat/completions"), 4, Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(500));
    gw.proc.signal(libc::SIGTERM);
    let status = gw.proc.wait_exit(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    stop.store(true, Ordering::SeqCst);
    let outcomes = finish(clients);
    // Requests the gateway accepted all finished; after it stopped listening, connections are
    // refused (a load balancer has stopped sending by then), never cut.
    let failed = failures(&outcomes, true);
    assert!(failed.is_empty(), "{failed:?}");
    assert!(count(&outcomes, |o| matches!(o, Outcome::Ok)) >= 8);
    assert!(
        count(&outcomes, |o| matches!(o, Outcome::Refused)) >= 1,
        "the load went on past the exit"
    );
}
