//! The node's one connection to Redis, on its own thread (a current-thread Tokio runtime), so the
//! proxy's threads never wait on it except for a lease they asked for.
//!
//! - Leases: requests queue on a bounded channel; the link takes every request waiting and sends
//!   them as one pipeline of `EVALSHA take` calls (one round trip however many requests), then
//!   answers each on its own oneshot.
//! - Flush, every `FLUSH_MS`: gives back credit idle for `IDLE_MS` (or that a refusal asked to
//!   give back), charges usage beyond leases and usage owed from an outage, and keeps this node's
//!   slot leases alive, all in one `EVALSHA adjust`.
//! - Health: any failed call marks Redis down (logged once, counted); while down, the link tries
//!   to reconnect every `RECONNECT_MS`. Coming back, it checks Redis's epoch key: if Redis lost
//!   its data (a restart without persistence), this node's leases no longer exist there, so its
//!   credit is dropped and slot counts restart; budgets missing in Redis are seeded from what
//!   this node last knew. Owed usage is charged at the next flush.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, oneshot};

use super::account::Counter;
use super::Inner;
use crate::time::unix_ms;

const FLUSH_MS: u64 = 100;
/// Credit unused this long is given back.
pub(super) const IDLE_MS: u64 = 300;
const RECONNECT_MS: u64 = 500;
/// Slot leases live this long in Redis without a heartbeat (a node that died frees its slots).
pub(super) const SLOT_TTL_MS: u64 = 10_000;
/// When a node refused a slot should try again (as `take.lua` answers).
pub(super) const SLOT_RETRY_MS: u64 = 1_000;
const HEARTBEAT_MS: u64 = 1_000;
/// Requests taken into one pipeline at most.
const BATCH: usize = 256;

const TAKE_LUA: &str = include_str!("take.lua");
const ADJUST_LUA: &str = include_str!("adjust.lua");

/// One counter a request needs more of than this node holds.
pub(super) struct LeaseItem {
    /// The scope's accounts (the link counts this node's slots in Redis as soon as they are
    /// granted, before any flush can restate them).
    pub scope: Arc<super::account::ScopeAccounts>,
    pub key: String,
    pub counter: Counter,
    /// Budgets: the window the lease is for.
    pub window: u64,
    pub min: u64,
    pub want: u64,
    pub limit: u64,
    pub p1: String,
    pub p2: String,
    /// `want` holds a chunk: this item set its account's `refilling`, which the answer clears.
    pub chunk: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LeaseReply {
    /// `(granted, cluster-wide level after)` per item, in order.
    Granted(Vec<(u64, u64)>),
    /// Item `index` refused; nothing was leased. `level`: that counter's cluster-wide use.
    Refused {
        index: usize,
        retry_after_ms: u64,
        over_ceiling: bool,
        level: u64,
    },
}

pub(super) struct LeaseRequest {
    pub items: Vec<LeaseItem>,
    /// The waiting request; `None` for a prefetch, whose grant the link adds to the credit.
    pub reply: Option<oneshot::Sender<Result<LeaseReply, ()>>>,
}

impl LeaseRequest {
    /// Credits what was granted beyond each item's `min` (the chunk), frees the accounts for the
    /// next chunk, then answers the waiting request. A waiter that is gone (it timed out) never
    /// uses its `min`: that is credited too, so nothing leased is stranded.
    fn answer(mut self, reply: Result<LeaseReply, ()>) {
        self.credit(&reply, true);
        self.release_chunks();
        if let Some(tx) = self.reply.take() {
            if let Err(reply) = tx.send(reply) {
                self.credit(&reply, false);
            }
        }
    }

