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
}

impl Db {
    /// The site's figures; `now` decides which leases are live.
    pub async fn summary(&self, now: &str) -> Result<Summary> {
        Ok(sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM packages) AS packages,
                (SELECT COUNT(*) FROM distribution_points) AS dps,
                1 + (SELECT COUNT(*) FROM sites) AS sites,
                CAST(COALESCE(SUM(targeted), 0) AS BIGINT) AS targeted,
                CAST(COALESCE(SUM(installed), 0) AS BIGINT) AS installed,
                CAST(COALESCE(SUM(in_progress), 0) AS BIGINT) AS in_progress,
                CAST(COALESCE(SUM(retrying), 0) AS BIGINT) AS retrying,
                CAST(COALESCE(SUM(failed), 0) AS BIGINT) AS failed,
                (SELECT CAST(COALESCE(SUM(package_size), 0) AS BIGINT) FROM packages) AS package_kib,
                (SELECT COUNT(*) FROM package_dps WHERE lease_until > $1) AS jobs_running
             FROM dp_state_counts",
        )
        .bind(now.to_owned())
        .fetch_one(&self.pool)
        .await?)
    }
}
