//! What an administrator watches (issue 19): the Prometheus `/metrics` of a site and its DPs,
//! parsed by a Prometheus text-format parser and held to what the API says; and the web
//! console in a real headless Chromium.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{Dp, Site, TOKEN, http, runtime, wait};
use pkgdist_testkit::generate::write_tree;
use tempfile::TempDir;

/// A scrape: every sample, by metric name and its labels (sorted `k=v` pairs joined by `,`).
struct Scrape(HashMap<(String, String), f64>);

impl Scrape {
    fn of(url: &str, token: Option<&str>) -> Self {
        let text = runtime().block_on(async {
            let mut r = reqwest::Client::new().get(format!("{url}/metrics"));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let resp = r.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
            assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
            resp.text().await.unwrap()
        });
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let parsed = prometheus_parse::Scrape::parse(lines).unwrap();
        // The parser skips lines it cannot read: every sample line must have been read.
        let sample_lines = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .count();
        assert_eq!(parsed.samples.len(), sample_lines, "unreadable lines in:\n{text}");
        // Every metric is described, and every described metric is in docs/metrics.md.
        let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md")).unwrap();
        for name in parsed.docs.keys() {
            assert!(doc.contains(&format!("`{name}`")), "{name} is not in docs/metrics.md");
        }
        let mut all = HashMap::new();
        for s in parsed.samples {
            let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("{} is {other:?}", s.metric),
            };
            all.insert((s.metric, labels.join(",")), value);
        }
        Self(all)
    }

    /// The sample `name{labels}`; 0 when absent (a counter never incremented).
    fn get(&self, name: &str, labels: &str) -> f64 {
        self.0
            .get(&(name.to_owned(), labels.to_owned()))
            .copied()
            .unwrap_or(0.0)
    }

    /// The sum of `name` over every sample whose labels pass `pick`.
    fn sum(&self, name: &str, pick: impl Fn(&str) -> bool) -> f64 {
        self.0
            .iter()
            .filter(|((n, l), _)| n == name && pick(l))
            .map(|(_, v)| v)
            .sum()
    }
}

fn package(site: &Site, name: &str, src: &Path) -> String {
    let out = site.cli_json(&["package", "create", "--name", name, "--source", src.to_str().unwrap()]);
    out["PackageID"].as_str().unwrap().to_owned()
}

fn enrolled(site: &Site, n: usize) {
    wait(Duration::from_secs(30), "DPs to enroll", || {
        let v = site.cli_json(&["dp", "list"]);
        let done = v.as_array().unwrap().iter().filter(|d| d["Enrolled"] == true).count();
        (done == n).then_some(()).ok_or(format!("{done} of {n}"))
    });
}

