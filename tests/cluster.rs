//! Cluster mode (`limits.backend: redis`) against a real `redis-server` (scripts/redis.sh, on a
//! free loopback port): two limiter "nodes" in one process, each with its own link to Redis, as
//! two gateways would have. Budgets, token rates and concurrency hold across both; Redis sees far
//! fewer calls than requests; losing Redis fails open (local limits, usage owed and charged on
//! recovery) or closed (refused), as configured.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::Ca;
use common::redis::Redis;
use tollgate::limits::cluster::{FailMode, Settings};
use tollgate::limits::gate::{Gate, Refusal};
use tollgate::limits::limiter::{Budget, Demand, Limits, Period, RejectReason, Scope, ScopeKind};
use tollgate::secret::Secret;
use tollgate::time::unix_ms;

fn node(redis: &Redis, on_failure: FailMode, prefix: &str) -> Arc<Gate> {
    let gate = Gate::redis(Settings {
        url: Secret::new(redis.url()),
        ca: None,
        prefix: prefix.into(),
        timeout: Duration::from_millis(250),
        on_failure,
    })
    .unwrap();
    assert!(gate.cluster().unwrap().is_up(), "the node did not reach Redis");
    Arc::new(gate)
}

fn redis_cli(redis: &Redis, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn demand(tokens: u64, cost_nanos: i64) -> Demand {
    Demand {
        tokens,
        cost_nanos,
        tier_ceiling: 1.0,
    }
}

fn budget_limits(usd: f64) -> Limits {
    Limits {
        budgets: vec![Budget {
            usd,
            period: Period::Day,
        }],
        ..Limits::default()
    }
}

/// A burst of requests short of credit on one node leases one chunk at a time, not one per
/// request: 32 concurrent $0.001 requests against a $0.05 budget (chunk $0.0015625) are all
/// admitted, and the other node still gets what they left, less the chunks in flight (one, or
/// a few when a lease comes back while the burst is still being sent: 8 requests are left with
/// six of them). With a chunk per request the burst asked for $0.082, and Redis refused 12 of
/// its requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_one_node_leases_one_chunk() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, FailMode::Open, "t9"), node(&redis, FailMode::Open, "t9"));
    let limits = budget_limits(0.05);
    let scope = || Scope {
        kind: ScopeKind::Key,
        id: "k",
        limits: &limits,
    };
    let now = unix_ms();
    let burst: Vec<_> = (0..32)
        .map(|_| async { a.admit(&[scope()], demand(10, 1_000_000), now).await })
        .collect();
    let burst = futures_util::future::join_all(burst).await;
    let admitted = burst.iter().filter(|r| r.is_ok()).count();
    assert_eq!(admitted, 32, "the burst needs $0.032 of $0.05");
    let mut held = Vec::new();
    for i in 0..8 {
        match b.admit(&[scope()], demand(10, 1_000_000), unix_ms()).await {
            Ok(t) => held.push(t),
            Err(e) => panic!("the other node was refused its request {i}: {e:?}"),
        }
    }
    drop((burst, held));
}

