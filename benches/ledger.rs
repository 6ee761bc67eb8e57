//! Spend ledger benches:
//! - `ledger/submit`: the request-path part (`Ledger::submit`), per record, with the real spooler
//!   and SQLite writer draining behind it;
//! - `ledger/pnl_day_by_feature_1M`: the per-feature P&L for one day over 1,000,000 records in
//!   SQLite (~20 teams, ~50 features, ~10 models, ~1000 users, spread over two days), for an
//!   aligned day (rollup only) and a day with partial hours at both ends (rollup + raw edges);
//!   and the same day by (team, user), which needs the full-dimension rollup.
//!
//! `cargo bench --bench ledger`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tollgate::usage::ledger::{open_reader, GroupBy, Ledger, LedgerConfig, SpendQuery};
use tollgate::usage::UsageRecord;

const HOUR_MS: i64 = 3_600_000;
/// 2026-11-21T00:00:00Z
const DAY0: i64 = 1_795_219_200_000;
const RECORDS: usize = 1_000_000;

const MODELS: [(&str, &str, i64); 10] = [
    ("gpt-4o", "openai", 2_500),
    ("gpt-4o-mini", "openai", 150),
    ("o3", "openai", 10_000),
    ("claude-sonnet", "anthropic", 3_000),
    ("claude-haiku", "anthropic", 800),
    ("claude-opus", "anthropic", 15_000),
    ("gemini-pro", "gemini", 1_250),
    ("gemini-flash", "gemini", 100),
    ("llama-70b", "groq", 590),
    ("mistral-large", "mistral", 2_000),
];

/// A record shaped like production traffic: a user belongs to one team and uses that team's
/// features; a feature mostly uses one model.
fn realistic(i: usize, rng: &mut StdRng) -> UsageRecord {
    let user = rng.gen_range(0..1000usize);
    let team = user % 20;
    let feature = team + 20 * rng.gen_range(0..if team < 10 { 3 } else { 2 }); // 50 features
    let model = if rng.gen_bool(0.8) {
        feature % 10
    } else {
        (feature + 3) % 10
    };
    let (model_name, provider, nanos_per_token) = MODELS[model];
    let prompt = rng.gen_range(50..4000u64);
    let completion = rng.gen_range(10..800u64);
    let status = if rng.gen_bool(0.02) { 429 } else { 200 };
    UsageRecord {
        request_id: format!("req-{i:09}"),
        trace_id: format!("{i:032x}"),
        // In arrival order, like live traffic (a little jitter: requests finish out of order).
        ts_ms: DAY0 + (i as i64 * 2 * 24 * HOUR_MS) / RECORDS as i64 + rng.gen_range(0..5_000),
        endpoint: "chat".into(),
        key_id: Some(format!("key-{team}-{}", user % 3)),
        team: Some(format!("team-{team:02}")),
        user: Some(format!("user-{user:04}")),
        feature: Some(format!("feature-{feature:02}")),
        tier: Some(["free", "pro", "enterprise"][team % 3].into()),
        route: Some(["chat", "rag", "agent"][feature % 3].into()),
        model: Some(model_name.into()),
        provider: Some(provider.into()),
        served_model: Some(model_name.into()),
        attempts: format!("{provider}:{status}"),
        status,
        stream: rng.gen_bool(0.6),
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: prompt / 4,
        cost_nanos: (prompt + 4 * completion) as i64 * nanos_per_token,
        priced: true,
        latency_us: rng.gen_range(200_000..5_000_000),
        ttft_us: Some(rng.gen_range(100_000..900_000)),
        overhead_us: rng.gen_range(100..900),
        cache: "miss".into(),
        ..UsageRecord::default()
    }
}

