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
