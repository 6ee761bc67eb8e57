//! The OpenAI dialect: OpenAI itself, every OpenAI-compatible server, and Azure OpenAI (same
//! bodies, different URL layout and key header).
//!
//! Requests from OpenAI clients pass through byte for byte, except for the `model` value, which is
//! replaced by the target's upstream model name. Requests from Anthropic clients are rendered from
//! the canonical form. Passthrough streams are relayed unchanged while an incremental SSE decoder
//! watches them for the usage chunk and the `[DONE]` terminator.

use bytes::Bytes;
use serde_json::json;

use super::{
    fidelity, Adapter, ChunkSource, Observer, ProviderKind, RenderTarget, Rendered, StreamFault, Unreadable, Wire,
};
use crate::api::chat::{ChatChunk, ChatResponse, StreamOptions, Usage};
use crate::api::openai::{usage_of, LlmRequest};
use crate::api::{ApiError, Endpoint};
use crate::sse::{SseDecoder, SseEvent};

pub struct OpenAiAdapter;
pub struct AzureAdapter;

/// The upstream body for an OpenAI-wire provider: the client's bytes with `model` replaced, or,
/// for an Anthropic client, the canonical request serialised (usage always requested on streams,
/// so the gateway can count tokens; the client's encoder decides what the client sees).
fn render_body(req: &LlmRequest, target: &RenderTarget<'_>) -> Result<(Bytes, bool), ApiError> {
    match req.client {
        Wire::OpenAi => {
            let quirked = super::presets::apply(&target.options.quirks, &req.body)
                .map_err(|message| ApiError::InvalidField { field: "n", message })?;
            match (quirked, refused_by_model(req, target)) {
                (None, false) if wants_usage(req, target) => {
                    Ok((with_stream_usage(&req.body_with_model(target.model_json)), true))
                }
                (None, false) => Ok((req.body_with_model(target.model_json), true)),
                (obj, _) => {
                    let Some(mut obj) = obj.or_else(|| match serde_json::from_slice(&req.body) {
                        Ok(serde_json::Value::Object(o)) => Some(o),
                        _ => None,
                    }) else {
                        return Ok((req.body_with_model(target.model_json), true));
                    };
                    fidelity::openai_body(target.model, &mut obj);
                    if wants_usage(req, target) {
                        obj.insert("stream_options".into(), json!({"include_usage": true}));
                    }
                    obj.insert("model".into(), serde_json::Value::String(target.model.to_string()));
                    let body = serde_json::to_vec(&obj).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
                    Ok((Bytes::from(body), true))
                }
            }
        }
        Wire::Anthropic => {
            let mut chat = req.canonical()?.clone();
            chat.model = target.model.to_string();
            if target.kind != ProviderKind::Azure && fidelity::openai_reasoning(target.model) {
                if let Some(n) = chat.max_tokens.take() {
                    chat.max_completion_tokens = chat.max_completion_tokens.or(Some(n));
                }
                chat.temperature = chat.temperature.filter(|t| *t == 1.0);
                chat.top_p = chat.top_p.filter(|p| *p == 1.0);
            }
            if chat.stream == Some(true) {
                chat.stream_options = Some(StreamOptions {
                    include_usage: Some(true),
                    ..Default::default()
                });
            }
            let body = serde_json::to_vec(&chat).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
            Ok((Bytes::from(body), false))
        }
    }
}

/// A Responses API request to OpenAI itself, as the client sent it but for `model` (and what a
/// reasoning model refuses, `fidelity`): built-in tools, `include`, reasoning summaries and
/// fields the gateway does not know reach OpenAI, and its answer is relayed as it is.
fn render_responses(
    native: &serde_json::Map<String, serde_json::Value>,
    target: &RenderTarget<'_>,
    path: String,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
) -> Result<Rendered, ApiError> {
    let mut obj = native.clone();
    obj.insert("model".into(), serde_json::Value::String(target.model.to_string()));
    if fidelity::openai_reasoning(target.model) {
        for k in ["temperature", "top_p"] {
            if obj.get(k).and_then(serde_json::Value::as_f64).is_some_and(|v| v != 1.0) {
                tracing::debug!(
                    model = target.model,
                    field = k,
                    "dropped: reasoning models take only the default (1)"
                );
                obj.remove(k);
            }
        }
    }
    let body = serde_json::to_vec(&obj).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    Ok(Rendered {
        path,
        body: Bytes::from(body),
        headers,
        passthrough: true,
        json_mode: false,
        strip_usage: false,
        native_responses: true,
    })
}

