//! pkgdist's content engine.
//!
//! - [`chunker`]: FastCDC v2020 over a byte stream.
//! - [`store`]: the narrow storage seam (local disk, memory).
//! - [`Library`]: the single-instance content library — snapshots of source folders
//!   ([`snapshot`]), delta planning, verification ([`verify`]), reads and exports ([`read`]),
//!   and garbage collection ([`gc`]).
//!
//! The library is synchronous and bounded in memory; async callers run it on blocking threads.

pub mod chunker;
pub mod delta;
pub mod envelope;
pub mod error;
pub mod gc;
pub mod library;
pub mod manifest_delta;
pub mod prestage;
pub mod read;
pub mod restore;
pub mod snapshot;
pub mod store;
pub mod verify;
mod walk;

pub use error::{ContentError, Result};
pub use library::{Library, StoredSize};
pub use read::{ExportStats, FileReader};
pub use snapshot::{Progress, SnapshotOptions, SnapshotOutcome, SnapshotStats};
pub use store::{Kind, LocalStore, MemoryStore, Store, StoreError};
pub use verify::{Affected, Fault, ObjectKind, Problem, VerifyReport};
pub use walk::check_place;
