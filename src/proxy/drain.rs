//! Ending in-flight requests at shutdown, explicitly.
//!
//! When the shutdown grace runs out (at once for SIGINT), `Drain::stop_all` tells every request
//! still running to end: one that has not answered yet gets a 503 `shutting_down`, a stream in
//! progress gets the client format's error event (`shutdown`) instead of a silent close, and
//! either way `logging` writes its usage record (tokens so far) before the process exits. Each
//! wait of a request (for the provider, for its body, during a backoff) listens for it next to
//! the client going away.

use pingora::proxy::Session;
use tokio::sync::watch;

/// The process-wide stop signal for in-flight requests.
pub struct Drain {
    stop: watch::Sender<bool>,
}

impl Drain {
    pub fn new() -> Drain {
        Drain {
            stop: watch::Sender::new(false),
        }
    }

    /// A request's handle on the signal (taken once per request).
    pub fn watch(&self) -> Stop {
        Stop(self.stop.subscribe())
    }

    /// Ends every request still running.
    pub fn stop_all(&self) {
        self.stop.send_replace(true);
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

impl Default for Drain {
    fn default() -> Self {
        Drain::new()
    }
}

/// One request's view of the stop signal.
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Resolves once the request must end.
    pub async fn stopped(&mut self) {
        if self.0.wait_for(|stop| *stop).await.is_err() {
            // The sender lives as long as the gateway; without it nothing will ever stop us.
            std::future::pending::<()>().await;
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
pub async fn interrupted(session: &mut Session, stop: &mut Stop) -> Interrupt {
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
        let drain = Drain::new();
        let mut early = drain.watch();
        let waiting = tokio::spawn(async move { early.stopped().await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drain.stop_all();
        assert!(drain.stopping());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the waiting request was stopped")
            .expect("no panic");
        // A request that starts waiting after the signal ends at once.
        let mut late = drain.watch();
        tokio::time::timeout(std::time::Duration::from_secs(5), late.stopped())
            .await
            .expect("a late waiter sees the stop");
    }
}
