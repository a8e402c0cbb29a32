//! GET and HEAD over plain HTTP answered by pkgdist's own HTTP/1.1 loop, so that a served
//! file goes from the page cache to the socket with `sendfile`, as nginx sends it.
//!
//! hyper writes only bodies of bytes it is handed: every byte of a download would be copied
//! into the process and out again. On a connection of a listener with direct answers
//! ([`crate::listen::Transport::direct`]), this loop reads each request's head itself and
//! passes the request to the same `Router` (its middleware included: tracing, panics caught,
//! metrics). A response that carries a [`SendFile`] extension has its body sent from the file
//! by the kernel; any other body is written as hyper would write it (`Content-Length` when
//! known, chunked otherwise).
//!
//! Only requests without a body are answered here. The first request with one (a POST, a
//! GET with `Content-Length` or `Transfer-Encoding`, `Expect`, an upgrade) hands the
//! connection to hyper for the rest of its life, the bytes read so far replayed first: this
//! loop never has to read a request body. TLS connections are hyper's throughout (the kernel
//! cannot encrypt what `sendfile` sends without kTLS).
//!
//! The connection bounds are the listener's: a client has `header_read` to send a request's
//! head (a kept-alive connection too, from its last answer on), heads above 64 KiB or with
//! more than 100 headers are refused (431), and a write or `sendfile` that makes no progress
//! for `write_stall` resets the connection. A body that fails (damaged content), or ends short
//! of (or runs past) its `Content-Length`, resets it too, so the client sees a short response
//! rather than a wrong one, and never reads the next response as the rest of this one. A slow
//! client costs a socket, what the kernel buffers for it, and its head buffer (4 KiB, more
//! only while a large head is read): no thread.
//!
//! The commonest request, a file the DP holds a verified copy of, can be answered without the
//! router at all: a [`Shortcut`] (the DP's, [`crate::serve::Shortcut`]) sees each GET and HEAD
//! first and answers it as the router would, or declines it. Routing, extractors, a header map
//! built and rendered again, and four layers made a small file cost the DP a fifth more CPU
//! than nginx's whole answer.
//!
//! A stretch of a file not in the page cache (the first and last byte of each 2 MiB are
//! probed with `RWF_NOWAIT`) is sent from a blocking thread, 16 at most at once, so a cold disk
//! holds no worker; the next stretch of a large file is advised to the kernel ahead
//! (`POSIX_FADV_WILLNEED`), so sequential sends rarely find it cold.

use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body::Body as _;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::listen::Limits;
use crate::served::Copied;

/// A response extension: send `len` bytes of `file` from `start` as the body, with the
/// kernel's `sendfile`, instead of the response's own body. The body must hold the same
/// bytes (a TLS connection, answered by hyper, sends it instead).
#[derive(Debug, Clone)]
pub struct SendFile {
    pub copy: Copied,
    pub start: u64,
    pub len: u64,
    /// Counts the bytes as they are sent (the metrics layer sets it: it counts other bodies
    /// by their frames, which a file sent by the kernel has none of).
    pub sent: Option<Counter>,
}

/// Answers the commonest requests without the router, or declines them (the request then
/// goes through the router as any other). What it answers must be what the router would have
/// answered, header for header, and it does itself what the router's layers would have done
/// that matters for the answer: it counts the request and its bytes in the same metrics.
pub trait Shortcut: Send + Sync + std::fmt::Debug {
    /// The answer to `asked` (a GET or HEAD without a body), or `None` to decline.
    fn answer(&self, asked: &Asked<'_>) -> Option<Ready>;
}

/// A request as a [`Shortcut`] sees it: checked by the loop, not yet made a `Request`.
#[derive(Debug)]
pub struct Asked<'a> {
    /// HEAD rather than GET.
    pub head_only: bool,
    /// The path the router would match: percent-encoded, without query or fragment.
    pub path: &'a str,
    headers: &'a [httparse::Header<'a>],
}

impl Asked<'_> {
    /// Whether the request has a header `name`.
    pub fn has(&self, name: &HeaderName) -> bool {
        self.get(name).is_some()
    }

    /// The value of the first header `name`, as sent (the loop checked it is a valid one).
    pub fn get(&self, name: &HeaderName) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name.as_str()))
            .map(|h| h.value)
    }
}

