//! The management API in process: a real site (SQLite file, content library on disk) on
//! 127.0.0.1:0, driven over HTTP exactly as a script would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

struct Site {
    state: pkgdist_site::AppState,
    url: String,
    token: String,
    /// The test's folder: sources are made in it, the site's data is in `data` below it.
    dir: TempDir,
    /// The site's data folder (no source may be in it).
    data: PathBuf,
    http: reqwest::Client,
}

async fn start() -> Site {
    start_on(None).await
}

/// A site on `database` (a PostgreSQL URL), or on SQLite in its folder.
async fn start_on(database: Option<String>) -> Site {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("site");
    let (mut cfg, created) = pkgdist_site::SiteConfig::load_or_init(&data, Some("PS1")).unwrap();
    assert!(created);
    if let Some(url) = database {
        cfg.database = url;
    }
    // Sources live in the test's folder.
    cfg.allowed_source_roots = Some(vec![dir.path().to_owned()]);
    let state = pkgdist_site::open(&data, &cfg).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(pkgdist_site::serve(state.clone(), listener, std::future::pending()));
    let token = std::fs::read_to_string(data.join("bootstrap-token"))
        .unwrap()
        .trim()
        .to_owned();
    Site {
        state,
        url,
        token,
        dir,
        data,
        http: reqwest::Client::new(),
    }
}

impl Site {
    async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut r = self
            .http
            .request(method, format!("{}/AdminService/wmi/{path}", self.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
    /// GET; an instance (a path with a key) as the entity, out of the one-element collection
    /// the route answers (`compatibility_envelopes_and_keys` asserts the envelope itself).
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (st, v) = self
            .req(reqwest::Method::GET, path, None, Some(&self.token.clone()))
            .await;
        (st, pkgdist_testkit::wmi::entity(path, v))
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.req(reqwest::Method::POST, path, Some(body), Some(&self.token.clone()))
            .await
    }
    async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.req(reqwest::Method::PATCH, path, Some(body), Some(&self.token.clone()))
            .await
    }
    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.req(reqwest::Method::DELETE, path, None, Some(&self.token.clone()))
            .await
    }
    /// `value` of a list.
    async fn list(&self, path: &str) -> Vec<Value> {
        let (st, v) = self.get(path).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v["value"].as_array().unwrap().clone()
    }
    /// An instance of every class: two DPs in a group with a package, a package without a
    /// source, a read-only token. Returns the package with a source.
    async fn estate(&self) -> String {
        let (dp1, dp2) = (self.dp("dp1").await, self.dp("dp2").await);
        let a = self.package("SMS_Package", "a").await;
        let (st, _) = self.post("SMS_DriverPackage", json!({"Name": "no source"})).await;
        assert_eq!(st, StatusCode::CREATED);
        let (_, g) = self.post("SMS_DistributionPointGroup", json!({"Name": "all"})).await;
        let gid = g["GroupID"].as_str().unwrap().to_owned();
        let m = |name: &str| format!("SMS_DistributionPointGroup{}/AdminService.{name}", key(&gid));
        let (st, _) = self
            .post(&m("AddDistributionPoints"), json!({"DPNALPath": [dp1, dp2]}))
            .await;
        assert_eq!(st, StatusCode::CREATED);
        let (st, _) = self.post(&m("AddPackages"), json!({"PackageIDs": [a]})).await;
        assert_eq!(st, StatusCode::CREATED);
        let (st, _) = self
            .post(
                "PKGDIST_AdminToken",
                json!({"Name": "reader", "Role": "ReadOnlyAnalyst"}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED);
        a
    }

    fn source(&self, name: &str) -> PathBuf {
        let src = self.dir.path().join(name);
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(
            src.join("setup.exe"),
            pkgdist_testkit::generate::Rng::new(1).bytes(300_000),
        )
        .unwrap();
        std::fs::write(src.join("sub/readme.txt"), b"hello").unwrap();
        src
    }
    /// A package with a source, and two DPs.
    async fn package(&self, class: &str, name: &str) -> String {
        let src = self.source(name);
        let (st, p) = self
            .post(class, json!({"Name": name, "PkgSourcePath": src.to_str().unwrap()}))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{p}");
        p["PackageID"].as_str().unwrap().to_owned()
    }
    async fn dp(&self, name: &str) -> String {
        let (st, d) = self.post("SMS_DistributionPointInfo", json!({"Name": name})).await;
        assert_eq!(st, StatusCode::CREATED, "{d}");
        d["NALPath"].as_str().unwrap().to_owned()
    }
}

/// Asserts an error answer: HTTP status, the error's code, a non-zero ReturnValue.
fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert_ne!(got.1["ReturnValue"], 0);
    assert_eq!(got.1["ExtendedStatus"]["__CLASS"], "SMS_ExtendedStatus");
    assert!(got.1["ExtendedStatus"]["ErrorCode"].as_u64().unwrap() > 0);
    assert!(!got.1["error"]["message"].as_str().unwrap().is_empty());
}

