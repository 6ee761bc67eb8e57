//! Client connections: the listeners' front door, in front of Pingora's HTTP handling.
//!
//! `Guard` wraps an HTTP app (the data-plane proxy, the admin API) as the listener's
//! `ServerApp` and owns each connection's life, which Pingora would otherwise run with no bounds:
//! - a cap on open connections (`server.max_connections`): one over it gets a 503 JSON and is
//!   closed at once, so slow or idle sockets cannot take every file descriptor (and the admin
//!   listener with them);
//! - the header deadline, the header size limit and the keep-alive idle timeout, enforced by the
//!   connection's stream (`Guarded`, see `stream.rs`) from the phase kept in `ConnState`;
//! - HTTP/1.1 pipelining: requests sent back to back are answered in order (Pingora drops them
//!   unless asked to keep them).
//!
//! The proxy learns its connection's `ConnState` through Pingora's per-connection user context
//! (`ProxyHttp::on_connection_reuse`, called for every request because `Guard` sets the context
//! each time) and marks the request as taken (`request_started`), which lifts the header deadline.
//!
//! Cost: per connection one `Arc<ConnState>` and the stream's box; per request a boxed `Arc` for
//! the user context and two relaxed atomic stores. Reads in the `Request` phase pass straight
//! through.

pub mod canned;
mod stream;

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ReusedHttpStream, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::io::AsyncWriteExt;

use crate::telemetry::metrics::ConnectionMetrics;
use canned::Canned;
use stream::Guarded;

/// The bounds of a listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Open connections at most; 0 = no cap.
    pub max_connections: usize,
    /// From accept (or a reused connection's first byte) to the end of the request header.
    pub header_timeout: Duration,
    /// Largest request header.
    pub max_header_bytes: usize,
    /// How long a kept-alive connection may wait for its next request.
    pub keepalive_timeout: Duration,
}

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between requests on a kept-alive connection.
    Idle,
    /// Reading a request header.
    Header,
    /// The proxy has the request (its body deadline and upstream timeouts apply).
    Request,
}

/// A connection's phase and the deadline of that phase. Shared by the connection's stream and
/// the request being served on it (one task at a time, hence relaxed atomics).
#[derive(Debug)]
pub struct ConnState {
    base: tokio::time::Instant,
    phase: AtomicU8,
    /// Microseconds after `base`.
    deadline_us: AtomicU64,
}

impl ConnState {
    fn new(header_timeout: Duration) -> ConnState {
        ConnState {
            base: tokio::time::Instant::now(),
            phase: AtomicU8::new(Phase::Header as u8),
            deadline_us: AtomicU64::new(header_timeout.as_micros() as u64),
        }
    }

    /// The phase.
    pub fn current(&self) -> Phase {
        match self.phase.load(Relaxed) {
            0 => Phase::Idle,
            1 => Phase::Header,
            _ => Phase::Request,
        }
    }

    /// The phase and its deadline.
    pub fn phase(&self) -> (Phase, tokio::time::Instant) {
        let deadline = self.base + Duration::from_micros(self.deadline_us.load(Relaxed));
        (self.current(), deadline)
    }

    fn set(&self, phase: Phase, within: Duration) {
        let from_base = self.base.elapsed() + within;
        self.deadline_us.store(from_base.as_micros() as u64, Relaxed);
        self.phase.store(phase as u8, Relaxed);
    }

    fn header_started(&self, within: Duration) {
        self.set(Phase::Header, within);
    }

    fn idle(&self, within: Duration) {
        self.set(Phase::Idle, within);
    }

    /// The proxy took the request: the header deadline no longer applies.
    pub fn request_started(&self) {
        self.phase.store(Phase::Request as u8, Relaxed);
    }
}

/// Marks the session's request as taken by the app, given the user context `Guard` put on it.
pub fn request_started(context: Option<Box<dyn std::any::Any + Send + Sync>>) {
    if let Some(state) = context.and_then(|c| c.downcast::<Arc<ConnState>>().ok()) {
        state.request_started();
    }
}

