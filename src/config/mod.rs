//! Configuration: the YAML file (`raw`), `${ENV}` secrets (`env`, `secret`), validation into an
//! immutable `Snapshot` (`compile`), and the `ConfigStore` that swaps snapshots atomically on
//! reload (`store`).
//!
//! Invariants: a snapshot is only ever built whole and valid; requests hold the `Arc<Snapshot>`
//! they started with, so a reload never changes a request mid-flight; a failed reload leaves the
//! running snapshot untouched.

pub mod compile;
pub mod env;
pub mod error;
pub mod locate;
pub mod raw;
pub mod secret;
pub mod snapshot;
pub mod store;

use std::path::Path;

pub use compile::Env;
pub use error::{ConfigError, ConfigErrors};
pub use snapshot::{ModelAlias, Provider, ProviderOptions, ServerSettings, Snapshot, Target, Timeouts, MAX_PLAN};
pub use store::ConfigStore;

use locate::Seg;

/// Parses YAML text strictly. Errors name the file, line and key path.
pub fn parse(file: &Path, doc: &str) -> Result<raw::RawConfig, ConfigErrors> {
    let de = serde_yaml::Deserializer::from_str(doc);
    serde_path_to_error::deserialize::<_, raw::RawConfig>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.location().map(|l| l.line()).or_else(|| {
            let segs: Vec<Seg> = path
                .split('.')
                .filter(|s| !s.is_empty() && *s != "?")
                .map(|s| Seg::Key(s.into()))
                .collect();
            locate::line_of(doc, &segs)
        });
        ConfigErrors {
            errors: vec![ConfigError {
                file: file.display().to_string(),
                line,
                path: if path == "." { String::new() } else { path },
                message: strip_location(&inner.to_string()),
            }],
        }
    })
}

/// serde_yaml appends " at line X column Y"; the line is reported separately.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Reads, parses and compiles a config file against the real environment and DNS.
pub fn load_file(path: &Path) -> Result<Snapshot, ConfigErrors> {
    load_file_with(path, &Env::system())
}

pub fn load_file_with(path: &Path, env: &Env) -> Result<Snapshot, ConfigErrors> {
    let doc = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        errors: vec![ConfigError {
            file: path.display().to_string(),
            line: None,
            path: String::new(),
            message: format!("cannot read the config file: {e}"),
        }],
    })?;
    load_str(path, &doc, env)
}

pub fn load_str(path: &Path, doc: &str, env: &Env) -> Result<Snapshot, ConfigErrors> {
    let raw = parse(path, doc)?;
    let mut snap = compile::compile(raw, path, doc, env)?;
    snap.source_hash = content_hash(doc.as_bytes());
    Ok(snap)
}

/// A hash of a config file's bytes: the watcher reloads when the file's hash differs from the one
/// the running snapshot was built from.
pub fn content_hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests;
