//! The unified LLM endpoints, run inside `request_filter` ("handler mode", see DESIGN.md).
//! `handle` is the request path as its stages, each a call into the module that owns it:
//!
//! parse → who is asking → policy route, A/B arm and plan → admission → guardrails → (cache
//! lookup) → attempts → relay (restoring what the guardrails redacted) → record.
//!
//! Fallback to another target happens only before anything was written to the client (the
//! attempt policy, `routing::attempts`); once the response header went out, a failure ends the
//! stream with an explicit error event instead of a clean-looking end (`answer`).

use pingora::prelude::*;
use pingora::proxy::Session;

use super::attempts::{self, Ran};
use super::ctx::RequestCtx;
use super::drain::{Interrupt, Stop};
use super::{answer, body, cache, respond, tenant, AppState};
use crate::api::openai::LlmRequest;
use crate::api::{ApiError, Endpoint};
use crate::config::Snapshot;
use crate::providers::anthropic::{BETA_HEADER, VERSION_HEADER};
use crate::providers::Wire;
use crate::routing::routes::RouteInput;
use crate::routing::select;

/// Serves one request to a unified endpoint. `Ok(true)`: a response was sent (always, unless
/// the client's connection failed: `Err`).
pub async fn handle(
    state: &std::sync::Arc<AppState>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    endpoint: Endpoint,
) -> Result<bool> {
    ctx.endpoint = Some(endpoint);
    let Some(live) = ctx.live.clone() else {
        return respond::error(session, ctx, &ApiError::UpstreamProtocol("no config loaded".into())).await;
    };
    let snapshot = &live.snapshot;
    // The shutdown's stop signal, for every wait of this request (see `drain`).
    let stopped = std::pin::pin!(state.drain.stopped());
    let mut stop = Stop::new(stopped);

    // Parse: the whole body (routing needs `model`, which OpenAI clients send after `messages`).
    let body = match body::read(session, ctx, &snapshot.server, &state.buffered, &mut stop).await {
        Ok(b) => b,
        Err(e) => return respond::error(session, ctx, &e).await,
    };
    let parsed = match endpoint {
        Endpoint::Responses => super::responses::prepare(state, ctx, body)
            .await
            .inspect(|r| ctx.stream = r.stream),
        _ => parse(session, ctx, endpoint, body),
    };
    let mut req = match parsed {
        Ok(r) => r,
        Err(e) => return respond::error(session, ctx, &e).await,
    };
    // Who is asking: key, team and tier (authenticated already), user and feature.
    if let Err(e) = tenant::who_is_asking(session, &req, ctx) {
        return respond::error(session, ctx, &e).await;
    }
    // Policy route, A/B arm and plan: which targets may serve the request, in what order.
    let plan = match route(session, ctx, &req, snapshot) {
        Ok(p) => p,
        Err(e) => return respond::error(session, ctx, &e).await,
    };
    super::responses::native_allowed(ctx, &mut req);
    let need = match plan.needs_estimate() {
        true => tenant::prompt_need(&req, ctx).await,
        false => None,
    };
    let order = plan.order(&live, need);
    let serving: &str = &plan.alias.name;
    // Admission: the limits of who is asking, checked and reserved before any call, and the
    // time the request may take.
    let demand = match tenant::admit_tenant(state, ctx, &req, snapshot, plan.targets).await {
        Ok(d) => d,
        Err(e) => return respond::error(session, ctx, &e).await,
    };
    let asked = session.req_header().headers.get("x-tollgate-timeout-ms");
    let budget = match crate::routing::attempts::budget(snapshot.routing.budget, asked.map(|v| v.as_bytes())) {
        Ok(b) => b,
        Err(e) => return respond::error(session, ctx, &e).await,
    };
    // Guardrails: after admission, so a refused request costs nothing; before any call, so the
    // provider sees only the redacted prompt.
    let req = match super::guard::request(state, ctx, req, snapshot.guard.as_ref()).await {
        Ok(r) => r,
        Err(e) => return respond::error(session, ctx, &e).await,
    };
    // Cache lookup: on the redacted request (the key and the stored answer never hold the
    // originals); a hit makes no call.
    let first = order.first().and_then(|i| plan.targets.get(*i));
    match cache::lookup(state, session, ctx, &req, snapshot, serving, first, &mut stop).await {
        cache::Looked::Miss => {}
        cache::Looked::Hit(entry, how, score) => {
            return cache::serve(state, session, ctx, &req, &entry, how, score).await;
        }
        cache::Looked::Refused(e) => return respond::error(session, ctx, &e).await,
        cache::Looked::Interrupted(Interrupt::ClientGone) => {
            return answer::client_gone(ctx, "while waiting for the cache")
        }
        cache::Looked::Interrupted(Interrupt::Shutdown) => return answer::shut_down(session, ctx).await,
    }

    // Attempts: the policy decides, `attempts` does the I/O.
    let plan = attempts::Plan {
        snapshot,
        live: &live,
        targets: plan.targets,
        budget,
    };
    match attempts::run(state, session, ctx, &req, &plan, order, demand, &mut stop).await {
        // Relay: through the translator and the response observers, to the client.
        Ran::Answer(a) => answer::relay(state, session, ctx, &req, a, &mut stop).await,
        Ran::GaveUp(e) => respond::error(session, ctx, &e).await,
        Ran::Interrupted(Interrupt::ClientGone, when) => answer::client_gone(ctx, when),
        Ran::Interrupted(Interrupt::Shutdown, _) => answer::shut_down(session, ctx).await,
    }
    // Record: `logging` closes every request, however it ended (`record::finish`).
}

