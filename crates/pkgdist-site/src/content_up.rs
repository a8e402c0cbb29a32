//! Content going up the hierarchy, so that a package created at any site can reach DPs
//! anywhere (ConfigMgr replicates a package's definition to every site, and its content to
//! every site with a DP targeted with it).
//!
//! Content otherwise moves down only: a child pulls versions from its parent's library
//! (`upstream::replicate`). And only the child opens the link; a parent never calls a child
//! (so a child behind NAT works). A parent that needs a version owned below therefore *asks*:
//!
//! 1. **Parent**, in every sync answer to child C ([`crate::link::SyncResponse::wanted`]): the
//!    current versions of packages owned in C's subtree that a DP outside that subtree is
//!    targeted with (`Db::wanted_from_below`), and those its own parent asked of it that are
//!    owned under C and not here yet ([`wanted_of`]).
//! 2. **Child** keeps the last such list ([`Wanted`]). A listed version in its library is sent
//!    up ([`push_up`]): the manifest first ([`PLAN_PATH`]), to which the parent answers the
//!    chunks it lacks, then just those chunks, streamed in the prestaged-file format
//!    ([`UPLOAD_PATH`], `pkgdist_content::prestage`). A listed version not here is owned
//!    further down: step 1 asks it of the child below.
//! 3. **Parent** imports the stream with every chunk checked against the manifest, checks the
//!    manifest against the hash its package row holds (the owner's word, come up with the
//!    package's metadata), records the version, and writes a `site_content` row saying it
//!    came from below. DPs here, children pulling it, and the parent's own parent then go on
//!    as for any version in the library.
//!
//! Invariants: a parent records only the version its package row names, under the hash that
//! row holds; only the child whose subtree owns a package may send it up; a version crosses
//! each link once, and goes up only as far as a DP outside the owner's subtree needs it.
//! Uploads are not paced (`RateLimitBytesPerSecond` paces what a child pulls).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use pkgdist_content::{ContentError, prestage};
use pkgdist_core::errors::ErrorKind;
use pkgdist_core::{ContentId, Digest, Manifest, PackageId};
use pkgdist_db::SiteRow;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_stream::StreamExt;
use tracing::Instrument;

use crate::error::{ApiError, ApiResult};
use crate::link::WantedMsg;
use crate::now;
use crate::state::AppState;
use crate::upstream::{LinkError, ParentLink, refused};

/// The child sends a version's manifest; the parent answers what it lacks ([`UploadPlan`]).
pub const PLAN_PATH: &str = "/link/v1/upload/plan";
/// The child streams the chunks the parent lacks, in the prestaged-file format.
pub const UPLOAD_PATH: &str = "/link/v1/upload";
/// The largest manifest a plan takes (a tree of millions of files).
pub const MAX_MANIFEST_BYTES: usize = 256 << 20;

/// Which version a plan or an upload is of.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadQuery {
    /// A content ID, such as `SE100001.2`.
    pub content: String,
}

/// The parent's answer to a plan.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UploadPlan {
    /// The version is recorded here already: nothing to send.
    pub held: bool,
    /// The chunks to send (hex), in the manifest's order.
    pub missing: Vec<String>,
}

/// The parent's answer to an upload.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct UploadDone {
    pub chunks: u64,
    pub stored_bytes: u64,
}

// ---- the parent's side ----

/// What [`wanted_of`] last answered for each child, and what it was computed at: the package
/// and row change numbers and [`WantedCache::moved`]'s count. A sync poll that finds them as
/// they were answers from here, so an idle link costs two indexed reads a poll, whatever the
/// number of packages owned below.
#[derive(Debug, Default)]
pub struct WantedCache {
    by_child: Mutex<HashMap<String, WantedAt>>,
    /// Moves with what the change numbers do not see: a version recorded here, and a new
    /// list from the parent.
    generation: std::sync::atomic::AtomicU64,
}

/// A list of [`WantedCache`] and the (package, row, generation) numbers it was computed at.
type WantedAt = ((i64, i64, u64), Vec<WantedMsg>);

