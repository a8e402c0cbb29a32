//! Requests shaped exactly as public AdminService scripts send them, replayed against a running
//! site, each asserting what its script reads back. Each shape cites its source (repository,
//! file and commit, as stored by the search index the project uses); where a script queries a
//! class pkgdist does not have (`SMS_Collection`, `SMS_ContentPackage`), the same request shape
//! is replayed on the content class it would be.
//!
//! How the scripts send a query string matters: PowerShell's `-Body` on a GET and Python's
//! `params=` form-encode it (`%24filter`, `+` for a space), `[uri]::EscapeUriString` encodes
//! only spaces, and a URL written out literally is encoded by the HTTP client (`%20`, `%27`).

use super::*;

/// What a PowerShell script with `-Credential` (HTTP Basic, the token as the password) or a
/// Python script with a bearer token (the CMG path) sends.
enum Auth {
    Basic,
    Bearer,
}

impl Site {
    /// GET `path?query` with the query string exactly as given (already encoded).
    async fn script_get(&self, path_and_query: &str, auth: Auth) -> (StatusCode, Value) {
        let r = self.http.get(format!("{}/AdminService/wmi/{path_and_query}", self.url));
        let r = match auth {
            Auth::Basic => r.basic_auth("CONTOSO\\svc_mdm", Some(&self.token)),
            Auth::Bearer => r.bearer_auth(&self.token),
        };
        let resp = r.send().await.unwrap();
        let st = resp.status();
        (st, resp.json().await.unwrap_or(Value::Null))
    }
}

/// The `value` of a collection answer, after asserting it is one.
fn value(got: (StatusCode, Value)) -> Vec<Value> {
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    assert!(got.1["@odata.context"].is_string(), "{}", got.1);
    got.1["value"].as_array().cloned().unwrap()
}

fn names(v: &[Value]) -> Vec<&str> {
    let mut n: Vec<&str> = v.iter().map(|e| e["Name"].as_str().unwrap()).collect();
    n.sort_unstable();
    n
}

/// Properties of an entity, without annotations.
fn props(e: &Value) -> Vec<&str> {
    let mut p: Vec<&str> = e
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|k| !k.starts_with('@'))
        .collect();
    p.sort_unstable();
    p
}

