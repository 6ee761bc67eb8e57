//! Gemini `streamGenerateContent?alt=sse` events → OpenAI chat chunks, translated as they arrive.
//!
//! Each event is a whole `GenerateContentResponse` carrying the *new* parts of each candidate and
//! the *cumulative* `usageMetadata` so far (the last one wins; summing would count tokens many
//! times). A function call arrives whole, in one part. The stream ends without a terminator: it is
//! complete once every candidate seen has a `finishReason`, and the usage chunk (no choices) is
//! emitted when the body ends.
//!
//! State kept across events: id, model and creation time (stable in every chunk), per-candidate
//! progress (role chunk sent, tool-call count for stable indexes, finished), the running tool-call
//! number for ids, and the last usage.

use std::collections::BTreeMap;

use super::response::{arguments, blocked, generated_id, tool_call_id, usage};
use super::types::{choice_finish, ErrorBody, GenerateContentResponse, UsageMetadata};
use crate::api::chat::{ChatChunk, Delta, FunctionDelta, ToolCallDelta, Usage};
use crate::providers::StreamFault;

#[derive(Debug, Default, Clone, Copy)]
struct ChoiceState {
    tools: u32,
    finished: bool,
}

pub struct GeminiStream {
    id: String,
    model: String,
    created: u64,
    started: bool,
    choices: BTreeMap<u32, ChoiceState>,
    next_call: usize,
    usage: Option<UsageMetadata>,
    usage_sent: bool,
}

impl GeminiStream {
    /// `model` is the upstream model name, used when events carry no `modelVersion`.
    pub fn new(model: &str, created: u64) -> Self {
        GeminiStream {
            id: String::new(),
            model: model.to_string(),
            created,
            started: false,
            choices: BTreeMap::new(),
            next_call: 0,
            usage: None,
            usage_sent: false,
        }
    }

    fn chunk(&self, index: u32, delta: Delta, finish_reason: Option<String>) -> ChatChunk {
        ChatChunk::single(&self.id, self.created, &self.model, index, delta, finish_reason)
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage.as_ref().map(usage)
    }

    /// Every candidate that started has finished.
    pub fn completed(&self) -> bool {
        !self.choices.is_empty() && self.choices.values().all(|c| c.finished)
    }

    /// Translates one decoded event (its `data:` JSON), appending chunks to `out`.
    pub fn on_event(&mut self, data: &str, out: &mut Vec<ChatChunk>) -> Result<(), StreamFault> {
        if memchr::memmem::find(data.as_bytes(), b"\"error\"").is_some() {
            if let Ok(e) = serde_json::from_str::<ErrorBody>(data) {
                return Err(StreamFault::Provider {
                    kind: e.error.status,
                    message: e.error.message,
                });
            }
        }
        let ev: GenerateContentResponse =
            serde_json::from_str(data).map_err(|e| StreamFault::Malformed(format!("gemini event: {e}")))?;
        if !self.started {
            self.started = true;
            self.id = ev.response_id.clone().unwrap_or_else(generated_id);
            if let Some(m) = &ev.model_version {
                self.model = m.clone();
            }
        }
        if let Some(u) = ev.usage_metadata {
            self.usage = Some(u);
        }
        if blocked(&ev) {
            self.open(0, out);
            out.push(self.chunk(0, Delta::default(), Some("content_filter".into())));
            self.choices.entry(0).or_default().finished = true;
            return Ok(());
        }
        for cand in ev.candidates {
            let index = cand.index;
            self.open(index, out);
            for part in cand.content.map(|c| c.parts).unwrap_or_default() {
                if let Some(call) = part.function_call {
                    let state = self.choices.entry(index).or_default();
                    let tool_index = state.tools;
                    state.tools += 1;
                    let delta = ToolCallDelta {
                        index: tool_index,
                        id: Some(tool_call_id(self.next_call, part.thought_signature.as_deref())),
                        kind: Some("function".into()),
                        function: Some(FunctionDelta {
                            name: Some(call.name),
                            arguments: Some(arguments(call.args.as_ref())),
                        }),
                    };
                    self.next_call += 1;
                    out.push(self.chunk(
                        index,
                        Delta {
                            tool_calls: Some(vec![delta]),
                            ..Default::default()
                        },
                        None,
                    ));
                } else if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                    let delta = if part.thought == Some(true) {
                        Delta {
                            reasoning_content: Some(text),
                            ..Default::default()
                        }
                    } else {
                        Delta {
                            content: Some(text),
                            ..Default::default()
                        }
                    };
                    out.push(self.chunk(index, delta, None));
                }
            }
            if let Some(reason) = cand.finish_reason {
                let state = self.choices.entry(index).or_default();
                if !state.finished {
                    state.finished = true;
                    let finish = choice_finish(&reason, state.tools > 0);
                    out.push(self.chunk(index, Delta::default(), Some(finish)));
                }
            }
        }
        Ok(())
    }

    /// The role chunk, the first time a choice appears.
    fn open(&mut self, index: u32, out: &mut Vec<ChatChunk>) {
        if self.choices.contains_key(&index) {
            return;
        }
        self.choices.insert(index, ChoiceState::default());
        out.push(self.chunk(
            index,
            Delta {
                role: Some("assistant".into()),
                content: Some(String::new()),
                ..Default::default()
            },
            None,
        ));
    }

    /// The body ended: the usage chunk, if the stream completed.
    pub fn finish(&mut self, out: &mut Vec<ChatChunk>) {
        if self.usage_sent || !self.completed() {
            return;
        }
        if let Some(u) = self.usage() {
            self.usage_sent = true;
            let mut last = self.chunk(0, Delta::default(), None);
            last.choices.clear();
            last.usage = Some(u);
            out.push(last);
        }
    }
}

