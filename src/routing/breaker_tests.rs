//! Tests of the circuit breaker, the key pool and the health registry.
use super::*;
use proptest::prelude::*;
use std::sync::Barrier;

const COOL: u64 = 30_000;

fn cfg(consecutive: u32, ratio: f64, min: u32) -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: consecutive,
        error_ratio: ratio,
        min_requests: min,
        ..BreakerConfig::default()
    }
}

/// A breaker opened at t=0 by `n` failures.
fn opened() -> Breaker {
    let b = Breaker::new(cfg(3, 0.5, 10));
    (0..3).for_each(|_| b.record(false, 0));
    assert_eq!(b.state(0), BreakerState::Open);
    b
}

#[test]
fn defaults_and_strict_parsing() {
    let c: BreakerConfig = serde_yaml::from_str("cooldown: 10s").unwrap();
    assert_eq!(c.cooldown, Duration::from_secs(10));
    assert_eq!(c.consecutive_failures, 5);
    assert_eq!(c.window, Duration::from_secs(30));
    assert!(serde_yaml::from_str::<BreakerConfig>("cooldwn: 1s").is_err());
    assert!(c.validate().is_ok());
    let bad = BreakerConfig {
        error_ratio: 0.0,
        cooldown: Duration::ZERO,
        ..c
    };
    assert_eq!(bad.validate().unwrap_err().len(), 2);
}

#[test]
fn opens_on_consecutive_failures() {
    let b = Breaker::new(cfg(5, 0.5, 1000));
    for _ in 0..4 {
        b.record(false, 0);
    }
    assert_eq!(b.state(0), BreakerState::Closed);
    b.record(true, 0); // a success breaks the streak
    for _ in 0..4 {
        b.record(false, 1);
    }
    assert_eq!(b.admit(1), Admission::Allowed);
    b.record(false, 1);
    assert_eq!(b.state(1), BreakerState::Open);
    assert_eq!(b.consecutive_failures(), 5);
}

#[test]
fn opens_on_ratio_only_from_min_requests() {
    let b = Breaker::new(cfg(0, 0.5, 10));
    // f s f s f s f s f: 5 failures of 9 requests, above the ratio but below min_requests.
    for i in 0..9 {
        b.record(i % 2 == 1, 0);
    }
    assert_eq!(b.state(0), BreakerState::Closed);
    b.record(false, 0); // 6 of 10
    assert_eq!(b.state(0), BreakerState::Open);
}

#[test]
fn stays_closed_under_the_ratio() {
    let b = Breaker::new(cfg(5, 0.5, 10));
    // 3 successes then 2 failures, over and over: never over 40% failures nor 5 in a row.
    for i in 0..200 {
        b.record(i % 5 < 3, 0);
    }
    assert_eq!(b.state(0), BreakerState::Closed);
    assert_eq!(b.admit(0), Admission::Allowed);
}

#[test]
fn rejects_while_open_then_probes_once() {
    let b = opened();
    assert_eq!(b.admit(0), Admission::Rejected);
    assert_eq!(b.admit(COOL - 1), Admission::Rejected);
    assert_eq!(b.opened_for_ms(COOL - 1), COOL - 1);
    assert_eq!(b.state(COOL), BreakerState::HalfOpen);
    assert_eq!(b.admit(COOL), Admission::Probe);
    assert_eq!(b.admit(COOL), Admission::Rejected);
    assert_eq!(b.admit(COOL + 5), Admission::Rejected);
    b.record(true, COOL + 10);
    assert_eq!(b.state(COOL + 10), BreakerState::Closed);
    assert_eq!(b.admit(COOL + 10), Admission::Allowed);
    assert_eq!(b.consecutive_failures(), 0);
    assert_eq!(b.opened_for_ms(COOL + 10), 0);
    // The counters were reset: it takes a full streak again to open.
    b.record(false, COOL + 11);
    b.record(false, COOL + 11);
    assert_eq!(b.state(COOL + 11), BreakerState::Closed);
}

#[test]
fn exactly_one_probe_among_concurrent_callers() {
    for _ in 0..50 {
        let b = Arc::new(opened());
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (b, barrier) = (Arc::clone(&b), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    b.admit(COOL)
                })
            })
            .collect();
        let results: Vec<Admission> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|a| **a == Admission::Probe).count(), 1);
        assert_eq!(results.iter().filter(|a| **a == Admission::Rejected).count(), 7);
    }
}

