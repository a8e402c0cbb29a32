//! The DP's jobs: one JSON file each in `DIR/jobs/`, rewritten (atomically) at every step that
//! matters — accepted, planned, each batch made durable, finished — so a DP killed at any point
//! resumes its running jobs on start, keeps the chunks it had verified, and keeps counting the
//! bytes it received from where it was.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pkgdist_content::Library;
use pkgdist_core::{ContentId, Digest};
use pkgdist_node::fetch::{self, FetchError, Fetcher, Which};
use pkgdist_proto::node::{Job, JobKind, JobState, JobStatus};
use tracing::Instrument;

use crate::DpError;
use crate::identity::write_private;
use crate::metrics::{JobMetrics, Outcome, Validation};

/// How long a finished job's file is kept.
pub const KEEP_FINISHED: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The job files, and the jobs running in this process.
#[derive(Debug, Clone)]
pub struct Jobs {
    dir: PathBuf,
    library: Arc<Library>,
    fetcher: Fetcher,
    site_url: String,
    running: Arc<Mutex<HashMap<String, Arc<AtomicBool>>>>,
    /// Installs hold it shared, removals (which collect garbage) exclusively: garbage
    /// collection must never see the chunks of a version still being fetched as garbage.
    gc_gate: Arc<tokio::sync::RwLock<()>>,
    /// Serializes job-file writes with cancellation, so a cancelled job's file never goes back
    /// to "running".
    files: Arc<Mutex<()>>,
    /// What ended jobs are counted into.
    metrics: JobMetrics,
    /// Ends that could not be written to their job file (a full disk): answered from here, so
    /// the site learns that the job ended rather than reading "running" from its file for
    /// ever. (After a restart the job runs again, as its file says.)
    unsaved: Arc<Mutex<HashMap<String, JobStatus>>>,
    /// The verified copies clients are sent: a validation re-reads those of its version.
    served: Option<Arc<pkgdist_node::served::ServedFiles>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Resolves once `flag` is set.
async fn cancelled(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Job IDs become file names: keep them to a safe alphabet.
fn check_id(id: &str) -> Result<(), DpError> {
    let ok = !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(DpError::BadJob(format!(
            "job ID {id:?} must be 1-100 letters, digits, '-', '_' or '.'"
        )))
    }
}

impl Jobs {
    pub fn open(
        dir: PathBuf,
        library: Arc<Library>,
        fetcher: Fetcher,
        site_url: String,
        metrics: JobMetrics,
    ) -> Result<Self, DpError> {
        std::fs::create_dir_all(&dir).map_err(|e| DpError::io(&dir, e))?;
        Ok(Self {
            dir,
            library,
            fetcher,
            site_url,
            running: Arc::default(),
            gc_gate: Arc::default(),
            files: Arc::default(),
            metrics,
            unsaved: Arc::default(),
            served: None,
        })
    }

