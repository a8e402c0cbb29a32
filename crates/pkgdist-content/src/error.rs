//! What can go wrong in the content engine, worded for the administrator who has to act on it.

use std::io;
use std::path::PathBuf;

use pkgdist_core::{ContentId, ManifestError};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// Something in the package source cannot be snapshotted as it is.
    #[error("cannot snapshot {path}: {reason}")]
    Source { path: PathBuf, reason: String },

    /// The source is, is inside, or holds a private folder (the site's own data).
    #[error(
        "{path} cannot be a package source: it is, holds or is inside {private}, which holds the server's own data"
    )]
    SourcePrivate { path: PathBuf, private: PathBuf },

    /// The source is outside the folders sources may be in.
    #[error("{path} is not inside a folder packages may be made from ({})", .roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", "))]
    SourceNotAllowed { path: PathBuf, roots: Vec<PathBuf> },

    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },

    #[error(transparent)]
    Store(#[from] StoreError),

    #[error(transparent)]
    Manifest(#[from] ManifestError),

    #[error("content {0} is not in the library (see `pkgdist content list`)")]
    UnknownContent(ContentId),

    #[error("{content} has no file {path:?}")]
    NoSuchFile { content: String, path: String },

    #[error("{0} is already in the library with a different manifest; content versions never change once recorded")]
    VersionExists(ContentId),

    #[error(
        "{what} is damaged in the library: {reason}; nothing damaged was returned. Run `pkgdist content verify` to see all damage, then redistribute or re-snapshot the package"
    )]
    Damaged { what: String, reason: String },

    #[error(
        "{what} is missing from the library; nothing was returned. Run `pkgdist content verify` to see all damage, then redistribute or re-snapshot the package"
    )]
    Missing { what: String },

    #[error("destination {0} exists and is not an empty folder; choose a new or empty folder")]
    DestinationNotEmpty(PathBuf),

    #[error(
        "{0} is in the way: the destination has something of another kind where the package has a folder or file (a link there is never followed). Move it and try again"
    )]
    InTheWay(PathBuf),

    #[error("{0} is not a pkgdist content library (it has no refs/ folder); check the --library path")]
    NotALibrary(PathBuf),

    #[error("byte range {start}-{end} is outside {path} ({size} bytes)")]
    Range {
        path: String,
        start: u64,
        end: u64,
        size: u64,
    },

    #[error(
        "garbage collection stopped before deleting anything: {0}. It cannot tell which chunks that version needs; release the version or repair the library first"
    )]
    GcUnsafe(String),
}

impl ContentError {
    pub(crate) fn io(path: impl std::fmt::Display, source: io::Error) -> Self {
        Self::Io {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn source(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Source {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = ContentError> = std::result::Result<T, E>;
