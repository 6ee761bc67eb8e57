//! The ledger while neither its store nor its spill directory takes records: they wait in memory
//! (bounded by the queue), only the overflow is dropped, and everything else lands afterwards.
//! The store refuses writes through `Ledger::set_fault`; the spill directory is broken by putting
//! a regular file where it was (ENOTDIR, which stops root too).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;

fn cfg(dir: &Path, queue: usize) -> LedgerConfig {
    LedgerConfig {
        url: format!("sqlite:{}", dir.join("db/spend.db").display()),
        queue_capacity: queue,
        batch_size: 10,
        flush_interval: Duration::from_millis(10),
        spill_dir: dir.join("spill"),
        retry_interval: Duration::from_millis(20),
    }
}

fn rec(i: usize) -> UsageRecord {
    UsageRecord {
        request_id: format!("req-{i:05}"),
        trace_id: format!("{i:032x}"),
        endpoint: "chat".into(),
        attempts: "openai:200".into(),
        status: 200,
        cache: "none".into(),
        ..UsageRecord::default()
    }
}

fn wait_until(what: &str, l: &Ledger, mut f: impl FnMut(&LedgerStatsSnapshot) -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if f(&l.stats().snapshot()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}: {:?}", l.stats().snapshot());
}

fn stored(dir: &Path) -> u64 {
    let r = open_reader(&format!("sqlite:{}", dir.join("db/spend.db").display())).unwrap();
    let q = SpendQuery {
        from_ms: 0,
        to_ms: i64::MAX / 2,
        group_by: vec![],
    };
    r.spend(&q).unwrap().totals.requests
}

/// The spill root replaced by a file; dropping it puts the directory back.
struct Broken(PathBuf);

impl Broken {
    fn new(spill: &Path) -> Broken {
        std::fs::rename(spill, spill.with_extension("away")).unwrap();
        std::fs::write(spill, "").unwrap();
        Broken(spill.to_path_buf())
    }
}

impl Drop for Broken {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).unwrap();
        std::fs::rename(self.0.with_extension("away"), &self.0).unwrap();
    }
}

#[test]
fn records_wait_in_the_queue_while_store_and_spill_are_down_and_all_land_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::start(cfg(dir.path(), 10_000)).unwrap();
    l.set_fault(true);
    let broken = Broken::new(&dir.path().join("spill"));
    for i in 0..500 {
        l.submit(rec(i));
    }
    // Retries of both went by (the writer's count its failed writes).
    wait_until("retries of the store", &l, |s| s.write_errors >= 3);
    let s = l.stats().snapshot();
    assert_eq!((s.dropped, s.written, s.spilled, s.store_up), (0, 0, 0, false), "{s:?}");
    assert_eq!(l.stats().waiting(), 500);

    drop(broken);
    l.set_fault(false);
    wait_until("every record in the store", &l, |s| {
        s.store_up && s.spill_pending == 0 && s.written + s.replayed == 500
    });
    assert_eq!(stored(dir.path()), 500);
    assert_eq!((l.stats().snapshot().dropped, l.stats().waiting()), (0, 0));
    l.shutdown(Duration::from_secs(5));
}

#[test]
fn only_records_that_find_the_queue_full_are_dropped_and_the_rest_land() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::start(cfg(dir.path(), 50)).unwrap();
    l.set_fault(true);
    let broken = Broken::new(&dir.path().join("spill"));
    for i in 0..400 {
        l.submit(rec(i));
    }
    wait_until("retries of the store", &l, |s| s.write_errors >= 3);
    // Kept in memory: a full queue (50), plus the spooler's two batches, the channel's two and
    // the writer's one (10 each); the rest was dropped.
    let s = l.stats().snapshot();
    let waiting = l.stats().waiting();
    assert!((50..=100).contains(&waiting), "{waiting} {s:?}");
    assert_eq!((s.written, s.spilled, s.dropped), (0, 0, 400 - waiting), "{s:?}");

    drop(broken);
    l.set_fault(false);
    wait_until("the kept records in the store", &l, |s| {
        s.store_up && s.spill_pending == 0 && s.written + s.replayed == 400 - s.dropped
    });
    assert_eq!(stored(dir.path()), 400 - l.stats().snapshot().dropped);
    l.shutdown(Duration::from_secs(5));
}

fn spill_files(l: &Ledger) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(l.spill_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// A full disk under the spill directory (every write to a spill file fails with ENOSPC, files
/// can still be created): retried every few hundred milliseconds here, it leaves no empty file
/// behind and logs one error per change of state, not one per retry.
#[test]
fn a_full_spill_disk_leaves_no_empty_files_and_logs_once_per_change_of_state() {
    crate::test_log::capture();
    let dir = tempfile::tempdir().unwrap();
    let ours = format!("{}/", dir.path().display());
    let errors = || {
        crate::test_log::lines_with(&ours)
            .into_iter()
            .filter(|l| l.contains("ERROR"))
            .collect::<Vec<_>>()
    };
    let l = Ledger::start(cfg(dir.path(), 10_000)).unwrap();
    l.set_fault(true);
    l.set_spill_fault(true);
    for i in 0..50 {
        l.submit(rec(i));
    }
    // The writer retries the store, then the spill directory, each time.
    wait_until("retries of the store and the spill directory", &l, |s| {
        s.write_errors >= 5
    });
    let e = errors();
    assert_eq!(e.len(), 1, "one error when spilling starts failing: {e:#?}");
    assert!(e[0].contains("cannot write spill files"), "{e:#?}");

    // The disk has room again: the records spill.
    l.set_spill_fault(false);
    wait_until("the records in spill files", &l, |s| s.spilled == 50);
    let written_again = || {
        crate::test_log::lines_with(&ours)
            .into_iter()
            .filter(|l| l.contains("spill files can be written again"))
            .count()
    };
    let end = Instant::now() + Duration::from_secs(5);
    while written_again() == 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(written_again(), 1);

    // Full again, while the spooler has a file open holding those records.
    l.set_spill_fault(true);
    for i in 50..100 {
        l.submit(rec(i));
    }
    let end = Instant::now() + Duration::from_secs(20);
    while errors().len() < 2 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Retries of the spooler's batch meanwhile: 20 ms, then doubled.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(errors().len(), 2, "failing, writable, failing: {:#?}", errors());
    assert_eq!(l.stats().snapshot().spilled, 50);
    l.set_fault(false);
    l.set_spill_fault(false);
    wait_until("every record in the store", &l, |s| {
        s.store_up && s.spill_pending == 0 && s.written + s.replayed == 100
    });
    l.shutdown(Duration::from_secs(5));
    assert_eq!(stored(dir.path()), 100);
    // The file that held records was closed for replay and replayed; no empty file was left.
    assert_eq!(spill_files(&l), Vec::<PathBuf>::new());
    assert_eq!(errors().len(), 2, "{:#?}", errors());
}
