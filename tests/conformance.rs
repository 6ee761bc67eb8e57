//! One conformance suite, every dialect: the same cases (text, system prompt, image, tool-call
//! round trip, JSON mode, stream with usage, provider error, 429), on the chat API, Claude Code's
//! shapes on the Messages API and the Responses API, through the real gateway and the real mock,
//! which speaks each provider's wire format on its real paths.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};

/// How a dialect is configured and what to expect of it.
struct Dialect {
    alias: &'static str,
    /// The provider entry (YAML, indented under `providers:`), `{mock}` = the mock's address.
    provider: &'static str,
    /// A substring of the upstream path.
    path: &'static str,
    /// How JSON mode reaches the provider.
    json: Json,
    /// The upstream embedding model, or `None` where the provider has no embeddings.
    embed: Option<&'static str>,
}

enum Json {
    /// `response_format` passes through.
    AsSent,
    /// Emulated with a forced tool (the mock must be told to call it).
    ForcedTool,
    /// Gemini's `generationConfig.responseMimeType`.
    MimeType,
}

const DIALECTS: &[Dialect] = &[
    Dialect {
        alias: "openai",
        provider: "  openai:\n    kind: openai_compatible\n    base_url: \"http://{mock}/v1\"\n    api_keys: [\"k-openai\"]\n",
        path: "/v1/chat/completions",
        json: Json::AsSent,
        embed: Some("up-openai"),
    },
    Dialect {
        alias: "azure",
        provider: "  azure:\n    kind: azure\n    base_url: \"http://{mock}\"\n    api_version: \"2024-10-21\"\n    api_keys: [\"k-azure\"]\n",
        path: "/openai/deployments/up-azure/chat/completions?api-version=2024-10-21",
        json: Json::AsSent,
        embed: Some("up-azure"),
    },
    Dialect {
        alias: "anthropic",
        provider: "  anthropic:\n    kind: anthropic\n    base_url: \"http://{mock}/v1\"\n    api_keys: [\"k-anthropic\"]\n",
        path: "/v1/messages",
        json: Json::ForcedTool,
        embed: None,
    },
    Dialect {
        alias: "gemini",
        provider: "  gemini:\n    kind: gemini\n    base_url: \"http://{mock}/v1beta\"\n    api_keys: [\"k-gemini\"]\n",
        path: "/v1beta/models/up-gemini:",
        json: Json::MimeType,
        embed: Some("text-embedding-004"),
    },
    Dialect {
        alias: "bedrock",
        provider: "  bedrock:\n    kind: bedrock\n    base_url: \"http://{mock}\"\n    aws_region: us-east-1\n    aws_access_key_id: AKIDMOCK\n    aws_secret_access_key: mock-secret\n",
        path: "/model/up-bedrock/converse",
        json: Json::ForcedTool,
        embed: Some("amazon.titan-embed-text-v2:0"),
    },
];

fn gateway() -> (Mock, Gateway) {
    let mock = Mock::start(&[]);
    let mut cfg = String::from("routing:\n  retries: 0\nproviders:\n");
    for d in DIALECTS {
        cfg.push_str(&d.provider.replace("{mock}", &mock.addr));
    }
    cfg.push_str("models:\n");
    for d in DIALECTS {
        cfg.push_str(&format!(
            "  {0}:\n    targets: [ {{ provider: {0}, model: up-{0} }} ]\n",
            d.alias
        ));
        let embed = d.embed.unwrap_or("none");
        cfg.push_str(&format!(
            "  {0}-embed:\n    targets: [ {{ provider: {0}, model: \"{embed}\" }} ]\n",
            d.alias
        ));
    }
    let gw = Gateway::start("", &cfg);
    (mock, gw)
}

fn upstream_body(mock: &Mock) -> Value {
    let recs = mock.requests();
    let last = recs.last().expect("the mock received a request");
    serde_json::from_str(last["body"].as_str().unwrap()).unwrap()
}

