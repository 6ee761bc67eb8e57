//! Proofs by hammering: many threads admit and settle against one key, and the totals must come
//! out exact. Plus a property test over random admit/settle/drop sequences.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::state::ScopeState;
use super::*;

const THREADS: u64 = 16;
/// 2026-01-01T00:00:00Z; time stands still in the hammering tests, so nothing refills.
const T0: u64 = 1_767_225_600_000;

fn demand(tokens: u64, cost_nanos: i64) -> Demand {
    Demand {
        tokens,
        cost_nanos,
        tier_ceiling: 1.0,
    }
}

impl Limiter {
    fn scope_state(&self, kind: ScopeKind, id: &str) -> Option<Arc<ScopeState>> {
        self.map(kind).get(id).map(|s| Arc::clone(&s))
    }
}

/// Admits `(estimate, actual)` pairs from `rng` on one thread until one is refused; returns the
/// actual total settled.
fn top_up(limiter: &Limiter, scopes: &[Scope<'_>], rng: &mut StdRng, max: u64, cost: bool) -> u64 {
    let mut total = 0;
    loop {
        let estimate = rng.gen_range(1..=max);
        let actual = rng.gen_range(0..=estimate);
        let d = if cost {
            demand(0, estimate as i64)
        } else {
            demand(estimate, 0)
        };
        let Ok(a) = limiter.admit(scopes, d, T0) else {
            return total;
        };
        total += actual;
        if cost {
            a.settle(0, actual as i64, T0);
        } else {
            a.settle(actual, 0, T0);
        }
    }
}

#[test]
fn concurrent_requests_never_overspend_a_budget_and_leave_less_than_one_estimate() {
    const BUDGET: u64 = 1_000_000; // nano-USD
    const MAX_ESTIMATE: u64 = 10_000;
    let limiter = Limiter::new();
    let key_limits = Limits {
        budgets: vec![Budget {
            usd: BUDGET as f64 / 1e9,
            period: Period::Day,
        }],
        ..Limits::default()
    };
    // The team's cap refuses some requests after the key reserved: those reservations are rolled
    // back while other threads reserve, which the totals must survive too.
    let team_limits = Limits {
        concurrency: Some(4),
        ..Limits::default()
    };
    let scopes = [
        Scope {
            kind: ScopeKind::Key,
            id: "k",
            limits: &key_limits,
        },
        Scope {
            kind: ScopeKind::Team,
            id: "t",
            limits: &team_limits,
        },
    ];
    let settled = AtomicU64::new(0);
    let state = {
        drop(limiter.admit(&scopes, demand(0, 0), T0));
        limiter.scope_state(ScopeKind::Key, "k").unwrap()
    };
    thread::scope(|s| {
        for t in 0..THREADS {
            let (limiter, scopes, settled, state) = (&limiter, &scopes, &settled, &state);
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(t);
                for _ in 0..3_000 {
                    let estimate = rng.gen_range(1..=MAX_ESTIMATE);
                    let actual = rng.gen_range(0..=estimate);
                    if let Ok(a) = limiter.admit(scopes, demand(0, estimate as i64), T0) {
                        // Reservations plus spend never pass the budget, at any moment.
                        assert!(state.budget(Period::Day).used() <= BUDGET);
                        settled.fetch_add(actual, Ordering::Relaxed);
                        a.settle(0, actual as i64, T0);
                    }
                }
            });
        }
    });
    let concurrent = settled.load(Ordering::Relaxed);
    assert!(concurrent <= BUDGET);
    // Exact books: nothing in flight, and the counter holds exactly what was settled (no
    // reservation leaked, no rollback lost or doubled).
    let budget = state.budget(Period::Day);
    assert_eq!((budget.in_flight(), budget.used()), (0, concurrent));
    assert_eq!(state.slots.in_flight(), 0);
    // No under-use: with nothing in flight, a request is refused only if it does not fit.
    let mut rng = StdRng::seed_from_u64(99);
    let tail = top_up(&limiter, &scopes, &mut rng, MAX_ESTIMATE, true);
    let total = concurrent + tail;
    eprintln!("budget: {concurrent} settled by {THREADS} threads, {tail} more single-threaded");
    assert!(total <= BUDGET, "{total} > {BUDGET}");
    assert!(total > BUDGET - MAX_ESTIMATE, "{total} leaves more than one estimate");
    assert_eq!(budget.used(), total);
}

