//! The content library: a single-instance store of chunks and manifests, and the content IDs
//! bound to them.
//!
//! Every package version (`<PackageID>.<SourceVersion>`) is a *ref* naming one manifest; the
//! manifest names chunks; a chunk is stored once however many files, packages and versions use
//! it. A version is recorded (its ref written) only after its manifest and every chunk it needs
//! are durable, so a crash at any point leaves every recorded version complete.

use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use pkgdist_core::{ChunkParams, ChunkRef, ContentId, Digest, Manifest, PackageId};
use serde::{Deserialize, Serialize};

use crate::envelope::{self, Packer};
use crate::error::{ContentError, Result};
use crate::store::{Kind, LocalStore, Store};

/// What a library holds ([`Library::stored_size`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredSize {
    pub chunks: u64,
    /// Bytes as stored (chunk envelopes, compressed where that helped, and manifests).
    pub bytes: u64,
}

/// What a ref object holds.
#[derive(Debug, Serialize, Deserialize)]
struct RefRecord {
    manifest: Digest,
}

/// Refs holding prestaged versions are named `prestaged.<content ID>` (not a content ID, so
/// [`Library::versions`] does not list them).
const PRESTAGED: &str = "prestaged.";

fn prestaged_ref(content: ContentId) -> String {
    format!("{PRESTAGED}{content}")
}

#[derive(Debug)]
pub struct Library {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) params: ChunkParams,
    /// Staged bytes after which a snapshot flushes, bounding dirty data and lost work on a crash.
    pub(crate) flush_bytes: u64,
    /// How recently a file may have changed and still get a quick-check stamp; see snapshot.
    pub(crate) racy_margin: std::time::Duration,
    /// Writers hold it shared; garbage collection holds it exclusively. Across processes the
    /// store's own lock does the same.
    gc_guard: RwLock<()>,
    /// Bumped after every change to the recorded versions ([`Library::versions_changed`]).
    versions_changed: std::sync::atomic::AtomicU64,
}

impl Library {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            params: ChunkParams::DEFAULT,
            flush_bytes: 256 << 20,
            racy_margin: std::time::Duration::from_secs(2),
            gc_guard: RwLock::new(()),
            versions_changed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Opens the library in `dir` on local disk, creating it if needed.
    pub fn create_local(dir: &Path) -> Result<Self> {
        Ok(Self::new(Arc::new(LocalStore::open(dir)?)))
    }

    /// Opens an existing library on local disk; a folder that is not one is refused rather
    /// than silently turned into an empty library.
    pub fn open_local(dir: &Path) -> Result<Self> {
        if !dir.join(Kind::Ref.dir_name()).is_dir() {
            return Err(ContentError::NotALibrary(dir.to_owned()));
        }
        Self::create_local(dir)
    }

    /// Uses other chunking parameters for new snapshots. Existing versions keep theirs.
    pub fn with_chunk_params(mut self, params: ChunkParams) -> Result<Self> {
        params.validate()?;
        self.params = params;
        Ok(self)
    }

    pub fn with_flush_bytes(mut self, bytes: u64) -> Self {
        self.flush_bytes = bytes.max(1);
        self
    }

