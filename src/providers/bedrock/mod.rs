//! The AWS Bedrock Runtime dialect: chat through the Converse API (`request`, `response`,
//! `stream`), embeddings through `InvokeModel` (`embeddings`), every request signed with SigV4
//! (`sigv4`).
//!
//! No client speaks Bedrock, so nothing is passed through: every request goes through the
//! canonical form and `Rendered.passthrough` is always false. `wire()` answers `Wire::OpenAi`
//! only because the trait needs a value; the proxy consults it for passthrough decisions only.
//!
//! Paths are `{path_prefix}/model/{model id, URI-encoded}/{converse|converse-stream|invoke}`
//! below a base URL like `https://bedrock-runtime.us-east-1.amazonaws.com`. A Converse answer
//! carries neither id nor model, so the gateway makes the id (`chatcmpl-bedrock-<n>`) and the
//! model is the one in the path.

pub mod embeddings;
pub mod request;
pub mod response;
pub mod sigv4;
pub mod stream;
pub mod types;

#[cfg(test)]
mod golden_tests;

use crate::providers::observe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use serde_json::json;

use super::{Adapter, AwsKeys, ChunkSource, Observer, RenderTarget, Rendered, StreamFault, Wire};
use crate::api::chat::{ChatChunk, ChatResponse, Usage};
use crate::api::openai::LlmRequest;
use crate::api::{ApiError, Endpoint};
use crate::sse::eventstream::Decoder;
use crate::time::unix_secs;
use request::JsonMode;
use stream::BedrockStream;
use types::{BUsage, ConverseResponse, ErrorBody};

