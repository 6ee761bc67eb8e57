//! Relative `usage` paths used to be relative to the working directory; they now follow the
//! config file. A deployment that relied on the old meaning (`sqlite:data/spend.db`, started
//! from its data directory) would, after an upgrade, silently begin a new, empty ledger next to
//! the config: spend history gone from reports, every budget back at zero. So before anything is
//! opened, `run` (and `spend`) look where each relative path pointed before: a ledger there, or
//! spill files (records not yet in the ledger), with nothing yet at the new place, stop the start
//! with both paths and the fix. An old access log only gets a warning: nothing is lost, its lines
//! just continue in another file.
//!
//! Only when the new place does not exist: once the operator moved the files, or made the path
//! absolute, or the gateway ran with the new meaning, this never fires again.

use std::path::Path;

use super::snapshot::{MovedPath, UsagePath, UsageSettings};
use super::{ConfigError, ConfigErrors};

/// What `check` found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Data of an earlier run would be left behind: refuse to start.
    pub errors: Vec<(UsagePath, String)>,
    /// Worth saying once at start.
    pub warnings: Vec<String>,
}

/// Looks at the old place of each moved path (a few `stat`s; run once, before the sinks open).
pub fn check(usage: &UsageSettings) -> Findings {
    let mut found = Findings::default();
    for m in &usage.moved {
        if std::fs::symlink_metadata(&m.now).is_ok() {
            continue;
        }
        match m.setting {
            UsagePath::Ledger if m.before.is_file() => found.errors.push((m.setting, ledger_left(m))),
            UsagePath::SpillDir if holds_spill_files(&m.before) => found.errors.push((m.setting, spill_left(m))),
            UsagePath::AccessLog if m.before.is_file() => found.warnings.push(access_log_left(m)),
            _ => {}
        }
    }
    found
}

/// `check` as the start's errors (naming `file` and each setting), or its warnings.
pub fn check_file(file: &Path, usage: &UsageSettings) -> Result<Vec<String>, ConfigErrors> {
    let found = check(usage);
    if found.errors.is_empty() {
        return Ok(found.warnings);
    }
    Err(ConfigErrors {
        errors: found
            .errors
            .into_iter()
            .map(|(setting, message)| ConfigError {
                file: file.display().to_string(),
                line: None,
                path: setting.key().to_string(),
                message,
            })
            .collect(),
    })
}

fn ledger_left(m: &MovedPath) -> String {
    format!(
        "sqlite:{w} is relative to the config file's directory, so it names {now}, which does not \
         exist; but the ledger of earlier runs is {before} (relative paths used to follow the working \
         directory). Starting would begin an empty ledger: spend history and budgets would start \
         from zero. Make the path absolute (ledger: sqlite:{before}), or move the file (with its \
         -wal and -shm files) to {now}",
        w = m.written,
        now = m.now.display(),
        before = m.before.display(),
    )
}

fn spill_left(m: &MovedPath) -> String {
    format!(
        "{w} is relative to the config file's directory, so it names {now}, which does not exist; \
         but {before} holds spill files of earlier runs (records not yet in the ledger, relative \
         paths used to follow the working directory), which would never be replayed. Make the \
         path absolute (spill_dir: {before}); spill files are replayed into the ledger they were \
         written for, so keep usage.ledger naming the same file",
        w = m.written,
        now = m.now.display(),
        before = m.before.display(),
    )
}

fn access_log_left(m: &MovedPath) -> String {
    format!(
        "usage.access_log: {w} is relative to the config file's directory: lines now go to {now}, \
         while earlier runs wrote {before} (relative paths used to follow the working directory); \
         make the path absolute to keep writing there",
        w = m.written,
        now = m.now.display(),
        before = m.before.display(),
    )
}

/// A spill directory holds one subdirectory per store, each holding `.jsonl` / `.open` files.
fn holds_spill_files(dir: &Path) -> bool {
    let Ok(stores) = std::fs::read_dir(dir) else {
        return false;
    };
    stores.flatten().any(|store| {
        std::fs::read_dir(store.path()).is_ok_and(|files| {
            files
                .flatten()
                .any(|f| f.path().extension().is_some_and(|e| e == "jsonl" || e == "open"))
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn moved(setting: UsagePath, written: &str, now: PathBuf, before: PathBuf) -> MovedPath {
        MovedPath {
            setting,
            written: written.into(),
            now,
            before,
        }
    }

    fn usage(moved: Vec<MovedPath>) -> UsageSettings {
        UsageSettings {
            ledger: None,
            queue: 1,
            batch: 1,
            flush_interval: std::time::Duration::from_millis(1),
            spill_dir: PathBuf::new(),
            access_log: crate::config::snapshot::AccessLog::Off,
            responses_retention: std::time::Duration::from_secs(1),
            moved,
        }
    }

    #[test]
    fn only_data_left_at_the_old_place_with_nothing_at_the_new_one_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let (conf, run) = (tmp.path().join("conf"), tmp.path().join("run"));
        std::fs::create_dir_all(run.join("data/spill/sqlite-0123")).unwrap();
        std::fs::create_dir_all(run.join("logs")).unwrap();
        std::fs::create_dir_all(&conf).unwrap();
        let all = || {
            usage(vec![
                moved(
                    UsagePath::Ledger,
                    "data/spend.db",
                    conf.join("data/spend.db"),
                    run.join("data/spend.db"),
                ),
                moved(
                    UsagePath::SpillDir,
                    "data/spill",
                    conf.join("data/spill"),
                    run.join("data/spill"),
                ),
                moved(
                    UsagePath::AccessLog,
                    "logs/a.log",
                    conf.join("logs/a.log"),
                    run.join("logs/a.log"),
                ),
            ])
        };
        // Nothing at the old places (an empty spill directory is nothing).
        let f = check(&all());
        assert!(f.errors.is_empty() && f.warnings.is_empty(), "{f:?}");

        std::fs::write(run.join("data/spend.db"), "").unwrap();
        std::fs::write(run.join("data/spill/sqlite-0123/spill-1.jsonl"), "{}\n").unwrap();
        std::fs::write(run.join("logs/a.log"), "{}\n").unwrap();
        let f = check(&all());
        let settings: Vec<_> = f.errors.iter().map(|(s, _)| *s).collect();
        assert_eq!(settings, [UsagePath::Ledger, UsagePath::SpillDir]);
        for (_, msg) in &f.errors {
            assert!(msg.contains(&*conf.to_string_lossy()), "{msg}");
            assert!(msg.contains(&*run.to_string_lossy()), "{msg}");
        }
        assert_eq!(f.warnings.len(), 1);

        // Once the new places exist (moved, or written by a run), the old ones do not matter.
        std::fs::create_dir_all(conf.join("data/spill")).unwrap();
        std::fs::write(conf.join("data/spend.db"), "").unwrap();
        std::fs::create_dir_all(conf.join("logs")).unwrap();
        std::fs::write(conf.join("logs/a.log"), "").unwrap();
        let f = check(&all());
        assert!(f.errors.is_empty() && f.warnings.is_empty(), "{f:?}");
    }
}