#[test]
fn concurrent_requests_never_exceed_the_concurrency_cap() {
    const CAP: u64 = 3;
    let limiter = Limiter::new();
    let limits = Limits {
        concurrency: Some(CAP as u32),
        rpm: Some(u64::MAX / 2),
        ..Limits::default()
    };
    let scopes = [Scope {
        kind: ScopeKind::Key,
        id: "k",
        limits: &limits,
    }];
    let (active, high_water) = (AtomicU64::new(0), AtomicU64::new(0));
    thread::scope(|s| {
        for _ in 0..THREADS {
            let (limiter, scopes, active, high_water) = (&limiter, &scopes, &active, &high_water);
            s.spawn(move || {
                for i in 0..2_000 {
                    let Ok(a) = limiter.admit(scopes, demand(1, 0), T0) else {
                        continue;
                    };
                    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                    high_water.fetch_max(now, Ordering::SeqCst);
                    if i % 8 == 0 {
                        thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                    active.fetch_sub(1, Ordering::SeqCst);
                    a.settle(1, 0, T0);
                }
            });
        }
    });
    assert_eq!(high_water.load(Ordering::SeqCst), CAP);
    let state = limiter.scope_state(ScopeKind::Key, "k").unwrap();
    assert_eq!(state.slots.in_flight(), 0);
    let held: Vec<_> = (0..CAP)
        .map(|_| limiter.admit(&scopes, demand(0, 0), T0).unwrap())
        .collect();
    assert!(limiter.admit(&scopes, demand(0, 0), T0).is_err());
    drop(held);
}

#[test]
fn concurrent_requests_never_pass_a_token_limit_and_leave_less_than_one_estimate() {
    const TPM: u64 = 60_000; // exactly 1 ms of bucket per token
    const MAX_ESTIMATE: u64 = 1_000;
    let limiter = Limiter::new();
    let limits = Limits {
        tpm: Some(TPM),
        ..Limits::default()
    };
    let scopes = [Scope {
        kind: ScopeKind::Key,
        id: "k",
        limits: &limits,
    }];
    let settled = AtomicU64::new(0);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (limiter, scopes, settled) = (&limiter, &scopes, &settled);
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(1_000 + t);
                for _ in 0..3_000 {
                    let estimate = rng.gen_range(1..=MAX_ESTIMATE);
                    let actual = rng.gen_range(0..=estimate);
                    if let Ok(a) = limiter.admit(scopes, demand(estimate, 0), T0) {
                        settled.fetch_add(actual, Ordering::Relaxed);
                        a.settle(actual, 0, T0);
                    }
                }
            });
        }
    });
    let concurrent = settled.load(Ordering::Relaxed);
    let state = limiter.scope_state(ScopeKind::Key, "k").unwrap();
    assert!(concurrent <= TPM);
    assert_eq!(state.tpm.level(T0).unwrap().used, concurrent);
    let mut rng = StdRng::seed_from_u64(7);
    let tail = top_up(&limiter, &scopes, &mut rng, MAX_ESTIMATE, false);
    let total = concurrent + tail;
    eprintln!("tpm: {concurrent} tokens settled by {THREADS} threads, {tail} more single-threaded");
    assert!(total <= TPM && total > TPM - MAX_ESTIMATE, "{total}");
    assert_eq!(state.tpm.level(T0).unwrap().used, total);
}

