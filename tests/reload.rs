//! Hot reload of the real gateway: on file change and on SIGHUP, valid and invalid configs,
//! and in-flight requests finishing on the snapshot they started with.

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