    /// Adds a granted lease to the credit: what each item got beyond its `min` (`beyond_min`),
    /// or its `min` (a waiter that is gone).
    fn credit(&self, reply: &Result<LeaseReply, ()>, beyond_min: bool) {
        let Ok(LeaseReply::Granted(grants)) = reply else {
            return;
        };
        let now = unix_ms();
        for (item, &(granted, level)) in self.items.iter().zip(grants) {
            let a = item.scope.get(item.counter);
            let same_window =
                !matches!(item.counter, Counter::Budget(_)) || a.window.load(Ordering::Acquire) == item.window;
            if !same_window {
                // The window ended while the lease was out: its credit belongs there.
                continue;
            }
            if beyond_min {
                a.add(i64::try_from(granted.saturating_sub(item.min)).unwrap_or(0));
                a.observe(level, now);
            } else {
                a.add(i64::try_from(granted.min(item.min)).unwrap_or(0));
            }
        }
    }

    /// Clears `refilling` on the accounts whose chunk this request carried.
    fn release_chunks(&self) {
        for item in self.items.iter().filter(|i| i.chunk) {
            item.scope.get(item.counter).refilling.store(false, Ordering::Release);
        }
    }

    /// A request the link never got (its queue was full).
    pub(super) fn unsent(self) {
        self.release_chunks();
    }
}

/// One give-back, charge or heartbeat of the flush, with what to undo if it fails.
struct Adjust {
    scope: Arc<super::account::ScopeAccounts>,
    counter: Counter,
    op: Op,
    amount: u64,
    args: [String; 6],
    key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Give,
    Charge,
    /// Keeps this node's slot count alive.
    Beat,
    /// Sets this node's slot count (after a reconnect: while the link was down, another node
    /// may have cleared it as expired).
    SetSlots,
}

struct Conn {
    con: MultiplexedConnection,
    take_sha: String,
    adjust_sha: String,
}

pub(super) struct Link {
    inner: Arc<Inner>,
    client: redis::Client,
    rx: mpsc::Receiver<LeaseRequest>,
    conn: Option<Conn>,
    epoch: Option<String>,
    last_beat_ms: u64,
    last_prune_ms: u64,
    /// Slot counts to be restated at the next flush (set on a reconnect).
    restate_slots: bool,
}

/// Starts the link thread. `ready` gets the first connection attempt's outcome.
pub(super) fn spawn(
    inner: Arc<Inner>,
    client: redis::Client,
    rx: mpsc::Receiver<LeaseRequest>,
    ready: std::sync::mpsc::Sender<bool>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("tollgate-limits-redis".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "limits: cannot start the Redis link's runtime");
                    let _ = ready.send(false);
                    return;
                }
            };
            let mut link = Link {
                inner,
                client,
                rx,
                conn: None,
                epoch: None,
                last_beat_ms: 0,
                last_prune_ms: unix_ms(),
                restate_slots: false,
            };
            rt.block_on(async move {
                let up = link.connect().await;
                let _ = ready.send(up);
                link.run().await;
            });
        })
        .map(|_| ())
}

