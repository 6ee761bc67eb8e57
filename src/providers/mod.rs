//! Provider dialects. `ProviderKind` is the one dispatch point: `kind.adapter()` returns the
//! module that renders the upstream request for a target and reads its responses and streams.
//! Adapters are pure (no I/O, no Pingora types) so the proxy, tests and benches share them.

pub mod openai;

use bytes::Bytes;

use crate::api::openai::{LlmRequest, Usage};
use crate::api::ApiError;
use crate::config::Target;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// api.openai.com.
    OpenAi,
    /// Any server speaking OpenAI's API (vLLM, Ollama, Groq, Mistral, DeepSeek, the mock, …).
    OpenAiCompatible,
}

impl ProviderKind {
    pub fn adapter(self) -> &'static dyn Adapter {
        match self {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => &openai::OpenAiAdapter,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenAiCompatible => "openai_compatible",
        }
    }
}

/// An upstream request ready to send (method is always POST).
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Path and query below the provider's host.
    pub path: String,
    pub body: Bytes,
}

/// What a stream translator produced from one upstream chunk.
pub trait StreamTranslator: Send {
    /// Takes an upstream body chunk, returns the bytes to send to the client (possibly empty).
    fn push(&mut self, chunk: Bytes) -> Bytes;
    /// The upstream body ended; returns any final bytes for the client.
    fn finish(&mut self) -> Bytes;
    /// Usage seen so far (the final usage once the stream is complete).
    fn usage(&self) -> Option<Usage>;
    /// Whether the stream reached its dialect's proper end (OpenAI: `data: [DONE]`).
    fn completed(&self) -> bool;
}

pub trait Adapter: Sync {
    fn render(&self, req: &LlmRequest, target: &Target) -> Result<Rendered, ApiError>;
    /// Usage from a complete (non-streamed) response body.
    fn response_usage(&self, body: &[u8]) -> Option<Usage>;
    /// A translator for one streamed response to `req`.
    fn stream_translator(&self, req: &LlmRequest) -> Box<dyn StreamTranslator>;
}
