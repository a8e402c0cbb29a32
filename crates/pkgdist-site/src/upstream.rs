//! The site link, child's side: enrolls with the parent once, then keeps this site in step with
//! it — package metadata and intents down, status up, content into this site's library when a
//! DP here or below needs it (see `link.rs` for the protocol).
//!
//! Everything here is driven from durable state and safe to repeat: intents are applied in
//! order and the last applied is recorded (`settings.parent_applied_seq`); a report replaces the
//! parent's view wholesale; content is fetched into the library chunk by chunk, each batch
//! durable, so a link that drops or a site that is killed picks up where it stopped and never
//! bumps a version (only the owning site does).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pkgdist_core::classes::DpState;
use pkgdist_core::dpstate::Action;
use pkgdist_core::{ContentId, Digest};
use pkgdist_db::{Intent, Report, ReportedDp, ReportedRemoval, ReportedRow, ReportedSite, SiteContentRow};
use pkgdist_node::fetch::{self, Fetcher, Which};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::error::SiteError;
use crate::link::{self, EnrollRequest, EnrollResponse, IntentMsg, PackageMeta, ReportResponse, SyncResponse};
use crate::now;
use crate::ops::{packages, rows};
use crate::state::{AppState, Position};

/// `DIR/parent.json` (0600): the parent, and the credential this site presents to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParentLink {
    pub url: String,
    pub credential: String,
    /// Set once the parent accepted the enrollment.
    pub parent_code: Option<String>,
    /// Enrolled over https: `tls/parent-ca.pem` is the parent's CA (checked against the
    /// token's pin) and `tls/parent.pem` the certificate it issued this site.
    #[serde(default)]
    pub tls: bool,
    /// The parent's CA and this site's certificate, read at start when `tls`.
    #[serde(skip)]
    material: Option<(String, pkgdist_node::tls::Identity)>,
}

/// The name of the files of the certificate the parent issued, in the `tls` folder.
const PARENT_CERT: &str = "parent";
/// The parent's CA, in the `tls` folder.
const PARENT_CA: &str = "parent-ca.pem";

const FILE: &str = "parent.json";
/// The settings key of the newest intent applied, per parent (a site that joins another
/// parent, or whose parent's database was replaced, starts again from 0).
fn applied_key(state: &AppState) -> String {
    format!("parent_applied_seq:{}", state.position().parent.unwrap_or_default())
}
/// A report goes up when it changed, and at least this often (the parent shows when it last
/// heard from the child).
const REPORT_EVERY: Duration = Duration::from_secs(15);
/// Status messages one report carries up at most (the rest go with the next rounds).
const STATUS_BATCH: i64 = pkgdist_db::STATUS_BATCH as i64;
/// How long a first start keeps trying to reach the parent to enroll.
const ENROLL_PATIENCE: Duration = Duration::from_secs(120);
/// The longest wait between attempts when the parent cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest wait before a version that failed to replicate is tried again (often the
/// parent is still replicating it from its own parent).
const REPLICATE_BACKOFF: Duration = Duration::from_secs(8);

impl ParentLink {
    pub fn load(dir: &Path) -> Result<Option<Self>, SiteError> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| SiteError::Config(format!("{} is damaged: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SiteError::io(&path, e)),
        }
    }

