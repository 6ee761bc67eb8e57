//! The attempts' I/O. The attempt policy (`routing::attempts`) decides; this module does what it
//! says (checks a target against the request, sends the request, reads an answer's body, waits)
//! and reports how it went, until there is an answer to relay or nothing is left.
//!
//! While the first call waits for the provider, the tokenizer refines the limits' reservation
//! and the client's response header is begun, so neither is on the request's latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora::proxy::Session;

use super::answer::{read_whole, Answer, ReadWhole};
use super::ctx::RequestCtx;
use super::drain::{interrupted, Interrupt, Stop};
use super::respond::begin_head;
use super::tenant::{admit_provider, fits_window, refine_reservation, rejection_error};
use super::upstream::{self, AttemptError, Upstream};
use super::AppState;
use crate::api::openai::LlmRequest;
use crate::api::ApiError;
use crate::config::{Snapshot, Target};
use crate::limits::gate::Refusal;
use crate::limits::limiter::{Demand, Scope, ScopeKind};
use crate::providers::Rendered;
use crate::routing::attempts::{retry_after, Attempts, Call, Failure, Skip, Step, Verdict};
use crate::routing::balance::InflightGuard;
use crate::routing::live::{Live, TargetLive};
use crate::telemetry::trace::SpanId;

/// What the attempts are over.
pub(super) struct Plan<'p> {
    pub snapshot: &'p Snapshot,
    pub live: &'p Live,
    /// The plan's targets (`order` says in what order they are tried).
    pub targets: &'p [Arc<Target>],
    /// The request's time budget, from its start.
    pub budget: Duration,
}

/// How the attempts ended.
pub(super) enum Ran<'p> {
    /// An answer to relay: a success, or the provider's own error when nothing was left.
    Answer(Answer<'p>),
    /// Nothing was left to try: the client gets this error.
    GaveUp(ApiError),
    /// The client left, or the gateway's shutdown grace ran out (and when).
    Interrupted(Interrupt, &'static str),
}

/// Tries the plan's targets in `order` (indices into `plan.targets`) until one answers. The
/// attempts made end up in `ctx.attempts`, however the request ends.
///
/// (One loop rather than nested calls: every level of `async fn` nesting adds its locals to the
/// request's future, which Pingora moves into a box per request.)
#[allow(clippy::too_many_arguments)]
pub(super) async fn run<'p>(
    state: &AppState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    req: &'p LlmRequest,
    plan: &Plan<'p>,
    order: Vec<usize>,
    mut demand: Demand,
    stop: &mut Stop<'_>,
) -> Ran<'p> {
    let log = std::mem::take(&mut ctx.attempts);
    let (routing, model) = (&plan.snapshot.routing, &req.model);
    let mut tries = Attempts::new(
        plan.targets,
        order,
        plan.live,
        routing,
        model,
        plan.budget,
        ctx.started,
        log,
    )
    .unsupported_falls_back(ctx.fallback_on_unsupported);
    let mut rendered: Option<Rendered> = None;
    let ran = loop {
        match tries.next(Instant::now()) {
            Step::Consider(target) => match prepare(state, ctx, req, plan, target, &mut demand).await {
                Ok(r) => {
                    rendered = Some(r);
                    tries.ready();
                }
                Err(why) => tries.skip(Instant::now(), why),
            },
            Step::Send {
                target,
                live,
                key,
                remaining,
            } => {
                let Some(r) = rendered.as_ref() else {
                    break Ran::GaveUp(ApiError::UpstreamProtocol("no request was rendered".into()));
                };
                let to = To {
                    target,
                    live,
                    key,
                    remaining,
                    rendered: r,
                };
                let sent = send(state, session, ctx, req, plan, &mut tries, to, &mut demand, stop).await;
                match (sent, rendered.take()) {
                    (Sent::Answer(status, prefetched, up), Some(rendered)) => {
                        let answer = Answer {
                            target,
                            rendered,
                            status,
                            prefetched,
                            up,
                        };
                        break Ran::Answer(answer);
                    }
                    (Sent::Interrupted(why, when), _) => break Ran::Interrupted(why, when),
                    // The next try sends the same request (to this target or, re-rendered, another).
                    (_, r) => rendered = r,
                }
            }
            Step::Wait(wait) => {
                if let Err(why) = back_off(state, session, ctx, &tries, wait, stop).await {
                    break Ran::Interrupted(why, "during a retry backoff");
                }
            }
            Step::GiveUp(e) => break Ran::GaveUp(e),
        }
    };
    match &ran {
        Ran::Interrupted(..) => tries.abandon(Instant::now()),
        Ran::Answer(_) if tries.fell_back() => {
            if let Some(m) = &ctx.model {
                state.metrics.fallbacks.with_label_values(&[m]).inc();
            }
        }
        Ran::Answer(_) | Ran::GaveUp(_) => {}
    }
    ctx.attempts = tries.into_log();
    ran
}

