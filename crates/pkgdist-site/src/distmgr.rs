//! The distribution manager: turns package-on-DP rows that need work into jobs on the DPs,
//! follows them, and records what came of them.
//!
//! The database is the queue. A row in INSTALL_PENDING, CONTENT_UPDATING, CONTENT_MONITORING or
//! REMOVAL_PENDING, or a *_RETRYING row whose retry time has come, gets one job. The job is
//! named after the row's `job_seq` (`<PackageID>-<job_seq>`), which every retarget or state
//! change bumps; the DP treats a job ID it knows as the same job, so a site restarted in the
//! middle re-sends the job and simply picks up its progress — nothing is transferred twice.
//! The outcome is written only if the row is still at that job (see `Db::finish_job`), so a
//! refresh or a cancel landing meanwhile wins over a late answer.
//!
//! Failures (DP down, source error, damage) count an attempt: INSTALL_RETRYING with the next
//! retry time, and INSTALL_FAILED once `retry-count` attempts are spent.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pkgdist_core::ContentId;
use pkgdist_core::classes::{DpState, MessageState};
use pkgdist_db::{DpRow, JobOutcome, NewStatus, PackageDpRow};
use pkgdist_proto::node::{JOBS_PATH, Job, JobKind, JobState, JobStatus};
use tokio::sync::Semaphore;
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
}

/// Runs until the process ends.
pub async fn run(state: AppState) {
    let busy: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(state.distribution.max_parallel_jobs));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default();
    loop {
        match state.db.finish_unenrolled_removals().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "removals from DPs that never enrolled: nothing to remove, done"),
            Err(e) => tracing::error!(error = %e, "cannot finish removals from unenrolled DPs"),
        }
        match state.db.due_work(&now()).await {
            Ok(rows) => {
                for row in rows {
                    let key = (row.package_id.clone(), row.nal_path.clone());
                    if !lock(&busy).insert(key.clone()) {
                        continue;
                    }
                    let (state, busy, permits, http) = (state.clone(), busy.clone(), permits.clone(), http.clone());
                    let span =
                        tracing::info_span!("job", package = %row.package_id, dp = %row.nal_path, seq = row.job_seq);
                    tokio::spawn(
                        async move {
                            if let Ok(_permit) = permits.acquire().await {
                                work(&state, &http, row).await;
                            }
                            lock(&busy).remove(&key);
                            state.work.notify_one();
                        }
                        .instrument(span),
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the distribution queue"),
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), state.work.notified()).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn job_id(row: &PackageDpRow) -> String {
    format!("{}-{}-{}", row.package_id, row.job_key, row.job_seq)
}

/// One job, start to end.
async fn work(state: &AppState, http: &reqwest::Client, queued: PackageDpRow) {
    // The row may have moved on while the job waited for a permit: work from what it is now.
    let row = match state.db.package_dp(&queued.package_id, &queued.nal_path).await {
        Ok(Some(r)) if r.job_seq == queued.job_seq => r,
        _ => return,
    };
    let Ok(Some(dp)) = state.db.dp(&row.nal_path).await else {
        return;
    };
    let (Some(url), Some(cred)) = (dp.url.clone(), dp.credential_hash.clone()) else {
        // Not enrolled yet: the work waits for it (enrollment wakes the manager).
        return;
    };
    let kind = match DpState::from_code(u32::try_from(row.state).unwrap_or(u32::MAX)) {
        Some(DpState::RemovalPending | DpState::RemovalRetrying) => JobKind::Remove,
        Some(DpState::ContentMonitoring) => JobKind::Validate,
        _ => JobKind::Install,
    };
    let version = if kind == JobKind::Validate && row.installed_version > 0 {
        row.installed_version
    } else {
        row.target_version
    };
    let result = match build_job(state, &row, kind, version).await {
        Ok(job) => {
            let node = NodeCall {
                http,
                url: url.trim_end_matches('/').to_owned(),
                token: state.site_token(&cred),
            };
            follow(state, &node, &row, job).await
        }
        Err(e) => Err(e),
    };
    let outcome = match result {
        Ok(None) => return, // superseded: the row has moved on
        Ok(Some(status)) if status.state == JobState::Succeeded => succeeded(&row, &dp, kind, version, &status),
        Ok(Some(status)) => failed(state, &row, &dp, kind, &status.message),
        Err(why) => failed(state, &row, &dp, kind, &why),
    };
    match state.db.finish_job(&outcome.0, &outcome.1).await {
        Ok(true) => tracing::info!(state = outcome.0.state, message = %outcome.0.message, "job finished"),
        Ok(false) => tracing::info!("job finished, but the DP's row has moved on; its result is dropped"),
        Err(e) => tracing::error!(error = %e, "cannot record a job's result; it will run again"),
    }
}

async fn build_job(state: &AppState, row: &PackageDpRow, kind: JobKind, version: i64) -> Result<Job, String> {
    let package = row.package_id.parse().map_err(|e| format!("{e}"))?;
    let content = ContentId {
        package,
        version: u32::try_from(version).unwrap_or(0),
    };
    let manifest_hash = if kind == JobKind::Remove {
        None
    } else {
        let lib = state.library.clone();
        let found = tokio::task::spawn_blocking(move || lib.manifest_id(content))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("the site's content library cannot be read: {e}"))?;
        Some(
            found
                .ok_or_else(|| format!("{content} is not in the site's content library; refresh the package source"))?,
        )
    };
    Ok(Job {
        id: job_id(row),
        kind,
        content: content.to_string(),
        manifest_hash,
        // Empty: the DP's own site, the only source of a standard DP.
        sources: Vec::new(),
        repair: row.redistribute != 0,
    })
}

/// Consecutive failed status polls (with growing pauses) before an attempt counts as failed.
const POLL_MISSES: u32 = 5;

struct NodeCall<'a> {
    http: &'a reqwest::Client,
    url: String,
    token: String,
}

