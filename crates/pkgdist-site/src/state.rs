//! What every request handler shares.

use std::collections::HashMap;
use std::sync::Arc;

use pkgdist_content::Library;
use pkgdist_core::SiteCode;
use pkgdist_db::Db;
use tokio::sync::{Mutex, Notify};

use pkgdist_node::pace::{Limit, Pacer};

use crate::config::Distribution;

#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

/// A DP's rate limit, from its settings (checked when they were set).
pub fn limit_of(dp: &pkgdist_db::DpRow) -> Option<Limit> {
    let positive = |v: i64| u64::try_from(v).ok().filter(|v| *v > 0);
    match dp.rate_mode {
        1 => Some(Limit::Pulse {
            block: positive(dp.pulse_block_kb)? * 1024,
            delay: std::time::Duration::from_secs(positive(dp.pulse_delay_secs).unwrap_or(0)),
        }),
        2 => Some(Limit::Share {
            percent: pkgdist_core::availability::parse_hourly_percent(&dp.hourly_percent).ok()?,
            zone: jiff::tz::TimeZone::system(),
        }),
        3 => positive(dp.rate_bytes_per_sec).map(Limit::Rate),
        _ => None,
    }
}

#[derive(Debug)]
pub struct Inner {
    pub db: Db,
    pub library: Arc<Library>,
    pub site_code: SiteCode,
    pub site_name: String,
    pub max_body_bytes: usize,
    /// `[distribution]` with the administrator's API changes over it; read with [`Inner::dist`].
    distribution: std::sync::RwLock<Distribution>,
    /// Wakes the distribution manager: package-on-DP rows changed.
    pub work: Notify,
    /// Secret from which the site derives what it presents to each DP.
    node_key: [u8; 32],
    /// Rate limits of DPs that have one, by NAL path: shared by all requests to the same DP.
    pacers: std::sync::Mutex<HashMap<String, Arc<Pacer>>>,
    /// One refresh at a time per package: two would both compute the same next version.
    refresh_locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Wakes the replicator: a row below may need content from the parent.
    pub replicate: Notify,
    /// What the parent last asked this site to send up (`content_up`).
    pub wanted_above: crate::content_up::Wanted,
    /// What this site last asked each child to send up (`content_up::wanted_of`).
    pub wanted_cache: crate::content_up::WantedCache,
    /// Where this site sits in the hierarchy: its parent (if any) and how many levels below
    /// the top it is, as the parent last said.
    hierarchy: std::sync::RwLock<Position>,
    /// Failed authentications per client address (answered slowly past a few).
    pub auth_failures: crate::auth::Failures,
    /// The folders packages may be made from (`allowed-source-roots`); `None`: any.
    pub source_roots: Option<Vec<std::path::PathBuf>>,
    /// Folders no source may be, be inside or hold (see [`Setup::private`]).
    pub private: Vec<std::path::PathBuf>,
    tls: Option<Arc<crate::tls::SiteTls>>,
    /// What `/metrics` serves.
    pub metrics: crate::metrics::SiteMetrics,
    /// Snapshots running now, and how far each has got.
    pub snapshots: crate::progress::Snapshots,
}

/// This site's place in the hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// The parent's site code; `None` at the top.
    pub parent: Option<String>,
    /// 0 at the top.
    pub depth: u32,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// What a site is set up with, besides its database and library.
#[derive(Debug, Clone)]
pub struct Setup {
    pub site_code: SiteCode,
    pub site_name: String,
    pub max_body_bytes: usize,
    pub distribution: Distribution,
    /// Secret from which the site derives what it presents to each DP.
    pub node_key: [u8; 32],
    /// The folders packages may be made from; `None`: any.
    pub source_roots: Option<Vec<std::path::PathBuf>>,
    /// Folders no source may be, be inside or hold: the site's data folder (and in `pkgdist
    /// up`, the folder of the site and its DPs).
    pub private: Vec<std::path::PathBuf>,
    /// The site's CA and certificate; `None` in tests of the API alone.
    pub tls: Option<Arc<crate::tls::SiteTls>>,
}

