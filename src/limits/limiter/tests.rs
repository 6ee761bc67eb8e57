use super::headers::duration;
use super::*;
use crate::time::days_from_civil;

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;
const SEC: u64 = 1_000;
const DAY: u64 = 86_400_000;

fn scope<'a>(kind: ScopeKind, id: &'a str, limits: &'a Limits) -> Scope<'a> {
    Scope { kind, id, limits }
}

fn key<'a>(limits: &'a Limits) -> Scope<'a> {
    scope(ScopeKind::Key, "k", limits)
}

fn demand(tokens: u64, cost_nanos: i64) -> Demand {
    Demand {
        tokens,
        cost_nanos,
        tier_ceiling: 1.0,
    }
}

fn tier(ceiling: f64) -> Demand {
    Demand {
        tokens: 0,
        cost_nanos: 0,
        tier_ceiling: ceiling,
    }
}

fn day_budget(usd: f64) -> Budget {
    Budget {
        usd,
        period: Period::Day,
    }
}

fn refused(limiter: &Limiter, scopes: &[Scope<'_>], d: Demand, now: u64) -> Rejection {
    match limiter.admit(scopes, d, now) {
        Ok(_) => panic!("admitted, expected a refusal"),
        Err(r) => r,
    }
}

#[test]
fn rpm_admits_up_to_the_limit_then_refuses_with_the_exact_retry_after() {
    let limiter = Limiter::new();
    let limits = Limits {
        rpm: Some(3),
        ..Limits::default()
    };
    for _ in 0..3 {
        limiter
            .admit(&[key(&limits)], demand(0, 0), T0)
            .unwrap()
            .settle(0, 0, T0);
    }
    let r = refused(&limiter, &[key(&limits)], demand(0, 0), T0);
    assert_eq!(r.reason, RejectReason::Requests);
    assert_eq!(r.scope, "key k");
    assert_eq!(r.reason.code(), "rate_limit_exceeded");
    // One request is 20 s of bucket: the fourth fits once one has drained.
    assert_eq!(r.retry_after_ms, 20 * SEC);
    let r = refused(&limiter, &[key(&limits)], demand(0, 0), T0 + 20 * SEC - 1);
    assert_eq!(r.retry_after_ms, 1);
    assert!(limiter.admit(&[key(&limits)], demand(0, 0), T0 + 20 * SEC).is_ok());
}

#[test]
fn rate_limits_are_exact_at_awkward_limits() {
    // 60 s / 7 is not a whole number of nanoseconds: all seven must still fit, not an eighth.
    let limiter = Limiter::new();
    let limits = Limits {
        rpm: Some(7),
        ..Limits::default()
    };
    for _ in 0..7 {
        assert!(limiter.admit(&[key(&limits)], demand(0, 0), T0).is_ok());
    }
    assert!(limiter.admit(&[key(&limits)], demand(0, 0), T0).is_err());
}

#[test]
fn gcra_refills_continuously_without_a_window_reset() {
    let limiter = Limiter::new();
    let limits = Limits {
        rpm: Some(60),
        ..Limits::default()
    };
    let now = T0 + 59_500;
    for _ in 0..60 {
        assert!(limiter.admit(&[key(&limits)], demand(0, 0), now).is_ok());
    }
    assert!(limiter.admit(&[key(&limits)], demand(0, 0), now).is_err());
    // A fixed one-minute window would start afresh at T0 + 60 s and let 60 more through.
    let r = refused(&limiter, &[key(&limits)], demand(0, 0), T0 + 60 * SEC);
    assert_eq!(r.retry_after_ms, 500);
    // One per second refills.
    let later = now + SEC;
    assert!(limiter.admit(&[key(&limits)], demand(0, 0), later).is_ok());
    assert!(limiter.admit(&[key(&limits)], demand(0, 0), later).is_err());
    // Ten seconds later, ten more.
    for _ in 0..10 {
        assert!(limiter.admit(&[key(&limits)], demand(0, 0), later + 10 * SEC).is_ok());
    }
    assert!(limiter.admit(&[key(&limits)], demand(0, 0), later + 10 * SEC).is_err());
}

#[test]
fn tpm_reserves_the_estimate_and_refuses_what_does_not_fit() {
    let limiter = Limiter::new();
    let limits = Limits {
        tpm: Some(1_000),
        ..Limits::default()
    };
    let a = limiter.admit(&[key(&limits)], demand(400, 0), T0).unwrap();
    let b = limiter.admit(&[key(&limits)], demand(400, 0), T0).unwrap();
    let r = refused(&limiter, &[key(&limits)], demand(400, 0), T0);
    assert_eq!(r.reason, RejectReason::Tokens);
    // 200 tokens over, at 60 ms per token.
    assert_eq!(r.retry_after_ms, 12 * SEC);
    // Settling below the estimate gives tokens back...
    a.settle(100, 0, T0);
    b.settle(100, 0, T0);
    let c = limiter.admit(&[key(&limits)], demand(800, 0), T0).unwrap();
    // ...and above it charges the overrun: 200 + 1000 used of 1000.
    c.settle(1_000, 0, T0);
    let r = refused(&limiter, &[key(&limits)], demand(1, 0), T0);
    assert_eq!(r.retry_after_ms, 12 * SEC + 60);
    assert!(limiter.admit(&[key(&limits)], demand(1, 0), T0 + 12 * SEC + 60).is_ok());
}

#[test]
fn a_request_bigger_than_the_limit_is_refused_for_a_full_period() {
    let limiter = Limiter::new();
    let limits = Limits {
        tpm: Some(1_000),
        tpd: Some(100_000),
        ..Limits::default()
    };
    let r = refused(&limiter, &[key(&limits)], demand(1_001, 0), T0);
    assert_eq!((r.reason, r.retry_after_ms), (RejectReason::Tokens, 60 * SEC));
    assert!(limiter.admit(&[key(&limits)], demand(1_000, 0), T0).is_ok());
}

#[test]
fn tpd_is_a_day_long_bucket() {
    let limiter = Limiter::new();
    let limits = Limits {
        tpd: Some(86_400),
        ..Limits::default()
    };
    // 1 token per second refills.
    assert!(limiter.admit(&[key(&limits)], demand(86_400, 0), T0).is_ok());
    let r = refused(&limiter, &[key(&limits)], demand(10, 0), T0);
    assert_eq!((r.reason, r.retry_after_ms), (RejectReason::Tokens, 10 * SEC));
    assert!(limiter.admit(&[key(&limits)], demand(10, 0), T0 + 10 * SEC).is_ok());
}

#[test]
fn concurrency_caps_requests_in_flight_and_frees_on_settle_and_drop() {
    let limiter = Limiter::new();
    let limits = Limits {
        concurrency: Some(2),
        ..Limits::default()
    };
    let a = limiter.admit(&[key(&limits)], demand(0, 0), T0).unwrap();
    let b = limiter.admit(&[key(&limits)], demand(0, 0), T0).unwrap();
    let r = refused(&limiter, &[key(&limits)], demand(0, 0), T0);
    assert_eq!((r.reason, r.retry_after_ms), (RejectReason::Concurrency, SEC));
    a.settle(0, 0, T0);
    let c = limiter.admit(&[key(&limits)], demand(0, 0), T0).unwrap();
    drop(b);
    let d = limiter.admit(&[key(&limits)], demand(0, 0), T0).unwrap();
    assert!(limiter.admit(&[key(&limits)], demand(0, 0), T0).is_err());
    drop((c, d));
    assert!(limiter.admit(&[key(&limits)], demand(0, 0), T0).is_ok());
}

#[test]
fn budgets_reserve_the_estimate_and_settle_the_actual() {
    let limiter = Limiter::new();
    let limits = Limits {
        budgets: vec![day_budget(0.000_01)], // 10_000 nano-USD
        ..Limits::default()
    };
    let now = T0 + 3_600 * SEC;
    let a = limiter.admit(&[key(&limits)], demand(0, 4_000), now).unwrap();
    let b = limiter.admit(&[key(&limits)], demand(0, 4_000), now).unwrap();
    let r = refused(&limiter, &[key(&limits)], demand(0, 4_000), now);
    assert_eq!(r.reason, RejectReason::Budget);
    assert_eq!(r.reason.code(), "budget_exceeded");
    // Nothing is spent yet: the reservations in flight refused it, and may settle for less.
    assert_eq!(r.retry_after_ms, SEC, "soon, not at the end of the day");
    a.settle(0, 1_000, now);
    // 1_000 spent + 4_000 reserved: 5_000 more fits exactly, then nothing priced.
    let c = limiter.admit(&[key(&limits)], demand(0, 5_000), now).unwrap();
    assert!(limiter.admit(&[key(&limits)], demand(0, 1), now).is_err());
    // Spent, not reserved: 7_000 + 2_000 leave 1_000, and 4_000 does not fit until the day ends.
    b.settle(0, 4_000, now);
    c.settle(0, 2_000, now);
    let r = refused(&limiter, &[key(&limits)], demand(0, 4_000), now);
    assert_eq!(r.retry_after_ms, DAY - 3_600 * SEC, "until the UTC day ends");
}

#[test]
fn a_reservation_resized_to_a_refined_estimate_frees_the_difference() {
    let limiter = Limiter::new();
    let limits = Limits {
        tpm: Some(1_000),
        budgets: vec![day_budget(0.000_01)], // 10_000 nano-USD
        ..Limits::default()
    };
    let now = T0 + 3_600 * SEC;
    // Reserved on an upper bound (900 tokens, 9_000 nano-USD): nothing else fits.
    let mut a = limiter.admit(&[key(&limits)], demand(900, 9_000), now).unwrap();
    assert_eq!(a.headers().remaining_tokens, Some(100));
    assert!(limiter.admit(&[key(&limits)], demand(200, 2_000), now).is_err());
    // The tokenizer's count is smaller: the difference is free again, headers follow.
    a.resize(300, 3_000, now);
    assert_eq!(a.headers().remaining_tokens, Some(700));
    assert_eq!(a.reserved_tokens(), 300);
    let b = limiter.admit(&[key(&limits)], demand(600, 6_000), now).unwrap();
    assert!(limiter.admit(&[key(&limits)], demand(200, 2_000), now).is_err());
    // Settling replaces the refined reservation (not the bound) by the actual usage.
    a.settle(300, 3_000, now);
    b.settle(600, 6_000, now);
    let state = limiter.map(ScopeKind::Key).get("k").map(|s| Arc::clone(&s)).unwrap();
    assert_eq!(state.budget(Period::Day).used(), 9_000);
    assert_eq!(state.budget(Period::Day).in_flight(), 0);
    // A resize upwards is charged without a check (like a settle that went over).
    let mut c = limiter.admit(&[key(&limits)], demand(0, 1_000), now).unwrap();
    c.resize(0, 2_000, now);
    assert_eq!(state.budget(Period::Day).used(), 11_000);
    c.settle(0, 2_000, now);
    assert_eq!(state.budget(Period::Day).used(), 11_000);
}

#[test]
fn budgets_restart_with_the_window_and_carry_requests_in_flight() {
    let limiter = Limiter::new();
    let limits = Limits {
        budgets: vec![day_budget(0.000_01)],
        ..Limits::default()
    };
    let evening = T0 + DAY - SEC;
    limiter
        .admit(&[key(&limits)], demand(0, 9_000), evening)
        .unwrap()
        .settle(0, 9_000, evening);
    let late = limiter.admit(&[key(&limits)], demand(0, 1_000), evening).unwrap();
    assert!(limiter.admit(&[key(&limits)], demand(0, 1), evening).is_err());
    // A new day: yesterday's spend is gone, the request still in flight is not.
    let morning = T0 + DAY + SEC;
    assert!(limiter.admit(&[key(&limits)], demand(0, 9_001), morning).is_err());
    let m = limiter.admit(&[key(&limits)], demand(0, 9_000), morning).unwrap();
    // It ends today and cost less than reserved: the difference is free again.
    late.settle(0, 400, morning);
    assert!(limiter.admit(&[key(&limits)], demand(0, 601), morning).is_err());
    assert!(limiter.admit(&[key(&limits)], demand(0, 600), morning).is_ok());
    drop(m);
    // A request admitted yesterday and settled today with no admit in between is charged today.
    let limiter = Limiter::new();
    let y = limiter.admit(&[key(&limits)], demand(0, 2_000), evening).unwrap();
    y.settle(0, 3_000, morning);
    assert!(limiter.admit(&[key(&limits)], demand(0, 7_001), morning).is_err());
    assert!(limiter.admit(&[key(&limits)], demand(0, 7_000), morning).is_ok());
}

#[test]
fn a_budget_idle_for_a_multiple_of_64_windows_starts_fresh() {
    // Window tags repeat every 64 windows; the stale count must not pass for the current one.
    for (period, len) in [(Period::Hour, 3_600 * SEC), (Period::Day, DAY)] {
        let limiter = Limiter::new();
        let limits = Limits {
            budgets: vec![Budget { usd: 0.000_01, period }],
            ..Limits::default()
        };
        for now in [T0, T0 + 64 * len, T0 + 128 * len + 5] {
            let a = limiter.admit(&[key(&limits)], demand(0, 10_000), now);
            a.unwrap().settle(0, 10_000, now);
            assert!(limiter.admit(&[key(&limits)], demand(0, 1), now).is_err());
        }
    }
}

#[test]
#[allow(clippy::result_large_err)]
fn monthly_budgets_follow_the_calendar() {
    let limiter = Limiter::new();
    let limits = Limits {
        budgets: vec![Budget {
            usd: 1.0,
            period: Period::Month,
        }],
        ..Limits::default()
    };
    let feb_2028 = day_ms(2028, 2, 1);
    let spend = |now| {
        limiter
            .admit(&[key(&limits)], demand(0, 1_000_000_000), now)
            .map(|a| a.settle(0, 1_000_000_000, now))
    };
    assert!(spend(feb_2028).is_ok());
    // 2028 is a leap year: the 29th is still February.
    let r = spend(day_ms(2028, 2, 29) + 23 * 3_600 * SEC).unwrap_err();
    assert_eq!(r.retry_after_ms, 3_600 * SEC);
    assert!(spend(day_ms(2028, 3, 1)).is_ok());
}

fn day_ms(year: i64, month: u32, day: u32) -> u64 {
    u64::try_from(days_from_civil(year, month, day)).unwrap() * DAY
}

#[test]
fn period_windows_are_aligned() {
    let now = T0 + 5 * 3_600 * SEC + 1_234;
    assert_eq!(Period::Hour.window(now), (T0 + 5 * 3_600 * SEC, T0 + 6 * 3_600 * SEC));
    assert_eq!(Period::Day.window(now), (T0, T0 + DAY));
    let (start, end) = Period::Days30.window(now);
    assert_eq!((start % (30 * DAY), end - start), (0, 30 * DAY));
    assert!(start <= now && now < end);
    assert_eq!(Period::Month.window(now), (T0, day_ms(2026, 2, 1)));
}

#[test]
fn calendar_months_end_where_they_should() {
    // (year, month, days in it)
    let cases = [
        (2024, 2, 29),
        (2023, 2, 28),
        (2000, 2, 29),
        (2100, 2, 28),
        (1970, 1, 31),
        (2025, 4, 30),
        (2025, 12, 31),
    ];
    for (y, m, days) in cases {
        let start = day_ms(y, m, 1);
        for now in [start, start + 12_345, start + days * DAY - 1] {
            let (s, e) = Period::Month.window(now);
            assert_eq!((s, e - s), (start, days * DAY), "{y}-{m} at {now}");
        }
        assert_eq!(Period::Month.window(start + days * DAY).0, start + days * DAY);
    }
    // Known instants: 2024-03-01T00:00:00Z and 2023-12-01/2024-01-01.
    assert_eq!(day_ms(2024, 3, 1), 1_709_251_200_000);
    assert_eq!(
        Period::Month.window(1_704_067_199_999),
        (1_701_388_800_000, 1_704_067_200_000)
    );
    // The extremes do not panic (the calendar itself is tested in `crate::time`).
    for p in Period::ALL {
        let (s, e) = p.window(u64::MAX);
        assert!(s <= e);
        assert_eq!(p.window(0).0, 0);
    }
}

#[test]
fn a_refusal_by_a_later_scope_rolls_back_the_earlier_ones() {
    let limiter = Limiter::new();
    let key_limits = Limits {
        rpm: Some(2),
        tpm: Some(1_000),
        tpd: Some(1_000),
        concurrency: Some(1),
        budgets: vec![day_budget(0.000_01)],
    };
    let team_limits = Limits {
        rpm: Some(1),
        ..Limits::default()
    };
    let team = scope(ScopeKind::Team, "t", &team_limits);
    let both = [key(&key_limits), team];
    limiter
        .admit(&both, demand(1_000, 10_000), T0)
        .unwrap()
        .settle(0, 0, T0);
    let r = refused(&limiter, &both, demand(1_000, 10_000), T0);
    assert_eq!((r.reason, r.scope.as_str()), (RejectReason::Requests, "team t"));
    // Everything the key reserved for the refused request was given back: the whole tpm, tpd,
    // budget and the slot fit one more request, which is the key's second (and last) of rpm.
    let a = limiter.admit(&[key(&key_limits)], demand(1_000, 10_000), T0).unwrap();
    drop(a);
    let r = refused(&limiter, &[key(&key_limits)], demand(0, 0), T0);
    assert_eq!(r.reason, RejectReason::Requests);
}

#[test]
fn lower_tiers_are_shed_before_the_provider_limit() {
    let limiter = Limiter::new();
    let provider_limits = Limits {
        rpm: Some(10),
        ..Limits::default()
    };
    let provider = [scope(ScopeKind::Provider, "openai", &provider_limits)];
    for _ in 0..7 {
        assert!(limiter.admit(&provider, tier(0.7), T0).is_ok());
    }
    let r = refused(&limiter, &provider, tier(0.7), T0);
    assert_eq!((r.reason, r.retry_after_ms), (RejectReason::Capacity, 6 * SEC));
    assert_eq!(r.reason.code(), "rate_limit_exceeded");
    for _ in 0..3 {
        assert!(limiter.admit(&provider, tier(1.0), T0).is_ok());
    }
    let r = refused(&limiter, &provider, tier(1.0), T0);
    assert_eq!(r.reason, RejectReason::Requests);
    assert!((limiter.utilization(ScopeKind::Provider, "openai", T0) - 1.0).abs() < 1e-9);
    // The ceiling is about a provider's capacity: a key's own limit is the key's in full, and a
    // NaN ceiling counts as 1.
    let key_limits = provider_limits.clone();
    for _ in 0..10 {
        assert!(limiter.admit(&[key(&key_limits)], tier(0.1), T0).is_ok());
    }
    let provider2 = [scope(ScopeKind::Provider, "other", &provider_limits)];
    for _ in 0..10 {
        assert!(limiter.admit(&provider2, tier(f64::NAN), T0).is_ok());
    }
}

#[test]
fn tiers_shed_on_tokens_too() {
    let limiter = Limiter::new();
    let limits = Limits {
        tpm: Some(1_000),
        ..Limits::default()
    };
    let provider = [scope(ScopeKind::Provider, "p", &limits)];
    let free = |tokens| Demand {
        tokens,
        cost_nanos: 0,
        tier_ceiling: 0.5,
    };
    assert!(limiter.admit(&provider, free(500), T0).is_ok());
    let r = refused(&limiter, &provider, free(1), T0);
    assert_eq!(r.reason, RejectReason::Capacity);
    assert!(limiter.admit(&provider, demand(500, 0), T0).is_ok());
}

#[test]
fn changed_limits_are_adopted_and_counts_kept() {
    let limiter = Limiter::new();
    let mut limits = Limits {
        rpm: Some(10),
        concurrency: Some(5),
        budgets: vec![day_budget(0.000_01)],
        ..Limits::default()
    };
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(limiter.admit(&[key(&limits)], demand(0, 1_000), T0).unwrap());
    }
    // Raised: the 5 used still count, so 15 more fit, not 20.
    limits.rpm = Some(20);
    limits.concurrency = Some(7);
    limits.budgets = vec![day_budget(0.000_1)];
    held.push(limiter.admit(&[key(&limits)], demand(0, 1_000), T0).unwrap());
    held.push(limiter.admit(&[key(&limits)], demand(0, 1_000), T0).unwrap());
    let r = refused(&limiter, &[key(&limits)], demand(0, 1_000), T0);
    assert_eq!(r.reason, RejectReason::Concurrency);
    for a in held.drain(..) {
        a.settle(0, 1_000, T0);
    }
    for _ in 0..13 {
        assert!(limiter.admit(&[key(&limits)], demand(0, 0), T0).is_ok());
    }
    assert_eq!(
        refused(&limiter, &[key(&limits)], demand(0, 0), T0).reason,
        RejectReason::Requests
    );
    // Lowered below what is used: refused until enough has drained (20 used of 4/min).
    limits.rpm = Some(4);
    let r = refused(&limiter, &[key(&limits)], demand(0, 0), T0);
    assert_eq!((r.reason, r.retry_after_ms), (RejectReason::Requests, 255 * SEC));
    // Removing a limit lifts it; the budget still holds its 7_000 spent.
    limits.rpm = None;
    assert!(limiter.admit(&[key(&limits)], demand(0, 93_000), T0).is_ok());
    assert!(limiter.admit(&[key(&limits)], demand(0, 1), T0).is_err());
}

