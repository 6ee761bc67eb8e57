//! The reload policy: which changes a file change may apply on its own, and which need an
//! operator's explicit word (SIGHUP, `systemctl reload`).
//!
//! A file watcher cannot tell a finished edit from a file cut short: an editor or a
//! config-management tool writing in place leaves, for a moment, a prefix of the file, which is
//! often valid YAML that simply lacks its last sections. Loading it would silently turn off
//! whatever those sections held (authentication, keys, limits). So a reload triggered by the file
//! watcher is refused when it would remove a whole top-level section the running config has, or
//! weaken access control: turn `auth.required` off, remove `admin.token` (and with it the admin
//! API, key revocation included) or remove virtual keys. The same change sent with SIGHUP is an
//! operator's decision: it is applied, with a warning naming what it changed.

use std::fmt;

use super::snapshot::Snapshot;

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadTrigger {
    /// The watcher saw the file's content change (and settle).
    FileChange,
    /// SIGHUP: an operator asked for this file to be loaded.
    Signal,
}

impl ReloadTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadTrigger::FileChange => "file change",
            ReloadTrigger::Signal => "SIGHUP",
        }
    }
}

/// A change a file-watch reload does not apply on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardedChange {
    /// Top-level sections the running config has and the new file lacks.
    SectionsRemoved(Vec<String>),
    /// `auth.required` from true to false.
    AuthDisabled,
    /// `admin.token` set before, unset (or its variable unset) now.
    AdminTokenRemoved,
    /// Ids of config-defined virtual keys that are gone.
    KeysRemoved(Vec<String>),
}

impl GuardedChange {
    /// The `reason` label of `tollgate_config_reload_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            GuardedChange::SectionsRemoved(_) => "section_removed",
            GuardedChange::AuthDisabled => "auth_disabled",
            GuardedChange::AdminTokenRemoved => "admin_token_removed",
            GuardedChange::KeysRemoved(_) => "keys_removed",
        }
    }
}

impl fmt::Display for GuardedChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| v.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ");
        match self {
            GuardedChange::SectionsRemoved(s) => write!(f, "it removes the section(s) {}", list(s)),
            GuardedChange::AuthDisabled => write!(
                f,
                "it turns auth.required off (requests without a virtual key would be served)"
            ),
            GuardedChange::AdminTokenRemoved => write!(
                f,
                "it removes admin.token (the admin API, key revocation included, would be off)"
            ),
            GuardedChange::KeysRemoved(ids) => write!(f, "it removes the virtual key(s) {}", list(ids)),
        }
    }
}

/// The guarded changes from `prev` to `next` (empty when there are none).
pub fn guarded_changes(prev: &Snapshot, next: &Snapshot) -> Vec<GuardedChange> {
    let mut out = Vec::new();
    let lost: Vec<String> = prev
        .sections
        .iter()
        .filter(|s| !next.sections.contains(s))
        .cloned()
        .collect();
    if !lost.is_empty() {
        out.push(GuardedChange::SectionsRemoved(lost));
    }
    if prev.auth.required && !next.auth.required {
        out.push(GuardedChange::AuthDisabled);
    }
    if prev.admin_token.is_some() && next.admin_token.is_none() {
        out.push(GuardedChange::AdminTokenRemoved);
    }
    let ids = |s: &Snapshot| -> Vec<String> { s.auth.keys.iter().filter_map(|(k, _)| k.id.clone()).collect() };
    let kept = ids(next);
    let gone: Vec<String> = ids(prev).into_iter().filter(|id| !kept.contains(id)).collect();
    if !gone.is_empty() {
        out.push(GuardedChange::KeysRemoved(gone));
    }
    out
}

/// Why a reload left the running config in place.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is not a valid config.
    #[error("{0}")]
    Invalid(#[from] super::ConfigErrors),
    /// The file is valid, but a file change may not make these changes on its own.
    #[error("refused on a file change: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused(Vec<GuardedChange>),
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::Path;

    use super::*;
    use crate::config::{load_str, Env};

    fn load(doc: &str) -> Snapshot {
        let var = |name: &str| (name == "K1" || name == "K2" || name == "ADMIN").then(|| format!("v-{name}"));
        let resolve = |_: &str, port: u16| Ok::<_, String>(SocketAddr::from(([127, 0, 0, 1], port)));
        let env = Env {
            var: &var,
            resolve: &resolve,
        };
        load_str(Path::new("t.yaml"), doc, &env).unwrap()
    }

    const FULL: &str = "\
server: { reload_poll: 1s }
admin: { token: \"${ADMIN}\" }
auth: { required: true }
keys:
  - { id: k1, key: \"${K1}\" }
  - { id: k2, key: \"${K2}\" }
";

    #[test]
    fn a_file_cut_before_auth_is_guarded_on_every_count() {
        let prev = load(FULL);
        let cut = &FULL[..FULL.find("auth:").unwrap()];
        let changes = guarded_changes(&prev, &load(cut));
        assert_eq!(
            changes,
            vec![
                GuardedChange::SectionsRemoved(vec!["auth".into(), "keys".into()]),
                GuardedChange::AuthDisabled,
                GuardedChange::KeysRemoved(vec!["k1".into(), "k2".into()]),
            ]
        );
    }

    #[test]
    fn each_weakening_is_named_and_ordinary_edits_are_not() {
        let prev = load(FULL);
        let off = load(&FULL.replace("required: true", "required: false"));
        assert_eq!(guarded_changes(&prev, &off), vec![GuardedChange::AuthDisabled]);
        let no_admin = load(&FULL.replace("\"${ADMIN}\"", "\"${UNSET:-}\""));
        assert_eq!(
            guarded_changes(&prev, &no_admin),
            vec![GuardedChange::AdminTokenRemoved]
        );
        let one_key = load(&FULL.replace("  - { id: k2, key: \"${K2}\" }\n", ""));
        assert_eq!(
            guarded_changes(&prev, &one_key),
            vec![GuardedChange::KeysRemoved(vec!["k2".into()])]
        );
        // Adding, tightening and changing values is not guarded.
        let more = load(&format!("{FULL}routes: []\n").replace("reload_poll: 1s", "reload_poll: 2s"));
        assert!(guarded_changes(&prev, &more).is_empty());
        assert!(guarded_changes(&off, &prev).is_empty());
    }
}
