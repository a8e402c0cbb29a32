//! Client downloads from a distribution point's content library.
//!
//! ```text
//! GET|HEAD /content/<PackageID>/<path>                the latest installed version
//! GET|HEAD /content/<PackageID>.<SourceVersion>/<path> that version
//! GET|HEAD /SMS_DP_SMSPKG$/<PackageID>/<path>          ConfigMgr's path, same handler
//! ```
//!
//! Files are served with `ETag` (the file's BLAKE3, strong), `Last-Modified`, single `Range`
//! requests (`bytes=a-b`, `a-`, `-n`; several ranges get the whole file), `If-None-Match`,
//! `If-Range` and `HEAD`. A directory (or the package root) lists its entries: HTML for
//! browsers and mirroring tools, JSON when asked with `Accept: application/json`.
//!
//! No byte that does not match the manifest is sent. A file is sent from its verified copy
//! ([`crate::served`]) when the DP has one (by the kernel, [`crate::direct::SendFile`], on
//! plain connections); otherwise from the library's chunks, each verified against its hash
//! before a byte of it is sent (damage ends the response early rather than sending wrong
//! bytes), and a copy is asked for.
//!
//! A request resolves the version once, from one manifest, so a refresh landing meanwhile never
//! mixes versions within a response. Which version a package's latest is, and its manifest,
//! are remembered until the library records or forgets a version, so a request reads nothing
//! from disk before the file itself. Paths are checked as manifest paths: `..`, empty or `.`
//! components (also percent-encoded) are refused before anything is looked up.

use std::io::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pkgdist_content::Library;
use pkgdist_core::{ContentId, Digest, Entry, EntryKind, Manifest, PackageId, RelPath};
use serde_json::json;

use crate::direct::{Asked, Ready, ReadyBody, SendFile};
use crate::metrics::Answered;
use crate::served::{Copied, Hit, Quick, ServedFiles};
use crate::util::plain;

/// What the download routes read from.
#[derive(Debug, Clone)]
pub struct Content {
    library: Arc<Library>,
    manifests: Arc<ManifestCache>,
    versions: Arc<VersionCache>,
    served: Option<Arc<ServedFiles>>,
}

impl Content {
    pub fn new(library: Arc<Library>) -> Content {
        Content {
            library,
            manifests: Arc::new(ManifestCache::default()),
            versions: Arc::new(VersionCache::default()),
            served: None,
        }
    }

    /// Serves files from verified copies in `served` where it has them (and fills it).
    pub fn with_served(mut self, served: Arc<ServedFiles>) -> Content {
        self.served = Some(served);
        self
    }
}

/// What each package name or content ID a request named stood for (the content ID and its
/// manifest's hash, or nothing), valid while the library's versions have not changed
/// ([`Library::versions_changed`]). Answering `latest` from disk lists every version the DP
/// holds: with 2,000 packages, a folder of 2,000 names read per request.
#[derive(Debug, Default)]
struct VersionCache {
    known: std::sync::Mutex<(u64, std::collections::HashMap<Named, Found>)>,
}

/// What a name stood for: the content ID and its manifest's hash, or nothing.
type Found = Option<(ContentId, Digest)>;

/// What a request's first path segment names: a package's latest version, or one version.
/// Parsed before anything is looked up, so only well-formed names are remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Named {
    Latest(PackageId),
    Version(ContentId),
}

impl Named {
    /// Package IDs in any case, as Windows clients may write them.
    fn parse(which: &str) -> Option<Named> {
        let which = which.to_ascii_uppercase();
        if which.contains('.') {
            which.parse().ok().map(Named::Version)
        } else {
            which.parse().ok().map(Named::Latest)
        }
    }
}

impl VersionCache {
    /// Names remembered at most (a client asking for made-up names cannot grow it further).
    const CAPACITY: usize = 16_384;

    fn get(&self, which: Named, generation: u64) -> Option<Option<(ContentId, Digest)>> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.0 != generation {
            return None;
        }
        known.1.get(&which).copied()
    }

    fn put(&self, which: Named, generation: u64, found: Option<(ContentId, Digest)>) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.0 > generation {
            return; // an answer from before a change: the map holds newer ones
        }
        if known.0 != generation {
            *known = (generation, std::collections::HashMap::new());
        }
        if known.1.len() >= Self::CAPACITY {
            known.1.clear();
        }
        known.1.insert(which, found);
    }
}

/// Decoded manifests by hash, most recently used first.
///
/// Every request needs its version's manifest; reading, verifying and decoding it again each
/// time (1.7 MB for a 20,000-file package) cost ~6 ms of CPU per request, three quarters of
/// what a DP spent serving. A manifest is immutable under its hash, so a cached copy can never
/// be stale; the cache only has to stay small, hence a handful of entries.
#[derive(Debug, Default)]
struct ManifestCache {
    entries: std::sync::Mutex<std::collections::VecDeque<(Digest, Arc<Indexed>)>>,
}

impl ManifestCache {
    const CAPACITY: usize = 4;