#[test]
fn headers_describe_the_most_restrictive_tenant_scope() {
    let limiter = Limiter::new();
    let key_limits = Limits {
        rpm: Some(100),
        tpm: Some(10_000),
        ..Limits::default()
    };
    let team_limits = Limits {
        rpm: Some(50),
        tpd: Some(1_000_000),
        ..Limits::default()
    };
    let provider_limits = Limits {
        rpm: Some(2),
        tpm: Some(2_000),
        ..Limits::default()
    };
    let scopes = [
        key(&key_limits),
        scope(ScopeKind::Team, "t", &team_limits),
        scope(ScopeKind::Provider, "p", &provider_limits),
    ];
    let a = limiter.admit(&scopes, demand(1_000, 0), T0).unwrap();
    let h = a.headers();
    // Requests: the team (49/50 left) is tighter than the key (99/100); the provider is not shown.
    assert_eq!(h.limit_requests, Some(50));
    assert_eq!(h.remaining_requests, Some(49));
    assert_eq!(h.reset_requests_ms, Some(1_200));
    // Tokens: the key's tpm (9000/10000) is tighter than the team's tpd.
    assert_eq!(h.limit_tokens, Some(10_000));
    assert_eq!(h.remaining_tokens, Some(9_000));
    assert_eq!(h.reset_tokens_ms, Some(6 * SEC));
    let pairs: Vec<_> = h.pairs().collect();
    let expected = [
        ("x-ratelimit-limit-requests", "50"),
        ("x-ratelimit-limit-tokens", "10000"),
        ("x-ratelimit-remaining-requests", "49"),
        ("x-ratelimit-remaining-tokens", "9000"),
        ("x-ratelimit-reset-requests", "1.2s"),
        ("x-ratelimit-reset-tokens", "6s"),
    ];
    assert_eq!(pairs.len(), expected.len());
    for ((name, value), (n, v)) in pairs.iter().zip(expected) {
        assert_eq!((name.as_str(), value.to_str().unwrap()), (n, v));
    }
    // A refusal shows the state without a reservation.
    a.settle(1_000, 0, T0);
    let _b = limiter.admit(&scopes, demand(1_000, 0), T0).unwrap();
    let r = refused(&limiter, &scopes, demand(1_000, 0), T0);
    assert_eq!(r.scope, "provider p");
    assert_eq!(r.headers.remaining_requests, Some(48));
    assert_eq!(r.headers.remaining_tokens, Some(8_000));
    // No tenant limit, no headers.
    let none = Limits::default();
    let a = limiter.admit(&[key(&none)], demand(1, 0), T0).unwrap();
    assert_eq!(a.headers(), RateHeaders::default());
    assert_eq!(a.headers().pairs().count(), 0);
}