impl crate::providers::EventTranslator for GeminiStream {
    fn on_event(&mut self, data: &str, out: &mut Vec<ChatChunk>) -> Result<(), StreamFault> {
        GeminiStream::on_event(self, data, out)
    }

    fn end(&mut self, out: &mut Vec<ChatChunk>) {
        GeminiStream::finish(self, out)
    }

    fn usage(&self) -> Option<Usage> {
        GeminiStream::usage(self)
    }

    fn completed(&self) -> bool {
        GeminiStream::completed(self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn run(events: &[&str]) -> (Vec<ChatChunk>, GeminiStream) {
        let mut s = GeminiStream::new("gemini-x", 9);
        let mut out = Vec::new();
        for e in events {
            s.on_event(e, &mut out).unwrap();
        }
        s.finish(&mut out);
        (out, s)
    }

    #[test]
    fn text_then_finish_then_usage() {
        let (out, s) = run(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"}}],"usageMetadata":{"promptTokenCount":4,"totalTokenCount":4},"modelVersion":"gemini-2.5-flash","responseId":"r1"}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"lo"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"totalTokenCount":6},"modelVersion":"gemini-2.5-flash","responseId":"r1"}"#,
        ]);
        assert!(s.completed());
        assert!(out
            .iter()
            .all(|c| c.id == "r1" && c.model == "gemini-2.5-flash" && c.created == 9));
        assert_eq!(out[0].choices[0].delta.role.as_deref(), Some("assistant"));
        assert_eq!(out[1].choices[0].delta.content.as_deref(), Some("Hel"));
        assert_eq!(out[2].choices[0].delta.content.as_deref(), Some("lo"));
        assert_eq!(out[3].choices[0].finish_reason.as_deref(), Some("stop"));
        assert!(out[4].choices.is_empty());
        assert_eq!(
            out[4].usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((4, 2))
        );
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn calls_get_stable_indexes_per_choice_and_tool_calls_finish() {
        let (out, s) = run(&[
            r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"a","args":{"x":1}},"thoughtSignature":"AAAA"}]}},{"index":1,"content":{"parts":[{"text":"hi"}]}}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"b"}}]},"finishReason":"STOP"},{"index":1,"finishReason":"MAX_TOKENS"}],"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":3}}"#,
        ]);
        assert!(s.completed());
        let calls: Vec<_> = out
            .iter()
            .filter_map(|c| c.choices.first())
            .filter_map(|c| c.delta.tool_calls.as_ref().map(|t| (c.index, t[0].clone())))
            .collect();
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[0].0, calls[0].1.index), (0, 0));
        assert_eq!(calls[0].1.id.as_deref(), Some("call_0_ts_AAAA"));
        assert_eq!(
            calls[0].1.function.as_ref().unwrap().arguments.as_deref(),
            Some(r#"{"x":1}"#)
        );
        assert_eq!((calls[1].0, calls[1].1.index), (0, 1));
        assert_eq!(calls[1].1.id.as_deref(), Some("call_1"));
        let finishes: Vec<_> = out
            .iter()
            .filter_map(|c| c.choices.first())
            .filter_map(|c| c.finish_reason.clone().map(|f| (c.index, f)))
            .collect();
        assert_eq!(finishes, vec![(0, "tool_calls".to_string()), (1, "length".to_string())]);
        assert!(out.iter().all(|c| c.id.starts_with("chatcmpl-gemini-")));
    }

    #[test]
    fn cut_streams_are_incomplete_but_keep_usage() {
        let (out, s) = run(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}]}}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1}}"#,
        ]);
        assert!(!s.completed());
        assert_eq!(s.usage().map(|u| u.total_tokens), Some(5));
        assert!(out.iter().all(|c| c.usage.is_none()));
    }

    #[test]
    fn in_band_errors_and_garbage_are_faults() {
        let mut s = GeminiStream::new("m", 0);
        let err = s.on_event(
            r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
            &mut Vec::new(),
        );
        assert_eq!(
            err,
            Err(StreamFault::Provider {
                kind: "UNAVAILABLE".into(),
                message: "The model is overloaded.".into()
            })
        );
        assert!(matches!(
            s.on_event("not json", &mut Vec::new()),
            Err(StreamFault::Malformed(_))
        ));
    }

    #[test]
    fn blocked_prompt_ends_the_stream() {
        let (out, s) =
            run(&[r#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":{"promptTokenCount":7}}"#]);
        assert!(s.completed());
        assert_eq!(out[1].choices[0].finish_reason.as_deref(), Some("content_filter"));
        assert_eq!(out[2].usage.map(|u| u.prompt_tokens), Some(7));
    }
}
