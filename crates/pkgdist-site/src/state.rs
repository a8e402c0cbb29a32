//! What every request handler shares.

use std::collections::HashMap;
use std::sync::Arc;

use pkgdist_content::Library;
use pkgdist_core::SiteCode;
use pkgdist_db::Db;
use tokio::sync::Mutex;

#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub db: Db,
    pub library: Arc<Library>,
    pub site_code: SiteCode,
    pub site_name: String,
    pub max_body_bytes: usize,
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
        Self(Arc::new(Inner {
            db,
            library,
            site_code,
            site_name,
            max_body_bytes,
            refresh_locks: std::sync::Mutex::new(HashMap::new()),
        }))
    }

    pub fn refresh_lock(&self, package: &str) -> Arc<Mutex<()>> {
        let mut locks = self.refresh_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(package.to_owned()).or_default().clone()
    }
}
