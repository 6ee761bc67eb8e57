//! Ledger unit tests on SQLite in temp dirs; store outages are simulated with `Ledger::set_fault`.
//! PostgreSQL runs in `tests/ledger.rs`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::query::{Plan, HOUR_MS};
use super::rollup::Sums;
use super::store_url::{redact_pg, StoreUrl};
use super::*;
use crate::usage::{GuardrailCounts, UsageRecord};

/// 2026-11-21T00:00:00Z
const DAY0: i64 = 1_795_219_200_000;

fn cfg(dir: &Path) -> LedgerConfig {
    LedgerConfig {
        url: format!("sqlite:{}", dir.join("db/spend.db").display()),
        queue_capacity: 100_000,
        batch_size: 100,
        flush_interval: Duration::from_millis(20),
        spill_dir: dir.join("spill"),
        retry_interval: Duration::from_millis(30),
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

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// The expected report, aggregated in memory from the records.
fn oracle(recs: &[UsageRecord], q: &SpendQuery) -> SpendReport {
    let plan = Plan::new(q, true).unwrap();
    let rows = recs
        .iter()
        .filter(|r| r.ts_ms >= q.from_ms && r.ts_ms < q.to_ms)
        .map(|r| {
            let key = plan.dims.iter().map(|g| super::rollup::dim(r, *g).cloned()).collect();
            (key, Sums::of(r))
        })
        .collect();
    plan.report(q, rows)
}

fn everything(group_by: Vec<GroupBy>) -> SpendQuery {
    SpendQuery {
        from_ms: 0,
        to_ms: i64::MAX / 2,
        group_by,
    }
}

fn start(dir: &Path) -> (Ledger, SpendReader) {
    let c = cfg(dir);
    let url = c.url.clone();
    let l = Ledger::start(c).unwrap();
    let r = open_reader(&url).unwrap();
    (l, r)
}

#[test]
fn records_land_with_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let (l, r) = start(dir.path());
    let full = UsageRecord {
        request_id: "r-full".into(),
        client_request_id: Some("client-1".into()),
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        ts_ms: DAY0 + 1234,
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
        cache_saved_nanos: 1_234_567,
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
    let bare = UsageRecord {
        request_id: "r-bare".into(),
        ts_ms: DAY0,
        ..UsageRecord::default()
    };
    l.submit(full.clone());
    l.submit(bare.clone());
    assert!(l.flush(Duration::from_secs(10)));
    assert_eq!(r.record("r-full").unwrap(), Some(full));
    assert_eq!(r.record("r-bare").unwrap(), Some(bare));
    assert_eq!(r.record("nope").unwrap(), None);
    let s = l.stats().snapshot();
    assert_eq!((s.written, s.spilled, s.dropped, s.queue_depth), (2, 0, 0, 0));
    assert!(s.store_up);
    l.shutdown(Duration::from_secs(5));
}

/// A record shared with the access log lands whole, whether the spooler finds the other holder
/// done with it (moved) or still holding it (copied on the spooler's thread).
#[test]
fn a_shared_record_lands_whether_or_not_another_sink_still_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let (l, r) = start(dir.path());
    let held = std::sync::Arc::new(rec(1, DAY0));
    let released = std::sync::Arc::new(rec(2, DAY0));
    l.submit_shared(std::sync::Arc::clone(&held));
    l.submit_shared(std::sync::Arc::clone(&released));
    drop(released);
    assert!(l.flush(Duration::from_secs(10)));
    assert_eq!(r.record(&held.request_id).unwrap().as_ref(), Some(&*held));
    assert_eq!(r.record(&rec(2, DAY0).request_id).unwrap(), Some(rec(2, DAY0)));
    assert_eq!(std::sync::Arc::strong_count(&held), 1, "the ledger kept no reference");
    l.shutdown(Duration::from_secs(5));
}

#[test]
fn duplicates_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (l, r) = start(dir.path());
    let a = rec(1, DAY0);
    l.submit(a.clone());
    l.submit(a.clone()); // same batch
    assert!(l.flush(Duration::from_secs(10)));
    let mut changed = a.clone();
    changed.cost_nanos = 999; // a later duplicate never overwrites
    l.submit(changed);
    assert!(l.flush(Duration::from_secs(10)));
    let rep = r.spend(&everything(vec![GroupBy::Team])).unwrap();
    assert_eq!(rep.totals.requests, 1);
    assert_eq!(rep.totals.cost_nanos, a.cost_nanos);
    assert_eq!(rep.groups.len(), 1);
    assert_eq!(r.spend_raw(&everything(vec![])).unwrap().totals, rep.totals);
    assert_eq!(r.record(&a.request_id).unwrap(), Some(a));
}