    fn save(&self, dir: &Path) -> Result<(), SiteError> {
        let path = dir.join(FILE);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| SiteError::Config(e.to_string()))?;
        pkgdist_node::util::write_file(&path, &bytes, true).map_err(|e| SiteError::io(&path, e))
    }

    pub fn enrolled(&self) -> bool {
        self.parent_code.is_some()
    }

    /// The link to use for this run: the one on file, or a new enrollment with `token`. The
    /// credential is written before the parent is asked, so a site that dies in between
    /// retries with the same credential and the parent recognises it.
    pub async fn establish(
        dir: &Path,
        parent_url: Option<&str>,
        token: Option<&str>,
        site_code: &str,
        own_url: &str,
    ) -> Result<Option<Self>, SiteError> {
        let known = Self::load(dir)?;
        let url = match (parent_url, &known) {
            (Some(u), _) => u.trim_end_matches('/').to_owned(),
            (None, Some(k)) => k.url.clone(),
            (None, None) => return Ok(None),
        };
        if let Some(k) = &known
            && k.enrolled()
        {
            if k.url != url {
                return Err(SiteError::Config(format!(
                    "this site is enrolled under the parent at {}; to join another parent, remove {} first",
                    k.url,
                    dir.join(FILE).display()
                )));
            }
            return Ok(Some(k.clone().load_tls(dir)?));
        }
        let Some(token) = token else {
            return Err(SiteError::Config(
                "joining a parent site needs --enrollment-token TOKEN (from `pkgdist site add` at the parent)".into(),
            ));
        };
        let mut link = match known {
            Some(k) if k.url == url => k,
            _ => {
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                Self {
                    url,
                    credential: format!("pkgsite_{}", hex(&bytes)),
                    parent_code: None,
                    tls: false,
                    material: None,
                }
            }
        };
        link.save(dir)?;
        // Over https, the parent is checked against the CA the token pins, and asked for a
        // certificate for a key made here.
        let (builder, csr) = if link.url.starts_with("https://") {
            let (ca_pem, csr) = link.prepare_tls(dir, token).await?;
            let expect = pkgdist_node::tls::Expect::Site(None);
            (pkgdist_node::tls::client_builder(&ca_pem, None, expect)?, Some(csr))
        } else {
            (reqwest::Client::builder(), None)
        };
        // The parent may not be up yet, or busy: network errors and 5xx are retried for a
        // while; a refusal (4xx) is final.
        let http = builder
            .pool_idle_timeout(pkgdist_proto::POOL_IDLE)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        let mut wait = Duration::from_millis(200);
        let deadline = Instant::now() + ENROLL_PATIENCE;
        let resp = loop {
            let sent = http
                .post(format!("{}{}", link.url, link::ENROLL_PATH))
                .json(&EnrollRequest {
                    enrollment_token: token.to_owned(),
                    credential: link.credential.clone(),
                    site_code: site_code.to_owned(),
                    url: own_url.to_owned(),
                    csr: csr.clone(),
                })
                .send()
                .await;
            let why = match sent {
                Ok(r) if r.status().is_success() => break r,
                Ok(r) if r.status().is_client_error() => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    return Err(SiteError::Config(format!(
                        "the parent site refused the enrollment (HTTP {status}): {}",
                        pkgdist_proto::ErrorBody::message_of(&text)
                    )));
                }
                Ok(r) => format!("HTTP {}", r.status().as_u16()),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(SiteError::Config(format!(
                    "cannot enroll with the parent site at {}: {why}; check that it runs and this site can reach it, then start again",
                    link.url
                )));
            }
            tracing::warn!(parent = %link.url, error = %why, "cannot enroll with the parent yet; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        };
        let answer: EnrollResponse = resp
            .json()
            .await
            .map_err(|e| SiteError::Config(format!("cannot read the parent's enrollment answer: {e}")))?;
        if csr.is_some() {
            let chain = answer.certificate.ok_or_else(|| {
                SiteError::Config("the parent enrolled this site but sent no certificate for it".into())
            })?;
            let path = dir.join(pkgdist_node::tls::DIR).join(format!("{PARENT_CERT}.pem"));
            pkgdist_node::util::write_file(&path, chain.as_bytes(), true).map_err(|e| SiteError::io(&path, e))?;
            link.tls = true;
        }
        link.parent_code = Some(answer.parent_code.clone());
        link.save(dir)?;
        tracing::info!(parent = %answer.parent_code, url = %link.url, "joined the parent site");
        Ok(Some(link.load_tls(dir)?))
    }

    /// Fetches the parent's CA, checked against the pin of `token`, keeps it with a new key,
    /// and answers the CA and a certificate request for the key.
    async fn prepare_tls(&self, dir: &Path, token: &str) -> Result<(String, String), SiteError> {
        let pin = pkgdist_node::tls::EnrollmentToken::parse(token).pin.ok_or_else(|| {
            SiteError::Config(
                "the enrollment token carries no CA pin, so the parent at an https:// URL cannot be checked: make a new one with `pkgdist site add` at the parent".into(),
            )
        })?;
        let ca_pem = pkgdist_node::tls::fetch_pinned_ca(&self.url, pkgdist_proto::node::CA_PATH, &pin).await?;
        let (key, csr) = pkgdist_node::tls::key_and_request("pkgdist child site")?;
        let tls_dir = dir.join(pkgdist_node::tls::DIR);
        pkgdist_node::util::private_dir(&tls_dir).map_err(|e| SiteError::io(&tls_dir, e))?;
        for (name, text) in [
            (PARENT_CA.to_owned(), ca_pem.clone()),
            (format!("{PARENT_CERT}-key.pem"), key.serialize_pem()),
        ] {
            let path = tls_dir.join(name);
            pkgdist_node::util::write_file(&path, text.as_bytes(), true).map_err(|e| SiteError::io(&path, e))?;
        }
        Ok((ca_pem, csr))
    }

    /// Reads the parent's CA and this site's certificate, for a link enrolled over https.
    fn load_tls(mut self, dir: &Path) -> Result<Self, SiteError> {
        if !self.tls {
            return Ok(self);
        }
        let tls_dir = dir.join(pkgdist_node::tls::DIR);
        let ca_path = tls_dir.join(PARENT_CA);
        let ca = std::fs::read_to_string(&ca_path).map_err(|e| SiteError::io(&ca_path, e))?;
        let identity = pkgdist_node::tls::Identity::load(&tls_dir, PARENT_CERT)?.ok_or_else(|| {
            SiteError::Config(format!(
                "{} lacks the certificate the parent issued: restore it from a backup, or enroll again",
                tls_dir.display()
            ))
        })?;
        // Set up once here, so a damaged file stops the start rather than every round.
        let expect = pkgdist_node::tls::Expect::Site(self.parent_code.clone());
        pkgdist_node::tls::client_builder(&ca, Some(&identity), expect)?
            .build()
            .map_err(|e| SiteError::Config(format!("cannot set up TLS to the parent: {e}")))?;
        self.material = Some((ca, identity));
        Ok(self)
    }

    /// A client for the parent: over https, trusting only the parent's CA and presenting the
    /// certificate it issued this site.
    pub(crate) fn client(&self) -> reqwest::ClientBuilder {
        match &self.material {
            Some((ca, identity)) => match pkgdist_node::tls::client_builder(
                ca,
                Some(identity),
                pkgdist_node::tls::Expect::Site(self.parent_code.clone()),
            ) {
                Ok(b) => b,
                Err(e) => {
                    // Checked at start (load_tls): unreachable, and then failing closed, with
                    // a client that trusts no one rather than one that trusts the system's CAs.
                    tracing::error!(error = %e, "cannot set up TLS to the parent; the link fails");
                    reqwest::Client::builder().tls_certs_only([])
                }
            },
            None => reqwest::Client::builder(),
        }
    }

    /// Where the parent's content is, for a fetcher.
    fn content_base(&self) -> String {
        format!("{}{}", self.url, link::CONTENT_PREFIX)
    }
}

