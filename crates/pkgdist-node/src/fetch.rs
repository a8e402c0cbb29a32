//! Fetching content from other nodes: a manifest checked against the hash the caller trusts,
//! then only the chunks the caller lacks, in batches, each chunk verified on arrival. Where the
//! caller holds the package's previous version, each missing chunk names the old chunks at its
//! place as delta bases, and the source may send just the difference ([`Bases`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use pkgdist_content::envelope::Packer;
use pkgdist_content::{ContentError, Library};
use pkgdist_core::{ChunkRef, ContentId, Digest, Manifest, PackageId};
use pkgdist_proto::node::{
    CHUNKS_PATH, CONTENT_ID_HEADER, ChunkRequest, FRAMES_ACCEPT_HEADER, FRAMES_ENCODING_HEADER, LATEST_PATH,
    MANIFEST_ACCEPT_HEADER, MANIFEST_ENCODING_HEADER, MANIFESTS_PATH, MAX_CHUNKS_PER_REQUEST, ZSTD_GROUPS, frames,
};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}: {text}")]
    Status { url: String, status: u16, text: String },
    #[error("{url} sent a manifest that hashes to {actual}, not the expected {expected}; it is not trusted")]
    ManifestMismatch {
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{url} sent bad data: {why}")]
    BadData { url: String, why: String },
    #[error("{url} does not hold chunk {id}")]
    Absent { url: String, id: Digest },
    #[error("{url} is closed to this job for now ({text}); asking again in {} s", retry_after.as_secs())]
    Closed {
        url: String,
        retry_after: std::time::Duration,
        text: String,
    },
    #[error("no source given")]
    NoSource,
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error("a worker thread failed: {0}")]
    Join(String),
}

impl FetchError {
    fn bad(url: &str, why: impl Into<String>) -> Self {
        Self::BadData {
            url: url.to_owned(),
            why: why.into(),
        }
    }
}

pub type Result<T, E = FetchError> = std::result::Result<T, E>;

/// Which manifest to fetch.
#[derive(Debug, Clone, Copy)]
pub enum Which {
    Version(ContentId),
    Latest(PackageId),
}

/// A manifest as fetched.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub content: ContentId,
    pub manifest: Manifest,
    pub hash: Digest,
    /// What the manifest took on the wire (compressed, perhaps against a base).
    pub wire_bytes: u64,
}

/// A version the receiver holds, offered as the base a manifest is sent against
/// (`pkgdist_content::manifest_delta`).
#[derive(Debug, Clone)]
pub struct ManifestBase {
    pub content: ContentId,
    /// Its manifest's canonical bytes.
    pub bytes: Vec<u8>,
}

impl ManifestBase {
    /// The latest version of `content`'s package that `lib` holds, if it is another version.
    pub fn latest_in(lib: &pkgdist_content::Library, content: ContentId) -> pkgdist_content::Result<Option<Self>> {
        match lib.latest(content.package)? {
            Some(c) if c != content => Ok(Some(Self {
                content: c,
                bytes: lib.manifest(c)?.encode(),
            })),
            _ => Ok(None),
        }
    }
}

/// Delta bases a receiver offers: for a chunk it lacks, chunks it holds that resemble it.
/// Empty for a receiver without a library (a client download) or without an older version.
#[derive(Debug, Clone, Default)]
pub struct Bases {
    library: Option<Arc<Library>>,
    of: Arc<HashMap<Digest, Vec<ChunkRef>>>,
}

impl Bases {
    /// The bases offered for `chunk`, if any.
    pub fn of(&self, chunk: &Digest) -> Option<&[ChunkRef]> {
        self.of.get(chunk).map(Vec::as_slice)
    }

    /// How many of the missing chunks have bases.
    pub fn len(&self) -> usize {
        self.of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.of.is_empty()
    }

    /// The request's `bases` field for `refs`: empty when none of them has a base.
    fn request(&self, refs: &[ChunkRef]) -> Vec<Vec<Digest>> {
        if !refs.iter().any(|c| self.of.contains_key(&c.id)) {
            return Vec::new();
        }
        refs.iter()
            .map(|c| {
                self.of
                    .get(&c.id)
                    .map_or_else(Vec::new, |b| b.iter().map(|b| b.id).collect())
            })
            .collect()
    }

