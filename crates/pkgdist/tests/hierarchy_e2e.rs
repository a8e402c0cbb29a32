//! The site hierarchy and pull DPs end to end, with real site and DP processes on 127.0.0.1:
//! a central site, primaries and a secondary; content crossing each site link once and only
//! where a DP is targeted; refreshes moving only changed chunks over every link and to every
//! DP; a primary killed during replication; pull DPs falling back between sources.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{Dp, Site, TOKEN, assert_serves, http, wait};
use pkgdist_testkit::generate::Rng;
use serde_json::{Value, json};
use tempfile::TempDir;

/// A 16 MiB incompressible file and a few small ones.
fn source(src: &Path, seed: u64) {
    fs::create_dir_all(src.join("drivers")).unwrap();
    let mut rng = Rng::new(seed);
    fs::write(src.join("image.wim"), rng.bytes(16 << 20)).unwrap();
    for i in 0..20 {
        fs::write(
            src.join("drivers").join(format!("drv{i}.inf")),
            rng.bytes(3000 + i * 100),
        )
        .unwrap();
    }
}

/// Overwrites 64 KiB in the middle of the large file.
fn edit(src: &Path, seed: u64) {
    let path = src.join("image.wim");
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at..at + (64 << 10)].copy_from_slice(&Rng::new(seed).bytes(64 << 10));
    fs::write(&path, bytes).unwrap();
}