#[test]
fn failed_probe_reopens_for_a_full_cooldown() {
    let b = opened();
    assert_eq!(b.admit(COOL + 100), Admission::Probe);
    b.record(false, COOL + 500);
    assert_eq!(b.state(COOL + 500), BreakerState::Open);
    assert_eq!(b.admit(2 * COOL + 499), Admission::Rejected);
    assert_eq!(b.admit(2 * COOL + 500), Admission::Probe);
    assert_eq!(b.consecutive_failures(), 4);
    assert_eq!(b.opened_for_ms(2 * COOL + 500), 2 * COOL + 500); // since the first trip
}

#[test]
fn abandoned_or_lost_probe_does_not_wedge() {
    let b = opened();
    assert_eq!(b.admit(COOL), Admission::Probe);
    b.abandon_probe(COOL + 1);
    assert_eq!(b.admit(COOL + 1), Admission::Probe); // the next caller probes at once
                                                     // Never recorded nor abandoned: it expires after a cooldown.
    assert_eq!(b.admit(2 * COOL), Admission::Rejected);
    assert_eq!(b.admit(2 * COOL + 1), Admission::Probe);
    b.record(true, 2 * COOL + 2);
    assert_eq!(b.state(2 * COOL + 2), BreakerState::Closed);
    b.abandon_probe(2 * COOL + 3); // no probe in flight: a no-op
    assert_eq!(b.admit(2 * COOL + 3), Admission::Allowed);
}

#[test]
fn late_results_while_open_are_ignored() {
    let b = opened();
    b.record(true, 10);
    assert_eq!(b.state(10), BreakerState::Open);
}

#[test]
fn window_rollover_forgets_old_failures() {
    let b = Breaker::new(cfg(0, 0.5, 10)); // half-window: 15s
    (0..9).for_each(|_| b.record(false, 0));
    b.record(false, 20_000); // t=0 is still the previous bucket: 10 of 10
    assert_eq!(b.state(20_000), BreakerState::Open);

    let b = Breaker::new(cfg(0, 0.5, 10));
    (0..9).for_each(|_| b.record(false, 0));
    b.record(false, 30_000); // t=0 has slid out: 1 of 1, below min_requests
    assert_eq!(b.state(30_000), BreakerState::Closed);
    (0..8).for_each(|_| b.record(false, 31_000));
    assert_eq!(b.state(31_000), BreakerState::Closed);
    b.record(false, 31_000);
    assert_eq!(b.state(31_000), BreakerState::Open);
}

#[test]
fn key_pool_round_robin_skips_cooling_keys() {
    let pool = KeyPool::new(3);
    let picks: Vec<_> = (0..6).map(|_| pool.pick(0).unwrap()).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    pool.cool_down(1, 1_000);
    pool.cool_down(1, 500); // never shortened
    assert_eq!(pool.available(999), 2);
    assert!((0..30).all(|_| pool.pick(999) != Some(1)));
    assert_eq!(pool.available(1_000), 3);
    assert!((0..3).any(|_| pool.pick(1_000) == Some(1)));
    pool.cool_down(7, 1_000); // out of range: ignored
    assert_eq!(KeyPool::new(0).pick(0), None);
}

#[test]
fn key_pool_all_cooling_picks_the_earliest() {
    let pool = KeyPool::new(3);
    pool.cool_down(0, 300);
    pool.cool_down(1, 100);
    pool.cool_down(2, 200);
    assert_eq!(pool.available(50), 0);
    assert!((0..6).all(|_| pool.pick(50) == Some(1)));
}

#[test]
fn key_pool_concurrent_picks_are_valid() {
    let pool = Arc::new(KeyPool::new(5));
    pool.cool_down(3, u64::MAX);
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                (0..10_000).all(|i| {
                    if i % 100 == 0 {
                        pool.cool_down((t + i) % 5, (i as u64) % 7);
                    }
                    matches!(pool.pick(5), Some(k) if k < 5 && k != 3)
                })
            })
        })
        .collect();
    assert!(handles.into_iter().all(|h| h.join().unwrap()));
}

