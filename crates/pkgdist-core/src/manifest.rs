//! The manifest: the immutable description of one package version.
//!
//! A manifest lists every entry of a package's source tree (sorted by path) with its metadata,
//! the BLAKE3 of each whole file and the file's chunk list. It is serialized canonically — one
//! manifest has exactly one byte string — and is named by the BLAKE3 of that byte string, so a
//! node that holds a trusted manifest hash can accept a manifest (and then every chunk) from any
//! source.
//!
//! # Encoding
//!
//! All integers are little-endian. Two formats; a manifest is encoded in the one it was made
//! in, so a manifest keeps its bytes (and its name) for ever. New snapshots are format 2.
//!
//! ```text
//! magic        8 bytes  "PKGDMAN1" or "PKGDMAN2"
//! chunker      1 byte algorithm (1 = FastCDC v2020), 1 byte normalization level,
//!              u32 min, u32 avg, u32 max
//! entry count  u32
//! entries      path (u16 length + UTF-8 bytes), kind (u8), mode (u32),
//!              mtime (i64 seconds + u32 nanoseconds),
//!              format 2 only: uid (u32), gid (u32), u16 xattr count,
//!                (u8 name length + name, u32 value length + value)* sorted by name,
//!              then by kind:
//!                0 directory     nothing
//!                1 file          u64 size, 32-byte BLAKE3, u32 chunk count, (32-byte id, u32 length)*,
//!                                format 2 only: u32 hole count, (u64 offset, u64 length)*
//!                2 symlink       u16 length + UTF-8 target
//!                format 2 only:
//!                3 hard link     u16 length + path of an earlier file entry
//!                4 char device   u32 major, u32 minor
//!                5 block device  u32 major, u32 minor
//!                6 fifo          nothing
//! ```
//!
//! Format 1 holds folders, files and symlinks whose target stays inside the package. Format 2
//! holds what an OS tree needs restored to work: a symlink's target verbatim (absolute ones
//! too: serving resolves them from the package root, as in a chroot), hard links, device
//! nodes, fifos, the numeric owner and group, every extended attribute (file capabilities
//! `security.capability`, POSIX ACLs `system.posix_acl_*`, `user.*`, `trusted.*`), and the
//! holes of sparse files (their chunks still cover the zeros, which store as one chunk;
//! a restore leaves the holes unwritten). Sockets are not content: a snapshot skips them.
//!
//! Decoding is strict: entries must be in strictly increasing byte order of path, every entry's
//! parent must be a directory entry listed before it, chunk lengths must add up to the file size
//! and stay within the recorded maximum, a hard link must name an earlier file, attributes and
//! holes must be sorted and within bounds, and nothing may follow the last entry. Anything else
//! is refused with the reason, so that `encode(decode(b)) == b` for every accepted `b`.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

mod codec;

/// Longest extended attribute name (XATTR_NAME_MAX) and value (XATTR_SIZE_MAX), in bytes.
pub const MAX_XATTR_NAME: usize = 255;
pub const MAX_XATTR_VALUE: usize = 65536;
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
    /// The chunks of the whole file, holes (as zeros) included.
    pub chunks: Vec<ChunkRef>,
    /// The holes of a sparse file, in order: ranges a restore leaves unwritten (format 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holes: Vec<Hole>,
}

/// A range of a sparse file that holds no data (reads as zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hole {
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EntryKind {
    Directory,
    File(FileData),
    /// A symbolic link. Its target is recorded as the link holds it and never followed while
    /// snapshotting; format 1 only took targets inside the package.
    Symlink {
        target: String,
    },
    /// Another name of an earlier file entry (same content, owner, mode and attributes).
    #[serde(rename = "hardlink")]
    HardLink {
        target: RelPath,
    },
    #[serde(rename = "chardevice")]
    CharDevice {
        major: u32,
        minor: u32,
    },
    #[serde(rename = "blockdevice")]
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// An extended attribute: its full name (`user.comment`, `security.capability`,
/// `system.posix_acl_access`) and its value as the file system holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: String,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: RelPath,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub mtime: Timestamp,
    /// The numeric owner and group (format 2; 0 in a format-1 manifest, which has none).
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// Extended attributes, sorted by name, each once (format 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
    #[serde(flatten)]
    pub kind: EntryKind,
}

impl Entry {
    /// An entry owned by uid and gid 0, with no extended attributes.
    pub fn new(path: RelPath, mode: u32, mtime: Timestamp, kind: EntryKind) -> Self {
        Self {
            path,
            mode,
            mtime,
            uid: 0,
            gid: 0,
            xattrs: Vec::new(),
            kind,
        }
    }

    pub fn file(&self) -> Option<&FileData> {
        match &self.kind {
            EntryKind::File(f) => Some(f),
            _ => None,
        }
    }
}

/// The encoding a manifest is in (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Format {
    /// `PKGDMAN1`: folders, files and in-package symlinks.
    V1,
    /// `PKGDMAN2`: every kind, owners, attributes and holes.
    V2,
}

/// One package version's content. Construct it with [`Manifest::new`], which sorts and checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    chunker: ChunkParams,
    entries: Vec<Entry>,
    format: Format,
}

