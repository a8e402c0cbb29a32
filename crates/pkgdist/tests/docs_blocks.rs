//! The README's and the quick start's shell blocks, run as a newcomer pastes them (issue 20):
//! each file's blocks in order, in one shell, in a folder laid out as a fresh clone after
//! `cargo build --release` (its `docs/`, and `target/release/pkgdist` being the binary under
//! test), against the fixed ports the documents name (8470-8472).
//!
//! Two things cannot run as written inside the test suite, and are stood in for: `cargo`
//! (a stand-in runs `cargo run --release -- ARGS` as `target/release/pkgdist ARGS` and takes
//! `cargo build --release` as done), and the README's own test command (the suite cannot run
//! itself). The README's first block runs `up` in the foreground, as its reader does in one
//! shell while pasting the next block into another: the test starts it in the background.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// The body of every ```sh block of a Markdown file, in order.
fn blocks(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => out.extend(current.take()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A folder laid out as a clone after `cargo build --release`, with the `cargo` stand-in.
fn clone_like() -> TempDir {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("target/release")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pkgdist"), root.join("target/release/pkgdist")).unwrap();
    copy_dir(&repo().join("docs"), &root.join("docs"));
    let shim = root.join(".shim");
    fs::create_dir_all(&shim).unwrap();
    let cargo = shim.join("cargo");
    fs::write(
        &cargo,
        "#!/bin/sh\n# cargo as the documents call it, served by the binary under test.\n\
         case \"$1\" in\n\
           build) exit 0 ;;\n\
           run) while [ \"$1\" != \"--\" ]; do shift; done; shift; exec \"$PWD/target/release/pkgdist\" \"$@\" ;;\n\
           *) echo \"cargo $* is not stood in for\" >&2; exit 1 ;;\n\
         esac\n",
    )
    .unwrap();
    fs::set_permissions(&cargo, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A shell in `root` with the stand-in first on PATH and nothing of the test's pkgdist
/// environment.
fn shell(root: &Path) -> Command {
    let mut cmd = Command::new("bash");
    let path = format!(
        "{}:{}",
        root.join(".shim").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.current_dir(root)
        .env("PATH", path)
        .env_remove("PKGDIST_SITE")
        .env_remove("PKGDIST_TOKEN")
        .env_remove("PKGDIST_TOKEN_FILE")
        .env_remove("PKGDIST_BOOTSTRAP_TOKEN");
    cmd
}

/// Runs `script` as a pasted block: stops at the first failing command (a pasted block that
/// fails half-way leaves its reader stuck just the same), aliases expanded as in a terminal.
fn paste(root: &Path, name: &str, script: &str) -> String {
    let file = root.join(format!(".{name}.sh"));
    fs::write(&file, format!("set -euo pipefail\nshopt -s expand_aliases\n{script}")).unwrap();
    let out = shell(root).arg(&file).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = fs::read_to_string(root.join("pkgdist-data/up.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{name} failed ({}):\n{script}\n--- output ---\n{text}\n--- pkgdist-data/up.log ---\n{log}",
        out.status
    );
    text
}

/// The documents' ports must be free: the test would otherwise talk to someone else's site
/// (a developer's own `pkgdist up`, say).
fn ports_free() {
    for port in [8470, 8471, 8472] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is in use: stop whatever listens there (a `pkgdist up`?) to run this test"
        );
    }
}

/// Waits until `up` has printed its last line (the console's URL): everything listens and its
/// DPs are enrolled.
fn wait_ready(child: &mut Child) {
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("console:") {
                let _ = tx.send(());
            }
        }
    });
    let ready = rx.recv_timeout(Duration::from_secs(60));
    assert!(ready.is_ok(), "up was not ready after 60 s ({:?})", child.try_wait());
}

/// Stops what a failed test would leave behind outside its own process group: the README's
/// `up` and the quick start's detached one (which would keep the documents' ports).
struct Cleanup {
    child: Option<Child>,
    data: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.data {
            let _ = Command::new(env!("CARGO_BIN_EXE_pkgdist"))
                .arg("down")
                .arg("--data")
                .arg(d)
                .output();
        }
    }
}

#[test]
fn readme_and_quickstart_blocks_work_as_written() {
    // README: the two commands, then the block for the second shell.
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let b = blocks(&readme);
    assert!(b.len() >= 2, "{b:?}");
    let up_line = b[0]
        .lines()
        .find(|l| l.contains(" up") && !l.trim_start().starts_with('#'))
        .expect("the README's first block starts pkgdist up");
    assert!(
        b[0].contains("scripts/test-deps && cargo nextest run --workspace"),
        "the README's first block gives the test command: {}",
        b[0]
    );
    ports_free();
    let dir = clone_like();
    let root = dir.path();
    let up = shell(root)
        .args(["-c", &format!("exec {up_line}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut cleanup = Cleanup {
        child: Some(up),
        data: Vec::new(),
    };
    wait_ready(cleanup.child.as_mut().unwrap());
    let out = paste(root, "readme", &b[1..].join("\n"));
    assert!(out.contains("INSTALLED"), "{out}");
    assert_eq!(
        fs::read(root.join("demo-copy/quickstart.md")).unwrap(),
        fs::read(repo().join("docs/quickstart.md")).unwrap()
    );
    assert_eq!(
        fs::read(root.join("demo-quickstart.md")).unwrap(),
        fs::read(repo().join("docs/quickstart.md")).unwrap()
    );
    let mut up = cleanup.child.take().unwrap();
    rustix::process::kill_process(rustix::process::Pid::from_child(&up), rustix::process::Signal::TERM).unwrap();
    assert!(up.wait().unwrap().success(), "up did not stop cleanly");

    // The quick start, whole, in a fresh folder: every block in one shell, in order.
    let quick = fs::read_to_string(repo().join("docs/quickstart.md")).unwrap();
    ports_free();
    let dir = clone_like();
    let root = dir.path();
    cleanup.data.push(root.join("pkgdist-data"));
    let out = paste(root, "quickstart", &blocks(&quick).join("\n"));
    assert!(out.contains("console:"), "up --detach prints the console's URL: {out}");
    assert_eq!(fs::read_to_string(root.join("demo-readme.txt")).unwrap(), "hello\n");
    assert_eq!(
        fs::read_to_string(root.join("demo-copy/readme.txt")).unwrap(),
        "hello\nmore\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("demo-out/readme.txt")).unwrap(),
        "hello\nmore\n"
    );
    // The last block stopped it: nothing listens on the documents' ports any more.
    assert!(std::net::TcpStream::connect("127.0.0.1:8470").is_err());
}
