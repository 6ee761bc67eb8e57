use super::*;
use crate::api::Endpoint;
use bytes::Bytes;
use serde_json::json;

fn req(endpoint: Endpoint, body: Value) -> LlmRequest {
    LlmRequest::parse(endpoint, Bytes::from(serde_json::to_vec(&body).unwrap())).unwrap()
}

fn chat_key(body: Value) -> Key {
    exact(&req(Endpoint::ChatCompletions, body), "team:a", "m", &[]).unwrap()
}

fn messages_key(body: Value) -> Key {
    exact(&req(Endpoint::Messages, body), "team:a", "m", &[]).unwrap()
}

fn base() -> Value {
    json!({
        "model": "gpt",
        "messages": [
            {"role": "system", "content": "You answer in French."},
            {"role": "user", "content": "What is our refund policy for orders under $50?"}
        ],
        "max_tokens": 100,
        "temperature": 0
    })
}

/// `base` with `path` (top-level key, or `messages.N.field`) set to `v`.
fn with(path: &str, v: Value) -> Value {
    let mut b = base();
    let mut cur = &mut b;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        cur = match p.parse::<usize>() {
            Ok(n) => &mut cur[n],
            Err(_) if last => {
                cur[*p] = v;
                return b;
            }
            Err(_) => &mut cur[*p],
        };
    }
    b
}

#[test]
fn every_input_that_changes_the_answer_changes_the_key() {
    let k0 = chat_key(base());
    let changes: Vec<(&str, Value)> = vec![
        ("model", json!("gpt-other")),
        ("messages.0.content", json!("You answer in German.")),
        (
            "messages.1.content",
            json!("What is our refund policy for orders over $50?"),
        ),
        ("temperature", json!(0.2)),
        ("top_p", json!(0.9)),
        ("seed", json!(7)),
        ("max_tokens", json!(101)),
        ("stop", json!(["\n"])),
        ("n", json!(2)),
        ("response_format", json!({"type": "json_object"})),
        ("tool_choice", json!("required")),
        (
            "tools",
            json!([{"type": "function", "function": {"name": "refund", "parameters": {"type": "object"}}}]),
        ),
        ("parallel_tool_calls", json!(false)),
        ("logit_bias", json!({"50256": -100})),
        ("reasoning_effort", json!("high")),
        ("frequency_penalty", json!(0.5)),
        ("messages.1.name", json!("alice")),
    ];
    let mut seen = vec![k0];
    for (path, v) in changes {
        let k = chat_key(with(path, v.clone()));
        assert!(!seen.contains(&k), "changing {path} to {v} did not change the key");
        seen.push(k);
    }
    // A developer message, an earlier turn, an image.
    let mut b = base();
    b["messages"]
        .as_array_mut()
        .unwrap()
        .insert(1, json!({"role": "developer", "content": "Be brief."}));
    assert_ne!(chat_key(b), k0);
    let mut b = base();
    b["messages"]
        .as_array_mut()
        .unwrap()
        .insert(1, json!({"role": "user", "content": "Hi"}));
    b["messages"]
        .as_array_mut()
        .unwrap()
        .insert(2, json!({"role": "assistant", "content": "Hello"}));
    assert_ne!(chat_key(b), k0);
    let image = |url: &str| {
        let mut b = base();
        b["messages"][1]["content"] = json!([
            {"type": "text", "text": "What is in the picture?"},
            {"type": "image_url", "image_url": {"url": url}}
        ]);
        chat_key(b)
    };
    assert_ne!(image("https://x/a.png"), image("https://x/b.png"));
    // Tool definitions: name, description and schema each count.
    let tool = |name: &str, desc: &str, ty: &str| {
        chat_key(with(
            "tools",
            json!([{"type": "function", "function": {"name": name, "description": desc, "parameters": {"type": ty}}}]),
        ))
    };
    let t = tool("a", "d", "object");
    assert_ne!(t, tool("b", "d", "object"));
    assert_ne!(t, tool("a", "e", "object"));
    assert_ne!(t, tool("a", "d", "array"));
}

