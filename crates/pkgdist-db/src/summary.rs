//! Figures over the whole site, for the console's overview and `/metrics`. Package-on-DP rows
//! are summed from the kept per-DP counts (migration 0008) and running jobs counted on the
//! lease index, so at 1,000 DPs x 10,000 packages the sums read 1,000 kept-count rows, not 10
//! million rows; package sizes read one row per package. (PostgreSQL sums integers as
//! `numeric`: every sum is cast back to `BIGINT`.)

use crate::{Db, Result};

/// Counts over everything this site knows (its own and the sites below it).
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Summary {
    pub packages: i64,
    pub dps: i64,
    /// This site and the sites below it.
    pub sites: i64,
    /// Package-on-DP rows, and of them in each kind of state (as migration 0008 counts).
    pub targeted: i64,
    pub installed: i64,
    pub in_progress: i64,
    pub retrying: i64,
    pub failed: i64,
    /// The size of every package's current version, in KiB (as `PackageSize`).
    pub package_kib: i64,
    /// Jobs leased now, by any site process on this database.
    pub jobs_running: i64,
    /// Rows in progress on this site's own DPs (rows of DPs below are their sites' work).
    pub own_in_progress: i64,
    /// Of the leased jobs, those whose row is in progress (a retry runs while its row still
    /// says retrying).
    pub running_in_progress: i64,
}

impl Summary {
    /// Rows in progress on this site's own DPs with no job running: waiting for a slot, an
    /// availability window, a DP that has not enrolled, or content.
    pub fn jobs_queued(&self) -> i64 {
        (self.own_in_progress - self.running_in_progress).max(0)
    }
}

impl Db {
    /// The site's figures; `now` decides which leases are live.
    pub async fn summary(&self, now: &str) -> Result<Summary> {
        Ok(sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM packages WHERE deleting = 0) AS packages,
                (SELECT COUNT(*) FROM distribution_points) AS dps,
                1 + (SELECT COUNT(*) FROM sites) AS sites,
                CAST(COALESCE(SUM(targeted), 0) AS BIGINT) AS targeted,
                CAST(COALESCE(SUM(installed), 0) AS BIGINT) AS installed,
                CAST(COALESCE(SUM(in_progress), 0) AS BIGINT) AS in_progress,
                CAST(COALESCE(SUM(retrying), 0) AS BIGINT) AS retrying,
                CAST(COALESCE(SUM(failed), 0) AS BIGINT) AS failed,
                (SELECT CAST(COALESCE(SUM(package_size), 0) AS BIGINT) FROM packages) AS package_kib,
                (SELECT COUNT(*) FROM package_dps WHERE lease_until > $1) AS jobs_running,
                (SELECT CAST(COALESCE(SUM(c.in_progress), 0) AS BIGINT) FROM dp_state_counts c
                    JOIN distribution_points d ON d.nal_path = c.nal_path
                    WHERE d.via_site IS NULL) AS own_in_progress,
                (SELECT COUNT(*) FROM package_dps
                    WHERE lease_until > $1 AND state IN (1, 4, 7, 8)) AS running_in_progress
             FROM dp_state_counts",
        )
        .bind(now.to_owned())
        .fetch_one(&self.pool)
        .await?)
    }
}

impl Db {
    /// How many DPs each site has (this site's and those below it), by site code: one row
    /// per DP read, as the DP list is.
    pub async fn dps_by_site(&self) -> Result<Vec<(String, i64)>> {
        Ok(
            sqlx::query_as("SELECT site_code, COUNT(*) FROM distribution_points GROUP BY site_code ORDER BY site_code")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

impl Db {
    /// The rows an administrator should look at first, as (package, DP, site) keys, at most
    /// `limit`: failed (install or removal), then retrying by next retry, then rows in
    /// progress that wait for someone (a DP of this site that never enrolled, a package with
    /// no content, or a message saying why, as availability windows write). Each read goes
    /// through the state index (see `by_state`): it costs the rows in those states, not the
    /// table, where a listing ordered by key with a state filter would walk the whole table.
    pub async fn attention_keys(&self, limit: i64) -> Result<Vec<(String, String, String)>> {
        let hint = self.by_state();
        let reads = [
            format!(
                "SELECT r.package_id, r.nal_path, r.site_code FROM package_dps r{hint} WHERE r.state IN (3, 6) LIMIT $1"
            ),
            format!(
                "SELECT r.package_id, r.nal_path, r.site_code FROM package_dps r{hint} WHERE r.state IN (2, 5)
                 ORDER BY r.next_attempt_at LIMIT $1"
            ),
            format!(
                "SELECT r.package_id, r.nal_path, r.site_code FROM package_dps r{hint}
                    JOIN distribution_points d ON d.nal_path = r.nal_path
                    JOIN packages p ON p.package_id = r.package_id
                 WHERE r.state IN (1, 7) AND (r.last_message LIKE 'waiting%' OR p.source_version = 0
                    OR (d.via_site IS NULL AND (d.credential_hash IS NULL OR d.url IS NULL)))
                 LIMIT $1"
            ),
        ];
        let mut keys = Vec::new();
        for sql in reads {
            let room = limit - i64::try_from(keys.len()).unwrap_or(i64::MAX);
            if room <= 0 {
                break;
            }
            // Only the constants above are formatted in.
            let found: Vec<(String, String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(room)
                .fetch_all(&self.pool)
                .await?;
            keys.extend(found);
        }
        Ok(keys)
    }
}
