//! Hot reload of the real gateway: on file change, SIGHUP and SIGUSR2, valid and invalid
//! configs, weakening changes refused unless confirmed, and in-flight requests finishing on the
//! snapshot they started with.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

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

fn model_ids(gw: &Gateway) -> Vec<String> {
    get(&gw.url("/v1/models")).json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn file_change_reloads_and_a_bad_edit_is_rejected_with_its_line() {
    let mock = Mock::start(&[]);
    let poll = "  reload_poll: 100ms\n";
    let gw = Gateway::start(poll, &config(&mock, &["one"]));
    assert_eq!(model_ids(&gw), vec!["one"]);

    gw.rewrite(poll, &config(&mock, &["one", "two"]));
    wait_until("the new alias", Duration::from_secs(5), || {
        model_ids(&gw) == vec!["one", "two"]
    });
    assert_eq!(gw.metric("tollgate_config_reloads_total"), 1.0);

    // An unknown key on line 7 (after the 5 server lines and `providers:`).
    let bad = std::fs::read_to_string(&gw.config)
        .unwrap()
        .replacen("  mock:\n", "  mock:\n    typo_field: 1\n", 1);
    let line = bad.lines().position(|l| l.contains("typo_field")).unwrap() + 1;
    gw.write_raw(&bad);
    wait_until("the reload error metric", Duration::from_secs(5), || {
        gw.metric("tollgate_config_reload_errors_total") == 1.0
    });
    // The metric is bumped before the log line reaches the file: wait for the line too.
    let expected = format!("{}:{line}: providers.mock.typo_field", gw.config.display());
    wait_until("the reload error log line", Duration::from_secs(5), || {
        gw.proc.log_text().contains(&expected)
    });
    // The old config keeps serving.
    assert_eq!(model_ids(&gw), vec!["one", "two"]);
    assert_eq!(
        gw.chat(&json!({"model": "two", "messages": [{"role": "user", "content": "hi"}]}))
            .status,
        200
    );
}

#[test]
fn sighup_reloads_and_in_flight_requests_finish_on_their_snapshot() {
    let mock = Mock::start(&[]);
    let no_poll = "  reload_poll: 0s\n";
    let gw = Gateway::start(no_poll, &config(&mock, &["old"]));

    // A slow stream on `old` is in flight while `old` is removed.
    let url = gw.url("/v1/chat/completions");
    let body = json!({"model": "old", "stream": true, "messages": [{"role": "user", "content": "[[mock: chunks=4 chunk_delay_ms=300]]"}]});
    let inflight = std::thread::spawn(move || post_stream(&url, &body.to_string()));
    std::thread::sleep(Duration::from_millis(300));

    gw.rewrite(no_poll, &config(&mock, &["new"]));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(model_ids(&gw), vec!["old"], "no poll: nothing may change before SIGHUP");
    gw.proc.signal(libc::SIGHUP);
    wait_until("the SIGHUP reload", Duration::from_secs(5), || {
        model_ids(&gw) == vec!["new"]
    });

    let (head, events) = inflight.join().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(
        events.last().unwrap().data,
        "[DONE]",
        "the in-flight stream was cut: {events:?}"
    );
    let r = gw.chat(&json!({"model": "old", "messages": []}));
    assert_eq!(r.status, 404);
    assert_eq!(
        gw.chat(&json!({"model": "new", "messages": [{"role": "user", "content": "x"}]}))
            .status,
        200
    );
}

fn chat_as(gw: &Gateway, key: Option<&str>) -> Resp {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    post(
        &gw.url("/v1/chat/completions"),
        &json!({"model": "one", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        &headers,
    )
}

/// A config with authentication on, one virtual key and an admin token, sections in the order of
/// the shipped config (auth, keys and admin after providers and models).
fn secured(mock: &Mock, required: bool) -> String {
    format!(
        "{}auth:\n  required: {required}\n  key_sync: 100ms\nkeys:\n  - id: app\n    key: \"${{APP_KEY}}\"\nadmin:\n  token: \"${{ADMIN_TOKEN}}\"\n",
        config(mock, &["one"])
    )
}

const SECRETS: &[(&str, &str)] = &[("APP_KEY", "tg-reload-app"), ("ADMIN_TOKEN", "reload-admin-token")];

#[test]
fn a_file_cut_short_is_refused_on_file_change_and_authentication_stays_on() {
    let mock = Mock::start(&[]);
    let watch = "  reload_poll: 100ms\n  reload_settle: 300ms\n";
    let gw = Gateway::start_env(watch, &secured(&mock, true), SECRETS);
    assert_eq!(chat_as(&gw, None).status, 401);

    // What an editor or a config tool writing in place leaves for a moment: the file up to its
    // `auth:` section. It is valid YAML; loading it would switch authentication off.
    let full = std::fs::read_to_string(&gw.config).unwrap();
    gw.write_raw(&full[..full.find("auth:").unwrap()]);
    wait_until("the refusal", Duration::from_secs(10), || {
        gw.metric("tollgate_config_reload_refused_total{reason=\"auth_disabled\"}") == 1.0
    });
    for reason in ["section_removed", "keys_removed", "admin_token_removed"] {
        let sample = format!("tollgate_config_reload_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(gw.metric(&sample), 1.0, "{reason}");
    }
    assert_eq!(gw.metric("tollgate_config_reload_errors_total"), 1.0);
    assert_eq!(gw.metric("tollgate_config_reloads_total"), 0.0);
    wait_until("the refusal's log line", Duration::from_secs(5), || {
        gw.proc.log_text().contains("turns auth.required off")
    });
    let log = gw.proc.log_text();
    assert!(log.contains("removes the section(s) `auth`, `keys`, `admin`"), "{log}");
    assert!(log.contains("send SIGUSR2"), "{log}");
    assert!(
        !log.contains("tg-reload-app") && !log.contains("reload-admin-token"),
        "secrets in the log"
    );

    // The running config keeps serving: no key, no answer.
    assert_eq!(chat_as(&gw, None).status, 401);
    assert_eq!(chat_as(&gw, Some("tg-reload-app")).status, 200);
}

#[test]
fn an_empty_file_is_rejected_and_the_running_config_stays() {
    let mock = Mock::start(&[]);
    let watch = "  reload_poll: 100ms\n  reload_settle: 300ms\n";
    let gw = Gateway::start(watch, &config(&mock, &["one", "two"]));
    gw.write_raw("");
    wait_until("the reload error", Duration::from_secs(10), || {
        gw.metric("tollgate_config_reload_errors_total") == 1.0
    });
    wait_until("the error's log line", Duration::from_secs(5), || {
        gw.proc.log_text().contains("the config file is empty")
    });
    assert_eq!(gw.metric("tollgate_config_reloads_total"), 0.0);
    assert_eq!(model_ids(&gw), vec!["one", "two"]);
}

#[test]
fn a_file_still_being_written_is_loaded_only_once_it_has_settled() {
    let mock = Mock::start(&[]);
    let watch = "  reload_poll: 100ms\n  reload_settle: 2s\n";
    let gw = Gateway::start(watch, &config(&mock, &["one"]));

    // Written in place in two steps: first a valid prefix (one more alias), then the rest.
    let full = std::fs::read_to_string(&gw.config)
        .unwrap()
        .replace(&config(&mock, &["one"]), &config(&mock, &["one", "two", "three"]));
    let cut = full.find("  three:").unwrap();
    std::fs::write(&gw.config, &full[..cut]).unwrap();
    // Many polls see the half-written file; none may load it.
    let until = std::time::Instant::now() + Duration::from_millis(700);
    while std::time::Instant::now() < until {
        assert_eq!(model_ids(&gw), vec!["one"], "a half-written file was loaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&gw.config, &full).unwrap();
    wait_until("the finished file", Duration::from_secs(10), || {
        model_ids(&gw) == vec!["one", "three", "two"]
    });
    assert_eq!(
        gw.metric("tollgate_config_reloads_total"),
        1.0,
        "only the finished file is loaded"
    );
}

#[test]
fn a_weakening_change_is_refused_on_file_change_and_on_sighup_and_applied_on_sigusr2() {
    let mock = Mock::start(&[]);
    let watch = "  reload_poll: 100ms\n  reload_settle: 200ms\n";
    let gw = Gateway::start_env(watch, &secured(&mock, true), SECRETS);
    assert_eq!(chat_as(&gw, None).status, 401);
    let refused = || gw.metric("tollgate_config_reload_refused_total{reason=\"auth_disabled\"}");

    // A complete file that turns authentication off: the watcher does not apply that on its own.
    gw.rewrite(watch, &secured(&mock, false));
    wait_until("the refusal", Duration::from_secs(10), || refused() == 1.0);
    assert_eq!(
        gw.metric("tollgate_config_reload_refused_total{reason=\"section_removed\"}"),
        0.0
    );
    wait_until("the refusal's log line", Duration::from_secs(5), || {
        gw.proc.log_text().contains("config reload refused")
    });
    assert_eq!(chat_as(&gw, None).status, 401);

    // Nor does SIGHUP, which logrotate sends every night: it is refused the same way, and the
    // running config keeps serving.
    gw.proc.signal(libc::SIGHUP);
    wait_until("the refusal on SIGHUP", Duration::from_secs(10), || refused() == 2.0);
    wait_until("the SIGHUP refusal's log line", Duration::from_secs(5), || {
        gw.proc
            .log_text()
            .lines()
            .any(|l| l.contains("SIGHUP") && l.contains("config reload refused") && l.contains("send SIGUSR2"))
    });
    assert_eq!(gw.metric("tollgate_config_reloads_total"), 0.0);
    assert_eq!(chat_as(&gw, None).status, 401);

    // The operator means it: SIGUSR2 applies it, and the log says what it weakened.
    gw.proc.signal(libc::SIGUSR2);
    wait_until("the SIGUSR2 reload", Duration::from_secs(10), || {
        gw.metric("tollgate_config_reloads_total") == 1.0
    });
    wait_until("the warning", Duration::from_secs(5), || {
        gw.proc
            .log_text()
            .lines()
            .any(|l| l.contains("SIGUSR2") && l.contains("config reloaded although it turns auth.required off"))
    });
    assert_eq!(chat_as(&gw, None).status, 200);
    // Counted once per refusal, not again by the watcher after the signals.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(refused(), 2.0);
}

#[test]
fn a_file_cut_inside_the_last_key_is_refused_and_its_limit_still_holds() {
    let mock = Mock::start(&[]);
    let watch = "  reload_poll: 100ms\n  reload_settle: 200ms\n";
    // Every section and key id survives the cut below: only the key's `limits:` lines go.
    let cfg = format!(
        "{}auth:\n  required: true\n  key_sync: 100ms\nkeys:\n  - id: app\n    key: \"${{APP_KEY}}\"\n    limits:\n      rpm: 1\n",
        config(&mock, &["one"])
    );
    let gw = Gateway::start_env(watch, &cfg, SECRETS);
    assert_eq!(chat_as(&gw, Some("tg-reload-app")).status, 200);
    assert_eq!(chat_as(&gw, Some("tg-reload-app")).status, 429, "rpm: 1");

    let full = std::fs::read_to_string(&gw.config).unwrap();
    gw.write_raw(&full[..full.find("    limits:").unwrap()]);
    wait_until("the refusal", Duration::from_secs(10), || {
        gw.metric("tollgate_config_reload_refused_total{reason=\"setting_removed\"}") == 1.0
    });
    wait_until("the refusal's log line", Duration::from_secs(5), || {
        gw.proc.log_text().contains("it removes `keys[id=app].limits`")
    });
    assert_eq!(gw.metric("tollgate_config_reloads_total"), 0.0);
    // The limit still holds (rpm 1 refills one request a minute).
    assert_eq!(chat_as(&gw, Some("tg-reload-app")).status, 429);
}

#[test]
fn a_provider_moved_to_a_new_base_url_starts_with_fresh_breakers() {
    let down = Mock::start(&["--status", "503"]);
    let fixed = Mock::start(&[]);
    let backup = Mock::start(&[]);
    let cfg = |p_url: &str| {
        format!(
            "routing:\n  retries: 0\n  breaker: {{ consecutive_failures: 2, cooldown: 60s }}\nproviders:\n{}{}{}models:\n  m:\n    targets: [ {{ provider: p, model: x }}, {{ provider: backup, model: b }} ]\n  n:\n    targets: [ {{ provider: q, model: y }}, {{ provider: backup, model: b }} ]\n",
            mock_provider("p", p_url, ""),
            mock_provider("q", &down.base_url(), ""),
            mock_provider("backup", &backup.base_url(), "")
        )
    };
    let no_poll = "  reload_poll: 0s\n";
    let gw = Gateway::start(no_poll, &cfg(&down.base_url()));
    let attempts = |model: &str| {
        let r = gw.chat(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(r.status, 200, "{}", r.body);
        r.header("x-tollgate-attempts").unwrap_or_default().to_string()
    };
    // Both p and q fail twice at the same address: their breakers open.
    for model in ["m", "n"] {
        attempts(model);
        attempts(model);
    }
    assert_eq!(attempts("m"), "p:breaker_open,backup:200");
    assert_eq!(attempts("n"), "q:breaker_open,backup:200");

    // p now points somewhere else (q does not): p's breaker for the old address is gone.
    gw.rewrite(no_poll, &cfg(&fixed.base_url()));
    gw.proc.signal(libc::SIGHUP);
    wait_until("the reload", Duration::from_secs(10), || {
        gw.metric("tollgate_config_reloads_total") == 1.0
    });
    assert_eq!(attempts("m"), "p:200");
    assert_eq!(fixed.requests().len(), 1);
    assert_eq!(
        attempts("n"),
        "q:breaker_open,backup:200",
        "an unchanged provider keeps its breaker"
    );
    let breakers = get(&gw.admin_url("/breakers")).json();
    let state = |provider: &str| {
        breakers["breakers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["provider"] == provider)
            .map(|b| b["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state("p").as_deref(), Some("closed"));
    assert_eq!(state("q").as_deref(), Some("open"));
}

/// The provider's key as the mock last received it.
fn last_key(mock: &Mock) -> String {
    let reqs = mock.requests();
    reqs.last().unwrap()["headers"]["authorization"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Writes `value` as a Kubernetes secret volume does: into a new file, then a symlink swapped in.
fn swap_secret(dir: &std::path::Path, link: &std::path::Path, version: &str, value: &str) {
    let target = dir.join(version);
    std::fs::write(&target, format!("{value}\n")).unwrap();
    let tmp = dir.join("link.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

/// The secrets config: the provider's key from a file, the virtual key from a systemd credential.
fn secrets_config(mock: &Mock, key_file: &std::path::Path) -> String {
    format!(
        "providers:\n  mock:\n    kind: openai_compatible\n    base_url: \"{}\"\n    api_keys: [\"${{file:{}}}\"]\n\
         models:\n  one:\n    targets: [ {{ provider: mock, model: up }} ]\n\
         auth: {{ required: true }}\nkeys:\n  - {{ id: app, key: \"${{credential:vkey}}\" }}\n",
        mock.base_url(),
        key_file.display()
    )
}

/// A gateway (with `server_extra`) whose provider key is the file `openai` in the first temp dir
/// (`sk-file-one`, behind a symlink) and whose virtual key is the systemd credential `vkey` in the
/// second (`tg-cred-one`).
fn with_secrets(server_extra: &str) -> (Mock, tempfile::TempDir, tempfile::TempDir, Gateway) {
    let mock = Mock::start(&[]);
    let secrets = tempfile::tempdir().unwrap();
    let creds = tempfile::tempdir().unwrap();
    let key_file = secrets.path().join("openai");
    swap_secret(secrets.path(), &key_file, "v1", "sk-file-one");
    std::fs::write(creds.path().join("vkey"), "tg-cred-one").unwrap();
    let creds_dir = creds.path().to_string_lossy().to_string();
    let gw = Gateway::start_env(
        server_extra,
        &secrets_config(&mock, &key_file),
        &[("CREDENTIALS_DIRECTORY", &creds_dir)],
    );
    (mock, secrets, creds, gw)
}

/// A provider key from a file (`${file:…}`) rotates when the file changes: the watcher sees it
/// with the config file itself untouched.
#[test]
fn a_provider_key_from_a_file_rotates_when_the_file_changes() {
    let (mock, secrets, _creds, gw) = with_secrets("  reload_poll: 100ms\n  reload_settle: 0s\n");
    let key_file = secrets.path().join("openai");

    assert_eq!(chat_as(&gw, Some("tg-cred-one")).status, 200);
    assert_eq!(last_key(&mock), "Bearer sk-file-one");
    swap_secret(secrets.path(), &key_file, "v2", "sk-file-two");
    wait_until("the rotated provider key", Duration::from_secs(10), || {
        chat_as(&gw, Some("tg-cred-one")).status == 200 && last_key(&mock) == "Bearer sk-file-two"
    });
    assert_eq!(
        gw.metric("tollgate_config_reloads_total"),
        1.0,
        "one reload for one change"
    );
    let log = gw.proc.log_text();
    for secret in ["sk-file-one", "sk-file-two", "tg-cred-one"] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
}

/// With the watcher off, SIGHUP reads the secret files again: a new virtual key from the systemd
/// credentials directory; a key file that disappeared disables its provider, named by its path.
#[test]
fn sighup_reads_secret_files_again() {
    let (_mock, secrets, creds, gw) = with_secrets("  reload_poll: 0s\n");
    let key_file = secrets.path().join("openai");
    assert_eq!(chat_as(&gw, Some("tg-cred-one")).status, 200);

    std::fs::write(creds.path().join("vkey"), "tg-cred-two").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        chat_as(&gw, Some("tg-cred-two")).status,
        401,
        "nothing changes before SIGHUP"
    );
    gw.proc.signal(libc::SIGHUP);
    wait_until("the rotated virtual key", Duration::from_secs(10), || {
        chat_as(&gw, Some("tg-cred-two")).status == 200
    });
    assert_eq!(chat_as(&gw, Some("tg-cred-one")).status, 401, "the old key is gone");

    std::fs::remove_file(&key_file).unwrap();
    gw.proc.signal(libc::SIGHUP);
    let path = key_file.display().to_string();
    wait_until("the warning naming the missing file", Duration::from_secs(10), || {
        gw.proc
            .log_text()
            .contains(&format!("secret file {path} (missing, unreadable or empty)"))
    });
    let log = gw.proc.log_text();
    for secret in ["sk-file-one", "tg-cred-one", "tg-cred-two"] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
}
