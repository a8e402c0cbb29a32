//! The distribution manager end to end, with real site and DP processes on 127.0.0.1: retries
//! against a DP that is down, a site killed in the middle of a distribution, priorities under
//! ConfigMgr's package limit, validation with and without repair, and cancellation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Dp, Site, assert_serves, files, pkgdist, tree_size, wait};
use pkgdist_testkit::generate::{Rng, write_tree};
use serde_json::Value;
use tempfile::TempDir;

fn create_package(site: &Site, name: &str, src: &Path, priority: &str) -> String {
    let out = site.cli_json(&[
        "package",
        "create",
        "--name",
        name,
        "--source",
        src.to_str().unwrap(),
        "--priority",
        priority,
    ]);
    out["PackageID"].as_str().unwrap().to_owned()
}

/// `files` files of `mib` MiB each of incompressible bytes: on the wire as large as on disk.
fn random_tree(src: &Path, seed: u64, files: usize, mib: usize) {
    fs::create_dir_all(src).unwrap();
    let mut rng = Rng::new(seed);
    for i in 0..files {
        fs::write(src.join(format!("part{i}.bin")), rng.bytes(mib << 20)).unwrap();
    }
}

/// Registers a DP without starting it; returns its enrollment token.
fn register(site: &Site, name: &str) -> String {
    site.cli_json(&["dp", "add", "--name", name])["enrollment_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The one DP row of a package.
fn row(site: &Site, pkg: &str) -> Value {
    site.dp_rows(pkg).into_iter().next().unwrap()
}

/// The job file of the DP's only job for `pkg` (the newest, if several).
fn dp_job(dp: &Dp, pkg: &str) -> Option<Value> {
    let mut newest: Option<(std::time::SystemTime, Value)> = None;
    for ent in fs::read_dir(dp.dir.join("jobs")).into_iter().flatten().flatten() {
        if !ent.file_name().to_string_lossy().starts_with(pkg) {
            continue;
        }
        let Ok(bytes) = fs::read(ent.path()) else { continue };
        let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        // The DP replaces job files by renaming: one read above may be gone by now.
        let Ok(t) = ent.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        if newest.as_ref().is_none_or(|(n, _)| t > *n) {
            newest = Some((t, v));
        }
    }
    newest.map(|(_, v)| v)
}

/// A DP that is down: INSTALL_RETRYING with the retries counting down and the next retry time
/// in the message, then INSTALLED once it is back. With the retry count at 2 (set through the
/// API) and the DP kept down: INSTALL_FAILED, saying why and that no retries are left.
#[test]
fn dp_down_retries_count_down_then_installs_or_fails() {
    let dir = TempDir::new().unwrap();
    let site = Site::start(dir.path());
    site.cli(&["settings", "set", "--retry-count", "30", "--retry-delay-secs", "1"]);
    let mut dp = site.add_dp("dp1");
    wait(Duration::from_secs(30), "dp1 to enroll", || {
        let v = site.cli_json(&["dp", "list"]);
        (v[0]["Enrolled"] == true).then_some(()).ok_or("not yet".to_owned())
    });
    dp.daemon.stop();

    let src = dir.path().join("src");
    write_tree(&src, 1, 20).unwrap();
    let pkg = create_package(&site, "Tools", &src, "2");
    site.cli(&["package", "distribute", &pkg, "dp1"]);

    let mut seen: Vec<u64> = Vec::new();
    wait(Duration::from_secs(60), "retries to count down", || {
        let r = row(&site, &pkg);
        if r["State"] == 2 {
            let left = r["RetriesRemaining"].as_u64().unwrap();
            if seen.last() != Some(&left) {
                seen.push(left);
            }
            let msg = r["LastMessage"].as_str().unwrap();
            assert!(
                msg.contains("cannot reach the DP") && msg.contains("retries left; next at"),
                "{msg}"
            );
            assert!(r["NextRetry"].is_string(), "{r:#}");
        }
        (seen.len() >= 3).then_some(()).ok_or_else(|| format!("{seen:?} {r:#}"))
    });
    assert!(
        seen.windows(2).all(|w| w[1] < w[0]) && seen[0] < 30,
        "retries left should only go down: {seen:?}"
    );
    dp.restart(&site, &[]);
    site.wait_installed(&pkg, 1, 1);
    assert_serves(&dp, &pkg, &src);

    // Two attempts in all, the DP kept down: INSTALL_FAILED, with the reason.
    let shown = site.cli(&["settings", "set", "--retry-count", "2"]);
    assert!(shown.contains("retry count 2"), "{shown}");
    dp.daemon.stop();
    let src2 = dir.path().join("src2");
    write_tree(&src2, 2, 5).unwrap();
    let pkg2 = create_package(&site, "More tools", &src2, "2");
    site.cli(&["package", "distribute", &pkg2, "dp1"]);
    let r = wait(Duration::from_secs(60), "INSTALL_FAILED", || {
        let r = row(&site, &pkg2);
        (r["State"] == 3).then_some(r.clone()).ok_or_else(|| format!("{r:#}"))
    });
    assert_eq!(r["Attempts"], 2);
    assert_eq!(r["RetriesRemaining"], 0);
    let msg = r["LastMessage"].as_str().unwrap();
    assert!(
        msg.contains("attempt 2")
            && msg.contains("cannot reach the DP")
            && msg.contains("No retries left")
            && msg.contains(&format!("`pkgdist package distribute {pkg2} dp1`")),
        "{msg}"
    );
    let error = site
        .statuses(&pkg2)
        .into_iter()
        .rev()
        .find(|m| m["MessageState"] == 3)
        .unwrap();
    assert!(
        error["Description"].as_str().unwrap().contains("(dp1)"),
        "the message names the DP: {error:#}"
    );
    // `pkgdist status` without a package shows the failure at a glance.
    let glance = site.cli(&["status"]);
    assert!(glance.contains(&pkg2) && glance.contains("INSTALL_FAILED"), "{glance}");
}

/// The site killed with SIGKILL while it sends a package to 3 DPs, then started again: all
/// three reach INSTALLED, SourceVersion did not move, and no DP received the package twice.
#[test]
fn site_killed_mid_distribution_to_three_dps() {
    let dir = TempDir::new().unwrap();
    let mut site = Site::start(dir.path());
    let src = dir.path().join("src");
    random_tree(&src, 5, 4, 8);
    let size = tree_size(&src);
    let pkg = create_package(&site, "Image", &src, "2");
    let batch: u64 = 1 << 20;
    let mut dps = Vec::new();
    for name in ["dp1", "dp2", "dp3"] {
        let token = register(&site, name);
        dps.push(Dp::start(&site, name, Some(&token), &["--batch-bytes", "1048576"]));
        // About 4 s per DP, so the kill lands mid-transfer.
        site.cli(&["dp", "set", name, "--rate-limit", "8000000"]);
    }
    site.cli(&["group", "create", "all"]);
    site.cli(&["group", "add-dp", "all", "dp1", "dp2", "dp3"]);
    site.cli(&["group", "add-package", "all", &pkg]);

    wait(Duration::from_secs(60), "all three transfers under way", || {
        let under_way = dps
            .iter()
            .filter(|dp| {
                dp_job(dp, &pkg).is_some_and(|j| j["state"] == "running" && j["bytes_received"].as_u64() > Some(batch))
            })
            .count();
        (under_way == 3).then_some(()).ok_or(format!("{under_way} of 3"))
    });
    for dp in &dps {
        let j = dp_job(dp, &pkg).unwrap();
        assert!(
            j["bytes_received"].as_u64().unwrap() < size,
            "{}: finished before the kill",
            dp.name
        );
    }
    site.kill_and_restart();
    site.wait_installed(&pkg, 3, 1);

    let p = site.cli_json(&["package", "show", &pkg]);
    assert_eq!(p["SourceVersion"], 1, "a restart is not a refresh");
    let statuses = site.statuses(&pkg);
    for dp in &dps {
        let installs: Vec<&Value> = statuses
            .iter()
            .filter(|m| m["Name"] == dp.name.as_str() && m["MessageID"] == 2330)
            .collect();
        assert_eq!(installs.len(), 1, "{}: installed once: {installs:#?}", dp.name);
        let got = installs[0]["BytesTransferred"].as_u64().unwrap();
        assert!(
            got >= size && got <= size + 2 * batch + size / 100,
            "{}: received {got} bytes for a {size}-byte package",
            dp.name
        );
        assert_serves(dp, &pkg, &src);
    }
}

/// With at most one package at a time, a priority-1 package queued after a priority-3 one is
/// sent first. `pkgdist status --watch` follows the distribution and ends by itself.
#[test]
fn high_priority_goes_first_with_max_packages_1() {
    let dir = TempDir::new().unwrap();
    let site = Site::start_with(dir.path(), "max-packages = 1\n");
    let token = register(&site, "dp1");

    // The low-priority package is tiny and the high one large: run side by side, the low one
    // would finish first.
    let low_src = dir.path().join("low");
    write_tree(&low_src, 3, 5).unwrap();
    let high_src = dir.path().join("high");
    random_tree(&high_src, 4, 2, 8);
    let low = create_package(&site, "Low", &low_src, "3");
    let high = create_package(&site, "High", &high_src, "1");
    site.cli(&["package", "distribute", &low, "dp1"]);
    std::thread::sleep(Duration::from_millis(1100)); // queued a clear second later
    site.cli(&["package", "distribute", &high, "dp1"]);

    // The DP enrolls now: both are due at once.
    let dp = Dp::start(&site, "dp1", Some(&token), &[]);
    let watch = pkgdist()
        .args([
            "--site",
            &site.url(),
            "--token",
            common::TOKEN,
            "status",
            &high,
            "--watch",
        ])
        .output()
        .unwrap();
    site.wait_installed(&low, 1, 1);
    site.wait_installed(&high, 1, 1);

    let id_of = |pkg: &str| {
        site.statuses(pkg).into_iter().find(|m| m["MessageID"] == 2330).unwrap()["ID"]
            .as_u64()
            .unwrap()
    };
    assert!(
        id_of(&high) < id_of(&low),
        "the priority-1 package should be installed first"
    );
    assert_serves(&dp, &high, &high_src);

    assert!(watch.status.success());
    let out = String::from_utf8(watch.stdout).unwrap();
    assert!(out.contains("INSTALLED") && out.contains("[##########] 100%"), "{out}");
}

/// VerifyPackage finds damage and names the file. With repair off the state stays
/// INSTALL_FAILED until ReDistributePackage; with repair on (the default) the DP heals itself
/// and says so.
#[test]
fn validation_with_repair_off_then_on() {
    let dir = TempDir::new().unwrap();
    let site = Site::start(dir.path());
    let dp = site.add_dp("dp1");
    let src = dir.path().join("src");
    write_tree(&src, 6, 10).unwrap();
    fs::write(src.join("app.msi"), Rng::new(9).bytes(3 << 20)).unwrap();
    let pkg = create_package(&site, "App", &src, "2");
    site.cli(&["group", "create", "g"]);
    site.cli(&["group", "add-dp", "g", "dp1"]);
    site.cli(&["group", "add-package", "g", &pkg]);
    site.wait_installed(&pkg, 1, 1);

    let damage = || {
        // The largest chunk files belong to app.msi.
        let chunks = dp.dir.join("library/chunks");
        let mut all = files(&chunks);
        all.sort_by_key(|(_, b)| std::cmp::Reverse(b.len()));
        for (rel, _) in all.iter().take(2) {
            pkgdist_testkit::damage::flip_byte(&chunks.join(rel)).unwrap();
        }
    };

    let shown = site.cli(&["dp", "set", "dp1", "--repair", "off"]);
    assert!(shown.contains("repair off"), "{shown}");
    damage();
    site.cli(&["dp", "verify", &pkg, "dp1"]);
    let r = wait(Duration::from_secs(60), "validation to find the damage", || {
        let r = row(&site, &pkg);
        (r["State"] == 3).then_some(r.clone()).ok_or_else(|| format!("{r:#}"))
    });
    let msg = r["LastMessage"].as_str().unwrap();
    assert!(
        msg.contains("app.msi") && msg.contains("RepairDamagedContent is off"),
        "{msg}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(row(&site, &pkg)["State"], 3, "no repair without ReDistributePackage");
    assert_ne!(
        dp.download(&format!("{pkg}/app.msi")).1,
        fs::read(src.join("app.msi")).unwrap()
    );
    site.cli(&["group", "redistribute", "g", &pkg]);
    site.wait_installed(&pkg, 1, 1);
    assert_serves(&dp, &pkg, &src);

    site.cli(&["dp", "set", "dp1", "--repair", "on"]);
    damage();
    let before = site.statuses(&pkg).len();
    site.cli(&["dp", "verify", &pkg, "dp1"]);
    let m = wait(Duration::from_secs(60), "the DP to repair itself", || {
        let found = site
            .statuses(&pkg)
            .into_iter()
            .skip(before)
            .find(|m| m["MessageID"] == 2386);
        found.ok_or_else(|| format!("{:#?}", site.statuses(&pkg)))
    });
    let text = m["Description"].as_str().unwrap();
    assert!(
        text.contains("app.msi") && text.contains("repaired") && text.contains("RepairDamagedContent is on"),
        "{text}"
    );
    assert!(m["BytesTransferred"].as_u64().unwrap() > 0, "{m:#}");
    assert_eq!(row(&site, &pkg)["State"], 0);
    assert_serves(&dp, &pkg, &src);
}

/// CancelDistribution on a large running transfer: the DP stops within 5 seconds and the row
/// ends INSTALL_FAILED, saying it was cancelled.
#[test]
fn cancel_distribution_stops_a_running_transfer_within_5_s() {
    let dir = TempDir::new().unwrap();
    let site = Site::start(dir.path());
    let dp = site.add_dp("dp1");
    // 2 MB/s against 48 MiB: 25 s if nothing stopped it.
    site.cli(&["dp", "set", "dp1", "--rate-limit", "2000000"]);
    let src = dir.path().join("src");
    random_tree(&src, 8, 3, 16);
    let pkg = create_package(&site, "Large", &src, "2");
    site.cli(&["package", "distribute", &pkg, "dp1"]);
    wait(Duration::from_secs(60), "the transfer under way", || {
        let j = dp_job(&dp, &pkg);
        j.as_ref()
            .filter(|j| j["state"] == "running" && j["bytes_received"].as_u64() > Some(2 << 20))
            .map(|_| ())
            .ok_or_else(|| format!("{j:#?}"))
    });
    // Meanwhile the row says what is happening, not "queued".
    wait(Duration::from_secs(10), "the row to say it is transferring", || {
        let m = row(&site, &pkg)["LastMessage"].as_str().unwrap_or_default().to_owned();
        m.starts_with("transferring: the DP holds").then_some(()).ok_or(m)
    });

    let t0 = Instant::now();
    site.cli(&["dp", "cancel", &pkg, "dp1"]);
    wait(Duration::from_secs(5), "the DP's job to stop", || {
        let j = dp_job(&dp, &pkg).unwrap();
        (j["state"] != "running").then_some(()).ok_or_else(|| format!("{j:#}"))
    });
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let j = dp_job(&dp, &pkg).unwrap();
    assert!(j["message"].as_str().unwrap().contains("cancel"), "{j:#}");
    let r = row(&site, &pkg);
    assert_eq!(r["State"], 3);
    assert!(r["LastMessage"].as_str().unwrap().contains("cancelled"), "{r:#}");
    // Nothing more arrives.
    let chunks = tree_size(&dp.dir.join("library/chunks"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(tree_size(&dp.dir.join("library/chunks")), chunks);
    assert_eq!(row(&site, &pkg)["State"], 3);
}

/// A closed availability window holds a job back and an open one lets it finish; a window
/// that closes in the middle of a transfer pauses it, and it goes on from where it stopped.
#[test]
fn availability_window_holds_back_then_pauses_a_transfer() {
    let dir = TempDir::new().unwrap();
    let site = Site::start(dir.path());
    let token = register(&site, "dp1");
    let dp = Dp::start(&site, "dp1", Some(&token), &["--batch-bytes", "1048576"]);
    let shown = site.cli(&["dp", "set", "dp1", "--availability", "closed"]);
    assert!(shown.contains("availability closed"), "{shown}");

    let src = dir.path().join("small");
    write_tree(&src, 11, 10).unwrap();
    let pkg = create_package(&site, "Small", &src, "1");
    site.cli(&["package", "distribute", &pkg, "dp1"]);
    std::thread::sleep(Duration::from_secs(3));
    let held = row(&site, &pkg);
    assert_eq!(held["State"], 1, "held back while closed");
    let why = held["LastMessage"].as_str().unwrap();
    assert!(
        why.starts_with("waiting for dp1's availability window: never open to high-priority content"),
        "{why}"
    );
    assert!(dp_job(&dp, &pkg).is_none(), "no job was sent");
    site.cli(&["dp", "set", "dp1", "--availability", "open"]);
    site.wait_installed(&pkg, 1, 1);

    // 24 MiB at 4 MB/s: about 6 s unless paused.
    site.cli(&["dp", "set", "dp1", "--rate-limit", "4000000"]);
    let big = dir.path().join("big");
    random_tree(&big, 12, 3, 8);
    let size = tree_size(&big);
    let pkg2 = create_package(&site, "Big", &big, "2");
    site.cli(&["package", "distribute", &pkg2, "dp1"]);
    wait(Duration::from_secs(60), "the transfer under way", || {
        let j = dp_job(&dp, &pkg2);
        j.as_ref()
            .filter(|j| j["bytes_received"].as_u64() > Some(3 << 20))
            .map(|_| ())
            .ok_or_else(|| format!("{j:#?}"))
    });
    // Closed to medium priority from now on: the transfer stops within a batch or two…
    site.cli(&["dp", "set", "dp1", "--availability", &"2".repeat(168)]);
    std::thread::sleep(Duration::from_secs(3));
    let paused_at = dp_job(&dp, &pkg2).unwrap()["bytes_received"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let j = dp_job(&dp, &pkg2).unwrap();
    assert_eq!(j["bytes_received"].as_u64().unwrap(), paused_at, "paused: {j:#}");
    assert!(paused_at < size, "it finished before the window closed");
    assert_eq!(j["state"], "running", "a pause is not a failure: {j:#}");
    assert_eq!(row(&site, &pkg2)["State"], 1, "{:#}", row(&site, &pkg2));
    // …and continues from there when it opens.
    site.cli(&["dp", "set", "dp1", "--availability", "open"]);
    site.wait_installed(&pkg2, 1, 1);
    let got = site.last_success(&pkg2, "dp1")["BytesTransferred"].as_u64().unwrap();
    assert!(
        got <= size + (2 << 20) + size / 100,
        "received {got} bytes for a {size}-byte package: nothing should be fetched twice"
    );
    assert_serves(&dp, &pkg2, &big);
}

/// A tmpfs of `size` at `at` for as long as it lives (the tests run as root, as CI does).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot mount a tmpfs at {} (this test runs as root)", at.display());
        Self(at.to_owned())
    }

    fn resize(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A DP whose disk cannot hold a version (issue 20): the job fails at once with the figures
/// instead of filling the disk, the row is INSTALL_RETRYING saying so and what to do, and once
/// there is room the retry installs it.
#[test]
fn a_full_disk_fails_cleanly_and_the_retry_succeeds_once_there_is_room() {
    let dir = TempDir::new().unwrap();
    let site = Site::start(dir.path());
    // dp1's data folder is an 8 MiB disk; the package is 12 MiB that does not compress.
    let disk = Tmpfs::mount(&site.dir.join("dp1"), "8m");
    let token = register(&site, "dp1");
    let dp = Dp::start(&site, "dp1", Some(&token), &[]);
    let src = dir.path().join("src");
    random_tree(&src, 31, 3, 4);
    let pkg = create_package(&site, "Too big", &src, "2");
    site.cli(&["package", "distribute", &pkg, "dp1"]);
    let r = wait(Duration::from_secs(60), "INSTALL_RETRYING for want of space", || {
        let r = row(&site, &pkg);
        (r["State"] == 2).then_some(r.clone()).ok_or_else(|| format!("{r:#}"))
    });
    let msg = r["LastMessage"].as_str().unwrap();
    assert!(
        msg.contains("not enough free space on the DP") && msg.contains("free some space"),
        "{msg}"
    );
    // Nothing was half-written: the disk is as empty as the DP left it.
    assert!(tree_size(&dp.dir.join("library/chunks")) < 1 << 20);
    disk.resize("64m");
    site.wait_installed(&pkg, 1, 1);
    assert_serves(&dp, &pkg, &src);
}

/// The disk fills in the middle of transfers (two packages that each fit, but not both): the
/// one that runs out fails cleanly with the system's reason and is retried, never left
/// "running"; once there is room, both are installed.
#[test]
fn a_disk_that_fills_mid_transfer_fails_the_job_and_the_retry_succeeds() {
    let dir = TempDir::new().unwrap();
    let site = Site::start_with(dir.path(), "max-packages = 2\n");
    let disk = Tmpfs::mount(&site.dir.join("dp1"), "10m");
    let token = register(&site, "dp1");
    let dp = Dp::start(&site, "dp1", Some(&token), &["--batch-bytes", "1048576"]);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    random_tree(&a, 41, 3, 2);
    random_tree(&b, 42, 3, 2);
    let pa = create_package(&site, "A", &a, "2");
    let pb = create_package(&site, "B", &b, "2");
    // 6 MiB each on a 10 MiB disk.
    site.cli(&["package", "distribute", &pa, "dp1"]);
    site.cli(&["package", "distribute", &pb, "dp1"]);
    let failed = wait(
        Duration::from_secs(60),
        "one of them retrying for want of space",
        || {
            let rows = [row(&site, &pa), row(&site, &pb)];
            rows.iter()
                .find(|r| r["State"] == 2)
                .cloned()
                .ok_or_else(|| format!("{rows:#?}"))
        },
    );
    let msg = failed["LastMessage"].as_str().unwrap();
    assert!(msg.contains("space") || msg.contains("No space left"), "{msg}");
    disk.resize("64m");
    site.wait_installed(&pa, 1, 1);
    site.wait_installed(&pb, 1, 1);
    assert_serves(&dp, &pa, &a);
    assert_serves(&dp, &pb, &b);
}
