//! pkgdist's domain types and pure logic.
//!
//! Nothing in this crate touches the disk or the network: it holds the identifiers
//! (`PackageId`, `ContentId`), the content digest, and the manifest model with its canonical
//! encoding, so that every other crate agrees on what a package version *is*.

pub mod availability;
pub mod classes;
pub mod digest;
pub mod dpstate;
pub mod errors;
pub mod id;
pub mod manifest;
pub mod odata;
pub mod schedule;

pub use digest::Digest;
pub use id::{ContentId, IdError, PackageId, SiteCode};
pub use manifest::{
    ChunkParams, ChunkRef, Entry, EntryKind, FileData, Format, Hole, Manifest, ManifestError, RelPath, Timestamp, Xattr,
};
