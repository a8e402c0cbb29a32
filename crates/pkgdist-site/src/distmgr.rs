//! The distribution manager: turns package-on-DP rows that need work into jobs on the DPs,
//! follows them, and records what came of them.
//!
//! The database is the queue, and jobs are leased from it. A row whose state calls for work
//! (`pkgdist_core::dpstate::work_for`) and whose retry time has come is due; a worker takes its
//! job by writing a lease (owner, expiry) on the row and renews the lease at every poll of the
//! DP. A worker that dies — its site process crashed, or it hangs — stops renewing, and once
//! the lease expires the row is due again for any site process on the same database. A site
//! restarting on the same data folder ends its earlier run's leases at once.
//!
//! The job is named after the row (`<PackageID>-<job_key>-<job_seq>`); every retarget or state
//! change bumps `job_seq`. The DP treats a job ID it knows as the same job, so a job taken up
//! again picks up its progress on the DP — nothing that had finished is repeated. The outcome
//! is written only if the row is still at that job and the lease still this worker's (see
//! `Db::finish_job`), so a refresh or a cancel landing meanwhile wins over a late answer.
//!
//! Order and limits follow ConfigMgr: at most `max-packages` packages at once and
//! `max-threads-per-package` DPs per package; higher-priority packages first, then first
//! queued, then the DPs that took transfers fastest. Failures count attempts: INSTALL_RETRYING
//! with the next retry time, INSTALL_FAILED once `retry-count` attempts are spent.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pkgdist_core::ContentId;
use pkgdist_core::availability::Availability;
use pkgdist_core::classes::{DpState, MessageState};
use pkgdist_core::dpstate::{self, Outcome, RowState, Work};
use pkgdist_db::{DpRow, JobOutcome, Lease, NewStatus, PackageDpRow, Progress};
use pkgdist_proto::node::{JOBS_PATH, Job, JobKind, JobState, JobStatus};
use tracing::Instrument;

use crate::now;
use crate::state::AppState;

/// `SMS_DistributionDPStatus.MessageID`s the manager records.
pub mod message_id {
    /// The package was distributed to the DP (ConfigMgr's 2330).
    pub const INSTALLED: i64 = 2330;
    /// A distribution attempt failed; it will be retried (ConfigMgr's 2302).
    pub const FAILED: i64 = 2302;
    /// pkgdist: the content was removed from the DP.
    pub const REMOVED: i64 = 2342;
    /// pkgdist: validation found the content sound.
    pub const VALIDATED: i64 = 2384;
    /// pkgdist: validation found damaged or missing files.
    pub const DAMAGED: i64 = 2385;
    /// pkgdist: validation found damage and the DP repaired it.
    pub const REPAIRED: i64 = 2386;
}

/// Which site installation and which run of it a lease belongs to: `<instance>#<run>`. The
/// instance is a random ID kept in the data folder (`instance-id`), the same for every run on
/// that folder and different for every other folder, wherever it is.
#[derive(Debug, Clone)]
pub struct Owner {
    pub prefix: String,
    pub id: String,
}

impl Owner {
    pub fn new(data_dir: &std::path::Path) -> std::io::Result<Self> {
        let path = data_dir.join("instance-id");
        let instance = match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
            _ => {
                let fresh = uuid::Uuid::new_v4().simple().to_string();
                pkgdist_node::util::write_file(&path, fresh.as_bytes(), true)?;
                fresh
            }
        };
        let prefix = format!("{instance}#");
        let id = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
        Ok(Self { prefix, id })
    }
}

