//! `site.toml`: written with the embedded defaults and comments on first start, read after.

use std::path::{Path, PathBuf};

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
    /// The folders packages may be made from: a PkgSourcePath must be inside one, after its
    /// symlinks are resolved. `None` (a site.toml written before the setting existed): any
    /// folder the site can read, with a warning at every start. A new site.toml lists none
    /// for `site run` (sources are refused until the administrator says where they are) and
    /// the current folder for `pkgdist up` (the quick start's sources are under it).
    #[serde(default)]
    pub allowed_source_roots: Option<Vec<PathBuf>>,
    #[serde(default)]
    pub distribution: Distribution,
    #[serde(default)]
    pub tls: TlsSettings,
}

/// `[tls]`: the site's listener speaks TLS with a certificate from the site's own CA
/// (`DIR/tls/ca.pem`), always; these settings say for which names, and whether plain HTTP
/// is served beside it off loopback.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsSettings {
    /// Host names and IP addresses the site's certificate is for, beyond `localhost`,
    /// `127.0.0.1`, `::1`, the machine's host name and the listen address: the names DPs,
    /// child sites and administrators use in the site's URL.
    #[serde(default)]
    pub names: Vec<String>,
    /// Serve plain HTTP too on a listener that is not on a loopback address (tokens then
    /// cross the network readable). Off by default; a warning at every start when on.
    #[serde(default)]
    pub allow_plain_http: bool,
    /// The CA to use instead of the one the site makes (an intermediate of the company's
    /// PKI, say): its certificate, first in the file with the chain above it after, and its
    /// key. Both or neither.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    #[serde(default)]
    pub ca_key: Option<PathBuf>,
}

/// `[distribution]`: how the site sends content to its DPs (ConfigMgr's Software Distribution
/// component settings).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Distribution {
    /// Packages sent at once (ConfigMgr's "Maximum number of packages", default 3).
    #[serde(default = "default_max_packages")]
    pub max_packages: usize,
    /// DPs one package is sent to at once (ConfigMgr's "Maximum threads per package", default 5).
    #[serde(default = "default_max_threads")]
    pub max_threads_per_package: usize,
    /// Attempts before a DP is marked INSTALL_FAILED (or REMOVAL_FAILED).
    #[serde(default = "default_retry_count")]
    pub retry_count: u32,
    /// Seconds between attempts.
    #[serde(default = "default_retry_delay")]
    pub retry_delay_secs: u64,
    /// How often a running job's status is asked of the DP, in milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// How long a worker's hold on a job lasts without renewal, in seconds: a job whose worker
    /// died (in another site process) is taken up again after this long.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// Jobs one pull DP runs at once (ConfigMgr's "PullDP Number Of Active Jobs", default 50).
    /// Pull DPs are not held to the two limits above: they fetch from their sources, not the
    /// site.
    #[serde(default = "default_pull_jobs")]
    pub pull_dp_max_jobs: usize,
    /// Before 0.2: jobs at once over everything. Replaced by the two limits above; accepted
    /// and ignored (with a warning) so an older site.toml still loads.
    #[serde(default, skip_serializing)]
    pub max_parallel_jobs: Option<usize>,
}

impl Default for Distribution {
    fn default() -> Self {
        Self {
            max_packages: default_max_packages(),
            max_threads_per_package: default_max_threads(),
            retry_count: default_retry_count(),
            retry_delay_secs: default_retry_delay(),
            poll_ms: default_poll_ms(),
            lease_secs: default_lease_secs(),
            pull_dp_max_jobs: default_pull_jobs(),
            max_parallel_jobs: None,
        }
    }
}

/// The settings an administrator may change through the API (`PKGDIST_DistributionSettings`).
/// They are kept in the site database and take precedence over site.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DistributionOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_packages: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_threads_per_package: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay_secs: Option<u64>,
}