fn key(v: &str) -> String {
    let enc: String = v.replace('\'', "''");
    format!("('{}')", urlencode(&enc))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn dp_key(pkg: &str, nal: &str) -> String {
    urlencode(&format!(
        "(PackageID='{pkg}',ServerNALPath='{}',SiteCode='PS1')",
        nal.replace('\'', "''")
    ))
}

#[tokio::test]
async fn authentication_and_roles() {
    let s = start().await;
    let none = s.req(reqwest::Method::GET, "SMS_Package", None, None).await;
    assert_error(&none, 401, "Unauthenticated");
    let bad = s.req(reqwest::Method::GET, "SMS_Package", None, Some("nope")).await;
    assert_error(&bad, 401, "Unauthenticated");

    let (st, t) = s
        .post(
            "PKGDIST_AdminToken",
            json!({"Name": "analyst", "Role": "ReadOnlyAnalyst"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let ro = t["Token"].as_str().unwrap().to_owned();
    let (st, _) = s.req(reqwest::Method::GET, "SMS_Package", None, Some(&ro)).await;
    assert_eq!(st, StatusCode::OK);
    let write = s
        .req(
            reqwest::Method::POST,
            "SMS_Package",
            Some(json!({"Name": "x"})),
            Some(&ro),
        )
        .await;
    assert_error(&write, 403, "Forbidden");
    assert!(
        s.list("SMS_Package").await.is_empty(),
        "the forbidden write changed nothing"
    );

    // Tokens are listed without their secrets, and revoking one locks it out.
    let tokens = s.list("PKGDIST_AdminToken").await;
    assert_eq!(tokens.len(), 2);
    assert!(tokens.iter().all(|t| t.get("Token").is_none()));
    let id = t["TokenID"].as_str().unwrap();
    assert_eq!(
        s.delete(&format!("PKGDIST_AdminToken{}", key(id))).await.0,
        StatusCode::NO_CONTENT
    );
    let after = s.req(reqwest::Method::GET, "SMS_Package", None, Some(&ro)).await;
    assert_error(&after, 401, "Unauthenticated");
    assert_error(
        &s.post("PKGDIST_AdminToken", json!({"Name": "x", "Role": "God"})).await,
        400,
        "InvalidValue",
    );

    let meta = std::fs::metadata(s.data.join("bootstrap-token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
}

#[tokio::test]
async fn package_classes_ids_and_versions() {
    let s = start().await;
    let classes = [
        ("SMS_Package", 0),
        ("SMS_DriverPackage", 3),
        ("SMS_SoftwareUpdatesPackage", 5),
        ("SMS_ImagePackage", 257),
        ("SMS_BootImagePackage", 258),
        ("SMS_OperatingSystemInstallPackage", 259),
    ];
    for (i, (class, ty)) in classes.iter().enumerate() {
        let id = s.package(class, &format!("p{i}")).await;
        assert_eq!(id, format!("PS1{:05X}", i + 1), "sequential PackageIDs");
        let (_, p) = s.get(&format!("{class}{}", key(&id))).await;
        assert_eq!(p["PackageType"], *ty);
        assert_eq!(p["SourceVersion"], 1, "a package with a source starts at version 1");
        assert_eq!(p["SourceSite"], "PS1");
        assert_eq!(p["PkgSourceFlag"], 2);
        assert!(p["PackageSize"].as_u64().unwrap() >= 293);
        assert_eq!(s.list(class).await.len(), 1, "each class lists only its own");
    }
    assert_eq!(s.list("SMS_PackageBaseclass").await.len(), 6);
    // The instance is not found through another class.
    assert_error(
        &s.get(&format!("SMS_DriverPackage{}", key("PS100001"))).await,
        404,
        "UnknownInstance",
    );

    // Refresh twice: 2, 3; readers see the new version as soon as the call returns.
    for expect in [2, 3] {
        let (st, r) = s
            .post(
                &format!("SMS_Package{}/AdminService.RefreshPkgSource", key("PS100001")),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{r}");
        assert_eq!(r["ReturnValue"], 0);
        assert_eq!(
            s.get(&format!("SMS_Package{}", key("PS100001"))).await.1["SourceVersion"],
            expect
        );
    }

    // Deleted IDs are never handed out again.
    assert_eq!(
        s.delete(&format!("SMS_ImagePackage{}", key("PS100004"))).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, p) = s.post("SMS_Package", json!({"Name": "no source"})).await;
    assert_eq!(p["PackageID"], "PS100007");
    assert_eq!(p["SourceVersion"], 0);
    assert_eq!(p["PkgSourceFlag"], 1);
    assert_error(
        &s.post(
            &format!("SMS_Package{}/AdminService.RefreshPkgSource", key("PS100007")),
            json!({}),
        )
        .await,
        409,
        "NoSource",
    );

    // Update the writable properties; the read-only ones and the key refuse.
    let (st, p) = s
        .patch(
            &format!("SMS_Package{}", key("PS100007")),
            json!({"Description": "d", "Priority": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(
        (p["Description"].clone(), p["Priority"].clone()),
        (json!("d"), json!(1))
    );
    assert_error(
        &s.patch(&format!("SMS_Package{}", key("PS100007")), json!({"SourceVersion": 9}))
            .await,
        400,
        "ReadOnlyProperty",
    );
    assert_error(
        &s.patch(&format!("SMS_Package{}", key("PS100007")), json!({"Priority": 7}))
            .await,
        400,
        "InvalidValue",
    );
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let s = start().await;
    assert_error(
        &s.post("SMS_Package", json!({"Name": "x", "PkgSourcePath": "/no/such/folder"}))
            .await,
        422,
        "SourceMissing",
    );
    assert_error(
        &s.post("SMS_Package", json!({"Name": "x", "PkgSourcePath": "relative/path"}))
            .await,
        400,
        "InvalidValue",
    );
    assert_error(
        &s.post("SMS_Package", json!({"Name": "x", "Bogus": 1})).await,
        400,
        "UnknownProperty",
    );
    assert_error(&s.post("SMS_Package", json!({"Name": 5})).await, 400, "InvalidValue");
    assert_error(
        &s.post("SMS_Package", json!({"Description": "no name"})).await,
        400,
        "MissingProperty",
    );
    assert_error(
        &s.post("SMS_Package", json!({"Name": "x", "SourceVersion": 4})).await,
        400,
        "ReadOnlyProperty",
    );
    assert_error(
        &s.post("SMS_Package", json!({"Name": "x", "PkgSourceFlag": 2})).await,
        400,
        "MissingProperty",
    );
    assert_error(&s.post("SMS_Nope", json!({})).await, 404, "UnknownClass");
    assert_error(&s.get("SMS_NoSuchClass").await, 404, "UnknownClass");
    assert_error(
        &s.get(&format!("SMS_Package{}", key("PS1FFFFF"))).await,
        404,
        "UnknownInstance",
    );
    assert_error(&s.get("SMS_Package('PS100001").await, 400, "MalformedKey");
    assert_error(
        &s.post("SMS_PackageBaseclass", json!({"Name": "x"})).await,
        405,
        "NotAllowed",
    );
    assert_error(&s.post("SMS_Site", json!({})).await, 400, "MissingProperty");
    assert_error(
        &s.post("SMS_DistributionPoint", json!({})).await,
        400,
        "MissingProperty",
    );

    let raw = s
        .http
        .post(format!("{}/AdminService/wmi/SMS_Package", s.url))
        .bearer_auth(&s.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert_eq!(raw.json::<Value>().await.unwrap()["error"]["code"], "MalformedBody");
    let big = "x".repeat(2 << 20);
    let raw = s
        .http
        .post(format!("{}/AdminService/wmi/SMS_Package", s.url))
        .bearer_auth(&s.token)
        .body(format!("{{\"Name\":\"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 413);
    assert_eq!(raw.json::<Value>().await.unwrap()["error"]["code"], "BodyTooLarge");

    // A source that breaks the snapshot (a name that is not UTF-8) records nothing.
    let src = s.source("evil");
    std::fs::write(
        src.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(
            b"sub/bad\xff",
        )),
        b"x",
    )
    .unwrap();
    assert_error(
        &s.post(
            "SMS_Package",
            json!({"Name": "x", "PkgSourcePath": src.to_str().unwrap()}),
        )
        .await,
        422,
        "SourceUnreadable",
    );
    assert!(s.list("SMS_PackageBaseclass").await.is_empty());

    // Methods: unknown, called the wrong way, bad parameters.
    let id = s.package("SMS_Package", "p").await;
    assert_error(
        &s.post(&format!("SMS_Package{}/AdminService.Explode", key(&id)), json!({}))
            .await,
        404,
        "UnknownMethod",
    );
    assert_error(
        &s.post("SMS_Package.RefreshPkgSource", json!({})).await,
        404,
        "UnknownMethod",
    );
    assert_error(
        &s.post(
            &format!("SMS_Package{}/AdminService.AddDistributionPoints", key(&id)),
            json!({"SiteCode": ["PS1"]}),
        )
        .await,
        400,
        "MissingProperty",
    );
    assert_error(
        &s.post(
            &format!("SMS_Package{}/AdminService.AddDistributionPoints", key(&id)),
            json!({"SiteCode": "PS1", "NALPath": []}),
        )
        .await,
        400,
        "InvalidValue",
    );
    assert_error(
        &s.post(
            &format!("SMS_Package{}/AdminService.RefreshPkgSource", key(&id)),
            json!({"Force": true}),
        )
        .await,
        400,
        "UnknownProperty",
    );
}

#[tokio::test]
async fn odata_queries() {
    let s = start().await;
    for (class, name) in [
        ("SMS_Package", "Office"),
        ("SMS_DriverPackage", "Drivers x64"),
        ("SMS_Package", "Tools"),
    ] {
        let (st, _) = s.post(class, json!({"Name": name})).await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let names = |v: Vec<Value>| {
        v.iter()
            .map(|o| o["Name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let q = |f: &str| format!("SMS_PackageBaseclass?{f}");
    assert_eq!(names(s.list(&q("$filter=PackageType%20eq%203")).await), ["Drivers x64"]);
    assert_eq!(
        names(s.list(&q("$filter=startswith(Name,'o')%20eq%20true")).await),
        ["Office"]
    );
    assert_eq!(
        names(
            s.list(&q("$filter=not%20(PackageType%20eq%203)%20and%20Name%20ne%20'Tools'"))
                .await
        ),
        ["Office"]
    );
    assert_eq!(
        names(s.list(&q("$orderby=Name%20desc&$top=2")).await),
        ["Tools", "Office"]
    );
    let sel = s.list(&q("$select=PackageID,Name&$orderby=PackageID")).await;
    assert_eq!(
        sel[0].as_object().unwrap().len(),
        3,
        "the two, and the etag: {}",
        sel[0]
    );
    assert_eq!(sel[0]["PackageID"], "PS100001");
    let (_, whole) = s.get("SMS_PackageBaseclass").await;
    assert!(
        whole["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/AdminService/wmi/$metadata#SMS_PackageBaseclass")
    );
    assert_error(&s.get(&q("$filter=Name%20eq")).await, 400, "MalformedQuery");
    assert_error(&s.get(&q("$filter=Nmae%20eq%20'x'")).await, 400, "UnknownProperty");
    assert_error(&s.get(&q("$top=-3")).await, 400, "MalformedQuery");
    assert_error(&s.get(&q("$select=Bogus")).await, 400, "UnknownProperty");
    // Class and method names match in any case, as on the AdminService since ConfigMgr 2006;
    // answers carry the class's own name.
    let (st, lower) = s.get("sms_package?$orderby=Name").await;
    assert_eq!(st, StatusCode::OK, "{lower}");
    assert!(
        lower["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/AdminService/wmi/$metadata#SMS_Package")
    );
    assert_eq!(
        names(serde_json::from_value(lower["value"].clone()).unwrap()),
        ["Office", "Tools"]
    );
    let id = sel[0]["PackageID"].as_str().unwrap().to_owned();
    let (st, out) = s
        .post(
            &format!("SMS_PACKAGE{}/adminservice.refreshpkgsource", key(&id)),
            json!({}),
        )
        .await;
    // Found and called (a package without a source refuses to refresh, by name).
    assert_ne!(st, StatusCode::NOT_FOUND, "{out}");
    assert_ne!(out["error"]["code"], "UnknownMethod", "{out}");
    assert_error(&s.get("SMS_Pakage").await, 404, "UnknownClass");
}

#[tokio::test]
async fn distribution_points_and_package_targets() {
    let s = start().await;
    let (st, d) = s
        .post(
            "SMS_DistributionPointInfo",
            json!({"Name": "dp1.example", "Description": "branch"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let nal = d["NALPath"].as_str().unwrap().to_owned();
    assert_eq!(
        nal,
        r#"["Display=\\dp1.example\"]MSWNET:["SMS_SITE=PS1"]\\dp1.example\"#
    );
    assert!(d["EnrollmentToken"].as_str().unwrap().len() > 32);
    assert_eq!(d["Enrolled"], false);
    assert!(
        s.list("SMS_DistributionPointInfo").await[0]
            .get("EnrollmentToken")
            .is_none(),
        "the token is shown once"
    );
    assert_error(
        &s.post("SMS_DistributionPointInfo", json!({"Name": "dp1.example"}))
            .await,
        409,
        "NameTaken",
    );
    assert_error(
        &s.post("SMS_DistributionPointInfo", json!({"Name": "bad name/"})).await,
        400,
        "InvalidValue",
    );
    // A pull DP needs sources of its own site, and no chain of pull DPs may loop.
    assert_error(
        &s.patch(
            &format!("SMS_DistributionPointInfo{}", key(&nal)),
            json!({"IsPullDP": true}),
        )
        .await,
        400,
        "InvalidValue",
    );
    let src = s.dp("dp-src").await;
    let (st, d) = s
        .patch(
            &format!("SMS_DistributionPointInfo{}", key(&nal)),
            json!({"IsPullDP": true, "SourceDistributionPoints": [src], "SourceDPRanks": [2]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(d["IsPullDP"], true);
    assert_eq!(d["SourceDistributionPoints"], json!([src]));
    assert_eq!(d["SourceDPRanks"], json!([2]));
    // A $select that leaves out the key and IsPullDP still fills the lists, and keeps only
    // what it names, in its order.
    let picked = s
        .list(&format!(
            "SMS_DistributionPointInfo?$filter={}&$select=SourceDPRanks,SourceDistributionPoints",
            urlencode(&format!("NALPath eq '{}'", nal.replace('\'', "''")))
        ))
        .await;
    assert_eq!(
        picked,
        vec![json!({"SourceDPRanks": [2], "SourceDistributionPoints": [src]})]
    );
    let looped = s
        .patch(
            &format!("SMS_DistributionPointInfo{}", key(&src)),
            json!({"IsPullDP": true, "SourceDistributionPoints": [nal]}),
        )
        .await;
    assert_error(&looped, 400, "InvalidValue");
    assert!(
        looped.1["error"]["message"].as_str().unwrap().contains("loop"),
        "{}",
        looped.1
    );
    for bad in [
        json!({"SourceDistributionPoints": [nal]}),
        json!({"SourceDistributionPoints": [src], "SourceDPRanks": [0]}),
        json!({"SourceDistributionPoints": [src], "SourceDPRanks": [1, 2]}),
        json!({"SourceDPRanks": [1]}),
    ] {
        assert_error(
            &s.patch(&format!("SMS_DistributionPointInfo{}", key(&nal)), bad).await,
            400,
            "InvalidValue",
        );
    }
    let (_, d) = s.get(&format!("SMS_DistributionPointInfo{}", key(&nal))).await;
    assert_eq!(d["SourceDPRanks"], json!([2]), "refusals change nothing");
    let (st, d) = s
        .patch(
            &format!("SMS_DistributionPointInfo{}", key(&src)),
            json!({"IsPullDP": false}),
        )
        .await;
    assert_eq!((st, d["IsPullDP"].clone()), (StatusCode::OK, json!(false)));

    let pkg = s.package("SMS_Package", "app").await;
    let add = format!("SMS_Package{}/AdminService.AddDistributionPoints", key(&pkg));
    assert_error(
        &s.post(&add, json!({"SiteCode": ["CM2"], "NALPath": [nal]})).await,
        400,
        "SiteMismatch",
    );
    assert_error(
        &s.post(&add, json!({"SiteCode": ["PS1"], "NALPath": ["nope"]})).await,
        404,
        "UnknownInstance",
    );
    assert!(
        s.list("SMS_DistributionPoint").await.is_empty(),
        "failed calls targeted nothing"
    );
    let (st, r) = s.post(&add, json!({"SiteCode": ["PS1"], "NALPath": [nal]})).await;
    assert_eq!((st, r["ReturnValue"].clone()), (StatusCode::CREATED, json!(0)));

    let (st, row) = s.get(&format!("SMS_DistributionPoint{}", dp_key(&pkg, &nal))).await;
    assert_eq!(st, StatusCode::OK, "{row}");
    assert_eq!(row["SiteCode"], "PS1");
    let summ = s.list("SMS_PackageStatusDistPointsSummarizer").await;
    assert_eq!(
        (
            summ[0]["State"].clone(),
            summ[0]["TargetVersion"].clone(),
            summ[0]["SourceVersion"].clone()
        ),
        (json!(1), json!(1), json!(0))
    );

    // A refresh retargets the DP at the new version.
    s.post(
        &format!("SMS_Package{}/AdminService.RefreshPkgSource", key(&pkg)),
        json!({}),
    )
    .await;
    let summ = s.list("SMS_PackageStatusDistPointsSummarizer").await;
    assert_eq!(
        (summ[0]["State"].clone(), summ[0]["TargetVersion"].clone()),
        (json!(1), json!(2))
    );
    let detail = s.list("SMS_PackageStatusDetailSummarizer").await;
    assert_eq!(
        (
            detail[0]["Targeted"].clone(),
            detail[0]["Installed"].clone(),
            detail[0]["SourceVersion"].clone()
        ),
        (json!(1), json!(0), json!(2))
    );
    let msgs = s.list("SMS_DistributionDPStatus").await;
    assert!(
        msgs.len() >= 2
            && msgs
                .iter()
                .all(|m| m["MessageState"] == 2 && m["Name"] == "dp1.example"),
        "{msgs:?}"
    );

    // Per-DP actions: CancelDistribution (while pending), RefreshNow, VerifyPackage, delete.
    let p = json!({"PackageID": pkg, "NALPath": nal});
    let state = || async { s.list("SMS_PackageStatusDistPointsSummarizer").await[0]["State"].clone() };
    assert_eq!(
        s.post("SMS_DistributionPoint.CancelDistribution", p.clone()).await.0,
        StatusCode::CREATED
    );
    assert_eq!(state().await, 3);
    assert_error(
        &s.post("SMS_DistributionPoint.CancelDistribution", p.clone()).await,
        409,
        "InvalidState",
    );
    let (st, _) = s
        .patch(
            &format!("SMS_DistributionPoint{}", dp_key(&pkg, &nal)),
            json!({"RefreshNow": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(state().await, 1);
    let summary = s.list("SMS_PackageStatusDistPointsSummarizer").await;
    assert_eq!(summary[0]["TargetVersion"], 2, "RefreshNow does not bump the version");
    // Nothing is installed yet: a validation would only cancel the install.
    let got = s.post("SMS_DistributionPoint.VerifyPackage", p.clone()).await;
    assert_error(&got, 409, "InvalidState");
    assert!(got.1.to_string().contains("nothing is installed"), "{}", got.1);
    assert_eq!(state().await, 1);
    assert_error(
        &s.post(
            "SMS_DistributionPoint.VerifyPackage",
            json!({"PackageID": "PS1FFFFF", "NALPath": nal}),
        )
        .await,
        404,
        "UnknownInstance",
    );
    assert_eq!(
        s.delete(&format!("SMS_DistributionPoint{}", dp_key(&pkg, &nal)))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.list("SMS_PackageStatusDistPointsSummarizer").await[0]["State"],
        4,
        "removal is deferred: REMOVAL_PENDING"
    );

    // Creating SMS_DistributionPoint targets too; removing the DP drops its rows.
    let nal2 = s.dp("dp2").await;
    let (st, r) = s
        .post(
            "SMS_DistributionPoint",
            json!({"PackageID": pkg, "ServerNALPath": nal2, "SiteCode": "PS1"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(s.list("SMS_DistributionPoint").await.len(), 2);
    assert_eq!(
        s.delete(&format!("SMS_DistributionPointInfo{}", key(&nal2))).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.list("SMS_DistributionPoint").await.len(), 1);
}

#[tokio::test]
async fn groups_and_their_methods() {
    let s = start().await;
    let (st, g) = s
        .post("SMS_DistributionPointGroup", json!({"Name": "Branch offices"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let gid = g["GroupID"].as_str().unwrap().to_owned();
    assert!(gid.starts_with('{') && gid.ends_with('}') && gid.len() == 38, "{gid}");
    assert_error(
        &s.post("SMS_DistributionPointGroup", json!({"Name": "Branch offices"}))
            .await,
        409,
        "NameTaken",
    );
    let m = |name: &str| format!("SMS_DistributionPointGroup{}/AdminService.{name}", key(&gid));
    let (dp1, dp2) = (s.dp("dp1").await, s.dp("dp2").await);
    let (a, b) = (
        s.package("SMS_Package", "a").await,
        s.package("SMS_DriverPackage", "b").await,
    );

    assert_eq!(
        s.post(&m("AddDistributionPoints"), json!({"DPNALPath": [dp1]})).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        s.post(&m("AddPackages"), json!({"PackageIDs": [a]})).await.0,
        StatusCode::CREATED
    );
    assert_eq!(s.list("SMS_DistributionPoint").await.len(), 1, "a targeted at dp1");
    // A DP that joins later gets the group's packages.
    assert_eq!(
        s.post(&m("AddDistributionPoints"), json!({"DPNALPath": [dp2]})).await.0,
        StatusCode::CREATED
    );
    assert_eq!(s.list("SMS_DistributionPoint").await.len(), 2);
    assert_eq!(s.list("SMS_DPGroupMembers").await.len(), 2);
    let content = s.list("SMS_DPGroupContentInfo").await;
    assert_eq!((content.len(), content[0]["PackageID"].clone()), (1, json!(a)));
    let (_, g) = s.get(&format!("SMS_DistributionPointGroup{}", key(&gid))).await;
    assert_eq!(
        (
            g["MemberCount"].clone(),
            g["ContentCount"].clone(),
            g["ContentInSync"].clone(),
            g["OutOfSyncContentCount"].clone()
        ),
        (json!(2), json!(1), json!(false), json!(1))
    );

    // ReDistributePackage: only for packages of the group; nothing changes otherwise.
    let before = s.list("SMS_DistributionDPStatus").await.len();
    assert_error(
        &s.post(&m("ReDistributePackage"), json!({"PackageID": b})).await,
        409,
        "PackageNotInGroup",
    );
    assert_error(
        &s.post(&m("ReDistributePackage"), json!({"PackageID": "PS1FFFFF"}))
            .await,
        404,
        "UnknownInstance",
    );
    assert_eq!(s.list("SMS_DistributionDPStatus").await.len(), before);
    let (st, r) = s.post(&m("ReDistributePackage"), json!({"PackageID": a})).await;
    assert_eq!((st, r["ReturnValue"].clone()), (StatusCode::CREATED, json!(0)));
    let msgs = s.list("SMS_DistributionDPStatus").await;
    assert_eq!(msgs.len(), before + 2, "one message per member");
    assert!(
        msgs.last().unwrap()["Description"]
            .as_str()
            .unwrap()
            .contains("redistribution")
    );

    assert_eq!(
        s.post(&m("AddPackages"), json!({"PackageIDs": [b]})).await.0,
        StatusCode::CREATED
    );
    assert_eq!(s.post(&m("RefreshDPGroup"), json!({})).await.0, StatusCode::CREATED);
    assert_eq!(s.list("SMS_DistributionPoint").await.len(), 4);

    // RemovePackages (default: also from the DPs) and RemoveDistributionPoints.
    assert_eq!(
        s.post(&m("RemovePackages"), json!({"PackageIDs": [b]})).await.0,
        StatusCode::CREATED
    );
    let removing = s
        .list("SMS_PackageStatusDistPointsSummarizer?$filter=State%20eq%204")
        .await;
    assert_eq!(removing.len(), 2);
    assert!(removing.iter().all(|r| r["PackageID"] == json!(b)));
    assert_error(
        &s.post(&m("RemovePackages"), json!({"PackageIDs": [b]})).await,
        409,
        "PackageNotInGroup",
    );
    assert_eq!(
        s.post(&m("RemoveDistributionPoints"), json!({"DPNALPath": [dp2]}))
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(s.list("SMS_DPGroupMembers").await.len(), 1);
    assert_eq!(
        s.list("SMS_PackageStatusDistPointsSummarizer?$filter=State%20eq%204")
            .await
            .len(),
        2,
        "content stays by default"
    );
    assert_error(
        &s.post(&m("RemoveDistributionPoints"), json!({"DPNALPath": [dp2]}))
            .await,
        404,
        "UnknownInstance",
    );

    let (st, g) = s
        .patch(
            &format!("SMS_DistributionPointGroup{}", key(&gid)),
            json!({"Description": "all branches"}),
        )
        .await;
    assert_eq!((st, g["Description"].clone()), (StatusCode::OK, json!("all branches")));
    assert_eq!(
        s.delete(&format!("SMS_DistributionPointGroup{}", key(&gid))).await.0,
        StatusCode::NO_CONTENT
    );
    assert!(s.list("SMS_DPGroupMembers").await.is_empty());
    assert_eq!(s.list("SMS_Site").await[0]["SiteCode"], "PS1");
}

/// Every class's instances read strictly into its typed struct (pkgdist_proto::classes):
/// no property missing, none unknown, every type right, nulls only where the struct allows.
#[tokio::test]
async fn every_class_reads_into_its_struct() {
    use pkgdist_proto::classes::*;
    fn strict<T: serde::de::DeserializeOwned>(class: &str, rows: Vec<Value>) -> usize {
        let (_, names) = property_names().into_iter().find(|(c, _)| *c == class).unwrap();
        let write_only = ["Token", "EnrollmentToken"];
        let mut want: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !write_only.contains(n))
            .collect();
        want.sort_unstable();
        for r in &rows {
            if let Err(e) = serde_json::from_value::<T>(r.clone()) {
                panic!("{class}: {e}: {r}");
            }
            // Properties, not annotations (`@odata.etag`).
            let mut got: Vec<&str> = r
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .filter(|k| !k.starts_with('@'))
                .collect();
            got.sort_unstable();
            assert_eq!(got, want, "{class}: {r}");
        }
        rows.len()
    }
    let s = start().await;
    let a = s.estate().await;
    let mut counted = Vec::new();
    for (class, _) in property_names() {
        let rows = s.list(class).await;
        let n = match class {
            "SMS_PackageBaseclass" => strict::<Package>(class, rows),
            "SMS_DistributionPointInfo" => strict::<DistributionPointInfo>(class, rows),
            "SMS_DistributionPoint" => strict::<DistributionPoint>(class, rows),
            "SMS_DistributionPointGroup" => strict::<DistributionPointGroup>(class, rows),
            "SMS_DPGroupMembers" => strict::<DpGroupMembers>(class, rows),
            "SMS_DPGroupContentInfo" => strict::<DpGroupContentInfo>(class, rows),
            "SMS_PackageStatusDistPointsSummarizer" => strict::<PackageStatusDistPointsSummarizer>(class, rows),
            "SMS_PackageStatusDetailSummarizer" => strict::<PackageStatusDetailSummarizer>(class, rows),
            "SMS_DistributionDPStatus" => strict::<DistributionDpStatus>(class, rows),
            "SMS_StatusMessage" => strict::<StatusMessage>(class, rows),
            "SMS_PackageStatusRootSummarizer" => strict::<PackageStatusRootSummarizer>(class, rows),
            "SMS_DPStatusInfo" => strict::<DpStatusInfo>(class, rows),
            "SMS_ObjectContentInfo" => strict::<ObjectContentInfo>(class, rows),
            "SMS_DPGroupDistributionStatusDetails" => strict::<DpGroupDistributionStatusDetails>(class, rows),
            "SMS_Site" => strict::<Site>(class, rows),
            "PKGDIST_SiteContent" => strict::<SiteContent>(class, rows),
            "PKGDIST_DistributionSettings" => strict::<DistributionSettings>(class, rows),
            "PKGDIST_AdminToken" => strict::<AdminToken>(class, rows),
            other => panic!("no struct for {other} in this test"),
        };
        counted.push((class, n));
    }
    // Every class but the replicated content (a child site's) had instances to check.
    for (class, n) in counted {
        assert!(n > 0 || class == "PKGDIST_SiteContent", "{class} listed nothing");
    }
    // GET by key answers the same shape.
    let (st, p) = s.get(&format!("SMS_Package{}", key(&a))).await;
    assert_eq!(st, StatusCode::OK);
    let p: Package = serde_json::from_value(p).unwrap();
    assert_eq!((p.package_id, p.source_version), (a, 1));
}

/// The secret from which the site derives what DPs accept from it lives in a 0600 file, never
/// in the database; a key an earlier version kept there moves to the file and keeps working.
#[tokio::test]
async fn node_key_lives_in_a_private_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new().unwrap();
    let (cfg, _) = pkgdist_site::SiteConfig::load_or_init(dir.path(), Some("PS1")).unwrap();
    // A database as an earlier version left it: the key in its settings.
    let db = pkgdist_db::Db::connect(&cfg.database_url(dir.path())).await.unwrap();
    db.set_setting("node_key", &"ab".repeat(32)).await.unwrap();
    let old = pkgdist_site::AppState::with(
        db.clone(),
        std::sync::Arc::new(pkgdist_content::Library::create_local(&dir.path().join("l0")).unwrap()),
        pkgdist_site::Setup {
            site_code: "PS1".parse().unwrap(),
            site_name: String::new(),
            max_body_bytes: 1024,
            distribution: pkgdist_site::config::Distribution::default(),
            node_key: [0xab; 32],
            source_roots: None,
            private: Vec::new(),
            tls: None,
        },
    )
    .site_token("credential-hash");
    let state = pkgdist_site::open(dir.path(), &cfg).await.unwrap();
    assert_eq!(
        state.site_token("credential-hash"),
        old,
        "the moved key derives the same tokens"
    );
    assert_eq!(
        db.setting("node_key").await.unwrap(),
        None,
        "no key left in the database"
    );
    let file = dir.path().join(pkgdist_site::NODE_KEY_FILE);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    drop(state);
    // A restart reads the file.
    let again = pkgdist_site::open(dir.path(), &cfg).await.unwrap();
    assert_eq!(again.site_token("credential-hash"), old);
    drop(again);
    // A lost key file is not silently replaced: the DPs trust the old key.
    std::fs::rename(&file, dir.path().join("node-key.bak")).unwrap();
    let err = pkgdist_site::open(dir.path(), &cfg).await.unwrap_err().to_string();
    assert!(err.contains("node-key is missing"), "{err}");
    // Nor is a key of another site taken.
    std::fs::write(&file, "cd".repeat(32)).unwrap();
    let err = pkgdist_site::open(dir.path(), &cfg).await.unwrap_err().to_string();
    assert!(err.contains("not the key this database's DPs trust"), "{err}");
    std::fs::rename(dir.path().join("node-key.bak"), &file).unwrap();
    let restored = pkgdist_site::open(dir.path(), &cfg).await.unwrap();
    assert_eq!(restored.site_token("credential-hash"), old);
    // A new site makes a key of its own, in its file only.
    let other = TempDir::new().unwrap();
    let (cfg2, _) = pkgdist_site::SiteConfig::load_or_init(other.path(), Some("PS2")).unwrap();
    let fresh = pkgdist_site::open(other.path(), &cfg2).await.unwrap();
    assert_ne!(fresh.site_token("credential-hash"), old);
    assert_eq!(fresh.db.setting("node_key").await.unwrap(), None);
    assert!(other.path().join(pkgdist_site::NODE_KEY_FILE).exists());
}

/// The committed OpenAPI document is the one the code generates. Regenerate with
/// `UPDATE_OPENAPI=1 cargo nextest run -p pkgdist-site openapi`.
#[test]
fn openapi_document_is_committed() {
    let generated = serde_json::to_string_pretty(&pkgdist_site::openapi::document()).unwrap() + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/api/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/api/openapi.json is out of date: run UPDATE_OPENAPI=1 cargo nextest run -p pkgdist-site openapi"
    );
}

#[tokio::test]
async fn review_fixes_hold() {
    let s = start().await;
    let pkg = s.package("SMS_Package", "app").await;
    let (dp1, dp2) = (s.dp("dp1").await, s.dp("dp2").await);
    let add = format!("SMS_Package{}/AdminService.AddDistributionPoints", key(&pkg));
    assert_eq!(
        s.post(&add, json!({"SiteCode": ["PS1", "PS1"], "NALPath": [dp1, dp2]}))
            .await
            .0,
        StatusCode::CREATED
    );

    // A duplicated key part is refused, not matched against an arbitrary row.
    let dup = urlencode(&format!("(PackageID='{pkg}',PackageID='{pkg}',SiteCode='PS1')"));
    assert_error(
        &s.delete(&format!("SMS_DistributionPoint{dup}")).await,
        400,
        "MalformedKey",
    );
    // Spaces around '=' in a key are fine.
    let spaced = urlencode(&format!(
        "(PackageID = '{pkg}', ServerNALPath = '{}', SiteCode = 'PS1')",
        dp1.replace('\'', "''")
    ));
    assert_eq!(s.get(&format!("SMS_DistributionPoint{spaced}")).await.0, StatusCode::OK);

    // A refresh retargets every DP of the package, except one being removed.
    assert_eq!(
        s.delete(&format!("SMS_DistributionPoint{}", dp_key(&pkg, &dp2)))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    s.post(
        &format!("SMS_Package{}/AdminService.RefreshPkgSource", key(&pkg)),
        json!({}),
    )
    .await;
    let rows = s
        .list("SMS_PackageStatusDistPointsSummarizer?$orderby=ServerNALPath")
        .await;
    let by = |nal: &str| rows.iter().find(|r| r["ServerNALPath"] == json!(nal)).unwrap().clone();
    assert_eq!(
        (by(&dp1)["State"].clone(), by(&dp1)["TargetVersion"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(
        (by(&dp2)["State"].clone(), by(&dp2)["TargetVersion"].clone()),
        (json!(4), json!(1)),
        "the removal stands"
    );

    // Cancel needs something in progress; validation needs content that is not being removed.
    let cancel = json!({"PackageID": pkg, "NALPath": dp2});
    assert_error(
        &s.post("SMS_DistributionPoint.CancelDistribution", cancel.clone()).await,
        409,
        "InvalidState",
    );
    assert_error(
        &s.post("SMS_DistributionPoint.VerifyPackage", cancel).await,
        409,
        "InvalidState",
    );

    // Concurrent refreshes are serialized: every one gets its own version.
    let path = format!("SMS_Package{}/AdminService.RefreshPkgSource", key(&pkg));
    let (a, b, c, d) = tokio::join!(
        s.post(&path, json!({})),
        s.post(&path, json!({})),
        s.post(&path, json!({})),
        s.post(&path, json!({}))
    );
    let mut versions: Vec<u64> = [a, b, c, d]
        .into_iter()
        .map(|(st, r)| {
            assert_eq!(st, StatusCode::CREATED, "{r}");
            r["SourceVersion"].as_u64().unwrap()
        })
        .collect();
    versions.sort();
    assert_eq!(versions, [3, 4, 5, 6]);

    // The library ahead of the database (a crash between the two): the next refresh steps past.
    let lib = pkgdist_content::Library::open_local(&s.data.join("library")).unwrap();
    let next: pkgdist_core::ContentId = format!("{pkg}.7").parse().unwrap();
    lib.snapshot(&s.source("other"), next, &Default::default()).unwrap();
    let (st, r) = s
        .post(
            &format!("SMS_Package{}/AdminService.RefreshPkgSource", key(&pkg)),
            json!({}),
        )
        .await;
    assert_eq!((st, r["SourceVersion"].clone()), (StatusCode::CREATED, json!(8)), "{r}");

    // PkgSourceFlag 1 means no source.
    let src = s.source("x");
    assert_error(
        &s.post(
            "SMS_Package",
            json!({"Name": "x", "PkgSourcePath": src.to_str().unwrap(), "PkgSourceFlag": 1}),
        )
        .await,
        400,
        "InvalidValue",
    );
}

#[tokio::test]
async fn tokens_roles_and_error_shapes() {
    let s = start().await;
    let (_, t) = s
        .post(
            "PKGDIST_AdminToken",
            json!({"Name": "viewer", "Role": "ReadOnlyAnalyst"}),
        )
        .await;
    let ro = t["Token"].as_str().unwrap().to_owned();
    let id = s.package("SMS_Package", "p").await;
    let m = reqwest::Method::PATCH;
    assert_error(
        &s.req(
            m,
            &format!("SMS_Package{}", key(&id)),
            Some(json!({"Description": "x"})),
            Some(&ro),
        )
        .await,
        403,
        "Forbidden",
    );
    assert_error(
        &s.req(
            reqwest::Method::DELETE,
            &format!("SMS_Package{}", key(&id)),
            None,
            Some(&ro),
        )
        .await,
        403,
        "Forbidden",
    );
    assert_error(
        &s.req(
            reqwest::Method::PUT,
            &format!("SMS_Package{}", key(&id)),
            Some(json!({})),
            Some(&ro),
        )
        .await,
        403,
        "Forbidden",
    );
    let refresh = format!("SMS_Package{}/AdminService.RefreshPkgSource", key(&id));
    assert_error(
        &s.req(reqwest::Method::POST, &refresh, Some(json!({})), Some(&ro)).await,
        403,
        "Forbidden",
    );
    assert_eq!(
        s.get(&format!("SMS_Package{}", key(&id))).await.1["SourceVersion"],
        1,
        "nothing changed"
    );

    // The scheme name is case-insensitive.
    let lower = s
        .http
        .get(format!("{}/AdminService/wmi/SMS_Site", s.url))
        .header("Authorization", format!("bearer {}", s.token))
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), 200);

    // The last administrator token cannot be revoked; with a second one it can.
    let tokens = s.list("PKGDIST_AdminToken?$filter=Name%20eq%20'bootstrap'").await;
    let boot = tokens[0]["TokenID"].as_str().unwrap().to_owned();
    assert_error(
        &s.delete(&format!("PKGDIST_AdminToken{}", key(&boot))).await,
        409,
        "InvalidState",
    );
    let (_, admin2) = s
        .post(
            "PKGDIST_AdminToken",
            json!({"Name": "alice", "Role": "FullAdministrator"}),
        )
        .await;
    assert_eq!(
        s.delete(&format!("PKGDIST_AdminToken{}", key(&boot))).await.0,
        StatusCode::NO_CONTENT
    );
    let alice = admin2["Token"].as_str().unwrap();
    assert_eq!(
        s.req(reqwest::Method::GET, "SMS_Site", None, Some(alice)).await.0,
        StatusCode::OK
    );

    // Misspelt options, unknown routes, wrong verbs: all in the API's error shape.
    assert_error(
        &s.req(
            reqwest::Method::GET,
            "SMS_Package?$fitler=Name%20eq%20'x'",
            None,
            Some(alice),
        )
        .await,
        400,
        "MalformedQuery",
    );
    let r = s.http.get(format!("{}/nowhere", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "UnknownClass");
    assert_error(
        &s.req(reqwest::Method::PATCH, "SMS_Site('PS1')", Some(json!({})), Some(alice))
            .await,
        409,
        "InvalidState",
    );
}

#[tokio::test]
async fn schedule_methods() {
    let s = start().await;
    let (st, r) = s
        .post(
            "SMS_ScheduleMethods.ReadFromString",
            json!({"StringData": "1033BC7B10100010"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(r["ReturnValue"], 0);
    let t = &r["TokenData"][0];
    assert_eq!(t["@odata.type"], "#AdminService.SMS_ST_RecurInterval");
    assert_eq!(
        (
            t["DaySpan"].clone(),
            t["MinuteDuration"].clone(),
            t["HourDuration"].clone()
        ),
        (json!(2), json!(59), json!(2))
    );
    assert_eq!(t["StartTime"], "2019-11-19T01:04:00");
    let (st, w) = s
        .post(
            "SMS_ScheduleMethods.WriteToString",
            json!({"TokenData": r["TokenData"]}),
        )
        .await;
    assert_eq!(
        (st, w["StringData"].clone()),
        (StatusCode::CREATED, json!("1033BC7B10100010"))
    );
    let bad = s
        .post(
            "SMS_ScheduleMethods.ReadFromString",
            json!({"StringData": "1033BC7B1010001"}),
        )
        .await;
    assert_error(&bad, 400, "InvalidValue");
    assert!(bad.1["error"]["message"].as_str().unwrap().contains("multiple of 16"));
    let bad = s
        .post(
            "SMS_ScheduleMethods.WriteToString",
            json!({"TokenData": [{"@odata.type": "#AdminService.SMS_ST_RecurWeekly", "Day": 8}]}),
        )
        .await;
    assert_error(&bad, 400, "InvalidValue");
    assert!(bad.1["error"]["message"].as_str().unwrap().contains("Day is 8"));
    assert_error(
        &s.post("SMS_ScheduleMethods.WriteToString", json!({"TokenData": "x"}))
            .await,
        400,
        "InvalidValue",
    );
}

#[tokio::test]
async fn scheduled_refresh() {
    use jiff::{SignedDuration, Timestamp, tz::TimeZone};
    use pkgdist_site::scheduler::tick;

    let s = start().await;
    let id = s.package("SMS_Package", "sched").await;
    let hourly = every_hours(1);
    let (st, p) = s
        .patch(&format!("SMS_Package{}", key(&id)), json!({"RefreshSchedule": hourly}))
        .await;
    assert_eq!(
        (st, p["RefreshSchedule"].clone()),
        (StatusCode::OK, json!(hourly)),
        "{p}"
    );

    let now = Timestamp::now();
    let later = |h: i64| now.checked_add(SignedDuration::from_hours(h)).unwrap();
    let utc = TimeZone::UTC;
    let version = || async { s.get(&format!("SMS_Package{}", key(&id))).await.1["SourceVersion"].clone() };

    // Nothing is owed for the past: the schedule counts from when it was set.
    assert_eq!(tick(&s.state, now, &utc).await, Default::default());
    // Due, but the source has not changed: no version, a status message saying so.
    let r = tick(&s.state, later(2), &utc).await;
    assert_eq!((r.unchanged.clone(), r.refreshed.len()), (vec![id.clone()], 0));
    assert_eq!(version().await, 1);
    let msgs = s.list("SMS_DistributionDPStatus").await;
    assert!(
        msgs.iter()
            .any(|m| m["Description"].as_str().unwrap().contains("has not changed")),
        "{msgs:?}"
    );
    // The source changes: the next due occurrence records version 2.
    std::fs::write(s.dir.path().join("sched/sub/readme.txt"), b"changed").unwrap();
    let r = tick(&s.state, later(4), &utc).await;
    assert_eq!(r.refreshed, vec![id.clone()]);
    assert_eq!(version().await, 2);
    // Each occurrence is handled once; a long outage is caught up with a single refresh.
    assert_eq!(tick(&s.state, later(4), &utc).await, Default::default());
    let r = tick(&s.state, later(30), &utc).await;
    assert_eq!(r.unchanged.len() + r.refreshed.len(), 1);
    assert_eq!(version().await, 2);

    // Only with a source; at most 15 tokens; a valid string.
    let (_, plain) = s.post("SMS_Package", json!({"Name": "no source"})).await;
    let plain_key = format!("SMS_Package{}", key(plain["PackageID"].as_str().unwrap()));
    assert_error(
        &s.patch(&plain_key, json!({"RefreshSchedule": hourly})).await,
        400,
        "InvalidValue",
    );
    assert_error(
        &s.patch(
            &format!("SMS_Package{}", key(&id)),
            json!({"RefreshSchedule": hourly.repeat(16)}),
        )
        .await,
        400,
        "InvalidValue",
    );
    let bad = s
        .patch(
            &format!("SMS_Package{}", key(&id)),
            json!({"RefreshSchedule": "1033BC7B1010001"}),
        )
        .await;
    assert_error(&bad, 400, "InvalidValue");
    assert!(bad.1["error"]["message"].as_str().unwrap().contains("multiple of 16"));
    assert_eq!(
        s.get(&format!("SMS_Package{}", key(&id))).await.1["RefreshSchedule"],
        json!(hourly),
        "a refused change changes nothing"
    );
}

#[tokio::test]
async fn concurrent_patches_of_different_properties_both_stand() {
    let s = start().await;
    let (_, p) = s.post("SMS_Package", json!({"Name": "x"})).await;
    let k = format!("SMS_Package{}", key(p["PackageID"].as_str().unwrap()));
    for i in 0..20 {
        let (a, b) = tokio::join!(
            s.patch(&k, json!({"Description": format!("d{i}")})),
            s.patch(&k, json!({"Manufacturer": format!("m{i}")}))
        );
        assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
        let (_, now) = s.get(&k).await;
        assert_eq!(
            (now["Description"].clone(), now["Manufacturer"].clone()),
            (json!(format!("d{i}")), json!(format!("m{i}")))
        );
    }
    // The answer to a PATCH is the package as stored.
    let (_, r) = s.patch(&k, json!({"Version": "2.0"})).await;
    assert_eq!(
        (r["Version"].clone(), r["Description"].clone()),
        (json!("2.0"), json!("d19"))
    );
}

/// The distribution settings class: read, changed within ConfigMgr's ranges, refused outside
/// them, kept across a restart. DP settings: repair, validation schedule, rate limit.
#[tokio::test]
async fn distribution_settings_and_dp_settings() {
    let s = start().await;
    let all = s.list("PKGDIST_DistributionSettings").await;
    assert_eq!(all.len(), 1);
    let d = &all[0];
    assert_eq!(
        (
            &d["MaximumPackageCount"],
            &d["MaximumThreadsPerPackage"],
            &d["RetryCount"],
            &d["DelayBeforeRetryingMins"]
        ),
        (&json!(3), &json!(5), &json!(100), &json!(30))
    );
    let path = format!("PKGDIST_DistributionSettings{}", key("PS1"));
    let (st, v) = s
        .patch(
            &path,
            json!({"MaximumPackageCount": 1, "RetryCount": 2, "DelayBeforeRetryingMins": 2}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (
            &v["MaximumPackageCount"],
            &v["RetryCount"],
            &v["DelayBeforeRetryingSecs"]
        ),
        (&json!(1), &json!(2), &json!(120))
    );
    assert_eq!(s.state.dist().max_packages, 1, "in force at once");
    for bad in [
        json!({"MaximumPackageCount": 0}),
        json!({"MaximumThreadsPerPackage": 1000}),
        json!({"RetryCount": 1001}),
        json!({"DelayBeforeRetryingMins": 0}),
        json!({"RetryCount": "many"}),
        json!({"SiteCode": "PS2"}),
    ] {
        let got = s.patch(&path, bad.clone()).await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{bad}: {}", got.1);
    }
    assert_eq!(s.state.dist().retry_count, 2, "a refused change changes nothing");
    // Kept in the database: a site opened again on it has them.
    let (cfg, _) = pkgdist_site::SiteConfig::load_or_init(&s.data, None).unwrap();
    let again = pkgdist_site::open(&s.data, &cfg).await.unwrap();
    assert_eq!((again.dist().max_packages, again.dist().retry_delay_secs), (1, 120));

    // DP settings.
    let nal = s.dp("dp1").await;
    let dp = s.list("SMS_DistributionPointInfo").await.remove(0);
    assert_eq!(
        (
            &dp["RepairDamagedContent"],
            &dp["ValidationSchedule"],
            &dp["RateLimitBytesPerSecond"]
        ),
        (&json!(true), &json!(""), &json!(0))
    );
    let dkey = format!("SMS_DistributionPointInfo{}", key(&nal));
    let daily = every_hours(24);
    let (st, v) = s
        .patch(
            &dkey,
            json!({"RepairDamagedContent": false, "ValidationSchedule": daily, "RateLimitBytesPerSecond": 5_000_000}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (
            &v["RepairDamagedContent"],
            &v["ValidationSchedule"],
            &v["RateLimitBytesPerSecond"]
        ),
        (&json!(false), &json!(daily), &json!(5_000_000))
    );
    let got = s.patch(&dkey, json!({"ValidationSchedule": "nonsense"})).await;
    assert_error(&got, 400, "InvalidValue");
    // Rate limit modes: a mode without its values, or values out of range, are refused.
    for bad in [
        json!({"RateLimitMode": 1, "PulseBlockSizeKB": 0}),
        json!({"RateLimitMode": 2}),
        json!({"RateLimitMode": 7}),
        json!({"HourlyPercentages": "100,50"}),
        json!({"PulseDelaySeconds": 4000}),
        json!({"AvailabilitySchedule": "012"}),
    ] {
        let got = s.patch(&dkey, bad.clone()).await;
        assert_error(&got, 400, "InvalidValue");
    }
    let (st, v) = s
        .patch(
            &dkey,
            json!({"RateLimitMode": 1, "PulseBlockSizeKB": 64, "PulseDelaySeconds": 2, "AvailabilitySchedule": "3".repeat(168)}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["RateLimitMode"], &v["PulseBlockSizeKB"], &v["AvailabilitySchedule"]),
        (&json!(1), &json!(64), &json!("3".repeat(168)))
    );
    let mut bad_hour = "0".repeat(168);
    bad_hour.replace_range(50..51, "9");
    let (st, v) = s.patch(&dkey, json!({"AvailabilitySchedule": bad_hour})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v.to_string().contains("day 2, 02:00"), "the error names the hour: {v}");
    // Back to unlimited and always open (an all-open schedule is stored as "").
    let (st, v) = s
        .patch(
            &dkey,
            json!({"RateLimitBytesPerSecond": 0, "AvailabilitySchedule": "0".repeat(168)}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["RateLimitMode"], &v["AvailabilitySchedule"]),
        (&json!(0), &json!(""))
    );
}

/// A DP's validation schedule: when it comes due, every package INSTALLED there goes to
/// CONTENT_MONITORING (and only those), once per occurrence.
#[tokio::test]
async fn validation_schedule_starts_validations() {
    use jiff::{SignedDuration, Timestamp, tz::TimeZone};
    use pkgdist_db::{JobOutcome, Lease, NewStatus};
    use pkgdist_site::scheduler::tick;

    let s = start().await;
    let a = s.package("SMS_Package", "a").await;
    let b = s.package("SMS_Package", "b").await;
    let nal = s.dp("dp1").await;
    for id in [&a, &b] {
        let (st, v) = s
            .post(
                &format!("SMS_Package{}/AdminService.AddDistributionPoints", key(id)),
                json!({"SiteCode": ["PS1"], "NALPath": [nal]}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    // Package a becomes INSTALLED, as the distribution manager would record it.
    let db = &s.state.db;
    let row = db.package_dp(&a, &nal).await.unwrap().unwrap();
    let now = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let lease = Lease {
        package_id: a.clone(),
        nal_path: nal.clone(),
        job_seq: row.job_seq,
        state: row.state,
        attempts: row.attempts,
        owner: "test".into(),
        until: "2999-01-01T00:00:00Z".into(),
    };
    assert!(db.claim(&lease, &now).await.unwrap());
    let done = JobOutcome {
        package_id: a.clone(),
        nal_path: nal.clone(),
        job_seq: row.job_seq,
        state: 0,
        installed_version: Some(1),
        attempts: 0,
        next_attempt_at: None,
        remove_row: false,
        needs_repair: false,
        lease_owner: "test".into(),
        time: now.clone(),
        message: "installed".into(),
    };
    let msg = NewStatus {
        package_id: a.clone(),
        nal_path: nal.clone(),
        site_code: "PS1".into(),
        message_id: 2330,
        message_state: 1,
        severity: 0x4000_0000,
        description: "installed".into(),
        bytes_transferred: 0,
        time: now,
    };
    assert!(db.finish_job(&done, &msg).await.unwrap());

    let hourly = every_hours(1);
    let (st, v) = s
        .patch(
            &format!("SMS_DistributionPointInfo{}", key(&nal)),
            json!({"ValidationSchedule": hourly}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let zone = TimeZone::UTC;
    let start = Timestamp::now();
    // Not due yet: the schedule counts from when it was set.
    let r = tick(&s.state, start, &zone).await;
    assert!(r.validated.is_empty(), "{r:?}");
    let later = start + SignedDuration::from_hours(2);
    let r = tick(&s.state, later, &zone).await;
    assert_eq!(r.validated, vec!["dp1".to_owned()]);
    let state_of = |id: &str| {
        let id = id.to_owned();
        let nal = nal.clone();
        async move { db.package_dp(&id, &nal).await.unwrap().unwrap().state }
    };
    assert_eq!(state_of(&a).await, 8, "INSTALLED goes to CONTENT_MONITORING");
    assert_eq!(state_of(&b).await, 1, "INSTALL_PENDING is left alone");
    let r = tick(&s.state, later, &zone).await;
    assert!(r.validated.is_empty(), "once per occurrence: {r:?}");
}

/// An interval string: every `hours` hours from 2026-01-01 00:00 UTC.
fn every_hours(hours: u32) -> String {
    use pkgdist_core::schedule::{Recurrence, ScheduleToken, Start};
    ScheduleToken {
        start: Start {
            year: 2026,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
        },
        duration_days: 0,
        duration_hours: 0,
        duration_minutes: 0,
        is_gmt: true,
        recurrence: if hours >= 24 {
            Recurrence::Interval {
                days: hours / 24,
                hours: 0,
                minutes: 0,
            }
        } else {
            Recurrence::Interval {
                days: 0,
                hours,
                minutes: 0,
            }
        },
    }
    .encode()
}

/// Child sites: registered with a one-time token, enrolled once through the site link, their
/// reports shown as sites and DPs below this one, which only their own site may change; a
/// deleted child's credential is refused.
#[tokio::test]
async fn child_sites_enroll_report_and_are_forgotten() {
    let s = start().await;
    assert_error(
        &s.post("SMS_Site", json!({"SiteCode": "PS1"})).await,
        400,
        "InvalidValue",
    );
    assert_error(
        &s.post("SMS_Site", json!({"SiteCode": "x!"})).await,
        400,
        "InvalidValue",
    );
    assert_error(
        &s.post("SMS_Site", json!({"SiteCode": "PR1", "RateLimitBytesPerSecond": 10}))
            .await,
        400,
        "InvalidValue",
    );
    let (st, child) = s
        .post("SMS_Site", json!({"SiteCode": "pr1", "SiteName": "Branch"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{child}");
    assert_eq!(child["SiteCode"], "PR1");
    assert_eq!(child["Enrolled"], false);
    let token = child["EnrollmentToken"].as_str().unwrap().to_owned();
    assert_error(&s.post("SMS_Site", json!({"SiteCode": "PR1"})).await, 409, "NameTaken");

    let link = |path: &str| format!("{}{path}", s.url);
    let enroll = |code: &str, token: &str, cred: &str| {
        s.http.post(link("/link/v1/enroll")).json(&json!({
            "enrollment_token": token, "credential": cred, "site_code": code, "url": "http://127.0.0.1:1"
        }))
    };
    let cred = "c".repeat(40);
    // The token is PR1's: another code is refused, and so is a short credential. Refusals
    // all read alike: an unregistered code and a wrong token cannot be told apart.
    let other_code = enroll("PR2", &token, &cred).send().await.unwrap();
    assert_eq!(other_code.status(), 401);
    let other_code: Value = other_code.json().await.unwrap();
    let wrong_token: Value = enroll("PR1", "pkgd_wrong", &cred)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other_code["error"], wrong_token["error"]);
    assert_eq!(enroll("PR1", &token, "short").send().await.unwrap().status(), 400);
    let r = enroll("PR1", &token, &cred).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["parent_code"], "PS1");
    // Used: refused with another credential, answered again with the same one.
    assert_eq!(
        enroll("PR1", &token, &"d".repeat(40)).send().await.unwrap().status(),
        401
    );
    assert_eq!(enroll("PR1", &token, &cred).send().await.unwrap().status(), 200);

    // The link wants the credential.
    let sync = s.http.get(link("/link/v1/sync")).send().await.unwrap();
    assert_eq!(sync.status(), 401);
    let pkg = s.package("SMS_Package", "app").await;
    let sync: Value = s
        .http
        .get(link("/link/v1/sync?since=0"))
        .bearer_auth(&cred)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sync["parent_code"], "PS1");
    assert!(sync["intents"].as_array().unwrap().is_empty());
    let listed: Vec<&str> = sync["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["package_id"].as_str().unwrap())
        .collect();
    assert!(listed.is_empty() || listed == [pkg.as_str()], "{listed:?}");

    // A report: PR1 itself, SE1 below it, and a DP in each.
    let nal = |name: &str, site: &str| pkgdist_core::classes::nal_path(name, site);
    let report = json!({
        "applied_seq": 0,
        "sites": [
            {"site_code": "PR1", "site_name": "Branch", "parent_code": "PS1", "url": "http://127.0.0.1:1"},
            {"site_code": "SE1", "site_name": "Far", "parent_code": "PR1", "url": null}
        ],
        "dps": [
            {"nal_path": nal("dp-a", "PR1"), "name": "dp-a", "site_code": "PR1", "description": "", "is_pull": 0},
            {"nal_path": nal("dp-b", "SE1"), "name": "dp-b", "site_code": "SE1", "description": "", "is_pull": 0}
        ],
        "rows": []
    });
    let r = s
        .http
        .post(link("/link/v1/report"))
        .bearer_auth(&cred)
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (_, sites) = s.get("SMS_Site").await;
    let sites = sites["value"].as_array().unwrap();
    assert_eq!(sites.len(), 3, "{sites:#?}");
    let se1 = sites.iter().find(|x| x["SiteCode"] == "SE1").unwrap();
    assert_eq!(
        (se1["ReportingSiteCode"].clone(), se1["Type"].clone()),
        (json!("PR1"), json!(1))
    );
    let own = sites.iter().find(|x| x["SiteCode"] == "PS1").unwrap();
    assert_eq!(own["Type"], 4, "a top site with sites below is a CAS");
    // The package list comes down again only when it has changed.
    let epoch = sync["packages_epoch"].as_i64().unwrap();
    let again = |epoch: i64| {
        let req = s
            .http
            .get(link(&format!("/link/v1/sync?since=0&packages={epoch}")))
            .bearer_auth(&cred);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert!(again(epoch).await["packages"].is_null());
    assert!(again(epoch - 1).await["packages"].is_array());
    // Changes onto a copy that is not at their base are not applied, and the answer says so:
    // the child then sends its rows whole.
    let mut delta = report.clone();
    delta["base"] = json!(41);
    delta["seq"] = json!(42);
    delta["sites"] = json!([{"site_code": "PR1", "site_name": "Renamed", "parent_code": "PS1", "url": null}]);
    let r = s
        .http
        .post(link("/link/v1/report"))
        .bearer_auth(&cred)
        .json(&delta)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        (answer["accepted"].clone(), answer["report_seq"].clone()),
        (json!(false), json!(0))
    );
    let (_, sites) = s.get("SMS_Site").await;
    assert_eq!(sites["value"].as_array().unwrap().len(), 3, "nothing applied");
    // DPs below are listed, and only their own site changes them; SE1 only through PR1.
    let b = nal("dp-b", "SE1");
    let (st, d) = s.get(&format!("SMS_DistributionPointInfo{}", key(&b))).await;
    assert_eq!((st, d["SiteCode"].clone()), (StatusCode::OK, json!("SE1")));
    let refused = s
        .patch(
            &format!("SMS_DistributionPointInfo{}", key(&b)),
            json!({"Description": "x"}),
        )
        .await;
    assert_error(&refused, 409, "InvalidState");
    assert!(refused.1.to_string().contains("belongs to site SE1"), "{}", refused.1);
    assert_error(&s.delete("SMS_Site('SE1')").await, 409, "InvalidState");
    // Targeting a DP below: SiteCode must be the DP's own site.
    let add = format!("SMS_Package{}/AdminService.AddDistributionPoints", key(&pkg));
    let wrong = s.post(&add, json!({"SiteCode": ["PR1"], "NALPath": [b]})).await;
    assert_error(&wrong, 400, "SiteMismatch");
    let (st, _) = s.post(&add, json!({"SiteCode": ["SE1"], "NALPath": [b]})).await;
    assert_eq!(st, StatusCode::CREATED);
    // … which becomes an intent for PR1 to pass down, newer than what PR1 applied.
    let intents = |since: i64| {
        let req = s
            .http
            .get(link(&format!("/link/v1/sync?since={since}")))
            .bearer_auth(&cred);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap()["intents"].clone() }
    };
    let got = intents(0).await;
    assert_eq!(got.as_array().unwrap().len(), 1, "{got}");
    assert_eq!(
        (got[0]["nal_path"].clone(), got[0]["intent"].clone()),
        (json!(b), json!("target"))
    );
    let seq = got[0]["seq"].as_i64().unwrap();
    assert!(intents(seq).await.as_array().unwrap().is_empty());

    // The link's rate limit; the child's name is its own.
    let (st, d) = s
        .patch("SMS_Site('PR1')", json!({"RateLimitBytesPerSecond": 2048}))
        .await;
    assert_eq!(
        (st, d["RateLimitBytesPerSecond"].clone()),
        (StatusCode::OK, json!(2048))
    );
    assert_error(
        &s.patch("SMS_Site('PR1')", json!({"SiteName": "x"})).await,
        400,
        "InvalidValue",
    );

    // Deleting the child forgets everything known through it, and its credential.
    let (st, _) = s.delete("SMS_Site('PR1')").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, sites) = s.get("SMS_Site").await;
    assert_eq!(sites["value"].as_array().unwrap().len(), 1);
    let (_, dps) = s.get("SMS_DistributionPointInfo").await;
    assert!(dps["value"].as_array().unwrap().is_empty(), "{dps}");
    let sync = s
        .http
        .get(link("/link/v1/sync"))
        .bearer_auth(&cred)
        .send()
        .await
        .unwrap();
    assert_eq!(sync.status(), 401);
}

/// Request shapes of public AdminService clients, and what they read back:
/// - GET by key read as `.value[0]`, and `@odata.etag` on entities: the AdminService usage
///   page (`develop/adminservice/usage.md`) and community PowerShell that does
///   `(Invoke-RestMethod … "wmi/SMS_Package('$id')").value[0]`;
/// - the key as a path segment and `Class/$count`: OData v4 URL conventions, used by
///   generic OData clients (PowerShell's `Invoke-RestMethod`, Python `requests`);
/// - method calls answered 201 with `ReturnValue` on top (a community client of
///   `SMS_Collection('ID')/AdminService.RequestRefresh` checks for 201);
/// - PUT of the object just read, and POST with the key as an update (WMI's PutInstance);
/// - `$filter` sent form-encoded (`%24filter`, `+`, `%27`), as PowerShell's `-Body` and
///   Python's `params=` do.
#[tokio::test]
async fn compatibility_envelopes_and_keys() {
    let s = start().await;
    let pkg = s.package("SMS_Package", "compat").await;
    let raw = |path: String| {
        let (http, url, token) = (s.http.clone(), s.url.clone(), s.token.clone());
        async move {
            let r = http
                .get(format!("{url}/AdminService/wmi/{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.text().await.unwrap())
        }
    };
    // GET by key: a collection of one, with its context and etag.
    let (st, body) = raw(format!("SMS_Package('{pkg}')")).await;
    assert_eq!(st, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    let ctx = v["@odata.context"].as_str().unwrap();
    assert!(
        ctx.starts_with("http://127.0.0.1:") && ctx.ends_with("/AdminService/wmi/$metadata#SMS_Package"),
        "{ctx}"
    );
    assert_eq!(v["value"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["value"][0]["PackageID"], json!(pkg));
    assert_eq!(v["value"][0]["@odata.etag"], json!(pkg));
    // Collections carry etags too, streamed or not.
    let list = s.list("SMS_Package").await;
    assert!(list.iter().all(|e| e["@odata.etag"] == e["PackageID"]), "{list:?}");
    // Every key form names the same instance.
    for path in [
        format!("SMS_Package/{pkg}"),
        format!("SMS_Package/'{pkg}'"),
        format!("sms_package('{pkg}')"),
        format!("SMS_Package(PackageID='{pkg}')"),
        format!("SMS_Package(PackageID%3D%27{pkg}%27)"),
    ] {
        let (st, body) = raw(path.clone()).await;
        assert_eq!(st, StatusCode::OK, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["value"][0]["PackageID"], json!(pkg), "{path}");
    }
    // A composite key may name non-key properties too (scripts send SiteCode): they must match.
    let nal = s.dp("compat-dp").await;
    let (st, _) = s
        .post(
            &format!("SMS_Package/{pkg}/AdminService.AddDistributionPoints"),
            json!({"SiteCode": ["PS1"], "NALPath": [nal]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "methods answer 201, as the real route");
    let composite = |site: &str| {
        format!(
            "SMS_DistributionPoint(PackageID='{pkg}',ServerNALPath='{}',SiteCode='{site}')",
            urlencode(&nal.replace('\'', "''"))
        )
    };
    let (st, d) = s.get(&composite("PS1")).await;
    assert_eq!((st, d["PackageID"].clone()), (StatusCode::OK, json!(pkg)), "{d}");
    assert_eq!(d["@odata.etag"], json!(format!("{pkg};{nal};PS1")));
    assert_error(&s.get(&composite("XX1")).await, 404, "UnknownInstance");
    // A method through the key-as-segment form: ReturnValue and out-parameters on top.
    let (st, out) = s
        .post(&format!("SMS_Package/{pkg}/AdminService.RefreshPkgSource"), json!({}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{out}");
    assert_eq!(
        (out["ReturnValue"].clone(), out["SourceVersion"].clone()),
        (json!(0), json!(2))
    );
    // $count, filtered, and the service document.
    let (st, n) = raw("SMS_Package/$count".into()).await;
    assert_eq!((st, n.as_str()), (StatusCode::OK, "1"));
    let (_, n) = raw("SMS_Package/$count?$filter=Name%20eq%20'nope'".into()).await;
    assert_eq!(n, "0");
    let (st, doc) = raw(String::new()).await;
    assert_eq!(st, StatusCode::OK);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert!(
        doc["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "SMS_Package" && c["kind"] == "EntitySet"),
        "{doc}"
    );
    // Form-encoded query strings filter (never unfiltered results); a misspelt option is 400.
    s.package("SMS_Package", "other").await;
    let (st, body) = raw("SMS_Package?%24filter=startswith(Name%2C%27comp%27)".into()).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["value"].as_array().unwrap().len(), 1, "{v}");
    // As the AdminService documentation writes it, and in camelCase.
    let (_, body) = raw("SMS_Package?$filter=startsWith(Name,'comp')%20eq%20true".into()).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["value"].as_array().map(Vec::len), Some(1), "{v}");
    let (_, body) = raw("SMS_Package?%24filter=Name+eq+%27other%27".into()).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["value"][0]["Name"], "other", "{v}");
    let (st, _) = raw("SMS_Package?$filtr=Name%20eq%20'x'".into()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // PUT of the object just read: unchanged read-only properties are fine; a changed one is
    // refused, naming it; what changed is written.
    let (_, mut whole) = s.get(&format!("SMS_Package('{pkg}')")).await;
    whole["Description"] = json!("put back whole");
    let put = |body: Value| {
        let (http, url, token) = (s.http.clone(), s.url.clone(), s.token.clone());
        let pkg = pkg.clone();
        async move {
            let r = http
                .put(format!("{url}/AdminService/wmi/SMS_Package('{pkg}')"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let st = r.status();
            (st, r.json::<Value>().await.unwrap())
        }
    };
    let (st, after) = put(whole.clone()).await;
    assert_eq!(
        (st, after["Description"].clone()),
        (StatusCode::OK, json!("put back whole")),
        "{after}"
    );
    let mut changed = whole.clone();
    changed["SourceVersion"] = json!(99);
    let refused = put(changed).await;
    assert_error(&refused, 400, "ReadOnlyProperty");
    assert_eq!(refused.1["ExtendedStatus"]["ParameterInfo"], "SourceVersion");
    // A time sent back in another notation of the same instant is unchanged.
    let mut same = whole.clone();
    let date = whole["SourceDate"].as_str().unwrap().replace('Z', "+00:00");
    same["SourceDate"] = json!(date);
    same["Priority"] = json!(2.0);
    let (st, after) = put(same).await;
    assert_eq!(st, StatusCode::OK, "{after}");
    // A form a web page submits (text/plain, no preflight) changes nothing.
    let r = s
        .http
        .post(format!("{}/AdminService/wmi/SMS_Package", s.url))
        .bearer_auth(&s.token)
        .header("content-type", "text/plain")
        .body(r#"{"Name": "forged"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(s.list("SMS_Package").await.len(), 2);
    // A site-assigned key that names nothing cannot be created.
    assert_error(
        &s.post("SMS_Package", json!({"PackageID": "PS1FFFFF", "Name": "x"}))
            .await,
        404,
        "UnknownInstance",
    );
    // POST with the key in the body updates; without it, creates.
    let (st, upd) = s
        .post("SMS_Package", json!({"PackageID": pkg, "Name": "renamed"}))
        .await;
    assert_eq!((st, upd["Name"].clone()), (StatusCode::OK, json!("renamed")), "{upd}");
    assert_eq!(s.list("SMS_Package").await.len(), 2, "an update, not a third package");
    // HTTP Basic with the token as the password (PowerShell's -Credential), from loopback;
    // a 401 offers it beside Bearer.
    let r = s
        .http
        .get(format!("{}/AdminService/wmi/SMS_Package", s.url))
        .basic_auth("admin", Some(&s.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .http
        .get(format!("{}/AdminService/wmi/SMS_Package", s.url))
        .basic_auth("admin", Some("pkgd_wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let offered = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(offered.contains("Bearer") && offered.contains("Basic"), "{offered}");

    // DELETE answers 204, no body.
    let r = s
        .http
        .delete(format!("{}/AdminService/wmi/SMS_Package('{pkg}')", s.url))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.text().await.unwrap().is_empty());
}

/// `$metadata` is CSDL XML describing every class of the catalog (key, properties) and every
/// method as a bound action (static ones also as action imports), as read by the OASIS OData
/// TC's own CSDL reader (npm `odata-csdl`), which knows nothing of pkgdist. Strict, it refuses
/// any element or attribute CSDL does not define; it does not check names or resolve
/// references, which the assertions here do. `scripts/test-deps` installs it.
#[tokio::test]
async fn metadata_describes_every_class_and_method() {
    let s = start().await;
    let r = s
        .http
        .get(format!("{}/AdminService/wmi/$metadata", s.url))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().contains("xml"));
    let csdl = oasis_csdl_json(&r.text().await.unwrap());
    assert_eq!(csdl["$Version"], "4.0");
    assert_eq!(csdl["$EntityContainer"], "AdminService.AdminService");
    let schema = &csdl["AdminService"];
    let container = &schema["AdminService"];
    for class in pkgdist_proto::catalog::CLASSES {
        let ty = &schema[class.name];
        assert_eq!(ty["$Kind"], "EntityType", "{}: {ty}", class.name);
        let props: std::collections::BTreeSet<&str> = ty
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|k| !k.starts_with('$'))
            .collect();
        let want: std::collections::BTreeSet<&str> = class.props.iter().map(|p| p.name).collect();
        assert_eq!(props, want, "{}", class.name);
        if class.key.is_empty() {
            // A class of static methods only: no instances, so no key and no entity set.
            assert_eq!(ty["$Abstract"], true, "{}", class.name);
            assert!(container.get(class.name).is_none(), "{}", class.name);
        } else {
            assert_eq!(ty["$Key"], json!(class.key), "{}", class.name);
            let set = &container[class.name];
            assert_eq!(
                (set["$Collection"].clone(), set["$Type"].clone()),
                (json!(true), json!(format!("AdminService.{}", class.name))),
                "{}",
                class.name
            );
        }
        for m in class.methods {
            // CSDL JSON writes a collection as `$Collection` beside the element type.
            let binding = format!("AdminService.{}", class.name);
            let overloads = schema[m.name].as_array().cloned().unwrap_or_default();
            let found = overloads.iter().any(|o| {
                let bound_to = &o["$Parameter"][0];
                o["$Kind"] == "Action"
                    && o["$IsBound"] == true
                    && bound_to["$Name"] == "bindingParameter"
                    && bound_to["$Type"] == binding.as_str()
                    && (bound_to["$Collection"] == true) != m.instance
                    && m.params
                        .iter()
                        .all(|p| o["$Parameter"].as_array().unwrap().iter().any(|q| q["$Name"] == p.name))
            });
            let on = if m.instance { "an instance" } else { "the collection" };
            assert!(
                found,
                "{}.{} is not an action bound to {on} of {binding}",
                class.name, m.name
            );
            if !m.instance {
                // As the real route: an action import `Class.M` of an unbound action.
                let dotted = format!("{}.{}", class.name, m.name);
                assert_eq!(
                    container[&dotted]["$Action"],
                    json!(format!("AdminService.{dotted}")),
                    "{dotted}"
                );
                let unbound = &schema[&dotted][0];
                assert_eq!(
                    (unbound["$Kind"].clone(), unbound["$IsBound"].clone()),
                    (json!("Action"), Value::Null),
                    "{dotted}: {unbound}"
                );
                let names: Vec<&str> = unbound["$Parameter"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|p| p["$Name"].as_str()).collect())
                    .unwrap_or_default();
                let want: Vec<&str> = m.params.iter().map(|p| p.name).collect();
                assert_eq!(names, want, "{dotted}");
            }
        }
    }
}

/// `xml` as CSDL JSON, read by `tests/csdl/to-json.js` (the OASIS reader, strict).
fn oasis_csdl_json(xml: &str) -> Value {
    use std::io::Write as _;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/csdl");
    assert!(
        dir.join("node_modules/odata-csdl").is_dir(),
        "the OASIS CSDL reader is not installed: run scripts/test-deps (it installs nodejs, npm and the reader)"
    );
    let mut child = std::process::Command::new("node")
        .arg(dir.join("to-json.js"))
        .current_dir(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node is not installed: run scripts/test-deps");
    child.stdin.take().unwrap().write_all(xml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OASIS CSDL reader refused $metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The per-package and per-DP summaries scripts and consoles read (`SMS_PackageStatusRootSummarizer`,
/// `SMS_DPStatusInfo`) follow the rows: targeting, a failure, a removal.
#[tokio::test]
async fn root_summarizer_and_dp_status_info_follow_the_rows() {
    let s = start().await;
    let pkg = s.package("SMS_Package", "summed").await;
    let (dp1, dp2) = (s.dp("dp1").await, s.dp("dp2").await);
    let root = || async { s.get(&format!("SMS_PackageStatusRootSummarizer('{pkg}')")).await.1 };
    let s = &s;
    let info = |nal: String| async move { s.get(&format!("SMS_DPStatusInfo{}", key(&nal))).await.1 };
    let r = root().await;
    assert_eq!(
        (r["Targeted"].clone(), r["Installed"].clone()),
        (json!(0), json!(0)),
        "{r}"
    );
    assert_eq!(
        (r["SourceVersion"].clone(), r["SourceSite"].clone()),
        (json!(1), json!("PS1"))
    );
    let (st, _) = s
        .post(
            &format!("SMS_Package{}/AdminService.AddDistributionPoints", key(&pkg)),
            json!({"SiteCode": ["PS1", "PS1"], "NALPath": [dp1, dp2]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let r = root().await;
    assert_eq!(
        (r["Targeted"].clone(), r["Installed"].clone()),
        (json!(2), json!(0)),
        "{r}"
    );
    let d = info(dp1.clone()).await;
    assert_eq!(
        (
            d["NumberInProgress"].clone(),
            d["NumberInstalled"].clone(),
            d["IsPullDP"].clone()
        ),
        (json!(1), json!(0), json!(false)),
        "{d}"
    );
    // Cancelling one makes it failed; deleting its row (removal queued) keeps it counted until
    // the DP has released the content.
    let p = json!({"PackageID": pkg, "NALPath": dp1});
    let (st, _) = s.post("SMS_DistributionPoint.CancelDistribution", p).await;
    assert_eq!(st, StatusCode::CREATED);
    let r = root().await;
    assert_eq!(
        (r["Targeted"].clone(), r["Failed"].clone()),
        (json!(2), json!(1)),
        "{r}"
    );
    assert_eq!(info(dp1.clone()).await["NumberErrors"], json!(1));
    // The DP's latest status message: its count and time, as its messages say.
    let newest = s
        .list(&format!(
            "SMS_DistributionDPStatus?$filter=NalPath%20eq%20'{}'&$orderby=ID%20desc",
            dp1.replace('\\', "%5C").replace('"', "%22")
        ))
        .await;
    let d = info(dp1.clone()).await;
    assert_eq!(d["MessageCount"], json!(newest.len()), "{d}");
    assert!(newest.len() >= 2, "{newest:?}");
    assert_eq!(d["LastStatusTime"], newest[0]["LastUpdateDate"], "{d}");
    assert_eq!(info(dp2.clone()).await["MessageCount"], json!(1));
    // Filters and $count run on the kept counts.
    let failing = s.list("SMS_PackageStatusRootSummarizer?$filter=Failed%20gt%200").await;
    assert_eq!(failing.len(), 1);
    let busy = s.list("SMS_DPStatusInfo?$filter=NumberInProgress%20gt%200").await;
    assert_eq!(busy.len(), 1, "{busy:?}");
    assert_eq!(busy[0]["NALPath"], json!(dp2));
    // A DP deleted takes its rows out of the package's counts.
    let (st, _) = s.delete(&format!("SMS_DistributionPointInfo{}", key(&dp2))).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(root().await["Targeted"], json!(1));
}
/// Every property of every class sorts and filters, on both engines: each is an SQL
/// expression (or a small class's value), and PostgreSQL is stricter about types and
/// constants than SQLite, so each is run there too, not only read.
#[tokio::test]
async fn every_property_sorts_and_filters_on_both_engines() {
    let pg = tokio::task::spawn_blocking(pkgdist_testkit::postgres::TempPostgres::start)
        .await
        .unwrap()
        .unwrap();
    for database in [None, Some(pg.url())] {
        let engine = if database.is_some() { "postgres" } else { "sqlite" };
        let s = start_on(database).await;
        s.estate().await;
        for class in pkgdist_proto::catalog::CLASSES.iter().filter(|c| !c.key.is_empty()) {
            let all = s.list(class.name).await;
            for p in class.props {
                use pkgdist_proto::catalog::Ty;
                if matches!(p.ty, Ty::StringArray | Ty::UInt32Array | Ty::ObjectArray)
                    || ["Token", "EnrollmentToken"].contains(&p.name)
                {
                    continue;
                }
                let what = format!("{engine} {}.{}", class.name, p.name);
                let (st, sorted) = s
                    .get(&format!("{}?$orderby={}%20desc&$top=3", class.name, p.name))
                    .await;
                assert_eq!(st, StatusCode::OK, "{what}: {sorted}");
                // The first row's value selects at least that row.
                let Some(v) = all.first().map(|r| r[p.name].clone()) else {
                    continue;
                };
                let literal = match &v {
                    Value::String(t) if p.ty == Ty::DateTime => t.clone(),
                    Value::String(t) => format!("'{}'", t.replace('\'', "''")),
                    Value::Null => "null".into(),
                    other => other.to_string(),
                };
                let filter = urlencode(&format!("{} eq {literal}", p.name));
                let (st, n) = s.get(&format!("{}/$count?$filter={filter}", class.name)).await;
                assert_eq!(st, StatusCode::OK, "{what}: {n}");
                let n: u64 = n.as_str().map_or_else(|| n.as_u64().unwrap(), |t| t.parse().unwrap());
                assert!(n >= 1, "{what} eq {literal} selects nothing");
            }
        }
    }
}

/// Requests replayed from public AdminService scripts.
#[path = "api/scripts.rs"]
mod scripts;

/// Bodies are read strictly everywhere the site takes one: a key given twice is refused (and
/// changes nothing), and the node and link routes answer a body that is too large, not JSON
/// or of the wrong shape in the API's one error shape (they answered axum's plain text).
#[tokio::test]
async fn bodies_are_strict_and_errors_have_one_shape() {
    let s = start().await;
    let raw = |path: &str, body: String| {
        let (http, url, token) = (s.http.clone(), s.url.clone(), s.token.clone());
        let path = path.to_owned();
        async move {
            let r = http
                .post(format!("{url}{path}"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let st = r.status();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // The last of two keys would make this a full administrator's token.
    let twice = raw(
        "/AdminService/wmi/PKGDIST_AdminToken",
        r#"{"Name": "x", "Role": "ReadOnlyAnalyst", "Role": "FullAdministrator"}"#.into(),
    )
    .await;
    assert_error(&twice, 400, "MalformedBody");
    assert!(twice.1["error"]["message"].as_str().unwrap().contains("given twice"));
    assert_eq!(s.list("PKGDIST_AdminToken").await.len(), 1, "only the bootstrap token");
    // The node and link enrollment routes, which take no token.
    for path in ["/node/v1/enroll", "/link/v1/enroll"] {
        assert_error(&raw(path, "{not json".into()).await, 400, "MalformedBody");
        assert_error(&raw(path, r#"{"url": 5}"#.into()).await, 400, "MalformedBody");
        assert_error(
            &raw(path, r#"{"credential": "a", "credential": "b"}"#.into()).await,
            400,
            "MalformedBody",
        );
        let huge = format!(r#"{{"url": "{}"}}"#, "x".repeat(3 << 20));
        assert_error(&raw(path, huge).await, 413, "BodyTooLarge");
    }
}

/// A 405 says which methods its path takes.
#[tokio::test]
async fn method_not_allowed_names_the_methods_allowed() {
    let s = start().await;
    let pkg = s.package("SMS_Package", "p").await;
    let cases = [
        (
            reqwest::Method::DELETE,
            format!("SMS_PackageStatusRootSummarizer('{pkg}')"),
            "GET",
        ),
        (
            reqwest::Method::POST,
            format!("SMS_Package('{pkg}')"),
            "GET, PATCH, PUT, DELETE",
        ),
        (
            reqwest::Method::GET,
            format!("SMS_Package('{pkg}')/AdminService.RefreshPkgSource"),
            "POST",
        ),
        (
            reqwest::Method::GET,
            "SMS_DistributionPoint.CancelDistribution".into(),
            "POST",
        ),
        (reqwest::Method::POST, "SMS_PackageStatusRootSummarizer".into(), "GET"),
        // The service document, through axum's method routing.
        (reqwest::Method::DELETE, String::new(), "GET,HEAD"),
    ];
    for (method, path, allow) in cases {
        let r = s
            .http
            .request(method.clone(), format!("{}/AdminService/wmi/{path}", s.url))
            .bearer_auth(&s.token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(
            r.headers().get("allow").map(|v| v.to_str().unwrap().to_owned()),
            Some(allow.to_owned()),
            "{method} {path}"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "NotAllowed", "{method} {path}");
    }
}

/// Guessing tokens from one address gets slow after a few failures; another address, and
/// requests with a valid token, are not slowed.
#[tokio::test]
async fn repeated_failed_authentications_are_answered_slowly() {
    let s = start().await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let guesser = from([127, 0, 0, 3]);
    let url = format!("{}/AdminService/wmi/SMS_Package", s.url);
    // Requests without credentials (a client's first try, before the challenge) do not count.
    for _ in 0..10 {
        let r = guesser.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let mut times = Vec::new();
    for i in 0..8 {
        let t = std::time::Instant::now();
        let r = guesser
            .get(&url)
            .bearer_auth(format!("pkgd_guess{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        times.push(t.elapsed());
    }
    let free = pkgdist_site::auth::Failures::FREE as usize;
    // Generous bounds for a busy machine: the free ones together well under the first delay
    // sum (250 + 500 + 1000 ms), the 8th at least its 1 s.
    let free_total: std::time::Duration = times[..free].iter().sum();
    assert!(free_total.as_millis() < 1000, "{times:?}");
    assert!(
        times[free].as_millis() >= 250 && times[7].as_millis() >= 1000,
        "{times:?}"
    );
    // Another address guessing is answered without delay.
    let t = std::time::Instant::now();
    let r = from([127, 0, 0, 4])
        .get(&url)
        .bearer_auth("pkgd_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(t.elapsed().as_millis() < 1000, "{:?}", t.elapsed());
    // And a valid token from the guessing address is served.
    let r = guesser.get(&url).bearer_auth(&s.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Sources must be inside `allowed-source-roots` (here the test's folder), judged by where a
/// path really leads: a folder elsewhere, or a link inside the root to a folder elsewhere, is
/// refused (and nothing recorded); a root given through a link covers the folder it leads to.
#[tokio::test]
async fn sources_must_be_inside_the_allowed_roots() {
    let s = start().await;
    let elsewhere = TempDir::new().unwrap();
    std::fs::write(elsewhere.path().join("secret.txt"), b"not for packaging").unwrap();
    let create = |path: &std::path::Path| {
        s.post(
            "SMS_Package",
            json!({"Name": "x", "PkgSourcePath": path.to_str().unwrap()}),
        )
    };
    let refused = create(elsewhere.path()).await;
    assert_error(&refused, 403, "SourceNotAllowed");
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allowed-source-roots")
    );
    let link = s.dir.path().join("looks-inside");
    std::os::unix::fs::symlink(elsewhere.path(), &link).unwrap();
    assert_error(&create(&link).await, 403, "SourceNotAllowed");
    // The site's own data folder, even inside a root, and a folder holding it.
    for private in [s.data.clone(), s.data.join("library"), s.dir.path().to_owned()] {
        let r = create(&private).await;
        assert_error(&r, 403, "SourceNotAllowed");
        assert!(
            r.1["error"]["message"].as_str().unwrap().contains("own data"),
            "{}",
            r.1
        );
    }
    assert!(s.list("SMS_Package").await.is_empty(), "nothing recorded");
    // A package inside may not be pointed outside either.
    let pkg = s.package("SMS_Package", "inside").await;
    assert_error(
        &s.patch(
            &format!("SMS_Package('{pkg}')"),
            json!({"PkgSourcePath": elsewhere.path().to_str().unwrap()}),
        )
        .await,
        403,
        "SourceNotAllowed",
    );
    // A root named through a link: sources in the folder it leads to are inside.
    let real = TempDir::new().unwrap();
    let src = real.path().join("app");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"a").unwrap();
    let dir = TempDir::new().unwrap();
    let (mut cfg, _) = pkgdist_site::SiteConfig::load_or_init(dir.path(), Some("PS9")).unwrap();
    let root_link = dir.path().join("root-link");
    std::os::unix::fs::symlink(real.path(), &root_link).unwrap();
    cfg.allowed_source_roots = Some(vec![root_link]);
    let state = pkgdist_site::open(dir.path(), &cfg).await.unwrap();
    let lib = state.library.clone();
    let roots = cfg.allowed_source_roots.clone().unwrap();
    let done = tokio::task::spawn_blocking(move || {
        lib.snapshot(
            &src,
            "PS900001.1".parse().unwrap(),
            &pkgdist_content::SnapshotOptions {
                allowed_roots: Some(&roots),
                ..Default::default()
            },
        )
    })
    .await
    .unwrap();
    assert!(done.is_ok(), "{done:?}");
}

/// A row that waits on something only an administrator can change says so: a DP that never
/// enrolled, a package with no content yet. Once the cause is gone, the row's own message is
/// back.
#[tokio::test]
async fn waiting_rows_say_why() {
    let s = start().await;
    let (st, dp) = s.post("SMS_DistributionPointInfo", json!({"Name": "dp1"})).await;
    assert_eq!(st, StatusCode::CREATED);
    let nal = dp["NALPath"].as_str().unwrap().to_owned();
    let enrollment = dp["EnrollmentToken"].as_str().unwrap().to_owned();
    let with_source = s.package("SMS_Package", "app").await;
    let (_, empty) = s.post("SMS_Package", json!({"Name": "empty"})).await;
    let empty = empty["PackageID"].as_str().unwrap().to_owned();
    for pkg in [&with_source, &empty] {
        let (st, _) = s
            .post(
                &format!("SMS_Package('{pkg}')/AdminService.AddDistributionPoints"),
                json!({"SiteCode": ["PS1"], "NALPath": [nal]}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let s = &s;
    let row = |pkg: String| {
        let path = format!("SMS_PackageStatusDistPointsSummarizer{}", dp_key(&pkg, &nal));
        async move { s.get(&path).await.1 }
    };
    let message = |pkg: String| async move { row(pkg).await["LastMessage"].as_str().unwrap().to_owned() };
    let m = message(with_source.clone()).await;
    assert!(m.starts_with("waiting: dp1 has never enrolled"), "{m}");
    assert_eq!(row(with_source.clone()).await["WaitsFor"], "Enrollment");
    // Enrolled: the one with content is queued as before; the empty one says it has none.
    let r = s
        .http
        .post(format!("{}/node/v1/enroll", s.url))
        .json(&json!({"enrollment_token": enrollment, "credential": "c".repeat(40), "url": "http://127.0.0.1:9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let m = message(with_source.clone()).await;
    assert!(!m.starts_with("waiting:"), "{m}");
    assert_eq!(row(with_source).await["WaitsFor"], "", "no longer waiting on anyone");
    let m = message(empty.clone()).await;
    assert!(m.starts_with("waiting: the package has no content yet"), "{m}");
    assert_eq!(row(empty).await["WaitsFor"], "Content");
    // Filterable, as every property: the rows that wait on someone.
    let waiting = s
        .list("SMS_PackageStatusDistPointsSummarizer?$filter=WaitsFor%20ne%20''")
        .await;
    assert_eq!(waiting.len(), 1);
}

/// Every change made through the API is an audit message naming the token that made it
/// (issue 15): created, modified (a method call too) and deleted, by which token; reads,
/// static methods and refused changes are not recorded.
#[tokio::test]
async fn changes_are_audited_with_the_token_that_made_them() {
    let s = start().await;
    let (_, t) = s
        .post(
            "PKGDIST_AdminToken",
            json!({"Name": "packager", "Role": "FullAdministrator"}),
        )
        .await;
    let (packager, packager_id) = (
        t["Token"].as_str().unwrap().to_owned(),
        t["TokenID"].as_str().unwrap().to_owned(),
    );
    let (_, t) = s
        .post(
            "PKGDIST_AdminToken",
            json!({"Name": "viewer", "Role": "ReadOnlyAnalyst"}),
        )
        .await;
    let viewer = t["Token"].as_str().unwrap().to_owned();
    let before = s.list("SMS_StatusMessage").await.len();
    assert_eq!(before, 2, "the two token creations, by the bootstrap token");

    let src = s.source("audited");
    let (st, p) = s
        .req(
            reqwest::Method::POST,
            "SMS_Package",
            Some(json!({"Name": "audited", "PkgSourcePath": src.to_str().unwrap()})),
            Some(&packager),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let id = p["PackageID"].as_str().unwrap().to_owned();
    let path = format!("SMS_Package{}", key(&id));
    let (st, _) = s
        .req(
            reqwest::Method::PATCH,
            &path,
            Some(json!({"Description": "x"})),
            Some(&packager),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .req(
            reqwest::Method::POST,
            &format!("{path}/AdminService.RefreshPkgSource"),
            Some(json!({})),
            Some(&packager),
        )
        .await;
    assert!(st.is_success(), "{st}");
    // Not recorded: a read, a static method, a refused change.
    s.req(reqwest::Method::GET, &path, None, Some(&packager)).await;
    s.req(
        reqwest::Method::POST,
        "SMS_ScheduleMethods.WriteToString",
        Some(json!({"TokenData": []})),
        Some(&packager),
    )
    .await;
    let (st, _) = s.req(reqwest::Method::DELETE, &path, None, Some(&viewer)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s.req(reqwest::Method::DELETE, &path, None, Some(&packager)).await;
    assert!(st.is_success(), "{st}");

    let all = s.list("SMS_StatusMessage").await;
    let mine: Vec<&Value> = all.iter().skip(before).collect();
    let summary: Vec<(i64, String, String)> = mine
        .iter()
        .map(|m| {
            (
                m["MessageID"].as_i64().unwrap(),
                m["HttpMethod"].as_str().unwrap().to_owned(),
                m["Target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (30000, "POST".into(), "SMS_Package".into()),
            (30001, "PATCH".into(), format!("SMS_Package('{id}')")),
            (
                30001,
                "POST".into(),
                format!("SMS_Package('{id}')/AdminService.RefreshPkgSource")
            ),
            (30002, "DELETE".into(), format!("SMS_Package('{id}')")),
        ],
        "{all:#?}"
    );
    for m in &mine {
        assert_eq!(m["TokenName"], "packager");
        assert_eq!(m["TokenID"], packager_id.as_str());
        assert_eq!(m["MessageType"], 768);
        assert_eq!(m["Component"], "SMS Provider");
        assert!(!m["MachineName"].as_str().unwrap().is_empty(), "{m}");
        assert_eq!(m["SiteCode"], "PS1");
        let d = m["Description"].as_str().unwrap();
        assert!(d.contains("\"packager\"") && d.contains(&packager_id), "{d}");
    }
    // Queryable like any class: by token, newest first.
    let (st, v) = s
        .get("SMS_StatusMessage?$filter=TokenName%20eq%20'packager'%20and%20MessageID%20eq%2030002&$orderby=RecordID%20desc")
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["value"].as_array().unwrap().len(), 1, "{v}");
    // Retention: messages older than the cutoff go.
    let gone = s.state.db.prune_audit("9999-01-01T00:00:00Z").await.unwrap();
    assert_eq!(gone, all.len() as u64);
    assert!(s.list("SMS_StatusMessage").await.is_empty());
}

/// The site's CA is kept like its node key: a site whose tls folder went missing (and would
/// make a new CA every DP and child site refuses) does not start, and says what to restore.
#[tokio::test]
async fn a_missing_ca_stops_the_site() {
    let dir = TempDir::new().unwrap();
    let (cfg, _) = pkgdist_site::SiteConfig::load_or_init(dir.path(), Some("PS1")).unwrap();
    let first = pkgdist_site::open(dir.path(), &cfg).await.unwrap();
    let pin = first.tls().unwrap().ca.pin();
    drop(first);
    let again = pkgdist_site::open(dir.path(), &cfg).await.unwrap();
    assert_eq!(again.tls().unwrap().ca.pin(), pin, "the same CA after a restart");
    drop(again);
    std::fs::remove_dir_all(dir.path().join("tls")).unwrap();
    let e = pkgdist_site::open(dir.path(), &cfg).await.unwrap_err().to_string();
    assert!(e.contains("tls/ca.pem") && e.contains(&pin), "{e}");
}

/// Content going up (`content_up`): the parent asks a child only for versions owned in its
/// subtree that a DP outside it needs; a plan or an upload of anything else, or a stream that
/// is damaged or short, is refused and records nothing; a good one is recorded and asked no
/// more. A sibling is told of the package (definitions go everywhere) and asked for nothing.
#[tokio::test]
async fn uploads_from_a_child_are_checked() {
    use pkgdist_content::{Library, prestage, snapshot::SnapshotOptions};
    let s = start().await;
    let link = |path: &str| format!("{}{path}", s.url);
    let mut creds = Vec::new();
    for code in ["PR1", "PR2"] {
        let (st, child) = s.post("SMS_Site", json!({"SiteCode": code})).await;
        assert_eq!(st, StatusCode::CREATED, "{child}");
        let cred = format!("{code}-").repeat(10);
        let r = s
            .http
            .post(link("/link/v1/enroll"))
            .json(&json!({
                "enrollment_token": child["EnrollmentToken"], "credential": cred,
                "site_code": code, "url": "http://127.0.0.1:1"
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        creds.push(cred);
    }
    let (pr1, pr2) = (creds[0].clone(), creds[1].clone());

    // SE1, below PR1, made SE100001.1: its library is the child's.
    let src = s.source("made below");
    let lib = Library::create_local(&s.dir.path().join("child-library")).unwrap();
    let content: pkgdist_core::ContentId = "SE100001.1".parse().unwrap();
    lib.snapshot(&src, content, &SnapshotOptions::default()).unwrap();
    let hash = lib.manifest_id(content).unwrap().unwrap();
    let manifest = lib.manifest(content).unwrap();
    let meta = pkgdist_site::link::PackageMeta {
        package_id: "SE100001".into(),
        package_type: 0,
        name: "made below".into(),
        version: String::new(),
        manufacturer: String::new(),
        language: String::new(),
        description: String::new(),
        source_version: 1,
        source_date: None,
        package_size: 1,
        pkg_flags: 0,
        priority: 2,
        source_site: "SE1".into(),
        manifest_hash: Some(hash.to_hex()),
        created_at: "2026-12-05T00:00:00Z".into(),
    };
    let report = json!({
        "applied_seq": 0,
        "sites": [
            {"site_code": "PR1", "site_name": "PR1", "parent_code": "PS1", "url": null},
            {"site_code": "SE1", "site_name": "SE1", "parent_code": "PR1", "url": null}
        ],
        "dps": [], "rows": [], "packages": [meta]
    });
    let r = s
        .http
        .post(link("/link/v1/report"))
        .bearer_auth(&pr1)
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let sync = |cred: &str| {
        let req = s.http.get(link("/link/v1/sync?since=0")).bearer_auth(cred);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(
        sync(&pr1).await["wanted"],
        json!([]),
        "no DP outside SE1's subtree has it yet"
    );
    let at_pr2 = sync(&pr2).await;
    assert!(
        at_pr2["packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["package_id"] == "SE100001"),
        "a sibling is told of it: {at_pr2}"
    );
    assert!(
        !sync(&pr1).await["packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["package_id"] == "SE100001"),
        "not the child it came from"
    );

    // A DP of this site is targeted with it: PR1 is asked for it, PR2 is not.
    let nal = s.dp("dp1").await;
    let (st, body) = s
        .post(
            "SMS_Package('SE100001')/AdminService.AddDistributionPoints",
            json!({"SiteCode": ["PS1"], "NALPath": [nal]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let wanted = sync(&pr1).await["wanted"].clone();
    assert_eq!(
        wanted,
        json!([{"package_id": "SE100001", "version": 1, "manifest_hash": hash.to_hex()}])
    );
    assert_eq!(sync(&pr2).await["wanted"], json!([]));

    let post = |path: &str, cred: &str, c: &str, body: Vec<u8>| {
        let req = s
            .http
            .post(link(path))
            .query(&[("content", c)])
            .bearer_auth(cred)
            .body(body);
        async move {
            let r = req.send().await.unwrap();
            let st = r.status();
            let text = r.text().await.unwrap();
            (st, serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)))
        }
    };
    let bytes = manifest.encode();
    const PLAN: &str = "/link/v1/upload/plan";
    const UPLOAD: &str = "/link/v1/upload";
    assert_error(&post(PLAN, &pr2, "SE100001.1", bytes.clone()).await, 403, "Forbidden");
    assert_error(
        &post(PLAN, &pr1, "SE100001.2", bytes.clone()).await,
        409,
        "InvalidState",
    );
    assert_error(&post(PLAN, &pr1, "not an id", bytes.clone()).await, 400, "InvalidValue");
    assert_error(
        &post(PLAN, &pr1, "SE100001.1", b"another".to_vec()).await,
        400,
        "InvalidValue",
    );
    assert_eq!(
        s.http
            .post(link(PLAN))
            .query(&[("content", "SE100001.1")])
            .body(bytes.clone())
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "a child site's credential is needed"
    );
    let (st, plan) = post(PLAN, &pr1, "SE100001.1", bytes.clone()).await;
    assert_eq!(st, StatusCode::OK, "{plan}");
    assert_eq!(plan["held"], false);
    let all: Vec<String> = manifest.unique_chunks().iter().map(|c| c.id.to_hex()).collect();
    assert_eq!(plan["missing"], json!(all));

    let recorded = || {
        let lib = s.state.library.clone();
        async move {
            tokio::task::spawn_blocking(move || lib.manifest_id(content).unwrap())
                .await
                .unwrap()
        }
    };
    let mut stream = Vec::new();
    prestage::write(&lib, content, &mut stream).unwrap();
    // Damaged, short of a chunk, or another version's: refused, nothing recorded.
    let mut damaged = stream.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x55;
    assert_error(&post(UPLOAD, &pr1, "SE100001.1", damaged).await, 400, "InvalidValue");
    // (The damaged stream's sound chunks were kept, as a resumed transfer's are: the one it
    // damaged, its last, is what this site still lacks.)
    let damaged_chunk = manifest.unique_chunks().last().unwrap().id;
    let mut short = Vec::new();
    prestage::write_only(&lib, content, |id| *id != damaged_chunk, &mut short).unwrap();
    let e = post(UPLOAD, &pr1, "SE100001.1", short).await;
    assert_error(&e, 400, "InvalidValue");
    assert!(e.1.to_string().contains("lacks chunk"), "{}", e.1);
    assert_error(
        &post(UPLOAD, &pr2, "SE100001.1", stream.clone()).await,
        403,
        "Forbidden",
    );
    assert_eq!(recorded().await, None);
    let row = s.list("PKGDIST_SiteContent").await;
    assert!(
        row[0]["Message"]
            .as_str()
            .unwrap()
            .contains("the upload from child site PR1 failed"),
        "{row:#?}"
    );

    // A stream of another manifest under this version's name stores nothing of it.
    let other_src = s.dir.path().join("other");
    std::fs::create_dir_all(&other_src).unwrap();
    std::fs::write(
        other_src.join("x.bin"),
        pkgdist_testkit::generate::Rng::new(9).bytes(50_000),
    )
    .unwrap();
    let other_lib = Library::create_local(&s.dir.path().join("other-library")).unwrap();
    other_lib
        .snapshot(&other_src, content, &SnapshotOptions::default())
        .unwrap();
    let mut other = Vec::new();
    prestage::write(&other_lib, content, &mut other).unwrap();
    let e = post(UPLOAD, &pr1, "SE100001.1", other).await;
    assert_error(&e, 400, "InvalidValue");
    assert!(
        e.1.to_string().contains("not the manifest of SE100001.1 expected"),
        "{}",
        e.1
    );
    let foreign = other_lib.manifest(content).unwrap().unique_chunks()[0].id;
    assert!(
        !s.state.library.has_chunk(&foreign).unwrap(),
        "nothing of it was stored"
    );
    // A child reporting a site of another subtree does not get to speak for its packages.
    let mut hijack = meta.clone();
    hijack.name = "hijacked".into();
    hijack.source_version = 9;
    let r = s
        .http
        .post(link("/link/v1/report"))
        .bearer_auth(&pr2)
        .json(&json!({
            "applied_seq": 0,
            "sites": [
                {"site_code": "PR2", "site_name": "PR2", "parent_code": "PS1", "url": null},
                {"site_code": "SE1", "site_name": "SE1", "parent_code": "PR2", "url": null}
            ],
            "dps": [], "rows": [], "packages": [hijack]
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let (_, p) = s.get("SMS_Package('SE100001')").await;
    assert_eq!(
        (p["Name"].clone(), p["SourceVersion"].clone()),
        (json!("made below"), json!(1)),
        "{p}"
    );

    let (st, done) = post(UPLOAD, &pr1, "SE100001.1", stream.clone()).await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(done["chunks"], all.len());
    assert_eq!(recorded().await, Some(hash));
    let row = s.list("PKGDIST_SiteContent").await;
    assert_eq!((row.len(), row[0]["State"].clone()), (1, json!(0)), "{row:#?}");
    assert!(
        row[0]["Message"]
            .as_str()
            .unwrap()
            .contains("came up from child site PR1")
    );
    assert_eq!(sync(&pr1).await["wanted"], json!([]), "asked no more");
    let (_, plan) = post(PLAN, &pr1, "SE100001.1", bytes).await;
    assert_eq!(plan["held"], true);
    // Here, it is asked no more: another upload is refused and the version stays recorded.
    assert_error(&post(UPLOAD, &pr1, "SE100001.1", stream).await, 409, "InvalidState");
    assert_eq!(s.list("PKGDIST_SiteContent").await[0]["State"], 0);
}