/// The body in the client's format; an Anthropic client's version and beta headers go with it
/// to Anthropic targets.
fn parse(
    session: &Session,
    ctx: &mut RequestCtx,
    endpoint: Endpoint,
    body: bytes::Bytes,
) -> std::result::Result<LlmRequest, ApiError> {
    let mut req = LlmRequest::parse(endpoint, body)?;
    if req.client == Wire::Anthropic {
        for name in [VERSION_HEADER, BETA_HEADER] {
            if let Some(v) = session.req_header().headers.get(&name) {
                req.forward.push((name, v.clone()));
            }
        }
    }
    ctx.stream = req.stream;
    Ok(req)
}

/// The policy's choice for the request (`routing::select`), noted in `ctx` for the headers and
/// the record: the alias asked for, the route and its policies, the A/B arm.
fn route<'s>(
    session: &Session,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    snapshot: &'s Snapshot,
) -> std::result::Result<select::Plan<'s>, ApiError> {
    let headers = &session.req_header().headers;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let input = RouteInput {
        model: &req.model,
        task: header("x-tollgate-task"),
        metadata: req.metadata.as_ref(),
        key: ctx.who.key_id.as_deref(),
        team: ctx.who.team.as_deref(),
        tier: ctx.who.tier.as_deref(),
    };
    let choice = select::choose(snapshot, &input, header("x-tollgate-user").or(req.user.as_deref()));
    if let Some(alias) = choice.asked {
        ctx.model = Some(alias.name.clone());
    }
    // A route's own guardrails, else the defaults (`guardrails.defaults`).
    ctx.guard_policy = match choice.route.and_then(|r| r.guardrails.as_ref()) {
        Some(p) => Some(std::sync::Arc::clone(p)),
        None => snapshot.guard.as_ref().and_then(|g| g.default.clone()),
    };
    if let Some(r) = choice.route {
        ctx.route = Some(r.name.clone());
        ctx.cache_policy = r.cache.clone();
        ctx.fallback_on_unsupported = r.fallback_on_unsupported;
    }
    ctx.ab_arm = choice.ab_arm;
    choice.plan
}