impl WantedCache {
    pub(crate) fn moved(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What this site asks child `child` to send up (step 1 of the module documentation).
pub(crate) async fn wanted_of(state: &AppState, child: &str) -> ApiResult<Vec<WantedMsg>> {
    let key = (
        state.db.package_epoch().await?,
        state.db.change_seq().await?,
        state.wanted_cache.generation.load(std::sync::atomic::Ordering::Relaxed),
    );
    if let Some((at, list)) = lock(&state.wanted_cache.by_child).get(child)
        && *at == key
    {
        return Ok(list.clone());
    }
    let list = compute_wanted(state, child).await?;
    lock(&state.wanted_cache.by_child).insert(child.to_owned(), (key, list.clone()));
    Ok(list)
}

async fn compute_wanted(state: &AppState, child: &str) -> ApiResult<Vec<WantedMsg>> {
    let mut out: Vec<WantedMsg> = state
        .db
        .wanted_from_below(child)
        .await?
        .iter()
        .filter_map(WantedMsg::of)
        .collect();
    let above = state.wanted_above.list();
    if above.is_empty() {
        return Ok(out);
    }
    let under = crate::hierarchy::subtree(state, child).await?;
    for w in above {
        // A package ID names its owner (checked as packages come up).
        let owned_under = w
            .package_id
            .parse::<PackageId>()
            .is_ok_and(|p| under.contains(p.site().as_str()));
        if !owned_under || out.iter().any(|o| o.package_id == w.package_id) {
            continue;
        }
        let Some((content, hash)) = w.parts() else { continue };
        if !holds(state, content, hash).await {
            out.push(w);
        }
    }
    Ok(out)
}

/// Whether this site's library holds `content` under `hash`.
async fn holds(state: &AppState, content: ContentId, hash: Digest) -> bool {
    let lib = state.library.clone();
    matches!(
        tokio::task::spawn_blocking(move || lib.manifest_id(content)).await,
        Ok(Ok(Some(h))) if h == hash
    )
}

/// The version `query` names, if this site wants it from `child`: its package is owned in
/// the child's subtree, and it is the package's current version here, whose hash is returned.
async fn expected(state: &AppState, child: &SiteRow, query: &UploadQuery) -> ApiResult<(ContentId, Digest)> {
    let content: ContentId = query.content.parse().map_err(|_| {
        ApiError::new(
            ErrorKind::InvalidValue,
            "content must be a content ID, such as SE100001.2",
        )
        .param("content")
    })?;
    let id = content.package.to_string();
    let p = state
        .db
        .package(&id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorKind::UnknownInstance, format!("package {id} is not known here")))?;
    if !crate::hierarchy::subtree(state, &child.site_code)
        .await?
        .contains(&p.source_site)
    {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "package {id} belongs to site {}, which is not child site {} or below it",
                p.source_site, child.site_code
            ),
        ));
    }
    let hash = p.manifest_hash.as_deref().and_then(|h| h.parse::<Digest>().ok());
    match hash {
        Some(h) if p.source_version == i64::from(content.version) => Ok((content, h)),
        _ => Err(ApiError::new(
            ErrorKind::InvalidState,
            format!(
                "this site wants version {} of package {id}, not {}; the next sync says what it wants",
                p.source_version, content.version
            ),
        )),
    }
}

/// Refuses a version this site does not ask `child` for (now): it could only fill the disk.
async fn wanted(state: &AppState, child: &SiteRow, content: ContentId) -> ApiResult<()> {
    let id = content.package.to_string();
    let listed = wanted_of(state, &child.site_code)
        .await?
        .iter()
        .any(|w| w.package_id == id && w.version == i64::from(content.version));
    if listed {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::InvalidState,
            format!(
                "this site does not ask for {content}: no DP outside the owner's subtree needs it here, or it is here already"
            ),
        ))
    }
}

/// `site_content.state`: the version is in the library; on its way; the last try failed.
const SITE_CONTENT_DONE: i64 = 0;
const SITE_CONTENT_MOVING: i64 = 1;
const SITE_CONTENT_FAILED: i64 = 2;