    fn get(&self, id: &Digest) -> Option<Arc<Indexed>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let at = entries.iter().position(|(d, _)| d == id)?;
        let hit = entries.remove(at)?;
        let m = hit.1.clone();
        entries.push_front(hit);
        Some(m)
    }

    fn put(&self, id: Digest, m: Arc<Indexed>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.iter().any(|(d, _)| *d == id) {
            return;
        }
        entries.push_front((id, m));
        entries.truncate(Self::CAPACITY);
    }
}

/// The client-facing routes. ConfigMgr's share name is matched as IIS matches it, in any case
/// and percent-encoded (`sms_dp_smspkg%24`): hence a route with the first segment as a
/// parameter, below the static `/content` (static segments win).
pub fn router(content: Content) -> Router {
    Router::new()
        .route("/content/{pkg}", get(root))
        .route("/content/{pkg}/", get(root))
        .route(FILE_ROUTE, get(file))
        .route("/{share}/{pkg}", get(share_root))
        .route("/{share}/{pkg}/", get(share_root))
        .route(SHARE_FILE_ROUTE, get(share_file))
        .with_state(content)
}

/// The route of a file, and of a file by ConfigMgr's share name (their templates are the
/// metrics' route labels, which the [`Shortcut`] counts into).
const FILE_ROUTE: &str = "/content/{pkg}/{*path}";
const SHARE_FILE_ROUTE: &str = "/{share}/{pkg}/{*path}";

/// The content routes' commonest request answered on the direct loop without the router
/// ([`crate::direct::Shortcut`]): a GET or HEAD of a file, whole or one satisfiable range,
/// asked without a condition (`If-None-Match`, `If-Range`), in a version whose manifest is in
/// memory, and for a GET held as a verified copy.
/// Through the router the same answer cost a fifth more CPU than nginx's (routing, extractors,
/// a header map built and rendered, four layers); here it is the lookups [`serve`] makes and
/// one head written.
///
/// Its answer is the router's, header for header but the date (`downloads.rs` holds them side
/// by side), counted into the same metrics. Anything else — a name or manifest not remembered,
/// a folder, a path the router would refuse or decode differently, a file without its copy —
/// it declines, and the router answers (and asks for the copy).
#[derive(Debug)]
pub struct Shortcut {
    content: Content,
    /// The two routes' counters, `200` and `206`.
    file_route: [Answered; 2],
    share_route: [Answered; 2],
    answered: std::sync::atomic::AtomicU64,
}

