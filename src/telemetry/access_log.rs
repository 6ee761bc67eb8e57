//! The access log: each usage record as one JSON line, to stdout, stderr or a file. Lines are
//! written by one background thread; the request path only hands the record over (never blocks:
//! when the thread falls behind by `CAPACITY` records, records are counted as dropped).
//! Prompts and completions are never in a record, so never in the log.
//!
//! A file is created 0600 (it tells who spent what) and can be rotated by renaming it: `reopen`
//! (on SIGHUP) makes the writer thread finish its lines into the renamed file and go on in a new
//! one at the configured path, so no line is lost or split between the two. When the renamed file
//! cannot take its last lines (a full disk), they go to the new file first; only a line it took
//! part of is lost, and counted.
//!
//! Opening never waits (`O_NONBLOCK`), so neither start nor the SIGHUP reopen can hang on the
//! path: a FIFO read by a log shipper is opened read-write, which on Linux never waits for the
//! other end, and lines wait in the pipe until the shipper reads them. Writes do block (the flag
//! is cleared once open) so that lines go out whole; a pipe nobody drains then stalls only this
//! thread, and the records beyond its queue are dropped and counted.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
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
    Record(Arc<UsageRecord>),
    Flush(std::sync::mpsc::Sender<()>),
    /// Wakes the writer thread to look at the reopen flag.
    Reopen,
}

/// The file output: where it is, and the flag `reopen` raises.
struct Rotation {
    path: PathBuf,
    requested: Arc<AtomicBool>,
}

/// Opens (creating, appending) without waiting; see the module note.
fn open_file(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_files::create_dir_all(dir)?;
    }
    let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
    let mut opts = OpenOptions::new();
    // A FIFO made in between (opened write-only, without a reader) fails with ENXIO: no wait.
    opts.create(true).append(true).read(fifo).custom_flags(libc::O_NONBLOCK);
    let file = private_files::open(&mut opts, path)?;
    clear_nonblock(&file)?;
    Ok(file)
}

