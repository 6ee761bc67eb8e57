//! The README's examples are run, so the README cannot drift from what the binary does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

/// The README's fenced blocks, each as (info string, body lines).
fn fenced_blocks(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut open: Option<(String, Vec<String>)> = None;
    for line in text.lines() {
        match (open.take(), line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_string(), Vec::new())),
            (Some(block), Some(_)) => out.push(block),
            (Some(mut block), None) => {
                block.1.push(line.to_string());
                open = Some(block);
            }
            (None, None) => {}
        }
    }
    out
}

#[test]
fn the_check_example_prints_what_the_readme_says() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks = fenced_blocks(&readme);
    let command = "$ tollgate check --config bad.yaml";
    let at = blocks
        .iter()
        .position(|(_, lines)| lines.first().map(String::as_str) == Some(command))
        .expect("the README shows `tollgate check --config bad.yaml`");
    let (info, file) = &blocks[at - 1];
    assert_eq!(info, "yaml", "the block before the check example is the file it checks");
    let expected = &blocks[at].1[1..];

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yaml"), file.join("\n") + "\n").unwrap();
    let out = Command::new(common::BIN)
        .args(["check", "--config", "bad.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let printed: Vec<&str> = stderr.lines().collect();
    assert_eq!(printed, expected, "the README's check example and the binary disagree");
}

#[test]
fn the_admin_keys_example_body_is_accepted_as_documented() {
    use tollgate::limits::keys::{admin, KeyStore, DEFAULT_POLL};
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("curl -s localhost:9090/admin/keys")
        .expect("the README's POST /admin/keys example");
    let body = readme[start..]
        .split("-d '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("the example's -d body");
    let sent: serde_json::Value = serde_json::from_str(body).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("keys.db").display());
    let store = KeyStore::open(Some(&url), Vec::new(), DEFAULT_POLL).unwrap();
    let (status, key) = admin::handle(&store, "POST", "/admin/keys", body.as_bytes());
    assert_eq!(status, 201, "{key}");
    assert!(key["secret"].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    assert_eq!(key["source"], "api");
    for field in ["id", "team", "models", "limits"] {
        assert_eq!(key[field], sent[field], "{field} in {key}");
    }
}