impl Distribution {
    pub fn with(&self, o: &DistributionOverrides) -> Distribution {
        Distribution {
            max_packages: o.max_packages.unwrap_or(self.max_packages),
            max_threads_per_package: o.max_threads_per_package.unwrap_or(self.max_threads_per_package),
            retry_count: o.retry_count.unwrap_or(self.retry_count),
            retry_delay_secs: o.retry_delay_secs.unwrap_or(self.retry_delay_secs),
            ..self.clone()
        }
    }

    /// ConfigMgr's ranges, and what pkgdist needs to work at all.
    pub fn check(&self) -> Result<(), OutOfRange> {
        let bad = |setting: &'static str, range: &'static str| Err(OutOfRange { setting, range });
        if !(1..=50).contains(&self.max_packages) {
            return bad("max-packages (MaximumPackageCount)", "1-50");
        }
        if !(1..=999).contains(&self.max_threads_per_package) {
            return bad("max-threads-per-package (MaximumThreadsPerPackage)", "1-999");
        }
        if !(1..=1000).contains(&self.retry_count) {
            return bad("retry-count (RetryCount)", "1-1000");
        }
        if !(1..=86_400).contains(&self.retry_delay_secs) {
            return bad("retry-delay-secs (DelayBeforeRetryingSecs)", "1-86400 seconds");
        }
        if !(1..=60_000).contains(&self.poll_ms) {
            return bad("poll-ms", "1-60000");
        }
        // A lease must outlast a few polls, or another site process takes live jobs over.
        if !(2..=86_400).contains(&self.lease_secs) || self.lease_secs * 1000 < self.poll_ms * 10 {
            return bad("lease-secs", "2-86400 seconds and at least 10 polls (poll-ms)");
        }
        if !(1..=1000).contains(&self.pull_dp_max_jobs) {
            return bad("pull-dp-max-jobs", "1-1000");
        }
        Ok(())
    }
}

/// A distribution setting outside the range it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{setting} must be {range}")]
pub struct OutOfRange {
    pub setting: &'static str,
    pub range: &'static str,
}

fn default_pull_jobs() -> usize {
    50
}

fn default_max_packages() -> usize {
    3
}

