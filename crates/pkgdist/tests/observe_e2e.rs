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
use pkgdist_testkit::webdriver::Browser;
use serde_json::json;
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

    // Made-up methods share one label, however many a client invents.
    for m in ["FROB", "PROPFIND", "XYZZY"] {
        let (status, _) = http(
            reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
            &format!("{}/healthz", dps[0].url()),
            None,
        );
        assert_eq!(status, 405);
    }
    let d = Scrape::of(&dps[0].url(), None);
    assert_eq!(
        d.get("pkgdist_http_requests_total", "method=other,route=/healthz,status=405"),
        3.0
    );
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
        // Chunks and the manifest: BytesTransferred counts both, as the DP's counter does.
        assert!(
            got == transferred && transferred > 0.0,
            "{} received {got}, chunks {transferred}",
            dp.name
        );
        received += got;
    }
    // The libraries' sizes are counted in the background after a first scrape: both DPs hold
    // the same content, no more than they received.
    let sizes: Vec<(f64, f64, f64)> = dps
        .iter()
        .map(|dp| {
            wait(Duration::from_secs(20), "the library counted", || {
                let d = Scrape::of(&dp.url(), None);
                let chunks = d.get("pkgdist_library_chunks", "");
                let got = (
                    d.get("pkgdist_library_bytes", ""),
                    d.get("pkgdist_received_bytes_total", ""),
                );
                (chunks > 0.0)
                    .then_some((chunks, got.0, got.1))
                    .ok_or("not yet".to_owned())
            })
        })
        .collect();
    assert_eq!(sizes[0].0, sizes[1].0, "{sizes:?}");
    assert!(
        sizes
            .iter()
            .all(|(_, bytes, received)| *bytes > 0.0 && bytes <= received),
        "{sizes:?}"
    );
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

/// The example Grafana dashboard asks only for metrics that exist (as docs/metrics.md lists
/// them, which the scrapes above hold to what the daemons serve).
#[test]
fn the_grafana_dashboard_uses_documented_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let doc = fs::read_to_string(root.join("metrics.md")).unwrap();
    let dash: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root.join("grafana-dashboard.json")).unwrap()).unwrap();
    let mut seen = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("pkgdist_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let base = name.strip_suffix("_total").unwrap_or(&name);
                assert!(
                    doc.contains(&format!("`{base}`")),
                    "the dashboard's {name} is not a pkgdist metric"
                );
                seen += 1;
            }
        }
    }
    assert!(seen >= 16, "{seen}");
}

const PAGE: Duration = Duration::from_secs(15);

/// Where the console's screenshots go: docs/console/ with `PKGDIST_UPDATE_SCREENSHOTS=1`
/// (to refresh docs/console.md's pictures), else a scratch folder.
fn screenshot_dir(scratch: &Path) -> std::path::PathBuf {
    if std::env::var_os("PKGDIST_UPDATE_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/console")
    } else {
        scratch.join("screenshots")
    }
}

/// Opens `#/<route>` and waits for the page to say it has rendered its data, with no error.
fn open(b: &Browser, route: &str, page: &str) {
    b.exec("location.hash = arguments[0]", json!([format!("#/{route}")]))
        .unwrap();
    rendered(b, page);
}

/// Waits for `page` to have rendered its data, and checks that no error is shown.
fn rendered(b: &Browser, page: &str) {
    b.wait_for(&format!("body[data-ready='{page}']"), PAGE).unwrap();
    assert!(
        !b.displayed("#error").unwrap(),
        "{page}: {}",
        b.text("#error").unwrap_or_default()
    );
    let violations = accessibility_violations(b);
    assert!(
        violations.is_empty(),
        "accessibility of {page}:\n{}",
        violations.join("\n")
    );
}

/// axe-core's WCAG 2 A and AA checks on the page as it is now: every violation, as text.
/// (The script is put in by WebDriver, which the page's CSP does not govern.)
fn accessibility_violations(b: &Browser) -> Vec<String> {
    let axe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/a11y/node_modules/axe-core/axe.min.js");
    let axe = fs::read_to_string(&axe).unwrap_or_else(|e| panic!("{}: {e}: run scripts/test-deps", axe.display()));
    b.exec(&format!("{axe}\n;return true;"), json!([])).unwrap();
    let found = b
        .exec_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
               .then(r => done(r.passes.length < 10 ? ['axe checked almost nothing: ' + r.passes.length + ' rules passed']
                 : r.violations.map(v => v.id + ': ' + v.help + ' at ' + v.nodes.map(n => n.target.join(' ')).join(', '))))
               .catch(e => done(['axe failed: ' + e]));",
            json!([]),
        )
        .unwrap();
    serde_json::from_value(found).unwrap()
}

