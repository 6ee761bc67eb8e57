use super::*;
use crate::cache::sample::answer;
use crate::sse::{SseDecoder, SseEvent};
use serde_json::Value;

fn events(bytes: &[u8]) -> Vec<SseEvent> {
    let mut out = Vec::new();
    SseDecoder::default().push(bytes, &mut |e| out.push(e)).unwrap();
    out
}

/// The OpenAI stream put back together.
#[derive(Default)]
struct Back {
    text: String,
    /// (id, name, arguments) per tool call.
    calls: Vec<(String, String, String)>,
    finish: Option<String>,
    usage: Option<Value>,
    events: usize,
}

fn openai_back(bytes: &[u8]) -> Back {
    let evs = events(bytes);
    assert_eq!(evs.last().map(|e| e.data.as_str()), Some("[DONE]"));
    let mut b = Back {
        events: evs.len(),
        ..Back::default()
    };
    for e in &evs[..evs.len() - 1] {
        let c: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(c["object"], "chat.completion.chunk");
        if !c["usage"].is_null() {
            b.usage = Some(c["usage"].clone());
        }
        for ch in c["choices"].as_array().unwrap() {
            let d = &ch["delta"];
            if let Some(t) = d["content"].as_str() {
                b.text.push_str(t);
            }
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                let i = tc["index"].as_u64().unwrap() as usize;
                if b.calls.len() <= i {
                    b.calls.push(Default::default());
                }
                if let Some(id) = tc["id"].as_str() {
                    b.calls[i].0 = id.into();
                }
                if let Some(n) = tc["function"]["name"].as_str() {
                    b.calls[i].1 = n.into();
                }
                b.calls[i]
                    .2
                    .push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
            }
            if let Some(f) = ch["finish_reason"].as_str() {
                b.finish = Some(f.to_string());
            }
        }
    }
    b
}

#[test]
fn a_replayed_openai_stream_puts_the_answer_back_together() {
    let long = "Refunds under $50 are issued at once. ".repeat(20) + "Ünïcödé ✓ done.";
    let a = answer(&long, &[("call_1", "refund", r#"{"order":"A-17","amount":42.5}"#)]);
    let b = openai_back(&stream(Wire::OpenAi, true, &a));
    assert_eq!(b.text, long);
    let args = r#"{"order":"A-17","amount":42.5}"#;
    assert_eq!(b.calls, [("call_1".into(), "refund".into(), args.into())]);
    assert_eq!(b.finish.as_deref(), Some("tool_calls"));
    assert_eq!(b.usage.unwrap()["completion_tokens"], 34);
    assert!(b.events > 6, "a long answer comes in pieces");
    // Without stream_options.include_usage, no usage chunk.
    assert!(openai_back(&stream(Wire::OpenAi, false, &a)).usage.is_none());
}

#[test]
fn a_replayed_anthropic_stream_is_the_full_event_sequence() {
    let a = answer("Hello there.", &[("call_9", "lookup", r#"{"q":"x"}"#)]);
    let evs = events(&stream(Wire::Anthropic, false, &a));
    let names: Vec<&str> = evs.iter().map(|e| e.event.as_deref().unwrap_or("")).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(names.contains(&"content_block_start") && names.contains(&"content_block_stop"));
    let (mut text, mut json, mut stop) = (String::new(), String::new(), None);
    for e in &evs {
        let v: Value = serde_json::from_str(&e.data).unwrap();
        match v["type"].as_str() {
            Some("content_block_delta") => {
                text.push_str(v["delta"]["text"].as_str().unwrap_or(""));
                json.push_str(v["delta"]["partial_json"].as_str().unwrap_or(""));
            }
            Some("message_delta") => stop = v["delta"]["stop_reason"].as_str().map(str::to_owned),
            _ => {}
        }
    }
    assert_eq!(text, "Hello there.");
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        serde_json::json!({"q": "x"})
    );
    assert_eq!(stop.as_deref(), Some("tool_use"));
}

#[test]
fn a_whole_replay_is_the_clients_format() {
    let a = answer("Hi.", &[]);
    let o: Value = serde_json::from_slice(&whole(Wire::OpenAi, &a)).unwrap();
    assert_eq!(o["choices"][0]["message"]["content"], "Hi.");
    let m: Value = serde_json::from_slice(&whole(Wire::Anthropic, &a)).unwrap();
    assert_eq!(m["type"], "message");
    assert_eq!(m["content"][0]["text"], "Hi.");
    assert_eq!(m["stop_reason"], "end_turn");
}

#[test]
fn pieces_cut_on_char_boundaries_and_lose_nothing() {
    let s = "é".repeat(300) + "abc";
    let parts: Vec<&str> = pieces(&s).collect();
    assert!(parts.iter().all(|p| p.len() <= PIECE && !p.is_empty()));
    assert_eq!(parts.concat(), s);
    assert_eq!(pieces("").count(), 0);
}
