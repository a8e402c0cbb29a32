//! Scheduled work: packages whose RefreshSchedule has come due are refreshed (and do nothing
//! but record a status message when their source has not changed); DPs whose
//! ValidationSchedule has come due re-hash the content they hold.
//!
//! Each package remembers until when its schedule has been handled (`schedule_checked_at`), so
//! occurrences missed while the site was down are caught up once, at the first tick after
//! start-up, and none is handled twice. The clock is a parameter: tests tick at any instant.

use std::time::Duration;
use tracing::Instrument;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use pkgdist_core::schedule;

use pkgdist_core::classes::DpState;

use crate::ops::packages::{self, Trigger};
use crate::ops::rows::set_state_if;
use crate::state::AppState;

/// How often the scheduler looks for due work.
pub const TICK: Duration = Duration::from_secs(30);
/// Status messages are kept this long (ConfigMgr's status message retention is of this order)…
const STATUS_RETENTION: jiff::SignedDuration = jiff::SignedDuration::from_hours(30 * 24);
/// …and never more than this many per site (the top holds every site's), so a busy
/// hierarchy's database stays bounded.
const STATUS_MAX: i64 = 100_000;
/// How long audit messages are kept: ConfigMgr's default for audit messages (180 days).
const AUDIT_RETENTION: jiff::SignedDuration = jiff::SignedDuration::from_hours(180 * 24);

/// What a tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    pub refreshed: Vec<String>,
    pub unchanged: Vec<String>,
    pub failed: Vec<String>,
    /// Names of the DPs whose scheduled validation was started.
    pub validated: Vec<String>,
}

/// Handles every schedule occurrence up to `now` (in the site's time zone for local tokens),
/// and applies the status message retention.
pub async fn tick(state: &AppState, now: Timestamp, zone: &TimeZone) -> TickReport {
    let mut report = TickReport::default();
    if let Ok(cutoff) = now.checked_sub(STATUS_RETENTION) {
        let cutoff = crate::stamp(cutoff);
        if let Err(e) = state.db.prune_statuses(&cutoff, STATUS_MAX).await {
            tracing::warn!(error = %e, "scheduler: cannot prune old status messages");
        }
    }
    if let Ok(cutoff) = now.checked_sub(AUDIT_RETENTION)
        && let Err(e) = state.db.prune_audit(&crate::stamp(cutoff)).await
    {
        tracing::warn!(error = %e, "scheduler: cannot prune old audit messages");
    }
    let packages = match state.db.scheduled_packages().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "scheduler: cannot read packages");
            return report;
        }
    };
    for p in &packages {
        let since = p.schedule_checked_at.as_deref().or(Some(p.created_at.as_str()));
        if !due(&p.refresh_schedule, since, now, zone) {
            continue;
        }
        let span = tracing::info_span!("scheduled refresh", package = %p.package_id);
        match packages::refresh(state, &p.package_id, Trigger::Schedule)
            .instrument(span)
            .await
        {
            Ok(r) if r.unchanged => report.unchanged.push(p.package_id.clone()),
            Ok(_) => report.refreshed.push(p.package_id.clone()),
            Err(e) => {
                tracing::warn!(package = %p.package_id, error = %e, "scheduled refresh failed; it is tried again at the next occurrence");
                report.failed.push(p.package_id.clone());
            }
        }
        // Handled (even if it failed: a failure is reported, and the next occurrence retries).
        let stamp = crate::stamp(now);
        if let Err(e) = state.db.set_schedule_checked(&p.package_id, &stamp).await {
            tracing::warn!(error = %e, "scheduler: cannot record progress");
        }
    }
    validations(state, now, zone, &mut report).await;
    report
}

/// Whether an interval string has an occurrence after `since` and at or before `now`.
fn due(text: &str, since: Option<&str>, now: Timestamp, zone: &TimeZone) -> bool {
    let Ok(tokens) = schedule::read_from_string(text) else {
        return false;
    };
    let Some(since) = since.and_then(|t| t.parse::<Timestamp>().ok()) else {
        return false;
    };
    schedule::next_after(&tokens, since, zone).is_some_and(|next| next <= now)
}

