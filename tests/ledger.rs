//! The spend ledger on a real PostgreSQL: a private server started by the test (scripts/pg.sh)
//! on a free loopback port, stopped hard in the middle of a run and started again.
//!
//! PostgreSQL must be installed (`scripts/deps.sh` installs it); without it these tests fail
//! with a message saying so, they never skip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
mod common;

use common::pg::Pg;
use common::pki::Ca;
use tollgate::usage::ledger::{open_reader, GroupBy, Ledger, LedgerConfig, SpendQuery, SpendReport};
use tollgate::usage::{GuardrailCounts, UsageRecord};

const HOUR_MS: i64 = 3_600_000;
/// 2026-11-21T00:00:00Z
const DAY0: i64 = 1_795_219_200_000;

fn ledger_cfg(url: &str, spill: &std::path::Path) -> LedgerConfig {
    LedgerConfig {
        url: url.to_string(),
        queue_capacity: 65_536,
        batch_size: 200,
        flush_interval: Duration::from_millis(20),
        spill_dir: spill.to_path_buf(),
        retry_interval: Duration::from_millis(100),
    }
}

fn rec(i: usize, ts_ms: i64) -> UsageRecord {
    UsageRecord {
        request_id: format!("req-{i:07}"),
        trace_id: format!("{i:032x}"),
        ts_ms,
        endpoint: "chat".into(),
        team: Some(["backend", "search", "ml"][i % 3].into()),
        feature: Some(format!("f{}", i % 5)),
        model: Some(["gpt-4o", "claude-sonnet"][i % 2].into()),
        provider: Some(["openai", "anthropic"][i % 2].into()),
        key_id: Some(format!("k{}", i % 4)),
        user: (i % 7 != 0).then(|| format!("u{}", i % 11)),
        attempts: "openai:200".into(),
        status: if i % 13 == 0 { 502 } else { 200 },
        prompt_tokens: 100 + i as u64,
        completion_tokens: 20 + (i % 50) as u64,
        cached_tokens: (i % 3) as u64,
        cache_write_tokens: (i % 2) as u64,
        reasoning_tokens: (i % 4) as u64,
        tokens_estimated: i % 9 == 0,
        cost_nanos: 1_000_003 * (i as i64 % 97 + 1),
        priced: i % 17 != 0,
        latency_us: 1000,
        overhead_us: 50,
        cache: "none".into(),
        ..UsageRecord::default()
    }
}

fn everything(group_by: Vec<GroupBy>) -> SpendQuery {
    SpendQuery {
        from_ms: 0,
        to_ms: i64::MAX / 2,
        group_by,
    }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// requests, errors, prompt, completion, cached, cache_write, reasoning, cost, unpriced, estimated
type Sums = [i64; 10];

fn sums_of(r: &UsageRecord) -> Sums {
    [
        1,
        i64::from(r.status >= 400),
        r.prompt_tokens as i64,
        r.completion_tokens as i64,
        r.cached_tokens as i64,
        r.cache_write_tokens as i64,
        r.reasoning_tokens as i64,
        r.cost_nanos,
        i64::from(!r.priced),
        i64::from(r.tokens_estimated),
    ]
}

fn row_sums(r: &tollgate::usage::ledger::SpendRow) -> Sums {
    [
        r.requests as i64,
        r.errors as i64,
        r.prompt_tokens as i64,
        r.completion_tokens as i64,
        r.cached_tokens as i64,
        r.cache_write_tokens as i64,
        r.reasoning_tokens as i64,
        r.cost_nanos,
        r.unpriced_requests as i64,
        r.estimated_requests as i64,
    ]
}

fn dim(r: &UsageRecord, g: GroupBy) -> Option<String> {
    match g {
        GroupBy::Team => r.team.clone(),
        GroupBy::Feature => r.feature.clone(),
        GroupBy::Model => r.model.clone(),
        GroupBy::Provider => r.provider.clone(),
        GroupBy::Key => r.key_id.clone(),
        GroupBy::User => r.user.clone(),
        GroupBy::Tier => r.tier.clone(),
        GroupBy::Route => r.route.clone(),
    }
}

/// Checks a report against an in-memory aggregation of the records.
fn check_report(rep: &SpendReport, recs: &[UsageRecord], q: &SpendQuery) {
    let mut totals = [0i64; 10];
    let mut groups: BTreeMap<Vec<Option<String>>, Sums> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.ts_ms >= q.from_ms && r.ts_ms < q.to_ms) {
        let s = sums_of(r);
        let key = q.group_by.iter().map(|g| dim(r, *g)).collect();
        let e = groups.entry(key).or_insert([0; 10]);
        for j in 0..10 {
            totals[j] += s[j];
            e[j] += s[j];
        }
    }
    assert_eq!(row_sums(&rep.totals), totals, "{q:?}");
    if q.group_by.is_empty() {
        assert!(rep.groups.is_empty());
        return;
    }
    let got: BTreeMap<Vec<Option<String>>, Sums> = rep
        .groups
        .iter()
        .map(|row| {
            let key = q.group_by.iter().map(|g| row.group[g.as_str()].clone()).collect();
            (key, row_sums(row))
        })
        .collect();
    assert_eq!(got.len(), rep.groups.len(), "duplicate groups in {q:?}");
    assert_eq!(got, groups, "{q:?}");
}

