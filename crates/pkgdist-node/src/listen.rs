//! Accepting connections: what one client can hold of a daemon (a DP or a site).
//!
//! `axum::serve` accepts every connection and waits on each as long as the client likes: a
//! client that sends its headers a byte a minute, or opens a connection and sends nothing, or
//! asks for a file and never reads it, holds a socket (and, for a download, buffers) for ever,
//! and enough of them starve everyone else. [`serve`] is the accept loop both daemons use
//! instead, with four bounds ([`Limits`]):
//!
//! - **per client address**: at most `per_address` connections at once from one IP address;
//!   one more is answered `503 Service Unavailable` with `Retry-After` and closed, without
//!   reading its request. Other addresses are not affected.
//! - **in all**: at most `total` connections at once (kept under the process's open-file
//!   limit, which [`raise_open_files_limit`] lifts to its hard maximum); one more is answered
//!   as above.
//! - **headers**: a client has `header_read` to send a request's headers, from the moment the
//!   connection waits for them (a new connection, or a kept-alive one after its last answer);
//!   then the connection is closed. A connection that sends nothing is closed the same way.
//! - **writes**: a write that makes no progress for `write_stall` (the client takes nothing)
//!   fails, and the connection is reset, freeing what its response held (the socket too: a
//!   plain close would leave the unsent bytes queued in the kernel for minutes).
//! - **request bodies**: a body that sends nothing for `write_stall` fails its request.
//! - **turning away**: at most [`MAX_TURNING_AWAY`] answers of 503 at once; past that a
//!   connection is reset at once, so a flood of connections from one host holds nothing.
//!
//! A client that keeps a connection busy by reading a trickle is not cut: any progress counts.
//! Idle kept-alive connections are closed after `header_read` (hyper's header deadline starts
//! when a connection waits for a request), so clients that pool connections should idle them
//! out sooner (pkgdist's own clients use 20 s).
//!
//! Invariants: a connection counts against its address and the total from accept until its
//! task ends (a guard, so no path forgets to give it back); the 503 is written by a task of its
//! own with its own deadline, so refusing costs the accept loop nothing; handlers see the
//! peer's address as axum's `ConnectInfo<SocketAddr>`.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// What one client, and all of them, may hold (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections at once from one IP address.
    pub per_address: usize,
    /// Connections at once in all.
    pub total: usize,
    /// How long a client has to send a request's headers.
    pub header_read: Duration,
    /// How long a write may make no progress before the connection is closed.
    pub write_stall: Duration,
}

impl Limits {
    /// Connections at once from one address by default: enough for a branch office's clients
    /// behind one NAT address to download in parallel, few enough that one host cannot hold
    /// a DP's sockets.
    pub const PER_ADDRESS: usize = 256;
    /// Seconds a client has to send its headers by default (hyper's own default).
    pub const HEADER_READ_SECS: u64 = 30;
    /// Seconds a write may wait on a client by default.
    pub const WRITE_STALL_SECS: u64 = 60;

    /// The defaults, with the total sized to the process's open-file limit: each connection
    /// may hold a socket and a chunk file, and the rest of the daemon keeps some files open.
    pub fn for_open_files(open_files: u64) -> Self {
        let spare = open_files.saturating_sub(256) / 2;
        Self {
            per_address: Self::PER_ADDRESS,
            total: usize::try_from(spare).unwrap_or(usize::MAX).clamp(64, 65_536),
            header_read: Duration::from_secs(Self::HEADER_READ_SECS),
            write_stall: Duration::from_secs(Self::WRITE_STALL_SECS),
        }
    }
}

impl Default for Limits {
    /// The defaults, sized to the open-files limit in force now.
    fn default() -> Self {
        Self::for_open_files(open_files_limit())
    }
}

/// Lifts the soft limit of open files to the hard one (as nginx's `worker_rlimit_nofile`
/// would be set by hand) and answers the limit in force. A DP serving thousands of clients
/// needs more than the 1,024 many systems start a process with.
pub fn raise_open_files_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let (soft, hard) = (now.current.unwrap_or(u64::MAX), now.maximum.unwrap_or(u64::MAX));
    if soft < hard {
        let raised = rustix::process::Rlimit {
            current: now.maximum,
            maximum: now.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return hard,
            Err(e) => tracing::warn!(error = %e, soft, hard, "cannot raise the open-files limit"),
        }
    }
    soft
}

/// The process's open-files limit in force (its soft limit).
pub fn open_files_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

