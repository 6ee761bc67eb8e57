//! Unit tests of the OpenAI dialect: token formula, deterministic content, JSON shapes, the SSE
//! event sequence (generated, then parsed back), embeddings and errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

// Unmetered forms of the endpoints (shadow the glob import), for the tests of reply shapes.
fn chat_completions(body: &[u8], seq: u64, b: &Behavior) -> Reply {
    super::chat_completions(body, seq, b, None).reply
}
fn completions(body: &[u8], seq: u64, b: &Behavior) -> Reply {
    super::completions(body, seq, b, None).reply
}
fn embeddings(body: &[u8]) -> Reply {
    super::embeddings(body, None).reply
}

fn json_of(r: Reply) -> (u16, Value, Vec<(&'static str, String)>) {
    match r {
        Reply::Json { status, body, headers } => (status, serde_json::from_slice(&body).unwrap(), headers),
        Reply::Sse(_) => panic!("expected JSON, got a stream"),
    }
}

/// The parsed events of a stream: `(is_content, payload)`, `payload` = `Value::Null` for `[DONE]`.
fn events_of(r: Reply) -> Vec<(bool, Value)> {
    let Reply::Sse(mut src) = r else {
        panic!("expected a stream")
    };
    let mut out = Vec::new();
    while let Some(ev) = src.next_event() {
        let s = std::str::from_utf8(&ev.data).unwrap();
        let data = s.strip_prefix("data: ").and_then(|s| s.strip_suffix("\n\n")).unwrap();
        assert!(!data.contains('\n'), "one line per event: {s:?}");
        let v = if data == "[DONE]" {
            Value::Null
        } else {
            serde_json::from_str(data).unwrap()
        };
        out.push((ev.content, v));
    }
    out
}

fn body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn token_formula() {
    let msgs = json!([
        {"role": "system", "content": "abcd"},                 // 4 chars
        {"role": "user", "content": [{"type": "text", "text": "héllo"}, {"type": "image_url", "image_url": {"url": "x"}}]}, // 5
        {"role": "assistant", "content": null},                // 0
    ]);
    // ceil(9 / 4) + 3 * 3
    assert_eq!(chat_prompt_tokens(msgs.as_array().unwrap()), 3 + 9);
    assert_eq!(chat_prompt_tokens(&[]), 0);
    assert_eq!(text_tokens(""), 0);
    assert_eq!(text_tokens("abcde"), 2);
    let p = json!(["abcd", "e"]);
    assert_eq!(input_tokens(&parse_inputs(&p).unwrap()), 2);
    assert_eq!(input_tokens(&parse_inputs(&json!([[1, 2, 3], [4]])).unwrap()), 4);
}

#[test]
fn content_pieces() {
    assert_eq!(completion_text(4, None), "This is the Tollgate");
    assert_eq!(completion_text(6, None), "This is the Tollgate mock. This");
    assert_eq!(completion_text(3, Some("ok")), "ok ok ok");
    assert_eq!(completion_text(1, Some("ok")), "ok");
}

#[test]
fn chat_json_shape() {
    let req = json!({"model": "m-1", "messages": [{"role": "user", "content": "hello world!"}]});
    let (status, v, _) = json_of(chat_completions(&body(req), 42, &Behavior::default()));
    assert_eq!(status, 200);
    assert_eq!(v["id"], "chatcmpl-mock-42");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(v["model"], "m-1");
    let c = &v["choices"][0];
    assert_eq!(c["index"], 0);
    assert_eq!(
        c["message"],
        json!({"role": "assistant", "content": "This is the Tollgate"})
    );
    assert_eq!(c["finish_reason"], "stop");
    assert_eq!(c["logprobs"], Value::Null);
    // ceil(12 / 4) + 3 = 6 prompt tokens, 4 chunks.
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10})
    );
}

