//! The streaming relay's pure part: upstream body bytes in, client bytes out. Either the bytes
//! pass through unchanged while an observer watches them (same wire format on both sides), or
//! the provider's stream is decoded into canonical chunks and encoded in the client's format.

use bytes::{Bytes, BytesMut};

use crate::api::chat::{ChatChunk, Usage};
use crate::api::client::StreamEncoder;
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