#[test]
fn grouping_by_each_dimension_and_combinations() {
    let dir = tempfile::tempdir().unwrap();
    let (l, r) = start(dir.path());
    let mut recs: Vec<UsageRecord> = (0..600).map(|i| rec(i, DAY0 + i as i64 * 60_000)).collect();
    for (i, x) in recs.iter_mut().enumerate() {
        x.tier = (i % 4 != 0).then(|| ["free", "pro"][i % 2].to_string());
        x.route = Some(format!("route-{}", i % 3));
    }
    for x in &recs {
        l.submit(x.clone());
    }
    assert!(l.flush(Duration::from_secs(10)));
    let mut combos: Vec<Vec<GroupBy>> = GroupBy::ALL.iter().map(|g| vec![*g]).collect();
    combos.push(vec![GroupBy::Team, GroupBy::Feature]);
    combos.push(vec![GroupBy::Feature, GroupBy::Model, GroupBy::User]);
    combos.push(vec![GroupBy::Route, GroupBy::Tier, GroupBy::Key, GroupBy::Provider]);
    combos.push(GroupBy::ALL.to_vec());
    combos.push(vec![]);
    let q0 = DAY0 + 17 * 60_000 + 5; // partial hours at both ends
    for group_by in combos {
        let q = SpendQuery {
            from_ms: q0,
            to_ms: DAY0 + 9 * HOUR_MS + 123,
            group_by,
        };
        let got = r.spend(&q).unwrap();
        assert_eq!(got, oracle(&recs, &q), "group_by {:?}", q.group_by);
        assert_eq!(got, r.spend_raw(&q).unwrap());
    }
    // NULL is a group of its own, shown as null.
    let by_user = r.spend(&everything(vec![GroupBy::User])).unwrap();
    let null_row = by_user.groups.iter().find(|g| g.group["user"].is_none()).unwrap();
    assert_eq!(
        null_row.requests,
        recs.iter().filter(|x| x.user.is_none()).count() as u64
    );
    let json = serde_json::to_value(null_row).unwrap();
    assert!(json["user"].is_null());
    // Sorted by cost, highest first.
    let costs: Vec<i64> = by_user.groups.iter().map(|g| g.cost_nanos).collect();
    assert!(costs.windows(2).all(|w| w[0] >= w[1]));
    // Ungrouped: totals only.
    let none = r.spend(&everything(vec![])).unwrap();
    assert!(none.groups.is_empty());
    assert_eq!(none.totals.requests, 600);
}

#[test]
fn time_range_edges() {
    let dir = tempfile::tempdir().unwrap();
    let (l, r) = start(dir.path());
    let h = DAY0 + 10 * HOUR_MS;
    let stamps = [
        h - 1,
        h,
        h + 1,
        h + HOUR_MS / 2,
        h + HOUR_MS - 1,
        h + HOUR_MS,
        h + 2 * HOUR_MS - 1,
        h + 2 * HOUR_MS,
        h + 3 * HOUR_MS + 5,
    ];
    let recs: Vec<UsageRecord> = stamps.iter().enumerate().map(|(i, t)| rec(i, *t)).collect();
    for x in &recs {
        l.submit(x.clone());
    }
    assert!(l.flush(Duration::from_secs(10)));
    let count = |from: i64, to: i64| {
        let q = SpendQuery {
            from_ms: from,
            to_ms: to,
            group_by: vec![GroupBy::Model],
        };
        let got = r.spend(&q).unwrap();
        assert_eq!(got, oracle(&recs, &q), "[{from}, {to})");
        got.totals.requests
    };
    assert_eq!(count(h, h + HOUR_MS), 4); // from inclusive, to exclusive
    assert_eq!(count(h, h + 2 * HOUR_MS), 6); // two whole hours
    assert_eq!(count(h + 1, h + 2 * HOUR_MS), 5); // partial first hour
    assert_eq!(count(h + HOUR_MS / 2, h + 3 * HOUR_MS + 6), 6); // partial at both ends
    assert_eq!(count(h + 1, h + HOUR_MS - 1), 2); // inside one hour
    assert_eq!(count(h - 1, h), 1);
    assert_eq!(count(h, h), 0); // empty range
    assert_eq!(count(0, h + 10 * HOUR_MS), 9);
    let bad = SpendQuery {
        from_ms: h,
        to_ms: h - 1,
        group_by: vec![],
    };
    assert!(matches!(r.spend(&bad), Err(LedgerError::Query(_))));
}

