//! Ending in-flight requests at shutdown, explicitly.
//!
//! When the shutdown grace runs out (at once for SIGINT), `Drain::stop_all` tells every request
//! still running to end: one that has not answered yet gets a 503 `shutting_down`, a stream in
//! progress gets the client format's error event (`shutdown`) instead of a silent close, and
//! either way `logging` writes its usage record (tokens so far) before the process exits. Each
//! wait of a request (for the provider, for its body, during a backoff) listens for it next to
//! the client going away.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use pingora::proxy::Session;
use tokio::sync::watch;

/// The process-wide stop signal for in-flight requests.
pub struct Drain {
    stopping: AtomicBool,
    /// Bumped once, by `stop_all`: a change wakes every waiter (tokio shards its waiter list).
    stop: watch::Sender<()>,
}

impl Drain {
    pub fn new() -> Drain {
        Drain {
            stopping: AtomicBool::new(false),
            stop: watch::Sender::new(()),
        }
    }

    /// Resolves once requests must end. Made once per request and kept for all its waits, so it
    /// registers with the signal once (no lock or allocation per wait).
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + '_ {
        let mut changes = self.stop.subscribe();
        async move {
            // A stop sent before `subscribe` is seen here; one sent after, as a change.
            if self.stopping.load(SeqCst) {
                return;
            }
            if changes.changed().await.is_err() {
                // The sender lives as long as the gateway; without it nothing will stop us.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Ends every request still running.
    pub fn stop_all(&self) {
        self.stopping.store(true, SeqCst);
        self.stop.send_replace(());
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(SeqCst)
    }
}

impl Default for Drain {
    fn default() -> Self {
        Drain::new()
    }
}

/// One request's view of the stop signal: its `Drain::stopped` future, pinned where the request
/// is handled and polled by each of its waits.
pub struct Stop<'a> {
    stopped: Pin<&'a mut (dyn Future<Output = ()> + Send + 'a)>,
    fired: bool,
}

impl<'a> Stop<'a> {
    pub fn new(stopped: Pin<&'a mut (dyn Future<Output = ()> + Send + 'a)>) -> Stop<'a> {
        Stop { stopped, fired: false }
    }

    /// Resolves once the request must end (at once if it already had to).
    pub async fn stopped(&mut self) {
        if !self.fired {
            self.stopped.as_mut().await;
            self.fired = true;
        }
    }
}

/// Why a request's wait was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// The client closed its connection.
    ClientGone,
    /// The gateway is shutting down and the grace period is over.
    Shutdown,
}

/// Resolves when the client goes away or the request must end for shutdown, whichever first.
pub async fn interrupted(session: &mut Session, stop: &mut Stop<'_>) -> Interrupt {
    tokio::select! {
        _ = session.read_body_or_idle(true) => Interrupt::ClientGone,
        _ = stop.stopped() => Interrupt::Shutdown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_reaches_every_request_even_one_that_looks_later() {
        let drain = std::sync::Arc::new(Drain::new());
        let d = std::sync::Arc::clone(&drain);
        let waiting = tokio::spawn(async move {
            let stopped = std::pin::pin!(d.stopped());
            let mut stop = Stop::new(stopped);
            stop.stopped().await;
            // Asking again after it fired answers at once.
            stop.stopped().await;
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drain.stop_all();
        assert!(drain.stopping());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the waiting request was stopped")
            .expect("no panic");
        // A request that starts waiting after the signal ends at once.
        let late = std::pin::pin!(drain.stopped());
        let mut stop = Stop::new(late);
        tokio::time::timeout(std::time::Duration::from_secs(5), stop.stopped())
            .await
            .expect("a late waiter sees the stop");
    }
}
