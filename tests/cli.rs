//! `tollgate check`: exit codes and the listing of every problem with file, line and key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

#[test]
fn check_accepts_the_shipped_config() {
    let out = Command::new(common::BIN)
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/conf/tollgate.yaml"),
        ])
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("OPENAI_API_KEY"),
        "the disabled provider should be warned about: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("auth not required (requests without a key are served), 0 config keys"),
        "{stdout}"
    );
    // The guardrails' reach: the shipped defaults check nothing, and no route is guarded.
    assert!(
        stdout.contains("guardrails on 0 of 0 routes, defaults off; cache on 0)"),
        "{stdout}"
    );
}

#[test]
fn check_prints_which_routes_the_guardrails_cover() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("g.yaml");
    std::fs::write(
        &config,
        "guardrails:\n  defaults: { secrets: block }\nroutes:\n  - name: a\n    guardrails: { pii: off, secrets: off }\n  - name: b\n  - name: c\n    guardrails: { pii: redact }\n    cache: { mode: exact }\n  - name: d\n    cache: { mode: off }\n",
    )
    .unwrap();
    let out = Command::new(common::BIN)
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // `a` turns everything off; `b` and `d` follow the defaults; `c` redacts (and keeps the
    // defaults'). Only `c` caches (`d` says `off`).
    assert!(
        stdout.contains("guardrails on 3 of 4 routes, defaults on; cache on 1)"),
        "{stdout}"
    );
}

#[test]
fn check_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "providers:\n  a:\n    kind: openai\n    base_url: not-a-url\n    api_keys: [k]\nmodels:\n  m:\n    targets:\n      - { provider: b, model: x }\n",
    )
    .unwrap();
    let out = Command::new(common::BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let p = path.display().to_string();
    assert!(stderr.contains(&format!("{p}:4: providers.a.base_url")), "{stderr}");
    assert!(
        stderr.contains(&format!("{p}:9: models.m.targets[0].provider")),
        "{stderr}"
    );
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
}

#[test]
fn check_says_when_a_file_has_more_problems_than_it_lists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    let doc: String = (1..=130).map(|i| format!("typo{i}: 1\n")).collect();
    std::fs::write(&path, doc).unwrap();
    let out = Command::new(common::BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let p = path.display().to_string();
    // The file's first 100, in order, then the note.
    assert!(stderr.contains(&format!("{p}:100: typo100: unknown field")), "{stderr}");
    assert!(!stderr.contains("typo101"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{p}: more problems follow: only the first 100 are listed; fix them and check again for the rest\n{p}: more than 100 problems (the first 100 shown)"
        )),
        "{stderr}"
    );
}

#[test]
fn run_refuses_an_invalid_config_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "server:\n  listen: 127.0.0.1:1\n  bogus: true\n").unwrap();
    let out = Command::new(common::BIN)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:3", path.display())) && stderr.contains("bogus"),
        "{stderr}"
    );
}

fn check(path: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(common::BIN)
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn check_lists_every_structural_problem_once_with_hints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("four.yaml");
    // Four structural mistakes: a bare number for a duration, two misspelt fields, a wrong type.
    std::fs::write(
        &path,
        "timeouts:\n  connect: 5\nproviders:\n  a:\n    kind: openai\n    base_url: http://127.0.0.1:9/v1\n    api_keys: [k]\n    timeout: { idle: 1s }\nmodels:\n  m:\n    targets: [ { provider: a, model: x } ]\n    fallback: [m2]\n  m2:\n    targets: [ { provider: a, model: y } ]\nrouting:\n  retries: many\n",
    )
    .unwrap();
    let (code, stderr) = check(&path);
    assert_eq!(code, Some(1), "{stderr}");
    let p = path.display().to_string();
    for expected in [
        format!("{p}:2: timeouts.connect: `5` is not a duration: durations need a unit; did you mean `5s`?"),
        format!("{p}:8: providers.a.timeout: unknown field `timeout`; did you mean `timeouts`?"),
        format!("{p}:12: models.m.fallback: unknown field `fallback`; did you mean `fallbacks`?"),
        format!("{p}:16: routing.retries: invalid type: string \"many\""),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(stderr.contains("4 problem(s)"), "{stderr}");
    // Each path once: serde's own path prefix is not repeated inside the message.
    for path in [
        "timeouts.connect",
        "providers.a.timeout",
        "models.m.fallback",
        "routing.retries",
    ] {
        assert_eq!(stderr.matches(path).count(), 1, "{path} in:\n{stderr}");
    }
}

#[test]
fn check_refuses_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("empty.yaml", ""), ("comments.yaml", "# nothing yet\n")] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (code, stderr) = check(&path);
        assert_eq!(code, Some(1), "{name}: {stderr}");
        assert!(stderr.contains("the config file is empty"), "{name}: {stderr}");
    }
}

