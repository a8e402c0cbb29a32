//! Snapshotting a source folder into the library as a new content version.
//!
//! The walk is deterministic and records every kind of entry an OS tree holds (manifest format
//! 2: links verbatim, hard links, devices, fifos, owners, extended attributes, holes); it
//! refuses, with the offending path, what a manifest cannot hold: a name or link target that
//! is not UTF-8, an unreadable file. Sockets are left out, counted. Reading is a two-stage pipeline: this thread reads, chunks and
//! hashes (about 1 GB/s on one core); writer threads compress and stage the chunks the library
//! does not have yet. A bounded channel keeps memory flat whatever the package size.
//!
//! Quick check: files whose size, mtime, ctime, inode and device match the stamps of the
//! previous version are not read again; their chunk lists are reused (after checking the chunks
//! are still present). ctime catches writes that restore the mtime (`cp -p`, `touch -r`).
//! A file changed within the library's racy margin (2 s by default, enough for FAT and NFS
//! timestamp granularity) of being read gets no stamp: a later write in the same timestamp tick
//! would not move its times, so it is read again next time.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pkgdist_core::{ChunkRef, ContentId, Digest, Entry, EntryKind, FileData, Manifest, Timestamp};
use serde::{Deserialize, Serialize};

use crate::chunker::Chunker;
use crate::envelope::Packer;
use crate::error::{ContentError, Result};
use crate::library::Library;
use crate::store::{Kind, Store};
use crate::walk::{Found, Scanned, Seen, SourceDir};

/// How many writer threads compress and stage chunks.
const WRITERS: usize = 2;
/// Chunks in flight between the reader and the writers (at most 64 × 256 KiB = 16 MiB).
const IN_FLIGHT: usize = 64;
const READ_BUFFER: usize = 4 << 20;

/// Receives progress while a snapshot runs (the CLI draws a bar with it).
pub trait Progress: Sync {
    /// Called once after the walk, with the bytes and files to be processed.
    fn start(&self, _total_bytes: u64, _files: u64) {}
    /// Called as bytes are processed (read, or skipped by the quick check).
    fn advance(&self, _bytes: u64) {}
}

#[derive(Default)]
pub struct SnapshotOptions<'a> {
    /// The version whose stamps the quick check compares against.
    pub previous: Option<ContentId>,
    /// Re-read every file even when its stamp matches.
    pub checksum: bool,
    pub progress: Option<&'a dyn Progress>,
    /// The folders a source must be inside (after its path's symlinks are resolved, as the
    /// opened folder is, so no link swapped in later can lead out); `None` for any folder.
    pub allowed_roots: Option<&'a [std::path::PathBuf]>,
    /// Folders a source may not be, be inside or hold (the site's own data folder), judged
    /// as `allowed_roots` is.
    pub private: &'a [std::path::PathBuf],
}

impl std::fmt::Debug for SnapshotOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotOptions")
            .field("previous", &self.previous)
            .field("checksum", &self.checksum)
            .field("progress", &self.progress.is_some())
            .field("allowed_roots", &self.allowed_roots)
            .field("private", &self.private)
            .finish()
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SnapshotStats {
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    /// Further names of files already recorded.
    pub hard_links: u64,
    /// Device nodes and fifos.
    pub specials: u64,
    /// Sockets in the source, left out (a socket is a running program's, not content).
    pub sockets_skipped: u64,
    /// Total size of all files.
    pub bytes: u64,
    /// Files whose chunk list was reused by the quick check, without reading them.
    pub files_reused: u64,
    /// Bytes actually read from the source.
    pub bytes_read: u64,
    /// Chunks that were new to the library, their size, and what they took once stored.
    pub chunks_new: u64,
    pub bytes_new: u64,
    pub bytes_stored: u64,
}

#[derive(Debug, Clone)]
pub struct SnapshotOutcome {
    pub content_id: ContentId,
    pub manifest_id: Digest,
    /// The previous version had exactly this manifest: nothing in the source changed.
    pub unchanged: bool,
    pub stats: SnapshotStats,
}

/// Per-file facts the quick check compares, kept per version outside the manifest: they
/// describe one machine's source folder, not the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StampRow", into = "StampRow")]
struct Stamp {
    size: u64,
    mtime: Timestamp,
    ctime: Timestamp,
    ino: u64,
    dev: u64,
}

/// A stamp as stored: one flat JSON array, about half the size of an object with field names
/// (the stamps of a 20,000-file package are read on every quick check).
#[derive(Serialize, Deserialize)]
struct StampRow(u64, i64, u32, i64, u32, u64, u64);