fn last_path(mock: &Mock) -> String {
    mock.requests().last().unwrap()["path"].as_str().unwrap().to_string()
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

fn run(d: &Dialect) {
    let (mock, gw) = gateway();
    let chat = |body: Value| gw.chat(&body);
    let m = d.alias;

    // text
    let r = chat(json!({"model": m, "messages": [{"role": "user", "content": "Hello"}]}));
    assert_eq!(r.status, 200, "{m}: {}", r.body);
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["content"], "This is the Tollgate", "{m}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{m}");
    let u = &v["usage"];
    assert_eq!(u["completion_tokens"], 4, "{m}");
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + 4),
        "{m}"
    );
    assert!(last_path(&mock).contains(d.path), "{m}: {}", last_path(&mock));
    assert_eq!(r.header("x-tollgate-provider"), Some(m));

    // system prompt reaches the provider
    let r = chat(
        json!({"model": m, "messages": [{"role": "system", "content": "Be terse, sailor."}, {"role": "user", "content": "Hi"}]}),
    );
    assert_eq!(r.status, 200, "{m}: {}", r.body);
    assert!(upstream_body(&mock).to_string().contains("Be terse, sailor."), "{m}");

    // image (base64 data URL)
    let r = chat(json!({"model": m, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}));
    assert_eq!(r.status, 200, "{m}: {}", r.body);
    assert!(upstream_body(&mock).to_string().contains("iVBORw0KGgo="), "{m}");

    // tool call round trip
    let r = chat(
        json!({"model": m, "tools": tools(), "messages": [{"role": "user", "content": "Weather? [[mock: tool=get_weather]]"}]}),
    );
    assert_eq!(r.status, 200, "{m}: {}", r.body);
    let v = r.json();
    let call = v["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(call["function"]["name"], "get_weather", "{m}: {v}");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"q": "mock"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{m}");
    let r = chat(json!({"model": m, "tools": tools(), "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": null, "tool_calls": [call.clone()]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"}]}));
    assert_eq!(r.status, 200, "{m}: {}", r.body);
    assert!(upstream_body(&mock).to_string().contains("18C and sunny"), "{m}");

    // JSON mode
    let marker = if matches!(d.json, Json::ForcedTool) {
        " [[mock: tool=json_response]]"
    } else {
        ""
    };
    let r = chat(json!({"model": m, "response_format": {"type": "json_object"},
        "messages": [{"role": "user", "content": format!("JSON please{marker}")}]}));
    assert_eq!(r.status, 200, "{m}: {}", r.body);
    match d.json {
        Json::ForcedTool => {
            let content = r.json()["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string();
            assert_eq!(
                serde_json::from_str::<Value>(&content).unwrap(),
                json!({"q": "mock"}),
                "{m}"
            );
        }
        Json::AsSent => assert_eq!(upstream_body(&mock)["response_format"]["type"], "json_object", "{m}"),
        Json::MimeType => {
            assert_eq!(
                upstream_body(&mock)["generationConfig"]["responseMimeType"],
                "application/json",
                "{m}"
            )
        }
    }

    // stream with usage
    let body = json!({"model": m, "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Hi"}]});
    let (head, events) = post_stream(&gw.url("/v1/chat/completions"), &body.to_string());
    assert_eq!(head.status, 200, "{m}");
    assert_eq!(events.iter().filter(|e| e.data == "[DONE]").count(), 1, "{m}");
    assert_eq!(events.last().unwrap().data, "[DONE]", "{m}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant", "{m}");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "This is the Tollgate", "{m}");
    assert_eq!(
        chunks
            .iter()
            .filter(|c| !c["choices"][0]["finish_reason"].is_null())
            .count(),
        1,
        "{m}"
    );
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 4, "{m}");
    let id = &chunks[0]["id"];
    assert!(chunks.iter().all(|c| &c["id"] == id), "{m}: ids must be stable");

    // provider error keeps status and message
    let r = chat(json!({"model": m, "messages": [{"role": "user", "content": "[[mock: status=500]]"}]}));
    assert_eq!(r.status, 500, "{m}");
    assert!(
        r.json()["error"]["message"].as_str().unwrap().contains("Forced 500"),
        "{m}: {}",
        r.body
    );

    // embeddings: deterministic vectors in OpenAI's shape, or a clear 400 where there are none
    let r = post(
        &gw.url("/v1/embeddings"),
        &json!({"model": format!("{m}-embed"), "input": "the same text"}).to_string(),
        &[],
    );
    match d.embed {
        Some(_) => {
            assert_eq!(r.status, 200, "{m}: {}", r.body);
            let v = r.json();
            assert_eq!(v["object"], "list", "{m}");
            let e1 = v["data"][0]["embedding"].as_array().unwrap().clone();
            assert!(!e1.is_empty(), "{m}");
            let again = post(
                &gw.url("/v1/embeddings"),
                &json!({"model": format!("{m}-embed"), "input": "the same text"}).to_string(),
                &[],
            );
            assert_eq!(
                again.json()["data"][0]["embedding"].as_array().unwrap(),
                &e1,
                "{m}: deterministic"
            );
        }
        None => {
            assert_eq!(r.status, 400, "{m}: {}", r.body);
            assert_eq!(r.json()["error"]["code"], "unsupported_by_provider", "{m}");
        }
    }

    // 429 keeps Retry-After
    let r = chat(json!({"model": m, "messages": [{"role": "user", "content": "[[mock: status=429 retry_after=2]]"}]}));
    assert_eq!(r.status, 429, "{m}");
    assert_eq!(r.header("retry-after"), Some("2"), "{m}");
    assert!(r.json()["error"]["message"].as_str().is_some(), "{m}");

    claude_code_shapes(&gw, &mock, d);
    responses_api(&gw, &mock, d);
}

