//! The Anthropic dialect end to end: OpenAI clients served by an Anthropic provider (translated),
//! Anthropic clients (`/v1/messages`) served by Anthropic (passthrough) and by an OpenAI-dialect
//! provider (translated back into Anthropic's format), against the real mock on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};

fn setup() -> (Mock, Gateway) {
    let mock = Mock::start(&[]);
    let rest = format!(
        "routing:\n  retries: 0\nauth:\n  anonymous_keys: [client-key-xyz]\nproviders:\n{}  claude:\n    kind: anthropic\n    base_url: \"{}\"\n    api_keys: [\"key-of-claude\"]\nmodels:\n  gpt:\n    targets: [ {{ provider: oai, model: mock-gpt }} ]\n  claude:\n    targets: [ {{ provider: claude, model: claude-mock-1 }} ]\n",
        mock_provider("oai", &mock.base_url(), ""),
        mock.base_url()
    );
    let gw = Gateway::start("", &rest);
    (mock, gw)
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

fn messages(gw: &Gateway, body: &Value, headers: &[(&str, &str)]) -> Resp {
    post(&gw.url("/v1/messages"), &body.to_string(), headers)
}

fn sse_json(events: &[Received]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.data != "[DONE]")
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect()
}

#[test]
fn openai_client_to_anthropic_json() {
    let (mock, gw) = setup();
    let r = gw.chat(&json!({
        "model": "claude", "temperature": 0.5, "user": "u-1", "stop": ["END"],
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    }));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "This is the Tollgate");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(
        v["usage"]["total_tokens"],
        v["usage"]["prompt_tokens"].as_u64().unwrap() + 4
    );

    let rec = &mock.requests()[0];
    assert_eq!(rec["path"], "/v1/messages");
    assert_eq!(rec["headers"]["x-api-key"], "key-of-claude");
    assert_eq!(rec["headers"]["anthropic-version"], "2023-06-01");
    assert!(rec["headers"].get("authorization").is_none());
    let up: Value = serde_json::from_str(rec["body"].as_str().unwrap()).unwrap();
    assert_eq!(up["model"], "claude-mock-1");
    assert_eq!(up["max_tokens"], 4096);
    assert_eq!(up["system"][0]["text"], "Be brief.");
    assert_eq!(
        up["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Hello"}]}])
    );
    assert_eq!(up["stop_sequences"], json!(["END"]));
    assert_eq!(up["metadata"]["user_id"], "u-1");
    assert_eq!(up["temperature"], 0.5);
}

