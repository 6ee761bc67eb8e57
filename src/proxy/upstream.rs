//! One upstream attempt through Pingora's `Connector`: connect (pooled), send the rendered request
//! with an exact `Content-Length`, and wait for the response header under the first-byte timeout,
//! abandoning the attempt the moment the client goes away.
//!
//! A pooled connection the provider closed while idle fails on first use; that is retried once on
//! a fresh connection and does not count as an attempt.

use std::time::Instant;

use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};

use super::drain::{interrupted, Interrupt, Stop};
use crate::config::{Peer, Target, Timeouts};
use crate::providers::Rendered;

/// Why an attempt produced no response header.
#[derive(Debug)]
pub enum AttemptError {
    Connect(String),
    Timeout(String),
    Protocol(String),
    /// The client disconnected while we waited.
    ClientGone,
    /// The gateway is shutting down and its grace period ran out while we waited.
    Shutdown,
    /// The provider has no usable address or key (should have been filtered by the plan).
    Unavailable,
}

impl AttemptError {
    pub fn kind(&self) -> &'static str {
        match self {
            AttemptError::Connect(_) => "connect",
            AttemptError::Timeout(_) => "timeout",
            AttemptError::Protocol(_) => "protocol",
            AttemptError::ClientGone => "client_gone",
            AttemptError::Shutdown => "shutdown",
            AttemptError::Unavailable => "unavailable",
        }
    }

    pub fn from_pingora(e: &Error) -> AttemptError {
        let msg = e.etype().as_str().to_string();
        match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                AttemptError::Timeout(msg)
            }
            ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::ConnectProxyFailure
            | ErrorType::TLSHandshakeFailure
            | ErrorType::TLSHandshakeTimedout
            | ErrorType::InvalidCert
            | ErrorType::HandshakeError
            | ErrorType::BindError
            | ErrorType::SocketError => AttemptError::Connect(msg),
            _ => AttemptError::Protocol(msg),
        }
    }
}

/// An upstream connection with its response header read.
pub struct Upstream {
    pub session: HttpSession,
    pub started: Instant,
    /// The peer it was taken for: a fully read connection goes back to its pool.
    pub peer: HttpPeer,
}

/// Pingora's peer for a provider's address. Built per attempt: it is one small allocation (the
/// SNI), a few tens of nanoseconds, next to the session the connector allocates anyway; and
/// connections are pooled by the peer's content, so equal peers share them.
pub fn http_peer(p: &Peer) -> HttpPeer {
    let mut peer = HttpPeer::new(p.addr, p.tls, p.sni.clone());
    peer.options.connection_timeout = Some(p.connect_timeout);
    peer.options.total_connection_timeout = Some(p.connect_timeout);
    peer.options.idle_timeout = Some(p.idle_timeout);
    peer
}

fn request_header(
    target: &Target,
    rendered: &Rendered,
    stream: bool,
    key: Option<usize>,
) -> pingora::Result<RequestHeader> {
    let p = &target.provider;
    let mut req = RequestHeader::build(
        "POST",
        rendered.path.as_bytes(),
        Some(7 + p.headers.len() + rendered.headers.len()),
    )?;
    req.insert_header(http::header::HOST, p.host_header.clone())?;
    // The key the pool picked (skipping keys cooling down), else plain rotation.
    if let Some(auth) = key.and_then(|k| p.auth_at(k)).or_else(|| p.next_auth()) {
        req.insert_header(p.auth_header.clone(), auth.clone())?;
    }
    req.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    req.insert_header(http::header::CONTENT_LENGTH, rendered.body.len())?;
    req.insert_header(
        http::header::ACCEPT,
        if stream {
            "text/event-stream"
        } else {
            "application/json"
        },
    )?;
    req.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
    req.insert_header(
        http::header::USER_AGENT,
        concat!("tollgate/", env!("CARGO_PKG_VERSION")),
    )?;
    // Dialect headers after the defaults, so an adapter can override them (Bedrock's `accept`);
    // the provider's configured headers last.
    for (k, v) in &rendered.headers {
        req.insert_header(k.clone(), v.clone())?;
    }
    for (k, v) in &p.headers {
        req.insert_header(k.clone(), v.clone())?;
    }
    Ok(req)
}

