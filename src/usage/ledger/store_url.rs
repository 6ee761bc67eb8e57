//! The ledger's storage URL: `sqlite:///abs/path.db`, `sqlite:relative/path.db` or
//! `postgres://user:pw@host:port/db` (also `postgresql://`). Parsing never echoes a password:
//! every name shown in a log line or an error is `display`, which has none.

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::pg_tls::PgConfig;
use super::LedgerError;

/// A hung PostgreSQL must not wedge the writer or the reader: these bound every wait.
pub(crate) const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const PG_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
const PG_TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
const PG_KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
const PG_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const PG_KEEPALIVE_RETRIES: u32 = 3;

pub(crate) enum StoreUrl {
    Sqlite { path: PathBuf, display: String },
    Postgres { config: Box<PgConfig>, display: String },
}

impl StoreUrl {
    pub fn parse(url: &str) -> Result<StoreUrl, LedgerError> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split(['?', '#']).next().unwrap_or_default();
            if path.is_empty() {
                return Err(LedgerError::InvalidUrl {
                    url: url.to_string(),
                    reason: "no file path (use sqlite:///abs/path.db or sqlite:relative/path.db)".into(),
                });
            }
            let path = std::path::absolute(path).map_err(|e| LedgerError::InvalidUrl {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
            let display = format!("sqlite:{}", path.display());
            return Ok(StoreUrl::Sqlite { path, display });
        }
        let scheme = url.split("://").next().unwrap_or_default();
        if scheme == "postgres" || scheme == "postgresql" {
            let display = redact_pg(url);
            let mut config = PgConfig::parse(url).map_err(|reason| LedgerError::InvalidUrl {
                url: display.clone(),
                reason,
            })?;
            harden(&mut config.config);
            return Ok(StoreUrl::Postgres {
                config: Box::new(config),
                display,
            });
        }
        let shown = if url.contains('@') {
            format!("{scheme}://…")
        } else {
            url.to_string()
        };
        Err(LedgerError::InvalidUrl {
            url: shown,
            reason: "unknown scheme (use sqlite:PATH or postgres://user:password@host:port/db)".into(),
        })
    }

    pub fn display(&self) -> &str {
        match self {
            StoreUrl::Sqlite { display, .. } | StoreUrl::Postgres { display, .. } => display,
        }
    }

    /// Spill files of different stores never mix: each store gets its own subdirectory, named
    /// after its password-free name.
    pub fn spill_subdir(&self) -> String {
        let (kind, name) = match self {
            StoreUrl::Sqlite { display, .. } => ("sqlite", display),
            StoreUrl::Postgres { display, .. } => ("postgres", display),
        };
        let digest = Sha256::digest(name.as_bytes());
        format!("{kind}-{}", hex::encode(&digest[..8]))
    }
}

/// Timeouts and keepalives, unless the URL set its own.
fn harden(c: &mut postgres::Config) {
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(PG_CONNECT_TIMEOUT);
    }
    if c.get_tcp_user_timeout().is_none() {
        c.tcp_user_timeout(PG_TCP_USER_TIMEOUT);
    }
    c.keepalives(true);
    c.keepalives_idle(PG_KEEPALIVE_IDLE);
    if c.get_keepalives_interval().is_none() {
        c.keepalives_interval(PG_KEEPALIVE_INTERVAL);
    }
    if c.get_keepalives_retries().is_none() {
        c.keepalives_retries(PG_KEEPALIVE_RETRIES);
    }
    if c.get_application_name().is_none() {
        c.application_name("tollgate");
    }
    let options = c.get_options().unwrap_or_default().to_string();
    if !options.contains("statement_timeout") {
        let st = format!("-c statement_timeout={}", PG_STATEMENT_TIMEOUT.as_millis());
        let joined = if options.is_empty() {
            st
        } else {
            format!("{options} {st}")
        };
        c.options(&joined);
    }
}

/// `postgres://user:secret@host:5432/db?x=y` → `postgres://user@host:5432/db`.
pub(crate) fn redact_pg(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "postgres://…".into();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (auth, hostpart) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let user = auth.map(|a| a.split(':').next().unwrap_or_default());
    match user {
        Some(u) if !u.is_empty() => format!("{scheme}://{u}@{hostpart}"),
        _ => format!("{scheme}://{hostpart}"),
    }
}