fn clear_nonblock(f: &File) -> std::io::Result<()> {
    let fd = f.as_raw_fd();
    // SAFETY: fcntl reads and sets the status flags of a descriptor `f` keeps open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
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
            .spawn(move || {
                crate::queue::background();
                write_loop(rx, sink, &st, rotation)
            })?;
        Ok(AccessLog { tx, stats, reopen })
    }

    /// The request path: hand the record over, never wait.
    pub fn submit(&self, rec: UsageRecord) {
        self.submit_shared(Arc::new(rec));
    }

    /// `submit` for a record the spend ledger gets as well: one allocation, no copy.
    pub fn submit_shared(&self, rec: Arc<UsageRecord>) {
        match self.tx.try_send(Msg::Record(rec)) {
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

/// The output, remembering whether what it took so far ends a line: after a failed write, the
/// unwritten rest may begin in the middle of one.
struct Sink {
    w: Box<dyn Write + Send>,
    at_line_start: bool,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.w.write(buf)?;
        if n > 0 {
            self.at_line_start = buf[n - 1] == b'\n';
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

type Out = std::io::BufWriter<Sink>;

fn new_out(w: Box<dyn Write + Send>) -> Out {
    let sink = Sink { w, at_line_start: true };
    std::io::BufWriter::with_capacity(64 * 1024, sink)
}

/// Of bytes an output did not take, the whole lines; and whether the first line is the rest of
/// one it took part of (lost: half of it is in the other file already).
fn whole_lines(unwritten: &[u8], at_line_start: bool) -> (&[u8], bool) {
    if at_line_start || unwritten.is_empty() {
        return (unwritten, false);
    }
    match memchr::memchr(b'\n', unwritten) {
        Some(i) => (&unwritten[i + 1..], true),
        None => (&[], true),
    }
}

fn write_loop(rx: Receiver<Msg>, sink: Box<dyn Write + Send>, stats: &AccessLogStats, rotation: Option<Rotation>) {
    let mut out = new_out(sink);
    let mut warned = false;
    // One record serialised at a time, then handed over whole: a failed write never leaves half
    // a record in the buffer, to be glued to the next one.
    let mut line = Vec::with_capacity(1024);
    while let Some(first) = crate::queue::recv(&rx) {
        let mut next = Some(first);
        // Drain what is queued, then flush once: one write per burst, lines out promptly.
        while let Some(msg) = next {
            match msg {
                Msg::Record(rec) => {
                    line.clear();
                    let written = serde_json::to_writer(&mut line, &*rec)
                        .map_err(std::io::Error::from)
                        .and_then(|()| {
                            line.push(b'\n');
                            out.write_all(&line)
                        });
                    match written {
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
                Msg::Reopen => reopen_if_asked(rotation.as_ref(), &mut out, &mut warned, stats),
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
        reopen_if_asked(rotation.as_ref(), &mut out, &mut warned, stats);
    }
}

/// Flushes what was written so far into the file open now (the renamed one), then opens the
/// configured path afresh; what the old file did not take goes first into the new one. When the
/// open fails, lines keep going to the open file.
fn reopen_if_asked(rotation: Option<&Rotation>, out: &mut Out, warned: &mut bool, stats: &AccessLogStats) {
    let Some(r) = rotation.filter(|r| r.requested.swap(false, Ordering::SeqCst)) else {
        return;
    };
    let flushed = out.flush();
    // Opened before the old one is closed: a FIFO nobody reads yet keeps the lines in its pipe
    // only while some descriptor holds it open.
    match open_file(&r.path) {
        Ok(file) => {
            let old = std::mem::replace(out, new_out(Box::new(file)));
            if let Err(e) = flushed {
                carry_over(old, out, &e, stats);
            }
            *warned = false;
            tracing::info!(path = %r.path.display(), "access log reopened");
        }
        Err(e) => {
            if let Err(fe) = flushed {
                tracing::warn!(error = %fe, "cannot write the access log");
            }
            tracing::warn!(path = %r.path.display(), error = %e, "cannot reopen the access log; still writing to the file it had open")
        }
    }
}

/// The lines the rotated file could not take (`error`) go to the new one, not silently away
/// with its writer (whose drop would try once more and forget them).
fn carry_over(old: Out, new: &mut Out, error: &std::io::Error, stats: &AccessLogStats) {
    let (sink, unwritten) = old.into_parts();
    // `Err` only if a write panicked, which ours never do.
    let unwritten = unwritten.unwrap_or_default();
    let (lines, torn) = whole_lines(&unwritten, sink.at_line_start);
    let moved = memchr::memchr_iter(b'\n', lines).count() as u64;
    let mut lost = u64::from(torn);
    if new.write_all(lines).is_err() {
        lost += moved;
    }
    if lost > 0 {
        stats.dropped.fetch_add(lost, Ordering::Relaxed);
        let _ = stats
            .written
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| Some(w.saturating_sub(lost)));
    }
    tracing::warn!(error = %error, lines = moved, lost, "the rotated access log could not take its last lines; they go to the new file");
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

    #[test]
    fn a_shared_record_is_written_and_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::start(Output::File(path.clone())).unwrap();
        let rec = Arc::new(UsageRecord {
            request_id: "shared".into(),
            status: 201,
            ..Default::default()
        });
        log.submit_shared(Arc::clone(&rec));
        assert!(log.flush(std::time::Duration::from_secs(5)));
        let line: UsageRecord = serde_json::from_str(std::fs::read_to_string(&path).unwrap().trim_end()).unwrap();
        assert_eq!(line, *rec);
        assert_eq!(Arc::strong_count(&rec), 1, "the writer dropped its reference");
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

    fn rec(id: &str) -> UsageRecord {
        UsageRecord {
            request_id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn lines_the_rotated_file_could_not_take_go_to_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        // A file on a full disk: every write fails with ENOSPC (for root too).
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let log = AccessLog::start(Output::File(path.clone())).unwrap();
        log.submit(rec("a"));
        log.submit(rec("b"));
        assert!(log.flush(std::time::Duration::from_secs(5)));
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        log.reopen();
        log.submit(rec("c"));
        assert!(log.flush(std::time::Duration::from_secs(5)));
        assert_eq!(ids(&path), ["a", "b", "c"]);
        assert_eq!(log.stats().dropped.load(Ordering::Relaxed), 0);
        assert_eq!(log.stats().written.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn of_the_unwritten_rest_only_a_line_written_in_part_is_lost() {
        assert_eq!(whole_lines(b"{a}\n{b}\n", true), (&b"{a}\n{b}\n"[..], false));
        assert_eq!(whole_lines(b"a}\n{b}\n", false), (&b"{b}\n"[..], true));
        assert_eq!(whole_lines(b"a}", false), (&b""[..], true));
        assert_eq!(whole_lines(b"", false), (&b""[..], false));
    }

    fn mkfifo(p: &std::path::Path) {
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    /// `f` on another thread, failing (not hanging) the test when it takes longer than `secs`.
    fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(secs))
            .unwrap_or_else(|_| panic!("{what} did not return within {secs}s"))
    }

    #[test]
    fn a_fifo_without_a_reader_neither_blocks_the_start_nor_the_reopen() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("shipper.fifo");
        mkfifo(&fifo);
        let path = fifo.clone();
        let log = within(5, "start", move || AccessLog::start(Output::File(path)).unwrap());
        log.submit(rec("before the reader"));
        assert!(log.flush(std::time::Duration::from_secs(5)));
        log.reopen();
        log.submit(rec("after the reopen"));
        assert!(log.flush(std::time::Duration::from_secs(5)));
        // The shipper comes: the lines waited in the pipe.
        let path = fifo.clone();
        let got = within(5, "reading", move || {
            let mut r = std::io::BufReader::new(File::open(path).unwrap());
            let mut ids = Vec::new();
            for _ in 0..2 {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                ids.push(serde_json::from_str::<UsageRecord>(&line).unwrap().request_id);
            }
            ids
        });
        assert_eq!(got, ["before the reader", "after the reopen"]);
        assert_eq!(log.stats().dropped.load(Ordering::Relaxed), 0);
    }
}