#[test]
fn health_keeps_state_across_reloads() {
    let h = Health::new();
    let c = cfg(1, 0.5, 10);
    let b = h.breaker("openai", "gpt-4o", c);
    b.record(false, 0);
    assert!(Arc::ptr_eq(&b, &h.breaker("openai", "gpt-4o", c)));
    let fresh = h.breaker("openai", "gpt-4o", cfg(2, 0.5, 10));
    assert!(!Arc::ptr_eq(&b, &fresh));
    fresh.record(false, 0);
    fresh.record(false, 0);
    h.breaker("anthropic", "claude", c);
    let rows = h.snapshot(40);
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].provider.as_str(), rows[0].state), ("anthropic", "closed"));
    assert_eq!(rows[1].state, "open");
    assert_eq!((rows[1].consecutive_failures, rows[1].opened_for_ms), (2, 40));

    let k = h.keys("openai", 2);
    assert!(Arc::ptr_eq(&k, &h.keys("openai", 2)));
    assert_eq!(h.keys("openai", 3).len(), 3);
    h.retain_providers(|p| p == "anthropic");
    assert_eq!(h.snapshot(0).len(), 1);
    assert_eq!(h.keys.len(), 0);
}

#[test]
fn forgetting_a_provider_gives_it_fresh_breakers_and_keys_and_leaves_the_others() {
    let h = Health::new();
    let c = cfg(1, 0.5, 10);
    let moved = h.breaker("moved", "m", c);
    moved.record(false, 0);
    let stays = h.breaker("stays", "m", c);
    stays.record(false, 0);
    let pool = h.keys("moved", 2);
    h.forget_provider("moved");
    let fresh = h.breaker("moved", "m", c);
    assert!(!Arc::ptr_eq(&moved, &fresh));
    assert_eq!(fresh.state(0).as_str(), "closed");
    assert!(!Arc::ptr_eq(&pool, &h.keys("moved", 2)));
    assert!(Arc::ptr_eq(&stays, &h.breaker("stays", "m", c)));
    assert_eq!(stays.state(0).as_str(), "open");
}

#[derive(Debug, Clone)]
enum Op {
    Admit,
    Record(bool),
    Abandon,
}

proptest::proptest! {
    #[test]
    fn random_sequences_keep_transitions_legal(
        ops in proptest::collection::vec(
            (proptest::prop_oneof![
                proptest::strategy::Just(Op::Admit),
                proptest::prelude::any::<bool>().prop_map(Op::Record),
                proptest::strategy::Just(Op::Abandon),
            ], 0u64..20_000),
            0..300,
        ),
        consecutive in 0u32..6,
        min in 0u32..12,
    ) {
        let b = Breaker::new(BreakerConfig {
            consecutive_failures: consecutive,
            error_ratio: 0.5,
            min_requests: min,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
        });
        let mut now = 0u64;
        for (op, dt) in ops {
            now += dt;
            let before = b.state(now);
            let (phase, deadline) = split_word(b.phase.load(Ordering::Acquire));
            let probing = phase == PROBING;
            match op {
                Op::Admit => {
                    let expected = match before {
                        BreakerState::Closed => Admission::Allowed,
                        BreakerState::Open => Admission::Rejected,
                        BreakerState::HalfOpen if probing && now < deadline => Admission::Rejected,
                        BreakerState::HalfOpen => Admission::Probe,
                    };
                    prop_assert_eq!(b.admit(now), expected);
                    prop_assert_ne!(b.admit(now), Admission::Probe); // never two at once
                }
                Op::Record(ok) => b.record(ok, now),
                Op::Abandon => b.abandon_probe(now),
            }
            let after = b.state(now);
            match (before, after) {
                // Leaving closed only by a failure; reaching closed only by a probe's success.
                (BreakerState::Closed, BreakerState::Closed) => {}
                (BreakerState::Closed, _) => prop_assert!(matches!(op, Op::Record(false))),
                (_, BreakerState::Closed) => {
                    prop_assert!(matches!(op, Op::Record(true)) && probing)
                }
                (BreakerState::Open, BreakerState::HalfOpen) => prop_assert!(false),
                _ => {}
            }
            prop_assert!(after == BreakerState::Closed || b.opened_for_ms(now) <= now);
        }
    }
}