impl Shortcut {
    /// A shortcut to `content`'s files, counting into `metrics` as the router's layer would.
    pub fn new(content: Content, metrics: &crate::metrics::Metrics) -> Self {
        Self {
            content,
            file_route: [200, 206].map(|s| metrics.answered(FILE_ROUTE, s)),
            share_route: [200, 206].map(|s| metrics.answered(SHARE_FILE_ROUTE, s)),
            answered: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Requests answered so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn ready(&self, asked: &Asked<'_>) -> Option<Ready> {
        if asked.has(&header::IF_NONE_MATCH) || asked.has(&header::IF_RANGE) {
            return None;
        }
        let (first, rest) = asked.path.strip_prefix('/')?.split_once('/')?;
        // The static `/content` wins over the share's parameter, as in the router; a share
        // name percent-encoded is the router's to decode.
        let route = if first == "content" {
            &self.file_route
        } else if first.eq_ignore_ascii_case(SHARE) {
            &self.share_route
        } else {
            return None;
        };
        let (pkg, file) = rest.split_once('/')?;
        // As the router's `Path` decodes them. Not a manifest path (empty, or ending in `/`
        // as a folder does): the router's.
        let pkg = percent_encoding::percent_decode_str(pkg).decode_utf8().ok()?;
        let file = percent_encoding::percent_decode_str(file).decode_utf8().ok()?;
        if RelPath::new(&*file).is_err() {
            return None;
        }
        let which = Named::parse(&pkg)?;
        let (cid, id) = self
            .content
            .versions
            .get(which, self.content.library.versions_changed())??;
        let m = self.content.manifests.get(&id)?;
        let entry = resolve(&m, &file).ok()?;
        let EntryKind::File(f) = &entry.kind else {
            return None;
        };
        // The range as `serve` reads it: a value that is not visible ASCII is no range.
        let range = asked.get(&header::RANGE).and_then(|v| HeaderValue::from_bytes(v).ok());
        let (partial, start, end) = match range
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(|r| parse_range(r, f.size))
        {
            None | Some(Range::Ignore) => (false, 0, f.size),
            Some(Range::Bytes(a, b)) => (true, a, b),
            Some(Range::Unsatisfiable) => return None,
        };
        let counts = &route[usize::from(partial)];
        let body = if asked.head_only {
            ReadyBody::None
        } else {
            match self.content.served.as_ref()?.quick(&f.hash, f.size) {
                Quick::Hit(Hit::Memory(bytes)) => {
                    let body = bytes.slice(usize::try_from(start).ok()?..usize::try_from(end).ok()?);
                    counts.sent.inc_by(end - start);
                    ReadyBody::Bytes(body)
                }
                Quick::Hit(Hit::Copy(copy)) => ReadyBody::File(SendFile {
                    copy,
                    start,
                    len: end - start,
                    sent: Some(counts.sent.clone()),
                }),
                Quick::Closed | Quick::Miss => return None,
            }
        };
        let validators = m.validators(entry);
        let (etag, modified) = &*validators;
        let mut headers = Vec::with_capacity(256);
        for (name, value) in [
            (header::ETAG.as_str().as_bytes(), etag.as_bytes()),
            (header::LAST_MODIFIED.as_str().as_bytes(), modified.as_bytes()),
            (header::ACCEPT_RANGES.as_str().as_bytes(), b"bytes"),
            (header::CONTENT_TYPE.as_str().as_bytes(), OCTETS.as_bytes()),
        ] {
            headers.extend_from_slice(name);
            headers.extend_from_slice(b": ");
            headers.extend_from_slice(value);
            headers.extend_from_slice(b"\r\n");
        }
        let _ = write!(headers, "{CONTENT_ID_HEADER}: {cid}\r\n");
        if partial {
            let _ = write!(headers, "content-range: bytes {start}-{}/{}\r\n", end - 1, f.size);
        }
        if asked.head_only { &counts.head } else { &counts.get }.inc();
        self.answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let status = if partial {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        // What the router's trace layer says of a request (at the same level), in one event.
        tracing::debug!(
            path = asked.path,
            method = if asked.head_only { "HEAD" } else { "GET" },
            status = status.as_u16(),
            length = end - start,
            "answered without the router"
        );
        Some(Ready {
            status,
            headers,
            length: end - start,
            body,
        })
    }
}

impl crate::direct::Shortcut for Shortcut {
    fn answer(&self, asked: &Asked<'_>) -> Option<Ready> {
        self.ready(asked)
    }
}

/// The type every file is sent as.
const OCTETS: &str = "application/octet-stream";

/// The header naming the version a file was sent from.
const CONTENT_ID_HEADER: &str = "x-pkgdist-content-id";

/// ConfigMgr's content share on a DP.
const SHARE: &str = "SMS_DP_SMSPKG$";

fn not_the_share() -> Response {
    plain(StatusCode::NOT_FOUND, "no such route on this distribution point")
}

/// The manifest a request reads: a named version, or the package's latest.
async fn manifest(content: &Content, which: &str) -> Result<(ContentId, Arc<Indexed>), Response> {
    let no_such = || {
        plain(
            StatusCode::NOT_FOUND,
            "no such package or version on this distribution point",
        )
    };
    let Some(which) = Named::parse(which) else {
        return Err(no_such());
    };
    let generation = content.library.versions_changed();
    let known = content.versions.get(which, generation);
    if let Some(Some((cid, id))) = known
        && let Some(m) = content.manifests.get(&id)
    {
        return Ok((cid, m));
    }
    let lib = content.library.clone();
    let cache = content.manifests.clone();
    let versions = content.versions.clone();
    let found = tokio::task::spawn_blocking(move || -> Result<Option<(ContentId, Arc<Indexed>)>, String> {
        let named = match known {
            Some(named) => named,
            None => {
                let named = version_named(&lib, which).map_err(|e| e.to_string())?;
                versions.put(which, generation, named);
                named
            }
        };
        let Some((cid, id)) = named else {
            return Ok(None);
        };
        if let Some(m) = cache.get(&id) {
            return Ok(Some((cid, m)));
        }
        let m = Arc::new(Indexed::new(lib.load_manifest(&id).map_err(|e| e.to_string())?));
        cache.put(id, m.clone());
        Ok(Some((cid, m)))
    })
    .await
    .map_err(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match found {
        Ok(Some(x)) => Ok(x),
        Ok(None) => Err(no_such()),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a manifest");
            Err(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the content on this distribution point is damaged; it is being reported",
            ))
        }
    }
}

/// A manifest with its paths hashed. A request looks its path up once or a few times, and a
/// binary search comparing long shared prefixes took a twentieth of a DP's serving CPU. The
/// hash is foldhash, seeded per process: several times SipHash's speed on a path, and the keys
/// are the manifest's (a client only looks up, which cannot degrade the table).
#[derive(Debug)]
struct Indexed {
    manifest: Manifest,
    at: std::collections::HashMap<String, usize, foldhash::fast::RandomState>,
    /// Each file's `ETag` and `Last-Modified`, made when first sent (formatting them took
    /// three allocations and a date format per request).
    validators: Vec<std::sync::OnceLock<(HeaderValue, HeaderValue)>>,
}

impl Indexed {
    fn new(manifest: Manifest) -> Self {
        let at = manifest
            .entries()
            .iter()
            .enumerate()
            .map(|(i, e)| (e.path.as_str().to_owned(), i))
            .collect();
        let validators = std::iter::repeat_with(std::sync::OnceLock::new)
            .take(manifest.entries().len())
            .collect();
        Self {
            manifest,
            at,
            validators,
        }
    }

    /// The entry at `path` (no link followed).
    fn find(&self, path: &str) -> Option<&Entry> {
        self.at.get(path).and_then(|i| self.manifest.entries().get(*i))
    }

    /// The `ETag` (the file's BLAKE3, quoted) and `Last-Modified` of a file entry.
    fn validators(&self, e: &Entry) -> std::borrow::Cow<'_, (HeaderValue, HeaderValue)> {
        let make = || {
            let etag = e.file().map_or_else(String::new, |f| format!("\"{}\"", f.hash));
            let date = crate::util::http_date(e.mtime.secs);
            (
                HeaderValue::from_str(&etag).unwrap_or_else(|_| HeaderValue::from_static("")),
                HeaderValue::from_str(&date).unwrap_or_else(|_| HeaderValue::from_static("")),
            )
        };
        match self.at.get(e.path.as_str()).and_then(|i| self.validators.get(*i)) {
            Some(slot) => std::borrow::Cow::Borrowed(slot.get_or_init(make)),
            None => std::borrow::Cow::Owned(make()),
        }
    }
}

impl std::ops::Deref for Indexed {
    type Target = Manifest;