#[test]
fn durations_are_written_like_openai() {
    let cases = [
        (0, "0s"),
        (20, "20ms"),
        (999, "999ms"),
        (1_000, "1s"),
        (1_500, "1.5s"),
        (17_280, "17.28s"),
        (1_005, "1.005s"),
        (1_050, "1.05s"),
        (59_999, "59.999s"),
        (u64::MAX, "5124095576030h25m51.615s"),
        (61_001, "1m1.001s"),
        (360_000, "6m0s"),
        (3_600_000, "1h0m0s"),
        (86_400_000, "24h0m0s"),
    ];
    for (ms, text) in cases {
        assert_eq!(duration(ms), text, "{ms} ms");
    }
}

#[test]
fn dropping_an_admission_frees_the_slot_and_keeps_the_usage() {
    let limiter = Limiter::new();
    let limits = Limits {
        tpm: Some(1_000),
        concurrency: Some(1),
        budgets: vec![day_budget(0.000_01)],
        ..Limits::default()
    };
    drop(limiter.admit(&[key(&limits)], demand(600, 6_000), T0).unwrap());
    let r = refused(&limiter, &[key(&limits)], demand(600, 0), T0);
    assert_eq!(r.reason, RejectReason::Tokens);
    let r = refused(&limiter, &[key(&limits)], demand(0, 4_001), T0);
    assert_eq!(r.reason, RejectReason::Budget);
    // The slot is free again.
    assert!(limiter.admit(&[key(&limits)], demand(400, 4_000), T0).is_ok());
}