/// An answer a [`Shortcut`] made.
#[derive(Debug)]
pub struct Ready {
    pub status: StatusCode,
    /// Its header lines, each ended by CRLF, but for `content-length`, `date` and
    /// `connection`, which the loop writes.
    pub headers: Vec<u8>,
    /// The body's length (also for a HEAD, which sends none).
    pub length: u64,
    pub body: ReadyBody,
}

/// What a [`Ready`] answer sends after its head.
#[derive(Debug)]
pub enum ReadyBody {
    /// Nothing (HEAD).
    None,
    /// These bytes, `length` of them.
    Bytes(axum::body::Bytes),
    /// The file's range, `length` bytes, by the kernel.
    File(SendFile),
}

/// The most a request's head may take (hyper's buffer limit on the other path).
const MAX_HEAD: usize = 64 << 10;
/// Headers a request may have.
const MAX_HEADERS: usize = 100;
/// Bytes one `sendfile` call is asked for; the next stretch is advised ahead.
const STRETCH: u64 = 2 << 20;
/// Bodies whose length is known and at most this are written with their head in one write.
const SMALL_BODY: u64 = 64 << 10;

/// Serves one plain connection until it ends, the daemon stops, or a request with a body
/// hands it to hyper.
pub(crate) async fn connection(
    mut tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    shortcut: Option<Arc<dyn Shortcut>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tower::ServiceExt as _;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let stopping = *stop.borrow();
        if stopping {
            return;
        }
        // The head, within the header deadline (from now: a kept-alive connection's idle
        // time counts), unless the daemon stops meanwhile.
        let waited = {
            let stopped = async {
                let _ = stop.wait_for(|s| *s).await.map(|_| ());
            };
            tokio::select! {
                r = tokio::time::timeout(limits.header_read, read_head(&mut tcp, &mut buf, shortcut.as_deref())) => Some(r),
                () = stopped => None,
            }
        };
        let Some(waited) = waited else {
            return;
        };
        let head = match waited {
            Ok(Ok(head)) => head,
            Ok(Err(HeadError::Closed)) | Err(_) => return,
            Ok(Err(HeadError::Io(e))) => {
                tracing::debug!(%peer, error = %e, "connection ended");
                return;
            }
            Ok(Err(HeadError::TooLarge(why))) => {
                return refuse(
                    &mut tcp,
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    why,
                    limits.write_stall,
                )
                .await;
            }
            Ok(Err(HeadError::Malformed(why))) => {
                return refuse(&mut tcp, StatusCode::BAD_REQUEST, why, limits.write_stall).await;
            }
        };
        let (next, used, keep_alive) = match head {
            Head::Ours { req, used, keep_alive } => (Next::Route(req), used, keep_alive),
            Head::Ready {
                ready,
                version,
                used,
                keep_alive,
            } => (Next::Send(ready, version), used, keep_alive),
            Head::Hyper => {
                // The rest of the connection is hyper's, starting with this request.
                let io = Rewind {
                    pending: buf,
                    at: 0,
                    io: crate::listen::StallGuard::new(tcp, limits.write_stall),
                };
                return crate::listen::http(io, peer, app, limits, None, stop).await;
            }
        };
        buf.drain(..used);
        if buf.is_empty() && buf.capacity() > 16 << 10 {
            // A large head once does not hold its buffer for the connection's life.
            buf = Vec::with_capacity(4096);
        }
        let answered = match next {
            Next::Route(req) => {
                let head_only = req.method() == Method::HEAD;
                let version = req.version();
                let mut req = *req;
                req.extensions_mut().insert(ConnectInfo(peer));
                let Ok(resp) = app.clone().oneshot(req).await;
                // A daemon stopping answers this request and says it closes.
                let keep_alive = keep_alive && !*stop.borrow();
                answer(&mut tcp, resp, head_only, version, keep_alive, limits.write_stall).await
            }
            Next::Send(ready, version) => {
                let keep_alive = keep_alive && !*stop.borrow();
                send_ready(&mut tcp, *ready, version, keep_alive, limits.write_stall).await
            }
        };
        match answered {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection reset");
                // Unsent bytes are not left queued in the kernel, and a body cut short
                // shows as cut short.
                let _ = tcp.set_zero_linger();
                return;
            }
        }
    }
}

