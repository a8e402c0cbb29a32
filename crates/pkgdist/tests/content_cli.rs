//! `pkgdist content …` end to end: the real binary on real folders.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pkgdist_testkit::generate::{Rng, write_image, write_tree};
use serde_json::Value;
use tempfile::TempDir;

fn pkgdist() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pkgdist"))
}

fn run(args: &[&str]) -> Output {
    pkgdist().args(args).output().unwrap()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn source(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    write_image(&src.join("os.wim"), 1, 12 << 20).unwrap();
    write_tree(&src.join("drivers"), 2, 300).unwrap();
    src
}

#[test]
fn snapshot_verify_export_list_gc() {
    let dir = TempDir::new().unwrap();
    let src = source(dir.path());
    let lib = dir.path().join("lib");

    let out = json(&run(&[
        "content",
        "snapshot",
        s(&src),
        "--library",
        s(&lib),
        "--package-id",
        "PS100001",
        "--json",
    ]));
    assert_eq!(out["content_id"], "PS100001.1");
    assert_eq!(out["manifest_hash"].as_str().unwrap().len(), 64);
    assert_eq!(out["stats"]["files"], 301);

    // Unchanged source: the next version is identical. Files changed within 2 s of being read
    // are not trusted by the quick check (timestamp granularity), so wait that out once.
    std::thread::sleep(Duration::from_millis(2100));
    let again = json(&run(&[
        "content",
        "snapshot",
        s(&src),
        "--library",
        s(&lib),
        "--package-id",
        "PS100001",
        "--json",
    ]));
    assert_eq!(again["content_id"], "PS100001.2");
    assert_eq!(again["unchanged"], true);
    assert_eq!(again["manifest_hash"], out["manifest_hash"]);
    assert_eq!(again["stats"]["chunks_new"], 0);
    let third = json(&run(&[
        "content",
        "snapshot",
        s(&src),
        "--library",
        s(&lib),
        "--package-id",
        "PS100001",
        "--json",
    ]));
    assert_eq!(
        third["stats"]["bytes_read"], 0,
        "quick check reads nothing when nothing changed"
    );

    let verify = run(&["content", "verify", "--library", s(&lib)]);
    assert!(verify.status.success());
    assert!(String::from_utf8_lossy(&verify.stdout).contains("no problems found"));

    let dest = dir.path().join("out");
    json(&run(&[
        "content",
        "export",
        "--library",
        s(&lib),
        "PS100001.2",
        s(&dest),
        "--json",
    ]));
    assert_eq!(
        fs::read(src.join("os.wim")).unwrap(),
        fs::read(dest.join("os.wim")).unwrap()
    );
    assert_eq!(
        fs::read(src.join("drivers/d00/s00/f000103.bin")).ok(),
        fs::read(dest.join("drivers/d00/s00/f000103.bin")).ok()
    );

    let list = json(&run(&["content", "list", "--library", s(&lib), "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 3);
    let gc = json(&run(&["content", "gc", "--library", s(&lib), "--json"]));
    assert_eq!(gc["chunks_removed"], 0);
}

#[test]
fn clear_errors_for_bad_input() {
    let dir = TempDir::new().unwrap();
    let lib = dir.path().join("lib");
    let bad_id = run(&[
        "content",
        "snapshot",
        s(dir.path()),
        "--library",
        s(&lib),
        "--package-id",
        "PS1-0001",
    ]);
    assert!(!bad_id.status.success());
    assert!(String::from_utf8_lossy(&bad_id.stderr).contains("PackageID"));

    let no_src = run(&[
        "content",
        "snapshot",
        "/nonexistent/src",
        "--library",
        s(&lib),
        "--package-id",
        "PS100001",
    ]);
    assert_eq!(no_src.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_src.stderr).contains("/nonexistent/src"));

    let not_lib = run(&["content", "verify", "--library", s(dir.path())]);
    assert_eq!(not_lib.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_lib.stderr).contains("not a pkgdist content library"));
}

/// Flip a byte in one chunk, delete another, truncate a third: `verify` names exactly those
/// three and exits 3; `export` refuses and leaves nothing behind.
#[test]
fn verify_and_export_on_a_damaged_library() {
    let dir = TempDir::new().unwrap();
    let src = source(dir.path());
    let lib = dir.path().join("lib");
    json(&run(&[
        "content",
        "snapshot",
        s(&src),
        "--library",
        s(&lib),
        "--package-id",
        "PS100001",
        "--json",
    ]));

    let mut chunks: Vec<PathBuf> = walkdir(&lib.join("chunks"));
    chunks.sort();
    let victims = [&chunks[3], &chunks[chunks.len() / 2], &chunks[chunks.len() - 5]];
    pkgdist_testkit::damage::flip_byte(victims[0]).unwrap();
    pkgdist_testkit::damage::delete(victims[1]).unwrap();
    pkgdist_testkit::damage::truncate_half(victims[2]).unwrap();

    let out = run(&["content", "verify", "--library", s(&lib), "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut named: Vec<String> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    named.sort();
    let mut expected: Vec<String> = victims
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    expected.sort();
    assert_eq!(named, expected);
    assert!(
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| !p["affects"].as_array().unwrap().is_empty())
    );

    let text = run(&["content", "verify", "--library", s(&lib), "PS100001.1"]);
    assert_eq!(text.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&text.stdout).contains("MISSING chunk"));

    let dest = dir.path().join("out");
    let exp = run(&["content", "export", "--library", s(&lib), "PS100001.1", s(&dest)]);
    assert_eq!(exp.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&exp.stderr).contains("nothing damaged was returned")
            || String::from_utf8_lossy(&exp.stderr).contains("nothing was returned")
    );
    assert!(!dest.exists());
}

fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out
}

