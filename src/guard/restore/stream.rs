//! The stream walker: the client's SSE body (either dialect) cut into events, the text-carrying
//! fields of each event handed, field by field, to a `FieldFilter` that may rewrite them and
//! hold text back; the events rebuilt around what it returns. The restorer (`hold`) is one
//! filter; output checks that mask what the model writes will be another.
//!
//! Fields: OpenAI `choices[i].delta.{content, refusal, reasoning_content, reasoning}` and
//! `choices[i].delta.tool_calls[j].function.arguments` (JSON text); Anthropic
//! `content_block_delta` `delta.text`, `delta.thinking` and `delta.partial_json` (JSON text).
//! A field ends with its choice's `finish_reason` (held text merged into that chunk), its
//! block's `content_block_stop` (held text in a `content_block_delta` just before it), before
//! `message_delta` / `message_stop` / `data: [DONE]`, or at a clean end (a synthesised delta
//! event); on an unclean end it is dropped (the relay writes an error event).
//!
//! Invariants: an event with no text field, or one the filter leaves alone, goes on
//! byte-identical (and unparsed while nothing is held and the filter's `wants` says no); the
//! output does not depend on how the body was cut into pieces; what the filter holds comes out
//! before the event that ends its field, never after and never lost on a clean end.

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

use super::frame::{self, Framer, TooLarge};
use crate::api::observe::ResponseObserver;
use crate::api::Wire;

/// One text-carrying field of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKey {
    /// OpenAI `choices[choice].delta.<TEXT_FIELDS[field]>`.
    Delta { choice: u32, field: u8 },
    /// OpenAI `choices[choice].delta.tool_calls[tool].function.arguments` (JSON text).
    ToolArguments { choice: u32, tool: u32 },
    /// Anthropic content block `index` (its `text`, `thinking` or `partial_json` deltas).
    Block { index: u32 },
}

/// The OpenAI delta fields that carry plain text, indexed by `FieldKey::Delta::field`.
const TEXT_FIELDS: [&str; 4] = ["content", "refusal", "reasoning_content", "reasoning"];

/// Anthropic delta types that carry text: (delta type, its text field, JSON text).
const BLOCK_DELTAS: [(&str, &str, bool); 3] = [
    ("text_delta", "text", false),
    ("thinking_delta", "thinking", false),
    ("input_json_delta", "partial_json", true),
];

/// A per-field text transformer.
pub trait FieldFilter: Send {
    /// Whether an event whose data is `data` may need this filter while it holds nothing: a
    /// cheap test on the raw JSON (false: the event goes on unparsed).
    fn wants(&self, data: &str) -> bool;
    /// The next piece of `field`'s text: appends what goes out now to `out` (holding back what
    /// must wait for the next piece). `json_text`: the field holds JSON text.
    fn push(&mut self, field: FieldKey, text: &str, json_text: bool, out: &mut String);
    /// `field` ended: appends whatever it held back. Called only for fields pushed while the
    /// filter was `holding`, or since.
    fn finish(&mut self, field: FieldKey, json_text: bool, out: &mut String);
    /// Whether any field holds text back.
    fn holding(&self) -> bool;
    /// The stream broke: forget whatever is held.
    fn drop_held(&mut self);
    /// The filter refuses the rest of the answer (an output check's `block`).
    fn refusal(&self) -> Option<crate::api::ApiError> {
        None
    }
}

/// A field seen in this stream, with what a synthesised event for it needs.
#[derive(Debug, Clone, Copy)]
struct Open {
    key: FieldKey,
    json_text: bool,
    /// Anthropic: index into `BLOCK_DELTAS`.
    delta: usize,
}

/// Output of one `body` call: runs of unchanged input sliced out, rewritten events copied.
struct Out {
    data: Bytes,
    run: Option<(usize, usize)>,
    buf: BytesMut,
}

impl Out {
    fn new(data: Bytes) -> Self {
        Out {
            data,
            run: None,
            buf: BytesMut::new(),
        }
    }

