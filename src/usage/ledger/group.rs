//! The dimensions spend is grouped by, shared by the queries and the hourly rollups.

use std::fmt;
use std::str::FromStr;

pub(crate) const HOUR_MS: i64 = crate::time::HOUR_MS as i64;

/// A dimension to group spend by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupBy {
    Team,
    Feature,
    Model,
    Provider,
    Key,
    User,
    Tier,
    Route,
}

impl GroupBy {
    pub const ALL: [GroupBy; 8] = [
        GroupBy::Team,
        GroupBy::Feature,
        GroupBy::Model,
        GroupBy::Provider,
        GroupBy::Key,
        GroupBy::User,
        GroupBy::Tier,
        GroupBy::Route,
    ];

    /// The name used in queries and in report rows.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Team => "team",
            GroupBy::Feature => "feature",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::Key => "key",
            GroupBy::User => "user",
            GroupBy::Tier => "tier",
            GroupBy::Route => "route",
        }
    }

    /// The column in both `usage_records` and `usage_hourly`.
    pub(crate) fn column(self) -> &'static str {
        match self {
            GroupBy::Team => "team",
            GroupBy::Feature => "feature",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::Key => "key_id",
            GroupBy::User => "user_id",
            GroupBy::Tier => "tier",
            GroupBy::Route => "route",
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GroupBy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        GroupBy::ALL
            .into_iter()
            .find(|g| g.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| {
                format!("unknown dimension {t:?} (use team, feature, model, provider, key, user, tier or route)")
            })
    }
}