#[test]
fn seeded_spend_counts_against_the_budget() {
    let limiter = Limiter::new();
    let limits = Limits {
        budgets: vec![day_budget(0.000_01)],
        ..Limits::default()
    };
    limiter.seed_spent(ScopeKind::Key, "k", Period::Day, 9_000, T0);
    assert!(limiter.admit(&[key(&limits)], demand(0, 1_001), T0).is_err());
    let a = limiter.admit(&[key(&limits)], demand(0, 1_000), T0).unwrap();
    // A reseed keeps what is in flight; one for an earlier window is ignored.
    limiter.seed_spent(ScopeKind::Key, "k", Period::Day, 8_000, T0);
    limiter.seed_spent(ScopeKind::Key, "k", Period::Day, 0, T0 - DAY);
    assert!(limiter.admit(&[key(&limits)], demand(0, 1_001), T0).is_err());
    assert!(limiter.admit(&[key(&limits)], demand(0, 1_000), T0).is_ok());
    drop(a);
    // Negative seeds count as nothing spent.
    limiter.seed_spent(ScopeKind::Key, "k2", Period::Day, -5, T0);
}

#[test]
fn limits_validate_and_parse() {
    let ok = Limits {
        rpm: Some(1),
        tpm: Some(1),
        tpd: Some(1),
        concurrency: Some(1),
        budgets: vec![
            day_budget(5.0),
            Budget {
                usd: 100.0,
                period: Period::Month,
            },
        ],
    };
    assert_eq!(ok.validate(), Ok(()));
    let bad = Limits {
        rpm: Some(0),
        concurrency: Some(0),
        budgets: vec![day_budget(f64::NAN), day_budget(-1.0), day_budget(2e9)],
        ..Limits::default()
    };
    let err = bad.validate().unwrap_err();
    for needle in [
        "rpm: must be at least 1",
        "concurrency: must be at least 1",
        "budgets[0].usd: must be a finite amount above 0 (got NaN)",
        "budgets[1].usd: must be a finite amount above 0 (got -1)",
        "budgets[2].usd: must be at most",
        "budgets[1].period: 1d is already budgeted by budgets[0]",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from {err:?}");
    }
    let parsed: Limits = serde_yaml::from_str(
        "rpm: 60\ntpm: 100000\nbudgets:\n  - { usd: 5, period: 1h }\n  - { usd: 50, period: 1d }\n  - { usd: 500, period: 30d }\n  - { usd: 900, period: month }\n",
    )
    .unwrap();
    let periods: Vec<_> = parsed.budgets.iter().map(|b| b.period).collect();
    assert_eq!(periods, Period::ALL);
    assert_eq!(parsed.rpm, Some(60));
    assert!(serde_yaml::from_str::<Limits>("rpn: 60\n").is_err());
    assert!(serde_yaml::from_str::<Limits>("budgets: [ { usd: 1, period: 2d } ]\n").is_err());
}