impl From<StampRow> for Stamp {
    fn from(r: StampRow) -> Self {
        Stamp {
            size: r.0,
            mtime: Timestamp { secs: r.1, nanos: r.2 },
            ctime: Timestamp { secs: r.3, nanos: r.4 },
            ino: r.5,
            dev: r.6,
        }
    }
}

impl From<Stamp> for StampRow {
    fn from(s: Stamp) -> Self {
        StampRow(
            s.size,
            s.mtime.secs,
            s.mtime.nanos,
            s.ctime.secs,
            s.ctime.nanos,
            s.ino,
            s.dev,
        )
    }
}

/// The stamps of one version, tied to the manifest they were taken for: stamps that do not
/// belong to the version's manifest are never trusted.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stamps {
    manifest: Option<Digest>,
    files: BTreeMap<String, Stamp>,
}

impl From<Seen> for Stamp {
    fn from(s: Seen) -> Self {
        Stamp {
            size: s.size,
            mtime: s.mtime,
            ctime: s.ctime,
            ino: s.ino,
            dev: s.dev,
        }
    }
}

impl Library {
    /// Snapshots `source` as `target`. On success the version is recorded; on failure nothing
    /// is recorded (chunks already written stay as unreferenced data for garbage collection).
    pub fn snapshot(&self, source: &Path, target: ContentId, opts: &SnapshotOptions<'_>) -> Result<SnapshotOutcome> {
        let _span = tracing::info_span!("snapshot", content = %target, source = %source.display()).entered();
        let _w = self.writer();
        if self.manifest_id(target)?.is_some() {
            return Err(ContentError::VersionExists(target));
        }
        let chunker = Chunker::new(self.params)?;
        let source = SourceDir::open(source)?;
        source.check_place(opts.allowed_roots, opts.private)?;
        let scan = source.scan()?;
        let scanned = scan.entries;

        let previous = match opts.previous {
            Some(prev) if !opts.checksum => self.quick_check_base(prev)?,
            _ => None,
        };
        let mut stats = SnapshotStats {
            sockets_skipped: scan.sockets.len() as u64,
            ..SnapshotStats::default()
        };
        // Each inode once: a file's other names are hard links, not read again.
        let mut inodes = HashSet::new();
        let (mut total, mut nfiles) = (0u64, 0u64);
        for s in &scanned {
            if let Found::File(seen) = &s.what
                && inodes.insert((seen.dev, seen.ino))
            {
                total += seen.size;
                nfiles += 1;
            }
        }
        if let Some(p) = opts.progress {
            p.start(total, nfiles);
        }

        let shared = Shared {
            store: self.store.as_ref(),
            flush_bytes: self.flush_bytes,
            racy_margin: self.racy_margin,
            staged_bytes: AtomicU64::new(0),
            abort: AtomicBool::new(false),
            error: Mutex::new(None),
            pool: Mutex::new(Vec::new()),
            chunks_new: AtomicU64::new(0),
            bytes_new: AtomicU64::new(0),
            bytes_stored: AtomicU64::new(0),
        };
        let mut stamps = BTreeMap::new();
        let (tx, rx) = sync_channel::<(Digest, Vec<u8>)>(IN_FLIGHT);
        let rx = Mutex::new(rx);
        let entries = std::thread::scope(|s| -> Result<Vec<Entry>> {
            let writers: Vec<_> = (0..WRITERS).map(|_| s.spawn(|| shared.write_loop(&rx))).collect();
            let mut reader = Reader {
                source: &source,
                chunker,
                tx: Some(tx),
                shared: &shared,
                staged: HashSet::new(),
                progress: opts.progress,
            };
            let result = reader.build(&scanned, previous.as_ref(), &mut stats, &mut stamps);
            drop(reader.tx.take());
            for w in writers {
                // A writer that panicked is a bug; report it rather than propagate the panic.
                if w.join().is_err() {
                    shared.fail(ContentError::io(
                        "snapshot writer",
                        std::io::Error::other("writer thread panicked"),
                    ));
                }
            }
            if let Some(e) = shared.take_error() {
                return Err(e);
            }
            result
        })?;
        self.store.flush()?;
        stats.chunks_new = shared.chunks_new.load(Ordering::Relaxed);
        stats.bytes_new = shared.bytes_new.load(Ordering::Relaxed);
        stats.bytes_stored = shared.bytes_stored.load(Ordering::Relaxed);

        let manifest = Manifest::new(self.params, entries)?;
        let unchanged = match &previous {
            Some((m, _)) => m == &manifest,
            None => match opts.previous {
                Some(p) => self.manifest_id(p)? == Some(manifest.id()),
                None => false,
            },
        };
        // Every chunk is present: reused ones were checked, new ones were just flushed.
        let manifest_id = self.commit_locked(target, &manifest, false)?;
        let stamps = Stamps {
            manifest: Some(manifest_id),
            files: stamps,
        };
        let stamp_bytes = serde_json::to_vec(&stamps).map_err(|e| ContentError::io("stamps", e.into()))?;
        self.store.put(Kind::Stamps, &target.to_string(), &stamp_bytes)?;
        self.store.flush()?;
        tracing::info!(
            files = stats.files,
            bytes = stats.bytes,
            new_chunks = stats.chunks_new,
            reused = stats.files_reused,
            "snapshot complete"
        );
        Ok(SnapshotOutcome {
            content_id: target,
            manifest_id,
            unchanged,
            stats,
        })
    }