impl Link {
    async fn run(&mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(FLUSH_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_attempt = tokio::time::Instant::now();
        loop {
            tokio::select! {
                req = self.rx.recv() => {
                    let Some(first) = req else { return };
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match self.rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    self.lease(batch).await;
                }
                _ = tick.tick() => {
                    if self.conn.is_none() {
                        if last_attempt.elapsed() >= Duration::from_millis(RECONNECT_MS) {
                            last_attempt = tokio::time::Instant::now();
                            self.connect().await;
                        }
                    } else {
                        self.flush().await;
                    }
                    let now = unix_ms();
                    if now.saturating_sub(self.last_prune_ms) >= 60_000 {
                        self.last_prune_ms = now;
                        self.inner.prune(now);
                    }
                }
            }
        }
    }

    /// Connects, loads the scripts and checks the epoch. Returns whether Redis is up.
    async fn connect(&mut self) -> bool {
        // After an outage, restate what this node holds (not on the first connect: there is
        // nothing yet).
        let reconnect = self.epoch.is_some();
        match self.try_connect().await {
            Ok(conn) => {
                self.restate_slots = reconnect;
                self.conn = Some(conn);
                self.inner.set_up(true, None);
                true
            }
            Err(e) => {
                self.conn = None;
                self.inner.set_up(false, Some(&e));
                false
            }
        }
    }

    async fn try_connect(&mut self) -> Result<Conn, String> {
        let timeout = self.inner.settings.timeout;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let mut con = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| e.to_string())?;
        let load = |lua: &'static str| {
            let mut c = redis::cmd("SCRIPT");
            c.arg("LOAD").arg(lua);
            c
        };
        let take_sha: String = load(TAKE_LUA).query_async(&mut con).await.map_err(|e| e.to_string())?;
        let adjust_sha: String = load(ADJUST_LUA)
            .query_async(&mut con)
            .await
            .map_err(|e| e.to_string())?;
        // The epoch says whether this is still the Redis that holds our leases.
        let epoch_key = format!("{}:epoch", self.inner.settings.prefix);
        let fresh = format!("{:016x}", rand::random::<u64>());
        let _: redis::Value = redis::cmd("SET")
            .arg(&epoch_key)
            .arg(&fresh)
            .arg("NX")
            .query_async(&mut con)
            .await
            .map_err(|e| e.to_string())?;
        let epoch: String = redis::cmd("GET")
            .arg(&epoch_key)
            .query_async(&mut con)
            .await
            .map_err(|e| e.to_string())?;
        if self.epoch.as_ref().is_some_and(|known| *known != epoch) {
            tracing::warn!("limits: Redis lost its counters (restarted without persistence); leases start over");
            self.inner.forget_leases();
        }
        self.epoch = Some(epoch);
        self.inner.stats.calls.fetch_add(4, Ordering::Relaxed);
        Ok(Conn {
            con,
            take_sha,
            adjust_sha,
        })
    }

    fn fail(&mut self, error: &str) {
        self.conn = None;
        self.inner.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.inner.set_up(false, Some(error));
    }

    async fn lease(&mut self, batch: Vec<LeaseRequest>) {
        let Some(conn) = self.conn.as_mut() else {
            for r in batch {
                r.answer(Err(()));
            }
            return;
        };
        let mut pipe = redis::pipe();
        for r in &batch {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(&conn.take_sha).arg(r.items.len());
            for item in &r.items {
                cmd.arg(&item.key);
            }
            for item in &r.items {
                cmd.arg(item.counter.script_kind())
                    .arg(item.min)
                    .arg(item.want)
                    .arg(item.limit)
                    .arg(&item.p1)
                    .arg(&item.p2)
                    .arg("");
            }
            pipe.add_command(cmd);
        }
        self.inner.stats.calls.fetch_add(1, Ordering::Relaxed);
        let answers: Result<Vec<Vec<i64>>, _> = pipe.query_async(&mut conn.con).await;
        match answers {
            Ok(answers) if answers.len() == batch.len() => {
                for (r, a) in batch.into_iter().zip(answers) {
                    let reply = parse_take(&a, r.items.len());
                    if let Some(LeaseReply::Granted(grants)) = &reply {
                        for (item, (granted, _)) in r.items.iter().zip(grants) {
                            if item.counter == Counter::Slots {
                                item.scope
                                    .get(Counter::Slots)
                                    .leased
                                    .fetch_add(*granted, Ordering::AcqRel);
                            }
                        }
                    }
                    r.answer(reply.ok_or(()));
                }
            }
            Ok(_) => {
                for r in batch {
                    r.answer(Err(()));
                }
                self.fail("unexpected reply to a lease");
            }
            Err(e) => {
                for r in batch {
                    r.answer(Err(()));
                }
                self.fail(&e.to_string());
            }
        }
    }

    /// Gives back idle credit, charges debts and owed usage, renews slot leases.
    async fn flush(&mut self) {
        let now = unix_ms();
        let beat = now.saturating_sub(self.last_beat_ms) >= HEARTBEAT_MS;
        if beat {
            self.last_beat_ms = now;
        }
        let restate = std::mem::take(&mut self.restate_slots);
        let ops = self.collect(now, beat, restate);
        if ops.is_empty() {
            return;
        }
        let Some(conn) = self.conn.as_mut() else {
            undo(&ops);
            return;
        };
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&conn.adjust_sha).arg(ops.len());
        for op in &ops {
            cmd.arg(&op.key);
        }
        for op in &ops {
            for a in &op.args {
                cmd.arg(a);
            }
        }
        self.inner.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result: Result<i64, _> = cmd.query_async(&mut conn.con).await;
        if let Err(e) = result {
            undo(&ops);
            self.restate_slots |= restate;
            self.fail(&e.to_string());
        }
    }

    fn collect(&self, now: u64, beat: bool, restate: bool) -> Vec<Adjust> {
        let inner = &self.inner;
        let mut ops = Vec::new();
        for (kind, map) in inner.maps() {
            for entry in map.iter() {
                let (id, scope) = (entry.key(), entry.value());
                for (counter, account) in scope.iter() {
                    let limit = account.limit.load(Ordering::Relaxed);
                    let window = account.window.load(Ordering::Acquire);
                    let mut push = |op: Op, amount: u64| {
                        let (key, args) = inner.adjust_args(kind, id, counter, op_code(op), amount, limit, window);
                        ops.push(Adjust {
                            scope: Arc::clone(scope),
                            counter,
                            op,
                            amount,
                            args,
                            key,
                        });
                    };
                    if let Counter::Budget(period) = counter {
                        if window != 0 && period.window(now).0 > window {
                            // An ended window: its key expires on its own; nothing to give back.
                            account.enter_window(period.window(now).0);
                            continue;
                        }
                    }
                    let credit = account.credit();
                    if credit < 0 {
                        if account.clear(credit) {
                            push(Op::Charge, credit.unsigned_abs());
                        }
                    } else if credit > 0
                        && (account.give_now.swap(false, Ordering::AcqRel)
                            || now.saturating_sub(account.last_use_ms.load(Ordering::Relaxed)) >= IDLE_MS)
                        && account.clear(credit)
                    {
                        if counter == Counter::Slots {
                            let _ = account.leased.fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                                Some(l.saturating_sub(credit as u64))
                            });
                        }
                        account.gave_back(credit as u64);
                        push(Op::Give, credit as u64);
                    }
                    let owed = account.owed.swap(0, Ordering::AcqRel);
                    if owed > 0 && counter != Counter::Slots {
                        push(Op::Charge, owed);
                    }
                    let leased = account.leased.load(Ordering::Acquire);
                    if counter == Counter::Slots && restate {
                        push(Op::SetSlots, leased);
                    } else if beat && counter == Counter::Slots && leased > 0 {
                        push(Op::Beat, 0);
                    }
                }
            }
        }
        ops
    }
}