#[test]
fn unvalidated_limits_refuse_instead_of_panicking() {
    let limiter = Limiter::new();
    let limits = Limits {
        rpm: Some(0),
        ..Limits::default()
    };
    let r = refused(&limiter, &[key(&limits)], demand(0, 0), T0);
    assert_eq!((r.reason, r.retry_after_ms), (RejectReason::Requests, 60 * SEC));
    let limits = Limits {
        budgets: vec![day_budget(f64::NAN)],
        ..Limits::default()
    };
    assert!(limiter.admit(&[key(&limits)], demand(0, 1), T0).is_err());
    assert!(limiter.admit(&[key(&limits)], demand(0, -7), u64::MAX).is_ok());
    let limits = Limits {
        rpm: Some(u64::MAX),
        tpm: Some(u64::MAX),
        tpd: Some(1),
        ..Limits::default()
    };
    for now in [0, 1, u64::MAX] {
        let _ = limiter.admit(&[key(&limits)], demand(u64::MAX, i64::MAX), now);
    }
}

#[test]
fn utilization_len_and_pruning() {
    let limiter = Limiter::new();
    assert!(limiter.is_empty());
    let limits = Limits {
        rpm: Some(10),
        tpm: Some(1_000),
        ..Limits::default()
    };
    let provider = [scope(ScopeKind::Provider, "p", &limits)];
    let held = limiter.admit(&provider, demand(500, 0), T0).unwrap();
    assert!((limiter.utilization(ScopeKind::Provider, "p", T0) - 0.5).abs() < 1e-9);
    assert_eq!(limiter.utilization(ScopeKind::Provider, "absent", T0), 0.0);
    let budgeted = Limits {
        budgets: vec![day_budget(1.0)],
        ..Limits::default()
    };
    limiter
        .admit(&[scope(ScopeKind::User, "u", &budgeted)], demand(0, 10), T0)
        .unwrap()
        .settle(0, 10, T0);
    limiter
        .admit(&[scope(ScopeKind::User, "idle", &limits)], demand(1, 0), T0)
        .unwrap()
        .settle(1, 0, T0);
    assert_eq!(limiter.len(), 3);
    // A minute later the idle user's bucket is full again; the provider is still held and the
    // user with spend today keeps its count.
    assert_eq!(limiter.prune_idle(T0 + 60 * SEC), 1);
    assert_eq!(limiter.len(), 2);
    held.settle(0, 0, T0);
    assert_eq!(limiter.prune_idle(T0 + DAY), 2);
    assert!(limiter.is_empty());
}

