//! Google Vertex AI: Gemini models (`kind: vertex`) and Anthropic's Claude models
//! (`kind: vertex_anthropic`) in a Google Cloud project and region, authenticated with an OAuth
//! access token (`Authorization: Bearer`) that `crate::credentials` keeps fresh from a service
//! account key or the metadata server.
//!
//! The bodies are the dialects' own, so both adapters delegate to them: Gemini's requests and
//! answers are the Google AI API's, below `{base}/v1/projects/{p}/locations/{r}/publishers/google`
//! (the provider's path prefix); Claude's are the Messages API's, sent to
//! `…/publishers/anthropic/models/{model}:rawPredict` (`:streamRawPredict` for a stream) with the
//! model in the path instead of the body and `anthropic_version: "vertex-2023-10-16"` in it.

use bytes::Bytes;

use super::anthropic::AnthropicAdapter;
use super::gemini::GeminiAdapter;
use super::{bearer, Adapter, ChunkSource, Observer, RenderTarget, Rendered, StreamFault, Wire};
use crate::api::chat::{ChatResponse, Usage};
use crate::api::openai::LlmRequest;
use crate::api::{ApiError, Endpoint};

/// The Messages API version Vertex takes, in the body.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

pub struct VertexGeminiAdapter;
pub struct VertexAnthropicAdapter;

impl Adapter for VertexGeminiAdapter {
    fn wire(&self) -> Wire {
        GeminiAdapter.wire()
    }

    fn render(&self, req: &LlmRequest, target: &RenderTarget<'_>) -> Result<Rendered, ApiError> {
        if req.endpoint == Endpoint::Embeddings {
            return Err(ApiError::Unsupported(
                "Embeddings on Vertex AI are not served by this gateway (Vertex embeds with :predict); use a kind: gemini provider".into(),
            ));
        }
        let auth = bearer(target)?;
        let mut r = GeminiAdapter.render(req, target)?;
        r.headers.push(auth);
        Ok(r)
    }

    fn parse_chat(&self, body: &[u8], r: &Rendered) -> Result<ChatResponse, StreamFault> {
        GeminiAdapter.parse_chat(body, r)
    }

    fn chat_stream(&self, r: &Rendered) -> Box<dyn ChunkSource> {
        GeminiAdapter.chat_stream(r)
    }

    fn error_body(&self, status: u16, body: &[u8]) -> Bytes {
        GeminiAdapter.error_body(status, body)
    }

    fn usage_of(&self, body: &[u8]) -> Option<Usage> {
        GeminiAdapter.usage_of(body)
    }

    fn observer(&self) -> Box<dyn Observer> {
        GeminiAdapter.observer()
    }
}

impl Adapter for VertexAnthropicAdapter {
    fn wire(&self) -> Wire {
        AnthropicAdapter.wire()
    }

    fn render(&self, req: &LlmRequest, target: &RenderTarget<'_>) -> Result<Rendered, ApiError> {
        let auth = bearer(target)?;
        let mut r = AnthropicAdapter.render(req, target)?;
        // The model goes in the path; the version in the body, not in a header.
        let mut body: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&r.body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        body.remove("model");
        body.insert("anthropic_version".into(), ANTHROPIC_VERSION.into());
        r.body = Bytes::from(serde_json::to_vec(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?);
        let method = if req.stream { "streamRawPredict" } else { "rawPredict" };
        r.path = format!("{}/models/{}:{method}", target.path_prefix, target.model);
        r.headers.retain(|(k, _)| k != super::anthropic::VERSION_HEADER);
        r.headers.push(auth);
        Ok(r)
    }

    fn parse_chat(&self, body: &[u8], r: &Rendered) -> Result<ChatResponse, StreamFault> {
        AnthropicAdapter.parse_chat(body, r)
    }

    fn chat_stream(&self, r: &Rendered) -> Box<dyn ChunkSource> {
        AnthropicAdapter.chat_stream(r)
    }

    fn error_body(&self, status: u16, body: &[u8]) -> Bytes {
        AnthropicAdapter.error_body(status, body)
    }

    fn usage_of(&self, body: &[u8]) -> Option<Usage> {
        AnthropicAdapter.usage_of(body)
    }

    fn observer(&self) -> Box<dyn Observer> {
        AnthropicAdapter.observer()
    }
}