/// A target's checks against the request before any call: its context window, its provider's
/// limits (reserved for this attempt), and rendering the request in its dialect.
async fn prepare(
    state: &AppState,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    plan: &Plan<'_>,
    target: &Target,
    demand: &mut Demand,
) -> Result<Rendered, Skip> {
    if let Some(window) = target.context_window {
        if !fits_window(req, ctx, window).await {
            return Err(Skip::ContextWindow);
        }
    }
    if let Some(limits) = &target.provider.limits {
        let scope = Scope {
            kind: ScopeKind::Provider,
            id: &target.provider.name,
            limits,
        };
        match admit_provider(state, ctx, req, plan.snapshot, plan.targets, scope, demand).await {
            Ok(a) => {
                if let Some(previous) = ctx.provider_admission.replace(a) {
                    previous.settle(0, 0, crate::time::unix_ms());
                }
            }
            Err(Refusal::Limit(r)) => {
                state.metrics.rate_limited.with_label_values(&[r.reason.label()]).inc();
                return Err(Skip::ProviderLimit(rejection_error(&r)));
            }
            Err(Refusal::Unavailable) => {
                ctx.retry_after_ms = Some(1_000);
                return Err(Skip::LimitsUnavailable);
            }
        }
    }
    let native = req.responses_native.is_some()
        && matches!(
            target.provider.kind,
            crate::providers::ProviderKind::OpenAi | crate::providers::ProviderKind::Azure
        );
    if let (Some(refusal), false) = (&req.responses_refusal, native) {
        return Err(Skip::Unsupported(refusal.clone()));
    }
    target
        .provider
        .kind
        .adapter()
        .render(req, &target.render_target())
        .map_err(|e| match e {
            ApiError::CredentialsUnavailable { .. } => Skip::Credentials(e),
            e => Skip::Unsupported(e),
        })
}

/// Where `Step::Send` sends.
struct To<'a> {
    target: &'a Arc<Target>,
    live: Option<&'a TargetLive>,
    key: Option<usize>,
    /// What is left of the budget: no wait may outlive it.
    remaining: Duration,
    rendered: &'a Rendered,
}

/// How one call ended.
#[allow(clippy::large_enum_variant)] // (as `Ran`)
enum Sent {
    /// The answer to relay (its body, when the policy had it read).
    Answer(u16, Option<Bytes>, Box<Upstream>),
    /// No answer to relay: ask the policy what is next.
    Next,
    Interrupted(Interrupt, &'static str),
}

/// One call: sends, reports the answer or the failure, reads the answer's body if the policy asks.
#[allow(clippy::too_many_arguments)]
async fn send(
    state: &AppState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    plan: &Plan<'_>,
    tries: &mut Attempts<'_>,
    to: To<'_>,
    demand: &mut Demand,
    stop: &mut Stop<'_>,
) -> Sent {
    let provider = &to.target.provider;
    let mut timeouts = provider.timeouts;
    timeouts.connect = timeouts.connect.min(to.remaining);
    timeouts.first_byte = timeouts.first_byte.min(to.remaining);
    let guard = to.live.map(|l| l.stats.start());
    // Each call is a child span of this request; the provider sees it as its parent.
    let call = Call {
        started: Instant::now(),
        span: SpanId::random(),
    };
    let traceparent = ctx.trace.upstream_header(call.span);
    let sent = upstream::send(
        &state.connector,
        session,
        to.target,
        to.rendered,
        req.stream,
        timeouts,
        to.key,
        traceparent.as_deref(),
        stop,
        // When the limits were reserved on a bound of the prompt, the tokenizer counts it once
        // the request is out, while the provider works.
        async {
            *demand = refine_reservation(req, ctx, plan.snapshot, plan.targets, *demand).await;
            ctx.head = begin_head(ctx).ok();
        },
    )
    .await;
    // (Taken apart before the next await, so that the call's future and the answer's connection
    // do not both take room in the request's future.)
    let heard = match sent {
        Ok(up) => Ok(Box::new(up)),
        Err(AttemptError::Failed(failure)) => Err(failure),
        Err(AttemptError::Interrupted(why)) => return Sent::Interrupted(why, "while waiting for the provider"),
    };
    let call = Heard {
        target: to.target,
        guard,
        call,
    };
    outcome(state, session, ctx, req, plan, tries, call, heard, demand, stop).await
}

/// A call that came back.
struct Heard<'a> {
    target: &'a Arc<Target>,
    /// Counts the call in its target's in-flight number (until the request ends, if relayed).
    guard: Option<InflightGuard>,
    call: Call,
}

