//! Distribution points end to end: a real site and real DPs on 127.0.0.1, content moved by the
//! node protocol, downloaded over HTTP and compared with the source.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Dp, Site, assert_private, assert_serves, files, get_bytes, http, pkgdist, tree_size, wait};
use pkgdist_testkit::generate::{Rng, write_image, write_tree};
use tempfile::TempDir;

/// One large file and many small ones.
fn make_tree(src: &Path, image_mib: u64) {
    write_image(&src.join("sources/install.wim"), 7, image_mib << 20).unwrap();
    write_tree(&src.join("drivers"), 8, 150).unwrap();
}

fn create_package(site: &Site, name: &str, src: &Path) -> String {
    let out = site.cli_json(&["package", "create", "--name", name, "--source", src.to_str().unwrap()]);
    out["PackageID"].as_str().unwrap().to_owned()
}

/// Overwrites 64 KiB in the middle of a file.
fn edit_64k(path: &Path, seed: u64) {
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(len / 2)).unwrap();
    f.write_all(&Rng::new(seed).bytes(64 << 10)).unwrap();
    f.sync_all().unwrap();
}

/// A package on a group of 2 DPs: installed on both and served byte for byte; a 64 KiB edit
/// and a refresh move under 2% of the package to each; a chunk deleted on a DP is repaired by
/// ReDistributePackage; removing a package from a DP releases it there and leaves another
/// package that shares its chunks whole.
#[test]
fn group_of_two_dps_distribute_refresh_redistribute_remove() {
    let dir = TempDir::new().unwrap();
    let site = Site::start(dir.path());
    let src = dir.path().join("src");
    make_tree(&src, 24);
    let size = tree_size(&src);
    let pkg = create_package(&site, "Windows drivers", &src);

    let dp1 = site.add_dp("dp1");
    let dp2 = site.add_dp("dp2");
    site.cli(&["group", "create", "branch"]);
    site.cli(&["group", "add-dp", "branch", "dp1", "dp2"]);
    site.cli(&["group", "add-package", "branch", &pkg]);
    site.wait_installed(&pkg, 2, 1);
    // The site's and the DPs' data are theirs alone: folders 0700, and every file the daemons
    // wrote (database, WAL, library chunks and manifests, job files) 0600.
    assert_private(&site.dir.join("site"), &["site.toml"]);
    for dp in [&dp1, &dp2] {
        assert_private(&dp.dir, &[]);
    }
    for dp in [&dp1, &dp2] {
        assert_serves(dp, &pkg, &src);
        let first = site.last_success(&pkg, &dp.name);
        let got = first["BytesTransferred"].as_u64().unwrap();
        // Everything crossed once (compressed where it pays), nothing twice.
        assert!(
            got > size / 4 && got <= size + size / 100,
            "first transfer {got} of {size}"
        );
    }

    // A 64 KiB edit inside the large file, then a refresh.
    edit_64k(&src.join("sources/install.wim"), 99);
    site.cli(&["package", "refresh", &pkg]);
    site.wait_installed(&pkg, 2, 2);
    for dp in [&dp1, &dp2] {
        assert_serves(dp, &pkg, &src);
        let m = site.last_success(&pkg, &dp.name);
        let moved = m["BytesTransferred"].as_u64().unwrap();
        assert!(moved > 0, "{m}");
        assert!(
            moved * 50 < size,
            "{}: refresh moved {moved} bytes of {size} (over 2%)",
            dp.name
        );
    }

    // Damage on dp1: a chunk file deleted. ReDistributePackage makes it whole again.
    let chunk = files(&dp1.dir.join("library/chunks"))
        .into_iter()
        .max_by_key(|(_, b)| b.len())
        .unwrap()
        .0;
    fs::remove_file(dp1.dir.join("library/chunks").join(&chunk)).unwrap();
    let report = pkgdist_content::Library::open_local(&dp1.dir.join("library"))
        .unwrap()
        .verify(None)
        .unwrap();
    assert!(!report.problems.is_empty(), "deleting a chunk damages dp1's library");
    // Clients still never get a wrong file: those sent before come from their verified
    // copies, and a file that needs the chunk ends short.
    for (rel, bytes) in files(&src) {
        let (_, got) = dp1.download(&format!("{pkg}/{rel}"));
        assert!(got == bytes || got.len() < bytes.len(), "{rel}: wrong bytes served");
    }
    let before = site.statuses(&pkg).len();
    site.cli(&["group", "redistribute", "branch", &pkg]);
    wait(Duration::from_secs(60), "the redistribution to finish", || {
        let news: Vec<_> = site.statuses(&pkg).into_iter().skip(before).collect();
        let done = ["dp1", "dp2"]
            .iter()
            .all(|n| news.iter().any(|m| m["Name"] == *n && m["MessageState"] == 1));
        done.then_some(()).ok_or_else(|| format!("{news:#?}"))
    });
    site.wait_installed(&pkg, 2, 2);
    assert_serves(&dp1, &pkg, &src);
    let repaired = site.last_success(&pkg, "dp1")["BytesTransferred"].as_u64().unwrap();
    assert!(repaired > 0 && repaired < 2 << 20, "repair moved {repaired} bytes");
    assert_eq!(site.last_success(&pkg, "dp2")["BytesTransferred"], 0, "dp2 was whole");

    // A second package sharing files with the first, on dp1 only.
    let src2 = dir.path().join("src2");
    fs::create_dir_all(&src2).unwrap();
    fs::copy(src.join("sources/install.wim"), src2.join("install.wim")).unwrap();
    let pkg2 = create_package(&site, "Image copy", &src2);
    site.cli(&["package", "distribute", &pkg2, "dp1"]);
    site.wait_installed(&pkg2, 1, 1);
    let moved = site.last_success(&pkg2, "dp1")["BytesTransferred"].as_u64().unwrap();
    assert!(
        moved > 0 && moved < 16 << 10,
        "every chunk of the copy was already on dp1: only its (compressed) manifest moved, {moved} bytes"
    );

    // Remove the first package from dp1: gone there, the second stays whole.
    let nal = site
        .dp_rows(&pkg)
        .iter()
        .find(|r| r["ServerNALPath"].as_str().unwrap().contains("dp1"))
        .unwrap()["ServerNALPath"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = pkgdist_proto::Client::new(&site.url(), common::TOKEN).unwrap();
    let k = pkgdist_proto::client::key(&[("PackageID", &pkg), ("ServerNALPath", &nal), ("SiteCode", "PS1")]);
    common::runtime()
        .block_on(client.delete("SMS_DistributionPoint", &k))
        .unwrap();
    wait(Duration::from_secs(60), "the removal", || {
        let rows = site.dp_rows(&pkg);
        (rows.len() == 1).then_some(()).ok_or_else(|| format!("{rows:#?}"))
    });
    assert_eq!(dp1.download(&format!("{pkg}/sources/install.wim")).0, 404);
    assert_serves(&dp1, &pkg2, &src2);
    assert_serves(&dp2, &pkg, &src);
}

/// A DP killed in the middle of a large transfer resumes after a restart: the job completes
/// and the bytes it received in all stay within one batch of the package size.
#[test]
fn dp_killed_mid_transfer_resumes_without_fetching_twice() {
    let dir = TempDir::new().unwrap();
    let site = Site::start(dir.path());
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // Incompressible, so bytes on the wire are the package's bytes.
    let mut rng = Rng::new(3);
    for i in 0..4 {
        fs::write(src.join(format!("part{i}.bin")), rng.bytes(16 << 20)).unwrap();
    }
    let size = tree_size(&src);
    let pkg = create_package(&site, "Big", &src);
    let batch: u64 = 1 << 20;
    let batch_arg = ["--batch-bytes", "1048576"];
    let token = site.cli_json(&["dp", "add", "--name", "dp1"])["enrollment_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut dp = Dp::start(&site, "dp1", Some(&token), &batch_arg);
    site.cli(&["package", "distribute", &pkg, "dp1"]);

    // Kill it once some, but not all, batches are in.
    let jobs = dp.dir.join("jobs");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    'watch: loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the transfer was never seen under way"
        );
        for ent in fs::read_dir(&jobs).into_iter().flatten().flatten() {
            let Ok(bytes) = fs::read(ent.path()) else { continue };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            let got = v["bytes_received"].as_u64().unwrap_or(0);
            assert!(
                v["state"] != "succeeded",
                "the transfer finished before it could be interrupted"
            );
            if v["state"] == "running" && got > 4 * batch && got < size / 2 {
                break 'watch;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    dp.daemon.kill();
    let row = &site.dp_rows(&pkg)[0];
    assert_ne!(row["State"], 0, "not installed at the kill");

    dp.restart(&site, &batch_arg);
    site.wait_installed(&pkg, 1, 1);
    let got = site.last_success(&pkg, "dp1")["BytesTransferred"].as_u64().unwrap();
    let overhead = size / 100;
    // A kill between a batch made durable and its count recorded leaves up to one batch
    // uncounted (it is not fetched again); one cut short mid-way is fetched again.
    assert!(
        got + batch >= size && got <= size + batch + overhead,
        "received {got} bytes for a {size}-byte package (batch {batch})"
    );
    assert_serves(&dp, &pkg, &src);
}

/// One DP under attack and under refreshes: bad paths, ranges, unknown packages and requests
/// without credentials get the right errors and the DP keeps serving; enrollment tokens are
/// single-use and a removed DP is shut out; a download running while refreshes land gets the
/// old file or the new one, never a mix.
#[test]
fn one_dp_bad_input_and_downloads_during_refreshes() {
    let dir = TempDir::new().unwrap();
    let site = Site::start(dir.path());
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let versions: Vec<Vec<u8>> = (0..4u64).map(|v| Rng::new(100 + v).bytes(3 << 20)).collect();
    fs::write(src.join("app.msi"), &versions[0]).unwrap();
    fs::write(src.join("readme.txt"), b"version 0").unwrap();
    let pkg = create_package(&site, "App", &src);
    let token = site.cli_json(&["dp", "add", "--name", "dp1"])["enrollment_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let dp = Dp::start(&site, "dp1", Some(&token), &[]);
    site.cli(&["package", "distribute", &pkg, "dp1"]);
    site.wait_installed(&pkg, 1, 1);

    // Bad input, sent raw so no client library tidies the path first.
    let raw = |req: &str| -> String {
        let mut s = TcpStream::connect(&dp.daemon.addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.lines().next().unwrap_or_default().to_owned()
    };
    for path in [
        format!("/content/{pkg}/../../etc/passwd"),
        format!("/content/{pkg}/%2e%2e/%2e%2e/etc/passwd"),
        format!("/content/{pkg}/a/%2F..%2F..%2Fx"),
    ] {
        let status = raw(&format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
        assert!(status.contains(" 400 ") || status.contains(" 404 "), "{path}: {status}");
    }
    let range = raw(&format!(
        "GET /content/{pkg}/readme.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=5000-\r\nConnection: close\r\n\r\n"
    ));
    assert!(range.contains(" 416 "), "{range}");
    assert_eq!(get_bytes(&format!("{}/content/PS199999/x", dp.url())).0, 404);
    assert_eq!(
        get_bytes(&format!("{}/SMS_DP_SMSPKG$/{pkg}/readme.txt", dp.url())).1,
        b"version 0"
    );
    // The job routes want the site's token; the site's node routes want a DP credential.
    let (st, _) = http(reqwest::Method::GET, &format!("{}/node/v1/jobs/x", dp.url()), None);
    assert_eq!(st, 401);
    let (st, _) = http(
        reqwest::Method::GET,
        &format!("{}/node/v1/jobs/x", dp.url()),
        Some(common::TOKEN),
    );
    assert_eq!(st, 401, "an admin token is not the site's token");
    let (st, _) = http(
        reqwest::Method::GET,
        &format!("{}/node/v1/latest/{pkg}", site.url()),
        None,
    );
    assert_eq!(st, 401);
    let (st, _) = http(
        reqwest::Method::GET,
        &format!("{}/node/v1/latest/{pkg}", site.url()),
        Some("pkgdp_not-a-credential"),
    );
    assert_eq!(st, 401);
    // The enrollment token was used up.
    let again = pkgdist()
        .args([
            "dp",
            "run",
            "--listen",
            "127.0.0.1:0",
            "--site",
            &site.url(),
            "--enrollment-token",
            &token,
        ])
        .arg("--data")
        .arg(dir.path().join("thief"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already used"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // Still serving.
    assert_serves(&dp, &pkg, &src);

    // Downloads running while three refreshes land: each body is one whole version.
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("{}/content/{pkg}/app.msi", dp.url());
    let (stop2, expected) = (stop.clone(), versions.clone());
    let reader = std::thread::spawn(move || {
        let mut seen = std::collections::BTreeSet::new();
        let mut count = 0;
        while !stop2.load(Ordering::Relaxed) {
            let (status, body) = get_bytes(&url);
            assert_eq!(status, 200);
            let which = expected.iter().position(|v| *v == body);
            assert!(
                which.is_some(),
                "download {count} matches no version ({} bytes)",
                body.len()
            );
            seen.insert(which.unwrap());
            count += 1;
        }
        (count, seen)
    });
    for (v, bytes) in versions.iter().enumerate().skip(1) {
        fs::write(src.join("app.msi"), bytes).unwrap();
        site.cli(&["package", "refresh", &pkg]);
        site.wait_installed(&pkg, 1, v as i64 + 1);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (count, seen) = reader.join().unwrap();
    assert!(count >= 4, "only {count} downloads");
    assert!(seen.contains(&3), "the last version was never seen: {seen:?}");
    assert!(seen.len() >= 2, "downloads saw only {seen:?}");

    // VerifyPackage: the DP re-hashes its copy; damage is reported by file path.
    let client = pkgdist_proto::Client::new(&site.url(), common::TOKEN).unwrap();
    let nal = site.dp_rows(&pkg)[0]["ServerNALPath"].as_str().unwrap().to_owned();
    let verify = || {
        common::runtime()
            .block_on(client.call(
                "SMS_DistributionPoint",
                None,
                "VerifyPackage",
                &serde_json::json!({"PackageID": pkg, "NALPath": nal}),
            ))
            .unwrap();
    };
    verify();
    wait(Duration::from_secs(60), "a clean validation", || {
        let ok = site.statuses(&pkg).iter().any(|m| m["MessageID"] == 2384);
        ok.then_some(()).ok_or_else(|| format!("{:#?}", site.dp_rows(&pkg)))
    });
    // ConfigMgr's behaviour: report, do not repair (the repair is tested in distmgr_e2e).
    site.cli(&["dp", "set", "dp1", "--repair", "off"]);
    for (rel, _) in files(&dp.dir.join("library/chunks")) {
        pkgdist_testkit::damage::flip_byte(&dp.dir.join("library/chunks").join(rel)).unwrap();
    }
    verify();
    wait(Duration::from_secs(60), "validation to find the damage", || {
        let rows = site.dp_rows(&pkg);
        let failed = rows[0]["State"] == 3 && rows[0]["LastMessage"].as_str().unwrap().contains("app.msi");
        failed.then_some(()).ok_or_else(|| format!("{rows:#?}"))
    });

    // A DP removed at the site drops its content first, then is shut out of the site's node
    // routes.
    let out = site.cli(&["dp", "remove", "dp1"]);
    assert!(out.contains("dp1 removed"), "{out}");
    assert_eq!(
        dp.download(&format!("{pkg}/app.msi")).0,
        404,
        "dp1 kept serving after dp remove"
    );
    let cred: serde_json::Value = serde_json::from_slice(&fs::read(dp.dir.join("node.json")).unwrap()).unwrap();
    let (st, _) = http(
        reqwest::Method::GET,
        &format!("{}/node/v1/latest/{pkg}", site.url()),
        cred["credential"].as_str(),
    );
    assert_eq!(st, 401);
}

/// The README's first command: `pkgdist up`, then the CLI lines that create a package,
/// distribute it and show its status; `pkgdist fetch` downloads it verified and, after an
/// edit, moves only what changed.
#[test]
fn up_then_readme_commands_then_fetch() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let ready = dir.path().join("ready.json");
    let mut cmd = pkgdist();
    // Started in the folder the sources are under, as the README's clone is.
    cmd.current_dir(dir.path())
        .args(["up", "--dps", "2", "--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(&data)
        .arg("--ready-file")
        .arg(&ready);
    let mut up = pkgdist_testkit::process::Daemon::start_with(cmd, &ready, &dir.path().join("up.log"), "site").unwrap();
    let r: serde_json::Value = serde_json::from_str(&fs::read_to_string(&ready).unwrap()).unwrap();
    let dps: Vec<String> = r["dps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(dps.len(), 2);
    let token_file = r["token_file"].as_str().unwrap().to_owned();
    assert!(Path::new(&token_file).exists());
    let site_url = up.url();
    let cli_at = |url: &str, args: &[&str]| -> String {
        let out = pkgdist()
            .args(["--site", url, "--token-file", &token_file])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let cli = |args: &[&str]| cli_at(&site_url, args);
    let src = dir.path().join("docs");
    make_tree(&src, 4);
    let created = cli(&["package", "create", "--name", "Docs", "--source", src.to_str().unwrap()]);
    let pkg = created.split_whitespace().next().unwrap().to_owned();
    cli(&["package", "distribute", &pkg, "dp1", "dp2"]);
    let installed_at = |version: i64| {
        wait(
            Duration::from_secs(60),
            &format!("version {version} on both DPs"),
            || {
                let s: serde_json::Value = serde_json::from_str(&cli(&["--json", "status", &pkg])).unwrap();
                let rows = s["dps"].as_array().unwrap();
                let done = rows.len() == 2 && rows.iter().all(|r| r["State"] == 0 && r["SourceVersion"] == version);
                done.then_some(()).ok_or(format!("{s:#}"))
            },
        )
    };
    installed_at(1);
    assert!(cli(&["status", &pkg]).contains("INSTALLED"));

    let dest = dir.path().join("dest");
    let fetch = |dest: &Path| -> serde_json::Value {
        let out = pkgdist()
            .args(["--json", "fetch", &pkg, "--dp", &format!("http://{}", dps[1])])
            .arg(dest)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = fetch(&dest);
    assert_eq!(files(&dest), files(&src));
    assert_eq!(first["bytes_reused"], 0);

    edit_64k(&src.join("sources/install.wim"), 5);
    cli(&["package", "refresh", &pkg]);
    installed_at(2);
    let second = fetch(&dest);
    assert_eq!(files(&dest), files(&src));
    assert_eq!(second["files_written"], 1, "{second}");
    let fetched = second["bytes_fetched"].as_u64().unwrap();
    assert!(fetched > 0 && fetched < 1 << 20, "{second}");

    // Started again with `--listen 127.0.0.1:0`, as documented, it is on another port: its DPs
    // go with it, and a new version reaches them.
    up.stop();
    let mut again = pkgdist();
    again
        .current_dir(dir.path())
        .args(["up", "--dps", "2", "--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(&data)
        .arg("--ready-file")
        .arg(&ready);
    let up = pkgdist_testkit::process::Daemon::start_with(again, &ready, &dir.path().join("up2.log"), "site").unwrap();
    let moved = up.url();
    edit_64k(&src.join("sources/install.wim"), 6);
    cli_at(&moved, &["package", "refresh", &pkg]);
    wait(Duration::from_secs(60), "version 3 on both DPs", || {
        let s: serde_json::Value = serde_json::from_str(&cli_at(&moved, &["--json", "status", &pkg])).unwrap();
        let rows = s["dps"].as_array().unwrap();
        let done = rows.len() == 2 && rows.iter().all(|r| r["State"] == 0 && r["SourceVersion"] == 3);
        done.then_some(()).ok_or(format!("{s:#}"))
    });
    let log = fs::read_to_string(dir.path().join("up2.log")).unwrap();
    assert!(
        !log.contains("enrolled with another site URL"),
        "a false warning:\n{log}"
    );
}

/// A DP that comes back after being down gets what failed meanwhile at once, not after the
/// rest of the retry delay (an hour here): its hello at start makes its retries due.
#[test]
fn a_dp_back_from_an_outage_is_retried_at_once() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("site");
    fs::create_dir_all(&data).unwrap();
    fs::write(
        data.join("site.toml"),
        "site-code = \"PS1\"\n[distribution]\nretry-count = 100\nretry-delay-secs = 3600\npoll-ms = 100\nlease-secs = 5\n",
    )
    .unwrap();
    let site = Site::start(dir.path());
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("readme.txt"), b"version 1").unwrap();
    let pkg = create_package(&site, "App", &src);
    let mut dp = site.add_dp("dp1");
    site.cli(&["package", "distribute", &pkg, "dp1"]);
    site.wait_installed(&pkg, 1, 1);
    // Down; a new version cannot reach it and waits out the hour.
    dp.daemon.kill();
    fs::write(src.join("readme.txt"), b"version 2").unwrap();
    site.cli(&["package", "refresh", &pkg]);
    wait(Duration::from_secs(60), "the row retrying", || {
        let rows = site.dp_rows(&pkg);
        (rows[0]["State"] == 2)
            .then_some(())
            .ok_or_else(|| format!("{rows:#?}"))
    });
    // Back: installed within seconds.
    dp.restart(&site, &[]);
    site.wait_installed(&pkg, 1, 2);
    assert_eq!(dp.download(&format!("{pkg}/readme.txt")).1, b"version 2");
}

/// Where a DP says it is: never the unspecified address it listens on (`0.0.0.0`), which no
/// one can reach; and an `--advertise-url` given once is kept for later starts.
#[test]
fn a_dp_advertises_where_it_can_be_reached() {
    let dir = TempDir::new().unwrap();
    let site = Site::start(dir.path());
    let token = site.cli_json(&["dp", "add", "--name", "dp1"])["enrollment_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = pkgdist()
        .args(["dp", "run", "--listen", "0.0.0.0:0", "--site", &site.url()])
        .arg("--data")
        .arg(dir.path().join("dp1"))
        .args(["--enrollment-token", &token])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--advertise-url"), "{err}");
    // Told once, kept: the site keeps the advertised URL after a start without it.
    let advertised = "http://dp1.branch.example:8471";
    let mut dp = Dp::start(&site, "dp1", Some(&token), &["--advertise-url", advertised]);
    let url = |site: &Site| site.get("SMS_DistributionPointInfo")["value"][0]["Url"].clone();
    assert_eq!(url(&site), advertised);
    dp.restart(&site, &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(url(&site), advertised, "a start without --advertise-url keeps it");
}

/// Package lifecycle (issue 20): `package remove` takes a package off one DP and leaves the
/// others; `package delete` hides the package at once, has every DP drop its content
/// (REMOVAL_PENDING until done), then deletes it for good. No DP serves what the site no
/// longer knows.
#[test]
fn removing_and_deleting_a_package_take_it_off_its_dps() {
    let dir = TempDir::new().unwrap();
    let site = Site::start(dir.path());
    let dps = [site.add_dp("dp1"), site.add_dp("dp2")];
    let src = dir.path().join("src");
    write_tree(&src, 21, 8).unwrap();
    let pkg = create_package(&site, "Lifecycle", &src);
    site.cli(&["group", "create", "Branch"]);
    site.cli(&["group", "add-dp", "Branch", "dp1", "dp2"]);
    site.cli(&["group", "add-package", "Branch", &pkg]);
    site.wait_installed(&pkg, 2, 1);
    // A refresh is an action in progress only until both DPs have the new version.
    fs::write(src.join("added.txt"), b"version 2").unwrap();
    site.cli(&["package", "refresh", &pkg]);
    site.wait_installed(&pkg, 2, 2);
    let p = site.get(&format!("SMS_Package('{pkg}')"));
    assert_eq!(p["ActionInProgress"], 0, "{p:#}");
    let (file, _) = files(&src).into_iter().next().unwrap();
    let path = format!("{pkg}/{file}");
    assert_eq!(dps[0].download(&path).0, 200);

    // Off dp1 only.
    let out = site.cli(&["package", "remove", &pkg, "dp1"]);
    assert!(out.contains("REMOVAL_PENDING"), "{out}");
    wait(Duration::from_secs(60), "the row on dp1 gone", || {
        let rows = site.dp_rows(&pkg);
        (rows.len() == 1 && rows[0]["State"] == 0)
            .then_some(())
            .ok_or(format!("{rows:#?}"))
    });
    assert_eq!(
        dps[0].download(&path).0,
        404,
        "dp1 still serves what was removed from it"
    );
    assert_eq!(dps[1].download(&path).0, 200);

    // Deleted: hidden at once, off every DP, then gone.
    site.cli(&["package", "delete", &pkg]);
    let listed = site.cli_json(&["package", "list"]);
    assert!(
        !listed.to_string().contains(&pkg),
        "a package being deleted is still listed: {listed}"
    );
    let (status, _) = http(
        reqwest::Method::GET,
        &format!("{}/AdminService/wmi/SMS_Package('{pkg}')", site.url()),
        Some(common::TOKEN),
    );
    assert_eq!(status, 404);
    // Nothing can be done with it meanwhile.
    let refused = pkgdist()
        .args([
            "--site",
            &site.url(),
            "--token",
            common::TOKEN,
            "package",
            "distribute",
            &pkg,
            "dp1",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    wait(Duration::from_secs(60), "every row gone", || {
        let rows = site.dp_rows(&pkg);
        rows.is_empty().then_some(()).ok_or(format!("{rows:#?}"))
    });
    assert_eq!(dps[1].download(&path).0, 404, "dp2 still serves a deleted package");
    // The group no longer holds it, and the package is gone for good (its messages too).
    let groups = site.get("SMS_DistributionPointGroup");
    assert_eq!(groups["value"][0]["ContentCount"], 0, "{groups:#}");
    wait(Duration::from_secs(10), "the package deleted for good", || {
        let v = site.get(&format!("SMS_DistributionDPStatus?$filter=PackageID%20eq%20'{pkg}'"));
        v["value"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
            .ok_or(format!("{v:#}"))
    });
}

/// Prestaged content (issue 20), as ConfigMgr's: a DP enabled for it takes a package flagged
/// DO_NOT_DOWNLOAD only from a prestaged file imported on it. The row waits, saying what to do;
/// a file of other content under the same ID is refused by the site and serves nothing; the
/// genuine file, imported offline, makes the DP INSTALLED with nothing fetched.
#[test]
fn prestaged_content_reaches_a_dp_without_the_network() {
    let dir = TempDir::new().unwrap();
    let site = Site::start(dir.path());
    let dp = site.add_dp("dp1");
    let src = dir.path().join("src");
    make_tree(&src, 2);
    let pkg = create_package(&site, "Prestaged", &src);
    site.cli(&["dp", "set", "dp1", "--prestaged", "on"]);
    let patched = common::runtime().block_on(async {
        reqwest::Client::new()
            .patch(format!("{}/AdminService/wmi/SMS_Package('{pkg}')", site.url()))
            .bearer_auth(common::TOKEN)
            .json(&serde_json::json!({"PkgFlags": 16_777_216}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(patched, 200);
    site.cli(&["package", "distribute", &pkg, "dp1"]);
    let waiting = |site: &Site| {
        wait(Duration::from_secs(20), "the row waiting for prestaged content", || {
            let rows = site.dp_rows(&pkg);
            let msg = rows[0]["LastMessage"].as_str().unwrap_or_default().to_owned();
            (rows[0]["State"] != 0 && msg.contains("dp prestage"))
                .then_some(())
                .ok_or(format!("{rows:#?}"))
        });
    };
    waiting(&site);
    let first = files(&src).into_iter().next().unwrap().0;
    assert_eq!(
        dp.download(&format!("{pkg}/{first}")).0,
        404,
        "nothing sent over the network"
    );

    // Other content under the same ID (made in another library): the DP imports it, but the
    // site refuses it, and the DP serves nothing.
    let other_src = dir.path().join("other-src");
    fs::create_dir_all(&other_src).unwrap();
    fs::write(other_src.join("setup.exe"), b"not what the site holds").unwrap();
    let other_lib = dir.path().join("other-lib");
    let o = pkgdist()
        .args(["content", "snapshot"])
        .arg(&other_src)
        .arg("--library")
        .arg(&other_lib)
        .args(["--package-id", &pkg])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let forged = dir.path().join("forged.pkgx");
    let o = pkgdist()
        .args(["content", "prestage", "--library"])
        .arg(&other_lib)
        .arg(&pkg)
        .arg(&forged)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = pkgdist()
        .args(["dp", "prestage"])
        .arg(&forged)
        .arg("--data")
        .arg(&dp.dir)
        .output()
        .unwrap();
    assert!(!o.status.success(), "the site took another site's content");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not this site's"), "{err}");
    let held = |dp: &Dp| {
        fs::read_dir(dp.dir.join("library/refs"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("prestaged."))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(held(&dp), 0, "a refused import is not held");
    std::thread::sleep(Duration::from_millis(500));
    waiting(&site);
    assert_eq!(dp.download(&format!("{pkg}/setup.exe")).0, 404);

    // The genuine file, from the site's library.
    let file = dir.path().join("genuine.pkgx");
    let o = pkgdist()
        .args(["--json", "content", "prestage", "--library"])
        .arg(site.dir.join("site/library"))
        .arg(&pkg)
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let written: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(written["Content"], format!("{pkg}.1"));
    let o = pkgdist()
        .args(["dp", "prestage"])
        .arg(&file)
        .arg("--data")
        .arg(&dp.dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    site.wait_installed(&pkg, 1, 1);
    assert_serves(&dp, &pkg, &src);
    let done = site.last_success(&pkg, "dp1");
    assert_eq!(done["BytesTransferred"], 0, "nothing fetched: {done}");
    assert_eq!(held(&dp), 0, "recorded: the hold is dropped");
}

/// An OS tree with every kind of entry (`pkgdist_testkit::os_tree`) goes through a site and a
/// DP and comes back with `pkgdist fetch` as it was: `rsync -aHAXS --numeric-ids --dry-run
/// --itemize-changes` lists nothing, and the 1 GiB image stays sparse. The DP resolves an
/// absolute link from the package root, serves a hard link as its file and never a fifo. A
/// second fetch rewrites nothing; one into a folder where a link stands for a folder of the
/// package fails without following it.
#[test]
fn an_os_tree_reaches_a_client_as_it_was() {
    use pkgdist_testkit::os_tree;
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new().unwrap();
    let site = Site::start(&dir.path().join("site"));
    let dp = site.add_dp("dp1");
    let src = dir.path().join("os");
    os_tree::build(&src).unwrap();
    let pkg = create_package(&site, "Debian root", &src);
    site.cli(&["package", "distribute", &pkg, "dp1"]);
    site.wait_installed(&pkg, 1, 1);

    // Served: a chain through an absolute link, resolved inside the package; a hard link.
    let (st, body) = dp.download(&format!("{pkg}/chain"));
    assert_eq!((st, body.as_slice()), (200, &b"#!/bin/sh\necho tool\n"[..]));
    assert_eq!(dp.download(&format!("{pkg}/usr/bin/sh")).1, vec![7u8; 100_000]);
    assert_eq!(
        dp.download(&format!("{pkg}/dev/initctl")).0,
        404,
        "a fifo is never served"
    );

    let fetch = |dest: &Path| -> serde_json::Value {
        let out = pkgdist()
            .args(["--json", "fetch", &pkg, "--dp", &dp.url()])
            .arg(dest)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let dest = dir.path().join("restored");
    let first = fetch(&dest);
    if os_tree::root() {
        assert_eq!(
            first["skipped"],
            serde_json::json!({"owners": 0, "devices": 0, "xattrs": 0}),
            "{first}"
        );
    }
    let diff = os_tree::rsync_differences(&src, &dest).unwrap();
    assert!(diff.trim().is_empty(), "rsync would change:\n{diff}");
    let blocks = fs::metadata(dest.join("disk.img")).unwrap().blocks() * 512;
    assert!(blocks < 8 << 20, "disk.img takes {blocks} bytes on disk");
    let again = fetch(&dest);
    assert_eq!(again["files_written"], 0, "{again}");
    assert!(os_tree::rsync_differences(&src, &dest).unwrap().trim().is_empty());
    // A file of the right content that is also reachable from outside DEST (a hard link
    // planted there) is not kept: the outside name never gets the setuid mode or root's
    // owner; the package's file is written afresh.
    let outside_tool = dir.path().join("outside-tool");
    fs::copy(src.join("usr/bin/tool"), &outside_tool).unwrap();
    fs::set_permissions(&outside_tool, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    fs::remove_file(dest.join("usr/bin/tool")).unwrap();
    fs::hard_link(&outside_tool, dest.join("usr/bin/tool")).unwrap();
    let third = fetch(&dest);
    assert_eq!(third["files_written"], 1, "{third}");
    assert_eq!(
        fs::metadata(&outside_tool).unwrap().mode() & 0o7777,
        0o644,
        "the outside name is untouched"
    );
    assert_eq!(fs::metadata(dest.join("usr/bin/tool")).unwrap().mode() & 0o7777, 0o4755);
    assert_ne!(
        fs::metadata(&outside_tool).unwrap().ino(),
        fs::metadata(dest.join("usr/bin/tool")).unwrap().ino()
    );
    assert!(os_tree::rsync_differences(&src, &dest).unwrap().trim().is_empty());

    // A link planted where the package has a folder is never followed.
    let planted = dir.path().join("planted");
    let outside = dir.path().join("outside");
    fs::create_dir_all(&planted).unwrap();
    fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, planted.join("usr")).unwrap();
    let out = pkgdist()
        .args(["fetch", &pkg, "--dp", &dp.url()])
        .arg(&planted)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in the way"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written through the link"
    );
}
