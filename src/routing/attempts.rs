//! The attempt policy: which target to try next, whether to try one again and after how long,
//! and what the client gets when nothing is left. A state machine that knows nothing of sockets:
//! the proxy asks `next` what to do, does it (checks a target against the request, sends, reads
//! a body, waits) and reports how it went (`ready`/`skip`, `answered`, `failed`, `body`). Time is
//! passed in (`now`), so tests drive it without sleeping.
//!
//! The rules (DESIGN.md: fallback happens before the first byte reaches the client):
//! - Targets are tried in the plan's order. One whose breaker is open is skipped; after the
//!   breaker's cooldown one request probes it, and a probe is not retried.
//! - A target the request cannot go to (its context window, the provider's limits, a feature its
//!   dialect lacks) is skipped without a call.
//! - No response header (a connect or TLS error, a first-byte timeout, a reset): the same target
//!   again after a jittered exponential backoff, up to `retries` times, then the next target.
//! - A status in `retry_on`, or a 401 while the provider's key pool has another key: likewise,
//!   except that the provider's `retry-after-ms` / `Retry-After` replaces the backoff; a wait
//!   longer than `max_retry_after` or than the budget has left moves to the next target at once.
//! - A 400 saying the prompt exceeds the model's context window moves to the next target without
//!   a retry (a later one may have a larger window). Its body is read to tell, on every target
//!   but the last.
//! - With nothing left (the last target's last try, or a wait too long there), the provider's own
//!   answer is relayed: it tells the client more than any error of the gateway's would.
//! - No try starts, and no wait is begun, that the request's budget cannot see through: the
//!   client then gets 504 `budget_exhausted` listing the attempts. Otherwise, when nothing is
//!   left to try, it gets the error of the last call that got no answer (a connect error names
//!   the provider), else the first reason a target was passed over (an open breaker: 503
//!   `no_provider_available`).
//! - Once an answer is relayed nothing is tried again: a failure after the first byte ends the
//!   stream with an explicit error event (`Cut`).
//!
//! The machine also keeps the targets' health, which is what the attempts teach:
//! - The breaker counts a call that got no header, a 5xx or another `retry_on` status as a
//!   failure, and any other answer (a 4xx included: the request was bad, not the target) as a
//!   success. A 429 counts as neither: it is the provider's rate limit, not its health, and is
//!   the key pool's business (a probe that got one is given back, and the next request probes).
//! - A 429 or a 401 rests the key that got it for `key_cooldown`; the pool's other keys serve.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::breaker::{ms_at, Admission};
use super::live::{Live, TargetLive};
use crate::api::ApiError;
use crate::config::snapshot::RoutingSettings;
use crate::config::Target;
use crate::telemetry::trace::SpanId;

/// One upstream attempt, as the usage record, the headers and the trace report it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub target: Arc<Target>,
    /// The upstream status, or the kind of failure (`connect`, `timeout`, `protocol`, or why the
    /// target was passed over: `breaker_open`, `context_window`, …).
    pub outcome: AttemptOutcome,
    /// When the attempt went to the network (`None`: skipped before any call, e.g. breaker open).
    pub started: Option<Instant>,
    /// How long it took (for the served attempt: until its body ended).
    pub elapsed: Duration,
    /// Its span in the trace (the parent the provider saw in `traceparent`).
    pub span: Option<SpanId>,
}

impl Attempt {
    /// A target passed over without a call.
    pub fn skipped(target: &Arc<Target>, why: &'static str) -> Attempt {
        Attempt {
            target: Arc::clone(target),
            outcome: AttemptOutcome::Failed(why),
            started: None,
            elapsed: Duration::ZERO,
            span: None,
        }
    }

