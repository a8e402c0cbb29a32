//! Verified copies of served files, so the kernel can send them (`sendfile`).
//!
//! A DP's library stores chunks, many compressed; serving a file from them means reading,
//! decompressing and hashing every byte on every request (0.24× of nginx's throughput on
//! small files, bench/RESULTS.md). This cache keeps a plain copy of the files clients ask for,
//! one per distinct file content (named by the file's BLAKE3, so a file in many packages or
//! versions is one copy, as in ConfigMgr's file library), and serves them from the page cache.
//!
//! Invariants:
//! - **Only verified bytes.** A copy is written from the library's chunks, each checked
//!   against its hash, and the whole checked against the file's hash, in a temporary file; it
//!   is renamed to its name only then. Its identity (device, inode, size, modification and
//!   change times) is recorded in memory at that moment. Each request checks, with `fstat`,
//!   that the copy it is about to send still has exactly that identity: a write to it or a
//!   truncation changes its change time (which no user can set), and the copy is dropped and
//!   written again. A copy is opened by name and then kept open (a quarter of the
//!   open-files limit, [`OPEN_MAX`] at most); a file renamed over the name has another
//!   inode, and is refused when the name is next opened. A read that fails with `EIO` or ends
//!   short drops the copy too.
//! - **What is not seen.** A write into a copy while a send of it is under way reaches that
//!   one client (the next request sees it); a disk that returns wrong bytes without an error
//!   is found when a validation re-reads the copies of its version ([`ServedFiles::check`]).
//!   The chunks had the same exposure between their verification and the send.
//! - **Small files in memory.** A file of at most [`HOT_MAX`] bytes is read whole from its
//!   copy when first sent, checked against its hash, and kept in memory
//!   ([`ServedFiles::hot_budget`]: a sixteenth of the machine's memory, [`HOT_BYTES`] at
//!   most, least recently used go first): sending it then costs no open, no `fstat` and one
//!   write of head and body together.
//! - **Nothing trusted across restarts.** The record lives in memory; the folder is emptied
//!   when the DP starts, and copies are written again as clients ask.
//! - **Bounded.** At most the budget given to [`ServedFiles::open`] in copies (least recently used go
//!   first), never a copy that would leave the filesystem with less than [`KEEP_FREE`]
//!   free, at most [`WRITERS`] copies written at once and [`QUEUED`] waiting, a copy that
//!   could not be written not tried again for [`RETRY_AFTER`]; a file asked for meanwhile is
//!   served from the chunks as before.
//! - **Off the workers.** Opening a copy, and reading a small one, happen on a blocking
//!   thread; only memory hits and `fstat`s of copies kept open run on the async workers.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use pkgdist_content::Library;
use pkgdist_core::{Digest, FileData};
use rustix::fs::{Mode, OFlags};

/// Copies written at once.
pub const WRITERS: usize = 2;
/// Copies waiting to be written; past that a file is not queued (it is asked for again).
pub const QUEUED: usize = 1024;
/// Files at most this large are kept in memory once sent.
pub const HOT_MAX: u64 = 64 << 10;
/// Bytes of small files kept in memory at most (less on a machine with less than 16 GiB).
pub const HOT_BYTES: u64 = 1 << 30;
const HOT_SHARDS: usize = 16;

/// Copies kept open at most (fewer if the process may open few files).
pub const OPEN_MAX: usize = 16_384;

/// How long a copy that could not be written is not tried again.
pub const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Free space a copy must leave on the filesystem: 5% of its size, at most 4 GiB.
pub const KEEP_FREE: &str = "5% of the filesystem, at most 4 GiB";

/// The folder of copies, the record of which are verified, and the queue of copies to write.
#[derive(Debug)]
pub struct ServedFiles {
    dir: OwnedFd,
    path: PathBuf,
    library: Arc<Library>,
    budget: u64,
    state: Mutex<State>,
    /// In shards by the hash's first byte, so the async workers rarely meet on a lock.
    hot: [std::sync::RwLock<Hot>; HOT_SHARDS],
    writers: tokio::sync::Semaphore,
    /// Copies kept open at most.
    open_max: usize,
    /// Bytes of small files kept in memory at most.
    hot_budget: u64,
    /// The recency clock: advanced by each copy written and file kept in memory; a use
    /// records its current value. Recency is so measured in inserts, and a request writes
    /// nothing every other request writes too.
    clock: AtomicU64,
    /// Temporary names, unique in this process (the folder is this process's alone).
    temp: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    copies: HashMap<Digest, Copy>,
    /// Bytes the copies take on disk.
    bytes: u64,
    /// Asked for and not written yet.
    queued: HashSet<Digest>,
    /// Copies that could not be written, and when: not tried again before [`RETRY_AFTER`].
    failed: HashMap<Digest, std::time::Instant>,
    /// Copies kept open (at most `open_max`, least recently used closed first), so sending
    /// one costs an `fstat` of its descriptor, not a path lookup, an open and a close.
    open: HashMap<Digest, Arc<File>>,
}

