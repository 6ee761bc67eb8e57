//! Provider dialects. `ProviderKind` is the one dispatch point: `kind.adapter()` returns the
//! module that renders the upstream request for a target and reads its responses and streams.
//! Adapters are pure (no I/O, no Pingora types) so the proxy, tests and benches share them.
//!
//! The contract: a request whose client wire format equals the provider's (`Adapter::wire`) is
//! passed through with only `model` replaced, and its answer relayed unchanged while it is
//! observed for usage. Otherwise the request goes through the canonical OpenAI chat form
//! (`api::chat`): the adapter renders it in its dialect and turns the answer back into canonical
//! responses or chunks, which the client's encoder (`api::client`) writes in the client's format.

pub mod anthropic;
pub mod bedrock;
pub mod fidelity;
pub mod gemini;
pub mod openai;
pub mod presets;
mod target;
pub mod translate;
pub mod vertex;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use crate::api::chat::{ChatChunk, ChatResponse, Usage};
use crate::api::openai::LlmRequest;
use crate::api::ApiError;
/// The wire formats are the client's (`api`); an adapter says which one its provider speaks.
pub use crate::api::Wire;
pub use target::{AwsCredentials, AwsKeys, ProviderOptions, RenderTarget};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// api.openai.com.
    OpenAi,
    /// Any server speaking OpenAI's API (vLLM, Ollama, Groq, Mistral, DeepSeek, the mock, …).
    OpenAiCompatible,
    /// Azure OpenAI: deployment URLs, `api-key` header.
    Azure,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini API (Google AI, `x-goog-api-key`); always translated.
    Gemini,
    /// AWS Bedrock Runtime (Converse API, SigV4-signed); always translated.
    Bedrock,
    /// Gemini models on Google Vertex AI (OAuth access token); always translated.
    Vertex,
    /// Anthropic's Claude models on Google Vertex AI (Messages bodies, OAuth access token).
    VertexAnthropic,
}

impl ProviderKind {
    pub fn adapter(self) -> &'static dyn Adapter {
        match self {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => &openai::OpenAiAdapter,
            ProviderKind::Azure => &openai::AzureAdapter,
            ProviderKind::Anthropic => &anthropic::AnthropicAdapter,
            ProviderKind::Gemini => &gemini::GeminiAdapter,
            ProviderKind::Bedrock => &bedrock::BedrockAdapter,
            ProviderKind::Vertex => &vertex::VertexGeminiAdapter,
            ProviderKind::VertexAnthropic => &vertex::VertexAnthropicAdapter,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenAiCompatible => "openai_compatible",
            ProviderKind::Azure => "azure",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Vertex => "vertex",
            ProviderKind::VertexAnthropic => "vertex_anthropic",
        }
    }

    /// The header carrying the key, and the prefix of its value.
    pub fn auth_header(self) -> (HeaderName, &'static str) {
        match self {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => (http::header::AUTHORIZATION, "Bearer "),
            ProviderKind::Azure => (HeaderName::from_static("api-key"), ""),
            ProviderKind::Anthropic => (HeaderName::from_static("x-api-key"), ""),
            ProviderKind::Gemini => (HeaderName::from_static("x-goog-api-key"), ""),
            // Bedrock has no key header: requests are signed (`bedrock::sigv4`) and it has no keys.
            ProviderKind::Bedrock => (http::header::AUTHORIZATION, ""),
            // Vertex's bearer token comes from its credentials cell at render time.
            ProviderKind::Vertex | ProviderKind::VertexAnthropic => (http::header::AUTHORIZATION, "Bearer "),
        }
    }
}

/// `Authorization: Bearer <token>` from the provider's credentials cell (Vertex, Azure with Entra
/// ID), or why there is none.
pub fn bearer(target: &RenderTarget<'_>) -> Result<(HeaderName, http::HeaderValue), ApiError> {
    let Some(cell) = &target.options.token else {
        return Err(ApiError::CredentialsUnavailable {
            provider: target.provider.to_string(),
            cause: "no credential source is configured".into(),
        });
    };
    let issued = cell.current().map_err(|cause| ApiError::CredentialsUnavailable {
        provider: target.provider.to_string(),
        cause,
    })?;
    let token = issued
        .material
        .bearer()
        .ok_or_else(|| ApiError::CredentialsUnavailable {
            provider: target.provider.to_string(),
            cause: "the credential source issues no access token".into(),
        })?;
    let value =
        HeaderValue::try_from(format!("Bearer {}", token.expose())).map_err(|_| ApiError::CredentialsUnavailable {
            provider: target.provider.to_string(),
            cause: "the access token cannot go in an HTTP header".into(),
        })?;
    Ok((http::header::AUTHORIZATION, value))
}

