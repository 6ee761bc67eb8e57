//! The OpenAI dialect (OpenAI itself and every OpenAI-compatible server).
//!
//! Requests from OpenAI clients pass through byte for byte, except for the `model` value, which is
//! replaced by the target's upstream model name. Streams pass through unchanged while an
//! incremental SSE decoder watches them for the usage chunk and the `[DONE]` terminator.

use bytes::Bytes;

use super::{Adapter, Rendered, StreamTranslator};
use crate::api::openai::{usage_of, LlmRequest, Usage};
use crate::api::ApiError;
use crate::config::Target;
use crate::sse::{SseDecoder, SseEvent};

pub struct OpenAiAdapter;

impl Adapter for OpenAiAdapter {
    fn render(&self, req: &LlmRequest, target: &Target) -> Result<Rendered, ApiError> {
        let mut path = String::with_capacity(target.provider.path_prefix.len() + 20);
        path.push_str(&target.provider.path_prefix);
        path.push_str(req.endpoint.openai_suffix());
        Ok(Rendered {
            path,
            body: req.body_with_model(&target.model_json),
        })
    }

    fn response_usage(&self, body: &[u8]) -> Option<Usage> {
        usage_of(body)
    }

    fn stream_translator(&self, _req: &LlmRequest) -> Box<dyn StreamTranslator> {
        Box::new(Passthrough {
            decoder: SseDecoder::default(),
            usage: None,
            done: false,
            broken: false,
        })
    }
}

/// Relays an OpenAI stream unchanged, observing it.
struct Passthrough {
    decoder: SseDecoder,
    usage: Option<Usage>,
    done: bool,
    /// The observer gave up (an oversized event); bytes still flow to the client.
    broken: bool,
}

impl Passthrough {
    fn observe(usage: &mut Option<Usage>, done: &mut bool, ev: SseEvent) {
        if ev.data == "[DONE]" {
            *done = true;
        } else if let Some(u) = usage_of(ev.data.as_bytes()) {
            *usage = Some(u);
        }
    }
}

impl StreamTranslator for Passthrough {
    fn push(&mut self, chunk: Bytes) -> Bytes {
        if !self.broken {
            let (usage, done) = (&mut self.usage, &mut self.done);
            if let Err(e) = self.decoder.push(&chunk, &mut |ev| Self::observe(usage, done, ev)) {
                tracing::warn!(error = %e, "stopped observing an upstream stream");
                self.broken = true;
            }
        }
        chunk
    }

    fn finish(&mut self) -> Bytes {
        if !self.broken {
            let (usage, done) = (&mut self.usage, &mut self.done);
            let _ = self.decoder.finish(&mut |ev| Self::observe(usage, done, ev));
        }
        Bytes::new()
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn completed(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Endpoint;

    #[test]
    fn passthrough_relays_bytes_and_finds_usage_across_splits() {
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
        let req = LlmRequest::parse(
            Endpoint::ChatCompletions,
            Bytes::from_static(br#"{"model":"m","messages":[],"stream":true}"#),
        )
        .unwrap();
        for cut in 0..stream.len() {
            let mut t = OpenAiAdapter.stream_translator(&req);
            let mut out = Vec::new();
            out.extend_from_slice(&t.push(Bytes::copy_from_slice(&stream[..cut])));
            out.extend_from_slice(&t.push(Bytes::copy_from_slice(&stream[cut..])));
            out.extend_from_slice(&t.finish());
            assert_eq!(&out[..], &stream[..]);
            assert_eq!(
                t.usage(),
                Some(Usage {
                    prompt_tokens: 5,
                    completion_tokens: 2
                })
            );
            assert!(t.completed());
        }
    }

    #[test]
    fn a_stream_without_done_is_not_completed() {
        let req = LlmRequest::parse(
            Endpoint::ChatCompletions,
            Bytes::from_static(br#"{"model":"m","messages":[],"stream":true}"#),
        )
        .unwrap();
        let mut t = OpenAiAdapter.stream_translator(&req);
        t.push(Bytes::from_static(b"data: {\"choices\":[]}\n\n"));
        t.finish();
        assert!(!t.completed());
    }
}