    fn deref(&self) -> &Manifest {
        &self.manifest
    }
}

/// The version `which` (a package ID, upper case, or a content ID) names, and its manifest's
/// hash.
fn version_named(lib: &Library, which: Named) -> pkgdist_content::Result<Option<(ContentId, Digest)>> {
    let cid = match which {
        Named::Version(c) => c,
        Named::Latest(pkg) => match lib.latest(pkg)? {
            Some(c) => c,
            None => return Ok(None),
        },
    };
    Ok(lib.manifest_id(cid)?.map(|id| (cid, id)))
}

/// The entry `path` names, following symlinks inside the manifest wherever they are on the way
/// (`dlink/f` through a link to a folder), 16 hops at most: a relative target from the link's
/// folder, an absolute one from the package root (as in a chroot: an OS tree's
/// `/etc/alternatives/…`). A hard link is its file. Otherwise, why it leads to nothing served.
fn resolve<'m>(m: &'m Indexed, path: &str) -> Result<&'m Entry, Unresolved> {
    // Most requests name a file by its own path: every folder above an entry is a folder
    // entry (a manifest holds nothing below a link), so an entry found at the whole path was
    // reached through no link.
    if let Some(e) = m.find(path) {
        match &e.kind {
            EntryKind::File(_) | EntryKind::Directory => return Ok(e),
            EntryKind::HardLink { target } => return m.find(target.as_str()).ok_or(Unresolved::Missing),
            _ => {}
        }
    }
    let mut todo: std::collections::VecDeque<String> = path.split('/').map(str::to_owned).collect();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    // Once an absolute link was followed, the package root is `/`: `..` there stays there.
    let mut rooted = false;
    while let Some(part) = todo.pop_front() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                if done.pop().is_none() && !rooted {
                    return Err(Unresolved::OutOfPackage);
                }
                continue;
            }
            _ => done.push(part),
        }
        let e = m.find(&done.join("/")).ok_or(Unresolved::Missing)?;
        match &e.kind {
            EntryKind::Symlink { target } => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(Unresolved::Loop);
                }
                // The target, from the link's folder (the root for an absolute one), then what
                // is left of the path.
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                    rooted = true;
                }
                for c in target.split('/').rev() {
                    todo.push_front(c.to_owned());
                }
            }
            EntryKind::Directory => {}
            EntryKind::File(_) if todo.is_empty() => return Ok(e),
            EntryKind::HardLink { target } if todo.is_empty() => {
                return m.find(target.as_str()).ok_or(Unresolved::Missing);
            }
            EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. } | EntryKind::Fifo => {
                return Err(Unresolved::NotServed);
            }
            // Nothing is below a file.
            _ => return Err(Unresolved::Missing),
        }
    }
    m.find(&done.join("/")).ok_or(Unresolved::Missing)
}

/// Links followed for one path at most: past that it is a loop, or a chain too long to be
/// anything else.
const MAX_HOPS: usize = 16;

/// Why a path leads to nothing served (the 404's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unresolved {
    Missing,
    OutOfPackage,
    Loop,
    NotServed,
}

impl Unresolved {
    fn reason(self) -> &'static str {
        match self {
            Unresolved::Missing => "no such file or folder in the package",
            Unresolved::OutOfPackage => "a link on the way leads out of the package",
            Unresolved::Loop => "the links on the way loop (more than 16 followed)",
            Unresolved::NotServed => "devices and fifos are not served",
        }
    }
}

async fn root(
    State(content): State<Content>,
    Path(pkg): Path<String>,
    uri: axum::http::Uri,
    method: Method,
    headers: HeaderMap,
) -> Response {
    serve(content, &pkg, "", &uri, method, &headers).await
}

async fn file(
    State(content): State<Content>,
    Path((pkg, path)): Path<(String, String)>,
    uri: axum::http::Uri,
    method: Method,
    headers: HeaderMap,
) -> Response {
    serve(content, &pkg, &path, &uri, method, &headers).await
}

async fn share_root(
    State(content): State<Content>,
    Path((share, pkg)): Path<(String, String)>,
    uri: axum::http::Uri,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if !share.eq_ignore_ascii_case(SHARE) {
        return not_the_share();
    }
    serve(content, &pkg, "", &uri, method, &headers).await
}