    /// A chunk the source sent as a delta, rebuilt and packed as an envelope.
    fn rebuild(&self, want: &ChunkRef, delta: &[u8], packer: &mut Packer) -> Result<Vec<u8>, String> {
        let (Some(lib), Some(bases)) = (&self.library, self.of.get(&want.id)) else {
            return Err("a delta for a chunk no base was offered for".into());
        };
        let data = pkgdist_content::delta::rebuild(lib, bases, delta, want).map_err(|e| e.to_string())?;
        Ok(packer.pack(&data).to_vec())
    }
}

/// Default batch size: chunk bytes (uncompressed) per request.
pub const BATCH_BYTES: u64 = 8 << 20;

/// An HTTP client for the source routes of other nodes.
#[derive(Debug, Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    /// A token and the one source (base URL) it is for: a DP's credential goes to its site and
    /// to no other source.
    bearer: Option<(String, String)>,
    batch_bytes: u64,
    /// The job chunk requests are made for (sent as `x-pkgdist-job`).
    job: Option<String>,
    /// Where received bytes and rejected chunks are counted.
    metrics: crate::metrics::FetchMetrics,
}

/// The longest a source closed to a job is left alone before it is asked again.
const MAX_PAUSE_SECS: u64 = 10;

/// The largest manifest accepted from a source: a site takes none larger from a child
/// (`content_up::MAX_MANIFEST_BYTES`), about two million files. A compressed manifest is
/// rebuilt to this size at most.
const MAX_MANIFEST: u64 = 256 << 20;

impl Fetcher {
    /// A fetcher for anonymous sources (DPs serve content to anyone).
    pub fn new() -> Self {
        Self::with_client(reqwest::Client::builder())
    }

    /// A fetcher whose client starts from `builder` (a DP enrolled over https: trusting its
    /// site's CA and presenting its certificate).
    pub fn with_client(builder: reqwest::ClientBuilder) -> Self {
        let http = builder
            .pool_idle_timeout(pkgdist_proto::POOL_IDLE)
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Self {
            http,
            bearer: None,
            batch_bytes: BATCH_BYTES,
            job: None,
            metrics: crate::metrics::FetchMetrics::default(),
        }
    }

