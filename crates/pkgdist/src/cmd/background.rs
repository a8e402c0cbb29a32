//! `pkgdist up --detach` and `pkgdist down`: `up` in the background, as a newcomer pasting the
//! quick start needs it (the next line must find the site listening, and the shell must stay
//! usable), and its stop.
//!
//! A running `up` keeps its process ID in `DATA/up.pid` (a [`PidFile`], removed when it ends
//! cleanly); that is how `down` finds it, and how a second `up` on the same folder is refused
//! instead of fighting the first for its database and ports. `--detach` starts `up` again as
//! a child in its own process group (a closed terminal does not stop it), with its output in
//! `DATA/up.log`, and returns once the child's ready-file says everything listens, or with
//! the log's end if the child stopped first.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::{Pid, Signal};

use crate::output;

const PID_FILE: &str = "up.pid";
const LOG_FILE: &str = "up.log";
/// How long `--detach` waits for everything to listen (a first start creates the database).
const START_WITHIN: Duration = Duration::from_secs(120);
/// How long `down` waits for `up` to stop after asking it to.
const STOP_WITHIN: Duration = Duration::from_secs(60);

/// The process ID a running `up` on `data` wrote, if that process is still alive.
fn running(data: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(data.join(PID_FILE)).ok()?;
    let pid = Pid::from_raw(text.trim().parse().ok()?)?;
    alive(pid).then_some(pid)
}

fn alive(pid: Pid) -> bool {
    rustix::process::test_kill_process(pid).is_ok()
}

/// `DATA/up.pid` for as long as this `up` runs.
#[derive(Debug)]
pub struct PidFile(PathBuf);

impl PidFile {
    /// Claims `data` for this process; refused while another `up` runs on it.
    pub fn claim(data: &Path) -> Result<Self> {
        let me = |p: &Pid| u32::try_from(p.as_raw_nonzero().get()).ok() == Some(std::process::id());
        if let Some(pid) = running(data).filter(|p| !me(p)) {
            bail!(
                "pkgdist up is already running on {} (process {pid:?}): stop it with `pkgdist down --data {}`",
                data.display(),
                data.display()
            );
        }
        let path = data.join(PID_FILE);
        pkgdist_node::util::write_file(&path, format!("{}\n", std::process::id()).as_bytes(), true)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `up`'s ready-file.
#[derive(Debug, serde::Deserialize)]
struct Ready {
    site: String,
    site_code: String,
    dps: Vec<String>,
    token_file: String,
}

/// What `--detach` passes on to the `up` it starts.
#[derive(Debug)]
pub struct Detach<'a> {
    pub data: &'a Path,
    /// `up`'s arguments, without `--detach` and `--ready-file`.
    pub args: Vec<String>,
    /// Where the caller wants the ready-file, if anywhere.
    pub ready_file: Option<&'a Path>,
}

/// Starts `up` in the background and returns once everything listens: prints what `up`
/// printed (the URLs, the token file, the console) and how to stop it.
pub fn detach(d: Detach<'_>) -> Result<()> {
    pkgdist_node::util::private_dir(d.data).with_context(|| format!("creating {}", d.data.display()))?;
    if let Some(pid) = running(d.data) {
        bail!(
            "pkgdist up is already running on {} (process {pid:?}): stop it with `pkgdist down --data {}`",
            d.data.display(),
            d.data.display()
        );
    }
    let ready = d
        .ready_file
        .map_or_else(|| d.data.join("up-ready.json"), Path::to_path_buf);
    let _ = std::fs::remove_file(&ready);
    let log_path = d.data.join(LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the pkgdist binary")?;
    let mut child = Command::new(exe)
        .arg("up")
        .args(&d.args)
        .arg("--ready-file")
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: Ctrl-C in this terminal, or closing it, does not stop it.
        .process_group(0)
        .spawn()
        .context("cannot start pkgdist up in the background")?;
    let deadline = Instant::now() + START_WITHIN;
    loop {
        if std::fs::read(&ready).is_ok_and(|b| serde_json::from_slice::<Ready>(&b).is_ok()) {
            break;
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "pkgdist up stopped before it was ready ({status}); the end of {}:\n{}",
                log_path.display(),
                tail(&log_path)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "pkgdist up (process {}) was not ready after {} s; see {}",
                child.id(),
                START_WITHIN.as_secs(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // What `up` printed at start, from its ready-file: the URLs, the token file, the console.
    let r: Ready = serde_json::from_slice(&std::fs::read(&ready)?).context("reading up's ready-file")?;
    crate::cmd::node::banner(
        &r.site_code,
        &format!("http://{}", r.site),
        &r.dps,
        Path::new(&r.token_file),
    )?;
    output::line(format!(
        "running in the background (process {}); log: {}; stop it with `pkgdist down{}`",
        child.id(),
        log_path.display(),
        data_arg(d.data)
    ))?;
    Ok(())
}

/// ` --data DIR` unless `DIR` is the default.
fn data_arg(data: &Path) -> String {
    if data == Path::new("pkgdist-data") {
        String::new()
    } else {
        format!(" --data {}", data.display())
    }
}

/// The last lines of a log, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `pkgdist down`: asks the `up` running on `data` to stop (SIGTERM) and waits until it has.
pub fn down(data: &Path) -> Result<()> {
    let Some(pid) = running(data) else {
        let _ = std::fs::remove_file(data.join(PID_FILE));
        output::line(format!("pkgdist up is not running on {}", data.display()))?;
        return Ok(());
    };
    rustix::process::kill_process(pid, Signal::TERM).with_context(|| format!("cannot stop process {pid:?}"))?;
    let deadline = Instant::now() + STOP_WITHIN;
    while alive(pid) {
        if Instant::now() > deadline {
            bail!(
                "pkgdist up (process {pid:?}) has not stopped after {} s",
                STOP_WITHIN.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "stopped pkgdist up on {}", data.display())?;
    Ok(())
}
