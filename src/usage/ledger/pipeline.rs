//! The ledger's two threads.
//!
//! The spooler drains the record queue into batches (`batch_size`, or whatever arrived within
//! `flush_interval`) and hands each to the writer over a channel two batches deep. When the store
//! is down it appends the batch to its spill file instead; when the writer is busy it waits, and
//! lets the queue absorb the backlog up to half its capacity, then spills. The queue itself is the
//! buffer, so memory stays bounded by `queue_capacity`.
//!
//! The writer inserts batches. A failed write marks the store down (`store_up = false`), sends the
//! batch to a spill file of its own, and retries the store with backoff (`retry_interval`, doubled
//! after each failed retry up to `RETRY_MAX`). The store is back only when it takes a write again
//! (the batch the writer holds, or `StoreWriter::probe`), not when it merely answers: otherwise an
//! SQLite file that is locked or on a full disk would be "back" every second and fail again. While
//! the store is up the writer replays closed spill files in chunks, deleting each file once all
//! its records are committed, and serves a live batch between chunks.
//!
//! When the spill directory cannot be written either, nothing is dropped while the queue has
//! room: the thread whose batch found nowhere to go keeps it and retries (the writer the store,
//! then the spill directory; the spooler the spill directory, or the writer once the store is
//! back) with the same backoff, and takes no more records meanwhile, so the queue fills; only
//! records that find it full are dropped, and counted. Each change of state (store down / back,
//! spill failing / writable, dropping / not) is logged once, never per record or per retry.
//!
//! Every accepted record is counted in `resolved` exactly once: when committed, when synced to a
//! spill file, or when dropped. `Ledger::flush` waits on that count.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::spill::{SpillDir, SpillFile, SpillReader};
use super::{ConnectError, LedgerError, Msg, Shared, StoreWriter};
use crate::usage::UsageRecord;

/// How long an idle thread sleeps before looking at its flags again.
const IDLE_TICK: Duration = Duration::from_millis(100);
/// A spooler spill file is closed (made replayable) after this many records.
const SPILL_FILE_MAX_RECORDS: u64 = 100_000;
/// Spill directory rescans while files are pending, at most this often.
const RESCAN_EVERY: Duration = Duration::from_secs(1);
/// The longest pause between two retries of a store or spill directory that stays down.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// When to retry something that failed: `base`, doubled after each failure, up to `RETRY_MAX`.
struct Backoff {
    base: Duration,
    delay: Duration,
    next: Option<Instant>,
}

impl Backoff {
    fn new(base: Duration) -> Backoff {
        Backoff {
            base,
            delay: base,
            next: None,
        }
    }

    fn due(&self) -> bool {
        self.next.is_none_or(|t| Instant::now() >= t)
    }

    /// Time until the next retry (zero when due).
    fn wait(&self) -> Duration {
        self.next
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(Instant::now()))
    }

    fn failed(&mut self) {
        self.next = Some(Instant::now() + self.delay);
        self.delay = (self.delay * 2).min(RETRY_MAX.max(self.base));
    }

    fn reset(&mut self) {
        self.delay = self.base;
        self.next = None;
    }
}

// ---------------------------------------------------------------------------------------------
// Spooler

struct Spooler {
    shared: Arc<Shared>,
    spill: Arc<SpillDir>,
    writer: SyncSender<Vec<UsageRecord>>,
    batch: Vec<UsageRecord>,
    batch_started: Instant,
    /// A full batch the writer had no room for yet (or, while neither the store nor the spill
    /// directory takes records, the batch waiting for one of them).
    ready: Option<Vec<UsageRecord>>,
    open: Option<SpillFile>,
    /// Retries of a spill directory that failed.
    spill_retry: Backoff,
}

