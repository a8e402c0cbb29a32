//! TLS end to end (issue 15): a site, its DPs and a child site over mutually authenticated
//! TLS on 127.0.0.1, real processes; what each side refuses; plain HTTP off loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{Dp, Site, TOKEN, pkgdist, wait};
use pkgdist_node::tls::{Ca, Role};
use serde_json::{Value, json};
use tempfile::TempDir;

fn source(dir: &Path) {
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("setup.exe"), vec![7u8; 300_000]).unwrap();
    fs::write(dir.join("sub/readme.txt"), b"over TLS\n").unwrap();
}

fn token(site: &Site, dp: &str) -> String {
    site.cli_json(&["dp", "add", "--name", dp])["enrollment_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The DP's TLS files and its credential, as it keeps them.
struct DpKeys {
    identity: reqwest::Identity,
    credential: String,
}

fn dp_keys(dp: &Dp) -> DpKeys {
    let tls = dp.dir.join("tls");
    let pem = format!(
        "{}\n{}",
        fs::read_to_string(tls.join("dp-key.pem")).unwrap(),
        fs::read_to_string(tls.join("dp.pem")).unwrap()
    );
    let node: Value = serde_json::from_slice(&fs::read(dp.dir.join("node.json")).unwrap()).unwrap();
    DpKeys {
        identity: reqwest::Identity::from_pem(pem.as_bytes()).unwrap(),
        credential: node["credential"].as_str().unwrap().to_owned(),
    }
}

/// POST `body` to `url` with `client`: the status and text, or the connection's error.
fn post(client: &reqwest::Client, url: &str, bearer: &str, body: &Value) -> Result<(u16, String), String> {
    common::runtime().block_on(async {
        let r = client
            .post(url)
            .bearer_auth(bearer)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = r.status().as_u16();
        Ok((status, r.text().await.unwrap_or_default()))
    })
}

fn client(ca: &Path, identity: Option<reqwest::Identity>) -> reqwest::Client {
    let pem = fs::read(ca).unwrap();
    let mut b = reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()]);
    if let Some(id) = identity {
        b = b.identity(id);
    }
    b.build().unwrap()
}

