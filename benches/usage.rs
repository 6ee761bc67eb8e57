//! The per-request cost of accounting: pricing the usage, building the usage record, and handing
//! it to the access log and the spend ledger (bounded queues; the writing happens on their own
//! threads). Compare with the proxy's own overhead (loadtest/RESULTS.md: ~94 µs of gateway CPU
//! per JSON request).
//!
//! Run: `cargo bench --bench usage` (add `-- --quick` for a fast pass).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::api::chat::Usage;
use tollgate::config::{load_str, Env};
use tollgate::proxy::ctx::{Attempt, AttemptOutcome, RequestCtx};
use tollgate::routing::attempts::Call;
use tollgate::telemetry::access_log::{AccessLog, Output};
use tollgate::telemetry::trace::SpanId;
use tollgate::usage::ledger::{Ledger, LedgerConfig};

fn finished_ctx() -> RequestCtx {
    let doc = "providers:\n  openai:\n    kind: openai\n    base_url: http://h:8000/v1\n    api_keys: [k]\nmodels:\n  gpt:\n    targets: [ { provider: openai, model: gpt-4o-mini-2024-07-18 } ]\n";
    let resolve = |_: &str, port: u16| Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    let env = Env {
        var: &|_| None,
        resolve: &resolve,
    };
    let snap = load_str(Path::new("bench.yaml"), doc, &env).expect("bench config");
    let target = Arc::clone(&snap.model("gpt").unwrap().targets[0]);
    assert!(target.price.is_some(), "the bench model is in the pricing table");
    let mut ctx = RequestCtx::new();
    ctx.endpoint = Some(tollgate::api::Endpoint::ChatCompletions);
    ctx.model = Some("gpt".into());
    ctx.route = Some("default".into());
    ctx.who.user = Some("user-1234".into());
    ctx.who.feature = Some("search".into());
    ctx.who.team = Some("growth".into());
    ctx.stream = true;
    ctx.usage = Some(Usage::with_cache(900, 250, 1024, 0));
    let call = Call {
        started: Instant::now(),
        span: SpanId::random(),
    };
    ctx.attempts.push(Attempt::sent(
        &target,
        AttemptOutcome::Status(429),
        call,
        Instant::now(),
    ));
    let call = Call {
        started: Instant::now(),
        span: SpanId::random(),
    };
    ctx.attempts.push(Attempt::sent(
        &target,
        AttemptOutcome::Status(200),
        call,
        Instant::now(),
    ));
    ctx.served_by = Some(target);
    ctx.first_byte = Some(Instant::now());
    ctx.upstream_time = Duration::from_millis(1);
    ctx
}

fn bench(c: &mut Criterion) {
    let ctx = finished_ctx();
    let price = ctx.served_by.as_ref().unwrap().price.unwrap();
    let usage = ctx.usage.unwrap();
    let mut g = c.benchmark_group("usage");
    g.bench_function("cost_nanos", |b| {
        b.iter(|| black_box(price.cost_nanos(black_box(&usage))))
    });
    g.bench_function("build_record", |b| {
        b.iter(|| black_box(tollgate::proxy::record::build(black_box(&ctx), 200, Instant::now())))
    });

    let dir = tempfile::tempdir().unwrap();
    let log = AccessLog::start(Output::File("/dev/null".into())).unwrap();
    let ledger = Ledger::start(LedgerConfig {
        url: format!("sqlite:{}", dir.path().join("spend.db").display()),
        spill_dir: dir.path().join("spill"),
        ..LedgerConfig::default()
    })
    .unwrap();
    // What `logging` does per request: build, then one clone for the log and the record for the
    // ledger. (When the writers fall behind, records count as spilled or dropped; the request
    // path's cost is the same.)
    g.bench_function("build_and_queue", |b| {
        b.iter(|| {
            let rec = tollgate::proxy::record::build(&ctx, 200, Instant::now());
            log.submit(rec.clone());
            ledger.submit(rec);
        })
    });
    g.finish();
    ledger.shutdown(Duration::from_secs(10));
}

criterion_group!(benches, bench);
criterion_main!(benches);