/// Runs until the process ends.
pub async fn run(state: AppState, owner: Owner) {
    match state.db.release_stale_leases(&owner.prefix, &owner.id).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(n, "took back the jobs an earlier run of this site was following"),
        Err(e) => tracing::error!(error = %e, "cannot end an earlier run's leases; they will expire"),
    }
    let busy: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
    // Over https, the site verifies its DPs against its CA and presents its own certificate.
    let builder = match state.tls().map(crate::tls::SiteTls::client) {
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            // Checked at start (SiteTls::open): unreachable, and then failing closed.
            tracing::error!(error = %e, "cannot set up TLS to DPs; DPs on https:// cannot be reached");
            reqwest::Client::builder().tls_certs_only([])
        }
        None => reqwest::Client::builder(),
    };
    let http = DpClients {
        plain: finish(builder),
        pinned: Arc::default(),
        tls: state.tls_shared(),
    };
    loop {
        match state.db.finish_unenrolled_removals().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "removals from DPs that never enrolled: nothing to remove, done"),
            Err(e) => tracing::error!(error = %e, "cannot finish removals from unenrolled DPs"),
        }
        if let Err(e) = crate::ops::packages::finish_deletes(&state).await {
            tracing::error!(error = %e, "cannot finish deleting packages no DP holds");
        }
        if let Err(e) = dispatch(&state, &owner, &busy, &http).await {
            tracing::error!(error = %e, "cannot read the distribution queue");
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), state.work.notified()).await;
    }
}

/// Starts the due jobs the limits allow, best first.
async fn dispatch(
    state: &AppState,
    owner: &Owner,
    busy: &Arc<Mutex<HashSet<(String, String)>>>,
    http: &DpClients,
) -> Result<(), pkgdist_db::DbError> {
    let time = now();
    let due = state.db.due_work(&time).await?;
    if due.is_empty() {
        return Ok(());
    }
    let d = state.dist();
    // Jobs running now, by package (standard DPs) and by pull DP, in every site process on
    // this database.
    let mut running: HashMap<String, usize> = HashMap::new();
    let mut pulling: HashMap<String, usize> = HashMap::new();
    for (p, nal, is_pull) in state.db.leased_jobs(&time).await? {
        if is_pull != 0 {
            *pulling.entry(nal).or_default() += 1;
        } else {
            *running.entry(p).or_default() += 1;
        }
    }
    let mut ready = Readiness::new(state);
    let zone = jiff::tz::TimeZone::system();
    let at = jiff::Timestamp::now();
    // The best priority waiting for a package slot: packages of lower priority already running
    // get no more DPs until it has one, so a large low-priority package cannot hold the slot
    // for all its DPs while high-priority content waits.
    let mut waiting: Option<i64> = None;
    for item in due {
        if !ready.content_here(&item.row).await {
            continue; // owned above, and not replicated to this site yet
        }
        if lock(busy).contains(&(item.row.package_id.clone(), item.row.nal_path.clone())) {
            continue; // this process is still winding down the row's previous job
        }
        if item.awaits_prestage() {
            awaits_prestage(state, &item.row).await;
            continue;
        }
        if item.pulls() {
            // Pull DPs fetch from their sources: outside the site's limits and schedules, up
            // to their own job limit, once a source holds the version.
            let n = pulling.get(&item.row.nal_path).copied().unwrap_or(0);
            if n >= d.pull_dp_max_jobs || !pull_source_ready(&item) {
                continue;
            }
            let row = item.row;
            let lease = lease(&row, owner, d.lease_secs);
            if !state.db.claim(&lease, &time).await? {
                continue;
            }
            *pulling.entry(row.nal_path.clone()).or_default() += 1;
            spawn_job(state, busy, http, row, lease, item.priority);
            continue;
        }
        // The DP's availability schedule: a job of a priority not allowed now waits.
        let priority = u32::try_from(item.priority).unwrap_or(2);
        let window = Availability::parse(&item.availability).ok();
        if let Some(a) = window.filter(|a| !a.at(at, &zone).allows(priority)) {
            held_back(state, &item.row, &a, priority, at, &zone).await;
            continue;
        }
        let row = item.row;
        let n = running.get(&row.package_id).copied().unwrap_or(0);
        if n == 0 && running.len() >= d.max_packages {
            waiting = Some(waiting.map_or(item.priority, |w| w.min(item.priority)));
            continue;
        }
        if n >= d.max_threads_per_package || waiting.is_some_and(|w| w < item.priority) {
            continue;
        }
        let lease = lease(&row, owner, d.lease_secs);
        if !state.db.claim(&lease, &time).await? {
            continue; // another worker got there first, or the row moved on
        }
        *running.entry(row.package_id.clone()).or_default() += 1;
        spawn_job(state, busy, http, row, lease, item.priority);
    }
    Ok(())
}

