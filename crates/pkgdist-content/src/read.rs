//! Reading content back: a byte range of one file (for serving) and a whole version exported to
//! a folder. Both verify every chunk before handing out a byte of it, so damage surfaces as an
//! error, never as wrong data.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pkgdist_core::{ChunkRef, ContentId, FileData, Manifest};

use crate::error::{ContentError, Result};
use crate::library::{Library, read_chunk};
use crate::store::Store;

/// Reads a byte range of one file, one verified chunk at a time (memory: one chunk).
#[derive(Debug)]
pub struct FileReader {
    store: Arc<dyn Store>,
    chunks: Vec<ChunkRef>,
    /// Offset in the file where each chunk starts.
    starts: Vec<u64>,
    pos: u64,
    end: u64,
    current: Option<(usize, Vec<u8>)>,
}

impl FileReader {
    /// Bytes still to be read.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// Where the next read starts, in the file.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Goes back to `pos` (a position this reader was at: nothing before its range or past
    /// its end) and lets go of the chunk it holds: a server that dropped a block it had read
    /// ahead for a client that stopped taking them reads it again when it is wanted, and
    /// meanwhile holds no chunk.
    pub fn rewind_and_release(&mut self, pos: u64) {
        self.pos = pos.min(self.end);
        self.current = None;
    }

    /// The verified chunk holding `pos`, and the file offset where it starts.
    fn chunk_at(&mut self, pos: u64) -> io::Result<(u64, &[u8])> {
        // The last chunk starting at or before `pos`.
        let i = self.starts.partition_point(|&s| s <= pos).saturating_sub(1);
        if self.current.as_ref().map(|(j, _)| *j) != Some(i) {
            let data = read_chunk(self.store.as_ref(), &self.chunks[i]).map_err(io::Error::other)?;
            self.current = Some((i, data));
        }
        match &self.current {
            Some((_, data)) => Ok((self.starts[i], data)),
            None => Err(io::Error::other("chunk cache empty")),
        }
    }
}

impl Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.end || buf.is_empty() {
            return Ok(0);
        }
        let pos = self.pos;
        let end = self.end;
        let (chunk_start, data) = self.chunk_at(pos)?;
        let start_in_chunk = (pos - chunk_start) as usize;
        let avail = (data.len() - start_in_chunk).min((end - pos) as usize).min(buf.len());
        buf[..avail].copy_from_slice(&data[start_in_chunk..start_in_chunk + avail]);
        self.pos += avail as u64;
        Ok(avail)
    }
}

/// What an export wrote, and what it could not as the user it ran as.
pub type ExportStats = crate::restore::Restored;

impl Library {
    /// A reader over `range` (start inclusive, end exclusive) of the file at `path`.
    pub fn read_file(&self, manifest: &Manifest, path: &str, range: std::ops::Range<u64>) -> Result<FileReader> {
        let file = file_data(manifest, path)?;
        if range.start > range.end || range.end > file.size {
            return Err(ContentError::Range {
                path: path.to_owned(),
                start: range.start,
                end: range.end,
                size: file.size,
            });
        }
        Ok(self.reader_for(file, range))
    }

    pub(crate) fn reader_for(&self, file: &FileData, range: std::ops::Range<u64>) -> FileReader {
        let mut starts = Vec::with_capacity(file.chunks.len());
        let mut off = 0;
        for c in &file.chunks {
            starts.push(off);
            off += u64::from(c.len);
        }
        FileReader {
            store: Arc::clone(&self.store),
            chunks: file.chunks.clone(),
            starts,
            pos: range.start,
            end: range.end,
            current: None,
        }
    }

    /// Writes every entry of `content` under `dest`, which must not exist or be an empty
    /// folder. Work happens in a staging folder beside `dest` that is renamed into place only
    /// when everything verified, so `dest` never holds a partial or damaged export.
    pub fn export(&self, content: ContentId, dest: &Path) -> Result<ExportStats> {
        let _span = tracing::info_span!("export", content = %content, dest = %dest.display()).entered();
        let manifest = self.manifest(content)?;
        if let Ok(mut entries) = fs::read_dir(dest) {
            if entries.next().is_some() {
                return Err(ContentError::DestinationNotEmpty(dest.to_owned()));
            }
        } else if dest.exists() {
            return Err(ContentError::DestinationNotEmpty(dest.to_owned()));
        }
        let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("export");
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(|e| ContentError::io(parent.display(), e))?;
        let staging = parent.join(format!(".{name}.pkgdist-export-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir(&staging).map_err(|e| ContentError::io(staging.display(), e))?;
        let result = self.export_into(&manifest, &staging).and_then(|stats| {
            // Everything written reaches the disk before the export appears under its name.
            let dir = File::open(&staging).map_err(|e| ContentError::io(staging.display(), e))?;
            rustix::fs::syncfs(&dir).map_err(|e| ContentError::io(staging.display(), e.into()))?;
            fs::rename(&staging, dest).map_err(|e| ContentError::io(dest.display(), e))?;
            File::open(&parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| ContentError::io(parent.display(), e))?;
            Ok(stats)
        });
        if result.is_err() && staging.exists() {
            make_writable(&staging);
            let _ = fs::remove_dir_all(&staging);
        }
        result
    }

    fn export_into(&self, manifest: &Manifest, root: &Path) -> Result<ExportStats> {
        crate::restore::write_tree(self, manifest, root)
    }
}

/// A read of library data that failed: the damage it found (a `ContentError` the reader
/// wraps in its `io::Error`), or the I/O error itself.
pub(crate) fn read_error(rel: &str, e: io::Error) -> ContentError {
    match e.into_inner().map(|b| b.downcast::<ContentError>()) {
        Some(Ok(ce)) => *ce,
        Some(Err(other)) => ContentError::io(rel, io::Error::other(other)),
        None => ContentError::io(rel, io::Error::other("read failed")),
    }
}

fn file_data<'m>(manifest: &'m Manifest, path: &str) -> Result<&'m FileData> {
    manifest
        .entry(path)
        .and_then(|e| e.file())
        .ok_or_else(|| ContentError::NoSuchFile {
            content: format!("manifest {}", manifest.id()),
            path: path.to_owned(),
        })
}

/// Best effort before removing a failed export: read-only folders would block the removal.
fn make_writable(root: &Path) {
    for e in walkdir::WalkDir::new(root).into_iter().flatten() {
        if e.file_type().is_dir() {
            let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o755));
        }
    }
}