/// What hyper buffers per connection, at most (see `connection`).
const BUFFER: usize = 64 << 10;

/// How long a client turned away is told to wait.
const RETRY_AFTER_SECS: u64 = 5;

/// How long answering a connection 503 (and reading what it sent) may take.
const TURN_AWAY_WITHIN: Duration = Duration::from_secs(2);

/// Connections being answered 503 at once; more are reset without an answer.
pub const MAX_TURNING_AWAY: usize = 256;

/// Serves `app` on `listener` within `limits` until `shutdown` resolves; then stops accepting,
/// lets each connection finish its request in flight, and returns once they have, or after
/// `limits.write_stall` at most.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, limits, Transport::plain().direct(), shutdown).await
}

/// How a listener speaks: plain HTTP only, or TLS with plain HTTP beside it where that is
/// allowed (the first byte a client sends tells which: a TLS handshake starts with 0x16).
#[derive(Clone, Default)]
pub struct Transport {
    tls: Option<Arc<rustls::ServerConfig>>,
    plain: bool,
    direct: bool,
    shortcut: Option<Arc<dyn crate::direct::Shortcut>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("tls", &self.tls.is_some())
            .field("plain", &self.plain)
            .field("direct", &self.direct)
            .field("shortcut", &self.shortcut.is_some())
            .finish()
    }
}

impl Transport {
    /// Plain HTTP only (a daemon without TLS, and tests).
    pub fn plain() -> Self {
        Self {
            tls: None,
            plain: true,
            direct: false,
            shortcut: None,
        }
    }

    /// TLS with `config`; plain HTTP too if the listener is on a loopback address (no one
    /// else can listen in there) or `allow_plain` says so. A connection speaking plain HTTP
    /// where it is not allowed is answered 400 naming `https://` and closed.
    pub fn tls(config: Arc<rustls::ServerConfig>, addr: SocketAddr, allow_plain: bool) -> Self {
        Self {
            tls: Some(config),
            plain: allow_plain || addr.ip().is_loopback(),
            direct: false,
            shortcut: None,
        }
    }

    /// GET and HEAD on plain connections answered by pkgdist's own HTTP/1.1 loop, which can
    /// send a file with `sendfile` ([`crate::direct`]); other requests stay hyper's. DPs turn
    /// it on for their downloads, and so does [`serve`]; the site does not (it sends no files).
    pub fn direct(mut self) -> Self {
        self.direct = true;
        self
    }

    /// Direct answers, the commonest of them made by `shortcut` without the router (a DP's
    /// downloads of files it holds copies of: [`crate::serve::Shortcut`]).
    pub fn with_shortcut(mut self, shortcut: Arc<dyn crate::direct::Shortcut>) -> Self {
        self.direct = true;
        self.shortcut = Some(shortcut);
        self
    }

    /// Whether plain HTTP is served.
    pub fn serves_plain(&self) -> bool {
        self.plain
    }
}

/// What a request came over on a TLS connection: handlers find it among the request's
/// extensions (absent on plain HTTP), with the client's certificate if it gave one (already
/// verified against the listener's client roots).
#[derive(Debug, Clone)]
pub struct TlsConnection {
    pub peer: Option<rustls::pki_types::CertificateDer<'static>>,
}

/// [`serve`], speaking as `transport` says.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    transport: Transport,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let open = Open::default();
    let turning_away = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was taken:
                    // wait a little rather than spin on the same error.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if let Err(e) = tcp.set_nodelay(true) {
            // Without it a body written after its header waits for the client's delayed ACK.
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        match open.take(peer.ip(), &limits) {
            Ok(held) => {
                let (app, stop, transport) = (app.clone(), stop_rx.clone(), transport.clone());
                connections.spawn(connection(tcp, peer, app, limits, transport, stop, held));
            }
            Err(why) => {
                use std::sync::atomic::Ordering;
                if turning_away.fetch_add(1, Ordering::Relaxed) < MAX_TURNING_AWAY {
                    tracing::debug!(%peer, %why, "turning a connection away");
                    let count = Arc::clone(&turning_away);
                    tokio::spawn(async move {
                        turn_away(tcp, why).await;
                        count.fetch_sub(1, Ordering::Relaxed);
                    });
                } else {
                    // Too many at once to answer: reset now, holding nothing.
                    turning_away.fetch_sub(1, Ordering::Relaxed);
                    let _ = tcp.set_zero_linger();
                }
            }
        }
        // Reap finished connections so the set does not grow with the daemon's age.
        while connections.try_join_next().is_some() {}
    }
    // No new connection waits in the backlog for an accept that will not come.
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.write_stall, drained).await.is_err() {
        tracing::warn!("stopping with connections still open");
    }
    Ok(())
}

