//! The exact cache's key: a SHA-256 over the request in canonical form, partitioned by tenant.
//!
//! What goes in: the model alias asked for, every message (system and developer prompts, earlier
//! turns, tool calls and results, images), the tool definitions and tool choice,
//! `response_format`, the sampling parameters (`temperature`, `top_p`, `seed`, `n`, stop
//! sequences, the completion cap) and every field the gateway does not know. That last part
//! matters most: a field OpenAI or Anthropic adds tomorrow changes the key instead of being
//! ignored. What stays out is only what cannot change the answer's content: `stream` and
//! `stream_options` (the answer is replayed in either form), `user`, `metadata` and `store`
//! (bookkeeping), Anthropic's `cache_control` marks (prompt caching, a billing matter).
//!
//! Canonical form: the chat form both client APIs parse to (`LlmRequest::canonical`), so the
//! same question asked through `/v1/chat/completions` and `/v1/messages` gives one key. Content
//! given as a string is the same as one text part; one stop string is a list of one; the
//! completion cap is one field whichever name the client used. Objects are hashed with their
//! keys sorted, so key order and whitespace never matter.
//!
//! Anthropic requests carry things the chat form has no place for (`top_k`, `thinking`, unknown
//! block types, fields on blocks): they go into the key as the request's residue, so two
//! Anthropic requests that differ only there never share an entry.
//!
//! Invariants: any change to what goes in changes the key; the tenant is part of what goes in;
//! the key never holds the text itself (only its hash), so a key in a log or in Redis leaks
//! nothing.

use regex::Regex;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::api::chat::ChatRequest;
use crate::api::openai::LlmRequest;
use crate::api::{ApiError, Wire};

/// Top-level fields that do not change the answer's content.
const NEUTRAL: &[&str] = &["stream", "stream_options", "user", "metadata", "store"];

/// Which requests share entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partition {
    /// Per virtual key.
    Key,
    /// Per team (a key without a team is its own tenant): the default.
    Team,
    /// One space for everyone: only for routes whose answers are public.
    Global,
}

/// The tenant part of a key: `key:ID`, `team:NAME` or `global` (`public` for requests without
/// a virtual key, when the gateway does not require one).
pub fn tenant(partition: Partition, key_id: Option<&str>, team: Option<&str>) -> String {
    match (partition, key_id, team) {
        (Partition::Global, _, _) => "global".into(),
        (Partition::Team, _, Some(team)) => format!("team:{team}"),
        (_, Some(id), _) => format!("key:{id}"),
        (_, None, _) => "public".into(),
    }
}

/// A cache key: the hash of the tenant and the canonical request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// Lower-case hex, for logs, admin answers and Redis keys.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// The key of `req` for `tenant`, served by the model alias `alias` (after the route's rewrite
/// and the A/B split: two arms of an experiment never share an answer); `volatile` are the route's patterns for text that changes
/// from request to request without changing the question (timestamps, request ids), removed
/// from every message text before hashing. An error: the body is not a request the gateway can
/// read (the same error the request itself gets).
pub fn exact(req: &LlmRequest, tenant: &str, alias: &str, volatile: &[Regex]) -> Result<Key, ApiError> {
    let canonical = req.canonical()?;
    let residue = match req.client {
        Wire::Anthropic => anthropic_residue(&req.body),
        Wire::OpenAi => Value::Null,
    };
    Ok(of_parts(canonical, &residue, tenant, alias, volatile))
}

/// The key of a canonical request with its residue (see the module doc).
pub fn of_parts(canonical: &ChatRequest, residue: &Value, tenant: &str, alias: &str, volatile: &[Regex]) -> Key {
    let mut doc = serde_json::to_value(canonical).unwrap_or(Value::Null);
    if let Value::Object(top) = &mut doc {
        normalise(top, volatile);
    }
    // The tag is a version: a change of the canonical form must not reuse old entries.
    digest(b"tollgate-cache-key/1\0", tenant, alias, &doc, residue)
}

