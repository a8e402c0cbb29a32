//! `pkgdist fetch`: a smart client. Downloads a package version from a DP into a plain folder,
//! verifying every byte, and takes every chunk it can from files already in that folder (an
//! older copy of the package, renamed files included), so a second fetch moves only changes.
//!
//! Files are written into a private folder inside DEST (`.pkgdist-tmp-…`, made fresh for the
//! run; each file created new), checked against the manifest's file hash, and renamed into place
//! only once every file is ready: an interrupted fetch leaves the old files as they were.
//! Then links, hard links, devices and fifos are made, and every entry gets its owner, mode,
//! extended attributes and mtime (`pkgdist_content::restore::Tree`, as `content export` does:
//! as root all of it, as another user what it may, counted in `skipped`). Holes of sparse files
//! stay unwritten. Nothing is written outside DEST, nor through a symlink: DEST is held by
//! descriptor, every folder on the way is opened with `O_NOFOLLOW`, and a link or a file
//! standing where the manifest has a folder is an error, never followed.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use pkgdist_content::ContentError;
use pkgdist_content::chunker::Chunker;
use pkgdist_content::restore::{self, Skipped, Tree};
use pkgdist_core::{ChunkRef, ContentId, Digest, Entry, EntryKind, FileData, Manifest};

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
    /// Links, hard links, device nodes and fifos made or found right.
    pub specials: u64,
    /// What this user could not restore (owners, devices, attributes: root can).
    pub skipped: Skipped,
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
    #[error(
        "{0} is in the way: DEST has something of another kind where the package has a folder or file (a link there is never followed). Move it and fetch again"
    )]
    InTheWay(PathBuf),
    #[error(transparent)]
    Restore(ContentError),
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