/// Records in `content`'s `site_content` row that it is here. (A plan that finds it held
/// repairs a row that a failed duplicate left failed, so that it is asked for no more.)
async fn record_here(
    state: &AppState,
    content: ContentId,
    message: String,
    sent: Option<&prestage::Prestaged>,
) -> ApiResult<()> {
    let mut row = crate::upstream::site_content_row(state, content).await?;
    row.state = SITE_CONTENT_DONE;
    if let Some(got) = sent {
        row.bytes_received += i64::try_from(got.stored_bytes).unwrap_or(i64::MAX);
        row.chunks_fetched += i64::try_from(got.chunks).unwrap_or(i64::MAX);
    }
    row.message = message;
    row.updated_at = now();
    state.db.put_site_content(&row).await?;
    state.wanted_cache.moved();
    Ok(())
}

/// `POST PLAN_PATH?content=…`, the manifest as its body: the chunks this site lacks.
pub(crate) async fn plan(
    State(state): State<AppState>,
    Extension(child): Extension<SiteRow>,
    Query(query): Query<UploadQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Json<UploadPlan>> {
    let (content, hash) = expected(&state, &child, &query).await?;
    if holds(&state, content, hash).await {
        let here = format!("{content} is here (come up from child site {})", child.site_code);
        record_here(&state, content, here, None).await?;
        return Ok(Json(UploadPlan {
            held: true,
            missing: Vec::new(),
        }));
    }
    wanted(&state, &child, content).await?;
    let lib = state.library.clone();
    let missing = tokio::task::spawn_blocking(move || -> Result<Option<Vec<String>>, ContentError> {
        // Hashed off the async workers: a manifest may be hundreds of megabytes.
        if Digest::of(&body) != hash {
            return Ok(None);
        }
        let manifest = Manifest::decode(&body)?;
        Ok(Some(
            lib.missing_chunks(&manifest)?.iter().map(|c| c.id.to_hex()).collect(),
        ))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| content_error(content, e))?
    .ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidValue,
            format!("this is not the manifest of {content} this site knows (its hash differs)"),
        )
    })?;
    let mut row = crate::upstream::site_content_row(&state, content).await?;
    row.state = SITE_CONTENT_MOVING;
    row.message = format!(
        "coming up from child site {}: {} chunks to send",
        child.site_code,
        missing.len()
    );
    row.updated_at = now();
    state.db.put_site_content(&row).await?;
    Ok(Json(UploadPlan { held: false, missing }))
}

/// Uploads at once, over every child: each holds a blocking thread while its stream comes,
/// so a child that sends slowly holds one of these, never the pool serving everyone else.
const UPLOADS_AT_ONCE: usize = 2;
static UPLOADS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(UPLOADS_AT_ONCE);
/// How long an upload waits for a slot before the child is told to try again.
const UPLOAD_QUEUE: Duration = Duration::from_secs(30);

