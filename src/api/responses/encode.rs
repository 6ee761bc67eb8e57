//! The canonical chat answer → the Responses API's: the response object, whole, or its stream's
//! event sequence (`response.created`, `response.in_progress`, each output item opened, its text
//! or arguments as deltas, closed, then `response.completed` / `response.incomplete` with the
//! usage; `response.failed` when the stream is cut), every event with its `sequence_number`.
//!
//! The encoder reads the gateway's own chat output (the bytes the relay's observers let out, so
//! the guardrails' restoration and the cache's write have already seen them in the one format
//! they know) and writes the client's. One parse per chunk of our own small JSON is the price of
//! keeping every other stage unaware of this endpoint.

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

use super::request::ResponsesRequest;
use crate::api::chat::{ChatResponse, Usage};
use crate::sse::{encode_event, SseDecoder};

/// What a response says about the request it answers.
#[derive(Debug, Clone)]
pub struct Turn {
    pub id: String,
    pub created_at: u64,
    pub model: String,
    /// The request's settings, echoed in every response object.
    pub echo: Map<String, Value>,
}

impl Turn {
    pub fn new(req: &ResponsesRequest, created_at: u64) -> Turn {
        let mut echo = Map::new();
        let or = |v: Option<Value>, default: Value| v.unwrap_or(default);
        echo.insert("instructions".into(), json!(req.instructions));
        echo.insert("tools".into(), or(req.tools.clone().map(Value::Array), json!([])));
        echo.insert("tool_choice".into(), or(req.tool_choice.clone(), json!("auto")));
        echo.insert(
            "parallel_tool_calls".into(),
            json!(req.parallel_tool_calls.unwrap_or(true)),
        );
        echo.insert("temperature".into(), json!(req.temperature));
        echo.insert("top_p".into(), json!(req.top_p));
        echo.insert("max_output_tokens".into(), json!(req.max_output_tokens));
        echo.insert(
            "metadata".into(),
            or(req.metadata.clone().map(Value::Object), json!({})),
        );
        echo.insert("previous_response_id".into(), json!(req.previous_response_id));
        echo.insert(
            "reasoning".into(),
            or(req.reasoning.clone(), json!({"effort": null, "summary": null})),
        );
        echo.insert("text".into(), or(req.text.clone(), json!({"format": {"type": "text"}})));
        echo.insert("store".into(), json!(req.stored()));
        echo.insert("user".into(), json!(req.user));
        echo.insert("truncation".into(), json!("disabled"));
        echo.insert("background".into(), json!(false));
        Turn {
            id: new_id("resp"),
            created_at,
            model: req.model.clone(),
            echo,
        }
    }

    /// The response object.
    fn object(&self, model: &str, status: &str, output: Vec<Value>, usage: Option<&Usage>, error: Value) -> Value {
        let mut o = Map::with_capacity(self.echo.len() + 10);
        o.insert("id".into(), json!(self.id));
        o.insert("object".into(), json!("response"));
        o.insert("created_at".into(), json!(self.created_at));
        o.insert("status".into(), json!(status));
        o.insert("error".into(), error);
        let incomplete = match status {
            "incomplete" => json!({"reason": "max_output_tokens"}),
            _ => Value::Null,
        };
        o.insert("incomplete_details".into(), incomplete);
        o.insert("model".into(), json!(model));
        o.insert("output".into(), Value::Array(output));
        o.insert("usage".into(), usage.map_or(Value::Null, usage_json));
        for (k, v) in &self.echo {
            o.insert(k.clone(), v.clone());
        }
        Value::Object(o)
    }
}

/// A fresh id with OpenAI's prefix for its kind (`resp`, `msg`, `fc`).
pub fn new_id(prefix: &str) -> String {
    let bytes: [u8; 24] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}

/// Chat usage → Responses usage.
pub fn usage_json(u: &Usage) -> Value {
    let details = u.prompt_tokens_details.unwrap_or_default();
    let total = if u.total_tokens > 0 {
        u.total_tokens
    } else {
        u.prompt_tokens + u.completion_tokens
    };
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": details.cached_tokens,
            "cache_write_tokens": details.cache_write_tokens,
        },
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {
            "reasoning_tokens": u.completion_tokens_details.map_or(0, |d| d.reasoning_tokens),
        },
        "total_tokens": total,
    })
}

