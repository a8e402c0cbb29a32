//! A site and its distribution points as real processes on 127.0.0.1, driven through the CLI
//! and plain HTTP.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pkgdist_testkit::process::Daemon;
use serde_json::Value;

pub const TOKEN: &str = "e2e-bootstrap-token-0123456789";

pub fn pkgdist() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pkgdist"))
}

pub struct Site {
    pub dir: PathBuf,
    pub daemon: Daemon,
    /// More `site run` arguments (a parent and its token).
    pub extra: Vec<String>,
    /// Reached over https (its URL, the CLI, the DPs it starts), trusting its CA.
    pub https: bool,
    /// The CA file to trust, if not the one the site made (`[tls] ca-cert`).
    pub ca_file: Option<PathBuf>,
}

impl Site {
    /// A site whose failed transfers are retried after 1 s, whose jobs are polled every
    /// 100 ms and whose leases last 5 s, so tests do not wait on production timings.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, "")
    }

    /// The same, with more `[distribution]` lines.
    pub fn start_with(dir: &Path, distribution: &str) -> Self {
        Self::start_coded(dir, "PS1", distribution, &[])
    }

    /// A site with its own code, and more `site run` arguments (`--parent URL
    /// --enrollment-token T` for a child).
    pub fn start_coded(dir: &Path, code: &str, distribution: &str, extra: &[&str]) -> Self {
        let data = dir.join("site");
        fs::create_dir_all(&data).unwrap();
        if !data.join("site.toml").exists() {
            fs::write(
                data.join("site.toml"),
                format!(
                    "site-code = \"{code}\"\nsite-name = \"{code} site\"\n[distribution]\nretry-count = 100\nretry-delay-secs = 1\npoll-ms = 100\nlease-secs = 5\n{distribution}"
                ),
            )
            .unwrap();
        }
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let daemon = Self::spawn_on(dir, "127.0.0.1:0", &extra);
        Self {
            dir: dir.to_owned(),
            daemon,
            extra,
            https: false,
            ca_file: None,
        }
    }

    /// [`Site::start_coded`], reached over https from then on.
    pub fn start_https(dir: &Path, code: &str, extra: &[&str]) -> Self {
        let mut site = Self::start_coded(dir, code, "", extra);
        site.https = true;
        site
    }

    /// The site's CA certificate file.
    pub fn ca(&self) -> PathBuf {
        self.ca_file.clone().unwrap_or_else(|| self.dir.join("site/tls/ca.pem"))
    }

    /// An HTTP client that trusts this site's CA.
    pub fn client(&self) -> reqwest::Client {
        let pem = fs::read(self.ca()).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .build()
            .unwrap()
    }

    /// Registers a child site here and starts it in `dir`; returns the running child.
    pub fn add_child(&self, dir: &Path, code: &str) -> Site {
        let out = self.cli_json(&["site", "add", code, "--name", &format!("{code} site")]);
        let token = out["EnrollmentToken"].as_str().unwrap().to_owned();
        Site::start_coded(dir, code, "", &["--parent", &self.url(), "--enrollment-token", &token])
    }

    /// Kills the site with SIGKILL and starts it again on its data folder and its port, where
    /// its DPs know it. Running DPs keep working on their jobs meanwhile.
    pub fn kill_and_restart(&mut self) {
        let addr = self.url().trim_start_matches("http://").to_owned();
        self.daemon.kill();
        let _ = fs::remove_file(self.dir.join("site-ready.json"));
        self.daemon = Self::spawn_on(&self.dir, &addr, &self.extra);
    }

    fn spawn_on(dir: &Path, listen: &str, extra: &[String]) -> Daemon {
        let mut cmd = pkgdist();
        cmd.args(["site", "run", "--listen", listen])
            .args(extra)
            .arg("--data")
            .arg(dir.join("site"))
            .arg("--ready-file")
            .arg(dir.join("site-ready.json"))
            .env("PKGDIST_BOOTSTRAP_TOKEN", TOKEN);
        Daemon::start(cmd, &dir.join("site-ready.json"), &dir.join("site.log")).unwrap()
    }

    pub fn url(&self) -> String {
        if self.https {
            format!("https://{}", self.daemon.addr)
        } else {
            self.daemon.url()
        }
    }

    /// Runs the admin CLI against this site; panics with its output when it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = pkgdist();
        if self.https {
            cmd.arg("--ca").arg(self.ca());
        }
        let out = cmd
            .args(["--site", &self.url(), "--token", TOKEN])
            .args(args)
            .output()
            .unwrap();
        if !out.status.success() {
            let log = fs::read_to_string(self.dir.join("site.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "pkgdist {args:?} failed:\n{}{}\n--- the site's log, last lines ---\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.cli(&all)).unwrap()
    }

    /// GET on the WMI route, as JSON.
    pub fn get(&self, path: &str) -> Value {
        let url = format!("{}/AdminService/wmi/{path}", self.url());
        let (status, v) = if self.https {
            http_with(&self.client(), reqwest::Method::GET, &url, Some(TOKEN))
        } else {
            http(reqwest::Method::GET, &url, Some(TOKEN))
        };
        assert_eq!(status, 200, "{path}: {v}");
        // An instance comes as a collection of one, as on the real route.
        pkgdist_testkit::wmi::entity(path, v)
    }

    /// Registers a DP and starts it; returns the running DP.
    pub fn add_dp(&self, name: &str) -> Dp {
        let out = self.cli_json(&["dp", "add", "--name", name]);
        let token = out["enrollment_token"].as_str().unwrap().to_owned();
        Dp::start(self, name, Some(&token), &[])
    }

    /// The per-DP rows of a package (`SMS_PackageStatusDistPointsSummarizer`).
    pub fn dp_rows(&self, package: &str) -> Vec<Value> {
        let v = self.get(&format!(
            "SMS_PackageStatusDistPointsSummarizer?$filter=PackageID%20eq%20'{package}'"
        ));
        v["value"].as_array().unwrap().clone()
    }

    /// Status messages of a package, oldest first.
    pub fn statuses(&self, package: &str) -> Vec<Value> {
        let v = self.get(&format!(
            "SMS_DistributionDPStatus?$filter=PackageID%20eq%20'{package}'"
        ));
        let mut all = v["value"].as_array().unwrap().clone();
        all.sort_by_key(|m| m["ID"].as_i64());
        all
    }

    /// Waits until every DP row of `package` is INSTALLED at `version` (and there are `dps`).
    pub fn wait_installed(&self, package: &str, dps: usize, version: i64) {
        wait(
            Duration::from_secs(120),
            &format!("{package} INSTALLED at {version} on {dps} DPs"),
            || {
                let rows = self.dp_rows(package);
                let done = rows.len() == dps && rows.iter().all(|r| r["State"] == 0 && r["SourceVersion"] == version);
                done.then_some(()).ok_or_else(|| format!("{rows:#?}"))
            },
        );
    }

    /// The newest success message for `package` on the DP named `dp`.
    pub fn last_success(&self, package: &str, dp: &str) -> Value {
        self.statuses(package)
            .into_iter()
            .rev()
            .find(|m| m["Name"] == dp && m["MessageState"] == 1)
            .unwrap_or_else(|| panic!("no success message for {package} on {dp}"))
    }
}

pub struct Dp {
    pub name: String,
    pub dir: PathBuf,
    pub daemon: Daemon,
}

impl Dp {
    pub fn start(site: &Site, name: &str, token: Option<&str>, extra: &[&str]) -> Self {
        let dir = site.dir.join(name);
        let ready = site.dir.join(format!("{name}-ready.json"));
        let mut cmd = pkgdist();
        cmd.args(["dp", "run", "--listen", "127.0.0.1:0", "--site", &site.url()])
            .arg("--data")
            .arg(&dir)
            .arg("--ready-file")
            .arg(&ready)
            .args(extra);
        if let Some(t) = token {
            cmd.args(["--enrollment-token", t]);
        }
        let daemon = Daemon::start(cmd, &ready, &site.dir.join(format!("{name}.log"))).unwrap();
        Self {
            name: name.to_owned(),
            dir,
            daemon,
        }
    }

    /// Starts the DP again on its data folder (already enrolled).
    pub fn restart(&mut self, site: &Site, extra: &[&str]) {
        self.daemon.stop();
        let again = Dp::start(site, &self.name, None, extra);
        *self = again;
    }

    pub fn url(&self) -> String {
        self.daemon.url()
    }

    pub fn download(&self, path: &str) -> (u16, Vec<u8>) {
        get_bytes(&format!("{}/content/{path}", self.url()))
    }
}

pub fn http(method: reqwest::Method, url: &str, token: Option<&str>) -> (u16, Value) {
    http_with(&reqwest::Client::new(), method, url, token)
}

/// [`http`] with `client`.
pub fn http_with(client: &reqwest::Client, method: reqwest::Method, url: &str, token: Option<&str>) -> (u16, Value) {
    runtime().block_on(async {
        let mut r = client.request(method, url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    })
}

pub fn get_bytes(url: &str) -> (u16, Vec<u8>) {
    runtime().block_on(async {
        let resp = reqwest::get(url).await.unwrap();
        let status = resp.status().as_u16();
        // A body cut short (the DP stops on damage rather than send wrong bytes) reads as empty.
        (status, resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
    })
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `check` every 100 ms until it passes or `limit` runs out (then panics with its last
/// explanation).
pub fn wait<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(v) => return v,
            Err(why) if Instant::now() > deadline => panic!("timed out waiting for {what}:\n{why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Every regular file under `root`, as (relative path, bytes).
pub fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let rel = e.path().strip_prefix(root).unwrap().to_str().unwrap().to_owned();
                out.push((rel, fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Total size of the files under `root`.
pub fn tree_size(root: &Path) -> u64 {
    files(root).iter().map(|(_, b)| b.len() as u64).sum()
}

/// Checks that every file of `src` downloads byte for byte from `dp` under `package`.
pub fn assert_serves(dp: &Dp, package: &str, src: &Path) {
    let all = files(src);
    assert!(!all.is_empty());
    for (rel, bytes) in all {
        let (status, got) = dp.download(&format!("{package}/{rel}"));
        assert_eq!(status, 200, "{} {package}/{rel}", dp.name);
        assert!(got == bytes, "{}: {package}/{rel} differs from the source", dp.name);
    }
}

/// Asserts that no one but the owner can read or enter anything under `root` (files the test
/// itself wrote, named in `ours`, aside).
pub fn assert_private(root: &Path, ours: &[&str]) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(root), 0o700, "{}", root.display());
    let mut stack = vec![root.to_path_buf()];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if ours.iter().any(|o| p.file_name().is_some_and(|n| n == *o)) {
                continue;
            }
            let m = mode(&p);
            assert_eq!(m & 0o077, 0, "{} is {m:o}", p.display());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                files += 1;
            }
        }
    }
    assert!(files > 0, "nothing under {}", root.display());
}
