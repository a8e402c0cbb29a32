//! The site server as a real process, driven over plain HTTP as a script would, and through
//! the admin CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::Command;

use pkgdist_testkit::generate::Rng;
use pkgdist_testkit::process::Daemon;
use serde_json::{Value, json};
use tempfile::TempDir;

const TOKEN: &str = "e2e-bootstrap-token-0123456789";

fn pkgdist() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pkgdist"))
}

/// A site whose packages may take sources from anywhere under `dir` (its site.toml written
/// before the first start says so).
fn start_site(dir: &Path) -> Daemon {
    let data = dir.join("site");
    if !data.join("site.toml").exists() {
        fs::create_dir_all(&data).unwrap();
        fs::write(
            data.join("site.toml"),
            format!(
                "site-code = \"PS1\"\nallowed-source-roots = [{:?}]\n",
                dir.display().to_string()
            ),
        )
        .unwrap();
    }
    let mut cmd = pkgdist();
    cmd.args(["site", "run", "--site-code", "PS1", "--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(dir.join("site"))
        .arg("--ready-file")
        .arg(dir.join("ready.json"))
        .env("PKGDIST_BOOTSTRAP_TOKEN", TOKEN);
    Daemon::start(cmd, &dir.join("ready.json"), &dir.join("site.log")).unwrap()
}

fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut r = reqwest::Client::new().request(method, url).bearer_auth(TOKEN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    })
}

/// Creates an OS install package over plain HTTP, refreshes it twice, and reads SourceVersion
/// 1, 2, 3; the library holds all three versions with unchanged files stored once.
#[test]
fn os_install_package_refreshed_twice_over_http() {
    let dir = TempDir::new().unwrap();
    let src = dir.path().join("win11");
    fs::create_dir_all(src.join("sources")).unwrap();
    fs::write(src.join("sources/install.wim"), Rng::new(1).bytes(4 << 20)).unwrap();
    fs::write(src.join("setup.exe"), Rng::new(2).bytes(200_000)).unwrap();
    fs::write(src.join("autounattend.xml"), b"<unattend/>").unwrap();
    let site = start_site(dir.path());
    let wmi = |p: &str| format!("{}/AdminService/wmi/{p}", site.url());

    let (st, created) = call(
        reqwest::Method::POST,
        wmi("SMS_OperatingSystemInstallPackage"),
        Some(json!({"Name": "Windows 11 24H2", "PkgSourcePath": src.to_str().unwrap()})),
    );
    assert_eq!(st, 201, "{created}");
    let id = created["PackageID"].as_str().unwrap().to_owned();
    assert_eq!(id, "PS100001");
    let get = || {
        call(
            reqwest::Method::GET,
            wmi(&format!("SMS_OperatingSystemInstallPackage('{id}')")),
            None,
        )
        .1["value"][0]
            .clone()
    };
    assert_eq!(get()["SourceVersion"], 1);
    assert_eq!(get()["PackageType"], 259);

    for (version, edit) in [(2, b"<unattend v=2/>".as_slice()), (3, b"<unattend v=3/>".as_slice())] {
        fs::write(src.join("autounattend.xml"), edit).unwrap();
        let (st, r) = call(
            reqwest::Method::POST,
            wmi(&format!(
                "SMS_OperatingSystemInstallPackage('{id}')/AdminService.RefreshPkgSource"
            )),
            None,
        );
        assert_eq!((st, r["ReturnValue"].clone()), (201, json!(0)), "{r}");
        assert_eq!(
            get()["SourceVersion"],
            version,
            "the new version is visible as soon as the call returns"
        );
    }

    // The library: three versions, and the unchanged files' chunks stored once.
    let lib = dir.path().join("site/library");
    let out = pkgdist()
        .args(["content", "list", "--json", "--library"])
        .arg(&lib)
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["content_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["PS100001.1", "PS100001.2", "PS100001.3"]);
    let out = pkgdist()
        .args(["content", "verify", "--json", "--library"])
        .arg(&lib)
        .output()
        .unwrap();
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let distinct = report["chunks_checked"].as_u64().unwrap();
    let chunk_files = walk_count(&lib.join("chunks"));
    assert_eq!(chunk_files, distinct, "every stored chunk is used, none twice");
    // install.wim (4 MiB) and setup.exe once, plus one small chunk per version of the xml.
    let big = fs::read(src.join("sources/install.wim")).unwrap().len() + 200_000;
    assert!(
        report["bytes_checked"].as_u64().unwrap() < big as u64 + 1000,
        "{report}"
    );
}

fn walk_count(dir: &Path) -> u64 {
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        n += if p.is_dir() { walk_count(&p) } else { 1 };
    }
    n
}