fn count(pg: &Pg) -> i64 {
    pg.client()
        .query_one("SELECT COUNT(*) FROM usage_records", &[])
        .unwrap()
        .get(0)
}

#[test]
fn postgres_over_tls_checks_the_server_as_sslmode_says() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "pg-ca");
    let stranger = Ca::new(pki.path(), "other-ca");
    let pg = Pg::start_tls(&ca);
    let url = |host: &str, query: &str| format!("postgres://postgres@{host}:{}/postgres?{query}", pg.port);
    let root = |ca: &Ca| format!("sslrootcert={}", ca.pem.display());

    // verify-full against the CA that signed the server's certificate: records are written and
    // read back over TLS (the server refuses connections without it).
    let full = url("localhost", &format!("sslmode=verify-full&{}", root(&ca)));
    let spill = tempfile::tempdir().unwrap();
    let ledger = Ledger::start(ledger_cfg(&full, spill.path())).unwrap();
    for i in 0..100 {
        ledger.submit(rec(i, DAY0 + i as i64));
    }
    assert!(ledger.flush(Duration::from_secs(30)), "{:?}", ledger.stats().snapshot());
    assert_eq!(ledger.stats().snapshot().spilled, 0);
    let spent = |u: &str| open_reader(u).and_then(|r| r.spend(&everything(vec![])));
    assert_eq!(spent(&full).unwrap().totals.requests, 100);
    ledger.shutdown(Duration::from_secs(10));

    // What each mode accepts: the certificate names localhost, not 127.0.0.1.
    let ok = |q: &str, host: &str| spent(&url(host, q)).map(|r| r.totals.requests);
    assert_eq!(
        ok(&format!("sslmode=verify-ca&{}", root(&ca)), "127.0.0.1").unwrap(),
        100
    );
    assert_eq!(ok("sslmode=require", "127.0.0.1").unwrap(), 100);
    let e = ok(&format!("sslmode=verify-full&{}", root(&ca)), "127.0.0.1")
        .unwrap_err()
        .to_string();
    assert!(e.contains("certificate") && e.contains("127.0.0.1"), "{e}");
    let e = ok(&format!("sslmode=verify-ca&{}", root(&stranger)), "localhost")
        .unwrap_err()
        .to_string();
    assert!(e.contains("UnknownIssuer"), "{e}");
    // With a CA, require checks the chain too (as libpq).
    assert!(ok(&format!("sslmode=require&{}", root(&stranger)), "localhost").is_err());
    // No TLS: this server refuses it.
    let e = ok("sslmode=disable", "localhost").unwrap_err().to_string();
    assert!(e.contains("no encryption"), "{e}");
}