    /// Files changed less than `margin` before they are read are not trusted by the next quick
    /// check (default 2 s, the coarsest common timestamp granularity). Tests set it to zero.
    pub fn with_racy_margin(mut self, margin: std::time::Duration) -> Self {
        self.racy_margin = margin;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn chunk_params(&self) -> ChunkParams {
        self.params
    }

    pub(crate) fn writer(&self) -> RwLockReadGuard<'_, ()> {
        self.gc_guard.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn exclusive(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.gc_guard.write().unwrap_or_else(|e| e.into_inner())
    }

    // ---- chunks ----

    pub fn has_chunk(&self, id: &Digest) -> Result<bool> {
        Ok(self.store.contains(Kind::Chunk, &id.to_hex())?)
    }

    /// A chunk's bytes, verified against its id and length. Damage is an error, never data.
    pub fn read_chunk(&self, chunk: &ChunkRef) -> Result<Vec<u8>> {
        read_chunk(self.store.as_ref(), chunk)
    }

    /// Stores a chunk received from elsewhere after checking that its bytes hash to `id`.
    /// It becomes visible at the next [`Library::flush`].
    pub fn put_chunk(&self, id: &Digest, data: &[u8], packer: &mut Packer) -> Result<()> {
        let actual = Digest::of(data);
        if actual != *id {
            return Err(ContentError::Damaged {
                what: format!("received chunk {id}"),
                reason: format!("its bytes hash to {actual}"),
            });
        }
        let _w = self.writer();
        self.store.put(Kind::Chunk, &id.to_hex(), packer.pack(data))?;
        Ok(())
    }

    /// A chunk as stored (its envelope, possibly compressed), for sending to another node
    /// without unpacking and repacking it. `None` when the chunk is not here.
    pub fn chunk_envelope(&self, id: &Digest) -> Result<Option<Vec<u8>>> {
        Ok(self.store.get(Kind::Chunk, &id.to_hex())?)
    }

    /// A chunk's bytes when only its id is known (a delta base named by another node), checked
    /// against the id. `None` when the chunk is not here.
    pub fn chunk_bytes(&self, id: &Digest) -> Result<Option<Vec<u8>>> {
        let Some(stored) = self.store.get(Kind::Chunk, &id.to_hex())? else {
            return Ok(None);
        };
        check_object(&stored, id, None)
            .map(Some)
            .map_err(|reason| ContentError::Damaged {
                what: format!("chunk {id}"),
                reason,
            })
    }

    /// Stores a chunk envelope received from another node, after checking that it unpacks to
    /// `chunk`'s length and hash. Stored as received: no recompression. Visible at the next
    /// [`Library::flush`].
    pub fn put_envelope(&self, chunk: &ChunkRef, stored: &[u8]) -> Result<()> {
        check_chunk(stored, chunk).map_err(|reason| ContentError::Damaged {
            what: format!("received chunk {}", chunk.id),
            reason,
        })?;
        let _w = self.writer();
        self.store.put(Kind::Chunk, &chunk.id.to_hex(), stored)?;
        Ok(())
    }

    /// Re-reads a stored chunk and deletes it when it is damaged, so that delta planning sees
    /// it as missing and it is fetched again. Returns whether a sound copy is present.
    pub fn keep_if_sound(&self, chunk: &ChunkRef) -> Result<bool> {
        match read_chunk(self.store.as_ref(), chunk) {
            Ok(_) => Ok(true),
            Err(ContentError::Missing { .. }) => Ok(false),
            Err(ContentError::Damaged { what, reason }) => {
                tracing::warn!(%what, %reason, "deleting a damaged chunk so it is fetched again");
                let _w = self.writer();
                self.store.delete(Kind::Chunk, &chunk.id.to_hex())?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Makes staged chunks durable and visible.
    pub fn flush(&self) -> Result<()> {
        Ok(self.store.flush()?)
    }

    /// Delta planning: the distinct chunks of `manifest` that this library lacks. Chunks held
    /// for any other package or version count as present.
    pub fn missing_chunks(&self, manifest: &Manifest) -> Result<Vec<ChunkRef>> {
        let mut missing = Vec::new();
        for c in manifest.unique_chunks() {
            if !self.has_chunk(&c.id)? {
                missing.push(c);
            }
        }
        Ok(missing)
    }

    /// What the library holds: chunks and their stored (compressed) bytes, manifests included.
    /// Reads the size of every object: its cost grows with the number of chunks, so callers
    /// keep the answer a while (`pkgdist_node::metrics` counts at most every 10 minutes).
    pub fn stored_size(&self) -> Result<StoredSize> {
        let mut size = StoredSize::default();
        for kind in [Kind::Chunk, Kind::Manifest] {
            for name in self.store.list(kind)? {
                // An object removed since the listing (collected garbage) no longer counts.
                if let Some(bytes) = self.store.size(kind, &name)? {
                    size.bytes += bytes;
                    if kind == Kind::Chunk {
                        size.chunks += 1;
                    }
                }
            }
        }
        Ok(size)
    }

    // ---- versions ----

    /// A number that changes whenever this `Library` records or forgets a version: a reader
    /// that remembers what [`Library::latest`] or [`Library::manifest_id`] answered (a DP
    /// serving thousands of requests a second) may keep its answer while this stays the same.
    /// Read it *before* asking, so a change while asking shows as a change. Versions recorded
    /// by another process through the same folder are not seen; on a DP only its own jobs
    /// record versions.
    pub fn versions_changed(&self) -> u64 {
        self.versions_changed.load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump_versions(&self) {
        self.versions_changed.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Every recorded content ID, sorted.
    pub fn versions(&self) -> Result<Vec<ContentId>> {
        let mut v: Vec<ContentId> = self
            .store
            .list(Kind::Ref)?
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        v.sort();
        Ok(v)
    }

    /// The highest recorded version of a package.
    pub fn latest(&self, package: PackageId) -> Result<Option<ContentId>> {
        Ok(self.versions()?.into_iter().filter(|c| c.package == package).max())
    }

    /// The manifest hash a content ID is bound to.
    pub fn manifest_id(&self, content: ContentId) -> Result<Option<Digest>> {
        let Some(bytes) = self.store.get(Kind::Ref, &content.to_string())? else {
            return Ok(None);
        };
        let rec: RefRecord = serde_json::from_slice(&bytes).map_err(|e| ContentError::Damaged {
            what: format!("the record of {content}"),
            reason: e.to_string(),
        })?;
        Ok(Some(rec.manifest))
    }

    /// The manifest of a recorded version, verified against its hash.
    pub fn manifest(&self, content: ContentId) -> Result<Manifest> {
        let id = self
            .manifest_id(content)?
            .ok_or(ContentError::UnknownContent(content))?;
        self.load_manifest(&id)
    }

    /// A manifest by hash, verified.
    pub fn load_manifest(&self, id: &Digest) -> Result<Manifest> {
        let what = || format!("manifest {id}");
        let stored = self
            .store
            .get(Kind::Manifest, &id.to_hex())?
            .ok_or_else(|| ContentError::Missing { what: what() })?;
        let bytes = envelope::unpack(&stored).map_err(|e| ContentError::Damaged {
            what: what(),
            reason: e.to_string(),
        })?;
        if Digest::of(&bytes) != *id {
            return Err(ContentError::Damaged {
                what: what(),
                reason: "content does not match its hash".into(),
            });
        }
        Manifest::decode(&bytes).map_err(|e| ContentError::Damaged {
            what: what(),
            reason: e.to_string(),
        })
    }

    /// Records `content` as `manifest`, once every chunk it needs is present. Recording the same
    /// manifest again is a no-op; a different one is refused, because versions never change —
    /// also when two writers race for the same content ID (the ref is created exactly once).
    pub fn commit(&self, content: ContentId, manifest: &Manifest) -> Result<Digest> {
        let _w = self.writer();
        self.commit_locked(content, manifest, true)
    }

    /// [`Library::commit`] for callers that already hold the writer lock (taking a std
    /// `RwLock` read guard twice can deadlock against a waiting gc). `check_chunks` may be
    /// false only when the caller has itself made sure every chunk is present and flushed, as
    /// a snapshot has.
    pub(crate) fn commit_locked(&self, content: ContentId, manifest: &Manifest, check_chunks: bool) -> Result<Digest> {
        let bytes = manifest.encode();
        if bytes.len() > envelope::MAX_LEN {
            return Err(ContentError::source(
                format!("{content}"),
                format!(
                    "its manifest would be {} bytes, over the 1 GiB limit; split the package",
                    bytes.len()
                ),
            ));
        }
        let id = Digest::of(&bytes);
        match self.manifest_id(content)? {
            Some(existing) if existing == id => return Ok(id),
            Some(_) => return Err(ContentError::VersionExists(content)),
            None => {}
        }
        if check_chunks && let Some(c) = self.missing_chunks(manifest)?.first() {
            return Err(ContentError::Missing {
                what: format!("chunk {} needed by {content}", c.id),
            });
        }
        if !self.store.contains(Kind::Manifest, &id.to_hex())? {
            self.store
                .put(Kind::Manifest, &id.to_hex(), Packer::new().pack(&bytes))?;
        }
        // Makes the manifest, and any chunk staged by anyone, durable before the ref exists.
        self.store.flush()?;
        let rec = serde_json::to_vec(&RefRecord { manifest: id }).map_err(|e| ContentError::io("ref", e.into()))?;
        if !self.store.put_new(Kind::Ref, &content.to_string(), &rec)? {
            // Someone else recorded this content ID in the meantime.
            return match self.manifest_id(content)? {
                Some(existing) if existing == id => Ok(id),
                _ => Err(ContentError::VersionExists(content)),
            };
        }
        self.bump_versions();
        tracing::info!(%content, manifest = %id, "recorded content version");
        // Recorded: a prestaged hold of it, or of an older version, has done its work.
        for (held, _) in self.prestaged()? {
            if held.package == content.package && held.version <= content.version {
                self.store.delete(Kind::Ref, &prestaged_ref(held))?;
            }
        }
        Ok(id)
    }

    /// Holds a prestaged version's manifest (canonical `bytes`, whose chunks the caller has
    /// stored) without recording the version: garbage collection keeps it and its chunks
    /// until the version is recorded ([`Library::commit`] drops the hold) or
    /// [`Library::release_prestaged`] drops it.
    pub fn hold_prestaged(&self, content: ContentId, bytes: &[u8]) -> Result<Digest> {
        let id = Digest::of(bytes);
        let _w = self.writer();
        if !self.store.contains(Kind::Manifest, &id.to_hex())? {
            self.store
                .put(Kind::Manifest, &id.to_hex(), Packer::new().pack(bytes))?;
        }
        self.store.flush()?;
        let rec = serde_json::to_vec(&RefRecord { manifest: id }).map_err(|e| ContentError::io("ref", e.into()))?;
        self.store.put(Kind::Ref, &prestaged_ref(content), &rec)?;
        self.store.flush()?;
        Ok(id)
    }

    /// The manifests held for prestaged versions not yet recorded, by content ID.
    pub fn prestaged(&self) -> Result<Vec<(ContentId, Digest)>> {
        let mut held = Vec::new();
        for name in self.store.list(Kind::Ref)? {
            let Some(content) = name.strip_prefix(PRESTAGED).and_then(|c| c.parse::<ContentId>().ok()) else {
                continue;
            };
            if let Some(bytes) = self.store.get(Kind::Ref, &name)? {
                let rec: RefRecord = serde_json::from_slice(&bytes).map_err(|e| ContentError::Damaged {
                    what: format!("the hold of prestaged {content}"),
                    reason: e.to_string(),
                })?;
                held.push((content, rec.manifest));
            }
        }
        Ok(held)
    }

    /// Drops the hold of a prestaged version; answers whether there was one.
    pub fn release_prestaged(&self, content: ContentId) -> Result<bool> {
        let _w = self.writer();
        let name = prestaged_ref(content);
        let held = self.store.contains(Kind::Ref, &name)?;
        if held {
            self.store.delete(Kind::Ref, &name)?;
        }
        Ok(held)
    }

    /// Forgets a version. Its chunks stay until garbage collection finds no other version
    /// using them. Returns whether the version existed.
    pub fn release(&self, content: ContentId) -> Result<bool> {
        let _w = self.writer();
        let existed = self.store.contains(Kind::Ref, &content.to_string())?;
        self.store.delete(Kind::Ref, &content.to_string())?;
        self.bump_versions();
        self.store.delete(Kind::Stamps, &content.to_string())?;
        self.store.flush()?;
        Ok(existed)
    }
}

/// Reads and verifies one chunk from a store.
pub(crate) fn read_chunk(store: &dyn Store, chunk: &ChunkRef) -> Result<Vec<u8>> {
    let what = || format!("chunk {}", chunk.id);
    let stored = store
        .get(Kind::Chunk, &chunk.id.to_hex())?
        .ok_or_else(|| ContentError::Missing { what: what() })?;
    let data = check_chunk(&stored, chunk).map_err(|reason| ContentError::Damaged { what: what(), reason })?;
    Ok(data)
}

/// Unpacks a stored chunk (an envelope) and checks its hash and length: the bytes, or why not.
pub fn check_chunk(stored: &[u8], chunk: &ChunkRef) -> std::result::Result<Vec<u8>, String> {
    check_object(stored, &chunk.id, Some(chunk.len as usize))
}

/// Unpacks a stored object and checks it hashes to `id` (and, when known, its length first: a
/// damaged header must not make us decompress, and allocate, more than the object can be).
pub(crate) fn check_object(stored: &[u8], id: &Digest, len: Option<usize>) -> std::result::Result<Vec<u8>, String> {
    if let Some(len) = len
        && envelope::declared_len(stored) != Some(len)
    {
        return Err(format!(
            "its header does not give the length {len} the manifest records"
        ));
    }
    let data = envelope::unpack(stored).map_err(|e| e.to_string())?;
    if Digest::of(&data) != *id {
        return Err("content does not match its hash".into());
    }
    Ok(data)
}