fn cli(site: &Daemon, token: &str, args: &[&str]) -> (bool, Value, String) {
    let out = pkgdist()
        .args(["--site", &site.url(), "--token", token, "--json"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), v, stderr)
}

/// The admin CLI against a real site: packages, DPs, groups, status, tokens.
#[test]
fn admin_cli_end_to_end() {
    let dir = TempDir::new().unwrap();
    let src = dir.path().join("app");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("app.msi"), Rng::new(3).bytes(100_000)).unwrap();
    let site = start_site(dir.path());

    let (ok, p, err) = cli(
        &site,
        TOKEN,
        &[
            "package",
            "create",
            "--name",
            "App",
            "--class",
            "driver",
            "--source",
            src.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        (
            p["PackageID"].clone(),
            p["PackageType"].clone(),
            p["SourceVersion"].clone()
        ),
        (json!("PS100001"), json!(3), json!(1))
    );

    let (ok, d, err) = cli(&site, TOKEN, &["dp", "add", "--name", "dp1"]);
    assert!(ok, "{err}");
    assert!(d["enrollment_token"].as_str().unwrap().len() > 32);
    assert!(cli(&site, TOKEN, &["dp", "add", "--name", "dp2"]).0);
    assert!(cli(&site, TOKEN, &["group", "create", "Branch"]).0);
    assert!(cli(&site, TOKEN, &["group", "add-dp", "Branch", "dp1", "dp2"]).0);
    assert!(cli(&site, TOKEN, &["group", "add-package", "Branch", "PS100001"]).0);
    let (ok, st, err) = cli(&site, TOKEN, &["status", "PS100001"]);
    assert!(ok, "{err}");
    let rows = st["dps"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["State"] == 1 && r["TargetVersion"] == 1));

    let (ok, r, err) = cli(&site, TOKEN, &["package", "refresh", "PS100001"]);
    assert!(ok, "{err}");
    assert_eq!(r["SourceVersion"], 2);
    assert!(cli(&site, TOKEN, &["group", "redistribute", "Branch", "PS100001"]).0);
    let (ok, _, err) = cli(&site, TOKEN, &["group", "redistribute", "Branch", "PS1FFFFF"]);
    assert!(!ok);
    assert!(err.contains("no package PS1FFFFF"), "{err}");

    // Human-readable status too.
    let out = pkgdist()
        .args(["--site", &site.url(), "--token", TOKEN, "status", "PS100001"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("dp1") && text.contains("INSTALL_PENDING"), "{text}");

    // A read-only token reads but cannot change anything.
    let (ok, t, err) = cli(
        &site,
        TOKEN,
        &["token", "create", "--name", "report", "--role", "read-only"],
    );
    assert!(ok, "{err}");
    let ro = t["Token"].as_str().unwrap().to_owned();
    assert!(cli(&site, &ro, &["package", "list"]).0);
    let (ok, _, err) = cli(&site, &ro, &["group", "create", "Nope"]);
    assert!(!ok);
    assert!(err.contains("read-only"), "{err}");
    let (ok, _, err) = cli(&site, "wrong-token", &["package", "list"]);
    assert!(!ok && err.contains("unknown or revoked"), "{err}");
}

