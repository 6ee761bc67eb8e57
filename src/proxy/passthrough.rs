//! Native passthrough routes: `/passthrough/{provider}/{path…}` forwards any request (files,
//! batches, images, audio, fine-tuning, whatever a provider adds next) to that provider's base URL,
//! with the provider's credentials in place of the client's. This is the one route Pingora's own
//! proxy flow serves (DESIGN.md): `admit` runs in `request_filter` (auth was checked before it;
//! here the key's allow-list and the tenant's rate and concurrency limits), then `upstream_peer`,
//! `upstream_request_filter` (path, host, credentials), `upstream_response_filter` and
//! `response_body_filter` (the usage, counted from a JSON or SSE answer as it passes) and
//! `fail_to_proxy` (a provider-shaped 502). Bodies of any size stream through both ways without
//! being buffered; only a JSON answer is kept, up to `MAX_SCANNED`, to read its usage.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderName, CONTENT_TYPE, HOST};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;

use super::ctx::RequestCtx;
use super::head::names;
use super::pass::{Pass, Scan};
use super::{respond, tenant, AppState};
use crate::api::ApiError;
use crate::config::Target;
use crate::providers::ProviderKind;

/// A JSON answer larger than this is passed on without its usage being read.
const MAX_SCANNED: usize = 16 * 1024 * 1024;

/// Client headers that carry the client's own credentials (or the gateway's): never sent on.
const CLIENT_CREDENTIALS: [&str; 6] = [
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "proxy-authorization",
    "cookie",
];

/// `/passthrough/{provider}/{path…}` → the provider and the path below its base URL.
fn split(path_and_query: &str) -> Option<(&str, &str)> {
    let rest = path_and_query.strip_prefix("/passthrough/")?;
    let (name, below) = rest.split_once('/').unwrap_or((rest, ""));
    let name = name.split('?').next().unwrap_or_default();
    (!name.is_empty()).then_some((name, below))
}

/// Whether `path` is a passthrough route.
pub fn is_route(path: &str) -> bool {
    path.starts_with("/passthrough/")
}

/// Checks the request and readies the proxy flow: `Ok(false)` lets Pingora proxy it; `Ok(true)`:
/// an error was answered.
pub(super) async fn admit(state: &AppState, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    match prepare(state, session, ctx).await {
        Ok(pass) => {
            ctx.passthrough = Some(Box::new(pass));
            Ok(false)
        }
        Err(e) => respond::error(session, ctx, &e).await,
    }
}

async fn prepare(state: &AppState, session: &Session, ctx: &mut RequestCtx) -> std::result::Result<Pass, ApiError> {
    let header = session.req_header();
    let full = header
        .uri
        .path_and_query()
        .map_or_else(|| header.uri.path().to_string(), |pq| pq.as_str().to_string());
    let not_found = || ApiError::NotFound {
        method: header.method.to_string(),
        path: header.uri.path().chars().take(200).collect(),
    };
    let (name, below) = split(&full).ok_or_else(not_found)?;
    let Some(live) = ctx.live.clone() else {
        return Err(ApiError::UpstreamProtocol("no config loaded".into()));
    };
    let snapshot = &live.snapshot;
    let provider = snapshot.providers.get(name).cloned().ok_or_else(not_found)?;
    let label = format!("passthrough/{name}");
    if let Some(why) = &provider.disabled {
        return Err(ApiError::NoProvider {
            model: label,
            reason: why.clone(),
        });
    }
    if provider.kind == ProviderKind::Bedrock {
        // SigV4 signs a hash of the whole body, which a streamed body does not have yet.
        return Err(ApiError::Unsupported(
            "Passthrough to a Bedrock provider is not supported: its requests are signed over the whole body (SigV4), which a streamed body cannot be".into(),
        ));
    }
    // A provider signing in with an access token (Vertex, Azure with Entra ID) must have one.
    if let Some(cell) = &provider.options.token {
        if let Err(cause) = cell.current() {
            return Err(ApiError::CredentialsUnavailable {
                provider: provider.name.clone(),
                cause,
            });
        }
    }
    if ctx.key.as_ref().is_some_and(|k| !k.allows_model(&label)) {
        return Err(ApiError::ModelNotAllowedForKey { model: label });
    }
    tenant::admit_unsized(state, ctx, snapshot).await?;
    ctx.model = Some(label);
    let prefix = provider.path_prefix.trim_end_matches('/');
    let path = format!("{prefix}/{below}");
    Ok(Pass {
        pricing: Arc::clone(&snapshot.pricing),
        provider,
        path,
        scan: Scan::Nothing,
        sent: None,
    })
}

/// The provider's peer, with the provider's timeouts on every read.
pub(super) fn peer(ctx: &RequestCtx) -> Result<Box<HttpPeer>> {
    let Some(p) = ctx.passthrough.as_deref() else {
        return Error::e_explain(ErrorType::InternalError, "not a passthrough request");
    };
    let Some(peer) = p.provider.peer.as_ref() else {
        return Error::e_explain(ErrorType::ConnectError, "the provider has no address");
    };
    let mut peer = super::upstream::peer_of(peer).into_owned();
    let t = p.provider.timeouts;
    peer.options.read_timeout = Some(t.first_byte.max(t.idle));
    peer.options.write_timeout = Some(t.idle);
    Ok(Box::new(peer))
}

