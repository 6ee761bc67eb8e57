//! The guardrail stage warm and cold: the same call on the load runner's body, once with the
//! caches warm (criterion's usual loop) and once after 16 MiB of other memory was touched before
//! every call, as a gateway's request finds them after the rest of its work. The difference is
//! what the detector's automata cost when they come back from memory.
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
        scorer: Scorer::new(),
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
    g.finish();
}

criterion_group!(benches, cold);
criterion_main!(benches);
