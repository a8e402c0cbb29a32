//! Client downloads, over HTTP, from a real library on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use pkgdist_content::{Kind, Library, LocalStore, SnapshotOptions};
use pkgdist_core::ContentId;
use pkgdist_testkit::generate::Rng;
use reqwest::StatusCode;
use reqwest::header;
use tempfile::TempDir;

struct Dp {
    /// As a DP answers: the direct loop, its shortcut first.
    url: String,
    /// The direct loop without the shortcut: every request through the router.
    router_url: String,
    /// The same routes answered by hyper alone (as on a TLS connection): no `sendfile`.
    hyper_url: String,
    shortcut: Arc<pkgdist_node::serve::Shortcut>,
    metrics: pkgdist_node::metrics::Metrics,
    served: Arc<pkgdist_node::served::ServedFiles>,
    dir: TempDir,
    store: Arc<LocalStore>,
    lib: Arc<Library>,
    big: Vec<u8>,
}

async fn start() -> Dp {
    let dir = TempDir::new().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub dir")).unwrap();
    let big = Rng::new(1).bytes(3 << 20);
    std::fs::write(src.join("image.wim"), &big).unwrap();
    std::fs::write(src.join("sub dir/a&b.txt"), b"hello").unwrap();
    std::os::unix::fs::symlink("image.wim", src.join("link.wim")).unwrap();
    std::os::unix::fs::symlink("sub dir", src.join("dlink")).unwrap();
    let store = Arc::new(LocalStore::open(&dir.path().join("library")).unwrap());
    let lib = Arc::new(Library::new(store.clone()));
    lib.snapshot(&src, "PS100001.1".parse().unwrap(), &SnapshotOptions::default())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Served copies, as a DP keeps them.
    let served =
        Arc::new(pkgdist_node::served::ServedFiles::open(&dir.path().join("served"), lib.clone(), 1 << 30).unwrap());
    let content = pkgdist_node::serve::Content::new(lib.clone()).with_served(served.clone());
    let metrics = pkgdist_node::metrics::Metrics::new(|_| {});
    let app = pkgdist_node::serve::router(content.clone()).layer(axum::middleware::from_fn_with_state(
        metrics.clone(),
        pkgdist_node::metrics::layer,
    ));
    let shortcut = Arc::new(pkgdist_node::serve::Shortcut::new(content, &metrics));
    // The daemons' own accept loop, as in production: direct answers on plain connections,
    // the commonest by the shortcut.
    tokio::spawn(pkgdist_node::listen::serve_with(
        listener,
        app.clone(),
        pkgdist_node::listen::Limits::default(),
        pkgdist_node::listen::Transport::plain().with_shortcut(shortcut.clone()),
        std::future::pending(),
    ));
    let router_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let router_url = format!("http://{}", router_listener.local_addr().unwrap());
    tokio::spawn(pkgdist_node::listen::serve(
        router_listener,
        app.clone(),
        pkgdist_node::listen::Limits::default(),
        std::future::pending(),
    ));
    let hyper_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hyper_url = format!("http://{}", hyper_listener.local_addr().unwrap());
    tokio::spawn(pkgdist_node::listen::serve_with(
        hyper_listener,
        app,
        pkgdist_node::listen::Limits::default(),
        pkgdist_node::listen::Transport::plain(),
        std::future::pending(),
    ));
    Dp {
        url,
        router_url,
        hyper_url,
        shortcut,
        metrics,
        served,
        dir,
        store,
        lib,
        big,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn files_ranges_and_conditional_requests() {
    let dp = start().await;
    let url = format!("{}/content/PS100001/image.wim", dp.url);
    let r = http().get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let etag = r.headers()[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", blake3::hash(&dp.big).to_hex()));
    assert_eq!(r.headers()["x-pkgdist-content-id"], "PS100001.1");
    assert_eq!(r.bytes().await.unwrap().as_ref(), dp.big.as_slice());

    // The same file by content ID, by ConfigMgr's path, and through a link.
    for u in [
        format!("{}/content/PS100001.1/image.wim", dp.url),
        format!("{}/SMS_DP_SMSPKG$/PS100001/image.wim", dp.url),
        format!("{}/content/PS100001/link.wim", dp.url),
    ] {
        assert_eq!(
            http().get(&u).send().await.unwrap().bytes().await.unwrap().len(),
            dp.big.len(),
            "{u}"
        );
    }

    // Ranges.
    let r = http()
        .get(&url)
        .header(header::RANGE, "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()[header::CONTENT_RANGE],
        format!("bytes 1000-1999/{}", dp.big.len())
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &dp.big[1000..2000]);
    let r = http()
        .get(&url)
        .header(header::RANGE, "bytes=-100")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &dp.big[dp.big.len() - 100..]);
    let r = http()
        .get(&url)
        .header(header::RANGE, format!("bytes={}-", dp.big.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()[header::CONTENT_RANGE], format!("bytes */{}", dp.big.len()));

    // Conditional requests.
    let r = http()
        .get(&url)
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = http()
        .get(&url)
        .header(header::RANGE, "bytes=0-9")
        .header(header::IF_RANGE, "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "If-Range mismatch: the whole file");
    let r = http()
        .get(&url)
        .header(header::RANGE, "bytes=0-9")
        .header(header::IF_RANGE, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);

    // HEAD.
    let r = http().head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_LENGTH], dp.big.len().to_string());
    assert!(r.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn directories_are_listed() {
    let dp = start().await;
    let r = http()
        .get(format!("{}/content/PS100001/", dp.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("href=\"image.wim\"") && html.contains("href=\"sub%20dir/\""),
        "{html}"
    );
    let r = http()
        .get(format!("{}/content/PS100001/sub%20dir", dp.url))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["entries"][0]["name"], "a&b.txt");
    assert_eq!(v["entries"][0]["size"], 5);
    let html = http()
        .get(format!("{}/content/PS100001/sub%20dir/", dp.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("a&amp;b.txt"), "names are escaped: {html}");
}

#[tokio::test]
async fn bad_requests_get_the_right_error_and_the_server_keeps_serving() {
    let dp = start().await;
    let get = |p: &str| {
        let u = format!("{}{p}", dp.url);
        async move { http().get(u).send().await.unwrap().status() }
    };
    // Clients normalize `.` and `..` away; send them raw to test the server's own defence.
    for raw in [
        "/content/PS100001/./image.wim",
        "/content/PS100001/sub%20dir/%2e%2e/image.wim",
        "/content/PS100001/%2E%2E/x",
        "/content/PS100001/sub%20dir/../../../etc/passwd",
        "/content/PS100001/sub%20dir/..",
    ] {
        assert!(raw_status(&dp.url, raw).await.starts_with("HTTP/1.1 400"), "{raw}");
    }
    assert_eq!(
        get("/content/PS100001/sub%20dir//a&b.txt").await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(get("/content/PS100001/nothing").await, StatusCode::NOT_FOUND);
    assert_eq!(get("/content/PS100002/image.wim").await, StatusCode::NOT_FOUND);
    assert_eq!(get("/content/PS100001.7/image.wim").await, StatusCode::NOT_FOUND);
    assert_eq!(get("/content/garbage/image.wim").await, StatusCode::NOT_FOUND);
    // Still serving.
    assert_eq!(get("/content/PS100001/image.wim").await, StatusCode::OK);
}

#[tokio::test]
async fn damaged_content_is_never_sent() {
    let dp = start().await;
    let m = dp.lib.manifest("PS100001.1".parse::<ContentId>().unwrap()).unwrap();
    let chunk = m.entry("image.wim").unwrap().file().unwrap().chunks[5].id;
    pkgdist_testkit::damage::flip_byte(&dp.store.object_path(Kind::Chunk, &chunk.to_hex()).unwrap()).unwrap();
    // The damage may be met before or after the headers leave (they can still sit in the
    // server's buffer when the connection is cut); either way the client never gets the file.
    let got = match http()
        .get(format!("{}/content/PS100001/image.wim", dp.url))
        .send()
        .await
    {
        Err(_) => None,
        Ok(r) => {
            assert_eq!(r.status(), StatusCode::OK);
            r.bytes().await.ok()
        }
    };
    assert!(
        got.is_none_or(|b| b.len() < dp.big.len()),
        "the response ends early instead of carrying wrong bytes"
    );
    // A range before the damaged chunk is still served in full.
    let r = http()
        .get(format!("{}/content/PS100001/image.wim", dp.url))
        .header(header::RANGE, "bytes=0-999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &dp.big[..1000]);
    drop(dp.dir);
}

/// Waits until the DP holds `n` served copies.
async fn copies(dp: &Dp, n: usize) {
    for _ in 0..200 {
        if dp.served.usage().1 == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the DP holds {:?} served copies, not {n}", dp.served.usage());
}

/// A file asked for is served from the chunks and copied, verified; then served from the copy
/// (by the kernel on plain connections, by reads over hyper), whole and in ranges. A copy that
/// changed in any way (a byte written, its modification time put back; cut short) is never
/// sent: the file comes from the chunks again and the copy is written anew. Validation's
/// re-read finds damage the identity cannot show.
#[tokio::test]
async fn files_are_sent_from_verified_copies_never_from_changed_ones() {
    let dp = start().await;
    let get = |base: &str, range: Option<&str>| {
        let mut r = http().get(format!("{base}/content/PS100001/image.wim"));
        if let Some(range) = range {
            r = r.header(header::RANGE, range);
        }
        async move {
            let r = r.send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.bytes().await.unwrap().to_vec()
        }
    };
    assert!(get(&dp.url, None).await == dp.big, "from the chunks");
    copies(&dp, 1).await;
    let hash = blake3::hash(&dp.big).to_hex();
    let copy = dp.served.path().join(hash.as_str());
    assert_eq!(std::fs::read(&copy).unwrap(), dp.big, "the copy holds the file");
    // From now on the copy is what is sent: damage to a chunk does not reach the client.
    let m = dp.lib.manifest("PS100001.1".parse::<ContentId>().unwrap()).unwrap();
    let chunk = m.entry("image.wim").unwrap().file().unwrap().chunks[1].id;
    let chunk_path = dp.store.object_path(Kind::Chunk, &chunk.to_hex()).unwrap();
    let chunk_bytes = std::fs::read(&chunk_path).unwrap();
    pkgdist_testkit::damage::flip_byte(&chunk_path).unwrap();
    for base in [&dp.url, &dp.hyper_url] {
        assert!(get(base, None).await == dp.big, "{base}: from the copy");
        assert!(
            get(base, Some("bytes=1000-2000000")).await == dp.big[1000..2_000_001],
            "{base}: a range"
        );
        assert!(get(base, Some("bytes=-10")).await == dp.big[dp.big.len() - 10..]);
    }
    std::fs::write(&chunk_path, &chunk_bytes).unwrap();

    // A byte written into the copy, its modification time put back: its change time tells.
    let mtime = std::fs::metadata(&copy).unwrap().modified().unwrap();
    pkgdist_testkit::damage::flip_byte(&copy).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert!(get(&dp.url, None).await == dp.big, "the changed copy is not sent");
    copies(&dp, 1).await;
    assert_eq!(std::fs::read(&copy).unwrap(), dp.big, "written anew");
    // Cut short.
    pkgdist_testkit::damage::truncate_half(&copy).unwrap();
    assert!(get(&dp.hyper_url, None).await == dp.big, "a copy cut short is not sent");
    copies(&dp, 1).await;
    assert!(get(&dp.url, Some("bytes=5-9")).await == dp.big[5..10]);

    // Damage no identity shows (a disk flipping a bit under the file system) is found when
    // validation re-reads the copies. Simulated by writing the copy: `check` reads bytes only.
    pkgdist_testkit::damage::flip_byte(&copy).unwrap();
    let f = m.entry("image.wim").unwrap().file().unwrap().clone();
    assert_eq!(dp.served.check([&f]), 1, "the damaged copy is dropped");
    assert_eq!(dp.served.usage().1, 0);
    assert!(!copy.exists());
    drop(dp.dir);
}

/// The answer to `request` (sent byte for byte, `Connection: close` added): its status line,
/// its header lines but `date` (sorted, names in lower case), and its body.
async fn exchange(url: &str, request: &str) -> (String, Vec<String>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{request}Host: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(out[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let mut headers: Vec<String> = lines
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap();
            format!("{}: {}", name.to_ascii_lowercase(), value.trim())
        })
        .filter(|l| !l.starts_with("date: "))
        .collect();
    headers.sort();
    (status, headers, out[end + 4..].to_vec())
}

/// `pkgdist_http_requests_total` of `route`, `method` and `status`.
fn count(metrics: &pkgdist_node::metrics::Metrics, route: &str, method: &str, status: &str) -> u64 {
    let want = format!("pkgdist_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} ");
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&want))
        .map_or(0, |n| n.parse().unwrap())
}

/// The shortcut answers the commonest downloads exactly as the router does — the same status,
/// headers and body, counted the same — and declines the rest, which the router answers.
#[tokio::test]
async fn the_shortcut_answers_as_the_router_would() {
    let dp = start().await;
    // Not answered before the DP holds copies: the router serves from the chunks.
    let (status, _, body) = exchange(&dp.url, "GET /content/PS100001/image.wim HTTP/1.1\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body == dp.big);
    let (_, _, body) = exchange(&dp.url, "GET /content/PS100001/sub%20dir/a%26b.txt HTTP/1.1\r\n").await;
    assert_eq!(body, b"hello");
    assert_eq!(
        dp.shortcut.answered(),
        0,
        "no copies yet: every request went through the router"
    );
    copies(&dp, 2).await;

    const FILE: &str = "/content/:pkg/*path";
    const SHARE: &str = "/:share/:pkg/*path";
    let files = [
        ("/content/PS100001/image.wim", "", FILE, "200"),
        ("/content/ps100001.1/link.wim", "", FILE, "200"),
        ("/content/PS100001/sub%20dir/a%26b.txt", "", FILE, "200"),
        ("/content/PS100001/dlink/a%26b.txt?x=1", "", FILE, "200"),
        ("/sms_dp_smspkg$/PS100001/image.wim", "", SHARE, "200"),
        (
            "/content/PS100001/image.wim",
            "Range: bytes=1000-2000000\r\n",
            FILE,
            "206",
        ),
        ("/content/PS100001/image.wim", "Range: bytes=-10\r\n", FILE, "206"),
        ("/content/PS100001/image.wim", "Range: bytes=3145000-\r\n", FILE, "206"),
        (
            "/sms_dp_smspkg$/PS100001/sub%20dir/a%26b.txt",
            "Range: bytes=1-2\r\n",
            SHARE,
            "206",
        ),
        // Several ranges, another unit: the whole file.
        (
            "/content/PS100001/sub%20dir/a%26b.txt",
            "Range: bytes=0-1,3-4\r\n",
            FILE,
            "200",
        ),
        ("/content/PS100001/image.wim", "Range: items=0-1\r\n", FILE, "200"),
        // The fragment is no part of the path, for the router either.
        ("/content/PS100001/sub%20dir/a%26b.txt#x.txt", "", FILE, "200"),
    ];
    // The first request after a copy is written opens it (or reads a small one into memory),
    // which may block on the disk: the router's, off the workers.
    for (path, _, _, _) in files {
        exchange(&dp.url, &format!("GET {path} HTTP/1.1\r\n")).await;
    }
    for (path, header, route, status) in files {
        for method in ["GET", "HEAD"] {
            let request = format!("{method} {path} HTTP/1.1\r\n{header}");
            let before = (dp.shortcut.answered(), count(&dp.metrics, route, method, status));
            let direct = exchange(&dp.url, &request).await;
            assert_eq!(
                dp.shortcut.answered(),
                before.0 + 1,
                "{request}: answered by the shortcut"
            );
            assert_eq!(
                count(&dp.metrics, route, method, status),
                before.1 + 1,
                "{request}: counted"
            );
            let routed = exchange(&dp.router_url, &request).await;
            assert_eq!(dp.shortcut.answered(), before.0 + 1);
            assert_eq!(count(&dp.metrics, route, method, status), before.1 + 2);
            assert!(
                direct.0.starts_with(&format!("HTTP/1.1 {status} ")),
                "{request}: {}",
                direct.0
            );
            assert_eq!(direct.0, routed.0, "{request}");
            assert_eq!(direct.1, routed.1, "{request}");
            assert!(direct.2 == routed.2, "{request}: the same body");
            assert_eq!(direct.2.is_empty(), method == "HEAD", "{request}");
            let hyper = exchange(&dp.hyper_url, &request).await;
            assert_eq!(direct.1, hyper.1, "{request}: as hyper answers it");
            assert!(direct.2 == hyper.2, "{request}: as hyper sends it");
        }
    }
    // Conditions, ranges past the end, folders, names the router decodes, unknown packages:
    // declined, and answered by the router.
    let answered = dp.shortcut.answered();
    for (request, status) in [
        (
            "GET /content/PS100001/image.wim HTTP/1.1\r\nIf-None-Match: *\r\n",
            "304",
        ),
        (
            "GET /content/PS100001/image.wim HTTP/1.1\r\nRange: bytes=0-9\r\nIf-Range: \"x\"\r\n",
            "200",
        ),
        (
            "GET /content/PS100001/image.wim HTTP/1.1\r\nRange: bytes=4000000-\r\n",
            "416",
        ),
        ("GET /content/PS100001/sub%20dir/ HTTP/1.1\r\n", "200"),
        ("GET /content/PS100001/sub%20dir HTTP/1.1\r\n", "301"),
        ("GET /SMS_DP_SMSPKG%24/PS100001/image.wim HTTP/1.1\r\n", "200"),
        ("GET /Content/PS100001/image.wim HTTP/1.1\r\n", "404"),
        ("GET /content/PS100002/image.wim HTTP/1.1\r\n", "404"),
        ("GET /content/PS100001/../PS100001/image.wim HTTP/1.1\r\n", "400"),
        ("GET /content/PS100001//image.wim HTTP/1.1\r\n", "400"),
        ("GET /content/PS100001/image.wim%FF HTTP/1.1\r\n", "400"),
        // What `http` refuses in a target is refused, not answered.
        ("GET /content/PS100001/image.wim?q=\"x\" HTTP/1.1\r\n", "400"),
        ("GET /content/PS100001/<image>.wim HTTP/1.1\r\n", "400"),
    ] {
        let (line, _, _) = exchange(&dp.url, request).await;
        assert!(line.starts_with(&format!("HTTP/1.1 {status} ")), "{request}: {line}");
        assert_eq!(exchange(&dp.router_url, request).await.0, line, "{request}");
    }
    assert_eq!(dp.shortcut.answered(), answered, "all declined");
}

/// The status line of a GET sent byte for byte, without any client normalizing the path.
async fn raw_status(url: &str, path: &str) -> String {
    exchange(url, &format!("GET {path} HTTP/1.1\r\n")).await.0
}

/// Clients that ask for a large file and never read hold no thread: with a blocking pool of 4
/// threads and 16 such clients, small files are still served at once. (Each stalled download
/// used to keep a blocking thread until its client read or left.)
#[test]
fn stalled_downloads_hold_no_threads() {
    use std::io::Write as _;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dp = start().await;
        // Larger than what loopback's socket buffers absorb, so the sender has to wait.
        let src = dp.dir.path().join("big");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("os.img"), Rng::new(7).bytes(48 << 20)).unwrap();
        let lib = dp.lib.clone();
        tokio::task::spawn_blocking(move || {
            lib.snapshot(&src, "PS100002.1".parse().unwrap(), &SnapshotOptions::default())
                .unwrap()
        })
        .await
        .unwrap();
        let addr = dp.url.trim_start_matches("http://").to_owned();
        let mut stalled = Vec::new();
        for _ in 0..16 {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /content/PS100002/os.img HTTP/1.1\r\nHost: dp\r\n\r\n")
                .unwrap();
            stalled.push(s);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let small = format!("{}/content/PS100001/sub%20dir/a%26b.txt", dp.url);
        for _ in 0..5 {
            let r = tokio::time::timeout(std::time::Duration::from_secs(10), http().get(&small).send())
                .await
                .expect("a small file is served while 16 downloads stall")
                .unwrap();
            assert_eq!(r.text().await.unwrap(), "hello");
        }
        drop(stalled);
    });
}

/// What Windows clients and browsers send: ConfigMgr's share name in any case and
/// percent-encoded, package IDs in lower case, a folder without its trailing slash, a path
/// through a link to a folder, a weak validator.
#[tokio::test]
async fn share_paths_folders_links_and_weak_validators_as_clients_send_them() {
    let dp = start().await;
    for path in [
        "/SMS_DP_SMSPKG$/PS100001/image.wim",
        "/sms_dp_smspkg$/PS100001/image.wim",
        "/SMS_DP_SMSPKG%24/PS100001/image.wim",
        "/Sms_Dp_SmsPkg%24/ps100001/image.wim",
        "/content/ps100001.1/image.wim",
    ] {
        let r = http().get(format!("{}{path}", dp.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(r.bytes().await.unwrap() == dp.big, "{path}");
    }
    let r = http()
        .get(format!("{}/OTHER$/PS100001/image.wim", dp.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Through a link to a folder, as its listing shows it.
    let r = http()
        .get(format!("{}/content/PS100001/dlink/a%26b.txt", dp.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "hello");
    let html = http()
        .get(format!("{}/content/PS100001/dlink/", dp.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("href=\"a%26b.txt\""), "{html}");
    // A folder without its slash: a browser is sent to the slash (the listing's links are
    // relative to it); a JSON client gets the listing as it is.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, to) in [
        ("/content/PS100001/sub%20dir", "/content/PS100001/sub%20dir/"),
        ("/content/PS100001", "/content/PS100001/"),
        (
            "/SMS_DP_SMSPKG$/PS100001/dlink?x=1",
            "/SMS_DP_SMSPKG$/PS100001/dlink/?x=1",
        ),
    ] {
        let r = no_redirects.get(format!("{}{path}", dp.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY, "{path}");
        assert_eq!(r.headers()[header::LOCATION], to, "{path}");
    }
    let r = no_redirects
        .get(format!("{}/content/PS100001/sub%20dir", dp.url))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // If-None-Match with the weak form of the file's tag.
    let url = format!("{}/content/PS100001/image.wim", dp.url);
    let etag = http().head(&url).send().await.unwrap().headers()[header::ETAG]
        .to_str()
        .unwrap()
        .to_owned();
    let r = http()
        .get(&url)
        .header(header::IF_NONE_MATCH, format!("W/{etag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
}