#[test]
fn postgres_outage_spills_then_replays_exactly() {
    let pg = Pg::start();
    let spill = tempfile::tempdir().unwrap();
    let ledger = Ledger::start(ledger_cfg(&pg.url(), spill.path())).unwrap();
    let reader = open_reader(&pg.url()).unwrap();
    assert!(ledger.stats().store_up.load(Ordering::SeqCst));

    let mut recs = Vec::new();
    for i in 0..5_000 {
        let r = rec(i, DAY0 + i as i64 * 1_000);
        ledger.submit(r.clone());
        recs.push(r);
    }
    assert!(ledger.flush(Duration::from_secs(30)));
    assert_eq!(count(&pg), 5_000);
    // A reader whose connection the outage will cut, and that is not used again until after it:
    // its first query then must not fail on the dead connection.
    let held = open_reader(&pg.url()).unwrap();
    assert_eq!(held.spend(&everything(vec![])).unwrap().totals.requests, 5_000);

    // The store goes away hard, mid-run.
    pg.stop("immediate");
    let t = Instant::now();
    for i in 5_000..15_000 {
        let r = rec(i, DAY0 + i as i64 * 1_000);
        ledger.submit(r.clone());
        recs.push(r);
    }
    let submit_time = t.elapsed();
    assert!(
        submit_time < Duration::from_secs(1),
        "10k submits took {submit_time:?} with the store down"
    );
    assert!(ledger.flush(Duration::from_secs(30)), "{:?}", ledger.stats().snapshot());
    let s = ledger.stats().snapshot();
    assert!(s.spilled > 0, "{s:?}");
    assert!(!s.store_up, "{s:?}");
    assert!(s.write_errors >= 1, "{s:?}");
    assert_eq!(s.dropped, 0, "{s:?}");
    assert!(reader.spend(&everything(vec![])).is_err(), "the reader sees the outage");

    // It comes back: the spill is replayed, and nothing is lost or counted twice.
    pg.restart();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let s = ledger.stats().snapshot();
            s.store_up && s.spill_pending == 0
        }),
        "{:?}",
        ledger.stats().snapshot()
    );
    assert!(ledger.flush(Duration::from_secs(30)));
    assert_eq!(count(&pg), 15_000);
    assert_eq!(held.spend(&everything(vec![])).unwrap().totals.requests, 15_000);
    let s = ledger.stats().snapshot();
    assert_eq!(s.replayed, s.spilled, "{s:?}");
    assert_eq!(s.written + s.spilled, 15_000, "{s:?}");
    for q in [
        everything(vec![]),
        everything(vec![GroupBy::Team, GroupBy::Model]),
        SpendQuery {
            from_ms: DAY0 + 1_234_567,
            to_ms: DAY0 + 3 * HOUR_MS + 17,
            group_by: vec![GroupBy::Feature],
        },
    ] {
        let rep = reader.spend(&q).unwrap();
        check_report(&rep, &recs, &q);
        assert_eq!(rep, reader.spend_raw(&q).unwrap());
    }
    let files = std::fs::read_dir(ledger.spill_dir()).unwrap().count();
    assert_eq!(files, 0, "replayed spill files are deleted");

    // Live writing continues after the outage.
    ledger.submit(rec(99_999, DAY0));
    assert!(ledger.flush(Duration::from_secs(10)));
    assert_eq!(count(&pg), 15_001);
    ledger.shutdown(Duration::from_secs(10));
}

