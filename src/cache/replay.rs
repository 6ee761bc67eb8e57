//! Replaying a stored answer: the canonical (OpenAI chat) answer written in the client's format,
//! whole or as a stream, by the same encoders a translated route's live answer goes through
//! (`api::client`). So a cached answer reaches an Anthropic client as Anthropic's full event
//! sequence, and an OpenAI client gets the usage chunk only when it asked for it.
//!
//! The stream is the answer cut into the chunks a provider would send: per choice a role chunk,
//! the reasoning and the text in pieces of at most `PIECE` bytes (on char boundaries), each tool
//! call (its id, type and name, then its arguments in pieces), and the finish reason; then one
//! usage chunk. Pieces keep a long answer from arriving as one event a client's parser must hold
//! whole.

use bytes::{Bytes, BytesMut};

use crate::api::chat::{ChatChunk, ChatResponse, Content, Delta, FunctionDelta, ToolCallDelta};
use crate::api::client::{self, StreamEncoder};
use crate::api::Wire;

/// Most bytes of text in one replayed chunk.
pub const PIECE: usize = 256;

/// The whole answer in the client's format.
pub fn whole(client: Wire, resp: &ChatResponse) -> Bytes {
    client::response(client, resp)
}

/// The answer as the client's stream, complete with its end (`[DONE]`, `message_stop`).
pub fn stream(client: Wire, include_usage: bool, resp: &ChatResponse) -> Bytes {
    let mut enc = StreamEncoder::new(client, include_usage);
    let mut out = BytesMut::new();
    for chunk in chunks(resp) {
        enc.push(&chunk, &mut out);
    }
    enc.finish(&mut out);
    out.freeze()
}

/// The canonical chunks of `resp`, in order.
pub fn chunks(resp: &ChatResponse) -> Vec<ChatChunk> {
    let one = |index: u32, delta: Delta, finish: Option<String>| {
        ChatChunk::single(&resp.id, resp.created, &resp.model, index, delta, finish)
    };
    let mut out = Vec::new();
    for choice in &resp.choices {
        let (i, m) = (choice.index, &choice.message);
        out.push(one(
            i,
            Delta {
                role: Some(m.role.clone()),
                ..Delta::default()
            },
            None,
        ));
        if let Some(r) = m.reasoning_content.as_deref() {
            for piece in pieces(r) {
                out.push(one(
                    i,
                    Delta {
                        reasoning_content: Some(piece.to_owned()),
                        ..Delta::default()
                    },
                    None,
                ));
            }
        }
        let text = match &m.content {
            Some(Content::Text(t)) => t.clone(),
            Some(c @ Content::Parts(_)) => c.text(),
            None => String::new(),
        };
        for piece in pieces(&text) {
            out.push(one(
                i,
                Delta {
                    content: Some(piece.to_owned()),
                    ..Delta::default()
                },
                None,
            ));
        }
        for (n, call) in m.tool_calls.iter().flatten().enumerate() {
            let index = u32::try_from(n).unwrap_or(u32::MAX);
            let call_delta = |first: bool, arguments: &str| ToolCallDelta {
                index,
                id: first.then(|| call.id.clone()),
                kind: first.then(|| call.kind.clone()),
                function: Some(FunctionDelta {
                    name: first.then(|| call.function.name.clone()),
                    arguments: Some(arguments.to_owned()),
                }),
            };
            let mut first = true;
            let args = &call.function.arguments;
            for piece in pieces(args).chain(args.is_empty().then_some("")) {
                out.push(one(
                    i,
                    Delta {
                        tool_calls: Some(vec![call_delta(first, piece)]),
                        ..Delta::default()
                    },
                    None,
                ));
                first = false;
            }
        }
        out.push(one(i, Delta::default(), choice.finish_reason.clone()));
    }
    if let Some(usage) = resp.usage {
        out.push(ChatChunk {
            usage: Some(usage),
            choices: Vec::new(),
            ..one(0, Delta::default(), None)
        });
    }
    out
}

/// `s` in pieces of at most `PIECE` bytes, cut on char boundaries (none for an empty `s`).
fn pieces(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut cut = rest.len().min(PIECE);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests;