    /// The previous version's manifest and stamps, if both are readable. A damaged or missing
    /// stamp file only costs the quick check, never correctness.
    fn quick_check_base(&self, prev: ContentId) -> Result<Option<(Manifest, BTreeMap<String, Stamp>)>> {
        let Some(id) = self.manifest_id(prev)? else {
            return Ok(None);
        };
        let manifest = self.load_manifest(&id)?;
        let stamps: Stamps = self
            .store
            .get(Kind::Stamps, &prev.to_string())?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let files = if stamps.manifest == Some(id) {
            stamps.files
        } else {
            BTreeMap::new()
        };
        Ok(Some((manifest, files)))
    }
}

/// State shared between the reading thread and the writers.
struct Shared<'a> {
    store: &'a dyn Store,
    flush_bytes: u64,
    racy_margin: Duration,
    staged_bytes: AtomicU64,
    abort: AtomicBool,
    error: Mutex<Option<ContentError>>,
    /// Chunk buffers handed back by the writers for reuse: at most IN_FLIGHT + WRITERS exist.
    pool: Mutex<Vec<Vec<u8>>>,
    chunks_new: AtomicU64,
    bytes_new: AtomicU64,
    bytes_stored: AtomicU64,
}

impl Shared<'_> {
    fn fail(&self, e: ContentError) {
        self.abort.store(true, Ordering::SeqCst);
        let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(e);
    }

    fn take_error(&self) -> Option<ContentError> {
        self.error.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Compresses and stages chunks until the channel closes. After a failure it keeps draining
    /// so the reader never blocks on a full channel.
    fn write_loop(&self, rx: &Mutex<Receiver<(Digest, Vec<u8>)>>) {
        let _drain = DrainOnPanic { shared: self, rx };
        let mut packer = Packer::new();
        loop {
            let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
            let Ok((id, data)) = next else { return };
            if self.abort.load(Ordering::Relaxed) {
                continue;
            }
            let packed = packer.pack(&data);
            let stored = packed.len() as u64;
            if let Err(e) = self.store.put(Kind::Chunk, &id.to_hex(), packed) {
                self.fail(e.into());
                continue;
            }
            self.chunks_new.fetch_add(1, Ordering::Relaxed);
            self.bytes_new.fetch_add(data.len() as u64, Ordering::Relaxed);
            self.bytes_stored.fetch_add(stored, Ordering::Relaxed);
            self.pool.lock().unwrap_or_else(PoisonError::into_inner).push(data);
            let staged = self.staged_bytes.fetch_add(stored, Ordering::Relaxed) + stored;
            // Whoever crosses the threshold (and wins the swap) flushes for everyone.
            if staged >= self.flush_bytes
                && self.staged_bytes.swap(0, Ordering::Relaxed) >= self.flush_bytes
                && let Err(e) = self.store.flush()
            {
                self.fail(e.into());
            }
        }
    }
}

/// If a writer panics, the reader must not block forever on a full channel: stop everything
/// and keep draining.
struct DrainOnPanic<'s, 'a> {
    shared: &'s Shared<'a>,
    rx: &'s Mutex<Receiver<(Digest, Vec<u8>)>>,
}

impl Drop for DrainOnPanic<'_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.shared.fail(ContentError::io(
                "snapshot writer",
                std::io::Error::other("writer thread panicked"),
            ));
            let rx = self.rx.lock().unwrap_or_else(PoisonError::into_inner);
            while rx.recv().is_ok() {}
        }
    }
}

