//! Cluster mode (`limits.backend: redis`): rate limits, concurrency caps and budgets shared by
//! every gateway node through one Redis, without a Redis call per request.
//!
//! Leases. Each node holds, per counter (a scope's rpm, tpm, tpd, slots, or a budget window), a
//! *credit*: quota it has taken from the shared counter in Redis and not used yet. A request
//! reserves from the credit with one compare-and-swap (`account.rs`), exactly as the local
//! limiter reserves from its atomics. Only when a credit cannot cover a request does the node
//! call Redis, once for all the counters that are short, with an atomic script (`take.lua`)
//! that leases each shortfall plus a chunk (1/16 of a rate limit, 1/8 of a concurrency cap,
//! up to 1/32 of a budget), all or nothing. Redis sees one call per lease, not per request.
//! One chunk per counter is on its way at a time: requests short while it is (a burst) lease
//! only their own shortfall, or one node's burst would lease a chunk each and take the quota
//! every other node needs.
//!
//! Why the limits still hold across nodes: Redis grants a lease only if the counter stays within
//! its limit with it, and a node spends no more than it leased, so the sum of every node's
//! reservations and settled use never exceeds the limit. What can exceed it is the same as on
//! one node: a request that used more than it reserved (settled as a debt, charged to Redis at
//! the next flush). So a budget hammered through several nodes ends within one request's
//! estimate of its limit, as on one node.
//!
//! The price of leasing is quota a node holds and another cannot use. It is bounded: Redis
//! grants at most what is left (leases shrink near a limit), credit idle for 300 ms is given
//! back, and a node refused by Redis gives back its credit of that counter at once. A refusal
//! can therefore happen while another node holds a little unused credit; a retry after the
//! `Retry-After` finds it given back.
//!
//! Refusals cost Redis little too: a node remembers a refusal for 100 ms and refuses meanwhile,
//! without a call, what would not fit on the level Redis reported (`refusal.rs`).
//!
//! Headers: `x-ratelimit-remaining-*` is the limit less the cluster-wide use as of this node's
//! last lease (drained since, for rate buckets), plus this node's own credit. Other nodes'
//! reservations since their last lease are not in it: the figure is exact on one node and off
//! by at most the other nodes' leases in a cluster.
//!
//! Redis down (`on_failure`): `open` serves with this node's local limiter (each node then
//! enforces the full limits on its own; budgets are seeded with the last cluster-wide spend
//! this node saw), and the usage is owed to Redis and charged when it is back; `closed` refuses
//! with 503. Either way the change is logged once and counted
//! (`tollgate_limits_backend_up`, `tollgate_limits_backend_unavailable_total{action}`).
//!
//! Redis must be a single primary (or Sentinel-managed): the script touches several keys at once,
//! which Redis Cluster allows only within one hash slot.

mod account;
mod admission;
mod link;
mod refusal;

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};

use self::account::{Counter, ScopeAccounts};
pub use self::admission::ClusterAdmission;
use self::admission::{bit, p_index, HeldScope, Short};
use self::link::{LeaseItem, LeaseReply, LeaseRequest};
use self::refusal::{cap_of, Known};
use super::limiter::{Demand, Limiter, Limits, Period, RateHeaders, Rejection, Scope, ScopeKind};
use crate::time::unix_ms;

/// What to do with requests while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Serve, enforcing each node's local limits.
    Open,
    /// Refuse with 503.
    Closed,
}

impl FailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Open => "open",
            FailMode::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `redis://[user:password@]host:port/db`, or `rediss://` for TLS.
    pub url: crate::secret::Secret,
    /// The CAs (PEM) to check a `rediss://` server against instead of the system's.
    pub ca: Option<Vec<u8>>,
    /// Prefix of every key this gateway writes.
    pub prefix: String,
    /// Connect and reply timeout of each Redis call; a lease that takes longer counts as Redis
    /// being unavailable for that request.
    pub timeout: Duration,
    pub on_failure: FailMode,
}