#[test]
fn rollup_matches_raw_for_random_records_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let (l, r) = start(dir.path());
    let mut rng = StdRng::seed_from_u64(7);
    let pick = |rng: &mut StdRng, vals: &[&str]| -> Option<String> {
        let i = rng.gen_range(0..=vals.len());
        vals.get(i).map(|v| v.to_string()) // one chance in len+1 of NULL
    };
    let span = 8 * HOUR_MS;
    let recs: Vec<UsageRecord> = (0..4000)
        .map(|i| {
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
            x.priced = rng.gen_bool(0.9);
            x.tokens_estimated = rng.gen_bool(0.2);
            x
        })
        .collect();
    for x in &recs {
        l.submit(x.clone());
    }
    assert!(l.flush(Duration::from_secs(20)));
    for round in 0..150 {
        let a = DAY0 - HOUR_MS + rng.gen_range(0..span + 2 * HOUR_MS);
        let b = DAY0 - HOUR_MS + rng.gen_range(0..span + 2 * HOUR_MS);
        // Some ranges on exact hour boundaries.
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
        let got = r.spend(&q).unwrap();
        assert_eq!(got, r.spend_raw(&q).unwrap(), "{q:?}");
        assert_eq!(got, oracle(&recs, &q), "{q:?}");
    }
}

fn spill_files(l: &Ledger) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(l.spill_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn spills_while_the_store_is_down_then_replays_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (l, r) = start(dir.path());
    l.set_fault(true);
    let recs: Vec<UsageRecord> = (0..1000).map(|i| rec(i, DAY0 + i as i64 * 1000)).collect();
    let t = Instant::now();
    for x in &recs {
        l.submit(x.clone());
    }
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(l.flush(Duration::from_secs(10)));
    let s = l.stats().snapshot();
    assert_eq!((s.spilled, s.written, s.dropped, s.spill_pending), (1000, 0, 0, 1000));
    assert!(!s.store_up);
    assert!(s.write_errors >= 1);
    assert_eq!(r.spend(&everything(vec![])).unwrap().totals.requests, 0);
    assert!(!spill_files(&l).is_empty());

    l.set_fault(false);
    assert!(wait_until(Duration::from_secs(10), || {
        l.stats().spill_pending.load(Ordering::SeqCst) == 0
    }));
    let s = l.stats().snapshot();
    assert!(s.store_up);
    assert_eq!(s.replayed, 1000);
    let q = everything(vec![GroupBy::Feature]);
    assert_eq!(r.spend(&q).unwrap(), oracle(&recs, &q));
    assert!(spill_files(&l).is_empty());

    // And live writing continues.
    l.submit(rec(5000, DAY0));
    assert!(l.flush(Duration::from_secs(10)));
    assert_eq!(r.spend(&everything(vec![])).unwrap().totals.requests, 1001);
    l.shutdown(Duration::from_secs(5));
}