/// Whether the client's body holds a field the target's model refuses (`fidelity`): looked for
/// only when the model is one that refuses some, and by a byte search before any parse.
fn refused_by_model(req: &LlmRequest, target: &RenderTarget<'_>) -> bool {
    target.kind != ProviderKind::Azure
        && fidelity::openai_reasoning(target.model)
        && ["\"max_tokens\"", "\"temperature\"", "\"top_p\""]
            .iter()
            .any(|k| memchr::memmem::find(&req.body, k.as_bytes()).is_some())
}

/// Whether to ask OpenAI (or Azure) for the usage of a stream whose client did not: the cost of
/// a streamed request must come from the provider's count, not an estimate. Only where
/// `stream_options` is known to be accepted, and only when the client sent none.
fn wants_usage(req: &LlmRequest, target: &RenderTarget<'_>) -> bool {
    req.stream
        && !req.include_usage
        && matches!(req.endpoint, Endpoint::ChatCompletions | Endpoint::Completions)
        && matches!(target.kind, ProviderKind::OpenAi | ProviderKind::Azure)
        && memchr::memmem::find(&req.body, b"\"stream_options\"").is_none()
}

/// The body with `"stream_options":{"include_usage":true}` as its first member.
fn with_stream_usage(body: &[u8]) -> Bytes {
    const MEMBER: &[u8] = br#""stream_options":{"include_usage":true},"#;
    let Some(open) = body.iter().position(|&b| b == b'{') else {
        return Bytes::copy_from_slice(body);
    };
    if body[open + 1..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}') {
        return Bytes::copy_from_slice(body); // `{}`: nothing to put a comma after
    }
    let mut out = Vec::with_capacity(body.len() + MEMBER.len());
    out.extend_from_slice(&body[..=open]);
    out.extend_from_slice(MEMBER);
    out.extend_from_slice(&body[open + 1..]);
    Bytes::from(out)
}

/// The OpenAI path suffix the request becomes upstream.
fn suffix(req: &LlmRequest) -> &'static str {
    match req.endpoint {
        Endpoint::Messages => Endpoint::ChatCompletions.openai_suffix(),
        e => e.openai_suffix(),
    }
}

impl Adapter for OpenAiAdapter {
    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    fn render(&self, req: &LlmRequest, target: &RenderTarget<'_>) -> Result<Rendered, ApiError> {
        if let (Some(native), ProviderKind::OpenAi) = (&req.responses_native, target.kind) {
            return render_responses(native, target, format!("{}/responses", target.path_prefix), Vec::new());
        }
        let (body, passthrough) = render_body(req, target)?;
        let path = format!("{}{}", target.path_prefix, suffix(req));
        Ok(Rendered {
            path,
            body,
            headers: Vec::new(),
            passthrough,
            json_mode: false,
            strip_usage: passthrough && wants_usage(req, target),
            native_responses: false,
        })
    }

    fn parse_chat(&self, body: &[u8], _: &Rendered) -> Result<ChatResponse, StreamFault> {
        serde_json::from_slice(body).map_err(|e| StreamFault::Malformed(e.to_string()))
    }

    fn chat_stream(&self, _: &Rendered) -> Box<dyn ChunkSource> {
        Box::new(OpenAiChunks {
            decoder: SseDecoder::default(),
            usage: None,
            done: false,
        })
    }

    fn error_body(&self, status: u16, body: &[u8]) -> Bytes {
        openai_error_body(status, body)
    }

    fn usage_of(&self, body: &[u8]) -> Option<Usage> {
        usage_of(body)
    }

    fn observer(&self) -> Box<dyn Observer> {
        Box::new(OpenAiObserver {
            decoder: SseDecoder::default(),
            usage: None,
            done: false,
            broken: false,
            text: String::new(),
        })
    }
}

/// Watches a Responses API event stream passed through from OpenAI: the usage of its final
/// `response.completed` / `response.incomplete` event, which is also what makes it complete.
#[derive(Default)]
pub struct ResponsesObserver {
    decoder: SseDecoder,
    usage: Option<Usage>,
    done: bool,
}

