//! Bedrock `ConverseStream` frames → OpenAI chat chunks, translated frame by frame as they arrive.
//!
//! The event order Bedrock promises: `messageStart`, then per content block an optional
//! `contentBlockStart` (only tool-use blocks have one), `contentBlockDelta`s and a
//! `contentBlockStop`, then `messageStop` (the stop reason) and last `metadata` (usage and
//! metrics). A modelled error arrives as an `exception` frame, a protocol error as an `error`
//! frame, at any point.
//!
//! State kept across frames: the id, model and creation time stamped on every chunk; whether the
//! role chunk went out (it always comes first, even if `messageStart` is missing); the map from
//! Bedrock content-block index to OpenAI tool-call index (indices 0, 1, … in order of appearance);
//! the JSON-mode block; usage; and whether `messageStop` and `metadata` were both seen.

use std::collections::HashMap;

use serde::de::DeserializeOwned;

use super::request::{JsonMode, JSON_TOOL};
use super::response::usage;
use super::types::{
    finish_reason, BUsage, BlockDelta, BlockDeltaEvent, BlockStart, BlockStartEvent, ErrorBody, MessageStopEvent,
    MetadataEvent, ReasoningDelta,
};
use crate::api::chat::{ChatChunk, Delta, FunctionDelta, ToolCallDelta, Usage};
use crate::providers::StreamFault;
use crate::sse::eventstream::{Frame, MessageType};

pub struct BedrockStream {
    id: String,
    model: String,
    created: u64,
    json_mode: JsonMode,
    started: bool,
    /// Bedrock content-block index → OpenAI tool-call index.
    tools: HashMap<u32, u32>,
    next_tool: u32,
    /// The block carrying a JSON-mode answer, whose input deltas become content.
    json_block: Option<u32>,
    usage: Option<BUsage>,
    stopped: bool,
    metadata: bool,
}

/// Parses an event's JSON. Some encoders wrap the body in an object keyed by the event type
/// (`{"messageStop": {...}}`); both forms are accepted.
fn payload<T: DeserializeOwned>(event: &str, bytes: &[u8]) -> Result<T, StreamFault> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| StreamFault::Malformed(format!("bedrock {event} event: {e}")))?;
    let v = match v {
        serde_json::Value::Object(mut m) if m.len() == 1 && m.contains_key(event) => {
            m.remove(event).unwrap_or_default()
        }
        other => other,
    };
    serde_json::from_value(v).map_err(|e| StreamFault::Malformed(format!("bedrock {event} event: {e}")))
}

impl BedrockStream {
    pub fn new(id: String, model: String, created: u64, json_mode: JsonMode) -> Self {
        BedrockStream {
            id,
            model,
            created,
            json_mode,
            started: false,
            tools: HashMap::new(),
            next_tool: 0,
            json_block: None,
            usage: None,
            stopped: false,
            metadata: false,
        }
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<String>) -> ChatChunk {
        ChatChunk::single(&self.id, self.created, &self.model, 0, delta, finish_reason)
    }