#[test]
fn leftovers_replay_at_start_and_a_torn_last_line_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<UsageRecord> = (0..300).map(|i| rec(i, DAY0 + i as i64)).collect();
    let spill_dir = {
        let (l, _r) = start(dir.path());
        l.set_fault(true);
        for x in &recs {
            l.submit(x.clone());
        }
        l.shutdown(Duration::from_secs(10));
        assert_eq!(l.stats().spilled.load(Ordering::SeqCst), 300);
        l.spill_dir().to_path_buf()
    };
    // A crash mid-write: a torn line at the end of one file, and a corrupt line in another.
    let files: Vec<_> = std::fs::read_dir(&spill_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty());
    let mut f = std::fs::OpenOptions::new().append(true).open(&files[0]).unwrap();
    f.write_all(br#"{"request_id":"torn","trace_id":"x","ts_ms":1"#)
        .unwrap();
    drop(f);
    std::fs::write(
        spill_dir.join("spill-0000000000001-1-000000.jsonl"),
        format!("not json\n{}\n", serde_json::to_string(&rec(9999, DAY0)).unwrap()),
    )
    .unwrap();

    // Complete lines are pending; the torn one is not.
    assert_eq!(super::spill::SpillDir::open(spill_dir.clone()).unwrap().1, 302);
    let (l, r) = start(dir.path());
    assert!(wait_until(Duration::from_secs(10), || {
        l.stats().spill_pending.load(Ordering::SeqCst) == 0
    }));
    let mut all = recs.clone();
    all.push(rec(9999, DAY0));
    let q = everything(vec![GroupBy::Team, GroupBy::User]);
    assert_eq!(r.spend(&q).unwrap(), oracle(&all, &q));
    assert_eq!(l.stats().replayed.load(Ordering::SeqCst), 301);
    assert!(r.record("torn").unwrap().is_none());
    assert!(spill_files(&l).is_empty());
}

#[test]
fn a_replayed_batch_is_never_counted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<UsageRecord> = (0..250).map(|i| rec(i, DAY0 + i as i64 * 10_000)).collect();
    let spill_dir = {
        let (l, _r) = start(dir.path());
        for x in &recs {
            l.submit(x.clone());
        }
        assert!(l.flush(Duration::from_secs(10)));
        l.shutdown(Duration::from_secs(5));
        l.spill_dir().to_path_buf()
    };
    // A crash between commit and spill-file deletion leaves committed records in a spill file.
    let lines: String = recs[100..200]
        .iter()
        .map(|x| serde_json::to_string(x).unwrap() + "\n")
        .collect();
    std::fs::write(spill_dir.join("spill-0000000000002-1-000000.jsonl"), lines).unwrap();
    let (l, r) = start(dir.path());
    assert!(wait_until(Duration::from_secs(10), || {
        l.stats().spill_pending.load(Ordering::SeqCst) == 0
    }));
    let q = everything(vec![GroupBy::Feature, GroupBy::Model]);
    assert_eq!(r.spend(&q).unwrap(), oracle(&recs, &q));
    assert_eq!(r.spend_raw(&q).unwrap(), oracle(&recs, &q));
}

#[test]
fn a_full_queue_drops_and_counts_but_never_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.queue_capacity = 8;
    let l = Ledger::start(c).unwrap();
    l.set_fault(true); // every batch goes to a synced spill file: the spooler is slow
    let t = Instant::now();
    for i in 0..20_000 {
        l.submit(rec(i, DAY0));
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(l.flush(Duration::from_secs(20)));
    let s = l.stats().snapshot();
    assert_eq!(s.written + s.spilled + s.dropped, 20_000, "{s:?}");
    assert!(s.dropped > 0, "{s:?}");
}

#[test]
fn shutdown_drains_then_drops_later_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.flush_interval = Duration::from_secs(60); // only shutdown can push the partial batch out
    let url = c.url.clone();
    let l = Ledger::start(c).unwrap();
    for i in 0..50 {
        l.submit(rec(i, DAY0));
    }
    l.shutdown(Duration::from_secs(10));
    l.submit(rec(99, DAY0));
    let s = l.stats().snapshot();
    assert_eq!((s.written + s.spilled, s.dropped), (50, 1));
    let r = open_reader(&url).unwrap();
    assert_eq!(r.spend(&everything(vec![])).unwrap().totals.requests, s.written);
}