#[tokio::test]
async fn public_scripts_replayed() {
    let s = start().await;
    // A driver and BIOS library as the MSEndpointMgr tooling names it.
    let mut ids = std::collections::HashMap::new();
    for (name, maker, desc) in [
        (
            "Drivers - Dell OptiPlex 7090 - Windows 10 x64",
            "Dell",
            "(Models included:0A5C)",
        ),
        (
            "Drivers - HP EliteBook 840 G8 - Windows 10 x64",
            "HP",
            "(Models included:880D)",
        ),
        ("Driver Fallback Package - Windows 10 x64", "", ""),
        ("BIOS Update - Dell OptiPlex 7090", "Dell", "(Models included:0A5C)"),
    ] {
        let src = s.source(&name.replace(' ', "_"));
        let (st, p) = s
            .post(
                "SMS_Package",
                json!({"Name": name, "Manufacturer": maker, "Description": desc, "Version": "A07",
                       "PkgSourcePath": src.to_str().unwrap()}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{p}");
        ids.insert(name, p["PackageID"].as_str().unwrap().to_owned());
    }
    let dell = ids["Drivers - Dell OptiPlex 7090 - Windows 10 x64"].clone();

    // MSEndpointMgr/ModernDriverManagement, Invoke-CMApplyDriverPackage.ps1 (017d52bc):
    //   Get-AdminServiceItem -Resource "/SMS_Package?`$filter=contains(Name,'$($Filter)')"
    //   Invoke-RestMethod -Method Get -Uri $AdminServiceUri -Credential $Credential
    //   foreach ($Package in $AdminServiceResponse.value) { … .Name .PackageID .Version
    //   .SourceDate .Manufacturer .Description … }
    let drivers = value(
        s.script_get("SMS_Package?$filter=contains(Name,'Drivers')", Auth::Basic)
            .await,
    );
    assert_eq!(
        names(&drivers),
        [
            "Drivers - Dell OptiPlex 7090 - Windows 10 x64",
            "Drivers - HP EliteBook 840 G8 - Windows 10 x64"
        ]
    );
    for p in &drivers {
        for prop in [
            "Name",
            "PackageID",
            "Version",
            "SourceDate",
            "Manufacturer",
            "Description",
        ] {
            assert!(p[prop].is_string(), "{prop}: {p}");
        }
        // The script reads the SKU out of the description.
        assert!(p["Description"].as_str().unwrap().contains("Models included:"));
    }
    // …and its fallback package, with spaces in the filter as written in the URI.
    let fallback = value(
        s.script_get(
            "SMS_Package?$filter=contains(Name,'Driver Fallback Package')",
            Auth::Basic,
        )
        .await,
    );
    assert_eq!(names(&fallback), ["Driver Fallback Package - Windows 10 x64"]);

    // MSEndpointMgr/ModernBIOSManagement, Invoke-CMDownloadBIOSPackage.ps1 (32d8fd55): the same
    // function with a BIOS filter, then Where-Object { $_.Name -notmatch "Pilot" }.
    let bios = value(
        s.script_get("SMS_Package?$filter=contains(Name,'BIOS Update')", Auth::Basic)
            .await,
    );
    assert_eq!(names(&bios), ["BIOS Update - Dell OptiPlex 7090"]);

    // CharlesNRU/mdm-adminservice v1, Invoke-GetPackageIDFromAdminService.ps1 (and its
    // SysManSquad post, 2020-05-15): Invoke-RestMethod -Method Get -Uri $WMIPackageURL
    //   -Body @{ "`$filter" = "startswith(Name,'Drivers - ')";
    //            "`$select" = "Name,Description,Manufacturer,Version,SourceDate,PackageID" }
    // | Select-Object -ExpandProperty value. -Body on a GET form-encodes the query string.
    let select = "Name,Description,Manufacturer,Version,SourceDate,PackageID";
    let r = s
        .http
        .get(format!("{}/AdminService/wmi/SMS_Package", s.url))
        .basic_auth("svc_mdm", Some(&s.token))
        .query(&[("$filter", "startswith(Name,'Drivers - ')"), ("$select", select)])
        .build()
        .unwrap();
    let sent = r.url().query().unwrap().to_owned();
    assert!(
        sent.contains("%24filter=startswith%28Name%2C%27Drivers+-+%27%29"),
        "{sent}"
    );
    let resp = s.http.execute(r).await.unwrap();
    let form = value((resp.status(), resp.json().await.unwrap()));
    assert_eq!(form.len(), 2);
    let mut want: Vec<&str> = select.split(',').collect();
    want.sort_unstable();
    assert!(form.iter().all(|e| props(e) == want), "{form:?}");

    // mdm-adminservice 2.2.0 ("Fix for AdminService CB2111 and newer"): the same query built
    // with ParseQueryString, URL-decoded, sent literally in -Uri.
    let decoded = value(
        s.script_get(
            &format!("SMS_Package?$filter=startswith(Name,'Drivers -')&$select={select}"),
            Auth::Bearer,
        )
        .await,
    );
    assert_eq!(decoded.len(), 2);

    // adamaayala/DriverAutomationModule, Set-DriverPackageQuery.ps1 (4bd4387): filters joined
    // with and, $select with the MIF properties, [uri]::EscapeUriString (spaces only), then
    // throws if $response.value is empty, else Write-Output @($response.value).
    let escaped = "SMS_Package?$filter=startswith(Name,'Drivers%20-')%20and%20contains(Description,'0A5C')\
                   %20and%20contains(Name,'Dell')\
                   &$select=Name,Description,Manufacturer,Version,SourceDate,PackageID,MIFName,MIFVersion";
    let one = value(s.script_get(escaped, Auth::Basic).await);
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(
        (one[0]["PackageID"].as_str(), one[0]["MIFName"].as_str()),
        (Some(dell.as_str()), Some(""))
    );

    // autopkg/iancohn-recipes, McmApiBase.py (3111aac): requests GET with
    //   params={"$filter": f"Name eq '{name}' ", "$select": "CollectionID"}
    // then GET SMS_Collection('{id}') and response.json()['value'][0]. Replayed on packages.
    let r = s
        .http
        .get(format!("{}/AdminService/wmi/SMS_Package", s.url))
        .bearer_auth(&s.token)
        .header("Accept", "application/json")
        .query(&[
            ("$filter", "Name eq 'BIOS Update - Dell OptiPlex 7090' "),
            ("$select", "PackageID"),
        ])
        .send()
        .await
        .unwrap();
    let found = value((r.status(), r.json().await.unwrap()));
    assert_eq!(found.len(), 1);
    let bios_id = found[0]["PackageID"].as_str().unwrap().to_owned();
    let (st, detail) = s.script_get(&format!("SMS_Package('{bios_id}')"), Auth::Bearer).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(detail["value"][0]["Name"], "BIOS Update - Dell OptiPlex 7090");
    // The same file writes one query with spaces around '=' ("?$filter = … eq '…'").
    let spaced = value(
        s.script_get(
            "SMS_Package?$filter = Name eq 'BIOS Update - Dell OptiPlex 7090'",
            Auth::Bearer,
        )
        .await,
    );
    assert_eq!(spaced.len(), 1);

    // AdamGrossTX/Toolbox, AdminService-NewApplicationBasic.ps1 (811a572):
    //   $GetSiteID = Invoke-RestMethod -Method Get -Uri ".../wmi/SMS_Identification.GetSiteID"
    //   $SiteID = $GetSiteID.SiteID
    // garrettfoster13/sccmhunter, lib/scripts/application.py (0005678): requests.get(url)
    //   then `if r.status_code == 201: site_ID = result.get("SiteID", "")`.
    let r = s
        .http
        .get(format!("{}/AdminService/wmi/SMS_Identification.GetSiteID", s.url))
        .basic_auth("svc", Some(&s.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got: Value = r.json().await.unwrap();
    let site_id = got["SiteID"].as_str().unwrap().to_owned();
    assert!(
        site_id.len() == 38 && site_id.starts_with('{') && site_id.ends_with('}'),
        "{site_id}"
    );
    assert_eq!(got["ReturnValue"], 0);
    // microsoft/configmgr-hub, samples/ApplicationFunctions.ps1 (03a9967):
    //   $odata.ExecuteMethod("wmi/SMS_Identification.GetSiteId", "{}"); $GetSiteID.SiteID
    // (another casing of the method, a JSON body): the same ID, every time.
    let (st, again) = s.post("SMS_Identification.GetSiteId", json!({})).await;
    assert_eq!(
        (st, again["SiteID"].as_str()),
        (StatusCode::CREATED, Some(site_id.as_str()))
    );

    // Distribution, then its status, as autopkg/iancohn-recipes'
    // McmContentDistributionManagerBase.py (13c6abd) does for a DP group (it distributes an
    // SMS_ContentPackage with AddDistributionPointGroup; a package goes to a group with the
    // group's AddPackages).
    let (dp1, dp2) = (s.dp("dp1").await, s.dp("dp2").await);
    let (_, g) = s
        .post("SMS_DistributionPointGroup", json!({"Name": "Branch DPs"}))
        .await;
    let gid = g["GroupID"].as_str().unwrap().to_owned();
    let group_url = |m: &str| format!("SMS_DistributionPointGroup('{gid}')/AdminService.{m}");
    // A GroupID's braces percent-encoded, as a URI builder sends them.
    let encoded = gid.replace('{', "%7B").replace('}', "%7D");
    let (st, by_key) = s
        .script_get(&format!("SMS_DistributionPointGroup('{encoded}')"), Auth::Bearer)
        .await;
    assert_eq!(
        (st, by_key["value"][0]["Name"].as_str()),
        (StatusCode::OK, Some("Branch DPs"))
    );
    let (st, _) = s
        .post(&group_url("AddDistributionPoints"), json!({"DPNALPath": [dp1, dp2]}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = s.post(&group_url("AddPackages"), json!({"PackageIDs": [dell]})).await;
    assert_eq!(st, StatusCode::CREATED);
    //   filter_string = f"ObjectID eq '{key}' and ({' or '.join(f"GroupID eq '{x}'" …)})"
    //   url = f".../wmi/SMS_DPGroupDistributionStatusDetails?$filter={filter_string}"
    //   status_codes = [str(rs.get('MessageState')) for rs in r.json().get('value', [])]
    //   '3' or '4' in status_codes: failed; no '2': done.
    let status_url =
        format!("SMS_DPGroupDistributionStatusDetails?$filter=ObjectID eq '{dell}' and (GroupID eq '{gid}')");
    let codes = |rows: Vec<Value>| -> Vec<String> { rows.iter().map(|r| r["MessageState"].to_string()).collect() };
    let rows = value(s.script_get(&status_url, Auth::Bearer).await);
    assert_eq!(codes(rows.clone()), ["2", "2"], "{rows:?}");
    for r in &rows {
        assert_eq!(
            (r["GroupID"].as_str(), r["PackageID"].as_str()),
            (Some(gid.as_str()), Some(dell.as_str()))
        );
        assert!(r["DPName"] == "dp1" || r["DPName"] == "dp2", "{r}");
        assert_eq!(r["ContentName"], "Drivers - Dell OptiPlex 7090 - Windows 10 x64");
        // The latest status message about the row: queued for distribution.
        assert!(r["ID"].as_u64().unwrap() > 0 && r["ID"] == r["StatusMsgID"], "{r}");
        assert_eq!(r["MessageID"], 2357, "{r}");
    }
    // The GET by key of one of them: group, package and DP (ConfigMgr keys the class by the
    // message ID, which is neither unique nor stable; see docs/api.md).
    let one_key = format!(
        "SMS_DPGroupDistributionStatusDetails(GroupID='{gid}',PackageID='{dell}',DPNALPath='{}')",
        urlencode(&rows[0]["DPNALPath"].as_str().unwrap().replace('\'', "''"))
    );
    let (st, by_key) = s.script_get(&one_key, Auth::Bearer).await;
    assert_eq!(
        (st, by_key["value"][0]["DPName"].clone()),
        (StatusCode::OK, rows[0]["DPName"].clone())
    );
    assert_eq!(
        by_key["value"][0]["@odata.etag"].as_str().map(|e| e.starts_with(&gid)),
        Some(true)
    );

    // AdamGrossTX/Toolbox, InitiateClientAction.ps1 (2a7dcf6): a static method by POST to
    //   "$BaseUri$MethodClass.$MethodName" with a JSON body | Select-Object ReturnValue.
    // Here CancelDistribution, with the parameter names as the SDK page writes them
    // (PackageId, NALPath): the DP's row fails, and the script above now sees '3'.
    let (st, out) = s
        .post(
            "SMS_DistributionPoint.CancelDistribution",
            json!({"PackageId": dell, "NALPath": dp1}),
        )
        .await;
    assert_eq!(
        (st, out["ReturnValue"].clone()),
        (StatusCode::CREATED, json!(0)),
        "{out}"
    );
    let rows = value(s.script_get(&status_url, Auth::Bearer).await);
    let mut now = codes(rows);
    now.sort();
    assert_eq!(now, ["2", "3"]);

    // dustinestes/MECM_Toolkit, Administration Service examples:
    //   (Invoke-RestMethod -Uri "$($Path_AdminService_WMIRoute)SMS_ObjectContentInfo" -Method Get
    //    -ContentType "Application/Json" -UseDefaultCredentials).value → SoftwareName,
    //   PackageID, ObjectType
    let content = value(s.script_get("SMS_ObjectContentInfo", Auth::Basic).await);
    assert_eq!(content.len(), 4);
    let d = content.iter().find(|c| c["PackageID"] == json!(dell)).unwrap();
    assert_eq!(
        (
            d["SoftwareName"].as_str(),
            d["ObjectType"].as_u64(),
            d["Targeted"].as_u64(),
            d["NumberInProgress"].as_u64(),
            d["NumberErrors"].as_u64()
        ),
        (
            Some("Drivers - Dell OptiPlex 7090 - Windows 10 x64"),
            Some(0),
            Some(2),
            Some(1),
            Some(1)
        ),
        "{d}"
    );
    // …and the OData form of the same static call it shows
    // (POST .../wmi/SMS_DistributionPoint/AdminService.CancelDistribution), which is how
    // $metadata declares a static method: an action bound to the collection.
    let (st, out) = s
        .post(
            "SMS_DistributionPoint/AdminService.CancelDistribution",
            json!({"PackageID": dell, "NALPath": dp2}),
        )
        .await;
    assert_eq!(
        (st, out["ReturnValue"].clone()),
        (StatusCode::CREATED, json!(0)),
        "{out}"
    );

    // autopkg/iancohn-recipes (13c6abd): remove the content from the group.
    //   url = f".../wmi/SMS_DistributionPointGroup('{dpg_id}')/AdminService.RemovePackages"
    //   body = {"PackageIDs": [content_package_id]}; status_code in [200, 201]
    let (st, _) = s
        .post(&group_url("RemovePackages"), json!({"PackageIDs": [dell]}))
        .await;
    assert!(st == StatusCode::OK || st == StatusCode::CREATED, "{st}");
    let rows = value(s.script_get(&status_url, Auth::Bearer).await);
    assert!(rows.is_empty(), "the group no longer holds the package: {rows:?}");
}

/// A static method that changes nothing can be called with GET, arguments in the query string
/// or the function-call form, by a read-only analyst too; one that changes the site cannot.
#[tokio::test]
async fn static_methods_by_get() {
    let s = start().await;
    let get = |path: String, token: String| {
        let (http, url) = (s.http.clone(), s.url.clone());
        async move {
            let r = http
                .get(format!("{url}/AdminService/wmi/{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (_, reader) = s
        .post(
            "PKGDIST_AdminToken",
            json!({"Name": "reader", "Role": "ReadOnlyAnalyst"}),
        )
        .await;
    let reader = reader["Token"].as_str().unwrap().to_owned();
    // One schedule token (as schedule_methods uses).
    let hourly = "1033BC7B10100010";
    let (st, by_query) = get(
        format!("SMS_ScheduleMethods.ReadFromString?StringData={hourly}"),
        reader.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{by_query}");
    let (_, by_post) = s
        .post("SMS_ScheduleMethods.ReadFromString", json!({"StringData": hourly}))
        .await;
    assert_eq!(by_query["TokenData"], by_post["TokenData"]);
    let (st, by_call) = get(
        format!("sms_schedulemethods.readfromstring(StringData='{hourly}')"),
        reader.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{by_call}");
    assert_eq!(by_call["TokenData"], by_post["TokenData"]);
    // A parameter given twice (in any case), by GET or by POST, is refused, not picked.
    assert_error(
        &get(
            format!("SMS_ScheduleMethods.ReadFromString?StringData={hourly}&stringdata=x"),
            reader.clone(),
        )
        .await,
        400,
        "MalformedQuery",
    );
    assert_error(
        &get(
            format!("SMS_ScheduleMethods.ReadFromString(StringData='{hourly}')?StringData=x"),
            reader.clone(),
        )
        .await,
        400,
        "MalformedQuery",
    );
    assert_error(
        &s.post(
            "SMS_ScheduleMethods.ReadFromString",
            json!({"StringData": hourly, "stringdata": "x"}),
        )
        .await,
        400,
        "MalformedBody",
    );
    // Array parameters are JSON in the query string.
    let tokens = urlencode(&by_post["TokenData"].to_string());
    let (st, back) = get(
        format!("SMS_ScheduleMethods.WriteToString?TokenData={tokens}"),
        s.token.clone(),
    )
    .await;
    assert_eq!(
        (st, back["StringData"].as_str()),
        (StatusCode::CREATED, Some(hourly)),
        "{back}"
    );
    assert_error(
        &get(
            "SMS_ScheduleMethods.WriteToString?TokenData=[oops".into(),
            s.token.clone(),
        )
        .await,
        400,
        "InvalidValue",
    );
    // An unknown parameter is named, as in a POST body.
    let unknown = get("SMS_ScheduleMethods.ReadFromString?Nope=1".into(), s.token.clone()).await;
    assert_error(&unknown, 400, "UnknownProperty");
    assert_eq!(unknown.1["ExtendedStatus"]["ParameterInfo"], "Nope");
    // A query option given twice is refused, spaced or not.
    assert_error(
        &get("SMS_Package?$top=1&%20$top=2".into(), s.token.clone()).await,
        400,
        "MalformedQuery",
    );
    // A method that changes the site is POST only, for everyone: the row a GET would have
    // cancelled is still on its way.
    let pkg = s.package("SMS_Package", "p").await;
    let nal = s.dp("dp1").await;
    let (st, _) = s
        .post(
            &format!("SMS_Package('{pkg}')/AdminService.AddDistributionPoints"),
            json!({"SiteCode": ["PS1"], "NALPath": [nal]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let row = format!("SMS_PackageStatusDistPointsSummarizer{}", dp_key(&pkg, &nal));
    assert_eq!(s.get(&row).await.1["State"], 1, "INSTALL_PENDING");
    assert_error(
        &get(
            format!(
                "SMS_DistributionPoint.CancelDistribution?PackageID={pkg}&NALPath={}",
                urlencode(&nal)
            ),
            s.token.clone(),
        )
        .await,
        405,
        "NotAllowed",
    );
    assert_eq!(s.get(&row).await.1["State"], 1, "still INSTALL_PENDING");
    // The analyst may read the site ID, never call a method that changes anything.
    let (st, id) = get("SMS_Identification.GetSiteID()".into(), reader.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{id}");
    let r = s
        .http
        .post(format!(
            "{}/AdminService/wmi/SMS_DistributionPoint.CancelDistribution",
            s.url
        ))
        .bearer_auth(&reader)
        .json(&json!({"PackageID": pkg, "NALPath": nal}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The site ID survives a restart of the site on the same data.
    let dir = s.data.clone();
    let (cfg, _) = pkgdist_site::SiteConfig::load_or_init(&dir, None).unwrap();
    let reopened = pkgdist_site::open(&dir, &cfg).await.unwrap();
    assert_eq!(
        reopened.db.setting(pkgdist_site::SITE_ID).await.unwrap().as_deref(),
        id["SiteID"].as_str()
    );
}