/// One connection: TLS or plain as the transport and the client's first byte say, then
/// [`http`]. The client has `header_read` to start, and as long again for its handshake.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    transport: Transport,
    stop: tokio::sync::watch::Receiver<bool>,
    _held: Held,
) {
    let Some(config) = transport.tls.clone() else {
        return plain(tcp, peer, app, limits, &transport, stop).await;
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout(limits.header_read, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let io = StallGuard::new(tcp, limits.write_stall);
            match tokio::time::timeout(limits.header_read, acceptor.accept(io)).await {
                Ok(Ok(tls)) => {
                    let peer_cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.clone().into_owned());
                    let info = TlsConnection { peer: peer_cert };
                    http(tls, peer, app, limits, Some(info), stop).await;
                }
                // A client with a certificate of another CA, a scanner, a timeout: routine.
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
        Ok(Ok(1)) if transport.plain => plain(tcp, peer, app, limits, &transport, stop).await,
        Ok(Ok(1)) => refuse_plain(tcp).await,
        // Closed, failed, or silent for the whole header deadline.
        _ => {}
    }
}

/// A plain HTTP connection: GETs answered directly where the transport says so, else hyper.
async fn plain(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    transport: &Transport,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    if transport.direct {
        return crate::direct::connection(tcp, peer, app, limits, transport.shortcut.clone(), stop).await;
    }
    let io = StallGuard::new(tcp, limits.write_stall);
    http(io, peer, app, limits, None, stop).await;
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Answers a plain-HTTP request on a listener that takes only HTTPS, and closes.
async fn refuse_plain(mut tcp: TcpStream) {
    let body = "400: this address takes HTTPS only: use an https:// URL (plain HTTP is served on loopback addresses, or where allow-plain-http is set)\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer_then_drain = async {
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(TURN_AWAY_WITHIN, answer_then_drain).await;
}

/// HTTP/1.1 with the header deadline over `io` (a socket whose writes may not stall, or TLS
/// over one), until the connection ends or the daemon stops.
pub(crate) async fn http<IO>(
    io: IO,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    tls: Option<TlsConnection>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt as _;
    let body_stall = limits.write_stall;
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        // A request body that sends nothing for the stall deadline fails its request.
        let mut req = req.map(|b| tower_http::timeout::TimeoutBody::new(body_stall, b));
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(info) = &tls {
            req.extensions_mut().insert(info.clone());
        }
        app.clone().oneshot(req)
    });
    let io = hyper_util::rt::TokioIo::new(io);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read)
        // hyper asks a body for its next frame only while it holds less than this unsent: a
        // client that stops reading leaves one frame here, not the ~400 KiB of the default.
        // Also the most a request's headers may take.
        .max_buf_size(BUFFER)
        .serve_connection(io, service);
    tokio::pin!(conn);
    // The daemon stopping (or gone): the flag is read and its guard dropped at once.
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await.map(|_| ());
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Timeouts, resets and clients that went away: routine, so not above debug.
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

/// Answers a connection over a limit with 503 and `Retry-After`, without reading its request,
/// and closes it; gives up after a few seconds on a client that will not take even that.
async fn turn_away(mut tcp: TcpStream, why: Refused) {
    let body = format!("503: {why}; try again in {RETRY_AFTER_SECS} seconds\n");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {RETRY_AFTER_SECS}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer_then_drain = async {
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await?;
        // Closing with the request unread would reset the connection, and a reset can reach
        // the client before it has read the answer: read what it sent (a little) first, as
        // nginx's lingering close does.
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < 64 << 10 {
            match tcp.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, std::io::Error>(())
    };
    if tokio::time::timeout(TURN_AWAY_WITHIN, answer_then_drain).await.is_err() {
        let _ = tcp.set_zero_linger();
    }
}

/// Connections open now, per address and in all.
#[derive(Debug, Clone, Default)]
struct Open(Arc<Mutex<Counts>>);

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Which limit a connection is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Total,
    PerAddress,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Total => "the server has as many connections as it takes",
            Refused::PerAddress => "too many connections from your address",
        })
    }
}