/// A row its DP's availability window holds back says so, and until when (written once: the
/// message changes only when the window's next opening does). It begins "waiting for", not
/// "waiting:" (which marks rows that wait for an administrator): the window opens by itself.
async fn held_back(
    state: &AppState,
    row: &PackageDpRow,
    window: &Availability,
    priority: u32,
    at: jiff::Timestamp,
    zone: &jiff::tz::TimeZone,
) {
    let dp = pkgdist_core::classes::nal_server(&row.nal_path).unwrap_or(&row.nal_path);
    let level = match priority {
        1 => "high",
        2 => "medium",
        _ => "low",
    };
    let message = match window.next_allowed(priority, at, zone) {
        Some(t) => format!(
            "waiting for {dp}'s availability window: closed to {level}-priority content until {} (site time)",
            t.to_zoned(zone.clone()).strftime("%Y-%m-%d %H:%M")
        ),
        None => format!(
            "waiting for {dp}'s availability window: never open to {level}-priority content; change the DP's AvailabilitySchedule or the package's Priority"
        ),
    };
    say_why(state, row, &message).await;
}

/// Records why a row waits, once: only when the message changes.
async fn say_why(state: &AppState, row: &PackageDpRow, message: &str) {
    if row.last_message != message
        && let Err(e) = state
            .db
            .set_row_message(&row.package_id, &row.nal_path, row.job_seq, message)
            .await
    {
        tracing::warn!(error = %e, "cannot record why a row waits");
    }
}

/// A row that waits for prestaged content says so, and what to do (written once).
async fn awaits_prestage(state: &AppState, row: &PackageDpRow) {
    let dp = pkgdist_core::classes::nal_server(&row.nal_path).unwrap_or(&row.nal_path);
    let content = format!("{}.{}", row.package_id, row.target_version);
    let message = format!(
        "waiting: {dp} takes {} from prestaged content only (PreStagingAllowed, and the package is flagged DO_NOT_DOWNLOAD): `pkgdist content prestage --library SITE_DATA/library {content} FILE` here, then `pkgdist dp prestage FILE --data DP_DATA` on the DP; or `pkgdist dp set {dp} --prestaged off`",
        row.package_id
    );
    say_why(state, row, &message).await;
}

/// Timeouts of every client the site talks to its DPs with.
fn finish(builder: reqwest::ClientBuilder) -> reqwest::Client {
    builder
        .pool_idle_timeout(pkgdist_proto::POOL_IDLE)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// The HTTP clients the site talks to its DPs with: one for DPs enrolled over http, and one per
/// certificate for DPs enrolled over https, taking only the certificate issued to that DP (its
/// recorded fingerprint), so no other node of the CA, another DP included, can pass for it.
#[derive(Clone)]
struct DpClients {
    plain: reqwest::Client,
    /// By certificate fingerprint: one per DP enrolled over https (a client pools its
    /// connections; a re-enrolled DP's old entry is dropped when the map outgrows the DPs).
    pinned: Arc<Mutex<HashMap<String, reqwest::Client>>>,
    tls: Option<Arc<crate::tls::SiteTls>>,
}

impl DpClients {
    /// Bound on remembered pinned clients before the map is cleared (they are rebuilt on use).
    const MAX_PINNED: usize = 100_000;

    fn for_dp(&self, dp: &DpRow) -> reqwest::Client {
        let (Some(fp), Some(tls)) = (&dp.cert_sha256, &self.tls) else {
            return self.plain.clone();
        };
        let mut pinned = lock(&self.pinned);
        if let Some(c) = pinned.get(fp) {
            return c.clone();
        }
        let client = match tls.client_pinned(fp) {
            Ok(b) => finish(b),
            Err(e) => {
                tracing::error!(error = %e, dp = %dp.name, "cannot set up TLS to the DP; it cannot be reached");
                finish(reqwest::Client::builder().tls_certs_only([]))
            }
        };
        if pinned.len() >= Self::MAX_PINNED {
            pinned.clear();
        }
        pinned.insert(fp.clone(), client.clone());
        client
    }
}

/// Follows one claimed job in its own task.
fn spawn_job(
    state: &AppState,
    busy: &Arc<Mutex<HashSet<(String, String)>>>,
    http: &DpClients,
    row: PackageDpRow,
    lease: Lease,
    priority: i64,
) {
    let key = (row.package_id.clone(), row.nal_path.clone());
    lock(busy).insert(key.clone());
    let (state, busy, http) = (state.clone(), busy.clone(), http.clone());
    let span = tracing::info_span!("job", package = %row.package_id, dp = %row.nal_path, seq = row.job_seq, priority);
    tokio::spawn(
        async move {
            work(&state, &http, row, lease).await;
            lock(&busy).remove(&key);
            state.work.notify_one();
        }
        .instrument(span),
    );
}

/// What dispatching needs to know beyond a row, read at most once per round: which content
/// versions this site's library holds.
struct Readiness<'a> {
    state: &'a AppState,
    held: HashMap<ContentId, bool>,
}