#[test]
fn a_window_change_under_load_loses_no_spend_and_leaks_no_reservation() {
    const BUDGET: u64 = 1_000_000;
    const MAX_ESTIMATE: u64 = 10_000;
    let limiter = Limiter::new();
    let limits = Limits {
        budgets: vec![Budget {
            usd: BUDGET as f64 / 1e9,
            period: Period::Hour,
        }],
        ..Limits::default()
    };
    let scopes = [Scope {
        kind: ScopeKind::Key,
        id: "k",
        limits: &limits,
    }];
    // A shared clock: 64 ticks per ms, 64_000 ticks in all, crossing the hour 200 ms in.
    let boundary = T0 + 3_600_000;
    let start = boundary - 200;
    let (clock, charged_after) = (AtomicU64::new(0), AtomicU64::new(0));
    let now = || start + clock.fetch_add(1, Ordering::SeqCst) / 64;
    thread::scope(|s| {
        for t in 0..THREADS {
            let (limiter, scopes, charged_after, now) = (&limiter, &scopes, &charged_after, &now);
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(2_000 + t);
                for _ in 0..2_000 {
                    let estimate = rng.gen_range(1..=MAX_ESTIMATE);
                    let actual = rng.gen_range(0..=estimate);
                    if let Ok(a) = limiter.admit(scopes, demand(0, estimate as i64), now()) {
                        let end = now();
                        if end >= boundary {
                            charged_after.fetch_add(actual, Ordering::SeqCst);
                        }
                        a.settle(0, actual as i64, end);
                    }
                }
            });
        }
    });
    assert!(clock.load(Ordering::SeqCst) / 64 > 200, "the run crossed the hour");
    let budget = limiter.scope_state(ScopeKind::Key, "k").unwrap();
    let budget = budget.budget(Period::Hour);
    assert_eq!(budget.in_flight(), 0, "no reservation leaked");
    let (used, after) = (budget.used(), charged_after.load(Ordering::SeqCst));
    // Everything settled in the new hour is on its books (errors at the change only over-count),
    // and an over-count is at most what could overlap the reset.
    assert!(used >= after, "lost spend: {used} < {after}");
    assert!(used <= BUDGET + THREADS * MAX_ESTIMATE, "{used}");
    eprintln!("window change: {after} settled after the hour, {used} on its books");
}

// ---- property test ----

const IDS: [(ScopeKind, &str); 3] = [
    (ScopeKind::Key, "k"),
    (ScopeKind::Team, "t"),
    (ScopeKind::Provider, "p"),
];