/// The address a client is counted under: an IPv4 address (also when mapped into IPv6), or
/// an IPv6 /64, the least a site is given, so a host cannot take a fresh address per
/// connection.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl Open {
    /// Counts a new connection from `ip`, or says which limit it is over.
    fn take(&self, ip: IpAddr, limits: &Limits) -> Result<Held, Refused> {
        let key = client_key(ip);
        let mut c = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if c.total >= limits.total {
            return Err(Refused::Total);
        }
        if c.by_address.get(&key).copied().unwrap_or(0) >= limits.per_address {
            return Err(Refused::PerAddress);
        }
        *c.by_address.entry(key).or_insert(0) += 1;
        c.total += 1;
        Ok(Held {
            open: self.clone(),
            ip: key,
        })
    }
}

/// One counted connection; dropping it gives the count back.
#[derive(Debug)]
struct Held {
    open: Open,
    ip: IpAddr,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut c = self.open.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_address.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.by_address.remove(&self.ip);
            }
        }
    }
}

/// A socket whose writes fail once they have made no progress for `stall`: the deadline is
/// armed when a write (or flush) cannot proceed, and cleared by any progress.
pub(crate) struct StallGuard {
    io: TcpStream,
    stall: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The deadline counts: a write is waiting on the client.
    armed: bool,
}

impl StallGuard {
    pub(crate) fn new(io: TcpStream, stall: Duration) -> Self {
        Self {
            io,
            stall,
            deadline: None,
            armed: false,
        }
    }

    /// After a write that could not proceed: arms the deadline if it is not, and fails the
    /// write if it has passed.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let stall = self.stall;
        if !self.armed {
            // One timer per connection, re-armed rather than allocated per stall.
            let d = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
            d.as_mut().reset(tokio::time::Instant::now() + stall);
            self.armed = true;
        }
        let Some(deadline) = self.deadline.as_mut() else {
            return Poll::Pending;
        };
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                // A reset, not a close: the unsent bytes are dropped with the socket instead
                // of waiting in the kernel for a client that takes nothing.
                let _ = self.io.set_zero_linger();
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client took nothing for too long",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(&mut self, r: Poll<std::io::Result<T>>, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Pending => self.pending(cx),
            ready => {
                self.armed = false;
                ready
            }
        }
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.progressed(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.progressed(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.progressed(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_in_all() {
        let limits = Limits {
            per_address: 2,
            total: 3,
            ..Limits::for_open_files(1024)
        };
        let open = Open::default();
        let (a, b): (IpAddr, IpAddr) = ([127, 0, 0, 1].into(), [127, 0, 0, 2].into());
        let a1 = open.take(a, &limits).unwrap();
        let _a2 = open.take(a, &limits).unwrap();
        assert!(open.take(a, &limits).is_err(), "a third from one address");
        let _b1 = open.take(b, &limits).unwrap();
        assert!(open.take(b, &limits).is_err(), "a fourth in all");
        drop(a1);
        let _a3 = open.take(a, &limits).expect("a closed connection is given back");
        assert!(open.take(b, &limits).is_err());
    }

    #[test]
    fn clients_are_counted_by_ipv4_address_or_ipv6_prefix() {
        let limits = Limits {
            per_address: 1,
            total: 100,
            ..Limits::for_open_files(1024)
        };
        let open = Open::default();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _h = open.take(ip("2001:db8:1:2::1"), &limits).unwrap();
        assert_eq!(
            open.take(ip("2001:db8:1:2:ffff::9"), &limits).unwrap_err(),
            Refused::PerAddress
        );
        let _o = open.take(ip("2001:db8:1:3::1"), &limits).unwrap();
        let _v = open.take(ip("192.0.2.7"), &limits).unwrap();
        assert_eq!(
            open.take(ip("::ffff:192.0.2.7"), &limits).unwrap_err(),
            Refused::PerAddress
        );
        // A limit of zero lets no one in, and refusing records nothing.
        let none = Limits {
            per_address: 0,
            ..limits
        };
        assert!(open.take(ip("192.0.2.8"), &none).is_err());
        assert!(!open.0.lock().unwrap().by_address.contains_key(&ip("192.0.2.8")));
    }

    #[test]
    fn total_follows_the_open_files_limit() {
        assert_eq!(Limits::for_open_files(1024).total, 384);
        assert_eq!(Limits::for_open_files(100).total, 64);
        assert_eq!(Limits::for_open_files(u64::MAX).total, 65_536);
    }
}
