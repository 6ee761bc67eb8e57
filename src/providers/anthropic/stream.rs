//! Anthropic stream events → OpenAI chat chunks, translated event by event as they arrive.
//!
//! State kept across events: the message id, model and creation time (stable in every chunk),
//! the input-side usage from `message_start` (Anthropic's `message_delta` carries only output
//! tokens), and the map from Anthropic content-block index to OpenAI tool-call index.

use std::collections::HashMap;

use super::request::{JsonMode, JSON_TOOL};
use super::response::usage;
use crate::api::anthropic::{finish_reason, AUsage, Block, BlockDelta, StreamEvent};
use crate::api::chat::{ChatChunk, Delta, FunctionDelta, ToolCallDelta, Usage};
use crate::providers::StreamFault;

pub struct AnthropicStream {
    id: String,
    model: String,
    created: u64,
    input: AUsage,
    output_tokens: u64,
    /// Anthropic block index → OpenAI tool-call index.
    tools: HashMap<u32, u32>,
    next_tool: u32,
    /// The block carrying a JSON-mode answer, whose input deltas become content.
    json_block: Option<u32>,
    json_mode: JsonMode,
    finish: Option<String>,
    done: bool,
}

impl AnthropicStream {
    pub fn new(json_mode: JsonMode, created: u64) -> Self {
        AnthropicStream {
            id: String::new(),
            model: String::new(),
            created,
            input: AUsage::default(),
            output_tokens: 0,
            tools: HashMap::new(),
            next_tool: 0,
            json_block: None,
            json_mode,
            finish: None,
            done: false,
        }
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<String>) -> ChatChunk {
        ChatChunk::single(&self.id, self.created, &self.model, 0, delta, finish_reason)
    }

    pub fn usage(&self) -> Option<Usage> {
        if self.id.is_empty() {
            return None;
        }
        Some(usage(&AUsage {
            output_tokens: self.output_tokens,
            ..self.input
        }))
    }

    pub fn completed(&self) -> bool {
        self.done
    }

    /// Translates one decoded event (its `data:` JSON), appending OpenAI chunks to `out`.
    pub fn on_event(&mut self, data: &str, out: &mut Vec<ChatChunk>) -> Result<(), StreamFault> {
        let ev: StreamEvent =
            serde_json::from_str(data).map_err(|e| StreamFault::Malformed(format!("anthropic event: {e}")))?;
        match ev {
            StreamEvent::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.input = message.usage;
                self.output_tokens = message.usage.output_tokens;
                out.push(self.chunk(
                    Delta {
                        role: Some("assistant".into()),
                        content: Some(String::new()),
                        ..Default::default()
                    },
                    None,
                ));
            }
            StreamEvent::ContentBlockStart { index, content_block } => match content_block {
                Block::ToolUse { id, name, .. } => {
                    if self.json_mode.0 && name == JSON_TOOL {
                        self.json_block = Some(index);
                    } else {
                        let ti = self.next_tool;
                        self.next_tool += 1;
                        self.tools.insert(index, ti);
                        let call = ToolCallDelta {
                            index: ti,
                            id: Some(id),
                            kind: Some("function".into()),
                            function: Some(FunctionDelta {
                                name: Some(name),
                                arguments: Some(String::new()),
                            }),
                        };
                        out.push(self.chunk(
                            Delta {
                                tool_calls: Some(vec![call]),
                                ..Default::default()
                            },
                            None,
                        ));
                    }
                }
                Block::Text { text, .. } if !text.is_empty() => {
                    out.push(self.chunk(
                        Delta {
                            content: Some(text),
                            ..Default::default()
                        },
                        None,
                    ));
                }
                _ => {}
            },
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => out.push(self.chunk(
                    Delta {
                        content: Some(text),
                        ..Default::default()
                    },
                    None,
                )),
                BlockDelta::ThinkingDelta { thinking } => out.push(self.chunk(
                    Delta {
                        reasoning_content: Some(thinking),
                        ..Default::default()
                    },
                    None,
                )),
                BlockDelta::InputJsonDelta { partial_json } if partial_json.is_empty() => {}
                BlockDelta::InputJsonDelta { partial_json } => {
                    if self.json_block == Some(index) {
                        out.push(self.chunk(
                            Delta {
                                content: Some(partial_json),
                                ..Default::default()
                            },
                            None,
                        ));
                    } else if let Some(&ti) = self.tools.get(&index) {
                        let call = ToolCallDelta {
                            index: ti,
                            id: None,
                            kind: None,
                            function: Some(FunctionDelta {
                                name: None,
                                arguments: Some(partial_json),
                            }),
                        };
                        out.push(self.chunk(
                            Delta {
                                tool_calls: Some(vec![call]),
                                ..Default::default()
                            },
                            None,
                        ));
                    }
                }
                BlockDelta::SignatureDelta { .. } | BlockDelta::Other(_) => {}
            },
            StreamEvent::MessageDelta { delta, usage: u } => {
                if u.output_tokens > 0 {
                    self.output_tokens = u.output_tokens;
                }
                // Newer API versions repeat cumulative input-side usage here.
                if u.input_tokens > 0 {
                    self.input.input_tokens = u.input_tokens;
                }
                if let Some(r) = u.cache_read_input_tokens {
                    self.input.cache_read_input_tokens = Some(r);
                }
                if let Some(w) = u.cache_creation_input_tokens {
                    self.input.cache_creation_input_tokens = Some(w);
                }
                if let Some(reason) = delta.stop_reason {
                    let mut f = finish_reason(&reason).to_string();
                    if self.json_block.is_some() && f == "tool_calls" {
                        f = "stop".into();
                    }
                    self.finish = Some(f.clone());
                    out.push(self.chunk(Delta::default(), Some(f)));
                }
            }
            StreamEvent::MessageStop => {
                self.done = true;
                let mut last = self.chunk(Delta::default(), None);
                last.choices.clear();
                last.usage = self.usage();
                out.push(last);
            }
            StreamEvent::Error { error } => {
                return Err(StreamFault::Provider {
                    kind: error.kind,
                    message: error.message,
                });
            }
            StreamEvent::ContentBlockStop { .. } | StreamEvent::Ping | StreamEvent::Other(_) => {}
        }
        Ok(())
    }
}

impl crate::providers::EventTranslator for AnthropicStream {
    fn on_event(&mut self, data: &str, out: &mut Vec<ChatChunk>) -> Result<(), StreamFault> {
        AnthropicStream::on_event(self, data, out)
    }

    fn usage(&self) -> Option<Usage> {
        AnthropicStream::usage(self)
    }

    fn completed(&self) -> bool {
        AnthropicStream::completed(self)
    }
}
