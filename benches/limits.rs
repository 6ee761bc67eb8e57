//! The limiter's cost per request (`tollgate::limits::limiter`): `admit` + `settle` for a request
//! checked against three scopes (key, team, provider) with every limit kind set (rpm, tpm, tpd,
//! concurrency, budgets for 1h, 1d, 30d and the month), i.e. 3 x 8 atomic reservations and their
//! reconciliation.
//!
//! - `limiter/admit_settle_3_scopes`: one thread.
//! - `limiter/admit_settle_3_scopes_2_threads`: two threads on the *same* key, team and provider
//!   (every counter contended); the time is the wall time per iteration in which each thread
//!   does one admit + settle, i.e. the latency of one request under contention.
//! - `limiter/admit_settle_key_only`: one scope, for scale.
//! - `limiter/refused_rpm`: a refusal (rolls back what the key reserved, formats the scope).
//!
//! The clock advances 1 ms per request so buckets refill and budget windows roll as in traffic.
//! Each thread has its own clock, and the two drift apart (one thread may run thousands of
//! iterations before the other is scheduled), so the rate limits are huge: nothing is refused
//! except in `refused_rpm`. The work per call does not depend on the limits' magnitude.
//!
//! - `estimate/*`: what sizes the reservation (the tokenizer's estimate, and `bound_of_body`, the
//!   bound the limits are reserved on before the tokenizer runs).
//! - `headers/*`: a response header like the gateway's, without and with the six
//!   `x-ratelimit-*` headers: built as the gateway builds it (`head_*`: constant names into the
//!   `http` map) and with Pingora's `insert_header` (`response_header_*`: it parses each name
//!   and keeps a case map).
//!
//! Run: `cargo bench --bench limits` (add `-- --quick` for a fast pass).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::api::chat::ChatRequest;
use tollgate::limits::limiter::{Budget, Demand, Limiter, Limits, Period, Scope, ScopeKind};
use tollgate::proxy::head::Head;

/// The headers a gateway response carries before any rate-limit header.
const BASE_HEADERS: [(&str, &str); 8] = [
    ("content-type", "application/json"),
    ("x-tollgate-provider", "openai"),
    ("x-tollgate-model", "gpt-4o-mini"),
    ("x-request-id", "0123456789abcdef0123456789abcdef"),
    ("x-tollgate-attempts", "openai:200"),
    ("content-length", "1234"),
    ("x-tollgate-overhead-us", "25"),
    ("date", "Sat, 21 Nov 2026 23:00:00 GMT"),
];

/// 2026-01-01T00:00:00Z
const T0: u64 = 1_767_225_600_000;

fn all_limits(scale: u64) -> Limits {
    Limits {
        rpm: Some(1_000_000_000_000 * scale),
        tpm: Some(1_000_000_000_000_000 * scale),
        tpd: Some(100_000_000_000_000_000 * scale),
        concurrency: Some(10_000),
        budgets: Period::ALL
            .iter()
            .map(|&period| Budget { usd: 100_000.0, period })
            .collect(),
    }
}

const DEMAND: Demand = Demand {
    tokens: 1_000,
    cost_nanos: 2_000,
    tier_ceiling: 0.9,
};

