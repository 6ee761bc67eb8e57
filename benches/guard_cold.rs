//! The guardrail stage warm and cold: the same call on the load runner's body, once with the
//! caches warm (criterion's usual loop) and once after 16 MiB of other memory was touched before
//! every call, as a gateway's request finds them after the rest of its work. The difference is
//! what the detector's automata cost when they come back from memory. `scan_*`: the detector
//! alone on the body's user message (234 bytes).
//!
//! Medians (2026-12-07, 2-core VM, the two builds one after the other): with the detector's
//! hand-written matchers for the e-mail and numeric rows (`guard::detect::hand`), stage warm 1.5
//! µs, evicted 3.7-4.5 µs, scan warm 0.56-0.58 µs, evicted 2.2 µs; the build before them
//! (c1a203a), stage warm 1.6 µs, evicted 6.5 µs, scan warm 0.72 µs, evicted 5.3 µs: the regex
//! engine's code and lazy-DFA tables were most of what came back from memory. (On 2026-12-06 this
//! VM measured the older builds' evicted stage at 10-12 µs: compare builds within one session.)
//! `loadtest/guard-misses.sh` counts the same cold call's instructions and cache misses exactly:
//! 302 misses on this body, 514 before the hand matchers (README, Guardrails, Cost, has the split
//! and what was tried).
//!
//! Run: `cargo bench --bench guard_cold`.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tollgate::api::Wire;
use tollgate::guard::{
    detect::{Allowance, Detector},
    inject::Scorer,
    policy::Policy,
    request, Guard,
};

fn cold(c: &mut Criterion) {
    let guard = Guard {
        detector: Detector::builtin(),
        scorer: Scorer::shared(),
        presidio: None,
    };
    let raw = serde_yaml::from_str("{ pii: redact, secrets: redact }").unwrap();
    let policy = Policy::resolve(&raw, guard.catalog(), false).unwrap();
    let body = include_bytes!("../loadtest/body-pii.json").to_vec();
    let mut junk = vec![0u8; 16 << 20];
    let mut g = c.benchmark_group("guard_cold");
    let check = || request::check(&guard, &policy, Wire::OpenAi, &body, None, Allowance::DEFAULT);
    g.bench_function("warm", |b| b.iter(|| black_box(check())));
    g.bench_function("evicted", |b| {
        b.iter_batched(
            || {
                for i in (0..junk.len()).step_by(64) {
                    junk[i] = junk[i].wrapping_add(1);
                }
            },
            |_| black_box(check()),
            BatchSize::PerIteration,
        )
    });
    // The detector alone, on the body's user message, cold.
    let user = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let mut out = Vec::with_capacity(8);
    g.bench_function("scan_evicted", |b| {
        b.iter_batched(
            || {
                for i in (0..junk.len()).step_by(64) {
                    junk[i] = junk[i].wrapping_add(1);
                }
            },
            |_| {
                out.clear();
                guard.detector.scan(black_box(&user), &mut out).unwrap();
                black_box(out.len())
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("scan_warm", |b| {
        b.iter(|| {
            out.clear();
            guard.detector.scan(black_box(&user), &mut out).unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, cold);
criterion_main!(benches);
