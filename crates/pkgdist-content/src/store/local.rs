//! The local-disk [`Store`].
//!
//! Layout under the library folder:
//!
//! ```text
//! chunks/<2 hex>/<64 hex>      chunk envelopes
//! manifests/<2 hex>/<64 hex>   manifest envelopes
//! refs/<ContentID>             which manifest a content ID is bound to
//! stamps/<ContentID>           quick-check stamps of the snapshot that made it
//! tmp/                         staged objects not yet flushed
//! lock                         flock: shared while open, exclusive for garbage collection
//! ```
//!
//! Durability: `put` writes a temp file in `tmp/` without syncing it. `flush` calls `syncfs` once
//! (one barrier for thousands of chunks, instead of one fsync each, which on this class of disk
//! costs more than writing the data), then renames every staged file into place and fsyncs each
//! folder it touched. A crash before the renames leaves only temp files, which garbage collection
//! removes; after them, every visible object is whole. An object is never visible with content
//! that has not reached the disk, so nothing can later deduplicate against a torn chunk.

use std::collections::BTreeSet;
use std::fs::{self, File, TryLockError};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Kind, Store, StoreError, check_name};

#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    tmp: PathBuf,
    lock: File,
    state: Mutex<Pending>,
    /// Held for a whole flush, so that a flush returns only once everything staged before it
    /// (by any thread) is in place, even if another thread's flush took those files.
    flushing: Mutex<()>,
}

#[derive(Debug, Default)]
struct Pending {
    /// Staged files: temp path and final path, in put order.
    files: Vec<(PathBuf, PathBuf)>,
    /// Folders whose entries changed since the last flush and need an fsync.
    dirty_dirs: BTreeSet<PathBuf>,
}

