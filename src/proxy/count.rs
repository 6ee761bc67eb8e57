//! `POST /v1/messages/count_tokens` (Anthropic's token-counting endpoint), answered by the
//! gateway's estimator without calling a provider.

use pingora::prelude::*;
use pingora::proxy::Session;
use serde_json::json;

use super::ctx::RequestCtx;
use super::drain::Stop;
use super::{body, respond, AppState};
use crate::api::anthropic::MessagesRequest;
use crate::api::messages::to_chat;
use crate::api::ApiError;
use crate::limits::tokens::estimate_chat;

/// Prompts above this size are encoded on a blocking thread, not on the proxy's worker.
const INLINE_LIMIT: usize = 32 * 1024;

pub async fn handle(state: &AppState, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let Some(snapshot) = ctx.live.as_ref().map(|l| std::sync::Arc::clone(&l.snapshot)) else {
        return respond::error(session, ctx, &ApiError::UpstreamProtocol("no config loaded".into())).await;
    };
    let stopped = std::pin::pin!(state.drain.stopped());
    let mut stop = Stop::new(stopped);
    let raw = match body::read(session, ctx, &snapshot.server, &state.buffered, &mut stop).await {
        Ok(b) => b,
        Err(e) => return respond::error(session, ctx, &e).await,
    };
    let req: MessagesRequest = match serde_json::from_slice(&raw) {
        Ok(r) => r,
        Err(e) => return respond::error(session, ctx, &ApiError::InvalidJson(e.to_string())).await,
    };
    if snapshot.model(&req.model).is_none() {
        return respond::error(session, ctx, &ApiError::ModelNotFound(req.model)).await;
    }
    let chat = match to_chat(req) {
        Ok(c) => c,
        Err(e) => return respond::error(session, ctx, &e).await,
    };
    let n = if raw.len() > INLINE_LIMIT {
        tokio::task::spawn_blocking(move || estimate_chat(&chat))
            .await
            .unwrap_or(0)
    } else {
        estimate_chat(&chat)
    };
    respond::json(
        session,
        ctx,
        200,
        bytes::Bytes::from(json!({"input_tokens": n}).to_string()),
        &[],
    )
    .await
}