impl Observer for ResponsesObserver {
    fn push(&mut self, bytes: &[u8]) -> Result<(), Unreadable> {
        let (usage, done) = (&mut self.usage, &mut self.done);
        self.decoder
            .push(bytes, &mut |e: SseEvent| {
                let end = e.data.contains("\"response.completed\"") || e.data.contains("\"response.incomplete\"");
                if !end {
                    return;
                }
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&e.data) {
                    if let Some(u) = v.pointer("/response/usage") {
                        *usage = serde_json::from_value(u.clone()).ok();
                    }
                    *done = true;
                }
            })
            .map_err(|e| Unreadable { detail: e.to_string() })
    }

    fn finish(&mut self) -> Result<(), Unreadable> {
        Ok(())
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn completed(&self) -> bool {
        self.done
    }
}

impl Adapter for AzureAdapter {
    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    /// `{base}/openai/deployments/{deployment}/{chat/completions|completions|embeddings}?api-version=V`;
    /// the target's `model` is the deployment name.
    fn render(&self, req: &LlmRequest, target: &RenderTarget<'_>) -> Result<Rendered, ApiError> {
        // Entra ID: a bearer token from the credentials cell instead of an `api-key`.
        let token = match target.options.token {
            Some(_) => Some(super::bearer(target)?),
            None => None,
        };
        // Azure's Responses API is its v1 surface: the deployment goes in the body's `model`.
        if let Some(native) = &req.responses_native {
            let path = format!("{}/openai/v1/responses", target.path_prefix);
            return render_responses(native, target, path, token.into_iter().collect());
        }
        let (body, passthrough) = render_body(req, target)?;
        let version = target.options.api_version.as_deref().unwrap_or_default();
        let path = format!(
            "{}/openai/deployments/{}{}?api-version={}",
            target.path_prefix,
            target.model,
            suffix(req),
            version
        );
        Ok(Rendered {
            path,
            body,
            headers: token.into_iter().collect(),
            passthrough,
            json_mode: false,
            strip_usage: passthrough && wants_usage(req, target),
            native_responses: false,
        })
    }

    fn parse_chat(&self, body: &[u8], r: &Rendered) -> Result<ChatResponse, StreamFault> {
        OpenAiAdapter.parse_chat(body, r)
    }

    fn chat_stream(&self, r: &Rendered) -> Box<dyn ChunkSource> {
        OpenAiAdapter.chat_stream(r)
    }

    fn error_body(&self, status: u16, body: &[u8]) -> Bytes {
        openai_error_body(status, body)
    }

    fn usage_of(&self, body: &[u8]) -> Option<Usage> {
        usage_of(body)
    }

    fn observer(&self) -> Box<dyn Observer> {
        OpenAiAdapter.observer()
    }
}

/// An OpenAI-shaped error body: the provider's own when it already is one, else a wrapper that
/// keeps the provider's text.
pub fn openai_error_body(status: u16, body: &[u8]) -> Bytes {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if v.get("error").is_some_and(|e| e.is_object()) {
            return Bytes::copy_from_slice(body);
        }
    }
    let text: String = String::from_utf8_lossy(body).chars().take(2000).collect();
    let kind = if status == 429 {
        "rate_limit_error"
    } else if status >= 500 {
        "api_error"
    } else {
        "invalid_request_error"
    };
    Bytes::from(json!({"error": {"message": text, "type": kind, "param": null, "code": null}}).to_string())
}

/// Decodes an OpenAI stream into chunks (used when the client speaks another wire format).
struct OpenAiChunks {
    decoder: SseDecoder,
    usage: Option<Usage>,
    done: bool,
}