/// 16 workers on each of two nodes admit, "call" (1 ms) and settle until the budget refuses
/// them three times in a row (a pause between refusals, as a client honouring Retry-After
/// would). Spend ends within one estimate of the budget, from above and from below.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_budget_holds_across_two_nodes() {
    let redis = Redis::start();
    let nodes = [node(&redis, FailMode::Open, "t1"), node(&redis, FailMode::Open, "t1")];
    let budget_usd = 0.05;
    let limits = Arc::new(Limits {
        budgets: vec![Budget {
            usd: budget_usd,
            period: Period::Day,
        }],
        ..Limits::default()
    });
    let estimate: i64 = 1_000_000; // $0.001 per request, reserved
    let spent = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..32 {
        let gate = Arc::clone(&nodes[w % 2]);
        let (limits, spent, served) = (Arc::clone(&limits), Arc::clone(&spent), Arc::clone(&served));
        tasks.push(tokio::spawn(async move {
            let mut refusals = 0;
            while refusals < 3 {
                let scope = Scope {
                    kind: ScopeKind::Key,
                    id: "k",
                    limits: &limits,
                };
                match gate.admit(&[scope], demand(10, estimate), unix_ms()).await {
                    Ok(t) => {
                        refusals = 0;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        // Actual cost: between 60 % and 100 % of the estimate.
                        let actual = estimate * (6 + (w as i64 % 5)) / 10;
                        spent.fetch_add(actual as u64, Ordering::Relaxed);
                        served.fetch_add(1, Ordering::Relaxed);
                        t.settle(10, actual, unix_ms());
                    }
                    Err(Refusal::Limit(r)) => {
                        assert_eq!(r.reason, RejectReason::Budget, "{r}");
                        assert!(r.retry_after_ms > 0);
                        refusals += 1;
                        tokio::time::sleep(Duration::from_millis(400)).await;
                    }
                    Err(Refusal::Unavailable) => panic!("Redis is up"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let spent = spent.load(Ordering::Relaxed) as f64 / 1e9;
    let one = estimate as f64 / 1e9;
    assert!(spent <= budget_usd + one, "overspent: ${spent}");
    assert!(spent >= budget_usd - one, "stopped early: ${spent} of ${budget_usd}");
    // Both nodes served, and Redis saw far fewer calls than requests.
    let served = served.load(Ordering::Relaxed);
    let calls: u64 = nodes
        .iter()
        .map(|n| n.cluster().unwrap().stats().calls.load(Ordering::Relaxed))
        .sum();
    let local: u64 = nodes
        .iter()
        .map(|n| n.cluster().unwrap().stats().local.load(Ordering::Relaxed))
        .sum();
    assert!(served > 40, "served {served}");
    assert!(local > 0, "no request was served from a lease");
    // Redis holds the cluster-wide spend (leases given back after the idle period).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let window = Period::Day.window(unix_ms()).0;
    let in_redis: f64 = redis_cli(&redis, &["GET", &format!("t1:key:1d:{window}:k")])
        .parse()
        .unwrap();
    assert!(
        (in_redis / 1e9 - spent).abs() < 1e-6,
        "Redis says ${} spent, the workers ${spent}",
        in_redis / 1e9
    );
    eprintln!("served {served} requests with {calls} Redis round trips ({local} from leased credit)");
}

/// A token rate of 6000/min with requests of 100 tokens: about 60 requests pass in a burst
/// across both nodes (plus what refills while it runs), never twice that.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_rate_holds_across_two_nodes() {
    let redis = Redis::start();
    let nodes = [node(&redis, FailMode::Open, "t2"), node(&redis, FailMode::Open, "t2")];
    let limits = Arc::new(Limits {
        tpm: Some(6_000),
        ..Limits::default()
    });
    let started = Instant::now();
    let admitted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..16 {
        let gate = Arc::clone(&nodes[w % 2]);
        let (limits, admitted) = (Arc::clone(&limits), Arc::clone(&admitted));
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let scope = Scope {
                    kind: ScopeKind::Team,
                    id: "team-a",
                    limits: &limits,
                };
                match gate.admit(&[scope], demand(100, 0), unix_ms()).await {
                    Ok(t) => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                        t.settle(100, 0, unix_ms());
                    }
                    Err(Refusal::Limit(r)) => {
                        assert_eq!(r.reason, RejectReason::Tokens, "{r}");
                        assert!(r.retry_after_ms >= 1);
                    }
                    Err(Refusal::Unavailable) => panic!("Redis is up"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let admitted = admitted.load(Ordering::Relaxed);
    // 6000 tokens/min refill 100 tokens (one request) per second.
    let refilled = (elapsed + 1.0).floor() as u64;
    assert!(admitted <= 60 + refilled, "{admitted} admitted in {elapsed:.2}s");
    // Below: leases another node holds when a request is refused (each node's credit is under
    // one lease chunk, 375 tokens, plus one request): a retry after Retry-After finds it.
    assert!(admitted >= 50, "only {admitted} of ~60 admitted");
}

/// A concurrency cap of 4 is shared: two held on each node, a fifth is refused on either; a
/// finished request frees its slot for the other node too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_capped_across_two_nodes() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, FailMode::Open, "t3"), node(&redis, FailMode::Open, "t3"));
    let limits = Limits {
        concurrency: Some(4),
        ..Limits::default()
    };
    let scope = Scope {
        kind: ScopeKind::Key,
        id: "busy",
        limits: &limits,
    };
    let mut held = Vec::new();
    for gate in [&a, &b, &a, &b] {
        held.push(gate.admit(&[scope], demand(1, 0), unix_ms()).await.unwrap());
    }
    for gate in [&a, &b] {
        match gate.admit(&[scope], demand(1, 0), unix_ms()).await {
            Err(Refusal::Limit(r)) => assert_eq!(r.reason, RejectReason::Concurrency),
            other => panic!("a fifth request in flight: {:?}", other.map(|_| ())),
        }
    }
    // One finishes on node a; node b can use the slot once a gives it back (idle 300 ms).
    held.pop().unwrap().settle(1, 0, unix_ms());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match b.admit(&[scope], demand(1, 0), unix_ms()).await {
            Ok(t) => {
                held.push(t);
                break;
            }
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => panic!("the freed slot never reached the other node"),
        }
    }
}

/// Two nodes reach a Redis that takes TLS only (`rediss://`, checked against a private CA) and
/// share its state; a node that trusts another CA cannot reach it and fails closed, and a CA with
/// a plain `redis://` URL is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_limits_over_tls() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "redis-ca");
    let stranger = Ca::new(pki.path(), "other-ca");
    let redis = Redis::start_tls(&ca);
    let settings = |ca: &Ca, scheme: &str, on_failure| Settings {
        url: Secret::new(format!("{scheme}://localhost:{}/", redis.port)),
        ca: Some(std::fs::read(&ca.pem).unwrap()),
        prefix: "tls".into(),
        timeout: Duration::from_millis(500),
        on_failure,
    };
    let tls_node = |on_failure| {
        let gate = Gate::redis(settings(&ca, "rediss", on_failure)).unwrap();
        assert!(gate.cluster().unwrap().is_up(), "the node did not reach Redis over TLS");
        gate
    };
    let (a, b) = (tls_node(FailMode::Open), tls_node(FailMode::Open));
    let limits = Limits {
        concurrency: Some(1),
        ..Limits::default()
    };
    let scope = Scope {
        kind: ScopeKind::Key,
        id: "one",
        limits: &limits,
    };
    let held = a.admit(&[scope], demand(1, 0), unix_ms()).await.unwrap();
    match b.admit(&[scope], demand(1, 0), unix_ms()).await {
        Err(Refusal::Limit(r)) => assert_eq!(r.reason, RejectReason::Concurrency),
        other => panic!("the other node did not see the slot taken: {:?}", other.map(|_| ())),
    }
    drop(held);

    let wrong = Gate::redis(settings(&stranger, "rediss", FailMode::Closed)).unwrap();
    assert!(!wrong.cluster().unwrap().is_up());
    assert!(matches!(
        wrong.admit(&[scope], demand(1, 0), unix_ms()).await,
        Err(Refusal::Unavailable)
    ));
    let e = Gate::redis(settings(&ca, "redis", FailMode::Open)).err().unwrap();
    assert!(e.contains("limits.redis.ca_file needs a rediss:// URL"), "{e}");
}

/// Rate-limit headers: with one node serving, `remaining` counts down exactly, leases or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_count_down_exactly_on_one_node() {
    let redis = Redis::start();
    let gate = node(&redis, FailMode::Open, "t4");
    let limits = Limits {
        rpm: Some(100),
        tpm: Some(10_000),
        ..Limits::default()
    };
    let scope = Scope {
        kind: ScopeKind::Key,
        id: "k",
        limits: &limits,
    };
    for i in 1..=20u64 {
        let t = gate.admit(&[scope], demand(50, 0), unix_ms()).await.unwrap();
        let h = t.headers();
        assert_eq!(h.limit_requests, Some(100));
        // Drain over the test's milliseconds is under one request (100/min = 1 per 600 ms).
        let remaining = h.remaining_requests.unwrap();
        assert!(
            remaining == 100 - i || remaining == 101 - i,
            "request {i}: {remaining} remaining"
        );
        assert_eq!(h.limit_tokens, Some(10_000));
        let tokens = h.remaining_tokens.unwrap();
        assert!(
            (10_000 - 50 * i..=10_000 - 50 * i + 60).contains(&tokens),
            "request {i}: {tokens} tokens remaining"
        );
        t.settle(50, 0, unix_ms());
    }
}

/// Redis dies: the fail-open node serves with its local limits (its budget seeded with the
/// cluster-wide spend it last saw), the fail-closed node refuses. Redis comes back empty: both
/// reconnect, and the usage served meanwhile is charged to Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_fails_open_or_closed_and_resyncs() {
    let redis = Redis::start();
    let open = node(&redis, FailMode::Open, "t5");
    let closed = node(&redis, FailMode::Closed, "t5");
    let limits = Limits {
        budgets: vec![Budget {
            usd: 1.0,
            period: Period::Month,
        }],
        ..Limits::default()
    };
    let scope = Scope {
        kind: ScopeKind::Team,
        id: "t",
        limits: &limits,
    };
    let cost: i64 = 10_000_000; // $0.01
    for gate in [&open, &closed] {
        for _ in 0..5 {
            let t = gate.admit(&[scope], demand(1, cost), unix_ms()).await.unwrap();
            t.settle(1, cost, unix_ms());
        }
    }
    redis.kill();
    // The first call that fails marks Redis down; from then on each node decides locally.
    let deadline = Instant::now() + Duration::from_secs(5);
    while open.cluster().unwrap().is_up() || closed.cluster().unwrap().is_up() {
        assert!(Instant::now() < deadline, "Redis loss not noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..3 {
        let t = open
            .admit(&[scope], demand(1, cost), unix_ms())
            .await
            .expect("fail open serves");
        t.settle(1, cost, unix_ms());
        assert!(matches!(
            closed.admit(&[scope], demand(1, cost), unix_ms()).await,
            Err(Refusal::Unavailable)
        ));
    }
    assert_eq!(open.cluster().unwrap().stats().failed_open.load(Ordering::Relaxed), 3);
    assert_eq!(
        closed.cluster().unwrap().stats().failed_closed.load(Ordering::Relaxed),
        3
    );
    // Redis back (empty: no persistence).
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(open.cluster().unwrap().is_up() && closed.cluster().unwrap().is_up()) {
        assert!(Instant::now() < deadline, "never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The outage's usage is charged; the window's key is re-created from what the node knew.
    let key = format!("t5:team:month:{}:t", Period::Month.window(unix_ms()).0);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v: f64 = redis_cli(&redis, &["GET", &key]).parse().unwrap_or(0.0);
        if v >= 3.0 * cost as f64 {
            break;
        }
        assert!(Instant::now() < deadline, "the outage's spend never reached Redis: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both nodes serve from Redis again.
    for gate in [&open, &closed] {
        let t = gate.admit(&[scope], demand(1, cost), unix_ms()).await.unwrap();
        t.settle(1, cost, unix_ms());
    }
    let v: f64 = redis_cli(&redis, &["GET", &key]).parse().unwrap();
    // What Redis holds after the restart: the outage's 3 requests, the 2 since, plus whatever
    // the first lease after the restart was seeded with (the spend the node knew before).
    assert!(v >= 5.0 * cost as f64, "Redis holds {v}");
}

// ---------------------------------------------------------------- two gateway processes

use common::{post, wait_until, Gateway, Mock, Resp};
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-for-cluster-tests";

fn gateway_config(mock: &Mock, redis: &Redis, keys: &str) -> String {
    format!(
        "providers:\n{}models:\n  m:\n    targets: [ {{ provider: mock, model: priced }} ]\n\
pricing:\n  models:\n    - {{ provider: mock, model: priced, input: 100, output: 100 }}\n\
auth:\n  required: true\nkeys:\n{keys}admin:\n  token: \"${{TOLLGATE_ADMIN_TOKEN}}\"\n\
limits:\n  backend: redis\n  redis:\n    url: \"{}\"\n    on_failure: open\n",
        common::mock_provider("mock", &mock.base_url(), ""),
        redis.url()
    )
}

fn chat(url: &str, secret: &str, content: &str) -> Resp {
    post(
        url,
        &json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": content}]}).to_string(),
        &[("authorization", &format!("Bearer {secret}"))],
    )
}

fn spend_of(gw: &Gateway) -> Value {
    ureq::get(&gw.admin_url("/admin/spend?group_by=key"))
        .set("authorization", &format!("Bearer {ADMIN}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap()
}

/// The "done when": a key with a $0.50 budget hammered by 50 concurrent clients through
/// two gateway processes sharing one Redis ends within one request's estimate of $0.50.
#[test]
fn a_half_dollar_budget_holds_across_two_gateways() {
    let redis = Redis::start();
    let mock = Mock::start(&[]);
    let keys = "  - { id: capped, key: \"${CAPPED_KEY}\", team: t, limits: { tpm: 100000000, budgets: [ { usd: 0.50, period: 1d } ] } }\n";
    let cfg = gateway_config(&mock, &redis, keys);
    let envs = [("CAPPED_KEY", "tg-capped"), ("TOLLGATE_ADMIN_TOKEN", ADMIN)];
    let nodes = [
        Arc::new(Gateway::start_env("", &cfg, &envs)),
        Arc::new(Gateway::start_env("", &cfg, &envs)),
    ];
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let url = nodes[i % 2].url("/v1/chat/completions");
            std::thread::spawn(move || {
                let (mut served, mut refusals, mut headers_ok) = (0u32, 0, true);
                while refusals < 3 {
                    let r = chat(&url, "tg-capped", &format!("client {i} [[mock: latency_ms=30]]"));
                    headers_ok &= r.header("x-ratelimit-limit-tokens") == Some("100000000")
                        && r.header("x-ratelimit-remaining-tokens").is_some();
                    match r.status {
                        200 => {
                            served += 1;
                            refusals = 0;
                        }
                        429 => {
                            assert_eq!(r.json()["error"]["code"], "budget_exceeded", "{}", r.body);
                            assert!(r.header("retry-after").is_some());
                            refusals += 1;
                            // Long enough for credit idle on the other node to be given back.
                            std::thread::sleep(Duration::from_millis(600));
                        }
                        s => panic!("unexpected {s}: {}", r.body),
                    }
                }
                (served, headers_ok)
            })
        })
        .collect();
    let mut served = 0;
    for h in handles {
        let (s, headers_ok) = h.join().unwrap();
        assert!(headers_ok, "a response without the x-ratelimit-* headers");
        served += s;
    }
    // What was spent, from both nodes' ledgers.
    for gw in &nodes {
        wait_until("the ledger", Duration::from_secs(10), || {
            let v = spend_of(gw);
            v["totals"]["requests"].as_u64().unwrap_or(0) > 0
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    let spent: f64 = nodes
        .iter()
        .map(|gw| spend_of(gw)["totals"]["cost_usd"].as_f64().unwrap())
        .sum();
    let per_node: Vec<f64> = nodes
        .iter()
        .map(|gw| spend_of(gw)["totals"]["cost_usd"].as_f64().unwrap())
        .collect();
    // One request's reservation: the tokenizer's prompt estimate (under 40 tokens for these
    // messages) plus max_tokens 10, at $100 per 1M tokens.
    let one_estimate = 50.0 * 100.0 / 1e6;
    assert!(spent <= 0.50 + one_estimate, "overspent: ${spent} ({per_node:?})");
    assert!(spent >= 0.50 - one_estimate, "stopped early: ${spent} ({per_node:?})");
    assert!(per_node.iter().all(|s| *s > 0.0), "both nodes served: {per_node:?}");
    // Both nodes used Redis, and far less often than they served requests.
    let calls: f64 = nodes
        .iter()
        .map(|gw| gw.metric("tollgate_limits_backend_calls_total"))
        .sum();
    for gw in &nodes {
        assert_eq!(gw.metric("tollgate_limits_backend_up"), 1.0);
    }
    assert!(calls < f64::from(served), "{calls} Redis calls for {served} requests");
    let known: f64 = nodes
        .iter()
        .map(|gw| gw.metric("tollgate_limits_admissions_total{path=\"known_refusal\"}"))
        .sum();
    // Clients refused again within 100 ms of a refusal from Redis are refused without a call
    // (on both ends of the tenant's bound-then-count check).
    assert!(known > 0.0, "every refusal asked Redis");
    eprintln!(
        "served {served} requests for ${spent:.4} with {calls} Redis round trips ({known} refusals decided locally)"
    );
}

/// Priority tiers on a shared provider: with a provider rpm of 100 shared by two nodes, a tier
/// allowed half of it is shed once the cluster-wide level passes 50, while the full tier still
/// gets the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lower_tiers_are_shed_first_across_two_nodes() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, FailMode::Open, "t6"), node(&redis, FailMode::Open, "t6"));
    let limits = Limits {
        rpm: Some(100),
        ..Limits::default()
    };
    let scope = Scope {
        kind: ScopeKind::Provider,
        id: "openai",
        limits: &limits,
    };
    let free = Demand {
        tokens: 1,
        cost_nanos: 0,
        tier_ceiling: 0.5,
    };
    let (mut free_served, mut shed) = (0, 0);
    for i in 0..80 {
        let gate = if i % 2 == 0 { &a } else { &b };
        match gate.admit(&[scope], free, unix_ms()).await {
            Ok(t) => {
                free_served += 1;
                t.settle(1, 0, unix_ms());
            }
            Err(Refusal::Limit(r)) => {
                assert_eq!(r.reason, RejectReason::Capacity, "{r}");
                shed += 1;
            }
            Err(Refusal::Unavailable) => panic!("Redis is up"),
        }
    }
    assert!((45..=51).contains(&free_served), "free tier served {free_served}");
    assert_eq!(free_served + shed, 80);
    // The paying tier gets the other half.
    let mut paid_served = 0;
    for i in 0..60 {
        let gate = if i % 2 == 0 { &a } else { &b };
        if let Ok(t) = gate.admit(&[scope], demand(1, 0), unix_ms()).await {
            paid_served += 1;
            t.settle(1, 0, unix_ms());
        }
    }
    assert!(
        (100 - free_served - 1..=100 - free_served + 2).contains(&paid_served),
        "paid tier served {paid_served} after free took {free_served}"
    );
}

/// A node that dies holding concurrency slots (no give-back, no heartbeat) frees them when its
/// lease expires (10 s), so a crashed gateway cannot lock a key out for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_slots_expire() {
    let redis = Redis::start();
    let limits = Limits {
        concurrency: Some(2),
        ..Limits::default()
    };
    let scope = Scope {
        kind: ScopeKind::Key,
        id: "k",
        limits: &limits,
    };
    let survivor = node(&redis, FailMode::Open, "t7");
    {
        let doomed = node(&redis, FailMode::Open, "t7");
        let held = [
            doomed.admit(&[scope], demand(1, 0), unix_ms()).await.unwrap(),
            doomed.admit(&[scope], demand(1, 0), unix_ms()).await.unwrap(),
        ];
        // Dropping the gate ends its link: from here on it neither gives back nor beats.
        drop(doomed);
        std::mem::forget(held);
    }
    assert!(matches!(
        survivor.admit(&[scope], demand(1, 0), unix_ms()).await,
        Err(Refusal::Limit(_))
    ));
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok(t) = survivor.admit(&[scope], demand(1, 0), unix_ms()).await {
            t.settle(1, 0, unix_ms());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the dead node's slots never expired"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "freed before the lease expired"
    );
}

/// A refusal from Redis is remembered for `KNOWN_REFUSAL_MS` (100 ms): meanwhile a request that
/// would not fit on the level Redis reported is refused without a call, one that would fit still
/// asks, credit the node holds is still spent, and after the 100 ms the node asks again (and
/// then sees quota another node gave back). `now_ms` is the caller's, so the test sets the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_remembered_briefly() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, FailMode::Open, "t8"), node(&redis, FailMode::Open, "t8"));
    let limits = Limits {
        budgets: vec![Budget {
            usd: 0.0001, // 100_000 nanodollars
            period: Period::Day,
        }],
        ..Limits::default()
    };
    let scope = Scope {
        kind: ScopeKind::Key,
        id: "k",
        limits: &limits,
    };
    // Requests that asked Redis for a lease (flushes, which also call Redis, are not counted).
    let calls = |g: &Gate| g.cluster().unwrap().stats().leases.load(Ordering::Relaxed);
    let known = |g: &Gate| g.cluster().unwrap().stats().known.load(Ordering::Relaxed);
    let t0 = unix_ms();
    let budget_refusal = |r: Result<_, Refusal>| match r {
        Err(Refusal::Limit(r)) => {
            assert_eq!(r.reason, RejectReason::Budget, "{r}");
            // A budget's refusal lasts until its day ends (Redis's clock or the caller's).
            let day_end = Period::Day.window(t0).1;
            assert!(r.retry_after_ms <= day_end - t0 + 1_000, "{}", r.retry_after_ms);
            assert!(
                r.retry_after_ms + 60_000 >= day_end.saturating_sub(unix_ms()),
                "{}",
                r.retry_after_ms
            );
        }
        Err(Refusal::Unavailable) => panic!("Redis is up"),
        Ok(_) => panic!("admitted over the budget"),
    };
    let held = a.admit(&[scope], demand(1, 60_000), t0).await.unwrap();
    // Redis refuses the second 60k (60k held + 60k > 100k) and reports the level.
    let before = calls(&a);
    budget_refusal(a.admit(&[scope], demand(1, 60_000), t0).await);
    assert_eq!(calls(&a), before + 1, "the first refusal comes from Redis");
    // Within 100 ms the same request is refused here, without a call, until the day's end.
    match a.admit(&[scope], demand(1, 60_000), t0 + 99).await {
        Err(Refusal::Limit(r)) => {
            assert_eq!(r.reason, RejectReason::Budget, "{r}");
            assert_eq!(r.retry_after_ms, Period::Day.window(t0).1 - (t0 + 99));
        }
        _ => panic!("not refused"),
    }
    assert_eq!(calls(&a), before + 1, "refused again without asking Redis");
    assert_eq!(known(&a), 1);
    // A smaller request that fits on the reported level still asks Redis, and is admitted.
    let small = a.admit(&[scope], demand(1, 30_000), t0 + 99).await.unwrap();
    assert_eq!(calls(&a), before + 2);
    small.settle(1, 30_000, t0 + 99);
    // After 100 ms the node asks again.
    budget_refusal(a.admit(&[scope], demand(1, 60_000), t0 + 100).await);
    assert_eq!(calls(&a), before + 3, "a remembered refusal expires");
    assert_eq!(known(&a), 1);

    // Node b is refused by Redis while a holds 60k + 30k spent.
    budget_refusal(b.admit(&[scope], demand(1, 20_000), t0).await);
    // a's request ends having spent nothing, and a gives its credit back (its refusals asked
    // it to, at the next flush).
    held.settle(1, 0, t0 + 100);
    let gave_back = Instant::now();
    let spent = || redis_cli(&redis, &["GET", &format!("t8:key:1d:{}:k", Period::Day.window(t0).0)]);
    while spent() != "30000" {
        assert!(
            gave_back.elapsed() < Duration::from_secs(2),
            "a kept its credit: {}",
            spent()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Within its 100 ms b still refuses on what Redis said; after them it asks, and is served.
    let b_calls = calls(&b);
    budget_refusal(b.admit(&[scope], demand(1, 20_000), t0 + 50).await);
    assert_eq!(calls(&b), b_calls);
    let t = b.admit(&[scope], demand(1, 20_000), t0 + 100).await.unwrap();
    assert_eq!(calls(&b), b_calls + 1);
    t.settle(1, 20_000, t0 + 100);
}
