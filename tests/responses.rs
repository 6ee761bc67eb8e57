//! The Responses API's state and the stages it shares with chat, end to end: the response store
//! (per tenant, in the ledger's database across nodes, retention, `store: false`), the usage
//! record, the guardrails' redaction restored in a Responses stream, and a cache hit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-for-tests";

fn keys() -> &'static str {
    "auth:\n  required: true\nkeys:\n  - { id: ka, key: \"${KEY_A}\", team: red }\n  - { id: ka2, key: \"${KEY_A2}\", team: red }\n  - { id: kb, key: \"${KEY_B}\", team: blue }\n"
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("KEY_A", "tg-red-one"),
        ("KEY_A2", "tg-red-two"),
        ("KEY_B", "tg-blue-one"),
        ("TOLLGATE_ADMIN_TOKEN", ADMIN),
    ]
}

fn config(mock: &Mock, usage: &str, extra: &str) -> String {
    format!(
        "routing:\n  retries: 0\n{usage}providers:\n{}models:\n  gpt:\n    targets: [ {{ provider: oai, model: mock-gpt }} ]\n{}{extra}",
        mock_provider("oai", &mock.base_url(), ""),
        keys()
    )
}

fn create(gw: &Gateway, key: &str, body: Value) -> Resp {
    post(
        &gw.url("/v1/responses"),
        &body.to_string(),
        &[("authorization", &format!("Bearer {key}"))],
    )
}

fn retrieve(gw: &Gateway, key: &str, id: &str) -> Resp {
    get_with(
        &gw.url(&format!("/v1/responses/{id}")),
        &[("authorization", &format!("Bearer {key}"))],
    )
}

