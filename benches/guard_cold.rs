//! The guardrail stage warm and cold: the same call on the load runner's body, once with the
//! caches warm (criterion's usual loop) and once after 16 MiB of other memory was touched before
//! every call, as a gateway's request finds them after the rest of its work. The difference is
//! what the detector's automata cost when they come back from memory. `scan_*`: the detector
//! alone on the body's user message (234 bytes).
//!
//! Medians (2026-12-06 evening, 2-core VM, two runs of each build): with the detector's
//! prefilter, stage warm 2.4 µs, evicted 12.2 µs, scan warm 1.14 µs, evicted 7.2 µs; the build
//! before it, stage warm 2.5-3.0 µs, evicted 10.3-11.1 µs, scan warm 1.1-1.3 µs, evicted 6.6-7.1
//! µs (the same, within this VM's noise: the prefilter's windows cover most of this body's user
//! message). `loadtest/guard-misses.sh` counts the same cold call's instructions and cache misses
//! exactly: ~520 misses on this body, 208 of them in the regex engine's searches (README,
//! Guardrails, Cost, has the split and what was tried).
//!
//! Run: `cargo bench --bench guard_cold`.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tollgate::api::Wire;
use tollgate::guard::{detect::Detector, inject::Scorer, policy::Policy, request, Guard};

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
    g.bench_function("warm", |b| {
        b.iter(|| black_box(request::check(&guard, &policy, Wire::OpenAi, &body, None)))
    });
    g.bench_function("evicted", |b| {
        b.iter_batched(
            || {
                for i in (0..junk.len()).step_by(64) {
                    junk[i] = junk[i].wrapping_add(1);
                }
            },
            |_| black_box(request::check(&guard, &policy, Wire::OpenAi, &body, None)),
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
                guard.detector.scan(black_box(&user), &mut out);
                black_box(out.len())
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("scan_warm", |b| {
        b.iter(|| {
            out.clear();
            guard.detector.scan(black_box(&user), &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, cold);
criterion_main!(benches);
