//! What requests used and cost: the usage record, the pricing table, the spend ledger.

pub mod ledger;
pub mod pricing;
pub mod record;
pub mod report;
pub mod responses;

pub use record::{GuardrailCounts, UsageRecord, NANOS_PER_USD};