fn register_pull(site: &Site, name: &str, from: &str) -> String {
    site.cli_json(&["dp", "add", "--name", name, "--pull-from", from])["enrollment_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `PKGDIST_SiteContent` of a site: (version, bytes received, chunks fetched, chunks in all).
fn site_content(site: &Site, pkg: &str) -> Vec<(i64, i64, i64, i64)> {
    site.get("PKGDIST_SiteContent")["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["PackageID"] == pkg)
        .map(|c| {
            (
                c["SourceVersion"].as_i64().unwrap(),
                c["BytesReceived"].as_i64().unwrap(),
                c["ChunksFetched"].as_i64().unwrap(),
                c["ChunksTotal"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn names(site: &Site, class: &str, key: &str) -> Vec<String> {
    let mut v: Vec<String> = site.get(class)["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o[key].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

/// Bytes of chunk data in a site's content library (everything but manifests and refs). The
/// site may be writing meanwhile: a staged file renamed or removed while the tree is walked is
/// skipped, not an error.
fn library_bytes(site: &Site) -> u64 {
    let root = site.dir.join("site").join("library");
    let mut total = 0;
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            let rel = path.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            if rel.contains("manifest") || rel.contains("refs") || rel.starts_with("tmp") {
                continue;
            }
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(path),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

/// A central site (CAS) with two primaries (PR1, PR2) and a secondary (SE1) under PR1. PR1 and
/// SE1 each have a standard DP and a pull DP chained from it; PR2 has a DP. A package created
/// at CAS is targeted from CAS at the four DPs of PR1 and SE1; one created at SE1 at DPs of
/// SE1, PR1 and PR2.
#[test]
fn three_levels_distribute_refresh_and_report_up() {
    let dir = TempDir::new().unwrap();
    let cas = Site::start_coded(&dir.path().join("cas"), "CAS", "", &[]);
    let pr1 = cas.add_child(&dir.path().join("pr1"), "PR1");
    // PR2's site.toml names it nothing: the name CAS gave it (`site add --name`) stands.
    let pr2_data = dir.path().join("pr2/site");
    std::fs::create_dir_all(&pr2_data).unwrap();
    std::fs::write(
        pr2_data.join("site.toml"),
        "site-code = \"PR2\"\n[distribution]\nretry-count = 100\nretry-delay-secs = 1\npoll-ms = 100\nlease-secs = 5\n",
    )
    .unwrap();
    let pr2 = cas.add_child(&dir.path().join("pr2"), "PR2");
    let se1 = pr1.add_child(&dir.path().join("se1"), "SE1");

    let p1 = pr1.add_dp("dp-p1");
    let t = register_pull(&pr1, "dp-p2", "dp-p1");
    let p2 = Dp::start(&pr1, "dp-p2", Some(&t), &[]);
    let s1 = se1.add_dp("dp-s1");
    let t = register_pull(&se1, "dp-s2", "dp-s1");
    let s2 = Dp::start(&se1, "dp-s2", Some(&t), &[]);
    let q1 = pr2.add_dp("dp-q1");

    // The top sees the whole tree and every DP in it.
    wait(Duration::from_secs(30), "the hierarchy reported to the top", || {
        let sites = cas.get("SMS_Site")["value"].as_array().unwrap().clone();
        let dps = names(&cas, "SMS_DistributionPointInfo", "Name");
        let want = ["dp-p1", "dp-p2", "dp-q1", "dp-s1", "dp-s2"];
        // Each enrolled with its own site, which says so up the hierarchy.
        let info = cas.get("SMS_DistributionPointInfo")["value"]
            .as_array()
            .unwrap()
            .clone();
        let enrolled = info.iter().all(|d| d["Enrolled"] == true);
        (sites.len() == 4 && dps == want && enrolled)
            .then_some(())
            .ok_or(format!("{sites:#?} {info:#?}"))
    });
    // The top sees the pull DPs below with their sources, through one and two links.
    let info =
        |name: &str| cas.get(&format!("SMS_DistributionPointInfo?$filter=Name%20eq%20'{name}'"))["value"][0].clone();
    // …and their settings, as their own sites hold them.
    se1.cli(&["dp", "set", "dp-s1", "--prestaged", "on", "--repair", "off"]);
    wait(Duration::from_secs(30), "dp-s1's settings at the top", || {
        let d = info("dp-s1");
        (d["PreStagingAllowed"] == true && d["RepairDamagedContent"] == false)
            .then_some(())
            .ok_or(format!("{d}"))
    });
    se1.cli(&["dp", "set", "dp-s1", "--prestaged", "off", "--repair", "on"]);
    for (pull, source) in [("dp-p2", "dp-p1"), ("dp-s2", "dp-s1")] {
        let d = info(pull);
        assert_eq!(d["IsPullDP"], true, "{d}");
        assert_eq!(d["SourceDistributionPoints"], json!([info(source)["NALPath"]]), "{d}");
        assert_eq!(d["SourceDPRanks"], json!([1]), "{d}");
    }
    let sites = cas.get("SMS_Site")["value"].as_array().unwrap().clone();
    let by = |code: &str| sites.iter().find(|s| s["SiteCode"] == code).unwrap().clone();
    assert_eq!(by("CAS")["Type"], 4, "{sites:#?}");
    assert_eq!(by("PR1")["Type"], 2);
    assert_eq!(by("PR1")["ReportingSiteCode"], "CAS");
    assert_eq!(by("SE1")["Type"], 1);
    assert_eq!(by("SE1")["ReportingSiteCode"], "PR1");
    assert_eq!(by("PR2")["ReportingSiteCode"], "CAS");
    assert_eq!(
        by("PR2")["SiteName"],
        "PR2 site",
        "the name given at CAS, not the default"
    );
    assert_eq!(by("SE1")["SiteName"], "SE1 site");
    let out = se1.cli(&["site", "list"]);
    assert!(out.contains("SE1") && out.contains("secondary"), "{out}");

    let src = dir.path().join("src");
    source(&src, 7);
    let pkg = cas.cli_json(&[
        "package",
        "create",
        "--name",
        "OS image",
        "--source",
        src.to_str().unwrap(),
    ])["PackageID"]
        .as_str()
        .unwrap()
        .to_owned();

    // SiteCode must be the DP's own site, as in ConfigMgr.
    let s1_nal = cas.get("SMS_DistributionPointInfo?$filter=Name%20eq%20'dp-s1'")["value"][0]["NALPath"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = common::runtime().block_on(async {
        let r = reqwest::Client::new()
            .post(format!(
                "{}/AdminService/wmi/SMS_Package('{pkg}')/AdminService.AddDistributionPoints",
                cas.url()
            ))
            .bearer_auth(TOKEN)
            .json(&json!({"SiteCode": ["PR1"], "NALPath": [s1_nal]}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    assert_ne!(status, 200);
    let text = body.to_string();
    assert!(text.contains("SE1") && text.contains("own site"), "{text}");
    // Package metadata reaches every site; a package belongs to the site that created it.
    for site in [&pr1, &pr2, &se1] {
        wait(Duration::from_secs(20), "the package's metadata below", || {
            let list = names(site, "SMS_Package", "PackageID");
            list.contains(&pkg).then_some(()).ok_or(format!("{list:?}"))
        });
    }
    let (status, body) = http(
        reqwest::Method::POST,
        &format!(
            "{}/AdminService/wmi/SMS_Package('{pkg}')/AdminService.RefreshPkgSource",
            pr1.url()
        ),
        Some(TOKEN),
    );
    assert_ne!(status, 200);
    assert!(body.to_string().contains("belongs to site CAS"), "{body}");

    cas.cli(&["package", "distribute", &pkg, "dp-p1", "dp-p2", "dp-s1", "dp-s2"]);
    cas.wait_installed(&pkg, 4, 1);
    // Status messages go up: the top has each DP's "installed" message, once, as its own
    // site recorded it.
    let installed = |site: &Site, dp: &str| {
        site.statuses(&pkg)
            .into_iter()
            .filter(|m| m["Name"] == dp && m["MessageID"] == 2330 && m["MessageState"] == 1)
            .count()
    };
    wait(Duration::from_secs(30), "the installed messages at the top", || {
        let all = ["dp-p1", "dp-p2", "dp-s1", "dp-s2"].map(|d| installed(&cas, d));
        (all.iter().all(|n| *n >= 1)).then_some(()).ok_or(format!("{all:?}"))
    });
    assert_eq!(installed(&cas, "dp-s1"), installed(&se1, "dp-s1"), "no message twice");
    let up = cas.last_success(&pkg, "dp-s1");
    assert_eq!(up["SiteCode"], "SE1", "{up}");
    assert_eq!(
        up["BytesTransferred"],
        se1.last_success(&pkg, "dp-s1")["BytesTransferred"]
    );
    // `pkgdist status` at the top: one line per package and site, with a site column.
    let out = cas.cli(&["status"]);
    assert!(out.lines().next().unwrap().contains("SITE"), "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with(&pkg)).collect();
    for code in ["PR1", "SE1"] {
        assert!(lines.iter().any(|l| l.contains(&format!(" {code} "))), "{code}: {out}");
    }
    for dp in [&p1, &p2, &s1, &s2] {
        assert_serves(dp, &pkg, &src);
    }
    // Content crossed each link once, whatever the number of DPs below; PR2, with nothing
    // targeted, received none.
    let size = common::tree_size(&src) as i64;
    for site in [&pr1, &se1] {
        let c = site_content(site, &pkg);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c[0].1 >= size && c[0].1 < size + size / 50, "{c:?} for {size}");
    }
    assert!(site_content(&pr2, &pkg).is_empty());
    assert!(library_bytes(&pr2) < 4096, "PR2 holds {} bytes", library_bytes(&pr2));
    // Per-site summaries, visible from the top.
    let detail = cas.get("SMS_PackageStatusDetailSummarizer")["value"]
        .as_array()
        .unwrap()
        .clone();
    for code in ["PR1", "SE1"] {
        let d = detail.iter().find(|d| d["SiteCode"] == code).unwrap();
        assert_eq!(
            (d["Targeted"].as_i64(), d["Installed"].as_i64()),
            (Some(2), Some(2)),
            "{detail:#?}"
        );
    }

    // A 64 KiB edit and a refresh at the top: every link and every DP carries only the
    // changed chunks.
    edit(&src, 99);
    cas.cli(&["package", "refresh", &pkg]);
    cas.wait_installed(&pkg, 4, 2);
    let max_chunk = 256 << 10;
    for site in [&pr1, &se1] {
        let c = site_content(site, &pkg);
        let v2 = c.iter().find(|c| c.0 == 2).unwrap();
        assert!(v2.2 <= 4, "{} fetched {} of {} chunks", site.url(), v2.2, v2.3);
        assert!(v2.1 > 0 && v2.1 <= 4 * max_chunk, "{c:?}");
    }
    for (site, dp) in [(&pr1, "dp-p1"), (&pr1, "dp-p2"), (&se1, "dp-s1"), (&se1, "dp-s2")] {
        let m = site.last_success(&pkg, dp);
        let b = m["BytesTransferred"].as_i64().unwrap();
        assert!(b > 0 && b <= 4 * max_chunk, "{dp}: {m}");
    }
    for dp in [&p1, &p2, &s1, &s2] {
        assert_serves(dp, &pkg, &src);
    }
    // Owner's version everywhere, bumped once.
    for site in [&cas, &pr1, &se1] {
        let p = site.get(&format!("SMS_Package('{pkg}')"));
        assert_eq!(p["SourceVersion"], 2, "{p}");
    }
    assert!(site_content(&pr2, &pkg).is_empty());

    // ReDistributePackage on a group whose members sit in two sites, from the top.
    cas.cli(&["group", "create", "everywhere"]);
    cas.cli(&["group", "add-dp", "everywhere", "dp-p1", "dp-s1"]);
    cas.cli(&["group", "add-package", "everywhere", &pkg]);
    cas.wait_installed(&pkg, 4, 2);
    let before = se1.statuses(&pkg).len();
    cas.cli(&["group", "redistribute", "everywhere", &pkg]);
    wait(
        Duration::from_secs(60),
        "redistribution through each member's site",
        || {
            let redone = se1
                .statuses(&pkg)
                .iter()
                .skip(before)
                .any(|m| m["Name"] == "dp-s1" && m["MessageID"] == 2330);
            let rows = cas.dp_rows(&pkg);
            let all = rows.len() == 4 && rows.iter().all(|r| r["State"] == 0);
            (redone && all).then_some(()).ok_or(format!("{rows:#?}"))
        },
    );

    // Removal from the top: the rows go at the sites below, and their removal travels back
    // up the links as changes (each link reports only what changed since the last report).
    cas.cli(&["group", "remove-package", "everywhere", &pkg]);
    wait(Duration::from_secs(60), "removals reported up two links", || {
        let rows = cas.dp_rows(&pkg);
        let on = |dp: &str| {
            rows.iter().any(|r| {
                r["ServerNALPath"]
                    .as_str()
                    .is_some_and(|n| n.contains(&format!("\\\\{dp}\\")))
            })
        };
        let left = rows.len() == 2 && on("dp-p2") && on("dp-s2") && rows.iter().all(|r| r["State"] == 0);
        left.then_some(()).ok_or(format!("{rows:#?}"))
    });
    let at_se1 = se1.dp_rows(&pkg);
    assert_eq!(at_se1.len(), 1, "gone at the DP's own site too: {at_se1:#?}");
    let (status, _) = s1.download(&format!("{pkg}/"));
    assert_eq!(status, 404, "dp-s1 released the content");

    // A package created below (at SE1) is known everywhere, as in ConfigMgr: the top and the
    // sibling PR2 see it, owned by SE1 and read-only. The top targets it at a DP of SE1, one of
    // PR1 (above the owner) and one of PR2 (a sibling subtree): its content goes up from SE1 as
    // far as needed (SE1 → PR1 → CAS) and down to PR2, crossing each link once.
    let src2 = dir.path().join("src2");
    source(&src2, 11);
    let made_below = se1.cli_json(&[
        "package",
        "create",
        "--name",
        "made below",
        "--source",
        src2.to_str().unwrap(),
    ])["PackageID"]
        .as_str()
        .unwrap()
        .to_owned();
    wait(
        Duration::from_secs(30),
        "the package made below, at the top and at PR2",
        || {
            let top = names(&cas, "SMS_Package", "PackageID");
            let sibling = names(&pr2, "SMS_Package", "PackageID");
            (top.contains(&made_below) && sibling.contains(&made_below))
                .then_some(())
                .ok_or(format!("{top:?} {sibling:?}"))
        },
    );
    let seen = cas.get(&format!("SMS_Package('{made_below}')"));
    assert_eq!(seen["SourceSite"], "SE1", "{seen}");
    assert_eq!(seen["SourceVersion"], 1, "{seen}");
    assert_eq!(pr2.get(&format!("SMS_Package('{made_below}')"))["SourceSite"], "SE1");
    let refresh = common::runtime().block_on(async {
        reqwest::Client::new()
            .post(format!(
                "{}/AdminService/wmi/SMS_Package('{made_below}')/AdminService.RefreshPkgSource",
                cas.url()
            ))
            .bearer_auth(TOKEN)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(refresh.contains("belongs to site SE1"), "{refresh}");
    cas.cli(&["package", "distribute", &made_below, "dp-s1", "dp-p1", "dp-q1"]);
    cas.wait_installed(&made_below, 3, 1);
    for dp in [&s1, &p1, &q1] {
        assert_serves(dp, &made_below, &src2);
    }
    // It came up once to PR1 and to CAS, and went down once to PR2.
    for (site, name) in [(&pr1, "PR1"), (&cas, "CAS"), (&pr2, "PR2")] {
        let got = site_content(site, &made_below);
        assert!(
            got.len() == 1 && got[0].0 == 1 && got[0].2 > 0,
            "{name} holds {made_below}.1: {got:?}"
        );
    }
    let came_up = cas.get("PKGDIST_SiteContent")["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["PackageID"] == made_below.as_str())
        .unwrap()["Message"]
        .clone();
    assert!(came_up.to_string().contains("came up from child site PR1"), "{came_up}");
    // Deleted at its owner, it comes off every DP in the hierarchy, then goes everywhere.
    se1.cli(&["package", "remove", &made_below, "dp-s1"]);
    wait(Duration::from_secs(30), "the removal below", || {
        let rows = se1.dp_rows(&made_below);
        rows.is_empty().then_some(()).ok_or(format!("{rows:#?}"))
    });
    se1.cli(&["package", "delete", &made_below]);
    wait(
        Duration::from_secs(60),
        "the package deleted below, off every DP and gone everywhere",
        || {
            let left: Vec<bool> = [&cas, &pr1, &pr2, &se1]
                .iter()
                .map(|site| names(site, "SMS_PackageBaseclass", "PackageID").contains(&made_below))
                .collect();
            let rows = cas.dp_rows(&made_below);
            (left.iter().all(|has| !has) && rows.is_empty())
                .then_some(())
                .ok_or(format!("{left:?} {rows:#?}"))
        },
    );
    for dp in [&s1, &p1, &q1] {
        assert_eq!(dp.download(&format!("{made_below}/")).0, 404, "{} dropped it", dp.name);
    }

    // Deleting at the top takes the content off every DP in the hierarchy first (the pull
    // DPs below still hold it), then the package is gone everywhere.
    cas.cli(&["package", "delete", &pkg]);
    wait(Duration::from_secs(60), "the package deleted everywhere", || {
        let left: Vec<bool> = [&cas, &pr1, &se1]
            .iter()
            .map(|site| names(site, "SMS_PackageBaseclass", "PackageID").contains(&pkg))
            .collect();
        let rows = cas.dp_rows(&pkg);
        (left.iter().all(|has| !has) && rows.is_empty())
            .then_some(())
            .ok_or(format!("{left:?} {rows:#?}"))
    });
    assert_eq!(s2.download(&format!("{pkg}/")).0, 404, "dp-s2 dropped the content");
    assert_eq!(p2.download(&format!("{pkg}/")).0, 404, "dp-p2 dropped the content");
}

/// A primary killed with SIGKILL while it replicates from the top over a throttled link, with
/// a secondary below it whose link goes down meanwhile: after a restart everything is
/// INSTALLED, nothing crossed the link twice, and no version moved.
#[test]
fn primary_killed_during_replication_catches_up_without_a_version_bump() {
    let dir = TempDir::new().unwrap();
    let cas = Site::start_coded(&dir.path().join("cas"), "CAS", "", &[]);
    let out = cas.cli_json(&["site", "add", "PR1", "--rate-limit", "4000000"]);
    let token = out["EnrollmentToken"].as_str().unwrap().to_owned();
    let mut pr1 = Site::start_coded(
        &dir.path().join("pr1"),
        "PR1",
        "",
        &["--parent", &cas.url(), "--enrollment-token", &token],
    );
    let se1 = pr1.add_child(&dir.path().join("se1"), "SE1");
    let p1 = pr1.add_dp("dp-p1");
    let s1 = se1.add_dp("dp-s1");
    wait(Duration::from_secs(30), "the DPs reported to the top", || {
        let dps = names(&cas, "SMS_DistributionPointInfo", "Name");
        (dps == ["dp-p1", "dp-s1"]).then_some(()).ok_or(format!("{dps:?}"))
    });

    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big.bin"), Rng::new(3).bytes(32 << 20)).unwrap();
    let pkg = cas.cli_json(&["package", "create", "--name", "big", "--source", src.to_str().unwrap()])["PackageID"]
        .as_str()
        .unwrap()
        .to_owned();
    cas.cli(&["package", "distribute", &pkg, "dp-p1", "dp-s1"]);
    // Kill PR1 once a good part, but not all, has crossed the 4 MB/s link.
    wait(Duration::from_secs(60), "replication under way at PR1", || {
        let b = library_bytes(&pr1);
        (b > 10 << 20).then_some(()).ok_or(format!("{b} bytes"))
    });
    assert!(library_bytes(&pr1) < 30 << 20);
    pr1.kill_and_restart();
    cas.wait_installed(&pkg, 2, 1);
    assert_serves(&p1, &pkg, &src);
    assert_serves(&s1, &pkg, &src);
    let size = 32i64 << 20;
    let c = site_content(&pr1, &pkg);
    assert_eq!(c.len(), 1, "{c:?}");
    // At most the batch in flight at the kill came twice (and only a batch stored in the
    // instant before the kill can have gone uncounted).
    let batch = 8i64 << 20;
    assert!(c[0].1 >= size - batch && c[0].1 <= size + batch + size / 50, "{c:?}");
    for site in [&cas, &pr1, &se1] {
        assert_eq!(site.get(&format!("SMS_Package('{pkg}')"))["SourceVersion"], 1);
    }
}

/// Pull DPs: sources in rank order with fallback when the first is down, a pull DP as another
/// pull DP's source, waiting while no source has the content, and a loop refused.
#[test]
fn pull_dps_fall_back_chain_wait_and_refuse_loops() {
    let dir = TempDir::new().unwrap();
    let site = Site::start(dir.path());
    let mut dp1 = site.add_dp("dp1");
    let dp2 = site.add_dp("dp2");
    let t = register_pull(&site, "pull1", "dp1:1,dp2:2");
    let pull1 = Dp::start(&site, "pull1", Some(&t), &[]);
    let t = register_pull(&site, "pull2", "pull1");
    let pull2 = Dp::start(&site, "pull2", Some(&t), &[]);

    // A loop is refused, naming it, and changes nothing.
    let out = common::pkgdist()
        .args([
            "--site",
            &site.url(),
            "--token",
            TOKEN,
            "dp",
            "set",
            "pull1",
            "--pull-from",
            "pull2",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loop") && err.contains("pull1 → pull2 → pull1"), "{err}");
    let info = site.get("SMS_DistributionPointInfo?$filter=Name%20eq%20'pull1'")["value"][0].clone();
    assert_eq!(info["SourceDistributionPoints"].as_array().unwrap().len(), 2, "{info}");

    let src = dir.path().join("src");
    source(&src, 11);
    let pkg = site.cli_json(&["package", "create", "--name", "p", "--source", src.to_str().unwrap()])["PackageID"]
        .as_str()
        .unwrap()
        .to_owned();
    // No source holds it: the pull DPs wait, without a job or a failure.
    site.cli(&["package", "distribute", &pkg, "pull1", "pull2"]);
    std::thread::sleep(Duration::from_secs(2));
    for r in site.dp_rows(&pkg) {
        assert_eq!(r["State"], 1, "{r}");
        assert_eq!(r["Attempts"], 0, "{r}");
    }
    // The rank-1 source is down: pull1 falls back to dp2; pull2 pulls from pull1.
    dp1.daemon.stop();
    site.cli(&["package", "distribute", &pkg, "dp2"]);
    site.wait_installed(&pkg, 3, 1);
    assert_serves(&pull1, &pkg, &src);
    assert_serves(&pull2, &pkg, &src);
    // A pull DP fetches nothing from its site: the site's messages show no pacing, and the
    // DP's job names its sources.
    let job = fs::read_dir(pull1.dir.join("jobs"))
        .unwrap()
        .flatten()
        .find_map(|e| serde_json::from_slice::<Value>(&fs::read(e.path()).ok()?).ok())
        .unwrap();
    let sources: Vec<String> = serde_json::from_value(job["job"]["sources"].clone()).unwrap();
    assert_eq!(sources.len(), 2, "{job}");
    assert!(sources[1] == dp2.url(), "rank order: {sources:?}");
    dp1.restart(&site, &[]);
}
