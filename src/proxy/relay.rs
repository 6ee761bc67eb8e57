//! The streaming relay's pure part: upstream body bytes in, client bytes out. Either the bytes
//! pass through unchanged while an observer watches them (same wire format on both sides), or
//! the provider's stream is decoded into canonical chunks and encoded in the client's format.
//! Either way the usage is counted here, the one place that sees the provider's usage fields;
//! what goes to the client then runs through the relay's observers (`api::observe`), of which
//! `UsageStripper` is one.

use bytes::{Bytes, BytesMut};

use crate::api::chat::{ChatChunk, Usage};
use crate::api::client::StreamEncoder;
use crate::api::observe::ResponseObserver;
use crate::providers::{Adapter, ChunkSource, Observer, Rendered, StreamFault, Wire};

pub enum Relay {
    Pass {
        observer: Box<dyn Observer>,
        client: Wire,
    },
    Translate {
        source: Box<dyn ChunkSource>,
        encoder: StreamEncoder,
        chunks: Vec<ChatChunk>,
        /// The completion text (content, reasoning, tool arguments) that went to the client,
        /// up to `TEXT_LIMIT`, to count tokens when the stream ends without usage.
        text: String,
    },
}

/// Re-frames an OpenAI stream's events (`data: …` lines only, so nothing is lost) and leaves
/// out the usage-only chunk (`"choices":[]` with `usage`): the observer for a passthrough stream
/// whose usage chunk the gateway asked for and the client did not (`Rendered::strip_usage`).
#[derive(Default)]
pub struct UsageStripper {
    decoder: crate::sse::SseDecoder,
}

impl UsageStripper {
    fn emit(out: &mut BytesMut, ev: crate::sse::SseEvent) {
        let usage_only = ev.data.contains("\"usage\"")
            && serde_json::from_str::<serde_json::Value>(&ev.data)
                .is_ok_and(|v| v["usage"].is_object() && v["choices"].as_array().is_some_and(Vec::is_empty));
        if !usage_only {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(ev.data.as_bytes());
            out.extend_from_slice(b"\n\n");
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        if self.decoder.push(bytes, &mut |ev| Self::emit(&mut out, ev)).is_err() {
            // An oversized event: pass the bytes on rather than lose them.
            return Bytes::copy_from_slice(bytes);
        }
        out.freeze()
    }

    fn finish(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        let _ = self.decoder.finish(&mut |ev| Self::emit(&mut out, ev));
        out.freeze()
    }
}

impl ResponseObserver for UsageStripper {
    fn body(&mut self, bytes: Bytes) -> Bytes {
        self.push(&bytes)
    }

    fn end(&mut self, _complete: bool) -> Bytes {
        self.finish()
    }
}

/// How much completion text is kept for counting: ~256k tokens, far above any single answer.
pub const TEXT_LIMIT: usize = 1 << 20;

/// Appends a chunk's text to `text`, up to `TEXT_LIMIT`.
fn keep_text(text: &mut String, c: &ChatChunk) {
    for choice in &c.choices {
        let d = &choice.delta;
        let tools = d
            .tool_calls
            .iter()
            .flatten()
            .filter_map(|t| t.function.as_ref()?.arguments.as_deref());
        for piece in d
            .content
            .iter()
            .chain(d.reasoning_content.iter())
            .map(String::as_str)
            .chain(tools)
        {
            if text.len() + piece.len() <= TEXT_LIMIT {
                text.push_str(piece);
            }
        }
    }
}

impl Relay {
    pub fn new(adapter: &dyn Adapter, rendered: &Rendered, client: Wire, include_usage: bool) -> Relay {
        if rendered.passthrough {
            Relay::Pass {
                observer: adapter.observer(),
                client,
            }
        } else {
            Relay::Translate {
                source: adapter.chat_stream(rendered),
                encoder: StreamEncoder::new(client, include_usage),
                chunks: Vec::new(),
                text: String::new(),
            }
        }
    }