pub(crate) fn run_spooler(
    shared: Arc<Shared>,
    spill: Arc<SpillDir>,
    rx: Receiver<Msg>,
    writer: SyncSender<Vec<UsageRecord>>,
) {
    let batch_size = shared.batch_size;
    let retry_interval = shared.retry_interval;
    let mut s = Spooler {
        shared,
        spill,
        writer,
        batch: Vec::with_capacity(batch_size),
        batch_started: Instant::now(),
        ready: None,
        open: None,
        spill_retry: Backoff::new(retry_interval),
    };
    loop {
        let shutting = s.shared.shutdown.load(Ordering::SeqCst);
        if let Some(b) = s.ready.take() {
            if let Some(b) = s.dispatch(b, shutting) {
                // The writer is busy and the queue still has room: let it absorb the backlog. Or
                // nothing takes records: wait for the spill retry, looking at the store meanwhile.
                s.ready = Some(b);
                let pause = match s.spill_retry.next {
                    Some(_) => s.spill_retry.wait().clamp(Duration::from_millis(1), IDLE_TICK),
                    None => Duration::from_millis(1),
                };
                std::thread::sleep(pause);
                continue;
            }
        }
        if s.open.is_some() && s.shared.stats.store_up.load(Ordering::SeqCst) {
            s.close_spill();
        }
        if shutting {
            s.drain(&rx);
            return;
        }
        let timeout = if s.batch.is_empty() {
            IDLE_TICK
        } else {
            s.shared.flush_interval.saturating_sub(s.batch_started.elapsed())
        };
        let mut force = false;
        match crate::queue::recv_timeout(&rx, timeout) {
            Ok(Msg::Record(r)) => {
                s.push(super::owned(r));
                while s.batch.len() < batch_size {
                    match rx.try_recv() {
                        Ok(Msg::Record(r)) => s.push(super::owned(r)),
                        Ok(Msg::Wake) => force = true,
                        Err(_) => break,
                    }
                }
            }
            Ok(Msg::Wake) => force = true,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // Every handle is gone: write out what is left and stop.
                s.finish();
                return;
            }
        }
        let due = force || s.batch_started.elapsed() >= s.shared.flush_interval;
        if s.batch.len() >= batch_size || (!s.batch.is_empty() && due) {
            s.ready = Some(std::mem::replace(&mut s.batch, Vec::with_capacity(batch_size)));
        }
    }
}

impl Spooler {
    fn push(&mut self, r: UsageRecord) {
        self.shared.stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
        if self.batch.is_empty() {
            self.batch_started = Instant::now();
        }
        self.batch.push(r);
    }

    /// Sends the batch to the writer or to a spill file; gives it back when it should wait.
    /// While shutting down it never gives it back (what nothing takes is dropped).
    fn dispatch(&mut self, b: Vec<UsageRecord>, shutting: bool) -> Option<Vec<UsageRecord>> {
        if !self.shared.stats.store_up.load(Ordering::SeqCst) {
            return self.spill_or_keep(b, shutting);
        }
        match self.writer.try_send(b) {
            Ok(()) => None,
            Err(TrySendError::Full(b)) => {
                let depth = self.shared.stats.queue_depth.load(Ordering::Relaxed);
                if shutting || depth >= self.shared.high_water {
                    self.spill_or_keep(b, shutting)
                } else {
                    Some(b)
                }
            }
            Err(TrySendError::Disconnected(b)) => self.spill_or_keep(b, shutting),
        }
    }

    /// Spills the batch; gives it back when the spill directory failed (and its retry is not due
    /// yet), so that it waits in memory instead of being dropped.
    fn spill_or_keep(&mut self, b: Vec<UsageRecord>, shutting: bool) -> Option<Vec<UsageRecord>> {
        if !shutting && !self.spill_retry.due() {
            return Some(b);
        }
        match self.spill(&b) {
            Ok(()) => {
                self.spill_retry.reset();
                self.shared.spill_ok();
                self.shared.records_flowing();
                None
            }
            Err(e) => {
                self.shared.spill_failed(self.spill.path(), &e);
                if shutting {
                    self.shared.drop_records(
                        b.len() as u64,
                        "stopping while neither the store nor the spill directory takes records",
                    );
                    return None;
                }
                self.spill_retry.failed();
                Some(b)
            }
        }
    }