/// Returns how many were refused (not a panic: the other thread would wait at the barrier).
fn run(limiter: &Limiter, scopes: &[Scope<'_>], iters: u64, mut now: u64) -> u64 {
    let mut refused = 0;
    for _ in 0..iters {
        now += 1;
        match limiter.admit(black_box(scopes), DEMAND, now) {
            Ok(admission) => {
                black_box(admission.headers());
                admission.settle(800, 1_500, now);
            }
            Err(_) => refused += 1,
        }
    }
    refused
}

fn bench(c: &mut Criterion) {
    let key = all_limits(1);
    let team = all_limits(2);
    let provider = all_limits(4);
    let scopes = [
        Scope {
            kind: ScopeKind::Key,
            id: "sk-team-a",
            limits: &key,
        },
        Scope {
            kind: ScopeKind::Team,
            id: "team-a",
            limits: &team,
        },
        Scope {
            kind: ScopeKind::Provider,
            id: "openai",
            limits: &provider,
        },
    ];
    let mut group = c.benchmark_group("limiter");

    let limiter = Limiter::new();
    let mut now = T0;
    group.bench_function("admit_settle_3_scopes", |b| {
        b.iter(|| {
            now += 1;
            let admission = limiter.admit(black_box(&scopes), DEMAND, now).unwrap();
            black_box(admission.headers());
            admission.settle(800, 1_500, now);
        })
    });

    let limiter = Limiter::new();
    let mut start = T0;
    group.bench_function("admit_settle_3_scopes_2_threads", |b| {
        b.iter_custom(|iters| {
            let barrier = Barrier::new(3);
            let (limiter, scopes, barrier) = (&limiter, &scopes, &barrier);
            let (elapsed, refused) = thread::scope(|s| {
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        s.spawn(move || {
                            barrier.wait();
                            let refused = run(limiter, scopes, iters, start);
                            barrier.wait();
                            refused
                        })
                    })
                    .collect();
                barrier.wait();
                let t = Instant::now();
                barrier.wait();
                let elapsed = t.elapsed();
                let refused: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
                (elapsed, refused)
            });
            assert_eq!(refused, 0, "the bench's limits must admit everything");
            start += iters;
            elapsed
        })
    });

    let limiter = Limiter::new();
    let mut now = T0;
    group.bench_function("admit_settle_key_only", |b| {
        b.iter(|| {
            now += 1;
            let admission = limiter.admit(black_box(&scopes[..1]), DEMAND, now).unwrap();
            admission.settle(800, 1_500, now);
        })
    });

    let limiter = Limiter::new();
    let tight = Limits {
        rpm: Some(1),
        ..all_limits(1)
    };
    let refused = [
        scopes[0],
        Scope {
            kind: ScopeKind::Team,
            id: "team-a",
            limits: &tight,
        },
    ];
    drop(limiter.admit(&refused, DEMAND, T0));
    group.bench_function("refused_rpm", |b| {
        b.iter(|| black_box(limiter.admit(black_box(&refused), DEMAND, T0).unwrap_err()))
    });
    group.finish();

    // What a request with limits pays before the limiter: the prompt estimate the reservation
    // is sized by (the load runner's request body: a system and a user message, ~70 tokens).
    let body = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/loadtest/body-json.json")).unwrap();
    let mut group = c.benchmark_group("estimate");
    group.bench_function("parse_canonical", |b| {
        b.iter(|| black_box(serde_json::from_slice::<ChatRequest>(black_box(&body)).unwrap()))
    });
    let chat: ChatRequest = serde_json::from_slice(&body).unwrap();
    tollgate::limits::tokens::warm_up();
    // The same body again: every text's count comes from the prompt cache.
    group.bench_function("estimate_chat_repeated", |b| {
        b.iter(|| black_box(tollgate::limits::tokens::estimate_chat(black_box(&chat))))
    });
    // A new user message every time (the system prompt cached): the common case in traffic.
    let mut fresh = chat.clone();
    let user = serde_json::to_value(&chat.messages[1]).unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    let mut i = 0u64;
    group.bench_function("estimate_chat_new_user_message", |b| {
        b.iter(|| {
            i += 1;
            fresh.messages[1].content = Some(tollgate::api::chat::Content::Text(format!("#{i} {user}")));
            black_box(tollgate::limits::tokens::estimate_chat(black_box(&fresh)))
        })
    });
    // Nothing cached: every text encoded.
    let user_text = format!("{user} {}", chat.messages[0].content.as_ref().unwrap().text());
    group.bench_function("count_text_role", |b| {
        b.iter(|| black_box(tollgate::limits::tokens::count_text(black_box("assistant"))))
    });
    group.bench_function("count_text_uncached", |b| {
        b.iter(|| black_box(tollgate::limits::tokens::count_text(black_box(&user_text))))
    });
    // What the limits reserve before the tokenizer has run: the bound read off the body.
    group.bench_function("bound_of_body", |b| {
        b.iter(|| black_box(tollgate::limits::tokens::bound_of_body(black_box(&body))))
    });
    group.finish();

    // The x-ratelimit-* headers on a response header like the gateway's (8 headers already).
    let mut group = c.benchmark_group("headers");
    let limiter = Limiter::new();
    let limits = all_limits(1);
    let scopes = [Scope {
        kind: ScopeKind::Key,
        id: "k",
        limits: &limits,
    }];
    let rate = limiter.admit(&scopes, DEMAND, T0).unwrap().headers();
    // The gateway's way (`proxy::head::Head`): constant names into the `http` map.
    let names = BASE_HEADERS.map(|(n, _)| http::HeaderName::from_static(n));
    let head = || {
        let mut h = Head::new(200, 24).unwrap();
        for (name, (_, value)) in names.iter().zip(BASE_HEADERS) {
            h.insert(name.clone(), http::HeaderValue::from_static(value));
        }
        h
    };
    group.bench_function("head_without", |b| b.iter(|| black_box(head().finish())));
    group.bench_function("rate_header_values", |b| {
        b.iter(|| black_box(&rate).pairs().map(|(_, v)| black_box(v).len()).sum::<usize>())
    });
    group.bench_function("head_with_rate_headers", |b| {
        b.iter(|| {
            let mut h = head();
            for (name, value) in black_box(&rate).pairs() {
                h.insert(name, value);
            }
            black_box(h.finish())
        })
    });
    // Pingora's `insert_header`, for comparison: it parses each name and keeps a case map.
    let base = || {
        let mut h = pingora::http::ResponseHeader::build(200, Some(24)).unwrap();
        for (name, value) in BASE_HEADERS {
            h.insert_header(name, value).unwrap();
        }
        h
    };
    group.bench_function("response_header_without", |b| b.iter(|| black_box(base())));
    group.bench_function("response_header_with_rate_headers", |b| {
        b.iter(|| {
            let mut h = base();
            for (name, value) in black_box(&rate).pairs() {
                h.insert_header(name, value).unwrap();
            }
            black_box(h)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