struct Reader<'a, 's> {
    /// The source folder, by descriptor: files are opened beneath it, through no link.
    source: &'s SourceDir,
    chunker: Chunker,
    tx: Option<SyncSender<(Digest, Vec<u8>)>>,
    shared: &'s Shared<'a>,
    /// Chunks sent to the writers during this snapshot.
    staged: HashSet<Digest>,
    progress: Option<&'s dyn Progress>,
}

impl Reader<'_, '_> {
    fn build(
        &mut self,
        scanned: &[Scanned],
        previous: Option<&(Manifest, BTreeMap<String, Stamp>)>,
        stats: &mut SnapshotStats,
        stamps: &mut BTreeMap<String, Stamp>,
    ) -> Result<Vec<Entry>> {
        let mut entries = Vec::with_capacity(scanned.len());
        // The first name (in path order) of each inode with several: the others link to it.
        let mut first_names: std::collections::HashMap<(u64, u64), &pkgdist_core::RelPath> =
            std::collections::HashMap::new();
        for s in scanned {
            if self.shared.abort.load(Ordering::Relaxed) {
                break;
            }
            let kind = match &s.what {
                Found::File(seen) if seen.nlink > 1 && first_names.contains_key(&(seen.dev, seen.ino)) => {
                    stats.hard_links += 1;
                    let target = first_names[&(seen.dev, seen.ino)].clone();
                    EntryKind::HardLink { target }
                }
                Found::Device { block, major, minor } => {
                    stats.specials += 1;
                    let (major, minor) = (*major, *minor);
                    if *block {
                        EntryKind::BlockDevice { major, minor }
                    } else {
                        EntryKind::CharDevice { major, minor }
                    }
                }
                Found::Fifo => {
                    stats.specials += 1;
                    EntryKind::Fifo
                }
                Found::Dir => {
                    stats.directories += 1;
                    EntryKind::Directory
                }
                Found::Symlink(target) => {
                    stats.symlinks += 1;
                    EntryKind::Symlink { target: target.clone() }
                }
                Found::File(seen) => {
                    if seen.nlink > 1 {
                        first_names.insert((seen.dev, seen.ino), &s.path);
                    }
                    let stamp = &Stamp::from(*seen);
                    stats.files += 1;
                    stats.bytes += stamp.size;
                    let reused = match previous {
                        Some((m, st)) => self.reuse(m, st, s, stamp)?,
                        None => None,
                    };
                    let data = match reused {
                        Some(d) => {
                            stats.files_reused += 1;
                            // Trusted last time and unchanged since: keep trusting it.
                            stamps.insert(s.path.to_string(), *stamp);
                            if let Some(p) = self.progress {
                                p.advance(d.size);
                            }
                            d
                        }
                        None => {
                            let started = SystemTime::now();
                            let d = self.read_file(s, seen)?;
                            stats.bytes_read += d.size;
                            if !is_racy(stamp, started, self.shared.racy_margin) {
                                stamps.insert(s.path.to_string(), *stamp);
                            }
                            d
                        }
                    };
                    EntryKind::File(data)
                }
            };
            let mut e = Entry::new(s.path.clone(), s.mode, s.mtime, kind);
            (e.uid, e.gid, e.xattrs) = (s.uid, s.gid, s.xattrs.clone());
            entries.push(e);
        }
        Ok(entries)
    }

    /// The previous version's data for this file, when its stamp matches and its chunks are
    /// all still in the library.
    fn reuse(
        &self,
        prev: &Manifest,
        stamps: &BTreeMap<String, Stamp>,
        s: &Scanned,
        stamp: &Stamp,
    ) -> Result<Option<FileData>> {
        if stamps.get(s.path.as_str()) != Some(stamp) {
            return Ok(None);
        }
        let Some(data) = prev.entry(s.path.as_str()).and_then(Entry::file) else {
            return Ok(None);
        };
        if data.size != stamp.size || prev.chunker() != self.chunker.params() {
            return Ok(None);
        }
        for c in &data.chunks {
            if !self.staged.contains(&c.id) && !self.shared.store.contains(Kind::Chunk, &c.id.to_hex())? {
                return Ok(None);
            }
        }
        Ok(Some(data.clone()))
    }

