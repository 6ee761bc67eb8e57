//! `Guarded`: the client connection's byte stream with the gateway's deadlines around it.
//!
//! Pingora 0.9 times each read of a request header separately (its keep-alive timeout, or 60 s),
//! so a client sending one byte a minute holds a connection forever, and a reused connection
//! waits for its next request without end. The deadlines that bound a whole phase live here, in
//! the stream every read goes through, driven by the connection's `ConnState`:
//! - `Idle` (a kept-alive connection between requests): the first byte must come within the
//!   keep-alive timeout, else the connection is closed quietly (EOF to Pingora);
//! - `Header` (from accept, or from a reused connection's first byte, until the proxy takes the
//!   request): the whole header within the header timeout and `max_header_bytes`, else a 408 or
//!   431 goes out and the read fails;
//! - `Request` (the proxy has the request): no deadline here; the body deadline and upstream
//!   timeouts are the proxy's.
//!
//! Pingora answers a request it cannot parse (bad framing, a malformed request line, `CONNECT`)
//! itself, with an empty body and `Server: Pingora`, before any hook of ours runs. Such an answer
//! is the only thing ever written in the `Idle`/`Header` phases, so a write there is replaced by
//! the gateway's own JSON error with the same status.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream, TimingDigest,
    UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{canned, ConnShared, ConnState, Phase};

/// The client stream, guarded by its connection's deadlines.
pub struct Guarded {
    inner: Stream,
    state: Arc<ConnState>,
    shared: Arc<ConnShared>,
    /// The phase deadline's timer, made on the first read that has to wait for one.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Header bytes read in the current `Header` phase.
    header_bytes: usize,
    /// Set once a deadline or a size limit ended the connection: reads fail, writes are dropped.
    failed: Option<io::ErrorKind>,
    /// The gateway's own answer replacing one Pingora wrote, and how much of it went out.
    replacing: Option<(Bytes, usize)>,
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded").field("inner", &self.inner).finish()
    }
}

impl Guarded {
    pub(super) fn new(inner: Stream, state: Arc<ConnState>, shared: Arc<ConnShared>) -> Guarded {
        Guarded {
            inner,
            state,
            shared,
            timer: None,
            header_bytes: 0,
            failed: None,
            replacing: None,
        }
    }

    /// Waits for `deadline` alongside a pending read: `Ready` when it passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>, deadline: tokio::time::Instant) -> Poll<()> {
        let timer = match &mut self.timer {
            Some(t) => {
                if t.deadline() != deadline {
                    t.as_mut().reset(deadline);
                }
                t
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        timer.as_mut().poll(cx)
    }

    /// A phase's deadline (or the header size limit) ended the connection.
    fn fail(&mut self, cx: &mut Context<'_>, phase: Phase) -> Poll<io::Result<()>> {
        let m = &self.shared.metrics;
        match phase {
            Phase::Idle => {
                m.idle_timeout.inc();
                // EOF before a byte of the next request: Pingora closes quietly.
                self.failed = Some(io::ErrorKind::UnexpectedEof);
                return Poll::Ready(Ok(()));
            }
            Phase::Header if self.header_bytes >= self.shared.limits.max_header_bytes => {
                m.header_too_large.inc();
                let answer = self.shared.canned.header_too_large.clone();
                self.answer(cx, &answer);
            }
            Phase::Header => {
                m.header_timeout.inc();
                // A client that connected and sent nothing gets no answer, as nginx does.
                if self.header_bytes > 0 {
                    let answer = self.shared.canned.header_timeout.clone();
                    self.answer(cx, &answer);
                } else {
                    self.failed = Some(io::ErrorKind::UnexpectedEof);
                    return Poll::Ready(Ok(()));
                }
            }
            Phase::Request => {}
        }
        self.failed = Some(io::ErrorKind::TimedOut);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the request header did not arrive in time or in size",
        )))
    }

    /// Writes a short canned answer as far as the socket takes it now (a few hundred bytes: the
    /// send buffer takes it whole unless the client stopped reading, and then it cannot matter).
    fn answer(&mut self, cx: &mut Context<'_>, bytes: &Bytes) {
        let mut sent = 0;
        while sent < bytes.len() {
            match Pin::new(&mut *self.inner).poll_write(cx, &bytes[sent..]) {
                Poll::Ready(Ok(n)) if n > 0 => sent += n,
                _ => break,
            }
        }
        let _ = Pin::new(&mut *self.inner).poll_flush(cx);
    }
}

impl AsyncRead for Guarded {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(kind) = this.failed {
            return Poll::Ready(match kind {
                io::ErrorKind::UnexpectedEof => Ok(()),
                k => Err(io::Error::new(k, "the connection was closed by a deadline")),
            });
        }
        if this.state.current() == Phase::Request {
            return Pin::new(&mut *this.inner).poll_read(cx, buf);
        }
        let (phase, deadline) = this.state.phase();
        if phase == Phase::Header && this.header_bytes >= this.shared.limits.max_header_bytes {
            // Pingora reads again only while the header is incomplete.
            return this.fail(cx, phase);
        }
        if tokio::time::Instant::now() >= deadline {
            return this.fail(cx, phase);
        }
        let before = buf.filled().len();
        match Pin::new(&mut *this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    if phase == Phase::Idle {
                        this.state.header_started(this.shared.limits.header_timeout);
                        this.header_bytes = 0;
                    }
                    this.header_bytes += n;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                ready!(this.poll_deadline(cx, deadline));
                this.fail(cx, phase)
            }
            err => err,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.failed.is_some() {
            return Poll::Ready(Ok(buf.len()));
        }
        if this.replacing.is_none() && this.state.current() != Phase::Request {
            // Nothing of ours writes before the proxy has the request: this is Pingora's own
            // error answer (`HTTP/1.1 400 Bad Request…`).
            match canned::status_of(buf) {
                Some(status) => this.replacing = Some((this.shared.canned.for_status(status), 0)),
                None => return Pin::new(&mut *this.inner).poll_write(cx, buf),
            }
        }
        if let Some((bytes, sent)) = &mut this.replacing {
            while *sent < bytes.len() {
                let n = ready!(Pin::new(&mut *this.inner).poll_write(cx, &bytes[*sent..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *sent += n;
            }
            // Pingora's own bytes (header, empty body) are consumed unwritten.
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut *this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.failed.is_none() && this.replacing.is_none() && this.state.current() == Phase::Request {
            return Pin::new(&mut *this.inner).poll_write_vectored(cx, bufs);
        }
        // The rare case (an answer being replaced or dropped): one slice at a time.
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
        Pin::new(this).poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for Guarded {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
