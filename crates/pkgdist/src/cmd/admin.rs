//! The admin CLI: thin commands over the management API (`pkgdist-proto`'s client), with
//! `--json` for scripts. DPs and groups may be named by name instead of NAL path or GroupID.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use pkgdist_core::classes::PackageClass;
use pkgdist_proto::Client;
use pkgdist_proto::client::key;
use serde_json::{Map, Value, json};

use crate::output;

/// How to reach the site; global options of the binary.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// The site's management URL.
    #[arg(long, global = true, env = "PKGDIST_SITE", default_value = "http://127.0.0.1:8470")]
    pub site: String,
    /// A management token.
    #[arg(long, global = true, env = "PKGDIST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the token (e.g. the site's bootstrap-token).
    #[arg(long, global = true, env = "PKGDIST_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// The site's CA certificate (its data folder's tls/ca.pem), to verify an https:// site
    /// and DPs against. Default: the tls/ca.pem beside --token-file, if there is one.
    #[arg(long, global = true, env = "PKGDIST_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// Send the token over plain HTTP to a site on another machine (an `http://` URL that is
    /// not this machine's): refused by default, since it crosses the network readable.
    #[arg(long, global = true, env = "PKGDIST_ALLOW_PLAIN_HTTP")]
    pub allow_plain_http: bool,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Conn {
    pub(crate) fn client(&self) -> Result<Client> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .with_context(|| format!("reading the token file {}", f.display()))?
                .trim()
                .to_owned(),
            (None, None) => bail!("no token: give --token (or PKGDIST_TOKEN) or --token-file (or PKGDIST_TOKEN_FILE)"),
        };
        if !self.allow_plain_http && pkgdist_proto::client::plain_to_remote(&self.site) {
            bail!(
                "{} is plain HTTP to another machine: the token would cross the network readable. Use the site's https:// URL (with --ca), or pass --allow-plain-http",
                self.site
            );
        }
        site_client(&self.site, &token, self.ca_pem()?.as_deref())
    }

    /// The site's CA certificate: --ca (or PKGDIST_CA), else `tls/ca.pem` in the folder of the
    /// token file (a local administrator using the site's bootstrap-token), else none.
    pub(crate) fn ca_pem(&self) -> Result<Option<String>> {
        let path = match (&self.ca, &self.token_file) {
            (Some(ca), _) => ca.clone(),
            (None, Some(token)) => {
                let beside = token
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join(pkgdist_node::tls::DIR)
                    .join(pkgdist_node::tls::CA_FILE);
                if !beside.exists() {
                    return Ok(None);
                }
                beside
            }
            (None, None) => return Ok(None),
        };
        std::fs::read_to_string(&path)
            .map(Some)
            .with_context(|| format!("reading the site's CA certificate {}", path.display()))
    }
}