async fn share_file(
    State(content): State<Content>,
    Path((share, pkg, path)): Path<(String, String, String)>,
    uri: axum::http::Uri,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if !share.eq_ignore_ascii_case(SHARE) {
        return not_the_share();
    }
    serve(content, &pkg, &path, &uri, method, &headers).await
}

/// A folder asked for without its trailing slash, by a client that follows links (HTML): sent
/// to the same path with the slash, as web servers do, so the listing's relative links resolve
/// inside the folder rather than one level up.
fn with_slash(uri: &axum::http::Uri) -> Response {
    let mut to = format!("{}/", uri.path());
    if let Some(q) = uri.query() {
        to.push('?');
        to.push_str(q);
    }
    match HeaderValue::from_str(&to) {
        Ok(v) => (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, v)]).into_response(),
        Err(_) => plain(StatusCode::BAD_REQUEST, "invalid path"),
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

async fn serve(
    content: Content,
    pkg: &str,
    path: &str,
    uri: &axum::http::Uri,
    method: Method,
    headers: &HeaderMap,
) -> Response {
    let trimmed = path.trim_end_matches('/');
    if !trimmed.is_empty() && RelPath::new(trimmed).is_err() {
        return plain(
            StatusCode::BAD_REQUEST,
            "invalid path: no '..', '.' or empty components",
        );
    }
    let (cid, m) = match manifest(&content, pkg).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let folder_without_slash = !uri.path().ends_with('/') && !wants_json(headers);
    if trimmed.is_empty() {
        if folder_without_slash {
            return with_slash(uri);
        }
        return listing(&m, cid, "", headers);
    }
    let entry = match resolve(&m, trimmed) {
        Ok(e) => e,
        Err(why) => return plain(StatusCode::NOT_FOUND, format!("{cid}: {trimmed:?}: {}", why.reason())),
    };
    match &entry.kind {
        EntryKind::Directory if folder_without_slash => with_slash(uri),
        EntryKind::Directory => listing(&m, cid, entry.path.as_str(), headers),
        EntryKind::File(f) => {
            let validators = m.validators(entry);
            let (etag_value, modified_value) = &*validators;
            let etag = etag_value.to_str().unwrap_or_default();
            let modified = modified_value.to_str().unwrap_or_default();
            let mut base = Response::builder()
                .header(header::ETAG, etag_value.clone())
                .header(header::LAST_MODIFIED, modified_value.clone())
                .header(header::ACCEPT_RANGES, "bytes")
                .header(header::CONTENT_TYPE, OCTETS)
                .header(CONTENT_ID_HEADER, cid.to_string());
            if headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                // Weak comparison, as If-None-Match asks: `W/"…"` matches the strong tag.
                .is_some_and(|v| {
                    v.split(',').any(|t| {
                        let t = t.trim();
                        t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
                    })
                })
            {
                return base
                    .status(StatusCode::NOT_MODIFIED)
                    .body(Body::empty())
                    .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response"));
            }
            let size = f.size;
            // If-Range: honour Range only for the same version of the file.
            let range_ok = headers
                .get(header::IF_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v.trim() == etag || v.trim() == modified);
            let range = if range_ok {
                headers.get(header::RANGE).and_then(|v| v.to_str().ok())
            } else {
                None
            };
            let (status, start, end) = match range.map(|r| parse_range(r, size)) {
                None | Some(Range::Ignore) => (StatusCode::OK, 0, size),
                Some(Range::Bytes(a, b)) => {
                    base = base.header(header::CONTENT_RANGE, format!("bytes {a}-{}/{size}", b - 1));
                    (StatusCode::PARTIAL_CONTENT, a, b)
                }
                Some(Range::Unsatisfiable) => {
                    return Response::builder()
                        .status(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                        .body(Body::empty())
                        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response"));
                }
            };
            base = base.status(status).header(header::CONTENT_LENGTH, end - start);
            if method == Method::HEAD {
                return base
                    .body(Body::empty())
                    .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response"));
            }
            let hit = match content.served.as_ref().map(|s| (s, s.quick(&f.hash, f.size))) {
                None | Some((_, Quick::Miss)) => None,
                Some((_, Quick::Hit(hit))) => Some(hit),
                // An open and an fstat (and for a small file a read): off the workers, which
                // a cold disk would otherwise hold.
                Some((served, Quick::Closed)) => {
                    let (served, hash, size) = (served.clone(), f.hash, f.size);
                    tokio::task::spawn_blocking(move || served.open_blocking(hash, size))
                        .await
                        .ok()
                        .flatten()
                }
            };
            if let Some(Hit::Memory(bytes)) = hit {
                let range = usize::try_from(start).unwrap_or(0)..usize::try_from(end).unwrap_or(0);
                return base
                    .body(Body::from(bytes.slice(range)))
                    .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response"));
            }
            if let Some(Hit::Copy(copy)) = hit {
                // The body for hyper (TLS), the extension for the direct loop (plain).
                let body = stream(CopyReader {
                    copy: copy.clone(),
                    pos: start,
                    end,
                });
                let send = SendFile {
                    copy,
                    start,
                    len: end - start,
                    sent: None,
                };
                return base
                    .extension(send)
                    .body(body)
                    .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response"));
            }
            let reader = match content.library.read_file(&m, entry.path.as_str(), start..end) {
                Ok(r) => r,
                Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
            if let Some(served) = &content.served {
                served.want(f);
            }
            base.body(stream(reader))
                .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response"))
        }
        // `resolve` answers only folders and files (a hard link as its file).
        _ => plain(StatusCode::NOT_FOUND, Unresolved::Missing.reason()),
    }
}

/// How much of a file one read takes (and one body frame carries), filled whole but for the
/// last: a frame per chunk (64 KiB on average) was four times the frames, and a short block in
/// a 256 KiB allocation held the whole allocation.
const BLOCK: usize = 256 << 10;

/// Blocks read at once over every download: the blocking threads (and the blocks being
/// decompressed and hashed) downloads take. 2,048 downloads starting together took 512
/// blocking threads before.
const READS_AT_ONCE: usize = 16;

static READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(READS_AT_ONCE);

/// How long a block read ahead waits for its client to want it. Past that the client is not
/// keeping up: the block (and the chunk behind it) is let go and read again when wanted, and
/// from then on that download reads only what is wanted, so a slow client costs no read twice
/// and a stalled one holds only what its connection holds.
const HOLD_AHEAD: std::time::Duration = std::time::Duration::from_secs(1);

/// Streams a verified reader, one block read ahead of the client while it keeps up. The body
/// asks for each block (`want`) and receives it (`data`); a producer task hands it over and
/// reads the next. Reads run on blocking threads given back as soon as the block is read, at
/// most [`READS_AT_ONCE`] at a time: a client that stops reading holds a socket and its
/// connection's buffer, never a thread, and after [`HOLD_AHEAD`] no block of ours either. A
/// client that stops for good is let go by its connection's write deadline
/// (`listen::Limits::write_stall`), which drops the body and so ends the producer.
///
/// Nothing starts until the body is first polled: a response the direct loop sends from a
/// file (`SendFile`) drops its body unread, at no cost.
fn stream<R: Blocks>(reader: R) -> Body {
    type Channels = (
        tokio::sync::mpsc::Sender<()>,
        tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    );
    enum State<R> {
        Idle(R),
        Running(Channels),
    }
    let frames = futures_util::stream::unfold(State::Idle(reader), |state| async move {
        let (want, mut data) = match state {
            State::Running(channels) => channels,
            State::Idle(reader) => {
                let (want_tx, want_rx) = tokio::sync::mpsc::channel::<()>(1);
                let (data_tx, data_rx) = tokio::sync::mpsc::channel(1);
                tokio::spawn(produce(reader, want_rx, data_tx));
                (want_tx, data_rx)
            }
        };
        want.send(()).await.ok()?;
        let frame = data.recv().await?;
        Some((frame, State::Running((want, data))))
    });
    Body::from_stream(frames)
}

/// The producer of [`stream`]: hands over each block when it is wanted, reading one ahead
/// while the client keeps up. Ends when the body is dropped (`want` closes).
async fn produce<R: Blocks>(
    reader: R,
    mut want: tokio::sync::mpsc::Receiver<()>,
    data: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    // The first block is read when first wanted.
    if want.recv().await.is_none() {
        return;
    }
    let Some(mut next) = read_block(reader).await else {
        return; // the read panicked: the body ends short, and the client sees it
    };
    let mut ahead = true;
    loop {
        let (reader, block) = next;
        let block = match block {
            Ok(b) if b.is_empty() => return, // the end: the body ends when `data` closes
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "stopping a download: damaged content");
                let _ = data.send(Err(e)).await;
                return;
            }
        };
        if data.send(Ok(block)).await.is_err() {
            return; // the client went away
        }
        if !ahead {
            if want.recv().await.is_none() {
                return;
            }
            let Some(wanted) = read_block(reader).await else {
                return;
            };
            next = wanted;
            continue;
        }
        let at = reader.position();
        let Some(read_ahead) = read_block(reader).await else {
            return;
        };
        next = match tokio::time::timeout(HOLD_AHEAD, want.recv()).await {
            Ok(Some(())) => read_ahead,
            Ok(None) => return,
            Err(_) => {
                // Not wanted in time: let the block and its chunk go, read it again when it
                // is wanted, and read nothing ahead for this client from now on.
                ahead = false;
                let (mut reader, _dropped) = read_ahead;
                reader.rewind_and_release(at);
                if want.recv().await.is_none() {
                    return;
                }
                match read_block(reader).await {
                    Some(again) => again,
                    None => return,
                }
            }
        };
    }
}