/// `POST UPLOAD_PATH?content=…`, the chunks this site lacks as a prestaged-file stream:
/// imported, checked and recorded (step 3 of the module documentation).
pub(crate) async fn upload(
    State(state): State<AppState>,
    Extension(child): Extension<SiteRow>,
    Query(query): Query<UploadQuery>,
    body: Body,
) -> ApiResult<Json<UploadDone>> {
    let (content, hash) = expected(&state, &child, &query).await?;
    wanted(&state, &child, content).await?;
    let _slot = tokio::time::timeout(UPLOAD_QUEUE, UPLOADS.acquire())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::Conflict,
                "other uploads are running: try again shortly (the child site does, by itself)",
            )
        })?;
    let stream = body.into_data_stream().map(|r| r.map_err(std::io::Error::other));
    let mut reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    let lib = state.library.clone();
    let imported = tokio::task::spawn_blocking(move || {
        prestage::import_expected(&lib, &mut reader, content, hash, MAX_MANIFEST_BYTES)
    })
    .await
    .map_err(ApiError::internal)?;
    let recorded = match imported {
        Ok(got) => record_upload(&state, &child, content, hash, &got).await.map(|()| got),
        Err(e) => Err(content_error(content, e)),
    };
    match recorded {
        Ok(got) => {
            tracing::info!(child = %child.site_code, %content, chunks = got.chunks, bytes = got.stored_bytes, "a version came up from a child site");
            // DPs here, children pulling it, and this site's parent may be waiting for it.
            state.work.notify_one();
            state.replicate.notify_one();
            state.wanted_above.wake.notify_one();
            Ok(Json(UploadDone {
                chunks: got.chunks,
                stored_bytes: got.stored_bytes,
            }))
        }
        Err(e) => {
            tracing::warn!(child = %child.site_code, %content, error = %e.message, "an upload from a child site failed");
            // A hold the import made is let go: nothing of a failed upload stays recorded.
            let lib = state.library.clone();
            let _ = tokio::task::spawn_blocking(move || lib.release_prestaged(content)).await;
            let mut row = crate::upstream::site_content_row(&state, content).await?;
            // A duplicate that failed does not undo a version already here.
            if row.state != SITE_CONTENT_DONE {
                row.state = SITE_CONTENT_FAILED;
                row.attempts += 1;
                row.message = format!(
                    "{content}: the upload from child site {} failed: {}",
                    child.site_code, e.message
                );
                row.updated_at = now();
                state.db.put_site_content(&row).await?;
            }
            Err(e)
        }
    }
}

/// Records an imported version if it is still the package's current one (not refreshed at
/// its owner, nor deleted, meanwhile): under the refresh lock, as a refresh records one.
async fn record_upload(
    state: &AppState,
    child: &SiteRow,
    content: ContentId,
    hash: Digest,
    got: &prestage::Prestaged,
) -> ApiResult<()> {
    let lock = state.refresh_lock(&content.package.to_string());
    let _one_at_a_time = lock.lock().await;
    let query = UploadQuery {
        content: content.to_string(),
    };
    expected(state, child, &query).await?;
    let lib = state.library.clone();
    tokio::task::spawn_blocking(move || -> Result<(), ContentError> {
        let manifest = lib.load_manifest(&hash)?;
        crate::upstream::record_version(&lib, content, &manifest)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let message = format!(
        "{content} came up from child site {}: {} chunks ({} bytes) sent, the rest already here",
        child.site_code, got.chunks, got.stored_bytes
    );
    record_here(state, content, message, Some(got)).await
}

/// A content error in what a child sent is the child's to fix; one in this site's library
/// is this site's.
fn content_error(content: ContentId, e: ContentError) -> ApiError {
    match e {
        ContentError::Damaged { .. } | ContentError::Manifest(_) => {
            ApiError::new(ErrorKind::InvalidValue, format!("{content}: {e}"))
        }
        other => ApiError::internal(other),
    }
}

// ---- the child's side ----

/// What this site's parent last asked it to send up, and the wake-up of [`push_up`].
#[derive(Debug, Default)]
pub struct Wanted {
    list: Mutex<Vec<WantedMsg>>,
    pub wake: Notify,
}

impl Wanted {
    /// Takes the parent's list (each sync answer carries it whole); answers whether it changed.
    pub(crate) fn set(&self, list: Vec<WantedMsg>) -> bool {
        let mut held = lock(&self.list);
        if *held == list {
            return false;
        }
        if !list.is_empty() {
            tracing::info!(versions = ?list.iter().map(|w| format!("{}.{}", w.package_id, w.version)).collect::<Vec<_>>(), "the parent site asks for content owned here or below");
        }
        *held = list;
        self.wake.notify_one();
        true
    }

    pub(crate) fn list(&self) -> Vec<WantedMsg> {
        lock(&self.list).clone()
    }

    /// Sent: off the list until the parent asks again.
    fn sent(&self, w: &WantedMsg) {
        lock(&self.list).retain(|x| x != w);
    }
}

/// The longest wait before a version whose upload failed is tried again.
const UPLOAD_BACKOFF: Duration = Duration::from_secs(30);

/// Runs until the process ends: sends up every version the parent asked for that this
/// site's library holds (step 2 of the module documentation).
pub async fn push_up(state: AppState, link: ParentLink) {
    // No overall timeout: a large version takes what it takes; a stalled one is cut by the
    // read timeout.
    let http = match link
        .client()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(300))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            // Never a client without this site's certificate: nothing goes up.
            tracing::error!(error = %e, "cannot set up a client for the parent; content owned here will not go up");
            return;
        }
    };
    let mut later: HashMap<ContentId, (Instant, Duration)> = HashMap::new();
    loop {
        let list = state.wanted_above.list();
        later.retain(|c, _| list.iter().any(|w| w.parts().is_some_and(|(x, _)| x == *c)));
        for w in list {
            let Some((content, hash)) = w.parts() else { continue };
            if later.get(&content).is_some_and(|(at, _)| Instant::now() < *at) || !holds(&state, content, hash).await {
                continue; // not yet; or owned below, and asked of the child there
            }
            let span = tracing::info_span!("push_up", %content, parent = %link.url);
            match send(&state, &http, &link, content).instrument(span).await {
                Ok(done) => {
                    tracing::info!(%content, chunks = done.chunks, bytes = done.stored_bytes, "sent up to the parent site");
                    later.remove(&content);
                    state.wanted_above.sent(&w);
                }
                Err(e) => {
                    let wait = later
                        .get(&content)
                        .map_or(Duration::from_secs(1), |(_, w)| (*w * 2).min(UPLOAD_BACKOFF));
                    tracing::warn!(%content, error = %e, retry_in_s = wait.as_secs(), "sending content up to the parent failed; will retry");
                    later.insert(content, (Instant::now() + wait, wait));
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), state.wanted_above.wake.notified()).await;
    }
}

