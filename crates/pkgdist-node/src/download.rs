//! `pkgdist fetch`: a smart client. Downloads a package version from a DP into a plain folder,
//! verifying every byte, and takes every chunk it can from files already in that folder (an
//! older copy of the package, renamed files included), so a second fetch moves only changes.
//!
//! Files are written into a private folder inside DEST (`.pkgdist-tmp-…`, made fresh for the
//! run; each file created new), checked against the manifest's file hash, and renamed into place
//! only once every file is ready: an interrupted fetch leaves the old files as they were.
//! Nothing is written outside DEST: a symlink or a file standing where the manifest has a folder
//! is an error, never followed.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use pkgdist_content::chunker::Chunker;
use pkgdist_core::{ChunkRef, ContentId, Digest, EntryKind, FileData, Manifest};

use crate::fetch::{FetchError, Fetcher, Which};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownloadStats {
    pub content: Option<ContentId>,
    pub files: u64,
    /// Files already in DEST with the right content, left alone.
    pub files_unchanged: u64,
    pub files_written: u64,
    /// Bytes written from chunks found in DEST.
    pub bytes_reused: u64,
    /// Bytes written from chunks fetched from the DP (uncompressed), and what crossed the wire.
    pub bytes_fetched: u64,
    pub wire_bytes: u64,
    /// Device nodes and fifos of the package, which a fetch does not make (`content export`
    /// as root does).
    pub specials_skipped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is in the way: the package has a folder there, DEST has something else. Move it and fetch again")]
    InTheWay(PathBuf),
    #[error("{path} came out with hash {actual}, not the manifest's {expected}")]
    Mismatch {
        path: PathBuf,
        expected: Digest,
        actual: Digest,
    },
    #[error("the package's chunk parameters are invalid: {0}")]
    Params(String),
    #[error("a worker thread failed: {0}")]
    Join(String),
}

type Result<T, E = DownloadError> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Downloads `which` from the DP at `dp` into `dest`.
pub async fn download(fetcher: &Fetcher, dp: &str, which: Which, dest: &Path) -> Result<DownloadStats> {
    let fetched = fetcher.manifest(dp, which, None).await?;
    let (fetcher, dp, dest) = (fetcher.clone(), dp.to_owned(), dest.to_owned());
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut w = Writer {
            fetcher,
            dp,
            dest,
            handle,
            stats: DownloadStats {
                content: Some(fetched.content),
                ..DownloadStats::default()
            },
            local: HashMap::new(),
        };
        w.run(&fetched.manifest)?;
        Ok(w.stats)
    })
    .await
    .map_err(|e| DownloadError::Join(e.to_string()))?
}

/// Where a chunk can be read in DEST: file, offset, length.
type Local = (PathBuf, u64, u32);

struct Writer {
    fetcher: Fetcher,
    dp: String,
    dest: PathBuf,
    handle: tokio::runtime::Handle,
    stats: DownloadStats,
    local: HashMap<Digest, Local>,
}

impl Writer {
    fn run(&mut self, m: &Manifest) -> Result<()> {
        fs::create_dir_all(&self.dest).map_err(io(&self.dest))?;
        let unchanged = self.index(m)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = self.dest.join(format!("{TMP_PREFIX}{}-{nanos}", std::process::id()));
        fs::create_dir(&tmp).map_err(io(&tmp))?;
        let result = self.write_all(m, &unchanged, &tmp);
        let _ = fs::remove_dir_all(&tmp);
        result
    }