/// The upstream request: the provider's path and host, its credentials and headers, none of the
/// client's credentials nor the gateway's own headers.
pub(super) fn upstream_request(ctx: &mut RequestCtx, req: &mut RequestHeader) -> Result<()> {
    let Some(p) = ctx.passthrough.as_deref_mut() else {
        return Ok(());
    };
    let uri: http::Uri = p
        .path
        .parse()
        .map_err(|_| Error::explain(ErrorType::InternalError, "the passthrough path is not a valid URI"))?;
    req.set_uri(uri);
    for name in CLIENT_CREDENTIALS {
        req.remove_header(name);
    }
    let ours: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-tollgate-"))
        .cloned()
        .collect();
    for name in ours {
        req.remove_header(&name);
    }
    let provider = &p.provider;
    req.insert_header(HOST, provider.host_header.clone())?;
    if let Some(auth) = provider.next_auth() {
        req.insert_header(provider.auth_header.clone(), auth.clone())?;
    }
    if let Some(cell) = &provider.options.token {
        let token = cell
            .current()
            .ok()
            .and_then(|i| i.material.bearer().map(|t| format!("Bearer {}", t.expose())));
        if let Some(value) = token {
            req.insert_header(http::header::AUTHORIZATION, value)?;
        }
    }
    for (k, v) in &provider.headers {
        req.insert_header(k.clone(), v.clone())?;
    }
    p.sent = Some(Instant::now());
    Ok(())
}

/// The provider's response header: how its body's usage will be read, and the gateway's headers.
pub(super) fn response_header(ctx: &mut RequestCtx, resp: &mut ResponseHeader) -> Result<()> {
    let Some(p) = ctx.passthrough.as_deref_mut() else {
        return Ok(());
    };
    let status = resp.status.as_u16();
    let ct = resp
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let ok = (200..300).contains(&status);
    p.scan = match ct {
        _ if !ok => Scan::Nothing,
        ct if ct.starts_with("text/event-stream") => {
            Scan::Stream(std::sync::Mutex::new(p.provider.kind.adapter().observer()))
        }
        ct if ct.starts_with("application/json") => Scan::Json(Vec::new()),
        _ => Scan::Nothing,
    };
    ctx.stream = matches!(p.scan, Scan::Stream(_));
    ctx.status = status;
    if !ok {
        ctx.error = Some("upstream_status");
    }
    resp.insert_header(names::PROVIDER, p.provider.name.as_str())?;
    resp.insert_header(names::REQUEST_ID, ctx.request_id.as_str())?;
    Ok(())
}

/// A piece of the provider's body on its way to the client: read for its usage, passed on as
/// it is. At the end the usage and the serving provider go into the record.
pub(super) fn body(ctx: &mut RequestCtx, body: &Option<Bytes>, end: bool) {
    let Some(p) = ctx.passthrough.as_deref_mut() else {
        return;
    };
    if ctx.first_byte.is_none() && body.as_ref().is_some_and(|b| !b.is_empty()) {
        ctx.first_byte = Some(Instant::now());
    }
    if let Some(b) = body {
        match &mut p.scan {
            Scan::Stream(o) => {
                if let Ok(o) = o.get_mut() {
                    let _ = o.push(b);
                }
            }
            Scan::Json(buf) if buf.len() + b.len() <= MAX_SCANNED => buf.extend_from_slice(b),
            Scan::Json(_) => p.scan = Scan::Nothing,
            Scan::Nothing => {}
        }
    }
    if !end {
        return;
    }
    if let Some(sent) = p.sent {
        ctx.upstream_time += sent.elapsed();
    }
    let adapter = p.provider.kind.adapter();
    let (usage, model) = match std::mem::replace(&mut p.scan, Scan::Nothing) {
        Scan::Stream(o) => match o.into_inner() {
            Ok(mut o) => {
                let _ = o.finish();
                (o.usage(), None)
            }
            Err(_) => (None, None),
        },
        Scan::Json(buf) => (adapter.usage_of(&buf), model_of(&buf)),
        Scan::Nothing => (None, None),
    };
    ctx.usage = usage;
    let model = model.unwrap_or_default();
    let price = p.pricing.lookup(p.provider.pricing_family, &model).cloned();
    ctx.served_by = Some(Arc::new(Target {
        provider: Arc::clone(&p.provider),
        model_json: Bytes::from(serde_json::Value::String(model.clone()).to_string()),
        model,
        weight: 1,
        context_window: None,
        price,
        slot: 0,
    }));
}

/// The model a JSON answer names (OpenAI, Anthropic: `model`; Gemini: `modelVersion`).
fn model_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Named {
        model: Option<String>,
        #[serde(rename = "modelVersion")]
        model_version: Option<String>,
    }
    let n: Named = serde_json::from_slice(body).ok()?;
    n.model.or(n.model_version)
}

/// The provider could not be reached (or broke before answering): a provider-shaped error, once.
pub(super) async fn failed(session: &mut Session, ctx: &mut RequestCtx, e: &Error) -> u16 {
    let Some(p) = ctx.passthrough.as_deref() else {
        return 502;
    };
    if session.response_written().is_some() {
        ctx.error.get_or_insert("stream_cut");
        return 0;
    }
    let err = match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            ApiError::UpstreamTimeout(e.etype().as_str().to_string())
        }
        _ => ApiError::UpstreamConnect {
            provider: p.provider.name.clone(),
            url: p.provider.display_url.clone(),
            cause: e.etype().as_str().to_string(),
        },
    };
    ctx.error = Some(err.code());
    let status = err.status();
    let _ = respond::error(session, ctx, &err).await;
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_and_the_path_below_it() {
        assert_eq!(
            split("/passthrough/openai/files?purpose=x"),
            Some(("openai", "files?purpose=x"))
        );
        assert_eq!(split("/passthrough/openai"), Some(("openai", "")));
        assert_eq!(split("/passthrough/openai?x=1"), Some(("openai", "")));
        assert_eq!(split("/passthrough/"), None);
        assert_eq!(split("/v1/chat/completions"), None);
    }
}
