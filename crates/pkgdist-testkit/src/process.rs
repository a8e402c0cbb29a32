//! Real daemons for tests: spawn, wait for the `--ready-file`, stop on drop.
//!
//! Every daemon binds `127.0.0.1:0` and writes `{"addr": …, "pid": …}` to its ready-file once it
//! listens, so tests never race for ports. Output goes to a log file whose tail is printed if
//! the daemon fails to start.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

#[derive(Debug)]
pub struct Daemon {
    child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` (which must be given `--ready-file ready`) and waits up to 60 s for it.
    pub fn start(cmd: Command, ready: &Path, log: &Path) -> Result<Self> {
        Self::start_with(cmd, ready, log, "addr")
    }

    /// [`Daemon::start`] for a ready-file whose address is under `key` (`pkgdist up` writes
    /// `"site"`).
    pub fn start_with(mut cmd: Command, ready: &Path, log: &Path, key: &str) -> Result<Self> {
        let _ = std::fs::remove_file(ready);
        let out = std::fs::File::create(log)?;
        let child = cmd
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .context("spawning the daemon")?;
        let mut d = Daemon {
            child,
            addr: String::new(),
            log: log.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(ready)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(addr) = v[key].as_str()
            {
                d.addr = addr.to_owned();
                return Ok(d);
            }
            if let Some(status) = d.child.try_wait()? {
                bail!("the daemon exited ({status}) before it was ready:\n{}", d.log_tail());
            }
            if Instant::now() > deadline {
                bail!("the daemon was not ready after 60 s:\n{}", d.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL if it has not stopped within 5 s.
    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