#[test]
fn metrics_match_the_api() {
    let dir = TempDir::new().unwrap();
    let site = Site::start(dir.path());
    let dps: Vec<Dp> = ["dp1", "dp2"].iter().map(|n| site.add_dp(n)).collect();
    enrolled(&site, 2);
    let src = dir.path().join("src");
    write_tree(&src, 7, 30).unwrap();
    let pkg = package(&site, "Tools", &src);
    site.cli(&["package", "distribute", &pkg, "dp1", "dp2"]);
    site.wait_installed(&pkg, 2, 1);
    let other = dir.path().join("other");
    write_tree(&other, 8, 3).unwrap();
    let idle = package(&site, "Not sent", &other);
    // One download from dp1, of a file of known size.
    let (file, bytes) = common::files(&src).into_iter().next().unwrap();
    let size = bytes.len() as u64;
    let (status, body) = dps[0].download(&format!("{pkg}/{file}"));
    assert_eq!((status, body.len() as u64), (200, size));

    // The site's metrics need a token, any token.
    let (status, v) = http(reqwest::Method::GET, &format!("{}/metrics", site.url()), None);
    assert_eq!(status, 401, "{v}");
    let s = Scrape::of(&site.url(), Some(TOKEN));

    // Figures read from the database, against the API's own.
    let count = |class: &str| -> f64 {
        let (status, v) = http(
            reqwest::Method::GET,
            &format!("{}/AdminService/wmi/{class}/$count", site.url()),
            Some(TOKEN),
        );
        assert_eq!(status, 200);
        v.as_f64()
            .or_else(|| v.as_str().and_then(|t| t.trim().parse().ok()))
            .unwrap()
    };
    assert_eq!(s.get("pkgdist_site_packages", ""), count("SMS_Package"));
    assert_eq!(s.get("pkgdist_site_packages", ""), 2.0);
    assert_eq!(
        s.get("pkgdist_site_distribution_points", ""),
        count("SMS_DistributionPointInfo")
    );
    assert_eq!(s.get("pkgdist_site_sites", ""), count("SMS_Site"));
    let per_dp = site.get("SMS_DPStatusInfo");
    let api_sum = |field: &str| -> f64 {
        per_dp["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d[field].as_f64().unwrap())
            .sum()
    };
    assert_eq!(s.get("pkgdist_site_rows", "kind=installed"), api_sum("NumberInstalled"));
    assert_eq!(s.get("pkgdist_site_rows", "kind=installed"), 2.0);
    assert_eq!(s.get("pkgdist_site_rows", "kind=failed"), api_sum("NumberErrors"));
    assert_eq!(s.get("pkgdist_site_rows", "kind=targeted"), 2.0);
    let size_kib: f64 = [&pkg, &idle]
        .iter()
        .map(|p| {
            site.get(&format!("SMS_Package('{p}')"))["PackageSize"]
                .as_f64()
                .unwrap()
        })
        .sum();
    assert_eq!(s.get("pkgdist_site_package_bytes", ""), size_kib * 1024.0);
    // Jobs the site followed: one install per DP, each with an installed message.
    assert_eq!(s.get("pkgdist_site_jobs_total", "outcome=succeeded,work=install"), 2.0);
    let installed_msgs = site.statuses(&pkg).iter().filter(|m| m["MessageID"] == 2330).count();
    assert_eq!(installed_msgs, 2);
    assert_eq!(s.get("pkgdist_site_jobs_running", ""), 0.0);

    // Each DP: one install, and what it received is what the site sent it.
    let mut received = 0.0;
    for dp in &dps {
        let d = Scrape::of(&dp.url(), None);
        assert_eq!(
            d.get("pkgdist_dp_jobs_total", "kind=install,outcome=succeeded"),
            1.0,
            "{}",
            dp.name
        );
        assert_eq!(d.get("pkgdist_dp_versions", ""), 1.0);
        assert_eq!(d.get("pkgdist_chunks_rejected_total", ""), 0.0);
        let got = d.get("pkgdist_received_bytes_total", "");
        let transferred = site.last_success(&pkg, &dp.name)["BytesTransferred"].as_f64().unwrap();
        // Chunks (BytesTransferred) plus the manifest.
        assert!(
            got > transferred && transferred > 0.0,
            "{} received {got}, chunks {transferred}",
            dp.name
        );
        received += got;
    }
    let sent_to_dps = s.sum("pkgdist_http_sent_bytes_total", |l| {
        l.starts_with("route=/node/v1/chunks") || l.starts_with("route=/node/v1/manifests")
    });
    let sent: Vec<_> =
        s.0.iter()
            .filter(|((n, _), _)| n == "pkgdist_http_sent_bytes_total")
            .collect();
    assert_eq!(sent_to_dps, received, "{sent:?}");
    // dp1 counted the download, by its route template, and its bytes.
    let d1 = Scrape::of(&dps[0].url(), None);
    let downloads = d1.sum("pkgdist_http_requests_total", |l| {
        l.contains("route=/content/") && l.contains("status=200")
    });
    assert_eq!(downloads, 1.0);
    let download_bytes = d1.sum("pkgdist_http_sent_bytes_total", |l| l.starts_with("route=/content/"));
    assert_eq!(download_bytes, size as f64);
    // Requests with their status: the 401 above is counted under its route.
    assert_eq!(
        s.get("pkgdist_http_requests_total", "method=GET,route=/metrics,status=401"),
        1.0
    );
}