#[test]
fn the_tenant_is_part_of_the_key() {
    let r = req(Endpoint::ChatCompletions, base());
    let a = exact(&r, "team:a", "m", &[]).unwrap();
    assert_ne!(a, exact(&r, "team:b", "m", &[]).unwrap());
    assert_ne!(a, exact(&r, "key:a", "m", &[]).unwrap());
    assert_ne!(a, exact(&r, "global", "m", &[]).unwrap());
    // The alias that serves it (a route's rewrite, an A/B arm) is part of the key too.
    assert_ne!(a, exact(&r, "team:a", "m-b", &[]).unwrap());
    assert_eq!(tenant(Partition::Team, Some("k1"), Some("ops")), "team:ops");
    assert_eq!(tenant(Partition::Team, Some("k1"), None), "key:k1");
    assert_eq!(tenant(Partition::Key, Some("k1"), Some("ops")), "key:k1");
    assert_eq!(tenant(Partition::Global, Some("k1"), Some("ops")), "global");
    assert_eq!(tenant(Partition::Team, None, None), "public");
}

#[test]
fn formatting_and_bookkeeping_do_not_change_the_key() {
    let k0 = chat_key(base());
    // Key order and whitespace.
    let reordered = r#"{ "temperature": 0.0, "max_tokens": 100,
        "messages": [ {"content": "You answer in French.", "role": "system"},
                      {"content": "What is our refund policy for orders under $50?", "role": "user"} ],
        "model": "gpt" }"#;
    let r = LlmRequest::parse(Endpoint::ChatCompletions, Bytes::from(reordered)).unwrap();
    assert_eq!(exact(&r, "team:a", "m", &[]).unwrap(), k0);
    // A string content is one text part.
    let parts = with(
        "messages.1.content",
        json!([{"type": "text", "text": "What is our refund policy for orders under $50?"}]),
    );
    assert_eq!(chat_key(parts), k0);
    // The cap's name, streaming, the user and metadata.
    let mut b = base();
    b.as_object_mut().unwrap().remove("max_tokens");
    b["max_completion_tokens"] = json!(100);
    assert_eq!(chat_key(b), k0);
    assert_eq!(chat_key(with("stream", json!(true))), k0);
    assert_eq!(chat_key(with("stream_options", json!({"include_usage": true}))), k0);
    assert_eq!(chat_key(with("user", json!("u-17"))), k0);
    assert_eq!(chat_key(with("metadata", json!({"trace": "x"}))), k0);
    // One stop string is a list of one.
    assert_eq!(
        chat_key(with("stop", json!("\n"))),
        chat_key(with("stop", json!(["\n"])))
    );
}

#[test]
fn the_same_question_through_both_apis_has_one_key() {
    let anthropic = json!({
        "model": "gpt",
        "system": "You answer in French.",
        "messages": [{"role": "user", "content": "What is our refund policy for orders under $50?"}],
        "max_tokens": 100,
        "temperature": 0
    });
    assert_eq!(messages_key(anthropic.clone()), chat_key(base()));
    // Blocks instead of strings, streaming, metadata and prompt-caching marks change nothing.
    let blocks = json!({
        "model": "gpt",
        "system": [{"type": "text", "text": "You answer in French.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is our refund policy for orders under $50?"}
        ]}],
        "max_tokens": 100,
        "temperature": 0,
        "stream": true,
        "metadata": {"user_id": "u-1"}
    });
    assert_eq!(messages_key(blocks), chat_key(base()));
    // Tools and a forced tool choice, both ways.
    let mut a = anthropic.clone();
    a["tools"] = json!([{"name": "refund", "description": "Refunds", "input_schema": {"type": "object"}}]);
    a["tool_choice"] = json!({"type": "tool", "name": "refund"});
    let o = with(
        "tools",
        json!([{"type": "function", "function": {"name": "refund", "description": "Refunds", "parameters": {"type": "object"}}}]),
    );
    let mut o = o;
    o["tool_choice"] = json!({"type": "function", "function": {"name": "refund"}});
    assert_eq!(messages_key(a), chat_key(o));
}

