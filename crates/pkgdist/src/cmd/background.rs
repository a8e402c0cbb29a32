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
use rustix::fs::FlockOperation;
use rustix::process::{Pid, Signal};

use crate::output;

const PID_FILE: &str = "up.pid";
const LOG_FILE: &str = "up.log";
/// A log larger than this when `--detach` starts is moved to `up.log.1` (replacing it).
const LOG_KEEP_BYTES: u64 = 16 << 20;
/// How long `--detach` waits for everything to listen (a first start creates the database).
const START_WITHIN: Duration = Duration::from_secs(120);
/// How long `down` waits for `up` to stop after asking it to.
const STOP_WITHIN: Duration = Duration::from_secs(60);

/// The process ID of the `up` running on `data`: the one holding the lock on its pid file.
/// (A lock, not a liveness test of the number written: after a crash that number may belong
/// to another process by now, and a lock dies with its holder.)
fn running(data: &Path) -> Option<Pid> {
    use std::io::Read;
    let mut file = std::fs::File::open(data.join(PID_FILE)).ok()?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => None, // nobody holds it; ours goes with `file`
        Err(_) => {
            // The number from the file whose lock was tested, not the path again.
            let mut text = String::new();
            file.read_to_string(&mut text).ok()?;
            Pid::from_raw(text.trim().parse().ok()?)
        }
    }
}

/// `DATA/up.pid`, locked, for as long as this `up` runs.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    /// Holds the lock.
    _file: std::fs::File,
}

impl PidFile {
    /// Claims `data` for this process; refused while another `up` runs on it.
    pub fn claim(data: &Path) -> Result<Self> {
        let path = data.join(PID_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            let other = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "pkgdist up is already running on {} (process {}): stop it with `pkgdist down{}`",
                data.display(),
                other.trim(),
                data_arg(data)
            );
        }
        file.set_len(0)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
        file.sync_all()?;
        Ok(Self { path, _file: file })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Still locked by us here: no other `up` can have claimed the file meanwhile.
        let _ = std::fs::remove_file(&self.path);
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
            "pkgdist up is already running on {} (process {}): stop it with `pkgdist down{}`",
            d.data.display(),
            pid.as_raw_nonzero(),
            data_arg(d.data)
        );
    }
    let ready = d
        .ready_file
        .map_or_else(|| d.data.join("up-ready.json"), Path::to_path_buf);
    let _ = std::fs::remove_file(&ready);
    let log_path = d.data.join(LOG_FILE);
    // One earlier log is kept beside it once it grows large, so it never grows without bound.
    if std::fs::metadata(&log_path).is_ok_and(|m| m.len() > LOG_KEEP_BYTES) {
        let old = d.data.join(format!("{LOG_FILE}.1"));
        std::fs::rename(&log_path, &old).with_context(|| format!("moving {} aside", log_path.display()))?;
    }
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
            // Not left running behind an error: stopped, and the log says how far it got.
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "pkgdist up was not ready after {} s and was stopped; see {}",
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

/// `pkgdist down`: asks the `up` running on `data` to stop (SIGTERM) and waits until it has
/// let go of its pid file's lock.
pub fn down(data: &Path) -> Result<()> {
    let Some(pid) = running(data) else {
        output::line(format!("pkgdist up is not running on {}", data.display()))?;
        return Ok(());
    };
    rustix::process::kill_process(pid, Signal::TERM)
        .with_context(|| format!("cannot stop process {}", pid.as_raw_nonzero()))?;
    let deadline = Instant::now() + STOP_WITHIN;
    while running(data).is_some() {
        if Instant::now() > deadline {
            bail!(
                "pkgdist up (process {}) has not stopped after {} s",
                pid.as_raw_nonzero(),
                STOP_WITHIN.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    output::line(format!("stopped pkgdist up on {}", data.display()))
}
