//! `site.toml`: written with the embedded defaults and comments on first start, read after.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::SiteError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SiteConfig {
    /// The site's three-character code; it never changes once the site exists.
    pub site_code: String,
    #[serde(default = "default_name")]
    pub site_name: String,
    /// Address the management API listens on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Metadata database URL; empty means SQLite in the data folder.
    #[serde(default)]
    pub database: String,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    #[serde(default)]
    pub distribution: Distribution,
}

/// `[distribution]`: how the site sends content to its DPs (ConfigMgr's Software Distribution
/// component settings).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Distribution {
    /// Jobs running at once over all packages and DPs (ConfigMgr's 3 packages × 5 DPs).
    #[serde(default = "default_parallel")]
    pub max_parallel_jobs: usize,
    /// Attempts before a DP is marked INSTALL_FAILED (or REMOVAL_FAILED).
    #[serde(default = "default_retry_count")]
    pub retry_count: u32,
    /// Seconds between attempts.
    #[serde(default = "default_retry_delay")]
    pub retry_delay_secs: u64,
    /// How often a running job's status is asked of the DP, in milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

impl Default for Distribution {
    fn default() -> Self {
        Self {
            max_parallel_jobs: default_parallel(),
            retry_count: default_retry_count(),
            retry_delay_secs: default_retry_delay(),
            poll_ms: default_poll_ms(),
        }
    }
}

fn default_parallel() -> usize {
    15
}

fn default_retry_count() -> u32 {
    100
}

fn default_retry_delay() -> u64 {
    30 * 60
}

fn default_poll_ms() -> u64 {
    500
}

fn default_name() -> String {
    "pkgdist site".into()
}

fn default_listen() -> String {
    "127.0.0.1:8470".into()
}

fn default_max_body() -> usize {
    1 << 20
}

impl SiteConfig {
    /// Reads `DIR/site.toml`, or writes it on first start. A `--site-code` that contradicts
    /// the file is refused: a site's code is fixed for life.
    pub fn load_or_init(dir: &Path, site_code: Option<&str>) -> Result<(Self, bool), SiteError> {
        let path = dir.join("site.toml");
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| SiteError::io(&path, e))?;
            let cfg: SiteConfig =
                toml::from_str(&text).map_err(|e| SiteError::Config(format!("{}: {e}", path.display())))?;
            if let Some(code) = site_code
                && code != cfg.site_code
            {
                return Err(SiteError::Config(format!(
                    "this site's code is {} (in {}); a site code cannot change. Omit --site-code or use another --data folder",
                    cfg.site_code,
                    path.display()
                )));
            }
            cfg.validate()?;
            return Ok((cfg, false));
        }
        let code = site_code.ok_or_else(|| {
            SiteError::Config(format!(
                "{} does not exist yet: give --site-code (e.g. PS1) for the new site",
                path.display()
            ))
        })?;
        let cfg = SiteConfig {
            site_code: code.to_owned(),
            site_name: default_name(),
            listen: default_listen(),
            database: String::new(),
            max_body_bytes: default_max_body(),
            distribution: Distribution::default(),
        };
        cfg.validate()?;
        std::fs::create_dir_all(dir).map_err(|e| SiteError::io(dir, e))?;
        write_atomic(&path, cfg.template().as_bytes())?;
        Ok((cfg, true))
    }

    fn validate(&self) -> Result<(), SiteError> {
        self.site_code
            .parse::<pkgdist_core::SiteCode>()
            .map_err(|e| SiteError::Config(e.to_string()))?;
        let d = &self.distribution;
        if d.max_parallel_jobs == 0 || d.retry_count == 0 || d.poll_ms == 0 {
            return Err(SiteError::Config(
                "[distribution] max-parallel-jobs, retry-count and poll-ms must be at least 1".into(),
            ));
        }
        Ok(())
    }

    fn template(&self) -> String {
        format!(
            r#"# pkgdist site configuration, written on first start with the embedded defaults.
# Command-line options override these values.

# The site's three-character code (A-Z, 0-9, starting with a letter). Fixed for life:
# PackageIDs start with it.
site-code = "{code}"

# Shown in SMS_Site.
site-name = "{name}"

# Address of the management API (--listen overrides it; 127.0.0.1:0 picks a free port).
listen = "{listen}"

# Metadata database. Empty: SQLite in this folder (site.db). For PostgreSQL:
# database = "postgres://user@host/dbname"
database = ""

# Largest request body the API accepts, in bytes.
max-body-bytes = {max}

# How content goes to distribution points (ConfigMgr's Software Distribution settings).
[distribution]
# Transfers running at once, over all packages and DPs (ConfigMgr: 3 packages x 5 DPs).
max-parallel-jobs = {par}
# Attempts before a DP is marked INSTALL_FAILED, and seconds between them (ConfigMgr: 100, 30 min).
retry-count = {retries}
retry-delay-secs = {delay}
# How often a running transfer's progress is asked of the DP, in milliseconds.
poll-ms = {poll}
"#,
            code = self.site_code,
            name = self.site_name,
            listen = self.listen,
            max = self.max_body_bytes,
            par = self.distribution.max_parallel_jobs,
            retries = self.distribution.retry_count,
            delay = self.distribution.retry_delay_secs,
            poll = self.distribution.poll_ms,
        )
    }

    /// The database URL to use for data folder `dir`.
    pub fn database_url(&self, dir: &Path) -> String {
        if self.database.is_empty() {
            pkgdist_db::Db::sqlite_url(&dir.join("site.db"))
        } else {
            self.database.clone()
        }
    }
}

/// Writes a file so that it is either absent or complete: temp file, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), SiteError> {
    pkgdist_node::util::write_file(path, data, false).map_err(|e| SiteError::io(path, e))
}
