//! The response cache's costs per request: the exact key of the load runner's body, the local
//! embedding model per semantic lookup (the real all-MiniLM-L6-v2, fetched by
//! `scripts/fetch-model.sh`), and a nearest-neighbour search in an index of 100 000 questions of
//! one context (HNSW, 384 dimensions).
//!
//! Run: `cargo bench --bench cache` (building the 100k index takes about a minute first). The
//! medians are in the README's "Response cache" section.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::api::openai::LlmRequest;
use tollgate::api::Endpoint;
use tollgate::cache::key::{self, Key};
use tollgate::cache::semantic::{embed::Embedder, facts, index::Index};

fn model() -> Embedder {
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/fetch-model.sh"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Embedder::load(std::path::Path::new(String::from_utf8_lossy(&out.stdout).trim())).unwrap()
}

fn unit(seed: u64, dims: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= n);
    v
}

fn cache(c: &mut Criterion) {
    let body = bytes::Bytes::from_static(include_bytes!("../loadtest/body-json.json"));
    let mut g = c.benchmark_group("cache");
    g.bench_function("exact_key", |b| {
        b.iter(|| {
            // A fresh request each time: the canonical parse is part of the cost.
            let req = LlmRequest::parse(Endpoint::ChatCompletions, body.clone()).unwrap();
            black_box(key::exact(&req, "team:a", "demo", &[]).unwrap())
        })
    });
    let e = model();
    g.bench_function("embed_question", |b| {
        b.iter(|| {
            black_box(
                e.embed(black_box("What is our refund policy for orders under $50?"))
                    .unwrap(),
            )
        })
    });
    g.bench_function("guard_compare", |b| {
        b.iter(|| {
            black_box(facts::compatible(
                black_box("What is our refund policy for orders under $50?"),
                black_box("What's our refund policy for orders under 50 dollars?"),
            ))
        })
    });
    let idx = Index::new(384, 200_000);
    let ctx = Key([7; 32]);
    // Questions cluster by topic, as real ones do: 1 000 topics of 100 questions each (a topic's
    // direction plus noise). (Uniformly random 384-dimension vectors, which have no neighbours
    // to speak of, are a worst case for any graph index: 7 ms here.)
    let clustered = |i: u64| {
        let (centre, noise) = (unit(i % 1000, 384), unit(i.wrapping_add(1 << 40), 384));
        let mut v: Vec<f32> = centre.iter().zip(&noise).map(|(c, n)| c + 0.35 * n).collect();
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.iter_mut().for_each(|a| *a /= n);
        v
    };
    // `cargo test --all-targets` runs each bench once, unoptimised: a small index there.
    let n = if std::env::args().any(|a| a == "--bench") {
        100_000
    } else {
        2_000
    };
    for i in 0..n {
        idx.insert(ctx, Key([0; 32]), "q", &clustered(i));
    }
    let q = clustered(123_456_789);
    g.bench_function("hnsw_nearest_100k", |b| {
        b.iter(|| black_box(idx.nearest(&ctx, black_box(&q))))
    });
    g.finish();
}

criterion_group!(benches, cache);
criterion_main!(benches);