    /// Appends the batch to the open spill file (opening one if needed); Ok when it is durable.
    fn spill(&mut self, b: &[UsageRecord]) -> std::io::Result<()> {
        let n = b.len() as u64;
        let f = match self.open.as_mut() {
            Some(f) => f,
            None => self.open.insert(self.spill.create()?),
        };
        if let Err(e) = f.append(b) {
            // Whatever reached the file is replayed (duplicates are ignored by the store); the
            // whole batch is tried again.
            if let Some(f) = self.open.take() {
                f.abandon();
            }
            return Err(e);
        }
        let lines = f.lines();
        let st = &self.shared.stats;
        st.spilled.fetch_add(n, Ordering::Relaxed);
        st.spill_pending.fetch_add(n, Ordering::Relaxed);
        st.resolved.fetch_add(n, Ordering::SeqCst);
        if lines >= SPILL_FILE_MAX_RECORDS {
            self.close_spill();
        }
        Ok(())
    }

    fn close_spill(&mut self) {
        if let Some(f) = self.open.take() {
            if let Err(e) = f.close() {
                tracing::error!(dir = %self.spill.path().display(), error = %e, "spend ledger: cannot close a spill file");
            }
            self.shared.spill_dirty.store(true, Ordering::SeqCst);
        }
    }

