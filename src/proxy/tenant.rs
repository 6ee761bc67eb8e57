//! Who is asking and what they may use: attribution (user, feature, team) and the key's models,
//! the tokenizer's estimates (context-window checks, cost ordering, usage a provider did not
//! report), and the limits reserved before any call (the tenant's) and per attempt (the
//! provider's).

use std::sync::Arc;

use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::AppState;
use crate::api::openai::LlmRequest;
use crate::api::{ApiError, Endpoint};
use crate::config::Target;
use crate::limits::gate::{Refusal, Ticket};
use crate::limits::limiter::{Demand, Limits, RejectReason, Scope, ScopeKind};
use crate::limits::prompt::Prompt;
use crate::limits::tokens::PromptNeed;
use crate::providers::Wire;
use crate::time::unix_ms;

/// Prompts above this size are estimated on a blocking thread, not on the proxy's worker.
const INLINE_ESTIMATE_LIMIT: usize = 32 * 1024;

/// Tokens a chat request needs: the estimated prompt plus its completion budget. `None` when it
/// cannot be estimated (not a chat request).
pub(super) async fn estimate_need(req: &LlmRequest, ctx: &mut RequestCtx) -> Option<u64> {
    let need = prompt_need(req, ctx).await?;
    Some(need.prompt + need.max_output.unwrap_or(0))
}

pub(super) async fn estimate_prompt(req: &LlmRequest, ctx: &mut RequestCtx) -> Option<u64> {
    Some(prompt_need(req, ctx).await?.prompt)
}

/// The prompt's estimate and completion cap, computed once per request (large prompts off the
/// event loop). An OpenAI-shaped body is read through the estimate's own view of it
/// (`limits::prompt`): its passthrough never needs the canonical request, so the estimate does
/// not build one.
pub(super) async fn prompt_need(req: &LlmRequest, ctx: &mut RequestCtx) -> Option<PromptNeed> {
    if let Some(n) = ctx.prompt_need {
        return Some(n);
    }
    if !matches!(req.endpoint, Endpoint::ChatCompletions | Endpoint::Messages) {
        return None;
    }
    fn of(p: &Prompt<'_>) -> PromptNeed {
        PromptNeed {
            prompt: crate::limits::tokens::estimate(p),
            max_output: p.max_output_tokens(),
        }
    }
    let large = req.body.len() > INLINE_ESTIMATE_LIMIT;
    let need = match req.client {
        Wire::OpenAi if large => {
            let body = req.body.clone();
            tokio::task::spawn_blocking(move || Prompt::parse(&body).map(|p| of(&p)))
                .await
                .ok()??
        }
        Wire::OpenAi => of(&Prompt::parse(&req.body)?),
        Wire::Anthropic if large => {
            let owned = req.canonical().ok()?.clone();
            tokio::task::spawn_blocking(move || of(&Prompt::of_chat(&owned)))
                .await
                .ok()?
        }
        Wire::Anthropic => of(&Prompt::of_chat(req.canonical().ok()?)),
    };
    ctx.prompt_need = Some(need);
    Some(need)
}

/// Usage counted by the gateway when the provider reported none (a stream without
/// `include_usage`, a cut stream, a provider that never reports it): the prompt by the
/// tokenizer, the completion from the text that went to the client. Marked estimated.
pub(super) async fn fill_missing_usage(req: &LlmRequest, ctx: &mut RequestCtx, completion_text: Option<&str>) {
    if ctx.usage.is_some() || !matches!(req.endpoint, Endpoint::ChatCompletions | Endpoint::Messages) {
        return;
    }
    let Some(prompt) = estimate_prompt(req, ctx).await else {
        return;
    };
    let completion = completion_text.map_or(0, crate::limits::tokens::count_text);
    ctx.usage = Some(crate::api::chat::Usage::new(prompt, completion));
    ctx.tokens_estimated = true;
}

/// A limiter's refusal as the client's 429.
pub(super) fn rejection_error(r: &crate::limits::limiter::Rejection) -> ApiError {
    let message = format!(
        "{} for {}; retry after {} ms.",
        r.reason.message(),
        r.scope,
        r.retry_after_ms
    );
    match r.reason {
        crate::limits::limiter::RejectReason::Budget => ApiError::BudgetExceeded(message),
        _ => ApiError::RateLimited(message),
    }
}