#[test]
fn what_only_anthropic_can_say_changes_the_key() {
    let a = json!({
        "model": "gpt",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 100
    });
    let k0 = messages_key(a.clone());
    let mut top_k = a.clone();
    top_k["top_k"] = json!(5);
    let mut thinking = a.clone();
    thinking["thinking"] = json!({"type": "enabled", "budget_tokens": 2000});
    let mut thinking2 = a.clone();
    thinking2["thinking"] = json!({"type": "enabled", "budget_tokens": 4000});
    let mut doc = a.clone();
    doc["messages"][0]["content"] = json!([
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "A"}},
        {"type": "text", "text": "Hi"}
    ]);
    let mut doc2 = doc.clone();
    doc2["messages"][0]["content"][0]["source"]["data"] = json!("B");
    let keys = [
        k0,
        messages_key(top_k),
        messages_key(thinking),
        messages_key(thinking2),
        messages_key(doc),
        messages_key(doc2),
    ];
    for i in 0..keys.len() {
        for j in i + 1..keys.len() {
            assert_ne!(keys[i], keys[j], "requests {i} and {j} share a key");
        }
    }
    // Prompt-caching marks alone do not.
    let mut marked = a.clone();
    marked["messages"][0]["content"] = json!([{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}]);
    assert_eq!(messages_key(marked), k0);
}

#[test]
fn volatile_text_is_removed_before_hashing() {
    let at = |stamp: &str| {
        with(
            "messages.0.content",
            json!(format!("Now is {stamp}. You answer in French.")),
        )
    };
    let re = [Regex::new(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z").unwrap()];
    let r1 = req(Endpoint::ChatCompletions, at("2026-12-06T08:00:00Z"));
    let r2 = req(Endpoint::ChatCompletions, at("2026-12-06T09:30:12Z"));
    assert_eq!(
        exact(&r1, "team:a", "m", &re).unwrap(),
        exact(&r2, "team:a", "m", &re).unwrap()
    );
    assert_ne!(
        exact(&r1, "team:a", "m", &[]).unwrap(),
        exact(&r2, "team:a", "m", &[]).unwrap()
    );
}

#[test]
fn the_key_prints_as_hex_and_holds_no_text() {
    let k = chat_key(base());
    let hex = k.hex();
    assert_eq!(hex.len(), 64);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(
        temperature(req(Endpoint::ChatCompletions, base()).canonical().unwrap()),
        0.0
    );
    let mut b = base();
    b.as_object_mut().unwrap().remove("temperature");
    assert_eq!(temperature(req(Endpoint::ChatCompletions, b).canonical().unwrap()), 1.0);
}

#[test]
fn the_context_is_everything_but_the_last_user_turn() {
    let ctx = |body: Value| {
        let r = req(Endpoint::ChatCompletions, body);
        context(&r, "team:a", "m", &[])
    };
    let ask = |system: &str, question: &str| {
        json!({"model": "gpt", "temperature": 0, "messages": [
            {"role": "system", "content": system}, {"role": "user", "content": question}]})
    };
    let (k1, t1) = ctx(ask("Be brief.", "How do I reset my password?")).unwrap();
    let (k2, t2) = ctx(ask("Be brief.", "How can I reset my password?")).unwrap();
    assert_eq!(k1, k2, "another question, the same context");
    assert_eq!(
        (t1.as_str(), t2.as_str()),
        ("How do I reset my password?", "How can I reset my password?")
    );
    let (k3, _) = ctx(ask("Be very brief.", "How do I reset my password?")).unwrap();
    assert_ne!(k1, k3, "another system prompt, another context");
    let mut other = ask("Be brief.", "How do I reset my password?");
    other["max_tokens"] = json!(5);
    assert_ne!(k1, ctx(other).unwrap().0, "another parameter, another context");
    let r = req(Endpoint::ChatCompletions, ask("Be brief.", "x"));
    assert_ne!(k1, context(&r, "team:b", "m", &[]).unwrap().0, "another tenant");
    // The context key is never the exact key.
    assert_ne!(
        k1,
        exact(
            &req(
                Endpoint::ChatCompletions,
                ask("Be brief.", "How do I reset my password?")
            ),
            "team:a",
            "m",
            &[]
        )
        .unwrap()
    );
    // A request not ending with a text-only user turn has none.
    let tool = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "42"}]});
    assert!(ctx(tool).is_none());
    let image = json!({"model": "gpt", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]});
    assert!(ctx(image).is_none());
}