#[test]
fn a_response_is_readable_by_its_team_only_and_deleted_for_good() {
    let mock = Mock::start(&[]);
    let gw = Gateway::start_env("", &config(&mock, "", ""), &env());
    let r = create(&gw, "tg-red-one", json!({"model": "gpt", "input": "Red secret plan."}));
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();

    // The same team's other key reads it; another team's key gets the answer of an id that
    // never existed, for reads, continuations and deletes alike.
    assert_eq!(retrieve(&gw, "tg-red-two", &id).status, 200);
    let other = retrieve(&gw, "tg-blue-one", &id);
    assert_eq!(other.status, 404, "{}", other.body);
    let never = retrieve(&gw, "tg-blue-one", "resp_never");
    assert_eq!(other.json()["error"]["code"], never.json()["error"]["code"]);
    let r = create(
        &gw,
        "tg-blue-one",
        json!({"model": "gpt", "input": "And?", "previous_response_id": id}),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "previous_response_not_found");
    assert_eq!(r.json()["error"]["param"], "previous_response_id");
    assert!(!mock
        .requests()
        .iter()
        .any(|q| q["body"].as_str().unwrap_or_default().contains("And?")));
    let del = delete_with(
        &gw.url(&format!("/v1/responses/{id}")),
        &[("authorization", "Bearer tg-blue-one")],
    );
    assert_eq!(del.status, 404);
    assert_eq!(
        retrieve(&gw, "tg-red-one", &id).status,
        200,
        "another team's delete did nothing"
    );

    // Input items, newest first by default.
    let r = create(
        &gw,
        "tg-red-one",
        json!({"model": "gpt", "previous_response_id": id, "input": [{"role": "user", "content": "Second."}]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let second = r.json()["id"].as_str().unwrap().to_string();
    let items = get_with(
        &gw.url(&format!("/v1/responses/{second}/input_items?limit=2")),
        &[("authorization", "Bearer tg-red-one")],
    )
    .json();
    let texts: Vec<&str> = items["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["content"]
                .as_str()
                .or_else(|| i["content"][0]["text"].as_str())
                .unwrap()
        })
        .collect();
    assert_eq!(texts, ["Second.", "This is the Tollgate"], "{items}");
    assert_eq!(items["has_more"], true);

    let del = delete_with(
        &gw.url(&format!("/v1/responses/{id}")),
        &[("authorization", "Bearer tg-red-one")],
    );
    assert_eq!(del.status, 200, "{}", del.body);
    assert_eq!(del.json()["deleted"], true);
    assert_eq!(retrieve(&gw, "tg-red-one", &id).status, 404);
}

#[test]
fn the_store_is_the_ledgers_database_shared_by_nodes_and_it_forgets_after_the_retention() {
    let mock = Mock::start(&[]);
    let db = tempfile::tempdir().unwrap();
    let usage = format!(
        "usage:\n  ledger: \"sqlite://{}/shared.db\"\n  responses_retention: 3s\n",
        db.path().display()
    );
    let a = Gateway::start_env("", &config(&mock, &usage, ""), &env());
    let b = Gateway::start_env("", &config(&mock, &usage, ""), &env());
    let r = create(&a, "tg-red-one", json!({"model": "gpt", "input": "Written on node A."}));
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let kept = create(
        &a,
        "tg-red-one",
        json!({"model": "gpt", "input": "Not kept.", "store": false}),
    );
    let kept_id = kept.json()["id"].as_str().unwrap().to_string();

    // Node B has never seen it: it reads the database (once node A's writer has written it).
    wait_until(
        "node B reads node A's response",
        std::time::Duration::from_secs(5),
        || retrieve(&b, "tg-red-one", &id).status == 200,
    );
    let r = create(
        &b,
        "tg-red-one",
        json!({"model": "gpt", "input": "Continued on B.", "previous_response_id": id}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = mock.requests().last().unwrap()["body"].as_str().unwrap().to_string();
    assert!(
        sent.contains("Written on node A.") && sent.contains("Continued on B."),
        "{sent}"
    );
    assert_eq!(
        retrieve(&b, "tg-red-one", &kept_id).status,
        404,
        "store: false keeps nothing"
    );
    assert_eq!(retrieve(&a, "tg-red-one", &kept_id).status, 404);

    // After the retention period it is gone on both nodes.
    std::thread::sleep(std::time::Duration::from_millis(3200));
    assert_eq!(retrieve(&a, "tg-red-one", &id).status, 404);
    assert_eq!(retrieve(&b, "tg-red-one", &id).status, 404);
}

#[test]
fn responses_get_the_chat_stages_records_guardrails_and_the_cache() {
    let mock = Mock::start(&[]);
    let extra = "routes:\n  - name: guarded\n    guardrails: { pii: redact }\n    cache: { mode: exact, ttl: 60s }\n";
    let usage = "usage:\n  access_log: access.log\n";
    let gw = Gateway::start_env("", &config(&mock, usage, extra), &env());

    // The provider sees a placeholder; the client's stream has the original back.
    let body = json!({"model": "gpt", "stream": true, "input": "Mail jane.doe@example.com [[mock: echo piece=3]]"});
    let (head, events) = post_stream_with(
        &gw.url("/v1/responses"),
        &body.to_string(),
        &[("authorization", "Bearer tg-red-one")],
    );
    assert_eq!(head.status, 200);
    let sent = mock.requests().last().unwrap()["body"].as_str().unwrap().to_string();
    assert!(!sent.contains("jane.doe@example.com"), "{sent}");
    let evs: Vec<Value> = events.iter().map(|e| serde_json::from_str(&e.data).unwrap()).collect();
    let text: String = evs
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Mail jane.doe@example.com", "{evs:?}");
    let done = evs.last().unwrap();
    assert_eq!(done["type"], "response.completed");
    assert_eq!(
        done["response"]["output"][0]["content"][0]["text"],
        "Mail jane.doe@example.com"
    );

    // The same request again is a cache hit: no provider call, the same answer.
    let calls = mock.requests().len();
    let body = json!({"model": "gpt", "input": "Cache me.", "temperature": 0});
    let first = create(&gw, "tg-red-one", body.clone());
    assert_eq!(first.status, 200, "{}", first.body);
    let again = create(&gw, "tg-red-one", body);
    assert_eq!(again.header("x-tollgate-cache"), Some("hit"));
    assert_eq!(mock.requests().len(), calls + 1);
    assert_eq!(again.json()["output"][0]["content"][0]["text"], "This is the Tollgate");
    assert_ne!(again.json()["id"], first.json()["id"], "every response has its own id");

    // One usage record per request, each saying `responses`.
    let log = gw.dir().join("access.log");
    wait_until("3 records", std::time::Duration::from_secs(5), || {
        std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) >= 3
    });
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["endpoint"] == "responses"), "{lines:?}");
    assert_eq!(lines[0]["guardrails"]["redactions"], 1);
    assert_eq!(lines[2]["cache"], "hit");
}

#[test]
fn what_cannot_be_served_faithfully_is_a_400_naming_it() {
    let mock = Mock::start(&[]);
    let gw = Gateway::start_env("", &config(&mock, "", ""), &env());
    for (body, param) in [
        (
            json!({"model": "gpt", "input": "x", "tools": [{"type": "file_search"}]}),
            "tools[0].type",
        ),
        (json!({"model": "gpt", "input": "x", "background": true}), "background"),
        (
            json!({"model": "gpt", "input": "x", "reasoning": {"summary": "auto"}}),
            "reasoning.summary",
        ),
        (
            json!({"model": "gpt", "input": "x", "conversation": "conv_1"}),
            "conversation",
        ),
        (
            json!({"model": "gpt", "input": [{"type": "item_reference", "id": "x"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "gpt", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
            "input[0].content[0].type",
        ),
        (json!({"model": "gpt"}), "input"),
    ] {
        let r = create(&gw, "tg-red-one", body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.json()["error"]["param"], param, "{body}: {}", r.body);
    }
    assert!(mock.requests().is_empty(), "nothing reached the provider");
}

#[test]
fn openai_takes_responses_requests_natively_unless_a_route_reads_the_answer() {
    let mock = Mock::start(&[]);
    let rest = format!(
        "routing:\n  retries: 0\nusage:\n  access_log: access.log\nproviders:\n  openai:\n    kind: openai\n    base_url: \"{}\"\n    api_keys: [\"key-of-openai\"]\nmodels:\n  gpt:\n    targets: [ {{ provider: openai, model: gpt-5-mini }} ]\n  guarded:\n    targets: [ {{ provider: openai, model: gpt-5-mini }} ]\nroutes:\n  - name: guarded\n    match: {{ model: guarded }}\n    guardrails: {{ pii: redact }}\n",
        mock.base_url()
    );
    let gw = Gateway::start("", &rest);
    let create = |body: Value| post(&gw.url("/v1/responses"), &body.to_string(), &[]);
    let sent = |mock: &Mock| -> (String, Value) {
        let last = mock.requests().last().unwrap().clone();
        let body = serde_json::from_str(last["body"].as_str().unwrap()).unwrap();
        (last["path"].as_str().unwrap().to_string(), body)
    };

    // A built-in tool, a field the gateway does not know, a reasoning summary: all reach OpenAI.
    let r = create(
        json!({"model": "gpt", "input": "Search the news.", "tools": [{"type": "web_search"}],
        "include": ["web_search_call.action.sources"], "reasoning": {"effort": "low", "summary": "auto"},
        "temperature": 0.3, "prompt_cache_retention": "24h"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert!(
        v["id"].as_str().unwrap().starts_with("resp_mock"),
        "OpenAI's own answer: {v}"
    );
    assert_eq!(v["output"][0]["type"], "web_search_call");
    let (path, up) = sent(&mock);
    assert_eq!(path, "/v1/responses");
    assert_eq!(up["model"], "gpt-5-mini");
    assert_eq!(up["tools"][0]["type"], "web_search");
    assert_eq!(up["prompt_cache_retention"], "24h");
    assert!(
        up.get("temperature").is_none(),
        "a reasoning model's refusal is kept from it: {up}"
    );

    // Stored under OpenAI's id, and continued from the gateway's store (OpenAI is sent the
    // whole conversation, not the id).
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(get(&gw.url(&format!("/v1/responses/{id}"))).json()["id"], id.as_str());
    let r = create(json!({"model": "gpt", "input": "And sports?", "previous_response_id": id}));
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, up) = sent(&mock);
    assert!(up.get("previous_response_id").is_none(), "{up}");
    let texts = up["input"].to_string();
    assert!(
        texts.contains("Search the news.") && texts.contains("And sports?"),
        "{texts}"
    );

    // A stream: OpenAI's events, unchanged.
    let (head, events) = post_stream(
        &gw.url("/v1/responses"),
        &json!({"model": "gpt", "input": "Hi", "stream": true}).to_string(),
    );
    assert_eq!(head.status, 200);
    let evs: Vec<Value> = events.iter().map(|e| serde_json::from_str(&e.data).unwrap()).collect();
    assert_eq!(evs.last().unwrap()["type"], "response.completed");
    let streamed_id = evs.last().unwrap()["response"]["id"].as_str().unwrap().to_string();
    assert!(streamed_id.starts_with("resp_mock"));
    assert_eq!(
        get(&gw.url(&format!("/v1/responses/{streamed_id}"))).status,
        200,
        "stored"
    );

    // A continued stream: OpenAI's events, its response objects with the client's
    // `previous_response_id` put back (OpenAI was sent the conversation instead).
    let body = json!({"model": "gpt", "input": "More?", "stream": true, "previous_response_id": streamed_id});
    let (_, events) = post_stream(&gw.url("/v1/responses"), &body.to_string());
    let evs: Vec<Value> = events.iter().map(|e| serde_json::from_str(&e.data).unwrap()).collect();
    assert_eq!(evs[0]["response"]["previous_response_id"], streamed_id.as_str());
    assert_eq!(
        evs.last().unwrap()["response"]["previous_response_id"],
        streamed_id.as_str()
    );
    let seqs: Vec<u64> = evs.iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "OpenAI's numbering, unchanged"
    );

    // A route whose guardrails read the answer keeps the translation (chat upstream).
    let r = create(json!({"model": "guarded", "input": "Hi"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(sent(&mock).0, "/v1/chat/completions");

    // Every request's tokens are counted, natively too.
    let log = gw.dir().join("access.log");
    wait_until("5 records of responses", std::time::Duration::from_secs(5), || {
        std::fs::read_to_string(&log).map_or(0, |t| t.matches("\"endpoint\":\"responses\"").count()) >= 5
    });
    // (The two reads of the store leave records of their own, with no endpoint.)
    let recs: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["endpoint"] != "")
        .collect();
    assert_eq!(recs.len(), 5, "{recs:?}");
    for rec in &recs {
        assert_eq!(rec["endpoint"], "responses");
        assert_eq!(rec["completion_tokens"], 4, "{rec}");
        assert!(rec["prompt_tokens"].as_u64().unwrap() > 0, "{rec}");
    }
}

#[test]
fn azure_takes_responses_requests_natively_on_its_v1_surface() {
    let mock = Mock::start(&[]);
    let rest = format!(
        "routing:\n  retries: 0\nproviders:\n  azure:\n    kind: azure\n    base_url: \"http://{}\"\n    api_version: \"2024-10-21\"\n    api_keys: [\"key-of-azure\"]\nmodels:\n  az:\n    targets: [ {{ provider: azure, model: my-gpt-deployment }} ]\n",
        mock.addr
    );
    let gw = Gateway::start("", &rest);
    let r = post(
        &gw.url("/v1/responses"),
        &json!({"model": "az", "input": "Run this.", "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}).to_string(),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["output"][0]["type"], "code_interpreter_call");
    let last = mock.requests().last().unwrap().clone();
    assert_eq!(last["path"], "/openai/v1/responses");
    let up: Value = serde_json::from_str(last["body"].as_str().unwrap()).unwrap();
    assert_eq!(up["model"], "my-gpt-deployment", "the deployment, in the body");
    assert!(last["headers"].to_string().contains("key-of-azure"));
}