impl From<ContentError> for DownloadError {
    fn from(e: ContentError) -> Self {
        match e {
            ContentError::InTheWay(p) => DownloadError::InTheWay(p),
            other => DownloadError::Restore(other),
        }
    }
}

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
        let mut tree = Tree::open(&self.dest)?.for_manifest(m);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("{TMP_PREFIX}{}-{nanos}", std::process::id());
        let tmp = self.dest.join(&name);
        rustix::fs::mkdirat(tree.root(), name.as_str(), rustix::fs::Mode::from_raw_mode(0o700))
            .map_err(|e| io(&tmp)(e.into()))?;
        let result = tree
            .open_dir(&name)
            .map_err(DownloadError::from)
            .and_then(|tmp_fd| self.write_all(m, &unchanged, &mut tree, &tmp_fd));
        let _ = fs::remove_dir_all(&tmp);
        self.stats.specials = tree.done.symlinks + tree.done.specials;
        self.stats.skipped = tree.done.skipped;
        result
    }

    fn write_all(&mut self, m: &Manifest, unchanged: &HashSet<String>, tree: &mut Tree, tmp: &OwnedFd) -> Result<()> {
        let mut ready: Vec<(String, &Entry)> = Vec::new();
        let mut later = Vec::new();
        // Each file's names: itself and the hard links to it.
        let mut names: HashMap<&str, u64> = HashMap::new();
        for e in m.entries() {
            if let EntryKind::HardLink { target } = &e.kind {
                *names.entry(target.as_str()).or_insert(1) += 1;
            }
        }
        for e in m.entries() {
            match &e.kind {
                EntryKind::Directory => tree.make(e)?,
                EntryKind::File(f) => {
                    self.stats.files += 1;
                    let rel = e.path.as_str();
                    // Kept only if it is still the very file checked, reachable from nowhere
                    // else; its metadata is set on that descriptor.
                    if unchanged.contains(rel)
                        && let Some(fd) = tree.keepable(e, names.get(rel).copied().unwrap_or(1))?
                    {
                        tree.finish_fd(e, &fd)?;
                        self.stats.files_unchanged += 1;
                        continue;
                    }
                    let part = ready.len().to_string();
                    let fd = restore::create_file(tmp, &part).map_err(|err| io(&self.dest.join(rel))(err.into()))?;
                    self.write_file(&fd, f, rel)?;
                    // Owner, mode, attributes and mtime before it has its name: renamed,
                    // it keeps them, and nobody could reach it in between.
                    tree.finish_fd(e, &fd)?;
                    ready.push((part, e));
                }
                _ => later.push(e),
            }
        }
        // Every file is whole and verified: now, and only now, they replace the old ones.
        for (part, e) in &ready {
            let rel = e.path.as_str();
            let path = self.dest.join(rel);
            let (dir, name) = tree.parent_of(rel)?;
            if rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
            {
                return Err(DownloadError::InTheWay(path));
            }
            rustix::fs::renameat(tmp, part.as_str(), dir, name).map_err(|err| io(&path)(err.into()))?;
            self.stats.files_written += 1;
        }
        // Links, hard links (their files are in place), devices and fifos.
        for e in later {
            tree.make(e)?;
            if matches!(e.kind, EntryKind::HardLink { .. }) {
                self.stats.files += 1;
            }
        }
        // Owners, modes, attributes and mtimes of links, devices and fifos (files have theirs),
        // folders last.
        for e in m.entries().iter().filter(|e| !matches!(e.kind, EntryKind::File(_))) {
            tree.finish(e)?;
        }
        tree.finish_dirs(m)?;
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
                // Through no link, without blocking on a fifo swapped in, a regular file only.
                let flags = rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::NOFOLLOW
                    | rustix::fs::OFlags::NONBLOCK
                    | rustix::fs::OFlags::CLOEXEC;
                let Ok(file) = rustix::fs::open(&path, flags, rustix::fs::Mode::empty()).map(File::from) else {
                    continue;
                };
                if !file.metadata().is_ok_and(|md| md.is_file()) {
                    continue;
                }
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

    /// Writes a file's data into `out` (new, in the run's private folder), verified against
    /// its hash; holes of zeros stay unwritten.
    fn write_file(&mut self, out: &OwnedFd, f: &FileData, rel: &str) -> Result<()> {
        let part = self.dest.join(rel);
        let part = part.as_path();
        let mut whole = blake3::Hasher::new();
        let mut at = 0u64;
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
                for (start, end) in restore::data_ranges(&f.holes, at, bytes) {
                    restore::write_all_at(out, &bytes[start..end], at + start as u64).map_err(io(part))?;
                }
                at += bytes.len() as u64;
            }
        }
        rustix::fs::ftruncate(out, f.size).map_err(|e| io(part)(e.into()))?;
        let actual = Digest::from(whole.finalize());
        if actual != f.hash {
            return Err(DownloadError::Mismatch {
                path: part.to_owned(),
                expected: f.hash,
                actual,
            });
        }
        rustix::fs::fsync(out).map_err(|e| io(part)(e.into()))?;
        Ok(())
    }

    /// A chunk from a file in DEST, re-hashed: a file that changed since indexing is not trusted.
    fn read_local(&self, c: &ChunkRef) -> Option<Vec<u8>> {
        let (path, offset, len) = self.local.get(&c.id)?;
        let flags = rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::NONBLOCK
            | rustix::fs::OFlags::CLOEXEC;
        let mut f = File::from(rustix::fs::open(path, flags, rustix::fs::Mode::empty()).ok()?);
        if !f.metadata().is_ok_and(|md| md.is_file()) {
            return None;
        }
        f.seek(SeekFrom::Start(*offset)).ok()?;
        let mut buf = vec![0; *len as usize];
        f.read_exact(&mut buf).ok()?;
        (Digest::of(&buf) == c.id).then_some(buf)
    }
}

/// The private folder of a run; older ones (of runs that died) are skipped when indexing.
const TMP_PREFIX: &str = ".pkgdist-tmp-";
