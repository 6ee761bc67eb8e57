//! The cache's stage of the request path (`cache` decides what a key is and keeps the answers;
//! this runs it): the lookup after the guardrails (the key is the redacted request's), the
//! replay of a hit in the client's format, and the write observer a miss takes into the relay's
//! chain (`answer::observers`).
//!
//! Which requests take part: those whose route has a cache policy that is not `off`, on the chat
//! endpoints (`/v1/chat/completions`, `/v1/messages`), sampled at no more than the route's
//! `max_temperature`, without `logprobs` (the canonical stream has no place for them, so a replay
//! could not give them back). The client may say less, never more:
//! - `x-tollgate-cache: no-store` or `Cache-Control: no-store`: neither served nor stored;
//! - `x-tollgate-cache: refresh` or `Cache-Control: no-cache`: not served, the answer stored;
//! - `x-tollgate-cache: only-if-cached` or `Cache-Control: only-if-cached`: a hit or 504.
//!
//! A miss joins the key's flight: the first request makes the call, identical requests that
//! arrive while it runs wait for its answer (`cache.wait`, within their own time budget), then
//! make their own call if none came.
//!
//! The response says what happened in `x-tollgate-cache` (`hit`, `miss`, `bypass`), and so
//! does the usage record; a hit has no provider, no tokens and no cost, and records what it saved.

use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use pingora::prelude::*;
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::drain::{interrupted, Interrupt, Stop};
use super::head::names;
use super::{chain, respond, AppState};
use crate::api::chat::ChatResponse;
use crate::api::observe::Observers;
use crate::api::openai::LlmRequest;
use crate::api::{ApiError, Endpoint, Wire};
use crate::cache::flight::Role;
use crate::cache::policy::{Mode, Policy};
use crate::cache::semantic::facts;
use crate::cache::store::{Entry, Lookup};
use crate::cache::{key, replay, Pending};
use crate::config::{Snapshot, Target};

mod refresh;

/// What the client's headers ask of the cache.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Asked {
    no_store: bool,
    refresh: bool,
    only_if_cached: bool,
}

impl Asked {
    fn of(headers: &http::HeaderMap) -> Result<Asked, ApiError> {
        let mut asked = Asked::default();
        for v in headers.get_all(CACHE_CONTROL) {
            for d in v.to_str().unwrap_or("").split(',') {
                match d.trim().to_ascii_lowercase().as_str() {
                    "no-store" => asked.no_store = true,
                    "no-cache" => asked.refresh = true,
                    "only-if-cached" => asked.only_if_cached = true,
                    _ => {}
                }
            }
        }
        if let Some(v) = headers.get(&names::CACHE) {
            match v.as_bytes() {
                b"no-store" => asked.no_store = true,
                b"refresh" => asked.refresh = true,
                b"only-if-cached" => asked.only_if_cached = true,
                _ => {
                    return Err(ApiError::InvalidField {
                        field: "x-tollgate-cache",
                        message: "the header takes no-store, refresh or only-if-cached".into(),
                    })
                }
            }
        }
        Ok(asked)
    }
}