    /// A call that was made: `call` says when it started, `now` is when it came back.
    pub fn sent(target: &Arc<Target>, outcome: AttemptOutcome, call: Call, now: Instant) -> Attempt {
        Attempt {
            target: Arc::clone(target),
            outcome,
            started: Some(call.started),
            elapsed: now.saturating_duration_since(call.started),
            span: Some(call.span),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Status(u16),
    Failed(&'static str),
}

/// The attempts as `provider:outcome,…` (`openai:429,anthropic:200`), for logs and headers.
pub fn summary(attempts: &[Attempt]) -> String {
    let mut s = String::new();
    for (i, a) in attempts.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&a.target.provider.name);
        s.push(':');
        match &a.outcome {
            AttemptOutcome::Status(code) => s.push_str(&code.to_string()),
            AttemptOutcome::Failed(kind) => s.push_str(kind),
        }
    }
    s
}

/// A call as the proxy made it: when it started and its span in the trace.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub started: Instant,
    pub span: SpanId,
}

/// Why a call got no response header. The proxy classifies its transport's errors into these
/// (`proxy::upstream::classify`, one exhaustive match over Pingora's error types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Connecting failed: refused, no route, the TLS handshake or the certificate, a socket error.
    Connect(String),
    /// Connecting, writing the request or waiting for the first byte took too long.
    Timeout(String),
    /// The exchange broke before the header: a reset or closed connection, a malformed answer.
    Protocol(String),
    /// The provider has no usable address (the plan should not have offered it).
    Unavailable,
}

impl Failure {
    /// The label of the attempt (`x-tollgate-attempts`) and of the `upstream_errors` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Connect(_) => "connect",
            Failure::Timeout(_) => "timeout",
            Failure::Protocol(_) => "protocol",
            Failure::Unavailable => "unavailable",
        }
    }

    /// The client's error when this failure, before the answer's header, is the last word on
    /// `target` for a request asking for `model`.
    pub fn client_error(self, target: &Target, model: &str) -> ApiError {
        match self {
            Failure::Connect(cause) => ApiError::UpstreamConnect {
                provider: target.provider.name.clone(),
                url: target.provider.display_url.clone(),
                cause,
            },
            Failure::Timeout(m) => ApiError::UpstreamTimeout(m),
            Failure::Protocol(m) => ApiError::UpstreamProtocol(m),
            Failure::Unavailable => ApiError::NoProvider {
                model: model.to_string(),
                reason: "no target could be tried".into(),
            },
        }
    }

    /// The client's error when this failure cut the reading of an answer's body.
    pub fn body_error(self) -> ApiError {
        match self {
            Failure::Timeout(m) => ApiError::UpstreamTimeout(m),
            Failure::Connect(_) | Failure::Protocol(_) | Failure::Unavailable => {
                ApiError::UpstreamProtocol(self.kind().to_string())
            }
        }
    }
}

/// Why the proxy passed a target over before any call (its checks of the request against it).
#[derive(Debug)]
pub enum Skip {
    /// The prompt (estimated) plus its completion budget exceed the model's context window.
    ContextWindow,
    /// Over the provider's own limits: the limiter's refusal.
    ProviderLimit(ApiError),
    /// The limits' shared store could not be reached.
    LimitsUnavailable,
    /// The target's dialect cannot carry the request as asked (e.g. `n > 1` on Anthropic).
    Unsupported(ApiError),
    /// The provider's role credentials are unavailable (its token endpoint failed).
    Credentials(ApiError),
}

impl Skip {
    fn label(&self) -> &'static str {
        match self {
            Skip::ContextWindow => "context_window",
            Skip::ProviderLimit(_) => "provider_limit",
            Skip::LimitsUnavailable => "limits_unavailable",
            Skip::Unsupported(_) => "unsupported",
            Skip::Credentials(_) => "credentials",
        }
    }

    fn into_error(self) -> ApiError {
        match self {
            Skip::ContextWindow => ApiError::InvalidField {
                field: "messages",
                message: "the prompt is longer than the context window of every model that could serve it".into(),
            },
            Skip::ProviderLimit(e) | Skip::Unsupported(e) | Skip::Credentials(e) => e,
            Skip::LimitsUnavailable => ApiError::LimitsUnavailable,
        }
    }
}

