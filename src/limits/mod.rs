//! Limits and their inputs. Today: the token estimator (`tokens`), used before a call to size a
//! request (and by `/v1/messages/count_tokens`); rate limits and budgets build on it.

pub mod buffered;
pub mod cluster;
pub mod gate;
pub mod keys;
pub mod limiter;
pub mod o200k;
pub mod prompt;
pub mod tokens;
