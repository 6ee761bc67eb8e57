//! Unit tests of `echo` / `tool_echo`: the helpers, then the OpenAI chat, legacy completions and
//! Anthropic reply builders, JSON and streamed (events generated, then parsed back).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pingora::http::RequestHeader;
use serde_json::{json, Value};

use super::*;
use crate::mock::behavior::Overrides;
use crate::mock::{anthropic, openai, Reply};

/// Multibyte text with a placeholder a small piece size will cut.
const TEXT: &str = "Grüße, Zoë 👋 [EMAIL_1] ok";

fn behavior(spec: &str) -> Behavior {
    let mut b = Behavior::default();
    b.apply(&Overrides::parse(spec).unwrap());
    b
}

fn json_of(r: Reply) -> Value {
    match r {
        Reply::Json { status, body, .. } => {
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(status, 200, "{v}");
            v
        }
        Reply::Sse(_) => panic!("expected JSON, got a stream"),
    }
}

/// Every event of a stream: `(event name or "", data)`; `[DONE]` is `Value::Null`.
fn events_of(r: Reply) -> Vec<(String, Value)> {
    let Reply::Sse(mut src) = r else {
        panic!("expected a stream")
    };
    let mut out = Vec::new();
    while let Some(ev) = src.next_event() {
        let s = std::str::from_utf8(&ev.data)
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap()
            .to_string();
        let (name, data) = match s.strip_prefix("event: ") {
            Some(rest) => {
                let (name, data) = rest.split_once('\n').unwrap();
                (name.to_string(), data)
            }
            None => (String::new(), s.as_str()),
        };
        let data = data.strip_prefix("data: ").unwrap();
        let v = if data == "[DONE]" {
            Value::Null
        } else {
            serde_json::from_str(data).unwrap()
        };
        out.push((name, v));
    }
    out
}

fn chat(b: &Behavior, stream: bool) -> Reply {
    let req = json!({"model": "m", "stream": stream, "max_tokens": 1, "messages": [
        {"role": "user", "content": "an earlier question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": [
            {"type": "text", "text": "[[mock: echo piece=3]] Grüße, Zoë 👋 "},
            {"type": "image_url", "image_url": {"url": "x"}},
            {"type": "text", "text": "[EMAIL_1] ok"},
        ]},
    ]});
    openai::chat_completions(&serde_json::to_vec(&req).unwrap(), 7, b, None).reply
}

fn messages(b: &Behavior, stream: bool) -> Reply {
    let mut h = RequestHeader::build("POST", b"/v1/messages", None).unwrap();
    h.insert_header("x-api-key", "k").unwrap();
    h.insert_header("anthropic-version", "2023-06-01").unwrap();
    let req = json!({"model": "m", "stream": stream, "max_tokens": 1, "messages": [
        {"role": "user", "content": "an earlier question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": [
            {"type": "text", "text": "Grüße, Zoë 👋 [[mock: echo]]"},
            {"type": "text", "text": "[EMAIL_1] ok [[mock:piece=3]]"},
        ]},
    ]});
    anthropic::messages(&h, &serde_json::to_vec(&req).unwrap(), 7, b, None)
}

/// The pieces are valid UTF-8 (they are `&str`s out of JSON), at most 3 bytes unless one char,
/// never empty, and concatenate to `whole`.
fn check_pieces(pieces: &[String], whole: &str) {
    assert!(pieces.len() > 3, "{pieces:?}");
    for p in pieces {
        assert!(!p.is_empty());
        assert!(p.len() <= 3 || p.chars().count() == 1, "{p:?}");
    }
    assert_eq!(pieces.concat(), whole);
}

