//! The manifest: the immutable description of one package version.
//!
//! A manifest lists every entry of a package's source tree (sorted by path) with its metadata,
//! the BLAKE3 of each whole file and the file's chunk list. It is serialized canonically — one
//! manifest has exactly one byte string — and is named by the BLAKE3 of that byte string, so a
//! node that holds a trusted manifest hash can accept a manifest (and then every chunk) from any
//! source.
//!
//! # Encoding (version 1)
//!
//! All integers are little-endian.
//!
//! ```text
//! magic        8 bytes  "PKGDMAN1"
//! chunker      1 byte algorithm (1 = FastCDC v2020), 1 byte normalization level,
//!              u32 min, u32 avg, u32 max
//! entry count  u32
//! entries      path (u16 length + UTF-8 bytes), kind (u8), mode (u32),
//!              mtime (i64 seconds + u32 nanoseconds), then by kind:
//!                directory  nothing
//!                file       u64 size, 32-byte BLAKE3, u32 chunk count, (32-byte id, u32 length)*
//!                symlink    u16 length + UTF-8 target
//! ```
//!
//! Decoding is strict: entries must be in strictly increasing byte order of path, every entry's
//! parent must be a directory entry listed before it, chunk lengths must add up to the file size
//! and stay within the recorded maximum, and nothing may follow the last entry. Anything else is
//! refused with the reason, so that `encode(decode(b)) == b` for every accepted `b`.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

const MAGIC: &[u8; 8] = b"PKGDMAN1";
/// Longest path accepted in a manifest, in bytes. Linux's PATH_MAX; Windows clients need less.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest single path component, in bytes (NAME_MAX on Linux file systems).
pub const MAX_NAME_LEN: usize = 255;