/// A client of the site at `url`: with `ca_pem`, one that trusts only that CA and takes only
/// a site's certificate (not a DP's of the same CA).
pub(crate) fn site_client(url: &str, token: &str, ca_pem: Option<&str>) -> Result<Client> {
    Ok(match ca_pem {
        Some(ca) => {
            let builder = pkgdist_node::tls::client_builder(ca, None, pkgdist_node::tls::Expect::Site(None))?;
            Client::with_builder(url, token, builder, true)?
        }
        None => Client::new(url, token)?,
    })
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Class {
    Regular,
    Driver,
    SoftwareUpdate,
    Image,
    BootImage,
    OsInstall,
}

impl Class {
    fn package_class(self) -> PackageClass {
        match self {
            Class::Regular => PackageClass::Package,
            Class::Driver => PackageClass::DriverPackage,
            Class::SoftwareUpdate => PackageClass::SoftwareUpdatesPackage,
            Class::Image => PackageClass::ImagePackage,
            Class::BootImage => PackageClass::BootImagePackage,
            Class::OsInstall => PackageClass::OperatingSystemInstallPackage,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum PackageCmd {
    /// Create a package; with --source its first snapshot is taken (SourceVersion 1).
    Create {
        #[arg(long)]
        name: String,
        /// Source folder on the site server (absolute path).
        #[arg(long)]
        source: Option<String>,
        #[arg(long, value_enum, default_value = "regular")]
        class: Class,
        #[arg(long)]
        description: Option<String>,
        /// 1 high, 2 normal, 3 low.
        #[arg(long)]
        priority: Option<u32>,
    },
    /// Change a package's properties (only those given).
    Set {
        package: String,
        #[arg(long)]
        name: Option<String>,
        /// Source folder on the site server (absolute path); `package refresh` reads it.
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// 1 high, 2 normal, 3 low.
        #[arg(long)]
        priority: Option<u32>,
        /// When the site re-reads the source by itself: an interval string (`pkgdist schedule
        /// encode`); "" for never.
        #[arg(long)]
        refresh_schedule: Option<String>,
    },
    /// Every package, of every class.
    List,
    /// One package's properties.
    Show { package: String },
    /// Re-read the source: SourceVersion + 1, every DP of the package updated.
    Refresh { package: String },
    /// Put the package on DPs (names or NAL paths).
    Distribute {
        package: String,
        #[arg(required = true)]
        dps: Vec<String>,
    },
    /// Take the package off DPs (names or NAL paths): each DP drops its content
    /// (REMOVAL_PENDING until it has), other DPs keep it.
    Remove {
        package: String,
        #[arg(required = true)]
        dps: Vec<String>,
    },
    /// Delete the package: hidden at once, taken off every DP that holds it, then gone (its
    /// library content released for `content gc`). Again: retries failed removals.
    Delete { package: String },
}

#[derive(Subcommand, Debug)]
pub enum DpCmd {
    /// Run a distribution point daemon (enrolls with the site on its first start).
    Run(crate::cmd::node::DpRunArgs),
    /// Import a prestaged content file (from `pkgdist content prestage`) on this DP, offline,
    /// and tell its site; the DP's row then goes ahead without fetching over the network.
    Prestage {
        /// The prestaged content file.
        file: std::path::PathBuf,
        /// The DP's data folder.
        #[arg(long)]
        data: std::path::PathBuf,
    },
    #[command(flatten)]
    Admin(DpAdminCmd),
}

#[derive(Subcommand, Debug)]
pub enum DpAdminCmd {
    /// Register a DP; prints its one-time enrollment token.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// A pull DP: it fetches from these source DPs of its site instead of the site, as
        /// NAME[:RANK],… (lowest rank first, equal ranks in random order; rank 1 by default).
        #[arg(long, value_name = "DPS")]
        pull_from: Option<String>,
    },
    /// Every registered DP.
    List,
    /// Unregister a DP (name or NAL path). First it drops the content it holds (each package
    /// REMOVAL_PENDING until done; the DP must be running), unless --keep-content.
    Remove {
        dp: String,
        /// Unregister it at once and leave its content where it is.
        #[arg(long)]
        keep_content: bool,
    },
    /// Change a DP's settings.
    Set {
        dp: String,
        /// When a validation finds damage: repair it from the sources (on, the default) or
        /// only report it (off, ConfigMgr's behaviour).
        #[arg(long, value_parser = ["on", "off"])]
        repair: Option<String>,
        /// When the DP re-hashes all its content: an interval string (see `pkgdist schedule
        /// encode`); "" for never.
        #[arg(long)]
        validation_schedule: Option<String>,
        /// The most the site sends the DP per second, in bytes; 0 for unlimited.
        #[arg(long, conflicts_with_all = ["pulse", "hourly_percent"])]
        rate_limit: Option<u64>,
        /// ConfigMgr's pulse mode: KB,SECONDS (a block of KB, then a pause of SECONDS).
        #[arg(long, conflicts_with = "hourly_percent")]
        pulse: Option<String>,
        /// ConfigMgr's "limited by hour": 24 comma-separated percentages of each local hour
        /// spent sending, midnight first.
        #[arg(long)]
        hourly_percent: Option<String>,
        /// When the site may send the DP: "open", "closed", or 168 digits (one per hour of the
        /// week from Sunday 00:00 local time: 0 open, 1 medium and high priority, 2 high only,
        /// 3 closed).
        #[arg(long)]
        availability: Option<String>,
        /// Make it a pull DP fetching from these source DPs: NAME[:RANK],…
        #[arg(long, value_name = "DPS", conflicts_with = "no_pull")]
        pull_from: Option<String>,
        /// Make it a standard DP again (it fetches from its site).
        #[arg(long)]
        no_pull: bool,
        /// Enabled for prestaged content (PreStagingAllowed): packages flagged DO_NOT_DOWNLOAD
        /// reach it only from prestaged files (`pkgdist dp prestage`).
        #[arg(long, value_parser = ["on", "off"])]
        prestaged: Option<String>,
    },
    /// Re-hash a package's content on a DP now (VerifyPackage).
    Verify { package: String, dp: String },
    /// Stop a distribution in progress to a DP (CancelDistribution); the DP ends INSTALL_FAILED.
    Cancel { package: String, dp: String },
}

#[derive(Subcommand, Debug)]
pub enum SettingsCmd {
    /// The distribution settings in force.
    Show,
    /// Change distribution settings; they take effect at once and are kept in the database.
    Set {
        /// Packages sent at once (1-50).
        #[arg(long)]
        max_packages: Option<u32>,
        /// DPs one package is sent to at once (1-999).
        #[arg(long)]
        max_threads_per_package: Option<u32>,
        /// Attempts before a DP is marked failed (1-1000).
        #[arg(long)]
        retry_count: Option<u32>,
        /// Seconds between attempts (1-86400).
        #[arg(long)]
        retry_delay_secs: Option<u32>,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// Create a group.
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Every group, with its sync state.
    List,
    /// Add DPs to a group; the group's packages are distributed to them.
    AddDp {
        group: String,
        #[arg(required = true)]
        dps: Vec<String>,
    },
    /// Remove DPs from a group (their content stays unless --remove-content).
    RemoveDp {
        group: String,
        #[arg(required = true)]
        dps: Vec<String>,
        /// Also remove the group's packages from these DPs.
        #[arg(long)]
        remove_content: bool,
    },
    /// Assign packages to a group: they are distributed to every member.
    AddPackage {
        group: String,
        #[arg(required = true)]
        packages: Vec<String>,
    },
    /// Unassign packages from a group (removed from the members unless --keep-content).
    RemovePackage {
        group: String,
        #[arg(required = true)]
        packages: Vec<String>,
        /// Leave the content on the members.
        #[arg(long)]
        keep_content: bool,
    },
    /// Send a package again to every member DP (complete, verified copies).
    Redistribute { group: String, package: String },
    /// Bring every member up to date with every package of the group.
    Refresh { group: String },
    /// Delete a group (its members and packages stay).
    Delete { group: String },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    Admin,
    ReadOnly,
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token; the secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value = "admin")]
        role: RoleArg,
    },
    /// Every token (never the secrets).
    List,
    /// Revoke a token by its TokenID.
    /// Revoke a token, named by its name or its TokenID.
    Revoke {
        // Not `token`: that is the global --token's name, which this would shadow.
        #[arg(value_name = "NAME|TOKENID")]
        which: String,
    },
}

/// Runs `work` (a package create or refresh, which read the source before they answer) while
/// drawing the site's progress of that snapshot: bytes read of the total, rate and time left
/// (`/console/api/snapshots`, asked twice a second). `package` is the one refreshed; for a
/// create, the first snapshot to appear after it started. Nothing is drawn when stderr is not
/// a terminal or with --json.
async fn with_snapshot_progress<T>(
    c: &Client,
    conn: &Conn,
    package: Option<&str>,
    work: impl std::future::Future<Output = pkgdist_proto::client::Result<T>>,
) -> Result<T> {
    let running = |v: &Value| -> Vec<Value> { v["value"].as_array().cloned().unwrap_or_default() };
    let before: Vec<String> = match package {
        Some(_) => Vec::new(),
        None => c
            .get_path("/console/api/snapshots")
            .await
            .map(|v| {
                running(&v)
                    .iter()
                    .filter_map(|s| s["PackageID"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let bar = output::progress_bar(!conn.json);
    let work = std::pin::pin!(work);
    let mut work = work;
    let out = loop {
        tokio::select! {
            r = &mut work => break r,
            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
        }
        let Ok(v) = c.get_path("/console/api/snapshots").await else {
            continue; // an older site, or a blip: no bar, the work goes on
        };
        let ours = running(&v)
            .into_iter()
            .find(|s| match (package, s["PackageID"].as_str()) {
                (Some(p), Some(id)) => id.eq_ignore_ascii_case(p),
                (None, Some(id)) => !before.iter().any(|b| b == id),
                _ => false,
            });
        if let Some(s) = ours {
            bar.set_length(s["TotalBytes"].as_u64().unwrap_or(0));
            bar.set_position(s["DoneBytes"].as_u64().unwrap_or(0));
        }
    };
    bar.finish_and_clear();
    Ok(out?)
}

/// `dp remove` without --keep-content: takes every package off the DP and waits until the DP
/// has dropped them all, saying how many are left. A removal that fails for good stops it,
/// saying what to do; so does Ctrl-C (the removals stay queued, the DP registered).
async fn drop_content(c: &Client, conn: &Conn, dp: &str, nal: &str, site: &str) -> Result<()> {
    const CLASS: &str = "SMS_PackageStatusDistPointsSummarizer";
    let filter = format!("ServerNALPath eq {}", quote(nal));
    let rows = c
        .list(CLASS, &[("$filter", &filter), ("$select", "PackageID,State")])
        .await?;
    for r in &rows {
        let state = r.get("State").and_then(Value::as_i64);
        // Already on the way out (4, 5): nothing to queue.
        if matches!(state, Some(4 | 5)) {
            continue;
        }
        let pkg = r.get("PackageID").and_then(Value::as_str).unwrap_or_default();
        let k = key(&[("PackageID", pkg), ("ServerNALPath", nal), ("SiteCode", site)]);
        c.delete("SMS_DistributionPoint", &k).await?;
    }
    let mut last = usize::MAX;
    loop {
        let left = c
            .list(
                CLASS,
                &[("$filter", &filter), ("$select", "PackageID,State,LastMessage")],
            )
            .await?;
        if left.is_empty() {
            return Ok(());
        }
        if let Some(failed) = left.iter().find(|r| r.get("State").and_then(Value::as_i64) == Some(6)) {
            let pkg = failed.get("PackageID").and_then(Value::as_str).unwrap_or_default();
            let why = failed.get("LastMessage").and_then(Value::as_str).unwrap_or_default();
            bail!(
                "{dp} could not drop {pkg} ({why}); {} package(s) left on it. Start the DP and run `pkgdist dp remove {dp}` again, or `pkgdist dp remove {dp} --keep-content` to leave its content",
                left.len()
            );
        }
        if left.len() != last && !conn.json {
            output::line(format!(
                "{dp}: dropping its content, {} package(s) left (the DP must be running; Ctrl-C leaves them queued)",
                left.len()
            ))?;
            last = left.len();
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// A token's ID from its ID or its name (among tokens not revoked); a name several live
/// tokens share is refused, listing their IDs.
async fn resolve_token(c: &Client, token: &str) -> Result<String> {
    let filter = format!(
        "(TokenID eq {q} or Name eq {q}) and RevokedOn eq null",
        q = quote(token)
    );
    let found = c
        .list("PKGDIST_AdminToken", &[("$filter", &filter), ("$select", "TokenID")])
        .await?;
    let ids: Vec<String> = found
        .iter()
        .filter_map(|o| o.get("TokenID").and_then(Value::as_str).map(str::to_owned))
        .collect();
    // An exact ID wins over names that happen to equal it.
    if ids.iter().any(|id| id == token) {
        return Ok(token.to_owned());
    }
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no live token is named or has the ID {token:?}: `pkgdist token list` shows them"),
        many => bail!(
            "{} live tokens are named {token:?} ({}): revoke one by its TokenID",
            many.len(),
            many.join(", ")
        ),
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn emit(conn: &Conn, v: &Value, text: impl FnOnce(&Value) -> Result<()>) -> Result<()> {
    if conn.json { output::json(v) } else { text(v) }
}

pub(crate) fn s<'a>(o: &'a Value, k: &str) -> &'a str {
    o.get(k).and_then(Value::as_str).unwrap_or("")
}

fn objs(v: Vec<Map<String, Value>>) -> Value {
    Value::Array(v.into_iter().map(Value::Object).collect())
}

pub(crate) fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// A DP's NAL path, from its name or NAL path.
async fn resolve_dp(c: &Client, dp: &str) -> Result<(String, String)> {
    if dp.contains("MSWNET") {
        let o = c.get("SMS_DistributionPointInfo", &key(&[("NALPath", dp)])).await?;
        return Ok((dp.to_owned(), s(&Value::Object(o), "SiteCode").to_owned()));
    }
    let found = c
        .list(
            "SMS_DistributionPointInfo",
            &[("$filter", &format!("Name eq {}", quote(dp)))],
        )
        .await?;
    match found.first() {
        Some(o) => Ok((
            o["NALPath"].as_str().unwrap_or_default().to_owned(),
            o["SiteCode"].as_str().unwrap_or_default().to_owned(),
        )),
        None => bail!("no distribution point named {dp:?} (see `pkgdist dp list`)"),
    }
}

/// `NAME[:RANK],…` as NAL paths and ranks.
async fn pull_sources(c: &Client, list: &str) -> Result<(Vec<String>, Vec<u32>)> {
    let mut nals = Vec::new();
    let mut ranks = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, rank) = match item.rsplit_once(':') {
            Some((n, r)) => (
                n,
                r.parse::<u32>()
                    .with_context(|| format!("rank {r:?} of {n} is not a number"))?,
            ),
            None => (item, 1),
        };
        nals.push(resolve_dp(c, name).await?.0);
        ranks.push(rank);
    }
    if nals.is_empty() {
        bail!("--pull-from needs at least one source DP: NAME[:RANK],…");
    }
    Ok((nals, ranks))
}

async fn resolve_group(c: &Client, g: &str) -> Result<String> {
    if g.starts_with('{') {
        return Ok(g.to_owned());
    }
    let found = c
        .list(
            "SMS_DistributionPointGroup",
            &[("$filter", &format!("Name eq {}", quote(g)))],
        )
        .await?;
    match found.first() {
        Some(o) => Ok(o["GroupID"].as_str().unwrap_or_default().to_owned()),
        None => bail!("no DP group named {g:?} (see `pkgdist group list`)"),
    }
}

/// The concrete class of a package, for calling its methods.
async fn package_class_of(c: &Client, id: &str) -> Result<&'static str> {
    let o = c.get("SMS_PackageBaseclass", &key(&[("PackageID", id)])).await?;
    let t = o.get("PackageType").and_then(Value::as_u64).unwrap_or(0);
    Ok(u32::try_from(t)
        .ok()
        .and_then(PackageClass::from_package_type)
        .unwrap_or(PackageClass::Package)
        .class_name())
}

pub fn package(conn: &Conn, cmd: PackageCmd) -> Result<()> {
    runtime()?.block_on(async {
        let c = conn.client()?;
        match cmd {
            PackageCmd::Create {
                name,
                source,
                class,
                description,
                priority,
            } => {
                let mut body = json!({"Name": name});
                if let Some(src) = source {
                    let abs = std::path::absolute(&src).with_context(|| format!("resolving {src}"))?;
                    body["PkgSourcePath"] = json!(abs.display().to_string());
                }
                if let Some(d) = description {
                    body["Description"] = json!(d);
                }
                if let Some(p) = priority {
                    body["Priority"] = json!(p);
                }
                let create = c.create(class.package_class().class_name(), &body);
                let o = Value::Object(with_snapshot_progress(&c, conn, None, create).await?);
                emit(conn, &o, |o| {
                    output::line(format!(
                        "{}  {}  SourceVersion {}",
                        s(o, "PackageID"),
                        s(o, "Name"),
                        o["SourceVersion"]
                    ))
                })
            }
            PackageCmd::List => {
                let v = objs(c.list("SMS_PackageBaseclass", &[("$orderby", "PackageID")]).await?);
                emit(conn, &v, |v| {
                    let mut t = output::Table::new(&[
                        ("PACKAGE", false),
                        ("VERSION", true),
                        ("SIZE (KB)", true),
                        ("NAME", false),
                    ]);
                    for o in v.as_array().into_iter().flatten() {
                        t.row(vec![
                            s(o, "PackageID").to_owned(),
                            o["SourceVersion"].to_string(),
                            o["PackageSize"].to_string(),
                            s(o, "Name").to_owned(),
                        ]);
                    }
                    t.print()
                })
            }
            PackageCmd::Set {
                package,
                name,
                source,
                description,
                priority,
                refresh_schedule,
            } => {
                let mut body = Map::new();
                if let Some(n) = name {
                    body.insert("Name".into(), json!(n));
                }
                if let Some(src) = source {
                    let abs = std::path::absolute(&src).with_context(|| format!("resolving {src}"))?;
                    body.insert("PkgSourcePath".into(), json!(abs.display().to_string()));
                }
                if let Some(d) = description {
                    body.insert("Description".into(), json!(d));
                }
                if let Some(p) = priority {
                    body.insert("Priority".into(), json!(p));
                }
                if let Some(r) = refresh_schedule {
                    body.insert("RefreshSchedule".into(), json!(r));
                }
                if body.is_empty() {
                    bail!("nothing to change: give --name, --source, --description, --priority or --refresh-schedule");
                }
                let class = package_class_of(&c, &package).await?;
                let o = Value::Object(
                    c.update(class, &key(&[("PackageID", &package)]), &Value::Object(body))
                        .await?,
                );
                emit(conn, &o, |o| {
                    output::line(format!(
                        "{}  {}  Priority {}  RefreshSchedule {:?}  source {:?}",
                        s(o, "PackageID"),
                        s(o, "Name"),
                        o["Priority"],
                        s(o, "RefreshSchedule"),
                        s(o, "PkgSourcePath")
                    ))
                })
            }
            PackageCmd::Show { package } => {
                let o = Value::Object(c.get("SMS_PackageBaseclass", &key(&[("PackageID", &package)])).await?);
                emit(conn, &o, output::json)
            }
            PackageCmd::Refresh { package } => {
                let class = package_class_of(&c, &package).await?;
                let k = key(&[("PackageID", &package)]);
                let no_args = json!({});
                let call = c.call(class, Some(&k), "RefreshPkgSource", &no_args);
                let r = Value::Object(with_snapshot_progress(&c, conn, Some(&package), call).await?);
                emit(conn, &r, |r| {
                    output::line(format!("{package} refreshed: SourceVersion {}", r["SourceVersion"]))
                })
            }
            PackageCmd::Distribute { package, dps } => {
                let class = package_class_of(&c, &package).await?;
                let (mut nals, mut sites) = (Vec::new(), Vec::new());
                for d in &dps {
                    let (n, site) = resolve_dp(&c, d).await?;
                    nals.push(n);
                    sites.push(site);
                }
                let r = Value::Object(
                    c.call(
                        class,
                        Some(&key(&[("PackageID", &package)])),
                        "AddDistributionPoints",
                        &json!({"SiteCode": sites, "NALPath": nals}),
                    )
                    .await?,
                );
                emit(conn, &r, |_| {
                    output::line(format!("{package} queued for {} DP(s)", dps.len()))
                })
            }
            PackageCmd::Remove { package, dps } => {
                for d in &dps {
                    let (nal, site) = resolve_dp(&c, d).await?;
                    let k = key(&[("PackageID", &package), ("ServerNALPath", &nal), ("SiteCode", &site)]);
                    c.delete("SMS_DistributionPoint", &k).await?;
                }
                emit(conn, &json!({"ReturnValue": 0}), |_| {
                    output::line(format!(
                        "{package}: removal from {} DP(s) queued (REMOVAL_PENDING until each has dropped it; `pkgdist status {package}`)",
                        dps.len()
                    ))
                })
            }
            PackageCmd::Delete { package } => {
                let class = package_class_of(&c, &package).await?;
                c.delete(class, &key(&[("PackageID", &package)])).await?;
                emit(conn, &json!({"ReturnValue": 0}), |_| {
                    output::line(format!(
                        "{package} deleted: hidden now; each DP that holds it drops its content first (REMOVAL_PENDING), then it is gone"
                    ))
                })
            }
        }
    })
}

/// `dp prestage`: the import, then the site told (the import stands if it cannot be).
fn dp_prestage(conn: &Conn, file: &std::path::Path, data: &std::path::Path) -> Result<()> {
    let got = pkgdist_dp::prestage::import(data, file)
        .with_context(|| format!("importing {} into the DP at {}", file.display(), data.display()))?;
    let told = runtime()?.block_on(pkgdist_dp::prestage::tell_site(data, &got));
    let v = json!({
        "Content": got.content.to_string(),
        "ManifestHash": got.manifest_hash.to_hex(),
        "Chunks": got.chunks,
        "StoredBytes": got.stored_bytes,
        "SiteTold": told.is_ok(),
        "Taken": matches!(told, Ok(pkgdist_dp::prestage::Told::Taken)),
    });
    emit(conn, &v, |_| {
        output::line(format!(
            "imported {}: {} chunks ({}), manifest {}",
            got.content,
            got.chunks,
            output::bytes(got.stored_bytes),
            got.manifest_hash.to_hex()
        ))
    })?;
    let answer = told.context(
        "the content is imported, but the site was not told; run the same command again once it is reachable",
    )?;
    if let pkgdist_dp::prestage::Told::Refused(why) = answer {
        anyhow::bail!("the site refused the prestaged content, and the import was dropped: {why}");
    }
    if !conn.json {
        output::line("the site was told: the DP installs it without fetching")?;
    }
    Ok(())
}

pub fn dp(conn: &Conn, cmd: DpCmd) -> Result<()> {
    let cmd = match cmd {
        DpCmd::Run(a) => return crate::cmd::node::dp_run(conn, a),
        DpCmd::Prestage { file, data } => return dp_prestage(conn, &file, &data),
        DpCmd::Admin(c) => c,
    };
    runtime()?.block_on(async {
        let c = conn.client()?;
        let verify = matches!(cmd, DpAdminCmd::Verify { .. });
        match cmd {
            DpAdminCmd::Add {
                name,
                description,
                pull_from,
            } => {
                let mut body = json!({"Name": name});
                if let Some(d) = description {
                    body["Description"] = json!(d);
                }
                if let Some(list) = pull_from {
                    let (nals, ranks) = pull_sources(&c, &list).await?;
                    body["IsPullDP"] = json!(true);
                    body["SourceDistributionPoints"] = json!(nals);
                    body["SourceDPRanks"] = json!(ranks);
                }
                let o = Value::Object(c.create("SMS_DistributionPointInfo", &body).await?);
                let out = json!({"name": s(&o, "Name"), "nal_path": s(&o, "NALPath"), "site_code": s(&o, "SiteCode"), "enrollment_token": s(&o, "EnrollmentToken")});
                emit(conn, &out, |o| {
                    output::line(format!("registered {} ({})", s(o, "name"), s(o, "nal_path")))?;
                    output::line(format!("enrollment token (shown once): {}", s(o, "enrollment_token")))
                })
            }
            DpAdminCmd::List => {
                let v = objs(c.list("SMS_DistributionPointInfo", &[]).await?);
                emit(conn, &v, |v| {
                    let mut t = output::Table::new(&[("DP", false), ("SITE", false), ("ENROLLED", false), ("NAL PATH", false)]);
                    for o in v.as_array().into_iter().flatten() {
                        let enrolled = if o["Enrolled"] == json!(true) { "yes" } else { "no" };
                        t.row(vec![
                            s(o, "Name").to_owned(),
                            s(o, "SiteCode").to_owned(),
                            enrolled.to_owned(),
                            s(o, "NALPath").to_owned(),
                        ]);
                    }
                    t.print()
                })
            }
            DpAdminCmd::Remove { dp, keep_content } => {
                let (nal, site) = resolve_dp(&c, &dp).await?;
                if !keep_content {
                    drop_content(&c, conn, &dp, &nal, &site).await?;
                }
                c.delete("SMS_DistributionPointInfo", &key(&[("NALPath", &nal)])).await?;
                emit(conn, &json!({"ReturnValue": 0}), |_| output::line(format!("{dp} removed")))
            }
            DpAdminCmd::Set {
                dp,
                repair,
                validation_schedule,
                rate_limit,
                pulse,
                hourly_percent,
                availability,
                pull_from,
                no_pull,
                prestaged,
            } => {
                let (nal, _) = resolve_dp(&c, &dp).await?;
                let mut body = Map::new();
                if let Some(p) = prestaged {
                    body.insert("PreStagingAllowed".into(), json!(p == "on"));
                }
                if let Some(list) = pull_from {
                    let (nals, ranks) = pull_sources(&c, &list).await?;
                    body.insert("IsPullDP".into(), json!(true));
                    body.insert("SourceDistributionPoints".into(), json!(nals));
                    body.insert("SourceDPRanks".into(), json!(ranks));
                }
                if no_pull {
                    body.insert("IsPullDP".into(), json!(false));
                }
                if let Some(r) = repair {
                    body.insert("RepairDamagedContent".into(), json!(r == "on"));
                }
                if let Some(v) = validation_schedule {
                    body.insert("ValidationSchedule".into(), json!(v));
                }
                if let Some(v) = rate_limit {
                    body.insert("RateLimitBytesPerSecond".into(), json!(v));
                }
                if let Some(p) = pulse {
                    let parsed = p
                        .split_once(',')
                        .and_then(|(kb, secs)| Some((kb.trim().parse::<u32>().ok()?, secs.trim().parse::<u32>().ok()?)));
                    let Some((kb, secs)) = parsed else {
                        bail!("--pulse takes KB,SECONDS (e.g. 64,2), not {p:?}");
                    };
                    body.insert("RateLimitMode".into(), json!(1));
                    body.insert("PulseBlockSizeKB".into(), json!(kb));
                    body.insert("PulseDelaySeconds".into(), json!(secs));
                }
                if let Some(h) = hourly_percent {
                    body.insert("RateLimitMode".into(), json!(2));
                    body.insert("HourlyPercentages".into(), json!(h));
                }
                if let Some(a) = availability {
                    let digits = match a.as_str() {
                        "open" => String::new(),
                        "closed" => "3".repeat(168),
                        _ => a,
                    };
                    body.insert("AvailabilitySchedule".into(), json!(digits));
                }
                if body.is_empty() {
                    bail!("nothing to change: see `pkgdist dp set --help`");
                }
                let o = Value::Object(
                    c.update("SMS_DistributionPointInfo", &key(&[("NALPath", &nal)]), &Value::Object(body))
                        .await?,
                );
                emit(conn, &o, |o| {
                    let limit = match o["RateLimitMode"].as_u64() {
                        Some(1) => format!("pulse {} KB every {} s", o["PulseBlockSizeKB"], o["PulseDelaySeconds"]),
                        Some(2) => format!("by hour {}", s(o, "HourlyPercentages")),
                        Some(3) => format!("{}/s", output::bytes(o["RateLimitBytesPerSecond"].as_u64().unwrap_or(0))),
                        _ => "unlimited".to_owned(),
                    };
                    let availability = match s(o, "AvailabilitySchedule") {
                        "" => "always open".to_owned(),
                        a if a.bytes().all(|b| b == b'3') => "closed".to_owned(),
                        a => a.to_owned(),
                    };
                    let pull = match o["SourceDistributionPoints"].as_array() {
                        Some(list) if o["IsPullDP"] == json!(true) => format!(
                            ", pull DP from {}",
                            list.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
                        ),
                        _ => String::new(),
                    };
                    output::line(format!(
                        "{}: repair {}, validation schedule {:?}, rate limit {limit}, availability {availability}{pull}",
                        s(o, "Name"),
                        if o["RepairDamagedContent"] == json!(true) { "on" } else { "off" },
                        s(o, "ValidationSchedule"),
                    ))
                })
            }
            DpAdminCmd::Verify { package, dp } | DpAdminCmd::Cancel { package, dp } => {
                let (nal, _) = resolve_dp(&c, &dp).await?;
                let method = if verify { "VerifyPackage" } else { "CancelDistribution" };
                let v = c
                    .call(
                        "SMS_DistributionPoint",
                        None,
                        method,
                        &json!({"PackageID": package, "NALPath": nal}),
                    )
                    .await?;
                emit(conn, &Value::Object(v), |_| {
                    output::line(if verify {
                        format!("{package} on {dp}: validation queued; see `pkgdist status {package}`")
                    } else {
                        format!("{package} on {dp}: distribution cancelled (INSTALL_FAILED)")
                    })
                })
            }
        }
    })
}

pub fn settings(conn: &Conn, cmd: SettingsCmd) -> Result<()> {
    runtime()?.block_on(async {
        let c = conn.client()?;
        let class = "PKGDIST_DistributionSettings";
        let current = c.list(class, &[]).await?;
        let Some(current) = current.into_iter().next() else {
            bail!("the site has no distribution settings instance");
        };
        let o = match cmd {
            SettingsCmd::Show => current,
            SettingsCmd::Set {
                max_packages,
                max_threads_per_package,
                retry_count,
                retry_delay_secs,
            } => {
                let mut body = Map::new();
                for (k, v) in [
                    ("MaximumPackageCount", max_packages),
                    ("MaximumThreadsPerPackage", max_threads_per_package),
                    ("RetryCount", retry_count),
                    ("DelayBeforeRetryingSecs", retry_delay_secs),
                ] {
                    if let Some(v) = v {
                        body.insert(k.into(), json!(v));
                    }
                }
                if body.is_empty() {
                    bail!("nothing to change: see `pkgdist settings set --help`");
                }
                let site = current.get("SiteCode").and_then(Value::as_str).unwrap_or_default();
                c.update(class, &key(&[("SiteCode", site)]), &Value::Object(body))
                    .await?
            }
        };
        let o = Value::Object(o);
        emit(conn, &o, |o| {
            output::line(format!(
                "max packages {}, max threads per package {}, retry count {}, retry delay {} s",
                o["MaximumPackageCount"], o["MaximumThreadsPerPackage"], o["RetryCount"], o["DelayBeforeRetryingSecs"]
            ))
        })
    })
}

pub fn group(conn: &Conn, cmd: GroupCmd) -> Result<()> {
    runtime()?.block_on(async {
        let c = conn.client()?;
        let call = |g: String, m: &'static str, p: Value| {
            let c = c.clone();
            async move {
                c.call("SMS_DistributionPointGroup", Some(&key(&[("GroupID", &g)])), m, &p)
                    .await
            }
        };
        let nals = |dps: Vec<String>| {
            let c = c.clone();
            async move {
                let mut out = Vec::new();
                for d in &dps {
                    out.push(resolve_dp(&c, d).await?.0);
                }
                anyhow::Ok(out)
            }
        };
        let done = |what: String| emit(conn, &json!({"ReturnValue": 0}), |_| output::line(what));
        match cmd {
            GroupCmd::Create { name, description } => {
                let o = Value::Object(
                    c.create(
                        "SMS_DistributionPointGroup",
                        &json!({"Name": name, "Description": description.unwrap_or_default()}),
                    )
                    .await?,
                );
                emit(conn, &o, |o| {
                    output::line(format!("created group {} {}", s(o, "Name"), s(o, "GroupID")))
                })
            }
            GroupCmd::List => {
                let v = objs(c.list("SMS_DistributionPointGroup", &[("$orderby", "Name")]).await?);
                emit(conn, &v, |v| {
                    let mut t = output::Table::new(&[
                        ("GROUP", false),
                        ("MEMBERS", true),
                        ("PACKAGES", true),
                        ("CONTENT", false),
                        ("GROUP ID", false),
                    ]);
                    for o in v.as_array().into_iter().flatten() {
                        let sync = if o["ContentInSync"] == json!(true) {
                            "in sync".to_owned()
                        } else {
                            format!("{} out of sync", o["OutOfSyncContentCount"])
                        };
                        t.row(vec![
                            s(o, "Name").to_owned(),
                            o["MemberCount"].to_string(),
                            o["ContentCount"].to_string(),
                            sync,
                            s(o, "GroupID").to_owned(),
                        ]);
                    }
                    t.print()
                })
            }
            GroupCmd::AddDp { group, dps } => {
                let g = resolve_group(&c, &group).await?;
                call(g, "AddDistributionPoints", json!({"DPNALPath": nals(dps).await?})).await?;
                done(format!("added to {group}"))
            }
            GroupCmd::RemoveDp {
                group,
                dps,
                remove_content,
            } => {
                let g = resolve_group(&c, &group).await?;
                call(
                    g,
                    "RemoveDistributionPoints",
                    json!({"DPNALPath": nals(dps).await?, "RemoveTargetedPackages": remove_content}),
                )
                .await?;
                done(format!("removed from {group}"))
            }
            GroupCmd::AddPackage { group, packages } => {
                let g = resolve_group(&c, &group).await?;
                call(g, "AddPackages", json!({"PackageIDs": packages})).await?;
                done(format!("added to {group}"))
            }
            GroupCmd::RemovePackage {
                group,
                packages,
                keep_content,
            } => {
                let g = resolve_group(&c, &group).await?;
                call(
                    g,
                    "RemovePackages",
                    json!({"PackageIDs": packages, "RemovePackageFromDPs": !keep_content}),
                )
                .await?;
                done(format!("removed from {group}"))
            }
            GroupCmd::Redistribute { group, package } => {
                let g = resolve_group(&c, &group).await?;
                call(g, "ReDistributePackage", json!({"PackageID": package})).await?;
                done(format!(
                    "{package} queued for redistribution to every member of {group}"
                ))
            }
            GroupCmd::Refresh { group } => {
                let g = resolve_group(&c, &group).await?;
                call(g, "RefreshDPGroup", json!({})).await?;
                done(format!("{group} refreshed"))
            }
            GroupCmd::Delete { group } => {
                let g = resolve_group(&c, &group).await?;
                c.delete("SMS_DistributionPointGroup", &key(&[("GroupID", &g)])).await?;
                done(format!("{group} deleted"))
            }
        }
    })
}

pub fn token(conn: &Conn, cmd: TokenCmd) -> Result<()> {
    runtime()?.block_on(async {
        let c = conn.client()?;
        match cmd {
            TokenCmd::Create { name, role } => {
                let role = match role {
                    RoleArg::Admin => "FullAdministrator",
                    RoleArg::ReadOnly => "ReadOnlyAnalyst",
                };
                let o = Value::Object(
                    c.create("PKGDIST_AdminToken", &json!({"Name": name, "Role": role}))
                        .await?,
                );
                emit(conn, &o, |o| {
                    output::line(format!("token {} ({}) {}", s(o, "Name"), s(o, "Role"), s(o, "TokenID")))?;
                    output::line(format!("secret (shown once): {}", s(o, "Token")))
                })
            }
            TokenCmd::List => {
                let v = objs(c.list("PKGDIST_AdminToken", &[]).await?);
                emit(conn, &v, |v| {
                    let mut t = output::Table::new(&[
                        ("NAME", false),
                        ("ROLE", false),
                        ("REVOKED", false),
                        ("TOKEN ID", false),
                    ]);
                    for o in v.as_array().into_iter().flatten() {
                        t.row(vec![
                            s(o, "Name").to_owned(),
                            s(o, "Role").to_owned(),
                            o["RevokedOn"].as_str().unwrap_or("-").to_owned(),
                            s(o, "TokenID").to_owned(),
                        ]);
                    }
                    t.print()
                })
            }
            TokenCmd::Revoke { which } => {
                let id = resolve_token(&c, &which).await?;
                c.delete("PKGDIST_AdminToken", &key(&[("TokenID", &id)])).await?;
                emit(conn, &json!({"ReturnValue": 0, "TokenID": id}), |_| {
                    output::line(format!("token {which} revoked ({id})"))
                })
            }
        }
    })
}
