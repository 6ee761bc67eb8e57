//! Where usage records land, on the real gateway: the files holding spend data and logs are
//! private whatever the umask, the spend ledger keeps records in memory (and loses none) while
//! both its store and its spill directory refuse them, and SIGHUP reopens a rotated access log.
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
