//! Who is asking and what they may use: attribution (user, feature, team), the tokenizer's
//! estimates (context-window checks, usage a provider did not report), and the tenant's limits
//! reserved before any call.

use std::sync::Arc;

use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::AppState;
use crate::api::openai::LlmRequest;
use crate::api::{ApiError, Endpoint};
use crate::config::Target;
use crate::limits::gate::Refusal;
use crate::limits::limiter::{Demand, Limits, Scope, ScopeKind};
use crate::limits::prompt::Prompt;
use crate::providers::Wire;

/// Prompts above this size are estimated on a blocking thread, not on the proxy's worker.
const INLINE_ESTIMATE_LIMIT: usize = 32 * 1024;

/// A chat request's prompt tokens by the tokenizer, and its own cap on the completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptNeed {
    pub prompt: u64,
    pub max_output: Option<u64>,
}

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

/// Wall-clock milliseconds: budget periods are calendar windows.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

/// The key's limits, parsed once per version of the key.
pub(super) fn key_limits(
    state: &AppState,
    key: &crate::limits::keys::VirtualKey,
) -> Option<Arc<crate::limits::limiter::Limits>> {
    if key.limits.is_null() {
        return None;
    }
    if let Some(hit) = state.key_limits.get(&key.id) {
        if hit.0 == key.updated_ms {
            return hit.1.clone();
        }
    }
    let parsed = serde_json::from_value::<crate::limits::limiter::Limits>(key.limits.clone())
        .ok()
        .map(Arc::new);
    state
        .key_limits
        .insert(key.id.clone(), (key.updated_ms, parsed.clone()));
    parsed
}

/// Checks and reserves the key's, the team's and the user's limits for this request's estimate
/// (prompt tokens by the tokenizer, plus `max_tokens` or the configured allowance; its cost at the
/// dearest target of the plan). Returns the demand, for the provider checks per attempt.
pub(super) async fn admit_tenant(
    state: &AppState,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    snapshot: &crate::config::Snapshot,
    plan: &[Arc<Target>],
) -> std::result::Result<Demand, ApiError> {
    let settings = &snapshot.limits;
    let key = ctx.key.clone();
    let key_limits = key.as_deref().and_then(|k| key_limits(state, k));
    let team_limits = ctx.who.team.as_deref().and_then(|t| settings.teams.get(t)).cloned();
    let user_limits = ctx.who.user.as_ref().and(settings.per_user.clone());
    let any_provider_limits = plan.iter().any(|t| t.provider.limits.is_some());
    let tier_ceiling = ctx
        .who
        .tier
        .as_deref()
        .and_then(|t| settings.tiers.get(t))
        .copied()
        .unwrap_or(1.0);
    if key_limits.is_none() && team_limits.is_none() && user_limits.is_none() && !any_provider_limits {
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
        || plan
            .iter()
            .any(|t| t.provider.limits.as_deref().is_some_and(Limits::needs_estimate));
    let need = if needs_estimate {
        prompt_need(req, ctx).await
    } else {
        None
    };
    let prompt = need.map_or(0, |n| n.prompt);
    let completion = need
        .and_then(|n| n.max_output)
        .unwrap_or(settings.default_completion_tokens);
    let cost_nanos = plan
        .iter()
        .filter_map(|t| t.price.as_ref().map(|p| p.estimate_nanos(prompt, completion)))
        .max()
        .unwrap_or(0);
    let demand = Demand {
        tokens: prompt + completion,
        cost_nanos,
        tier_ceiling,
    };
    let mut scopes = Vec::with_capacity(3);
    if let (Some(k), Some(l)) = (&key, &key_limits) {
        scopes.push(Scope {
            kind: ScopeKind::Key,
            id: &k.id,
            limits: l,
        });
    }
    if let (Some(t), Some(l)) = (&ctx.who.team, &team_limits) {
        scopes.push(Scope {
            kind: ScopeKind::Team,
            id: t,
            limits: l,
        });
    }
    if let (Some(u), Some(l)) = (&ctx.who.user, &user_limits) {
        scopes.push(Scope {
            kind: ScopeKind::User,
            id: u,
            limits: l,
        });
    }
    if scopes.is_empty() {
        return Ok(demand);
    }
    match state.limiter.admit(&scopes, demand, wall_ms()).await {
        Ok(a) => {
            ctx.rate_headers = Some(a.headers());
            ctx.admission = Some(a);
            Ok(demand)
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

/// Who the request is for: the `user` field or `x-tollgate-user`, the feature from
/// `x-tollgate-feature` or `metadata.feature`, the team from `x-tollgate-team`. (Virtual keys,
/// when they come, set key, team and tier from the key and win over headers.)
pub(super) fn attribute(session: &Session, req: &LlmRequest, ctx: &mut RequestCtx) {
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