/// Kills the gateway it holds when dropped (also when the test fails).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn relative_usage_paths_follow_the_config_file_not_the_working_directory() {
    use std::time::Duration;
    let mock = common::Mock::start(&[]);
    let conf_dir = tempfile::tempdir().unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let (addr, admin) = (
        format!("127.0.0.1:{}", common::free_port()),
        format!("127.0.0.1:{}", common::free_port()),
    );
    let config = conf_dir.path().join("tollgate.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: \"{addr}\"\n  admin_listen: \"{admin}\"\n  shutdown_grace: 0s\nproviders:\n{}models:\n  m:\n    targets: [ {{ provider: mock, model: up-m }} ]\n\
usage:\n  ledger: sqlite:data/spend.db\n  spill_dir: data/spill\n  access_log: logs/access.log\n  flush_interval: 20ms\n",
            common::mock_provider("mock", &mock.base_url(), "")
        ),
    )
    .unwrap();
    // An access log written there by an earlier version (relative to the working directory):
    // lines go on in the new place, with a warning; no ledger or spill files there, so it starts.
    std::fs::create_dir(run_dir.path().join("logs")).unwrap();
    std::fs::write(run_dir.path().join("logs/access.log"), "old\n").unwrap();
    // The gateway runs elsewhere than its config (as under systemd, or from a script).
    let log = std::fs::File::create(run_dir.path().join("gateway.log")).unwrap();
    let _gw = Child(
        Command::new(common::BIN)
            .args(["run", "--config"])
            .arg(&config)
            .arg("--runtime-dir")
            .arg(run_dir.path())
            .current_dir(run_dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let health = format!("http://{admin}/health");
    common::wait_until("gateway health", Duration::from_secs(15), || {
        ureq::get(&health).call().is_ok()
    });
    common::wait_until("the data-plane listener", Duration::from_secs(15), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    let r = common::post(
        &format!("http://{addr}/v1/chat/completions"),
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let access = conf_dir.path().join("logs/access.log");
    common::wait_until("the access log next to the config", Duration::from_secs(10), || {
        std::fs::read_to_string(&access).is_ok_and(|t| t.lines().count() == 1)
    });
    assert!(conf_dir.path().join("data/spend.db").exists());
    assert!(
        !run_dir.path().join("data").exists(),
        "nothing lands in the working directory"
    );
    assert_eq!(
        std::fs::read_to_string(run_dir.path().join("logs/access.log")).unwrap(),
        "old\n"
    );
    let gateway_log = std::fs::read_to_string(run_dir.path().join("gateway.log")).unwrap();
    let warned: Vec<_> = gateway_log
        .lines()
        .filter(|l| l.contains("usage.access_log") && l.contains("earlier runs wrote"))
        .collect();
    assert_eq!(warned.len(), 1, "{gateway_log}");
    assert!(warned[0].contains(&*access.to_string_lossy()), "{}", warned[0]);
    let old_log = run_dir.path().join("logs/access.log");
    assert!(warned[0].contains(&*old_log.to_string_lossy()), "{}", warned[0]);

    // `tollgate spend` from a third directory reads the same ledger.
    let requests = || -> u64 {
        let out = Command::new(common::BIN)
            .args(["spend", "--json", "--config"])
            .arg(&config)
            .current_dir(other_dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["totals"]["requests"].as_u64().unwrap()
    };
    common::wait_until("the record in the ledger", Duration::from_secs(10), || requests() == 1);
}

/// Runs `tollgate ARGS` in `cwd` and waits (a start that is refused exits at once); a gateway
/// that does start is killed after `within`.
fn run_in(cwd: &std::path::Path, args: &[&std::ffi::OsStr], within: std::time::Duration) -> (Option<i32>, String) {
    let mut child = Command::new(common::BIN)
        .args(args)
        .current_dir(cwd)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if start.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

/// An upgrade from the version whose relative paths followed the working directory: a ledger or
/// spill files at the old place, with nothing at the new one, stop the start (and `spend`) with
/// both paths and the fix, instead of a silent new, empty ledger.
#[test]
fn a_ledger_or_spill_files_at_the_old_working_directory_path_stop_the_start() {
    use std::ffi::OsStr;
    use std::time::Duration;
    let conf_dir = tempfile::tempdir().unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    let config = conf_dir.path().join("tollgate.yaml");
    let write_config = |usage: &str| {
        let (addr, admin) = (common::free_port(), common::free_port());
        std::fs::write(
            &config,
            format!("server:\n  listen: \"127.0.0.1:{addr}\"\n  admin_listen: \"127.0.0.1:{admin}\"\nusage:\n{usage}"),
        )
        .unwrap();
    };
    let run = [
        OsStr::new("run"),
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--runtime-dir"),
        run_dir.path().as_os_str(),
    ];
    let old_db = run_dir.path().join("data/spend.db");
    let new_db = conf_dir.path().join("data/spend.db");
    std::fs::create_dir(run_dir.path().join("data")).unwrap();
    std::fs::write(&old_db, "").unwrap();

    // The default ledger (sqlite:data/spend.db), as most deployments had it.
    write_config("  access_log: off\n");
    let (code, stderr) = run_in(run_dir.path(), &run, Duration::from_secs(20));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(": usage.ledger:"), "{stderr}");
    assert!(stderr.contains(&*old_db.to_string_lossy()), "{stderr}");
    assert!(stderr.contains(&*new_db.to_string_lossy()), "{stderr}");
    assert!(stderr.contains("Make the path absolute"), "{stderr}");
    assert!(!new_db.exists(), "no new, empty ledger");
    let spend = [OsStr::new("spend"), OsStr::new("--config"), config.as_os_str()];
    let (code, stderr) = run_in(run_dir.path(), &spend, Duration::from_secs(20));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&*old_db.to_string_lossy()), "{stderr}");

    // The ledger made absolute, the spill directory still relative with records waiting in it.
    let old_spill = run_dir.path().join("data/spill");
    std::fs::create_dir_all(old_spill.join("sqlite-0123456789abcdef")).unwrap();
    std::fs::write(old_spill.join("sqlite-0123456789abcdef/spill-1.jsonl"), "{}\n").unwrap();
    write_config(&format!("  ledger: sqlite:{}\n  access_log: off\n", old_db.display()));
    let (code, stderr) = run_in(run_dir.path(), &run, Duration::from_secs(20));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("usage.spill_dir"), "{stderr}");
    assert!(stderr.contains(&*old_spill.to_string_lossy()), "{stderr}");
    assert!(
        stderr.contains(&*conf_dir.path().join("data/spill").to_string_lossy()),
        "{stderr}"
    );
    assert!(
        !stderr.contains(": usage.ledger:"),
        "only the spill directory: {stderr}"
    );
}

/// `tollgate health`, the container image's health check: 0 when the admin listener answers
/// `/health` with 200, 1 when nothing listens or the answer is another status.
#[test]
fn health_asks_the_admin_listener() {
    use common::{Gateway, Mock};
    let mock = Mock::start(&[]);
    let gw = Gateway::start(
        "",
        &format!(
            "providers:\n{}models:\n  m:\n    targets: [ {{ provider: mock, model: up }} ]\n",
            common::mock_provider("mock", &mock.base_url(), "")
        ),
    );
    let health = |url: &str| {
        Command::new(common::BIN)
            .args(["health", "--url", url])
            .output()
            .unwrap()
    };
    let up = health(&gw.admin_url("/health"));
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let missing = health(&gw.admin_url("/no-such-path"));
    assert_eq!(missing.status.code(), Some(1));
    let closed = health(&format!("http://127.0.0.1:{}/health", common::free_port()));
    assert_eq!(closed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&closed.stderr).contains("tollgate health:"));
}