/// The link's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Round trips to Redis (a pipeline of leases counts once).
    pub calls: AtomicU64,
    /// Requests that needed a lease (the rest were served from credit).
    pub leases: AtomicU64,
    /// Requests admitted from credit alone.
    pub local: AtomicU64,
    /// Requests refused without a call, on a refusal Redis had just given (`KNOWN_REFUSAL_MS`).
    pub known: AtomicU64,
    pub errors: AtomicU64,
    /// Requests served with local limits because Redis was unavailable.
    pub failed_open: AtomicU64,
    /// Requests refused because Redis was unavailable.
    pub failed_closed: AtomicU64,
}

/// A request the cluster could not decide.
#[derive(Debug)]
pub enum Refused {
    /// A limit refused it (nothing reserved).
    Limit(Rejection),
    /// Redis is unreachable or too slow.
    Unavailable,
}

type ScopeMap = DashMap<Box<str>, Arc<ScopeAccounts>, ahash::RandomState>;

pub(super) struct Inner {
    scopes: [ScopeMap; 5],
    up: AtomicBool,
    /// Set once the first state change has been logged (so start-up logs too).
    announced: AtomicBool,
    pub stats: Stats,
    settings: Settings,
    node: String,
    local: Arc<Limiter>,
}

fn kind_index(kind: ScopeKind) -> usize {
    match kind {
        ScopeKind::Key => 0,
        ScopeKind::Team => 1,
        ScopeKind::User => 2,
        ScopeKind::Provider => 3,
        ScopeKind::Ip => 4,
    }
}

impl Inner {
    fn maps(&self) -> impl Iterator<Item = (ScopeKind, &ScopeMap)> {
        ScopeKind::ALL.into_iter().map(|k| (k, &self.scopes[kind_index(k)]))
    }

    fn scope(&self, kind: ScopeKind, id: &str) -> Arc<ScopeAccounts> {
        let map = &self.scopes[kind_index(kind)];
        if let Some(s) = map.get(id) {
            return Arc::clone(&s);
        }
        Arc::clone(&map.entry(Box::from(id)).or_default())
    }

    /// `{prefix}:{kind}:{counter}[:{window}]:{id}`: the id last, so no id can forge another
    /// scope's key.
    fn key(&self, kind: ScopeKind, id: &str, counter: Counter, window: u64) -> String {
        let mut k = String::with_capacity(self.settings.prefix.len() + id.len() + 40);
        let _ = write!(k, "{}:{}:{}:", self.settings.prefix, kind.as_str(), counter.name());
        if matches!(counter, Counter::Budget(_)) {
            let _ = write!(k, "{window}:");
        }
        k.push_str(id);
        k
    }

    /// The six `adjust.lua` arguments of one operation, and its key.
    #[allow(clippy::too_many_arguments)]
    fn adjust_args(
        &self,
        kind: ScopeKind,
        id: &str,
        counter: Counter,
        op: &str,
        amount: u64,
        limit: u64,
        window: u64,
    ) -> (String, [String; 6]) {
        let (p1, p2) = match counter {
            Counter::Rpm | Counter::Tpm | Counter::Tpd => (counter.period_ms().unwrap_or(1).to_string(), String::new()),
            Counter::Budget(p) => (p.window(window).1.to_string(), "0".to_string()),
            Counter::Slots => (self.node.clone(), link::SLOT_TTL_MS.to_string()),
        };
        let limit = if limit == u64::MAX { 0 } else { limit };
        (
            self.key(kind, id, counter, window),
            [
                counter.script_kind().to_string(),
                op.to_string(),
                amount.to_string(),
                limit.to_string(),
                p1,
                p2,
            ],
        )
    }

    /// Records a change of Redis's reachability: logged once per change, and on the way down
    /// the local limiter's budgets learn the cluster-wide spend (for `on_failure: open`).
    fn set_up(&self, up: bool, error: Option<&str>) {
        let was = self.up.swap(up, Ordering::AcqRel);
        let first = !self.announced.swap(true, Ordering::AcqRel);
        if was == up && !first {
            return;
        }
        if up {
            if first {
                tracing::info!(node = %self.node, "limits: shared with every node through Redis");
            } else {
                tracing::info!("limits: Redis reachable again; owed usage is charged and leases resume");
            }
        } else {
            tracing::warn!(
                error = error.unwrap_or(""),
                on_failure = self.settings.on_failure.as_str(),
                "limits: Redis unreachable; {}",
                match self.settings.on_failure {
                    FailMode::Open => "serving with this node's local limits until it is back",
                    FailMode::Closed => "refusing requests with limits (503) until it is back",
                }
            );
            self.seed_local_budgets();
        }
    }