#[test]
fn openai_client_to_anthropic_stream_with_usage() {
    let (_mock, gw) = setup();
    let body = json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Hi [[mock: chunks=3]]"}]});
    let (head, events) = post_stream(&gw.url("/v1/chat/completions"), &body.to_string());
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(events.iter().filter(|e| e.data == "[DONE]").count(), 1);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks = sse_json(&events);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(chunks
        .iter()
        .all(|c| c["id"] == id && c["object"] == "chat.completion.chunk"));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "This is the");
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("stop")]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 3);
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn tool_call_round_trip_through_anthropic() {
    let (mock, gw) = setup();
    let r = gw.chat(
        &json!({"model": "claude", "tools": weather_tool(), "tool_choice": "required",
        "messages": [{"role": "user", "content": "Weather in Paris? [[mock: tool=get_weather]]"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"q": "mock"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let up: Value = serde_json::from_str(mock.requests()[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(up["tool_choice"], json!({"type": "any"}));
    assert_eq!(up["tools"][0]["input_schema"]["required"], json!(["city"]));

    // The result goes back; the mock rejects a tool_result whose id it never issued.
    let id = call["id"].as_str().unwrap();
    let r2 = gw.chat(&json!({"model": "claude", "tools": weather_tool(), "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": id, "content": "18C and sunny"}
    ]}));
    assert_eq!(r2.status, 200, "{}", r2.body);
    let up: Value = serde_json::from_str(mock.requests()[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(up["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(up["messages"][1]["content"][0]["input"], json!({"q": "mock"}));
    assert_eq!(
        up["messages"][2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": id, "content": "18C and sunny"})
    );

    // Streamed: one tool call, id and name first, arguments in pieces.
    let body = json!({"model": "claude", "stream": true, "tools": weather_tool(),
        "messages": [{"role": "user", "content": "[[mock: tool=get_weather]]"}]});
    let (_, events) = post_stream(&gw.url("/v1/chat/completions"), &body.to_string());
    let chunks = sse_json(&events);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert!(calls[0]["id"].as_str().is_some());
    assert!(calls.iter().all(|c| c["index"] == 0));
    let args: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, r#"{"q":"mock"}"#);
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
}

#[test]
fn json_mode_is_emulated_with_a_forced_tool() {
    let (mock, gw) = setup();
    let r = gw.chat(&json!({"model": "claude", "response_format": {"type": "json_object"},
        "messages": [{"role": "user", "content": "JSON please [[mock: tool=json_response]]"}]}));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(serde_json::from_str::<Value>(content).unwrap(), json!({"q": "mock"}));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    let up: Value = serde_json::from_str(mock.requests()[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(up["tool_choice"], json!({"type": "tool", "name": "json_response"}));
}

#[test]
fn anthropic_errors_come_back_openai_shaped_with_retry_after() {
    let (_mock, gw) = setup();
    let r = gw.chat(
        &json!({"model": "claude", "messages": [{"role": "user", "content": "[[mock: status=429 retry_after=3]]"}]}),
    );
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("3"));
    let v = r.json();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("Forced 429"));
    // n > 1 cannot be served by Anthropic: a clear 400 naming the field.
    let r = gw.chat(&json!({"model": "claude", "n": 2, "messages": [{"role": "user", "content": "x"}]}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["param"], "n");
}

#[test]
fn anthropic_client_passthrough_to_anthropic() {
    let (mock, gw) = setup();
    let body = json!({"model": "claude", "max_tokens": 100, "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello", "cache_control": {"type": "ephemeral"}}]}],
        "some_new_field": {"kept": true}});
    let r = messages(
        &gw,
        &body,
        &[
            ("x-api-key", "client-key-xyz"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "prompt-caching-2024-07-31"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "This is the Tollgate");
    assert_eq!(v["usage"]["output_tokens"], 4);
    let rec = &mock.requests()[0];
    assert_eq!(rec["headers"]["x-api-key"], "key-of-claude");
    assert_eq!(rec["headers"]["anthropic-beta"], "prompt-caching-2024-07-31");
    assert!(!rec.to_string().contains("client-key-xyz"));
    let expected = body
        .to_string()
        .replace(r#""model":"claude""#, r#""model":"claude-mock-1""#);
    assert_eq!(rec["body"], expected);

    // Streamed passthrough keeps Anthropic's event names.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let (head, events) = post_stream(&gw.url("/v1/messages"), &sbody.to_string());
    assert_eq!(head.status, 200);
    let types: Vec<String> = sse_json(&events)
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types.first().unwrap(), "message_start");
    assert_eq!(types.last().unwrap(), "message_stop");
}

#[test]
fn anthropic_client_served_by_an_openai_provider() {
    let (mock, gw) = setup();
    let body = json!({"model": "gpt", "max_tokens": 50, "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hello"}]});
    let r = messages(&gw, &body, &[("anthropic-version", "2023-06-01")]);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["content"][0], json!({"type": "text", "text": "This is the Tollgate"}));
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["output_tokens"], 4);
    let up: Value = serde_json::from_str(mock.requests()[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(up["messages"][0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(up["max_tokens"], 50);
    assert_eq!(mock.requests()[0]["path"], "/v1/chat/completions");

    // Streamed: Anthropic's full event sequence built from an OpenAI stream.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let (head, events) = post_stream(&gw.url("/v1/messages"), &sbody.to_string());
    assert_eq!(head.status, 200);
    let evs = sse_json(&events);
    let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types[0], "message_start");
    assert_eq!(types[1], "content_block_start");
    assert_eq!(
        &types[types.len() - 3..],
        &["content_block_stop", "message_delta", "message_stop"]
    );
    let text: String = evs.iter().filter_map(|e| e["delta"]["text"].as_str()).collect();
    assert_eq!(text, "This is the Tollgate");
    let delta = evs.iter().find(|e| e["type"] == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 4);

    // Gateway errors are in Anthropic's shape for Anthropic clients.
    let r = messages(&gw, &json!({"model": "nope", "max_tokens": 5, "messages": []}), &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "not_found_error");
}

#[test]
fn count_tokens_answers_from_the_estimator() {
    let (mock, gw) = setup();
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": "Hello, world!"}]});
    let r = post(
        &gw.url("/v1/messages/count_tokens"),
        &body.to_string(),
        &[("anthropic-version", "2023-06-01")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // 3 (reply priming) + 3 (message) + 1 ("user") + 4 ("Hello, world!" in o200k_base).
    assert_eq!(r.json(), json!({"input_tokens": 11}));
    assert!(mock.requests().is_empty(), "no provider call");
    let r = post(
        &gw.url("/v1/messages/count_tokens"),
        &json!({"model": "nope", "messages": []}).to_string(),
        &[],
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["type"], "not_found_error");
}

#[test]
fn a_mid_conversation_system_message_is_translated_not_refused() {
    // Claude Code's shape: a system message inside `messages`, with its beta header.
    let (mock, gw) = setup();
    let body = json!({"model": "gpt", "max_tokens": 50, "system": "You are a coding agent.",
    "messages": [
        {"role": "user", "content": "Fix the bug."},
        {"role": "assistant", "content": [{"type": "text", "text": "Which file?"}]},
        {"role": "system", "content": [{"type": "text", "text": "The user switched to plan mode.", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "src/main.rs"}
    ]});
    let beta = [
        ("anthropic-beta", "mid-conversation-system-2025-01-01"),
        ("anthropic-version", "2023-06-01"),
    ];
    let r = messages(&gw, &body, &beta);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["type"], "message");
    // The OpenAI-dialect provider got it as a system message in its place.
    let sent: Value = serde_json::from_str(mock.requests()[0]["body"].as_str().unwrap()).unwrap();
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "system", "user"]);
    assert_eq!(sent["messages"][3]["content"], "The user switched to plan mode.");
    // Anything but text in it is refused by name, not dropped.
    let mut bad = body.clone();
    bad["messages"][2]["content"] = json!([{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]);
    let r = messages(&gw, &bad, &beta);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("image"), "{}", r.body);
}

#[test]
fn a_request_a_targets_dialect_cannot_carry_is_refused_unless_the_route_allows_another_dialect() {
    let mock = Mock::start(&[]);
    let rest = format!(
        "routing:\n  retries: 0\nproviders:\n{}  claude:\n    kind: anthropic\n    base_url: \"{}\"\n    api_keys: [\"key-of-claude\"]\n\
models:\n  mixed:\n    strategy: priority\n    targets: [ {{ provider: claude, model: claude-mock-1 }}, {{ provider: oai, model: mock-gpt }} ]\n\
routes:\n  - name: lenient\n    match: {{ task: lenient }}\n    fallback_on_unsupported: true\n",
        mock_provider("oai", &mock.base_url(), ""),
        mock.base_url()
    );
    let gw = Gateway::start("", &rest);
    // Anthropic has no `n`: the first target cannot carry the request.
    let body = json!({"model": "mixed", "n": 2, "messages": [{"role": "user", "content": "Two answers, please."}]});
    let r = gw.chat(&body);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["param"], "n", "{}", r.body);
    assert!(
        r.json()["error"]["message"].as_str().unwrap().contains("Anthropic"),
        "{}",
        r.body
    );
    assert!(mock.requests().is_empty(), "no other dialect's model answered instead");
    // A route that allows it: the next target serves, and the answer says who.
    let r = post(
        &gw.url("/v1/chat/completions"),
        &body.to_string(),
        &[("x-tollgate-task", "lenient")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-tollgate-provider"), Some("oai"));
    assert!(
        r.header("x-tollgate-attempts")
            .unwrap_or("")
            .contains("claude:unsupported"),
        "{:?}",
        r.header("x-tollgate-attempts")
    );
}

#[test]
fn documents_and_server_tools_are_mapped_or_refused_by_name_never_dropped() {
    let (mock, gw) = setup();
    let ask = |content: Value, tools: Option<Value>| {
        let mut body = json!({"model": "gpt", "max_tokens": 50, "messages": [{"role": "user", "content": content}]});
        if let Some(t) = tools {
            body["tools"] = t;
        }
        messages(&gw, &body, &[("anthropic-version", "2023-06-01")])
    };
    // A plain-text document becomes text the OpenAI-dialect model sees.
    let r = ask(
        json!([{"type": "document", "title": "Release notes", "source": {"type": "text", "media_type": "text/plain", "data": "Version 2 adds exports."}},
               {"type": "text", "text": "Summarise the document."}]),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = mock.requests()[0]["body"].as_str().unwrap().to_string();
    assert!(
        sent.contains("Release notes") && sent.contains("Version 2 adds exports."),
        "{sent}"
    );
    // A PDF has no chat-part equivalent here: refused by name, not dropped.
    let r = ask(
        json!([{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
               {"type": "text", "text": "Summarise."}]),
        None,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("document") && r.body.contains("base64"), "{}", r.body);
    // An Anthropic server tool is refused by name; Claude Code's client tools (with their
    // streaming and loading hints) become function tools with their schemas.
    let r = ask(
        json!("Search the web."),
        Some(json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}])),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("web_search_20250305"), "{}", r.body);
    let calls = mock.requests().len();
    let r = ask(
        json!("Read a file."),
        Some(
            json!([{"name": "Read", "description": "Read a file", "eager_input_streaming": true, "defer_loading": false,
            "cache_control": {"type": "ephemeral"},
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}]),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let sent: Value = serde_json::from_str(mock.requests()[calls]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["tools"][0]["function"]["name"], "Read");
    assert_eq!(sent["tools"][0]["function"]["parameters"]["required"], json!(["path"]));
    // A server tool's result in an earlier assistant turn cannot be carried either.
    let body = json!({"model": "gpt", "max_tokens": 50, "messages": [
        {"role": "user", "content": "Search."},
        {"role": "assistant", "content": [{"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {"query": "x"}}]},
        {"role": "user", "content": "Go on."}]});
    let r = messages(&gw, &body, &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("server_tool_use"), "{}", r.body);
}
