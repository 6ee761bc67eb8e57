//! Files and directories that hold spend data or logs (the SQLite ledger and its side files, the
//! spill files, the access log): created owner-only, files 0600 and directories 0700, whatever the
//! process umask (the mode is given at creation, so the common umask 022 cannot widen it).
//!
//! Existing ones are not reset to 0600/0700: a file or directory of ours that others (the world)
//! can read or enter loses those bits, with a warning naming it; its group bits are kept, because
//! an operator may have granted a log shipper's or a reporting tool's group access on purpose.
//! "Ours" means owned by the effective uid: a file of another user (a log in a shared directory,
//! written by another service too) is only warned about, never changed, even when running as root.
//! Directories that merely contain ours (the working directory, `/var/log`, a shared `/tmp`) are
//! never touched, and neither is anything that is not a regular file or directory: an access log
//! configured as `/dev/null`, `/dev/stdout` or a FIFO read by a log shipper is the system's. A
//! symbolic link is not followed to tighten its target (which may be anyone's file); the mode is
//! changed through a descriptor of the very file that was looked at, so a path swapped for a link
//! in between is not followed either.

use std::fs::{DirBuilder, File, Metadata, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the files we create.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the directories we create.
pub const DIR_MODE: u32 = 0o700;
/// The bits we remove from an existing file or directory of ours.
const WORLD: u32 = 0o007;

/// Opens with `opts`, creating the file 0600 when it does not exist; an existing file of ours
/// that others can access is tightened (see the module note).
pub fn open(opts: &mut OpenOptions, path: &Path) -> io::Result<File> {
    let f = opts.mode(FILE_MODE).open(path)?;
    let meta = f.metadata()?;
    if meta.is_file() {
        narrow(path, &meta, &f);
    }
    Ok(f)
}

/// Creates `dir` and its missing parents, each 0700. Existing directories are left alone.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// A directory that is ours alone (a store's spill directory): created like `create_dir_all`, or,
/// when it exists and others can access it, tightened.
pub fn own_dir(dir: &Path) -> io::Result<()> {
    create_dir_all(dir)?;
    tighten(dir);
    Ok(())
}

/// Removes the world bits of an existing file or directory of ours, with a warning. A missing
/// path, a symbolic link or a special file is left alone; a failure is a warning too, never a
/// reason to stop serving.
pub fn tighten(path: &Path) {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !(m.is_file() || m.is_dir()) || m.permissions().mode() & WORLD == 0 {
        return;
    }
    // O_NOFOLLOW: a link put there since the look above fails (ELOOP) instead of being followed.
    // O_NONBLOCK: a FIFO put there does not wait for a writer. Read-only opens a directory too.
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    match opened {
        Ok(f) => match f.metadata() {
            Ok(m) if m.is_file() || m.is_dir() => narrow(path, &m, &f),
            _ => {}
        },
        Err(e) => tracing::debug!(path = %path.display(), error = %e, "cannot open to narrow its mode"),
    }
}

/// The effective uid: the owner of what this process creates.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Removes the world bits of `f` (described by `meta`) when it has some and it is ours.
fn narrow(path: &Path, meta: &Metadata, f: &File) {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & WORLD == 0 {
        return;
    }
    if meta.uid() != euid() {
        tracing::warn!(
            path = %path.display(),
            mode = %format!("{mode:04o}"),
            owner_uid = meta.uid(),
            "others can read this file or directory of spend data or logs; it belongs to another user, so its mode is left as it is"
        );
        return;
    }
    report(path, mode, f.set_permissions(Permissions::from_mode(mode & !WORLD)));
}

fn report(path: &Path, from: u32, result: io::Result<()>) {
    let from_mode = format!("{from:04o}");
    match result {
        Ok(()) => tracing::warn!(
            path = %path.display(),
            from = %from_mode,
            to = %format!("{:04o}", from & !WORLD),
            "others could read this file or directory of spend data or logs; removed their access"
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            mode = %from_mode,
            error = %e,
            "others can read this file or directory of spend data or logs, and its access could not be narrowed"
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn an_existing_world_readable_file_keeps_its_group_bits_and_loses_the_worlds() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("access.log");
        std::fs::write(&p, "old line\n").unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o664)).unwrap();
        let f = open(OpenOptions::new().append(true).create(true), &p).unwrap();
        drop(f);
        assert_eq!(mode(&p), 0o660);
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "old line\n",
            "appended to, not truncated"
        );

        let d = dir.path().join("spill/sqlite-x");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, Permissions::from_mode(0o755)).unwrap();
        own_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o750);
        tighten(&dir.path().join("missing"));
    }

    #[test]
    fn special_files_are_never_changed() {
        // A FIFO stands in for `/dev/null` or a log shipper's pipe (changing the real
        // `/dev/null` would break the machine the test runs on).
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("shipper.fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
        std::fs::set_permissions(&fifo, Permissions::from_mode(0o666)).unwrap();
        // Read-write: opening a FIFO so does not wait for the other end (Linux).
        let f = open(OpenOptions::new().read(true).write(true), &fifo).unwrap();
        drop(f);
        assert_eq!(mode(&fifo), 0o666);
        tighten(&fifo);
        assert_eq!(mode(&fifo), 0o666);
    }

    /// Root, which the ownership tests need (to give a file to another user).
    fn is_root() -> bool {
        if euid() != 0 {
            eprintln!("skipped: needs root to chown a file to another user");
            return false;
        }
        true
    }

    #[test]
    fn a_file_or_directory_of_another_user_is_never_changed() {
        if !is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // A log in a shared directory, written by another service too.
        let p = dir.path().join("shared.log");
        std::fs::write(&p, "theirs\n").unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::chown(&p, Some(4242), Some(4242)).unwrap();
        drop(open(OpenOptions::new().append(true), &p).unwrap());
        assert_eq!(mode(&p), 0o644);
        tighten(&p);
        assert_eq!(mode(&p), 0o644);

        let d = dir.path().join("spill");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&d, Some(4242), Some(4242)).unwrap();
        own_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o755);

        // Ours (the same file given back) is tightened as before.
        std::os::unix::fs::chown(&p, Some(euid()), None).unwrap();
        tighten(&p);
        assert_eq!(mode(&p), 0o640);
    }

    #[test]
    fn tighten_never_follows_a_symbolic_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere.db-wal");
        std::fs::write(&target, "").unwrap();
        std::fs::set_permissions(&target, Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("spend.db-wal");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        tighten(&link);
        assert_eq!(mode(&target), 0o644, "the link's target keeps its mode");

        let target_dir = dir.path().join("elsewhere");
        std::fs::create_dir(&target_dir).unwrap();
        std::fs::set_permissions(&target_dir, Permissions::from_mode(0o755)).unwrap();
        let link_dir = dir.path().join("spill");
        std::os::unix::fs::symlink(&target_dir, &link_dir).unwrap();
        own_dir(&link_dir).unwrap();
        assert_eq!(mode(&target_dir), 0o755);
    }
}