/// Why a manifest, or a piece of one, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("invalid path {path:?} in manifest: {reason}")]
    Path { path: String, reason: &'static str },
    #[error("invalid chunking parameters: {0}")]
    ChunkParams(String),
    #[error("manifest entries out of order or duplicated at {0:?}: entries must be sorted by path, each once")]
    Order(String),
    #[error("manifest entry {path:?} has no parent directory entry")]
    MissingParent { path: String },
    #[error("manifest entry {path:?}: {reason}")]
    Entry { path: String, reason: String },
    #[error("manifest is truncated or malformed: {0}")]
    Malformed(&'static str),
    #[error("not a pkgdist manifest (bad magic) or an unsupported manifest version")]
    Magic,
}

/// Content-defined chunking parameters. They are recorded in every manifest because changing them
/// moves every chunk boundary: a manifest must always be read with the parameters it was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkParams {
    /// Normalization level of FastCDC v2020 (0–3).
    pub normalization: u8,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl ChunkParams {
    /// 1 = FastCDC v2020, the only algorithm so far.
    pub const ALGORITHM_FASTCDC_2020: u8 = 1;

    /// 16 KiB / 64 KiB / 256 KiB, normalization level 1: a 64 KiB edit touches 2–3 chunks while
    /// a 10 GiB file stays at ~160,000 chunks (a manifest of about 6 MiB).
    pub const DEFAULT: ChunkParams = ChunkParams {
        normalization: 1,
        min_size: 16 * 1024,
        avg_size: 64 * 1024,
        max_size: 256 * 1024,
    };

    /// Checks the ranges FastCDC v2020 accepts (the crate only debug-asserts them).
    pub fn validate(&self) -> Result<(), ManifestError> {
        let (min, avg, max) = (self.min_size, self.avg_size, self.max_size);
        let err = |m: String| Err(ManifestError::ChunkParams(m));
        if self.normalization > 3 {
            return err(format!("normalization level {} (0 to 3)", self.normalization));
        }
        if !(64..=1_048_576).contains(&min) {
            return err(format!("min size {min} (64 B to 1 MiB)"));
        }
        if !(256..=4_194_304).contains(&avg) {
            return err(format!("average size {avg} (256 B to 4 MiB)"));
        }
        if !(1024..=16_777_216).contains(&max) {
            return err(format!("max size {max} (1 KiB to 16 MiB)"));
        }
        if !(min <= avg && avg <= max) {
            return err(format!("sizes must satisfy min <= avg <= max, got {min}/{avg}/{max}"));
        }
        if min % 2 != 0 || avg % 2 != 0 || max % 2 != 0 {
            return err(format!("sizes must be even, got {min}/{avg}/{max}"));
        }
        // FastCDC picks its masks by log2(avg) ± normalization; keep that inside its mask table.
        let bits = avg.ilog2() + u32::from(self.normalization);
        if bits > 25 || avg.ilog2() < u32::from(self.normalization) {
            return err(format!(
                "average size {avg} is out of range for normalization {}",
                self.normalization
            ));
        }
        Ok(())
    }
}

impl Default for ChunkParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A normalized relative path: UTF-8, `/`-separated, no empty, `.` or `..` component, no NUL,
/// no leading or trailing `/`. Such a path can never name anything outside the folder it is
/// joined to.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelPath(String);

impl RelPath {
    pub fn new(s: impl Into<String>) -> Result<Self, ManifestError> {
        let s = s.into();
        let bad = |reason| {
            Err(ManifestError::Path {
                path: s.clone(),
                reason,
            })
        };
        if s.is_empty() {
            return bad("empty path");
        }
        if s.len() > MAX_PATH_LEN {
            return bad("longer than 4096 bytes");
        }
        if s.contains('\0') {
            return bad("contains a NUL character");
        }
        for comp in s.split('/') {
            match comp {
                "" => return bad("empty component (leading, trailing or doubled '/')"),
                "." | ".." => return bad("'.' or '..' component"),
                c if c.len() > MAX_NAME_LEN => return bad("a component is longer than 255 bytes"),
                _ => {}
            }
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parent directory, or `None` for a top-level entry.
    pub fn parent(&self) -> Option<&str> {
        self.0.rsplit_once('/').map(|(p, _)| p)
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit_once('/').map_or(&self.0, |(_, n)| n)
    }
}

impl TryFrom<String> for RelPath {
    type Error = ManifestError;
    fn try_from(s: String) -> Result<Self, ManifestError> {
        Self::new(s)
    }
}

impl From<RelPath> for String {
    fn from(p: RelPath) -> String {
        p.0
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A modification time with nanosecond precision (seconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

/// One chunk of a file: its BLAKE3 id and its length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: Digest,
    pub len: u32,
}

/// A regular file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileData {
    pub size: u64,
    /// BLAKE3 of the whole file; also the file's HTTP ETag.
    pub hash: Digest,
    pub chunks: Vec<ChunkRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EntryKind {
    Directory,
    File(FileData),
    /// A link whose target stays inside the package (checked when the manifest is built and
    /// again when it is decoded).
    Symlink {
        target: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: RelPath,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub mtime: Timestamp,
    #[serde(flatten)]
    pub kind: EntryKind,
}

impl Entry {
    pub fn file(&self) -> Option<&FileData> {
        match &self.kind {
            EntryKind::File(f) => Some(f),
            _ => None,
        }
    }
}

/// One package version's content. Construct it with [`Manifest::new`], which sorts and checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    chunker: ChunkParams,
    entries: Vec<Entry>,
}

impl Manifest {
    /// Sorts `entries` by path and checks every invariant the encoding promises.
    pub fn new(chunker: ChunkParams, mut entries: Vec<Entry>) -> Result<Self, ManifestError> {
        entries.sort_by(|a, b| a.path.as_str().as_bytes().cmp(b.path.as_str().as_bytes()));
        let m = Self { chunker, entries };
        m.check()?;
        Ok(m)
    }

    pub fn chunker(&self) -> ChunkParams {
        self.chunker
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Looks an entry up by its path.
    pub fn entry(&self, path: &str) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.path.as_str().as_bytes().cmp(path.as_bytes()))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The direct children of a directory (`""` for the root), in path order.
    pub fn children<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.path.parent().unwrap_or("") == dir)
    }

    /// Every regular file with its content.
    pub fn files(&self) -> impl Iterator<Item = (&Entry, &FileData)> {
        self.entries.iter().filter_map(|e| e.file().map(|f| (e, f)))
    }

    /// Sum of all file sizes.
    pub fn total_size(&self) -> u64 {
        self.files().map(|(_, f)| f.size).sum()
    }

    /// Every distinct chunk, in first-use order.
    pub fn unique_chunks(&self) -> Vec<ChunkRef> {
        let mut seen = HashSet::new();
        self.files()
            .flat_map(|(_, f)| f.chunks.iter())
            .filter(|c| seen.insert(c.id))
            .copied()
            .collect()
    }

    /// The manifest's name: BLAKE3 of its canonical encoding.
    pub fn id(&self) -> Digest {
        Digest::of(&self.encode())
    }

    fn check(&self) -> Result<(), ManifestError> {
        self.chunker.validate()?;
        let symlinks: HashSet<&str> = self
            .entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::Symlink { .. }))
            .map(|e| e.path.as_str())
            .collect();
        let mut dirs: HashSet<&str> = HashSet::new();
        let mut prev: Option<&str> = None;
        for e in &self.entries {
            let p = e.path.as_str();
            if prev.is_some_and(|q| q.as_bytes() >= p.as_bytes()) {
                return Err(ManifestError::Order(p.to_owned()));
            }
            prev = Some(p);
            if let Some(parent) = e.path.parent()
                && !dirs.contains(parent)
            {
                return Err(ManifestError::MissingParent { path: p.to_owned() });
            }
            let bad = |reason: String| {
                Err(ManifestError::Entry {
                    path: p.to_owned(),
                    reason,
                })
            };
            if e.mode > 0o7777 {
                return bad(format!("mode {:o} has bits beyond 0o7777", e.mode));
            }
            if e.mtime.nanos >= 1_000_000_000 {
                return bad("mtime nanoseconds out of range".into());
            }
            match &e.kind {
                EntryKind::Directory => {
                    dirs.insert(p);
                }
                EntryKind::File(f) => {
                    let mut sum: u64 = 0;
                    for c in &f.chunks {
                        if c.len == 0 || c.len > self.chunker.max_size {
                            return bad(format!(
                                "chunk {} has length {} (1 to {})",
                                c.id, c.len, self.chunker.max_size
                            ));
                        }
                        sum += u64::from(c.len);
                    }
                    if sum != f.size {
                        return bad(format!("chunk lengths add up to {sum}, file size is {}", f.size));
                    }
                }
                EntryKind::Symlink { target } => check_symlink_target(&e.path, target)
                    .and_then(|()| check_no_link_traversal(&e.path, target, &symlinks))
                    .map_err(|reason| ManifestError::Entry {
                        path: p.to_owned(),
                        reason: reason.into(),
                    })?,
            }
        }
        Ok(())
    }

    /// The canonical byte string.
    pub fn encode(&self) -> Vec<u8> {
        let chunk_count: usize = self.files().map(|(_, f)| f.chunks.len()).sum();
        let mut out = Vec::with_capacity(32 + self.entries.len() * 64 + chunk_count * 36);
        out.extend_from_slice(MAGIC);
        out.push(ChunkParams::ALGORITHM_FASTCDC_2020);
        out.push(self.chunker.normalization);
        for v in [self.chunker.min_size, self.chunker.avg_size, self.chunker.max_size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        put_u32(&mut out, self.entries.len());
        for e in &self.entries {
            put_str(&mut out, e.path.as_str());
            out.push(match e.kind {
                EntryKind::Directory => 0,
                EntryKind::File(_) => 1,
                EntryKind::Symlink { .. } => 2,
            });
            out.extend_from_slice(&e.mode.to_le_bytes());
            out.extend_from_slice(&e.mtime.secs.to_le_bytes());
            out.extend_from_slice(&e.mtime.nanos.to_le_bytes());
            match &e.kind {
                EntryKind::Directory => {}
                EntryKind::File(f) => {
                    out.extend_from_slice(&f.size.to_le_bytes());
                    out.extend_from_slice(f.hash.as_bytes());
                    put_u32(&mut out, f.chunks.len());
                    for c in &f.chunks {
                        out.extend_from_slice(c.id.as_bytes());
                        out.extend_from_slice(&c.len.to_le_bytes());
                    }
                }
                EntryKind::Symlink { target } => put_str(&mut out, target),
            }
        }
        out
    }

    /// Parses and checks a canonical byte string. Never panics and never allocates more than a
    /// small multiple of `bytes.len()`, whatever the input.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        let mut r = Reader { buf: bytes };
        if r.take(8)? != MAGIC {
            return Err(ManifestError::Magic);
        }
        if r.u8()? != ChunkParams::ALGORITHM_FASTCDC_2020 {
            return Err(ManifestError::Malformed("unknown chunking algorithm"));
        }
        let chunker = ChunkParams {
            normalization: r.u8()?,
            min_size: r.u32()?,
            avg_size: r.u32()?,
            max_size: r.u32()?,
        };
        chunker.validate()?;
        let count = r.u32()? as usize;
        // Smallest entry: 2 (path len) + 1 (path) + 1 + 4 + 12 bytes.
        let mut entries = Vec::with_capacity(count.min(r.buf.len() / 20));
        for _ in 0..count {
            let path = RelPath::new(r.string()?)?;
            let kind_tag = r.u8()?;
            let mode = r.u32()?;
            let mtime = Timestamp {
                secs: r.i64()?,
                nanos: r.u32()?,
            };
            let kind = match kind_tag {
                0 => EntryKind::Directory,
                1 => {
                    let size = r.u64()?;
                    let hash = Digest(r.array()?);
                    let n = r.u32()? as usize;
                    let mut chunks = Vec::with_capacity(n.min(r.buf.len() / 36));
                    for _ in 0..n {
                        chunks.push(ChunkRef {
                            id: Digest(r.array()?),
                            len: r.u32()?,
                        });
                    }
                    EntryKind::File(FileData { size, hash, chunks })
                }
                2 => EntryKind::Symlink { target: r.string()? },
                _ => return Err(ManifestError::Malformed("unknown entry kind")),
            };
            entries.push(Entry {
                path,
                mode,
                mtime,
                kind,
            });
        }
        if !r.buf.is_empty() {
            return Err(ManifestError::Malformed("trailing bytes after the last entry"));
        }
        let m = Self { chunker, entries };
        m.check()?;
        Ok(m)
    }
}

/// A symlink target is accepted when it is relative and, resolved lexically from the link's own
/// directory, never climbs above the package root. Absolute targets are refused: they would point
/// somewhere else on every machine the package is copied to.
pub fn check_symlink_target(link: &RelPath, target: &str) -> Result<(), &'static str> {
    if target.is_empty() || target.len() > MAX_PATH_LEN {
        return Err("symlink target is empty or too long");
    }
    if target.contains('\0') {
        return Err("symlink target contains a NUL character");
    }
    if target.starts_with('/') {
        return Err("symlink target is absolute; only links inside the package are allowed");
    }
    let mut depth: usize = link.as_str().matches('/').count();
    for comp in target.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                depth = depth
                    .checked_sub(1)
                    .ok_or("symlink target points outside the package")?;
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

/// Refuses a target that passes *through* another symlink of the package (as a folder on the
/// way, not as its last component). With that rule the lexical check above is exact: every
/// folder on the way is a real folder, so `..` means what it says, and a chain of links can
/// only end inside the package.
fn check_no_link_traversal(link: &RelPath, target: &str, symlinks: &HashSet<&str>) -> Result<(), &'static str> {
    let mut at: Vec<&str> = link.parent().map(|p| p.split('/').collect()).unwrap_or_default();
    let comps: Vec<&str> = target.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    for (i, c) in comps.iter().enumerate() {
        if *c == ".." {
            at.pop();
            continue;
        }
        at.push(c);
        if i + 1 < comps.len() && symlinks.contains(at.join("/").as_str()) {
            return Err("symlink target passes through another symlink of the package; point it at the real folder");
        }
    }
    Ok(())
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // Counts are bounded by construction (entries and chunks of a real tree); saturate rather
    // than wrap if someone builds an absurd manifest in memory, so decode refuses it.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ManifestError> {
        if self.buf.len() < n {
            return Err(ManifestError::Malformed("unexpected end of data"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ManifestError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, ManifestError> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, ManifestError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, ManifestError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, ManifestError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn string(&mut self) -> Result<String, ManifestError> {
        let len = u16::from_le_bytes(self.array()?);
        let bytes = self.take(usize::from(len))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ManifestError::Malformed("a string is not UTF-8"))
    }
}

#[cfg(test)]
mod tests;
