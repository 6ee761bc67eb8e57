//! The cache's write observer: a copy of the answer on its way to the client, read back into the
//! canonical answer once it ended cleanly, and handed to a sink (which stores it).
//!
//! The bytes are the client's (after translation), so they are read with the parser of the
//! client's own dialect: the provider adapters' (`ProviderKind::adapter`), which read OpenAI and
//! Anthropic answers, whole and streamed, into the canonical form. A streamed answer's chunks
//! are put together by `assemble`.
//!
//! In the relay's chain it sits after the output checks and before the restoration of redacted
//! values: what is stored is the redacted form, never the originals.
//!
//! Nothing is handed on for an answer that ended badly (a cut or errored stream, a failed
//! whole answer, an output block), that could not be read, or that outgrew `limit` bytes. The
//! observer passes every byte on unchanged.

use bytes::{Bytes, BytesMut};

use super::assemble::Assembler;
use crate::api::chat::{ChatChunk, ChatResponse};
use crate::api::observe::ResponseObserver;
use crate::api::Wire;
use crate::providers::{ChunkSource, ProviderKind, Rendered};

/// Where a captured answer goes.
pub type Sink = Box<dyn FnOnce(ChatResponse) + Send>;

enum Read {
    Whole(BytesMut),
    /// (Boxed: the assembler holds a whole answer.)
    Stream(Box<Streamed>),
}

struct Streamed {
    source: Box<dyn ChunkSource>,
    chunks: Vec<ChatChunk>,
    assembler: Assembler,
}

impl Streamed {
    /// Reads `bytes` (None: `end` of the stream) into the assembler; false: unreadable.
    fn feed(&mut self, bytes: Option<&[u8]>) -> bool {
        let read = match bytes {
            Some(b) => self.source.push(b, &mut self.chunks),
            None => self.source.finish(&mut self.chunks),
        };
        for c in self.chunks.drain(..) {
            self.assembler.push(&c);
        }
        read.is_ok()
    }
}

/// The write observer of one answer.
pub struct Capture {
    client: Wire,
    read: Read,
    seen: usize,
    limit: usize,
    /// Set when the copy stopped being usable (too large, unreadable).
    spoiled: bool,
    sink: Option<Sink>,
}

/// The adapter whose provider speaks the client's dialect.
fn reader(client: Wire) -> ProviderKind {
    match client {
        Wire::OpenAi => ProviderKind::OpenAi,
        Wire::Anthropic => ProviderKind::Anthropic,
    }
}

/// What the adapters' readers need of a rendered request: nothing emulated, nothing stripped.
fn plain() -> Rendered {
    Rendered {
        path: String::new(),
        body: Bytes::new(),
        headers: Vec::new(),
        passthrough: true,
        json_mode: false,
        strip_usage: false,
        native_responses: false,
    }
}

impl Capture {
    /// An observer for an answer to a `client` client, streamed or whole; answers over `limit`
    /// bytes are not kept.
    pub fn new(client: Wire, stream: bool, limit: usize, sink: Sink) -> Capture {
        let read = match stream {
            true => Read::Stream(Box::new(Streamed {
                source: reader(client).adapter().chat_stream(&plain()),
                chunks: Vec::new(),
                assembler: Assembler::default(),
            })),
            false => Read::Whole(BytesMut::new()),
        };
        Capture {
            client,
            read,
            seen: 0,
            limit,
            spoiled: false,
            sink: Some(sink),
        }
    }

    fn answer(&mut self) -> Option<ChatResponse> {
        match &mut self.read {
            Read::Whole(buf) => reader(self.client).adapter().parse_chat(buf, &plain()).ok(),
            Read::Stream(st) => {
                if !st.feed(None) || !st.source.completed() {
                    return None;
                }
                std::mem::take(&mut st.assembler).finish()
            }
        }
    }
}

impl ResponseObserver for Capture {
    fn body(&mut self, bytes: Bytes) -> Bytes {
        self.seen = self.seen.saturating_add(bytes.len());
        if self.spoiled || self.seen > self.limit {
            self.spoiled = true;
            return bytes;
        }
        match &mut self.read {
            Read::Whole(buf) => buf.extend_from_slice(&bytes),
            Read::Stream(st) => self.spoiled = !st.feed(Some(&bytes)),
        }
        bytes
    }

    fn end(&mut self, complete: bool) -> Bytes {
        if complete && !self.spoiled {
            if let (Some(answer), Some(sink)) = (self.answer(), self.sink.take()) {
                sink(answer);
            }
        }
        Bytes::new()
    }
}

#[cfg(test)]
mod tests;
