//! Providers: kind, base URL and presets, keys from the environment (a provider whose key is
//! unset is disabled, with one warning), resolved peers and auth headers, timeouts, options, and
//! the AWS credentials of Bedrock.

use http::{HeaderName, HeaderValue};

use super::{key, merge_timeouts, usage, Ctx, Env};
use crate::config::env::expand_with;
use crate::config::locate::Seg;
use crate::config::raw::{RawProvider, RawProviderKind};
use crate::config::snapshot::{Peer, Provider, Timeouts};
use crate::providers::{AwsCredentials, AwsKeys, ProviderKind, ProviderOptions};
use crate::secret::Secret;

pub(super) fn compile_provider(name: &str, p: &RawProvider, defaults: Timeouts, env: &Env, cx: &mut Ctx) -> Provider {
    let path = |f: &str| vec![key("providers"), key(name), key(f)];
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') || name.is_empty() {
        cx.error(
            &[key("providers"), key(name)],
            "provider names use letters, digits, '-' and '_'",
        );
    }
    let kind = match p.kind {
        RawProviderKind::Openai => ProviderKind::OpenAi,
        RawProviderKind::OpenaiCompatible => ProviderKind::OpenAiCompatible,
        RawProviderKind::Azure => ProviderKind::Azure,
        RawProviderKind::Anthropic => ProviderKind::Anthropic,
        RawProviderKind::Gemini => ProviderKind::Gemini,
        RawProviderKind::Bedrock => ProviderKind::Bedrock,
        RawProviderKind::Vertex => ProviderKind::Vertex,
        RawProviderKind::VertexAnthropic => ProviderKind::VertexAnthropic,
    };
    let vertex = matches!(kind, ProviderKind::Vertex | ProviderKind::VertexAnthropic);
    let mut options = ProviderOptions::default();
    if let Some(v) = &p.anthropic_version {
        options.anthropic_version = v.clone();
    }
    if let Some(n) = p.default_max_tokens {
        if n == 0 {
            cx.error(&path("default_max_tokens"), "must be greater than 0");
        }
        options.default_max_tokens = n;
    }
    options.api_version = p.api_version.clone();
    if kind == ProviderKind::Azure && p.api_version.as_deref().is_none_or(str::is_empty) {
        cx.error(
            &[key("providers"), key(name)],
            "kind: azure needs api_version (e.g. \"2024-10-21\")",
        );
    }
    if p.api_version
        .as_deref()
        .is_some_and(|v| !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    {
        cx.error(&path("api_version"), "must be letters, digits, '-' and '.'");
    }
    if p.api_version.is_some() && kind != ProviderKind::Azure {
        cx.error(&path("api_version"), "only applies to kind: azure");
    }
    if (p.anthropic_version.is_some() || p.default_max_tokens.is_some()) && kind != ProviderKind::Anthropic {
        cx.error(
            &[key("providers"), key(name)],
            "anthropic_version and default_max_tokens only apply to kind: anthropic",
        );
    }
    let timeouts = merge_timeouts(&path("timeouts"), &p.timeouts, defaults, cx);
    let mut disabled = (!p.enabled).then(|| "disabled in the config (enabled: false)".to_string());
    let mut bedrock_base = None;
    if kind == ProviderKind::Bedrock {
        let (region, aws, why) = compile_aws(name, p, env, cx);
        bedrock_base = region.map(|r| format!("https://bedrock-runtime.{r}.amazonaws.com"));
        options.aws = aws;
        if let (Some(why), None) = (why, &disabled) {
            cx.warnings.push(format!("provider {name:?} is disabled: {why}"));
            disabled = Some(why);
        }
    } else {
        for (f, v) in [
            ("aws_region", &p.aws_region),
            ("aws_access_key_id", &p.aws_access_key_id),
            ("aws_secret_access_key", &p.aws_secret_access_key),
            ("aws_session_token", &p.aws_session_token),
            ("aws_credentials", &p.aws_credentials),
            ("aws_profile", &p.aws_profile),
        ] {
            if v.is_some() {
                cx.error(&path(f), "only applies to kind: bedrock");
            }
        }
    }

    let entra = kind == ProviderKind::Azure && p.azure_credentials.as_deref() == Some("entra");
    if kind == ProviderKind::Azure {
        options.token = compile_entra(name, p, env, cx);
    } else {
        for (f, v) in [
            ("azure_credentials", &p.azure_credentials),
            ("entra_tenant_id", &p.entra_tenant_id),
            ("entra_client_id", &p.entra_client_id),
            ("entra_client_secret", &p.entra_client_secret),
        ] {
            if v.is_some() {
                cx.error(&path(f), "only applies to kind: azure");
            }
        }
    }
    let mut vertex_site = None;
    if vertex {
        let (site, token) = compile_vertex(name, p, kind, cx);
        vertex_site = site;
        options.token = token;
    } else {
        for (f, v) in [
            ("vertex_project", &p.vertex_project),
            ("vertex_region", &p.vertex_region),
            ("google_credentials", &p.google_credentials),
        ] {
            if v.is_some() {
                cx.error(&path(f), "only applies to kind: vertex and kind: vertex_anthropic");
            }
        }
    }

    // Preset (OpenAI-compatible family): base URL default and quirks.
    let preset = match (&p.preset, kind) {
        (None, _) => None,
        (Some(name), ProviderKind::OpenAiCompatible) => match crate::providers::presets::find(name) {
            Some(pr) => Some(pr),
            None => {
                cx.error(
                    &path("preset"),
                    format!(
                        "unknown preset {name:?} (known: {})",
                        crate::providers::presets::names()
                    ),
                );
                None
            }
        },
        (Some(_), _) => {
            cx.error(&path("preset"), "only applies to kind: openai_compatible");
            None
        }
    };
    // Vertex sells Google's and Anthropic's models at their own prices.
    let pricing_family = match kind {
        ProviderKind::Vertex => ProviderKind::Gemini.as_str(),
        ProviderKind::VertexAnthropic => ProviderKind::Anthropic.as_str(),
        _ => preset.map_or(kind.as_str(), |pr| pr.name),
    };
    if let Some(pr) = preset {
        options.quirks = pr.quirks();
    }
    if !p.drop_fields.is_empty() {
        if !matches!(kind, ProviderKind::OpenAiCompatible | ProviderKind::OpenAi) {
            cx.error(&path("drop_fields"), "only applies to OpenAI-dialect providers");
        }
        for f in &p.drop_fields {
            if !options.quirks.drop_fields.contains(f) {
                options.quirks.drop_fields.push(f.clone());
            }
        }
    }
    let raw_base = match (&p.base_url, preset) {
        (Some(u), _) => u.clone(),
        (None, Some(pr)) => pr.base_url.to_string(),
        (None, None) if kind == ProviderKind::Bedrock => bedrock_base.unwrap_or_default(),
        (None, None) if vertex => vertex_site.as_ref().map(|s| s.default_base.clone()).unwrap_or_default(),
        (None, None) => {
            cx.error(
                &[key("providers"), key(name)],
                "needs base_url (or a preset that supplies one)",
            );
            String::new()
        }
    };

    // Base URL (may reference the environment; an unset variable here is an error, not a warning).
    let base_url = match expand_with(&raw_base, env.var) {
        Ok(e) if e.missing.is_empty() => Some(e.value),
        Ok(e) => {
            cx.error(&path("base_url"), e.missing_message());
            None
        }
        Err(msg) => {
            cx.error(&path("base_url"), msg);
            None
        }
    };
    let parsed = base_url
        .filter(|u| !u.is_empty())
        .and_then(|u| match url::Url::parse(&u) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
                if url.query().is_some() || url.fragment().is_some() {
                    cx.error(&path("base_url"), "must not have a query or fragment");
                    None
                } else {
                    Some(url)
                }
            }
            Ok(_) => {
                cx.error(
                    &path("base_url"),
                    format!("{u:?} must be an http:// or https:// URL with a host"),
                );
                None
            }
            Err(e) => {
                cx.error(&path("base_url"), format!("{u:?} is not a URL: {e}"));
                None
            }
        });

    // Keys: unset variables disable the provider with one warning.
    let mut keys = Vec::new();
    let mut missing = Vec::new();
    for (i, k) in p.api_keys.iter().enumerate() {
        match expand_with(k, env.var) {
            Ok(e) if e.missing.is_empty() && !e.value.is_empty() => keys.push(Secret::new(e.value)),
            Ok(e) => missing.extend(e.missing),
            Err(msg) => {
                let mut kp = path("api_keys");
                kp.push(Seg::Index(i));
                cx.error(&kp, msg);
            }
        }
    }
    let key_optional = preset.is_some_and(|pr| pr.key_optional);
    if kind == ProviderKind::Bedrock {
        if !p.api_keys.is_empty() {
            cx.error(
                &path("api_keys"),
                "kind: bedrock signs requests with the aws_* credentials; api_keys do not apply",
            );
        }
    } else if vertex || entra {
        if !p.api_keys.is_empty() && entra {
            cx.error(
                &path("api_keys"),
                "azure_credentials: entra sends Entra ID tokens; api_keys do not apply",
            );
        } else if !p.api_keys.is_empty() {
            cx.error(
                &path("api_keys"),
                "Vertex AI takes an OAuth access token from google_credentials; api_keys do not apply",
            );
        }
    } else if keys.is_empty() && disabled.is_none() && !(key_optional && missing.is_empty()) {
        let why = if missing.is_empty() {
            "has no api_keys".to_string()
        } else {
            format!("{} not set", crate::config::env::describe(&missing))
        };
        cx.warnings.push(format!("provider {name:?} is disabled: {why}"));
        disabled = Some(why);
    }
    let mut auth = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        match HeaderValue::try_from(format!("{}{}", kind.auth_header().1, k.expose())) {
            Ok(mut v) => {
                v.set_sensitive(true);
                auth.push(v);
            }
            Err(_) => {
                let mut kp = path("api_keys");
                kp.push(Seg::Index(i));
                cx.error(&kp, "the key contains characters that cannot go in an HTTP header");
            }
        }
    }

    let mut headers = Vec::new();
    for (h, v) in &p.headers {
        let mut hp = path("headers");
        hp.push(key(h));
        let Ok(hn) = HeaderName::try_from(h.as_str()) else {
            cx.error(&hp, "not a valid header name");
            continue;
        };
        if matches!(
            hn.as_str(),
            "host" | "content-length" | "authorization" | "transfer-encoding" | "connection"
        ) {
            cx.error(&hp, "this header is set by the gateway and cannot be overridden");
            continue;
        }
        if kind == ProviderKind::Bedrock
            && matches!(hn.as_str(), "content-type" | "x-amz-date" | "x-amz-security-token")
        {
            cx.error(
                &hp,
                "this header is signed by the gateway for kind: bedrock and cannot be overridden",
            );
            continue;
        }
        match expand_with(v, env.var) {
            Ok(e) if e.missing.is_empty() => match HeaderValue::try_from(e.value) {
                Ok(mut hv) => {
                    hv.set_sensitive(v.contains("${"));
                    headers.push((hn, hv));
                }
                Err(_) => cx.error(&hp, "not a valid header value"),
            },
            Ok(e) => cx.error(&hp, e.missing_message()),
            Err(msg) => cx.error(&hp, msg),
        }
    }

    let (mut peer, mut host_header, mut path_prefix) = (None, HeaderValue::from_static(""), String::new());
    let display_url = parsed.as_ref().map(display_url).unwrap_or_default();
    if let Some(url) = parsed {
        let tls = url.scheme() == "https";
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        path_prefix = url.path().trim_end_matches('/').to_string();
        if let Some(site) = &vertex_site {
            path_prefix.push_str(&site.path);
        }
        let hh = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        host_header = HeaderValue::try_from(hh).unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        if disabled.is_none() {
            let resolved = (env.resolve)(&host, port);
            if host.parse::<std::net::IpAddr>().is_err() {
                cx.names.push(crate::config::dns::Name {
                    provider: name.to_string(),
                    host: host.clone(),
                    port,
                    addr: resolved.as_ref().ok().copied(),
                });
            }
            match resolved {
                Ok(addr) => {
                    peer = Some(Peer {
                        addr,
                        tls,
                        sni: host.clone(),
                        connect_timeout: timeouts.connect,
                        idle_timeout: std::time::Duration::from_secs(90),
                        built: Default::default(),
                    });
                }
                Err(e) => {
                    let why = format!("cannot resolve {host}: {e}");
                    cx.warnings.push(format!("provider {name:?} is disabled: {why}"));
                    disabled = Some(why);
                }
            }
        }
    }
    let limits = usage::parse_limits(&p.limits, &path("limits"), cx);
    let mut provider = Provider::new(
        name.to_string(),
        kind,
        disabled,
        peer,
        host_header,
        path_prefix,
        keys,
        auth,
        headers,
        timeouts,
        options,
    );
    provider.limits = limits;
    provider.pricing_family = pricing_family;
    provider.display_url = display_url;
    provider
}