#[test]
fn more_scopes_than_fit_inline_are_all_held() {
    let limiter = Limiter::new();
    let limits = Limits {
        concurrency: Some(1),
        ..Limits::default()
    };
    let ids = ["a", "b", "c", "d", "e", "f"];
    let scopes: Vec<_> = ids.iter().map(|id| scope(ScopeKind::User, id, &limits)).collect();
    let a = limiter.admit(&scopes, demand(0, 0), T0).unwrap();
    for s in &scopes {
        assert!(limiter.admit(&[*s], demand(0, 0), T0).is_err());
    }
    a.settle(0, 0, T0);
    for s in &scopes {
        assert!(limiter.admit(&[*s], demand(0, 0), T0).is_ok());
    }
}

#[test]
fn rejections_read_well() {
    let limiter = Limiter::new();
    let limits = Limits {
        concurrency: Some(1),
        ..Limits::default()
    };
    let _a = limiter
        .admit(&[scope(ScopeKind::Team, "growth", &limits)], demand(0, 0), T0)
        .unwrap();
    let r = refused(&limiter, &[scope(ScopeKind::Team, "growth", &limits)], demand(0, 0), T0);
    assert_eq!(r.to_string(), "Too many concurrent requests for team growth");
    assert_eq!(r.reason.label(), "concurrency");
}

#[test]
fn admissions_travel_between_threads() {
    fn send<T: Send>() {}
    fn shared<T: Send + Sync>() {}
    send::<Admission>();
    send::<Rejection>();
    shared::<Limiter>();
}
