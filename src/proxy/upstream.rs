//! One upstream attempt through Pingora's `Connector`: connect (pooled), send the rendered request
//! with an exact `Content-Length`, and wait for the response header under the first-byte timeout,
//! abandoning the attempt the moment the client goes away.
//!
//! A pooled connection the provider closed while idle fails on first use; that is retried once on
//! a fresh connection and does not count as an attempt.

use std::borrow::Cow;
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
use crate::routing::attempts::Failure;

/// Why `send` got no response header.
#[derive(Debug)]
pub enum AttemptError {
    /// The call failed; the attempt policy decides what follows.
    Failed(Failure),
    /// The client disconnected, or the gateway's shutdown grace ran out, while we waited.
    Interrupted(Interrupt),
}

/// Pingora's error as the attempt policy sees it. Every error type is named, so a new one in a
/// Pingora upgrade is a compile error here, not a silent guess.
pub fn classify(e: &Error) -> Failure {
    let mut msg = e.etype().as_str().to_string();
    // A TLS failure's cause says which (an untrusted issuer, a name mismatch, a closed
    // handshake); it names certificates and hosts, never a key.
    if matches!(
        e.etype(),
        ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError
    ) {
        // rustls's reason is the first cause in the chain's text: "… tls connect error cause:
        // invalid peer certificate: UnknownIssuer, SNI: host cause: local address …".
        let chain = e.to_string();
        if let Some(at) = chain.find(" cause: ") {
            let reason = &chain[at + " cause: ".len()..];
            let end = [", SNI:", " cause: "]
                .iter()
                .filter_map(|stop| reason.find(stop))
                .min()
                .unwrap_or(reason.len());
            let mut end = end.min(160);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            msg = format!("{msg} ({})", reason[..end].trim());
        }
    }
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => Failure::Timeout(msg),
        // (A TLS handshake that timed out is reported as a connect failure, as it always was.)
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::ConnectProxyFailure
        | ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError
        | ErrorType::BindError
        | ErrorType::SocketError => Failure::Connect(msg),
        // The connection broke, or the provider spoke something that is not HTTP, before the
        // header was read.
        ErrorType::ConnectionClosed
        | ErrorType::ReadError
        | ErrorType::WriteError
        | ErrorType::InvalidHTTPHeader
        | ErrorType::H1Error
        | ErrorType::H2Error
        | ErrorType::H2Downgrade
        | ErrorType::InvalidH2 => Failure::Protocol(msg),
        // Not raised by the client side of a connection (or, for the X.509 lookup, not by
        // rustls); a protocol failure if one ever is.
        ErrorType::TLSWantX509Lookup
        | ErrorType::AcceptError
        | ErrorType::HTTPStatus(_)
        | ErrorType::FileOpenError
        | ErrorType::FileCreateError
        | ErrorType::FileReadError
        | ErrorType::FileWriteError
        | ErrorType::InternalError
        | ErrorType::UnknownError
        | ErrorType::Custom(_)
        | ErrorType::CustomCode(_, _) => Failure::Protocol(msg),
    }
}

/// An upstream connection with its response header read.
pub struct Upstream {
    pub session: HttpSession,
    pub started: Instant,
    /// `timeouts.first_byte` from the first write: the header must arrive by then, and a whole
    /// (non-streamed) answer's body too. Pingora's read timeout bounds each read only, which a
    /// provider sending a byte at a time never trips.
    pub deadline: Instant,
}

/// Pingora's peer for a provider's address: built once per config snapshot, on first use, and
/// kept in the address's `built` slot (building one per attempt costs an allocation and copies
/// of a few hundred bytes as it moves: ~1,000 instructions a request under callgrind).
/// Connections are pooled by the peer's content, so the peers of successive snapshots share them.
pub fn peer_of(p: &Peer) -> Cow<'_, HttpPeer> {
    match p.built.get_or_init(|| http_peer(p)) {
        Some(peer) => Cow::Borrowed(peer),
        None => Cow::Owned(http_peer(p)),
    }
}