impl LocalStore {
    /// Opens (creating if needed) a store in `root` and takes the shared lock, waiting while a
    /// garbage collection holds it exclusively.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |e| StoreError::io(p, e)
        };
        fs::create_dir_all(root).map_err(io(root))?;
        for kind in Kind::ALL {
            let dir = root.join(kind.dir_name());
            fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let lock_path = root.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        lock.lock_shared().map_err(io(&lock_path))?;
        Ok(Self {
            root: root.to_owned(),
            tmp,
            lock,
            state: Mutex::new(Pending::default()),
            flushing: Mutex::new(()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an object lives on disk (for tests that damage a library on purpose).
    pub fn object_path(&self, kind: Kind, name: &str) -> Result<PathBuf, StoreError> {
        check_name(name)?;
        let mut p = self.root.join(kind.dir_name());
        if kind.fanned_out() {
            p.push(name.get(..2).unwrap_or("00"));
        }
        p.push(name);
        Ok(p)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stage(&self, data: &[u8]) -> Result<PathBuf, StoreError> {
        // One counter for the whole process: several stores may share a folder.
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self.tmp.join(format!("{}-{seq}", std::process::id()));
        let mut f = File::create(&tmp).map_err(|e| StoreError::io(tmp.display(), e))?;
        f.write_all(data).map_err(|e| StoreError::io(tmp.display(), e))?;
        Ok(tmp)
    }
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io(dir.display(), e))
}

impl Store for LocalStore {
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> Result<(), StoreError> {
        let dest = self.object_path(kind, name)?;
        let tmp = self.stage(data)?;
        self.pending().files.push((tmp, dest));
        Ok(())
    }

    fn put_new(&self, kind: Kind, name: &str, data: &[u8]) -> Result<bool, StoreError> {
        let dest = self.object_path(kind, name)?;
        let tmp = self.stage(data)?;
        let result = (|| {
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| StoreError::io(tmp.display(), e))?;
            if let Some(dir) = dest.parent() {
                fs::create_dir_all(dir).map_err(|e| StoreError::io(dir.display(), e))?;
            }
            // link(2) fails if the name exists: the check and the creation are one step.
            match fs::hard_link(&tmp, &dest) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
                Err(e) => return Err(StoreError::io(dest.display(), e)),
            }
            if let Some(dir) = dest.parent() {
                fsync_dir(dir)?;
            }
            Ok(true)
        })();
        let _ = fs::remove_file(&tmp);
        result
    }

    fn flush(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        let (files, mut dirs) = {
            let mut p = self.pending();
            (std::mem::take(&mut p.files), std::mem::take(&mut p.dirty_dirs))
        };
        if !files.is_empty() {
            // One barrier for the data of every staged file.
            rustix::fs::syncfs(&self.lock).map_err(|e| StoreError::io(self.tmp.display(), e.into()))?;
        }
        for (tmp, dest) in &files {
            let Some(dir) = dest.parent() else { continue };
            if !dirs.contains(dir) && !dir.exists() {
                fs::create_dir_all(dir).map_err(|e| StoreError::io(dir.display(), e))?;
                if let Some(parent) = dir.parent() {
                    dirs.insert(parent.to_owned());
                }
            }
            fs::rename(tmp, dest).map_err(|e| StoreError::io(dest.display(), e))?;
            dirs.insert(dir.to_owned());
        }
        for dir in &dirs {
            fsync_dir(dir)?;
        }
        Ok(())
    }

    fn get(&self, kind: Kind, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.object_path(kind, name)?;
        match fs::read(&path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(path.display(), e)),
        }
    }

    fn contains(&self, kind: Kind, name: &str) -> Result<bool, StoreError> {
        Ok(self.size(kind, name)?.is_some())
    }

    fn delete(&self, kind: Kind, name: &str) -> Result<(), StoreError> {
        let path = self.object_path(kind, name)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io(path.display(), e)),
        }
        // Deletions become durable at the next flush, like puts.
        if let Some(dir) = path.parent() {
            self.pending().dirty_dirs.insert(dir.to_owned());
        }
        Ok(())
    }

    fn list(&self, kind: Kind) -> Result<Vec<String>, StoreError> {
        let base = self.root.join(kind.dir_name());
        let read = |dir: &Path| fs::read_dir(dir).map_err(|e| StoreError::io(dir.display(), e));
        let mut dirs = vec![base.clone()];
        if kind.fanned_out() {
            dirs.clear();
            for e in read(&base)? {
                let e = e.map_err(|e| StoreError::io(base.display(), e))?;
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    dirs.push(e.path());
                }
            }
        }
        let mut names = Vec::new();
        for dir in dirs {
            for e in read(&dir)? {
                let e = e.map_err(|e| StoreError::io(dir.display(), e))?;
                // Names that are not ours (editor backups, stray files) are not objects.
                if let Some(n) = e.file_name().to_str()
                    && check_name(n).is_ok()
                {
                    names.push(n.to_owned());
                }
            }
        }
        Ok(names)
    }

    fn size(&self, kind: Kind, name: &str) -> Result<Option<u64>, StoreError> {
        let path = self.object_path(kind, name)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(path.display(), e)),
        }
    }

    fn lock_exclusive(&self) -> Result<(), StoreError> {
        match self.lock.try_lock() {
            Ok(()) => Ok(()),
            Err(err) => {
                // Linux drops a flock before trying to convert it, so a failed upgrade leaves us
                // holding nothing: take the shared lock back before reporting.
                self.unlock_exclusive()?;
                Err(match err {
                    TryLockError::WouldBlock => StoreError::Busy(self.root.display().to_string()),
                    TryLockError::Error(e) => StoreError::io(self.root.join("lock").display(), e),
                })
            }
        }
    }

    fn unlock_exclusive(&self) -> Result<(), StoreError> {
        self.lock
            .lock_shared()
            .map_err(|e| StoreError::io(self.root.join("lock").display(), e))
    }

    fn clean_staging(&self) -> Result<u64, StoreError> {
        let staged: BTreeSet<PathBuf> = self.pending().files.iter().map(|(t, _)| t.clone()).collect();
        let mut n = 0;
        let entries = fs::read_dir(&self.tmp).map_err(|e| StoreError::io(self.tmp.display(), e))?;
        for e in entries {
            let e = e.map_err(|e| StoreError::io(self.tmp.display(), e))?;
            if staged.contains(&e.path()) {
                continue;
            }
            match fs::remove_file(e.path()) {
                Ok(()) => n += 1,
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(StoreError::io(e.path().display(), err)),
            }
        }
        Ok(n)
    }
}
