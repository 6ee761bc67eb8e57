//! A streamed answer put back together: canonical chunks in, the whole canonical answer out, so
//! that a streamed miss can be stored and later replayed whole or streamed (`replay` is the
//! inverse: `assemble(replay::chunks(a)) == a` for every answer, a property test checks it).
//!
//! Per choice: the role, the text and the reasoning appended, tool calls by their `index` (id,
//! type and name from the first piece that has them, arguments appended), the finish reason.
//! The usage comes from the chunk that carries it. `Assembler::finish` refuses an answer that
//! did not finish (a choice without a finish reason): a cut stream is never stored.

use crate::api::chat::{ChatChunk, ChatResponse, Choice, Content, FunctionCall, Message, ToolCall};

/// Collects one stream's chunks.
#[derive(Debug, Default)]
pub struct Assembler {
    resp: ChatResponse,
    /// Per choice (by its index in `resp.choices`): its text so far.
    text: Vec<String>,
}

impl Assembler {
    pub fn push(&mut self, chunk: &ChatChunk) {
        if self.resp.id.is_empty() {
            self.resp.id.clone_from(&chunk.id);
            self.resp.created = chunk.created;
            self.resp.model.clone_from(&chunk.model);
            self.resp.object = "chat.completion".into();
        }
        if chunk.usage.is_some() {
            self.resp.usage = chunk.usage;
        }
        for c in &chunk.choices {
            let at = match self.resp.choices.iter().position(|x| x.index == c.index) {
                Some(at) => at,
                None => {
                    self.resp.choices.push(Choice {
                        index: c.index,
                        message: Message {
                            role: "assistant".into(),
                            ..Message::default()
                        },
                        finish_reason: None,
                        logprobs: None,
                    });
                    self.text.push(String::new());
                    self.resp.choices.len() - 1
                }
            };
            let m = &mut self.resp.choices[at].message;
            let d = &c.delta;
            if let Some(role) = &d.role {
                m.role.clone_from(role);
            }
            if let Some(t) = &d.content {
                self.text[at].push_str(t);
            }
            if let Some(r) = &d.reasoning_content {
                m.reasoning_content.get_or_insert_with(String::new).push_str(r);
            }
            for tc in d.tool_calls.iter().flatten() {
                let calls = m.tool_calls.get_or_insert_with(Vec::new);
                let i = usize::try_from(tc.index).unwrap_or(usize::MAX);
                while calls.len() <= i && calls.len() < 1024 {
                    calls.push(ToolCall {
                        id: String::new(),
                        kind: "function".into(),
                        function: FunctionCall::default(),
                    });
                }
                let Some(call) = calls.get_mut(i) else { continue };
                if let Some(id) = &tc.id {
                    call.id.clone_from(id);
                }
                if let Some(kind) = &tc.kind {
                    call.kind.clone_from(kind);
                }
                if let Some(f) = &tc.function {
                    if let Some(name) = &f.name {
                        call.function.name.clone_from(name);
                    }
                    if let Some(a) = &f.arguments {
                        call.function.arguments.push_str(a);
                    }
                }
            }
            if c.finish_reason.is_some() {
                self.resp.choices[at].finish_reason.clone_from(&c.finish_reason);
            }
        }
    }

    /// The whole answer; None if no choice came or one did not finish.
    pub fn finish(mut self) -> Option<ChatResponse> {
        if self.resp.choices.is_empty() || self.resp.choices.iter().any(|c| c.finish_reason.is_none()) {
            return None;
        }
        for (c, text) in self.resp.choices.iter_mut().zip(self.text) {
            c.message.content = (!text.is_empty()).then_some(Content::Text(text));
        }
        Some(self.resp)
    }
}

#[cfg(test)]
mod tests;
