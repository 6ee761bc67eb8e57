//! The attempt policy as tables: each case is a config and one or more requests, each a script
//! of reports (what the proxy saw) and the steps and verdicts the machine must answer, then the
//! attempts it logged. The clock is a number of milliseconds the script moves forward; jitter is
//! fixed at one half, so a backoff's wait is half its cap.

use std::time::Duration;

use super::*;
use crate::config::{Env, Snapshot};
use crate::routing::live::Registry;

/// One line of a script.
#[derive(Debug, Clone, Copy)]
enum Do {
    /// Ask `next`: it must answer this.
    Next(Want),
    /// `ready`: the target can take the request.
    Ready,
    /// `skip`, for this reason.
    Pass(Why),
    /// `answered` with a status and a `Retry-After` in ms: the verdict must be this.
    Status(u16, Option<u64>, Verdict),
    /// `failed` with this kind of failure.
    Fail(&'static str),
    /// `body` with these bytes (or an unreadable body, for `None`): the verdict must be this.
    Body(Option<&'static str>, Verdict),
    /// The clock moves on this many ms.
    Elapse(u64),
    /// The client leaves with a try in flight.
    Abandon,
    /// Open this provider's breaker (failures until it is).
    Trip(&'static str),
}

#[derive(Debug, Clone, Copy)]
enum Want {
    Consider(&'static str),
    /// A try of this provider, with this key when given.
    Send(&'static str, Option<usize>),
    /// A wait of this many ms.
    Wait(u64),
    /// Give up: the error's `Debug` must contain this.
    GiveUp(&'static str),
}

#[derive(Debug, Clone, Copy)]
enum Why {
    ContextWindow,
    ProviderLimit,
}

use Do::*;
use Want::*;

/// A request: its script and the `x-tollgate-attempts` it must log.
type Request = (&'static [Do], &'static str);

/// Providers `a`, `b` (two keys each) and `c` (one key); model `m` tries the targets of `plan`
/// (provider names) in order; `routing` is the `routing:` section's body.
fn snapshot(routing: &str, plan: &[&str]) -> Arc<Snapshot> {
    let targets: Vec<String> = plan.iter().map(|p| format!("{{ provider: {p}, model: x }}")).collect();
    let doc = format!(
        "routing:\n{routing}\nproviders:\n  a: {{ kind: openai, base_url: \"http://127.0.0.1:1\", api_keys: [a1, a2] }}\n  b: {{ kind: openai, base_url: \"http://127.0.0.1:2\", api_keys: [b1, b2] }}\n  c: {{ kind: openai, base_url: \"http://127.0.0.1:3\", api_keys: [c1] }}\nmodels:\n  m: {{ targets: [ {} ] }}\n",
        targets.join(", ")
    );
    let env = Env {
        var: &|_| None,
        resolve: &|_, port| Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
    };
    Arc::new(crate::config::load_str(std::path::Path::new("t.yaml"), &doc, &env).unwrap())
}

/// `retries: 2`, a backoff of 100ms doubling up to 1s, `Retry-After` honoured up to 5s, a 30s
/// budget, the default `retry_on` (429 and 5xx).
const DEFAULTS: &str = "  retries: 2\n  backoff: 100ms\n  backoff_max: 1s\n  max_retry_after: 5s\n  budget: 30s\n";

fn failure(kind: &str) -> Failure {
    match kind {
        "connect" => Failure::Connect("ConnectRefused".into()),
        "timeout" => Failure::Timeout("ReadTimedout".into()),
        "protocol" => Failure::Protocol("ConnectionClosed".into()),
        _ => Failure::Unavailable,
    }
}

/// Runs the requests of a case, one after the other on the same live state.
fn run(name: &str, routing: &str, plan: &[&str], requests: &[Request]) {
    let snap = snapshot(routing, plan);
    let registry = Registry::new(snap);
    let live = registry.current();
    let t0 = Instant::now();
    let mut clock = 0u64;
    for (r, (script, want_log)) in requests.iter().enumerate() {
        let now = |clock: u64| t0 + Duration::from_millis(clock);
        let snap = &live.snapshot;
        let plan = &snap.model("m").unwrap().plan;
        let mut tries = Attempts::new(
            plan,
            (0..plan.len()).collect(),
            &live,
            &snap.routing,
            "m",
            snap.routing.budget,
            now(clock),
            Vec::new(),
        );
        tries.jitter = || 0.5;
        let mut call = Call {
            started: now(clock),
            span: SpanId([0; 8]),
        };
        for (line, d) in script.iter().enumerate() {
            let at = format!("{name}, request {r}, line {line} ({d:?})");
            match *d {
                Next(want) => {
                    let step = tries.next(now(clock));
                    match (want, &step) {
                        (Consider(p), Step::Consider(t)) => assert_eq!(t.provider.name, p, "{at}"),
                        (Send(p, key), Step::Send { target, key: k, .. }) => {
                            assert_eq!(target.provider.name, p, "{at}");
                            if key.is_some() {
                                assert_eq!(*k, key, "{at}: the key");
                            }
                            call.started = now(clock);
                        }
                        (Wait(ms), Step::Wait(d)) => assert_eq!(*d, Duration::from_millis(ms), "{at}"),
                        (GiveUp(e), Step::GiveUp(got)) => {
                            let got = format!("{got:?}");
                            assert!(got.contains(e), "{at}: {got}");
                        }
                        _ => panic!("{at}: got {step:?}"),
                    }
                }
                Ready => tries.ready(),
                Pass(why) => {
                    let why = match why {
                        Why::ContextWindow => super::Skip::ContextWindow,
                        Why::ProviderLimit => super::Skip::ProviderLimit(ApiError::RateLimited("over tpm".into())),
                    };
                    tries.skip(now(clock), why);
                }
                Status(status, ra, want) => {
                    let ra = ra.map(Duration::from_millis);
                    assert_eq!(tries.answered(now(clock), call, status, ra), want, "{at}");
                }
                Fail(kind) => tries.failed(now(clock), call, failure(kind)),
                Body(body, want) => {
                    let body = body
                        .map(str::as_bytes)
                        .ok_or(ApiError::UpstreamProtocol("protocol".into()));
                    assert_eq!(tries.body(now(clock), body), want, "{at}");
                }
                Elapse(ms) => clock += ms,
                Abandon => tries.abandon(now(clock)),
                Trip(p) => {
                    let t = plan.iter().find(|t| t.provider.name == p).unwrap();
                    let breaker = &live.target(t).unwrap().breaker;
                    while breaker.state(ms_at(now(clock))).as_str() == "closed" {
                        breaker.record(false, ms_at(now(clock)));
                    }
                }
            }
        }
        assert_eq!(
            summary(&tries.into_log()),
            *want_log,
            "{name}, request {r}: the attempts"
        );
    }
}

const CONTEXT_400: &str =
    r#"{"error":{"code":"context_length_exceeded","message":"This model's maximum context length is 8192 tokens"}}"#;

#[test]
fn a_recovering_target_is_retried_then_answers() {
    run(
        "retry then success",
        DEFAULTS,
        &["a", "b"],
        &[(
            &[
                Next(Consider("a")),
                Ready,
                Next(Send("a", None)),
                Status(503, None, Verdict::Drop),
                // Backoff cap 100ms, jitter one half.
                Next(Wait(50)),
                Elapse(50),
                Next(Send("a", None)),
                Fail("timeout"),
                // The cap doubles.
                Next(Wait(100)),
                Elapse(100),
                Next(Send("a", None)),
                Status(200, None, Verdict::Relay),
            ],
            "a:503,a:timeout,a:200",
        )],
    );
}

#[test]
fn spent_retries_move_to_the_next_target_and_the_last_answer_is_relayed() {
    let script: &[Do] = &[
        Next(Consider("a")),
        Ready,
        Next(Send("a", None)),
        Status(502, None, Verdict::Drop),
        Next(Wait(50)),
        Next(Send("a", None)),
        Fail("connect"),
        Next(Wait(100)),
        Next(Send("a", None)),
        Status(500, None, Verdict::Drop),
        // No wait after the last try: the next target at once.
        Next(Consider("b")),
        Ready,
        Next(Send("b", None)),
        Status(503, None, Verdict::Drop),
        Next(Wait(50)),
        Next(Send("b", None)),
        Status(503, None, Verdict::Drop),
        Next(Wait(100)),
        Next(Send("b", None)),
        // The last target's last try: relayed, whatever it is.
        Status(503, None, Verdict::Relay),
    ];
    run(
        "retry budget spent",
        DEFAULTS,
        &["a", "b"],
        &[(script, "a:502,a:connect,a:500,b:503,b:503,b:503")],
    );
}

#[test]
fn failures_everywhere_give_the_last_calls_error() {
    let connect: &[Do] = &[
        Next(Consider("a")),
        Ready,
        Next(Send("a", None)),
        Fail("timeout"),
        Next(Consider("b")),
        Ready,
        Next(Send("b", None)),
        Fail("connect"),
        Next(GiveUp(
            r#"UpstreamConnect { provider: "b", url: "http://127.0.0.1:2", cause: "ConnectRefused" }"#,
        )),
    ];
    let timeout: &[Do] = &[
        Next(Consider("a")),
        Ready,
        Next(Send("a", None)),
        Fail("protocol"),
        Next(Consider("b")),
        Ready,
        Next(Send("b", None)),
        Fail("timeout"),
        Next(GiveUp(r#"UpstreamTimeout("ReadTimedout")"#)),
    ];
    let routing = "  retries: 0\n";
    run(
        "502 upstream_connect_error naming the provider",
        routing,
        &["a", "b"],
        &[(connect, "a:timeout,b:connect"), (timeout, "a:protocol,b:timeout")],
    );
}

#[test]
fn a_retry_after_is_honoured_up_to_the_cap_and_beyond_it_moves_on_at_once() {
    let script: &[Do] = &[
        Next(Consider("c")),
        Ready,
        Next(Send("c", None)),
        // Within the cap: the provider's wait replaces the backoff.
        Status(429, Some(2_000), Verdict::Drop),
        Next(Wait(2_000)),
        Elapse(2_000),
        Next(Send("c", None)),
        // Above the 5s cap: the next target, without waiting.
        Status(503, Some(10_000), Verdict::Drop),
        Next(Consider("b")),
        Ready,
        Next(Send("b", None)),
        Status(200, None, Verdict::Relay),
    ];
    run(
        "retry-after cap",
        DEFAULTS,
        &["c", "b"],
        &[(script, "c:429,c:503,b:200")],
    );
}

#[test]
fn with_nothing_left_the_providers_429_is_relayed() {
    // Retries spent on the only target.
    let spent: &[Do] = &[
        Next(Consider("c")),
        Ready,
        Next(Send("c", None)),
        Status(429, None, Verdict::Drop),
        Next(Wait(50)),
        Next(Send("c", None)),
        Status(429, None, Verdict::Drop),
        Next(Wait(100)),
        Next(Send("c", None)),
        Status(429, None, Verdict::Relay),
    ];
    // A wait longer than the cap, on the last target: relayed at once.
    let too_long: &[Do] = &[
        Next(Consider("c")),
        Ready,
        Next(Send("c", None)),
        Status(429, Some(60_000), Verdict::Relay),
    ];
    // A wait the budget cannot see through, likewise.
    let past_budget: &[Do] = &[
        Next(Consider("c")),
        Ready,
        Elapse(27_000),
        Next(Send("c", None)),
        Status(429, Some(4_000), Verdict::Relay),
    ];
    run(
        "429 relayed when nothing is left",
        DEFAULTS,
        &["c"],
        &[
            (spent, "c:429,c:429,c:429"),
            (too_long, "c:429"),
            (past_budget, "c:429"),
        ],
    );
}

#[test]
fn an_open_breaker_is_skipped_and_when_all_are_open_the_client_is_told_why() {
    let one_open: &[Do] = &[
        Trip("a"),
        Next(Consider("b")),
        Ready,
        Next(Send("b", None)),
        Status(200, None, Verdict::Relay),
    ];
    let all_open: &[Do] = &[
        Trip("b"),
        Next(GiveUp(
            r#"NoProvider { model: "m", reason: "the circuit breaker of a is open" }"#,
        )),
    ];
    run(
        "breaker open",
        DEFAULTS,
        &["a", "b"],
        &[
            (one_open, "a:breaker_open,b:200"),
            (all_open, "a:breaker_open,b:breaker_open"),
        ],
    );
}

#[test]
fn a_probe_gets_one_try_and_a_429_on_it_is_given_back() {
    let routing = "  retries: 2\n  backoff: 100ms\n  breaker: { consecutive_failures: 1, cooldown: 10s }\n";
    let probe_fails: &[Do] = &[
        Trip("a"),
        Elapse(10_000),
        // The cooldown is over: this request probes, without retries.
        Next(Consider("a")),
        Ready,
        Next(Send("a", None)),
        Status(503, None, Verdict::Drop),
        Next(Consider("b")),
        Ready,
        Next(Send("b", None)),
        Status(200, None, Verdict::Relay),
    ];
    let reopened: &[Do] = &[
        Next(Consider("b")),
        Ready,
        Next(Send("b", None)),
        Status(200, None, Verdict::Relay),
    ];
    let probe_rate_limited: &[Do] = &[
        Elapse(10_000),
        Next(Consider("a")),
        Ready,
        Next(Send("a", None)),
        // Rate limited: neither health nor ill health. The probe is given back...
        Status(429, None, Verdict::Drop),
        Next(Consider("b")),
        Ready,
        Next(Send("b", None)),
        Status(200, None, Verdict::Relay),
    ];
    // ...so the next request probes at once.
    let probes_again: &[Do] = &[
        Next(Consider("a")),
        Ready,
        Next(Send("a", None)),
        Status(200, None, Verdict::Relay),
    ];
    // The probe succeeded: closed.
    let closed: &[Do] = &[Next(Consider("a")), Abandon, Ready];
    run(
        "probes",
        routing,
        &["a", "b"],
        &[
            (probe_fails, "a:503,b:200"),
            (reopened, "a:breaker_open,b:200"),
            (probe_rate_limited, "a:429,b:200"),
            (probes_again, "a:200"),
            (closed, ""),
        ],
    );
}

#[test]
fn rate_limits_do_not_open_the_breaker_but_errors_do() {
    let routing = "  retries: 0\n  breaker: { consecutive_failures: 1 }\n";
    let limited: &[Do] = &[
        Next(Consider("a")),
        Ready,
        Next(Send("a", None)),
        Status(429, None, Verdict::Drop),
        Next(Consider("b")),
        Ready,
        Next(Send("b", None)),
        Status(200, None, Verdict::Relay),
    ];
    let bad_request: &[Do] = &[
        Next(Consider("a")),
        Ready,
        Next(Send("a", None)),
        Status(404, None, Verdict::Relay),
    ];
    let down: &[Do] = &[
        Next(Consider("a")),
        Ready,
        Next(Send("a", None)),
        Status(500, None, Verdict::Drop),
        Next(Consider("b")),
        Ready,
        Next(Send("b", None)),
        Status(200, None, Verdict::Relay),
    ];
    let open: &[Do] = &[Next(Consider("b"))];
    run(
        "429 is not ill health",
        routing,
        &["a", "b"],
        &[
            (limited, "a:429,b:200"),
            (limited, "a:429,b:200"),
            (bad_request, "a:404"),
            (down, "a:500,b:200"),
            (open, "a:breaker_open"),
        ],
    );
}

#[test]
fn a_key_that_got_a_429_or_401_rests_while_the_pools_other_key_serves() {
    let routing = "  retries: 3\n  backoff: 100ms\n  retry_on: [429]\n  key_cooldown: 60s\n";
    let script: &[Do] = &[
        Next(Consider("a")),
        Ready,
        Next(Send("a", Some(0))),
        // A 401 is not in retry_on, but another key can serve: retried.
        Status(401, None, Verdict::Drop),
        Next(Wait(50)),
        Next(Send("a", Some(1))),
        Status(429, None, Verdict::Drop),
        Next(Wait(100)),
        // Both keys rest: the one whose rest ends first.
        Next(Send("a", Some(0))),
        Status(401, None, Verdict::Relay),
    ];
    // A minute later both keys are back; a 401 on a provider with one key is relayed.
    let one_key: &[Do] = &[
        Elapse(60_000),
        Next(Consider("a")),
        Ready,
        Next(Send("a", None)),
        Status(200, None, Verdict::Relay),
    ];
    let single: &[Do] = &[
        Next(Consider("c")),
        Ready,
        Next(Send("c", Some(0))),
        Status(401, None, Verdict::Relay),
    ];
    run(
        "key cooldown",
        routing,
        &["a"],
        &[(script, "a:401,a:429,a:401"), (one_key, "a:200")],
    );
    run("one key", routing, &["c", "a"], &[(single, "c:401")]);
}

#[test]
fn a_prompt_too_long_for_one_model_moves_on_without_a_retry() {
    let too_long: &[Do] = &[
        Next(Consider("a")),
        Ready,
        Next(Send("a", None)),
        Status(400, None, Verdict::ReadBody),
        Body(Some(CONTEXT_400), Verdict::Drop),
        Next(Consider("b")),
        Ready,
        Next(Send("b", None)),
        Status(200, None, Verdict::Relay),
    ];
    // Another 400 is the client's problem: relayed (its body already read).
    let bad: &[Do] = &[
        Next(Consider("a")),
        Ready,
        Next(Send("a", None)),
        Status(400, None, Verdict::ReadBody),
        Body(Some(r#"{"error":{"message":"bad temperature"}}"#), Verdict::Relay),
    ];
    // A body that cannot be read: the next target, and that is the error if nothing answers.
    let unreadable: &[Do] = &[
        Next(Consider("a")),
        Ready,
        Next(Send("a", None)),
        Status(400, None, Verdict::ReadBody),
        Body(None, Verdict::Drop),
        Next(Consider("b")),
        Pass(Why::ProviderLimit),
        Next(GiveUp(r#"UpstreamProtocol("protocol")"#)),
    ];
    // On the last target, a 400 is relayed without reading its body first.
    let last: &[Do] = &[
        Next(Consider("a")),
        Pass(Why::ContextWindow),
        Next(Consider("b")),
        Ready,
        Next(Send("b", None)),
        Status(400, None, Verdict::Relay),
    ];
    run(
        "context length",
        DEFAULTS,
        &["a", "b"],
        &[
            (too_long, "a:context_length,b:200"),
            (bad, "a:400"),
            (unreadable, "a:400,b:provider_limit"),
            (last, "a:context_window,b:400"),
        ],
    );
}

#[test]
fn targets_passed_over_give_the_first_reason() {
    let script: &[Do] = &[
        Next(Consider("a")),
        Pass(Why::ContextWindow),
        Next(Consider("b")),
        Pass(Why::ProviderLimit),
        Next(GiveUp(
            r#"InvalidField { field: "messages", message: "the prompt is longer than the context window"#,
        )),
    ];
    run(
        "skips",
        DEFAULTS,
        &["a", "b"],
        &[(script, "a:context_window,b:provider_limit")],
    );
}

#[test]
fn a_spent_budget_gives_504_listing_the_attempts() {
    let routing = "  retries: 2\n  backoff: 400ms\n  budget: 1s\n";
    // The backoff (200ms) would end after the deadline.
    let wait_too_long: &[Do] = &[
        Next(Consider("a")),
        Ready,
        Elapse(850),
        Next(Send("a", None)),
        Status(503, None, Verdict::Drop),
        Next(GiveUp(r#"BudgetExhausted { budget_ms: 1000, attempts: "a:503" }"#)),
    ];
    // No time is left to start a try.
    let no_time: &[Do] = &[
        Next(Consider("a")),
        Ready,
        Next(Send("a", None)),
        Fail("connect"),
        Next(Wait(200)),
        Elapse(1_000),
        Next(GiveUp(r#"BudgetExhausted { budget_ms: 1000, attempts: "a:connect" }"#)),
    ];
    run(
        "budget exhausted",
        routing,
        &["a", "b"],
        &[(wait_too_long, "a:503"), (no_time, "a:connect")],
    );
}

#[test]
fn once_an_answer_is_relayed_nothing_is_tried_again() {
    // A stream that breaks after its first byte is not retried: reports after the relay change
    // nothing, and the machine offers no other try.
    let script: &[Do] = &[
        Next(Consider("a")),
        Ready,
        Next(Send("a", None)),
        Status(200, None, Verdict::Relay),
        Fail("protocol"),
        Status(503, None, Verdict::Drop),
        Next(GiveUp("NoProvider")),
    ];
    run("after the first byte", DEFAULTS, &["a", "b"], &[(script, "a:200")]);
    // What the client gets instead: an error event in its stream.
    for (cut, code) in [
        (Cut::IdleTimeout, "stream_idle_timeout"),
        (Cut::Interrupted, "stream_cut"),
        (Cut::Incomplete, "stream_incomplete"),
        (Cut::Malformed("bad json".into()), "stream_error"),
        (Cut::Shutdown, "shutdown"),
    ] {
        assert_eq!(cut.event().0, code);
    }
}

#[test]
fn the_budget_header_lowers_the_configured_budget_only() {
    let s = Duration::from_secs;
    assert_eq!(budget(s(30), None).unwrap(), s(30));
    assert_eq!(budget(s(30), Some(b" 1500 ")).unwrap(), Duration::from_millis(1500));
    assert_eq!(budget(s(1), Some(b"5000")).unwrap(), s(1));
    for bad in [&b"0"[..], b"-1", b"soon", b"\xff"] {
        assert!(budget(s(1), Some(bad)).is_err());
    }
}

#[test]
fn retry_after_reads_milliseconds_first_then_seconds() {
    let mut h = http::HeaderMap::new();
    assert_eq!(retry_after(&h), None);
    h.insert("retry-after", "3".parse().unwrap());
    assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    h.insert("retry-after-ms", "250.5".parse().unwrap());
    assert_eq!(retry_after(&h), Some(Duration::from_micros(250_500)));
    h.insert("retry-after-ms", "NaN".parse().unwrap());
    assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    h.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
    assert_eq!(retry_after(&h), None);
}

#[test]
fn context_length_errors_are_told_by_their_wording() {
    assert!(is_context_length_error(CONTEXT_400.as_bytes()));
    assert!(is_context_length_error(
        b"prompt is too long: 250000 tokens > 200000 maximum"
    ));
    assert!(!is_context_length_error(
        b"{\"error\":{\"message\":\"bad temperature\"}}"
    ));
}
