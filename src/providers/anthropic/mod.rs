//! The Anthropic Messages dialect. Anthropic clients (`/v1/messages`) pass through with only
//! `model` replaced; OpenAI clients are translated (`request`, `response`, `stream`).

pub mod request;
pub mod response;
pub mod stream;

#[cfg(test)]
mod tests;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::json;

use super::{fidelity, observe, Adapter, ChunkSource, Observer, RenderTarget, Rendered, SseChunks, StreamFault, Wire};
use crate::api::anthropic::{AUsage, ErrorBody, MessagesRequest, MessagesResponse, StreamEvent};
use crate::api::chat::{ChatResponse, Usage};
use crate::api::openai::LlmRequest;
use crate::api::{ApiError, Endpoint};
use crate::time::unix_secs;
use request::JsonMode;
use stream::AnthropicStream;

pub struct AnthropicAdapter;

pub const VERSION_HEADER: HeaderName = HeaderName::from_static("anthropic-version");
pub const BETA_HEADER: HeaderName = HeaderName::from_static("anthropic-beta");

/// The client's Messages body with the target's model, and without the sampling settings the
/// model refuses (`fidelity`; parsed only when such a setting is there).
fn passthrough_body(req: &LlmRequest, target: &RenderTarget<'_>) -> Result<Bytes, ApiError> {
    let mentions = |k: &str| memchr::memmem::find(&req.body, k.as_bytes()).is_some();
    let sampled = mentions("\"top_p\"") || mentions("\"top_k\"") || mentions("\"temperature\"");
    if !sampled || !(mentions("\"thinking\"") || fidelity::claude_one_sampler(target.model)) {
        return Ok(req.body_with_model(target.model_json));
    }
    let Ok(serde_json::Value::Object(mut obj)) = serde_json::from_slice(&req.body) else {
        return Ok(req.body_with_model(target.model_json));
    };
    if !fidelity::messages_body(target.model, &mut obj) {
        return Ok(req.body_with_model(target.model_json));
    }
    obj.insert("model".into(), serde_json::Value::String(target.model.to_string()));
    serde_json::to_vec(&obj)
        .map(Bytes::from)
        .map_err(|e| ApiError::InvalidJson(e.to_string()))
}

/// A translated request's sampling settings, as the target's model takes them (`fidelity`).
fn fit_sampling(model: &str, body: &mut MessagesRequest) {
    let thinking = fidelity::thinking_on(body.rest.get("thinking"));
    let mut top_k = body
        .rest
        .get("top_k")
        .cloned()
        .or_else(|| body.top_k.map(serde_json::Value::from));
    fidelity::claude(
        model,
        fidelity::Sampling {
            temperature: &mut body.temperature,
            top_p: &mut body.top_p,
            top_k: &mut top_k,
            thinking,
        },
    );
    if top_k.is_none() {
        body.rest.remove("top_k");
        body.top_k = None;
    }
}

impl Adapter for AnthropicAdapter {
    fn wire(&self) -> Wire {
        Wire::Anthropic
    }

    fn render(&self, req: &LlmRequest, target: &RenderTarget<'_>) -> Result<Rendered, ApiError> {
        let path = format!("{}/messages", target.path_prefix);
        let mut headers = Vec::with_capacity(2);
        // The client's version and betas win (the SDK knows what it sends); else the configured one.
        let version = req
            .header(&VERSION_HEADER)
            .cloned()
            .or_else(|| HeaderValue::try_from(target.options.anthropic_version.as_str()).ok());
        if let Some(v) = version {
            headers.push((VERSION_HEADER, v));
        }
        if let Some(b) = req.header(&BETA_HEADER) {
            headers.push((BETA_HEADER, b.clone()));
        }
        match (req.client, req.endpoint) {
            (Wire::Anthropic, _) => Ok(Rendered {
                path,
                body: passthrough_body(req, target)?,
                headers,
                passthrough: true,
                json_mode: false,
                strip_usage: false,
                native_responses: false,
            }),
            (Wire::OpenAi, Endpoint::ChatCompletions) => {
                let (mut body, json_mode) =
                    request::to_anthropic(req.canonical()?, target.model, target.options.default_max_tokens)?;
                fit_sampling(target.model, &mut body);
                let body = serde_json::to_vec(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
                Ok(Rendered {
                    path,
                    body: Bytes::from(body),
                    headers,
                    passthrough: false,
                    json_mode: json_mode.0,
                    strip_usage: false,
                    native_responses: false,
                })
            }
            (Wire::OpenAi, e) => Err(ApiError::Unsupported(format!(
                "Anthropic models do not serve the {} endpoint",
                e.as_str()
            ))),
        }
    }

    fn parse_chat(&self, body: &[u8], r: &Rendered) -> Result<ChatResponse, StreamFault> {
        let resp: MessagesResponse = serde_json::from_slice(body).map_err(|e| StreamFault::Malformed(e.to_string()))?;
        Ok(response::to_openai(resp, JsonMode(r.json_mode), unix_secs()))
    }

    fn chat_stream(&self, r: &Rendered) -> Box<dyn ChunkSource> {
        Box::new(SseChunks::new(AnthropicStream::new(JsonMode(r.json_mode), unix_secs())))
    }

    fn error_body(&self, status: u16, body: &[u8]) -> Bytes {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => {
                let code = match status {
                    429 => Some("rate_limit_exceeded"),
                    401 => Some("invalid_api_key"),
                    _ => None,
                };
                Bytes::from(
                    json!({"error": {"message": e.error.message, "type": e.error.kind, "param": null, "code": code}})
                        .to_string(),
                )
            }
            Err(_) => super::openai::openai_error_body(status, body),
        }
    }

    fn usage_of(&self, body: &[u8]) -> Option<Usage> {
        #[derive(serde::Deserialize)]
        struct U {
            usage: AUsage,
        }
        serde_json::from_slice::<U>(body)
            .ok()
            .map(|u| response::usage(&u.usage))
    }

    fn observer(&self) -> Box<dyn Observer> {
        observe(SseChunks::new(AnthropicStream::new(JsonMode(false), 0)))
    }
}

/// Whether an event stream's event is the terminal one (used by tests and fixtures).
pub fn is_stop(ev: &StreamEvent) -> bool {
    matches!(ev, StreamEvent::MessageStop)
}
