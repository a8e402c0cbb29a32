//! A headless Chromium driven over W3C WebDriver, for the console's tests: Debian's `chromium`
//! and `chromium-driver` (installed by `scripts/test-deps`), spoken to in plain HTTP/1.1 on
//! loopback (WebDriver is JSON over HTTP; a dozen commands need no client crate).
//!
//! Prompts (`confirm()`) are accepted as they open, as a user clicking OK would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use serde_json::{Value, json};

/// The key W3C WebDriver names an element reference with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A Chromium session; the driver and the browser end with it.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

/// Where the browser and its driver are: `PKGDIST_CHROMIUM` / `PKGDIST_CHROMEDRIVER`, else
/// Debian's paths.
fn binaries() -> (String, String) {
    let chromium = std::env::var("PKGDIST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let driver = std::env::var("PKGDIST_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    (chromium, driver)
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium with a window of
    /// `width` x `height`.
    pub fn start(width: u32, height: u32) -> Result<Self> {
        let (chromium, driver) = binaries();
        for b in [&chromium, &driver] {
            if !Path::new(b).exists() {
                bail!("{b} is missing: run scripts/test-deps (it installs chromium and chromium-driver)");
            }
        }
        let mut child = Command::new(&driver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {driver}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout from chromedriver"))?;
        // "ChromeDriver was started successfully on port 41234." (an earlier line says "on port
        // 0", the port asked for). The rest of its output is drained, so it never blocks on
        // (or dies of) a full or closed pipe.
        let mut lines = BufReader::new(stdout).lines();
        let mut port = None;
        for line in lines.by_ref() {
            let line = line?;
            if line.contains("started successfully")
                && let Some(rest) = line.split("on port ").nth(1)
            {
                port = rest.trim_end_matches('.').trim().parse::<u16>().ok();
                break;
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        let port = port.ok_or_else(|| anyhow!("chromedriver did not say its port"))?;
        let profile = tempfile::TempDir::new()?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "unhandledPromptBehavior": "accept",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let mut b = Self {
            driver: child,
            port,
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let v = loop {
            match b.call("POST", "/session", &caps) {
                Ok(v) => break v,
                Err(e) if Instant::now() > deadline => return Err(e.context("creating a WebDriver session")),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        b.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no sessionId in {v}"))?
            .to_owned();
        Ok(b)
    }

    /// One WebDriver command: its `value`, or the driver's error.
    fn call(&self, method: &str, path: &str, body: &Value) -> Result<Value> {
        let body = if method == "GET" || method == "DELETE" {
            String::new()
        } else {
            body.to_string()
        };
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        // chromedriver keeps the connection open whatever the request says: read the head,
        // then the body by its length (or its chunks).
        let mut raw = Vec::new();
        let mut buf = [0u8; 64 << 10];
        let split = loop {
            if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let n = s.read(&mut buf)?;
            if n == 0 {
                bail!("WebDriver closed the connection before answering");
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let status: u16 = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = head.contains("transfer-encoding: chunked");
        let mut rest = raw[split + 4..].to_vec();
        loop {
            let done = match length {
                Some(n) => rest.len() >= n,
                None if chunked => rest.windows(5).any(|w| w == b"0\r\n\r\n"),
                None => false,
            };
            if done {
                break;
            }
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&buf[..n]);
        }
        let payload = if chunked { dechunk(&rest) } else { rest };
        let payload = String::from_utf8_lossy(&payload);
        let v: Value = serde_json::from_str(&payload).with_context(|| format!("WebDriver answered {payload:?}"))?;
        if status != 200 {
            bail!("WebDriver {method} {path}: HTTP {status}: {}", v["value"]);
        }
        Ok(v.get("value").cloned().unwrap_or(Value::Null))
    }

    fn session_call(&self, method: &str, path: &str, body: &Value) -> Result<Value> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&self, url: &str) -> Result<()> {
        self.session_call("POST", "/url", &json!({ "url": url })).map(drop)
    }

    /// The elements matching a CSS selector now.
    pub fn find_all(&self, css: &str) -> Result<Vec<String>> {
        let v = self.session_call("POST", "/elements", &json!({"using": "css selector", "value": css}))?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits up to `within` for an element matching `css`.
    pub fn wait_for(&self, css: &str, within: Duration) -> Result<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.find_all(css)?.into_iter().next() {
                return Ok(e);
            }
            if Instant::now() > deadline {
                bail!(
                    "no element {css:?} after {within:?}; the page shows:\n{}",
                    self.body_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to `within` for `check` to answer `Some`, calling it every 100 ms.
    pub fn wait_until<T>(
        &self,
        within: Duration,
        what: &str,
        mut check: impl FnMut(&Self) -> Result<Option<T>>,
    ) -> Result<T> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = check(self)? {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("{what}: not so after {within:?}; the page shows:\n{}", self.body_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn click(&self, css: &str) -> Result<()> {
        let e = self.wait_for(css, Duration::from_secs(10))?;
        self.session_call("POST", &format!("/element/{e}/click"), &json!({}))
            .map(drop)
    }

    pub fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let e = self.wait_for(css, Duration::from_secs(10))?;
        self.session_call("POST", &format!("/element/{e}/value"), &json!({ "text": text }))
            .map(drop)
    }

    /// An attribute of the first element matching `css`, if both exist.
    pub fn attr(&self, css: &str, name: &str) -> Result<Option<String>> {
        let Some(e) = self.find_all(css)?.into_iter().next() else {
            return Ok(None);
        };
        let v = self.session_call("GET", &format!("/element/{e}/attribute/{name}"), &Value::Null)?;
        Ok(v.as_str().map(str::to_owned))
    }

    /// Whether the first element matching `css` exists and is shown.
    pub fn displayed(&self, css: &str) -> Result<bool> {
        let Some(e) = self.find_all(css)?.into_iter().next() else {
            return Ok(false);
        };
        let v = self.session_call("GET", &format!("/element/{e}/displayed"), &Value::Null)?;
        Ok(v.as_bool().unwrap_or(false))
    }

    /// The rendered text of the first element matching `css`.
    pub fn text(&self, css: &str) -> Result<String> {
        let e = self.wait_for(css, Duration::from_secs(10))?;
        let v = self.session_call("GET", &format!("/element/{e}/text"), &Value::Null)?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub fn exec(&self, script: &str, args: Value) -> Result<Value> {
        self.session_call("POST", "/execute/sync", &json!({ "script": script, "args": args }))
    }

    /// Runs `script` asynchronously: it ends by calling its last argument with the result.
    pub fn exec_async(&self, script: &str, args: Value) -> Result<Value> {
        self.session_call("POST", "/execute/async", &json!({ "script": script, "args": args }))
    }

    /// What the page shows, for failure messages.
    pub fn body_text(&self) -> String {
        self.exec("return document.body ? document.body.innerText : ''", json!([]))
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// A PNG of the window, written to `path`.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let v = self.session_call("GET", "/screenshot", &Value::Null)?;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.session_call("DELETE", "", &Value::Null);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The body of a chunked HTTP answer.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..eol]);
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let after = &rest[eol + 2..];
        if n == 0 || after.len() < n {
            break;
        }
        out.extend_from_slice(&after[..n]);
        rest = after[n..].strip_prefix(b"\r\n").unwrap_or(&after[n..]);
    }
    out
}