/// What the proxy does next.
#[derive(Debug)]
pub enum Step<'p> {
    /// Check this target against the request (context window, provider limits, rendering) and
    /// report `ready` or `skip`.
    Consider(&'p Arc<Target>),
    /// Send the request to the target being tried, with the key the pool picked (`None`: the
    /// provider has no keys), waiting at most `remaining` for anything; report `answered` or
    /// `failed`.
    Send {
        target: &'p Arc<Target>,
        live: Option<&'p TargetLive>,
        key: Option<usize>,
        remaining: Duration,
    },
    /// Wait this long (a backoff or the provider's `Retry-After`), then ask again.
    Wait(Duration),
    /// Nothing is left to try: answer the client with this error.
    GiveUp(ApiError),
}

/// What to do with an answer just reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Relay it to the client: the attempts are over.
    Relay,
    /// Read its (small) body and report it (`body`).
    ReadBody,
    /// Drop it (its connection too: its body is unread) and ask `next`.
    Drop,
}

/// How a relayed stream failed after its first byte went to the client. Nothing is tried again
/// then: the client gets an error event in its stream, never a clean-looking end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    /// The provider sent nothing for longer than its idle timeout.
    IdleTimeout,
    /// The provider's connection broke.
    Interrupted,
    /// The provider ended its stream without its final event.
    Incomplete,
    /// The provider sent something the gateway could not read.
    Malformed(String),
    /// The gateway's shutdown grace ran out.
    Shutdown,
    /// An output guardrail refused the rest of the answer (the message names the types).
    Blocked(String),
}

impl Cut {
    /// The error event's code (also the request's error label) and message.
    pub fn event(self) -> (&'static str, String) {
        match self {
            Cut::IdleTimeout => (
                "stream_idle_timeout",
                "The provider stopped sending the stream (idle timeout).".into(),
            ),
            Cut::Interrupted => ("stream_cut", "The provider's stream was interrupted.".into()),
            Cut::Incomplete => (
                "stream_incomplete",
                "The provider ended the stream before it was complete.".into(),
            ),
            Cut::Malformed(message) => ("stream_error", message),
            Cut::Shutdown => (
                "shutdown",
                "The gateway is shutting down; the stream was ended before it was complete.".into(),
            ),
            Cut::Blocked(message) => ("content_blocked", message),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Looking for the next target in the order.
    Seek,
    /// A target was offered (`Step::Consider`); waiting for `ready` or `skip`.
    Considering,
    /// The current target gets a try.
    Send,
    /// A try was sent (`Step::Send`); waiting for `answered` or `failed`.
    Sent,
    /// An answer's body was asked for (`Verdict::ReadBody`).
    ReadingBody(Answer),
    /// The current target gets another try after this wait.
    Wait(Duration),
    /// An answer is being relayed; the attempts are over.
    Relayed,
    /// The budget cannot see another try through.
    BudgetSpent,
    /// A target's dialect cannot carry the request, and the route does not allow another
    /// dialect to serve it instead: the client gets that error.
    Refused,
}

/// An answer's status and what it said about a retry.
#[derive(Debug, Clone, Copy)]
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    /// The key pool has a key that is not resting.
    other_key: bool,
}

/// The target being tried.
#[derive(Debug)]
struct Current<'p> {
    /// Its position in the order (0: tried first).
    pos: usize,
    target: &'p Arc<Target>,
    live: Option<&'p TargetLive>,
    /// This request holds the target's half-open probe and has not reported it yet.
    probe: bool,
    /// Tries made (the next one's index), and how many retries it gets.
    tries: u32,
    retries: u32,
    /// The key of the try in flight.
    key: Option<usize>,
}

/// The attempts of one request (see the module docs).
#[derive(Debug)]
pub struct Attempts<'p> {
    plan: &'p [Arc<Target>],
    order: Vec<usize>,
    live: &'p Live,
    settings: &'p RoutingSettings,
    /// The model the client asked for (named in errors).
    model: &'p str,
    budget: Duration,
    deadline: Instant,
    /// A uniform value in [0, 1): the backoff's jitter.
    jitter: fn() -> f64,
    state: State,
    /// The next position in `order` to consider.
    next_pos: usize,
    current: Option<Current<'p>>,
    last_error: Option<ApiError>,
    log: Vec<Attempt>,
    /// `Skip::Unsupported` passes to the next target instead of refusing the request.
    unsupported_falls_back: bool,
}