impl NodeCall<'_> {
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<JobStatus, String> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("cannot reach the DP at {}: {e}", self.url))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("the DP answered HTTP {}: {}", status.as_u16(), text.trim()));
        }
        resp.json::<JobStatus>()
            .await
            .map_err(|e| format!("the DP's answer cannot be read: {e}"))
    }
}

/// Sends the job and polls it to its end. `Ok(None)` when the row moved on meanwhile (the job
/// is then cancelled on the DP).
async fn follow(
    state: &AppState,
    node: &NodeCall<'_>,
    row: &PackageDpRow,
    job: Job,
) -> Result<Option<JobStatus>, String> {
    let mut status = node
        .send(node.http.post(format!("{}{JOBS_PATH}", node.url)).json(&job))
        .await?;
    let poll = Duration::from_millis(state.distribution.poll_ms);
    let status_url = format!("{}{JOBS_PATH}/{}", node.url, job.id);
    let mut misses = 0;
    while !status.state.is_terminal() {
        tokio::time::sleep(poll * (1 + misses)).await;
        match state.db.package_dp(&row.package_id, &row.nal_path).await {
            Ok(Some(now)) if now.job_seq == row.job_seq => {}
            Ok(_) => {
                let _ = node.http.delete(&status_url).bearer_auth(&node.token).send().await;
                return Ok(None);
            }
            Err(e) => return Err(format!("the site database cannot be read: {e}")),
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
    crate::methods::dp_status(&row.package_id, dp, id, st, text, bytes, &now())
}

fn outcome(row: &PackageDpRow, state: DpState, message: &str) -> JobOutcome {
    JobOutcome {
        package_id: row.package_id.clone(),
        nal_path: row.nal_path.clone(),
        job_seq: row.job_seq,
        state: i64::from(state.code()),
        installed_version: None,
        attempts: row.attempts,
        next_attempt_at: None,
        remove_row: false,
        time: now(),
        message: message.to_owned(),
    }
}

fn succeeded(row: &PackageDpRow, dp: &DpRow, kind: JobKind, version: i64, s: &JobStatus) -> (JobOutcome, NewStatus) {
    let content = format!("{}.{version}", row.package_id);
    match kind {
        JobKind::Install => {
            let text = format!(
                "{content} installed: {} of {} chunks fetched ({} bytes received), {} already present",
                s.chunks_received, s.chunks_total, s.bytes_received, s.chunks_present
            );
            let mut o = outcome(row, DpState::Installed, &text);
            o.installed_version = Some(version);
            o.attempts = 0;
            let m = status(
                row,
                dp,
                message_id::INSTALLED,
                MessageState::Success,
                text,
                s.bytes_received,
            );
            (o, m)
        }
        JobKind::Remove => {
            let text = format!("{} removed from the DP", row.package_id);
            let mut o = outcome(row, DpState::RemovalPending, &text);
            o.remove_row = true;
            (o, status(row, dp, message_id::REMOVED, MessageState::Success, text, 0))
        }
        JobKind::Validate if s.damaged.is_empty() => {
            let text = format!("{content} validated: every file matches its hash");
            // A validation of an older version does not make the DP current.
            let next = if row.installed_version == row.target_version {
                DpState::Installed
            } else {
                DpState::InstallPending
            };
            let o = outcome(row, next, &text);
            (
                o,
                status(row, dp, message_id::VALIDATED, MessageState::Success, text, 0),
            )
        }
        JobKind::Validate => {
            let shown: Vec<&str> = s.damaged.iter().take(20).map(String::as_str).collect();
            let more = s.damaged.len().saturating_sub(shown.len());
            let text = format!(
                "{content} failed validation: {} damaged or missing file(s): {}{}. Run ReDistributePackage to repair it",
                s.damaged.len(),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
            let o = outcome(row, DpState::InstallFailed, &text);
            (o, status(row, dp, message_id::DAMAGED, MessageState::Error, text, 0))
        }
    }
}

fn failed(state: &AppState, row: &PackageDpRow, dp: &DpRow, kind: JobKind, why: &str) -> (JobOutcome, NewStatus) {
    let d = &state.distribution;
    let attempts = row.attempts + 1;
    let left = i64::from(d.retry_count) - attempts;
    let removing = kind == JobKind::Remove;
    let (text, st, next) = if left > 0 {
        let at = jiff::Timestamp::now()
            + jiff::SignedDuration::from_secs(i64::try_from(d.retry_delay_secs).unwrap_or(i64::MAX / 2));
        let at = at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        // A retry repeats the same job: a validation stays a validation.
        let st = match kind {
            JobKind::Remove => DpState::RemovalRetrying,
            JobKind::Validate => DpState::ContentMonitoring,
            JobKind::Install => DpState::InstallRetrying,
        };
        (
            format!("attempt {attempts} failed: {why}. {left} retries left; next at {at}"),
            st,
            Some(at),
        )
    } else {
        let st = if removing {
            DpState::RemovalFailed
        } else {
            DpState::InstallFailed
        };
        (
            format!("attempt {attempts} failed: {why}. No retries left; fix the cause, then ReDistributePackage"),
            st,
            None,
        )
    };
    tracing::warn!(%text, "job failed");
    let mut o = outcome(row, st, &text);
    o.attempts = attempts;
    o.next_attempt_at = next;
    let m = status(row, dp, message_id::FAILED, MessageState::Error, text, 0);
    (o, m)
}