    /// Validations re-read the copies in `served` of the files they check, and drop damaged
    /// ones (damage their recorded identity cannot show, such as a bit flipped on disk).
    pub fn with_served(mut self, served: Arc<pkgdist_node::served::ServedFiles>) -> Self {
        self.served = Some(served);
        self
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Jobs running in this process now.
    pub fn running(&self) -> usize {
        lock(&self.running).len()
    }

    pub fn get(&self, id: &str) -> Result<Option<JobStatus>, DpError> {
        check_id(id)?;
        if let Some(s) = lock(&self.unsaved).get(id) {
            return Ok(Some(s.clone()));
        }
        let path = self.path(id);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| DpError::State(format!("{} is damaged: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DpError::io(&path, e)),
        }
    }

    fn save(&self, s: &JobStatus) -> Result<(), DpError> {
        let _files = lock(&self.files);
        self.write(s)
    }

    fn write(&self, s: &JobStatus) -> Result<(), DpError> {
        let bytes = serde_json::to_vec(s).map_err(|e| DpError::State(e.to_string()))?;
        write_private(&self.path(&s.job.id), &bytes)?;
        // The file says it now.
        lock(&self.unsaved).remove(&s.job.id);
        Ok(())
    }

    /// Records progress unless the job was cancelled meanwhile; `false` when it was.
    fn save_live(&self, s: &JobStatus, cancel: &AtomicBool) -> Result<bool, DpError> {
        let _files = lock(&self.files);
        if cancel.load(Ordering::Relaxed) {
            return Ok(false);
        }
        self.write(s).map(|()| true)
    }

    /// Accepts a job. A job ID already known returns its status: running or finished jobs are
    /// not started again, a failed one is (that is how the site retries).
    pub fn submit(&self, job: Job) -> Result<JobStatus, DpError> {
        check_id(&job.id)?;
        self.flush_unsaved();
        let content: ContentId = job
            .content
            .parse()
            .map_err(|e| DpError::BadJob(format!("content {:?}: {e}", job.content)))?;
        if job.kind != JobKind::Remove && job.manifest_hash.is_none() {
            return Err(DpError::BadJob(format!(
                "{content}: an install or validate job needs manifest_hash"
            )));
        }
        let existing = self.get(&job.id)?;
        if let Some(existing) = &existing {
            if existing.job != job {
                return Err(DpError::BadJob(format!(
                    "job {} already exists with other parameters",
                    job.id
                )));
            }
            let running = lock(&self.running).contains_key(&job.id);
            if running || existing.state == JobState::Running {
                return Ok(existing.clone());
            }
            if existing.state == JobState::Succeeded && !self.undone(existing)? {
                return Ok(existing.clone());
            }
        }
        let status = JobStatus {
            job,
            state: JobState::Running,
            bytes_received: 0,
            chunks_received: 0,
            chunks_total: 0,
            chunks_present: 0,
            message: "accepted".into(),
            damaged: Vec::new(),
            repaired: false,
        };
        // A retried job keeps counting the bytes its earlier attempts received.
        let status = match existing {
            Some(old) => JobStatus {
                bytes_received: old.bytes_received,
                chunks_received: old.chunks_received,
                ..status
            },
            None => status,
        };
        self.save(&status)?;
        self.start(status.clone());
        Ok(status)
    }

    /// Whether a succeeded install no longer holds: its version is not (or not so) here any
    /// more, e.g. removed since. Such a job runs again when it is submitted again.
    fn undone(&self, s: &JobStatus) -> Result<bool, DpError> {
        if s.job.kind != JobKind::Install {
            return Ok(false);
        }
        let content: ContentId = s.job.content.parse().map_err(|e| DpError::BadJob(format!("{e}")))?;
        Ok(self.library.manifest_id(content)? != s.job.manifest_hash)
    }

    /// Stops a running job: it is recorded as failed ("cancelled") at once — a restart does not
    /// resume it — and its task stops at its next step.
    pub fn cancel(&self, id: &str) -> Result<Option<JobStatus>, DpError> {
        check_id(id)?;
        let _files = lock(&self.files);
        if let Some(flag) = lock(&self.running).get(id) {
            flag.store(true, Ordering::Relaxed);
        }
        let Some(mut s) = self.get(id)? else {
            return Ok(None);
        };
        if s.state == JobState::Running {
            s.state = JobState::Failed;
            s.message = DpError::Cancelled.to_string();
            self.write(&s)?;
        }
        Ok(Some(s))
    }

    /// Starts again every job that was running when the DP stopped, and forgets finished jobs
    /// older than [`KEEP_FINISHED`] (the site has long since read their outcome).
    pub fn resume(&self) -> Result<usize, DpError> {
        let mut n = 0;
        let rd = std::fs::read_dir(&self.dir).map_err(|e| DpError::io(&self.dir, e))?;
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else { continue };
            match self.get(id) {
                Ok(Some(s)) if s.state == JobState::Running => {
                    tracing::info!(job = %id, "resuming a job interrupted by a restart");
                    self.start(s);
                    n += 1;
                }
                Ok(Some(_)) => {
                    let old = ent
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > KEEP_FINISHED);
                    if old {
                        let _ = std::fs::remove_file(ent.path());
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(job = %id, error = %e, "cannot read a job file; ignored"),
            }
        }
        Ok(n)
    }

    fn start(&self, status: JobStatus) {
        let flag = Arc::new(AtomicBool::new(false));
        {
            let mut running = lock(&self.running);
            if running.contains_key(&status.job.id) {
                return;
            }
            running.insert(status.job.id.clone(), flag.clone());
        }
        let jobs = self.clone();
        let span =
            tracing::info_span!("dp job", job = %status.job.id, kind = ?status.job.kind, content = %status.job.content);
        tokio::spawn(
            async move {
                let id = status.job.id.clone();
                let mut status = status;
                let result = jobs.execute(&mut status, &flag).await;
                match result {
                    Ok(message) => {
                        status.state = JobState::Succeeded;
                        status.message = message;
                        jobs.metrics.ended(status.job.kind, Outcome::succeeded);
                    }
                    Err(e) => {
                        status.state = JobState::Failed;
                        status.message = e.to_string();
                        jobs.metrics.ended(status.job.kind, Outcome::failed);
                    }
                }
                // A validation that found damage and could not repair it still found it.
                if status.job.kind == JobKind::Validate
                    && (status.state == JobState::Succeeded || !status.damaged.is_empty())
                {
                    jobs.metrics.validated(match (status.damaged.is_empty(), status.repaired) {
                        (_, true) => Validation::repaired,
                        (true, false) => Validation::passed,
                        (false, false) => Validation::damaged,
                    });
                }
                tracing::info!(state = ?status.state, message = %status.message, bytes = status.bytes_received, "job ended");
                if let Err(e) = jobs.save(&status) {
                    tracing::error!(error = %e, "cannot record a job's end; it runs again after a restart");
                    lock(&jobs.unsaved).insert(id.clone(), status);
                }
                lock(&jobs.running).remove(&id);
            }
            .instrument(span),
        );
    }

    async fn execute(&self, s: &mut JobStatus, cancel: &AtomicBool) -> Result<String, DpError> {
        let content: ContentId = s.job.content.parse().map_err(|e| DpError::BadJob(format!("{e}")))?;
        match s.job.kind {
            JobKind::Install => {
                let (message, released) = {
                    let _shared = self.gc_gate.read().await;
                    self.install(s, content, cancel).await?
                };
                if released > 0 {
                    // Free what the released versions alone used, with no install running.
                    let _exclusive = self.gc_gate.write().await;
                    let gc = self.blocking(|l| l.gc()).await?;
                    tracing::info!(
                        chunks = gc.chunks_removed,
                        bytes = gc.bytes_freed,
                        "freed older versions"
                    );
                }
                Ok(message)
            }
            JobKind::Validate => {
                let (found, repairable) = self.validate(s, content).await?;
                if s.damaged.is_empty() || !s.job.repair || !repairable {
                    return Ok(found);
                }
                // RepairDamagedContent: fetch what is damaged again, as a redistribution
                // would, then check the whole version once more.
                let seen = std::mem::take(&mut s.damaged);
                let repaired = {
                    let _shared = self.gc_gate.read().await;
                    self.install(s, content, cancel).await
                };
                // Whatever happens now, what was found stays in the report: a failed repair
                // leaves the damage known to the site.
                let still = match repaired {
                    Ok(_) => self.validate(s, content).await.map(|_| std::mem::take(&mut s.damaged)),
                    Err(e) => Err(e),
                };
                s.damaged.clone_from(&seen);
                let still = still?;
                if !still.is_empty() {
                    return Err(DpError::State(format!(
                        "{content}: repairing {} damaged file(s) from the sources left {} still damaged ({})",
                        seen.len(),
                        still.len(),
                        still.join(", ")
                    )));
                }
                s.repaired = true;
                Ok(format!("{found}; repaired from the sources and verified whole"))
            }
            JobKind::Remove => {
                let _exclusive = self.gc_gate.write().await;
                self.remove(content).await
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Library) -> Result<T, pkgdist_content::ContentError> + Send + 'static,
    ) -> Result<T, DpError> {
        let lib = self.library.clone();
        tokio::task::spawn_blocking(move || f(&lib))
            .await
            .map_err(|e| DpError::State(format!("a worker thread failed: {e}")))?
            .map_err(DpError::from)
    }

    /// Refuses to start fetching `needed` bytes in `chunks` files that the DP's library has no
    /// room for: the job fails at once with the figures (the site retries it, and the retry
    /// goes ahead once there is room), rather than filling the disk half-way. Chunks are stored
    /// compressed where that helps, so `needed` (their plain size) is an upper bound; each file
    /// may take a block more than its bytes, each needs an inode, and a little more is kept
    /// free for job files and manifests.
    fn check_space(&self, content: ContentId, needed: u64, chunks: u64) -> Result<(), DpError> {
        let at = self.library_dir();
        let st = rustix::fs::statvfs(&at).map_err(|e| DpError::io(&at, e.into()))?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        let margin = (1 << 20) + needed / 100 + chunks.saturating_mul(st.f_frsize);
        let short_of_inodes = st.f_files > 0 && st.f_favail < chunks.saturating_add(64);
        if needed.saturating_add(margin) > free || short_of_inodes {
            return Err(DpError::DiskFull {
                content: content.to_string(),
                needed,
                free,
                path: at.display().to_string(),
            });
        }
        Ok(())
    }

    /// Where the library keeps its chunks: `library/` beside `jobs/` in the DP's data folder.
    fn library_dir(&self) -> PathBuf {
        self.dir
            .parent()
            .map_or_else(|| self.dir.clone(), |d| d.join("library"))
    }

    /// Writes the ends kept in memory for want of disk space, now that there may be room.
    fn flush_unsaved(&self) {
        let pending: Vec<JobStatus> = lock(&self.unsaved).values().cloned().collect();
        for s in pending {
            let _files = lock(&self.files);
            if self.write(&s).is_err() {
                return; // still no room: the next try is at the next job
            }
        }
    }

    /// Returns what happened, and how many older versions were released.
    async fn install(
        &self,
        s: &mut JobStatus,
        content: ContentId,
        cancel: &AtomicBool,
    ) -> Result<(String, usize), DpError> {
        let expect = s.job.manifest_hash;
        let held = self.blocking(move |l| l.manifest_id(content)).await?;
        if held.is_some() && held != expect {
            return Err(DpError::BadJob(format!(
                "{content} is installed here with another manifest; versions never change, so the site and this DP disagree"
            )));
        }
        let sources = if s.job.sources.is_empty() {
            vec![self.site_url.clone()]
        } else {
            s.job.sources.clone()
        };
        // A prestaged manifest of the hash the site trusts is used as it is: nothing crosses
        // the WAN for a version imported from a prestaged file (`pkgdist dp prestage`).
        let prestaged = match expect {
            Some(id) if held.is_none() => self
                .blocking(move |l| Ok(l.prestaged()?.into_iter().any(|(c, m)| c == content && m == id)))
                .await?
                .then_some(id),
            _ => None,
        };
        let manifest = if held.is_some() {
            self.blocking(move |l| l.manifest(content)).await?
        } else if let Some(id) = prestaged {
            self.blocking(move |l| l.load_manifest(&id)).await?
        } else {
            // Sent against the version held here, if any: a few kilobytes for a small refresh.
            let held = self
                .blocking(move |l| fetch::ManifestBase::latest_in(l, content))
                .await?;
            let fetched = self
                .fetcher
                .manifest_from_any(&sources, Which::Version(content), expect, held.as_ref())
                .await?;
            s.bytes_received += fetched.wire_bytes;
            fetched.manifest
        };
        let manifest = Arc::new(manifest);
        let plan = fetch::plan(self.library.clone(), content, manifest.clone(), s.job.repair).await?;
        s.chunks_total = plan.total;
        s.chunks_present = plan.present;
        let needed: u64 = plan.missing.iter().map(|c| u64::from(c.len)).sum();
        self.check_space(content, needed, plan.missing.len() as u64)?;
        s.message = format!("fetching {} of {} chunks", plan.missing.len(), plan.total);
        self.save(s)?;
        let mut save_err = None;
        let fetcher = self.fetcher.for_job(&s.job.id);
        let fill = fetch::fill(&fetcher, &self.library, &sources, &plan.missing, &plan.bases, |b| {
            s.bytes_received += b.wire_bytes;
            s.chunks_received += b.chunks;
            match self.save_live(s, cancel) {
                Ok(live) => live,
                Err(e) => {
                    save_err = Some(e);
                    false
                }
            }
        });
        // A cancel also cuts a batch short: at a low rate limit one batch can take a while.
        let filled = tokio::select! {
            r = fill => r,
            () = cancelled(cancel) => Err(FetchError::Cancelled),
        };
        if let Some(e) = save_err {
            return Err(e);
        }
        match filled {
            Err(FetchError::Cancelled) => return Err(DpError::Cancelled),
            other => other?,
        }
        let m = manifest.clone();
        self.blocking(move |l| l.commit(content, &m).map(|_| ())).await?;
        // Older versions go (the one before stays, for downloads that started on it).
        let released = self
            .blocking(move |l| {
                let mut n = 0;
                for v in l.versions()? {
                    if v.package == content.package && v.version < content.version.saturating_sub(1) {
                        l.release(v)?;
                        n += 1;
                    }
                }
                Ok(n)
            })
            .await?;
        let message = format!(
            "{content} installed: {} chunks fetched, {} already present{}",
            plan.missing.len(),
            plan.present,
            if released > 0 {
                format!(", {released} older version(s) released")
            } else {
                String::new()
            }
        );
        Ok((message, released))
    }

    /// Re-hashes a version, listing damaged files in `s.damaged`. Also says whether what it
    /// found can be repaired by fetching (not when the DP holds another manifest than the site's).
    async fn validate(&self, s: &mut JobStatus, content: ContentId) -> Result<(String, bool), DpError> {
        let expect = s.job.manifest_hash;
        let held: Option<Digest> = self.blocking(move |l| l.manifest_id(content)).await?;
        if held.is_none() {
            s.damaged = vec!["(the whole version is missing)".into()];
            return Ok((format!("{content} is not installed here"), true));
        }
        if held != expect {
            s.damaged = vec!["(the manifest differs from the site's)".into()];
            return Ok((format!("{content} has another manifest here than at the site"), false));
        }
        let report = self.blocking(move |l| l.verify(Some(content))).await?;
        let mut damaged: Vec<String> = report
            .problems
            .iter()
            .flat_map(|p| p.affects.iter().map(|a| a.path.clone()))
            .collect();
        damaged.sort();
        damaged.dedup();
        s.damaged = damaged;
        let mut message = format!(
            "{content}: {} chunks ({} bytes) re-hashed, {} damaged file(s)",
            report.chunks_checked,
            report.bytes_checked,
            s.damaged.len()
        );
        if let Some(served) = self.served.clone() {
            // The chunks are what a copy is written from again: a damaged copy is not damage
            // to the version, only a copy to write anew.
            let checked = self
                .blocking(move |l| {
                    let m = l.manifest(content)?;
                    Ok(served.check(m.entries().iter().filter_map(|e| e.file())))
                })
                .await;
            match checked {
                Ok(0) => {}
                Ok(dropped) => message.push_str(&format!(", {dropped} damaged served copy(ies) dropped")),
                // The version's own report stands; the copies are checked next time.
                Err(e) => tracing::warn!(%content, error = %e, "cannot re-read the served copies of a version"),
            }
        }
        Ok((message, true))
    }

    async fn remove(&self, content: ContentId) -> Result<String, DpError> {
        let pkg = content.package;
        let (released, gc) = self
            .blocking(move |l| {
                let mut n = 0;
                for v in l.versions()?.into_iter().filter(|v| v.package == pkg) {
                    l.release(v)?;
                    n += 1;
                }
                // Prestaged content of the package not recorded yet goes too.
                for (c, _) in l.prestaged()?.into_iter().filter(|(c, _)| c.package == pkg) {
                    l.release_prestaged(c)?;
                }
                Ok((n, l.gc()?))
            })
            .await?;
        Ok(format!(
            "{pkg} removed: {released} version(s) released, {} chunk(s) ({} bytes) no other package uses freed",
            gc.chunks_removed, gc.bytes_freed
        ))
    }
}