impl<'a> Readiness<'a> {
    fn new(state: &'a AppState) -> Self {
        Self {
            state,
            held: HashMap::new(),
        }
    }

    /// Whether the version a row's work needs is in this site's library (a package owned
    /// above arrives from the parent some time after its metadata). Removals need nothing.
    async fn content_here(&mut self, row: &PackageDpRow) -> bool {
        let work = row.dp_state().and_then(dpstate::work_for);
        let version = match work {
            None | Some(Work::Remove) => return true,
            Some(Work::Validate) if row.installed_version > 0 => row.installed_version,
            Some(_) => row.target_version,
        };
        let (Ok(package), Ok(version)) = (row.package_id.parse(), u32::try_from(version)) else {
            return true; // build_job reports it
        };
        let content = ContentId { package, version };
        if let Some(&h) = self.held.get(&content) {
            return h;
        }
        let lib = self.state.library.clone();
        let h = matches!(
            tokio::task::spawn_blocking(move || lib.manifest_id(content)).await,
            Ok(Ok(Some(_)))
        );
        self.held.insert(content, h);
        h
    }
}

/// Whether a pull DP's job can start: only an install needs a source holding the version
/// (installed there); until one does, the job waits, as ConfigMgr's does.
fn pull_source_ready(item: &pkgdist_db::WorkItem) -> bool {
    let work = item.row.dp_state().and_then(dpstate::work_for);
    work != Some(Work::Install) || item.source_ready()
}

fn lease(row: &PackageDpRow, owner: &Owner, secs: u64) -> Lease {
    Lease {
        package_id: row.package_id.clone(),
        nal_path: row.nal_path.clone(),
        job_seq: row.job_seq,
        state: row.state,
        attempts: row.attempts,
        owner: owner.id.clone(),
        until: later(secs),
    }
}