/// The semantic cache's view of `req`: the key of its *context* (everything but the last user
/// turn's text, hashed as `exact` hashes the whole, under another tag) and that text. `None` when
/// the request does not end with a user turn made of text alone (a tool result, an image): such
/// requests are looked up exactly only.
pub fn context(req: &LlmRequest, tenant: &str, alias: &str, volatile: &[Regex]) -> Option<(Key, String)> {
    let canonical = req.canonical().ok()?;
    let residue = match req.client {
        Wire::Anthropic => anthropic_residue(&req.body),
        Wire::OpenAi => Value::Null,
    };
    let mut doc = serde_json::to_value(canonical).ok()?;
    let top = doc.as_object_mut()?;
    normalise(top, volatile);
    let last = top.get_mut("messages")?.as_array_mut()?.last_mut()?;
    if last.get("role").and_then(Value::as_str) != Some("user") {
        return None;
    }
    let content = last.get_mut("content")?;
    let mut text = String::new();
    for part in content.as_array()? {
        if part.get("type").and_then(Value::as_str) != Some("text") || part.as_object()?.len() != 2 {
            return None;
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(part.get("text")?.as_str()?);
    }
    *content = Value::Null;
    Some((
        digest(b"tollgate-cache-context/1\0", tenant, alias, &doc, &residue),
        text,
    ))
}

/// The request's temperature as the provider will use it (both default to 1 when absent).
pub fn temperature(canonical: &ChatRequest) -> f64 {
    canonical.temperature.unwrap_or(1.0)
}

fn normalise(top: &mut Map<String, Value>, volatile: &[Regex]) {
    for k in NEUTRAL {
        top.remove(*k);
    }
    // One completion cap, whichever field carried it (`max_completion_tokens` wins, as it does
    // for the providers).
    if let Some(v) = top.remove("max_completion_tokens") {
        top.insert("max_tokens".into(), v);
    }
    if let Some(Value::String(s)) = top.get("stop").cloned() {
        top.insert("stop".into(), Value::Array(vec![Value::String(s)]));
    }
    if let Some(Value::Array(messages)) = top.get_mut("messages") {
        for m in messages {
            let Some(content) = m.get_mut("content") else { continue };
            if let Value::String(s) = content {
                let text = std::mem::take(s);
                *content = serde_json::json!([{"type": "text", "text": text}]);
            }
            if volatile.is_empty() {
                continue;
            }
            if let Value::Array(parts) = content {
                for p in parts {
                    if let Some(Value::String(t)) = p.get_mut("text") {
                        for re in volatile {
                            if let std::borrow::Cow::Owned(s) = re.replace_all(t, "") {
                                *t = s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What an Anthropic body says that the chat form does not carry: top-level fields other than
/// the ones translated, and block fields other than the translated ones (and `cache_control`).
fn anthropic_residue(body: &[u8]) -> Value {
    let Ok(Value::Object(mut top)) = serde_json::from_slice::<Value>(body) else {
        return Value::Null;
    };
    const TRANSLATED: &[&str] = &[
        "model",
        "max_tokens",
        "messages",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "metadata",
    ];
    let mut residue = Map::new();
    if let Some(Value::Array(messages)) = top.get("messages") {
        let mut per: Vec<Value> = Vec::new();
        for m in messages {
            let blocks = match m.get("content") {
                Some(Value::Array(b)) => blocks_residue(b),
                _ => Value::Null,
            };
            let mut extra = m.as_object().cloned().unwrap_or_default();
            extra.remove("role");
            extra.remove("content");
            per.push(serde_json::json!([blocks, extra]));
        }
        residue.insert("messages".into(), Value::Array(per));
    }
    if let Some(Value::Array(system)) = top.get("system") {
        residue.insert("system".into(), blocks_residue(system));
    }
    if let Some(Value::Array(tools)) = top.get("tools") {
        let extra: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut t = t.as_object().cloned().unwrap_or_default();
                for k in ["name", "description", "input_schema", "cache_control"] {
                    t.remove(k);
                }
                Value::Object(t)
            })
            .collect();
        residue.insert("tools".into(), Value::Array(extra));
    }
    if let Some(Value::Object(tc)) = top.get("tool_choice") {
        let mut tc = tc.clone();
        for k in ["type", "name", "disable_parallel_tool_use"] {
            tc.remove(k);
        }
        residue.insert("tool_choice".into(), Value::Object(tc));
    }
    for k in TRANSLATED {
        top.remove(*k);
    }
    residue.insert("top".into(), Value::Object(top));
    prune(Value::Object(residue)).unwrap_or(Value::Null)
}

/// `v` without empty objects, nulls, and arrays of nothing: a request whose residue prunes to
/// nothing says nothing the chat form does not (and keys like the same request through the
/// chat API). Array positions are kept (a pruned element becomes null) so that extras stay tied
/// to their message or block.
fn prune(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(map) => {
            let kept: Map<String, Value> = map.into_iter().filter_map(|(k, v)| Some((k, prune(v)?))).collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Array(items) => {
            let kept: Vec<Option<Value>> = items.into_iter().map(prune).collect();
            kept.iter()
                .any(Option::is_some)
                .then(|| Value::Array(kept.into_iter().map(|v| v.unwrap_or(Value::Null)).collect()))
        }
        other => Some(other),
    }
}

/// Per block: the fields the translation drops (whole blocks of kinds it does not translate).
fn blocks_residue(blocks: &[Value]) -> Value {
    let kept: &[(&str, &[&str])] = &[
        ("text", &["type", "text", "cache_control"]),
        ("image", &["type", "source", "cache_control"]),
        ("tool_use", &["type", "id", "name", "input", "cache_control"]),
        (
            "tool_result",
            &["type", "tool_use_id", "content", "is_error", "cache_control"],
        ),
    ];
    let out = blocks
        .iter()
        .map(|b| {
            let kind = b.get("type").and_then(Value::as_str).unwrap_or("");
            match (kept.iter().find(|(k, _)| *k == kind), b.as_object()) {
                (Some((_, fields)), Some(obj)) => {
                    let mut obj = obj.clone();
                    for f in *fields {
                        obj.remove(*f);
                    }
                    // A tool result's content blocks can carry their own extras.
                    if let Some(Value::Array(inner)) = b.get("content") {
                        obj.insert("content".into(), blocks_residue(inner));
                    }
                    Value::Object(obj)
                }
                _ => b.clone(),
            }
        })
        .collect();
    Value::Array(out)
}

/// Feeds `v` to the hasher in a canonical, unambiguous encoding: a type tag, lengths before
/// strings and containers, object keys sorted (whatever order the map keeps).
/// The hash of a tagged, normalised request document with its tenant, alias and residue.
fn digest(tag: &[u8], tenant: &str, alias: &str, doc: &Value, residue: &Value) -> Key {
    let mut h = Sha256::new();
    h.update(tag);
    h.update(tenant.as_bytes());
    h.update(b"\0");
    h.update(alias.as_bytes());
    h.update(b"\0");
    let mut bytes = Vec::with_capacity(1024);
    encode_value(&mut bytes, doc);
    encode_value(&mut bytes, residue);
    h.update(&bytes);
    Key(h.finalize().into())
}

/// Appends `v` to `out` in the key's byte form: a type tag, lengths before contents, object keys
/// in sorted order. (Written into one buffer and hashed once: the hasher's per-call overhead on
/// many small pieces cost more than the hashing.)
fn encode_value(out: &mut Vec<u8>, v: &Value) {
    let len = |out: &mut Vec<u8>, n: usize| out.extend_from_slice(&(n as u64).to_le_bytes());
    match v {
        Value::Null => out.push(b'n'),
        Value::Bool(b) => out.push(if *b { b't' } else { b'f' }),
        Value::Number(n) => {
            // 0.2 and 0.20 are the same number; 1 and 1.0 too.
            let mut ints = itoa::Buffer::new();
            let mut floats = ryu::Buffer::new();
            let text = match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => ints.format(i),
                (_, Some(u), _) => ints.format(u),
                (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => ints.format(f as i64),
                (_, _, Some(f)) if f.is_finite() => floats.format_finite(f),
                _ => "NaN",
            };
            out.push(b'#');
            len(out, text.len());
            out.extend_from_slice(text.as_bytes());
        }
        Value::String(s) => {
            out.push(b's');
            len(out, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            out.push(b'[');
            len(out, items.len());
            for i in items {
                encode_value(out, i);
            }
        }
        Value::Object(map) => {
            out.push(b'{');
            len(out, map.len());
            let entry = |out: &mut Vec<u8>, k: &String, v: &Value| {
                len(out, k.len());
                out.extend_from_slice(k.as_bytes());
                encode_value(out, v);
            };
            // serde_json's map iterates in key order unless its `preserve_order` feature is on.
            if map.keys().is_sorted() {
                for (k, v) in map {
                    entry(out, k, v);
                }
            } else {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                for k in keys {
                    entry(out, k, &map[k.as_str()]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
