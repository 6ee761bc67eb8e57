//! Role credentials of cloud providers, kept fresh off the request path.
//!
//! A provider configured for role credentials (Bedrock: `aws_credentials: chain`) holds a `Cell`:
//! the request path reads its current credentials with one atomic load (`Cell::current`) and
//! never waits on a token endpoint. The `Refresher` (a background service) fetches each cell's
//! credentials when it has none, or when less than `REFRESH_AHEAD` (or half their lifetime,
//! whichever is shorter) is left; a failed fetch keeps credentials that are still valid and is
//! retried with backoff, and a cell with nothing valid answers with the cause, which the request
//! gets as a 503 naming it (and the attempt policy passes to the provider's fallbacks).
//!
//! Cells live in a process-wide registry keyed by their source, so a config reload that keeps a
//! provider's source keeps its credentials (no refetch, no gap).
//!
//! The fetching itself is the providers' own crates: the AWS SDK's default credential chain
//! (`aws-config`: environment, shared config and credentials files, web identity through STS for
//! EKS IRSA, the ECS task role, EC2 instance metadata with IMDSv2) and `gcp_auth` for a Google
//! service account (a signed JWT exchanged at the key's token endpoint), `azure_identity` for a
//! Microsoft Entra ID client secret. Only the Google metadata
//! server's one GET is hand-rolled (`google_metadata` says why).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use dashmap::DashMap;

use crate::secret::Secret;

/// How long before expiry credentials are refreshed (at most: half their lifetime if shorter).
pub const REFRESH_AHEAD: Duration = Duration::from_secs(300);
/// Longest wait between two tries after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where a cell's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// The AWS default chain, in `region`, with an optional named profile.
    AwsChain { region: String, profile: Option<String> },
    /// A Google service account key file: a JWT it signs, exchanged at the key's `token_uri`.
    GoogleServiceAccount { key_file: std::path::PathBuf },
    /// The Google metadata server of the VM or pod (`GCE_METADATA_HOST`, else
    /// `metadata.google.internal`).
    GoogleMetadata,
    /// A Microsoft Entra ID application's client secret (client-credentials grant), at
    /// `AZURE_AUTHORITY_HOST` (else `https://login.microsoftonline.com`).
    EntraClientSecret {
        tenant_id: String,
        client_id: String,
        secret: Secret,
    },
}

/// The OAuth scope of Azure OpenAI's access tokens.
pub const AZURE_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// The OAuth scope of Vertex AI's access tokens.
pub const GOOGLE_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::AwsChain { profile: Some(p), .. } => format!("the AWS credential chain (profile {p:?})"),
            Source::AwsChain { .. } => "the AWS credential chain".into(),
            Source::GoogleServiceAccount { key_file } => {
                format!("the Google service account key {}", key_file.display())
            }
            Source::GoogleMetadata => "the Google metadata server".into(),
            Source::EntraClientSecret {
                tenant_id, client_id, ..
            } => {
                format!("Microsoft Entra ID (tenant {tenant_id}, client {client_id})")
            }
        }
    }
}

/// What a source issues.
#[derive(Debug)]
pub enum Material {
    /// AWS keys to sign with.
    Aws {
        access_key_id: Secret,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    },
    /// An OAuth access token, sent as `Authorization: Bearer`.
    Bearer(Secret),
}

impl Material {
    pub fn bearer(&self) -> Option<&Secret> {
        match self {
            Material::Bearer(t) => Some(t),
            Material::Aws { .. } => None,
        }
    }
}

/// Credentials as issued.
#[derive(Debug)]
pub struct Issued {
    pub material: Material,
    pub expires: Option<SystemTime>,
    /// When they were fetched (their lifetime is `expires - fetched`).
    pub fetched: SystemTime,
}

impl Issued {
    fn valid_at(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|e| e > now)
    }

    /// Whether they should be replaced now.
    fn due(&self, now: SystemTime) -> bool {
        let Some(expires) = self.expires else {
            return false;
        };
        let lifetime = expires.duration_since(self.fetched).unwrap_or_default();
        let ahead = REFRESH_AHEAD.min(lifetime / 2);
        expires.duration_since(now).map_or(true, |left| left <= ahead)
    }
}

#[derive(Debug, Default)]
struct State {
    issued: Option<Arc<Issued>>,
    /// Why the last fetch failed (cleared by a success).
    error: Option<String>,
    failures: u32,
    /// No fetch before this (backoff after a failure).
    not_before: Option<SystemTime>,
}

/// One source's current credentials.
#[derive(Debug)]
pub struct Cell {
    source: Source,
    state: ArcSwap<State>,
}

