//! The source routes: how one node hands content to another (node protocol, see
//! `pkgdist_proto::node`).
//!
//! ```text
//! GET  /node/v1/manifests/<ContentID>   a version's manifest, canonical bytes; zstd for a
//!      [?base=<ContentID>]             receiver that takes it, against the base it holds
//!                                       (`pkgdist_content::manifest_delta`)
//! GET  /node/v1/latest/<PackageID>      the latest version's manifest (header x-pkgdist-content-id)
//! POST /node/v1/chunks                  {"ids": [...]} → chunk frames, in request order
//! ```
//!
//! Chunks travel as stored (compressed when that paid), or as a delta against chunks the
//! receiver says it holds (`pkgdist_content::delta`) when that is smaller; the receiver
//! verifies every one against the manifest it trusts, so serving them needs no checks here
//! beyond reading. A
//! [`Pacer`] in the request's extensions (the caller's rate limit for that receiver) spaces the
//! chunk stream out to its rate.
//! Authentication is the caller's: the site layers its DP-credential check on these routes,
//! a DP serves them to anyone who may download its files anyway.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use pkgdist_content::{ContentError, Library};
use pkgdist_core::{ContentId, PackageId};
use pkgdist_proto::node::{
    CHUNKS_PATH, CONTENT_ID_HEADER, ChunkRequest, FRAMES_ACCEPT_HEADER, FRAMES_ENCODING_HEADER, LATEST_PATH,
    MANIFEST_ACCEPT_HEADER, MANIFEST_ENCODING_HEADER, MANIFESTS_PATH, MAX_BASES_PER_CHUNK, MAX_CHUNKS_PER_REQUEST,
    ZSTD_GROUPS, frames,
};

use crate::pace::Pacer;
use crate::util::plain;

/// The routes, over `library`.
pub fn router(library: Arc<Library>) -> Router {
    Router::new()
        .route(&format!("{MANIFESTS_PATH}/{{content}}"), get(manifest))
        .route(&format!("{LATEST_PATH}/{{package}}"), get(latest))
        .route(CHUNKS_PATH, post(chunks))
        .with_state(library)
}

/// The version a receiver holds, to send a manifest against (`?base=PS100001.2`).
#[derive(Debug, Default, serde::Deserialize)]
struct ManifestQuery {
    base: Option<String>,
}

/// How a receiver asked for a manifest: compressed or not, and against which base.
#[derive(Debug, Clone, Copy)]
struct Wants {
    zstd: bool,
    base: Option<ContentId>,
}

impl Wants {
    fn of(headers: &HeaderMap, q: &ManifestQuery) -> Self {
        let zstd = headers
            .get(MANIFEST_ACCEPT_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|e| e.trim() == pkgdist_content::manifest_delta::ZSTD));
        Self {
            zstd,
            base: q.base.as_deref().and_then(|b| b.parse().ok()),
        }
    }
}

async fn manifest(
    State(lib): State<Arc<Library>>,
    Path(content): Path<String>,
    Query(q): Query<ManifestQuery>,
    headers: HeaderMap,
) -> Response {
    let Ok(cid) = content.parse::<ContentId>() else {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("{content:?} is not a content ID (PS100001.3)"),
        );
    };
    manifest_response(lib, Some(cid), cid.package, Wants::of(&headers, &q)).await
}

async fn latest(
    State(lib): State<Arc<Library>>,
    Path(package): Path<String>,
    Query(q): Query<ManifestQuery>,
    headers: HeaderMap,
) -> Response {
    let Ok(pid) = package.parse::<PackageId>() else {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("{package:?} is not a PackageID (PS100001)"),
        );
    };
    manifest_response(lib, None, pid, Wants::of(&headers, &q)).await
}

/// Compressions at once, over every request (manifests for receivers that take them, chunk
/// groups): a DP's routes need no credential, so what anyone can make a node compress stays
/// bounded to this many blocking threads; the rest wait their turn.
static COMPRESSING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A manifest as served: its version, body and encoding (`None`: canonical bytes).
type Served = (ContentId, Vec<u8>, Option<String>);

async fn manifest_response(lib: Arc<Library>, cid: Option<ContentId>, pid: PackageId, wants: Wants) -> Response {
    let _turn = if wants.zstd {
        COMPRESSING.acquire().await.ok()
    } else {
        None
    };
    let found = tokio::task::spawn_blocking(move || -> Result<Option<Served>, ContentError> {
        let cid = match cid {
            Some(c) => c,
            None => match lib.latest(pid)? {
                Some(c) => c,
                None => return Ok(None),
            },
        };
        if lib.manifest_id(cid)?.is_none() {
            return Ok(None);
        }
        let bytes = lib.manifest(cid)?.encode();
        if !wants.zstd {
            return Ok(Some((cid, bytes, None)));
        }
        // A base of the same package held here; any other is ignored (sent without one).
        let base = match wants.base {
            Some(b) if b.package == cid.package && b != cid && lib.manifest_id(b)?.is_some() => {
                Some((b, lib.manifest(b)?.encode()))
            }
            _ => None,
        };
        let body = pkgdist_content::manifest_delta::encode(&bytes, base.as_ref().map(|(_, b)| b.as_slice()))?;
        let encoding = match base {
            Some((b, _)) => format!("{}; base={b}", pkgdist_content::manifest_delta::ZSTD),
            None => pkgdist_content::manifest_delta::ZSTD.to_owned(),
        };
        Ok(Some((cid, body, Some(encoding))))
    })
    .await;
    match found {
        Ok(Ok(Some((cid, bytes, encoding)))) => {
            let mut r = ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response();
            if let Ok(v) = HeaderValue::from_str(&cid.to_string()) {
                r.headers_mut().insert(CONTENT_ID_HEADER, v);
            }
            if let Some(v) = encoding.and_then(|e| HeaderValue::from_str(&e).ok()) {
                r.headers_mut().insert(MANIFEST_ENCODING_HEADER, v);
            }
            r
        }
        Ok(Ok(None)) => plain(StatusCode::NOT_FOUND, format!("no content of {pid} here")),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read a manifest to serve");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the manifest: {e}"),
            )
        }
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Frames are sent in groups of about this many bytes, so memory stays bounded however many
/// chunks are asked for.
const SEND_GROUP: usize = 1 << 20;

