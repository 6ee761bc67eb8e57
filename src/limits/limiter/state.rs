//! One scope's counters and the all-or-nothing reservation across its limits.

use super::budget::BudgetQuota;
use super::config::{Limits, Period};
use super::quota::{Denied, Quota, RateQuota, SlotQuota};
use super::{Demand, RejectReason, ScopeKind};
use crate::time::{DAY_MS, MINUTE_MS};

/// What a request asks for, sanitised: a negative cost counts as 0, a NaN ceiling as 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Need {
    pub tokens: u64,
    pub cost: u64,
    pub ceiling: f64,
}

impl Need {
    pub(super) fn new(demand: Demand) -> Need {
        let ceiling = if demand.tier_ceiling.is_nan() {
            1.0
        } else {
            demand.tier_ceiling.clamp(0.0, 1.0)
        };
        Need {
            tokens: demand.tokens,
            cost: nanos(demand.cost_nanos),
            ceiling,
        }
    }
}

pub(super) fn nanos(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Which quotas of a scope hold a reservation (bit set), so settle touches exactly those.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Marks(u8);

const RPM: u8 = 1;
const TPM: u8 = 1 << 1;
const TPD: u8 = 1 << 2;
const SLOT: u8 = 1 << 3;

fn budget_bit(period: Period) -> u8 {
    1 << (4 + period.index())
}

impl Marks {
    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// The counters of one scope. Shared (`Arc`) between the scope map and admissions in flight.
#[derive(Debug)]
pub(super) struct ScopeState {
    pub rpm: RateQuota,
    pub tpm: RateQuota,
    pub tpd: RateQuota,
    pub slots: SlotQuota,
    pub budgets: [BudgetQuota; 4],
}

impl ScopeState {
    pub(super) fn new() -> ScopeState {
        ScopeState {
            rpm: RateQuota::new(MINUTE_MS),
            tpm: RateQuota::new(MINUTE_MS),
            tpd: RateQuota::new(DAY_MS),
            slots: SlotQuota::new(),
            budgets: Period::ALL.map(BudgetQuota::new),
        }
    }

    pub(super) fn budget(&self, period: Period) -> &BudgetQuota {
        &self.budgets[period.index()]
    }

    /// Reserves in every limit of `limits`, or in none: on a refusal the reservations made so
    /// far are undone before returning why and when to retry.
    pub(super) fn reserve(
        &self,
        kind: ScopeKind,
        limits: &Limits,
        need: &Need,
        now_ms: u64,
    ) -> Result<Marks, (RejectReason, u64)> {
        // Tiers are a share of a provider's own capacity; tenants' limits are theirs in full.
        let ceiling = if kind == ScopeKind::Provider { need.ceiling } else { 1.0 };
        let mut marks = Marks::default();
        match self.reserve_into(&mut marks, limits, need, ceiling, now_ms) {
            Ok(()) => Ok(marks),
            Err(refused) => {
                self.undo(marks, need, now_ms);
                Err(refused)
            }
        }
    }

    fn reserve_into(
        &self,
        marks: &mut Marks,
        limits: &Limits,
        need: &Need,
        ceiling: f64,
        now_ms: u64,
    ) -> Result<(), (RejectReason, u64)> {
        if let Some(limit) = limits.rpm {
            self.rpm
                .try_reserve(limit, 1, ceiling, now_ms)
                .map_err(|d| refusal(d, RejectReason::Requests))?;
            marks.0 |= RPM;
        }
        if let Some(limit) = limits.tpm {
            self.tpm
                .try_reserve(limit, need.tokens, ceiling, now_ms)
                .map_err(|d| refusal(d, RejectReason::Tokens))?;
            marks.0 |= TPM;
        }
        if let Some(limit) = limits.tpd {
            self.tpd
                .try_reserve(limit, need.tokens, 1.0, now_ms)
                .map_err(|d| refusal(d, RejectReason::Tokens))?;
            marks.0 |= TPD;
        }
        let cap = limits.concurrency.map_or(u64::MAX, u64::from);
        self.slots
            .try_reserve(cap, 1, 1.0, now_ms)
            .map_err(|d| refusal(d, RejectReason::Concurrency))?;
        marks.0 |= SLOT;
        for period in Period::ALL {
            if let Some(budget) = limits.budget_nanos(period) {
                self.budget(period)
                    .try_reserve(budget, need.cost, 1.0, now_ms)
                    .map_err(|d| refusal(d, RejectReason::Budget))?;
                marks.0 |= budget_bit(period);
            }
        }
        Ok(())
    }

    /// Replaces the reservations in `marks` (sized by `need`) by the actual usage, and frees the
    /// concurrency slot. The request itself stays counted in rpm: it was made.
    pub(super) fn settle(&self, marks: Marks, need: &Need, actual_tokens: u64, actual_cost: u64, now_ms: u64) {
        if marks.has(TPM) {
            self.tpm.settle(need.tokens, actual_tokens, now_ms);
        }
        if marks.has(TPD) {
            self.tpd.settle(need.tokens, actual_tokens, now_ms);
        }
        if marks.has(SLOT) {
            self.slots.settle(1, 0, now_ms);
        }
        for period in Period::ALL {
            if marks.has(budget_bit(period)) {
                self.budget(period).settle(need.cost, actual_cost, now_ms);
            }
        }
    }

    /// Changes the reservations in `marks` from `old`'s estimate to `new`'s (still in flight).
    pub(super) fn resize(&self, marks: Marks, old: &Need, new: &Need, now_ms: u64) {
        if marks.has(TPM) {
            self.tpm.settle(old.tokens, new.tokens, now_ms);
        }
        if marks.has(TPD) {
            self.tpd.settle(old.tokens, new.tokens, now_ms);
        }
        for period in Period::ALL {
            if marks.has(budget_bit(period)) {
                self.budget(period).resize(old.cost, new.cost, now_ms);
            }
        }
    }

    /// Takes back the reservations in `marks` as if the request had never been made.
    pub(super) fn undo(&self, marks: Marks, need: &Need, now_ms: u64) {
        if marks.has(RPM) {
            self.rpm.settle(1, 0, now_ms);
        }
        self.settle(marks, need, 0, 0, now_ms);
    }

    /// Holds nothing that a fresh state would not: safe to forget.
    pub(super) fn is_idle(&self, now_ms: u64) -> bool {
        self.rpm.is_idle(now_ms)
            && self.tpm.is_idle(now_ms)
            && self.tpd.is_idle(now_ms)
            && self.slots.in_flight() == 0
            && self.budgets.iter().all(|b| b.is_idle(now_ms))
    }
}

fn refusal(denied: Denied, reason: RejectReason) -> (RejectReason, u64) {
    let reason = if denied.over_ceiling {
        RejectReason::Capacity
    } else {
        reason
    };
    (reason, denied.retry_after_ms)
}