/// An Azure provider's Entra ID credentials cell (`azure_credentials: entra`), or `None` for
/// `api_keys` (the default).
fn compile_entra(
    name: &str,
    p: &RawProvider,
    env: &Env,
    cx: &mut Ctx,
) -> Option<std::sync::Arc<crate::credentials::Cell>> {
    let path = |f: &str| vec![key("providers"), key(name), key(f)];
    let fields = [
        ("entra_tenant_id", &p.entra_tenant_id),
        ("entra_client_id", &p.entra_client_id),
        ("entra_client_secret", &p.entra_client_secret),
    ];
    match p.azure_credentials.as_deref() {
        None | Some("keys") => {
            for (f, v) in fields {
                if v.is_some() {
                    cx.error(&path(f), "only applies with azure_credentials: entra");
                }
            }
            None
        }
        Some("entra") => {
            let mut values = Vec::with_capacity(3);
            for (f, v) in fields {
                let value = match v.as_deref().map(|v| expand_with(v, env.var)) {
                    None => {
                        cx.error(
                            &[key("providers"), key(name)],
                            format!("azure_credentials: entra needs {f}"),
                        );
                        None
                    }
                    Some(Ok(e)) if e.missing.is_empty() && !e.value.is_empty() => Some(e.value),
                    Some(Ok(e)) if !e.missing.is_empty() => {
                        cx.error(&path(f), e.missing_message());
                        None
                    }
                    Some(Ok(_)) => {
                        cx.error(&path(f), "must not be empty");
                        None
                    }
                    Some(Err(msg)) => {
                        cx.error(&path(f), msg);
                        None
                    }
                };
                values.push(value);
            }
            let [Some(tenant_id), Some(client_id), Some(secret)] = <[Option<String>; 3]>::try_from(values).ok()? else {
                return None;
            };
            Some(crate::credentials::cell(
                crate::credentials::Source::EntraClientSecret {
                    tenant_id,
                    client_id,
                    secret: Secret::new(secret),
                },
            ))
        }
        Some(other) => {
            cx.error(
                &path("azure_credentials"),
                format!("{other:?} is not a credential source: use keys (api_keys, the default) or entra"),
            );
            None
        }
    }
}