impl<'p> Attempts<'p> {
    /// The attempts over `plan` in `order` (a permutation of its indices), for a request that
    /// started at `started` with `budget` to spend. `log` is where the attempts are written.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        plan: &'p [Arc<Target>],
        order: Vec<usize>,
        live: &'p Live,
        settings: &'p RoutingSettings,
        model: &'p str,
        budget: Duration,
        started: Instant,
        log: Vec<Attempt>,
    ) -> Self {
        Attempts {
            plan,
            order,
            live,
            settings,
            model,
            budget,
            deadline: started + budget,
            jitter: jitter_unit,
            state: State::Seek,
            next_pos: 0,
            current: None,
            last_error: None,
            log,
            unsupported_falls_back: false,
        }
    }

    /// What to do next.
    pub fn next(&mut self, now: Instant) -> Step<'p> {
        loop {
            match self.state {
                State::Seek => match self.seek(now) {
                    Some(target) => return Step::Consider(target),
                    None => return Step::GiveUp(self.final_error()),
                },
                State::Considering => {
                    if let Some(c) = &self.current {
                        return Step::Consider(c.target);
                    }
                    self.state = State::Seek;
                }
                State::Send | State::Sent => {
                    let remaining = self.deadline.saturating_duration_since(now);
                    if remaining.is_zero() {
                        self.state = State::BudgetSpent;
                        continue;
                    }
                    let Some(c) = self.current.as_mut() else {
                        self.state = State::Seek;
                        continue;
                    };
                    c.key = c.live.and_then(|l| l.keys.pick(ms_at(now)));
                    self.state = State::Sent;
                    return Step::Send {
                        target: c.target,
                        live: c.live,
                        key: c.key,
                        remaining,
                    };
                }
                State::Wait(d) => {
                    if let Some(c) = self.current.as_mut() {
                        c.tries += 1;
                    }
                    self.state = State::Send;
                    return Step::Wait(d);
                }
                // (After `Verdict::Relay`, or with a body awaited, there is nothing to do but
                // what was said; asked anyway, the machine gives up.)
                State::ReadingBody(_) | State::Relayed | State::BudgetSpent | State::Refused => {
                    return Step::GiveUp(self.final_error())
                }
            }
        }
    }

    /// The target offered by `Step::Consider` can take the request: it gets its tries.
    pub fn ready(&mut self) {
        if let (State::Considering, Some(c)) = (self.state, self.current.as_mut()) {
            c.retries = if c.probe { 0 } else { self.settings.retries };
            c.tries = 0;
            self.state = State::Send;
        }
    }

    /// The target offered by `Step::Consider` cannot take the request.
    pub fn skip(&mut self, now: Instant, why: Skip) {
        if !matches!(self.state, State::Considering) {
            return;
        }
        if let Some(c) = self.current.take() {
            self.log.push(Attempt::skipped(c.target, why.label()));
            if let (true, Some(l)) = (c.probe, c.live) {
                l.breaker.abandon_probe(ms_at(now));
            }
        }
        if matches!(why, Skip::Unsupported(_)) && !self.unsupported_falls_back {
            // Another target would answer a different request than the one asked (another
            // dialect's model, without what this one could not carry): refused, by name.
            self.last_error = Some(why.into_error());
            self.state = State::Refused;
            return;
        }
        self.last_error.get_or_insert(why.into_error());
        self.state = State::Seek;
    }

    /// Lets a target that cannot carry the request (`Skip::Unsupported`) be passed over for the
    /// next one (a route's `fallback_on_unsupported`); by default such a request is refused.
    pub fn unsupported_falls_back(mut self, allowed: bool) -> Self {
        self.unsupported_falls_back = allowed;
        self
    }

    /// The try got an answer: its status and the wait it asked for (`retry_after`).
    pub fn answered(&mut self, now: Instant, call: Call, status: u16, retry_after: Option<Duration>) -> Verdict {
        if !matches!(self.state, State::Sent) {
            return Verdict::Drop;
        }
        let Some(c) = self.current.as_mut() else {
            return Verdict::Drop;
        };
        self.log
            .push(Attempt::sent(c.target, AttemptOutcome::Status(status), call, now));
        let ms = ms_at(now);
        let mut other_key = false;
        if let Some(l) = c.live {
            // The breaker tracks health; a 429 is rate limiting (see the module docs).
            if status == 429 {
                if c.probe {
                    l.breaker.abandon_probe(ms);
                }
            } else {
                let failed = self.settings.retry_on.contains(&status) || status >= 500;
                l.breaker.record(!failed, ms);
                if !failed {
                    l.stats.observe_ttfb(now.saturating_duration_since(call.started));
                }
            }
            if let (Some(k), 429 | 401) = (c.key, status) {
                let rest = u64::try_from(self.settings.key_cooldown.as_millis()).unwrap_or(u64::MAX);
                l.keys.cool_down(k, ms.saturating_add(rest));
                other_key = l.keys.available(ms) > 0;
            }
        }
        c.probe = false;
        let answer = Answer {
            status,
            retry_after,
            other_key,
        };
        if status == 400 && !self.on_last_target() {
            self.state = State::ReadingBody(answer);
            return Verdict::ReadBody;
        }
        self.decide(now, answer)
    }

    /// The body `Verdict::ReadBody` asked for, or why it could not be read.
    pub fn body(&mut self, now: Instant, body: Result<&[u8], ApiError>) -> Verdict {
        let State::ReadingBody(answer) = self.state else {
            return Verdict::Drop;
        };
        match body {
            Ok(b) if is_context_length_error(b) => {
                if let Some(a) = self.log.last_mut() {
                    a.outcome = AttemptOutcome::Failed("context_length");
                }
                self.state = State::Seek;
                Verdict::Drop
            }
            Ok(_) => self.decide(now, answer),
            Err(e) => {
                self.last_error = Some(e);
                self.state = State::Seek;
                Verdict::Drop
            }
        }
    }

    /// The try got no answer.
    pub fn failed(&mut self, now: Instant, call: Call, failure: Failure) {
        if !matches!(self.state, State::Sent) {
            return;
        }
        let Some(c) = self.current.as_mut() else {
            return;
        };
        if let Some(l) = c.live {
            l.breaker.record(false, ms_at(now));
        }
        c.probe = false;
        let target = c.target;
        self.log
            .push(Attempt::sent(target, AttemptOutcome::Failed(failure.kind()), call, now));
        self.last_error = Some(failure.client_error(target, self.model));
        let wait = self.backoff();
        self.again_after(now, wait);
    }

    /// The request ends with a try in flight (the client left, the gateway stops): a probe it
    /// held is given back, so the next request probes.
    pub fn abandon(&mut self, now: Instant) {
        if let Some(c) = self.current.as_mut().filter(|c| c.probe) {
            if let Some(l) = c.live {
                l.breaker.abandon_probe(ms_at(now));
            }
            c.probe = false;
        }
    }

    /// The target being tried.
    pub fn target(&self) -> Option<&'p Arc<Target>> {
        self.current.as_ref().map(|c| c.target)
    }

    /// The answer being relayed came from a target other than the first tried.
    pub fn fell_back(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.pos > 0)
    }

    /// The attempts made, for the request's record.
    pub fn into_log(self) -> Vec<Attempt> {
        self.log
    }

    /// The next target whose breaker lets a request through; those whose breaker is open are
    /// logged as skipped.
    fn seek(&mut self, now: Instant) -> Option<&'p Arc<Target>> {
        self.current = None;
        while let Some(&i) = self.order.get(self.next_pos) {
            let pos = self.next_pos;
            self.next_pos += 1;
            let Some(target) = self.plan.get(i) else {
                continue;
            };
            let live = self.live.target(target);
            let probe = match live.map(|l| l.breaker.admit(ms_at(now))) {
                Some(Admission::Rejected) => {
                    self.log.push(Attempt::skipped(target, "breaker_open"));
                    self.last_error.get_or_insert_with(|| ApiError::NoProvider {
                        model: self.model.to_string(),
                        reason: format!("the circuit breaker of {} is open", target.provider.name),
                    });
                    continue;
                }
                Some(Admission::Probe) => true,
                Some(Admission::Allowed) | None => false,
            };
            self.current = Some(Current {
                pos,
                target,
                live,
                probe,
                tries: 0,
                retries: 0,
                key: None,
            });
            self.state = State::Considering;
            return Some(target);
        }
        None
    }

    fn on_last_target(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.pos + 1 == self.order.len())
    }

    /// Relay an answer, or drop it and retry or move on.
    fn decide(&mut self, now: Instant, a: Answer) -> Verdict {
        let Some(c) = self.current.as_ref() else {
            return Verdict::Drop;
        };
        let last_target = self.on_last_target();
        let retry = self.settings.retry_on.contains(&a.status) || (a.status == 401 && a.other_key);
        let too_long = a
            .retry_after
            .is_some_and(|ra| ra > self.settings.max_retry_after || now + ra >= self.deadline);
        let final_try = last_target && c.tries == c.retries;
        if !retry || final_try || (last_target && too_long) {
            self.state = State::Relayed;
            return Verdict::Relay;
        }
        match a.retry_after {
            // The provider asks for longer than the gateway waits: the next target, now.
            Some(_) if too_long => self.state = State::Seek,
            Some(ra) => self.again_after(now, ra),
            None => {
                let wait = self.backoff();
                self.again_after(now, wait);
            }
        }
        Verdict::Drop
    }

    /// Another try of the current target after `wait`, if it has one left and the budget can see
    /// it through; else the next target, or the budget is spent.
    fn again_after(&mut self, now: Instant, wait: Duration) {
        let Some(c) = self.current.as_ref() else {
            self.state = State::Seek;
            return;
        };
        self.state = if c.tries >= c.retries {
            State::Seek
        } else if now + wait >= self.deadline {
            State::BudgetSpent
        } else {
            State::Wait(wait)
        };
    }

    /// The backoff before the current target's next try.
    fn backoff(&self) -> Duration {
        let tries = self.current.as_ref().map_or(0, |c| c.tries);
        backoff(self.settings.backoff, self.settings.backoff_max, tries).mul_f64((self.jitter)())
    }

    fn final_error(&mut self) -> ApiError {
        if let State::BudgetSpent = self.state {
            return ApiError::BudgetExhausted {
                budget_ms: u64::try_from(self.budget.as_millis()).unwrap_or(u64::MAX),
                attempts: summary(&self.log),
            };
        }
        self.last_error.take().unwrap_or_else(|| ApiError::NoProvider {
            model: self.model.to_string(),
            reason: "no target could be tried".into(),
        })
    }
}