/// First start writes a commented site.toml and a 0600 bootstrap token; a restart keeps both
/// and refuses a different site code.
#[test]
fn first_start_and_restart() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("site");
    let ready = dir.path().join("ready.json");
    let start = |code: &str| {
        let mut cmd = pkgdist();
        cmd.args(["site", "run", "--site-code", code, "--listen", "127.0.0.1:0"])
            .arg("--data")
            .arg(&data)
            .arg("--ready-file")
            .arg(&ready);
        Daemon::start(cmd, &ready, &dir.path().join("site.log"))
    };
    let mut site = start("PS1").unwrap();
    let toml = fs::read_to_string(data.join("site.toml")).unwrap();
    assert!(toml.contains("site-code = \"PS1\"") && toml.contains("# "), "{toml}");
    let token = fs::read_to_string(data.join("bootstrap-token"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(cli(&site, &token, &["package", "create", "--name", "x"]).0);
    // A new site takes sources from no folder until its site.toml lists some: a package with
    // a source is refused, saying what to set, and nothing is recorded.
    assert!(toml.contains("allowed-source-roots = []"), "{toml}");
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"a").unwrap();
    let (ok, _, err) = cli(
        &site,
        &token,
        &["package", "create", "--name", "y", "--source", src.to_str().unwrap()],
    );
    assert!(
        !ok && err.contains("SourceNotAllowed") && err.contains("allowed-source-roots"),
        "{err}"
    );
    site.stop();
    let site = start("PS1").unwrap();
    let (ok, list, _) = cli(&site, &token, &["package", "list"]);
    assert!(ok);
    assert_eq!(list.as_array().unwrap().len(), 1, "state survives a restart");
    drop(site);
    let err = start("CM2").unwrap_err().to_string();
    assert!(err.contains("site code cannot change"), "{err}");
}