/// Sends one attempt and reads its response header.
/// Sends the request and waits for the response header. `while_waiting` runs once the request
/// is written, while the provider works (on a connection that failed before that, it does not
/// run: the caller's own follow-up must not depend on it).
#[allow(clippy::too_many_arguments)]
pub async fn send<W: std::future::Future<Output = ()>>(
    connector: &Connector,
    client: &mut Session,
    target: &Target,
    rendered: &Rendered,
    stream: bool,
    timeouts: Timeouts,
    key: Option<usize>,
    traceparent: Option<&str>,
    stop: &mut Stop<'_>,
    while_waiting: W,
) -> Result<Upstream, AttemptError> {
    let mut while_waiting = Some(while_waiting);
    let peer = http_peer(target.provider.peer.as_ref().ok_or(AttemptError::Unavailable)?);
    let mut header =
        request_header(target, rendered, stream, key).map_err(|e| AttemptError::Protocol(e.to_string()))?;
    if let Some(tp) = traceparent {
        header
            .insert_header("traceparent", tp)
            .map_err(|e| AttemptError::Protocol(e.to_string()))?;
    }
    let started = Instant::now();
    for fresh_try in [false, true] {
        let (mut up, reused) = connector
            .get_http_session(&peer)
            .await
            .map_err(|e| AttemptError::from_pingora(&e))?;
        up.set_write_timeout(Some(timeouts.first_byte));
        up.set_read_timeout(Some(timeouts.first_byte));
        let exchange = async {
            up.write_request_header(Box::new(header.clone())).await?;
            up.write_request_body(rendered.body.clone(), true).await?;
            up.finish_request_body().await?;
            match while_waiting.take() {
                Some(work) => tokio::join!(up.read_response_header(), work).0,
                None => up.read_response_header().await,
            }
        };
        let result = tokio::select! {
            r = exchange => r,
            why = interrupted(client, stop) => return Err(match why {
                Interrupt::ClientGone => AttemptError::ClientGone,
                Interrupt::Shutdown => AttemptError::Shutdown,
            }),
        };
        match result {
            Ok(()) => {
                return Ok(Upstream {
                    session: up,
                    started,
                    peer,
                })
            }
            Err(e) => {
                let err = AttemptError::from_pingora(&e);
                // A stale pooled connection: try once more on a new one.
                let stale = reused && !fresh_try && !matches!(err, AttemptError::Timeout(_));
                if !stale {
                    return Err(err);
                }
            }
        }
    }
    Err(AttemptError::Protocol("stale pooled connection".into()))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use pingora::upstreams::peer::Peer as _;

    use super::*;

    fn peer(tls: bool) -> Peer {
        Peer {
            addr: SocketAddr::from(([127, 0, 0, 1], 8443)),
            tls,
            sni: "api.example.com".into(),
            connect_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(90),
        }
    }

    #[test]
    fn peers_built_per_attempt_share_the_pool_and_keep_the_settings() {
        let (a, b) = (http_peer(&peer(true)), http_peer(&peer(true)));
        assert_eq!(
            a.reuse_hash(),
            b.reuse_hash(),
            "equal peers reuse each other's connections"
        );
        assert_ne!(a.reuse_hash(), http_peer(&peer(false)).reuse_hash());
        assert!(a.tls() && a.sni() == "api.example.com");
        assert_eq!(a.options.connection_timeout, Some(Duration::from_secs(3)));
        assert_eq!(a.options.total_connection_timeout, Some(Duration::from_secs(3)));
        assert_eq!(a.options.idle_timeout, Some(Duration::from_secs(90)));
    }
}