/// The time `secs` from now, in the database's format.
fn later(secs: u64) -> String {
    let now = jiff::Timestamp::now();
    let at = jiff::SignedDuration::try_from(Duration::from_secs(secs))
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(jiff::Timestamp::MAX);
    crate::stamp(at)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn job_id(row: &PackageDpRow) -> String {
    format!("{}-{}-{}", row.package_id, row.job_key, row.job_seq)
}

/// One job, start to end.
async fn work(state: &AppState, clients: &DpClients, row: PackageDpRow, lease: Lease) {
    let give_back = || async {
        if let Err(e) = state.db.release(&lease).await {
            tracing::warn!(error = %e, "cannot give a lease back; it expires by itself");
        }
    };
    let dp = match state.db.dp(&row.nal_path).await {
        Ok(Some(dp)) => dp,
        Ok(None) => return give_back().await, // the DP is gone: its rows went with it
        Err(e) => {
            tracing::error!(error = %e, "cannot read the DP's row; the job waits");
            return give_back().await;
        }
    };
    let (Some(url), Some(cred)) = (dp.url.clone(), dp.credential_hash.clone()) else {
        return give_back().await; // not enrolled (any more): the work waits for it
    };
    let Some(work) = u32::try_from(row.state)
        .ok()
        .and_then(DpState::from_code)
        .and_then(dpstate::work_for)
    else {
        return give_back().await;
    };
    let version = if work == Work::Validate && row.installed_version > 0 {
        row.installed_version
    } else {
        row.target_version
    };
    let started = Instant::now();
    let http = clients.for_dp(&dp);
    let result = match build_job(state, &row, &dp, work, version).await {
        Ok(job) => {
            let node = NodeCall {
                http: &http,
                url: url.trim_end_matches('/').to_owned(),
                token: state.site_token(&cred),
            };
            follow(state, &node, &lease, job).await
        }
        Err(e) => Err(e),
    };
    let done = Done {
        state,
        row: &row,
        dp: &dp,
        lease: &lease,
        work,
        version,
    };
    // A validation that found damage and then failed (to repair it) still found it.
    let damage_left = matches!(&result, Ok(Some(s)) if s.state != JobState::Succeeded
        && work == Work::Validate && !s.damaged.is_empty());
    let (outcome, status) = match result {
        Ok(None) => return, // superseded or taken over: the row has moved on
        Ok(Some(s)) if s.state == JobState::Succeeded => {
            if work == Work::Install && s.bytes_received >= 1 << 20 {
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let kbps = (s.bytes_received as f64 / 1024.0 / secs) as i64;
                if let Err(e) = state.db.record_throughput(&row.nal_path, kbps).await {
                    tracing::warn!(error = %e, "cannot record the DP's throughput");
                }
            }
            succeeded(&done, &s)
        }
        Ok(Some(s)) => {
            // A validation that found damage and then failed to repair it still found it.
            let damage_found = work == Work::Validate && !s.damaged.is_empty();
            let why = if damage_found {
                format!("{} ({})", s.message, damaged_list(&s.damaged))
            } else {
                s.message.clone()
            };
            failed(&done, &why, damage_found)
        }
        Err(why) => failed(&done, &why.to_string(), false),
    };
    match state.db.finish_job(&outcome, &status).await {
        Ok(true) => {
            tracing::info!(state = outcome.state, message = %outcome.message, "job finished");
            count(state, work, &status, outcome.next_attempt_at.is_some(), damage_left);
        }
        Ok(false) => tracing::info!("job finished, but the DP's row has moved on; its result is dropped"),
        Err(e) => tracing::error!(error = %e, "cannot record a job's result; it runs again once the lease expires"),
    }
}

/// Counts a recorded outcome in the site's metrics, by the status message it wrote. A job
/// succeeded when its row reached its goal: a validation that found damage and left it failed.
fn count(state: &AppState, work: Work, status: &NewStatus, retry: bool, damage_left: bool) {
    use crate::metrics::{Outcome as Ended, Validation};
    let m = &state.metrics;
    let ok = matches!(
        status.message_id,
        message_id::INSTALLED | message_id::REMOVED | message_id::VALIDATED | message_id::REPAIRED
    );
    m.job_ended(work, if ok { Ended::succeeded } else { Ended::failed }, retry);
    match status.message_id {
        message_id::VALIDATED => m.validated(Validation::passed),
        message_id::DAMAGED => m.validated(Validation::damaged),
        _ if damage_left => m.validated(Validation::damaged),
        message_id::REPAIRED => m.validated(Validation::repaired),
        _ => {}
    }
}

/// Why a job could not be sent, or did not end: what the row's status message says.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("the row names a malformed package ID: {0}")]
    BadPackageId(#[from] pkgdist_core::IdError),
    #[error("the site's content library cannot be read: {0}")]
    Library(#[from] pkgdist_content::ContentError),
    #[error("{0} is not in the site's content library; refresh the package source")]
    NotInLibrary(ContentId),
    #[error("pull DP {0} has no source DP that is enrolled; set its SourceDistributionPoints")]
    NoPullSource(String),
    #[error("the site database cannot be read or written: {0}")]
    Db(#[from] pkgdist_db::DbError),
    #[error("a worker thread failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// What the system or TLS said (a refused connection, a certificate that is not the DP's),
    /// not reqwest's wrapping.
    #[error("cannot reach the DP at {url}: {}", pkgdist_proto::client::root_cause(source))]
    Unreachable { url: String, source: reqwest::Error },
    #[error("the DP answered HTTP {status}: {text}")]
    Status { status: u16, text: String },
    #[error("the DP's answer cannot be read: {0}")]
    Answer(reqwest::Error),
}

async fn build_job(
    state: &AppState,
    row: &PackageDpRow,
    dp: &DpRow,
    work: Work,
    version: i64,
) -> Result<Job, JobError> {
    let package = row.package_id.parse()?;
    let content = ContentId {
        package,
        version: u32::try_from(version).unwrap_or(0),
    };
    let manifest_hash = if work == Work::Remove {
        None
    } else {
        let lib = state.library.clone();
        let found = tokio::task::spawn_blocking(move || lib.manifest_id(content)).await??;
        Some(found.ok_or(JobError::NotInLibrary(content))?)
    };
    let (kind, repair) = match work {
        Work::Install => (JobKind::Install, row.redistributes()),
        Work::Validate => (JobKind::Validate, dp.repairs_damaged()),
        Work::Remove => (JobKind::Remove, false),
    };
    Ok(Job {
        id: job_id(row),
        kind,
        content: content.to_string(),
        manifest_hash,
        // Empty for a standard DP: its own site, its only source.
        sources: pull_sources(state, dp).await?,
        repair,
    })
}

/// A pull DP's sources, in the order to try them: lowest rank first, equal ranks shuffled so
/// the load spreads. Empty for a standard DP.
async fn pull_sources(state: &AppState, dp: &DpRow) -> Result<Vec<String>, JobError> {
    if !dp.pulls() {
        return Ok(Vec::new());
    }
    let sources = state.db.pull_sources_of(&dp.nal_path).await?;
    let mut ranked = Vec::new();
    for s in &sources {
        if let Some(url) = state.db.dp(&s.source_nal).await?.and_then(|d| d.url) {
            ranked.push((s.rank, rand::random::<u32>(), url.trim_end_matches('/').to_owned()));
        }
    }
    if ranked.is_empty() {
        return Err(JobError::NoPullSource(dp.name.clone()));
    }
    ranked.sort();
    Ok(ranked.into_iter().map(|(_, _, url)| url).collect())
}

/// Consecutive failed status polls (with growing pauses) before an attempt counts as failed.
const POLL_MISSES: u32 = 5;

struct NodeCall<'a> {
    http: &'a reqwest::Client,
    url: String,
    token: String,
}

impl NodeCall<'_> {
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<JobStatus, JobError> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| JobError::Unreachable {
                url: self.url.clone(),
                source,
            })?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(JobError::Status {
                status: status.as_u16(),
                text: text.trim().to_owned(),
            });
        }
        resp.json::<JobStatus>().await.map_err(JobError::Answer)
    }
}

