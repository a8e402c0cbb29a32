//! Snapshots running now and how far each has got: what `pkgdist package create` and
//! `refresh` show as a progress bar with rate and time left, and the console can show. Kept in
//! memory only (a snapshot is work of this process), by package, and forgotten when the
//! snapshot ends, whatever its outcome (see [`Running`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

/// One snapshot's progress, fed by the content library as it reads.
#[derive(Debug)]
pub struct Snapshot {
    started: Instant,
    total_bytes: AtomicU64,
    files: AtomicU64,
    done_bytes: AtomicU64,
}

impl pkgdist_content::snapshot::Progress for Snapshot {
    fn start(&self, total_bytes: u64, files: u64) {
        self.total_bytes.store(total_bytes, Ordering::Relaxed);
        self.files.store(files, Ordering::Relaxed);
    }

    fn advance(&self, bytes: u64) {
        self.done_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The snapshots running now, by package ID.
#[derive(Debug, Default)]
pub struct Snapshots(Mutex<HashMap<String, Arc<Snapshot>>>);

/// A snapshot's entry for as long as it runs: dropped, it is forgotten.
#[derive(Debug)]
pub struct Running<'a> {
    all: &'a Snapshots,
    package: String,
    pub progress: Arc<Snapshot>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.all.lock().remove(&self.package);
    }
}

impl Snapshots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Snapshot>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `package`'s source is being read.
    pub fn begin(&self, package: &str) -> Running<'_> {
        let progress = Arc::new(Snapshot {
            started: Instant::now(),
            total_bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
            done_bytes: AtomicU64::new(0),
        });
        self.lock().insert(package.to_owned(), progress.clone());
        Running {
            all: self,
            package: package.to_owned(),
            progress,
        }
    }

    /// Every snapshot running now: PackageID, TotalBytes and Files (0 until the walk of the
    /// source is done), DoneBytes (read, or skipped as unchanged), ElapsedSecs.
    pub fn list(&self) -> Vec<Value> {
        let mut all: Vec<Value> = self
            .lock()
            .iter()
            .map(|(id, s)| {
                json!({
                    "PackageID": id,
                    "TotalBytes": s.total_bytes.load(Ordering::Relaxed),
                    "Files": s.files.load(Ordering::Relaxed),
                    "DoneBytes": s.done_bytes.load(Ordering::Relaxed),
                    "ElapsedSecs": s.started.elapsed().as_secs_f64(),
                })
            })
            .collect();
        all.sort_by(|a, b| a["PackageID"].as_str().cmp(&b["PackageID"].as_str()));
        all
    }
}
