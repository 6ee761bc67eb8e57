//! The Responses API's endpoints. `POST /v1/responses` is the chat stages' parse step for this
//! endpoint (`prepare`): the conversation a `previous_response_id` names is read from the
//! response store, the whole request becomes a chat request, and an encoder goes into the ctx;
//! the answer's bytes pass through it on their way out (`outgoing`, `whole`, `failed`), and a
//! clean end is stored (`finish`). `GET` / `DELETE /v1/responses/{id}` and
//! `GET /v1/responses/{id}/input_items` read the store (`stored`).

use bytes::Bytes;
use pingora::prelude::*;
use pingora::proxy::Session;
use serde_json::{json, Value};

use super::ctx::RequestCtx;
use super::{respond, AppState};
use crate::api::openai::LlmRequest;
use crate::api::responses::{encode::new_id, request, Encoder, Pending, ResponsesRequest, Turn};
use crate::api::{ApiError, Endpoint};
use crate::usage::responses::Lookup;

/// Who may read a stored response: the team, else the key, of the request.
fn tenant(ctx: &RequestCtx) -> String {
    match (&ctx.who.team, &ctx.who.key_id) {
        (Some(team), _) => format!("team:{team}"),
        (None, Some(key)) => format!("key:{key}"),
        (None, None) => "anonymous".into(),
    }
}

/// `POST /v1/responses` → the chat request the stages serve, with the encoder in `ctx`.
pub(super) async fn prepare(state: &AppState, ctx: &mut RequestCtx, body: Bytes) -> Result<LlmRequest, ApiError> {
    let req = ResponsesRequest::parse(&body)?;
    let input = req.input_items()?;
    let mut history = Vec::new();
    if let Some(prev) = req.previous_response_id.as_deref() {
        match state.responses.get(&tenant(ctx), prev).await {
            Lookup::Found(stored) => {
                history = serde_json::from_str::<Vec<Value>>(&stored.items).unwrap_or_default();
                if let Ok(resp) = serde_json::from_str::<Value>(&stored.response) {
                    if let Some(Value::Array(out)) = resp.get("output") {
                        history.extend(out.iter().cloned());
                    }
                }
            }
            Lookup::NotFound => {
                return Err(ApiError::ResponseNotFound {
                    id: prev.chars().take(200).collect(),
                    previous: true,
                })
            }
            Lookup::Unavailable(why) => return Err(ApiError::StoreUnavailable(why)),
        }
    }
    // What the chat form cannot carry is refused by every target but OpenAI taking the request
    // natively (decided per target: `attempts`); the stages read the rest.
    let (chat, refusal) = match request::to_chat(&req, &history, &input) {
        Ok(chat) => (chat, None),
        Err(refusal) => {
            let (r, items) = request::translatable(&req, &input);
            (
                request::to_chat(&r, &history, &items).map_err(|_| refusal.clone())?,
                Some(refusal),
            )
        }
    };
    let chat_body = serde_json::to_vec(&chat).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let mut chat_req = LlmRequest::parse(Endpoint::ChatCompletions, Bytes::from(chat_body))?;
    // (Only a config with an OpenAI or Azure provider can use the native body: no parse else.)
    let native_possible = ctx.live.as_ref().is_some_and(|l| {
        l.snapshot.providers.values().any(|p| {
            matches!(
                p.kind,
                crate::providers::ProviderKind::OpenAi | crate::providers::ProviderKind::Azure
            )
        })
    });
    if native_possible {
        chat_req.responses_native = native_body(&body, &history, &input).map(std::sync::Arc::new);
    }
    chat_req.responses_refusal = refusal;
    let mut items = history;
    items.extend(input.into_iter().map(with_id));
    let created = crate::time::unix_ms_i64().max(0) as u64 / 1000;
    ctx.responses = Some(Box::new(Pending {
        encoder: Encoder::new(Turn::new(&req, created)),
        store: req.stored(),
        items,
    }));
    Ok(chat_req)
}

/// The request as OpenAI takes it natively: the client's body, with the stored conversation
/// written into `input` in place of `previous_response_id`.
fn native_body(body: &[u8], history: &[Value], input: &[Value]) -> Option<serde_json::Map<String, Value>> {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    if obj.remove("previous_response_id").is_some() {
        // Messages and function calls lose the ids the store gave them (OpenAI would look them
        // up); the items only OpenAI makes (built-in tool calls, reasoning) keep OpenAI's own.
        let mut items: Vec<Value> = history
            .iter()
            .cloned()
            .map(|mut i| {
                if let Value::Object(o) = &mut i {
                    let ours = matches!(
                        o.get("type").and_then(Value::as_str),
                        None | Some("message" | "function_call" | "function_call_output")
                    );
                    if ours {
                        o.remove("id");
                        o.remove("status");
                    }
                }
                i
            })
            .collect();
        items.extend(input.iter().cloned());
        obj.insert("input".into(), Value::Array(items));
    }
    Some(obj)
}

/// Only where nothing between the client and OpenAI reads the answer as chat does a Responses
/// request go to OpenAI natively: the guardrails' checks and restoration and the cache's write
/// work on the canonical form, so a route with either keeps the translation.
pub(super) fn native_allowed(ctx: &RequestCtx, req: &mut LlmRequest) {
    let cached = ctx.cache_policy.as_ref().is_some_and(|p| p.active());
    if ctx.guard_policy.is_some() || cached {
        req.responses_native = None;
    }
}