/// Checks and reserves the key's, the team's and the user's limits for this request's estimate
/// (prompt tokens, plus `max_tokens` or the configured allowance; its cost at the dearest target
/// of the plan). Returns the demand, for the provider checks per attempt.
///
/// The tokenizer is kept off the request's latency: an OpenAI chat body is reserved at once on
/// an upper bound of its prompt read off its bytes (`tokens::bound_of_body`), and the tokenizer
/// counts it while the first attempt waits for the provider (`refine_reservation`). A refusal is
/// only ever decided on the tokenizer's count: when the bound does not fit, the prompt is
/// counted and the admission tried again.
pub(super) async fn admit_tenant(
    state: &AppState,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    snapshot: &crate::config::Snapshot,
    plan: &[Arc<Target>],
) -> std::result::Result<Demand, ApiError> {
    let settings = &snapshot.limits;
    let key = ctx.key.clone();
    let key_limits = key.as_deref().and_then(|k| k.parsed_limits.clone());
    let team_limits = ctx.who.team.as_deref().and_then(|t| settings.teams.get(t)).cloned();
    let user_limits = ctx.who.user.as_ref().and(settings.per_user.clone());
    let ip_limits = ctx.who.ip.as_ref().and(settings.per_ip.clone());
    let any_provider_limits = plan.iter().any(|t| t.provider.limits.is_some());
    let tier_ceiling = ctx
        .who
        .tier
        .as_deref()
        .and_then(|t| settings.tiers.get(t))
        .copied()
        .unwrap_or(1.0);
    if key_limits.is_none()
        && team_limits.is_none()
        && user_limits.is_none()
        && ip_limits.is_none()
        && !any_provider_limits
    {
        return Ok(Demand {
            tokens: 0,
            cost_nanos: 0,
            tier_ceiling,
        });
    }
    // The tokenizer runs only when some limit is in tokens or dollars: rpm and concurrency
    // caps do not need the estimate.
    let sized = |l: &Option<Arc<Limits>>| l.as_deref().is_some_and(Limits::needs_estimate);
    let needs_estimate = sized(&key_limits)
        || sized(&team_limits)
        || sized(&user_limits)
        || sized(&ip_limits)
        || plan
            .iter()
            .any(|t| t.provider.limits.as_deref().is_some_and(Limits::needs_estimate));
    let (need, exact) = if needs_estimate {
        match quick_need(req, ctx).await {
            Some((n, exact)) => (Some(n), exact),
            None => (None, true),
        }
    } else {
        (None, true)
    };
    let mut demand = demand_for(snapshot, plan, need, tier_ceiling);
    let limits = TenantLimits {
        key: key.as_deref().zip(key_limits.as_ref()),
        team: team_limits.as_ref(),
        user: user_limits.as_ref(),
        ip: ip_limits.as_ref(),
    };
    if limits.is_empty() {
        ctx.estimate_pending = !exact;
        return Ok(demand);
    }
    let mut result = state.limiter.admit(&limits.scopes(&ctx.who), demand, unix_ms()).await;
    if !exact && refused_on_size(&result) {
        // The bound did not fit: decide on the tokenizer's count.
        let counted = prompt_need(req, ctx).await.or(need);
        demand = demand_for(snapshot, plan, counted, tier_ceiling);
        result = state.limiter.admit(&limits.scopes(&ctx.who), demand, unix_ms()).await;
    } else {
        ctx.estimate_pending = !exact;
    }
    admitted(state, ctx, result).map(|()| demand)
}

/// The limiter's answer into the ctx: the ticket and its rate headers, or the refusal's error.
fn admitted(
    state: &AppState,
    ctx: &mut RequestCtx,
    result: std::result::Result<Ticket, Refusal>,
) -> std::result::Result<(), ApiError> {
    match result {
        Ok(a) => {
            ctx.rate_headers = Some(a.headers());
            ctx.admission = Some(a);
            Ok(())
        }
        Err(Refusal::Limit(r)) => {
            state.metrics.rate_limited.with_label_values(&[r.reason.label()]).inc();
            ctx.rate_headers = Some(r.headers);
            ctx.retry_after_ms = Some(r.retry_after_ms);
            Err(rejection_error(&r))
        }
        Err(Refusal::Unavailable) => {
            ctx.retry_after_ms = Some(1_000);
            Err(ApiError::LimitsUnavailable)
        }
    }
}