/// Whether a provider's 400 says the prompt does not fit the model's context window (OpenAI's
/// `context_length_exceeded`, Anthropic's "prompt is too long", Gemini's and Bedrock's wording).
pub fn is_context_length_error(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    [
        "context_length_exceeded",
        "maximum context length",
        "prompt is too long",
        "input is too long",
        "exceeds the maximum number of tokens",
        "context window",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// The request's time budget: the configured one, lowered by the client's
/// `x-tollgate-timeout-ms` (`asked`).
pub fn budget(configured: Duration, asked: Option<&[u8]>) -> Result<Duration, ApiError> {
    let Some(v) = asked else {
        return Ok(configured);
    };
    match std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
    {
        Some(ms) => Ok(configured.min(Duration::from_millis(ms))),
        None => Err(ApiError::InvalidField {
            field: "x-tollgate-timeout-ms",
            message: "expected a positive number of milliseconds".into(),
        }),
    }
}

/// The wait an answer asks for: `retry-after-ms` (milliseconds) or `Retry-After` (seconds); HTTP
/// dates are not honoured.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    get("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The cap of exponential backoff before try `attempt + 1`: `min(max, base * 2^attempt)`. The
/// wait is uniform in [0, cap] (full jitter).
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.min(16)).min(max)
}

/// A uniform value in [0, 1) from a per-thread xorshift generator (no lock, no syscall).
pub fn jitter_unit() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0x9E37_79B9, |d| d.as_nanos() as u64) | 1,
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
#[path = "attempts_tests.rs"]
mod tests;