/// What a row with a job running says meanwhile (its LastMessage): not "queued", but what the
/// DP is doing, with its progress.
fn running_message(kind: JobKind, s: &JobStatus) -> String {
    match kind {
        JobKind::Install if s.chunks_total == 0 => "transferring: the DP is working out what it lacks".to_owned(),
        JobKind::Install => format!(
            "transferring: the DP holds {} of {} chunks, {} bytes received for this version",
            s.chunks_received.saturating_add(s.chunks_present),
            s.chunks_total,
            s.bytes_received
        ),
        JobKind::Validate => "validating: the DP is re-hashing the content it holds".to_owned(),
        JobKind::Remove => "removing: the DP is dropping the content".to_owned(),
    }
}

/// Sends the job and polls it to its end, renewing the lease and recording progress at each
/// poll. `Ok(None)` when the row moved on meanwhile (the job is then cancelled on the DP) or
/// another worker took the job over.
async fn follow(state: &AppState, node: &NodeCall<'_>, lease: &Lease, job: Job) -> Result<Option<JobStatus>, JobError> {
    let mut status = node
        .send(node.http.post(format!("{}{JOBS_PATH}", node.url)).json(&job))
        .await?;
    let d = state.dist();
    let poll = Duration::from_millis(d.poll_ms);
    let status_url = format!("{}{JOBS_PATH}/{}", node.url, job.id);
    let mut misses = 0;
    while !status.state.is_terminal() {
        tokio::time::sleep(poll * (1 + misses)).await;
        let renewed = Lease {
            until: later(d.lease_secs),
            ..lease.clone()
        };
        let progress = Progress {
            bytes: i64::try_from(status.bytes_received).unwrap_or(i64::MAX),
            done: i64::try_from(status.chunks_received.saturating_add(status.chunks_present)).unwrap_or(i64::MAX),
            total: i64::try_from(status.chunks_total).unwrap_or(i64::MAX),
        };
        match state
            .db
            .renew(&renewed, progress, &running_message(job.kind, &status))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                let moved_on = !matches!(
                    state.db.package_dp(&lease.package_id, &lease.nal_path).await,
                    Ok(Some(r)) if r.job_seq == lease.job_seq
                );
                if moved_on {
                    // Cancelled, retargeted or removed: stop the DP's work on the old job.
                    match node.http.delete(&status_url).bearer_auth(&node.token).send().await {
                        Ok(_) => tracing::info!("the row moved on; the DP's job is cancelled"),
                        Err(e) => tracing::warn!(error = %e, "the row moved on, but the DP could not be told to stop"),
                    }
                } else {
                    tracing::warn!("another worker took this job over; leaving it to them");
                }
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
        // The job runs on without us: a DP restarting or a blip on the network is not a failed
        // attempt unless it lasts.
        match node.send(node.http.get(&status_url)).await {
            Ok(s) => {
                status = s;
                misses = 0;
            }
            Err(e) if misses >= POLL_MISSES => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "job status unavailable; asking again");
                misses += 1;
            }
        }
    }
    Ok(Some(status))
}