/// The status a chat `finish_reason` ends a response with.
fn status_of(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "incomplete",
        _ => "completed",
    }
}

/// One output item as it is being built.
#[derive(Debug)]
enum Item {
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

impl Item {
    fn json(&self, status: &str) -> Value {
        match self {
            Item::Message { id, text } => json!({
                "id": id, "type": "message", "status": status, "role": "assistant",
                "content": [output_text(text)],
            }),
            Item::Call {
                id,
                call_id,
                name,
                arguments,
            } => json!({
                "id": id, "type": "function_call", "status": status,
                "call_id": call_id, "name": name, "arguments": arguments,
            }),
        }
    }
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// The output items of a whole chat answer.
fn items_of(resp: &ChatResponse) -> Vec<Item> {
    let mut items = Vec::new();
    if let Some(m) = resp.choices.first().map(|c| &c.message) {
        let text = m.content.as_ref().map(|c| c.text()).unwrap_or_default();
        let calls = m.tool_calls.as_deref().unwrap_or_default();
        if !text.is_empty() || calls.is_empty() {
            items.push(Item::Message {
                id: new_id("msg"),
                text,
            });
        }
        for c in calls {
            items.push(Item::Call {
                id: new_id("fc"),
                call_id: c.id.clone(),
                name: c.function.name.clone(),
                arguments: c.function.arguments.clone(),
            });
        }
    }
    items
}

/// (Written by hand: the encoder's state is its items, which `Turn` and the counters show.)
impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("id", &self.turn.id)
            .field("seq", &self.seq)
            .field("items", &self.items.len())
            .finish()
    }
}

/// A chunk of the gateway's own chat stream, as much of it as the encoder reads: borrowed where
/// it can be, and without `ChatChunk`'s catch-all map (a flattened map makes serde buffer every
/// field), which halves the parse.
#[derive(serde::Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    model: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    choices: Vec<ChunkChoice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(serde::Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow, default)]
    delta: ChunkDelta<'a>,
    #[serde(borrow, default)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

#[derive(serde::Deserialize, Default)]
struct ChunkDelta<'a> {
    #[serde(borrow, default)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Vec<crate::api::chat::ToolCallDelta>>,
}

/// Writes one answer in the Responses format: `whole` for a JSON answer, `body` piece by piece
/// for a stream (then `failed` if it was cut). `finished` is the response object once it ended
/// cleanly, for the response store.
pub struct Encoder {
    turn: Turn,
    seq: u64,
    sse: SseDecoder,
    started: bool,
    items: Vec<Item>,
    /// Output index of the message item still open, and of the call still open.
    open_text: Option<usize>,
    open_call: Option<usize>,
    /// Chat tool-call index → output index.
    calls: Vec<(u32, usize)>,
    finish: Option<String>,
    usage: Option<Usage>,
    model: Option<String>,
    finished: Option<Value>,
    ended: bool,
    /// The answer is OpenAI's own Responses format, passed through: watched, not written.
    native: bool,
    /// The last `sequence_number` of a native stream.
    last_seq: Option<u64>,
    /// The `previous_response_id` the client sent, which OpenAI was not (the gateway sent the
    /// conversation instead): put back into OpenAI's response objects, as OpenAI echoes it.
    echo_previous: Option<Value>,
}

impl Encoder {
    pub fn new(turn: Turn) -> Encoder {
        Encoder {
            turn,
            seq: 0,
            sse: SseDecoder::default(),
            started: false,
            items: Vec::new(),
            open_text: None,
            open_call: None,
            calls: Vec::new(),
            finish: None,
            usage: None,
            model: None,
            finished: None,
            ended: false,
            native: false,
            last_seq: None,
            echo_previous: None,
        }
    }

    /// The answer will be OpenAI's own Responses stream or object (a native passthrough): it is
    /// watched for the final response object and passed on unchanged.
    pub fn go_native(&mut self) {
        self.native = true;
        self.started = true;
        self.echo_previous = self
            .turn
            .echo
            .get("previous_response_id")
            .filter(|v| !v.is_null())
            .cloned();
    }

    fn echo_into(&self, response: &mut Value) {
        if let (Some(prev), Value::Object(o)) = (&self.echo_previous, response) {
            o.insert("previous_response_id".into(), prev.clone());
        }
    }

    pub fn is_native(&self) -> bool {
        self.native
    }