#[test]
fn helpers() {
    assert_eq!(strip_markers("[[mock: echo]] a [[mock:piece=2]]b  "), "a b");
    assert_eq!(strip_markers("keep [[mock: open"), "keep [[mock: open");
    assert_eq!(split("aüb", 1), ["a", "ü", "b"]);
    assert_eq!(split("👋x", 2), ["👋", "x"]);
    assert_eq!(split("abcdé", 4), ["abcd", "é"]);
    assert_eq!(split("", 4), [""]);
    assert_eq!(arguments("a\"b"), r#"{"note":"a\"b"}"#);
    assert_eq!(last_user_text(&[]), "");
    assert_eq!(last_user_text(&[json!({"role": "user", "content": null})]), "");
    assert_eq!(prompt_text(Some(&json!(["a", "b"]))), "b");
    assert_eq!(prompt_text(Some(&json!([1, 2]))), "");
    assert_eq!(Echo::new(&Behavior::default(), || unreachable!()), None);
    let e = Echo::new(&behavior("tool_echo piece=5"), || "x [[mock: tool_echo]]".into()).unwrap();
    assert_eq!(
        (e.text.as_str(), e.tool, e.payload()),
        ("x", true, r#"{"note":"x"}"#.into())
    );
}

#[test]
fn openai_chat_echo_json_and_stream() {
    let b = behavior("echo piece=3");
    let v = json_of(chat(&b, false));
    assert_eq!(v["choices"][0]["message"]["content"], TEXT);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let pieces = split(TEXT, 3);
    assert_eq!(v["usage"]["completion_tokens"], pieces.len());

    let events = events_of(chat(&b, true));
    let content: Vec<String> = events
        .iter()
        .filter_map(|(_, v)| v.pointer("/choices/0/delta/content")?.as_str().map(String::from))
        .filter(|c| !c.is_empty())
        .collect();
    check_pieces(&content, TEXT);
    assert_eq!(content, pieces);
    let finish: Vec<&Value> = events
        .iter()
        .filter_map(|(_, v)| v.pointer("/choices/0/finish_reason").filter(|f| !f.is_null()))
        .collect();
    assert_eq!(finish, [&json!("stop")]);
    assert_eq!(events.last().unwrap().1, Value::Null);
}

#[test]
fn openai_chat_tool_echo_json_and_stream() {
    // `tool_echo` wins over `tool=` (which would need the tool declared).
    let b = behavior("tool_echo piece=3 tool=lookup");
    let v = json_of(chat(&b, false));
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], TOOL_NAME);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"note": TEXT}));

    let events = events_of(chat(&b, true));
    let calls: Vec<&Value> = events
        .iter()
        .filter_map(|(_, v)| v.pointer("/choices/0/delta/tool_calls/0"))
        .collect();
    assert_eq!(calls[0]["id"], openai::MOCK_TOOL_CALL_ID);
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], TOOL_NAME);
    let pieces: Vec<String> = calls[1..]
        .iter()
        .map(|c| c["function"]["arguments"].as_str().unwrap().to_string())
        .collect();
    check_pieces(&pieces, &arguments(TEXT));
    let args: Value = serde_json::from_str(&pieces.concat()).unwrap();
    assert_eq!(args["note"], TEXT);
    assert!(events
        .iter()
        .any(|(_, v)| v.pointer("/choices/0/finish_reason") == Some(&json!("tool_calls"))));
}

#[test]
fn legacy_completions_echo_the_prompt() {
    let req = json!({"model": "m", "prompt": "say [[mock: echo]] Köln", "stream": true});
    let body = serde_json::to_vec(&req).unwrap();
    let events = events_of(openai::completions(&body, 1, &behavior("echo piece=2"), None).reply);
    let text: String = events
        .iter()
        .filter_map(|(_, v)| v.pointer("/choices/0/text")?.as_str())
        .collect();
    assert_eq!(text, "say  Köln");
    let req = json!({"model": "m", "prompt": ["first", "say [[mock: echo]] Köln"], "max_tokens": 1});
    let v = json_of(openai::completions(&serde_json::to_vec(&req).unwrap(), 1, &behavior("echo"), None).reply);
    assert_eq!(v["choices"][0]["text"], "say  Köln");
    let Reply::Json { status, .. } = openai::completions(&body, 1, &behavior("tool_echo"), None).reply else {
        panic!("expected JSON")
    };
    assert_eq!(status, 400);
}

#[test]
fn anthropic_echo_json_and_stream() {
    let b = behavior("echo piece=3");
    let v = json_of(messages(&b, false));
    assert_eq!(v["content"], json!([{"type": "text", "text": TEXT}]));
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["output_tokens"], split(TEXT, 3).len());

    let events = events_of(messages(&b, true));
    let texts: Vec<String> = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, v)| v["delta"]["text"].as_str().unwrap().to_string())
        .collect();
    check_pieces(&texts, TEXT);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
}

#[test]
fn anthropic_tool_echo_json_and_stream() {
    let b = behavior("tool_echo piece=3");
    let v = json_of(messages(&b, false));
    assert_eq!(v["content"][0]["type"], "tool_use");
    assert_eq!(v["content"][0]["name"], TOOL_NAME);
    assert_eq!(v["content"][0]["input"], json!({"note": TEXT}));
    assert_eq!(v["stop_reason"], "tool_use");

    let events = events_of(messages(&b, true));
    let start = events.iter().find(|(n, _)| n == "content_block_start").unwrap();
    assert_eq!(start.1["content_block"]["type"], "tool_use");
    assert_eq!(start.1["content_block"]["name"], TOOL_NAME);
    assert_eq!(start.1["content_block"]["input"], json!({}));
    let partial: Vec<String> = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, v)| {
            assert_eq!(v["delta"]["type"], "input_json_delta");
            v["delta"]["partial_json"].as_str().unwrap().to_string()
        })
        .collect();
    check_pieces(&partial, &arguments(TEXT));
    let input: Value = serde_json::from_str(&partial.concat()).unwrap();
    assert_eq!(input["note"], TEXT);
    let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
}

#[test]
fn a_message_of_only_a_marker_echoes_the_empty_text() {
    let req = json!({"model": "m", "messages": [{"role": "user", "content": "[[mock: echo]]"}]});
    let r = openai::chat_completions(&serde_json::to_vec(&req).unwrap(), 1, &behavior("echo"), None).reply;
    assert_eq!(json_of(r)["choices"][0]["message"]["content"], "");
}