    fn write_all(&mut self, m: &Manifest, unchanged: &HashSet<String>, tmp: &Path) -> Result<()> {
        let mut ready = Vec::new();
        let mut links = Vec::new();
        for e in m.entries() {
            let path = self.dest.join(e.path.as_str());
            match &e.kind {
                EntryKind::Directory => self.make_dirs(&path)?,
                EntryKind::Symlink { target } => {
                    if let Some(parent) = path.parent() {
                        self.make_dirs(parent)?;
                    }
                    let current = fs::read_link(&path).ok();
                    if current.as_deref() != Some(Path::new(target)) {
                        if current.is_some() {
                            fs::remove_file(&path).map_err(io(&path))?;
                        }
                        std::os::unix::fs::symlink(target, &path).map_err(io(&path))?;
                    }
                }
                EntryKind::HardLink { .. } => links.push(e),
                EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. } | EntryKind::Fifo => {
                    self.stats.specials_skipped += 1;
                }
                EntryKind::File(f) => {
                    self.stats.files += 1;
                    if unchanged.contains(e.path.as_str()) {
                        self.stats.files_unchanged += 1;
                        continue;
                    }
                    if let Some(parent) = path.parent() {
                        self.make_dirs(parent)?;
                    }
                    let part = tmp.join(ready.len().to_string());
                    self.write_file(&part, f, e.mode)?;
                    ready.push((part, path));
                }
            }
        }
        // Every file is whole and verified: now, and only now, they replace the old ones.
        for (part, path) in ready {
            if fs::symlink_metadata(&path).is_ok_and(|md| md.is_dir()) {
                return Err(DownloadError::InTheWay(path));
            }
            fs::rename(&part, &path).map_err(io(&path))?;
            self.stats.files_written += 1;
        }
        // Hard links last: their files are in place. A name that is already the file stays.
        for e in links {
            let EntryKind::HardLink { target } = &e.kind else {
                continue;
            };
            let (path, to) = (self.dest.join(e.path.as_str()), self.dest.join(target.as_str()));
            if let Some(parent) = path.parent() {
                self.make_dirs(parent)?;
            }
            let same = |a: &fs::Metadata, b: &fs::Metadata| {
                use std::os::unix::fs::MetadataExt;
                (a.dev(), a.ino()) == (b.dev(), b.ino())
            };
            match (fs::symlink_metadata(&path), fs::symlink_metadata(&to)) {
                (Ok(a), Ok(b)) if same(&a, &b) => continue,
                (Ok(a), _) if a.is_dir() => return Err(DownloadError::InTheWay(path)),
                (Ok(_), _) => fs::remove_file(&path).map_err(io(&path))?,
                _ => {}
            }
            fs::hard_link(&to, &path).map_err(io(&path))?;
            self.stats.files += 1;
            self.stats.files_written += 1;
        }
        Ok(())
    }

    /// Creates `dir` and its parents inside DEST, refusing to pass through anything that is not
    /// a real folder (a symlink could lead outside DEST).
    fn make_dirs(&self, dir: &Path) -> Result<()> {
        let rel = dir.strip_prefix(&self.dest).unwrap_or(Path::new(""));
        let mut at = self.dest.clone();
        for part in rel.components() {
            at.push(part);
            match fs::symlink_metadata(&at) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => return Err(DownloadError::InTheWay(at)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir(&at).map_err(io(&at))?,
                Err(e) => return Err(io(&at)(e)),
            }
        }
        Ok(())
    }

    /// Chunks every regular file in DEST with the package's parameters and remembers where the
    /// chunks the package needs can be found. Returns the paths already right.
    fn index(&mut self, m: &Manifest) -> Result<HashSet<String>> {
        let needed: HashSet<Digest> = m.unique_chunks().iter().map(|c| c.id).collect();
        let chunker = Chunker::new(m.chunker()).map_err(|e| DownloadError::Params(e.to_string()))?;
        let mut unchanged = HashSet::new();
        let mut stack = vec![self.dest.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for ent in rd.flatten() {
                let (path, Ok(ft)) = (ent.path(), ent.file_type()) else {
                    continue;
                };
                if ft.is_dir() {
                    if !ent.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                        stack.push(path);
                    }
                    continue;
                }
                if !ft.is_file() {
                    continue;
                }
                let Ok(file) = File::open(&path) else { continue };
                let mut whole = blake3::Hasher::new();
                let (mut stream, mut offset) = (chunker.stream(file, 1 << 20), 0u64);
                while let Ok(Some(chunk)) = stream.next_chunk() {
                    whole.update(chunk);
                    let id = Digest::of(chunk);
                    let len = chunk.len() as u32;
                    if needed.contains(&id) {
                        self.local.entry(id).or_insert_with(|| (path.clone(), offset, len));
                    }
                    offset += u64::from(len);
                }
                let rel = path
                    .strip_prefix(&self.dest)
                    .ok()
                    .and_then(|p| p.to_str())
                    .unwrap_or("");
                if let Some(f) = m.entry(rel).and_then(|e| e.file())
                    && f.size == offset
                    && f.hash == Digest::from(whole.finalize())
                {
                    unchanged.insert(rel.to_owned());
                }
            }
        }
        Ok(unchanged)
    }

    fn write_file(&mut self, part: &Path, f: &FileData, mode: u32) -> Result<()> {
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(part)
            .map_err(io(part))?;
        let mut whole = blake3::Hasher::new();
        for window in crate::fetch::batches(&f.chunks, self.fetcher.batch_bytes()) {
            let mut data: HashMap<Digest, Vec<u8>> = HashMap::new();
            let mut remote = Vec::new();
            for c in window {
                if data.contains_key(&c.id) || remote.iter().any(|r: &ChunkRef| r.id == c.id) {
                    continue;
                }
                match self.read_local(c) {
                    Some(bytes) => {
                        data.insert(c.id, bytes);
                    }
                    None => remote.push(*c),
                }
            }
            if !remote.is_empty() {
                let (envelopes, wire) =
                    self.handle
                        .block_on(self.fetcher.chunks(&self.dp, &remote, &crate::fetch::Bases::default()))?;
                self.stats.wire_bytes += wire;
                for (c, env) in remote.iter().zip(envelopes) {
                    let bytes = pkgdist_content::library::check_chunk(&env, c).map_err(|why| FetchError::BadData {
                        url: self.dp.clone(),
                        why,
                    })?;
                    self.stats.bytes_fetched += bytes.len() as u64;
                    data.insert(c.id, bytes);
                }
            }
            for c in window {
                let bytes = data.get(&c.id).map(Vec::as_slice).unwrap_or_default();
                if !remote.iter().any(|r| r.id == c.id) {
                    self.stats.bytes_reused += bytes.len() as u64;
                }
                whole.update(bytes);
                out.write_all(bytes).map_err(io(part))?;
            }
        }
        let actual = Digest::from(whole.finalize());
        if actual != f.hash {
            let _ = fs::remove_file(part);
            return Err(DownloadError::Mismatch {
                path: part.to_owned(),
                expected: f.hash,
                actual,
            });
        }
        out.set_permissions(fs::Permissions::from_mode(mode & 0o777))
            .map_err(io(part))?;
        out.sync_all().map_err(io(part))?;
        Ok(())
    }

    /// A chunk from a file in DEST, re-hashed: a file that changed since indexing is not trusted.
    fn read_local(&self, c: &ChunkRef) -> Option<Vec<u8>> {
        let (path, offset, len) = self.local.get(&c.id)?;
        let mut f = File::open(path).ok()?;
        f.seek(SeekFrom::Start(*offset)).ok()?;
        let mut buf = vec![0; *len as usize];
        f.read_exact(&mut buf).ok()?;
        (Digest::of(&buf) == c.id).then_some(buf)
    }
}

/// The private folder of a run; older ones (of runs that died) are skipped when indexing.
const TMP_PREFIX: &str = ".pkgdist-tmp-";
