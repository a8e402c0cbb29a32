//! What one client can hold of a daemon (`pkgdist_node::listen`), over real TCP on loopback:
//! connections per address and in all, the header deadline, the write deadline. Clients take
//! other loopback addresses (127.0.0.2, …) to be other hosts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use pkgdist_node::listen::{Limits, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A server of `/small` (a few bytes) and `/big` (64 MiB, made as it is sent).
async fn start(limits: Limits) -> SocketAddr {
    let app = Router::new()
        .route("/small", get(|| async { "ok" }))
        .route(
            "/echo",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/big",
            get(|| async {
                let block = axum::body::Bytes::from(vec![7u8; 1 << 20]);
                let blocks = futures_util::stream::iter((0..64).map(move |_| Ok::<_, std::io::Error>(block.clone())));
                Body::from_stream(blocks)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, app, limits, std::future::pending()));
    addr
}

fn limits(per_address: usize, header_read: u64, write_stall: u64) -> Limits {
    Limits {
        per_address,
        total: 1000,
        header_read: Duration::from_secs(header_read),
        write_stall: Duration::from_secs(write_stall),
    }
}

/// A connection from `from` (a loopback address).
async fn connect(server: SocketAddr, from: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(server).await.unwrap()
}

/// Sends one request and reads the whole answer (`Connection: close`).
async fn request(mut tcp: TcpStream, path: &str) -> String {
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// How long until the server closes `tcp` (reading and dropping whatever it sent), within
/// `limit`.
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t0.elapsed()), tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(t0.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let server = start(limits(4, 30, 30)).await;
    // Four idle connections from one host: its share.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect(server, [127, 0, 0, 1]).await);
    }
    // A fifth from it is turned away at once, told when to try again…
    let answer = request(connect(server, [127, 0, 0, 1]).await, "/small").await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 5"), "{answer}");
    assert!(answer.contains("too many connections from your address"), "{answer}");
    // …while another host is served.
    let answer = request(connect(server, [127, 0, 0, 2]).await, "/small").await;
    assert!(
        answer.starts_with("HTTP/1.1 200 ") && answer.ends_with("ok"),
        "{answer}"
    );
    // A connection closed gives its place back.
    drop(held.pop());
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let a = request(connect(server, [127, 0, 0, 1]).await, "/small").await;
            if a.starts_with("HTTP/1.1 200 ") {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the closed connection's place is given back");
    assert!(answer.ends_with("ok"));
}

#[tokio::test]
async fn all_addresses_together_are_bounded_too() {
    let server = start(Limits {
        total: 3,
        ..limits(10, 30, 30)
    })
    .await;
    let mut held = Vec::new();
    for host in 1..=3 {
        held.push(connect(server, [127, 0, 1, host]).await);
    }
    let answer = request(connect(server, [127, 0, 1, 9]).await, "/small").await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("as many connections as it takes"), "{answer}");
}

#[tokio::test]
async fn slow_or_silent_headers_are_cut_off() {
    let server = start(limits(100, 1, 30)).await;
    // Silent: connects and sends nothing.
    let mut silent = connect(server, [127, 0, 0, 3]).await;
    // Slow: a header line every 300 ms, never the end of the headers.
    let mut slow = connect(server, [127, 0, 0, 4]).await;
    let dripping = tokio::spawn(async move {
        slow.write_all(b"GET /small HTTP/1.1\r\n").await.unwrap();
        let t0 = Instant::now();
        let mut buf = [0u8; 256];
        loop {
            if slow.write_all(b"X-Drip: 1\r\n").await.is_err() {
                return t0.elapsed();
            }
            // The server's close shows as a read of 0 (or a reset) between the drips.
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(300), slow.read(&mut buf)).await {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "a dripping client kept its connection"
            );
        }
    });
    let silent_for = closed_within(&mut silent, Duration::from_secs(10))
        .await
        .expect("a silent connection is closed");
    assert!(silent_for < Duration::from_secs(5), "{silent_for:?}");
    let slow_for = dripping.await.unwrap();
    assert!(slow_for < Duration::from_secs(5), "{slow_for:?}");
    // A prompt client is still served on a kept-alive connection, request after request.
    let mut prompt = connect(server, [127, 0, 0, 5]).await;
    for _ in 0..3 {
        prompt
            .write_all(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = prompt.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 "));
    }
}

#[tokio::test]
async fn a_client_that_reads_nothing_is_let_go() {
    let server = start(limits(1, 30, 1)).await;
    let mut stalled = connect(server, [127, 0, 0, 6]).await;
    stalled
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // It takes nothing for 3 s: the server's writes stall past its 1 s deadline.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // What the kernel buffered arrives, then the end: far short of the 64 MiB.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stalled connection is closed");
    assert!(got < 64 << 20, "the whole body came: {got}");
    // Its place is given back (one connection per address here).
    let answer = request(connect(server, [127, 0, 0, 6]).await, "/small").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}

#[tokio::test]
async fn a_request_body_that_stops_fails_its_request() {
    let server = start(limits(10, 30, 1)).await;
    let mut tcp = connect(server, [127, 0, 0, 7]).await;
    tcp.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789")
        .await
        .unwrap();
    // 10 of 100,000 bytes, then nothing: the request fails after the 1 s stall deadline.
    let t0 = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(t0.elapsed() < Duration::from_secs(5), "held {:?}", t0.elapsed());
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A body that arrives is read whole.
    let mut tcp = connect(server, [127, 0, 0, 7]).await;
    tcp.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n\r\n5"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_flood_of_connections_over_the_limit_holds_nothing() {
    let server = start(limits(1, 30, 30)).await;
    let _mine = connect(server, [127, 0, 0, 8]).await;
    // 1,000 more from the same host, in bursts of 100, each closed by the server at once:
    // answered 503 (the first 256 at a time) or reset, none kept waiting.
    let t0 = Instant::now();
    let mut answered = 0;
    for _ in 0..10 {
        let mut burst = tokio::task::JoinSet::new();
        for _ in 0..100 {
            burst.spawn(async move {
                let mut tcp = connect(server, [127, 0, 0, 8]).await;
                let mut buf = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
                buf.starts_with(b"HTTP/1.1 503 ")
            });
        }
        while let Some(r) = burst.join_next().await {
            answered += usize::from(r.unwrap());
        }
    }
    println!("the flood took {:?}; {answered} of 1,000 answered 503", t0.elapsed());
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "the flood took {:?}",
        t0.elapsed()
    );
    assert!(answered > 0, "none was answered 503");
    // Another host is served meanwhile and after.
    let answer = request(connect(server, [127, 0, 0, 9]).await, "/small").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}