/// Why a round of the link, or one version's replication, did not complete. The link logs
/// it and tries again; nothing above decides on it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("{step}: cannot reach the parent: {source}")]
    Unreachable { step: &'static str, source: reqwest::Error },
    #[error("{step}: the parent answered HTTP {status}: {message}")]
    Refused {
        step: &'static str,
        status: u16,
        message: String,
    },
    #[error("{step}: the parent's answer cannot be read: {source}")]
    Answer { step: &'static str, source: reqwest::Error },
    #[error("the report cannot be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Db(#[from] pkgdist_db::DbError),
    #[error("{object}: {source}")]
    Op {
        object: String,
        source: crate::ops::OpError,
    },
    #[error(transparent)]
    Fetch(#[from] pkgdist_node::fetch::FetchError),
    #[error(transparent)]
    Library(#[from] pkgdist_content::ContentError),
    #[error("a worker thread failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The parent's refusal of `step`, with its message.
pub(crate) async fn refused(step: &'static str, resp: reqwest::Response) -> LinkError {
    let status = resp.status().as_u16();
    LinkError::Refused {
        step,
        status,
        message: pkgdist_proto::ErrorBody::message_of(&resp.text().await.unwrap_or_default()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs until the process ends: metadata and intents down, status up.
pub async fn run(state: AppState, link: ParentLink, own_url: String) {
    state.set_position(Position {
        parent: link.parent_code.clone(),
        depth: 1,
    });
    let http = link
        .client()
        .pool_idle_timeout(pkgdist_proto::POOL_IDLE)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap_or_default();
    let mut progress = Progress::default();
    let mut backoff = Duration::from_millis(500);
    loop {
        let round = round(&state, &link, &http, &own_url, &mut progress)
            .instrument(tracing::debug_span!("parent_sync", parent = %link.url))
            .await;
        let wait = match round {
            Ok(()) => {
                backoff = Duration::from_millis(500);
                Duration::from_millis(state.dist().poll_ms.clamp(100, 5000))
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis(), "site link: the parent cannot be reached or refused; retrying");
                let w = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                w
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// How often the whole package list is taken, whatever its version says.
const PACKAGES_EVERY: Duration = Duration::from_secs(600);

/// What the link remembers between rounds. Only in memory: after a restart the first round
/// takes the package list and sends the rows whole.
#[derive(Debug, Default)]
struct Progress {
    /// The change number the parent's copy of this site's rows is complete up to.
    acked: Option<i64>,
    /// The package metadata version applied here, and when the whole list last came.
    packages_epoch: Option<i64>,
    packages_at: Option<Instant>,
    /// What the last report sent whole (intents applied, sites, DPs), and when.
    last_report: Option<(blake3::Hash, Instant)>,
    /// The packages owned in this subtree the parent took last (their hash), and the local
    /// package version they were read at: read again only when that moves.
    packages_up: Option<(blake3::Hash, i64)>,
}

async fn round(
    state: &AppState,
    link: &ParentLink,
    http: &reqwest::Client,
    own_url: &str,
    progress: &mut Progress,
) -> Result<(), LinkError> {
    let since = applied_seq(state).await?;
    let mut query = vec![("since", since)];
    if let Some(epoch) = progress.packages_epoch {
        query.push(("packages", epoch));
    }
    let resp = http
        .get(format!("{}{}", link.url, link::SYNC_PATH))
        .query(&query)
        .bearer_auth(&link.credential)
        .send()
        .await
        .map_err(|source| LinkError::Unreachable { step: "sync", source })?;
    if !resp.status().is_success() {
        return Err(refused("sync", resp).await);
    }
    let sync: SyncResponse = resp
        .json()
        .await
        .map_err(|source| LinkError::Answer { step: "sync", source })?;
    state.set_position(Position {
        parent: Some(sync.parent_code.clone()),
        depth: sync.parent_depth + 1,
    });
    if progress.packages_at.is_some_and(|at| at.elapsed() >= PACKAGES_EVERY) {
        // Now and then the whole list regardless, so that nothing rests on the version alone.
        progress.packages_epoch = None;
    }
    if let Some(packages) = &sync.packages {
        // A package refused here is tried again at the next poll: the version is kept only
        // when every package was taken.
        let all_taken = apply_packages(state, packages).await?;
        progress.packages_epoch = all_taken.then_some(sync.packages_epoch);
        progress.packages_at = Some(Instant::now());
    }
    apply_intents(state, &sync.intents).await?;
    if state.wanted_above.set(sync.wanted) {
        state.wanted_cache.moved();
    }

    let mut report = build_report(state, own_url, progress.acked).await?;
    if let Some(mark) = sync.status_seq {
        report.statuses = state.db.statuses_after(mark, STATUS_BATCH).await?;
    }
    let packages_up = packages_to_report(state, progress).await?;
    if let Some((None, hash, epoch)) = &packages_up {
        // Read again but unchanged: nothing to send, and nothing to read until it moves.
        progress.packages_up = Some((*hash, *epoch));
    }
    let seq = report.seq;
    let whole = blake3::hash(&serde_json::to_vec(&(report.applied_seq, &report.sites, &report.dps))?);
    // Nothing changed since the last report the parent took: say so only now and then.
    let quiet = report.base.is_some()
        && report.rows.is_empty()
        && report.removed.is_empty()
        && report.statuses.is_empty()
        && packages_up.as_ref().is_none_or(|(list, ..)| list.is_none())
        && progress
            .last_report
            .is_some_and(|(h, at)| h == whole && at.elapsed() < REPORT_EVERY);
    if !quiet {
        let body = serde_json::to_vec(&link::ReportBody {
            report,
            packages: packages_up.as_ref().and_then(|(list, ..)| list.clone()),
        })?;
        let resp = http
            .post(format!("{}{}", link.url, link::REPORT_PATH))
            .bearer_auth(&link.credential)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|source| LinkError::Unreachable { step: "report", source })?;
        if !resp.status().is_success() {
            return Err(refused("report", resp).await);
        }
        let answer: ReportResponse = resp
            .json()
            .await
            .map_err(|source| LinkError::Answer { step: "report", source })?;
        if !answer.accepted {
            // The parent's copy is not where this site thought (a restored parent, an answer
            // lost): the rows go whole next round.
            tracing::info!(
                parent_has = answer.report_seq,
                "the parent asks for this site's rows whole"
            );
            progress.acked = None;
            return Ok(());
        }
        progress.acked = Some(seq);
        if let Some((_, hash, epoch)) = packages_up {
            progress.packages_up = Some((hash, epoch));
        }
        progress.last_report = Some((whole, Instant::now()));
    }
    Ok(())
}

async fn applied_seq(state: &AppState) -> Result<i64, LinkError> {
    Ok(state
        .db
        .setting(&applied_key(state))
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Records packages owned above: new ones, and new versions (which retarget this site's rows
/// of the package, as a refresh at the owner does there). Packages the parent no longer lists
/// are deleted here too, off this site's DPs first.
async fn apply_packages(state: &AppState, packages: &[PackageMeta]) -> Result<bool, LinkError> {
    let own = state.site_code.to_string();
    let mut changed = false;
    let mut all_taken = true;
    for meta in packages.iter().filter(|m| m.source_site != own) {
        let had = match state.db.upsert_package_from_above(&meta.row()).await {
            Ok(had) => had,
            // One package that cannot be taken (its ID is another site's here) must not
            // stop the others, or intents and reports for the whole link.
            Err(pkgdist_db::DbError::Conflict(what)) => {
                tracing::error!(package = %meta.package_id, %what, "package from the parent refused: its ID is already used here");
                all_taken = false;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match had {
            None => changed = true,
            Some(v) if meta.source_version > v => {
                let hash = meta.manifest_hash.clone().unwrap_or_default();
                let why = format!(
                    "{}.{} queued for distribution (a new version from site {})",
                    meta.package_id, meta.source_version, meta.source_site
                );
                let nv = packages::new_version(&meta.package_id, v, meta.source_version, hash, meta.package_size, &why);
                state.db.record_version(&nv).await?;
                tracing::info!(package = %meta.package_id, version = meta.source_version, from = v, "new version from the parent site");
                changed = true;
            }
            Some(_) => {}
        }
    }
    let listed: std::collections::HashSet<&str> = packages.iter().map(|m| m.package_id.as_str()).collect();
    // Packages of sites below came from there, not from the parent's list.
    let below: HashSet<String> = state.db.sites().await?.into_iter().map(|s| s.site_code).collect();
    for p in state.db.packages().await? {
        if p.source_site != own
            && !below.contains(&p.source_site)
            && !listed.contains(p.package_id.as_str())
            && packages::deleted_at_owner(state, &p.package_id)
                .await
                .map_err(|source| LinkError::Op {
                    object: p.package_id.clone(),
                    source,
                })?
        {
            tracing::info!(package = %p.package_id, owner = %p.source_site, "package deleted at its owner: deleting it here, off this site's DPs first");
            changed = true;
        }
    }
    if changed {
        state.replicate.notify_one();
        state.work.notify_one();
    }
    Ok(all_taken)
}

/// The packages owned here and below, when the parent should be sent them: when they changed
/// since the parent took them, or with a whole report. Read only when the local package
/// version moved (or for a whole report), so a quiet link reads no package list.
async fn packages_to_report(
    state: &AppState,
    progress: &Progress,
) -> Result<Option<(Option<Vec<PackageMeta>>, blake3::Hash, i64)>, LinkError> {
    let epoch = state.db.package_epoch().await?;
    let whole = progress.acked.is_none();
    if !whole && progress.packages_up.is_some_and(|(_, e)| e == epoch) {
        return Ok(None);
    }
    let mut owners: Vec<String> = state.db.sites().await?.into_iter().map(|s| s.site_code).collect();
    owners.push(state.site_code.to_string());
    let list: Vec<PackageMeta> = state
        .db
        .packages_owned_by(&owners, true)
        .await?
        .iter()
        .map(PackageMeta::of)
        .collect();
    let hash = blake3::hash(&serde_json::to_vec(&list)?);
    let send = whole || progress.packages_up.is_none_or(|(h, _)| h != hash);
    Ok(Some((send.then_some(list), hash, epoch)))
}

/// Applies the parent's intents in order, with this site's own methods (which pass them on
/// when the DP is further below), recording each as applied.
async fn apply_intents(state: &AppState, intents: &[IntentMsg]) -> Result<(), LinkError> {
    // Packages and DPs do not change while intents are applied (only rows do): each is read
    // once per round.
    let mut packages: HashMap<String, Option<pkgdist_db::PackageRow>> = HashMap::new();
    let mut dps: HashMap<String, Option<pkgdist_db::DpRow>> = HashMap::new();
    for i in intents {
        let object = format!("{} on {}", i.package_id, i.nal_path);
        if !packages.contains_key(&i.package_id) {
            let p = state.db.package(&i.package_id).await?;
            packages.insert(i.package_id.clone(), p);
        }
        if !dps.contains_key(&i.nal_path) {
            let d = state.db.dp(&i.nal_path).await?;
            dps.insert(i.nal_path.clone(), d);
        }
        let (Some(Some(p)), Some(Some(d))) = (packages.get(&i.package_id), dps.get(&i.nal_path)) else {
            tracing::warn!(%object, intent = i.intent.as_str(), "intent from the parent for a package or DP this site does not know; skipped");
            // Reported as not here, so the parent's copy does not keep what the intent set.
            state.db.touch_row(&i.package_id, &i.nal_path).await?;
            record_applied(state, i.seq).await?;
            continue;
        };
        let row = state.db.package_dp(&i.package_id, &i.nal_path).await?;
        let result = match i.intent {
            Intent::Target | Intent::Redistribute => {
                let why = if i.intent == Intent::Redistribute {
                    "redistribution (from the parent site): every file will be sent and verified again"
                } else {
                    "queued for distribution (from the parent site)"
                };
                rows::retarget(state, &[(p, d)], i.intent == Intent::Redistribute, why).await
            }
            Intent::Remove => match &row {
                Some(r) if !r.dp_state().is_some_and(DpState::is_removal) => {
                    rows::set_state(
                        state,
                        &[(i.package_id.clone(), i.nal_path.clone())],
                        DpState::RemovalPending,
                        "removal queued (from the parent site)",
                    )
                    .await
                }
                _ => Ok(()),
            },
            Intent::Verify | Intent::Cancel => {
                let action = if i.intent == Intent::Verify {
                    Action::Verify
                } else {
                    Action::Cancel
                };
                rows::row_action(state, &i.package_id, &i.nal_path, action).await
            }
        };
        match result {
            Ok(()) => {}
            // The database failed, or the row changed under the action (a job finished):
            // not applied; the round ends and the intent comes again.
            Err(source) if source.transient() => return Err(LinkError::Op { object, source }),
            // Refused here as it would have been above (say, a verify with nothing installed):
            // the row's state, reported up, tells the administrator.
            Err(e) => {
                tracing::warn!(%object, intent = i.intent.as_str(), error = %e, "intent from the parent refused here");
            }
        }
        // Reported again whatever happened: the parent set its copy as the intent would.
        state.db.touch_row(&i.package_id, &i.nal_path).await?;
        record_applied(state, i.seq).await?;
    }
    if !intents.is_empty() {
        state.work.notify_one();
        state.replicate.notify_one();
    }
    Ok(())
}

async fn record_applied(state: &AppState, seq: i64) -> Result<(), LinkError> {
    Ok(state.db.set_setting(&applied_key(state), &seq.to_string()).await?)
}

/// This site's view of its subtree: itself, the sites below, every DP, and its rows: whole
/// (`base` `None`), or those written and removed after change `base`.
async fn build_report(state: &AppState, own_url: &str, base: Option<i64>) -> Result<Report, LinkError> {
    let db = &state.db;
    // The number first: what is read after includes every change up to it (and perhaps a
    // few after, which the next report carries again).
    let seq = db.change_seq().await?;
    let mut base = base;
    let (rows, removed) = loop {
        let Some(b) = base else {
            break (db.package_dps().await?, Vec::new());
        };
        let rows = db.rows_changed_since(b).await?;
        let here: HashSet<(&str, &str)> = rows
            .iter()
            .map(|r| (r.package_id.as_str(), r.nal_path.as_str()))
            .collect();
        let removed = db
            .rows_removed_since(b)
            .await?
            .into_iter()
            .filter(|(p, n)| !here.contains(&(p.as_str(), n.as_str())))
            .map(|(package_id, nal_path)| ReportedRemoval { package_id, nal_path })
            .collect();
        // Removals numbered up to the mark are forgotten (read after them: a mark moved past
        // the base meanwhile is seen here): changes after an older base cannot be told.
        if b < db.removals_forgotten_upto().await? {
            base = None;
            continue;
        }
        break (rows, removed);
    };
    let mut sites = vec![ReportedSite {
        site_code: state.site_code.to_string(),
        site_name: state.site_name.clone(),
        parent_code: state.position().parent.unwrap_or_default(),
        url: Some(own_url.to_owned()),
        default_name: state.site_name == crate::config::DEFAULT_SITE_NAME,
    }];
    sites.extend(db.sites().await?.into_iter().map(|s| ReportedSite {
        site_code: s.site_code,
        site_name: s.site_name,
        parent_code: s.parent_code,
        url: s.url,
        default_name: false,
    }));
    let mut sources: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    for s in db.pull_sources().await? {
        sources.entry(s.nal_path).or_default().push((s.source_nal, s.rank));
    }
    let dps = db
        .dps()
        .await?
        .into_iter()
        .map(|d| ReportedDp {
            sources: sources.remove(&d.nal_path).unwrap_or_default(),
            settings: pkgdist_db::ReportedDpSettings {
                priority: d.priority,
                repair_damaged: d.repair_damaged,
                prestaging: d.prestaging,
                validation_schedule: d.validation_schedule.clone(),
                availability: d.availability.clone(),
                rate_mode: d.rate_mode,
                rate_bytes_per_sec: d.rate_bytes_per_sec,
            },
            nal_path: d.nal_path,
            name: d.name,
            site_code: d.site_code,
            description: d.description,
            is_pull: d.is_pull,
            url: d.url,
        })
        .collect();
    let rows = rows
        .into_iter()
        .map(|r| ReportedRow {
            package_id: r.package_id,
            nal_path: r.nal_path,
            site_code: r.site_code,
            state: r.state,
            target_version: r.target_version,
            installed_version: r.installed_version,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            last_copied: r.last_copied,
            summary_date: r.summary_date,
            last_message: r.last_message,
            progress_bytes: r.progress_bytes,
            progress_done: r.progress_done,
            progress_total: r.progress_total,
        })
        .collect();
    Ok(Report {
        applied_seq: applied_seq(state).await?,
        seq,
        base,
        sites,
        dps,
        rows,
        removed,
        statuses: Vec::new(),
    })
}

// ---- content ----

/// Runs until the process ends: brings into this site's library every version of a package
/// owned above that a DP here or below is targeted with, from the parent.
pub async fn replicate(state: AppState, link: ParentLink) {
    let base = link.content_base();
    let fetcher = Fetcher::with_client(link.client())
        .with_bearer_for(&base, &link.credential)
        .with_metrics(state.metrics.node.fetch());
    // Versions that failed, and when to try them again.
    let mut later: HashMap<ContentId, (Instant, Duration)> = HashMap::new();
    loop {
        match needed(&state).await {
            Ok(list) => {
                for (content, hash) in list {
                    if later.get(&content).is_some_and(|(at, _)| Instant::now() < *at) {
                        continue;
                    }
                    let span = tracing::info_span!("replicate", %content, parent = %link.url);
                    match fetch_version(&state, &fetcher, &base, content, hash)
                        .instrument(span)
                        .await
                    {
                        Ok(()) => {
                            later.remove(&content);
                        }
                        Err(e) => {
                            let wait = later
                                .get(&content)
                                .map_or(Duration::from_secs(1), |(_, w)| (*w * 2).min(REPLICATE_BACKOFF));
                            tracing::warn!(%content, error = %e, retry_in_s = wait.as_secs(), "replication from the parent failed; will retry");
                            later.insert(content, (Instant::now() + wait, wait));
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot work out which content this site needs"),
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), state.replicate.notified()).await;
    }
}

/// Versions owned above, targeted at a DP here or below, not yet in the library; highest
/// package priority first.
async fn needed(state: &AppState) -> Result<Vec<(ContentId, Digest)>, LinkError> {
    let own = state.site_code.to_string();
    let packages = state.db.replication_candidates(&own).await?;
    let mut out = Vec::new();
    for p in &packages {
        let Some(hash) = p.manifest_hash.as_deref() else {
            continue;
        };
        let (Ok(package), Ok(hash), Ok(version)) = (
            p.package_id.parse(),
            hash.parse::<Digest>(),
            u32::try_from(p.source_version),
        ) else {
            continue;
        };
        let content = ContentId { package, version };
        let lib = state.library.clone();
        let held = tokio::task::spawn_blocking(move || lib.manifest_id(content)).await??;
        if held.is_none() {
            out.push((content, hash));
        }
    }
    Ok(out)
}

/// The `site_content` row of `content`, or a new one (fetching, nothing received yet).
pub(crate) async fn site_content_row(
    state: &AppState,
    content: ContentId,
) -> Result<SiteContentRow, pkgdist_db::DbError> {
    let (package_id, version) = (content.package.to_string(), i64::from(content.version));
    Ok(state
        .db
        .site_content_of(&package_id, version)
        .await?
        .unwrap_or(SiteContentRow {
            package_id,
            version,
            state: 1,
            bytes_received: 0,
            chunks_fetched: 0,
            chunks_total: 0,
            attempts: 0,
            message: String::new(),
            updated_at: now(),
        }))
}

/// Records a version that came from another site (whose chunks are all here) in the library;
/// older versions of the package go, as on a DP (the one before stays for DPs still on it).
pub(crate) fn record_version(
    lib: &pkgdist_content::Library,
    content: ContentId,
    manifest: &pkgdist_core::Manifest,
) -> Result<(), pkgdist_content::ContentError> {
    lib.commit(content, manifest)?;
    for v in lib.versions()? {
        if v.package == content.package && v.version < content.version.saturating_sub(1) {
            lib.release(v)?;
        }
    }
    Ok(())
}

/// Fetches one version from the parent: the manifest (checked against the hash the metadata
/// carries), the chunks this library lacks, then commits it. What crossed the link is added
/// to the version's `site_content` row, attempt after attempt.
async fn fetch_version(
    state: &AppState,
    fetcher: &Fetcher,
    base: &str,
    content: ContentId,
    hash: Digest,
) -> Result<(), LinkError> {
    let mut row = site_content_row(state, content).await?;
    row.state = 1;
    row.message = "fetching from the parent site".into();
    row.updated_at = now();
    state.db.put_site_content(&row).await?;

    let mut bytes = 0u64;
    let result = async {
        let lib = state.library.clone();
        let held = tokio::task::spawn_blocking(move || fetch::ManifestBase::latest_in(&lib, content)).await??;
        let fetched = fetcher
            .manifest_against(base, Which::Version(content), Some(hash), held.as_ref())
            .await?;
        bytes += fetched.wire_bytes;
        row.bytes_received += i64::try_from(fetched.wire_bytes).unwrap_or(i64::MAX);
        let manifest = Arc::new(fetched.manifest);
        let plan = fetch::plan(state.library.clone(), content, manifest.clone(), false).await?;
        let sources = [base.to_owned()];
        // Batch by batch, each durable before it is counted, so the count survives a crash.
        for batch in fetch::batches(&plan.missing, fetcher.batch_bytes()) {
            let mut done = fetch::BatchDone::default();
            fetch::fill(fetcher, &state.library, &sources, batch, &plan.bases, |b| {
                done = b;
                true
            })
            .await?;
            row.bytes_received += i64::try_from(done.wire_bytes).unwrap_or(i64::MAX);
            row.chunks_fetched += i64::try_from(done.chunks).unwrap_or(i64::MAX);
            row.updated_at = now();
            state.db.put_site_content(&row).await?;
            bytes += done.wire_bytes;
        }
        let lib = state.library.clone();
        let m = manifest.clone();
        tokio::task::spawn_blocking(move || record_version(&lib, content, &m)).await??;
        Ok::<_, LinkError>(plan)
    }
    .await;
    row.updated_at = now();
    let out = match result {
        Ok(plan) => {
            row.state = 0;
            row.chunks_total = i64::try_from(plan.total).unwrap_or(i64::MAX);
            row.message = format!(
                "{content} replicated from the parent site: {} of {} chunks fetched ({} bytes), {} already here",
                plan.missing.len(),
                plan.total,
                bytes,
                plan.present
            );
            tracing::info!(bytes, chunks = plan.missing.len(), "{}", row.message);
            Ok(())
        }
        Err(e) => {
            row.state = 2;
            row.attempts += 1;
            row.message = format!("{content}: replication from the parent site failed: {e}");
            Err(e)
        }
    };
    state.db.put_site_content(&row).await?;
    if out.is_ok() {
        state.work.notify_one();
    }
    out
}