/// Where a Vertex provider's models live.
struct VertexSite {
    /// `https://{region}-aiplatform.googleapis.com` (`https://aiplatform.googleapis.com` for
    /// `global`).
    default_base: String,
    /// `/v1/projects/{project}/locations/{region}/publishers/{google|anthropic}`.
    path: String,
}

/// A Vertex provider's project and region, and the credentials cell of its `google_credentials`.
fn compile_vertex(
    name: &str,
    p: &RawProvider,
    kind: ProviderKind,
    cx: &mut Ctx,
) -> (Option<VertexSite>, Option<std::sync::Arc<crate::credentials::Cell>>) {
    let path = |f: &str| vec![key("providers"), key(name), key(f)];
    let id = |field: &'static str, v: &Option<String>, cx: &mut Ctx| -> Option<String> {
        match v.as_deref() {
            None | Some("") => {
                cx.error(
                    &[key("providers"), key(name)],
                    format!("kind: {} needs {field}", kind.as_str()),
                );
                None
            }
            Some(v) if v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => Some(v.to_string()),
            Some(v) => {
                cx.error(
                    &path(field),
                    format!("{v:?} is not a Google Cloud {}", &field["vertex_".len()..]),
                );
                None
            }
        }
    };
    let project = id("vertex_project", &p.vertex_project, cx);
    let region = id("vertex_region", &p.vertex_region, cx);
    let token = match p.google_credentials.as_deref() {
        None | Some("") => {
            cx.error(
                &[key("providers"), key(name)],
                format!(
                    "kind: {} needs google_credentials: a service account key file, or metadata",
                    kind.as_str()
                ),
            );
            None
        }
        Some("metadata") => Some(crate::credentials::cell(crate::credentials::Source::GoogleMetadata)),
        Some(file) => {
            let key_file = super::usage::config_dir(cx.file).join(file);
            if !key_file.is_file() {
                cx.error(
                    &path("google_credentials"),
                    format!("{} is not a file", key_file.display()),
                );
            }
            Some(crate::credentials::cell(
                crate::credentials::Source::GoogleServiceAccount { key_file },
            ))
        }
    };
    let (Some(project), Some(region)) = (project, region) else {
        return (None, token);
    };
    let publisher = match kind {
        ProviderKind::VertexAnthropic => "anthropic",
        _ => "google",
    };
    let host = match region.as_str() {
        "global" => "aiplatform.googleapis.com".to_string(),
        r => format!("{r}-aiplatform.googleapis.com"),
    };
    let site = VertexSite {
        default_base: format!("https://{host}"),
        path: format!("/v1/projects/{project}/locations/{region}/publishers/{publisher}"),
    };
    (Some(site), token)
}