fn status(row: &PackageDpRow, dp: &DpRow, id: i64, st: MessageState, text: String, bytes: u64) -> NewStatus {
    crate::ops::rows::dp_status(&row.package_id, dp, id, st, text, bytes, &now())
}

/// A job that has ended, with what is needed to record its outcome.
#[derive(Clone, Copy)]
struct Done<'a> {
    state: &'a AppState,
    row: &'a PackageDpRow,
    dp: &'a DpRow,
    lease: &'a Lease,
    work: Work,
    version: i64,
}

/// The row after a job, as the state machine has it, with `message`.
fn outcome(job: &Done<'_>, result: Outcome, message: &str) -> (JobOutcome, dpstate::After) {
    let Done {
        state,
        row,
        lease,
        work,
        version,
        ..
    } = *job;
    let d = state.dist();
    let as_u32 = |v: i64| u32::try_from(v).unwrap_or(0);
    let after = dpstate::on_outcome(
        work,
        as_u32(version),
        RowState {
            installed_version: as_u32(row.installed_version),
            target_version: as_u32(row.target_version),
            attempts: as_u32(row.attempts),
            repair_pending: row.redistributes(),
        },
        result,
        d.retry_count,
    );
    let o = JobOutcome {
        package_id: row.package_id.clone(),
        nal_path: row.nal_path.clone(),
        job_seq: row.job_seq,
        state: i64::from(after.state.code()),
        installed_version: after.installed_version.map(i64::from),
        attempts: i64::from(after.attempts),
        next_attempt_at: after.retry.then(|| later(d.retry_delay_secs)),
        remove_row: after.remove_row,
        needs_repair: after.needs_repair,
        lease_owner: lease.owner.clone(),
        time: now(),
        message: message.to_owned(),
    };
    (o, after)
}