/// Types into a filter box and waits for the page to render what it selects.
fn filter(b: &Browser, input: &str, text: &str, page: &str) {
    b.type_into(input, text).unwrap();
    b.wait_until(PAGE, "the filter applied", |b| {
        Ok(b.find_all(&format!("body[data-ready='{page}']"))?.first().map(drop))
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    rendered(b, page);
}

fn sign_in(b: &Browser, site: &Site, token: &str) {
    b.goto(&format!("{}/console/", site.url())).unwrap();
    b.type_into("#token", token).unwrap();
    b.click("#signin").unwrap();
}

fn chart(b: &Browser, id: &str, kind: &str) -> Option<u64> {
    b.attr(&format!("#{id}"), &format!("data-{kind}"))
        .unwrap()
        .and_then(|v| v.parse().ok())
}

#[test]
fn console_shows_content_moving_and_acts_by_role() {
    let dir = TempDir::new().unwrap();
    let site = Site::start(dir.path());
    // Two DPs registered but not started: their rows wait (in progress) until they enroll.
    let tokens: Vec<String> = ["dp1", "dp2"]
        .iter()
        .map(|n| {
            site.cli_json(&["dp", "add", "--name", n])["enrollment_token"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let src = dir.path().join("src");
    write_tree(&src, 3, 12).unwrap();
    let pkg = package(&site, "Office 365", &src);
    site.cli(&["group", "create", "Branch"]);
    site.cli(&["package", "distribute", &pkg, "dp1", "dp2"]);

    // Both rows wait for their DPs to enroll: queued, none running.
    let s = Scrape::of(&site.url(), Some(TOKEN));
    assert_eq!(s.get("pkgdist_site_jobs_queued", ""), 2.0);
    assert_eq!(s.get("pkgdist_site_jobs_running", ""), 0.0);

    let b = Browser::start(1280, 860).unwrap();
    // The page and its script carry a policy that forbids inline script and framing.
    let (status, _) = http(reqwest::Method::GET, &format!("{}/console/", site.url()), None);
    assert_eq!(status, 200);
    let csp = runtime().block_on(async {
        let r = reqwest::get(format!("{}/console/app.js", site.url())).await.unwrap();
        r.headers()["content-security-policy"].to_str().unwrap().to_owned()
    });
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );

    // A wrong token is refused, and says so.
    sign_in(&b, &site, "not-a-token-at-all-0000");
    b.wait_until(PAGE, "the sign-in error", |b| {
        let t = b.text("#signin-error")?;
        Ok((!t.trim().is_empty()).then_some(t))
    })
    .unwrap();
    assert!(
        !b.displayed("a[href='#/packages']").unwrap(),
        "signed in with a wrong token"
    );
    assert!(!b.displayed("#signout").unwrap(), "signed in with a wrong token");

    // The administrator signs in; the package page shows both DPs waiting.
    sign_in(&b, &site, TOKEN);
    b.wait_until(PAGE, "signed in", |b| Ok(b.displayed("#signout")?.then_some(())))
        .unwrap();
    // The overview lists both rows as needing attention: their DPs never enrolled.
    open(&b, "overview", "overview");
    assert_eq!(b.find_all("#attention tr[data-nal]").unwrap().len(), 2);
    assert!(b.text("#attention").unwrap().contains("never enrolled"));
    open(&b, &format!("package/{pkg}"), "package");
    assert_eq!(chart(&b, "package-chart", "installed"), Some(0));
    assert_eq!(chart(&b, "package-chart", "inprogress"), Some(2));
    assert_eq!(b.find_all("#dp-table tr[data-nal]").unwrap().len(), 2);
    // Marks this page load: a reload would lose it.
    b.exec("window.__sameLoad = true", json!([])).unwrap();

    // The DPs start and install; the chart follows without a reload.
    let dps: Vec<Dp> = ["dp1", "dp2"]
        .iter()
        .zip(&tokens)
        .map(|(n, t)| Dp::start(&site, n, Some(t), &[]))
        .collect();
    site.wait_installed(&pkg, 2, 1);
    // The page re-reads every second: it shows what the API shows within 2 s (4 allowed
    // here for a loaded machine, counted from when this test saw the API change).
    b.wait_until(Duration::from_secs(4), "the chart at 2 installed", |b| {
        Ok((chart(b, "package-chart", "installed") == Some(2)).then_some(()))
    })
    .unwrap();
    assert_eq!(chart(&b, "package-chart", "inprogress"), Some(0));
    assert_eq!(
        b.exec("return window.__sameLoad === true", json!([])).unwrap(),
        json!(true)
    );
    let states: Vec<String> = (0..2)
        .map(|i| {
            b.attr(&format!("#dp-table tr[data-nal]:nth-of-type({})", i + 1), "data-state")
                .unwrap()
                .unwrap()
        })
        .collect();
    assert!(b.text("#dp-table").unwrap().contains("INSTALLED"), "{states:?}");

    // Redistribute on dp1 adds a status message (2357, queued), in the API and on the page.
    let before = site.statuses(&pkg).len();
    let shown_before = b.find_all("#messages [data-message-id]").unwrap().len();
    let dp1_nal = site.get("SMS_DistributionPointInfo?$filter=Name%20eq%20'dp1'")["value"][0]["NALPath"]
        .as_str()
        .unwrap()
        .to_owned();
    let row = format!(
        "#dp-table tr[data-nal='{}']",
        dp1_nal.replace('\\', "\\\\").replace('\'', "\\'")
    );
    b.click(&format!("{row} [data-action='redistribute']")).unwrap();
    wait(
        Duration::from_secs(20),
        "a status message for the redistribution",
        || {
            let all = site.statuses(&pkg);
            let queued = all.iter().skip(before).any(|m| m["MessageID"] == 2357);
            queued.then_some(()).ok_or(format!("{all:#?}"))
        },
    );
    b.wait_until(PAGE, "the new message on the page", |b| {
        let n = b.find_all("#messages [data-message-id]")?.len();
        Ok((n > shown_before || b.find_all("#messages [data-message-id='2357']")?.len() > 1).then_some(()))
    })
    .unwrap();
    site.wait_installed(&pkg, 2, 1);

    // Pictures for docs/console.md, once everything is installed.
    let shots = screenshot_dir(dir.path());
    b.wait_until(PAGE, "the chart back at 2 installed", |b| {
        Ok((chart(b, "package-chart", "installed") == Some(2)).then_some(()))
    })
    .unwrap();
    b.screenshot(&shots.join("package.png")).unwrap();
    assert!(
        !b.find_all("[data-action='refresh']").unwrap().is_empty(),
        "no Refresh for an administrator"
    );
    open(&b, "overview", "overview");
    assert_eq!(chart(&b, "overview-chart", "installed"), Some(2));
    b.screenshot(&shots.join("overview.png")).unwrap();
    open(&b, "dps", "dps");
    assert!(b.body_text().contains("dp2"));
    b.screenshot(&shots.join("dps.png")).unwrap();

    // Every page and its filters, through the real OData parser: no error anywhere.
    open(&b, "packages", "packages");
    filter(&b, "#package-filter", "office", "packages");
    assert!(b.text("#package-table").unwrap().contains(&pkg));
    open(&b, "messages", "messages");
    filter(&b, "#msg-package", &pkg, "messages");
    filter(&b, "#msg-dp", "dp1", "messages");
    assert!(!b.find_all("#messages [data-message-id]").unwrap().is_empty());
    open(&b, "dps", "dps");
    filter(&b, "#dp-filter", "dp1", "dps");
    assert!(!b.text("#dp-list").unwrap().contains("dp2"));
    b.click("#dp-list a").unwrap();
    rendered(&b, "dp");
    assert_eq!(b.find_all("#availability td[data-value]").unwrap().len(), 168);
    open(&b, "groups", "groups");
    open(&b, "sites", "sites");
    assert_eq!(b.find_all("#site-tree li[data-site='PS1']").unwrap().len(), 1);
    open(&b, "settings", "settings");

    // A read-only token sees every page and no action anywhere.
    let ro = site.cli_json(&["token", "create", "--name", "analyst", "--role", "read-only"])["Token"]
        .as_str()
        .unwrap()
        .to_owned();
    b.click("#signout").unwrap();
    b.wait_until(PAGE, "signed out", |b| Ok(b.displayed("#token")?.then_some(())))
        .unwrap();
    // By keyboard this time: the token, then Enter.
    b.type_into("#token", &format!("{ro}\u{E007}")).unwrap();
    b.wait_until(PAGE, "signed in", |b| Ok(b.displayed("#signout")?.then_some(())))
        .unwrap();
    for (route, page) in [
        ("overview".to_owned(), "overview"),
        ("packages".to_owned(), "packages"),
        (format!("package/{pkg}"), "package"),
        ("dps".to_owned(), "dps"),
        ("groups".to_owned(), "groups"),
        ("sites".to_owned(), "sites"),
        ("messages".to_owned(), "messages"),
        ("settings".to_owned(), "settings"),
    ] {
        open(&b, &route, page);
        let actions = b.find_all(".action").unwrap();
        assert!(
            actions.is_empty(),
            "{} action controls on {route} for a read-only token",
            actions.len()
        );
    }
    drop(dps);
}
