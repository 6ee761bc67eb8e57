use serde_json::{json, Value};

use super::encode::Encoder;
use super::request::{to_chat, ResponsesRequest};
use super::Turn;

fn req(v: Value) -> ResponsesRequest {
    ResponsesRequest::parse(v.to_string().as_bytes()).unwrap()
}

fn chat_of(v: Value) -> Value {
    let r = req(v);
    let input = r.input_items().unwrap();
    serde_json::to_value(to_chat(&r, &[], &input).unwrap()).unwrap()
}

#[test]
fn items_become_chat_messages_with_calls_joined_to_their_assistant_turn() {
    let chat = chat_of(
        json!({"model": "m", "instructions": "Be brief.", "max_output_tokens": 9,
        "input": [
            {"role": "user", "content": "Weather?"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{\"x\":1}"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]}
        ]}),
    );
    let m = chat["messages"].as_array().unwrap();
    let roles: Vec<&str> = m.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "tool"]);
    assert_eq!(m[2]["content"], "Let me look.");
    assert_eq!(m[2]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(m[4]["content"], "rain");
    assert_eq!(chat["max_completion_tokens"], 9);
}

#[test]
fn text_format_tools_and_reasoning_map_to_chat_fields() {
    let chat = chat_of(json!({"model": "m", "input": "x",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "f"},
        "text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}, "strict": true}},
        "reasoning": {"effort": "low"}, "stream": true}));
    assert_eq!(chat["tools"][0]["function"]["name"], "f");
    assert_eq!(chat["tools"][0]["function"]["strict"], true);
    assert_eq!(
        chat["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    assert_eq!(chat["response_format"]["json_schema"]["name"], "n");
    assert_eq!(chat["reasoning_effort"], "low");
    assert_eq!(chat["stream_options"]["include_usage"], true);
}

fn sse(chunks: &[Value]) -> String {
    let mut s: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    s.push_str("data: [DONE]\n\n");
    s
}

fn events(out: &[u8]) -> Vec<Value> {
    std::str::from_utf8(out)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

#[test]
fn a_stream_of_text_then_a_call_opens_and_closes_each_item_in_order() {
    let turn = Turn::new(&req(json!({"model": "alias", "input": "x", "stream": true})), 7);
    let mut enc = Encoder::new(turn);
    let stream = sse(&[
        chunk(json!({"role": "assistant", "content": "Hel"}), Value::Null),
        chunk(json!({"content": "lo"}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"a\""}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
            json!("tool_calls"),
        ),
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up", "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}),
    ]);
    // Fed in pieces that cut events apart.
    let mut out = Vec::new();
    for piece in stream.as_bytes().chunks(7) {
        out.extend_from_slice(&enc.body(piece));
    }
    let evs = events(&out);
    let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e["sequence_number"], i);
    }
    let done = &evs[14]["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["model"], "up");
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["output"][1]["call_id"], "call_1");
    assert_eq!(done["output"][1]["arguments"], "{\"a\":1}");
    assert_eq!(evs[9]["output_index"], 1);
    assert_eq!(done["usage"]["total_tokens"], 8);
    assert_eq!(enc.finished().unwrap(), *done);
}

#[test]
fn a_cut_or_truncated_stream_never_completes() {
    let turn = Turn::new(&req(json!({"model": "m", "input": "x"})), 7);
    let mut enc = Encoder::new(turn.clone());
    let mut out = enc
        .body(format!("data: {}\n\n", chunk(json!({"content": "Hi"}), Value::Null)).as_bytes())
        .to_vec();
    out.extend_from_slice(&enc.failed("upstream_interrupted", "the provider closed the stream"));
    let evs = events(&out);
    assert_eq!(evs.last().unwrap()["type"], "response.failed");
    assert_eq!(evs.last().unwrap()["response"]["status"], "failed");
    assert!(enc.finished().is_none(), "a failed response is not stored");

    let mut enc = Encoder::new(turn);
    let out = enc.body(sse(&[chunk(json!({"content": "Hi"}), json!("length"))]).as_bytes());
    let last = events(&out).pop().unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(last["response"]["incomplete_details"]["reason"], "max_output_tokens");
}

/// JSON-shaped input of any structure: the parse and the translation answer or refuse, never panic.
fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-z_ ]{0,8}".prop_map(Value::from),
        prop_oneof![
            Just("message"),
            Just("function_call"),
            Just("function_call_output"),
            Just("input_text"),
            Just("input_image"),
            Just("user"),
            Just("assistant"),
            Just("function"),
            Just("json_schema"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("role".to_string()),
                    Just("content".to_string()),
                    Just("text".to_string()),
                    Just("call_id".to_string()),
                    Just("name".to_string()),
                    Just("arguments".to_string()),
                    Just("output".to_string()),
                    Just("image_url".to_string()),
                    Just("format".to_string()),
                    Just("schema".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    #[test]
    fn any_request_is_answered_or_refused_without_a_panic(
        input in arb_json(), tools in arb_json(), text in arb_json(), choice in arb_json(),
    ) {
        let body = json!({"model": "m", "input": input, "tools": tools, "text": text, "tool_choice": choice});
        if let Ok(r) = ResponsesRequest::parse(body.to_string().as_bytes()) {
            if let Ok(items) = r.input_items() {
                let _ = to_chat(&r, &items, &items);
            }
        }
    }

    #[test]
    fn any_chat_stream_bytes_encode_without_a_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let mut enc = Encoder::new(Turn::new(&req(json!({"model": "m", "input": "x"})), 1));
        let _ = enc.body(&bytes);
        let _ = enc.body(b"data: [DONE]\n\n");
        let _ = enc.failed("x", "y");
        let _ = enc.whole(&bytes);
    }
}