enum Head {
    /// A request without a body: answered here. `used` bytes of the buffer were its head.
    Ours {
        req: Box<Request<Body>>,
        used: usize,
        keep_alive: bool,
    },
    /// A request the shortcut answered.
    Ready {
        ready: Box<Ready>,
        version: Version,
        used: usize,
        keep_alive: bool,
    },
    /// A request this loop does not answer: the connection goes to hyper.
    Hyper,
}

/// What answers a request read: the router, or the shortcut's answer made already.
enum Next {
    Route(Box<Request<Body>>),
    Send(Box<Ready>, Version),
}

#[derive(Debug)]
enum HeadError {
    Closed,
    Io(std::io::Error),
    TooLarge(&'static str),
    Malformed(&'static str),
}

const HEAD_TOO_LARGE: &str = "the request's headers take more than 64 KiB";

/// Reads until `buf` holds a whole request head, and parses it.
async fn read_head(tcp: &mut TcpStream, buf: &mut Vec<u8>, shortcut: Option<&dyn Shortcut>) -> Result<Head, HeadError> {
    loop {
        if !buf.is_empty() {
            // A head must end within the limit, even when one read brought more.
            match parse(&buf[..buf.len().min(MAX_HEAD)], shortcut)? {
                Some(head) => return Ok(head),
                None if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge(HEAD_TOO_LARGE)),
                None => {}
            }
        }
        buf.reserve(4096);
        match tcp.read_buf(buf).await {
            Ok(0) => return Err(HeadError::Closed),
            Ok(_) => {}
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

/// A whole head in `buf` as a request (or the shortcut's answer to it), `None` if more is to
/// come.
fn parse(buf: &[u8], shortcut: Option<&dyn Shortcut>) -> Result<Option<Head>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let used = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::TooLarge("the request has more than 100 headers"));
        }
        Err(_) => return Err(HeadError::Malformed("not an HTTP/1.1 request")),
    };
    let (Some(method), Some(path), Some(minor)) = (parsed.method, parsed.path, parsed.version) else {
        return Err(HeadError::Malformed("not an HTTP/1.1 request"));
    };
    if method != "GET" && method != "HEAD" {
        return Ok(Some(Head::Hyper));
    }
    let version = if minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    let mut keep_alive = minor == 1;
    let mut close = false;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HeadError::Malformed("a header name is not valid"))?;
        // Only a length of exactly zero is no body here; anything else (a length, a list,
        // nothing, garbage) is hyper's to read or refuse.
        let zero = |v: &[u8]| {
            let v = v.trim_ascii();
            !v.is_empty() && v.iter().all(|b| *b == b'0')
        };
        if name == header::CONTENT_LENGTH && !zero(h.value)
            || name == header::TRANSFER_ENCODING
            || name == header::EXPECT
            || name == header::UPGRADE
        {
            // A body to read, or a protocol change: hyper's to answer.
            return Ok(Some(Head::Hyper));
        }
        if name == header::CONNECTION {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Ok(Some(Head::Hyper));
                }
            }
        }
        HeaderValue::from_bytes(h.value).map_err(|_| HeadError::Malformed("a header value is not valid"))?;
    }
    // `close` wins wherever it is among the tokens, as hyper has it.
    let keep_alive = keep_alive && !close;
    // The target as the router sees it, by `http`'s rules (a fragment cut off, bytes it does
    // not take refused): the shortcut must never answer what the router would refuse, nor a
    // path the router would read differently.
    let uri = axum::http::Uri::try_from(path).map_err(|_| HeadError::Malformed("the request line is not valid"))?;
    if let Some(shortcut) = shortcut {
        let asked = Asked {
            head_only: method == "HEAD",
            path: uri.path(),
            headers: parsed.headers,
        };
        if let Some(ready) = shortcut.answer(&asked) {
            return Ok(Some(Head::Ready {
                ready: Box::new(ready),
                version,
                used,
                keep_alive,
            }));
        }
    }
    let mut builder = Request::builder().method(method).uri(uri).version(version);
    for h in parsed.headers.iter() {
        // Both checked above.
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Err(HeadError::Malformed("a header is not valid"));
        };
        builder = builder.header(name, value);
    }
    let req = builder
        .body(Body::empty())
        .map_err(|_| HeadError::Malformed("the request line is not valid"))?;
    Ok(Some(Head::Ours {
        req: Box::new(req),
        used,
        keep_alive,
    }))
}