/// A call's outcome, reported to the policy: an answer's body is read if the policy asks, then
/// the answer is kept for the relay or dropped.
#[allow(clippy::too_many_arguments)]
async fn outcome(
    state: &AppState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    req: &LlmRequest,
    plan: &Plan<'_>,
    tries: &mut Attempts<'_>,
    heard: Heard<'_>,
    sent: Result<Box<Upstream>, Failure>,
    demand: &mut Demand,
    stop: &mut Stop<'_>,
) -> Sent {
    // (A no-op when it ran while the provider worked, which it did unless the connection failed
    // before the request went out.)
    *demand = refine_reservation(req, ctx, plan.snapshot, plan.targets, *demand).await;
    let provider = &heard.target.provider.name;
    let mut up = match sent {
        Ok(up) => up,
        Err(failure) => {
            ctx.upstream_time += heard.call.started.elapsed();
            let kind = failure.kind();
            state.metrics.upstream_errors.with_label_values(&[provider, kind]).inc();
            tracing::debug!(provider = %provider, kind, "upstream attempt failed: {failure:?}");
            tries.failed(Instant::now(), heard.call, failure);
            return Sent::Next;
        }
    };
    let header = up.session.response_header();
    let status = header.map_or(0, |h| h.status.as_u16());
    let wait = header.and_then(|h| retry_after(&h.headers));
    let call = Call {
        started: up.started,
        ..heard.call
    };
    let mut verdict = tries.answered(Instant::now(), call, status, wait);
    let mut prefetched = None;
    if verdict == Verdict::ReadBody {
        verdict = match read_whole(session, &mut up, stop).await {
            Ok(body) => tries.body(Instant::now(), Ok(&prefetched.insert(body)[..])),
            Err(ReadWhole::Interrupted(why)) => return Sent::Interrupted(why, "while the provider answered"),
            Err(ReadWhole::Failed(e)) => tries.body(Instant::now(), Err(e)),
        };
    }
    if verdict == Verdict::Relay {
        ctx.inflight_guard = heard.guard;
        ctx.served_by = Some(Arc::clone(heard.target));
        return Sent::Answer(status, prefetched, up);
    }
    ctx.upstream_time += up.started.elapsed();
    state
        .metrics
        .upstream_errors
        .with_label_values(&[provider, "status"])
        .inc();
    Sent::Next // (the connection is not pooled: its body may be unread)
}

/// Waits before another try of the same target, unless the client leaves or the gateway stops.
async fn back_off(
    state: &AppState,
    session: &mut Session,
    ctx: &mut RequestCtx,
    tries: &Attempts<'_>,
    wait: Duration,
    stop: &mut Stop<'_>,
) -> Result<(), Interrupt> {
    if let Some(target) = tries.target() {
        state.metrics.retries.with_label_values(&[&target.provider.name]).inc();
    }
    let slept = Instant::now();
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        why = interrupted(session, stop) => return Err(why),
    }
    ctx.backoff_time += slept.elapsed();
    Ok(())
}