/// How much completion text is kept for counting (by the relay and by observers): ~256k tokens,
/// far above any single answer.
pub const TEXT_LIMIT: usize = 1 << 20;

/// An upstream request ready to send (method is always POST), plus what reading its answer needs.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Path and query below the provider's host.
    pub path: String,
    pub body: Bytes,
    /// Dialect headers besides auth, content type and length (e.g. `anthropic-version`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The answer is relayed unchanged (client and provider speak the same wire format).
    pub passthrough: bool,
    /// JSON mode was emulated (Anthropic): the forced tool call becomes the message text.
    pub json_mode: bool,
    /// The gateway asked the provider for stream usage the client did not ask for: the usage
    /// chunk is counted, then kept from the client.
    pub strip_usage: bool,
    /// A Responses API request sent to OpenAI as it is (its answer is the Responses format).
    pub native_responses: bool,
}

/// Why a provider's answer could not be translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamFault {
    /// Not the format the dialect promises.
    Malformed(String),
    /// The provider reported an error in-band (e.g. Anthropic's `error` event).
    Provider { kind: String, message: String },
}

impl StreamFault {
    pub fn message(&self) -> String {
        match self {
            StreamFault::Malformed(m) => format!("unreadable provider response: {m}"),
            StreamFault::Provider { kind, message } => format!("provider error ({kind}): {message}"),
        }
    }
}

/// Turns a provider's streamed body into canonical chunks, statefully, as bytes arrive.
pub trait ChunkSource: Send {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<ChatChunk>) -> Result<(), StreamFault>;
    /// The upstream body ended.
    fn finish(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), StreamFault>;
    fn usage(&self) -> Option<Usage>;
    /// Whether the stream reached its dialect's proper end.
    fn completed(&self) -> bool;
}

/// Part of a relayed stream an observer could not read. The bytes reached the client unchanged;
/// only what the gateway learns from them (usage, the proper end) may be missing, so the caller
/// counts it and the request's usage may end up estimated.
///
/// `detail` is the decoder's or the JSON parser's message. It can quote the provider's output
/// (serde quotes a value of the wrong type), so whoever logs it caps it (`proxy::relay` logs
/// at most 120 bytes of it, once per stream); it never holds the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub detail: String,
}

/// Watches a passthrough stream (relayed unchanged) for usage and its proper end.
pub trait Observer: Send {
    /// Reads a chunk; `Err` when part of it could not be read (observing goes on where it can).
    fn push(&mut self, bytes: &[u8]) -> Result<(), Unreadable>;
    /// The upstream body ended; `Err` when what was held back could not be read.
    fn finish(&mut self) -> Result<(), Unreadable>;
    fn usage(&self) -> Option<Usage>;
    fn completed(&self) -> bool;
    /// The completion text seen so far, for observers that keep it (to count the tokens of a
    /// stream that ends without usage).
    fn completion_text(&self) -> Option<&str> {
        None
    }
}

