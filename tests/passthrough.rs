//! Native passthrough routes (`/passthrough/{provider}/{path…}`) through Pingora's proxy flow:
//! a multipart upload and a binary download larger than any buffer, a streamed chat counted as it
//! passes, the provider's credentials in place of the client's, the key's allow-list, its rate
//! limit, and the errors of a provider that is unknown or down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn setup() -> (Mock, Gateway) {
    let mock = Mock::start(&[]);
    let rest = format!(
        "routing:\n  retries: 0\nusage:\n  access_log: access.log\nauth:\n  required: true\nkeys:\n  - {{ id: all, key: \"${{KEY_ALL}}\" }}\n  - {{ id: chat-only, key: \"${{KEY_CHAT}}\", models: [gpt] }}\n  - {{ id: pass, key: \"${{KEY_PASS}}\", models: [\"passthrough/oai\"], limits: {{ rpm: 2 }} }}\nproviders:\n{}  claude:\n    kind: anthropic\n    base_url: \"{}\"\n    api_keys: [\"key-of-claude\"]\n  down:\n    kind: openai_compatible\n    base_url: \"http://127.0.0.1:{}/v1\"\n    api_keys: [\"key-of-down\"]\nmodels:\n  gpt:\n    targets: [ {{ provider: oai, model: mock-gpt }} ]\n",
        mock_provider("oai", &mock.base_url(), ""),
        mock.base_url(),
        free_port(),
    );
    let gw = Gateway::start_env(
        "",
        &rest,
        &[("KEY_ALL", "tg-all"), ("KEY_CHAT", "tg-chat"), ("KEY_PASS", "tg-pass")],
    );
    (mock, gw)
}

fn bearer(key: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {key}"))
}

/// The access log's records, once `n` are there.
fn records(gw: &Gateway, n: usize) -> Vec<Value> {
    let log = gw.dir().join("access.log");
    wait_until("the records", std::time::Duration::from_secs(5), || {
        std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) >= n
    });
    std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_multipart_upload_and_a_binary_download_stream_through_with_the_providers_credentials() {
    let (mock, gw) = setup();
    // 1 MiB of bytes that are not text, in a multipart body far above Pingora's 64 KiB buffer.
    let file: Vec<u8> = (0..1_048_576u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let boundary = "tollgate-test-boundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n").as_bytes(),
    );
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(&file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = agent()
        .post(&gw.url("/passthrough/oai/files"))
        .set("authorization", "Bearer tg-all")
        .set("x-tollgate-user", "someone")
        .set("content-type", &format!("multipart/form-data; boundary={boundary}"))
        .send_bytes(&body)
        .expect("upload");
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("x-tollgate-provider"), Some("oai"));
    let v: Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    assert_eq!(v["bytes"], file.len());
    assert_eq!(v["filename"], "big.bin");
    assert_eq!(v["purpose"], "batch");
    assert_eq!(
        v["sha256"],
        hex::encode(Sha256::digest(&file)),
        "the file arrived whole"
    );

    // The provider got its own key, on its own path, and none of the client's or gateway's headers.
    let up = mock.requests().last().unwrap().clone();
    assert_eq!(up["path"], "/v1/files");
    let headers = up["headers"].to_string().to_lowercase();
    assert!(headers.contains("key-of-oai"), "{headers}");
    assert!(!headers.contains("tg-all"), "the client's key went upstream: {headers}");
    assert!(!headers.contains("x-tollgate-user"), "{headers}");

    // A binary download larger than any buffer.
    let r = agent()
        .get(&gw.url("/passthrough/oai/files/file-mock-1/content"))
        .set("authorization", "Bearer tg-all")
        .call()
        .expect("download");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut got).unwrap();
    assert_eq!(got.len(), tollgate::mock::files::DOWNLOAD_BYTES);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, b)| *b == tollgate::mock::files::download_byte(i)));

    let recs = records(&gw, 2);
    assert!(
        recs.iter()
            .all(|r| r["endpoint"] == "passthrough" && r["provider"] == "oai"),
        "{recs:?}"
    );
    assert!(
        recs.iter().all(|r| r["status"] == 200 && r["key_id"] == "all"),
        "{recs:?}"
    );
}

#[test]
fn a_streamed_and_a_json_chat_are_counted_as_they_pass() {
    let (mock, gw) = setup();
    let body = json!({"model": "mock-gpt", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Hello"}]});
    let (head, events) = post_stream_with(
        &gw.url("/passthrough/oai/chat/completions"),
        &body.to_string(),
        &[("authorization", "Bearer tg-all")],
    );
    assert_eq!(head.status, 200);
    assert_eq!(
        events.last().unwrap().data,
        "[DONE]",
        "the provider's own stream, as it is"
    );
    let text: String = events[..events.len() - 1]
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, "This is the Tollgate");
    assert_eq!(mock.requests().last().unwrap()["path"], "/v1/chat/completions");

    // Anthropic's own API, JSON, with its own key header.
    let body = json!({"model": "claude-mock", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]});
    let r = post(
        &gw.url("/passthrough/claude/messages"),
        &body.to_string(),
        &[("authorization", "Bearer tg-all"), ("anthropic-version", "2023-06-01")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["type"], "message");
    let up = mock.requests().last().unwrap().clone();
    assert!(up["headers"].to_string().contains("key-of-claude"));

    let recs = records(&gw, 2);
    let (stream, whole) = (&recs[0], &recs[1]);
    assert_eq!(stream["stream"], true);
    assert_eq!(stream["completion_tokens"], 4, "{stream}");
    assert!(stream["prompt_tokens"].as_u64().unwrap() > 0, "{stream}");
    assert_eq!(whole["provider"], "claude");
    assert_eq!(whole["served_model"], "claude-mock", "{whole}");
    assert_eq!(whole["completion_tokens"], 4, "{whole}");
}

#[test]
fn allow_lists_limits_and_failures_answer_like_the_rest_of_the_gateway() {
    let (mock, gw) = setup();
    let chat = json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "Hi"}]}).to_string();
    let url = gw.url("/passthrough/oai/chat/completions");

    // No key, a key whose allow-list lacks the provider.
    assert_eq!(post(&url, &chat, &[]).status, 401);
    let (k, v) = bearer("tg-chat");
    let r = post(&url, &chat, &[(k, &v)]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "model_not_allowed");

    // A key allowed the provider, with a rate limit of 2 a minute.
    let (k, v) = bearer("tg-pass");
    assert_eq!(post(&url, &chat, &[(k, &v)]).status, 200);
    assert_eq!(post(&url, &chat, &[(k, &v)]).status, 200);
    let r = post(&url, &chat, &[(k, &v)]);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert_eq!(mock.requests().len(), 2);

    // An unknown provider; one that is down (a provider-shaped 502 naming it).
    let (k, v) = bearer("tg-all");
    let r = post(&gw.url("/passthrough/nope/chat/completions"), &chat, &[(k, &v)]);
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post(&gw.url("/passthrough/down/chat/completions"), &chat, &[(k, &v)]);
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "upstream_connect_error");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("down"));

    // Every request left one record, the refused ones included.
    let recs = records(&gw, 7);
    assert_eq!(recs.len(), 7, "{recs:?}");
    assert_eq!(recs[6]["status"], 502);
    assert_eq!(recs[6]["endpoint"], "passthrough");
}