/// Reads the reader's next block (empty at the end) on a blocking thread, within the limit of
/// reads at once; answers the reader with it. `None` if the read panicked (the reader is
/// lost with it).
async fn read_block<R: Blocks>(mut reader: R) -> Option<(R, Result<Bytes, std::io::Error>)> {
    if reader.remaining() == 0 {
        // The end needs no thread.
        return Some((reader, Ok(Bytes::new())));
    }
    let _turn = READS.acquire().await.ok()?;
    tokio::task::spawn_blocking(move || {
        let want = usize::try_from(reader.remaining()).unwrap_or(BLOCK).min(BLOCK);
        let mut buf = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            match std::io::Read::read(&mut reader, &mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return (reader, Err(e)),
            }
        }
        buf.truncate(filled);
        (reader, Ok(Bytes::from(buf)))
    })
    .await
    .ok()
}

/// What [`stream`] reads a file from: the library's chunks, or a verified copy.
trait Blocks: std::io::Read + Send + 'static {
    fn remaining(&self) -> u64;
    fn position(&self) -> u64;
    /// Goes back to `pos` (a position it was at) and lets go of what it holds.
    fn rewind_and_release(&mut self, pos: u64);
}

impl Blocks for pkgdist_content::FileReader {
    fn remaining(&self) -> u64 {
        pkgdist_content::FileReader::remaining(self)
    }

