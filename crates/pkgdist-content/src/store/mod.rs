//! The narrow storage seam under the content library.
//!
//! A [`Store`] keeps small named objects of a few kinds. It knows nothing about chunks or
//! manifests; the library above it decides names and contents. Two implementations live here:
//! [`LocalStore`] (the default, on a local file system) and [`MemoryStore`] (for tests).
//!
//! The contract that makes crash safety possible: an object is never visible partially, and
//! [`Store::put`] only *stages* it: it becomes visible and durable no later than the next
//! [`Store::flush`] (the local store makes it visible exactly then; an object store whose PUTs
//! are atomic and durable may do so at once). Objects staged together become visible in no
//! particular order, so a caller that needs "A is durable before B is visible" flushes between
//! them (the library flushes chunks, then the manifest, then the ref).

mod local;
mod memory;

use std::fmt;

pub use local::LocalStore;
pub use memory::MemoryStore;

/// What an object is; each kind is its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A chunk envelope, named by the chunk's BLAKE3 hex.
    Chunk,
    /// A manifest envelope, named by the manifest's BLAKE3 hex.
    Manifest,
    /// Which manifest a content ID is bound to, named by the content ID.
    Ref,
    /// The quick-check stamps of the snapshot that made a content ID (local-only state).
    Stamps,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Chunk, Kind::Manifest, Kind::Ref, Kind::Stamps];

    pub fn dir_name(self) -> &'static str {
        match self {
            Kind::Chunk => "chunks",
            Kind::Manifest => "manifests",
            Kind::Ref => "refs",
            Kind::Stamps => "stamps",
        }
    }

    /// Hash-named kinds are spread over 256 subfolders so no folder grows huge.
    fn fanned_out(self) -> bool {
        matches!(self, Kind::Chunk | Kind::Manifest)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Chunk => "chunk",
            Kind::Manifest => "manifest",
            Kind::Ref => "ref",
            Kind::Stamps => "stamps",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("invalid object name {0:?} (only letters, digits and '.' are allowed)")]
    BadName(String),
    #[error(
        "the content library at {0} is in use by another process; wait for it to finish (or stop it) and try again"
    )]
    Busy(String),
}

impl StoreError {
    pub(crate) fn io(path: impl fmt::Display, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_string(),
            source,
        }
    }
}

/// Object names are hex digests or content IDs; anything else could be a path trick.
pub(crate) fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.');
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName(name.to_owned()))
    }
}

/// A place to keep library objects. Implementations must be safe to share between threads.
pub trait Store: Send + Sync + fmt::Debug {
    /// Stages `data` under (`kind`, `name`), replacing any object of that name no later than
    /// the next flush.
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> Result<(), StoreError>;

    /// Makes everything staged so far (by any thread) durable and visible.
    fn flush(&self) -> Result<(), StoreError>;

    /// Creates an object only if none of that name exists, durably and at once; `false` when
    /// one already existed (it is left untouched). This is how a content ID gets bound to its
    /// manifest exactly once, even when two snapshots race for the same version.
    fn put_new(&self, kind: Kind, name: &str, data: &[u8]) -> Result<bool, StoreError>;

    /// Reads a visible object, `None` when there is none.
    fn get(&self, kind: Kind, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    fn contains(&self, kind: Kind, name: &str) -> Result<bool, StoreError>;

    /// Removes an object durably; removing a missing object is not an error.
    fn delete(&self, kind: Kind, name: &str) -> Result<(), StoreError>;

    /// Names of all visible objects of a kind, in no particular order.
    fn list(&self, kind: Kind) -> Result<Vec<String>, StoreError>;

    /// Size in bytes of a stored object, `None` when there is none.
    fn size(&self, kind: Kind, name: &str) -> Result<Option<u64>, StoreError>;

    /// Takes the store for exclusive use across processes (garbage collection), or reports
    /// [`StoreError::Busy`]. Stores that cannot be shared between processes need not lock.
    fn lock_exclusive(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Returns from exclusive to shared use.
    fn unlock_exclusive(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Deletes staging leftovers of processes that died; call only while exclusive.
    /// Returns how many were removed.
    fn clean_staging(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}