#[test]
fn postgres_migrations_grouping_rollup_and_tokio_callers() {
    let pg = Pg::start();
    let spill = tempfile::tempdir().unwrap();
    let cfg = ledger_cfg(&pg.url(), spill.path());

    // Migrations run at start, once; a restart (also from inside a tokio runtime) changes nothing.
    let rt = tokio::runtime::Runtime::new().unwrap();
    for _ in 0..2 {
        let c = cfg.clone();
        let l = rt.block_on(async move { Ledger::start(c) }).unwrap();
        l.shutdown(Duration::from_secs(5));
    }
    let versions: Vec<i32> = pg
        .client()
        .query("SELECT version FROM schema_version ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);

    // A server that answers but refuses us is a configuration error at start (a server that is
    // down is not: see the outage test); the password never shows.
    let mut bad = cfg.clone();
    bad.url = format!("postgres://postgres:s3cret@127.0.0.1:{}/no_such_db", pg.port);
    let e = Ledger::start(bad).unwrap_err().to_string();
    assert!(e.contains("no_such_db") && !e.contains("s3cret"), "{e}");

    let ledger = Ledger::start(cfg).unwrap();
    let reader = Arc::new(open_reader(&pg.url()).unwrap());

    // Every field round-trips; duplicates (same batch or later) are ignored.
    let full = UsageRecord {
        request_id: "r-full".into(),
        client_request_id: Some("client-1".into()),
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        ts_ms: DAY0 - 5,
        endpoint: "messages".into(),
        key_id: Some("key-1".into()),
        team: Some("backend".into()),
        user: Some("alice".into()),
        client_ip: Some("2001:db8::7".into()),
        feature: Some("search".into()),
        tier: Some("gold".into()),
        route: Some("default".into()),
        model: Some("claude-sonnet".into()),
        provider: Some("anthropic".into()),
        served_model: Some("claude-sonnet-4-5".into()),
        attempts: "openai:429,anthropic:200".into(),
        status: 200,
        error: Some("stream_cut".into()),
        stream: true,
        prompt_tokens: 1200,
        completion_tokens: 300,
        cached_tokens: 1000,
        cache_write_tokens: 100,
        reasoning_tokens: 50,
        tokens_estimated: true,
        cost_nanos: 123_456_789,
        priced: true,
        latency_us: 987_654,
        ttft_us: Some(120_000),
        overhead_us: 321,
        cache: "miss".into(),
        cache_saved_nanos: 7_654_321,
        guardrails: GuardrailCounts {
            redactions: 3,
            injections: 1,
            blocked: true,
            entities: "CARD:1,EMAIL:2".into(),
            output_entities: "API_KEY:1".into(),
            action: "block".into(),
            injection_family: Some("instruction_override".into()),
            injection_score: Some(0.75),
        },
        ab_arm: Some("b".into()),
    };
    ledger.submit(full.clone());
    ledger.submit(full.clone());
    assert!(ledger.flush(Duration::from_secs(10)));
    ledger.submit(full.clone());

    let mut rng = StdRng::seed_from_u64(11);
    let pick = |rng: &mut StdRng, vals: &[&str]| -> Option<String> {
        let i = rng.gen_range(0..=vals.len());
        vals.get(i).map(|v| v.to_string())
    };
    let span = 8 * HOUR_MS;
    let mut recs = vec![full.clone()];
    for i in 0..3_000 {
        let mut x = rec(i, DAY0 + rng.gen_range(0..span));
        x.team = pick(&mut rng, &["a", "b", "c"]);
        x.feature = pick(&mut rng, &["f1", "f2", ""]);
        x.model = pick(&mut rng, &["m1", "m2"]);
        x.provider = pick(&mut rng, &["p1"]);
        x.key_id = pick(&mut rng, &["k1", "k2"]);
        x.user = pick(&mut rng, &["u1", "u2", "u3"]);
        x.tier = pick(&mut rng, &["t"]);
        x.route = pick(&mut rng, &["r1", "r2"]);
        x.status = [200, 200, 429, 500][rng.gen_range(0..4)];
        x.cost_nanos = rng.gen_range(0..50_000_000);
        ledger.submit(x.clone());
        recs.push(x);
    }
    assert!(ledger.flush(Duration::from_secs(30)));
    assert_eq!(reader.record("r-full").unwrap(), Some(full));
    assert_eq!(reader.record("nope").unwrap(), None);
    assert_eq!(count(&pg), recs.len() as i64);

    // Rollup + edges equals the raw aggregation, for random ranges and groupings.
    for round in 0..60 {
        let a = DAY0 - HOUR_MS + rng.gen_range(0..span + 2 * HOUR_MS);
        let b = DAY0 - HOUR_MS + rng.gen_range(0..span + 2 * HOUR_MS);
        let (a, b) = if round % 4 == 0 {
            (a - a.rem_euclid(HOUR_MS), b - b.rem_euclid(HOUR_MS))
        } else {
            (a, b)
        };
        let group_by: Vec<GroupBy> = GroupBy::ALL.into_iter().filter(|_| rng.gen_bool(0.3)).collect();
        let q = SpendQuery {
            from_ms: a.min(b),
            to_ms: a.max(b),
            group_by,
        };
        let rep = reader.spend(&q).unwrap();
        assert_eq!(rep, reader.spend_raw(&q).unwrap(), "{q:?}");
        check_report(&rep, &recs, &q);
    }
    for g in GroupBy::ALL {
        let q = everything(vec![g]);
        check_report(&reader.spend(&q).unwrap(), &recs, &q);
    }

    // The gateway calls spend from tokio's blocking pool; this must not touch the caller's runtime.
    let q = everything(vec![GroupBy::Team]);
    let r2 = reader.clone();
    let q2 = q.clone();
    let rep = rt
        .block_on(async move { tokio::task::spawn_blocking(move || r2.spend(&q2)).await })
        .unwrap()
        .unwrap();
    check_report(&rep, &recs, &q);
    // Even straight from an async task (blocking it, but never panicking).
    let r3 = reader.clone();
    let rep = rt.block_on(async move { r3.spend(&everything(vec![])) }).unwrap();
    assert_eq!(rep.totals.requests, recs.len() as u64);
    drop(rt);
    ledger.shutdown(Duration::from_secs(10));
}