/// Writes a shortcut's answer; answers whether the connection may be kept.
async fn send_ready(
    tcp: &mut TcpStream,
    ready: Ready,
    version: Version,
    keep: bool,
    stall: Duration,
) -> std::io::Result<bool> {
    let mut head = Vec::with_capacity(ready.headers.len() + 128);
    status_line(&mut head, ready.status);
    head.extend_from_slice(&ready.headers);
    let _ = write!(head, "content-length: {}\r\n", ready.length);
    end_head(&mut head, version, keep, true);
    match ready.body {
        ReadyBody::None => write_all(tcp, &head, stall).await?,
        ReadyBody::Bytes(bytes) => {
            if bytes.len() as u64 != ready.length {
                return Err(short_body());
            }
            write_parts(tcp, &[&head, &bytes], stall).await?;
        }
        ReadyBody::File(file) => {
            if file.len != ready.length {
                return Err(short_body());
            }
            head_then_file(tcp, &head, &file, stall).await?;
        }
    }
    Ok(keep)
}

/// A response's first line.
fn status_line(head: &mut Vec<u8>, status: StatusCode) {
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
}

/// The end of a response's head after its own headers: `date` (unless the response has its
/// own) and `connection` as they apply, then the blank line.
fn end_head(head: &mut Vec<u8>, version: Version, keep: bool, date_too: bool) {
    if date_too {
        head.extend_from_slice(b"date: ");
        date(head);
        head.extend_from_slice(b"\r\n");
    }
    if !keep {
        head.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::HTTP_10 {
        head.extend_from_slice(b"connection: keep-alive\r\n");
    }
    head.extend_from_slice(b"\r\n");
}

/// A body that did not match the length its head promised.
fn short_body() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the body did not match its length")
}

/// The head, then the file by the kernel. The head waits in the kernel for the file's first
/// bytes (one packet, one wake-up of the client, for a small file).
async fn head_then_file(tcp: &mut TcpStream, head: &[u8], file: &SendFile, stall: Duration) -> std::io::Result<()> {
    send_all(tcp, head, rustix::net::SendFlags::MORE, stall).await?;
    send_file(tcp, file, stall).await
}

/// Writes a response; answers whether the connection may be kept.
async fn answer(
    tcp: &mut TcpStream,
    resp: Response<Body>,
    head_only: bool,
    version: Version,
    keep_alive: bool,
    stall: Duration,
) -> std::io::Result<bool> {
    let (mut parts, mut body) = resp.into_parts();
    let file = parts.extensions.remove::<SendFile>();
    let status = parts.status;
    let bodiless = head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let close_asked = parts
        .headers
        .get(header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    parts.headers.remove(header::CONNECTION);
    parts.headers.remove(header::TRANSFER_ENCODING);
    let mut keep = keep_alive && !close_asked;
    // How the body is framed.
    let mut small = None;
    let mut chunked = false;
    if !bodiless && file.is_none() && !parts.headers.contains_key(header::CONTENT_LENGTH) {
        match body.size_hint().exact() {
            Some(n) if n <= SMALL_BODY => {
                let frames = collect(&mut body).await?;
                let len: usize = frames.iter().map(|f| f.len()).sum();
                parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                small = Some(frames);
            }
            Some(n) => {
                parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            None if version == Version::HTTP_11 => {
                parts
                    .headers
                    .insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
                chunked = true;
            }
            // HTTP/1.0 has no chunks: the end of the body is the end of the connection.
            None => keep = false,
        }
    } else if !bodiless && file.is_none() && body.size_hint().exact().is_some_and(|n| n <= SMALL_BODY) {
        small = Some(collect(&mut body).await?);
    }
    let mut head = Vec::with_capacity(256);
    status_line(&mut head, status);
    for (name, value) in &parts.headers {
        // As they are: a value may hold bytes that are not UTF-8.
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    end_head(&mut head, version, keep, !parts.headers.contains_key(header::DATE));
    let out = head;
    if bodiless {
        write_all(tcp, &out, stall).await?;
        return Ok(keep);
    }
    // What the head promised: a body that ends short of it (or would go past it) resets the
    // connection, so the client never reads the next response as the rest of this one.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(frames) = small {
        let len: u64 = frames.iter().map(|f| f.len() as u64).sum();
        if declared.is_some_and(|d| d != len) {
            return Err(short_body());
        }
        let mut all: Vec<&[u8]> = Vec::with_capacity(1 + frames.len());
        all.push(&out);
        all.extend(frames.iter().map(|f| f.as_ref()));
        write_parts(tcp, &all, stall).await?;
        return Ok(keep);
    }
    if let Some(file) = file {
        drop(body);
        if declared != Some(file.len) {
            return Err(short_body());
        }
        head_then_file(tcp, &out, &file, stall).await?;
        return Ok(keep);
    }
    write_all(tcp, &out, stall).await?;
    let mut written: u64 = 0;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(std::io::Error::other)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: not sent
        };
        if data.is_empty() {
            continue;
        }
        written += data.len() as u64;
        if declared.is_some_and(|d| written > d) {
            return Err(short_body());
        }
        if chunked {
            let size = format!("{:x}\r\n", data.len());
            write_parts(tcp, &[size.as_bytes(), &data, b"\r\n"], stall).await?;
        } else {
            write_all(tcp, &data, stall).await?;
        }
    }
    if declared.is_some_and(|d| written != d) {
        return Err(short_body());
    }
    if chunked {
        write_all(tcp, b"0\r\n\r\n", stall).await?;
    }
    Ok(keep)
}