    /// A piece of a native stream: its last sequence number and, at its end, the final object.
    /// `Some`: the bytes to send instead (the response objects with `previous_response_id`
    /// put back, whole events only; the rest follows with the next piece).
    pub fn watch(&mut self, bytes: &[u8]) -> Option<Bytes> {
        #[derive(serde::Deserialize)]
        struct Event<'a> {
            #[serde(rename = "type", borrow, default)]
            kind: std::borrow::Cow<'a, str>,
            #[serde(default)]
            sequence_number: Option<u64>,
        }
        let mut events = Vec::new();
        let _ = self.sse.push(bytes, &mut |e| events.push(e));
        let mut out = self.echo_previous.is_some().then(BytesMut::new);
        for e in events {
            let data = &e.data;
            let Ok(ev) = serde_json::from_str::<Event<'_>>(data) else {
                if let Some(out) = &mut out {
                    encode_event(out, e.event.as_deref(), data);
                }
                continue;
            };
            self.last_seq = ev.sequence_number.or(self.last_seq);
            let end = matches!(&*ev.kind, "response.completed" | "response.incomplete");
            // (Only the events that carry a response object are rewritten, when there is an echo.)
            let rewrite = out.is_some() && ev.kind.starts_with("response.") && data.contains("\"response\":{");
            if !(end || rewrite) {
                if let Some(out) = &mut out {
                    encode_event(out, e.event.as_deref(), data);
                }
                continue;
            }
            let Ok(mut v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if let Some(r) = v.get_mut("response") {
                self.echo_into(r);
            }
            if end {
                self.ended = true;
                self.finished = v.get("response").cloned();
            }
            if let Some(out) = &mut out {
                encode_event(out, e.event.as_deref(), &v.to_string());
            }
        }
        out.map(BytesMut::freeze)
    }

    /// A native whole answer: the response object. `Some`: the body to send instead (with the
    /// client's `previous_response_id` put back).
    pub fn watch_whole(&mut self, body: &[u8]) -> Option<Bytes> {
        let mut v = serde_json::from_slice::<Value>(body)
            .ok()
            .filter(|v| v.get("object").and_then(Value::as_str) == Some("response"))?;
        self.echo_into(&mut v);
        let patched = self
            .echo_previous
            .is_some()
            .then(|| Bytes::from(serde_json::to_vec(&v).unwrap_or_default()));
        self.finished = Some(v);
        patched
    }

    pub fn turn(&self) -> &Turn {
        &self.turn
    }

    /// The response object of an answer that ended cleanly (completed or incomplete).
    pub fn finished(&mut self) -> Option<Value> {
        self.finished.take()
    }

    fn model(&self) -> String {
        self.model.clone().unwrap_or_else(|| self.turn.model.clone())
    }

    /// A whole chat answer (a success) as the response object.
    pub fn whole(&mut self, chat: &[u8]) -> Bytes {
        let Ok(resp) = serde_json::from_slice::<ChatResponse>(chat) else {
            return Bytes::copy_from_slice(chat);
        };
        if !resp.model.is_empty() {
            self.model = Some(resp.model.clone());
        }
        let status = status_of(resp.choices.first().and_then(|c| c.finish_reason.as_deref()));
        let output = items_of(&resp).iter().map(|i| i.json(status)).collect();
        let obj = self
            .turn
            .object(&self.model(), status, output, resp.usage.as_ref(), Value::Null);
        let bytes = Bytes::from(serde_json::to_vec(&obj).unwrap_or_default());
        self.finished = Some(obj);
        bytes
    }

    /// A piece of the chat stream → the events it makes.
    pub fn body(&mut self, chat: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        self.start(&mut out);
        let mut events = Vec::new();
        // (The gateway's own stream: its events are far below the decoder's bound.)
        let _ = self.sse.push(chat, &mut |e| events.push(e.data));
        for data in events {
            self.event(&data, &mut out);
        }
        out.freeze()
    }

    /// The stream was cut after it started: `response.failed`, never a completion.
    pub fn failed(&mut self, code: &str, message: &str) -> Bytes {
        let mut out = BytesMut::new();
        if self.native {
            // OpenAI's own stream broke: its `error` event, numbered after the last one seen.
            if !self.ended {
                self.ended = true;
                let seq = self.last_seq.map_or(0, |s| s + 1);
                let e =
                    json!({"type": "error", "code": code, "message": message, "param": null, "sequence_number": seq});
                encode_event(&mut out, Some("error"), &e.to_string());
            }
            return out.freeze();
        }
        self.start(&mut out);
        if !self.ended {
            self.ended = true;
            let output = self.items.iter().map(|i| i.json("incomplete")).collect();
            let error = json!({"code": "server_error", "message": format!("{code}: {message}")});
            let obj = self
                .turn
                .object(&self.model(), "failed", output, self.usage.as_ref(), error);
            self.emit(&mut out, "response.failed", json!({"response": obj}));
        }
        out.freeze()
    }

    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let obj = self
            .turn
            .object(&self.turn.model, "in_progress", Vec::new(), None, Value::Null);
        self.emit(out, "response.created", json!({"response": obj.clone()}));
        self.emit(out, "response.in_progress", json!({"response": obj}));
    }

    fn emit(&mut self, out: &mut BytesMut, kind: &str, payload: Value) {
        let mut payload = payload;
        if let Value::Object(o) = &mut payload {
            o.insert("type".into(), json!(kind));
            o.insert("sequence_number".into(), json!(self.seq));
        }
        self.seq += 1;
        encode_event(out, Some(kind), &payload.to_string());
    }

    fn event(&mut self, data: &str, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        if data == "[DONE]" {
            return self.complete(out);
        }
        // The gateway's own events: a chunk, or (rarely) `{"error":{…}}`.
        if data.starts_with("{\"error\"") {
            let v: Value = serde_json::from_str(data).unwrap_or_default();
            let e = &v["error"];
            let message = e["message"].as_str().unwrap_or("the provider failed");
            let code = e["code"].as_str().unwrap_or("api_error").to_string();
            let failed = self.failed(&code, message);
            out.extend_from_slice(&failed);
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Chunk<'_>>(data) else {
            return;
        };
        if !chunk.model.is_empty() && self.model.as_deref() != Some(&*chunk.model) {
            self.model = Some(chunk.model.to_string());
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            if let Some(text) = choice.delta.content.as_deref().filter(|t| !t.is_empty()) {
                self.text(text, out);
            }
            for tc in choice.delta.tool_calls.as_deref().unwrap_or_default() {
                let at = match self.calls.iter().find(|(k, _)| *k == tc.index) {
                    Some((_, at)) => *at,
                    None => self.open_call_item(tc.index, tc.id.as_deref(), tc.function.as_ref(), out),
                };
                let delta = tc
                    .function
                    .as_ref()
                    .and_then(|f| f.arguments.as_deref())
                    .unwrap_or_default();
                if !delta.is_empty() {
                    if let Some(Item::Call { arguments, .. }) = self.items.get_mut(at) {
                        arguments.push_str(delta);
                        self.delta(out, "response.function_call_arguments.delta", at, delta);
                    }
                }
            }
            if let Some(f) = &choice.finish_reason {
                self.finish = Some(f.to_string());
            }
        }
    }

    fn text(&mut self, delta: &str, out: &mut BytesMut) {
        let at = match self.open_text {
            Some(at) => at,
            None => {
                self.close_call(out);
                self.open_message(out)
            }
        };
        if let Some(Item::Message { text, .. }) = self.items.get_mut(at) {
            text.push_str(delta);
            self.delta(out, "response.output_text.delta", at, delta);
        }
    }

    /// A delta event, the one written per chunk: its JSON is written directly (no `Value` built).
    /// With the borrowed `Chunk` parse, this took a streamed chunk from 2.8 µs to 1.0 µs
    /// (`cargo bench --bench translators -- responses/stream`: 289 → 106 µs for 102 chunks).
    fn delta(&mut self, out: &mut BytesMut, kind: &str, at: usize, delta: &str) {
        let id = match self.items.get(at) {
            Some(Item::Message { id, .. } | Item::Call { id, .. }) => id.as_str(),
            None => return,
        };
        let mut json = Vec::with_capacity(delta.len() + 192);
        json.extend_from_slice(b"{\"type\":\"");
        json.extend_from_slice(kind.as_bytes());
        json.extend_from_slice(b"\",\"sequence_number\":");
        json.extend_from_slice(itoa::Buffer::new().format(self.seq).as_bytes());
        // (Ids are `msg_` / `fc_` and hex: nothing to escape.)
        json.extend_from_slice(b",\"item_id\":\"");
        json.extend_from_slice(id.as_bytes());
        json.extend_from_slice(b"\",\"output_index\":");
        json.extend_from_slice(itoa::Buffer::new().format(at).as_bytes());
        let text = kind == "response.output_text.delta";
        if text {
            json.extend_from_slice(b",\"content_index\":0");
        }
        json.extend_from_slice(b",\"delta\":");
        if serde_json::to_writer(&mut json, delta).is_err() {
            return;
        }
        if text {
            json.extend_from_slice(b",\"logprobs\":[]");
        }
        json.push(b'}');
        self.seq += 1;
        encode_event(out, Some(kind), std::str::from_utf8(&json).unwrap_or("{}"));
    }

    fn open_message(&mut self, out: &mut BytesMut) -> usize {
        let at = self.items.len();
        let id = new_id("msg");
        self.items.push(Item::Message {
            id: id.clone(),
            text: String::new(),
        });
        self.open_text = Some(at);
        let item = json!({"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []});
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": at, "item": item}),
        );
        self.emit(
            out,
            "response.content_part.added",
            json!({"item_id": id, "output_index": at, "content_index": 0, "part": output_text("")}),
        );
        at
    }

    fn open_call_item(
        &mut self,
        index: u32,
        call_id: Option<&str>,
        f: Option<&crate::api::chat::FunctionDelta>,
        out: &mut BytesMut,
    ) -> usize {
        self.close_text(out);
        self.close_call(out);
        let at = self.items.len();
        let id = new_id("fc");
        let call_id = call_id.map_or_else(|| new_id("call"), str::to_string);
        let name = f.and_then(|f| f.name.clone()).unwrap_or_default();
        let item = json!({"id": id, "type": "function_call", "status": "in_progress",
            "call_id": call_id, "name": name, "arguments": ""});
        self.items.push(Item::Call {
            id,
            call_id,
            name,
            arguments: String::new(),
        });
        self.calls.push((index, at));
        self.open_call = Some(at);
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": at, "item": item}),
        );
        at
    }

    fn close_text(&mut self, out: &mut BytesMut) {
        let Some(at) = self.open_text.take() else {
            return;
        };
        let Some(Item::Message { id, text }) = self.items.get(at) else {
            return;
        };
        let (id, text) = (id.clone(), text.clone());
        let status = self.item_status();
        let item = self.items[at].json(status);
        self.emit(
            out,
            "response.output_text.done",
            json!({"item_id": id, "output_index": at, "content_index": 0, "text": text, "logprobs": []}),
        );
        self.emit(
            out,
            "response.content_part.done",
            json!({"item_id": id, "output_index": at, "content_index": 0, "part": output_text(&text)}),
        );
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": at, "item": item}),
        );
    }

    fn close_call(&mut self, out: &mut BytesMut) {
        let Some(at) = self.open_call.take() else {
            return;
        };
        let Some(Item::Call {
            id, name, arguments, ..
        }) = self.items.get(at)
        else {
            return;
        };
        let done = json!({"item_id": id, "output_index": at, "name": name, "arguments": arguments});
        let item = self.items[at].json("completed");
        self.emit(out, "response.function_call_arguments.done", done);
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": at, "item": item}),
        );
    }

    fn item_status(&self) -> &'static str {
        match status_of(self.finish.as_deref()) {
            "incomplete" => "incomplete",
            _ => "completed",
        }
    }

    /// The chat stream's clean end: the open items closed, then the final event.
    fn complete(&mut self, out: &mut BytesMut) {
        if self.items.is_empty() {
            self.open_message(out);
        }
        self.close_text(out);
        self.close_call(out);
        self.ended = true;
        let status = status_of(self.finish.as_deref());
        let item_status = self.item_status();
        let output = self
            .items
            .iter()
            .map(|i| match i {
                Item::Call { .. } => i.json("completed"),
                Item::Message { .. } => i.json(item_status),
            })
            .collect();
        let obj = self
            .turn
            .object(&self.model(), status, output, self.usage.as_ref(), Value::Null);
        let kind = match status {
            "incomplete" => "response.incomplete",
            _ => "response.completed",
        };
        self.emit(out, kind, json!({"response": obj.clone()}));
        self.finished = Some(obj);
    }
}