    /// The local limiter takes over with the cluster-wide spend this node last saw.
    fn seed_local_budgets(&self) {
        let now = unix_ms();
        for (kind, map) in self.maps() {
            for entry in map.iter() {
                for period in Period::ALL {
                    let a = entry.value().get(Counter::Budget(period));
                    if a.window.load(Ordering::Acquire) == period.window(now).0 {
                        if let Some(used) = a.use_now(Counter::Budget(period), 0, now) {
                            let used = i64::try_from(used).unwrap_or(i64::MAX);
                            self.local.seed_spent(kind, entry.key(), period, used, now);
                        }
                    }
                }
            }
        }
    }

    /// Redis lost its data: the leases this node holds are gone there.
    fn forget_leases(&self) {
        for (_, map) in self.maps() {
            for entry in map.iter() {
                for (_, a) in entry.value().iter() {
                    let credit = a.credit();
                    if credit < 0 && a.clear(credit) {
                        a.owed.fetch_add(credit.unsigned_abs(), Ordering::AcqRel);
                    } else if credit > 0 {
                        a.clear(credit);
                    }
                    a.leased.store(0, Ordering::Release);
                }
            }
        }
    }

    /// Forgets scopes that hold nothing and were not used for a minute.
    fn prune(&self, now: u64) -> usize {
        let mut removed = 0;
        for (_, map) in self.maps() {
            map.retain(|_, s| {
                let keep = Arc::strong_count(s) > 1 || !s.is_idle(now, 60_000);
                removed += usize::from(!keep);
                keep
            });
        }
        removed
    }
}

/// The cluster side of the limiter: leases from Redis, spent locally.
pub struct Cluster {
    inner: Arc<Inner>,
    tx: mpsc::Sender<LeaseRequest>,
}

/// One counter a request reserves in, and how much.
struct Need {
    tokens: u64,
    cost: u64,
    ceiling: f64,
}

fn counters<'a>(limits: &'a Limits, need: &'a Need) -> impl Iterator<Item = (Counter, u64, u64)> + 'a {
    let rates = [
        (Counter::Rpm, limits.rpm, 1),
        (Counter::Tpm, limits.tpm, need.tokens),
        (Counter::Tpd, limits.tpd, need.tokens),
        (Counter::Slots, limits.concurrency.map(u64::from), 1),
    ];
    let rates = rates.into_iter().filter_map(|(c, l, a)| l.map(|l| (c, l, a)));
    let budgets = Period::ALL
        .into_iter()
        .filter_map(|p| limits.budget_nanos(p).map(|l| (Counter::Budget(p), l, need.cost)));
    rates.chain(budgets)
}

impl Cluster {
    /// Starts the link to Redis and waits for its first connection (at most the timeout plus a
    /// second). Redis being down at start is not an error: the node starts in `on_failure` mode
    /// and connects when Redis is up. A malformed URL is.
    pub fn start(settings: Settings, local: Arc<Limiter>) -> Result<Cluster, String> {
        let client = crate::redis_client::open("limits.redis", settings.url.expose(), settings.ca.as_deref())?;
        let node = format!(
            "{}-{}-{:08x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into()),
            std::process::id(),
            rand::random::<u32>()
        );
        let timeout = settings.timeout;
        let inner = Arc::new(Inner {
            scopes: Default::default(),
            up: AtomicBool::new(false),
            announced: AtomicBool::new(false),
            stats: Stats::default(),
            settings,
            node,
            local,
        });
        let (tx, rx) = mpsc::channel(4096);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        link::spawn(Arc::clone(&inner), client, rx, ready_tx)
            .map_err(|e| format!("cannot start the Redis link: {e}"))?;
        let _ = ready_rx.recv_timeout(timeout + Duration::from_secs(1));
        Ok(Cluster { inner, tx })
    }

    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub fn on_failure(&self) -> FailMode {
        self.inner.settings.on_failure
    }