fn default_max_threads() -> usize {
    5
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

fn default_lease_secs() -> u64 {
    60
}

/// The name of a site whose site.toml gives none.
pub const DEFAULT_SITE_NAME: &str = "pkgdist site";

fn default_name() -> String {
    DEFAULT_SITE_NAME.into()
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
        Self::load_or_init_with(dir, site_code, Vec::new())
    }

    /// [`SiteConfig::load_or_init`], a new site.toml allowing sources in `source_roots`.
    pub fn load_or_init_with(
        dir: &Path,
        site_code: Option<&str>,
        source_roots: Vec<PathBuf>,
    ) -> Result<(Self, bool), SiteError> {
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
            allowed_source_roots: Some(source_roots),
            distribution: Distribution::default(),
            tls: TlsSettings::default(),
        };
        cfg.validate()?;
        std::fs::create_dir_all(dir).map_err(|e| SiteError::io(dir, e))?;
        // Private: `database` may carry a PostgreSQL password.
        pkgdist_node::util::write_file(&path, cfg.template().as_bytes(), true).map_err(|e| SiteError::io(&path, e))?;
        Ok((cfg, true))
    }

    fn validate(&self) -> Result<(), SiteError> {
        self.site_code
            .parse::<pkgdist_core::SiteCode>()
            .map_err(|e| SiteError::Config(e.to_string()))?;
        if self.distribution.max_parallel_jobs.is_some() {
            tracing::warn!(
                "site.toml: [distribution] max-parallel-jobs is no longer used; set max-packages and max-threads-per-package instead"
            );
        }
        match &self.allowed_source_roots {
            Some(roots) => {
                if let Some(rel) = roots.iter().find(|r| !r.is_absolute()) {
                    return Err(SiteError::Config(format!(
                        "allowed-source-roots: {} is not an absolute path",
                        rel.display()
                    )));
                }
            }
            None => tracing::warn!(
                "site.toml has no allowed-source-roots: packages may be made from any folder the site can read; list the folders sources live in"
            ),
        }
        self.distribution
            .check()
            .map_err(|e| SiteError::Config(format!("[distribution] {e}")))
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

# The folders packages may be made from: a package's PkgSourcePath must be inside one (after
# its symlinks are resolved). Empty: no package may have a source until folders are listed
# here, e.g. ["/srv/pkgsource"]. Without this setting, any folder the site can read.
allowed-source-roots = {roots}

# How content goes to distribution points (ConfigMgr's Software Distribution settings).
# The first four can also be changed through the API (PKGDIST_DistributionSettings, or
# `pkgdist settings set`); values set there are kept in the database and win over these.
[distribution]
# Packages sent at once, and DPs one package is sent to at once (ConfigMgr: 3 x 5).
# Higher-priority packages go first; among DPs, the ones that took transfers fastest.
max-packages = {packages}
max-threads-per-package = {threads}
# Attempts before a DP is marked INSTALL_FAILED, and seconds between them (ConfigMgr: 100, 30 min).
retry-count = {retries}
retry-delay-secs = {delay}
# How often a running transfer's progress is asked of the DP, in milliseconds.
poll-ms = {poll}
# Seconds a job stays held by a worker that stopped renewing it (a site process that died)
# before another takes it up.
lease-secs = {lease}
# Jobs one pull DP runs at once (ConfigMgr's "PullDP Number Of Active Jobs"; raising it is
# not recommended). Pull DPs fetch from their source DPs, so the limits above do not apply.
pull-dp-max-jobs = {pull}

# TLS: the site serves HTTPS with a certificate from its own CA (tls/ca.pem in this folder;
# DPs and child sites pin it through their enrollment tokens, and get certificates from it).
[tls]
# Names the certificate is for, beyond localhost, 127.0.0.1, ::1, this machine's host name
# and the listen address: every name DPs and administrators put in the site's URL.
names = []
# Plain HTTP is served on loopback listeners only. true: also on this listener, whatever its
# address (tokens then cross the network readable).
allow-plain-http = false
# Your own CA instead of the one the site makes (an intermediate of your PKI): its
# certificate (then the chain above it) and its key, PEM. Set before DPs enroll: they pin it.
# ca-cert = "/etc/pkgdist/ca.pem"
# ca-key = "/etc/pkgdist/ca-key.pem"
"#,
            code = self.site_code,
            name = self.site_name,
            listen = self.listen,
            max = self.max_body_bytes,
            roots = toml_paths(self.allowed_source_roots.as_deref().unwrap_or_default()),
            packages = self.distribution.max_packages,
            threads = self.distribution.max_threads_per_package,
            lease = self.distribution.lease_secs,
            retries = self.distribution.retry_count,
            delay = self.distribution.retry_delay_secs,
            poll = self.distribution.poll_ms,
            pull = self.distribution.pull_dp_max_jobs,
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

/// Paths as a TOML array of strings, written by the TOML crate (so any folder name gives a
/// site.toml that parses).
fn toml_paths(paths: &[PathBuf]) -> String {
    let items = paths
        .iter()
        .map(|p| toml::Value::String(p.display().to_string()))
        .collect();
    toml::Value::Array(items).to_string()
}

/// Writes a file others may read (a ready-file) so that it is either absent or complete.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), SiteError> {
    pkgdist_node::util::write_file(path, data, false).map_err(|e| SiteError::io(path, e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn any_folder_name_gives_a_site_toml_that_parses() {
        let odd = std::path::PathBuf::from("/srv/a \"b\" \\c\nd\te");
        let line = format!("roots = {}", super::toml_paths(&[odd.clone(), "/plain".into()]));
        let parsed: toml::Value = toml::from_str(&line).expect("parses");
        let roots = parsed["roots"].as_array().expect("an array");
        assert_eq!(roots[0].as_str(), odd.to_str());
        assert_eq!(roots[1].as_str(), Some("/plain"));
    }
}