    fn position(&self) -> u64 {
        pkgdist_content::FileReader::position(self)
    }

    fn rewind_and_release(&mut self, pos: u64) {
        pkgdist_content::FileReader::rewind_and_release(self, pos);
    }
}

/// A range of a verified copy, read with `pread`. A failed or short read drops the copy.
struct CopyReader {
    copy: Copied,
    pos: u64,
    end: u64,
}

impl std::io::Read for CopyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = usize::try_from(self.end - self.pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        match std::os::unix::fs::FileExt::read_at(&*self.copy.file, &mut buf[..want], self.pos) {
            Ok(0) => {
                let e = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the copy ended short");
                self.copy.failed(&e);
                Err(e)
            }
            Ok(n) => {
                self.pos += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => self.read(buf),
            Err(e) => {
                if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) {
                    self.copy.failed(&e);
                }
                Err(e)
            }
        }
    }
}

impl Blocks for CopyReader {
    fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    fn position(&self) -> u64 {
        self.pos
    }

    fn rewind_and_release(&mut self, pos: u64) {
        self.pos = pos.min(self.end);
    }
}

enum Range {
    Bytes(u64, u64),
    Unsatisfiable,
    /// Not a single byte range we serve partially (several ranges, another unit): send it all.
    Ignore,
}

/// One `bytes=` range as [start, end).
fn parse_range(header: &str, size: u64) -> Range {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Range::Ignore;
    };
    if spec.contains(',') {
        return Range::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Ignore;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, false) => b.parse::<u64>().ok().map(|n| (size.saturating_sub(n), size, n == 0)),
        (false, true) => a.parse::<u64>().ok().map(|a| (a, size, false)),
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) if b >= a => Some((a, b.saturating_add(1).min(size), false)),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => Range::Ignore,
        Some((start, end, empty_suffix)) if empty_suffix || start >= size || start >= end => Range::Unsatisfiable,
        Some((start, end, _)) => Range::Bytes(start, end),
    }
}