/// One version up: its manifest, then the chunks the parent lacks.
async fn send(
    state: &AppState,
    http: &reqwest::Client,
    link: &ParentLink,
    content: ContentId,
) -> Result<UploadDone, LinkError> {
    let lib = state.library.clone();
    let manifest = tokio::task::spawn_blocking(move || lib.manifest(content).map(|m| m.encode())).await??;
    let query = UploadQuery {
        content: content.to_string(),
    };
    let resp = http
        .post(format!("{}{PLAN_PATH}", link.url))
        .query(&query)
        .bearer_auth(&link.credential)
        .body(manifest)
        .send()
        .await
        .map_err(|source| LinkError::Unreachable {
            step: "upload plan",
            source,
        })?;
    if !resp.status().is_success() {
        return Err(refused("upload plan", resp).await);
    }
    let plan: UploadPlan = resp.json().await.map_err(|source| LinkError::Answer {
        step: "upload plan",
        source,
    })?;
    if plan.held {
        return Ok(UploadDone {
            chunks: 0,
            stored_bytes: 0,
        });
    }
    let missing: HashSet<Digest> = plan.missing.iter().filter_map(|h| h.parse().ok()).collect();
    // The stream is written on a blocking thread as the request sends it: a few buffers at a
    // time, whatever the version's size.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let lib = state.library.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter { tx, buf: Vec::new() };
        prestage::write_only(&lib, content, |id| missing.contains(id), &mut out)
    });
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let sent = http
        .post(format!("{}{UPLOAD_PATH}", link.url))
        .query(&query)
        .bearer_auth(&link.credential)
        .body(body)
        .send()
        .await;
    // The writer ends either way: done, or its channel closed with the request. Its failure
    // (this site's library) is the one to report, not the parent's view of a short stream.
    let written = writer.await?;
    let resp = sent.map_err(|source| LinkError::Unreachable { step: "upload", source })?;
    written?;
    if !resp.status().is_success() {
        return Err(refused("upload", resp).await);
    }
    resp.json()
        .await
        .map_err(|source| LinkError::Answer { step: "upload", source })
}

/// A `Write` that hands what is written, a buffer at a time, to an async request body.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    const BUFFER: usize = 256 << 10;

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(Self::BUFFER));
        self.tx
            .blocking_send(Ok(full))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload to the parent ended"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= Self::BUFFER {
            self.send()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}
