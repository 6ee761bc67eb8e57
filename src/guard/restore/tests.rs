//! Tests of the restorers: whole answers, both stream dialects at every split, and the
//! redact → restore round trip as a property.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::hold::Restorer;
use super::stream::StreamFilter;
use super::*;
use crate::api::Wire;
use crate::guard::entity::{Finding, Kind};
use crate::guard::redact::{apply, rewrite_strings};
use crate::sse::SseDecoder;

const NAME: &str = "Jo \"Q\" Smith\nline2";

fn vault() -> Arc<Vault> {
    let mut v = Vault::new(b"{}");
    assert_eq!(v.placeholder("EMAIL", "a@x.io"), "[EMAIL_1]");
    assert_eq!(v.placeholder("EMAIL", "b@y.org"), "[EMAIL_2]");
    assert_eq!(v.placeholder("NAME", NAME), "[NAME_1]");
    Arc::new(v)
}

fn run_pieces(client: Wire, pieces: &[&[u8]], complete: bool) -> Vec<u8> {
    let mut obs = observer(vault(), client);
    let mut out = Vec::new();
    for p in pieces {
        out.extend_from_slice(&obs.body(Bytes::copy_from_slice(p)));
    }
    out.extend_from_slice(&obs.end(complete));
    out
}

fn events(bytes: &[u8]) -> Vec<(Option<String>, String)> {
    let mut d = SseDecoder::default();
    let mut evs = Vec::new();
    d.push(bytes, &mut |e| evs.push((e.event, e.data))).unwrap();
    d.finish(&mut |e| evs.push((e.event, e.data))).unwrap();
    evs
}

/// OpenAI: (content of choice 0, arguments of tool call 0).
fn openai_text(bytes: &[u8]) -> (String, String) {
    let (mut content, mut args) = (String::new(), String::new());
    for (_, data) in events(bytes) {
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        let d = &v["choices"][0]["delta"];
        content.push_str(d["content"].as_str().unwrap_or(""));
        args.push_str(d["tool_calls"][0]["function"]["arguments"].as_str().unwrap_or(""));
    }
    (content, args)
}

/// Anthropic: the text of each block.
fn anthropic_text(bytes: &[u8]) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    for (_, data) in events(bytes) {
        let v: Value = serde_json::from_str(&data).unwrap();
        if v["type"] != "content_block_delta" {
            continue;
        }
        let i = v["index"].as_u64().unwrap() as usize;
        if blocks.len() <= i {
            blocks.resize(i + 1, String::new());
        }
        let d = &v["delta"];
        for f in ["text", "partial_json", "thinking"] {
            blocks[i].push_str(d[f].as_str().unwrap_or(""));
        }
    }
    blocks
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let c = json!({"id":"c1","object":"chat.completion.chunk","created":7,"model":"m",
        "choices":[{"index":0,"delta":delta,"finish_reason":finish}]});
    format!("data: {c}\n\n")
}

fn openai_stream() -> String {
    let mut s = chunk(json!({"role":"assistant","content":""}), None);
    for piece in [
        "Write to [EMAIL_1] or [EM",
        "AIL_2] now; [EMAIL_9], [EMAIL 1] [",
        "NAME_1",
        "] [",
        "x] [EMAIL_",
    ] {
        s.push_str(&chunk(json!({ "content": piece }), None));
    }
    s.push_str(&chunk(json!({ "content": "2]." }), None));
    s.push_str(&chunk(json!({}), Some("stop")));
    s.push_str(
        "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n: keep-alive\n\ndata: [DONE]\n\n",
    );
    s
}

const OPENAI_TEXT: &str = "Write to a@x.io or b@y.org now; [EMAIL_9], [EMAIL 1] Jo \"Q\" Smith\nline2 [x] b@y.org.";

