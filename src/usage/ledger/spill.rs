//! Spill files: usage records that could not reach the store yet, one JSON `UsageRecord` per
//! line, in the ledger's spill directory (one subdirectory per store, 0700; the files are 0600:
//! they hold spend data).
//!
//! A file is written as `NAME.open` while a process holds an exclusive `flock` on it, and renamed
//! to `NAME.jsonl` when it is closed. Only `.jsonl` files are replayed, and a file is deleted only
//! after every record in it was committed (inserts are idempotent, so a crash in between replays
//! it again without double counting). At start, an `.open` file whose lock is free was left by a
//! crashed process: it is renamed to `.jsonl` and replayed. A partial last line (a crash mid-write)
//! or a corrupt line is skipped with a warning, never a panic.
//!
//! A write that fails (a full disk) abandons the file: it is cut back to the records synced into
//! it and closed for replay, or removed when it holds none, so a spill directory that keeps
//! failing does not gain an empty file per retry. Failures are returned, not logged here: the
//! ledger logs the spill directory failing once, when it starts, and once when it recovers.
//!
//! `spill_pending` counts complete (newline-terminated) lines in spill files not yet replayed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::private_files;
use crate::usage::UsageRecord;

const OPEN_EXT: &str = "open";
const READY_EXT: &str = "jsonl";