/// The frames of `req`'s chunks from index `at`, until the group holds `send_group` bytes or
/// every chunk is in; answers the group and the index to go on from. `grouped`: the receiver
/// takes compressed groups (`crate::groups`): chunks stored compressed go in raw, and the
/// group is sealed.
fn build_group(
    lib: &Library,
    req: &ChunkRequest,
    at: usize,
    send_group: usize,
    grouped: bool,
) -> Result<(Vec<u8>, usize), std::io::Error> {
    let mut group = Vec::with_capacity(send_group + 300 * 1024);
    let mut compressible = 0;
    let mut i = at;
    while i < req.ids.len() && group.len() < send_group {
        let id = &req.ids[i];
        let bases = req.bases.get(i).map_or(&[][..], Vec::as_slice);
        match lib.chunk_envelope(id) {
            Ok(None) => frames::push(&mut group, id, frames::Payload::Absent),
            Ok(Some(stored)) => match pkgdist_content::delta::for_sending(lib, &stored, bases) {
                Some(d) => frames::push(&mut group, id, frames::Payload::Delta(&d)),
                None if grouped && pkgdist_content::envelope::is_compressed(&stored) => {
                    let raw = pkgdist_content::envelope::unpack(&stored)
                        .map(|data| pkgdist_content::envelope::raw(&data))
                        .map_err(|e| std::io::Error::other(format!("chunk {id}: {e}")))?;
                    compressible += raw.len();
                    frames::push(&mut group, id, frames::Payload::Stored(&raw));
                }
                None => frames::push(&mut group, id, frames::Payload::Stored(&stored)),
            },
            Err(e) => {
                tracing::error!(chunk = %id, error = %e, "cannot read a chunk to serve");
                return Err(std::io::Error::other(e.to_string()));
            }
        }
        i += 1;
    }
    if grouped {
        group = crate::groups::seal(&group, compressible);
    }
    Ok((group, i))
}

async fn chunks(
    State(lib): State<Arc<Library>>,
    pacer: Option<Extension<Arc<Pacer>>>,
    headers: HeaderMap,
    body: Result<Json<ChunkRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let pacer = pacer.map(|Extension(p)| p);
    let grouped = headers
        .get(FRAMES_ACCEPT_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim() == ZSTD_GROUPS));
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("expected {{\"ids\": [...]}}: {e}")),
    };
    if req.ids.len() > MAX_CHUNKS_PER_REQUEST {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} chunks asked for; at most {MAX_CHUNKS_PER_REQUEST} per request",
                req.ids.len()
            ),
        );
    }
    if !req.bases.is_empty()
        && (req.bases.len() != req.ids.len() || req.bases.iter().any(|b| b.len() > MAX_BASES_PER_CHUNK))
    {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("\"bases\" must be empty or one list of at most {MAX_BASES_PER_CHUNK} ids per chunk"),
        );
    }
    let send_group = pacer.as_ref().map_or(SEND_GROUP, |p| p.piece());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    // Each group is built on a blocking thread given back once it is built, and sent from a
    // task: a receiver that stops reading holds a task and a group or two, never a blocking
    // thread (the pool is shared with every download and lookup, and capped).
    let req = Arc::new(req);
    tokio::spawn(async move {
        let mut at = 0;
        while at < req.ids.len() {
            let (lib, req2) = (Arc::clone(&lib), Arc::clone(&req));
            let _turn = if grouped {
                COMPRESSING.acquire().await.ok()
            } else {
                None
            };
            let built = tokio::task::spawn_blocking(move || build_group(&lib, &req2, at, send_group, grouped)).await;
            let (group, next) = match built {
                Ok(Ok(g)) => g,
                Ok(Err(e)) => {
                    // Ends the body early: the receiver sees a truncated frame and retries.
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                Err(_) => return, // the build panicked: the body ends short
            };
            if tx.send(Ok(Bytes::from(group))).await.is_err() {
                return; // the receiver went away
            }
            at = next;
        }
    });
    if let Some(pacer) = pacer {
        // Each piece waits for its slot at the receiver's rate before it goes out. The body is
        // a plain byte stream, so a group is cut into pieces wherever the pace needs: at a low
        // rate the receiver still sees bytes often enough not to time out.
        let (paced_tx, paced_rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            while let Some(group) = rx.recv().await {
                let mut bytes = match group {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = paced_tx.send(Err(e)).await;
                        return;
                    }
                };
                while !bytes.is_empty() {
                    let piece = bytes.split_to(pacer.piece().min(bytes.len()));
                    tokio::select! {
                        () = pacer.take(piece.len()) => {}
                        () = paced_tx.closed() => return, // the receiver went away
                    }
                    if paced_tx.send(Ok(piece)).await.is_err() {
                        return;
                    }
                }
            }
        });
        rx = paced_rx;
    }
    let mut r = (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response();
    if grouped {
        r.headers_mut()
            .insert(FRAMES_ENCODING_HEADER, HeaderValue::from_static(ZSTD_GROUPS));
    }
    r
}