fn tool_stream() -> String {
    let mut s = chunk(
        json!({"role":"assistant","tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"send","arguments":""}}]}),
        None,
    );
    for piece in ["{\"to\":\"[EMA", "IL_1]\",\"who\":\"[NAME_", "1]\",\"n\":[1]}"] {
        s.push_str(&chunk(
            json!({"tool_calls":[{"index":0,"function":{"arguments":piece}}]}),
            None,
        ));
    }
    s.push_str(&chunk(json!({}), Some("tool_calls")));
    s.push_str("data: [DONE]\n\n");
    s
}

fn anthropic_stream() -> String {
    let mut s = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m1\",\"content\":[]}}\n\n\
         event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
         event: ping\ndata: {\"type\":\"ping\"}\n\n",
    );
    let delta = |i: u32, d: Value| {
        let e = json!({"type":"content_block_delta","index":i,"delta":d});
        format!("event: content_block_delta\r\ndata: {e}\r\n\r\n")
    };
    for t in ["Mail [EMAIL_", "1] and [NA", "ME_1] or [EMAIL_9] [EMAIL_2"] {
        s.push_str(&delta(0, json!({"type":"text_delta","text":t})));
    }
    s.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
    s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"tu\",\"name\":\"send\",\"input\":{}}}\n\n");
    for t in ["{\"who\": \"[NAME", "_1]\", \"to\": [\"[EMAIL_2]\"]}"] {
        s.push_str(&delta(1, json!({"type":"input_json_delta","partial_json":t})));
    }
    s.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n");
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"}}\n\n");
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s
}

#[test]
fn restore_text_replaces_known_placeholders_only() {
    let v = vault();
    let got = restore_text("[EMAIL_1], [EMAIL_9], [EMAIL 1], [email_1], [[EMAIL_2]]", &v);
    assert_eq!(
        got.as_deref(),
        Some("a@x.io, [EMAIL_9], [EMAIL 1], [email_1], [b@y.org]")
    );
    assert_eq!(restore_text("nothing [here]", &v), None);
}

#[test]
fn restore_json_openai_answer_with_tool_call_arguments() {
    let body = json!({"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant",
        "content":"Hi [NAME_1]","tool_calls":[{"id":"t","type":"function","function":{"name":"send",
        "arguments":"{\"to\":\"[EMAIL_1]\",\"who\":\"[NAME_1]\"}"}}]},"finish_reason":"tool_calls"}]});
    let out = restore_json(body.to_string().as_bytes(), &vault()).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], format!("Hi {NAME}"));
    let args: Value = serde_json::from_str(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"to":"a@x.io","who":NAME}));
}

#[test]
fn restore_json_anthropic_answer_and_error_bodies() {
    let body = json!({"id":"m","type":"message","role":"assistant","content":[{"type":"text","text":"[EMAIL_2]!"},
        {"type":"tool_use","id":"tu","name":"send","input":{"who":"[NAME_1]","list":["[EMAIL_1]"]}}]});
    let out = restore_json(body.to_string().as_bytes(), &vault()).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["content"][0]["text"], "b@y.org!");
    assert_eq!(v["content"][1]["input"], json!({"who":NAME,"list":["a@x.io"]}));
    let err = br#"{"error":{"message":"bad address [EMAIL_1]","type":"invalid_request_error"}}"#;
    let out = restore_json(err, &vault()).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap()["error"]["message"],
        "bad address a@x.io"
    );
    assert!(restore_json(br#"{"a":"[EMAIL_7]"}"#, &vault()).is_none());
    let mut whole = whole_observer(vault());
    assert_eq!(
        &whole.body(Bytes::from_static(b"not json [EMAIL_1]"))[..],
        b"not json [EMAIL_1]"
    );
}

/// Found by fuzzing (`fuzz/`, target `pii_restore`): an answer that is not JSON, holding a
/// backslash before a multi-byte character, panicked the string decoder of the body walk; it
/// goes to the client as it came.
#[test]
fn a_malformed_answer_with_a_backslash_before_a_multibyte_character_is_left_alone() {
    let body = "[P}\"\\\u{6af}\"".as_bytes();
    assert_eq!(body, b"[P}\"\\\xda\xaf\"");
    assert_eq!(restore_json(body, &vault()), None);
    let mut whole = whole_observer(vault());
    assert_eq!(&whole.body(Bytes::copy_from_slice(body))[..], body);
    let text = "{\"content\":\"[EMAIL_1] and \\\u{6af}\"}";
    assert_eq!(restore_json(text.as_bytes(), &vault()), None);
}

#[test]
fn openai_content_is_restored_and_held_text_flushed_before_finish() {
    let s = openai_stream();
    let out = run_pieces(Wire::OpenAi, &[s.as_bytes()], true);
    assert_eq!(openai_text(&out).0, OPENAI_TEXT);
    let evs = events(&out);
    // Event count unchanged; the held "[EMAIL_" + "2]." completes in the last content chunk.
    assert_eq!(evs.len(), events(s.as_bytes()).len());
    // The role chunk, the usage chunk, the comment and [DONE] pass byte-identical.
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with(&chunk(json!({"role":"assistant","content":""}), None)));
    assert!(out.ends_with(
        "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n: keep-alive\n\ndata: [DONE]\n\n"
    ));
}