/// Names come from the site, where anyone allowed to name a package chooses them: the CLI
/// prints their control characters as visible escapes, never raw to the terminal, and
/// `--json` keeps them exact (escaped by JSON).
#[test]
fn the_cli_prints_no_raw_control_characters() {
    let dir = TempDir::new().unwrap();
    let site = start_site(dir.path());
    let name = "\u{1b}[2J\u{1b}[31mEvil\u{1b}[0m\u{202e}gpj.exe";
    let (ok, created, err) = cli(&site, TOKEN, &["package", "create", "--name", name]);
    assert!(ok, "{err}");
    assert_eq!(created["Name"], name, "JSON keeps the name exact");
    let out = pkgdist()
        .args(["--site", &site.url(), "--token", TOKEN, "package", "list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\u{1b}') && !text.contains('\u{202e}'), "{text:?}");
    assert!(text.contains("\\x1b[31mEvil") && text.contains("\\u{202e}"), "{text}");
}

/// The CLI as administrators expect it (issue 20): lists with headers and whole names, a
/// quiet end when the reader of its output goes away, tokens revoked by name, a site URL
/// without `http://`, and a site that is not running said in one line, with what to do.
#[test]
fn the_cli_reads_as_administrators_expect() {
    let dir = TempDir::new().unwrap();
    let site = start_site(dir.path());
    let name = "A package name well over sixteen characters long";
    assert!(cli(&site, TOKEN, &["package", "create", "--name", name]).0);
    let text = |args: &[&str]| {
        let out = pkgdist()
            .args(["--site", &site.url(), "--token", TOKEN])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let list = text(&["package", "list"]);
    let mut lines = list.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("PACKAGE") && header.ends_with("NAME"), "{list}");
    assert!(lines.next().unwrap().ends_with(name), "names are whole: {list}");

    // The reader is gone before anything is written: no "Broken pipe", success.
    let mut child = pkgdist()
        .args(["--site", &site.url(), "--token", TOKEN, "package", "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));

    // package set changes what it is given, and says when nothing was.
    let (ok, v, err) = cli(
        &site,
        TOKEN,
        &["package", "set", "PS100001", "--name", "Renamed", "--priority", "1"],
    );
    assert!(ok, "{err}");
    assert_eq!(
        (v["Name"].as_str(), v["Priority"].as_i64()),
        (Some("Renamed"), Some(1)),
        "{v}"
    );
    let (ok, _, err) = cli(&site, TOKEN, &["package", "set", "PS100001"]);
    assert!(!ok && err.contains("nothing to change"), "{err}");

    // The status-message history, filtered by the site.
    assert!(cli(&site, TOKEN, &["dp", "add", "--name", "dp1"]).0);
    assert!(cli(&site, TOKEN, &["package", "distribute", "PS100001", "dp1"]).0);
    let history = text(&["status", "--messages", "PS100001", "--dp", "dp1"]);
    let mut lines = history.lines();
    assert!(lines.next().unwrap().starts_with("TIME"), "{history}");
    assert!(lines.next().unwrap().contains("2357"), "{history}");
    let (ok, v, _) = cli(&site, TOKEN, &["status", "--messages", "--dp", "dp1", "--last", "1"]);
    assert!(ok && v.as_array().unwrap().len() == 1, "{v}");
    assert!(text(&["status", "--messages", "--errors"]).contains("no status message matches"));
    assert!(text(&["status", "--messages", "--since", "2099-01-01T00:00:00Z"]).contains("no status message matches"));
    let (ok, _, err) = cli(&site, TOKEN, &["status", "--messages", "--since", "yesterday"]);
    assert!(!ok && err.contains("--since"), "{err}");

    // Tokens by name: revoked once, then there is no live one of that name.
    assert!(cli(&site, TOKEN, &["token", "create", "--name", "ci-bot"]).0);
    let (ok, v, err) = cli(&site, TOKEN, &["token", "revoke", "ci-bot"]);
    assert!(ok, "{err}");
    assert!(v["TokenID"].as_str().is_some_and(|id| !id.is_empty()), "{v}");
    let (ok, _, err) = cli(&site, TOKEN, &["token", "revoke", "ci-bot"]);
    assert!(!ok && err.contains("no live token"), "{err}");
    assert!(text(&["token", "list"]).lines().next().unwrap().starts_with("NAME"));

    // A URL without a scheme is taken as http:// on this machine (https:// elsewhere).
    let bare = site.url().trim_start_matches("http://").to_owned();
    let out = pkgdist()
        .args(["--site", &bare, "--token", TOKEN, "package", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Nothing listening: one line naming the URL and what to start.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = pkgdist()
        .args(["--site", &format!("http://{free}"), "--token", TOKEN, "package", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&free.to_string()) && err.contains("is it running?") && err.contains("pkgdist up"),
        "{err}"
    );
}

/// `package create` of a large folder shows how far the site has read it (issue 20): the site
/// lists the snapshot while it runs, with the total and what is done, for the CLI's progress
/// bar; and forgets it once it ends.
#[test]
fn a_running_snapshot_reports_its_progress() {
    let dir = TempDir::new().unwrap();
    let site = start_site(dir.path());
    let src = dir.path().join("big");
    let size: u64 = 384 << 20;
    pkgdist_testkit::generate::write_image(&src.join("install.wim"), 9, size).unwrap();
    let url = site.url();
    let create = std::thread::spawn({
        let src = src.clone();
        move || {
            pkgdist()
                .args(["--site", &url, "--token", TOKEN, "package", "create", "--name", "Big"])
                .arg("--source")
                .arg(&src)
                .output()
                .unwrap()
        }
    });
    let mut seen = None;
    while !create.is_finished() {
        let (status, v) = call(
            reqwest::Method::GET,
            format!("{}/console/api/snapshots", site.url()),
            None,
        );
        assert_eq!(status, 200, "{v}");
        if let Some(s) = v["value"]
            .as_array()
            .and_then(|a| a.first())
            .filter(|s| s["TotalBytes"] == size)
        {
            seen = Some(s.clone());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = create.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = seen.expect("the snapshot was never listed while it ran");
    assert_eq!(s["PackageID"], "PS100001", "{s}");
    assert!(s["DoneBytes"].as_u64().unwrap() <= size, "{s}");
    assert_eq!(s["Files"], 1, "{s}");
    let (_, v) = call(
        reqwest::Method::GET,
        format!("{}/console/api/snapshots", site.url()),
        None,
    );
    assert_eq!(v["value"], json!([]), "a finished snapshot is forgotten");
}