/// What the lookup found.
pub(super) enum Looked {
    /// Served from the cache: the entry (its answer in redacted form) and how it was found
    /// (`hit`, `coalesced`, `semantic-hit` with the similarity).
    Hit(Arc<Entry>, &'static str, Option<f32>),
    /// Make the call (`ctx.cache_write` says whether and where its answer is stored).
    Miss,
    Refused(ApiError),
    Interrupted(Interrupt),
}

/// The lookup stage. `alias` is the model alias that serves the request (after the route's
/// rewrite and the A/B split); `first` the target the plan tries first (a stale answer's
/// refresh calls it).
#[allow(clippy::too_many_arguments)]
pub(super) async fn lookup(
    state: &Arc<AppState>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    snapshot: &Snapshot,
    alias: &str,
    first: Option<&Arc<Target>>,
    stop: &mut Stop<'_>,
) -> Looked {
    let Some(policy) = ctx.cache_policy.clone() else {
        return Looked::Miss;
    };
    let asked = match Asked::of(&session.req_header().headers) {
        Ok(a) => a,
        Err(e) => return Looked::Refused(e),
    };
    let Some(key) = cacheable(&policy, ctx, req, asked, alias) else {
        ctx.cache = "bypass";
        return match asked.only_if_cached {
            true => Looked::Refused(ApiError::NotCached),
            false => Looked::Miss,
        };
    };
    ctx.cache_key = Some(key);
    let now = Instant::now();
    let tenant = key::tenant(policy.partition, ctx.who.key_id.as_deref(), ctx.who.team.as_deref());
    if !asked.refresh {
        match state.cache.get(&key, now).await {
            Lookup::Fresh(e) => return Looked::Hit(e, "hit", None),
            Lookup::Stale(e) => {
                // Served as it is; one request at a time refreshes it in the background.
                if let (Some(leader), Some(target)) = (state.cache.flights.try_lead(key), first) {
                    let pending = Pending {
                        key,
                        tenant: tenant.as_str().into(),
                        model: ctx.model.as_deref().unwrap_or(&req.model).into(),
                        ttl: policy.ttl,
                        stale: policy.stale,
                        max_bytes: snapshot.cache.max_entry_bytes,
                        leader: Some(leader),
                        semantic: None,
                    };
                    refresh::spawn(state, ctx, req, Arc::clone(target), pending);
                }
                return Looked::Hit(e, "stale", None);
            }
            Lookup::Miss => {}
        }
    }
    let mut semantic = None;
    if policy.mode == Mode::Semantic && !asked.refresh {
        match nearest(state, ctx, req, &policy, &tenant, alias, now).await {
            Near::Hit(e, score) => return Looked::Hit(e, "semantic-hit", Some(score)),
            Near::Miss(write) => semantic = write,
        }
    }
    if asked.only_if_cached {
        if ctx.cache == "none" || ctx.cache == "bypass" {
            ctx.cache = "miss";
        }
        return Looked::Refused(ApiError::NotCached);
    }
    let mut pending = Pending {
        key,
        tenant: tenant.into(),
        model: ctx.model.as_deref().unwrap_or(&req.model).into(),
        ttl: policy.ttl,
        stale: policy.stale,
        max_bytes: snapshot.cache.max_entry_bytes,
        leader: None,
        semantic,
    };
    if !asked.refresh {
        match state.cache.flights.join(key) {
            Role::Leader(l) => pending.leader = Some(l),
            Role::Follower(f) => {
                // Within the request's own time budget.
                let budget = snapshot.routing.budget.saturating_sub(ctx.started.elapsed());
                let bound = snapshot.cache.wait.min(budget);
                let waited = tokio::select! {
                    e = f.wait(bound) => e,
                    why = interrupted(session, stop) => return Looked::Interrupted(why),
                };
                if let Some(e) = waited {
                    return Looked::Hit(e, "coalesced", None);
                }
            }
        }
    }
    if ctx.cache != "semantic-rejected" {
        ctx.cache = "miss";
    }
    ctx.cache_write = Some(pending);
    Looked::Miss
}

/// What the semantic lookup found.
enum Near {
    Hit(Arc<Entry>, f32),
    /// No servable paraphrase; what to index once this request's answer is stored.
    Miss(Option<(key::Key, String, Vec<f32>)>),
}

/// The semantic lookup after an exact miss: the nearest questions asked in the same context,
/// the first one close enough that the look-alike guard lets through and whose answer is still
/// stored. A candidate close enough that the guard refused makes the request's outcome
/// `semantic-rejected` (it is still a miss). An embedding that fails, times out or finds every
/// slot busy makes the lookup exact-only, counted by reason.
async fn nearest(
    state: &AppState,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    policy: &Policy,
    tenant: &str,
    alias: &str,
    now: Instant,
) -> Near {
    let Some(sem) = &state.cache.semantic else {
        // The route asks for it, the model is not loaded (added by a reload: needs a restart).
        state
            .metrics
            .cache_semantic_skipped
            .with_label_values(&["no_model"])
            .inc();
        return Near::Miss(None);
    };
    let Some((context, text)) = key::context(req, tenant, alias, &policy.volatile) else {
        return Near::Miss(None);
    };
    let vector = match sem.vector(&text).await {
        Ok(v) => v,
        Err(reason) => {
            state.metrics.cache_semantic_skipped.with_label_values(&[reason]).inc();
            return Near::Miss(None);
        }
    };
    for c in sem.index.nearest(&context, &vector) {
        if c.score < policy.threshold {
            break;
        }
        if !facts::compatible(&c.text, &text) {
            ctx.cache = "semantic-rejected";
            continue;
        }
        match state.cache.get(&c.exact, now).await {
            Lookup::Fresh(e) | Lookup::Stale(e) => return Near::Hit(e, c.score),
            Lookup::Miss => sem.index.forget(&c),
        }
    }
    Near::Miss(Some((context, text, vector)))
}

/// The request's key, when the policy and the client let the cache take part.
fn cacheable(policy: &Policy, ctx: &RequestCtx, req: &LlmRequest, asked: Asked, alias: &str) -> Option<key::Key> {
    if !policy.active() || asked.no_store {
        return None;
    }
    if !matches!(
        ctx.endpoint,
        Some(Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses)
    ) {
        return None;
    }
    let canonical = req.canonical().ok()?;
    if key::temperature(canonical) > policy.max_temperature {
        return None;
    }
    if canonical
        .rest
        .get("logprobs")
        .is_some_and(|v| v != &serde_json::Value::Bool(false))
    {
        return None;
    }
    let tenant = key::tenant(policy.partition, ctx.who.key_id.as_deref(), ctx.who.team.as_deref());
    key::exact(req, &tenant, alias, &policy.volatile).ok()
}

/// Answers with a cached answer: replayed in the client's format (a stream when it asked for
/// one), through the output checks and the restoration of what this request's guardrails
/// redacted (the stored answer holds placeholders, never values).
pub(super) async fn serve(
    state: &AppState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    entry: &Entry,
    how: &'static str,
    score: Option<f32>,
) -> Result<bool> {
    // The entry is the canonical answer as JSON, which is an OpenAI client's whole answer as it
    // is: no decoding and encoding for the commonest hit.
    let body = match (req.stream, req.client) {
        (false, Wire::OpenAi) => entry.body.clone(),
        (stream, client) => {
            let Ok(resp) = serde_json::from_slice::<ChatResponse>(&entry.body) else {
                // (Only an entry written by another build could fail here.)
                return respond::error(
                    session,
                    ctx,
                    &ApiError::UpstreamProtocol("unreadable cache entry".into()),
                )
                .await;
            };
            match stream {
                true => replay::stream(client, req.include_usage, &resp),
                false => replay::whole(client, &resp),
            }
        }
    };
    let cost_nanousd = entry.cost_nanousd;
    let mut chain = Observers::default();
    chain::guard_observers(ctx, &mut chain, req.client, req.stream);
    let body = crate::api::observe::join(chain.body(body), chain.end(true));
    if let Some(refused) = chain.refusal() {
        return respond::error(session, ctx, &refused).await;
    }
    // A Responses client's answer, from the chat answer the replay made.
    let body = match req.stream {
        true => super::responses::outgoing(ctx, body),
        false => super::responses::whole(ctx, body, true),
    };
    ctx.cache = how;
    ctx.cache_saved_nanos = i64::try_from(cost_nanousd).unwrap_or(i64::MAX);
    state.metrics.cache_saved.inc_by(cost_nanousd as f64 / 1e9);
    let mut header = match ctx.head.take() {
        Some(h) => h,
        None => respond::begin_head(ctx)?,
    };
    header.set_status(200)?;
    match (score, how) {
        (Some(s), _) => header.insert_str(names::CACHE, &format!("semantic-hit; score={s:.3}"))?,
        (None, "stale") => header.insert_str(names::CACHE, "stale")?,
        (None, _) => header.insert_str(names::CACHE, "hit")?,
    }
    if let Some(k) = &ctx.cache_key {
        header.insert_str(names::CACHE_KEY, &k.hex())?;
    }
    if let Some(route) = &ctx.route {
        header.insert_str(names::ROUTE, route)?;
    }
    if let Some(arm) = ctx.ab_arm {
        header.insert_str(names::AB, arm)?;
    }
    if req.stream {
        header.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        header.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if !session.as_downstream().is_http2() {
            header.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        }
    } else {
        header.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        header.insert_number(CONTENT_LENGTH, body.len() as u64);
    }
    header.insert_number(
        names::OVERHEAD_US,
        ctx.overhead(std::time::Duration::ZERO).as_micros() as u64,
    );
    ctx.status = 200;
    super::responses::finish(state, ctx);
    session.write_response_header(header.finish(), false).await?;
    ctx.first_byte = Some(Instant::now());
    session.write_response_body(Some(body), true).await?;
    Ok(true)
}
