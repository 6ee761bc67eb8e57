//! The observer chain an answer goes through on its way to the client (`api::observe`), built
//! here for both kinds of answers: a provider's, relayed (`answer`), and a cached one, replayed
//! (`cache`).

use std::sync::Arc;

use super::ctx::RequestCtx;
use super::relay::UsageStripper;
use super::AppState;
use crate::api::observe::Observers;
use crate::config::Target;
use crate::providers::Rendered;

/// The observers the client's body goes through (see `api::observe`), in order: the output
/// checks (on what the model wrote, before any restoration, so the client's own values coming
/// back are never flagged); the cache's write (the answer as the model wrote it: placeholders,
/// never the originals; the usage chunk still in, so a replay can give it to a client that asks);
/// the restoration of what the guardrails redacted; the usage chunk the client did not ask for
/// left out.
pub(super) fn relayed(
    state: &AppState,
    ctx: &mut RequestCtx,
    client: crate::api::Wire,
    served: (&Rendered, &Target),
    stream: bool,
    ok: bool,
) -> Observers {
    let (rendered, target) = served;
    let mut chain = Observers::default();
    output_check(ctx, &mut chain, client, stream);
    if let Some(write) = write_observer(state, ctx, client, stream, ok, target.price) {
        chain.push(write);
    }
    restoration(ctx, &mut chain, client, stream);
    if stream && rendered.strip_usage {
        chain.push(Box::new(UsageStripper::default()));
    }
    chain
}

/// The guardrails' observers of an answer that did not come from a provider (a cache hit): the
/// output checks, then the restoration.
pub(super) fn guard_observers(ctx: &mut RequestCtx, chain: &mut Observers, client: crate::api::Wire, stream: bool) {
    output_check(ctx, chain, client, stream);
    restoration(ctx, chain, client, stream);
}

fn output_check(ctx: &mut RequestCtx, chain: &mut Observers, client: crate::api::Wire, stream: bool) {
    let guard = ctx
        .live
        .as_ref()
        .and_then(|l| l.snapshot.guard.as_ref())
        .map(|g| &g.guard);
    if let (Some(guard), Some(policy)) = (guard, ctx.guard_policy.as_deref()) {
        if let Some((check, audit)) = crate::guard::output::observer(Arc::clone(guard), policy, client, stream) {
            chain.push(check);
            ctx.guard_output = Some(audit);
        }
    }
}

fn restoration(ctx: &RequestCtx, chain: &mut Observers, client: crate::api::Wire, stream: bool) {
    if let Some(vault) = &ctx.guard_vault {
        chain.push(match stream {
            true => crate::guard::restore::observer(Arc::clone(vault), client),
            false => crate::guard::restore::whole_observer(Arc::clone(vault)),
        });
    }
}

/// The write observer of this request's miss, if its answer is to be stored (a success only).
fn write_observer(
    state: &AppState,
    ctx: &mut RequestCtx,
    client: crate::api::Wire,
    stream: bool,
    ok: bool,
    price: Option<crate::usage::pricing::Price>,
) -> Option<Box<dyn crate::api::observe::ResponseObserver>> {
    let pending = ctx.cache_write.take()?;
    // (A failed answer is not stored: dropping `pending` releases the flight's followers.)
    ok.then(|| Box::new(Arc::clone(&state.cache).capture(pending, client, stream, price)) as _)
}