    /// One upstream chunk → the bytes for the client (possibly empty).
    pub fn push(&mut self, bytes: Bytes) -> Result<Bytes, StreamFault> {
        match self {
            Relay::Pass { observer, .. } => {
                observer.push(&bytes);
                Ok(bytes)
            }
            Relay::Translate {
                source,
                encoder,
                chunks,
                text,
            } => {
                source.push(&bytes, chunks)?;
                Ok(encode(encoder, chunks, text))
            }
        }
    }

    /// The upstream body ended: the final bytes. The stream is complete only if `completed()`.
    pub fn finish(&mut self) -> Result<Bytes, StreamFault> {
        match self {
            Relay::Pass { observer, .. } => {
                observer.finish();
                Ok(Bytes::new())
            }
            Relay::Translate {
                source,
                encoder,
                chunks,
                text,
            } => {
                source.finish(chunks)?;
                let mut out = BytesMut::new();
                for c in chunks.drain(..) {
                    keep_text(text, &c);
                    encoder.push(&c, &mut out);
                }
                if source.completed() {
                    encoder.finish(&mut out);
                }
                Ok(out.freeze())
            }
        }
    }

    pub fn completed(&self) -> bool {
        match self {
            Relay::Pass { observer, .. } => observer.completed(),
            Relay::Translate { source, .. } => source.completed(),
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        match self {
            Relay::Pass { observer, .. } => observer.usage(),
            Relay::Translate { source, .. } => source.usage(),
        }
    }

    /// The completion text seen so far, when the gateway kept it (to count tokens the
    /// provider did not report).
    pub fn completion_text(&self) -> Option<&str> {
        match self {
            Relay::Pass { observer, .. } => observer.completion_text(),
            Relay::Translate { text, .. } => Some(text),
        }
    }

    /// An in-band error event in the client's format.
    pub fn error_event(&self, code: &str, message: &str) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Relay::Pass { client, .. } => StreamEncoder::new(*client, false).error(&mut out, code, message),
            Relay::Translate { encoder, .. } => encoder.error(&mut out, code, message),
        }
        out.freeze()
    }
}

fn encode(encoder: &mut StreamEncoder, chunks: &mut Vec<ChatChunk>, text: &mut String) -> Bytes {
    if chunks.is_empty() {
        return Bytes::new();
    }
    let mut out = BytesMut::new();
    for c in chunks.drain(..) {
        keep_text(text, &c);
        encoder.push(&c, &mut out);
    }
    out.freeze()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_stripper_drops_only_the_usage_chunk_whatever_the_split() {
        let stream = concat!(
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
            "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n",
            "data: [DONE]\n\n"
        );
        for split in 1..stream.len() {
            let mut s = UsageStripper::default();
            let mut out = Vec::new();
            out.extend_from_slice(&s.push(&stream.as_bytes()[..split]));
            out.extend_from_slice(&s.push(&stream.as_bytes()[split..]));
            out.extend_from_slice(&s.finish());
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains("prompt_tokens"), "{text}");
            assert_eq!(text.matches("data: ").count(), 3, "{text}");
            assert!(text.ends_with("data: [DONE]\n\n"));
            assert!(text.contains("\"finish_reason\":\"stop\""));
        }
    }

    #[test]
    fn translated_text_is_kept_up_to_the_limit() {
        let mut text = String::new();
        let delta = crate::api::chat::Delta {
            content: Some("abc".into()),
            ..Default::default()
        };
        let chunk = ChatChunk::single("id", 0, "m", 0, delta, None);
        keep_text(&mut text, &chunk);
        assert_eq!(text, "abc");
        text = "x".repeat(TEXT_LIMIT - 1);
        keep_text(&mut text, &chunk);
        assert_eq!(text.len(), TEXT_LIMIT - 1, "a piece that does not fit is not kept");
    }
}
