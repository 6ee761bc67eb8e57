//! Configuration: the YAML file (`raw`, read by `parse`, which lists every structural problem),
//! `${ENV}` secrets (`env`, `secret`), validation into an immutable `Snapshot` (`compile`), and
//! the `ConfigStore` that swaps snapshots atomically on reload (`store`), under the reload policy
//! (`reload`: what only a confirmed reload, SIGUSR2, may do) once the file has settled (`watch`).
//!
//! Invariants: a snapshot is only ever built whole and valid; requests hold the `Arc<Snapshot>`
//! they started with, so a reload never changes a request mid-flight; a failed reload leaves the
//! running snapshot untouched.

pub mod compile;
pub mod dns;
pub mod doc_paths;
pub mod env;
pub mod error;
pub mod locate;
pub mod models;
pub mod moved;
mod parse;
pub mod raw;
mod raw_key;
pub mod reload;
/// `Secret` lives at the crate root (providers use it too); `config::secret` stays a path to it.
pub use crate::secret;
pub mod snapshot;
pub mod store;
pub mod watch;

use std::path::Path;

pub use compile::Env;
pub use error::{ConfigError, ConfigErrors};
pub use snapshot::{ModelAlias, Peer, Provider, ProviderOptions, ServerSettings, Snapshot, Target, Timeouts, MAX_PLAN};
pub use store::ConfigStore;

/// Reads, parses and compiles a config file against the real environment and DNS.
pub fn load_file(path: &Path) -> Result<Snapshot, ConfigErrors> {
    load_file_with(path, &Env::system())
}

pub fn load_file_with(path: &Path, env: &Env) -> Result<Snapshot, ConfigErrors> {
    let bytes = std::fs::read(path).map_err(|e| unreadable(path, &e))?;
    load_bytes(path, &bytes, env)
}

/// Loads a config from the file's bytes, already read: the watcher decides a change has settled
/// by these very bytes' hash, and a second read could see another content.
pub fn load_bytes(path: &Path, bytes: &[u8], env: &Env) -> Result<Snapshot, ConfigErrors> {
    let doc = std::str::from_utf8(bytes).map_err(|e| unreadable(path, &e))?;
    load_str(path, doc, env)
}

/// The file could not be read (or is not text).
pub fn unreadable(path: &Path, e: &dyn std::fmt::Display) -> ConfigErrors {
    ConfigErrors {
        errors: vec![ConfigError {
            file: path.display().to_string(),
            line: None,
            path: String::new(),
            message: format!("cannot read the config file: {e}"),
        }],
    }
}

pub fn load_str(path: &Path, doc: &str, env: &Env) -> Result<Snapshot, ConfigErrors> {
    let parsed = parse::parse_document(path, doc).map_err(|e| ConfigErrors { errors: vec![e] })?;
    let mut errors = parsed.errors;
    let original = |p: &[locate::Seg]| parse::original(p, &parsed.removed);
    // The secret files the compile reads, with what they held: the watcher's baseline.
    let secrets = std::cell::RefCell::new(std::collections::BTreeMap::new());
    let recording = |name: &str| {
        let value = (env.var)(name);
        if env::is_file_backed(name) {
            secrets.borrow_mut().insert(name.to_string(), value.clone());
        }
        value
    };
    let env = &Env {
        var: &recording,
        resolve: env.resolve,
    };
    match parsed.raw.map(|raw| compile::compile(raw, path, doc, env, &original)) {
        Some(Ok(mut snap)) if errors.is_empty() => {
            let secrets = secrets.take();
            snap.secrets_hash = secrets_hash(&secrets);
            snap.secret_refs = secrets.into_keys().collect();
            snap.source_hash = content_hash(doc.as_bytes());
            snap.source = std::sync::Arc::from(doc);
            snap.sections = parsed.sections;
            snap.doc_paths = parsed.paths;
            return Ok(snap);
        }
        Some(Err(semantic)) => {
            // The rest of the file is still checked; what only follows from a part already
            // reported (and left out) is not reported again.
            let follows = |e: &ConfigError| parsed.dropped.iter().any(|d| e.message.contains(&format!("{d:?}")));
            errors.extend(semantic.errors.into_iter().filter(|e| !follows(e)));
        }
        Some(Ok(_)) | None => {}
    }
    // In file order; whole-file problems last.
    errors.sort_by_key(|e| (e.line.is_none(), e.line));
    Err(ConfigErrors { errors })
}

/// A hash of a config file's bytes: the watcher reloads when the file's hash differs from the one
/// the running snapshot was built from.
pub fn content_hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// A hash of what the secret files held (`None`: unset), by reference; compared by the watcher.
pub fn secrets_hash(values: &std::collections::BTreeMap<String, Option<String>>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    values.hash(&mut h);
    h.finish()
}

/// `secrets_hash` of what the files referenced by `refs` hold now.
pub fn current_secrets_hash(refs: &[String]) -> u64 {
    secrets_hash(&refs.iter().map(|r| (r.clone(), env::system_lookup(r))).collect())
}

#[cfg(test)]
mod cache_tests;
#[cfg(test)]
mod provider_tests;
#[cfg(test)]
mod tests;