impl OpenAiChunks {
    fn on_event(
        usage: &mut Option<Usage>,
        done: &mut bool,
        ev: SseEvent,
        out: &mut Vec<ChatChunk>,
    ) -> Result<(), StreamFault> {
        if ev.data == "[DONE]" {
            *done = true;
            return Ok(());
        }
        let chunk: ChatChunk = match serde_json::from_str(&ev.data) {
            Ok(c) => c,
            Err(e) => {
                // OpenAI reports in-stream errors as `data: {"error": {...}}`.
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&ev.data) {
                    if let Some(err) = v.get("error") {
                        let kind = err
                            .get("type")
                            .and_then(|t| t.as_str())
                            .unwrap_or("api_error")
                            .to_string();
                        let message = err.get("message").and_then(|t| t.as_str()).unwrap_or("").to_string();
                        return Err(StreamFault::Provider { kind, message });
                    }
                }
                return Err(StreamFault::Malformed(e.to_string()));
            }
        };
        if chunk.usage.is_some() {
            *usage = chunk.usage;
        }
        out.push(chunk);
        Ok(())
    }
}

impl ChunkSource for OpenAiChunks {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<ChatChunk>) -> Result<(), StreamFault> {
        let (usage, done) = (&mut self.usage, &mut self.done);
        let mut fault = Ok(());
        self.decoder
            .push(bytes, &mut |ev| {
                if fault.is_ok() {
                    fault = Self::on_event(usage, done, ev, out);
                }
            })
            .map_err(|e| StreamFault::Malformed(e.to_string()))?;
        fault
    }

    fn finish(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), StreamFault> {
        let (usage, done) = (&mut self.usage, &mut self.done);
        let mut fault = Ok(());
        self.decoder
            .finish(&mut |ev| {
                if fault.is_ok() {
                    fault = Self::on_event(usage, done, ev, out);
                }
            })
            .map_err(|e| StreamFault::Malformed(e.to_string()))?;
        fault
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn completed(&self) -> bool {
        self.done
    }
}

/// Watches an OpenAI stream relayed unchanged.
struct OpenAiObserver {
    decoder: SseDecoder,
    usage: Option<Usage>,
    done: bool,
    /// The observer gave up (an oversized event); bytes still flow to the client.
    broken: bool,
    /// The streamed completion text, to count when no usage arrives (no `include_usage`, a cut
    /// stream, a server that never reports it).
    text: String,
}

/// Appends the string values of the first `"content":"…"` / `"arguments":"…"` of an event:
/// a scan, not a parse (an unescaped `"key":"` cannot occur inside a JSON string). Escaped
/// values are decoded properly; most deltas have no escapes.
fn keep_delta_text(data: &str, text: &mut String) {
    for key in ["\"content\":\"", "\"arguments\":\"", "\"text\":\""] {
        let Some(at) = memchr::memmem::find(data.as_bytes(), key.as_bytes()) else {
            continue;
        };
        let start = at + key.len() - 1; // the opening quote
        let rest = &data.as_bytes()[start + 1..];
        // The closing quote: the first `"` not escaped by an odd run of backslashes.
        let mut end = None;
        let mut i = 0;
        while let Some(q) = memchr::memchr(b'"', &rest[i..]) {
            let pos = i + q;
            let slashes = rest[..pos].iter().rev().take_while(|&&b| b == b'\\').count();
            if slashes % 2 == 0 {
                end = Some(pos);
                break;
            }
            i = pos + 1;
        }
        let Some(end) = end else { continue };
        let raw = &data[start + 1..start + 1 + end];
        if text.len() + raw.len() > super::TEXT_LIMIT {
            return;
        }
        if raw.contains('\\') {
            if let Ok(s) = serde_json::from_str::<String>(&data[start..start + end + 2]) {
                text.push_str(&s);
            }
        } else {
            text.push_str(raw);
        }
    }
}

impl OpenAiObserver {
    fn observe(usage: &mut Option<Usage>, done: &mut bool, text: &mut String, ev: SseEvent) {
        if ev.data == "[DONE]" {
            *done = true;
        } else if let Some(u) = usage_of(ev.data.as_bytes()) {
            *usage = Some(u);
        } else if usage.is_none() {
            keep_delta_text(&ev.data, text);
        }
    }
}

impl Observer for OpenAiObserver {
    /// An oversized event ends observing (the decoder cannot resync); it is reported once.
    fn push(&mut self, bytes: &[u8]) -> Result<(), Unreadable> {
        if self.broken {
            return Ok(());
        }
        let (usage, done, text) = (&mut self.usage, &mut self.done, &mut self.text);
        self.decoder
            .push(bytes, &mut |ev| Self::observe(usage, done, text, ev))
            .map_err(|e| {
                self.broken = true;
                Unreadable { detail: e.to_string() }
            })
    }