    fn pass(&mut self, data: &Bytes, start: usize, end: usize) {
        if data.as_ptr() != self.data.as_ptr() || data.len() != self.data.len() {
            self.flush_run();
            self.data = data.clone();
        }
        match &mut self.run {
            Some((_, e)) if *e == start => *e = end,
            _ => {
                self.flush_run();
                self.run = Some((start, end));
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.flush_run();
            self.buf.extend_from_slice(bytes);
        }
    }

    fn flush_run(&mut self) {
        if let Some((s, e)) = self.run.take() {
            self.buf.extend_from_slice(&self.data[s..e]);
        }
    }

    fn finish(mut self) -> Bytes {
        if self.buf.is_empty() {
            return match self.run {
                Some((s, e)) => self.data.slice(s..e),
                None => Bytes::new(),
            };
        }
        self.flush_run();
        self.buf.freeze()
    }
}

/// The walker: a `ResponseObserver` running `F` over the client's stream.
pub struct StreamFilter<F> {
    filter: F,
    client: Wire,
    framer: Framer,
    /// Framing gave up (an oversized event): the rest passes through untouched.
    broken: bool,
    open: Vec<Open>,
    /// OpenAI: id, object, created, model and system_fingerprint of the last parsed chunk, for
    /// a synthesised one.
    head: Map<String, Value>,
    scratch: String,
}

impl<F: FieldFilter> StreamFilter<F> {
    pub fn new(filter: F, client: Wire) -> Self {
        StreamFilter {
            filter,
            client,
            framer: Framer::default(),
            broken: false,
            open: Vec::new(),
            head: Map::new(),
            scratch: String::new(),
        }
    }

    pub fn filter(&self) -> &F {
        &self.filter
    }

    fn event(&mut self, data: &Bytes, start: usize, end: usize, out: &mut Out) {
        let raw = &data[start..end];
        let Some(text) = frame::data(raw) else {
            return out.pass(data, start, end);
        };
        if text.trim() == "[DONE]" {
            let mut before = Vec::new();
            self.flush_all(&mut before);
            out.write(&before);
            return out.pass(data, start, end);
        }
        if !self.filter.holding() && !self.filter.wants(&text) {
            return out.pass(data, start, end);
        }
        let Ok(mut v) = serde_json::from_str::<Value>(&text) else {
            return out.pass(data, start, end);
        };
        let mut before = Vec::new();
        let changed = match self.client {
            Wire::OpenAi => self.openai(&mut v),
            Wire::Anthropic => self.anthropic(&mut v, &mut before),
        };
        out.write(&before);
        match changed.then(|| serde_json::to_string(&v).ok()).flatten() {
            Some(json) => {
                let mut ev = Vec::with_capacity(json.len() + 32);
                frame::with_data(raw, &json, &mut ev);
                out.write(&ev);
            }
            None => out.pass(data, start, end),
        }
    }

    /// Runs `text` of `key` through the filter; true when it changed.
    fn push(&mut self, open: Open, text: &mut String) -> bool {
        match self.open.iter_mut().find(|o| o.key == open.key) {
            Some(o) => *o = open,
            None => self.open.push(open),
        }
        self.scratch.clear();
        self.filter.push(open.key, text, open.json_text, &mut self.scratch);
        if !self.filter.holding() {
            // Nothing held anywhere: no field needs ending, so the list stays as short as what
            // is held (a stream of a thousand blocks does not make it grow).
            self.open.clear();
        }
        if self.scratch == *text {
            return false;
        }
        std::mem::swap(text, &mut self.scratch);
        true
    }

    /// Ends the open fields `which` selects: (field, what it still held) for each that held any.
    fn finish(&mut self, which: &dyn Fn(&FieldKey) -> bool) -> Vec<(Open, String)> {
        let mut done = Vec::new();
        let mut k = 0;
        while k < self.open.len() {
            if !which(&self.open[k].key) {
                k += 1;
                continue;
            }
            let o = self.open.swap_remove(k);
            let mut s = String::new();
            self.filter.finish(o.key, o.json_text, &mut s);
            if !s.is_empty() {
                done.push((o, s));
            }
        }
        done
    }