/// Small files in memory, verified, with when each was last used.
#[derive(Debug, Default)]
struct Hot {
    /// The bytes, and when last used (so a hit needs only the read lock).
    files: HashMap<Digest, (Bytes, AtomicU64)>,
    bytes: u64,
}

/// What [`ServedFiles::quick`] found without blocking.
#[derive(Debug)]
pub enum Quick {
    /// Send it so.
    Hit(Hit),
    /// A copy exists but is not open: [`ServedFiles::open_blocking`] it on a blocking thread.
    Closed,
    /// No copy.
    Miss,
}

/// How a file is sent when the DP holds a verified copy of it.
#[derive(Debug, Clone)]
pub enum Hit {
    /// A small file, from memory.
    Memory(Bytes),
    /// From the copy on disk.
    Copy(Copied),
}

/// A copy written and verified, as it was when written.
#[derive(Debug)]
struct Copy {
    identity: Identity,
    disk: u64,
    used: AtomicU64,
}

/// What identifies a file's content without reading it: any change to the bytes under the
/// name changes one of these (the change time cannot be set by any user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, u64),
    ctime: (i64, u64),
}

impl Identity {
    fn of(st: &rustix::fs::Stat) -> Self {
        Self {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }
}

/// What a served copy hands a response: the open copy and whom to tell if reading it fails.
#[derive(Debug, Clone)]
pub struct Copied {
    pub file: Arc<File>,
    served: Arc<ServedFiles>,
    hash: Digest,
}

impl Copied {
    /// Reading the copy failed (an I/O error, or it ended short): it is dropped and written
    /// again from the chunks when next asked for.
    pub fn failed(&self, why: &dyn std::fmt::Display) {
        tracing::warn!(file = %self.hash, error = %why, "a served copy could not be read; dropping it");
        self.served.drop_copy(&self.hash);
    }
}

impl ServedFiles {
    /// The cache in `dir` (made 0700 if needed, and emptied: nothing in it is trusted from an
    /// earlier run), holding at most `budget` bytes of copies.
    pub fn open(dir: &Path, library: Arc<Library>, budget: u64) -> std::io::Result<Self> {
        crate::util::private_dir(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        let fd = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            dir: fd,
            path: dir.to_owned(),
            library,
            budget,
            state: Mutex::default(),
            hot: Default::default(),
            writers: tokio::sync::Semaphore::new(WRITERS),
            // A quarter of the descriptors: the connections take at most half
            // (listen::Limits).
            open_max: usize::try_from(crate::listen::open_files_limit() / 4)
                .unwrap_or(OPEN_MAX)
                .min(OPEN_MAX),
            hot_budget: Self::hot_budget(),
            clock: AtomicU64::new(0),
            temp: AtomicU64::new(0),
        })
    }

    /// The default budget for a cache on the filesystem of `dir`: a quarter of its size.
    pub fn default_budget(dir: &Path) -> u64 {
        rustix::fs::statvfs(dir).map_or(0, |s| s.f_blocks.saturating_mul(s.f_frsize) / 4)
    }