/// What a listener's connections share.
struct ConnShared {
    limits: ConnLimits,
    canned: Canned,
    metrics: ConnectionMetrics,
    open: AtomicUsize,
}

/// A listener's app, with its connections bounded (see the module doc).
pub struct Guard<A> {
    app: Arc<A>,
    shared: Arc<ConnShared>,
}

impl<A> Guard<A> {
    pub fn new(app: A, limits: ConnLimits, metrics: ConnectionMetrics) -> Guard<A> {
        Guard {
            app: Arc::new(app),
            shared: Arc::new(ConnShared {
                canned: Canned::new(limits.header_timeout, limits.max_header_bytes),
                limits,
                metrics,
                open: AtomicUsize::new(0),
            }),
        }
    }
}

/// One open connection, counted until dropped.
struct Slot<'a>(&'a ConnShared);

impl<'a> Slot<'a> {
    /// Counts a new connection; `None` when it is over the cap.
    fn take(shared: &'a ConnShared) -> Option<Slot<'a>> {
        let n = shared.open.fetch_add(1, Relaxed) + 1;
        let slot = Slot(shared);
        shared.metrics.open.set(n as i64);
        let cap = shared.limits.max_connections;
        (cap == 0 || n <= cap).then_some(slot)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let n = self.0.open.fetch_sub(1, Relaxed) - 1;
        self.0.metrics.open.set(n as i64);
    }
}

#[async_trait]
impl<A> ServerApp for Guard<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let shared = &self.shared;
        let Some(_slot) = Slot::take(shared) else {
            shared.metrics.over_capacity.inc();
            let answer = async {
                stream.write_all(&shared.canned.over_capacity).await?;
                stream.flush().await
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
            return None;
        };
        let state = Arc::new(ConnState::new(shared.limits.header_timeout));
        let h2 =
            matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) || self.app.server_options().is_some_and(|o| o.h2c);
        let stream: Stream = Box::new(Guarded::new(stream, Arc::clone(&state), Arc::clone(shared)));
        if h2 {
            // HTTP/2 has its own framing and idle handling; only the cap applies here.
            state.request_started();
            return self.app.process_new(stream, shutdown).await;
        }
        let mut session = ServerSession::new_http1(stream);
        let mut settings = None;
        loop {
            if let Some(s) = settings {
                pingora::apps::HttpPersistentSettings::apply_to_session(s, &mut session);
            }
            // Keep-alive without Pingora's own per-read timeout: the stream bounds each phase.
            session.set_keepalive(if *shutdown.borrow() { None } else { Some(0) });
            session.set_pipelining_enabled(true);
            session.set_connection_user_context(Some(Box::new(Arc::clone(&state))));
            let reused = self.app.process_new_http(session, shutdown).await?;
            let (stream, next) = ReusedHttpStream::consume(reused);
            state.idle(shared.limits.keepalive_timeout);
            session = ServerSession::new_http1(stream);
            settings = next;
        }
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn phases_carry_their_deadlines() {
        let s = ConnState::new(Duration::from_secs(10));
        let (phase, deadline) = s.phase();
        assert_eq!(phase, Phase::Header);
        assert_eq!(deadline - s.base, Duration::from_secs(10));
        s.request_started();
        assert_eq!(s.phase().0, Phase::Request);
        tokio::time::advance(Duration::from_secs(3)).await;
        s.idle(Duration::from_secs(75));
        let (phase, deadline) = s.phase();
        assert_eq!(phase, Phase::Idle);
        assert_eq!(deadline - s.base, Duration::from_secs(78));
        request_started(Some(Box::new(Arc::new(ConnState::new(Duration::ZERO)))));
        request_started(Some(Box::new(5u8)));
        request_started(None);
    }
}