#[test]
fn migrations_run_once_and_restart_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let (l, _r) = start(dir.path());
        l.submit(rec(1, DAY0));
        assert!(l.flush(Duration::from_secs(10)));
        l.shutdown(Duration::from_secs(5));
    }
    let conn = rusqlite::Connection::open(dir.path().join("db/spend.db")).unwrap();
    let versions: Vec<i64> = conn
        .prepare("SELECT version FROM schema_version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|v| v.unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM usage_records", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn bad_urls_and_unopenable_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.url = format!("sqlite:{}", dir.path().display()); // a directory
    assert!(matches!(Ledger::start(c.clone()), Err(LedgerError::Open { .. })));
    c.url = "mysql://root:hunter2@db/x".into();
    let e = Ledger::start(c.clone()).unwrap_err().to_string();
    assert!(e.contains("unknown scheme") && !e.contains("hunter2"), "{e}");
    c.url = "sqlite:".into();
    assert!(matches!(Ledger::start(c.clone()), Err(LedgerError::InvalidUrl { .. })));
    c.url = "postgres://u:hunter2@127.0.0.1:1/db?sslmode=allow".into();
    let e = Ledger::start(c.clone()).unwrap_err().to_string();
    assert!(
        e.contains("sslmode=allow is not supported") && !e.contains("hunter2"),
        "{e}"
    );
    c.url = "postgres://u:hunter2@127.0.0.1:1/db?sslcert=/c.pem".into();
    let e = Ledger::start(c.clone()).unwrap_err().to_string();
    assert!(e.contains("sslcert") && !e.contains("hunter2"), "{e}");
    c.batch_size = 0;
    assert!(matches!(Ledger::start(c), Err(LedgerError::Config(_))));
    assert!(open_reader(&format!("sqlite:{}", dir.path().join("missing/x.db").display())).is_err());
}

#[test]
fn urls_parse_and_never_show_a_password() {
    let p = |u: &str| StoreUrl::parse(u).map(|s| s.display().to_string());
    assert_eq!(p("sqlite:///var/lib/t/spend.db").unwrap(), "sqlite:/var/lib/t/spend.db");
    let rel = p("sqlite:data/spend.db").unwrap();
    assert!(rel.starts_with("sqlite:/") && rel.ends_with("/data/spend.db"), "{rel}");
    assert_eq!(
        p("postgres://tg:s3cret@db.internal:5433/ledger?connect_timeout=3").unwrap(),
        "postgres://tg@db.internal:5433/ledger"
    );
    assert_eq!(p("postgresql://db/ledger").unwrap(), "postgresql://db/ledger");
    assert_eq!(redact_pg("postgres://a:b:c@h/d"), "postgres://a@h/d");
    let e = p("postgres://tg:s3cret@[bad").unwrap_err().to_string();
    assert!(!e.contains("s3cret"), "{e}");
    let c = LedgerConfig {
        url: "postgres://tg:s3cret@db/ledger".into(),
        ..LedgerConfig::default()
    };
    assert!(!format!("{c:?}").contains("s3cret"));
    // Different stores never share spill files.
    let a = StoreUrl::parse("sqlite:/a.db").unwrap().spill_subdir();
    let b = StoreUrl::parse("sqlite:/b.db").unwrap().spill_subdir();
    assert_ne!(a, b);
}

#[test]
fn a_postgres_server_that_is_down_is_not_a_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = cfg(dir.path());
    c.url = format!("postgres://tg:s3cret@127.0.0.1:{port}/ledger");
    let l = Ledger::start(c.clone()).unwrap();
    assert!(!l.stats().store_up.load(Ordering::SeqCst));
    l.submit(rec(1, DAY0));
    assert!(l.flush(Duration::from_secs(10)));
    assert_eq!(l.stats().spilled.load(Ordering::SeqCst), 1);
    let r = open_reader(&c.url).unwrap();
    let e = r.spend(&everything(vec![])).unwrap_err().to_string();
    assert!(e.contains("127.0.0.1") && !e.contains("s3cret"), "{e}");
    l.shutdown(Duration::from_secs(5));
}