    /// Bytes of small files kept in memory at most: a sixteenth of the machine's memory
    /// (`MemTotal`), [`HOT_BYTES`] at most; 64 MiB if the memory cannot be read.
    pub fn hot_budget() -> u64 {
        let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
        });
        total.map_or(64 << 20, |t| (t / 16).min(HOT_BYTES))
    }

    /// Bytes the copies take on disk now, and how many there are.
    pub fn usage(&self) -> (u64, usize) {
        let state = self.lock();
        (state.bytes, state.copies.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A small file (at most [`HOT_MAX`] bytes) from memory, if it is there. Never blocks.
    pub fn in_memory(&self, hash: &Digest, size: u64) -> Option<Bytes> {
        if size > HOT_MAX {
            return None;
        }
        let hot = self
            .hot_shard(hash)
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (bytes, used) = hot.files.get(hash)?;
        if bytes.len() as u64 != size {
            return None; // another size under the same hash: not this file
        }
        used.store(self.clock.load(Ordering::Relaxed), Ordering::Relaxed);
        Some(bytes.clone())
    }

    /// How to send the file of `hash` and `size`, as far as can be told without blocking:
    /// from memory, or from a copy kept open whose descriptor's `fstat` still shows the
    /// identity recorded when it was written.
    pub fn quick(self: &Arc<Self>, hash: &Digest, size: u64) -> Quick {
        if let Some(bytes) = self.in_memory(hash, size) {
            return Quick::Hit(Hit::Memory(bytes));
        }
        let (recorded, file) = {
            let state = self.lock();
            let Some(copy) = state.copies.get(hash) else {
                return Quick::Miss;
            };
            copy.used.store(self.clock.load(Ordering::Relaxed), Ordering::Relaxed);
            match state.open.get(hash) {
                Some(file) => (copy.identity, Arc::clone(file)),
                None => return Quick::Closed,
            }
        };
        match rustix::fs::fstat(&*file) {
            Ok(st) if Identity::of(&st) == recorded && u64::try_from(st.st_size).ok() == Some(size) => {
                Quick::Hit(Hit::Copy(Copied {
                    file,
                    served: Arc::clone(self),
                    hash: *hash,
                }))
            }
            Ok(_) => {
                tracing::warn!(file = %hash, "a served copy changed since it was written; dropping it");
                self.drop_copy(hash);
                Quick::Miss
            }
            Err(_) => Quick::Closed,
        }
    }

    /// How to send the file of `hash` and `size` from a verified copy, if the DP holds one
    /// still exactly as written: a small file read whole, checked against its hash and kept in
    /// memory; any other open. Blocking (an open, an `fstat`, for a small file a read): call
    /// it on a blocking thread.
    pub fn open_blocking(self: &Arc<Self>, hash: Digest, size: u64) -> Option<Hit> {
        let copy = self.open_copy(hash, size)?;
        if size > HOT_MAX {
            self.keep_open(hash, &copy.file);
            return Some(Hit::Copy(copy));
        }
        let mut bytes = vec![0u8; usize::try_from(size).unwrap_or(0)];
        match std::os::unix::fs::FileExt::read_exact_at(&*copy.file, &mut bytes, 0) {
            Ok(()) if Digest::of(&bytes) == hash => {}
            Ok(()) => {
                copy.failed(&"its bytes do not match the file hash");
                return None;
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::UnexpectedEof
                    || e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) =>
            {
                copy.failed(&e);
                return None;
            }
            Err(e) => {
                tracing::debug!(file = %hash, error = %e, "cannot read a served copy now");
                return None;
            }
        }
        let bytes = Bytes::from(bytes);
        self.keep_hot(hash, bytes.clone());
        Some(Hit::Memory(bytes))
    }

    /// Keeps a copy open, closing the least recently used eighth when at the limit (a sort
    /// now and then, not a scan per open).
    fn keep_open(&self, hash: Digest, file: &Arc<File>) {
        if self.open_max == 0 {
            return;
        }
        let mut state = self.lock();
        if state.open.len() >= self.open_max {
            let mut by_use: Vec<(u64, Digest)> = state
                .open
                .keys()
                .map(|h| (state.copies.get(h).map_or(0, |c| c.used.load(Ordering::Relaxed)), *h))
                .collect();
            by_use.sort_unstable();
            for (_, h) in by_use.iter().take(self.open_max / 8 + 1) {
                state.open.remove(h);
            }
        }
        state.open.insert(hash, Arc::clone(file));
    }

    /// Keeps a small verified file in memory, making room if needed.
    fn keep_hot(&self, hash: Digest, bytes: Bytes) {
        let mut hot = self
            .hot_shard(&hash)
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Each entry costs its map slot and allocation too.
        let len = (bytes.len() as u64).max(256);
        let budget = self.hot_budget / HOT_SHARDS as u64;
        if hot.bytes + len > budget {
            // Down to nine tenths at once, least recently used first.
            let mut by_use: Vec<(u64, Digest)> = hot
                .files
                .iter()
                .map(|(h, (_, used))| (used.load(Ordering::Relaxed), *h))
                .collect();
            by_use.sort_unstable();
            for (_, h) in by_use {
                if hot.bytes + len <= budget / 10 * 9 {
                    break;
                }
                if let Some((b, _)) = hot.files.remove(&h) {
                    hot.bytes = hot.bytes.saturating_sub((b.len() as u64).max(256));
                }
            }
        }
        let used = self.clock.fetch_add(1, Ordering::Relaxed);
        if hot.files.insert(hash, (bytes, AtomicU64::new(used))).is_none() {
            hot.bytes += len;
        }
    }

    fn hot_shard(&self, hash: &Digest) -> &std::sync::RwLock<Hot> {
        &self.hot[usize::from(hash.as_bytes()[0]) % HOT_SHARDS]
    }

    /// The verified copy of `hash`, open, if there is one and it is still exactly as
    /// written. Costs an open and an `fstat`; never reads the file.
    fn open_copy(self: &Arc<Self>, hash: Digest, size: u64) -> Option<Copied> {
        let recorded = {
            let state = self.lock();
            let copy = state.copies.get(&hash)?;
            copy.used.store(self.clock.load(Ordering::Relaxed), Ordering::Relaxed);
            copy.identity
        };
        let opened = rustix::fs::openat(
            &self.dir,
            hash.to_hex(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
        .and_then(|fd| rustix::fs::fstat(&fd).map(|st| (fd, st)));
        match opened {
            Ok((fd, st)) if Identity::of(&st) == recorded && u64::try_from(st.st_size).ok() == Some(size) => {
                Some(Copied {
                    file: Arc::new(File::from(fd)),
                    served: Arc::clone(self),
                    hash,
                })
            }
            Ok(_) => {
                tracing::warn!(file = %hash, "a served copy changed since it was written; dropping it");
                self.drop_copy(&hash);
                None
            }
            Err(e) if e == rustix::io::Errno::NOENT || e == rustix::io::Errno::LOOP => {
                tracing::warn!(file = %hash, error = %e, "a served copy is gone; dropping it");
                self.drop_copy(&hash);
                None
            }
            // Out of descriptors, memory: the copy is sound, the chunks serve this time.
            Err(e) => {
                tracing::debug!(file = %hash, error = %e, "cannot open a served copy now");
                None
            }
        }
    }

    /// Asks for a copy of `f` to be written (verified) in the background, unless one exists,
    /// is queued, or would not fit. Returns at once.
    pub fn want(self: &Arc<Self>, f: &FileData) {
        if f.size > self.budget {
            return;
        }
        {
            let mut state = self.lock();
            if state.copies.contains_key(&f.hash)
                || state.queued.len() >= QUEUED
                || state.failed.get(&f.hash).is_some_and(|t| t.elapsed() < RETRY_AFTER)
                || !state.queued.insert(f.hash)
            {
                return;
            }
        }
        let (me, f) = (Arc::clone(self), f.clone());
        tokio::spawn(async move {
            let Ok(_turn) = me.writers.acquire().await else {
                return;
            };
            let writer = Arc::clone(&me);
            let hash = f.hash;
            let written = tokio::task::spawn_blocking(move || writer.write_copy(&f)).await;
            let mut state = me.lock();
            state.queued.remove(&hash);
            let failed = match written {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            // Not asked again for a while: a file that cannot be copied (damaged chunks, no
            // room) must not be re-read on every request for it.
            if state.failed.len() >= QUEUED {
                state.failed.clear();
            }
            state.failed.insert(hash, std::time::Instant::now());
            drop(state);
            tracing::warn!(file = %hash, error = %failed, "cannot write a served copy; serving from the chunks");
        });
    }

    /// Writes, verifies and records a copy of `f` (blocking).
    fn write_copy(&self, f: &FileData) -> Result<(), CopyError> {
        self.make_room(f.size)?;
        let temp = format!("tmp.{}.{}", f.hash.to_hex(), self.temp.fetch_add(1, Ordering::Relaxed));
        let fd = rustix::fs::openat(
            &self.dir,
            temp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| CopyError::Io(e.into()))?;
        let written = pkgdist_content::restore::write_verified(&self.library, &fd, f)
            .map_err(CopyError::Content)
            .and_then(|()| {
                rustix::fs::renameat(&self.dir, temp.as_str(), &self.dir, f.hash.to_hex())
                    .map_err(|e| CopyError::Io(e.into()))
            })
            // After the rename, which changes the change time on some filesystems.
            .and_then(|()| rustix::fs::fstat(&fd).map_err(|e| CopyError::Io(e.into())));
        let st = match written {
            Ok(st) => st,
            Err(e) => {
                let _ = rustix::fs::unlinkat(&self.dir, temp.as_str(), rustix::fs::AtFlags::empty());
                return Err(e);
            }
        };
        let disk = u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512);
        let mut state = self.lock();
        let used = self.clock.fetch_add(1, Ordering::Relaxed);
        let copy = Copy {
            identity: Identity::of(&st),
            disk,
            used: AtomicU64::new(used),
        };
        if let Some(old) = state.copies.insert(f.hash, copy) {
            state.bytes = state.bytes.saturating_sub(old.disk);
        }
        state.open.remove(&f.hash);
        state.bytes += disk;
        tracing::debug!(file = %f.hash, bytes = f.size, "wrote a served copy");
        Ok(())
    }

    /// Drops the least recently used copies until `size` more fits the budget; refuses,
    /// dropping nothing, if the filesystem would be left with too little free space even then.
    fn make_room(&self, size: u64) -> Result<(), CopyError> {
        let vfs = rustix::fs::fstatvfs(&self.dir).map_err(|e| CopyError::Io(e.into()))?;
        let keep = (vfs.f_blocks.saturating_mul(vfs.f_frsize) / 20).min(4 << 30);
        let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
        let gone: Vec<Digest> = {
            let mut state = self.lock();
            if state.bytes + size <= self.budget {
                if free < size.saturating_add(keep) {
                    return Err(CopyError::NoRoom { free, size });
                }
                Vec::new()
            } else {
                // Down to nine tenths of the budget at once, so the scan is not per copy.
                let target = (self.budget / 10 * 9).saturating_sub(size);
                let mut by_use: Vec<(u64, Digest, u64)> = state
                    .copies
                    .iter()
                    .map(|(h, c)| (c.used.load(Ordering::Relaxed), *h, c.disk))
                    .collect();
                by_use.sort_unstable_by_key(|(used, _, _)| *used);
                let mut left = state.bytes;
                let mut gone = Vec::new();
                for (_, hash, disk) in by_use {
                    if left <= target {
                        break;
                    }
                    left = left.saturating_sub(disk);
                    gone.push((hash, disk));
                }
                let freed: u64 = gone.iter().map(|(_, d)| d).sum();
                if free.saturating_add(freed) < size.saturating_add(keep) {
                    return Err(CopyError::NoRoom { free, size });
                }
                for (hash, disk) in &gone {
                    state.copies.remove(hash);
                    state.open.remove(hash);
                    state.bytes = state.bytes.saturating_sub(*disk);
                }
                gone.into_iter().map(|(h, _)| h).collect()
            }
        };
        for hash in &gone {
            let _ = rustix::fs::unlinkat(&self.dir, hash.to_hex(), rustix::fs::AtFlags::empty());
        }
        Ok(())
    }

    /// Forgets a copy and removes it: it is written again when next asked for.
    fn drop_copy(&self, hash: &Digest) {
        let mut state = self.lock();
        state.open.remove(hash);
        if let Some(old) = state.copies.remove(hash) {
            state.bytes = state.bytes.saturating_sub(old.disk);
            let _ = rustix::fs::unlinkat(&self.dir, hash.to_hex(), rustix::fs::AtFlags::empty());
        }
    }

    /// Re-reads the copies of `files` and drops those whose bytes no longer match their hash
    /// (damage the identity cannot show: a disk that flips a bit). Blocking; returns how many
    /// were dropped.
    pub fn check<'a>(&self, files: impl IntoIterator<Item = &'a FileData>) -> usize {
        let mut dropped = 0;
        let mut seen = HashSet::new();
        for f in files {
            if !seen.insert(f.hash) || !self.lock().copies.contains_key(&f.hash) {
                continue;
            }
            let sound = rustix::fs::openat(
                &self.dir,
                f.hash.to_hex(),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(std::io::Error::from)
            .and_then(|fd| {
                let mut hasher = blake3::Hasher::new();
                hasher.update_reader(File::from(fd))?;
                Ok(Digest::from(hasher.finalize()) == f.hash)
            });
            if matches!(&sound, Err(e) if e.kind() != std::io::ErrorKind::NotFound && e.raw_os_error() != Some(rustix::io::Errno::IO.raw_os_error()))
            {
                continue; // not readable now (descriptors, memory): checked next time
            }
            if !matches!(sound, Ok(true)) {
                tracing::warn!(file = %f.hash, "a served copy is damaged; dropping it");
                self.drop_copy(&f.hash);
                dropped += 1;
            }
        }
        dropped
    }

    /// The folder of copies.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why a copy was not written (the file is served from the chunks meanwhile).
#[derive(Debug, thiserror::Error)]
enum CopyError {
    #[error("{0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Content(pkgdist_content::ContentError),
    #[error(
        "only {free} bytes free on the filesystem of served copies, too little for {size} more and the margin ({KEEP_FREE})"
    )]
    NoRoom { free: u64, size: u64 },
}