pub trait Adapter: Sync {
    /// The wire format this provider accepts verbatim.
    fn wire(&self) -> Wire;
    fn render(&self, req: &LlmRequest, target: &RenderTarget<'_>) -> Result<Rendered, ApiError>;
    /// A non-streamed success body → canonical (not called for passthrough).
    fn parse_chat(&self, body: &[u8], rendered: &Rendered) -> Result<ChatResponse, StreamFault>;
    /// A streamed success body → canonical chunks (not called for passthrough).
    fn chat_stream(&self, rendered: &Rendered) -> Box<dyn ChunkSource>;
    /// A provider error body → an OpenAI-shaped error body keeping the provider's message.
    fn error_body(&self, status: u16, body: &[u8]) -> Bytes;
    /// Usage in a complete body of this wire format.
    fn usage_of(&self, body: &[u8]) -> Option<Usage>;
    /// An observer for a passthrough stream of this wire format.
    fn observer(&self) -> Box<dyn Observer>;
    /// A translated (not passthrough) embeddings success body → the OpenAI embeddings body.
    /// `req` is the client's request (its `encoding_format` decides float or base64 output).
    fn parse_embeddings(&self, req: &LlmRequest, body: &[u8], rendered: &Rendered) -> Result<Bytes, StreamFault> {
        let _ = (req, body, rendered);
        Err(StreamFault::Malformed(
            "embeddings are not supported by this provider".into(),
        ))
    }
}

/// A dialect's stream translator, one SSE event at a time; `SseChunks` supplies the framing.
pub trait EventTranslator: Send {
    /// Translates one event's `data`, appending canonical chunks.
    fn on_event(&mut self, data: &str, out: &mut Vec<ChatChunk>) -> Result<(), StreamFault>;
    /// The body ended: flush anything held back.
    fn end(&mut self, _out: &mut Vec<ChatChunk>) {}
    fn usage(&self) -> Option<Usage>;
    fn completed(&self) -> bool;
}

/// An SSE-framed provider stream: the incremental decoder feeding a dialect's `EventTranslator`.
pub struct SseChunks<T> {
    decoder: crate::sse::SseDecoder,
    pub translator: T,
}

impl<T: EventTranslator> SseChunks<T> {
    pub fn new(translator: T) -> Self {
        SseChunks {
            decoder: crate::sse::SseDecoder::default(),
            translator,
        }
    }

    fn run(&mut self, bytes: Option<&[u8]>, out: &mut Vec<ChatChunk>) -> Result<(), StreamFault> {
        let t = &mut self.translator;
        let mut fault = Ok(());
        let mut on = |ev: crate::sse::SseEvent| {
            if fault.is_ok() {
                fault = t.on_event(&ev.data, out);
            }
        };
        match bytes {
            Some(b) => self.decoder.push(b, &mut on),
            None => self.decoder.finish(&mut on),
        }
        .map_err(|e| StreamFault::Malformed(e.to_string()))?;
        fault
    }
}

impl<T: EventTranslator> ChunkSource for SseChunks<T> {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<ChatChunk>) -> Result<(), StreamFault> {
        self.run(Some(bytes), out)
    }

    fn finish(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), StreamFault> {
        self.run(None, out)?;
        self.translator.end(out);
        Ok(())
    }

    fn usage(&self) -> Option<Usage> {
        self.translator.usage()
    }

    fn completed(&self) -> bool {
        self.translator.completed()
    }
}

/// An observer made of a dialect's chunk source: it decodes the relayed stream for usage and its
/// end, and discards the chunks. A malformed event is reported (`Unreadable`); an error the
/// provider sent in-band is not: the client receives it as sent, and it is no parse error.
pub fn observe<S: ChunkSource + 'static>(source: S) -> Box<dyn Observer> {
    struct Observe<S> {
        inner: S,
        scratch: Vec<ChatChunk>,
    }
    fn unreadable(r: Result<(), StreamFault>) -> Result<(), Unreadable> {
        match r {
            Err(StreamFault::Malformed(detail)) => Err(Unreadable { detail }),
            Ok(()) | Err(StreamFault::Provider { .. }) => Ok(()),
        }
    }
    impl<S: ChunkSource> Observer for Observe<S> {
        fn push(&mut self, bytes: &[u8]) -> Result<(), Unreadable> {
            let r = self.inner.push(bytes, &mut self.scratch);
            self.scratch.clear();
            unreadable(r)
        }
        fn finish(&mut self) -> Result<(), Unreadable> {
            let r = self.inner.finish(&mut self.scratch);
            self.scratch.clear();
            unreadable(r)
        }
        fn usage(&self) -> Option<Usage> {
            self.inner.usage()
        }
        fn completed(&self) -> bool {
            self.inner.completed()
        }
    }
    Box::new(Observe {
        inner: source,
        scratch: Vec::new(),
    })
}