    fn openai(&mut self, v: &mut Value) -> bool {
        for k in ["id", "object", "created", "model", "system_fingerprint"] {
            if let Some(x) = v.get(k) {
                self.head.insert(k.into(), x.clone());
            }
        }
        let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else {
            return false;
        };
        let mut changed = false;
        for (pos, c) in choices.iter_mut().enumerate() {
            let choice = index(c, pos);
            if let Some(delta) = c.get_mut("delta").and_then(Value::as_object_mut) {
                for (field, name) in TEXT_FIELDS.iter().enumerate() {
                    if let Some(Value::String(s)) = delta.get_mut(*name) {
                        let key = FieldKey::Delta {
                            choice,
                            field: field as u8,
                        };
                        changed |= self.push(open(key, false), s);
                    }
                }
                if let Some(calls) = delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
                    for (tpos, call) in calls.iter_mut().enumerate() {
                        let tool = index(call, tpos);
                        if let Some(Value::String(s)) = call.get_mut("function").and_then(|f| f.get_mut("arguments")) {
                            changed |= self.push(open(FieldKey::ToolArguments { choice, tool }, true), s);
                        }
                    }
                }
            }
            if c.get("finish_reason").is_some_and(|f| !f.is_null()) {
                let held = self.finish(&|k| key_choice(k) == Some(choice));
                if !held.is_empty() {
                    changed = true;
                    if let Some(obj) = c.as_object_mut() {
                        let delta = obj.entry("delta").or_insert_with(|| json!({}));
                        for (o, s) in held {
                            merge_openai(delta, o.key, s);
                        }
                    }
                }
            }
        }
        changed
    }

    fn anthropic(&mut self, v: &mut Value, before: &mut Vec<u8>) -> bool {
        match v.get("type").and_then(Value::as_str) {
            Some("content_block_delta") => {
                let block = index(v, 0);
                let Some(delta) = v.get_mut("delta") else { return false };
                let kind = delta.get("type").and_then(Value::as_str);
                let Some(d) = BLOCK_DELTAS.iter().position(|(t, _, _)| Some(*t) == kind) else {
                    return false;
                };
                let (_, field, json_text) = BLOCK_DELTAS[d];
                let Some(Value::String(s)) = delta.get_mut(field) else {
                    return false;
                };
                let o = Open {
                    key: FieldKey::Block { index: block },
                    json_text,
                    delta: d,
                };
                self.push(o, s)
            }
            Some("content_block_stop") => {
                let block = index(v, 0);
                let held = self.finish(&|k| *k == FieldKey::Block { index: block });
                anthropic_deltas(held, before);
                false
            }
            Some("message_delta" | "message_stop") => {
                self.flush_all(before);
                false
            }
            _ => false,
        }
    }

    /// Ends every open field: what they held, as synthesised delta events.
    fn flush_all(&mut self, out: &mut Vec<u8>) {
        let held = self.finish(&|_| true);
        if held.is_empty() {
            return;
        }
        match self.client {
            Wire::Anthropic => anthropic_deltas(held, out),
            Wire::OpenAi => {
                for (o, s) in held {
                    let mut delta = json!({});
                    merge_openai(&mut delta, o.key, s);
                    let choice = key_choice(&o.key).unwrap_or(0);
                    let mut chunk = self.head.clone();
                    chunk.entry("object").or_insert_with(|| json!("chat.completion.chunk"));
                    chunk.insert(
                        "choices".into(),
                        json!([{"index": choice, "delta": delta, "finish_reason": null}]),
                    );
                    if let Ok(json) = serde_json::to_string(&chunk) {
                        frame::with_data(b"", &json, out);
                    }
                }
            }
        }
    }

    fn run(&mut self, piece: Bytes, at_end: bool) -> Bytes {
        if self.broken {
            return piece;
        }
        let mut out = Out::new(piece.clone());
        // The framer is moved out so the callback can borrow the rest of `self`.
        let mut framer = std::mem::take(&mut self.framer);
        let framed = framer.push(piece, at_end, &mut |d, s, e| self.event(d, s, e, &mut out));
        self.framer = framer;
        if let Err(TooLarge(rest)) = framed {
            tracing::warn!(
                bytes = rest.len(),
                "an SSE event too large to filter: the rest of the stream passes unfiltered"
            );
            self.broken = true;
            let mut flushed = Vec::new();
            self.flush_all(&mut flushed);
            out.write(&flushed);
            out.write(&rest);
        }
        out.finish()
    }
}

