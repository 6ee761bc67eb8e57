//! Writing answers in the client's wire format: the canonical (OpenAI) response, stream chunks
//! and errors, encoded for an OpenAI client or an Anthropic (`/v1/messages`) client.
//!
//! Used only on translated routes; passthrough routes relay the provider's bytes.

use bytes::{Bytes, BytesMut};

use super::chat::{ChatChunk, ChatResponse};
use super::error::error_body;
use super::messages::{to_anthropic_error, to_messages_response, AnthropicEncoder};
use crate::api::Wire;
use crate::sse::encode_event;

/// A complete canonical answer in the client's format.
pub fn response(client: Wire, resp: &ChatResponse) -> Bytes {
    let v = match client {
        Wire::OpenAi => serde_json::to_vec(resp),
        Wire::Anthropic => serde_json::to_vec(&to_messages_response(resp)),
    };
    Bytes::from(v.unwrap_or_default())
}

/// An OpenAI-shaped error body in the client's format.
pub fn error(client: Wire, status: u16, openai_body: &[u8]) -> Bytes {
    match client {
        Wire::OpenAi => Bytes::copy_from_slice(openai_body),
        Wire::Anthropic => to_anthropic_error(status, openai_body),
    }
}

/// Encodes canonical chunks as the client's stream.
pub enum StreamEncoder {
    /// `data: <chunk>` events and one final `data: [DONE]`. The usage-only chunk (no choices) is
    /// written only if the client asked for it with `stream_options.include_usage`.
    OpenAi {
        include_usage: bool,
    },
    Anthropic(Box<AnthropicEncoder>),
}

impl StreamEncoder {
    pub fn new(client: Wire, include_usage: bool) -> Self {
        match client {
            Wire::OpenAi => StreamEncoder::OpenAi { include_usage },
            Wire::Anthropic => StreamEncoder::Anthropic(Box::default()),
        }
    }

    pub fn push(&mut self, chunk: &ChatChunk, out: &mut BytesMut) {
        match self {
            StreamEncoder::OpenAi { include_usage } => {
                if chunk.choices.is_empty() && (!*include_usage || chunk.usage.is_none()) {
                    return;
                }
                let mut c = std::borrow::Cow::Borrowed(chunk);
                if !*include_usage && chunk.usage.is_some() {
                    c.to_mut().usage = None;
                }
                if let Ok(json) = serde_json::to_string(&*c) {
                    encode_event(out, None, &json);
                }
            }
            StreamEncoder::Anthropic(enc) => enc.push(chunk, out),
        }
    }

    /// The upstream ended cleanly.
    pub fn finish(&mut self, out: &mut BytesMut) {
        match self {
            StreamEncoder::OpenAi { .. } => encode_event(out, None, "[DONE]"),
            StreamEncoder::Anthropic(enc) => enc.finish(out),
        }
    }

    /// The stream failed after it started: an explicit error event, and no clean end.
    pub fn error(&self, out: &mut BytesMut, code: &str, message: &str) {
        match self {
            StreamEncoder::OpenAi { .. } => {
                let body = error_body(message, "api_error", None, Some(code));
                encode_event(out, None, std::str::from_utf8(&body).unwrap_or("{}"));
            }
            StreamEncoder::Anthropic(_) => AnthropicEncoder::error(out, "api_error", message),
        }
    }
}