    /// The role chunk, once, before anything else.
    fn start(&mut self, out: &mut Vec<ChatChunk>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(
                Delta {
                    role: Some("assistant".into()),
                    content: Some(String::new()),
                    ..Default::default()
                },
                None,
            ));
        }
    }

    fn content(&mut self, text: String, out: &mut Vec<ChatChunk>) {
        self.start(out);
        out.push(self.chunk(
            Delta {
                content: Some(text),
                ..Default::default()
            },
            None,
        ));
    }

    fn tool_delta(&mut self, call: ToolCallDelta, out: &mut Vec<ChatChunk>) {
        self.start(out);
        out.push(self.chunk(
            Delta {
                tool_calls: Some(vec![call]),
                ..Default::default()
            },
            None,
        ));
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage.as_ref().map(usage)
    }

    /// Both `messageStop` and the trailing `metadata` arrived.
    pub fn completed(&self) -> bool {
        self.stopped && self.metadata
    }

    /// Translates one frame, appending OpenAI chunks to `out`.
    pub fn on_frame(&mut self, frame: &Frame, out: &mut Vec<ChatChunk>) -> Result<(), StreamFault> {
        match frame.message_type() {
            MessageType::Event => {}
            MessageType::Exception => {
                let body: ErrorBody = serde_json::from_slice(&frame.payload).unwrap_or_default();
                return Err(StreamFault::Provider {
                    kind: frame.exception_type().unwrap_or("exception").to_string(),
                    message: body
                        .message
                        .unwrap_or_else(|| String::from_utf8_lossy(&frame.payload).chars().take(500).collect()),
                });
            }
            MessageType::Error => {
                return Err(StreamFault::Provider {
                    kind: frame.str_header(":error-code").unwrap_or("error").to_string(),
                    message: frame.str_header(":error-message").unwrap_or_default().to_string(),
                });
            }
            MessageType::Other(kind) => {
                tracing::debug!(kind, "ignoring an event-stream frame of an unknown message type");
                return Ok(());
            }
        }
        let Some(event) = frame.event_type() else {
            return Err(StreamFault::Malformed("bedrock event frame without :event-type".into()));
        };
        let bytes = &frame.payload[..];
        match event {
            "messageStart" => self.start(out),
            "contentBlockStart" => {
                let ev: BlockStartEvent = payload(event, bytes)?;
                if let Some(BlockStart::ToolUse(t)) = ev.start {
                    if self.json_mode.0 && t.name == JSON_TOOL {
                        self.json_block = Some(ev.content_block_index);
                        self.start(out);
                    } else {
                        let ti = self.next_tool;
                        self.next_tool += 1;
                        self.tools.insert(ev.content_block_index, ti);
                        self.tool_delta(
                            ToolCallDelta {
                                index: ti,
                                id: Some(t.tool_use_id),
                                kind: Some("function".into()),
                                function: Some(FunctionDelta {
                                    name: Some(t.name),
                                    arguments: Some(String::new()),
                                }),
                            },
                            out,
                        );
                    }
                }
            }
            "contentBlockDelta" => {
                let ev: BlockDeltaEvent = payload(event, bytes)?;
                match ev.delta {
                    BlockDelta::Text(t) => self.content(t, out),
                    BlockDelta::ToolUse(t) => {
                        if self.json_block == Some(ev.content_block_index) {
                            self.content(t.input, out);
                        } else if let Some(&ti) = self.tools.get(&ev.content_block_index) {
                            self.tool_delta(
                                ToolCallDelta {
                                    index: ti,
                                    id: None,
                                    kind: None,
                                    function: Some(FunctionDelta {
                                        name: None,
                                        arguments: Some(t.input),
                                    }),
                                },
                                out,
                            );
                        } else {
                            return Err(StreamFault::Malformed(format!(
                                "bedrock toolUse delta for block {} that did not start as a tool",
                                ev.content_block_index
                            )));
                        }
                    }
                    BlockDelta::ReasoningContent(ReasoningDelta::Text(t)) => {
                        self.start(out);
                        out.push(self.chunk(
                            Delta {
                                reasoning_content: Some(t),
                                ..Default::default()
                            },
                            None,
                        ));
                    }
                    BlockDelta::ReasoningContent(_) | BlockDelta::Other(_) => {}
                }
            }
            "messageStop" => {
                let ev: MessageStopEvent = payload(event, bytes)?;
                let mut f = ev.stop_reason.as_deref().map_or("stop", finish_reason);
                if self.json_block.is_some() && f == "tool_calls" {
                    f = "stop";
                }
                self.start(out);
                self.stopped = true;
                out.push(self.chunk(Delta::default(), Some(f.to_string())));
            }
            "metadata" => {
                let ev: MetadataEvent = payload(event, bytes)?;
                self.metadata = true;
                if ev.usage.is_some() {
                    self.usage = ev.usage;
                }
                let mut last = self.chunk(Delta::default(), None);
                last.choices.clear();
                last.usage = self.usage();
                out.push(last);
            }
            "contentBlockStop" => {}
            other => tracing::debug!(event = other, "ignoring an unknown ConverseStream event"),
        }
        Ok(())
    }
}