/// A short body whole, as its frames (not copied).
async fn collect(body: &mut Body) -> std::io::Result<Vec<axum::body::Bytes>> {
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
        if let Ok(data) = frame.map_err(std::io::Error::other)?.into_data() {
            out.push(data);
        }
    }
    Ok(out)
}

/// Writes `parts` one after the other in as few system calls as the socket allows (a head
/// and a short body in one packet); fails when a write makes no progress for `stall`.
async fn write_parts(tcp: &mut TcpStream, parts: &[&[u8]], stall: Duration) -> std::io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0;
    while done < total {
        let mut skip = done;
        let mut left = Vec::with_capacity(parts.len());
        for p in parts {
            if skip >= p.len() {
                skip -= p.len();
                continue;
            }
            left.push(std::io::IoSlice::new(&p[skip..]));
            skip = 0;
        }
        match tcp.try_write_vectored(&left) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => writable(tcp, stall).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `bytes`; fails when a write makes no progress for `stall`.
async fn write_all(tcp: &mut TcpStream, bytes: &[u8], stall: Duration) -> std::io::Result<()> {
    send_all(tcp, bytes, rustix::net::SendFlags::empty(), stall).await
}

/// Sends all of `bytes` with `flags`; fails when a send makes no progress for `stall`. A
/// send is tried at once and waits (with the deadline's timer) only if the socket is full.
async fn send_all(
    tcp: &mut TcpStream,
    mut bytes: &[u8],
    flags: rustix::net::SendFlags,
    stall: Duration,
) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let sent = tcp.try_io(tokio::io::Interest::WRITABLE, || {
            rustix::net::send(tcp_fd(tcp), bytes, flags | rustix::net::SendFlags::NOSIGNAL)
                .map_err(std::io::Error::from)
        });
        match sent {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => writable(tcp, stall).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until the socket takes bytes again, `stall` at most.
async fn writable(tcp: &TcpStream, stall: Duration) -> std::io::Result<()> {
    match tokio::time::timeout(stall, tcp.writable()).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client took nothing",
        )),
    }
}