#[test]
fn openai_held_text_is_merged_into_the_finish_chunk_or_synthesised_before_done() {
    let s = format!(
        "{}{}data: [DONE]\n\n",
        chunk(json!({"content":"to [EMAIL_"}), None),
        chunk(json!({}), Some("stop"))
    );
    let evs = events(&run_pieces(Wire::OpenAi, &[s.as_bytes()], true));
    let last: Value = serde_json::from_str(&evs[1].1).unwrap();
    assert_eq!(last["choices"][0]["delta"]["content"], "[EMAIL_");
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    let s = format!("{}data: [DONE]\n\n", chunk(json!({"content":"to [NAME"}), None));
    let evs = events(&run_pieces(Wire::OpenAi, &[s.as_bytes()], true));
    assert_eq!(evs.len(), 3);
    let synth: Value = serde_json::from_str(&evs[1].1).unwrap();
    assert_eq!(synth["choices"][0]["delta"]["content"], "[NAME");
    assert_eq!(
        (synth["id"].as_str(), synth["model"].as_str(), synth["created"].as_u64()),
        (Some("c1"), Some("m"), Some(7))
    );
    assert_eq!(evs[2].1, "[DONE]");
    // Held tool-call arguments go into the finish chunk as a tool call of the same index.
    let s = format!(
        "{}{}",
        chunk(
            json!({"tool_calls":[{"index":2,"function":{"arguments":"{\"a\":\"[NAME"}}]}),
            None
        ),
        chunk(json!({}), Some("tool_calls"))
    );
    let evs = events(&run_pieces(Wire::OpenAi, &[s.as_bytes()], true));
    let last: Value = serde_json::from_str(&evs[1].1).unwrap();
    assert_eq!(
        last["choices"][0]["delta"]["tool_calls"],
        json!([{"index":2,"function":{"arguments":"[NAME"}}])
    );
    // A clean end with no [DONE] flushes too; an unclean one drops.
    let s = chunk(json!({"content":"to [NAME"}), None);
    assert_eq!(
        openai_text(&run_pieces(Wire::OpenAi, &[s.as_bytes()], true)).0,
        "to [NAME"
    );
    assert_eq!(openai_text(&run_pieces(Wire::OpenAi, &[s.as_bytes()], false)).0, "to ");
}

#[test]
fn a_placeholder_ending_a_piece_is_restored_at_once() {
    let s = format!(
        "{}{}",
        chunk(json!({"content":"to [EMAIL_1]"}), None),
        chunk(json!({"content":"[EMAIL_2]"}), Some("stop"))
    );
    let mut f = StreamFilter::new(Restorer::new(vault()), Wire::OpenAi);
    let out = crate::api::observe::ResponseObserver::body(&mut f, Bytes::from(s));
    assert_eq!(f.filter().held(), 0);
    assert_eq!(openai_text(&out).0, "to a@x.iob@y.org");
}

#[test]
fn openai_streamed_tool_arguments_are_restored_as_json() {
    let s = tool_stream();
    let out = run_pieces(Wire::OpenAi, &[s.as_bytes()], true);
    let args: Value = serde_json::from_str(&openai_text(&out).1).unwrap();
    assert_eq!(args, json!({"to":"a@x.io","who":NAME,"n":[1]}));
}