    fn finish(&mut self) -> Result<(), Unreadable> {
        if self.broken {
            return Ok(());
        }
        let (usage, done, text) = (&mut self.usage, &mut self.done, &mut self.text);
        self.decoder
            .finish(&mut |ev| Self::observe(usage, done, text, ev))
            .map_err(|e| Unreadable { detail: e.to_string() })
    }

    fn completion_text(&self) -> Option<&str> {
        Some(&self.text)
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn completed(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\ndata: [DONE]\n\n";

    #[test]
    fn delta_text_is_kept_with_escapes_decoded() {
        let mut text = String::new();
        keep_delta_text(r#"{"choices":[{"delta":{"content":"say \"hi\"\n"}}]}"#, &mut text);
        keep_delta_text(r#"{"choices":[{"delta":{"content":"plain"}}]}"#, &mut text);
        keep_delta_text(
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]}}]}"#,
            &mut text,
        );
        keep_delta_text(r#"{"choices":[{"delta":{"content":"unterminated"#, &mut text);
        assert_eq!(text, "say \"hi\"\nplain{\"a\":1}");
    }

    #[test]
    fn stream_usage_is_asked_for_as_the_first_member() {
        let b = with_stream_usage(br#" {"model":"m","stream":true}"#);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["model"], "m");
        assert_eq!(&with_stream_usage(b"{ }")[..], b"{ }");
    }

    #[test]
    fn observer_finds_usage_and_done_across_every_split() {
        for cut in 0..STREAM.len() {
            let mut o = OpenAiAdapter.observer();
            o.push(&STREAM[..cut]).unwrap();
            o.push(&STREAM[cut..]).unwrap();
            o.finish().unwrap();
            assert_eq!(o.usage(), Some(Usage::new(5, 2)));
            assert!(o.completed());
        }
    }

    #[test]
    fn an_oversized_event_is_reported_once_and_ends_observing() {
        let mut o = OpenAiAdapter.observer();
        let big = vec![b'x'; crate::sse::DEFAULT_MAX_EVENT + 1];
        let mut event = b"data: ".to_vec();
        event.extend_from_slice(&big);
        let e = o.push(&event).unwrap_err();
        assert!(e.detail.contains("exceeded"), "{e:?}");
        assert_eq!(o.push(STREAM), Ok(()), "reported once");
        assert_eq!(o.finish(), Ok(()));
        assert_eq!(o.usage(), None);
    }

    #[test]
    fn chunk_source_decodes_every_split_identically() {
        let whole = {
            let mut s = OpenAiChunks {
                decoder: SseDecoder::default(),
                usage: None,
                done: false,
            };
            let mut out = Vec::new();
            s.push(STREAM, &mut out).unwrap();
            s.finish(&mut out).unwrap();
            assert!(s.completed());
            out
        };
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].choices[0].delta.content.as_deref(), Some("hi"));
        for cut in 0..STREAM.len() {
            let mut s = OpenAiChunks {
                decoder: SseDecoder::default(),
                usage: None,
                done: false,
            };
            let mut out = Vec::new();
            s.push(&STREAM[..cut], &mut out).unwrap();
            s.push(&STREAM[cut..], &mut out).unwrap();
            s.finish(&mut out).unwrap();
            assert_eq!(out, whole, "split at {cut}");
        }
    }

    #[test]
    fn in_stream_errors_are_faults() {
        let mut s = OpenAiChunks {
            decoder: SseDecoder::default(),
            usage: None,
            done: false,
        };
        let err = s.push(
            b"data: {\"error\":{\"type\":\"server_error\",\"message\":\"boom\"}}\n\n",
            &mut Vec::new(),
        );
        assert_eq!(
            err,
            Err(StreamFault::Provider {
                kind: "server_error".into(),
                message: "boom".into()
            })
        );
    }

    #[test]
    fn error_bodies_are_kept_or_wrapped() {
        let own = br#"{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        assert_eq!(&openai_error_body(401, own)[..], &own[..]);
        let v: serde_json::Value =
            serde_json::from_slice(&openai_error_body(502, b"<html>bad gateway</html>")).unwrap();
        assert_eq!(v["error"]["message"], "<html>bad gateway</html>");
        assert_eq!(v["error"]["type"], "api_error");
    }
}
