//! The access log: each usage record as one JSON line, to stdout, stderr or a file. Lines are
//! written by one background thread; the request path only hands the record over (never blocks:
//! when the thread falls behind by `CAPACITY` records, records are counted as dropped).
//! Prompts and completions are never in a record, so never in the log.
//!
//! A file is created 0600 (it tells who spent what) and can be rotated by renaming it: `reopen`
//! (on SIGHUP) makes the writer thread finish its lines into the renamed file and go on in a new
//! one at the configured path, so no line is lost or split between the two.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use crate::private_files;
use crate::usage::UsageRecord;

const CAPACITY: usize = 65_536;

pub enum Output {
    Stdout,
    Stderr,
    File(PathBuf),
}

#[derive(Default)]
pub struct AccessLogStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
}

#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<Msg>,
    stats: Arc<AccessLogStats>,
    /// Set by `reopen` for a file output; the writer thread clears it when it reopens.
    reopen: Option<Arc<AtomicBool>>,
}

enum Msg {
    Record(Box<UsageRecord>),
    Flush(std::sync::mpsc::Sender<()>),
    /// Wakes the writer thread to look at the reopen flag.
    Reopen,
}

/// The file output: where it is, and the flag `reopen` raises.
struct Rotation {
    path: PathBuf,
    requested: Arc<AtomicBool>,
}

fn open_file(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_files::create_dir_all(dir)?;
    }
    private_files::open(OpenOptions::new().create(true).append(true), path)
}

impl AccessLog {
    /// Opens the output (a file is created or appended to) and starts the writer thread.
    pub fn start(output: Output) -> std::io::Result<AccessLog> {
        let (sink, rotation): (Box<dyn Write + Send>, _) = match output {
            Output::Stdout => (Box::new(std::io::stdout()), None),
            Output::Stderr => (Box::new(std::io::stderr()), None),
            Output::File(path) => {
                let file = open_file(&path)?;
                let requested = Arc::new(AtomicBool::new(false));
                (Box::new(file), Some(Rotation { path, requested }))
            }
        };
        let reopen = rotation.as_ref().map(|r| Arc::clone(&r.requested));
        let (tx, rx) = sync_channel(CAPACITY);
        let stats = Arc::new(AccessLogStats::default());
        let st = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("tollgate-access-log".into())
            .spawn(move || write_loop(rx, sink, &st, rotation))?;
        Ok(AccessLog { tx, stats, reopen })
    }

    /// The request path: hand the record over, never wait.
    pub fn submit(&self, rec: UsageRecord) {
        match self.tx.try_send(Msg::Record(Box::new(rec))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn stats(&self) -> &AccessLogStats {
        &self.stats
    }

    /// Asks the writer thread to reopen the file (after a rotation renamed it); lines already
    /// handed over go to the old file. Does not wait. A no-op for stdout and stderr.
    pub fn reopen(&self) {
        if let Some(flag) = &self.reopen {
            flag.store(true, Ordering::SeqCst);
            // A full queue means the thread is busy: it looks at the flag after every burst.
            let _ = self.tx.try_send(Msg::Reopen);
        }
    }

    /// Waits (up to `timeout`) until every record submitted before the call is written.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Flush(done_tx)).is_err() {
            return false;
        }
        done_rx.recv_timeout(timeout).is_ok()
    }
}

type Out = std::io::BufWriter<Box<dyn Write + Send>>;

fn new_out(sink: Box<dyn Write + Send>) -> Out {
    std::io::BufWriter::with_capacity(64 * 1024, sink)
}

fn write_loop(rx: Receiver<Msg>, sink: Box<dyn Write + Send>, stats: &AccessLogStats, rotation: Option<Rotation>) {
    let mut out = new_out(sink);
    let mut warned = false;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        // Drain what is queued, then flush once: one write per burst, lines out promptly.
        while let Some(msg) = next {
            match msg {
                Msg::Record(rec) => {
                    let line = serde_json::to_writer(&mut out, &*rec)
                        .map_err(std::io::Error::from)
                        .and_then(|()| out.write_all(b"\n"));
                    match line {
                        Ok(()) => {
                            stats.written.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            stats.dropped.fetch_add(1, Ordering::Relaxed);
                            if !warned {
                                tracing::warn!(error = %e, "cannot write the access log");
                                warned = true;
                            }
                        }
                    }
                }
                Msg::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
                // Records handed over after `reopen` returned go to the new file.
                Msg::Reopen => reopen_if_asked(rotation.as_ref(), &mut out, &mut warned),
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            if !warned {
                tracing::warn!(error = %e, "cannot write the access log");
                warned = true;
            }
        }
        // The wake-up message may not have fit in a full queue: the flag is what counts.
        reopen_if_asked(rotation.as_ref(), &mut out, &mut warned);
    }
}

/// Flushes what was written so far into the file open now (the renamed one), then opens the
/// configured path afresh. When that fails, lines keep going to the open file.
fn reopen_if_asked(rotation: Option<&Rotation>, out: &mut Out, warned: &mut bool) {
    let Some(r) = rotation.filter(|r| r.requested.swap(false, Ordering::SeqCst)) else {
        return;
    };
    if let Err(e) = out.flush() {
        tracing::warn!(error = %e, "cannot write the access log");
    }
    match open_file(&r.path) {
        Ok(file) => {
            *out = new_out(Box::new(file));
            *warned = false;
            tracing::info!(path = %r.path.display(), "access log reopened");
        }
        Err(e) => {
            tracing::warn!(path = %r.path.display(), error = %e, "cannot reopen the access log; still writing to the file it had open")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_json_line_per_record_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/access.log");
        let log = AccessLog::start(Output::File(path.clone())).unwrap();
        for i in 0..3 {
            log.submit(UsageRecord {
                request_id: format!("r{i}"),
                status: 200,
                cost_nanos: 1500 * i,
                ..Default::default()
            });
        }
        assert!(log.flush(std::time::Duration::from_secs(5)));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<UsageRecord> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2].request_id, "r2");
        assert_eq!(lines[2].cost_nanos, 3000);
        assert_eq!(log.stats().written.load(Ordering::Relaxed), 3);
    }

    fn ids(path: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<UsageRecord>(l).unwrap().request_id)
            .collect()
    }

    #[test]
    fn after_a_rename_reopen_sends_later_lines_to_a_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let log = AccessLog::start(Output::File(path.clone())).unwrap();
        let rec = |id: &str| UsageRecord {
            request_id: id.into(),
            ..Default::default()
        };
        log.submit(rec("before"));
        assert!(log.flush(std::time::Duration::from_secs(5)));
        std::fs::rename(&path, &rotated).unwrap();
        log.submit(rec("between"));
        log.reopen();
        log.submit(rec("after"));
        assert!(log.flush(std::time::Duration::from_secs(5)));
        assert_eq!(ids(&rotated), ["before", "between"]);
        assert_eq!(ids(&path), ["after"]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