fn op_code(op: Op) -> &'static str {
    match op {
        Op::Give => "g",
        Op::Charge => "c",
        Op::Beat => "h",
        Op::SetSlots => "s",
    }
}

/// A flush that did not reach Redis: the credit stays here (and the level as this node knew it),
/// charges wait as owed usage.
fn undo(ops: &[Adjust]) {
    for op in ops {
        let account = op.scope.get(op.counter);
        match op.op {
            Op::Give => {
                account.give_failed(op.amount);
                if op.counter == Counter::Slots {
                    account.leased.fetch_add(op.amount, Ordering::AcqRel);
                }
            }
            Op::Charge => {
                account.owed.fetch_add(op.amount, Ordering::AcqRel);
            }
            Op::Beat | Op::SetSlots => {}
        }
    }
}

/// `take.lua`'s reply: `{1, grant, level, ...}` or `{0, index, retry_ms, over_ceiling, level}`.
pub(super) fn parse_take(a: &[i64], items: usize) -> Option<LeaseReply> {
    match a.first()? {
        1 if a.len() == 1 + 2 * items => Some(LeaseReply::Granted(
            a[1..]
                .chunks_exact(2)
                .map(|p| (p[0].max(0) as u64, p[1].max(0) as u64))
                .collect(),
        )),
        0 if a.len() == 5 => {
            let index = usize::try_from(a[1]).ok()?.checked_sub(1).filter(|i| *i < items)?;
            Some(LeaseReply::Refused {
                index,
                retry_after_ms: a[2].max(1) as u64,
                over_ceiling: a[3] == 1,
                level: a[4].max(0) as u64,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(min: u64, chunk: bool, reply: Option<oneshot::Sender<Result<LeaseReply, ()>>>) -> LeaseRequest {
        let scope = Arc::new(super::super::account::ScopeAccounts::default());
        scope.get(Counter::Tpm).refilling.store(chunk, Ordering::Release);
        let item = LeaseItem {
            scope,
            key: "k".into(),
            counter: Counter::Tpm,
            window: 0,
            min,
            want: min + 100,
            limit: 1_000,
            p1: String::new(),
            p2: String::new(),
            chunk,
        };
        LeaseRequest {
            items: vec![item],
            reply,
        }
    }

    #[test]
    fn an_answer_credits_the_chunk_and_frees_the_account() {
        let (tx, mut rx) = oneshot::channel();
        let r = request(7, true, Some(tx));
        let a = Arc::clone(&r.items[0].scope);
        r.answer(Ok(LeaseReply::Granted(vec![(107, 500)])));
        assert_eq!(a.get(Counter::Tpm).credit(), 100, "the request uses its 7");
        assert!(!a.get(Counter::Tpm).refilling.load(Ordering::Acquire));
        assert_eq!(rx.try_recv(), Ok(Ok(LeaseReply::Granted(vec![(107, 500)]))));

        // An item that carried no chunk leaves the account's flag to the one that did.
        let (tx, _rx) = oneshot::channel();
        let r = request(7, false, Some(tx));
        let a = Arc::clone(&r.items[0].scope);
        a.get(Counter::Tpm).refilling.store(true, Ordering::Release);
        r.answer(Ok(LeaseReply::Granted(vec![(7, 500)])));
        assert_eq!(a.get(Counter::Tpm).credit(), 0);
        assert!(a.get(Counter::Tpm).refilling.load(Ordering::Acquire));

        // A refusal credits nothing and frees the account.
        let r = request(7, true, None);
        let a = Arc::clone(&r.items[0].scope);
        r.answer(Ok(LeaseReply::Refused {
            index: 0,
            retry_after_ms: 1,
            over_ceiling: false,
            level: 1_000,
        }));
        assert_eq!(a.get(Counter::Tpm).credit(), 0);
        assert!(!a.get(Counter::Tpm).refilling.load(Ordering::Acquire));
    }

    #[test]
    fn a_grant_whose_waiter_gave_up_is_credited_whole() {
        let (tx, rx) = oneshot::channel();
        drop(rx);
        let r = request(7, true, Some(tx));
        let a = Arc::clone(&r.items[0].scope);
        r.answer(Ok(LeaseReply::Granted(vec![(107, 500)])));
        assert_eq!(a.get(Counter::Tpm).credit(), 107, "nothing leased is stranded");

        // A request never sent frees the account it took.
        let r = request(7, true, None);
        let a = Arc::clone(&r.items[0].scope);
        r.unsent();
        assert!(!a.get(Counter::Tpm).refilling.load(Ordering::Acquire));
    }

    #[test]
    fn take_replies_are_checked() {
        assert_eq!(
            parse_take(&[1, 5, 10, 2, 3], 2),
            Some(LeaseReply::Granted(vec![(5, 10), (2, 3)]))
        );
        assert_eq!(parse_take(&[1, 5, 10], 2), None, "too short");
        assert_eq!(
            parse_take(&[0, 2, 1500, 1, 90], 2),
            Some(LeaseReply::Refused {
                index: 1,
                retry_after_ms: 1500,
                over_ceiling: true,
                level: 90
            })
        );
        assert_eq!(parse_take(&[0, 2, 1500, 1], 2), None, "no level");
        assert_eq!(parse_take(&[0, 3, 1500, 0, 9], 2), None, "index out of range");
        assert_eq!(parse_take(&[0, 0, 1500, 0, 9], 2), None, "indexes are 1-based");
        assert_eq!(parse_take(&[], 1), None);
        assert_eq!(parse_take(&[7], 0), None);
    }
}
