//! Where usage records land, on the real gateway: the files holding spend data and logs are
//! private whatever the umask, the spend ledger keeps records in memory (and loses none) while
//! both its store and its spill directory refuse them, SIGHUP reopens a rotated access log, and an
//! access log on a FIFO nobody reads yet blocks neither the start nor the reopen.
//!
//! The ledger's store is made unwritable by holding SQLite's write lock from the test, and its
//! spill directory by putting a regular file where the directory was: both work as root too,
//! where `chmod` stops nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::json;

fn config(mock: &Mock, usage: &str) -> String {
    format!(
        "providers:\n{}models:\n  m:\n    targets: [ {{ provider: mock, model: m }} ]\nusage:\n{usage}",
        mock_provider("mock", &mock.base_url(), "")
    )
}

/// Sends one chat request; returns its request id (the ledger's and the access log's key).
fn request(gw: &Gateway, i: usize) -> String {
    let r = gw.chat(&json!({"model": "m", "messages": [{"role": "user", "content": format!("request {i}")}]}));
    assert_eq!(r.status, 200, "{}", r.body);
    r.header("x-request-id").unwrap().to_string()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The request ids in the SQLite ledger (read on a connection of the test's own).
fn ledger_ids(db: &Path) -> BTreeSet<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT request_id FROM usage_records").unwrap();
    let ids = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
    ids.map(|r| r.unwrap()).collect()
}

/// The request ids in an access log file.
fn log_ids(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["request_id"].as_str().unwrap().to_string())
        .collect()
}

/// Holds SQLite's write lock on the ledger until dropped: every write of the gateway then fails
/// (after its busy timeout), as on a locked, read-only or full store.
struct WriteLock(#[allow(dead_code)] rusqlite::Connection);

impl WriteLock {
    fn take(db: &Path) -> WriteLock {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        WriteLock(conn)
    }
}

/// Puts a regular file where the spill directory was (creating anything under it fails with
/// ENOTDIR, for root too); `restore` puts the directory back.
struct BrokenDir<'a> {
    path: &'a Path,
    away: std::path::PathBuf,
}

