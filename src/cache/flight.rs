//! Coalescing: concurrent identical misses make one upstream call. The first request for a key
//! leads (it makes the call); the others follow, waiting for its answer for a bounded time, then
//! make their own call. The same lock serves stale-while-revalidate: a refresh is started only by
//! a request that becomes leader without waiting (`try_lead`), so one key has at most one refresh
//! in flight.
//!
//! Invariants: a key has at most one leader at a time; a leader that ends without publishing
//! (its call failed, its client left, it panicked) releases its followers at once, with nothing,
//! so each makes its own call; no follower waits longer than its bound; the table holds only keys
//! with a flight in progress.

use std::sync::Arc;
use std::time::Duration;

use dashmap::mapref::entry::Entry as MapEntry;
use dashmap::DashMap;
use tokio::sync::watch;

use super::key::Key;

/// The flights in progress, by key.
pub struct Flights<T> {
    table: Arc<DashMap<Key, watch::Receiver<Option<Arc<T>>>>>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Flights {
            table: Arc::new(DashMap::new()),
        }
    }
}

/// A request's part in a flight.
pub enum Role<T> {
    /// Make the call, then `publish` (or drop the leader to release the followers).
    Leader(Leader<T>),
    /// Wait with `Follower::wait`.
    Follower(Follower<T>),
}

/// The right and duty to make the call for a key.
pub struct Leader<T> {
    key: Key,
    tx: watch::Sender<Option<Arc<T>>>,
    table: Arc<DashMap<Key, watch::Receiver<Option<Arc<T>>>>>,
}

/// A request waiting for a leader's answer.
pub struct Follower<T> {
    rx: watch::Receiver<Option<Arc<T>>>,
}

impl<T> Flights<T> {
    /// Leads the flight for `key`, or follows the one in progress.
    pub fn join(&self, key: Key) -> Role<T> {
        match self.table.entry(key) {
            MapEntry::Occupied(e) => Role::Follower(Follower { rx: e.get().clone() }),
            MapEntry::Vacant(e) => {
                let (tx, rx) = watch::channel(None);
                e.insert(rx);
                Role::Leader(Leader {
                    key,
                    tx,
                    table: Arc::clone(&self.table),
                })
            }
        }
    }

    /// Leads the flight for `key` if none is in progress (a background refresh: never waits).
    pub fn try_lead(&self, key: Key) -> Option<Leader<T>> {
        match self.join(key) {
            Role::Leader(l) => Some(l),
            Role::Follower(_) => None,
        }
    }

    /// Keys with a flight in progress.
    pub fn in_flight(&self) -> usize {
        self.table.len()
    }
}

impl<T> Leader<T> {
    /// Hands the answer to every follower and ends the flight.
    pub fn publish(self, answer: Arc<T>) {
        // Followers see the value even after the sender is gone; `Drop` ends the flight.
        self.tx.send_replace(Some(answer));
    }
}

impl<T> Drop for Leader<T> {
    fn drop(&mut self) {
        // A request arriving from now on starts a new flight. The sender goes with `self`: a
        // follower still waiting (no answer was published) is released with nothing.
        self.table.remove(&self.key);
    }
}

impl<T> Follower<T> {
    /// The leader's answer; None when the leader ended without one or `bound` passed first (then
    /// the caller makes its own call).
    pub async fn wait(mut self, bound: Duration) -> Option<Arc<T>> {
        let done = self.rx.wait_for(Option::is_some);
        match tokio::time::timeout(bound, done).await {
            Ok(Ok(v)) => v.clone(),
            // The leader ended without an answer, or time is up.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