    fn read_file(&mut self, s: &Scanned, seen: &Seen) -> Result<FileData> {
        let f = self.source.open_file(s, seen)?;
        let holes =
            holes_of(&f, seen).map_err(|e| ContentError::source(&s.abs, format!("cannot map its holes ({e})")))?;
        let mut stream = self.chunker.stream(&f, READ_BUFFER);
        let mut file_hash = blake3::Hasher::new();
        let mut chunks = Vec::new();
        let mut size = 0u64;
        while let Some(chunk) = stream
            .next_chunk()
            .map_err(|e| ContentError::source(&s.abs, format!("read failed ({e})")))?
        {
            if self.shared.abort.load(Ordering::Relaxed) {
                break;
            }
            let id = Digest::from(blake3::hash(chunk));
            file_hash.update(chunk);
            size += chunk.len() as u64;
            let len =
                u32::try_from(chunk.len()).map_err(|_| ContentError::source(&s.abs, "chunk longer than 4 GiB"))?;
            chunks.push(ChunkRef { id, len });
            if !self.staged.contains(&id) && !self.shared.store.contains(Kind::Chunk, &id.to_hex())? {
                self.staged.insert(id);
                let mut buf = self
                    .shared
                    .pool
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop()
                    .unwrap_or_default();
                buf.clear();
                buf.extend_from_slice(chunk);
                let sent = self.tx.as_ref().map(|tx| tx.send((id, buf)));
                if !matches!(sent, Some(Ok(()))) {
                    break;
                }
            }
            if let Some(p) = self.progress {
                p.advance(chunk.len() as u64);
            }
        }
        drop(stream);
        // The content must be what the stamp describes; a file written to while we read it
        // would give a manifest that matches neither its old nor its new state. Asked of the
        // open file: the path may lead elsewhere by now.
        let after = f
            .metadata()
            .map_err(|e| ContentError::source(&s.abs, format!("cannot be read ({e})")))?;
        let stamp = Stamp::from(*seen);
        if size != stamp.size || stamp_of(&after) != stamp {
            return Err(ContentError::source(
                &s.abs,
                "the file changed while it was being read; run the snapshot again once it is no longer being written",
            ));
        }
        Ok(FileData {
            size,
            hash: Digest::from(file_hash.finalize()),
            chunks,
            holes,
        })
    }
}

/// The holes of a file with fewer blocks than its size needs (`SEEK_DATA`/`SEEK_HOLE`); none
/// for a dense file, or where the file system cannot say. Leaves the file at its start.
fn holes_of(f: &fs::File, seen: &Seen) -> std::io::Result<Vec<pkgdist_core::Hole>> {
    use rustix::fs::SeekFrom;
    let mut holes = Vec::new();
    if seen.blocks.saturating_mul(512) >= seen.size {
        return Ok(holes);
    }
    let mut at = 0u64;
    while at < seen.size {
        let data = match rustix::fs::seek(f, SeekFrom::Data(at)) {
            Ok(d) => d.min(seen.size),
            // No data from here on: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => seen.size,
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) => {
                holes.clear();
                break;
            }
            Err(e) => return Err(e.into()),
        };
        if data > at {
            holes.push(pkgdist_core::Hole {
                offset: at,
                len: data - at,
            });
        }
        if data >= seen.size {
            break;
        }
        let next = rustix::fs::seek(f, SeekFrom::Hole(data))?.min(seen.size);
        if next <= at {
            // No progress (a file system that answers oddly, or holes punched meanwhile):
            // the file is read whole either way; its holes are not recorded.
            holes.clear();
            break;
        }
        at = next;
    }
    rustix::fs::seek(f, SeekFrom::Start(0))?;
    Ok(holes)
}

/// Whether the file changed so close to when it was read that a further write could leave
/// its times unchanged.
fn is_racy(stamp: &Stamp, read_started: SystemTime, margin: Duration) -> bool {
    let Ok(started) = read_started.duration_since(UNIX_EPOCH) else {
        return true;
    };
    let started_ns = i128::from(started.as_secs()) * 1_000_000_000 + i128::from(started.subsec_nanos());
    let ns = |t: Timestamp| i128::from(t.secs) * 1_000_000_000 + i128::from(t.nanos);
    ns(stamp.mtime.max(stamp.ctime)) + margin.as_nanos() as i128 >= started_ns
}

fn timestamp(secs: i64, nanos: i64) -> Timestamp {
    Timestamp {
        secs,
        nanos: nanos.clamp(0, 999_999_999) as u32,
    }
}

fn stamp_of(m: &fs::Metadata) -> Stamp {
    Stamp {
        size: m.len(),
        mtime: timestamp(m.mtime(), m.mtime_nsec()),
        ctime: timestamp(m.ctime(), m.ctime_nsec()),
        ino: m.ino(),
        dev: m.dev(),
    }
}