/// Sends the file's range with `sendfile`, waiting on the socket (never on a thread) while
/// the client is not taking it; fails when it makes no progress for `stall`. A stretch not in
/// the page cache is sent from a blocking thread ([`COLD_SENDS`] at once), so a cold disk
/// holds no worker.
async fn send_file(tcp: &mut TcpStream, send: &SendFile, stall: Duration) -> std::io::Result<()> {
    let file: &File = &send.copy.file;
    let mut at = send.start;
    let end = send
        .start
        .checked_add(send.len)
        .ok_or_else(|| std::io::Error::other("a range past the end of any file"))?;
    let mut advised = at;
    while at < end {
        if advised < end && advised < at + STRETCH {
            // The stretch after the one being sent: read ahead by the kernel meanwhile.
            let from = advised.max(at + STRETCH.min(end - at));
            let len = STRETCH.min(end.saturating_sub(from));
            if len > 0 && send.len > STRETCH {
                let _ = rustix::fs::fadvise(file, from, std::num::NonZeroU64::new(len), rustix::fs::Advice::WillNeed);
            }
            advised = from + len;
        }
        let want = usize::try_from((end - at).min(STRETCH)).unwrap_or(usize::MAX);
        let sent = if cached(file, at, want) {
            tcp.try_io(tokio::io::Interest::WRITABLE, || {
                rustix::fs::sendfile(tcp_fd(tcp), file, Some(&mut at), want).map_err(std::io::Error::from)
            })
        } else {
            let sent = send_cold(tcp, &send.copy.file, &mut at, want).await;
            if matches!(&sent, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
                // The socket is full: forget its readiness, so the wait below really waits.
                let _ = tcp.try_io(tokio::io::Interest::WRITABLE, || {
                    Err::<(), _>(std::io::Error::from(std::io::ErrorKind::WouldBlock))
                });
            }
            sent
        };
        match sent {
            Ok(0) => {
                let e = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the copy ended short");
                send.copy.failed(&e);
                return Err(e);
            }
            Ok(n) => {
                if let Some(c) = &send.sent {
                    c.inc_by(n as u64);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => writable(tcp, stall).await?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if is_socket_error(&e) => return Err(e),
            Err(e) => {
                // A read error of the copy's disk: the copy goes. Anything else (memory) is
                // this response's alone.
                if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) {
                    send.copy.failed(&e);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// `sendfile`s done on blocking threads at once, for stretches not in the page cache.
pub const COLD_SENDS: usize = 16;

static COLD: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(COLD_SENDS);

/// Whether the first and last byte of a stretch are in the page cache (a read that would
/// wait on the disk says so, `RWF_NOWAIT`); the kernel's read-ahead fills what lies between.
fn cached(file: &File, at: u64, len: usize) -> bool {
    let probe = |offset: u64| {
        let mut byte = [0u8; 1];
        !matches!(
            rustix::io::preadv2(
                file,
                &mut [std::io::IoSliceMut::new(&mut byte)],
                offset,
                rustix::io::ReadWriteFlags::NOWAIT,
            ),
            Err(rustix::io::Errno::AGAIN)
        )
    };
    probe(at) && (len <= 1 || probe(at + len as u64 - 1))
}

/// One `sendfile` of a stretch not in the page cache, on a blocking thread (the disk read
/// waits there), onto the non-blocking socket.
async fn send_cold(tcp: &TcpStream, file: &Arc<File>, at: &mut u64, want: usize) -> std::io::Result<usize> {
    let _turn = COLD
        .acquire()
        .await
        .map_err(|_| std::io::Error::other("the cold-read limit closed"))?;
    let socket = rustix::io::dup(tcp_fd(tcp))?;
    let (file, from) = (Arc::clone(file), *at);
    let (sent, to) = tokio::task::spawn_blocking(move || {
        let mut to = from;
        let sent = rustix::fs::sendfile(&socket, &*file, Some(&mut to), want).map_err(std::io::Error::from);
        (sent, to)
    })
    .await
    .map_err(std::io::Error::other)?;
    *at = to;
    sent
}

/// The socket's descriptor, borrowed for a system call.
fn tcp_fd(tcp: &TcpStream) -> std::os::fd::BorrowedFd<'_> {
    use std::os::fd::AsFd as _;
    tcp.as_fd()
}

/// Whether a `sendfile` error is the client's (the connection) rather than the file's.
fn is_socket_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected | TimedOut
    )
}

/// Answers a request this loop cannot take, and closes.
async fn refuse(tcp: &mut TcpStream, status: StatusCode, why: &str, stall: Duration) {
    let body = format!("{}: {why}\n", status.as_u16());
    let answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    let _ = write_all(tcp, answer.as_bytes(), stall).await;
}

/// Now as an HTTP date, appended to `out`; formatted at most once a second per thread.
fn date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != now {
            *c = (now, crate::util::http_date(i64::try_from(now).unwrap_or(0)));
        }
        out.extend_from_slice(c.1.as_bytes());
    });
}