#[test]
fn anthropic_text_and_input_json_are_restored_and_flushed_before_block_stop() {
    let s = anthropic_stream();
    let out = run_pieces(Wire::Anthropic, &[s.as_bytes()], true);
    let blocks = anthropic_text(&out);
    assert_eq!(blocks[0], format!("Mail a@x.io and {NAME} or [EMAIL_9] [EMAIL_2"));
    let input: Value = serde_json::from_str(&blocks[1]).unwrap();
    assert_eq!(input, json!({"who":NAME,"to":["b@y.org"]}));
    let evs = events(&out);
    // "[EMAIL_2" was held to the end of block 0: a synthesised delta right before its stop.
    let stop0 = evs.iter().position(|(_, d)| d.contains("content_block_stop")).unwrap();
    assert_eq!(evs[stop0 - 1].0.as_deref(), Some("content_block_delta"));
    assert!(evs[stop0 - 1].1.contains("\"text\":\"[EMAIL_2\""));
    // Events without text pass byte-identical.
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("event: ping\ndata: {\"type\":\"ping\"}\n\n"));
    assert!(out.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
}

fn assert_split_invariant(client: Wire, s: &str) {
    let b = s.as_bytes();
    let whole = run_pieces(client, &[b], true);
    for i in 0..=b.len() {
        assert_eq!(run_pieces(client, &[&b[..i], &b[i..]], true), whole, "split at {i}");
    }
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut rng = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % (b.len() as u64 + 1)) as usize
    };
    for _ in 0..300 {
        let mut cuts = [rng(), rng()];
        cuts.sort_unstable();
        let got = run_pieces(client, &[&b[..cuts[0]], &b[cuts[0]..cuts[1]], &b[cuts[1]..]], true);
        assert_eq!(got, whole, "split at {cuts:?}");
    }
}

#[test]
fn every_split_gives_the_same_stream() {
    assert_split_invariant(Wire::OpenAi, &openai_stream());
    assert_split_invariant(Wire::OpenAi, &tool_stream());
    assert_split_invariant(Wire::Anthropic, &anthropic_stream());
    let crlf = openai_stream().replace('\n', "\r\n");
    assert_split_invariant(Wire::OpenAi, &crlf);
    assert_eq!(
        openai_text(&run_pieces(Wire::OpenAi, &[crlf.as_bytes()], true)).0,
        OPENAI_TEXT
    );
}

#[test]
fn nothing_is_held_without_a_bracket_and_untouched_pieces_pass_as_they_are() {
    let mut f = StreamFilter::new(Restorer::new(vault()), Wire::OpenAi);
    let mut all = Vec::new();
    for piece in ["Hello ", "there, ", "no placeholders ", "here."] {
        let ev = Bytes::from(chunk(json!({ "content": piece }), None));
        let out = crate::api::observe::ResponseObserver::body(&mut f, ev.clone());
        assert_eq!(out, ev);
        assert_eq!(out.as_ptr(), ev.as_ptr(), "passed without a copy");
        assert_eq!(f.filter().held(), 0);
        all.extend_from_slice(&out);
    }
    let ev = Bytes::from(chunk(json!({ "content": "x [EMA" }), None));
    let out = crate::api::observe::ResponseObserver::body(&mut f, ev);
    assert_eq!(f.filter().held(), 4);
    assert_eq!(openai_text(&out).0, "x ");
}

#[test]
fn an_empty_vault_changes_nothing() {
    let mut obs = observer(Arc::new(Vault::new(b"")), Wire::OpenAi);
    let s = openai_stream();
    let mut out = obs.body(Bytes::from(s.clone())).to_vec();
    out.extend_from_slice(&obs.end(true));
    assert_eq!(out, s.as_bytes());
}

fn findings_strategy() -> impl Strategy<Value = (String, Vec<(usize, usize, u16)>)> {
    (
        "[a-zA-Z0-9_ \\[\\]@.é😀\"\\\\\n]{0,60}",
        proptest::collection::vec((0usize..64, 0usize..12, 0u16..3), 0..6),
    )
}

const LABELS: [&str; 3] = ["EMAIL", "NAME", "CREDIT_CARD"];

fn findings(raw: &[(usize, usize, u16)]) -> Vec<Finding> {
    raw.iter()
        .map(|&(s, len, k)| Finding {
            kind: Kind(k),
            start: s,
            end: s + len,
        })
        .collect()
}