fn http_peer(p: &Peer) -> HttpPeer {
    let mut peer = HttpPeer::new(p.addr, p.tls, p.sni.clone());
    peer.options.connection_timeout = Some(p.connect_timeout);
    peer.options.total_connection_timeout = Some(p.connect_timeout);
    peer.options.idle_timeout = Some(p.idle_timeout);
    peer
}

pub(super) fn request_header(
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
    let failed = |f| AttemptError::Failed(f);
    let peer = peer_of(target.provider.peer.as_ref().ok_or(failed(Failure::Unavailable))?);
    let mut header =
        request_header(target, rendered, stream, key).map_err(|e| failed(Failure::Protocol(e.to_string())))?;
    if let Some(tp) = traceparent {
        header
            .insert_header("traceparent", tp)
            .map_err(|e| failed(Failure::Protocol(e.to_string())))?;
    }
    let started = Instant::now();
    let deadline = started + timeouts.first_byte;
    for fresh_try in [false, true] {
        let (mut up, reused) = connector
            .get_http_session(&*peer)
            .await
            .map_err(|e| failed(classify(&e)))?;
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
            r = tokio::time::timeout_at(deadline.into(), exchange) => r.unwrap_or_else(|_| {
                Err(Error::explain(ErrorType::ReadTimedout, "no whole response header within timeouts.first_byte"))
            }),
            why = interrupted(client, stop) => return Err(AttemptError::Interrupted(why)),
        };
        match result {
            Ok(()) => {
                return Ok(Upstream {
                    session: up,
                    started,
                    deadline,
                })
            }
            Err(e) => {
                let failure = classify(&e);
                // A stale pooled connection: try once more on a new one.
                let stale = reused && !fresh_try && !matches!(failure, Failure::Timeout(_));
                if !stale {
                    return Err(failed(failure));
                }
            }
        }
    }
    Err(failed(Failure::Protocol("stale pooled connection".into())))
}

#[cfg(test)]
mod classify_tests {
    use super::*;

    #[test]
    fn pingoras_errors_are_classified_as_before() {
        for (etype, kind) in [
            (ErrorType::ConnectTimedout, "timeout"),
            (ErrorType::ReadTimedout, "timeout"),
            (ErrorType::WriteTimedout, "timeout"),
            (ErrorType::ConnectRefused, "connect"),
            (ErrorType::TLSHandshakeFailure, "connect"),
            (ErrorType::TLSHandshakeTimedout, "connect"),
            (ErrorType::InvalidCert, "connect"),
            (ErrorType::ConnectionClosed, "protocol"),
            (ErrorType::ReadError, "protocol"),
            (ErrorType::InvalidHTTPHeader, "protocol"),
            (ErrorType::H2Error, "protocol"),
            (ErrorType::InternalError, "protocol"),
        ] {
            let failure = classify(&Error::new(etype.clone()));
            assert_eq!(failure.kind(), kind, "{etype:?}");
        }
        assert_eq!(
            classify(&Error::new(ErrorType::ConnectRefused)),
            Failure::Connect("ConnectRefused".into())
        );
    }
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
            built: Default::default(),
        }
    }

    #[test]
    fn a_peer_is_built_once_per_address_and_kept() {
        let p = peer(true);
        let first = peer_of(&p);
        assert!(matches!(first, Cow::Borrowed(_)), "kept in the address's slot");
        let again = peer_of(&p);
        assert!(std::ptr::eq(&*first, &*again), "the same peer, not a second one");
        // A reloaded snapshot's address (a clone) builds its own, which shares the pool.
        let reloaded = p.clone();
        assert!(!std::ptr::eq(&*peer_of(&reloaded), &*first));
        assert_eq!(peer_of(&reloaded).reuse_hash(), first.reuse_hash());
    }

    #[test]
    fn peers_of_equal_addresses_share_the_pool_and_keep_the_settings() {
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