#[test]
fn spend_from_a_tokio_blocking_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (l, r) = start(dir.path());
    l.submit(rec(1, DAY0));
    assert!(l.flush(Duration::from_secs(10)));
    let r = std::sync::Arc::new(r);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rep = rt
        .block_on(async move { tokio::task::spawn_blocking(move || r.spend(&everything(vec![GroupBy::Team]))).await })
        .unwrap()
        .unwrap();
    assert_eq!(rep.totals.requests, 1);
}

#[test]
fn reader_and_ledger_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SpendReader>();
    assert_send_sync::<Ledger>();
}

#[test]
fn group_by_names() {
    for g in GroupBy::ALL {
        assert_eq!(g.as_str().parse::<GroupBy>(), Ok(g));
        assert_eq!(g.to_string(), g.as_str());
    }
    assert_eq!("Team".parse::<GroupBy>(), Ok(GroupBy::Team));
    let e = "colour".parse::<GroupBy>().unwrap_err();
    assert!(e.contains("colour") && e.contains("feature"), "{e}");
    let report = Plan::new(&everything(vec![GroupBy::Key, GroupBy::Key]), false)
        .unwrap()
        .report(&everything(vec![GroupBy::Key]), vec![]);
    assert_eq!(report.group_by, vec!["key"]);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["totals"]["requests"], 0);
    assert_eq!(json["from"], "1970-01-01T00:00:00Z");
    let _: BTreeMap<String, Option<String>> = report.totals.group;
}

#[test]
fn group_keys_are_unambiguous_json() {
    use super::rollup::gkey;
    let cases: Vec<Vec<Option<String>>> = vec![
        vec![None, Some("".into())],
        vec![Some("".into()), None],
        vec![Some("null".into()), None],
        vec![Some("a\",\"b".into())],
        vec![Some("a".into()), Some("b".into())],
        vec![Some("back\\slash\n\u{1}é😀".into()), None],
    ];
    let keys: Vec<String> = cases.iter().map(|c| gkey(c)).collect();
    for (c, k) in cases.iter().zip(&keys) {
        assert_eq!(k, &serde_json::to_string(c).unwrap().replace("\\n", "\\u000a"));
        assert_eq!(&serde_json::from_str::<Vec<Option<String>>>(k).unwrap(), c);
    }
    let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len());
}

#[test]
fn queries_read_the_smallest_rollup_that_has_their_dimensions() {
    use super::query::Table;
    use super::rollup::{COARSE, FULL};
    let table = |group_by: Vec<GroupBy>| {
        let q = SpendQuery {
            from_ms: DAY0 + 1,
            to_ms: DAY0 + 5 * HOUR_MS + 1,
            group_by,
        };
        let p = Plan::new(&q, false).unwrap();
        assert_eq!(p.parts.len(), 3);
        assert_eq!((p.parts[0].table, p.parts[2].table), (Table::Raw, Table::Raw));
        p.parts[1].table
    };
    assert_eq!(table(vec![]), Table::Rollup(&COARSE));
    assert_eq!(
        table(vec![GroupBy::Feature, GroupBy::Team, GroupBy::Route]),
        Table::Rollup(&COARSE)
    );
    assert_eq!(table(vec![GroupBy::Feature, GroupBy::User]), Table::Rollup(&FULL));
    assert_eq!(table(vec![GroupBy::Key]), Table::Rollup(&FULL));
}

/// SQLite gives a side file the mode of its database file, which the store creates 0600: so a
/// rollback journal (a database someone switched out of WAL mode) is private too. (The gateway
/// test in tests/sinks.rs checks -wal and -shm under umask 022.)
#[test]
fn the_database_file_and_its_rollback_journal_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db/spend.db");
    drop(super::sqlite::SqliteStore::open(&path, "test").unwrap());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("db")), 0o700);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let journal: String = conn
        .pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "delete");
    conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO schema_version VALUES (99, 0);")
        .unwrap();
    assert_eq!(mode(&dir.path().join("db/spend.db-journal")), 0o600);
    conn.execute_batch("ROLLBACK").unwrap();
}