impl AppState {
    pub fn new(db: Db, library: Arc<Library>, site_code: SiteCode, site_name: String, max_body_bytes: usize) -> Self {
        Self::with(
            db,
            library,
            Setup {
                site_code,
                site_name,
                max_body_bytes,
                distribution: Distribution::default(),
                node_key: [0; 32],
                source_roots: None,
                private: Vec::new(),
                tls: None,
            },
        )
    }

    pub fn with(db: Db, library: Arc<Library>, setup: Setup) -> Self {
        let Setup {
            site_code,
            site_name,
            max_body_bytes,
            distribution,
            node_key,
            source_roots,
            private,
            tls,
        } = setup;
        Self(Arc::new(Inner {
            db,
            library,
            site_code,
            site_name,
            max_body_bytes,
            distribution: std::sync::RwLock::new(distribution),
            work: Notify::new(),
            node_key,
            pacers: std::sync::Mutex::new(HashMap::new()),
            refresh_locks: std::sync::Mutex::new(HashMap::new()),
            replicate: Notify::new(),
            wanted_above: Default::default(),
            wanted_cache: Default::default(),
            hierarchy: std::sync::RwLock::new(Position::default()),
            auth_failures: crate::auth::Failures::default(),
            source_roots,
            private,
            tls,
            metrics: crate::metrics::SiteMetrics::new(),
            snapshots: crate::progress::Snapshots::default(),
        }))
    }

    /// The pacer of a DP with a rate limit (at its current setting), `None` for unlimited.
    pub fn pacer(&self, dp: &pkgdist_db::DpRow) -> Option<Arc<Pacer>> {
        let mut pacers = self.pacers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(limit) = limit_of(dp) else {
            pacers.remove(&dp.nal_path);
            return None;
        };
        let p = pacers
            .entry(dp.nal_path.clone())
            .or_insert_with(|| Arc::new(Pacer::new(limit.clone())));
        p.set(limit);
        Some(p.clone())
    }

    /// The pacer of a child site with a rate limit on its link, `None` for unlimited.
    pub fn site_pacer(&self, site: &pkgdist_db::SiteRow) -> Option<Arc<Pacer>> {
        let key = format!("site:{}", site.site_code);
        let mut pacers = self.pacers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(rate) = u64::try_from(site.rate_bytes_per_sec).ok().filter(|r| *r > 0) else {
            pacers.remove(&key);
            return None;
        };
        let p = pacers
            .entry(key)
            .or_insert_with(|| Arc::new(Pacer::new(Limit::Rate(rate))));
        p.set(Limit::Rate(rate));
        Some(p.clone())
    }

    pub fn refresh_lock(&self, package: &str) -> Arc<Mutex<()>> {
        let mut locks = self.refresh_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(package.to_owned()).or_default().clone()
    }
}

impl Inner {
    pub fn position(&self) -> Position {
        self.hierarchy.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_position(&self, p: Position) {
        *self.hierarchy.write().unwrap_or_else(|e| e.into_inner()) = p;
    }

    /// Levels below the top.
    pub fn depth(&self) -> u32 {
        self.position().depth
    }

    /// The distribution settings in force now.
    pub fn dist(&self) -> Distribution {
        self.distribution.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_dist(&self, d: Distribution) {
        *self.distribution.write().unwrap_or_else(|e| e.into_inner()) = d;
    }

    /// The site's CA and certificate, if it speaks TLS.
    pub fn tls(&self) -> Option<&crate::tls::SiteTls> {
        self.tls.as_deref()
    }

    /// [`Self::tls`], shared.
    pub fn tls_shared(&self) -> Option<Arc<crate::tls::SiteTls>> {
        self.tls.clone()
    }

    /// The enrollment token to hand out for a new `secret`: pinned to the site's CA when it
    /// has one.
    pub fn enrollment_token(&self, secret: String) -> String {
        match self.tls() {
            Some(t) => t.token(secret),
            None => secret,
        }
    }

    /// What the site presents to the DP whose credential hashes to `credential_hash`: derived,
    /// so the site stores no DP secret, and new with every enrollment.
    pub fn site_token(&self, credential_hash: &str) -> String {
        let mac = blake3::keyed_hash(&self.node_key, format!("site-to-dp\n{credential_hash}").as_bytes());
        format!("pkgs_{}", mac.to_hex())
    }
}