pub struct BedrockAdapter;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh `chatcmpl-bedrock-<n>` id (Bedrock's answers have none in the body).
pub fn next_id() -> String {
    format!("chatcmpl-bedrock-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// The upstream path of an operation on a model.
pub fn path(prefix: &str, model: &str, op: &str) -> String {
    format!("{prefix}/model/{}/{op}", sigv4::uri_encode(model))
}

/// The model id in a rendered path (`…/model/{id}/{op}`), decoded. The id is always the
/// next-to-last segment: `path` encodes any `/` in it.
pub fn model_of(path: &str) -> String {
    percent_decode(path.rsplit('/').nth(1).unwrap_or_default())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// OpenAI's reasoning effort as Claude's thinking on Bedrock (`additionalModelRequestFields`),
/// the budget under `maxTokens` as on Anthropic (`fidelity::claude_thinking`).
fn effort_thinking(req: &crate::api::chat::ChatRequest, model: &str, body: &mut types::ConverseRequest) {
    let Some(effort) = req.rest.get("reasoning_effort").and_then(serde_json::Value::as_str) else {
        return;
    };
    let has_thinking = body
        .additional_model_request_fields
        .as_ref()
        .is_some_and(|m| m.contains_key("thinking"));
    if !model.contains("claude") || has_thinking {
        tracing::debug!(model, effort, "reasoning effort not mapped for this Bedrock model");
        return;
    }
    let own = req.max_output_tokens();
    let Some((thinking, cap)) = super::fidelity::claude_thinking(effort, own.unwrap_or(4096), own.is_none()) else {
        return;
    };
    body.additional_model_request_fields
        .get_or_insert_with(Default::default)
        .insert("thinking".into(), thinking);
    body.inference_config.get_or_insert_with(Default::default).max_tokens = Some(cap);
}

/// The sampling settings as the target's model takes them (`fidelity`: Claude's rules, by its
/// Bedrock model id).
fn fit_sampling(model: &str, body: &mut types::ConverseRequest) {
    let Some(inference) = body.inference_config.as_mut() else {
        return;
    };
    let extra = body.additional_model_request_fields.as_mut();
    let thinking = super::fidelity::thinking_on(extra.as_ref().and_then(|m| m.get("thinking")));
    let mut top_k = extra.as_ref().and_then(|m| m.get("top_k")).cloned();
    super::fidelity::claude(
        model,
        super::fidelity::Sampling {
            temperature: &mut inference.temperature,
            top_p: &mut inference.top_p,
            top_k: &mut top_k,
            thinking,
        },
    );
    if let (None, Some(m)) = (top_k, extra) {
        m.remove("top_k");
    }
}

impl Adapter for BedrockAdapter {
    /// Unused: nothing is passed through to Bedrock (see the module docs).
    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    fn render(&self, req: &LlmRequest, target: &RenderTarget<'_>) -> Result<Rendered, ApiError> {
        let aws = target.options.aws.as_ref().ok_or_else(|| ApiError::NoProvider {
            model: req.model.clone(),
            reason: format!("provider {:?} has no AWS credentials", target.provider),
        })?;
        let (op, body, json_mode) = match req.endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses => {
                let canonical = req.canonical()?;
                let (mut body, json_mode) = request::to_converse(canonical)?;
                effort_thinking(canonical, target.model, &mut body);
                fit_sampling(target.model, &mut body);
                let body = serde_json::to_vec(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
                let op = if req.stream { "converse-stream" } else { "converse" };
                (op, Bytes::from(body), json_mode)
            }
            Endpoint::Embeddings => ("invoke", embeddings::render(&req.body, target.model)?, JsonMode(false)),
            Endpoint::Completions => {
                return Err(ApiError::Unsupported(
                    "Bedrock models do not serve the legacy completions endpoint; use /v1/chat/completions".into(),
                ))
            }
        };
        let path = path(target.path_prefix, target.model, op);
        let host = target
            .host
            .to_str()
            .map_err(|_| ApiError::UpstreamProtocol("the provider's host is not valid text".into()))?;
        // Static keys, or the role credentials the background refresher holds now (one atomic
        // load): the same three values either way.
        let issued;
        let (access_key_id, secret_access_key, session_token) = match &aws.keys {
            AwsKeys::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => (access_key_id, secret_access_key, session_token),
            AwsKeys::Chain(cell) => {
                let unavailable = |cause| ApiError::CredentialsUnavailable {
                    provider: target.provider.to_string(),
                    cause,
                };
                issued = cell.current().map_err(unavailable)?;
                match &issued.material {
                    crate::credentials::Material::Aws {
                        access_key_id,
                        secret_access_key,
                        session_token,
                    } => (access_key_id, secret_access_key, session_token),
                    crate::credentials::Material::Bearer(_) => {
                        return Err(unavailable("the credential source issues no AWS keys".into()))
                    }
                }
            }
        };
        let creds = sigv4::Credentials {
            access_key_id: access_key_id.expose(),
            secret_access_key,
            session_token: session_token.as_ref(),
        };
        let mut headers = sigv4::sign_post(creds, &aws.region, host, &path, &body, SystemTime::now())
            .map_err(|e| ApiError::UpstreamProtocol(e.to_string()))?;
        // ConverseStream answers in AWS event-stream framing, not SSE (`accept` is not signed).
        let accept = if op == "converse-stream" {
            "application/vnd.amazon.eventstream"
        } else {
            "application/json"
        };
        headers.push((http::header::ACCEPT, http::HeaderValue::from_static(accept)));
        Ok(Rendered {
            path,
            body,
            headers,
            passthrough: false,
            json_mode: json_mode.0,
            strip_usage: false,
            native_responses: false,
        })
    }

    fn parse_chat(&self, body: &[u8], r: &Rendered) -> Result<ChatResponse, StreamFault> {
        let resp: ConverseResponse =
            serde_json::from_slice(body).map_err(|e| StreamFault::Malformed(format!("bedrock converse: {e}")))?;
        Ok(response::to_openai(
            resp,
            JsonMode(r.json_mode),
            next_id(),
            model_of(&r.path),
            unix_secs(),
        ))
    }

    fn chat_stream(&self, r: &Rendered) -> Box<dyn ChunkSource> {
        Box::new(BedrockChunks::new(BedrockStream::new(
            next_id(),
            model_of(&r.path),
            unix_secs(),
            JsonMode(r.json_mode),
        )))
    }

    /// Bedrock errors are `{"message": ...}` with the type in the `x-amzn-errortype` header, which
    /// is not available here: the type is inferred from the status.
    fn error_body(&self, status: u16, body: &[u8]) -> Bytes {
        let Some(message) = serde_json::from_slice::<ErrorBody>(body).ok().and_then(|e| e.message) else {
            return super::openai::openai_error_body(status, body);
        };
        let (kind, code) = match status {
            400 => ("invalid_request_error", Some("ValidationException")),
            // AccessDenied, InvalidSignature or UnrecognizedClient: the header would tell which.
            401 | 403 => ("authentication_error", None),
            404 => ("invalid_request_error", Some("ResourceNotFoundException")),
            408 => ("timeout_error", Some("ModelTimeoutException")),
            424 => ("api_error", Some("ModelErrorException")),
            429 => ("rate_limit_error", Some("rate_limit_exceeded")),
            503 => ("api_error", Some("ServiceUnavailableException")),
            s if s >= 500 => ("api_error", Some("InternalServerException")),
            _ => ("invalid_request_error", None),
        };
        Bytes::from(json!({"error": {"message": message, "type": kind, "param": null, "code": code}}).to_string())
    }

    fn usage_of(&self, body: &[u8]) -> Option<Usage> {
        #[derive(serde::Deserialize)]
        struct U {
            usage: BUsage,
        }
        serde_json::from_slice::<U>(body)
            .ok()
            .map(|u| response::usage(&u.usage))
    }

    fn observer(&self) -> Box<dyn Observer> {
        observe(BedrockChunks::new(BedrockStream::new(
            String::new(),
            String::new(),
            0,
            JsonMode(false),
        )))
    }

    fn parse_embeddings(&self, req: &LlmRequest, body: &[u8], r: &Rendered) -> Result<Bytes, StreamFault> {
        embeddings::parse(body, &model_of(&r.path), embeddings::wants_base64(&req.body))
    }
}

/// Event-stream frames in, canonical chunks out.
pub struct BedrockChunks {
    decoder: Decoder,
    stream: BedrockStream,
}

impl BedrockChunks {
    pub fn new(stream: BedrockStream) -> Self {
        BedrockChunks {
            decoder: Decoder::default(),
            stream,
        }
    }
}

impl ChunkSource for BedrockChunks {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<ChatChunk>) -> Result<(), StreamFault> {
        let stream = &mut self.stream;
        let mut fault = Ok(());
        let decoded = self.decoder.push(bytes, &mut |frame| {
            if fault.is_ok() {
                fault = stream.on_frame(&frame, out);
            }
        });
        fault?;
        decoded.map_err(|e| StreamFault::Malformed(e.to_string()))
    }

    fn finish(&mut self, _out: &mut Vec<ChatChunk>) -> Result<(), StreamFault> {
        self.decoder.finish().map_err(|e| StreamFault::Malformed(e.to_string()))
    }

    fn usage(&self) -> Option<Usage> {
        self.stream.usage()
    }

    fn completed(&self) -> bool {
        self.stream.completed()
    }
}