fn bench_submit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::start(LedgerConfig {
        url: format!("sqlite:{}", dir.path().join("submit.db").display()),
        queue_capacity: 1 << 18,
        batch_size: 2000,
        spill_dir: dir.path().join("spill"),
        ..LedgerConfig::default()
    })
    .unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let template: Vec<UsageRecord> = (0..1000).map(|i| realistic(i, &mut rng)).collect();
    let mut next_id = 0usize;
    let mut g = c.benchmark_group("ledger");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_millis(300))
        .throughput(Throughput::Elements(1));
    g.bench_function("submit", |b| {
        b.iter_custom(|iters| {
            // Records are made outside the timed part, and the queue is drained between chunks,
            // so what is timed is the request-path hand-over only, never a full queue.
            let mut timed = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(50_000);
                let recs: Vec<UsageRecord> = (0..n)
                    .map(|k| {
                        let mut r = template[k % template.len()].clone();
                        r.request_id = format!("s-{next_id:010}");
                        next_id += 1;
                        r
                    })
                    .collect();
                let t = Instant::now();
                for r in recs {
                    ledger.submit(r);
                }
                timed += t.elapsed();
                assert!(ledger.flush(Duration::from_secs(120)));
                left -= n;
            }
            timed
        })
    });
    g.finish();
    let s = ledger.stats().snapshot();
    assert_eq!(s.dropped, 0, "{s:?}");
    eprintln!("ledger/submit: {s:?}");
    ledger.shutdown(Duration::from_secs(30));
}

fn bench_pnl(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("pnl.db").display());
    let ledger = Ledger::start(LedgerConfig {
        url: url.clone(),
        queue_capacity: 1 << 18,
        batch_size: 5000,
        spill_dir: dir.path().join("spill"),
        ..LedgerConfig::default()
    })
    .unwrap();
    let mut rng = StdRng::seed_from_u64(42);
    let t = Instant::now();
    let mut made = 0;
    while made < RECORDS {
        let n = (RECORDS - made).min(100_000);
        for i in made..made + n {
            ledger.submit(realistic(i, &mut rng));
        }
        assert!(ledger.flush(Duration::from_secs(300)));
        made += n;
    }
    let fill = t.elapsed();
    let s = ledger.stats().snapshot();
    assert_eq!((s.written, s.spilled, s.dropped), (RECORDS as u64, 0, 0), "{s:?}");
    ledger.shutdown(Duration::from_secs(30));
    let conn = rusqlite::Connection::open(dir.path().join("pnl.db")).unwrap();
    let rows = |t: &str| -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
            .unwrap()
    };
    let (full, coarse) = (rows("usage_hourly"), rows("usage_hourly_coarse"));
    drop(conn);
    eprintln!(
        "ledger/pnl: filled {RECORDS} records through the ledger in {fill:.1?} ({:.0} records/s); \
         rollup rows: {full} full, {coarse} coarse",
        RECORDS as f64 / fill.as_secs_f64()
    );

    let reader = open_reader(&url).unwrap();
    let aligned = SpendQuery {
        from_ms: DAY0 + 24 * HOUR_MS,
        to_ms: DAY0 + 48 * HOUR_MS,
        group_by: vec![GroupBy::Feature],
    };
    let ragged = SpendQuery {
        from_ms: DAY0 + 10 * HOUR_MS + 17 * 60_000 + 123,
        to_ms: DAY0 + 34 * HOUR_MS + 17 * 60_000 + 123,
        group_by: vec![GroupBy::Feature],
    };
    for q in [&aligned, &ragged] {
        let rep = reader.spend(q).unwrap();
        assert_eq!(rep.groups.len(), 50);
        assert_eq!(rep, reader.spend_raw(q).unwrap());
        eprintln!(
            "ledger/pnl: {} requests, ${:.2} in [{}, {})",
            rep.totals.requests, rep.totals.cost_usd, rep.from, rep.to
        );
    }
    let t = Instant::now();
    reader.spend_raw(&aligned).unwrap();
    eprintln!("ledger/pnl: the same day from raw records only: {:.1?}", t.elapsed());

    let by_user = SpendQuery {
        group_by: vec![GroupBy::Team, GroupBy::User],
        ..aligned.clone()
    };
    let rep = reader.spend(&by_user).unwrap();
    assert_eq!(rep, reader.spend_raw(&by_user).unwrap());
    eprintln!("ledger/pnl: {} (team, user) groups in a day", rep.groups.len());

    let mut g = c.benchmark_group("ledger");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("pnl_day_by_feature_1M/aligned_day", |b| {
        b.iter(|| reader.spend(&aligned).unwrap())
    });
    g.bench_function("pnl_day_by_feature_1M/partial_hour_edges", |b| {
        b.iter(|| reader.spend(&ragged).unwrap())
    });
    g.bench_function("pnl_day_by_team_user_1M/aligned_day", |b| {
        b.iter(|| reader.spend(&by_user).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench_submit, bench_pnl);
criterion_main!(benches);