    /// Budget spend on record for a scope's current window (from the spend ledger at start):
    /// used to create the window's key in Redis if no node has yet.
    pub fn seed_spent(&self, kind: ScopeKind, id: &str, period: Period, spent_nanos: i64, now_ms: u64) {
        let a = self.inner.scope(kind, id);
        let a = a.get(Counter::Budget(period));
        a.enter_window(period.window(now_ms).0);
        if a.level_ms.load(Ordering::Acquire) == 0 {
            a.observe(u64::try_from(spent_nanos).unwrap_or(0), now_ms);
        }
    }

    /// A ticket that records the request's usage as owed to Redis (for requests served with
    /// local limits while Redis is down).
    pub fn owe(&self, scopes: &[Scope<'_>], now_ms: u64) -> ClusterAdmission {
        let need = Need {
            tokens: 0,
            cost: 0,
            ceiling: 1.0,
        };
        let mut held = Vec::with_capacity(scopes.len());
        for s in scopes {
            let mut h = HeldScope {
                scope: self.inner.scope(s.kind, s.id),
                marks: 0,
                windows: [0; 4],
            };
            for (counter, _, _) in counters(s.limits, &need) {
                h.marks |= bit(counter);
                if let Counter::Budget(p) = counter {
                    let w = p.window(now_ms).0;
                    h.scope.get(counter).enter_window(w);
                    h.windows[p_index(p)] = w;
                }
            }
            held.push(h);
        }
        ClusterAdmission {
            held,
            tokens: 0,
            cost: 0,
            headers: RateHeaders::default(),
            admitted_ms: now_ms,
            owed: true,
            settled: false,
        }
    }

    /// Checks every scope and reserves in all of them (from credit, leasing what is short), or
    /// reserves nothing and says why.
    pub async fn admit(&self, scopes: &[Scope<'_>], demand: Demand, now_ms: u64) -> Result<ClusterAdmission, Refused> {
        if !self.is_up() {
            return Err(Refused::Unavailable);
        }
        let need = Need {
            tokens: demand.tokens,
            cost: u64::try_from(demand.cost_nanos).unwrap_or(0),
            ceiling: if demand.tier_ceiling.is_nan() {
                1.0
            } else {
                demand.tier_ceiling.clamp(0.0, 1.0)
            },
        };
        let mut held = Vec::with_capacity(scopes.len());
        let mut short: Vec<Short> = Vec::new();
        let mut known: Option<Known> = None;
        for (si, s) in scopes.iter().enumerate() {
            let scope = self.inner.scope(s.kind, s.id);
            let mut h = HeldScope {
                scope,
                marks: 0,
                windows: [0; 4],
            };
            for (counter, limit, amount) in counters(s.limits, &need) {
                let a = h.scope.get(counter);
                if a.limit.load(Ordering::Relaxed) != limit {
                    a.limit.store(limit, Ordering::Relaxed);
                }
                a.touch(now_ms);
                if let Counter::Budget(p) = counter {
                    let w = p.window(now_ms).0;
                    a.enter_window(w);
                    h.windows[p_index(p)] = w;
                }
                h.marks |= bit(counter);
                if amount == 0 {
                    continue;
                }
                // A lower tier near the provider's share goes to Redis, which knows the level.
                let ceiling = s.kind == ScopeKind::Provider && need.ceiling < 1.0;
                let near_ceiling = ceiling
                    && matches!(counter, Counter::Rpm | Counter::Tpm)
                    && a.use_now(counter, limit, now_ms)
                        .is_none_or(|u| u.saturating_add(amount) as f64 > need.ceiling * limit as f64);
                if known.is_none() && !near_ceiling && a.take(amount) {
                    self.prefetch(s, &h, counter, amount, now_ms);
                    continue;
                }
                if known.is_none() {
                    let (cap, tiered) = cap_of(s, counter, limit, need.ceiling);
                    known = a.known_short(counter, limit, cap, amount, now_ms).map(|used| Known {
                        index: short.len(),
                        used,
                        limit,
                        cap,
                        tiered,
                    });
                }
                // Known short (this counter or an earlier one): take nothing, start no lease.
                let taken = if near_ceiling || known.is_some() {
                    0
                } else {
                    a.take_some(amount)
                };
                short.push(Short {
                    scope: si,
                    counter,
                    taken,
                    amount,
                });
            }
            held.push(h);
        }
        let mut admission = ClusterAdmission {
            held,
            tokens: need.tokens,
            cost: need.cost,
            headers: RateHeaders::default(),
            admitted_ms: now_ms,
            owed: false,
            settled: false,
        };
        if let Some(known) = known {
            return Err(self.refuse_known(scopes, &mut admission, &short, known, now_ms));
        }
        if short.is_empty() {
            self.inner.stats.local.fetch_add(1, Ordering::Relaxed);
            admission.headers = self.headers(scopes, &admission.held, now_ms);
            return Ok(admission);
        }
        self.inner.stats.leases.fetch_add(1, Ordering::Relaxed);
        match self.lease(scopes, &admission.held, &short, &need).await {
            Ok(LeaseReply::Granted(grants)) => {
                // The link has credited each grant's chunk (all beyond the request's share).
                debug_assert_eq!(grants.len(), short.len());
                admission.headers = self.headers(scopes, &admission.held, now_ms);
                Ok(admission)
            }
            Ok(LeaseReply::Refused {
                index,
                retry_after_ms,
                over_ceiling,
                level,
            }) => {
                let refused = self.refuse(
                    scopes,
                    &mut admission,
                    &short,
                    index,
                    retry_after_ms,
                    over_ceiling,
                    now_ms,
                );
                // Remembered once what the request took is back in the credit (which the
                // level, as this node knows it, is net of).
                let sh = &short[index];
                let h = &admission.held[sh.scope];
                let a = h.scope.get(sh.counter);
                let same_window = match sh.counter {
                    Counter::Budget(p) => a.window.load(Ordering::Acquire) == h.windows[p_index(p)],
                    _ => true,
                };
                if same_window {
                    a.refused(level, now_ms);
                }
                Err(refused)
            }
            Err(()) => {
                self.unwind(&mut admission, &short);
                Err(Refused::Unavailable)
            }
        }
    }

    /// The lease request of one counter: `min` needed now, plus a chunk if `chunk` (the caller
    /// set the account's `refilling`).
    #[allow(clippy::too_many_arguments)]
    fn lease_item(
        &self,
        s: &Scope<'_>,
        h: &HeldScope,
        counter: Counter,
        min: u64,
        amount: u64,
        ceiling: f64,
        chunk: bool,
        now_ms: u64,
    ) -> LeaseItem {
        let a = h.scope.get(counter);
        let limit = a.limit.load(Ordering::Relaxed);
        let window = match counter {
            Counter::Budget(p) => h.windows[p_index(p)],
            _ => 0,
        };
        let (p1, p2) = match counter {
            Counter::Rpm | Counter::Tpm | Counter::Tpd => {
                let ceiling = if s.kind == ScopeKind::Provider { ceiling } else { 1.0 };
                (counter_period(counter), format!("{ceiling}"))
            }
            Counter::Budget(p) => {
                // Seed: what this node knows was spent in the window, if the key is missing.
                let seed = if a.window.load(Ordering::Acquire) == window {
                    a.use_now(counter, limit, now_ms).unwrap_or(0)
                } else {
                    0
                };
                (p.window(window).1.to_string(), seed.to_string())
            }
            Counter::Slots => (self.inner.node.clone(), link::SLOT_TTL_MS.to_string()),
        };
        LeaseItem {
            scope: Arc::clone(&h.scope),
            key: self.inner.key(s.kind, s.id, counter, window),
            counter,
            window,
            min,
            want: if chunk {
                min.saturating_add(counter.chunk(limit, amount))
            } else {
                min
            },
            limit,
            p1,
            p2,
            chunk,
        }
    }

    async fn lease(
        &self,
        scopes: &[Scope<'_>],
        held: &[HeldScope],
        short: &[Short],
        need: &Need,
    ) -> Result<LeaseReply, ()> {
        let now = unix_ms();
        let items = short
            .iter()
            .map(|sh| {
                let min = sh.amount - sh.taken;
                let h = &held[sh.scope];
                // One chunk on its way per account: the rest of a burst leases only its share.
                let chunk = !h.scope.get(sh.counter).refilling.swap(true, Ordering::AcqRel);
                self.lease_item(
                    &scopes[sh.scope],
                    h,
                    sh.counter,
                    min,
                    sh.amount,
                    need.ceiling,
                    chunk,
                    now,
                )
            })
            .collect();
        let (reply, mut rx) = oneshot::channel();
        let request = LeaseRequest {
            items,
            reply: Some(reply),
        };
        if let Err(e) = self.tx.try_send(request) {
            e.into_inner().unsent();
            return Err(());
        }
        match tokio::time::timeout(self.inner.settings.timeout, &mut rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(()),
            Err(_) => {
                // Closed, a late reply can no longer arrive unseen: the link then credits the
                // grant here instead (see `LeaseRequest::answer`). One already sent is used.
                rx.close();
                rx.try_recv().unwrap_or(Err(()))
            }
        }
    }

    /// Credit running low after a request took from it: lease the next chunk in the
    /// background (the link adds it to the credit), so the next requests need not wait.
    fn prefetch(&self, s: &Scope<'_>, h: &HeldScope, counter: Counter, amount: u64, now_ms: u64) {
        let a = h.scope.get(counter);
        let limit = a.limit.load(Ordering::Relaxed);
        let low_water = i64::try_from(counter.chunk(limit, amount) / 2).unwrap_or(i64::MAX);
        if low_water == 0 || a.credit() >= low_water || a.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let item = self.lease_item(s, h, counter, 0, amount, 1.0, true, now_ms);
        let request = LeaseRequest {
            items: vec![item],
            reply: None,
        };
        if let Err(e) = self.tx.try_send(request) {
            e.into_inner().unsent();
        }
    }

    /// `x-ratelimit-*` from the tenant scopes' counters (see the module doc for what
    /// "remaining" means across nodes).
    fn headers(&self, scopes: &[Scope<'_>], held: &[HeldScope], now_ms: u64) -> RateHeaders {
        let mut headers = RateHeaders::default();
        let mut best_requests = f64::INFINITY;
        let mut best_tokens = f64::INFINITY;
        for (s, h) in scopes.iter().zip(held) {
            if s.kind == ScopeKind::Provider {
                continue;
            }
            for (counter, limit) in [
                (Counter::Rpm, s.limits.rpm),
                (Counter::Tpm, s.limits.tpm),
                (Counter::Tpd, s.limits.tpd),
            ] {
                let Some(limit) = limit.filter(|l| *l > 0) else {
                    continue;
                };
                let used = h.scope.get(counter).use_now(counter, limit, now_ms).unwrap_or(0);
                let remaining = limit.saturating_sub(used);
                let share = remaining as f64 / limit as f64;
                let period = counter.period_ms().unwrap_or(account::MINUTE_MS);
                let reset = u64::try_from(u128::from(used.min(limit)) * u128::from(period) / u128::from(limit))
                    .unwrap_or(period);
                if counter == Counter::Rpm {
                    if share < best_requests {
                        best_requests = share;
                        headers.limit_requests = Some(limit);
                        headers.remaining_requests = Some(remaining);
                        headers.reset_requests_ms = Some(reset);
                    }
                } else if share < best_tokens {
                    best_tokens = share;
                    headers.limit_tokens = Some(limit);
                    headers.remaining_tokens = Some(remaining);
                    headers.reset_tokens_ms = Some(reset);
                }
            }
        }
        headers
    }

    /// Forgets idle scopes now (the link also does it every minute).
    pub fn prune_idle(&self, now_ms: u64) -> usize {
        self.inner.prune(now_ms)
    }
}

fn counter_period(counter: Counter) -> String {
    counter.period_ms().unwrap_or(account::MINUTE_MS).to_string()
}