fn limits_table() -> Vec<Limits> {
    let budgets = |usd: f64| {
        Period::ALL
            .iter()
            .map(|&period| Budget { usd, period })
            .collect::<Vec<_>>()
    };
    vec![
        Limits::default(),
        Limits {
            rpm: Some(3),
            tpm: Some(100),
            tpd: Some(1_000),
            concurrency: Some(2),
            budgets: budgets(0.000_01),
        },
        Limits {
            rpm: Some(1_000),
            concurrency: Some(1),
            budgets: vec![Budget {
                usd: 0.000_002,
                period: Period::Hour,
            }],
            ..Limits::default()
        },
        // Unvalidated and extreme values must not panic either.
        Limits {
            rpm: Some(0),
            tpm: Some(u64::MAX),
            tpd: Some(1),
            concurrency: Some(0),
            budgets: vec![
                Budget {
                    usd: f64::NAN,
                    period: Period::Day,
                },
                Budget {
                    usd: -1.0,
                    period: Period::Day,
                },
                Budget {
                    usd: f64::INFINITY,
                    period: Period::Month,
                },
            ],
        },
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Admit {
        scopes: u8,
        limits: [usize; 3],
        tokens: u64,
        cost: i64,
        ceiling: f64,
    },
    Settle {
        pick: usize,
        tokens: u64,
        cost: i64,
    },
    Drop {
        pick: usize,
    },
    Advance(u64),
    Back(u64),
    Seed {
        scope: usize,
        spent: i64,
    },
    Prune,
}

fn op() -> impl Strategy<Value = Op> {
    let ceiling = prop_oneof![Just(1.0), Just(0.7), Just(0.0), Just(f64::NAN), -1.0..2.0f64];
    let tokens = prop_oneof![0..200u64, Just(u64::MAX)];
    let cost = prop_oneof![-10..5_000i64, Just(1_000_000_000_000_000i64), Just(i64::MIN)];
    prop_oneof![
        4 => (0..8u8, [0..4usize, 0..4usize, 0..4usize], tokens.clone(), cost.clone(), ceiling)
            .prop_map(|(scopes, limits, tokens, cost, ceiling)| Op::Admit { scopes, limits, tokens, cost, ceiling }),
        2 => (any::<usize>(), tokens, cost.clone()).prop_map(|(pick, tokens, cost)| Op::Settle { pick, tokens, cost }),
        1 => any::<usize>().prop_map(|pick| Op::Drop { pick }),
        1 => prop_oneof![0..120_000u64, 0..(2 * 86_400_000u64)].prop_map(Op::Advance),
        1 => (0..3_600_000u64).prop_map(Op::Back),
        1 => (0..3usize, cost).prop_map(|(scope, spent)| Op::Seed { scope, spent }),
        1 => Just(Op::Prune),
    ]
}

/// A live admission and, per scope it holds, the limits it was admitted with.
struct Live {
    admission: Admission,
    holds: Vec<(usize, usize)>,
    cost: u64,
}

/// Slots and budget reservations in flight must equal what the live admissions hold: a
/// counter that saturated at 0 where it should have gone negative would show here.
fn check(limiter: &Limiter, live: &[Live], table: &[Limits]) {
    for (i, (kind, id)) in IDS.iter().enumerate() {
        let Some(state) = limiter.scope_state(*kind, id) else {
            assert!(live.iter().all(|l| l.holds.iter().all(|h| h.0 != i)));
            continue;
        };
        let holding = || {
            live.iter()
                .filter_map(|l| l.holds.iter().find(|h| h.0 == i).map(|h| (l, h.1)))
        };
        assert_eq!(state.slots.in_flight(), holding().count() as u64);
        for period in Period::ALL {
            let expected: u64 = holding()
                .filter(|(_, li)| table[*li].budget_nanos(period).is_some())
                .map(|(l, _)| l.cost)
                .sum();
            assert_eq!(state.budget(period).in_flight(), expected, "{kind} {period}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn admit_and_settle_never_panic_and_counters_stay_consistent(ops in prop::collection::vec(op(), 1..80)) {
        let table = limits_table();
        let limiter = Limiter::new();
        let mut live: Vec<Live> = Vec::new();
        let mut now = T0;
        for op in ops {
            match op {
                Op::Admit { scopes, limits, tokens, cost, ceiling } => {
                    let chosen: Vec<usize> = (0..3).filter(|i| scopes & (1 << i) != 0).collect();
                    let list: Vec<Scope<'_>> = chosen
                        .iter()
                        .map(|&i| Scope { kind: IDS[i].0, id: IDS[i].1, limits: &table[limits[i]] })
                        .collect();
                    let d = Demand { tokens, cost_nanos: cost, tier_ceiling: ceiling };
                    if let Ok(admission) = limiter.admit(&list, d, now) {
                        let _ = admission.headers().pairs().count();
                        let holds = chosen.iter().map(|&i| (i, limits[i])).collect();
                        let cost = u64::try_from(cost).unwrap_or(0);
                        live.push(Live { admission, holds, cost });
                    }
                }
                Op::Settle { pick, tokens, cost } if !live.is_empty() => {
                    let l = live.swap_remove(pick % live.len());
                    l.admission.settle(tokens, cost, now);
                }
                Op::Drop { pick } if !live.is_empty() => {
                    drop(live.swap_remove(pick % live.len()));
                }
                Op::Advance(ms) => now = now.saturating_add(ms),
                Op::Back(ms) => now = now.saturating_sub(ms),
                Op::Seed { scope, spent } => {
                    let (kind, id) = IDS[scope];
                    limiter.seed_spent(kind, id, Period::Day, spent, now);
                }
                Op::Prune => {
                    limiter.prune_idle(now);
                }
                Op::Settle { .. } | Op::Drop { .. } => {}
            }
            check(&limiter, &live, &table);
            for (kind, id) in IDS {
                let u = limiter.utilization(kind, id, now);
                prop_assert!(u.is_finite() && u >= 0.0);
            }
        }
        live.clear();
        check(&limiter, &live, &table);
    }
}