/// The tenant's limits for a request whose size is unknown before it is answered (a native
/// passthrough call): its request rate and concurrency are checked and taken now; the tokens and
/// dollars it used are charged when it ends (`record::finish` settles the reservation).
pub(super) async fn admit_unsized(
    state: &AppState,
    ctx: &mut RequestCtx,
    snapshot: &crate::config::Snapshot,
) -> std::result::Result<(), ApiError> {
    let settings = &snapshot.limits;
    let key = ctx.key.clone();
    let key_limits = key.as_deref().and_then(|k| k.parsed_limits.clone());
    let team_limits = ctx.who.team.as_deref().and_then(|t| settings.teams.get(t)).cloned();
    let user_limits = ctx.who.user.as_ref().and(settings.per_user.clone());
    let ip_limits = ctx.who.ip.as_ref().and(settings.per_ip.clone());
    let limits = TenantLimits {
        key: key.as_deref().zip(key_limits.as_ref()),
        team: team_limits.as_ref(),
        user: user_limits.as_ref(),
        ip: ip_limits.as_ref(),
    };
    if limits.is_empty() {
        return Ok(());
    }
    let demand = Demand {
        tokens: 0,
        cost_nanos: 0,
        tier_ceiling: 1.0,
    };
    let result = state.limiter.admit(&limits.scopes(&ctx.who), demand, unix_ms()).await;
    admitted(state, ctx, result)
}

/// Checks and reserves a provider's own limits for one attempt. Like the tenant's, a refusal is
/// decided on the tokenizer's count: when the demand was a bound of the prompt and did not fit,
/// the prompt is counted first (which also shrinks the tenant's reservation) and `demand` becomes
/// the counted one.
#[allow(clippy::too_many_arguments)]
pub(super) async fn admit_provider(
    state: &AppState,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    snapshot: &crate::config::Snapshot,
    plan: &[Arc<Target>],
    scope: Scope<'_>,
    demand: &mut Demand,
) -> std::result::Result<Ticket, Refusal> {
    let result = state
        .limiter
        .admit(std::slice::from_ref(&scope), *demand, unix_ms())
        .await;
    if !(ctx.estimate_pending && refused_on_size(&result)) {
        return result;
    }
    *demand = refine_reservation(req, ctx, snapshot, plan, *demand).await;
    state.limiter.admit(&[scope], *demand, unix_ms()).await
}

/// Refused for the request's size (tokens, dollars, a tier's share), which the tokenizer's count
/// may change; a request-rate or concurrency refusal it cannot.
fn refused_on_size(result: &std::result::Result<Ticket, Refusal>) -> bool {
    matches!(result, Err(Refusal::Limit(r))
        if matches!(r.reason, RejectReason::Tokens | RejectReason::Budget | RejectReason::Capacity))
}

/// The limits of who is asking, as found for this request.
struct TenantLimits<'a> {
    key: Option<(&'a crate::limits::keys::VirtualKey, &'a Arc<Limits>)>,
    team: Option<&'a Arc<Limits>>,
    user: Option<&'a Arc<Limits>>,
    ip: Option<&'a Arc<Limits>>,
}

impl<'a> TenantLimits<'a> {
    fn is_empty(&self) -> bool {
        self.key.is_none() && self.team.is_none() && self.user.is_none() && self.ip.is_none()
    }