/// A site, two DPs and a child site, all over https with certificates from the site's CA: the
/// content goes out and a client downloads it over https, verifying the DP against the CA.
/// Then what is refused: a DP credential without the DP's certificate, a certificate of
/// another CA, a certificate of the right CA that does not name the site, a removed DP's
/// certificate.
#[test]
fn site_dps_and_child_over_mutual_tls() {
    let dir = TempDir::new().unwrap();
    let site = Site::start_https(&dir.path().join("top"), "TP1", &[]);
    assert!(site.url().starts_with("https://"));
    let dp1 = Dp::start(&site, "dp1", Some(&token(&site, "dp1")), &[]);
    let dp2 = Dp::start(&site, "dp2", Some(&token(&site, "dp2")), &[]);
    // Each DP advertises https, and holds the CA and a certificate from it, privately.
    let dps = site.get("SMS_DistributionPointInfo")["value"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(dps.len(), 2);
    for d in &dps {
        assert!(d["Url"].as_str().unwrap().starts_with("https://127.0.0.1:"), "{d}");
    }
    for dp in [&dp1, &dp2] {
        use std::os::unix::fs::PermissionsExt as _;
        for f in ["ca.pem", "dp.pem", "dp-key.pem"] {
            let mode = fs::metadata(dp.dir.join("tls").join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{}/tls/{f} is {mode:o}", dp.name);
        }
        let chain = fs::read_to_string(dp.dir.join("tls/dp.pem")).unwrap();
        let leaf = &pkgdist_node::tls::certs(&chain, "chain").unwrap()[0];
        assert_eq!(Role::of(leaf), vec![Role::Dp(dp.name.clone())]);
    }

    let src = dir.path().join("src");
    source(&src);
    let pkg = site.cli_json(&["package", "create", "--name", "TLS", "--source", src.to_str().unwrap()])["PackageID"]
        .as_str()
        .unwrap()
        .to_owned();
    site.cli(&["package", "distribute", &pkg, "dp1", "dp2"]);
    site.wait_installed(&pkg, 2, 1);

    // A client downloads over https and checks the DP against the site's CA.
    let https_dp = format!("https://{}", dp1.daemon.addr);
    let out = dir.path().join("out");
    let o = pkgdist()
        .arg("--ca")
        .arg(site.ca())
        .args(["fetch", &pkg, "--dp", &https_dp])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read(out.join("sub/readme.txt")).unwrap(), b"over TLS\n");
    // Without the CA, the DP's certificate is not trusted.
    let o = pkgdist()
        .args(["fetch", &pkg, "--dp", &https_dp])
        .arg(dir.path().join("out2"))
        .output()
        .unwrap();
    assert!(!o.status.success(), "a DP checked against nothing was trusted");

    // Nothing the site or a DP wrote is readable by others, TLS files included.
    common::assert_private(&site.dir.join("site"), &["site.toml"]);
    for dp in [&dp1, &dp2] {
        common::assert_private(&dp.dir, &[]);
    }
    // No private key is in the database.
    for f in ["site.db", "site.db-wal"] {
        let bytes = fs::read(site.dir.join("site").join(f)).unwrap_or_default();
        assert!(!bytes.windows(11).any(|w| w == b"PRIVATE KEY"), "a private key in {f}");
    }

    // The site takes DP requests only with the DP's certificate.
    let hello = format!("{}/node/v1/hello", site.url());
    let body = json!({"url": format!("https://{}", dp1.daemon.addr)});
    let keys = dp_keys(&dp1);
    let (status, text) = post(&client(&site.ca(), None), &hello, &keys.credential, &body).unwrap();
    assert_eq!(status, 401, "a DP credential without its certificate: {text}");
    assert!(text.contains("certificate"), "{text}");
    let (status, text) = post(
        &client(&site.ca(), Some(keys.identity)),
        &hello,
        &keys.credential,
        &body,
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    // dp2's certificate with dp1's credential: refused too.
    let (status, _) = post(
        &client(&site.ca(), Some(dp_keys(&dp2).identity)),
        &hello,
        &keys.credential,
        &body,
    )
    .unwrap();
    assert_eq!(status, 401, "another DP's certificate");

    // The DP takes jobs only from its site's certificate: one of another CA fails the
    // handshake, one of the right CA naming a DP is refused.
    let jobs = format!("https://{}/node/v1/jobs", dp1.daemon.addr);
    let job = json!({"id": "x"});
    let stranger_dir = TempDir::new().unwrap();
    let stranger = Ca::open_or_create(stranger_dir.path(), "another CA").unwrap();
    let forged = stranger
        .issue_own(&["127.0.0.1".into()], &Role::Site("TP1".into()))
        .unwrap();
    let forged_id =
        reqwest::Identity::from_pem(format!("{}\n{}", forged.key_pem, forged.chain_pem).as_bytes()).unwrap();
    let refused = post(&client(&site.ca(), Some(forged_id)), &jobs, "whatever", &job);
    match refused {
        Err(_) => {}
        Ok((status, text)) => assert!(
            status == 401 || status == 400,
            "another CA's certificate: {status} {text}"
        ),
    }
    let real_ca = Ca::open_or_create(&site.dir.join("site/tls"), "unused").unwrap();
    let as_dp = real_ca
        .issue_own(&["127.0.0.1".into()], &Role::Dp("dp9".into()))
        .unwrap();
    let as_dp = reqwest::Identity::from_pem(format!("{}\n{}", as_dp.key_pem, as_dp.chain_pem).as_bytes()).unwrap();
    let (status, text) = post(&client(&site.ca(), Some(as_dp)), &jobs, "whatever", &job).unwrap();
    assert_eq!(status, 401, "a DP's certificate on the job route: {text}");
    assert!(text.contains("site's certificate"), "{text}");

    // A DP's certificate is from the right CA and for the right host, but it is no site's:
    // the CLI does not take a DP for the site.
    let o = pkgdist()
        .arg("--ca")
        .arg(site.ca())
        .args([
            "--site",
            &format!("https://{}", dp1.daemon.addr),
            "--token",
            TOKEN,
            "package",
            "list",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success(), "the CLI took a DP for the site");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not one of a pkgdist site"), "{err}");

    // A certified DP cannot enroll again with its credential alone (that would drop the
    // certificate requirement and move it), even over https with a certificate request.
    let (_key, csr) = pkgdist_node::tls::key_and_request("thief").unwrap();
    let (status, text) = post(
        &client(&site.ca(), None),
        &format!("{}/node/v1/enroll", site.url()),
        "unused",
        &json!({
            "enrollment_token": "pkgd_not_a_token",
            "credential": keys.credential,
            "url": "https://203.0.113.9:8471",
            "csr": csr,
        }),
    )
    .unwrap();
    assert_eq!(status, 401, "{text}");
    let still = site.get("SMS_DistributionPointInfo?$filter=Name%20eq%20'dp1'")["value"][0]["Url"].clone();
    assert_eq!(still, format!("https://{}", dp1.daemon.addr), "the DP was not moved");

    // Removing dp2 makes its certificate useless at once.
    let keys2 = dp_keys(&dp2);
    site.cli(&["dp", "remove", "dp2", "--keep-content"]);
    let (status, _) = post(
        &client(&site.ca(), Some(keys2.identity)),
        &hello,
        &keys2.credential,
        &body,
    )
    .unwrap();
    assert_eq!(status, 401, "a removed DP's certificate and credential");

    // A child site joins over https (pinning the parent's CA) and reports up with its
    // certificate.
    let child = site.add_child(&dir.path().join("child"), "CH1");
    let _cdp = child.add_dp("child-dp");
    wait(Duration::from_secs(60), "the child's DP seen at the top", || {
        let names: Vec<String> = site.get("SMS_DistributionPointInfo")["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["Name"].as_str().unwrap_or_default().to_owned())
            .collect();
        names
            .contains(&"child-dp".to_owned())
            .then_some(())
            .ok_or(format!("{names:?}"))
    });
    let link: Value = serde_json::from_slice(&fs::read(child.dir.join("site/parent.json")).unwrap()).unwrap();
    assert_eq!(link["tls"], true, "{link}");
    let chain = fs::read_to_string(child.dir.join("site/tls/parent.pem")).unwrap();
    let leaf = &pkgdist_node::tls::certs(&chain, "chain").unwrap()[0];
    assert_eq!(Role::of(leaf), vec![Role::ChildSite("CH1".into())]);
    // The child's credential without its certificate is refused by the parent.
    let (status, text) = post(
        &client(&site.ca(), None),
        &format!("{}/link/v1/report", site.url()),
        link["credential"].as_str().unwrap(),
        &json!({}),
    )
    .unwrap();
    assert_eq!(status, 401, "{text}");
}

/// An operator's own CA (an intermediate of the company's PKI) instead of the one the site
/// makes: the site makes none, its certificate and the DPs' come from the given CA, and
/// tokens pin it.
#[test]
fn an_operators_ca_instead_of_the_sites_own() {
    let dir = TempDir::new().unwrap();
    let corp = dir.path().join("corp");
    let ca = Ca::open_or_create(&corp, "Corp issuing CA").unwrap();
    let data = dir.path().join("site");
    fs::create_dir_all(&data).unwrap();
    fs::write(
        data.join("site.toml"),
        format!(
            "site-code = \"OP1\"\n[distribution]\npoll-ms = 100\n[tls]\nca-cert = {:?}\nca-key = {:?}\n",
            corp.join("ca.pem"),
            corp.join("ca-key.pem")
        ),
    )
    .unwrap();
    let mut site = Site::start_https(dir.path(), "OP1", &[]);
    site.ca_file = Some(corp.join("ca.pem"));
    assert!(!data.join("tls/ca.pem").exists(), "the site made a CA of its own");
    let t = token(&site, "dp1");
    assert_eq!(
        t.rsplit_once('.').unwrap().1,
        ca.pin(),
        "the token pins the operator's CA"
    );
    let dp = Dp::start(&site, "dp1", Some(&t), &[]);
    let chain = fs::read_to_string(dp.dir.join("tls/dp.pem")).unwrap();
    let certs = pkgdist_node::tls::certs(&chain, "chain").unwrap();
    assert_eq!(
        pkgdist_node::tls::fingerprint(&certs[1]),
        ca.pin(),
        "issued by the operator's CA"
    );
    // A client trusting only the operator's CA reaches the site.
    let (status, body) = common::http_with(
        &client(&corp.join("ca.pem"), None),
        reqwest::Method::GET,
        &format!("{}/AdminService/wmi/SMS_Site", site.url()),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
}

/// A DP whose token pins another CA refuses to enroll, saying why; so does one whose token
/// has no pin, for an https:// site.
#[test]
fn a_token_pinning_another_ca_is_refused() {
    let dir = TempDir::new().unwrap();
    let site = Site::start_https(dir.path(), "PN1", &[]);
    let good = token(&site, "dp1");
    let (secret, _pin) = good.rsplit_once('.').unwrap();
    for (given, says) in [
        (format!("{secret}.{}", "ab".repeat(32)), "pins"),
        (secret.to_owned(), "no CA pin"),
    ] {
        let o = pkgdist()
            .args(["dp", "run", "--listen", "127.0.0.1:0", "--site", &site.url()])
            .arg("--data")
            .arg(dir.path().join("dp1"))
            .args(["--enrollment-token", &given])
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{err}");
    }
    // The token was not spent: the right one still enrolls.
    let dp = Dp::start(&site, "dp1", Some(&good), &[]);
    assert!(dp.dir.join("tls/dp.pem").exists());
}

/// Off loopback, plain HTTP is refused unless allowed: the site answers it 400 naming
/// https, and a DP enrolled over http will not start there without --allow-plain-http.
#[test]
fn plain_http_off_loopback_is_refused_unless_allowed() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("site");
    fs::create_dir_all(&data).unwrap();
    let start = |allow: bool| {
        let toml = if allow {
            "site-code = \"PL1\"\n[tls]\nallow-plain-http = true\n"
        } else {
            "site-code = \"PL1\"\n"
        };
        fs::write(data.join("site.toml"), toml).unwrap();
        let mut cmd = pkgdist();
        cmd.args(["site", "run", "--listen", "0.0.0.0:0", "--data"])
            .arg(&data)
            .arg("--ready-file")
            .arg(dir.path().join("ready.json"))
            .env("PKGDIST_BOOTSTRAP_TOKEN", TOKEN);
        pkgdist_testkit::process::Daemon::start(cmd, &dir.path().join("ready.json"), &dir.path().join("site.log"))
            .unwrap()
    };
    let mut daemon = start(false);
    let port = daemon.addr.rsplit_once(':').unwrap().1.to_owned();
    let (status, body) = common::http(
        reqwest::Method::GET,
        &format!("http://127.0.0.1:{port}/AdminService/wmi/SMS_Site"),
        Some(TOKEN),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("https://"), "{body}");
    let ca = data.join("tls/ca.pem");
    let (status, body) = common::http_with(
        &client(&ca, None),
        reqwest::Method::GET,
        &format!("https://127.0.0.1:{port}/AdminService/wmi/SMS_Site"),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    daemon.stop();
    let mut daemon = start(true);
    let port = daemon.addr.rsplit_once(':').unwrap().1.to_owned();
    let (status, body) = common::http(
        reqwest::Method::GET,
        &format!("http://127.0.0.1:{port}/AdminService/wmi/SMS_Site"),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "allowed: {body}");
    assert!(
        fs::read_to_string(dir.path().join("site.log"))
            .unwrap()
            .contains("allow-plain-http")
    );

    // A DP enrolled over http, listening on every address.
    let site_url = format!("http://127.0.0.1:{port}");
    let out = pkgdist()
        .args([
            "--site", &site_url, "--token", TOKEN, "--json", "dp", "add", "--name", "dpp",
        ])
        .output()
        .unwrap();
    let t = serde_json::from_slice::<Value>(&out.stdout).unwrap()["enrollment_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let dp_run = |extra: &[&str]| {
        let mut c = pkgdist();
        c.args(["dp", "run", "--listen", "0.0.0.0:0", "--site", &site_url])
            .args(["--advertise-url", "http://dp.branch.example:8471", "--data"])
            .arg(dir.path().join("dpp"))
            .args(["--enrollment-token", &t, "--ready-file"])
            .arg(dir.path().join("dpp.json"))
            .args(extra);
        c
    };
    let o = dp_run(&[]).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--allow-plain-http"), "{err}");
    let mut dp = pkgdist_testkit::process::Daemon::start(
        dp_run(&["--allow-plain-http"]),
        &dir.path().join("dpp.json"),
        &dir.path().join("dpp.log"),
    )
    .unwrap();
    dp.stop();
    daemon.stop();

    // Clients refuse to send a secret in clear to another machine, before any connection
    // (192.0.2.1 is a documentation address: nothing is sent there).
    let remote = "http://192.0.2.1:8470";
    let refused = |args: &[&str]| {
        let o = pkgdist().args(args).output().unwrap();
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(err.contains("plain HTTP to another machine"), "{args:?}: {err}");
        assert!(err.contains("allow-plain-http"), "{err}");
    };
    refused(&["--site", remote, "--token", TOKEN, "package", "list"]);
    let dp_dir = dir.path().join("dp-remote");
    let site_dir = dir.path().join("child-remote");
    refused(&[
        "dp",
        "run",
        "--listen",
        "127.0.0.1:0",
        "--site",
        remote,
        "--enrollment-token",
        "t.x",
        "--data",
        dp_dir.to_str().unwrap(),
    ]);
    refused(&[
        "site",
        "run",
        "--site-code",
        "CR1",
        "--listen",
        "127.0.0.1:0",
        "--parent",
        remote,
        "--enrollment-token",
        "t.x",
        "--data",
        site_dir.to_str().unwrap(),
    ]);
}

/// Whoever reads the site's database (a backup, a replica) holds nothing that a DP accepts as
/// its site: every token-like string in the database file and its WAL, tried as the bearer
/// token on a DP's job route, is refused. (The DP enrolled over http, where the bearer token
/// is the whole check; over https the site's certificate is needed too, and its key is not
/// in the database either.)
#[test]
fn nothing_in_the_database_authenticates_as_the_site() {
    let dir = TempDir::new().unwrap();
    let site = Site::start(dir.path());
    let dp = site.add_dp("dp1");
    let src = dir.path().join("src");
    source(&src);
    let pkg = site.cli_json(&["package", "create", "--name", "db", "--source", src.to_str().unwrap()])["PackageID"]
        .as_str()
        .unwrap()
        .to_owned();
    site.cli(&["package", "distribute", &pkg, "dp1"]);
    site.wait_installed(&pkg, 1, 1);
    let mut candidates = std::collections::BTreeSet::new();
    for f in ["site.db", "site.db-wal"] {
        let bytes = fs::read(site.dir.join("site").join(f)).unwrap_or_default();
        let is_token_byte = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-';
        for run in bytes.split(|b| !is_token_byte(b)) {
            if run.len() >= 16 {
                candidates.insert(String::from_utf8(run.to_vec()).unwrap());
            }
        }
    }
    assert!(candidates.len() > 10, "the database was read: {candidates:?}");
    let jobs = format!("{}/node/v1/jobs", dp.url());
    let http = reqwest::Client::new();
    for c in &candidates {
        let (status, text) = post(&http, &jobs, c, &json!({})).unwrap();
        assert_eq!(
            status, 401,
            "{c:?} from the database was taken as the site's token: {text}"
        );
    }
    // What the site presents is derived from its node key (outside the database), so the
    // check above can fail: the token derived from it is taken.
    let node_key = fs::read_to_string(site.dir.join("site/node-key")).unwrap();
    assert!(!candidates.contains(node_key.trim()), "the node key is in the database");
    let key: Vec<u8> = (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&node_key.trim()[i..i + 2], 16).unwrap())
        .collect();
    let node: Value = serde_json::from_slice(&fs::read(dp.dir.join("node.json")).unwrap()).unwrap();
    let credential_hash = blake3::hash(node["credential"].as_str().unwrap().as_bytes()).to_hex();
    let mac = blake3::keyed_hash(
        &key.try_into().unwrap(),
        format!("site-to-dp\n{credential_hash}").as_bytes(),
    );
    let (status, text) = post(&http, &jobs, &format!("pkgs_{}", mac.to_hex()), &json!({})).unwrap();
    assert_eq!(
        status, 400,
        "the site's real token passes authentication (the body is no job): {text}"
    );
}

/// The site takes each DP enrolled over https only with the certificate issued to it: a server
/// at a DP's address presenting another DP's certificate (from the same CA, for the same host)
/// is refused at the handshake, saying so, and nothing is sent to it.
#[test]
fn a_dp_cannot_pass_for_another_dp() {
    let dir = TempDir::new().unwrap();
    let site = Site::start_https(dir.path(), "PD1", &[]);
    let dp1 = Dp::start(&site, "dp1", Some(&token(&site, "dp1")), &[]);
    let mut dp2 = Dp::start(&site, "dp2", Some(&token(&site, "dp2")), &[]);
    let src = dir.path().join("src");
    source(&src);
    let pkg = site.cli_json(&[
        "package",
        "create",
        "--name",
        "pinned",
        "--source",
        src.to_str().unwrap(),
    ])["PackageID"]
        .as_str()
        .unwrap()
        .to_owned();
    // dp2 goes; at its address, a server with dp1's certificate and key (what a DP in the
    // path would present).
    let addr = dp2.daemon.addr.clone();
    dp2.daemon.stop();
    let identity = pkgdist_node::tls::Identity::load(&dp1.dir.join("tls"), "dp")
        .unwrap()
        .unwrap();
    let ca = pkgdist_node::tls::certs(&fs::read_to_string(site.ca()).unwrap(), "ca").unwrap();
    let config = pkgdist_node::tls::server_config(&identity, &ca).unwrap();
    // Its own threads: the server runs while this thread drives the site.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        let local = listener.local_addr().unwrap();
        let transport = pkgdist_node::listen::Transport::tls(config, local, false);
        let limits = pkgdist_node::listen::Limits::for_open_files(1024);
        let _ = pkgdist_node::listen::serve_with(listener, Default::default(), limits, transport, async {
            let _ = stopped.await;
        })
        .await;
    });
    site.cli(&["package", "distribute", &pkg, "dp2"]);
    wait(Duration::from_secs(30), "dp2's row refused on the certificate", || {
        let rows = site.dp_rows(&pkg);
        let msg = rows[0]["LastMessage"].as_str().unwrap_or_default().to_owned();
        (rows[0]["State"] != 0 && msg.contains("certificate"))
            .then_some(())
            .ok_or(format!("{rows:#?}"))
    });
    let _ = stop.send(());
}