impl Manifest {
    /// Sorts `entries` by path and checks every invariant the encoding promises (format 2).
    pub fn new(chunker: ChunkParams, entries: Vec<Entry>) -> Result<Self, ManifestError> {
        Self::with_format(Format::V2, chunker, entries)
    }

    /// [`Manifest::new`] in a given format; format 1 refuses what it cannot hold.
    pub fn with_format(format: Format, chunker: ChunkParams, mut entries: Vec<Entry>) -> Result<Self, ManifestError> {
        entries.sort_by(|a, b| a.path.as_str().as_bytes().cmp(b.path.as_str().as_bytes()));
        let m = Self {
            chunker,
            entries,
            format,
        };
        m.check()?;
        Ok(m)
    }

    pub fn format(&self) -> Format {
        self.format
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

    /// The file an entry's content is: its own, or a hard link's target's.
    pub fn content_of<'a>(&'a self, e: &'a Entry) -> Option<&'a FileData> {
        match &e.kind {
            EntryKind::File(f) => Some(f),
            EntryKind::HardLink { target } => self.entry(target.as_str()).and_then(Entry::file),
            _ => None,
        }
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
        let mut files: HashSet<&str> = HashSet::new();
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
            let bad = |reason: String| ManifestError::Entry {
                path: p.to_owned(),
                reason,
            };
            if e.mode > 0o7777 {
                return Err(bad(format!("mode {:o} has bits beyond 0o7777", e.mode)));
            }
            if e.mtime.nanos >= 1_000_000_000 {
                return Err(bad("mtime nanoseconds out of range".into()));
            }
            if self.format == Format::V1 && (e.uid != 0 || e.gid != 0 || !e.xattrs.is_empty()) {
                return Err(bad("format 1 records no owner and no extended attributes".into()));
            }
            check_xattrs(&e.xattrs).map_err(|r| bad(r.into()))?;
            match &e.kind {
                EntryKind::Directory => {
                    dirs.insert(p);
                }
                EntryKind::File(f) => {
                    let mut sum: u64 = 0;
                    for c in &f.chunks {
                        if c.len == 0 || c.len > self.chunker.max_size {
                            return Err(bad(format!(
                                "chunk {} has length {} (1 to {})",
                                c.id, c.len, self.chunker.max_size
                            )));
                        }
                        sum += u64::from(c.len);
                    }
                    if sum != f.size {
                        return Err(bad(format!("chunk lengths add up to {sum}, file size is {}", f.size)));
                    }
                    if self.format == Format::V1 && !f.holes.is_empty() {
                        return Err(bad("format 1 records no holes".into()));
                    }
                    check_holes(&f.holes, f.size).map_err(|r| bad(r.into()))?;
                    files.insert(p);
                }
                EntryKind::Symlink { target } => {
                    if target.is_empty() || target.len() > MAX_PATH_LEN || target.contains('\0') {
                        return Err(bad("symlink target is empty, too long or holds a NUL".into()));
                    }
                    if self.format == Format::V1 {
                        check_symlink_target(&e.path, target)
                            .and_then(|()| check_no_link_traversal(&e.path, target, &symlinks))
                            .map_err(|reason| bad(reason.into()))?;
                    }
                }
                _ if self.format == Format::V1 => {
                    return Err(bad("format 1 holds only folders, files and symlinks".into()));
                }
                EntryKind::HardLink { target } => {
                    if !files.contains(target.as_str()) {
                        return Err(bad(format!(
                            "hard link to {target:?}, which is not an earlier file entry"
                        )));
                    }
                }
                EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. } | EntryKind::Fifo => {}
            }
        }
        Ok(())
    }

    /// The canonical byte string, in the manifest's format.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Parses and checks a canonical byte string of either format. Never panics and never
    /// allocates more than a small multiple of `bytes.len()`, whatever the input.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m = codec::decode(bytes)?;
        m.check()?;
        Ok(m)
    }
}

/// Extended attributes: sorted by name, each once, names of 1 to 255 bytes without NUL,
/// values of at most 64 KiB.
fn check_xattrs(xattrs: &[Xattr]) -> Result<(), &'static str> {
    for (i, x) in xattrs.iter().enumerate() {
        if x.name.is_empty() || x.name.len() > MAX_XATTR_NAME || x.name.contains('\0') {
            return Err("an extended attribute name is empty, longer than 255 bytes or holds a NUL");
        }
        if x.value.len() > MAX_XATTR_VALUE {
            return Err("an extended attribute value is larger than 64 KiB");
        }
        if i > 0 && xattrs[i - 1].name.as_bytes() >= x.name.as_bytes() {
            return Err("extended attributes are not sorted by name, each once");
        }
    }
    if xattrs.len() > usize::from(u16::MAX) {
        return Err("more than 65,535 extended attributes");
    }
    Ok(())
}

/// Holes: in order, not touching, not empty, inside the file.
fn check_holes(holes: &[Hole], size: u64) -> Result<(), &'static str> {
    let mut end = 0u64;
    for (i, h) in holes.iter().enumerate() {
        let stop = h.offset.checked_add(h.len).ok_or("a hole ends beyond any file size")?;
        if h.len == 0 || stop > size {
            return Err("a hole is empty or ends beyond the file's size");
        }
        if i > 0 && h.offset <= end {
            return Err("holes overlap, touch or are out of order");
        }
        end = stop;
    }
    Ok(())
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

#[cfg(test)]
mod tests;