fn open(key: FieldKey, json_text: bool) -> Open {
    Open {
        key,
        json_text,
        delta: 0,
    }
}

/// The `index` of a choice, tool call or block (its position when it has none).
fn index(v: &Value, pos: usize) -> u32 {
    v.get("index").and_then(Value::as_u64).unwrap_or(pos as u64) as u32
}

fn key_choice(k: &FieldKey) -> Option<u32> {
    match *k {
        FieldKey::Delta { choice, .. } | FieldKey::ToolArguments { choice, .. } => Some(choice),
        FieldKey::Block { .. } => None,
    }
}

/// Appends held text `s` of `key` to an OpenAI `delta` object.
fn merge_openai(delta: &mut Value, key: FieldKey, s: String) {
    let Some(d) = delta.as_object_mut() else { return };
    let (slot, s) = match key {
        FieldKey::Delta { field, .. } => {
            let name = TEXT_FIELDS.get(usize::from(field)).copied().unwrap_or("content");
            (d.entry(name).or_insert_with(|| json!("")), s)
        }
        FieldKey::ToolArguments { tool, .. } => {
            let calls = d.entry("tool_calls").or_insert_with(|| json!([]));
            let Some(calls) = calls.as_array_mut() else { return };
            let at = calls.iter().enumerate().position(|(p, c)| index(c, p) == tool);
            let call = match at {
                Some(p) => &mut calls[p],
                None => {
                    calls.push(json!({"index": tool, "function": {}}));
                    let last = calls.len() - 1;
                    &mut calls[last]
                }
            };
            let Some(call) = call.as_object_mut() else { return };
            let function = call.entry("function").or_insert_with(|| json!({}));
            let Some(function) = function.as_object_mut() else {
                return;
            };
            (function.entry("arguments").or_insert_with(|| json!("")), s)
        }
        FieldKey::Block { .. } => return,
    };
    match slot {
        Value::String(prev) => prev.push_str(&s),
        other => *other = Value::String(s),
    }
}

/// Held text of Anthropic blocks as `content_block_delta` events.
fn anthropic_deltas(held: Vec<(Open, String)>, out: &mut Vec<u8>) {
    for (o, s) in held {
        let FieldKey::Block { index } = o.key else { continue };
        let (kind, field, _) = BLOCK_DELTAS[o.delta.min(BLOCK_DELTAS.len() - 1)];
        let mut delta = Map::new();
        delta.insert("type".into(), json!(kind));
        delta.insert(field.into(), Value::String(s));
        let ev = json!({"type": "content_block_delta", "index": index, "delta": delta});
        if let Ok(json) = serde_json::to_string(&ev) {
            frame::with_data(b"event: content_block_delta\n", &json, out);
        }
    }
}

impl<F: FieldFilter> ResponseObserver for StreamFilter<F> {
    fn body(&mut self, bytes: Bytes) -> Bytes {
        self.run(bytes, false)
    }

    fn refusal(&self) -> Option<crate::api::ApiError> {
        self.filter.refusal()
    }

    fn end(&mut self, complete: bool) -> Bytes {
        if !complete {
            self.filter.drop_held();
            self.framer.take_rest();
            self.open.clear();
            return Bytes::new();
        }
        if self.broken {
            return Bytes::new();
        }
        // A `\r` ending the last piece ends its line now.
        let mut out = self.run(Bytes::new(), true).to_vec();
        let rest = self.framer.take_rest();
        if !rest.is_empty() {
            // A last event without its blank line: filtered as a whole one, sent as it came
            // unless it changed.
            let rest = Bytes::from(rest);
            let mut o = Out::new(rest.clone());
            self.event(&rest, 0, rest.len(), &mut o);
            out.extend_from_slice(&o.finish());
        }
        let mut tail = Vec::new();
        self.flush_all(&mut tail);
        if !tail.is_empty() {
            if !(out.is_empty() || out.ends_with(b"\n\n") || out.ends_with(b"\r\n\r\n")) {
                out.extend_from_slice(b"\n\n");
            }
            out.extend_from_slice(&tail);
        }
        Bytes::from(out)
    }
}