/// OpenAI's Responses API through every dialect: text with instructions, an image, a function
/// call round trip continued by `previous_response_id`, JSON schema output, a stream whose events
/// count up, a provider error, a 429, and a conversation continued on the next dialect.
fn responses_api(gw: &Gateway, mock: &Mock, d: &Dialect) {
    let m = d.alias;
    // Azure serves the Responses API itself (natively, on its v1 surface).
    let rpath = |d: &Dialect| {
        if d.alias == "azure" {
            "/openai/v1/responses"
        } else {
            d.path
        }
    };
    let create = |body: Value| post(&gw.url("/v1/responses"), &body.to_string(), &[]);

    // text and instructions
    let r = create(json!({"model": m, "input": "Hello", "instructions": "Be terse, sailor."}));
    assert_eq!(r.status, 200, "{m}: {}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "response", "{m}");
    assert_eq!(v["status"], "completed", "{m}");
    assert_eq!(v["output"][0]["content"][0]["text"], "This is the Tollgate", "{m}: {v}");
    assert_eq!(v["usage"]["output_tokens"], 4, "{m}");
    assert!(last_path(mock).contains(rpath(d)), "{m}: {}", last_path(mock));
    assert!(upstream_body(mock).to_string().contains("Be terse, sailor."), "{m}");
    let first_id = v["id"].as_str().unwrap().to_string();

    // image
    let r = create(json!({"model": m, "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]}]}));
    assert_eq!(r.status, 200, "{m}: {}", r.body);
    assert!(upstream_body(mock).to_string().contains("iVBORw0KGgo="), "{m}");

    // function call round trip, the second turn by `previous_response_id`
    let tool = json!([{"type": "function", "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let r = create(json!({"model": m, "tools": tool, "input": "Weather? [[mock: tool=get_weather]]"}));
    assert_eq!(r.status, 200, "{m}: {}", r.body);
    let v = r.json();
    let call = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "function_call")
        .cloned();
    let call = call.unwrap_or_else(|| panic!("{m}: no function call in {v}"));
    assert_eq!(call["name"], "get_weather", "{m}");
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
        json!({"q": "mock"})
    );
    let r = create(json!({"model": m, "tools": tool, "previous_response_id": v["id"],
        "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "18C and sunny"}]}));
    assert_eq!(r.status, 200, "{m}: {}", r.body);
    let sent = upstream_body(mock).to_string();
    for needle in ["Weather?", "get_weather", "18C and sunny"] {
        assert!(sent.contains(needle), "{m}: {needle} missing upstream: {sent}");
    }

    // JSON schema output
    let marker = if matches!(d.json, Json::ForcedTool) {
        " [[mock: tool=json_response]]"
    } else {
        ""
    };
    let schema = json!({"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]});
    let r = create(json!({"model": m, "input": format!("JSON please{marker}"),
        "text": {"format": {"type": "json_schema", "name": "answer", "schema": schema}}}));
    assert_eq!(r.status, 200, "{m}: {}", r.body);
    assert_eq!(r.json()["text"]["format"]["type"], "json_schema", "{m}");
    match d.json {
        Json::ForcedTool => {
            let text = r.json()["output"][0]["content"][0]["text"]
                .as_str()
                .unwrap()
                .to_string();
            assert_eq!(
                serde_json::from_str::<Value>(&text).unwrap(),
                json!({"q": "mock"}),
                "{m}"
            );
        }
        Json::AsSent if m == "azure" => {
            assert_eq!(upstream_body(mock)["text"]["format"]["schema"], schema, "{m}")
        }
        Json::AsSent => assert_eq!(
            upstream_body(mock)["response_format"]["json_schema"]["schema"],
            schema,
            "{m}"
        ),
        Json::MimeType => assert_eq!(
            upstream_body(mock)["generationConfig"]["responseMimeType"],
            "application/json",
            "{m}"
        ),
    }

    // stream with usage: every event named, its sequence number counting up from 0
    let body = json!({"model": m, "stream": true, "input": "Hi"});
    let (head, events) = post_stream(&gw.url("/v1/responses"), &body.to_string());
    assert_eq!(head.status, 200, "{m}");
    let evs: Vec<Value> = events.iter().map(|e| serde_json::from_str(&e.data).unwrap()).collect();
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e["sequence_number"], i, "{m}: {e}");
    }
    let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        &types[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ],
        "{m}"
    );
    assert_eq!(
        types[types.len() - 4..],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ],
        "{m}"
    );
    let text: String = evs
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "This is the Tollgate", "{m}");
    assert_eq!(evs.last().unwrap()["response"]["usage"]["output_tokens"], 4, "{m}");

    // a cut stream ends failed, never completed
    let body = json!({"model": m, "stream": true, "input": "Hi [[mock: close_after=2]]"});
    let (_, events) = post_stream(&gw.url("/v1/responses"), &body.to_string());
    let last: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    // (A translated stream ends `response.failed`; a native one with OpenAI's `error` event.)
    assert!(
        last["type"] == "response.failed" || last["type"] == "error",
        "{m}: {last}"
    );
    assert!(!events.iter().any(|e| e.data.contains("response.completed")), "{m}");

    // provider error and 429 keep their status, in OpenAI's error shape
    let r = create(json!({"model": m, "input": "[[mock: status=500]]"}));
    assert_eq!(r.status, 500, "{m}");
    assert!(
        r.json()["error"]["message"].as_str().unwrap().contains("Forced 500"),
        "{m}: {}",
        r.body
    );
    let r = create(json!({"model": m, "input": "[[mock: status=429 retry_after=2]]"}));
    assert_eq!(r.status, 429, "{m}");
    assert_eq!(r.header("retry-after"), Some("2"), "{m}");

    // the first conversation continued on the next dialect
    let next = &DIALECTS[(DIALECTS.iter().position(|x| x.alias == m).unwrap() + 1) % DIALECTS.len()];
    let r = create(json!({"model": next.alias, "previous_response_id": first_id, "input": "And then?"}));
    assert_eq!(r.status, 200, "{m} → {}: {}", next.alias, r.body);
    assert!(last_path(mock).contains(rpath(next)), "{m} → {}", next.alias);
    let sent = upstream_body(mock).to_string();
    for needle in ["Hello", "This is the Tollgate", "And then?"] {
        assert!(
            sent.contains(needle),
            "{m} → {}: {needle} missing upstream: {sent}",
            next.alias
        );
    }
}

/// What Claude Code sends (through `/v1/messages`, to any alias): its betas, a system prompt in
/// cache-controlled blocks, a mid-conversation system message, an earlier turn's signed thinking,
/// and client tools with streaming and loading hints. Every dialect must serve it, with both
/// system texts and the tool reaching the provider.
fn claude_code_shapes(gw: &Gateway, mock: &Mock, d: &Dialect) {
    let m = d.alias;
    let body = json!({
    "model": m, "max_tokens": 200, "stream": false,
    "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
    "tools": [{"name": "Read", "description": "Read a file", "eager_input_streaming": true, "defer_loading": false,
        "cache_control": {"type": "ephemeral"},
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Fix the bug.", "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Look at main first.", "signature": "sig-abc"},
            {"type": "text", "text": "Which file?"}]},
        {"role": "system", "content": "Plan mode is on."},
        {"role": "user", "content": "src/main.rs"}
    ]});
    let r = post(
        &gw.url("/v1/messages"),
        &body.to_string(),
        &[
            ("anthropic-version", "2023-06-01"),
            (
                "anthropic-beta",
                "interleaved-thinking-2025-05-14,mid-conversation-system-2025-01-01",
            ),
        ],
    );
    assert_eq!(r.status, 200, "{m}: {}", r.body);
    assert_eq!(r.json()["type"], "message", "{m}");
    let sent = upstream_body(mock).to_string();
    for needle in ["You are Claude Code.", "Plan mode is on.", "Read", "src/main.rs"] {
        assert!(sent.contains(needle), "{m}: {needle} missing upstream: {sent}");
    }
}

macro_rules! conformance {
    ($($name:ident => $alias:literal),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(DIALECTS.iter().find(|d| d.alias == $alias).expect("dialect"));
            }
        )*
    };
}

conformance! {
    openai => "openai",
    azure => "azure",
    anthropic => "anthropic",
    gemini => "gemini",
    bedrock => "bedrock",
}

/// Each documented request constraint of a current provider API (README, Providers), against a
/// mock as strict as the API: the client's request, which the model would refuse as it is, is
/// served, and the upstream request holds only what the model takes. Older models keep every
/// setting (the controls).
#[test]
fn current_api_constraints() {
    let mock = Mock::start(&[]);
    let mut cfg = String::from("routing:\n  retries: 0\nproviders:\n");
    for d in DIALECTS
        .iter()
        .filter(|d| ["openai", "anthropic", "bedrock", "gemini"].contains(&d.alias))
    {
        cfg.push_str(&d.provider.replace("{mock}", &mock.addr));
    }
    cfg.push_str("models:\n");
    for (alias, provider, model) in [
        ("o3", "openai", "o3-mini"),
        ("gpt5", "openai", "gpt-5"),
        ("gpt4o", "openai", "gpt-4o"),
        ("sonnet45", "anthropic", "claude-sonnet-4-5-20250929"),
        ("sonnet4", "anthropic", "claude-sonnet-4-20250514"),
        ("bsonnet45", "bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
        ("g25", "gemini", "gemini-2.5-flash"),
        ("g3", "gemini", "gemini-3-pro-preview"),
    ] {
        cfg.push_str(&format!(
            "  {alias}:\n    targets: [ {{ provider: {provider}, model: \"{model}\" }} ]\n"
        ));
    }
    let gw = Gateway::start("", &cfg);
    let user = json!([{"role": "user", "content": "Hi"}]);
    let ok = |r: Resp| {
        assert_eq!(r.status, 200, "{}", r.body);
        upstream_body(&mock)
    };
    let messages = |body: Value| {
        post(
            &gw.url("/v1/messages"),
            &body.to_string(),
            &[("anthropic-version", "2023-06-01")],
        )
    };

    // OpenAI reasoning models: max_tokens → max_completion_tokens, temperature / top_p ≠ 1 dropped,
    // from every client API.
    let up = ok(gw.chat(&json!({"model": "o3", "messages": user, "max_tokens": 20, "temperature": 0.3, "top_p": 0.5})));
    assert_eq!(up["max_completion_tokens"], 20, "{up}");
    for k in ["max_tokens", "temperature", "top_p"] {
        assert!(up.get(k).is_none(), "{k} reached the reasoning model: {up}");
    }
    let (head, events) = post_stream(
        &gw.url("/v1/chat/completions"),
        &json!({"model": "gpt5", "messages": user, "max_tokens": 20, "stream": true}).to_string(),
    );
    assert_eq!(head.status, 200);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    assert_eq!(upstream_body(&mock)["max_completion_tokens"], 20);
    let up = ok(messages(
        json!({"model": "o3", "max_tokens": 20, "temperature": 0.3, "messages": user}),
    ));
    assert!(
        up.get("max_tokens").is_none() && up.get("temperature").is_none(),
        "{up}"
    );
    let up = ok(post(
        &gw.url("/v1/responses"),
        &json!({"model": "o3", "input": "Hi", "temperature": 0.3, "max_output_tokens": 20}).to_string(),
        &[],
    ));
    assert!(up.get("temperature").is_none(), "{up}");
    let up = ok(gw.chat(&json!({"model": "gpt4o", "messages": user, "max_tokens": 20, "temperature": 0.3})));
    assert_eq!(
        (up["max_tokens"].clone(), up["temperature"].clone()),
        (json!(20), json!(0.3)),
        "control: {up}"
    );

    // Claude Sonnet 4.5 and later: temperature or top_p, not both (top_p dropped), translated,
    // passed through, and on Bedrock.
    let both = json!({"messages": user, "max_tokens": 20, "temperature": 0.5, "top_p": 0.9});
    let with = |alias: &str| {
        let mut b = both.clone();
        b["model"] = json!(alias);
        b
    };
    let up = ok(gw.chat(&with("sonnet45")));
    assert_eq!(up["temperature"], 0.5);
    assert!(up.get("top_p").is_none(), "{up}");
    let up = ok(messages(with("sonnet45")));
    assert!(up.get("top_p").is_none() && up["temperature"] == 0.5, "{up}");
    let up = ok(gw.chat(&with("bsonnet45")));
    assert_eq!(up["inferenceConfig"]["temperature"], 0.5, "{up}");
    assert!(up["inferenceConfig"].get("topP").is_none(), "{up}");
    let up = ok(messages(with("sonnet4")));
    assert_eq!(
        (up["temperature"].clone(), up["top_p"].clone()),
        (json!(0.5), json!(0.9)),
        "control: {up}"
    );

    // Thinking on: temperature only 1, no top_k (any Claude model, direct or on Bedrock).
    let thinking = json!({"type": "enabled", "budget_tokens": 1024});
    let up = ok(messages(
        json!({"model": "sonnet4", "max_tokens": 2048, "temperature": 0.5, "top_k": 5,
        "thinking": thinking, "messages": user}),
    ));
    assert!(up.get("temperature").is_none() && up.get("top_k").is_none(), "{up}");
    assert_eq!(up["thinking"], thinking);
    let up = ok(
        gw.chat(&json!({"model": "bsonnet45", "max_tokens": 2048, "temperature": 0.5,
        "thinking": thinking, "messages": user})),
    );
    assert!(up["inferenceConfig"].get("temperature").is_none(), "{up}");
    assert_eq!(up["additionalModelRequestFields"]["thinking"], thinking);

    // Reasoning effort (Responses' `reasoning.effort`, chat's `reasoning_effort`) becomes each
    // provider's thinking setting: Claude's budget under a cap grown to leave the answer its
    // room (or fitted under the client's own cap), Gemini 2.5's budget, Gemini 3's level.
    let responses = |model: &str, extra: Value| {
        let mut body = json!({"model": model, "input": "Think.", "reasoning": {"effort": "high"}});
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        ok(post(&gw.url("/v1/responses"), &body.to_string(), &[]))
    };
    let up = responses("sonnet4", json!({}));
    assert_eq!(
        up["thinking"],
        json!({"type": "enabled", "budget_tokens": 16384}),
        "{up}"
    );
    assert_eq!(up["max_tokens"], 16384 + 4096);
    let up = responses("sonnet4", json!({"max_output_tokens": 2000, "temperature": 0.2}));
    assert_eq!(up["thinking"]["budget_tokens"], 1999, "{up}");
    assert_eq!(up["max_tokens"], 2000);
    assert!(up.get("temperature").is_none(), "thinking on: {up}");
    let up = responses("bsonnet45", json!({}));
    assert_eq!(
        up["additionalModelRequestFields"]["thinking"]["budget_tokens"], 16384,
        "{up}"
    );
    let up = responses("g25", json!({}));
    assert_eq!(
        up["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 16384}),
        "{up}"
    );
    let up = ok(gw.chat(&json!({"model": "g3", "messages": user, "reasoning_effort": "low"})));
    assert_eq!(
        up["generationConfig"]["thinkingConfig"],
        json!({"thinkingLevel": "low"}),
        "{up}"
    );
    let up = responses("o3", json!({}));
    assert_eq!(up["reasoning_effort"], "high", "OpenAI takes it as it is: {up}");
}