fn listing(m: &Manifest, cid: ContentId, dir: &str, headers: &HeaderMap) -> Response {
    let entries: Vec<&Entry> = m.children(dir).collect();
    if wants_json(headers) {
        let list: Vec<_> = entries
            .iter()
            .map(|e| {
                let (kind, size) = match &e.kind {
                    EntryKind::Directory => ("directory", 0),
                    EntryKind::File(f) => ("file", f.size),
                    EntryKind::HardLink { .. } => ("file", m.content_of(e).map_or(0, |f| f.size)),
                    EntryKind::Symlink { .. } => ("symlink", 0),
                    EntryKind::CharDevice { .. } => ("chardevice", 0),
                    EntryKind::BlockDevice { .. } => ("blockdevice", 0),
                    EntryKind::Fifo => ("fifo", 0),
                };
                json!({"name": e.path.file_name(), "kind": kind, "size": size})
            })
            .collect();
        return axum::Json(json!({"content_id": cid.to_string(), "path": dir, "entries": list})).into_response();
    }
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut html = format!(
        "<!doctype html><title>{cid}/{}</title><h1>{cid}/{}</h1><ul>\n",
        esc(dir),
        esc(dir)
    );
    for e in entries {
        let name = e.path.file_name();
        let slash = if matches!(e.kind, EntryKind::Directory) {
            "/"
        } else {
            ""
        };
        let href: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        html.push_str(&format!(
            "<li><a href=\"{href}{slash}\">{}{slash}</a></li>\n",
            esc(name)
        ));
    }
    html.push_str("</ul>\n");
    let mut r = html.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use pkgdist_core::{ChunkParams, FileData, Timestamp};

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry::new(RelPath::new(path).unwrap(), 0o755, Timestamp::default(), kind)
    }

    /// Links resolve inside the package: relative ones from their folder, absolute ones from
    /// the package root as in a chroot (where `/..` is `/`); a relative one that climbs out,
    /// a loop, a device or fifo, or a path below a file leads nowhere; a hard link is its file.
    #[test]
    fn links_resolve_inside_the_package_as_in_a_chroot() {
        let file = |path: &str| {
            entry(
                path,
                EntryKind::File(FileData {
                    size: 0,
                    hash: pkgdist_core::Digest::of(b""),
                    chunks: Vec::new(),
                    holes: Vec::new(),
                }),
            )
        };
        let link = |path: &str, target: &str| entry(path, EntryKind::Symlink { target: target.into() });
        let m = Manifest::new(
            ChunkParams::DEFAULT,
            vec![
                entry("etc", EntryKind::Directory),
                entry("etc/alternatives", EntryKind::Directory),
                link("etc/alternatives/editor", "/usr/bin/vi"),
                link("etc/up", "../../../usr/bin/vi"),
                link("etc/rooted", "/../../usr/bin/vi"),
                entry("usr", EntryKind::Directory),
                entry("usr/bin", EntryKind::Directory),
                file("usr/bin/vi"),
                entry(
                    "usr/bin/view",
                    EntryKind::HardLink {
                        target: RelPath::new("usr/bin/vi").unwrap(),
                    },
                ),
                link("bin", "usr/bin"),
                link("loop-a", "loop-b"),
                link("loop-b", "loop-a"),
                entry("dev", EntryKind::Directory),
                entry("dev/null", EntryKind::CharDevice { major: 1, minor: 3 }),
                entry("dev/initctl", EntryKind::Fifo),
                link("dev/stdin", "/proc/self/fd/0"),
            ],
        )
        .unwrap();
        let m = Indexed::new(m);
        let path = |p: &str| resolve(&m, p).map(|e| e.path.as_str().to_owned());
        let vi = Ok("usr/bin/vi".to_owned());
        assert_eq!(path("etc/alternatives/editor"), vi);
        assert_eq!(path("bin/vi"), vi, "through a link to a folder");
        assert_eq!(path("etc/rooted"), vi, "/.. is /");
        assert_eq!(path("usr/bin/view"), vi);
        assert_eq!(
            path("etc/up"),
            Err(Unresolved::OutOfPackage),
            "a relative link out of the package"
        );
        assert_eq!(path("loop-a"), Err(Unresolved::Loop));
        assert_eq!(path("dev/null"), Err(Unresolved::NotServed));
        assert_eq!(path("dev/initctl"), Err(Unresolved::NotServed));
        assert_eq!(
            path("dev/stdin"),
            Err(Unresolved::Missing),
            "a target the package does not hold"
        );
        assert_eq!(path("usr/bin/vi/x"), Err(Unresolved::Missing));
    }

    /// A block read ahead and not wanted within the hold is let go and read again when wanted,
    /// from where it was: the client gets every byte once, in order. And a client that then
    /// takes each block slowly is never cut.
    #[tokio::test]
    async fn a_block_let_go_is_read_again_exactly() {
        let dir = tempfile::TempDir::new().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let data = pkgdist_testkit::generate::Rng::new(9).bytes(2 << 20);
        std::fs::write(src.join("f.bin"), &data).unwrap();
        let lib = Library::new(Arc::new(pkgdist_content::MemoryStore::new()));
        let cid: ContentId = "PS100001.1".parse().unwrap();
        lib.snapshot(&src, cid, &pkgdist_content::SnapshotOptions::default())
            .unwrap();
        let m = lib.manifest(cid).unwrap();
        // A range that starts and ends off block boundaries.
        let (start, end) = (1000u64, 1_900_000u64);
        let reader = lib.read_file(&m, "f.bin", start..end).unwrap();
        let (want, want_rx) = tokio::sync::mpsc::channel(1);
        let (data_tx, mut frames) = tokio::sync::mpsc::channel(1);
        tokio::spawn(produce(reader, want_rx, data_tx));
        let mut got = Vec::new();
        want.send(()).await.unwrap();
        got.extend_from_slice(&frames.recv().await.unwrap().unwrap());
        // Past the hold: the block read ahead is let go.
        tokio::time::sleep(HOLD_AHEAD + std::time::Duration::from_millis(500)).await;
        let mut slow = 0;
        while want.send(()).await.is_ok() {
            match frames.recv().await {
                Some(frame) => got.extend_from_slice(&frame.unwrap()),
                None => break,
            }
            // The next one past the hold too, once: read only when wanted from now on.
            if slow == 0 {
                tokio::time::sleep(HOLD_AHEAD + std::time::Duration::from_millis(200)).await;
            }
            slow += 1;
        }
        assert_eq!(got.len() as u64, end - start);
        assert!(got == data[start as usize..end as usize], "bytes differ");
    }

    #[test]
    fn ranges() {
        let r = |h: &str| match parse_range(h, 100) {
            Range::Bytes(a, b) => format!("{a}-{b}"),
            Range::Unsatisfiable => "416".into(),
            Range::Ignore => "all".into(),
        };
        assert_eq!(r("bytes=0-9"), "0-10");
        assert_eq!(r("bytes=90-"), "90-100");
        assert_eq!(r("bytes=-10"), "90-100");
        assert_eq!(r("bytes=-500"), "0-100");
        assert_eq!(r("bytes=50-500"), "50-100");
        assert_eq!(r("bytes=100-"), "416");
        assert_eq!(r("bytes=-0"), "416");
        assert_eq!(r("bytes=0-1,5-6"), "all");
        assert_eq!(r("items=0-1"), "all");
        assert_eq!(r("bytes=9-3"), "all");
        assert_eq!(r("bytes=x-"), "all");
    }
}