#[test]
fn ratelimit_headers_only_when_asked_and_drawn_down_per_answer() {
    let req = body(json!({"model": "m", "messages": [{"role": "user", "content": "hello world!"}]}));
    let (_, _, plain) = json_of(chat_completions(&req, 0, &Behavior::default()));
    assert!(plain.iter().all(|(k, _)| !k.starts_with("x-ratelimit-")), "{plain:?}");
    let b = Behavior {
        ratelimit_headers: true,
        ..Behavior::default()
    };
    let value =
        |h: &[(&'static str, String)], name: &str| h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()).unwrap();
    let (status, v, first) = json_of(chat_completions(&req, 0, &b));
    assert_eq!(status, 200);
    let tokens = v["usage"]["total_tokens"].as_u64().unwrap();
    assert_eq!(first.len(), 6, "{first:?}");
    assert_eq!(value(&first, "x-ratelimit-limit-requests"), "100000000");
    assert_eq!(value(&first, "x-ratelimit-limit-tokens"), "10000000000");
    assert_eq!(value(&first, "x-ratelimit-remaining-requests"), "99999999");
    assert_eq!(
        value(&first, "x-ratelimit-remaining-tokens"),
        (10_000_000_000 - tokens).to_string()
    );
    assert_eq!(value(&first, "x-ratelimit-reset-requests"), "1ms");
    let (_, _, third) = json_of(chat_completions(&req, 2, &b));
    assert_eq!(value(&third, "x-ratelimit-remaining-requests"), "99999997");
    assert_eq!(
        value(&third, "x-ratelimit-remaining-tokens"),
        (10_000_000_000 - 3 * tokens).to_string()
    );
    assert_eq!(value(&third, "x-ratelimit-reset-tokens"), "3ms");
}

#[test]
fn max_tokens_truncates_with_length() {
    let req = json!({"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]});
    let (_, v, _) = json_of(chat_completions(&body(req), 1, &Behavior::default()));
    assert_eq!(v["choices"][0]["message"]["content"], "This is");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 2);
    let req = json!({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]});
    assert_eq!(json_of(chat_completions(&body(req), 1, &Behavior::default())).0, 400);
}

#[test]
fn chat_request_errors() {
    let b = Behavior::default();
    let cases: [(&[u8], Option<&str>); 6] = [
        (b"{not json", None),
        (b"[1,2]", None),
        (br#"{"model":"m"}"#, Some("messages")),
        (br#"{"model":"m","messages":[]}"#, Some("messages")),
        (br#"{"messages":[{"role":"user","content":"x"}]}"#, Some("model")),
        (
            br#"{"model":"m","messages":[{"content":"x"}]}"#,
            Some("messages[0].role"),
        ),
    ];
    for (raw, param) in cases {
        let (status, v, _) = json_of(chat_completions(raw, 1, &b));
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(raw));
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"].as_str(), param);
        assert!(v["error"]["message"].as_str().unwrap().len() > 5);
        assert!(v["error"].get("code").is_some());
    }
    let stream_bad = br#"{"model":"m","stream":"yes","messages":[{"role":"user","content":"x"}]}"#;
    assert_eq!(
        json_of(chat_completions(stream_bad, 1, &b)).1["error"]["param"],
        "stream"
    );
}

fn check_chat_stream(include_usage: bool, chunks: u32) {
    let req = json!({
        "model": "m-s", "stream": true,
        "stream_options": {"include_usage": include_usage},
        "messages": [{"role": "user", "content": "abcdefgh"}],
    });
    let b = Behavior {
        chunks,
        ..Behavior::default()
    };
    let events = events_of(chat_completions(&body(req), 7, &b));
    let n = chunks as usize;
    assert_eq!(events.len(), 1 + n + 1 + usize::from(include_usage) + 1);
    // [DONE] once, and last.
    assert_eq!(events.iter().filter(|(_, v)| v.is_null()).count(), 1);
    assert!(events.last().unwrap().1.is_null());
    let chunks_json: Vec<&Value> = events[..events.len() - 1].iter().map(|(_, v)| v).collect();
    for v in &chunks_json {
        assert_eq!(v["id"], "chatcmpl-mock-7");
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(v["model"], "m-s");
        assert_eq!(v["created"], chunks_json[0]["created"]);
        assert_eq!(v.get("usage").is_some(), include_usage, "{v}");
    }
    // Role chunk first.
    assert_eq!(
        chunks_json[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert!(!events[0].0);
    // Content chunks.
    let text: String = chunks_json[1..=n]
        .iter()
        .map(|v| v["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, completion_text(chunks, None));
    assert!(events[1..=n].iter().all(|(c, _)| *c));
    assert!(chunks_json[1..=n]
        .iter()
        .all(|v| v["choices"][0]["finish_reason"].is_null()));
    // Finish chunk.
    let fin = chunks_json[n + 1];
    assert_eq!(fin["choices"][0]["delta"], json!({}));
    assert_eq!(fin["choices"][0]["finish_reason"], "stop");
    if include_usage {
        let u = chunks_json[n + 2];
        assert_eq!(u["choices"], json!([]));
        // ceil(8 / 4) + 3 = 5.
        assert_eq!(
            u["usage"],
            json!({"prompt_tokens": 5, "completion_tokens": chunks, "total_tokens": 5 + chunks})
        );
        assert!(fin["usage"].is_null());
    }
}

#[test]
fn chat_stream_sequence() {
    check_chat_stream(false, 4);
    check_chat_stream(true, 4);
    check_chat_stream(true, 1);
    check_chat_stream(false, 9);
}

#[test]
fn completions_json_and_stream() {
    let b = Behavior {
        text: Some("hey".into()),
        chunks: 3,
        ..Behavior::default()
    };
    let req = json!({"model": "m", "prompt": "abcdefg"});
    let (status, v, _) = json_of(completions(&body(req), 3, &b));
    assert_eq!(status, 200);
    assert_eq!(v["id"], "cmpl-mock-3");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "hey hey hey");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5})
    );

    let req = json!({"model": "m", "prompt": ["ab", "cd"], "stream": true,
                     "stream_options": {"include_usage": true}});
    let events = events_of(completions(&body(req), 4, &b));
    // 3 content, finish, usage, [DONE]; no role chunk.
    assert_eq!(events.len(), 6);
    assert_eq!(events[0].1["choices"][0]["text"], "hey");
    assert_eq!(events[0].1["object"], "text_completion");
    assert_eq!(events[3].1["choices"][0]["finish_reason"], "stop");
    assert_eq!(events[4].1["usage"]["prompt_tokens"], 2);
    assert!(events[5].1.is_null());
    let bad = json!({"model": "m", "prompt": 5});
    assert_eq!(json_of(completions(&body(bad), 1, &b)).1["error"]["param"], "prompt");
}

#[test]
fn embeddings_are_deterministic_and_normalised() {
    let req = json!({"model": "mock-embed", "input": ["hello", "world", "hello"]});
    let (status, v, _) = json_of(embeddings(&body(req.clone())));
    assert_eq!(status, 200);
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "mock-embed");
    assert_eq!(v["usage"], json!({"prompt_tokens": 6, "total_tokens": 6}));
    let vecs: Vec<Vec<f64>> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["object"], "embedding");
            assert_eq!(d["index"], i);
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    for e in &vecs {
        assert_eq!(e.len(), DEFAULT_EMBEDDING_DIMS);
        let norm: f64 = e.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
    assert_eq!(vecs[0], vecs[2]);
    assert_ne!(vecs[0], vecs[1]);
    // Same input, another request: same vector.
    assert_eq!(
        json_of(embeddings(&body(req))).1["data"][1]["embedding"],
        v["data"][1]["embedding"]
    );

    let req = json!({"model": "e", "input": [[1, 2], [2, 1]], "dimensions": 64});
    let (_, v, _) = json_of(embeddings(&body(req)));
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 64);
    assert_ne!(v["data"][0]["embedding"], v["data"][1]["embedding"]);
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_ne!(
        embedding_vector(&Input::Text("12"), 8),
        embedding_vector(&Input::Tokens(vec![1, 2]), 8)
    );
}

#[test]
fn embeddings_base64_and_errors() {
    let req = json!({"model": "e", "input": "x", "encoding_format": "base64", "dimensions": 5});
    let (_, v, _) = json_of(embeddings(&body(req)));
    let b64 = v["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(b64, base64_f32(&embedding_vector(&Input::Text("x"), 5)));
    assert_eq!(b64.len(), 28); // 20 bytes -> 28 chars with padding
    assert_eq!(base64_f32(&[]), "");
    // Known vector: 1.0f32 = 00 00 80 3f.
    assert_eq!(base64_f32(&[1.0]), "AACAPw==");

    for (bad, param) in [
        (json!({"model": "e", "input": "x", "dimensions": 4097}), "dimensions"),
        (json!({"model": "e", "input": "x", "dimensions": 0}), "dimensions"),
        (json!({"model": "e", "input": []}), "input"),
        (json!({"model": "e", "input": [1, "a"]}), "input"),
        (json!({"model": "e", "input": [[]]}), "input"),
        (json!({"model": "e", "input": [-1]}), "input"),
        (json!({"model": "e"}), "input"),
        (json!({"input": "x"}), "model"),
        (
            json!({"model": "e", "input": "x", "encoding_format": "hex"}),
            "encoding_format",
        ),
    ] {
        let (status, v, _) = json_of(embeddings(&body(bad.clone())));
        assert_eq!((status, v["error"]["param"].as_str()), (400, Some(param)), "{bad}");
    }
}

#[test]
fn models_and_forced_errors() {
    let (_, v, _) = json_of(list_models());
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, MODELS);
    assert!(v["data"].as_array().unwrap().iter().all(|m| m["owned_by"] == OWNED_BY));
    assert_eq!(json_of(retrieve_model("mock-gpt")).1["id"], "mock-gpt");
    assert_eq!(json_of(retrieve_model("nope")).0, 404);

    let b = Behavior {
        retry_after: Some(2),
        retry_after_ms: Some(1500),
        ..Behavior::default()
    };
    let (status, v, headers) = json_of(forced_error(429, &b));
    assert_eq!(status, 429);
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(v["error"]["message"].as_str().unwrap().contains("mock"));
    assert_eq!(v["error"]["param"], Value::Null);
    assert!(headers.contains(&("retry-after", "2".to_string())));
    assert!(headers.contains(&("retry-after-ms", "1500".to_string())));
    assert_eq!(
        json_of(forced_error(503, &Behavior::default())).1["error"]["type"],
        "server_error"
    );
    assert_eq!(error_kind(400), ("invalid_request_error", "invalid_request_error"));
    assert_eq!(error_kind(401).1, "invalid_api_key");
}

/// The usage meter counts each answer once, when it is over: a JSON body as reported only once
/// the caller marks it sent; a stream as reported only if its usage event was taken (written)
/// before it was dropped; a stream without `include_usage`, or cut before the usage event, as
/// unreported; errors not at all.
#[test]
fn usage_meter_buckets() {
    use crate::mock::usage::{Tokens, UsageMeter};
    let meter = Arc::new(UsageMeter::new());
    let m = Some(&meter);
    let b = Behavior {
        chunks: 3,
        ..Behavior::default()
    };
    // "abcdefgh": ceil(8 / 4) + 3 = 5 prompt tokens; 3 completion tokens.
    let chat = |model: &str, extra: Value| {
        let mut req = json!({"model": model, "messages": [{"role": "user", "content": "abcdefgh"}]});
        req.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body(req)
    };
    let totals = |meter: &UsageMeter| meter.snapshot().1;

    // JSON: pending until the caller says the body went out.
    let Answer { reply, pending } = super::chat_completions(&chat("a", json!({})), 1, &b, m);
    assert!(matches!(reply, Reply::Json { status: 200, .. }));
    let mut pending = pending.unwrap();
    assert_eq!(totals(&meter).reported.requests, 0);
    pending.sent();
    drop(pending);
    assert_eq!(totals(&meter).reported, Tokens::one(5, 3));
    // A JSON body never written: unreported.
    drop(super::chat_completions(&chat("a", json!({})), 2, &b, m));
    assert_eq!(totals(&meter).unreported, Tokens::one(5, 3));

    // A stream with include_usage, drained: reported (the entry rides in the stream).
    let with_usage = json!({"stream": true, "stream_options": {"include_usage": true}});
    let answer = super::chat_completions(&chat("b", with_usage.clone()), 3, &b, m);
    assert!(answer.pending.is_none());
    assert_eq!(events_of(answer.reply).len(), 1 + 3 + 1 + 1 + 1);
    // Cut right after its last content chunk (close_after=3): unreported.
    let Reply::Sse(mut src) = super::chat_completions(&chat("b", with_usage), 4, &b, m).reply else {
        panic!("expected a stream")
    };
    for _ in 0..4 {
        src.next_event().unwrap();
    }
    drop(src);
    // Without include_usage, drained: unreported.
    let no_usage = json!({"stream": true});
    events_of(super::chat_completions(&chat("b", no_usage), 5, &b, m).reply);

    // Legacy completions and embeddings are metered too; errors are not.
    let Answer { pending, .. } = super::completions(&body(json!({"model": "c", "prompt": "abcd"})), 6, &b, m);
    pending.unwrap().sent();
    let Answer { pending, .. } = super::embeddings(&body(json!({"model": "e", "input": "abcdefgh"})), m);
    pending.unwrap().sent();
    let bad = super::chat_completions(&body(json!({"model": "a", "messages": []})), 7, &b, m);
    assert!(bad.pending.is_none());

    let (models, t) = meter.snapshot();
    let by: std::collections::HashMap<_, _> = models.into_iter().collect();
    assert_eq!(by["a"].reported, Tokens::one(5, 3));
    assert_eq!(by["a"].unreported, Tokens::one(5, 3));
    assert_eq!(by["b"].reported, Tokens::one(5, 3));
    let mut two = Tokens::one(10, 6);
    two.requests = 2;
    assert_eq!(by["b"].unreported, two);
    assert_eq!(by["c"].reported, Tokens::one(1, 3));
    assert_eq!(by["e"].reported, Tokens::one(2, 0));
    assert_eq!((t.reported.requests, t.unreported.requests), (4, 3));
    assert_eq!(
        (t.reported.prompt_tokens, t.reported.completion_tokens),
        (5 + 5 + 1 + 2, 3 + 3 + 3)
    );
}