    /// Counts what this fetcher receives into a daemon's metrics.
    pub fn with_metrics(mut self, metrics: crate::metrics::FetchMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Presents `token` to the source at `base` (and only there).
    pub fn with_bearer_for(mut self, base: &str, token: &str) -> Self {
        self.bearer = Some((base.trim_end_matches('/').to_owned(), token.to_owned()));
        self
    }

    /// The same fetcher, naming `job` in its chunk requests.
    pub fn for_job(&self, job: &str) -> Self {
        Self {
            job: Some(job.to_owned()),
            ..self.clone()
        }
    }

    pub fn with_batch_bytes(mut self, bytes: u64) -> Self {
        self.batch_bytes = bytes.max(1);
        self
    }

    pub fn batch_bytes(&self) -> u64 {
        self.batch_bytes
    }

    fn auth(&self, url: &str, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.bearer {
            Some((base, t)) if url.starts_with(&format!("{base}/")) => req.bearer_auth(t),
            _ => req,
        }
    }

    async fn send(&self, url: &str, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = self.auth(url, req).send().await.map_err(|e| FetchError::Connect {
            url: url.to_owned(),
            source: e,
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let text = resp.text().await.unwrap_or_default().trim().to_owned();
        if let (503, Some(secs)) = (status, retry_after) {
            return Err(FetchError::Closed {
                url: url.to_owned(),
                retry_after: std::time::Duration::from_secs(secs.clamp(1, MAX_PAUSE_SECS)),
                text,
            });
        }
        Err(FetchError::Status {
            url: url.to_owned(),
            status,
            text,
        })
    }

    /// A manifest from `source`. With `expect`, it must hash to that value.
    pub async fn manifest(&self, source: &str, which: Which, expect: Option<Digest>) -> Result<Fetched> {
        self.manifest_against(source, which, expect, None).await
    }

    /// [`Fetcher::manifest`], offering `held` as the base it may be sent against.
    pub async fn manifest_against(
        &self,
        source: &str,
        which: Which,
        expect: Option<Digest>,
        held: Option<&ManifestBase>,
    ) -> Result<Fetched> {
        let mut url = match which {
            Which::Version(c) => format!("{}{MANIFESTS_PATH}/{c}", base(source)),
            Which::Latest(p) => format!("{}{LATEST_PATH}/{p}", base(source)),
        };
        if let Some(b) = held {
            url = format!("{url}?base={}", b.content);
        }
        let get = self
            .http
            .get(&url)
            .header(MANIFEST_ACCEPT_HEADER, pkgdist_content::manifest_delta::ZSTD);
        let resp = self.send(&url, get).await?;
        let encoding = resp
            .headers()
            .get(MANIFEST_ENCODING_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let content = match which {
            Which::Version(c) => c,
            Which::Latest(_) => resp
                .headers()
                .get(CONTENT_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| FetchError::bad(&url, "no content ID header"))?,
        };
        let body = read_capped(&url, resp, MAX_MANIFEST).await?;
        let wire_bytes = body.len() as u64;
        self.metrics.received.inc_by(wire_bytes);
        let cap = usize::try_from(MAX_MANIFEST).unwrap_or(usize::MAX);
        // Compressed alone (no base named) or against the version this node offered.
        let base = |named: &str| match named {
            "" => Some(None),
            b => held
                .filter(|h| h.content.to_string() == b)
                .map(|h| Some(h.bytes.as_slice())),
        };
        let bytes = match encoding.as_deref().map(|e| e.split_once("; base=").unwrap_or((e, ""))) {
            None => body,
            Some((e, named)) if let (true, Some(base)) = (e == pkgdist_content::manifest_delta::ZSTD, base(named)) => {
                pkgdist_content::manifest_delta::decode(&body, base, cap)
                    .map_err(|e| FetchError::bad(&url, format!("manifest: {e}")))?
            }
            Some(_) => {
                return Err(FetchError::bad(
                    &url,
                    format!("a manifest encoded as {encoding:?}, which this node did not ask for"),
                ));
            }
        };
        let hash = Digest::of(&bytes);
        if let Some(expected) = expect
            && expected != hash
        {
            return Err(FetchError::ManifestMismatch {
                url,
                expected,
                actual: hash,
            });
        }
        let manifest = Manifest::decode(&bytes).map_err(|e| FetchError::bad(&url, format!("manifest: {e}")))?;
        Ok(Fetched {
            content,
            manifest,
            hash,
            wire_bytes,
        })
    }

    /// Chunk envelopes from `source`, in the order of `refs`, and the bytes that crossed the
    /// wire. Each envelope is checked to unpack to its chunk before it is returned; chunks sent
    /// as deltas against `bases` are rebuilt and checked the same way.
    pub async fn chunks(&self, source: &str, refs: &[ChunkRef], bases: &Bases) -> Result<(Vec<Vec<u8>>, u64)> {
        let url = format!("{}{CHUNKS_PATH}", base(source));
        let req = ChunkRequest {
            ids: refs.iter().map(|c| c.id).collect(),
            bases: bases.request(refs),
        };
        let mut post = self
            .http
            .post(&url)
            .header(FRAMES_ACCEPT_HEADER, ZSTD_GROUPS)
            .json(&req);
        if let Some(job) = &self.job {
            post = post.header(pkgdist_proto::node::JOB_HEADER, job);
        }
        let resp = self.send(&url, post).await?;
        // Frames and envelope headers add well under 64 bytes per chunk; compression only
        // shrinks an envelope (a chunk that does not compress is stored raw).
        let cap: u64 = refs.iter().map(|c| u64::from(c.len) + 64).sum();
        let grouped = resp
            .headers()
            .get(FRAMES_ENCODING_HEADER)
            .is_some_and(|v| v.as_bytes() == ZSTD_GROUPS.as_bytes());
        // Groups add a 9-byte header each, and a group sent as it is is no longer than its frames.
        let body = read_capped(&url, resp, cap + 4096 + 16 * refs.len() as u64).await?;
        let wire = body.len() as u64;
        self.metrics.received.inc_by(wire);
        let rejected = self.metrics.rejected.clone();
        let refs = refs.to_vec();
        let url2 = url.clone();
        let bases = bases.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<Vec<u8>>> {
            let mut packer = Packer::new();
            let body = if grouped {
                crate::groups::open(&body, usize::try_from(cap).unwrap_or(usize::MAX))
                    .map_err(|e| FetchError::bad(&url2, e.to_string()))?
            } else {
                body
            };
            let parsed = frames::parse(&body).map_err(|e| FetchError::bad(&url2, e.to_string()))?;
            if parsed.len() != refs.len() {
                return Err(FetchError::bad(
                    &url2,
                    format!("{} chunks asked for, {} sent", refs.len(), parsed.len()),
                ));
            }
            let mut out = Vec::with_capacity(refs.len());
            for (want, (id, env)) in refs.iter().zip(parsed) {
                if want.id != id {
                    return Err(FetchError::bad(&url2, "chunks sent out of order"));
                }
                let env = match env {
                    frames::Payload::Absent => return Err(FetchError::Absent { url: url2.clone(), id }),
                    frames::Payload::Stored(env) => {
                        let data = pkgdist_content::library::check_chunk(env, want).map_err(|why| {
                            rejected.inc();
                            FetchError::bad(&url2, format!("chunk {id}: {why}"))
                        })?;
                        if grouped && !pkgdist_content::envelope::is_compressed(env) {
                            // Sent raw in a compressed group: stored as it would have come.
                            packer.pack(&data).to_vec()
                        } else {
                            env.to_vec()
                        }
                    }
                    frames::Payload::Delta(delta) => bases.rebuild(want, delta, &mut packer).map_err(|why| {
                        rejected.inc();
                        FetchError::bad(&url2, format!("chunk {id}: {why}"))
                    })?,
                };
                out.push(env);
            }
            Ok(out)
        })
        .await
        .map_err(|e| FetchError::Join(e.to_string()))?
        .map(|v| (v, wire))
    }

    /// [`Fetcher::chunks`] from the first of `sources` that can provide them all.
    pub async fn chunks_from_any(
        &self,
        sources: &[String],
        refs: &[ChunkRef],
        bases: &Bases,
    ) -> Result<(Vec<Vec<u8>>, u64)> {
        let mut last = FetchError::NoSource;
        for s in sources {
            match self.chunks(s, refs, bases).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    tracing::warn!(source = %s, error = %e, "source failed; trying the next");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// [`Fetcher::manifest`] from the first of `sources` that has it.
    pub async fn manifest_from_any(
        &self,
        sources: &[String],
        which: Which,
        expect: Option<Digest>,
        held: Option<&ManifestBase>,
    ) -> Result<Fetched> {
        let mut last = FetchError::NoSource;
        for s in sources {
            match self.manifest_against(s, which, expect, held).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    tracing::warn!(source = %s, error = %e, "source failed; trying the next");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

impl Default for Fetcher {
    fn default() -> Self {
        Self::new()
    }
}

/// A response body, refused as soon as it grows past `cap` bytes.
async fn read_capped(url: &str, mut resp: reqwest::Response, cap: u64) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(part) = resp.chunk().await.map_err(|e| FetchError::Connect {
        url: url.to_owned(),
        source: e,
    })? {
        if (body.len() + part.len()) as u64 > cap {
            return Err(FetchError::bad(
                url,
                format!("the answer is larger than the {cap} bytes it can be"),
            ));
        }
        body.extend_from_slice(&part);
    }
    Ok(body)
}

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// Splits chunks into request batches of at most `max_bytes` (uncompressed; at least one chunk
/// per batch) and [`MAX_CHUNKS_PER_REQUEST`] chunks.
pub fn batches(chunks: &[ChunkRef], max_bytes: u64) -> Vec<&[ChunkRef]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, c) in chunks.iter().enumerate() {
        let full = i > start && (bytes + u64::from(c.len) > max_bytes || i - start >= MAX_CHUNKS_PER_REQUEST);
        if full {
            out.push(&chunks[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += u64::from(c.len);
    }
    if start < chunks.len() {
        out.push(&chunks[start..]);
    }
    out
}

/// What installing a version needs to fetch.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Distinct chunks of the version.
    pub total: u64,
    /// Of those, already held (for any package or version).
    pub present: u64,
    pub missing: Vec<ChunkRef>,
    /// Delta bases for missing chunks, from the package's newest other version held here.
    pub bases: Bases,
}

/// Works out the chunks of `manifest` (version `content`) that `lib` lacks, and the delta bases
/// it can offer for them. With `repair`, every chunk already held is re-hashed first, and
/// damaged ones are deleted so that they count as missing.
pub async fn plan(lib: Arc<Library>, content: ContentId, manifest: Arc<Manifest>, repair: bool) -> Result<Plan> {
    tokio::task::spawn_blocking(move || -> Result<Plan> {
        let unique = manifest.unique_chunks();
        if repair {
            for c in &unique {
                lib.keep_if_sound(c)?;
            }
        }
        let missing = lib.missing_chunks(&manifest)?;
        let bases = delta_bases(&lib, content, &manifest, &missing)?;
        Ok(Plan {
            total: unique.len() as u64,
            present: (unique.len() - missing.len()) as u64,
            missing,
            bases: Bases {
                library: Some(lib),
                of: Arc::new(bases),
            },
        })
    })
    .await
    .map_err(|e| FetchError::Join(e.to_string()))?
}

/// Bases from the newest version of the package before `content` held in `lib`, keeping only
/// those whose chunks are all present (a base deleted as damaged is not offered again).
fn delta_bases(
    lib: &Library,
    content: ContentId,
    manifest: &Manifest,
    missing: &[ChunkRef],
) -> Result<HashMap<Digest, Vec<ChunkRef>>> {
    if missing.is_empty() {
        return Ok(HashMap::new());
    }
    let previous = lib
        .versions()?
        .into_iter()
        .filter(|v| v.package == content.package && v.version < content.version)
        .max_by_key(|v| v.version);
    let Some(previous) = previous else {
        return Ok(HashMap::new());
    };
    let previous = lib.manifest(previous)?;
    let wanted: HashSet<Digest> = missing.iter().map(|c| c.id).collect();
    let mut bases = pkgdist_content::delta::bases(&previous, manifest, &wanted);
    let mut held = HashMap::new();
    for picked in bases.values() {
        for c in picked {
            if let std::collections::hash_map::Entry::Vacant(v) = held.entry(c.id) {
                v.insert(lib.has_chunk(&c.id)?);
            }
        }
    }
    bases.retain(|_, picked| picked.iter().all(|c| held.get(&c.id) == Some(&true)));
    Ok(bases)
}

/// Progress of [`fill`], after each batch is durable.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchDone {
    pub chunks: u64,
    pub wire_bytes: u64,
}

/// Fetches `missing` chunks from `sources` into `lib`, batch by batch. Each batch is flushed
/// (durable) before `on_batch` hears of it, so a restart never fetches a reported batch again.
/// `on_batch` returns whether to go on; `false` ends with [`FetchError::Cancelled`].
pub async fn fill(
    fetcher: &Fetcher,
    lib: &Arc<Library>,
    sources: &[String],
    missing: &[ChunkRef],
    bases: &Bases,
    mut on_batch: impl FnMut(BatchDone) -> bool,
) -> Result<()> {
    for batch in batches(missing, fetcher.batch_bytes) {
        let (envelopes, wire) = loop {
            match fetcher.chunks_from_any(sources, batch, bases).await {
                // The source's window is closed to this job: pause, keeping what is verified.
                Err(FetchError::Closed { retry_after, text, .. }) => {
                    tracing::info!(%text, secs = retry_after.as_secs(), "source closed to this job; paused");
                    tokio::time::sleep(retry_after).await;
                }
                other => break other?,
            }
        };
        let lib = lib.clone();
        let refs = batch.to_vec();
        tokio::task::spawn_blocking(move || -> Result<(), ContentError> {
            for (c, e) in refs.iter().zip(&envelopes) {
                lib.put_envelope(c, e)?;
            }
            lib.flush()
        })
        .await
        .map_err(|e| FetchError::Join(e.to_string()))??;
        let go_on = on_batch(BatchDone {
            chunks: batch.len() as u64,
            wire_bytes: wire,
        });
        if !go_on {
            return Err(FetchError::Cancelled);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(len: u32, n: u8) -> ChunkRef {
        ChunkRef {
            id: Digest::of(&[n]),
            len,
        }
    }

    #[test]
    fn batches_respect_bytes_and_keep_every_chunk() {
        let chunks: Vec<ChunkRef> = (0..10).map(|i| c(100, i)).collect();
        let b = batches(&chunks, 250);
        assert_eq!(b.iter().map(|b| b.len()).collect::<Vec<_>>(), vec![2, 2, 2, 2, 2]);
        // A chunk larger than the limit still goes, alone.
        let big = [c(1000, 1), c(10, 2)];
        assert_eq!(batches(&big, 100).len(), 2);
        assert!(batches(&[], 100).is_empty());
        let many: Vec<ChunkRef> = (0..3000u32).map(|i| c(1, (i % 250) as u8)).collect();
        let b = batches(&many, u64::MAX);
        assert!(b.iter().all(|b| b.len() <= MAX_CHUNKS_PER_REQUEST));
        assert_eq!(b.iter().map(|b| b.len()).sum::<usize>(), 3000);
    }
}