/// A base URL fit for an error message: scheme, host, port and path only (a userinfo, query or
/// fragment could hold a credential), without a trailing slash.
fn display_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    // Only fails for URLs that cannot have a userinfo (no host), which a base URL always has.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.as_str().trim_end_matches('/').to_string()
}

/// Bedrock's region and credentials: `(region, credentials, why the provider is disabled)`. A
/// missing or malformed region is a config error; credentials whose variables are unset disable
/// the provider (one warning, like an unset API key). A session token whose variable is unset is
/// treated as absent, except for temporary (`ASIA…`) access keys, which cannot sign without one.
fn compile_aws(
    name: &str,
    p: &RawProvider,
    env: &Env,
    cx: &mut Ctx,
) -> (Option<String>, Option<AwsCredentials>, Option<String>) {
    let path = |f: &str| vec![key("providers"), key(name), key(f)];
    let region = match p.aws_region.as_deref().map(|r| expand_with(r, env.var)) {
        None => {
            cx.error(
                &[key("providers"), key(name)],
                "kind: bedrock needs aws_region (e.g. \"us-east-1\")",
            );
            None
        }
        Some(Ok(e)) if !e.missing.is_empty() => {
            cx.error(&path("aws_region"), e.missing_message());
            None
        }
        Some(Ok(e))
            if !e.value.is_empty()
                && e.value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') =>
        {
            Some(e.value)
        }
        Some(Ok(e)) => {
            cx.error(
                &path("aws_region"),
                format!("{:?} is not an AWS region (e.g. \"us-east-1\")", e.value),
            );
            None
        }
        Some(Err(msg)) => {
            cx.error(&path("aws_region"), msg);
            None
        }
    };
    match p.aws_credentials.as_deref() {
        None | Some("keys") => {
            if p.aws_profile.is_some() {
                cx.error(&path("aws_profile"), "only applies with aws_credentials: chain");
            }
        }
        Some("chain") => {
            for (f, v) in [
                ("aws_access_key_id", &p.aws_access_key_id),
                ("aws_secret_access_key", &p.aws_secret_access_key),
                ("aws_session_token", &p.aws_session_token),
            ] {
                if v.is_some() {
                    cx.error(
                        &path(f),
                        "aws_credentials: chain takes its keys from the AWS credential chain; remove this",
                    );
                }
            }
            let creds = region.clone().map(|region| AwsCredentials {
                keys: AwsKeys::Chain(crate::credentials::cell(crate::credentials::Source::AwsChain {
                    region: region.clone(),
                    profile: p.aws_profile.clone(),
                })),
                region,
            });
            return (region, creds, None);
        }
        Some(other) => {
            cx.error(
                &path("aws_credentials"),
                format!("{other:?} is not a credential source: use keys (the aws_* keys, the default) or chain"),
            );
        }
    }
    let mut missing: Vec<String> = Vec::new();
    let mut absent: Vec<&str> = Vec::new();
    let mut secret = |field: &'static str, v: &Option<String>, cx: &mut Ctx| -> Option<Secret> {
        let Some(v) = v else {
            absent.push(field);
            return None;
        };
        match expand_with(v, env.var) {
            Ok(e) if e.missing.is_empty() && !e.value.is_empty() => Some(Secret::new(e.value)),
            Ok(e) => {
                missing.extend(e.missing);
                None
            }
            Err(msg) => {
                cx.error(&path(field), msg);
                None
            }
        }
    };
    let key_id = secret("aws_access_key_id", &p.aws_access_key_id, cx);
    let secret_key = secret("aws_secret_access_key", &p.aws_secret_access_key, cx);
    let token = match &p.aws_session_token {
        Some(t) => match expand_with(t, env.var) {
            Ok(e) if e.missing.is_empty() && !e.value.is_empty() => Some(Secret::new(e.value)),
            Ok(_) => None,
            Err(msg) => {
                cx.error(&path("aws_session_token"), msg);
                None
            }
        },
        None => None,
    };
    if key_id
        .as_ref()
        .is_some_and(|k| !k.expose().chars().all(|c| c.is_ascii_alphanumeric()))
    {
        cx.error(&path("aws_access_key_id"), "an access key id is letters and digits");
    }
    if token
        .as_ref()
        .is_some_and(|t| HeaderValue::try_from(t.expose()).is_err())
    {
        cx.error(
            &path("aws_session_token"),
            "the token contains characters that cannot go in an HTTP header",
        );
    }
    let (Some(access_key_id), Some(secret_access_key)) = (key_id, secret_key) else {
        let why = if missing.is_empty() {
            format!("has no {}", absent.join(" / "))
        } else {
            format!("{} not set", crate::config::env::describe(&missing))
        };
        return (region, None, Some(why));
    };
    if access_key_id.expose().starts_with("ASIA") && token.is_none() {
        let why = "temporary credentials (an ASIA… access key id) need aws_session_token".to_string();
        return (region, None, Some(why));
    }
    let creds = region.clone().map(|region| AwsCredentials {
        region,
        keys: AwsKeys::Static {
            access_key_id,
            secret_access_key,
            session_token: token,
        },
    });
    (region, creds, None)
}