/// Redacts `text` with findings from `raw` (ranges snapped to char boundaries by `apply`).
fn redact(text: &str, raw: &[(usize, usize, u16)], vault: &mut Vault) -> String {
    apply(text, &findings(raw), &mut |f, v, out| {
        out.push_str(vault.placeholder(LABELS[usize::from(f.kind.0)], v));
        true
    })
    .unwrap_or_else(|| text.to_string())
}

proptest! {
    #[test]
    fn redact_then_restore_is_the_identity((text, raw) in findings_strategy()) {
        let mut vault = Vault::new(text.as_bytes());
        let red = redact(&text, &raw, &mut vault);
        let back = restore_text(&red, &vault).unwrap_or_else(|| red.clone());
        prop_assert_eq!(&back, &text);
        // Through a JSON body and a whole answer too.
        let body = json!({"messages":[{"role":"user","content":text}]}).to_string();
        let mut vault = Vault::new(body.as_bytes());
        let red = rewrite_strings(body.as_bytes(), &mut |s| Some(redact(s, &raw, &mut vault))).unwrap();
        let back = restore_json(&red, &vault).unwrap_or(red);
        let back: Value = serde_json::from_slice(&back).unwrap();
        prop_assert_eq!(back["messages"][0]["content"].as_str(), Some(text.as_str()));
    }

    #[test]
    fn streamed_redact_then_restore_is_the_identity((text, raw) in findings_strategy(), cuts in proptest::collection::vec(0usize..80, 0..6)) {
        let mut vault = Vault::new(text.as_bytes());
        let red = redact(&text, &raw, &mut vault);
        let mut s = String::new();
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c < red.len() && red.is_char_boundary(c)).collect();
        cuts.sort_unstable();
        cuts.push(red.len());
        let mut at = 0;
        for c in cuts {
            s.push_str(&chunk(json!({ "content": &red[at..c] }), None));
            s.push_str(&chunk(json!({"tool_calls":[{"index":0,"function":{"arguments":&red[at..c]}}]}), None));
            at = c;
        }
        s.push_str(&chunk(json!({}), Some("stop")));
        let mut obs = observer(Arc::new(vault), Wire::OpenAi);
        let mut out = obs.body(Bytes::from(s)).to_vec();
        out.extend_from_slice(&obs.end(true));
        let (content, args) = openai_text(&out);
        prop_assert_eq!(&content, &text);
        // In JSON-text mode the originals go in JSON-escaped.
        let escaped_text = apply(&text, &findings(&raw), &mut |_, v, out| {
            out.push_str(&crate::api::json_str::escaped(v));
            true
        })
        .unwrap_or_else(|| text.clone());
        prop_assert_eq!(&args, &escaped_text);
    }

    #[test]
    fn the_stream_restorer_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..300, anthropic in any::<bool>(), complete in any::<bool>()) {
        let cut = cut.min(bytes.len());
        let client = if anthropic { Wire::Anthropic } else { Wire::OpenAi };
        run_pieces(client, &[&bytes[..cut], &bytes[cut..]], complete);
    }

    #[test]
    fn the_stream_restorer_never_panics_on_event_shaped_input(
        texts in proptest::collection::vec("[\\[\\]A-Z_0-9a \"\\\\]{0,12}", 0..8), cut in 0usize..2000, anthropic in any::<bool>()) {
        let mut s = String::new();
        for (i, t) in texts.iter().enumerate() {
            if anthropic {
                let e = json!({"type":"content_block_delta","index":i % 2,"delta":{"type":"text_delta","text":t}});
                s.push_str(&format!("event: content_block_delta\ndata: {e}\n\n"));
                if i % 3 == 2 { s.push_str(&format!("data: {{\"type\":\"content_block_stop\",\"index\":{}}}\n\n", i % 2)); }
            } else {
                s.push_str(&chunk(json!({"content": t, "tool_calls":[{"index": i % 2, "function":{"arguments": t}}]}), (i % 3 == 2).then_some("stop")));
            }
        }
        let b = s.as_bytes();
        let cut = cut.min(b.len());
        let client = if anthropic { Wire::Anthropic } else { Wire::OpenAi };
        let whole = run_pieces(client, &[b], true);
        prop_assert_eq!(run_pieces(client, &[&b[..cut], &b[cut..]], true), whole);
    }
}
