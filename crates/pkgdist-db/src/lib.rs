//! pkgdist's metadata store.
//!
//! One API over sqlx's `Any` driver, with one schema per dialect (`migrations/sqlite`,
//! `migrations/postgres`). The SQL is written once, in the subset both engines accept: `$n`
//! placeholders, `ON CONFLICT … DO …`, `RETURNING`, text timestamps in RFC 3339 UTC, 0/1 for
//! booleans. The conformance tests (`tests/conformance.rs`) run unchanged against both.
//!
//! Multi-row changes that must happen together (a refresh that retargets every DP of a
//! package, adding packages to a group with all its members) are single transactions here,
//! so a caller can never leave half of one behind.

mod audit;
mod hierarchy;
mod rows;
mod summary;
pub mod view;

pub use audit::NewAudit;
pub use hierarchy::{IntentRow, STATUS_BATCH};
pub use rows::*;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Transaction};
pub use summary::Summary;
pub use view::{Column, Kind, NotQueryable, View, ViewError};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    Url(String),
    /// A unique value (a name) is already used.
    #[error("{0} is already in use")]
    Conflict(String),
    /// The package is being deleted (migration 0010): it takes no new target.
    #[error("package {0} is being deleted: it can no longer be distributed")]
    Deleting(String),
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// The advisory lock key PostgreSQL writers take (see `Db::begin`): "pkgd" in ASCII.
const WRITER_LOCK: i64 = 0x706b_6764;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// A handle on the metadata database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
    /// Permits of streamed selects (`view::STREAMS`).
    streams: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Turns a unique-constraint violation into [`DbError::Conflict`] naming `what`.
fn conflict(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DbError {
    let what = what.into();
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => DbError::Conflict(what),
        _ => DbError::Sql(e),
    }
}

impl Db {
    /// Connects and brings the schema up to date. For SQLite the file is created if missing
    /// and switched to WAL (readers never wait for the writer).
    pub async fn connect(url: &str) -> Result<Self> {
        install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(DbError::Url(url.to_owned()));
        };
        let mut options = AnyPoolOptions::new().max_connections(8);
        if dialect == Dialect::Postgres {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    // JIT compiles the plans the planner guesses are costly; for this store's
                    // short queries it costs more than it saves (170 ms of the 180 ms of the
                    // DP status list at 10,000,000 rows, bench/scale with auto_explain).
                    sqlx::query("SET jit = off").execute(&mut *conn).await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await?;
        match dialect {
            Dialect::Sqlite => {
                sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
                sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            }
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Self {
            pool,
            dialect,
            streams: std::sync::Arc::new(tokio::sync::Semaphore::new(view::STREAMS)),
        })
    }

    /// The URL of an SQLite database file (created if missing).
    pub fn sqlite_url(path: &std::path::Path) -> String {
        format!("sqlite://{}?mode=rwc", path.display())
    }

