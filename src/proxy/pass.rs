//! The state a native passthrough call keeps in the request's ctx (`proxy::passthrough` drives
//! it): the provider, the upstream path, and how the answer's usage is being read.

use std::sync::Arc;
use std::time::Instant;

use crate::config::Provider;
use crate::providers::Observer;

/// A passthrough request in flight.
pub struct Pass {
    pub provider: Arc<Provider>,
    /// Path and query below the provider's host.
    pub path: String,
    pub pricing: Arc<crate::usage::pricing::PriceTable>,
    pub scan: Scan,
    /// When the request went upstream.
    pub sent: Option<Instant>,
}

impl std::fmt::Debug for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pass")
            .field("provider", &self.provider.name)
            .field("path", &self.path)
            .finish()
    }
}

/// How the answer's usage is read as it passes.
pub enum Scan {
    Nothing,
    /// An SSE (or event-stream) answer: the dialect's own stream observer. (In a `Mutex` only
    /// because Pingora's ctx must be `Sync`; the one request that owns it never contends.)
    Stream(std::sync::Mutex<Box<dyn Observer>>),
    /// A JSON answer, kept to be read at its end.
    Json(Vec<u8>),
}