    /// Shutdown: takes everything still queued without waiting for the writer.
    fn drain(&mut self, rx: &Receiver<Msg>) {
        loop {
            match rx.try_recv() {
                Ok(Msg::Record(r)) => {
                    self.push(super::owned(r));
                    if self.batch.len() >= self.shared.batch_size {
                        let b = std::mem::take(&mut self.batch);
                        let _ = self.dispatch(b, true);
                    }
                }
                Ok(Msg::Wake) => {}
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(b) = self.ready.take() {
            let _ = self.dispatch(b, true);
        }
        if !self.batch.is_empty() {
            let b = std::mem::take(&mut self.batch);
            let _ = self.dispatch(b, true);
        }
        self.close_spill();
    }
}

// ---------------------------------------------------------------------------------------------
// Writer

struct Writer {
    shared: Arc<Shared>,
    spill: Arc<SpillDir>,
    store: Box<dyn StoreWriter>,
    up: bool,
    retry: Backoff,
    last_scan: Option<Instant>,
    down_since: Option<Instant>,
    /// A batch neither the store nor the spill directory took: no other is taken before it.
    held: Option<Vec<UsageRecord>>,
}

pub(crate) fn run_writer(
    shared: Arc<Shared>,
    spill: Arc<SpillDir>,
    store: Box<dyn StoreWriter>,
    rx: Receiver<Vec<UsageRecord>>,
    ready: SyncSender<Result<(), ConnectError>>,
) {
    let retry = Backoff::new(shared.retry_interval);
    let mut w = Writer {
        shared,
        spill,
        store,
        up: false,
        retry,
        last_scan: None,
        down_since: None,
        held: None,
    };
    // A store that opened (and migrated) at start is taken to be up until a write says otherwise.
    let first = w.connect();
    match &first {
        Ok(()) => w.mark_up(),
        Err(_) => w.retry.failed(),
    }
    let fatal = matches!(first, Err(ConnectError::Fatal(_)));
    let _ = ready.send(first);
    if fatal {
        return;
    }
    loop {
        let abandon = w.shared.abandon.load(Ordering::SeqCst);
        if !w.up && w.retry.due() && !abandon {
            w.recover();
        }
        if let Some(batch) = w.held.take() {
            if abandon {
                w.shared.drop_records(
                    batch.len() as u64,
                    "stopping while neither the store nor the spill directory takes records",
                );
            } else {
                // Take nothing new meanwhile: the queue is where records wait.
                w.held = Some(batch);
                std::thread::sleep(w.retry.wait().clamp(Duration::from_millis(1), IDLE_TICK));
                continue;
            }
        }
        if w.up && w.replay_due() {
            w.replay(&rx);
        }
        let wait = if w.up { IDLE_TICK } else { w.retry.wait().min(IDLE_TICK) };
        match rx.recv_timeout(wait) {
            Ok(batch) => w.handle(batch),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

impl Writer {
    fn connect(&mut self) -> Result<(), ConnectError> {
        self.store.connect().inspect_err(|e| {
            let (ConnectError::Down(le) | ConnectError::Fatal(le)) = e;
            if self.down_since.is_none() {
                self.down_since = Some(Instant::now());
                tracing::warn!(error = %le, retry_from = ?self.shared.retry_interval, "spend ledger: store unreachable; spilling records until it answers");
            } else {
                tracing::debug!(error = %le, "spend ledger: store still unreachable");
            }
        })
    }

    fn write(&mut self, batch: &[UsageRecord]) -> Result<usize, LedgerError> {
        #[cfg(test)]
        if self.shared.fault.load(Ordering::SeqCst) {
            return Err(self.injected_fault());
        }
        self.store.write(batch)
    }

    fn probe(&mut self) -> Result<(), LedgerError> {
        #[cfg(test)]
        if self.shared.fault.load(Ordering::SeqCst) {
            return Err(self.injected_fault());
        }
        self.store.probe()
    }

    #[cfg(test)]
    fn injected_fault(&self) -> LedgerError {
        LedgerError::Unavailable {
            store: self.shared.store.clone(),
            reason: "fault injected by a test".into(),
        }
    }

    /// The store is down and its retry is due: it is back when it takes a write (the held batch,
    /// else a probe). While it is not, the held batch tries the spill directory again.
    fn recover(&mut self) {
        let result = match self.connect() {
            Err(_) => Err(None),
            Ok(()) => match self.held.take() {
                Some(batch) => match self.write(&batch) {
                    Ok(_) => {
                        self.committed(batch.len() as u64);
                        Ok(())
                    }
                    Err(e) => {
                        self.held = Some(batch);
                        Err(Some(e))
                    }
                },
                None => self.probe().map_err(Some),
            },
        };
        match result {
            Ok(()) => self.mark_up(),
            Err(write_error) => {
                if let Some(e) = write_error {
                    self.shared.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "spend ledger: store still refuses writes");
                }
                self.retry.failed();
                if let Some(batch) = self.held.take() {
                    self.spill_or_keep(batch);
                }
            }
        }
    }

    fn mark_up(&mut self) {
        if !self.up {
            if let Some(since) = self.down_since.take() {
                tracing::info!(store = %self.shared.store, down_for = ?since.elapsed(), "spend ledger: the store is back; replaying spill files");
            }
            self.up = true;
            self.shared.stats.store_up.store(true, Ordering::SeqCst);
            self.shared.spill_dirty.store(true, Ordering::SeqCst);
            self.retry.reset();
        }
    }

    fn mark_down(&mut self, e: &LedgerError) {
        self.shared.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        if self.up {
            tracing::warn!(
                error = %e,
                spill_dir = %self.spill.path().display(),
                retry_from = ?self.shared.retry_interval,
                "spend ledger: store write failed; spilling records until it takes writes again"
            );
            self.down_since = Some(Instant::now());
        }
        self.up = false;
        self.shared.stats.store_up.store(false, Ordering::SeqCst);
        self.retry.reset();
        self.retry.failed();
    }

    fn committed(&self, n: u64) {
        self.shared.stats.written.fetch_add(n, Ordering::Relaxed);
        self.shared.stats.resolved.fetch_add(n, Ordering::SeqCst);
        self.shared.records_flowing();
    }

    /// A live batch from the spooler.
    fn handle(&mut self, batch: Vec<UsageRecord>) {
        if self.up && !self.shared.abandon.load(Ordering::SeqCst) {
            match self.write(&batch) {
                Ok(_) => {
                    self.committed(batch.len() as u64);
                    return;
                }
                Err(e) => self.mark_down(&e),
            }
        }
        self.spill_or_keep(batch);
    }

    /// Writes the batch to a spill file of its own; when that fails it is held (see `run_writer`),
    /// or dropped when the ledger is giving up on shutdown.
    fn spill_or_keep(&mut self, batch: Vec<UsageRecord>) {
        let n = batch.len() as u64;
        match self.spill.write_file(&batch) {
            Ok(()) => {
                let st = &self.shared.stats;
                st.spilled.fetch_add(n, Ordering::Relaxed);
                st.spill_pending.fetch_add(n, Ordering::Relaxed);
                st.resolved.fetch_add(n, Ordering::SeqCst);
                self.shared.spill_dirty.store(true, Ordering::SeqCst);
                self.shared.spill_ok();
                self.shared.records_flowing();
            }
            Err(e) => {
                self.shared.spill_failed(self.spill.path(), &e);
                if self.shared.abandon.load(Ordering::SeqCst) {
                    self.shared.drop_records(
                        n,
                        "stopping while neither the store nor the spill directory takes records",
                    );
                } else {
                    self.held = Some(batch);
                }
            }
        }
    }

    fn replay_due(&mut self) -> bool {
        if self.shared.shutdown.load(Ordering::SeqCst) {
            return false; // leftovers are replayed at the next start
        }
        let dirty = self.shared.spill_dirty.swap(false, Ordering::SeqCst);
        let pending = self.shared.stats.spill_pending.load(Ordering::Relaxed) > 0;
        let stale = self.last_scan.is_none_or(|t| t.elapsed() >= RESCAN_EVERY);
        dirty || (pending && stale)
    }

    /// Replays closed spill files while the store stays up.
    fn replay(&mut self, rx: &Receiver<Vec<UsageRecord>>) {
        self.last_scan = Some(Instant::now());
        let files = match self.spill.ready_files() {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(dir = %self.spill.path().display(), error = %e, "spend ledger: cannot list spill files");
                return;
            }
        };
        let chunk = self.shared.batch_size.max(2000);
        for path in files {
            let mut reader = match SpillReader::open(&path) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "spend ledger: cannot open a spill file");
                    continue;
                }
            };
            loop {
                if !self.up || self.shared.shutdown.load(Ordering::SeqCst) {
                    return; // the file stays; what was committed is idempotent on the next try
                }
                let recs = match reader.next_chunk(chunk) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(file = %path.display(), error = %e, "spend ledger: cannot read a spill file");
                        break;
                    }
                };
                if recs.is_empty() {
                    self.finish_file(reader);
                    break;
                }
                if let Err(e) = self.write(&recs) {
                    self.mark_down(&e);
                    return;
                }
                // Keep live records flowing during a long replay.
                if let Ok(batch) = rx.try_recv() {
                    self.handle(batch);
                }
            }
        }
    }

    fn finish_file(&mut self, reader: SpillReader) {
        let (lines, records, skipped) = (reader.complete_lines, reader.records, reader.skipped);
        let path = reader.path().to_path_buf();
        if let Err(e) = reader.finish() {
            tracing::error!(file = %path.display(), error = %e, "spend ledger: cannot delete a replayed spill file");
            return;
        }
        let st = &self.shared.stats;
        st.replayed.fetch_add(records, Ordering::Relaxed);
        let _ = st
            .spill_pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| Some(p.saturating_sub(lines)));
        tracing::info!(file = %path.display(), records, skipped, "spend ledger: replayed a spill file");
    }
}