impl PartialEq for Cell {
    fn eq(&self, other: &Cell) -> bool {
        self.source == other.source
    }
}

impl Eq for Cell {}

impl Cell {
    /// The credentials to sign with now, or why there are none.
    pub fn current(&self) -> Result<Arc<Issued>, String> {
        let state = self.state.load();
        match &state.issued {
            Some(i) if i.valid_at(SystemTime::now()) => Ok(Arc::clone(i)),
            _ => Err(match &state.error {
                Some(e) => format!("{}: {e}", self.source.describe()),
                None => format!("{} has not answered yet", self.source.describe()),
            }),
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    fn needs_fetch(&self, now: SystemTime) -> bool {
        let state = self.state.load();
        if state.not_before.is_some_and(|t| now < t) {
            return false;
        }
        state.issued.as_ref().is_none_or(|i| i.due(now))
    }

    fn fetched(&self, issued: Issued) {
        self.state.store(Arc::new(State {
            issued: Some(Arc::new(issued)),
            ..State::default()
        }));
    }

    fn failed(&self, error: String, now: SystemTime) {
        let old = self.state.load();
        let failures = old.failures.saturating_add(1);
        let backoff = Duration::from_secs(1u64 << failures.min(5)).min(MAX_BACKOFF);
        tracing::warn!(source = %self.source.describe(), failures, "credentials could not be fetched: {error}");
        self.state.store(Arc::new(State {
            // Credentials still valid keep serving until they expire.
            issued: old.issued.clone().filter(|i| i.valid_at(now)),
            error: Some(error),
            failures,
            not_before: Some(now + backoff),
        }));
    }
}

/// Every cell of the process, by source.
pub fn cell(source: Source) -> Arc<Cell> {
    let cells = static_cells();
    Arc::clone(
        cells
            .entry(source.clone())
            .or_insert_with(|| {
                Arc::new(Cell {
                    source,
                    state: ArcSwap::from_pointee(State::default()),
                })
            })
            .value(),
    )
}

fn cells() -> Vec<Arc<Cell>> {
    static_cells().iter().map(|e| Arc::clone(e.value())).collect()
}

fn static_cells() -> &'static DashMap<Source, Arc<Cell>> {
    static CELLS: OnceLock<DashMap<Source, Arc<Cell>>> = OnceLock::new();
    CELLS.get_or_init(DashMap::new)
}

/// Fetches what the cells need, every `tick`, until `stop` resolves.
pub struct Refresher {
    chains: DashMap<Source, Arc<aws_config::default_provider::credentials::DefaultCredentialsChain>>,
}

impl Default for Refresher {
    fn default() -> Self {
        Refresher { chains: DashMap::new() }
    }
}

impl Refresher {
    /// One pass over every cell (each fetch bounded by `timeout`).
    pub async fn pass(&self, timeout: Duration) {
        let now = SystemTime::now();
        for cell in cells() {
            if !cell.needs_fetch(now) {
                continue;
            }
            match tokio::time::timeout(timeout, self.fetch(&cell.source)).await {
                Ok(Ok(issued)) => cell.fetched(issued),
                Ok(Err(e)) => cell.failed(e, SystemTime::now()),
                Err(_) => cell.failed(format!("no answer within {timeout:?}"), SystemTime::now()),
            }
        }
    }

