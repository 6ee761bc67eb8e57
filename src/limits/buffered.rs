//! The bytes of the request bodies the process holds, against `server.max_buffered_bytes`: a
//! thousand clients each sending a 30 MiB body must not take the process's memory with them.
//!
//! `Buffered` counts the bytes of the bodies being read or held by requests in flight; each
//! request holds a `Lease` on its share until it ends and gives its bytes back when dropped.
//! Taking is one atomic update, so the request path pays nothing else. Copies the gateway makes
//! of a body (a translation, a redaction) are not counted: they are bounded by the body's own
//! size and live no longer than it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The bytes of the request bodies the process holds (see the module doc).
#[derive(Debug)]
pub struct Buffered {
    used: AtomicU64,
    /// `tollgate_buffered_body_bytes`, kept equal to `used`.
    gauge: prometheus::IntGauge,
}

impl Buffered {
    pub fn new(gauge: prometheus::IntGauge) -> Arc<Buffered> {
        Arc::new(Buffered {
            used: AtomicU64::new(0),
            gauge,
        })
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// A request's share of `Buffered`, given back when dropped.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<Buffered>,
    bytes: u64,
}

impl Lease {
    pub fn new(pool: &Arc<Buffered>) -> Lease {
        Lease {
            pool: Arc::clone(pool),
            bytes: 0,
        }
    }

    /// Grows the lease to `to` bytes, unless the pool would then hold more than `cap`.
    pub fn grow(&mut self, to: u64, cap: u64) -> bool {
        let Some(more) = to.checked_sub(self.bytes).filter(|&m| m > 0) else {
            return true;
        };
        let taken = self
            .pool
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|&n| n <= cap)
            });
        if taken.is_err() {
            return false;
        }
        self.bytes = to;
        self.pool.gauge.add(more as i64);
        true
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.pool.used.fetch_sub(self.bytes, Ordering::AcqRel);
            self.pool.gauge.sub(self.bytes as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Arc<Buffered> {
        Buffered::new(prometheus::IntGauge::new("t_buffered", "t").unwrap())
    }

    #[test]
    fn leases_take_up_to_the_cap_and_give_back_when_dropped() {
        let p = pool();
        let mut a = Lease::new(&p);
        assert!(a.grow(600, 1000));
        let mut b = Lease::new(&p);
        assert!(!b.grow(500, 1000), "600 + 500 > 1000");
        assert_eq!(p.used(), 600, "a refused grow takes nothing");
        assert!(b.grow(400, 1000));
        assert!(a.grow(500, 1000), "shrinking is never asked; a smaller size is a no-op");
        assert_eq!((p.used(), p.gauge.get()), (1000, 1000));
        drop(a);
        assert_eq!((p.used(), p.gauge.get()), (400, 400));
        drop(b);
        assert_eq!((p.used(), p.gauge.get()), (0, 0));
    }
}
