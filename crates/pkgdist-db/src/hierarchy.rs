//! The site hierarchy's tables: child sites, what they report of everything below them, the
//! administrator's intents that flow down to them, pull DPs' sources, and content replicated
//! from the parent.
//!
//! Intents down, reports up. An administrator's action on a row of a DP below this site is
//! written here like any other (the row's state changes at once, so the API answers as it
//! would for an own DP), and stamped with the next value of the `intent` counter. The child
//! the DP is reached through asks for the intents newer than the last it applied, applies them
//! with its own methods (passing them further down where the DP is below it too), and reports
//! every row of its subtree back. A reported row replaces this site's copy only when the child
//! has applied every intent on that row, so an action never seems undone by a report written
//! before the child saw it.

use std::collections::{HashMap, HashSet};

use sqlx::{Any, Transaction};

use crate::{
    Db, DbError, Intent, PackageDpRow, PackageRow, PullSourceRow, Report, ReportApplied, Result, SiteContentRow,
    SiteRow, conflict,
};

/// The intent a state change by an administrator stands for (see `set_state`).
pub(crate) fn intent_of_state(state: i64) -> Option<Intent> {
    match state {
        1 | 7 => Some(Intent::Target),
        3 => Some(Intent::Cancel),
        4 | 5 => Some(Intent::Remove),
        8 => Some(Intent::Verify),
        _ => None,
    }
}

