//! The Google Gemini dialect (the Google AI API, `generativelanguage.googleapis.com/v1beta`, key in
//! `x-goog-api-key`). No client speaks Gemini, so nothing passes through: every chat request
//! (OpenAI or Anthropic client) is rendered from the canonical form (`request`), and answers and
//! streams are translated back (`response`, `stream`); OpenAI embeddings become
//! `batchEmbedContents` (`embeddings`). Legacy completions are not served.
//!
//! Paths below the configured base URL: `/models/{model}:generateContent`,
//! `/models/{model}:streamGenerateContent?alt=sse` (SSE; without `alt=sse` Google streams one
//! JSON array), `/models/{model}:batchEmbedContents`.

pub mod embeddings;
pub mod request;
pub mod response;
pub mod schema;
pub mod stream;
pub mod types;

#[cfg(test)]
mod golden_tests;

use crate::providers::{observe, SseChunks};
use bytes::Bytes;
use serde_json::json;

use super::{Adapter, ChunkSource, Observer, RenderTarget, Rendered, StreamFault, Wire};
use crate::api::chat::{ChatResponse, Usage};
use crate::api::openai::LlmRequest;
use crate::api::{ApiError, Endpoint};
use crate::time::unix_secs;
use stream::GeminiStream;
use types::{ErrorBody, GenerateContentResponse};

pub struct GeminiAdapter;

/// The upstream model named in a rendered path (`…/models/{model}:{method}`).
fn model_of(path: &str) -> &str {
    let after = path.rsplit_once("/models/").map_or(path, |(_, m)| m);
    after.split_once(':').map_or(after, |(m, _)| m)
}

fn encode(body: &impl serde::Serialize) -> Result<Bytes, ApiError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| ApiError::InvalidJson(e.to_string()))
}

impl Adapter for GeminiAdapter {
    /// Never compared with a client's wire: no client speaks Gemini, and `render` never sets
    /// `passthrough`.
    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    fn render(&self, req: &LlmRequest, target: &RenderTarget<'_>) -> Result<Rendered, ApiError> {
        let base = format!("{}/models/{}", target.path_prefix, target.model);
        let (path, body) = match req.endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses => {
                let body = encode(&request::to_gemini(req.canonical()?, target.model)?)?;
                let path = if req.stream {
                    format!("{base}:streamGenerateContent?alt=sse")
                } else {
                    format!("{base}:generateContent")
                };
                (path, body)
            }
            Endpoint::Embeddings => (
                format!("{base}:batchEmbedContents"),
                encode(&embeddings::to_batch(&req.body, target.model)?)?,
            ),
            Endpoint::Completions => {
                return Err(ApiError::Unsupported(
                    "Gemini models do not serve the legacy completions endpoint; use /v1/chat/completions".into(),
                ))
            }
        };
        Ok(Rendered {
            path,
            body,
            headers: Vec::new(),
            passthrough: false,
            json_mode: false,
            strip_usage: false,
            native_responses: false,
        })
    }

    fn parse_chat(&self, body: &[u8], r: &Rendered) -> Result<ChatResponse, StreamFault> {
        let resp: GenerateContentResponse =
            serde_json::from_slice(body).map_err(|e| StreamFault::Malformed(e.to_string()))?;
        Ok(response::to_openai(resp, model_of(&r.path), unix_secs()))
    }

    fn parse_embeddings(&self, req: &LlmRequest, body: &[u8], r: &Rendered) -> Result<Bytes, StreamFault> {
        // Checked when rendering; a failure here cannot happen, so it means float.
        let base64 = embeddings::encoding(&req.body).unwrap_or(false);
        embeddings::to_openai(body, model_of(&r.path), base64)
    }

    fn chat_stream(&self, r: &Rendered) -> Box<dyn ChunkSource> {
        Box::new(SseChunks::new(GeminiStream::new(model_of(&r.path), unix_secs())))
    }

    fn error_body(&self, status: u16, body: &[u8]) -> Bytes {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => {
                let kind = match status {
                    429 => "rate_limit_error",
                    500.. => "api_error",
                    _ => "invalid_request_error",
                };
                let code = if status == 429 {
                    "rate_limit_exceeded".to_string()
                } else if e.error.message.contains("API key") || e.error.status == "UNAUTHENTICATED" {
                    "invalid_api_key".to_string()
                } else {
                    e.error.status.to_ascii_lowercase()
                };
                let code = (!code.is_empty()).then_some(code);
                Bytes::from(
                    json!({"error": {"message": e.error.message, "type": kind, "param": null, "code": code}})
                        .to_string(),
                )
            }
            Err(_) => super::openai::openai_error_body(status, body),
        }
    }

    fn usage_of(&self, body: &[u8]) -> Option<Usage> {
        let resp: GenerateContentResponse = serde_json::from_slice(body).ok()?;
        resp.usage_metadata.as_ref().map(response::usage)
    }

    /// Gemini is never passed through; this watches a Gemini stream all the same (the same
    /// translator, output discarded), should the proxy ever relay one unchanged.
    fn observer(&self) -> Box<dyn Observer> {
        observe(SseChunks::new(GeminiStream::new("", 0)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn model_is_read_back_from_the_path() {
        assert_eq!(
            model_of("/v1beta/models/gemini-2.5-flash:generateContent"),
            "gemini-2.5-flash"
        );
        assert_eq!(
            model_of("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
            "gemini-2.5-flash"
        );
        assert_eq!(model_of("/models/tunedModels/x:batchEmbedContents"), "tunedModels/x");
    }

    #[test]
    fn errors_keep_google_message() {
        let body = br#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#;
        let v: serde_json::Value = serde_json::from_slice(&GeminiAdapter.error_body(429, body)).unwrap();
        assert_eq!(
            v,
            json!({"error": {"message": "Resource has been exhausted (e.g. check quota).",
                "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}})
        );
        let body = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#;
        let v: serde_json::Value = serde_json::from_slice(&GeminiAdapter.error_body(400, body)).unwrap();
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let body = br#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#;
        let v: serde_json::Value = serde_json::from_slice(&GeminiAdapter.error_body(503, body)).unwrap();
        assert_eq!(
            (v["error"]["type"].as_str(), v["error"]["code"].as_str()),
            (Some("api_error"), Some("unavailable"))
        );
        let v: serde_json::Value = serde_json::from_slice(&GeminiAdapter.error_body(502, b"<html>")).unwrap();
        assert_eq!(v["error"]["message"], "<html>");
    }

    #[test]
    fn usage_of_a_body() {
        let u = GeminiAdapter
            .usage_of(br#"{"candidates":[],"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":3}}"#)
            .unwrap();
        assert_eq!(u.total_tokens, 5);
        assert_eq!(GeminiAdapter.usage_of(b"{}"), None);
    }
}