    /// A write transaction. On SQLite it takes the write lock at `BEGIN IMMEDIATE`: a deferred
    /// transaction that reads first and then writes fails at once with `SQLITE_BUSY_SNAPSHOT`
    /// ("database is locked", code 517) when another writer committed in between, whatever the
    /// busy timeout; taking the lock up front makes it wait its turn instead.
    ///
    /// On PostgreSQL every write transaction takes one advisory lock first, so writers run one
    /// at a time there too. The counts the triggers of migration 0006 keep move by what each
    /// writer sees; under READ COMMITTED two writers at once (a DP joining a group while a job
    /// on it finishes) could each miss the other's uncommitted change and leave a count wrong
    /// for good. Taken before any row is touched, the lock cannot deadlock with row locks.
    async fn begin(&self) -> Result<Transaction<'static, Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => {
                let mut tx = self.pool.begin().await?;
                // A writer that cannot get its turn in time fails (and is retried by its caller)
                // rather than holding a pool connection forever.
                sqlx::query("SET LOCAL lock_timeout = '30s'").execute(&mut *tx).await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITER_LOCK)
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        })
    }

    // ---- settings and counters ----

    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key.to_owned())
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key.to_owned())
        .bind(value.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The setting `key`, set to `value` first if it has none: of two processes starting on
    /// one database, both end with the value that was written first.
    pub async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key.to_owned())
            .bind(value.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key.to_owned())
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn delete_setting(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(key.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keeps the query planner's statistics current. SQLite gathers none by itself: without
    /// them its planner may read a per-package query through the state index (every INSTALLED
    /// row of the site) instead of the package's key. `PRAGMA optimize` analyzes the tables
    /// whose size changed much since (all of them the first time), sampling at most 1,000 rows
    /// per index, so it costs milliseconds whatever the size. PostgreSQL's autovacuum does this
    /// on its own. The scheduler calls it at start and hourly.
    pub async fn optimize(&self) -> Result<()> {
        if self.dialect == Dialect::Sqlite {
            let mut conn = self.pool.acquire().await?;
            sqlx::query("PRAGMA analysis_limit = 1000").execute(&mut *conn).await?;
            sqlx::query("PRAGMA optimize = 0x10002").execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Takes the next value of a counter, starting at `first`. Values are never handed out
    /// twice, even across restarts and deletions (PackageIDs are never reused).
    pub async fn next_counter(&self, name: &str, first: i64) -> Result<i64> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO counters (name, next_value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name.to_owned())
            .bind(first)
            .execute(&mut *tx)
            .await?;
        let value: i64 = sqlx::query_scalar(
            "UPDATE counters SET next_value = next_value + 1 WHERE name = $1 RETURNING next_value - 1",
        )
        .bind(name.to_owned())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(value)
    }

    // ---- packages ----

    pub async fn insert_package(&self, p: &PackageRow) -> Result<()> {
        let mut tx = self.begin().await?;
        insert_package_in(&mut tx, p).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes only the given administrator-editable properties of a package, so that two
    /// changes to different properties at the same time both stand.
    pub async fn update_package_fields(&self, package_id: &str, fields: &[PackageField]) -> Result<bool> {
        if fields.is_empty() {
            return Ok(self.package(package_id).await?.is_some());
        }
        let sets: Vec<String> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{} = ${}", f.column(), i + 2))
            .collect();
        // Column names come from `PackageField::column`, a fixed list; values are bound.
        let sql = format!("UPDATE packages SET {} WHERE package_id = $1", sets.join(", "));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(package_id.to_owned());
        for f in fields {
            q = match f {
                PackageField::Text(_, v) => q.bind(v.clone()),
                PackageField::Number(_, v) => q.bind(*v),
            };
        }
        // A write transaction, as every writer of a column the change feed (migration 0007)
        // numbers: the counter is then taken after the writers' lock, never before a row lock.
        let mut tx = self.begin().await?;
        let changed = q.execute(&mut *tx).await?.rows_affected() == 1;
        tx.commit().await?;
        Ok(changed)
    }

    pub async fn package(&self, id: &str) -> Result<Option<PackageRow>> {
        // A package being deleted (migration 0010) is gone to everyone but its rows.
        Ok(
            sqlx::query_as("SELECT * FROM packages WHERE package_id = $1 AND deleting = 0")
                .bind(id.to_owned())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn packages(&self) -> Result<Vec<PackageRow>> {
        Ok(sqlx::query_as("SELECT * FROM packages ORDER BY package_id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// The packages owned by `owners` (through the owner index, migration 0013), those being
    /// deleted too unless `live_only`: what a child reports up (its own and its subtree's,
    /// live), and what a parent holds of a child's subtree.
    pub async fn packages_owned_by(&self, owners: &[String], live_only: bool) -> Result<Vec<PackageRow>> {
        let mut all = Vec::new();
        for owner in owners {
            let found: Vec<PackageRow> =
                sqlx::query_as("SELECT * FROM packages WHERE source_site = $1 AND (deleting = 0 OR $2 = 0)")
                    .bind(owner.clone())
                    .bind(i64::from(live_only))
                    .fetch_all(&self.pool)
                    .await?;
            all.extend(found);
        }
        all.sort_by(|a, b| a.package_id.cmp(&b.package_id));
        Ok(all)
    }

    /// Deletes a package with its DP assignments, group links and status messages.
    pub async fn delete_package(&self, id: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM status_messages WHERE package_id = $1")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM packages WHERE package_id = $1")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Starts deleting a package whose DPs hold it: marks it (see migration 0010), takes it
    /// out of its groups and makes `changes` (its rows to REMOVAL_PENDING), with their status
    /// messages, in one transaction. False when the package is gone or already being deleted.
    pub async fn begin_package_delete(
        &self,
        id: &str,
        changes: &[TargetChange],
        statuses: &[NewStatus],
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let marked = sqlx::query("UPDATE packages SET deleting = 1 WHERE package_id = $1 AND deleting = 0")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        if marked.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM dp_group_packages WHERE package_id = $1")
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        for c in changes {
            set_state(&mut tx, c).await?;
        }
        insert_statuses(&mut tx, statuses).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes a package that no DP row refers to, in one statement (a target written
    /// meanwhile makes it keep the package: false). Its status messages go with it.
    pub async fn delete_package_if_unused(&self, id: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "DELETE FROM packages WHERE package_id = $1
                AND NOT EXISTS (SELECT 1 FROM package_dps r WHERE r.package_id = $1)",
        )
        .bind(id.to_owned())
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 1 {
            sqlx::query("DELETE FROM status_messages WHERE package_id = $1")
                .bind(id.to_owned())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Whether a package is being deleted (`None`: there is no such package).
    pub async fn package_deleting(&self, id: &str) -> Result<Option<bool>> {
        let v: Option<i64> = sqlx::query_scalar("SELECT deleting FROM packages WHERE package_id = $1")
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        Ok(v.map(|d| d != 0))
    }

    /// Packages being deleted whose DPs have all dropped them (no row left): ready to be
    /// deleted for good.
    pub async fn deleted_packages_done(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT p.package_id FROM packages p WHERE p.deleting = 1
                AND NOT EXISTS (SELECT 1 FROM package_dps r WHERE r.package_id = p.package_id)",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Rows of packages being deleted that are not on their way off their DP (a row a child
    /// site reported, or one written before the delete was seen): (package, DP). REMOVAL_FAILED
    /// rows are left for an administrator (`package delete` again retries them).
    pub async fn deleting_rows_left(&self) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT r.package_id, r.nal_path FROM packages p
                JOIN package_dps r ON r.package_id = p.package_id
             WHERE p.deleting = 1 AND r.state NOT IN (4, 5, 6)",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records a new source version of a package and retargets every DP of the package at
    /// it, with a status message per DP, in one transaction: readers see either the old
    /// version everywhere or the new one. DPs the package is being removed from are left
    /// alone. Returns false (changing nothing) when the package is gone or its version is no
    /// longer `v.previous_version` (another writer got there first).
    pub async fn record_version(&self, v: &NewVersion) -> Result<bool> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE packages SET source_version = $2, manifest_hash = $3, package_size = $4, source_date = $5,
                last_refresh_time = $5, action_in_progress = $6 WHERE package_id = $1 AND source_version = $7",
        )
        .bind(v.package_id.clone())
        .bind(v.source_version)
        .bind(v.manifest_hash.clone())
        .bind(v.package_size_kb)
        .bind(v.time.clone())
        .bind(v.action_in_progress)
        .bind(v.previous_version)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO status_messages (package_id, nal_path, site_code, message_id, message_state, severity,
                description, bytes_transferred, time)
             SELECT r.package_id, r.nal_path, r.site_code, $2, $3, $4, $5 || ' (' || d.name || ')', 0, $6
             FROM package_dps r JOIN distribution_points d ON d.nal_path = r.nal_path
             WHERE r.package_id = $1 AND r.state NOT IN (4, 5, 6)",
        )
        .bind(v.package_id.clone())
        .bind(v.message_id)
        .bind(v.message_state)
        .bind(v.severity)
        .bind(v.dp_message.clone())
        .bind(v.time.clone())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE package_dps SET target_version = $2,
                state = CASE WHEN installed_version > 0 THEN $6 ELSE $3 END, attempts = 0, next_attempt_at = NULL,
                summary_date = $4, last_message = $5, queued_at = $4, job_seq = job_seq + 1,
                lease_owner = NULL, lease_until = NULL, progress_bytes = 0, progress_done = 0, progress_total = 0
             WHERE package_id = $1 AND state NOT IN (4, 5, 6)",
        )
        .bind(v.package_id.clone())
        .bind(v.source_version)
        .bind(v.dp_state)
        .bind(v.time.clone())
        .bind(v.dp_message.clone())
        .bind(v.dp_state_if_installed)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Packages owned by a site above (not `own`, not one below), with a version, that some
    /// row here (not being removed) targets: what a child site must replicate. Highest priority first.
    pub async fn replication_candidates(&self, own: &str) -> Result<Vec<PackageRow>> {
        Ok(sqlx::query_as(
            "SELECT p.* FROM packages p WHERE p.source_site <> $1 AND p.source_version > 0
                AND p.source_site NOT IN (SELECT site_code FROM sites)
                AND EXISTS (SELECT 1 FROM package_dps r WHERE r.package_id = p.package_id AND r.state NOT IN (4, 5, 6))
             ORDER BY p.priority, p.package_id",
        )
        .bind(own.to_owned())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Packages with a refresh schedule (an indexed subset, whatever the number of packages).
    pub async fn scheduled_packages(&self) -> Result<Vec<PackageRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM packages WHERE refresh_schedule <> '' ORDER BY package_id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Marks a package's schedule handled up to `when`.
    pub async fn set_schedule_checked(&self, package_id: &str, when: &str) -> Result<()> {
        sqlx::query("UPDATE packages SET schedule_checked_at = $2 WHERE package_id = $1")
            .bind(package_id.to_owned())
            .bind(when.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- distribution points ----

    /// Registers a DP with its pull sources (empty for a standard DP), in one transaction.
    pub async fn insert_dp(&self, d: &DpRow, sources: &[PullSourceRow]) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO distribution_points (nal_path, name, site_code, url, description, is_pull, priority,
                enrollment_token_hash, credential_hash, created_at, repair_damaged, validation_schedule,
                rate_mode, rate_bytes_per_sec, pulse_block_kb, pulse_delay_secs, hourly_percent, availability, via_site,
                prestaging)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
        )
        .bind(d.nal_path.clone())
        .bind(d.name.clone())
        .bind(d.site_code.clone())
        .bind(d.url.clone())
        .bind(d.description.clone())
        .bind(d.is_pull)
        .bind(d.priority)
        .bind(d.enrollment_token_hash.clone())
        .bind(d.credential_hash.clone())
        .bind(d.created_at.clone())
        .bind(d.repair_damaged)
        .bind(d.validation_schedule.clone())
        .bind(d.rate_mode)
        .bind(d.rate_bytes_per_sec)
        .bind(d.pulse_block_kb)
        .bind(d.pulse_delay_secs)
        .bind(d.hourly_percent.clone())
        .bind(d.availability.clone())
        .bind(d.via_site.clone())
        .bind(d.prestaging)
        .execute(&mut *tx)
        .await
        .map_err(conflict(format!("distribution point name {:?}", d.name)))?;
        if !sources.is_empty() {
            hierarchy::replace_pull_sources(&mut tx, &d.nal_path, sources).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn dp(&self, nal_path: &str) -> Result<Option<DpRow>> {
        Ok(sqlx::query_as("SELECT * FROM distribution_points WHERE nal_path = $1")
            .bind(nal_path.to_owned())
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn dps(&self) -> Result<Vec<DpRow>> {
        Ok(sqlx::query_as("SELECT * FROM distribution_points ORDER BY name")
            .fetch_all(&self.pool)
            .await?)
    }

    /// The DPs with these NAL paths (those that exist), in batches of a few hundred.
    pub async fn dps_by_nal(&self, nal_paths: &[String]) -> Result<Vec<DpRow>> {
        let mut out = Vec::with_capacity(nal_paths.len());
        for batch in nal_paths.chunks(500) {
            let marks: Vec<String> = (1..=batch.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT * FROM distribution_points WHERE nal_path IN ({}) ORDER BY name",
                marks.join(", ")
            );
            // Only placeholders are formatted in; the values are bound.
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for n in batch {
                q = q.bind(n.clone());
            }
            out.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(out)
    }

    /// Writes the administrator-editable properties of a DP (never its credentials, which
    /// enrollment owns) and, when given, replaces its pull sources: one transaction.
    pub async fn update_dp(&self, d: &DpRow, sources: Option<&[PullSourceRow]>) -> Result<bool> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE distribution_points SET description = $2, is_pull = $3, priority = $4, repair_damaged = $5,
                validation_schedule = $6, validation_checked_at = COALESCE($7, validation_checked_at), rate_mode = $8, rate_bytes_per_sec = $9,
                pulse_block_kb = $10, pulse_delay_secs = $11, hourly_percent = $12, availability = $13,
                prestaging = $14
             WHERE nal_path = $1",
        )
        .bind(d.nal_path.clone())
        .bind(d.description.clone())
        .bind(d.is_pull)
        .bind(d.priority)
        .bind(d.repair_damaged)
        .bind(d.validation_schedule.clone())
        .bind(d.validation_checked_at.clone())
        .bind(d.rate_mode)
        .bind(d.rate_bytes_per_sec)
        .bind(d.pulse_block_kb)
        .bind(d.pulse_delay_secs)
        .bind(d.hourly_percent.clone())
        .bind(d.availability.clone())
        .bind(d.prestaging)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(sources) = sources {
            hierarchy::replace_pull_sources(&mut tx, &d.nal_path, sources).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Removes a DP with its package assignments and group memberships.
    pub async fn delete_dp(&self, nal_path: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let r = sqlx::query("DELETE FROM distribution_points WHERE nal_path = $1")
            .bind(nal_path.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// The DP an enrollment is for: the one whose one-time token hashes to `token_hash`, or
    /// the one that offered `credential_hash` before and was issued no certificate (a retry of
    /// an enrollment that did not finish). A DP with a certificate cannot enroll again by its
    /// credential alone: whoever holds only the credential would drop the certificate
    /// requirement and move the DP; it is removed and added again instead.
    pub async fn dp_for_enrollment(&self, token_hash: &str, credential_hash: &str) -> Result<Option<DpRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM distribution_points
             WHERE enrollment_token_hash = $1 OR (credential_hash = $2 AND cert_sha256 IS NULL)",
        )
        .bind(token_hash.to_owned())
        .bind(credential_hash.to_owned())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Takes the enrollment of DP `nal_path` (found by [`Db::dp_for_enrollment`]), checking its
    /// rule again as the token is spent, so of two enrollments racing one wins: the DP gets
    /// the credential, URL and certificate fingerprint (`None`: enrolled over http). Answers
    /// `false` if the rule no longer holds.
    pub async fn enroll_dp(
        &self,
        nal_path: &str,
        token_hash: &str,
        credential_hash: &str,
        url: &str,
        cert_sha256: Option<&str>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE distribution_points SET enrollment_token_hash = NULL, credential_hash = $3, url = $4,
                 cert_sha256 = $5
             WHERE nal_path = $1
               AND (enrollment_token_hash = $2 OR (credential_hash = $3 AND cert_sha256 IS NULL))",
        )
        .bind(nal_path.to_owned())
        .bind(token_hash.to_owned())
        .bind(credential_hash.to_owned())
        .bind(url.to_owned())
        .bind(cert_sha256.map(str::to_owned))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn dp_by_credential(&self, credential_hash: &str) -> Result<Option<DpRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM distribution_points WHERE credential_hash = $1")
                .bind(credential_hash.to_owned())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Records that DP `nal_path` imported `version` of `package` from a prestaged file (the
    /// site checked it is its own): its row may go ahead once this reaches its target, and is
    /// due now. Answers whether the DP has a row for the package.
    pub async fn set_prestaged(&self, package_id: &str, nal_path: &str, version: i64, now: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE package_dps SET prestaged_version = $3,
                next_attempt_at = CASE WHEN state IN (1, 2) THEN $4 ELSE next_attempt_at END
             WHERE package_id = $1 AND nal_path = $2 AND prestaged_version < $3",
        )
        .bind(package_id.to_owned())
        .bind(nal_path.to_owned())
        .bind(version)
        .bind(now.to_owned())
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 1 {
            return Ok(true);
        }
        Ok(self.package_dp(package_id, nal_path).await?.is_some())
    }

    /// Brings the retries of a DP that has just come back forward to `now`: its rows waiting
    /// out a retry delay (INSTALL_RETRYING, REMOVAL_RETRYING) become due at once. Answers how
    /// many did.
    pub async fn retry_now(&self, nal_path: &str, now: &str) -> Result<u64> {
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE package_dps SET next_attempt_at = $2
             WHERE nal_path = $1 AND state IN (2, 5) AND next_attempt_at > $2",
        )
        .bind(nal_path.to_owned())
        .bind(now.to_owned())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    pub async fn set_dp_url(&self, nal_path: &str, url: &str) -> Result<()> {
        sqlx::query("UPDATE distribution_points SET url = $2 WHERE nal_path = $1")
            .bind(nal_path.to_owned())
            .bind(url.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- DP groups ----

    pub async fn insert_group(&self, g: &GroupRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO dp_groups (group_id, name, description, source_site, created_on, modified_on)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(g.group_id.clone())
        .bind(g.name.clone())
        .bind(g.description.clone())
        .bind(g.source_site.clone())
        .bind(g.created_on.clone())
        .bind(g.modified_on.clone())
        .execute(&self.pool)
        .await
        .map_err(conflict(format!("group name {:?}", g.name)))?;
        Ok(())
    }

    pub async fn update_group(&self, g: &GroupRow) -> Result<bool> {
        let r = sqlx::query("UPDATE dp_groups SET name = $2, description = $3, modified_on = $4 WHERE group_id = $1")
            .bind(g.group_id.clone())
            .bind(g.name.clone())
            .bind(g.description.clone())
            .bind(g.modified_on.clone())
            .execute(&self.pool)
            .await
            .map_err(conflict(format!("group name {:?}", g.name)))?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn group(&self, group_id: &str) -> Result<Option<GroupRow>> {
        Ok(sqlx::query_as("SELECT * FROM dp_groups WHERE group_id = $1")
            .bind(group_id.to_owned())
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn groups(&self) -> Result<Vec<GroupRow>> {
        Ok(sqlx::query_as("SELECT * FROM dp_groups ORDER BY name")
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn delete_group(&self, group_id: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let r = sqlx::query("DELETE FROM dp_groups WHERE group_id = $1")
            .bind(group_id.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// The member DPs of a group.
    pub async fn group_member_dps(&self, group_id: &str) -> Result<Vec<DpRow>> {
        Ok(sqlx::query_as(
            "SELECT d.* FROM dp_group_members m JOIN distribution_points d ON d.nal_path = m.nal_path
             WHERE m.group_id = $1 ORDER BY d.nal_path",
        )
        .bind(group_id.to_owned())
        .fetch_all(&self.pool)
        .await?)
    }

    /// The packages assigned to a group.
    pub async fn group_package_rows(&self, group_id: &str) -> Result<Vec<PackageRow>> {
        Ok(sqlx::query_as(
            "SELECT p.* FROM dp_group_packages g JOIN packages p ON p.package_id = g.package_id
             WHERE g.group_id = $1 ORDER BY p.package_id",
        )
        .bind(group_id.to_owned())
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many kept counts (members per group; members in sync per group and package)
    /// disagree with a count made from scratch, or are missing: 0 unless the triggers of
    /// migration 0006 are wrong. For tests
    /// and diagnostics; it reads every group's rows.
    pub async fn group_sync_drift(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM dp_groups g
                     WHERE g.member_count <> (SELECT COUNT(*) FROM dp_group_members m WHERE m.group_id = g.group_id))
                  + (SELECT COUNT(*) FROM dp_group_packages gp
                       LEFT JOIN group_package_sync s ON s.group_id = gp.group_id AND s.package_id = gp.package_id
                     WHERE s.in_sync IS NULL OR s.in_sync <> (
                        SELECT COUNT(*) FROM dp_group_members m
                            JOIN package_dps r ON r.nal_path = m.nal_path AND r.package_id = gp.package_id
                            JOIN packages p ON p.package_id = gp.package_id
                        WHERE m.group_id = gp.group_id AND r.state = 0 AND r.installed_version = p.source_version))",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// How many per-package and per-DP state counts (migration 0008) differ from a recount
    /// of the rows: 0 unless the triggers are wrong. For tests and `bench/scale`; it reads
    /// every row.
    pub async fn state_counts_drift(&self) -> Result<i64> {
        const KINDS: &str = "COUNT(r.state) AS targeted,
            COALESCE(SUM(CASE WHEN r.state = 0 THEN 1 ELSE 0 END), 0) AS installed,
            COALESCE(SUM(CASE WHEN r.state IN (1, 4, 7, 8) THEN 1 ELSE 0 END), 0) AS in_progress,
            COALESCE(SUM(CASE WHEN r.state IN (2, 5) THEN 1 ELSE 0 END), 0) AS retrying,
            COALESCE(SUM(CASE WHEN r.state IN (3, 6) THEN 1 ELSE 0 END), 0) AS failed";
        const SAME: &str = "c.targeted = x.targeted AND c.installed = x.installed AND c.in_progress = x.in_progress
            AND c.retrying = x.retrying AND c.failed = x.failed";
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM (SELECT p.package_id, {KINDS} FROM packages p
                        LEFT JOIN package_dps r ON r.package_id = p.package_id GROUP BY p.package_id) x
                     LEFT JOIN package_state_counts c ON c.package_id = x.package_id
                     WHERE c.package_id IS NULL OR NOT ({SAME}))
                  + (SELECT COUNT(*) FROM (SELECT d.nal_path, {KINDS} FROM distribution_points d
                        LEFT JOIN package_dps r ON r.nal_path = d.nal_path GROUP BY d.nal_path) x
                     LEFT JOIN dp_state_counts c ON c.nal_path = x.nal_path
                     WHERE c.nal_path IS NULL OR NOT ({SAME}))"
        );
        // Only the constants above are formatted in.
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn group_members(&self) -> Result<Vec<GroupMemberRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM dp_group_members ORDER BY group_id, nal_path")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn group_packages(&self) -> Result<Vec<GroupPackageRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM dp_group_packages ORDER BY group_id, package_id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Adds DPs to a group and targets the group's packages at the new members, with status
    /// messages, in one transaction.
    pub async fn add_group_members(
        &self,
        group_id: &str,
        nal_paths: &[String],
        targets: &[NewTarget],
        statuses: &[NewStatus],
    ) -> Result<()> {
        let sql = "INSERT INTO dp_group_members (group_id, nal_path) VALUES ($1, $2) ON CONFLICT DO NOTHING";
        self.group_links(sql, group_id, nal_paths, targets, &[], statuses).await
    }

    /// Removes DPs from a group and applies the given removals, in one transaction.
    pub async fn remove_group_members(
        &self,
        group_id: &str,
        nal_paths: &[String],
        removals: &[TargetChange],
        statuses: &[NewStatus],
    ) -> Result<()> {
        let sql = "DELETE FROM dp_group_members WHERE group_id = $1 AND nal_path = $2";
        self.group_links(sql, group_id, nal_paths, &[], removals, statuses)
            .await
    }

    /// Assigns packages to a group and targets them at every member, in one transaction.
    pub async fn add_group_packages(
        &self,
        group_id: &str,
        package_ids: &[String],
        targets: &[NewTarget],
        statuses: &[NewStatus],
    ) -> Result<()> {
        // A package being deleted does not join a group (it left them all when marked).
        let sql = "INSERT INTO dp_group_packages (group_id, package_id)
            SELECT $1, package_id FROM packages WHERE package_id = $2 AND deleting = 0 ON CONFLICT DO NOTHING";
        self.group_links(sql, group_id, package_ids, targets, &[], statuses)
            .await
    }

    /// Unassigns packages from a group and applies the given removals, in one transaction.
    pub async fn remove_group_packages(
        &self,
        group_id: &str,
        package_ids: &[String],
        removals: &[TargetChange],
        statuses: &[NewStatus],
    ) -> Result<()> {
        let sql = "DELETE FROM dp_group_packages WHERE group_id = $1 AND package_id = $2";
        self.group_links(sql, group_id, package_ids, &[], removals, statuses)
            .await
    }

    /// One group change: `sql` per linked item, then targets, state changes and status messages,
    /// all in one transaction.
    async fn group_links(
        &self,
        sql: &'static str,
        group_id: &str,
        items: &[String],
        targets: &[NewTarget],
        removals: &[TargetChange],
        statuses: &[NewStatus],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        for item in items {
            sqlx::query(sql)
                .bind(group_id.to_owned())
                .bind(item.clone())
                .execute(&mut *tx)
                .await?;
        }
        for t in targets {
            upsert_target(&mut tx, t).await?;
        }
        for c in removals {
            set_state(&mut tx, c).await?;
        }
        insert_statuses(&mut tx, statuses).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- package on DP ----

    /// Targets packages at DPs (a new row, or a retargeted existing one) at each package's
    /// current version, with their status messages, in one transaction.
    pub async fn target(&self, targets: &[NewTarget], statuses: &[NewStatus]) -> Result<()> {
        let mut tx = self.begin().await?;
        for t in targets {
            upsert_target(&mut tx, t).await?;
        }
        insert_statuses(&mut tx, statuses).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Changes the state of existing package-on-DP rows, with their status messages, in one
    /// transaction. False, changing nothing, when a change with `expect_seq` finds its row gone
    /// or at another job (it was decided on a state that no longer holds).
    pub async fn set_states(&self, changes: &[TargetChange], statuses: &[NewStatus]) -> Result<bool> {
        let mut tx = self.begin().await?;
        for c in changes {
            if set_state(&mut tx, c).await? == 0 && c.expect_seq.is_some() {
                return Ok(false); // the transaction rolls back as it is dropped
            }
        }
        insert_statuses(&mut tx, statuses).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn package_dps(&self) -> Result<Vec<PackageDpRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM package_dps ORDER BY package_id, nal_path")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The rows of one package (one per DP it is on).
    pub async fn package_rows(&self, package_id: &str) -> Result<Vec<PackageDpRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM package_dps WHERE package_id = $1 ORDER BY nal_path")
                .bind(package_id.to_owned())
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The rows of one DP (one per package on it).
    pub async fn dp_rows(&self, nal_path: &str) -> Result<Vec<PackageDpRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM package_dps WHERE nal_path = $1 ORDER BY package_id")
                .bind(nal_path.to_owned())
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn package_dp(&self, package_id: &str, nal_path: &str) -> Result<Option<PackageDpRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM package_dps WHERE package_id = $1 AND nal_path = $2")
                .bind(package_id.to_owned())
                .bind(nal_path.to_owned())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Rows with work for an enrolled DP now (pending states, and retries whose time has come)
    /// that no live lease holds, in the order they should go: package priority (1 high first),
    /// then the order they were queued in, then the DPs that took transfers fastest (those not
    /// measured yet first, so they get measured). The index on `(state, next_attempt_at)`
    /// keeps INSTALLED and failed rows out of the read, so it costs what is queued. Each row
    /// says whether a source of its pull DP holds what it is aimed at (always true for a
    /// standard DP).
    pub async fn due_work(&self, now: &str) -> Result<Vec<WorkItem>> {
        let sql = format!(
            "SELECT r.*, p.priority, d.availability, d.is_pull,
                CASE WHEN d.is_pull = 0 OR EXISTS (
                    SELECT 1 FROM pull_sources s JOIN package_dps h ON h.nal_path = s.source_nal AND h.package_id = r.package_id
                    WHERE s.nal_path = r.nal_path AND h.state = 0 AND h.installed_version >= r.target_version)
                THEN 1 ELSE 0 END AS source_ready,
                CASE WHEN {AWAITS_PRESTAGE_SQL} THEN 1 ELSE 0 END AS awaits_prestage
             FROM package_dps r{}
                JOIN distribution_points d ON d.nal_path = r.nal_path
                JOIN packages p ON p.package_id = r.package_id
             WHERE r.state IN (1, 2, 4, 5, 7, 8)
                AND (r.state IN (1, 4, 7) OR r.next_attempt_at IS NULL OR r.next_attempt_at <= $1)
                AND (r.lease_until IS NULL OR r.lease_until <= $1)
                AND d.credential_hash IS NOT NULL AND d.url IS NOT NULL
             ORDER BY p.priority, r.queued_at, COALESCE(d.throughput_kbps, 2000000000) DESC, r.nal_path",
            self.by_state()
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now.to_owned())
            .fetch_all(&self.pool)
            .await?)
    }

    /// Makes SQLite read `package_dps` through its state index. Its planner, given statistics
    /// (ANALYZE, `PRAGMA optimize`) that say nearly every row has the same state, would
    /// otherwise scan the whole table for the few rows with work, once a second; PostgreSQL's
    /// planner knows the distribution of values and needs no hint.
    pub(crate) fn by_state(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => " INDEXED BY package_dps_due",
            Dialect::Postgres => "",
        }
    }

    /// The jobs live leases hold now: (package, DP, whether the DP is a pull DP) of each.
    pub async fn leased_jobs(&self, now: &str) -> Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT r.package_id, r.nal_path, d.is_pull FROM package_dps r
                JOIN distribution_points d ON d.nal_path = r.nal_path WHERE r.lease_until > $1",
        )
        .bind(now.to_owned())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Takes the lease on a row's job, if the row is still as `l` saw it (same job, state and
    /// attempts: an outcome recorded meanwhile changes one of them) and no live lease of another
    /// owner holds it. `now` decides what "live" is.
    pub async fn claim(&self, l: &Lease, now: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE package_dps SET lease_owner = $4, lease_until = $5
             WHERE package_id = $1 AND nal_path = $2 AND job_seq = $3 AND state = $7 AND attempts = $8
                AND (lease_until IS NULL OR lease_until <= $6 OR lease_owner = $4)",
        )
        .bind(l.package_id.clone())
        .bind(l.nal_path.clone())
        .bind(l.job_seq)
        .bind(l.owner.clone())
        .bind(l.until.clone())
        .bind(now.to_owned())
        .bind(l.state)
        .bind(l.attempts)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Extends a lease its owner still holds, recording the job's progress. False when the
    /// row has moved on to another job or another worker took the lease over.
    pub async fn renew(&self, l: &Lease, progress: Progress, message: &str) -> Result<bool> {
        // A write transaction: progress is reported up the site link (migration 0007).
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE package_dps SET lease_until = $5, progress_bytes = $6, progress_done = $7, progress_total = $8,
                last_message = $9
             WHERE package_id = $1 AND nal_path = $2 AND job_seq = $3 AND lease_owner = $4",
        )
        .bind(l.package_id.clone())
        .bind(l.nal_path.clone())
        .bind(l.job_seq)
        .bind(l.owner.clone())
        .bind(l.until.clone())
        .bind(progress.bytes)
        .bind(progress.done)
        .bind(progress.total)
        .bind(message.to_owned())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Sets a row's message, if the row is still at job `job_seq` (a row that waits tells
    /// why: see the distribution manager's availability windows).
    pub async fn set_row_message(&self, package_id: &str, nal_path: &str, job_seq: i64, message: &str) -> Result<()> {
        // A write transaction: the message is reported up the site link (migration 0007).
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE package_dps SET last_message = $4 WHERE package_id = $1 AND nal_path = $2 AND job_seq = $3",
        )
        .bind(package_id.to_owned())
        .bind(nal_path.to_owned())
        .bind(job_seq)
        .bind(message.to_owned())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives a lease back without recording anything (the job could not even start).
    pub async fn release(&self, l: &Lease) -> Result<()> {
        sqlx::query(
            "UPDATE package_dps SET lease_owner = NULL, lease_until = NULL
             WHERE package_id = $1 AND nal_path = $2 AND job_seq = $3 AND lease_owner = $4",
        )
        .bind(l.package_id.clone())
        .bind(l.nal_path.clone())
        .bind(l.job_seq)
        .bind(l.owner.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends the leases of owners whose names start with `prefix` but are not `current`: those
    /// of this site's earlier runs, which cannot be following anything any more.
    pub async fn release_stale_leases(&self, prefix: &str, current: &str) -> Result<u64> {
        let r = sqlx::query(
            // `lease_until IS NOT NULL` (a lease always has both) reads the few leased rows
            // through the lease index instead of the whole table (1.3 s at 10,000,000 rows).
            "UPDATE package_dps SET lease_owner = NULL, lease_until = NULL
             WHERE lease_until IS NOT NULL AND lease_owner <> $2 AND substr(lease_owner, 1, length($1)) = $1",
        )
        .bind(prefix.to_owned())
        .bind(current.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Folds a finished transfer's speed into the DP's throughput (an even running average).
    pub async fn record_throughput(&self, nal_path: &str, kbps: i64) -> Result<()> {
        sqlx::query(
            "UPDATE distribution_points SET throughput_kbps =
                CASE WHEN throughput_kbps IS NULL THEN $2 ELSE (throughput_kbps + $2) / 2 END
             WHERE nal_path = $1",
        )
        .bind(nal_path.to_owned())
        .bind(kbps)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// DPs with a validation schedule.
    pub async fn validated_dps(&self) -> Result<Vec<DpRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM distribution_points WHERE validation_schedule <> '' ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Marks a DP's validation schedule handled up to `when`.
    pub async fn set_validation_checked(&self, nal_path: &str, when: &str) -> Result<()> {
        sqlx::query("UPDATE distribution_points SET validation_checked_at = $2 WHERE nal_path = $1")
            .bind(nal_path.to_owned())
            .bind(when.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removals from DPs that never enrolled have nothing to remove: they are done at once.
    /// Returns how many.
    pub async fn finish_unenrolled_removals(&self) -> Result<u64> {
        // Through the state index (see `by_state`): this runs once a second. A write
        // transaction, as removals are numbered for the site link (migration 0007).
        let sql = format!(
            "DELETE FROM package_dps{} WHERE state IN (4, 5, 6)
                AND EXISTS (SELECT 1 FROM distribution_points d WHERE d.nal_path = package_dps.nal_path
                    AND d.credential_hash IS NULL AND d.via_site IS NULL)",
            self.by_state()
        );
        let mut tx = self.begin().await?;
        let r = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    /// Applies what a DP reported for job `o.job_seq`, with its status message, in one
    /// transaction; nothing when the row has moved on to another job since, or the lease is no
    /// longer `o.lease_owner`'s (returns false). Every outcome changes the row's state or its
    /// attempts, so a worker holding an older copy of the row cannot claim it again (see
    /// [`Db::claim`]); a retry keeps the job's name, and the DP picks its progress up.
    pub async fn finish_job(&self, o: &JobOutcome, status: &NewStatus) -> Result<bool> {
        let mut tx = self.begin().await?;
        let r = if o.remove_row {
            sqlx::query(
                "DELETE FROM package_dps WHERE package_id = $1 AND nal_path = $2 AND job_seq = $3 AND lease_owner = $4",
            )
            .bind(o.package_id.clone())
            .bind(o.nal_path.clone())
            .bind(o.job_seq)
            .bind(o.lease_owner.clone())
            .execute(&mut *tx)
            .await?
        } else {
            sqlx::query(
                "UPDATE package_dps SET state = $4, installed_version = COALESCE($5, installed_version),
                    attempts = $6, next_attempt_at = $7, last_copied = COALESCE($8, last_copied),
                    redistribute = CASE WHEN $12 = 1 THEN 1 WHEN $5 IS NULL THEN redistribute ELSE 0 END,
                    summary_date = $9, last_message = $10, lease_owner = NULL, lease_until = NULL
                 WHERE package_id = $1 AND nal_path = $2 AND job_seq = $3 AND lease_owner = $11",
            )
            .bind(o.package_id.clone())
            .bind(o.nal_path.clone())
            .bind(o.job_seq)
            .bind(o.state)
            .bind(o.installed_version)
            .bind(o.attempts)
            .bind(o.next_attempt_at.clone())
            .bind(o.installed_version.map(|_| o.time.clone()))
            .bind(o.time.clone())
            .bind(o.message.clone())
            .bind(o.lease_owner.clone())
            .bind(i64::from(o.needs_repair))
            .execute(&mut *tx)
            .await?
        };
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        insert_status(&mut *tx, status).await?;
        tx.commit().await?;
        Ok(true)
    }

    // ---- status messages ----

    pub async fn add_status(&self, m: &NewStatus) -> Result<i64> {
        insert_status(&self.pool, m).await
    }

    /// Deletes status messages older than `before`, and of each site's (this one's and every
    /// site's below, whose messages come up) the oldest beyond its newest `keep`, so one busy
    /// site cannot push the others' out. Returns how many went.
    pub async fn prune_statuses(&self, before: &str, keep: i64) -> Result<u64> {
        let mut tx = self.begin().await?;
        let old = sqlx::query("DELETE FROM status_messages WHERE time < $1")
            .bind(before.to_owned())
            .execute(&mut *tx)
            .await?;
        let mut gone = old.rows_affected();
        let sites: Vec<String> =
            sqlx::query_scalar("SELECT site_code FROM sites UNION SELECT value FROM settings WHERE key = 'site_code'")
                .fetch_all(&mut *tx)
                .await?;
        for site in sites {
            let excess = sqlx::query(
                "DELETE FROM status_messages WHERE site_code = $1 AND id <= (
                    SELECT id FROM status_messages WHERE site_code = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
            )
            .bind(site)
            .bind(keep)
            .execute(&mut *tx)
            .await?;
            gone += excess.rows_affected();
        }
        tx.commit().await?;
        Ok(gone)
    }

    pub async fn statuses(&self) -> Result<Vec<StatusRow>> {
        Ok(sqlx::query_as("SELECT * FROM status_messages ORDER BY id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Live FullAdministrator tokens other than `except`.
    pub async fn other_live_admins(&self, except: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM tokens WHERE role = 'FullAdministrator' AND revoked_at IS NULL AND id <> $1",
        )
        .bind(except.to_owned())
        .fetch_one(&self.pool)
        .await?)
    }

    // ---- tokens ----

    pub async fn insert_token(&self, t: &TokenRow, hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO tokens (id, name, role, hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(t.id.clone())
        .bind(t.name.clone())
        .bind(t.role.clone())
        .bind(hash.to_owned())
        .bind(t.created_at.clone())
        .execute(&self.pool)
        .await
        .map_err(conflict("token"))?;
        Ok(())
    }

    /// The live (not revoked) token with this hash.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>> {
        Ok(sqlx::query_as(
            "SELECT id, name, role, created_at, revoked_at FROM tokens WHERE hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash.to_owned())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Token `id`, live or revoked.
    pub async fn token(&self, id: &str) -> Result<Option<TokenRow>> {
        Ok(
            sqlx::query_as("SELECT id, name, role, created_at, revoked_at FROM tokens WHERE id = $1")
                .bind(id.to_owned())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRow>> {
        Ok(
            sqlx::query_as("SELECT id, name, role, created_at, revoked_at FROM tokens ORDER BY created_at, id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn revoke_token(&self, id: &str, when: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id.to_owned())
            .bind(when.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }
}

async fn insert_status<'e, E: sqlx::Executor<'e, Database = Any>>(e: E, m: &NewStatus) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO status_messages (package_id, nal_path, site_code, message_id, message_state, severity,
            description, bytes_transferred, time)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(m.package_id.clone())
    .bind(m.nal_path.clone())
    .bind(m.site_code.clone())
    .bind(m.message_id)
    .bind(m.message_state)
    .bind(m.severity)
    .bind(m.description.clone())
    .bind(m.bytes_transferred)
    .bind(m.time.clone())
    .fetch_one(e)
    .await?)
}

async fn insert_statuses(tx: &mut Transaction<'static, Any>, statuses: &[NewStatus]) -> Result<()> {
    for m in statuses {
        insert_status(&mut **tx, m).await?;
    }
    Ok(())
}

/// The target version is read from the package in the same statement, so a refresh running
/// at the same time can never leave a DP aimed at an older version.
/// Writes a target, unless its package is being deleted ([`DbError::Deleting`]): checked in
/// the write itself, so a target racing a delete cannot bring a removed row back.
async fn upsert_target(tx: &mut Transaction<'static, Any>, t: &NewTarget) -> Result<()> {
    let r = sqlx::query(
        "INSERT INTO package_dps (package_id, nal_path, site_code, state, target_version, redistribute, summary_date, last_message,
            job_key, queued_at)
         SELECT $1, $2, $3, $4, p.source_version, $5, $6, $7, $8, $6 FROM packages p
         WHERE p.package_id = $1 AND p.deleting = 0
         ON CONFLICT (package_id, nal_path) DO UPDATE SET
            state = CASE WHEN package_dps.installed_version > 0 THEN $9 ELSE excluded.state END,
            target_version = excluded.target_version,
            redistribute = CASE WHEN excluded.redistribute = 1 THEN 1 ELSE package_dps.redistribute END,
            attempts = 0, next_attempt_at = NULL,
            summary_date = excluded.summary_date, last_message = excluded.last_message, queued_at = excluded.queued_at,
            job_seq = package_dps.job_seq + 1, lease_owner = NULL, lease_until = NULL,
            progress_bytes = 0, progress_done = 0, progress_total = 0",
    )
    .bind(t.package_id.clone())
    .bind(t.nal_path.clone())
    .bind(t.site_code.clone())
    .bind(t.state)
    .bind(i64::from(t.redistribute))
    .bind(t.time.clone())
    .bind(t.message.clone())
    .bind(uuid::Uuid::new_v4().simple().to_string())
    .bind(t.state_if_installed)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() == 0 {
        // The transaction is dropped, so nothing of the caller's batch is applied.
        return Err(DbError::Deleting(t.package_id.clone()));
    }
    let intent = if t.redistribute {
        Intent::Redistribute
    } else {
        Intent::Target
    };
    hierarchy::note_intent(tx, &t.package_id, &t.nal_path, intent).await
}

async fn set_state(tx: &mut Transaction<'static, Any>, c: &TargetChange) -> Result<u64> {
    let r = sqlx::query(
        "UPDATE package_dps SET state = $3, summary_date = $4, last_message = $5, attempts = 0, next_attempt_at = NULL,
            queued_at = $4, job_seq = job_seq + 1, lease_owner = NULL, lease_until = NULL,
            progress_bytes = 0, progress_done = 0, progress_total = 0
         WHERE package_id = $1 AND nal_path = $2 AND ($6 IS NULL OR job_seq = $6)",
    )
    .bind(c.package_id.clone())
    .bind(c.nal_path.clone())
    .bind(c.state)
    .bind(c.time.clone())
    .bind(c.message.clone())
    .bind(c.expect_seq)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() > 0
        && let Some(intent) = hierarchy::intent_of_state(c.state)
    {
        hierarchy::note_intent(tx, &c.package_id, &c.nal_path, intent).await?;
    }
    Ok(r.rows_affected())
}

async fn insert_package_in(tx: &mut Transaction<'static, Any>, p: &PackageRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO packages (package_id, package_type, name, version, manufacturer, language, description,
            pkg_source_path, pkg_source_flag, source_version, source_date, last_refresh_time, package_size,
            pkg_flags, priority, action_in_progress, source_site, refresh_schedule, manifest_hash, created_at,
            schedule_checked_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
    )
    .bind(p.package_id.clone())
    .bind(p.package_type)
    .bind(p.name.clone())
    .bind(p.version.clone())
    .bind(p.manufacturer.clone())
    .bind(p.language.clone())
    .bind(p.description.clone())
    .bind(p.pkg_source_path.clone())
    .bind(p.pkg_source_flag)
    .bind(p.source_version)
    .bind(p.source_date.clone())
    .bind(p.last_refresh_time.clone())
    .bind(p.package_size)
    .bind(p.pkg_flags)
    .bind(p.priority)
    .bind(p.action_in_progress)
    .bind(p.source_site.clone())
    .bind(p.refresh_schedule.clone())
    .bind(p.manifest_hash.clone())
    .bind(p.created_at.clone())
    .bind(p.schedule_checked_at.clone())
    .execute(&mut **tx)
    .await
    .map_err(conflict(format!("PackageID {}", p.package_id)))?;
    Ok(())
}
