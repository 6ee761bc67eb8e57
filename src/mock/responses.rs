//! OpenAI's Responses API (`POST /v1/responses`), as the mock serves it: the response object, or
//! its event stream with sequence numbers, the default sentence as the output text, and the
//! usage. A built-in tool in the request (`web_search`, …) shows as its call item in the output,
//! as OpenAI runs it, so a test can tell the request reached "OpenAI" as it was sent.

use std::collections::VecDeque;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::behavior::Behavior;
use super::content::{completion_text, text_tokens, Pieces};
use super::openai::{invalid, json_reply};
use super::{EventSource, Reply, SseEvent};

struct Events(VecDeque<SseEvent>);

impl EventSource for Events {
    fn next_event(&mut self) -> Option<SseEvent> {
        self.0.pop_front()
    }
}

pub(crate) fn reply(body: &[u8], seq: u64, b: &Behavior) -> Reply {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return invalid("the request body must be a JSON object", None);
    };
    let Some(model) = obj.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()) else {
        return invalid("Missing required parameter: 'model'.", Some("model"));
    };
    if obj.contains_key("previous_response_id") {
        // This mock keeps no responses: a conversation must come whole.
        return json_reply(
            404,
            &json!({"error": {"message": "Previous response not found.", "type": "invalid_request_error",
                "param": "previous_response_id", "code": "previous_response_not_found"}}),
        );
    }
    let mut chunks = b.chunks.max(1);
    let mut status = "completed";
    if let Some(max) = obj.get("max_output_tokens").and_then(Value::as_u64) {
        if max < u64::from(chunks) {
            chunks = u32::try_from(max.max(1)).unwrap_or(1);
            status = "incomplete";
        }
    }
    let text = completion_text(chunks, b.text.as_deref());
    let input_tokens = text_tokens(&obj.get("input").map(Value::to_string).unwrap_or_default());
    let id = format!("resp_mock{seq}");
    let mut output = Vec::new();
    for t in obj.get("tools").and_then(Value::as_array).into_iter().flatten() {
        if let Some(kind) = t.get("type").and_then(Value::as_str).filter(|k| *k != "function") {
            output.push(json!({"id": format!("{kind}_{seq}"), "type": format!("{kind}_call"), "status": "completed"}));
        }
    }
    let message = |text: &str, status: &str| {
        json!({"id": format!("msg_mock{seq}"), "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
    };
    let usage = json!({"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": chunks, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + u64::from(chunks)});
    let object = |status: &str, output: Vec<Value>, usage: Value| {
        let mut o = Map::new();
        for (k, v) in [
            ("id", json!(id)),
            ("object", json!("response")),
            ("created_at", json!(1_700_000_000)),
            ("status", json!(status)),
            ("model", json!(model)),
            ("output", Value::Array(output)),
            ("usage", usage),
            ("error", Value::Null),
            (
                "incomplete_details",
                if status == "incomplete" {
                    json!({"reason": "max_output_tokens"})
                } else {
                    Value::Null
                },
            ),
            ("parallel_tool_calls", json!(true)),
            ("tool_choice", json!("auto")),
            ("tools", obj.get("tools").cloned().unwrap_or(json!([]))),
            // (The request's settings, echoed as OpenAI echoes them.)
            (
                "text",
                obj.get("text").cloned().unwrap_or(json!({"format": {"type": "text"}})),
            ),
            ("instructions", obj.get("instructions").cloned().unwrap_or(Value::Null)),
            ("metadata", obj.get("metadata").cloned().unwrap_or(json!({}))),
        ] {
            o.insert(k.into(), v);
        }
        Value::Object(o)
    };
    // `tool=NAME`: a call of that declared function instead of text, as the chat mock answers.
    let call = b.tool.as_ref().filter(|name| {
        obj.get("tools").and_then(Value::as_array).is_some_and(|ts| {
            ts.iter().any(|t| {
                t.get("type").and_then(Value::as_str) == Some("function")
                    && t.get("name").and_then(Value::as_str) == Some(name.as_str())
            })
        })
    });
    let call_item = |status: &str, arguments: &str| {
        json!({"id": format!("fc_mock{seq}"), "type": "function_call", "status": status, "call_id": "call_mock",
            "name": call.cloned().unwrap_or_default(), "arguments": arguments})
    };
    const ARGS: &str = r#"{"q":"mock"}"#;
    let mut final_output = output.clone();
    final_output.push(match call {
        Some(_) => call_item("completed", ARGS),
        None => message(&text, status),
    });
    if !obj.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        return json_reply(200, &object(status, final_output, usage));
    }
    let mut events = VecDeque::new();
    let mut n = 0u64;
    let mut push = |kind: &str, mut v: Value, content: bool| {
        v["type"] = json!(kind);
        v["sequence_number"] = json!(n);
        n += 1;
        events.push_back(SseEvent {
            data: Bytes::from(format!("event: {kind}\ndata: {v}\n\n")),
            content,
        });
    };
    push(
        "response.created",
        json!({"response": object("in_progress", vec![], Value::Null)}),
        false,
    );
    push(
        "response.in_progress",
        json!({"response": object("in_progress", vec![], Value::Null)}),
        false,
    );
    let at = output.len();
    if call.is_some() {
        let item_id = format!("fc_mock{seq}");
        push(
            "response.output_item.added",
            json!({"output_index": at, "item": call_item("in_progress", "")}),
            false,
        );
        push(
            "response.function_call_arguments.delta",
            json!({"item_id": item_id, "output_index": at, "delta": ARGS}),
            true,
        );
        push(
            "response.function_call_arguments.done",
            json!({"item_id": item_id, "output_index": at, "arguments": ARGS, "name": call.cloned().unwrap_or_default()}),
            false,
        );
        push(
            "response.output_item.done",
            json!({"output_index": at, "item": call_item("completed", ARGS)}),
            false,
        );
        push(
            "response.completed",
            json!({"response": object("completed", final_output, usage)}),
            false,
        );
        return Reply::Sse(Box::new(Events(events)));
    }
    let item_id = format!("msg_mock{seq}");
    push(
        "response.output_item.added",
        json!({"output_index": at, "item": message("", "in_progress")}),
        false,
    );
    push(
        "response.content_part.added",
        json!({"item_id": item_id, "output_index": at, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []}}),
        false,
    );
    let pieces = Pieces::new(b.text.as_deref());
    for i in 0..chunks {
        push(
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": at, "content_index": 0, "delta": pieces.get(i), "logprobs": []}),
            true,
        );
    }
    push(
        "response.output_text.done",
        json!({"item_id": item_id, "output_index": at, "content_index": 0, "text": text, "logprobs": []}),
        false,
    );
    push(
        "response.content_part.done",
        json!({"item_id": item_id, "output_index": at, "content_index": 0,
            "part": {"type": "output_text", "text": text, "annotations": []}}),
        false,
    );
    push(
        "response.output_item.done",
        json!({"output_index": at, "item": message(&text, status)}),
        false,
    );
    let end = if status == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    push(end, json!({"response": object(status, final_output, usage)}), false);
    Reply::Sse(Box::new(Events(events)))
}