/// Starts the validations of DPs whose ValidationSchedule has come due: every package
/// INSTALLED there goes to CONTENT_MONITORING, and the distribution manager sends the jobs.
async fn validations(state: &AppState, now: Timestamp, zone: &TimeZone, report: &mut TickReport) {
    let dps = match state.db.validated_dps().await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "scheduler: cannot read DPs");
            return;
        }
    };
    for d in &dps {
        let since = d.validation_checked_at.as_deref().or(Some(d.created_at.as_str()));
        if !due(&d.validation_schedule, since, now, zone) {
            continue;
        }
        let rows = match state.db.dp_rows(&d.nal_path).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(dp = %d.name, error = %e, "scheduler: cannot read the DP's packages");
                continue;
            }
        };
        let targets: Vec<(String, String, i64)> = rows
            .into_iter()
            .filter(|r| r.dp_state() == Some(DpState::Installed))
            .map(|r| (r.package_id, r.nal_path, r.job_seq))
            .collect();
        let mut started = 0;
        let why = "scheduled validation (ValidationSchedule): the DP will re-hash the content";
        // One row at a time, each only if it is still at the job it was read at: a removal or
        // a new version landing meanwhile wins.
        for t in &targets {
            match set_state_if(state, std::slice::from_ref(t), DpState::ContentMonitoring, why).await {
                Ok(true) => started += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(dp = %d.name, error = %e, "scheduled validation could not start"),
            }
        }
        if started > 0 {
            tracing::info!(dp = %d.name, packages = started, "scheduled validation started");
            report.validated.push(d.name.clone());
            state.work.notify_one();
        }
        let stamp = crate::stamp(now);
        if let Err(e) = state.db.set_validation_checked(&d.nal_path, &stamp).await {
            tracing::warn!(error = %e, "scheduler: cannot record progress");
        }
    }
}

/// Ticks every [`TICK`] until the task is dropped; the first tick runs at once, catching up
/// on occurrences missed while the site was down.
pub async fn run(state: AppState) {
    let zone = TimeZone::system();
    let mut optimized: Option<std::time::Instant> = None;
    // When removals were last forgotten, and the change number then.
    let mut forgot: Option<(std::time::Instant, i64)> = None;
    loop {
        if optimized.is_none_or(|t| t.elapsed() >= OPTIMIZE_EVERY) {
            match state.db.optimize().await {
                Ok(()) => optimized = Some(std::time::Instant::now()),
                // Tried again at the next tick.
                Err(e) => tracing::warn!(error = %e, "scheduler: cannot refresh the database's statistics"),
            }
        }
        if forgot.is_none_or(|(t, _)| t.elapsed() >= FORGET_REMOVALS_EVERY) {
            forgot = forget_removals(&state, forgot.map(|(_, mark)| mark)).await;
        }
        tick(&state, Timestamp::now(), &zone).await;
        tokio::time::sleep(TICK).await;
    }
}

/// Row removals are numbered for the site link (migration 0007) and kept this long at least:
/// each round forgets those numbered before the previous round. A link that has not reported
/// for longer sends its rows whole.
const FORGET_REMOVALS_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Forgets the removals numbered up to `previous` (the mark of the round before), and returns
/// this round's time and mark; on failure, the old ones, to try again at the next tick.
async fn forget_removals(state: &AppState, previous: Option<i64>) -> Option<(std::time::Instant, i64)> {
    let mark = match state.db.change_seq().await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "scheduler: cannot read the change number");
            return None;
        }
    };
    if let Some(upto) = previous
        && let Err(e) = state.db.prune_row_removals(upto).await
    {
        tracing::warn!(error = %e, "scheduler: cannot forget old row removals");
        return None;
    }
    Some((std::time::Instant::now(), mark))
}

/// How often the database's planner statistics are refreshed (`Db::optimize`).
const OPTIMIZE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