impl<'a> BrokenDir<'a> {
    fn break_(path: &'a Path) -> BrokenDir<'a> {
        let away = path.with_extension("away");
        std::fs::rename(path, &away).unwrap();
        std::fs::write(path, "not a directory").unwrap();
        BrokenDir { path, away }
    }

    fn restore(self) {
        std::fs::remove_file(self.path).unwrap();
        std::fs::rename(&self.away, self.path).unwrap();
    }
}

fn count(text: &str, line: &str) -> usize {
    text.lines().filter(|l| l.contains(line)).count()
}

#[test]
fn files_holding_spend_data_and_logs_are_private_under_umask_022() {
    let mock = Mock::start(&[]);
    let usage = "  ledger: sqlite:data/spend.db\n  spill_dir: data/spill\n  flush_interval: 20ms\n  access_log: logs/access.log\n";
    let gw = Gateway::start("", &config(&mock, usage));
    let dir = gw.dir().to_path_buf();
    let db = dir.join("data/spend.db");
    let first = request(&gw, 0);
    wait_until("the first record in the ledger", Duration::from_secs(10), || {
        ledger_ids(&db).contains(&first)
    });
    wait_until("the access log line", Duration::from_secs(10), || {
        log_ids(&dir.join("logs/access.log")).contains(&first)
    });

    // A spill file: the store is locked, so the record goes to one.
    let lock = WriteLock::take(&db);
    request(&gw, 1);
    wait_until("a spill file", Duration::from_secs(30), || {
        gw.metric("tollgate_ledger_spill_pending") >= 1.0
    });

    let spill_root = dir.join("data/spill");
    let store_dirs: Vec<_> = std::fs::read_dir(&spill_root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(store_dirs.len(), 1, "{store_dirs:?}");
    let spill_files: Vec<_> = std::fs::read_dir(&store_dirs[0])
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!spill_files.is_empty());
    let mut checked = vec![
        (dir.join("data"), 0o700),
        (db.clone(), 0o600),
        (dir.join("data/spend.db-wal"), 0o600),
        (dir.join("data/spend.db-shm"), 0o600),
        (spill_root, 0o700),
        (store_dirs[0].clone(), 0o700),
        (dir.join("logs"), 0o700),
        (dir.join("logs/access.log"), 0o600),
    ];
    checked.extend(spill_files.into_iter().map(|f| (f, 0o600)));
    for (path, want) in checked {
        assert_eq!(mode(&path), want, "{} is {:o}", path.display(), mode(&path));
    }
    drop(lock);
}

#[test]
fn with_the_store_and_the_spill_directory_unwritable_records_wait_in_the_queue_and_all_arrive() {
    let mock = Mock::start(&[]);
    let usage = "  ledger: sqlite:data/spend.db\n  spill_dir: data/spill\n  flush_interval: 20ms\n  batch: 5\n  access_log: off\n";
    let gw = Gateway::start("", &config(&mock, usage));
    let db = gw.dir().join("data/spend.db");
    let spill = gw.dir().join("data/spill");
    let mut ids = vec![request(&gw, 0)];
    wait_until("the first record in the ledger", Duration::from_secs(10), || {
        ledger_ids(&db).contains(&ids[0])
    });

    // Both go away: the records wait in memory, none is dropped, and the metrics say so.
    let lock = WriteLock::take(&db);
    let broken = BrokenDir::break_(&spill);
    for i in 1..=30 {
        ids.push(request(&gw, i));
    }
    wait_until("the store to be marked down", Duration::from_secs(30), || {
        gw.metric("tollgate_ledger_store_up") == 0.0
    });
    // At least one retry of both (the first a second after the failed write).
    wait_until("a retry of the store (or a drop)", Duration::from_secs(30), || {
        gw.metric("tollgate_ledger_write_errors_total") >= 2.0 || gw.metric("tollgate_ledger_dropped_total") > 0.0
    });
    assert_eq!(gw.metric("tollgate_ledger_dropped_total"), 0.0);
    assert_eq!(
        gw.metric("tollgate_ledger_queue_depth"),
        30.0,
        "every record waits in memory"
    );
    assert_eq!(gw.metric("tollgate_ledger_store_up"), 0.0);

    // The spill directory comes back first: the records go there.
    broken.restore();
    wait_until("the records to spill", Duration::from_secs(60), || {
        gw.metric("tollgate_ledger_spill_pending") == 30.0
    });
    assert_eq!(gw.metric("tollgate_ledger_queue_depth"), 0.0);

    // Then the store: the spill is replayed and every request has its record.
    drop(lock);
    wait_until("every record in the ledger", Duration::from_secs(60), || {
        ledger_ids(&db).len() == ids.len()
    });
    assert_eq!(ledger_ids(&db), ids.iter().cloned().collect::<BTreeSet<_>>());
    wait_until("the replay to finish", Duration::from_secs(10), || {
        gw.metric("tollgate_ledger_spill_pending") == 0.0
    });
    assert_eq!(gw.metric("tollgate_ledger_dropped_total"), 0.0);
    assert_eq!(gw.metric("tollgate_ledger_store_up"), 1.0);

    // Each change of state was logged once: no flapping between "back" and "failed".
    let log = gw.proc.log_text();
    for line in [
        "store write failed",
        "the store is back",
        "cannot write spill files",
        "spill files can be written again",
    ] {
        assert_eq!(count(&log, line), 1, "{line:?} in:\n{log}");
    }
    assert_eq!(count(&log, "dropping usage records"), 0, "{log}");
}

#[test]
fn sighup_reopens_the_access_log_after_a_rotation_by_rename() {
    let mock = Mock::start(&[]);
    let gw = Gateway::start("", &config(&mock, "  ledger: off\n  access_log: access.log\n"));
    let path = gw.dir().join("access.log");
    let rotated = gw.dir().join("access.log.1");
    let first = request(&gw, 1);
    wait_until("the first line", Duration::from_secs(10), || {
        log_ids(&path) == [first.clone()]
    });

    // logrotate renames the file; until the signal, lines still go to the renamed one.
    std::fs::rename(&path, &rotated).unwrap();
    let second = request(&gw, 2);
    wait_until("the second line, in the renamed file", Duration::from_secs(10), || {
        log_ids(&rotated).len() == 2
    });
    gw.proc.signal(libc::SIGHUP);
    wait_until("a new access log", Duration::from_secs(10), || path.exists());
    let third = request(&gw, 3);
    wait_until("the third line, in the new file", Duration::from_secs(10), || {
        !log_ids(&path).is_empty()
    });
    assert_eq!(log_ids(&rotated), [first, second]);
    assert_eq!(log_ids(&path), [third]);
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn an_access_log_on_a_fifo_without_a_reader_blocks_neither_the_start_nor_sighup() {
    use std::io::BufRead;
    let mock = Mock::start(&[]);
    let pipes = tempfile::tempdir().unwrap();
    let fifo = pipes.path().join("shipper.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Start waits for the gateway's health: it would time out if opening the FIFO waited for a reader.
    let usage = format!("  ledger: off\n  access_log: {}\n", fifo.display());
    let gw = Gateway::start("", &config(&mock, &usage));
    let first = request(&gw, 1);
    gw.proc.signal(libc::SIGHUP);
    wait_until("the reopen", Duration::from_secs(10), || {
        gw.proc.log_text().contains("access log reopened")
    });
    let second = request(&gw, 2);

    // The log shipper comes: both lines waited in the pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let r = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        for line in r.lines() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            if tx.send(v["request_id"].as_str().unwrap().to_string()).is_err() {
                return;
            }
        }
    });
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(rx.recv_timeout(Duration::from_secs(10)).expect("an access log line"));
    }
    assert_eq!(got, [first, second]);
    // And the next one arrives while the shipper reads.
    let third = request(&gw, 3);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).expect("a third line"), third);
    assert_eq!(gw.metric("tollgate_access_log_dropped_total"), 0.0);
}