/// Stamps a row with an intent when its DP is below this site; does nothing for an own DP.
/// The counter is taken inside the writing transaction, so intents commit in the order of
/// their stamps (the counter row stays locked until the commit).
pub(crate) async fn note_intent(
    tx: &mut Transaction<'static, Any>,
    package_id: &str,
    nal_path: &str,
    intent: Intent,
) -> Result<()> {
    let below: Option<(Option<String>,)> =
        sqlx::query_as("SELECT via_site FROM distribution_points WHERE nal_path = $1")
            .bind(nal_path.to_owned())
            .fetch_optional(&mut **tx)
            .await?;
    if !matches!(below, Some((Some(_),))) {
        return Ok(());
    }
    sqlx::query("INSERT INTO counters (name, next_value) VALUES ('intent', 1) ON CONFLICT (name) DO NOTHING")
        .execute(&mut **tx)
        .await?;
    let seq: i64 = sqlx::query_scalar(
        "UPDATE counters SET next_value = next_value + 1 WHERE name = 'intent' RETURNING next_value - 1",
    )
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query("UPDATE package_dps SET intent_seq = $3, intent = $4 WHERE package_id = $1 AND nal_path = $2")
        .bind(package_id.to_owned())
        .bind(nal_path.to_owned())
        .bind(seq)
        .bind(intent.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// One intent for a child site to apply.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IntentRow {
    pub package_id: String,
    pub nal_path: String,
    pub intent: String,
    pub intent_seq: i64,
}

/// The settings key of the change number up to which row removals were forgotten.
const REMOVALS_FORGOTTEN: &str = "row_removals_forgotten";

/// Status messages one report carries up at most; more are not taken.
pub const STATUS_BATCH: usize = 5000;

impl Db {
    // ---- sites ----

    /// Registers a child site (with its one-time enrollment token's hash).
    pub async fn insert_site(&self, s: &SiteRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO sites (site_code, site_name, parent_code, via_site, url, enrollment_token_hash,
                credential_hash, rate_bytes_per_sec, applied_seq, last_report_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(s.site_code.clone())
        .bind(s.site_name.clone())
        .bind(s.parent_code.clone())
        .bind(s.via_site.clone())
        .bind(s.url.clone())
        .bind(s.enrollment_token_hash.clone())
        .bind(s.credential_hash.clone())
        .bind(s.rate_bytes_per_sec)
        .bind(s.applied_seq)
        .bind(s.last_report_at.clone())
        .bind(s.created_at.clone())
        .execute(&self.pool)
        .await
        .map_err(conflict(format!("site code {}", s.site_code)))?;
        Ok(())
    }

    pub async fn sites(&self) -> Result<Vec<SiteRow>> {
        Ok(sqlx::query_as("SELECT * FROM sites ORDER BY site_code")
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn site(&self, code: &str) -> Result<Option<SiteRow>> {
        Ok(sqlx::query_as("SELECT * FROM sites WHERE site_code = $1")
            .bind(code.to_owned())
            .fetch_optional(&self.pool)
            .await?)
    }

    /// A child's enrollment: binds `credential_hash` and the fingerprint of the certificate
    /// issued to it (`None`: enrolled over http) to the child registered with the token hashing
    /// to `token_hash`, consuming the token. Retried with the same credential, it answers
    /// again, unless the child was issued a certificate: then whoever holds only the credential
    /// could drop the certificate requirement, and the child is registered again instead.
    pub async fn enroll_site(
        &self,
        token_hash: &str,
        credential_hash: &str,
        url: &str,
        cert_sha256: Option<&str>,
    ) -> Result<Option<SiteRow>> {
        let mut tx = self.begin().await?;
        let found: Option<SiteRow> = sqlx::query_as(
            "SELECT * FROM sites WHERE site_code = via_site
               AND (enrollment_token_hash = $1 OR (credential_hash = $2 AND cert_sha256 IS NULL))",
        )
        .bind(token_hash.to_owned())
        .bind(credential_hash.to_owned())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(mut s) = found else {
            return Ok(None);
        };
        // The rule is checked again as the token is consumed: of two enrollments racing with
        // the same token, one wins.
        let r = sqlx::query(
            "UPDATE sites SET enrollment_token_hash = NULL, credential_hash = $2, url = $3, cert_sha256 = $5
             WHERE site_code = $1
               AND (enrollment_token_hash = $4 OR (credential_hash = $2 AND cert_sha256 IS NULL))",
        )
        .bind(s.site_code.clone())
        .bind(credential_hash.to_owned())
        .bind(url.to_owned())
        .bind(token_hash.to_owned())
        .bind(cert_sha256.map(str::to_owned))
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(None);
        }
        tx.commit().await?;
        s.enrollment_token_hash = None;
        s.credential_hash = Some(credential_hash.to_owned());
        s.url = Some(url.to_owned());
        s.cert_sha256 = cert_sha256.map(str::to_owned);
        Ok(Some(s))
    }

    /// The enrolled child presenting `credential_hash`.
    pub async fn site_by_credential(&self, credential_hash: &str) -> Result<Option<SiteRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM sites WHERE credential_hash = $1 AND site_code = via_site")
                .bind(credential_hash.to_owned())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Sets the most this site sends a child per second (0 unlimited).
    pub async fn set_site_rate(&self, code: &str, bytes_per_sec: i64) -> Result<bool> {
        let r = sqlx::query("UPDATE sites SET rate_bytes_per_sec = $2 WHERE site_code = $1 AND site_code = via_site")
            .bind(code.to_owned())
            .bind(bytes_per_sec)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Removes a child and everything known through it: the sites and DPs below it, their
    /// package rows and group memberships.
    pub async fn delete_site(&self, code: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM distribution_points WHERE via_site = $1")
            .bind(code.to_owned())
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM sites WHERE via_site = $1")
            .bind(code.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    // ---- intents down, reports up ----

    /// The intents on rows of DPs reached through `child` newer than `since`, oldest first.
    pub async fn intents_for(&self, child: &str, since: i64) -> Result<Vec<IntentRow>> {
        Ok(sqlx::query_as(
            "SELECT r.package_id, r.nal_path, r.intent, r.intent_seq FROM package_dps r
                JOIN distribution_points d ON d.nal_path = r.nal_path
             WHERE d.via_site = $1 AND r.intent_seq > $2 AND r.intent_seq > 0 ORDER BY r.intent_seq",
        )
        .bind(child.to_owned())
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Applies `child`'s report in one transaction: the sites and DPs below it replace what
    /// this site knew of them; their rows are replaced (a whole report) or changed and removed
    /// (a report of changes, only onto a copy complete up to its base) — except rows with an
    /// intent the child has not applied yet, which keep this site's state until it has.
    pub async fn apply_report(
        &self,
        child: &str,
        own_code: Option<&str>,
        time: &str,
        report: &Report,
    ) -> Result<ReportApplied> {
        let mut tx = self.begin().await?;
        if let Some(base) = report.base {
            let have: i64 = sqlx::query_scalar("SELECT report_seq FROM sites WHERE site_code = $1")
                .bind(child.to_owned())
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or(-1);
            if have != base {
                return Ok(ReportApplied::Stale { have });
            }
        }
        // A late report (a POST that timed out and landed after a newer one) never moves
        // applied_seq back.
        sqlx::query(
            "UPDATE sites SET applied_seq = CASE WHEN applied_seq > $2 THEN applied_seq ELSE $2 END,
                last_report_at = $3 WHERE site_code = $1",
        )
        .bind(child.to_owned())
        .bind(report.applied_seq)
        .bind(time.to_owned())
        .execute(&mut *tx)
        .await?;
        // Sites below the child. Codes this site knows otherwise (its own, or below another
        // child) are not taken over.
        let others: Vec<(String,)> = sqlx::query_as("SELECT site_code FROM sites WHERE via_site <> $1")
            .bind(child.to_owned())
            .fetch_all(&mut *tx)
            .await?;
        let mut known_here: HashSet<String> = others.into_iter().map(|(c,)| c).collect();
        if let Some(own) = own_code {
            known_here.insert(own.to_owned());
        }
        let mut seen_sites = HashSet::new();
        for s in &report.sites {
            if s.site_code != child && known_here.contains(&s.site_code) {
                tracing::warn!(site = %s.site_code, child, "a site below reports a code this site already knows elsewhere; ignored");
                continue;
            }
            if s.site_code == child {
                if s.default_name {
                    continue; // the name given here stands
                }
                sqlx::query("UPDATE sites SET site_name = $2 WHERE site_code = $1")
                    .bind(child.to_owned())
                    .bind(s.site_name.clone())
                    .execute(&mut *tx)
                    .await?;
                continue;
            }
            seen_sites.insert(s.site_code.clone());
            sqlx::query(
                "INSERT INTO sites (site_code, site_name, parent_code, via_site, url, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (site_code) DO UPDATE SET site_name = excluded.site_name,
                    parent_code = excluded.parent_code, url = excluded.url
                 WHERE sites.via_site = $4",
            )
            .bind(s.site_code.clone())
            .bind(s.site_name.clone())
            .bind(s.parent_code.clone())
            .bind(child.to_owned())
            .bind(s.url.clone())
            .bind(time.to_owned())
            .execute(&mut *tx)
            .await?;
        }
        let known: Vec<(String,)> =
            sqlx::query_as("SELECT site_code FROM sites WHERE via_site = $1 AND site_code <> $1")
                .bind(child.to_owned())
                .fetch_all(&mut *tx)
                .await?;
        for (code,) in known.into_iter().filter(|(c,)| !seen_sites.contains(c)) {
            sqlx::query("DELETE FROM sites WHERE site_code = $1")
                .bind(code)
                .execute(&mut *tx)
                .await?;
        }
        // DPs below the child.
        let mut seen_dps = HashSet::new();
        for d in &report.dps {
            seen_dps.insert(d.nal_path.clone());
            let r = sqlx::query(
                "INSERT INTO distribution_points (nal_path, name, site_code, description, is_pull, created_at, via_site, url,
                    priority, repair_damaged, prestaging, validation_schedule, availability, rate_mode, rate_bytes_per_sec)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                 ON CONFLICT (nal_path) DO UPDATE SET name = excluded.name, site_code = excluded.site_code,
                    description = excluded.description, is_pull = excluded.is_pull, url = excluded.url,
                    priority = excluded.priority, repair_damaged = excluded.repair_damaged,
                    prestaging = excluded.prestaging, validation_schedule = excluded.validation_schedule,
                    availability = excluded.availability, rate_mode = excluded.rate_mode,
                    rate_bytes_per_sec = excluded.rate_bytes_per_sec
                 WHERE distribution_points.via_site = $7",
            )
            .bind(d.nal_path.clone())
            .bind(d.name.clone())
            .bind(d.site_code.clone())
            .bind(d.description.clone())
            .bind(d.is_pull)
            .bind(time.to_owned())
            .bind(child.to_owned())
            .bind(d.url.clone())
            .bind(d.settings.priority)
            .bind(d.settings.repair_damaged)
            .bind(d.settings.prestaging)
            .bind(d.settings.validation_schedule.clone())
            .bind(d.settings.availability.clone())
            .bind(d.settings.rate_mode)
            .bind(d.settings.rate_bytes_per_sec)
            .execute(&mut *tx)
            .await
            .map_err(conflict(format!(
                "distribution point name {:?} (reported by site {child}; DP names must be unique in the hierarchy)",
                d.name
            )))?;
            if r.rows_affected() == 0 {
                return Err(DbError::Conflict(format!(
                    "DP {} (reported by site {child}, but known here as another site's)",
                    d.nal_path
                )));
            }
        }
        let known: Vec<(String,)> = sqlx::query_as("SELECT nal_path FROM distribution_points WHERE via_site = $1")
            .bind(child.to_owned())
            .fetch_all(&mut *tx)
            .await?;
        for (nal,) in known.into_iter().filter(|(n,)| !seen_dps.contains(n)) {
            sqlx::query("DELETE FROM distribution_points WHERE nal_path = $1")
                .bind(nal)
                .execute(&mut *tx)
                .await?;
        }
        // Status messages of the subtree after the mark, about its own DPs only: numbered
        // here as they arrive, the mark moved to the newest, so a report sent again adds none.
        let mark: i64 = sqlx::query_scalar("SELECT status_seq FROM sites WHERE site_code = $1")
            .bind(child.to_owned())
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(0);
        let mut newest = mark;
        let dp_site: HashMap<&str, &str> = report
            .dps
            .iter()
            .map(|d| (d.nal_path.as_str(), d.site_code.as_str()))
            .collect();
        for m in report
            .statuses
            .iter()
            .filter(|m| m.id > mark && seen_dps.contains(&m.nal_path))
            .take(STATUS_BATCH)
        {
            // The DP's site as reported with it, and no time after now (pruned like any).
            let site = dp_site.get(m.nal_path.as_str()).copied().unwrap_or(child);
            let when = if m.time.as_str() > time { time } else { m.time.as_str() };
            let kept = crate::NewStatus {
                package_id: m.package_id.clone(),
                nal_path: m.nal_path.clone(),
                site_code: site.to_owned(),
                message_id: m.message_id,
                message_state: m.message_state,
                severity: m.severity,
                description: m.description.chars().take(4096).collect(),
                bytes_transferred: m.bytes_transferred,
                time: when.to_owned(),
            };
            crate::insert_status(&mut *tx, &kept).await?;
            newest = newest.max(m.id);
        }
        if report.statuses.len() <= STATUS_BATCH
            && let Some(last) = report.statuses.iter().map(|m| m.id).max().filter(|l| *l > newest)
        {
            newest = last; // messages about DPs not reported: skipped, not asked for again
        }
        if newest != mark {
            sqlx::query("UPDATE sites SET status_seq = $2 WHERE site_code = $1")
                .bind(child.to_owned())
                .bind(newest)
                .execute(&mut *tx)
                .await?;
        }
        // Their pull sources, as reported (shown here; the child's site acts on them), among
        // the DPs this report holds.
        sqlx::query(
            "DELETE FROM pull_sources WHERE nal_path IN (SELECT nal_path FROM distribution_points WHERE via_site = $1)",
        )
        .bind(child.to_owned())
        .execute(&mut *tx)
        .await?;
        for d in &report.dps {
            for (source, rank) in d.sources.iter().filter(|(s, _)| seen_dps.contains(s)) {
                sqlx::query("INSERT INTO pull_sources (nal_path, source_nal, rank) VALUES ($1, $2, $3)")
                    .bind(d.nal_path.clone())
                    .bind(source.clone())
                    .bind(*rank)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        // Their rows: each reported one written (looking up only its package's version)…
        let mut versions: HashMap<String, Option<i64>> = HashMap::new();
        for r in &report.rows {
            if !versions.contains_key(&r.package_id) {
                let v: Option<i64> = sqlx::query_scalar("SELECT source_version FROM packages WHERE package_id = $1")
                    .bind(r.package_id.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
                versions.insert(r.package_id.clone(), v);
            }
            let Some(Some(version)) = versions.get(&r.package_id).copied() else {
                continue; // a package this site does not know (created below it)
            };
            if !seen_dps.contains(&r.nal_path) {
                continue;
            }
            // A report from before a new version reached the child keeps this site's state
            // (already at the new version) and takes only what the DP holds.
            sqlx::query(
                "INSERT INTO package_dps (package_id, nal_path, site_code, state, target_version, installed_version,
                    attempts, next_attempt_at, last_copied, summary_date, last_message, job_key, queued_at,
                    progress_bytes, progress_done, progress_total)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $10, $13, $14, $15)
                 ON CONFLICT (package_id, nal_path) DO UPDATE SET
                    state = CASE WHEN excluded.target_version < $16 AND package_dps.target_version >= $16
                        THEN package_dps.state ELSE excluded.state END,
                    target_version = CASE WHEN excluded.target_version < $16 AND package_dps.target_version >= $16
                        THEN package_dps.target_version ELSE excluded.target_version END,
                    installed_version = excluded.installed_version, attempts = excluded.attempts,
                    next_attempt_at = excluded.next_attempt_at, last_copied = excluded.last_copied,
                    summary_date = excluded.summary_date, last_message = excluded.last_message,
                    progress_bytes = excluded.progress_bytes, progress_done = excluded.progress_done,
                    progress_total = excluded.progress_total
                 WHERE package_dps.intent_seq <= $17",
            )
            .bind(r.package_id.clone())
            .bind(r.nal_path.clone())
            .bind(r.site_code.clone())
            .bind(r.state)
            .bind(r.target_version)
            .bind(r.installed_version)
            .bind(r.attempts)
            .bind(r.next_attempt_at.clone())
            .bind(r.last_copied.clone())
            .bind(r.summary_date.clone())
            .bind(r.last_message.clone())
            .bind(uuid::Uuid::new_v4().simple().to_string())
            .bind(r.progress_bytes)
            .bind(r.progress_done)
            .bind(r.progress_total)
            .bind(version)
            .bind(report.applied_seq)
            .execute(&mut *tx)
            .await?;
        }
        // …and rows gone below gone here too: those reported removed, or, in a whole report,
        // those not reported. A row with an intent the child has not applied stays.
        let gone: Vec<(String, String)> = if report.base.is_some() {
            report
                .removed
                .iter()
                .map(|r| (r.package_id.clone(), r.nal_path.clone()))
                .collect()
        } else {
            let seen: HashSet<(&str, &str)> = report
                .rows
                .iter()
                .map(|r| (r.package_id.as_str(), r.nal_path.as_str()))
                .collect();
            let current: Vec<(String, String)> = sqlx::query_as(
                "SELECT r.package_id, r.nal_path FROM package_dps r
                    JOIN distribution_points d ON d.nal_path = r.nal_path WHERE d.via_site = $1",
            )
            .bind(child.to_owned())
            .fetch_all(&mut *tx)
            .await?;
            current
                .into_iter()
                .filter(|(p, n)| !seen.contains(&(p.as_str(), n.as_str())))
                .collect()
        };
        for (p, n) in gone {
            sqlx::query(
                "DELETE FROM package_dps WHERE package_id = $1 AND nal_path = $2 AND intent_seq <= $3
                    AND nal_path IN (SELECT nal_path FROM distribution_points WHERE via_site = $4)",
            )
            .bind(p)
            .bind(n)
            .bind(report.applied_seq)
            .bind(child.to_owned())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE sites SET report_seq = $2 WHERE site_code = $1")
            .bind(child.to_owned())
            .bind(report.seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ReportApplied::Applied)
    }

    // ---- the change feed (migration 0007) ----

    /// The last change number handed out (0: none yet).
    pub async fn change_seq(&self) -> Result<i64> {
        self.counter_last("change").await
    }

    /// The last number of a change to what package metadata carries down the site link.
    pub async fn package_epoch(&self) -> Result<i64> {
        self.counter_last("package_change").await
    }

    async fn counter_last(&self, name: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT next_value - 1 FROM counters WHERE name = $1")
                .bind(name.to_owned())
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    /// The rows written after change `seq`, in change order (through the index on it).
    pub async fn rows_changed_since(&self, seq: i64) -> Result<Vec<PackageDpRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM package_dps WHERE changed_seq > $1 ORDER BY changed_seq")
                .bind(seq)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The rows removed after change `seq` (package, NAL path), in change order.
    pub async fn rows_removed_since(&self, seq: i64) -> Result<Vec<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT package_id, nal_path FROM row_removals WHERE seq > $1 ORDER BY seq")
                .bind(seq)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Forgets removals up to change `seq`, and remembers that it did (only ever moving the
    /// mark forward): a report of changes after a base before the mark would miss them, so
    /// the link sends its rows whole instead ([`Db::removals_forgotten_upto`]).
    pub async fn prune_row_removals(&self, seq: i64) -> Result<u64> {
        let mut tx = self.begin().await?;
        let r = sqlx::query("DELETE FROM row_removals WHERE seq <= $1")
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value
             WHERE CAST(settings.value AS BIGINT) < CAST(excluded.value AS BIGINT)",
        )
        .bind(REMOVALS_FORGOTTEN.to_owned())
        .bind(seq.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    /// The change number up to which removals have been forgotten (0: none).
    pub async fn removals_forgotten_upto(&self) -> Result<i64> {
        Ok(self
            .setting(REMOVALS_FORGOTTEN)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Numbers a row as changed without changing it, so it is reported again; a row that is
    /// not here is numbered as removed. An intent from the parent that changed nothing here
    /// would otherwise leave the parent's copy as the intent set it.
    pub async fn touch_row(&self, package_id: &str, nal_path: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let touched =
            sqlx::query("UPDATE package_dps SET last_message = last_message WHERE package_id = $1 AND nal_path = $2")
                .bind(package_id.to_owned())
                .bind(nal_path.to_owned())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if touched == 0 {
            let seq: i64 = sqlx::query_scalar(
                "UPDATE counters SET next_value = next_value + 1 WHERE name = 'change' RETURNING next_value - 1",
            )
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO row_removals (seq, package_id, nal_path) VALUES ($1, $2, $3)")
                .bind(seq)
                .bind(package_id.to_owned())
                .bind(nal_path.to_owned())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- packages owned above ----

    /// Records the metadata of a package owned by a site above this one. A new package is
    /// inserted at its version; a known one has its descriptive columns updated. Returns the
    /// version this site had (`None` for a new package): a newer version is recorded with
    /// [`Db::record_version`], which retargets the package's DPs.
    pub async fn upsert_package_from_above(&self, p: &PackageRow) -> Result<Option<i64>> {
        let mut tx = self.begin().await?;
        let had: Option<(i64, String)> =
            sqlx::query_as("SELECT source_version, source_site FROM packages WHERE package_id = $1")
                .bind(p.package_id.clone())
                .fetch_optional(&mut *tx)
                .await?;
        match had {
            None => {
                crate::insert_package_in(&mut tx, p).await?;
            }
            Some((_, site)) if site != p.source_site => {
                return Err(DbError::Conflict(format!(
                    "package ID {} (owned by site {site} here, by {} above)",
                    p.package_id, p.source_site
                )));
            }
            Some(_) => {
                sqlx::query(
                    "UPDATE packages SET package_type = $2, name = $3, version = $4, manufacturer = $5, language = $6,
                        description = $7, pkg_flags = $8, priority = $9 WHERE package_id = $1",
                )
                .bind(p.package_id.clone())
                .bind(p.package_type)
                .bind(p.name.clone())
                .bind(p.version.clone())
                .bind(p.manufacturer.clone())
                .bind(p.language.clone())
                .bind(p.description.clone())
                .bind(p.pkg_flags)
                .bind(p.priority)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(had.map(|h| h.0))
    }

    /// Takes a package owned by a site below this one as its child reports it: inserted, or
    /// its metadata and version replaced when they changed (the owner's rows come in reports,
    /// so no version is recorded here). Refused if the ID is owned by another site here.
    /// Answers whether anything changed.
    pub async fn upsert_package_from_below(&self, p: &PackageRow) -> Result<bool> {
        let mut tx = self.begin().await?;
        let had: Option<PackageRow> = sqlx::query_as("SELECT * FROM packages WHERE package_id = $1")
            .bind(p.package_id.clone())
            .fetch_optional(&mut *tx)
            .await?;
        let changed = match had {
            None => {
                crate::insert_package_in(&mut tx, p).await?;
                true
            }
            Some(h) if h.source_site != p.source_site => {
                return Err(DbError::Conflict(format!(
                    "package ID {} (owned by site {} here, by {} below)",
                    p.package_id, h.source_site, p.source_site
                )));
            }
            Some(h) => {
                let same = (
                    h.package_type,
                    &h.name,
                    &h.version,
                    &h.manufacturer,
                    &h.language,
                    &h.description,
                ) == (
                    p.package_type,
                    &p.name,
                    &p.version,
                    &p.manufacturer,
                    &p.language,
                    &p.description,
                ) && (h.pkg_flags, h.priority, h.source_version, h.package_size)
                    == (p.pkg_flags, p.priority, p.source_version, p.package_size)
                    && (&h.source_date, &h.manifest_hash) == (&p.source_date, &p.manifest_hash);
                if !same {
                    sqlx::query(
                        "UPDATE packages SET package_type = $2, name = $3, version = $4, manufacturer = $5,
                            language = $6, description = $7, pkg_flags = $8, priority = $9, source_version = $10,
                            package_size = $11, source_date = $12, manifest_hash = $13
                         WHERE package_id = $1",
                    )
                    .bind(p.package_id.clone())
                    .bind(p.package_type)
                    .bind(p.name.clone())
                    .bind(p.version.clone())
                    .bind(p.manufacturer.clone())
                    .bind(p.language.clone())
                    .bind(p.description.clone())
                    .bind(p.pkg_flags)
                    .bind(p.priority)
                    .bind(p.source_version)
                    .bind(p.package_size)
                    .bind(p.source_date.clone())
                    .bind(p.manifest_hash.clone())
                    .execute(&mut *tx)
                    .await?;
                }
                !same
            }
        };
        tx.commit().await?;
        Ok(changed)
    }

    // ---- pull DPs ----

    pub async fn pull_sources(&self) -> Result<Vec<PullSourceRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM pull_sources ORDER BY nal_path, rank, source_nal")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Whether some package here is owned by site `code` (a site above, when `code` is not one
    /// of this site's), through the owner index.
    pub async fn owns_packages(&self, code: &str) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM packages WHERE source_site = $1 LIMIT 1")
            .bind(code.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    /// Status messages after `after` (by ID), oldest first, at most `limit`: what a report
    /// takes up to the parent.
    pub async fn statuses_after(&self, after: i64, limit: i64) -> Result<Vec<crate::StatusRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM status_messages WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// A pull DP's sources, lowest rank first.
    pub async fn pull_sources_of(&self, nal_path: &str) -> Result<Vec<PullSourceRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM pull_sources WHERE nal_path = $1 ORDER BY rank, source_nal")
                .bind(nal_path.to_owned())
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The pull DPs that `source_nal` is a source of.
    pub async fn pull_dps_of(&self, source_nal: &str) -> Result<Vec<PullSourceRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM pull_sources WHERE source_nal = $1 ORDER BY nal_path")
                .bind(source_nal.to_owned())
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Replaces a pull DP's sources.
    pub async fn set_pull_sources(&self, nal_path: &str, sources: &[PullSourceRow]) -> Result<()> {
        let mut tx = self.begin().await?;
        replace_pull_sources(&mut tx, nal_path, sources).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- content replicated from the parent, or come up from a child ----

    pub async fn site_content(&self) -> Result<Vec<SiteContentRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM site_content ORDER BY package_id, version")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// One version's row, if it has one.
    pub async fn site_content_of(&self, package_id: &str, version: i64) -> Result<Option<SiteContentRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM site_content WHERE package_id = $1 AND version = $2")
                .bind(package_id.to_owned())
                .bind(version)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Packages owned in the subtree of child site `via` whose current version a DP outside
    /// that subtree is targeted with (here, or below another child), and which have not come up
    /// from there yet (no finished `site_content` row): what this site asks `via` to send up.
    /// Through the sites of the subtree and the owner index, so it costs what that subtree
    /// owns, not the package table.
    pub async fn wanted_from_below(&self, via: &str) -> Result<Vec<PackageRow>> {
        Ok(sqlx::query_as(
            "SELECT p.* FROM sites s JOIN packages p ON p.source_site = s.site_code
              WHERE s.via_site = $1 AND p.source_version > 0 AND p.manifest_hash IS NOT NULL AND p.deleting = 0
                AND EXISTS (SELECT 1 FROM package_dps r JOIN distribution_points d ON d.nal_path = r.nal_path
                             WHERE r.package_id = p.package_id AND r.state NOT IN (4, 5, 6)
                               AND (d.via_site IS NULL OR d.via_site <> $1))
                AND NOT EXISTS (SELECT 1 FROM site_content c
                             WHERE c.package_id = p.package_id AND c.version = p.source_version AND c.state = 0)
              ORDER BY p.priority, p.package_id",
        )
        .bind(via.to_owned())
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn put_site_content(&self, c: &SiteContentRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO site_content (package_id, version, state, bytes_received, chunks_fetched, chunks_total,
                attempts, message, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (package_id, version) DO UPDATE SET state = excluded.state,
                bytes_received = excluded.bytes_received, chunks_fetched = excluded.chunks_fetched,
                chunks_total = excluded.chunks_total, attempts = excluded.attempts, message = excluded.message,
                updated_at = excluded.updated_at",
        )
        .bind(c.package_id.clone())
        .bind(c.version)
        .bind(c.state)
        .bind(c.bytes_received)
        .bind(c.chunks_fetched)
        .bind(c.chunks_total)
        .bind(c.attempts)
        .bind(c.message.clone())
        .bind(c.updated_at.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Replaces a pull DP's sources inside a transaction.
pub(crate) async fn replace_pull_sources(
    tx: &mut Transaction<'static, Any>,
    nal_path: &str,
    sources: &[PullSourceRow],
) -> Result<()> {
    sqlx::query("DELETE FROM pull_sources WHERE nal_path = $1")
        .bind(nal_path.to_owned())
        .execute(&mut **tx)
        .await?;
    for s in sources {
        sqlx::query("INSERT INTO pull_sources (nal_path, source_nal, rank) VALUES ($1, $2, $3)")
            .bind(nal_path.to_owned())
            .bind(s.source_nal.clone())
            .bind(s.rank)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