fn succeeded(job: &Done<'_>, s: &JobStatus) -> (JobOutcome, NewStatus) {
    let Done {
        row, dp, work, version, ..
    } = *job;
    let content = format!("{}.{version}", row.package_id);
    let result = Outcome::Succeeded {
        damaged: !s.damaged.is_empty(),
        repaired: s.repaired,
    };
    let (text, id, st, bytes) = match work {
        Work::Install => (
            format!(
                "{content} installed: {} of {} chunks fetched ({} bytes received), {} already present",
                s.chunks_received, s.chunks_total, s.bytes_received, s.chunks_present
            ),
            message_id::INSTALLED,
            MessageState::Success,
            s.bytes_received,
        ),
        Work::Remove => (
            format!("{} removed from the DP", row.package_id),
            message_id::REMOVED,
            MessageState::Success,
            0,
        ),
        Work::Validate if s.damaged.is_empty() => (
            format!("{content} validated: every file matches its hash"),
            message_id::VALIDATED,
            MessageState::Success,
            0,
        ),
        Work::Validate if s.repaired => (
            format!(
                "{content} failed validation: {}. The DP repaired them from its sources and verified the whole version again (RepairDamagedContent is on); {} bytes received",
                damaged_list(&s.damaged),
                s.bytes_received
            ),
            message_id::REPAIRED,
            MessageState::Success,
            s.bytes_received,
        ),
        Work::Validate => (
            format!(
                "{content} failed validation: {}. The DP only reports damage (RepairDamagedContent is off): to repair it, `pkgdist package distribute {} {}` (RefreshNow) or ReDistributePackage on its group",
                damaged_list(&s.damaged),
                row.package_id,
                dp.name
            ),
            message_id::DAMAGED,
            MessageState::Error,
            0,
        ),
    };
    let (o, after) = outcome(job, result, &text);
    if work == Work::Validate && after.state != DpState::Installed && !s.damaged.is_empty() {
        tracing::warn!(%text, "validation found damage");
    }
    (o, status(row, dp, id, st, text, bytes))
}

fn damaged_list(files: &[String]) -> String {
    let shown: Vec<&str> = files.iter().take(20).map(String::as_str).collect();
    let more = files.len().saturating_sub(shown.len());
    format!(
        "{} damaged or missing file(s): {}{}",
        files.len(),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

fn failed(job: &Done<'_>, why: &str, damage_found: bool) -> (JobOutcome, NewStatus) {
    let Done {
        state,
        row,
        dp,
        work,
        version,
        ..
    } = *job;
    let what = match work {
        Work::Install => format!("sending {}.{version}", row.package_id),
        Work::Validate => format!("validating {}.{version}", row.package_id),
        Work::Remove => format!("removing {}", row.package_id),
    };
    let (mut o, after) = outcome(job, Outcome::Failed { damage_found }, "");
    let attempt = row.attempts.saturating_add(1);
    let left = i64::from(state.dist().retry_count).saturating_sub(attempt);
    let text = match &o.next_attempt_at {
        Some(at) => format!("attempt {attempt} at {what} failed: {why}. {left} retries left; next at {at}"),
        // A validation that never ran leaves the content as it was.
        None if work == Work::Validate && after.state != DpState::InstallFailed => format!(
            "attempt {attempt} at {what} failed: {why}. No retries left: the validation did not run and the content stays as it was ({})",
            after.state.name()
        ),
        None if work == Work::Remove => format!(
            "attempt {attempt} at {what} failed: {why}. No retries left ({}): fix the cause, then remove it again: `pkgdist package remove {} {}`",
            after.state.name(),
            row.package_id,
            dp.name
        ),
        None => format!(
            "attempt {attempt} at {what} failed: {why}. No retries left ({}): fix the cause, then send it again: `pkgdist package distribute {} {}` (RefreshNow) or ReDistributePackage on its group",
            after.state.name(),
            row.package_id,
            dp.name
        ),
    };
    tracing::warn!(%text, "job failed");
    o.message.clone_from(&text);
    (o, status(row, dp, message_id::FAILED, MessageState::Error, text, 0))
}