    async fn fetch(&self, source: &Source) -> Result<Issued, String> {
        use aws_credential_types::provider::ProvideCredentials;
        match source {
            Source::AwsChain { region, profile } => {
                let chain = match self.chains.get(source).map(|c| Arc::clone(c.value())) {
                    Some(c) => c,
                    None => {
                        let mut b = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                            .region(aws_config::Region::new(region.clone()));
                        if let Some(p) = profile {
                            b = b.profile_name(p);
                        }
                        let c = Arc::new(b.build().await);
                        self.chains.insert(source.clone(), Arc::clone(&c));
                        c
                    }
                };
                let c = chain.provide_credentials().await.map_err(|e| error_chain(&e))?;
                Ok(Issued {
                    material: Material::Aws {
                        access_key_id: Secret::new(c.access_key_id()),
                        secret_access_key: Secret::new(c.secret_access_key()),
                        session_token: c.session_token().map(Secret::new),
                    },
                    expires: c.expiry(),
                    fetched: SystemTime::now(),
                })
            }
            Source::GoogleServiceAccount { key_file } => {
                use gcp_auth::TokenProvider;
                // A fresh account each time: the crate's own cache would hand back the token it
                // holds until 20 s before its expiry, and refreshing ahead is ours to decide.
                let json = tokio::fs::read_to_string(key_file)
                    .await
                    .map_err(|e| format!("cannot read the key file: {e}"))?;
                let account = gcp_auth::CustomServiceAccount::from_json(&json).map_err(|e| error_chain(&e))?;
                let token = account.token(&[GOOGLE_SCOPE]).await.map_err(|e| error_chain(&e))?;
                let expires = SystemTime::UNIX_EPOCH
                    + Duration::from_secs(u64::try_from(token.expires_at().timestamp()).unwrap_or(0));
                Ok(Issued {
                    material: Material::Bearer(Secret::new(token.as_str())),
                    expires: Some(expires),
                    fetched: SystemTime::now(),
                })
            }
            Source::GoogleMetadata => google_metadata().await,
            Source::EntraClientSecret {
                tenant_id,
                client_id,
                secret,
            } => {
                use azure_core::credentials::TokenCredential;
                // A fresh credential each time, for the same reason as Google's above.
                let credential = azure_identity::ClientSecretCredential::new(
                    tenant_id,
                    client_id.clone(),
                    azure_core::credentials::Secret::new(secret.expose().to_string()),
                    None,
                )
                .map_err(|e| error_chain(&e))?;
                let token = credential
                    .get_token(&[AZURE_SCOPE], None)
                    .await
                    .map_err(|e| error_chain(&e))?;
                let expires = SystemTime::UNIX_EPOCH
                    + Duration::from_secs(u64::try_from(token.expires_on.unix_timestamp()).unwrap_or(0));
                Ok(Issued {
                    material: Material::Bearer(Secret::new(token.token.secret())),
                    expires: Some(expires),
                    fetched: SystemTime::now(),
                })
            }
        }
    }
}

/// A token from the Google metadata server. Hand-rolled (one GET): `gcp_auth`'s metadata client
/// has the host fixed, so it could neither honour `GCE_METADATA_HOST` (as Google's own libraries
/// do) nor be tested against a fake.
async fn google_metadata() -> Result<Issued, String> {
    #[derive(serde::Deserialize)]
    struct Token {
        access_token: String,
        expires_in: u64,
    }
    let host = std::env::var("GCE_METADATA_HOST").unwrap_or_else(|_| "metadata.google.internal".into());
    let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token");
    let fetched = SystemTime::now();
    let token: Token = tokio::task::spawn_blocking(move || {
        ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build()
            .get(&url)
            .set("Metadata-Flavor", "Google")
            .call()
            .map_err(|e| e.to_string())?
            .into_json::<Token>()
            .map_err(|e| format!("unreadable answer: {e}"))
    })
    .await
    .map_err(|e| e.to_string())??;
    Ok(Issued {
        material: Material::Bearer(Secret::new(token.access_token)),
        expires: Some(fetched + Duration::from_secs(token.expires_in)),
        fetched,
    })
}

/// An error and its causes, on one line (the SDK's top-level message alone is often generic).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(lifetime: Duration, age: Duration) -> Issued {
        let fetched = SystemTime::now() - age;
        Issued {
            material: Material::Bearer(Secret::new("t")),
            expires: Some(fetched + lifetime),
            fetched,
        }
    }

    #[test]
    fn credentials_are_refreshed_ahead_of_expiry() {
        let now = SystemTime::now();
        // An hour-long credential: due in its last five minutes.
        assert!(!issued(Duration::from_secs(3600), Duration::from_secs(3000)).due(now));
        assert!(issued(Duration::from_secs(3600), Duration::from_secs(3400)).due(now));
        // A short one: due in its second half.
        assert!(!issued(Duration::from_secs(10), Duration::from_secs(4)).due(now));
        assert!(issued(Duration::from_secs(10), Duration::from_secs(6)).due(now));
        assert!(!issued(Duration::from_secs(10), Duration::from_secs(11)).valid_at(now));
    }

    #[test]
    fn a_failure_keeps_valid_credentials_and_names_its_cause_once_they_expire() {
        let c = cell(Source::AwsChain {
            region: "test-1".into(),
            profile: Some("unit".into()),
        });
        assert!(c.current().unwrap_err().contains("has not answered yet"));
        c.fetched(issued(Duration::from_secs(3600), Duration::ZERO));
        c.failed("connection refused".into(), SystemTime::now());
        assert!(c.current().is_ok(), "still valid: still served");
        assert!(!c.needs_fetch(SystemTime::now()), "backing off");
        c.fetched(issued(Duration::from_secs(1), Duration::from_secs(2)));
        c.failed("connection refused".into(), SystemTime::now());
        let why = c.current().unwrap_err();
        assert!(
            why.contains("connection refused") && why.contains("AWS credential chain"),
            "{why}"
        );
    }
}
