//! The OpenAI dialect's SSE streams (chat and legacy completions): one [`OpenAiStream`] per
//! streamed answer, a lazy generator of `data: <json>` events with one id, created and model.
//! A child module of `openai`, so it shares the parent's private request types.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};

use super::super::behavior::Behavior;
use super::super::echo::{Echo, TOOL_NAME};
use super::super::usage::Pending;
use super::super::{EventSource, SseEvent};
use super::{Generation, Pieces, Usage, DONE, MOCK_TOOL_ARGS, MOCK_TOOL_CALL_ID};
use crate::time::unix_secs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// `chat.completion.chunk` events with `delta`, opened by a role chunk.
    Chat,
    /// `text_completion` events with `text`.
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Role,
    Content,
    Finish,
    Usage,
    Done,
    End,
}

#[derive(Serialize)]
struct Envelope<'a, C> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [C],
    /// Absent without `include_usage`; `null` on every chunk but the usage chunk with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Value>,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct TextChoice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

/// The OpenAI SSE event sequence of one streamed response:
/// `[role chunk (chat only)] content×N finish [usage (include_usage only)] [DONE]`.
/// Every event is one `data: <json>\n\n` with the same id, created and model.
pub(crate) struct OpenAiStream {
    dialect: Dialect,
    id: String,
    model: String,
    created: u64,
    pieces: Pieces,
    chunks: u32,
    next: u32,
    phase: Phase,
    include_usage: bool,
    usage: Usage,
    finish_reason: &'static str,
    /// Stream a call to this tool instead of text (chat only).
    pub(super) tool: Option<String>,
    /// The tool call's argument pieces.
    tool_args: Vec<String>,
    /// The meter entry: marked sent when the usage event has been written, counted on drop.
    pending: Option<Pending>,
}

impl OpenAiStream {
    /// A stream of `g.chunks` pieces of the default content, or of `echo`'s pieces (then
    /// `g.chunks` is their number).
    pub(super) fn new(
        dialect: Dialect,
        id: String,
        g: Generation,
        b: &Behavior,
        (usage, pending): (Usage, Option<Pending>),
        echo: Option<Echo>,
    ) -> Self {
        let (pieces, tool, tool_args) = match echo {
            Some(e) if e.tool => (Pieces::new(None), Some(TOOL_NAME.to_string()), e.pieces),
            Some(e) => (Pieces::given(e.pieces), None, Vec::new()),
            None => (
                Pieces::new(b.text.as_deref()),
                None,
                MOCK_TOOL_ARGS.map(String::from).to_vec(),
            ),
        };
        OpenAiStream {
            dialect,
            id,
            model: g.model,
            created: unix_secs(),
            pieces,
            chunks: g.chunks,
            next: 0,
            phase: match dialect {
                Dialect::Chat => Phase::Role,
                Dialect::Text => Phase::Content,
            },
            include_usage: g.include_usage,
            usage,
            finish_reason: g.finish_reason,
            tool,
            tool_args,
            pending,
        }
    }

    /// A tool-call delta: the first carries id and name, the next ones argument pieces.
    fn tool_event(&self, piece: u32) -> Bytes {
        let call = match (&self.tool, piece) {
            (Some(name), 0) => {
                json!([{"index": 0, "id": MOCK_TOOL_CALL_ID, "type": "function", "function": {"name": name, "arguments": ""}}])
            }
            (_, n) => {
                json!([{"index": 0, "function": {"arguments": self.tool_args.get((n as usize).saturating_sub(1)).map_or("", String::as_str)}}])
            }
        };
        self.envelope(
            &[ChatChoice {
                index: 0,
                delta: Delta {
                    role: None,
                    content: None,
                    tool_calls: Some(call),
                },
                logprobs: None,
                finish_reason: None,
            }],
            None,
        )
    }

    fn envelope<C: Serialize>(&self, choices: &[C], usage: Option<Usage>) -> Bytes {
        let object = match self.dialect {
            Dialect::Chat => "chat.completion.chunk",
            Dialect::Text => "text_completion",
        };
        let env = Envelope {
            id: &self.id,
            object,
            created: self.created,
            model: &self.model,
            choices,
            usage: self.include_usage.then_some(usage),
        };
        let mut out = Vec::with_capacity(192 + self.model.len());
        out.extend_from_slice(b"data: ");
        if serde_json::to_writer(&mut out, &env).is_err() {
            out.truncate(6);
            out.extend_from_slice(br#"{"error":{"message":"mock failed to serialise a chunk","type":"server_error","param":null,"code":"server_error"}}"#);
        }
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }

    /// A chunk with one choice: `content`/`text` if given, else the role or finish delta.
    fn choice_event(&self, role: bool, content: Option<&str>, finish: Option<&'static str>) -> Bytes {
        match self.dialect {
            Dialect::Chat => self.envelope(
                &[ChatChoice {
                    index: 0,
                    delta: Delta {
                        role: role.then_some("assistant"),
                        content,
                        tool_calls: None,
                    },
                    logprobs: None,
                    finish_reason: finish,
                }],
                None,
            ),
            Dialect::Text => self.envelope(
                &[TextChoice {
                    text: content.unwrap_or(""),
                    index: 0,
                    logprobs: None,
                    finish_reason: finish,
                }],
                None,
            ),
        }
    }
}

impl EventSource for OpenAiStream {
    fn next_event(&mut self) -> Option<SseEvent> {
        let (data, content) = match self.phase {
            Phase::Role => {
                self.phase = Phase::Content;
                (self.choice_event(true, Some(""), None), false)
            }
            Phase::Content if self.tool.is_some() => {
                let data = self.tool_event(self.next);
                self.next += 1;
                if self.next as usize > self.tool_args.len() {
                    self.phase = Phase::Finish;
                }
                (data, true)
            }
            Phase::Content => {
                let data = self.choice_event(false, Some(self.pieces.get(self.next)), None);
                self.next += 1;
                if self.next >= self.chunks {
                    self.phase = Phase::Finish;
                }
                (data, true)
            }
            Phase::Finish => {
                self.phase = if self.include_usage { Phase::Usage } else { Phase::Done };
                let finish = if self.tool.is_some() {
                    "tool_calls"
                } else {
                    self.finish_reason
                };
                (self.choice_event(false, None, Some(finish)), false)
            }
            Phase::Usage => {
                self.phase = Phase::Done;
                let data = match self.dialect {
                    Dialect::Chat => self.envelope::<ChatChoice>(&[], Some(self.usage)),
                    Dialect::Text => self.envelope::<TextChoice>(&[], Some(self.usage)),
                };
                (data, false)
            }
            Phase::Done => {
                // The writer asks for the next event only once the previous one is written, so
                // being here with `include_usage` means the usage event went out.
                if self.include_usage {
                    if let Some(p) = &mut self.pending {
                        p.sent();
                    }
                }
                self.phase = Phase::End;
                (Bytes::from_static(DONE), false)
            }
            Phase::End => return None,
        };
        Some(SseEvent { data, content })
    }
}
