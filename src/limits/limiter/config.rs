//! What a scope may use (`Limits`, from the config) and the calendar of budget periods.
//!
//! Budget windows are fixed and aligned, so every gateway instance (and the spend ledger) agrees
//! on where a period starts without coordination: the clock hour, the UTC day, 30-day windows
//! counted from the Unix epoch, and the calendar month in UTC (`crate::time` does the calendar).

use std::fmt;

use crate::time::{aligned_window, month_window, DAY_MS, HOUR_MS};

/// Limits of one scope (a key, a team, a user or a provider). Every field is optional and they
/// combine: a request must fit all of them.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute, as a bucket that refills continuously (at most `rpm` at once).
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per minute, same bucket semantics.
    pub tpm: Option<u64>,
    /// Tokens per day, a bucket that refills over 24 hours (not a calendar day: budgets are the
    /// calendar-aligned limits).
    pub tpd: Option<u64>,
    /// Requests in flight at once.
    pub concurrency: Option<u32>,
    /// Spend caps in USD, one per period.
    #[serde(default)]
    pub budgets: Vec<Budget>,
}

/// A spend cap for one period.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub usd: f64,
    pub period: Period,
}

/// A budget period; see the module doc for how windows align.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "1d")]
    Day,
    #[serde(rename = "30d")]
    Days30,
    Month,
}

/// The largest budget accepted per period: far above any real one, with room to spare below
/// what a window's counter holds (2^58 nano-USD, about 288 million USD).
pub const MAX_BUDGET_USD: f64 = 1e8;

impl Limits {
    /// Checks values the limiter cannot honour; reports every problem, each naming its field.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        for (field, value) in [("rpm", self.rpm), ("tpm", self.tpm), ("tpd", self.tpd)] {
            if value == Some(0) {
                problems.push(format!("{field}: must be at least 1 (leave it out for no limit)"));
            }
        }
        if self.concurrency == Some(0) {
            problems.push("concurrency: must be at least 1 (leave it out for no limit)".into());
        }
        for (i, budget) in self.budgets.iter().enumerate() {
            if !(budget.usd.is_finite() && budget.usd > 0.0) {
                problems.push(format!(
                    "budgets[{i}].usd: must be a finite amount above 0 (got {})",
                    budget.usd
                ));
            } else if budget.usd > MAX_BUDGET_USD {
                problems.push(format!(
                    "budgets[{i}].usd: must be at most {MAX_BUDGET_USD} (got {})",
                    budget.usd
                ));
            }
            if let Some(j) = self.budgets[..i].iter().position(|b| b.period == budget.period) {
                problems.push(format!(
                    "budgets[{i}].period: {} is already budgeted by budgets[{j}]",
                    budget.period
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Whether admitting against these limits needs the request's token and cost estimate
    /// (token rates or budgets); rpm and concurrency do not.
    pub fn needs_estimate(&self) -> bool {
        self.tpm.is_some() || self.tpd.is_some() || !self.budgets.is_empty()
    }

    /// The budget for `period` in nano-USD, if any. Unvalidated duplicates count as the smallest
    /// of them; a non-positive or NaN amount as 0 (nothing priced passes).
    pub(crate) fn budget_nanos(&self, period: Period) -> Option<u64> {
        self.budgets
            .iter()
            .filter(|b| b.period == period)
            .map(|b| usd_to_nanos(b.usd))
            .min()
    }
}

/// `as` truncates towards zero and saturates: NaN and negative amounts become 0, huge ones
/// `u64::MAX` (no `floor`, which is a libm call on the admit path).
fn usd_to_nanos(usd: f64) -> u64 {
    (usd * 1e9) as u64
}

impl Period {
    pub const ALL: [Period; 4] = [Period::Hour, Period::Day, Period::Days30, Period::Month];

    pub(super) fn index(self) -> usize {
        match self {
            Period::Hour => 0,
            Period::Day => 1,
            Period::Days30 => 2,
            Period::Month => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "1h",
            Period::Day => "1d",
            Period::Days30 => "30d",
            Period::Month => "month",
        }
    }

    /// The window holding `now_ms` (Unix epoch milliseconds, UTC): `[start_ms, end_ms)`.
    pub fn window(self, now_ms: u64) -> (u64, u64) {
        match self {
            Period::Hour => aligned_window(now_ms, HOUR_MS),
            Period::Day => aligned_window(now_ms, DAY_MS),
            Period::Days30 => aligned_window(now_ms, 30 * DAY_MS),
            Period::Month => month_window(now_ms),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
