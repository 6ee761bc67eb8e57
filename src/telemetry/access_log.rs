//! The access log: each usage record as one JSON line, to stdout, stderr or a file. Lines are
//! written by one background thread; the request path only hands the record over (never blocks:
//! when the thread falls behind by `CAPACITY` records, records are counted as dropped).
//! Prompts and completions are never in a record, so never in the log.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
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
}

enum Msg {
    Record(Box<UsageRecord>),
    Flush(std::sync::mpsc::Sender<()>),
}

impl AccessLog {
    /// Opens the output (a file is created or appended to) and starts the writer thread.
    pub fn start(output: Output) -> std::io::Result<AccessLog> {
        let sink: Box<dyn Write + Send> = match output {
            Output::Stdout => Box::new(std::io::stdout()),
            Output::Stderr => Box::new(std::io::stderr()),
            Output::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    private_files::create_dir_all(dir)?;
                }
                // 0600: the log tells who spent what.
                Box::new(private_files::open(
                    std::fs::OpenOptions::new().create(true).append(true),
                    &path,
                )?)
            }
        };
        let (tx, rx) = sync_channel(CAPACITY);
        let stats = Arc::new(AccessLogStats::default());
        let st = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("tollgate-access-log".into())
            .spawn(move || write_loop(rx, sink, &st))?;
        Ok(AccessLog { tx, stats })
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

    /// Waits (up to `timeout`) until every record submitted before the call is written.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Flush(done_tx)).is_err() {
            return false;
        }
        done_rx.recv_timeout(timeout).is_ok()
    }
}

fn write_loop(rx: Receiver<Msg>, sink: Box<dyn Write + Send>, stats: &AccessLogStats) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, sink);
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
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            if !warned {
                tracing::warn!(error = %e, "cannot write the access log");
                warned = true;
            }
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
}
