//! What every request handler shares.

use std::collections::HashMap;
use std::sync::Arc;

use pkgdist_content::Library;
use pkgdist_core::SiteCode;
use pkgdist_db::Db;
use tokio::sync::{Mutex, Notify};

use crate::config::Distribution;

#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub db: Db,
    pub library: Arc<Library>,
    pub site_code: SiteCode,
    pub site_name: String,
    pub max_body_bytes: usize,
    pub distribution: Distribution,
    /// Wakes the distribution manager: package-on-DP rows changed.
    pub work: Notify,
    /// Secret from which the site derives what it presents to each DP.
    node_key: [u8; 32],
    /// One refresh at a time per package: two would both compute the same next version.
    refresh_locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(db: Db, library: Arc<Library>, site_code: SiteCode, site_name: String, max_body_bytes: usize) -> Self {
        Self::with(
            db,
            library,
            site_code,
            site_name,
            max_body_bytes,
            Distribution::default(),
            [0; 32],
        )
    }

    pub fn with(
        db: Db,
        library: Arc<Library>,
        site_code: SiteCode,
        site_name: String,
        max_body_bytes: usize,
        distribution: Distribution,
        node_key: [u8; 32],
    ) -> Self {
        Self(Arc::new(Inner {
            db,
            library,
            site_code,
            site_name,
            max_body_bytes,
            distribution,
            work: Notify::new(),
            node_key,
            refresh_locks: std::sync::Mutex::new(HashMap::new()),
        }))
    }

    pub fn refresh_lock(&self, package: &str) -> Arc<Mutex<()>> {
        let mut locks = self.refresh_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(package.to_owned()).or_default().clone()
    }
}

impl Inner {
    /// What the site presents to the DP whose credential hashes to `credential_hash`: derived,
    /// so the site stores no DP secret, and new with every enrollment.
    pub fn site_token(&self, credential_hash: &str) -> String {
        let mac = blake3::keyed_hash(&self.node_key, format!("site-to-dp\n{credential_hash}").as_bytes());
        format!("pkgs_{}", mac.to_hex())
    }
}
