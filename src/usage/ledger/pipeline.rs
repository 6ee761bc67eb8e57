//! The ledger's two threads.
//!
//! The spooler drains the record queue into batches (`batch_size`, or whatever arrived within
//! `flush_interval`) and hands each to the writer over a channel two batches deep. When the store
//! is down it appends the batch to its spill file instead; when the writer is busy it waits, and
//! lets the queue absorb the backlog up to half its capacity, then spills. The queue itself is the
//! buffer, so memory stays bounded by `queue_capacity`.
//!
//! The writer inserts batches. A failed write marks the store down (`store_up = false`), sends the
//! batch to a spill file of its own, and retries the store every `retry_interval`. While the store
//! is up it replays closed spill files in chunks, deleting each file once all its records are
//! committed, and serves a live batch between chunks.
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

// ---------------------------------------------------------------------------------------------
// Spooler

struct Spooler {
    shared: Arc<Shared>,
    spill: Arc<SpillDir>,
    writer: SyncSender<Vec<UsageRecord>>,
    batch: Vec<UsageRecord>,
    batch_started: Instant,
    /// A full batch the writer had no room for yet.
    ready: Option<Vec<UsageRecord>>,
    open: Option<SpillFile>,
}

pub(crate) fn run_spooler(
    shared: Arc<Shared>,
    spill: Arc<SpillDir>,
    rx: Receiver<Msg>,
    writer: SyncSender<Vec<UsageRecord>>,
) {
    let batch_size = shared.batch_size;
    let mut s = Spooler {
        shared,
        spill,
        writer,
        batch: Vec::with_capacity(batch_size),
        batch_started: Instant::now(),
        ready: None,
        open: None,
    };
    loop {
        let shutting = s.shared.shutdown.load(Ordering::SeqCst);
        if let Some(b) = s.ready.take() {
            if let Some(b) = s.dispatch(b, shutting) {
                // The writer is busy and the queue still has room: let it absorb the backlog.
                s.ready = Some(b);
                std::thread::sleep(Duration::from_millis(1));
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
        match rx.recv_timeout(timeout) {
            Ok(Msg::Record(r)) => {
                s.push(*r);
                while s.batch.len() < batch_size {
                    match rx.try_recv() {
                        Ok(Msg::Record(r)) => s.push(*r),
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
    fn dispatch(&mut self, b: Vec<UsageRecord>, shutting: bool) -> Option<Vec<UsageRecord>> {
        if !self.shared.stats.store_up.load(Ordering::SeqCst) {
            self.spill(b);
            return None;
        }
        match self.writer.try_send(b) {
            Ok(()) => None,
            Err(TrySendError::Full(b)) => {
                let depth = self.shared.stats.queue_depth.load(Ordering::Relaxed);
                if shutting || depth >= self.shared.high_water {
                    self.spill(b);
                    None
                } else {
                    Some(b)
                }
            }
            Err(TrySendError::Disconnected(b)) => {
                self.spill(b);
                None
            }
        }
    }

    fn spill(&mut self, b: Vec<UsageRecord>) {
        let n = b.len() as u64;
        if self.open.is_none() {
            match self.spill.create() {
                Ok(f) => self.open = Some(f),
                Err(e) => {
                    tracing::error!(dir = %self.spill.path().display(), error = %e, "spend ledger: cannot create a spill file");
                    self.shared.drop_records(n, "the spill directory is not writable");
                    return;
                }
            }
        }
        let Some(f) = self.open.as_mut() else { return };
        match f.append(&b) {
            Ok(()) => {
                let st = &self.shared.stats;
                st.spilled.fetch_add(n, Ordering::Relaxed);
                st.spill_pending.fetch_add(n, Ordering::Relaxed);
                st.resolved.fetch_add(n, Ordering::SeqCst);
                if f.lines() >= SPILL_FILE_MAX_RECORDS {
                    self.close_spill();
                }
            }
            Err(e) => {
                tracing::error!(dir = %self.spill.path().display(), error = %e, "spend ledger: cannot write a spill file");
                if let Some(f) = self.open.take() {
                    f.abandon();
                }
                self.shared.drop_records(n, "a spill file could not be written");
            }
        }
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
                    self.push(*r);
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
    next_retry: Instant,
    last_scan: Option<Instant>,
    down_since: Option<Instant>,
}

pub(crate) fn run_writer(
    shared: Arc<Shared>,
    spill: Arc<SpillDir>,
    store: Box<dyn StoreWriter>,
    rx: Receiver<Vec<UsageRecord>>,
    ready: SyncSender<Result<(), ConnectError>>,
) {
    let mut w = Writer {
        shared,
        spill,
        store,
        up: false,
        next_retry: Instant::now(),
        last_scan: None,
        down_since: None,
    };
    let first = w.connect();
    let fatal = matches!(first, Err(ConnectError::Fatal(_)));
    let _ = ready.send(first);
    if fatal {
        return;
    }
    loop {
        if !w.up && Instant::now() >= w.next_retry && !w.shared.abandon.load(Ordering::SeqCst) {
            let _ = w.connect();
        }
        if w.up && w.replay_due() {
            w.replay(&rx);
        }
        let wait = if w.up {
            IDLE_TICK
        } else {
            w.next_retry.saturating_duration_since(Instant::now()).min(IDLE_TICK)
        };
        match rx.recv_timeout(wait) {
            Ok(batch) => w.handle(batch),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

impl Writer {
    fn connect(&mut self) -> Result<(), ConnectError> {
        #[cfg(test)]
        if self.shared.fault.load(Ordering::SeqCst) {
            self.next_retry = Instant::now() + self.shared.retry_interval;
            return Err(ConnectError::Down(LedgerError::Unavailable {
                store: self.shared.store.clone(),
                reason: "fault injected by a test".into(),
            }));
        }
        match self.store.connect() {
            Ok(()) => {
                if !self.up {
                    if let Some(since) = self.down_since.take() {
                        tracing::info!(store = %self.shared.store, down_for = ?since.elapsed(), "spend ledger: the store is back; replaying spill files");
                    }
                    self.up = true;
                    self.shared.stats.store_up.store(true, Ordering::SeqCst);
                    self.shared.spill_dirty.store(true, Ordering::SeqCst);
                }
                Ok(())
            }
            Err(e) => {
                self.next_retry = Instant::now() + self.shared.retry_interval;
                let (ConnectError::Down(le) | ConnectError::Fatal(le)) = &e;
                if self.down_since.is_none() {
                    self.down_since = Some(Instant::now());
                    tracing::warn!(error = %le, retry_every = ?self.shared.retry_interval, "spend ledger: store unreachable; spilling records until it answers");
                } else {
                    tracing::debug!(error = %le, "spend ledger: store still unreachable");
                }
                Err(e)
            }
        }
    }

    fn write(&mut self, batch: &[UsageRecord]) -> Result<usize, LedgerError> {
        #[cfg(test)]
        if self.shared.fault.load(Ordering::SeqCst) {
            return Err(LedgerError::Unavailable {
                store: self.shared.store.clone(),
                reason: "fault injected by a test".into(),
            });
        }
        self.store.write(batch)
    }

    fn mark_down(&mut self, e: &LedgerError) {
        self.shared.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        if self.up {
            tracing::warn!(
                error = %e,
                spill_dir = %self.spill.path().display(),
                retry_every = ?self.shared.retry_interval,
                "spend ledger: store write failed; spilling records until it answers again"
            );
            self.down_since = Some(Instant::now());
        }
        self.up = false;
        self.shared.stats.store_up.store(false, Ordering::SeqCst);
        self.next_retry = Instant::now() + self.shared.retry_interval;
    }

    /// A live batch from the spooler.
    fn handle(&mut self, batch: Vec<UsageRecord>) {
        if self.up && !self.shared.abandon.load(Ordering::SeqCst) {
            match self.write(&batch) {
                Ok(_) => {
                    let n = batch.len() as u64;
                    self.shared.stats.written.fetch_add(n, Ordering::Relaxed);
                    self.shared.stats.resolved.fetch_add(n, Ordering::SeqCst);
                    return;
                }
                Err(e) => self.mark_down(&e),
            }
        }
        let n = batch.len() as u64;
        match self.spill.write_file(&batch) {
            Ok(()) => {
                let st = &self.shared.stats;
                st.spilled.fetch_add(n, Ordering::Relaxed);
                st.spill_pending.fetch_add(n, Ordering::Relaxed);
                st.resolved.fetch_add(n, Ordering::SeqCst);
                self.shared.spill_dirty.store(true, Ordering::SeqCst);
            }
            Err(e) => {
                tracing::error!(dir = %self.spill.path().display(), error = %e, "spend ledger: cannot write a spill file");
                self.shared.drop_records(n, "a spill file could not be written");
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