/// A connection handed to hyper with the bytes this loop read and did not answer replayed
/// first.
struct Rewind<IO> {
    pending: Vec<u8>,
    at: usize,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.at < self.pending.len() {
            let n = (self.pending.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.pending[at..at + n]);
            self.at += n;
            if self.at == self.pending.len() {
                self.pending = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A server with the direct loop: `/ok` answers "hello", `/short` promises 10 bytes and
    /// gives 5, `/stream` has no length; POST goes to hyper.
    async fn server() -> SocketAddr {
        let app = Router::new()
            .route("/ok", get(|| async { "hello" }).post(|| async { "posted" }))
            .route(
                "/short",
                get(|| async {
                    Response::builder()
                        .header(header::CONTENT_LENGTH, "10")
                        .body(Body::from("12345"))
                        .unwrap()
                }),
            )
            .route(
                "/stream",
                get(|| async {
                    let frames = futures_util::stream::iter([
                        Ok::<_, std::io::Error>(axum::body::Bytes::from("ab")),
                        Ok(axum::body::Bytes::from("cd")),
                    ]);
                    Body::from_stream(frames)
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crate::listen::serve(
            listener,
            app,
            Limits::default(),
            std::future::pending(),
        ));
        addr
    }

    /// Sends `request` bytes and reads until the server closes (or 2 s pass).
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order_and_close_wins() {
        let addr = server().await;
        let got = exchange(
            addr,
            b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nHEAD /ok HTTP/1.1\r\nHost: x\r\n\r\nGET /stream HTTP/1.1\r\nHost: x\r\nConnection: close, keep-alive\r\n\r\nGET /ok HTTP/1.1\r\n\r\n",
        )
        .await;
        assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 3, "{got}");
        assert!(got.contains("\r\n\r\nhello"), "{got}");
        assert!(got.contains("transfer-encoding: chunked\r\n"), "{got}");
        assert!(
            got.ends_with("2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"),
            "closed after the third: {got}"
        );
    }

    #[tokio::test]
    async fn a_request_with_a_body_goes_to_hyper_with_what_was_read() {
        let addr = server().await;
        let got = exchange(
            addr,
            b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nPOST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 3, "{got}");
        assert!(got.contains("posted"), "{got}");
        // A length that is not plainly zero is hyper's to judge too.
        let got = exchange(addr, b"GET /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 0 0\r\n\r\n").await;
        assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    }

    #[tokio::test]
    async fn a_body_short_of_its_length_cuts_the_connection() {
        let addr = server().await;
        let got = exchange(
            addr,
            b"GET /short HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        assert!(
            !got.contains("hello"),
            "the next answer never follows a short body: {got}"
        );
        assert!(!got.contains("12345HTTP"), "{got}");
    }

    #[tokio::test]
    async fn bad_heads_are_refused_and_closed() {
        let addr = server().await;
        let many: String = (0..120).map(|i| format!("X-{i}: y\r\n")).collect();
        let got = exchange(addr, format!("GET /ok HTTP/1.1\r\n{many}\r\n").as_bytes()).await;
        assert!(got.starts_with("HTTP/1.1 431"), "{got}");
        assert!(got.contains("more than 100 headers"), "{got}");
        let big = "a".repeat(70_000);
        let got = exchange(addr, format!("GET /ok HTTP/1.1\r\nX: {big}\r\n\r\n").as_bytes()).await;
        assert!(got.starts_with("HTTP/1.1 431"), "{got}");
        // Whole in the buffer at once (a read can bring more than the limit): still too large.
        let big = "a".repeat(100_000);
        let got = exchange(addr, format!("GET /ok HTTP/1.1\r\nX: {big}\r\n\r\n").as_bytes()).await;
        assert!(got.starts_with("HTTP/1.1 431"), "{got}");
        let got = exchange(addr, b"GET /ok HTTP/1.1\r\nBad Header\r\n\r\n").await;
        assert!(got.starts_with("HTTP/1.1 400"), "{got}");
        // HTTP/1.0 closes unless asked to keep the connection.
        let got = exchange(addr, b"GET /ok HTTP/1.0\r\n\r\nGET /ok HTTP/1.0\r\n\r\n").await;
        assert_eq!(got.matches("200 OK").count(), 1, "{got}");
        assert!(got.contains("connection: close"), "{got}");
    }
}