pub(crate) struct SpillDir {
    dir: PathBuf,
    seq: AtomicU64,
    /// Every write to a spill file fails while set (see `SpillFile::append`).
    #[cfg(test)]
    pub fault: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// `flock(LOCK_EX | LOCK_NB)`: true when this process now holds the lock.
fn try_lock(f: &File) -> bool {
    // SAFETY: flock only reads the descriptor, which `f` keeps open for the duration of the call.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

fn has_ext(p: &Path, ext: &str) -> bool {
    p.extension().is_some_and(|e| e == ext)
}

impl SpillDir {
    /// Creates the directory, adopts files left by a crashed process and returns the number of
    /// records waiting in it.
    pub fn open(dir: PathBuf) -> io::Result<(SpillDir, u64)> {
        private_files::own_dir(&dir)?;
        let me = SpillDir {
            dir,
            seq: AtomicU64::new(0),
            #[cfg(test)]
            fault: Default::default(),
        };
        for p in me.list(OPEN_EXT)? {
            let Ok(f) = OpenOptions::new().read(true).write(true).open(&p) else {
                continue;
            };
            if try_lock(&f) {
                let ready = p.with_extension(READY_EXT);
                match fs::rename(&p, &ready) {
                    Ok(()) => {
                        tracing::warn!(file = %ready.display(), "spend ledger: adopting a spill file left by an earlier run")
                    }
                    Err(e) => {
                        tracing::warn!(file = %p.display(), error = %e, "spend ledger: cannot adopt a spill file")
                    }
                }
            }
        }
        let mut pending = 0;
        for p in me.ready_files()? {
            private_files::tighten(&p);
            pending += count_lines(&p).unwrap_or(0);
        }
        Ok((me, pending))
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn list(&self, ext: &str) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let p = entry?.path();
            if has_ext(&p, ext) {
                out.push(p);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Closed spill files, oldest first.
    pub fn ready_files(&self) -> io::Result<Vec<PathBuf>> {
        self.list(READY_EXT)
    }

    /// A new, locked `.open` file.
    pub fn create(&self) -> io::Result<SpillFile> {
        let ms = crate::time::unix_ms();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("spill-{ms:013}-{}-{seq:06}.{OPEN_EXT}", std::process::id());
        let path = self.dir.join(name);
        let new_file = || private_files::open(OpenOptions::new().create_new(true).write(true), &path);
        let file = match new_file() {
            // Someone removed the directory (a cleanup of the data dir): make it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                private_files::own_dir(&self.dir)?;
                new_file()?
            }
            r => r?,
        };
        if !try_lock(&file) {
            let _ = fs::remove_file(&path);
            return Err(io::Error::other("cannot lock a new spill file"));
        }
        Ok(SpillFile {
            w: BufWriter::with_capacity(256 * 1024, file),
            path,
            lines: 0,
            synced_len: 0,
            #[cfg(test)]
            fault: self.fault.clone(),
        })
    }

    /// Writes `recs` to a new file and closes it (ready for replay). On an error the file is
    /// gone (see `SpillFile::abandon`).
    pub fn write_file(&self, recs: &[UsageRecord]) -> io::Result<()> {
        let mut f = self.create()?;
        match f.append(recs) {
            Ok(()) => f.close().map(|_| ()),
            Err(e) => {
                f.abandon();
                Err(e)
            }
        }
    }

    #[cfg(test)]
    pub fn set_fault(&self, on: bool) {
        self.fault.store(on, Ordering::SeqCst);
    }
}

/// An open spill file, locked by this process until it is closed.
pub(crate) struct SpillFile {
    w: BufWriter<File>,
    path: PathBuf,
    /// Records synced into the file.
    lines: u64,
    /// Its length after the last sync: what `abandon` keeps.
    synced_len: u64,
    #[cfg(test)]
    fault: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SpillFile {
    /// Appends one line per record and syncs the file: when this returns Ok the records are
    /// durable.
    pub fn append(&mut self, recs: &[UsageRecord]) -> io::Result<()> {
        #[cfg(test)]
        if self.fault.load(Ordering::SeqCst) {
            // A full disk, for root too: every write to /dev/full fails with ENOSPC.
            *self.w.get_mut() = OpenOptions::new().write(true).open("/dev/full")?;
        }
        for r in recs {
            serde_json::to_writer(&mut self.w, r)?;
            self.w.write_all(b"\n")?;
        }
        self.w.flush()?;
        let mut file: &File = self.w.get_ref();
        file.sync_data()?;
        // Written from the start, never seeked: the position is the length.
        self.synced_len = file.stream_position()?;
        self.lines += recs.len() as u64;
        Ok(())
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Syncs, renames to `.jsonl` (ready for replay) and releases the lock.
    pub fn close(mut self) -> io::Result<PathBuf> {
        self.w.flush()?;
        self.w.get_ref().sync_data()?;
        let ready = self.path.with_extension(READY_EXT);
        fs::rename(&self.path, &ready)?;
        Ok(ready)
    }

    /// After a failed append (whose batch is tried again whole): the file keeps only the records
    /// synced before, and is closed for replay; one that holds none is removed. It is never
    /// appended to again. Nothing is lost either way, so nothing is logged per retry: a file
    /// holding records that cannot be renamed is adopted at the next start (one warning, once
    /// per such file), an empty one that cannot be removed is adopted and deleted then.
    pub fn abandon(self) {
        let SpillFile {
            w,
            path,
            lines,
            synced_len,
            ..
        } = self;
        // The failed batch's bytes still buffered are dropped, not written (`into_parts`); the
        // lock is held until `file` is dropped, after the rename or removal.
        let (file, _unwritten) = w.into_parts();
        if lines == 0 {
            if let Err(e) = fs::remove_file(&path) {
                tracing::debug!(file = %path.display(), error = %e, "spend ledger: cannot remove an empty spill file");
            }
            return;
        }
        // Lines of the failed batch that reached the disk (and a torn last one) are cut off;
        // replay would skip a torn line anyway.
        let _ = file.set_len(synced_len);
        let ready = path.with_extension(READY_EXT);
        if let Err(e) = fs::rename(&path, &ready) {
            tracing::warn!(file = %path.display(), records = lines, error = %e, "spend ledger: cannot close a spill file; it is replayed after a restart");
        }
    }
}

/// Reads a closed spill file in chunks, holding its lock so that another process sharing the
/// directory does not replay it at the same time.
pub(crate) struct SpillReader {
    r: BufReader<File>,
    path: PathBuf,
    buf: Vec<u8>,
    line_no: u64,
    /// Newline-terminated lines read so far (what `spill_pending` counted).
    pub complete_lines: u64,
    pub records: u64,
    pub skipped: u64,
}

impl SpillReader {
    /// None when the file is gone or another process holds it.
    pub fn open(path: &Path) -> io::Result<Option<SpillReader>> {
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !try_lock(&f) {
            return Ok(None);
        }
        Ok(Some(SpillReader {
            r: BufReader::with_capacity(256 * 1024, f),
            path: path.to_path_buf(),
            buf: Vec::with_capacity(1024),
            line_no: 0,
            complete_lines: 0,
            records: 0,
            skipped: 0,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Up to `max` records; an empty vector at the end of the file.
    pub fn next_chunk(&mut self, max: usize) -> io::Result<Vec<UsageRecord>> {
        let mut out = Vec::with_capacity(max.min(4096));
        while out.len() < max {
            self.buf.clear();
            let n = self.r.read_until(b'\n', &mut self.buf)?;
            if n == 0 {
                break;
            }
            self.line_no += 1;
            let complete = self.buf.last() == Some(&b'\n');
            if complete {
                self.complete_lines += 1;
            }
            let line = self.buf.trim_ascii();
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<UsageRecord>(line) {
                Ok(rec) => {
                    self.records += 1;
                    out.push(rec);
                }
                Err(e) => {
                    self.skipped += 1;
                    if complete {
                        tracing::warn!(file = %self.path.display(), line = self.line_no, error = %e, "spend ledger: skipping a corrupt spill line");
                    } else {
                        tracing::warn!(file = %self.path.display(), line = self.line_no, "spend ledger: skipping a partially written last spill line (an earlier crash)");
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every record was committed: delete the file.
    pub fn finish(self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Newline-terminated lines in a file.
fn count_lines(p: &Path) -> io::Result<u64> {
    let mut f = File::open(p)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf)?;
        if got == 0 {
            return Ok(n);
        }
        n += memchr::memchr_iter(b'\n', &buf[..got]).count() as u64;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(i: usize) -> UsageRecord {
        UsageRecord {
            request_id: format!("req-{i}"),
            ..UsageRecord::default()
        }
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_file_nothing_could_be_written_to_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) = SpillDir::open(tmp.path().join("spill")).unwrap();
        dir.set_fault(true);
        for _ in 0..3 {
            let e = dir.write_file(&[rec(1), rec(2)]).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
        }
        // The spooler's way: a file kept open across batches, failing on its first.
        let mut f = dir.create().unwrap();
        f.append(&[rec(3)]).unwrap_err();
        f.abandon();
        assert_eq!(files(dir.path()), Vec::<PathBuf>::new(), "no empty file per retry");
    }

    #[test]
    fn a_file_holding_records_is_kept_with_exactly_those_records_and_ready_for_replay() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) = SpillDir::open(tmp.path().join("spill")).unwrap();
        let mut f = dir.create().unwrap();
        f.append(&[rec(1), rec(2)]).unwrap();
        f.append(&[rec(3)]).unwrap();
        dir.set_fault(true);
        f.append(&[rec(4), rec(5)]).unwrap_err();
        f.abandon();
        let left = files(dir.path());
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(has_ext(&left[0], READY_EXT), "{left:?}");
        assert_eq!(count_lines(&left[0]).unwrap(), 3);
        let mut r = SpillReader::open(&left[0]).unwrap().unwrap();
        let ids: Vec<_> = r.next_chunk(10).unwrap().into_iter().map(|r| r.request_id).collect();
        assert_eq!(ids, ["req-1", "req-2", "req-3"]);
        assert_eq!(r.skipped, 0);
    }
}