    fn scopes(&self, who: &'a super::ctx::Attribution) -> Vec<Scope<'a>> {
        let mut scopes = Vec::with_capacity(4);
        if let Some((k, l)) = self.key {
            scopes.push(Scope {
                kind: ScopeKind::Key,
                id: &k.id,
                limits: l,
            });
        }
        if let (Some(t), Some(l)) = (&who.team, self.team) {
            scopes.push(Scope {
                kind: ScopeKind::Team,
                id: t,
                limits: l,
            });
        }
        if let (Some(u), Some(l)) = (&who.user, self.user) {
            scopes.push(Scope {
                kind: ScopeKind::User,
                id: u,
                limits: l,
            });
        }
        if let (Some(ip), Some(l)) = (&who.ip, self.ip) {
            scopes.push(Scope {
                kind: ScopeKind::Ip,
                id: ip,
                limits: l,
            });
        }
        scopes
    }
}

/// A request's demand for a prompt need (none: nothing to estimate): the prompt plus its
/// completion cap (or the configured allowance), and its cost at the dearest target of the plan.
fn demand_for(
    snapshot: &crate::config::Snapshot,
    plan: &[Arc<Target>],
    need: Option<PromptNeed>,
    tier_ceiling: f64,
) -> Demand {
    let prompt = need.map_or(0, |n| n.prompt);
    let completion = need
        .and_then(|n| n.max_output)
        .unwrap_or(snapshot.limits.default_completion_tokens);
    let cost_nanos = plan
        .iter()
        .filter_map(|t| t.price.as_ref().map(|p| p.estimate_nanos(prompt, completion)))
        .max()
        .unwrap_or(0);
    Demand {
        tokens: prompt + completion,
        cost_nanos,
        tier_ceiling,
    }
}

/// The prompt need at once, and whether it is the tokenizer's count: the count when it is
/// already known or the client speaks another dialect, else (an OpenAI chat body) the bound
/// read off the body's bytes.
async fn quick_need(req: &LlmRequest, ctx: &mut RequestCtx) -> Option<(PromptNeed, bool)> {
    if let Some(n) = ctx.prompt_need {
        return Some((n, true));
    }
    if req.client == Wire::OpenAi && req.endpoint == Endpoint::ChatCompletions {
        let bound = PromptNeed {
            prompt: crate::limits::tokens::bound_of_body(&req.body),
            max_output: req.max_output,
        };
        return Some((bound, false));
    }
    Some((prompt_need(req, ctx).await?, true))
}

/// Whether the prompt plus its completion cap fit in a context window of `window` tokens,
/// without the tokenizer when the bound already fits. (`true` when it cannot be estimated.)
pub(super) async fn fits_window(req: &LlmRequest, ctx: &mut RequestCtx, window: u64) -> bool {
    if let (None, Wire::OpenAi, Endpoint::ChatCompletions) = (ctx.prompt_need, req.client, req.endpoint) {
        let bound = crate::limits::tokens::bound_of_body(&req.body) + req.max_output.unwrap_or(0);
        if bound <= window {
            return true;
        }
    }
    estimate_need(req, ctx).await.is_none_or(|need| need <= window)
}

/// Counts the prompt with the tokenizer when the limits were reserved on its bound, and shrinks
/// the reservations (the tenant's and the provider's) and the rate-limit headers to the count.
/// Returns the demand for later attempts. Runs while the first attempt waits for the provider.
pub(super) async fn refine_reservation(
    req: &LlmRequest,
    ctx: &mut RequestCtx,
    snapshot: &crate::config::Snapshot,
    plan: &[Arc<Target>],
    demand: Demand,
) -> Demand {
    if !std::mem::take(&mut ctx.estimate_pending) {
        return demand;
    }
    // A body the tokenizer cannot read keeps the reservation of its bound.
    let Some(counted) = prompt_need(req, ctx).await else {
        return demand;
    };
    let refined = demand_for(snapshot, plan, Some(counted), demand.tier_ceiling);
    let now = unix_ms();
    for ticket in [ctx.admission.as_mut(), ctx.provider_admission.as_mut()]
        .into_iter()
        .flatten()
    {
        ticket.resize(refined.tokens, refined.cost_nanos, now);
    }
    if let Some(a) = &ctx.admission {
        ctx.rate_headers = Some(a.headers());
    }
    refined
}

/// Who is asking, completed from the request (`attribute`: the key, team and tier come from the
/// virtual key, see `authenticate`), and whether their key may use the model asked for.
pub(super) fn who_is_asking(session: &Session, req: &LlmRequest, ctx: &mut RequestCtx) -> Result<(), ApiError> {
    attribute(session, req, ctx);
    if ctx.key.as_ref().is_some_and(|k| !k.allows_model(&req.model)) {
        return Err(ApiError::ModelNotAllowedForKey {
            model: req.model.clone(),
        });
    }
    Ok(())
}

/// Who the request is for: the `user` field or `x-tollgate-user`, the feature from
/// `x-tollgate-feature` or `metadata.feature`, the team from `x-tollgate-team`. A virtual key's
/// user, team and tier win over headers.
fn attribute(session: &Session, req: &LlmRequest, ctx: &mut RequestCtx) {
    let h = &session.req_header().headers;
    let header = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| v.chars().take(200).collect::<String>())
    };
    // A key bound to a user wins over what the request says.
    if ctx.key.as_ref().is_none_or(|k| k.user.is_none()) {
        ctx.who.user = header("x-tollgate-user").or_else(|| req.user.clone());
    }
    ctx.who.feature = header("x-tollgate-feature").or_else(|| {
        req.metadata
            .as_ref()
            .and_then(|m| m.get("feature"))
            .and_then(|v| v.as_str())
            .map(|v| v.chars().take(200).collect())
    });
    if ctx.who.team.is_none() {
        ctx.who.team = header("x-tollgate-team");
    }
}

/// The assistant text of a whole OpenAI-shaped response (for counting when it has no usage).
pub(super) fn completion_text_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Resp {
        #[serde(default)]
        choices: Vec<Choice>,
    }
    #[derive(serde::Deserialize)]
    struct Choice {
        #[serde(default)]
        message: Option<Msg>,
        #[serde(default)]
        text: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Msg {
        #[serde(default)]
        content: Option<String>,
    }
    let r: Resp = serde_json::from_slice(body).ok()?;
    let mut out = String::new();
    for c in r.choices {
        if let Some(t) = c.message.and_then(|m| m.content).or(c.text) {
            out.push_str(&t);
        }
    }
    Some(out)
}