/// An input item as the store lists it: with an id of its kind.
fn with_id(mut item: Value) -> Value {
    if let Value::Object(o) = &mut item {
        if !o.contains_key("id") {
            let prefix = match o.get("type").and_then(Value::as_str) {
                Some("function_call") => "fc",
                Some("function_call_output") => "fco",
                _ => "msg",
            };
            o.insert("id".into(), json!(new_id(prefix)));
        }
        if !o.contains_key("type") {
            o.insert("type".into(), json!("message"));
        }
    }
    item
}

/// A piece of the (chat) stream on its way to the client, in the client's format.
pub(super) fn outgoing(ctx: &mut RequestCtx, bytes: Bytes) -> Bytes {
    match ctx.responses.as_mut() {
        Some(p) if p.encoder.is_native() => p.encoder.watch(&bytes).unwrap_or(bytes),
        Some(p) if !bytes.is_empty() => p.encoder.body(&bytes),
        _ => bytes,
    }
}

/// A whole answer on its way to the client: a success becomes the response object; an error
/// body has the same shape in both APIs and goes as it is.
pub(super) fn whole(ctx: &mut RequestCtx, body: Bytes, ok: bool) -> Bytes {
    match ctx.responses.as_mut() {
        Some(p) if ok && p.encoder.is_native() => p.encoder.watch_whole(&body).unwrap_or(body),
        Some(p) if ok => p.encoder.whole(&body),
        _ => body,
    }
}

/// The stream's error event: `response.failed` for a Responses client.
pub(super) fn failed(ctx: &mut RequestCtx, kind: &str, message: &str) -> Option<Bytes> {
    ctx.responses.as_mut().map(|p| p.encoder.failed(kind, message))
}

/// The answer ended: a clean one is stored (unless the client said `store: false`). Called as
/// soon as the encoder has the final object, before the bytes that announce it are written, so
/// a client that reads the answer and asks for it at once finds it (the store keeps it in
/// memory synchronously). A no-op until then, and after.
pub(super) fn finish(state: &AppState, ctx: &mut RequestCtx) {
    let Some(p) = ctx.responses.as_mut() else {
        return;
    };
    let Some(response) = p.encoder.finished() else {
        return;
    };
    if !p.store {
        return;
    }
    let Some(retention) = ctx.live.as_ref().map(|l| l.snapshot.usage.responses_retention) else {
        return;
    };
    // (A native answer carries OpenAI's own id.)
    let id = match response.get("id").and_then(Value::as_str) {
        Some(id) => id.to_string(),
        None => p.encoder.turn().id.clone(),
    };
    let items = Value::Array(std::mem::take(&mut p.items)).to_string();
    state
        .responses
        .put(&tenant(ctx), &id, response.to_string(), items, retention);
}

/// `GET` / `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`.
pub(super) async fn stored(state: &AppState, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let header = session.req_header();
    let (path, query) = match header.uri.path_and_query() {
        Some(pq) => (pq.path().to_string(), pq.query().unwrap_or_default().to_string()),
        None => (header.uri.path().to_string(), String::new()),
    };
    let delete = header.method == http::Method::DELETE;
    let path = path.trim_end_matches('/');
    let rest = path.strip_prefix("/v1").unwrap_or(path);
    let rest = rest.strip_prefix("/responses/").unwrap_or_default();
    let (id, input_items) = match rest.strip_suffix("/input_items") {
        Some(id) => (id, true),
        None => (rest, false),
    };
    let tenant = tenant(ctx);
    let found = if delete {
        state.responses.delete(&tenant, id).await
    } else {
        state.responses.get(&tenant, id).await
    };
    let stored = match found {
        Lookup::Found(s) => s,
        Lookup::NotFound => {
            let e = ApiError::ResponseNotFound {
                id: id.chars().take(200).collect(),
                previous: false,
            };
            return respond::error(session, ctx, &e).await;
        }
        Lookup::Unavailable(why) => return respond::error(session, ctx, &ApiError::StoreUnavailable(why)).await,
    };
    let body = if delete {
        json!({"id": stored.id, "object": "response", "deleted": true}).to_string()
    } else if input_items {
        let items: Vec<Value> = serde_json::from_str(&stored.items).unwrap_or_default();
        match list_page(items, &query) {
            Ok(v) => v.to_string(),
            Err(e) => return respond::error(session, ctx, &e).await,
        }
    } else {
        stored.response.clone()
    };
    respond::json(session, ctx, 200, Bytes::from(body), &[]).await
}

/// A page of input items: `order` (`desc` by default, as OpenAI's), `limit` (1–100, 20), `after`.
fn list_page(mut items: Vec<Value>, query: &str) -> Result<Value, ApiError> {
    let mut limit = 20usize;
    let mut after: Option<String> = None;
    let mut desc = true;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| ApiError::invalid("limit", "must be an integer from 1 to 100"))?
            }
            "order" => {
                desc = match v {
                    "desc" => true,
                    "asc" => false,
                    _ => return Err(ApiError::invalid("order", "must be \"asc\" or \"desc\"")),
                }
            }
            "after" => after = Some(v.to_string()),
            _ => {}
        }
    }
    if desc {
        items.reverse();
    }
    if let Some(after) = after {
        if let Some(at) = items
            .iter()
            .position(|i| i.get("id").and_then(Value::as_str) == Some(&after))
        {
            items.drain(..=at);
        }
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    let id_of = |i: Option<&Value>| i.and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
    Ok(json!({
        "object": "list",
        "first_id": id_of(items.first()),
        "last_id": id_of(items.last()),
        "has_more": has_more,
        "data": items,
    }))
}