/// SIGKILL a snapshot at many points: every recorded version is always complete, no visible
/// chunk is ever torn, and the next snapshot succeeds.
#[test]
fn killed_snapshot_leaves_every_recorded_version_complete() {
    let dir = TempDir::new().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    write_image(&src.join("big.img"), 5, 96 << 20).unwrap();
    write_tree(&src.join("tree"), 6, 400).unwrap();
    let lib = dir.path().join("lib");
    let snap = |checksum: bool| {
        let mut c = pkgdist();
        c.args([
            "content",
            "snapshot",
            s(&src),
            "--library",
            s(&lib),
            "--package-id",
            "PS100001",
            "--batch-mib",
            "4",
            "--json",
        ]);
        if checksum {
            c.arg("--checksum");
        }
        c
    };
    json(&snap(false).output().unwrap());
    // How long a round takes uninterrupted, measured the way the rounds run (new image
    // content, --checksum), so the kill points fall inside a snapshot even when the machine
    // is slower or faster than when the first snapshot ran.
    let round = |seed: u64| {
        let mut rng = Rng::new(seed);
        fs::write(src.join("big.img"), rng.bytes(96 << 20)).unwrap();
    };
    round(99);
    let started = Instant::now();
    json(&snap(true).output().unwrap());
    let mut span = started.elapsed();

    let mut killed_midway = 0;
    for i in 0..12u64 {
        if killed_midway >= 6 {
            break;
        }
        // New content each round, so each snapshot has real work to do.
        round(100 + i);
        let mut child = snap(true).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(span.mul_f64(0.1 + 0.12 * (i % 7) as f64));
        if child.try_wait().unwrap().is_none() {
            killed_midway += 1;
        } else {
            // The snapshot beat the kill: the machine got faster; aim earlier from now on.
            span = span.mul_f64(0.6);
        }
        child.kill().unwrap();
        child.wait().unwrap();

        let verify = run(&["content", "verify", "--library", s(&lib), "--json"]);
        let report: Value = serde_json::from_slice(&verify.stdout).unwrap();
        assert_eq!(verify.status.code(), Some(0), "round {i}: {report}");
        assert!(report["problems"].as_array().unwrap().is_empty());
    }
    assert!(
        killed_midway >= 4,
        "only {killed_midway} kills landed mid-snapshot; the test proves nothing"
    );

    let gc = json(&run(&["content", "gc", "--library", s(&lib), "--json"]));
    assert!(gc["chunks_removed"].as_u64().unwrap() > 0 || gc["staging_removed"].as_u64().unwrap() > 0);
    assert_eq!(fs::read_dir(lib.join("tmp")).unwrap().count(), 0);
    let done = json(&snap(false).output().unwrap());
    let id = done["content_id"].as_str().unwrap().to_owned();
    let dest = dir.path().join("out");
    json(&run(&[
        "content",
        "export",
        "--library",
        s(&lib),
        &id,
        s(&dest),
        "--json",
    ]));
    assert_eq!(
        fs::read(src.join("big.img")).unwrap(),
        fs::read(dest.join("big.img")).unwrap()
    );
    let verify = run(&["content", "verify", "--library", s(&lib)]);
    assert!(verify.status.success());
}

#[test]
fn schedule_decode_and_encode() {
    let out = run(&["schedule", "decode", "1033BC7B10100010"]);
    let tokens = json(&out);
    assert_eq!(tokens[0]["@odata.type"], "#AdminService.SMS_ST_RecurInterval");
    assert_eq!(tokens[0]["DaySpan"], 2);
    let back = run(&["schedule", "encode", &tokens.to_string()]);
    assert!(back.status.success(), "{}", String::from_utf8_lossy(&back.stderr));
    assert_eq!(String::from_utf8_lossy(&back.stdout).trim(), "1033BC7B10100010");
    let as_json = run(&["--json", "schedule", "encode", &tokens[0].to_string()]);
    assert_eq!(json(&as_json)["StringData"], "1033BC7B10100010");
    let bad = run(&["schedule", "decode", "1033BC7B1010001"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("multiple of 16"));
    let bad = run(&[
        "schedule",
        "encode",
        r##"{"@odata.type":"#AdminService.SMS_ST_RecurWeekly","Day":0}"##,
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Day is 0"));
}
