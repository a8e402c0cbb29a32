//! The source folder of a snapshot, held by file descriptor: what a snapshot reads is what its
//! walk found inside the folder, never what a path leads to a moment later.
//!
//! Whoever can write in a source folder can swap a subfolder for a symlink to somewhere else
//! while a snapshot runs. Walking and reading by path (as `walkdir` and `File::open` do)
//! follows such a link wherever it points, and a check of the file afterwards cannot see that a
//! parent was swapped: a snapshot could capture a file the site can read and the writer cannot.
//! So:
//!
//! - the folder itself is opened once, following its own path as given (the administrator
//!   chose it), and everything else is reached from that descriptor;
//! - the walk opens each subfolder relative to its parent with `O_NOFOLLOW | O_DIRECTORY` and
//!   checks that what it opened is what it listed (device and inode), so a subfolder swapped
//!   for a link, or for another folder, fails the snapshot rather than leading outside;
//! - a file is opened relative to the folder with `openat2(RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS)`: no symlink anywhere on the way, nothing outside the folder (a
//!   component-wise `O_NOFOLLOW` walk where the kernel lacks `openat2`), and what was opened
//!   must be the file the walk found.
//!
//! A source that changes under a snapshot therefore gives a consistent snapshot or a clear
//! error naming the path, never a file from outside the source.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use pkgdist_core::{RelPath, Timestamp, Xattr};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

use crate::error::{ContentError, Result};

/// Folders deeper than this are refused (the walk holds one descriptor per level).
const MAX_DEPTH: usize = 256;

/// Per-file facts the quick check compares (see `snapshot::Stamp`), as the walk saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    pub size: u64,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub ino: u64,
    pub dev: u64,
    /// Links to the inode: above 1, the snapshot records the other names as hard links.
    pub nlink: u64,
    /// 512-byte blocks allocated: fewer than the size needs, the file may have holes.
    pub blocks: u64,
}

/// One thing found by the walk.
#[derive(Debug)]
pub(crate) struct Scanned {
    pub path: RelPath,
    /// For messages only: the source folder's path joined with `path`.
    pub abs: PathBuf,
    pub mode: u32,
    pub mtime: Timestamp,
    pub uid: u32,
    pub gid: u32,
    /// Every extended attribute this process can read, sorted by name.
    pub xattrs: Vec<Xattr>,
    pub what: Found,
}

#[derive(Debug)]
pub(crate) enum Found {
    Dir,
    File(Seen),
    /// The link's target as it holds it: never followed.
    Symlink(String),
    Device {
        block: bool,
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// What a walk found: everything a manifest holds, and the sockets it left out (a socket is
/// a running program's, not content).
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub entries: Vec<Scanned>,
    pub sockets: Vec<PathBuf>,
}

/// The source folder, open.
#[derive(Debug)]
pub(crate) struct SourceDir {
    fd: OwnedFd,
    path: PathBuf,
}

fn timestamp(secs: i64, nanos: u64) -> Timestamp {
    Timestamp {
        secs,
        nanos: u32::try_from(nanos.min(999_999_999)).unwrap_or(0),
    }
}

impl Seen {
    fn of(st: &rustix::fs::Stat) -> Self {
        Self {
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: timestamp(st.st_mtime, st.st_mtime_nsec),
            ctime: timestamp(st.st_ctime, st.st_ctime_nsec),
            ino: st.st_ino,
            dev: st.st_dev,
            nlink: st.st_nlink,
            blocks: u64::try_from(st.st_blocks).unwrap_or(0),
        }
    }
}

impl SourceDir {
    /// Opens the source folder (following its own path as given).
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            let why = if e == rustix::io::Errno::NOTDIR {
                "the source is not a folder".to_owned()
            } else {
                format!("the source folder cannot be read ({e})")
            };
            ContentError::source(path, why)
        })?;
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    /// Refuses the open folder if [`check_place`] refuses where it really is (asked of the
    /// descriptor, so it is where the snapshot reads, whatever links its path took).
    pub(crate) fn check_place(&self, roots: Option<&[PathBuf]>, private: &[PathBuf]) -> Result<()> {
        check_place(&self.real_path()?, roots, private)
    }

    /// Where the open folder is, asked of its descriptor.
    fn real_path(&self) -> Result<PathBuf> {
        std::fs::read_link(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
            .map_err(|e| ContentError::source(&self.path, format!("cannot tell where the folder is ({e})")))
    }

    /// Everything in the folder, sorted by path bytes; refuses what a manifest cannot hold.
    pub(crate) fn scan(&self) -> Result<Scan> {
        let mut out = Scan::default();
        self.walk(&self.fd, "", 0, &mut out)?;
        out.entries
            .sort_by(|a, b| a.path.as_str().as_bytes().cmp(b.path.as_str().as_bytes()));
        Ok(out)
    }

    fn walk(&self, dir: &OwnedFd, prefix: &str, depth: usize, out: &mut Scan) -> Result<()> {
        let here = self.path.join(prefix);
        if depth > MAX_DEPTH {
            return Err(ContentError::source(
                &here,
                format!("folders nest more than {MAX_DEPTH} deep"),
            ));
        }
        // The names first, and the listing's own descriptor closed before going deeper: a
        // deep tree holds one descriptor per level, not two.
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(dir).map_err(|e| unreadable(&here, e))? {
            let entry = entry.map_err(|e| unreadable(&here, e))?;
            names.push(entry.file_name().to_bytes().to_vec());
        }
        for raw in &names {
            let raw = raw.as_slice();
            if raw == b"." || raw == b".." {
                continue;
            }
            let Ok(name) = std::str::from_utf8(raw) else {
                return Err(ContentError::source(
                    here.join(String::from_utf8_lossy(raw).as_ref()),
                    "the name is not valid UTF-8; rename it",
                ));
            };
            let rel = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            let abs = self.path.join(&rel);
            let path = RelPath::new(&rel).map_err(|e| ContentError::source(&abs, e.to_string()))?;
            let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| unreadable(&abs, e))?;
            let mode = st.st_mode & 0o7777;
            let mtime = timestamp(st.st_mtime, st.st_mtime_nsec);
            let (uid, gid) = (st.st_uid, st.st_gid);
            let file_type = FileType::from_raw_mode(st.st_mode);
            if file_type == FileType::Socket {
                tracing::warn!(path = %abs.display(), "a socket in the source is not content: left out");
                out.sockets.push(abs);
                continue;
            }
            let xattrs = read_xattrs(dir, name, &abs)?;
            let what = match file_type {
                FileType::Directory => {
                    let sub = rustix::fs::openat(
                        dir,
                        name,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| changed(&abs, e))?;
                    same_object(&sub, &st, &abs)?;
                    out.entries.push(Scanned {
                        path,
                        abs,
                        mode,
                        mtime,
                        uid,
                        gid,
                        xattrs,
                        what: Found::Dir,
                    });
                    self.walk(&sub, &rel, depth + 1, out)?;
                    continue;
                }
                FileType::RegularFile => Found::File(Seen::of(&st)),
                FileType::Symlink => {
                    let target = rustix::fs::readlinkat(dir, name, Vec::new())
                        .map_err(|e| ContentError::source(&abs, format!("cannot read the link ({e})")))?;
                    let Ok(target) = target.into_string() else {
                        return Err(ContentError::source(
                            &abs,
                            "the link target is not valid UTF-8; point the link at a UTF-8 name",
                        ));
                    };
                    Found::Symlink(target)
                }
                FileType::CharacterDevice | FileType::BlockDevice => Found::Device {
                    block: file_type == FileType::BlockDevice,
                    major: rustix::fs::major(st.st_rdev),
                    minor: rustix::fs::minor(st.st_rdev),
                },
                FileType::Fifo => Found::Fifo,
                _ => return Err(ContentError::source(&abs, "is of a kind no manifest can hold")),
            };
            out.entries.push(Scanned {
                path,
                abs,
                mode,
                mtime,
                uid,
                gid,
                xattrs,
                what,
            });
        }
        Ok(())
    }

    /// Opens a file the walk found, by no path but the one beneath this folder, through no
    /// symlink; it must be the very file the walk saw.
    pub(crate) fn open_file(&self, s: &Scanned, seen: &Seen) -> Result<File> {
        // Non-blocking: a file swapped for a FIFO would block the open for ever (and with it
        // the refresh and the scheduler); the type is checked once it is open.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = match rustix::fs::openat2(
            &self.fd,
            s.path.as_str(),
            flags,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        ) {
            // No openat2 in this kernel, or a sandbox (seccomp) that predates it.
            Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => self.open_by_components(s.path.as_str(), flags),
            other => other,
        }
        .map_err(|e| match e {
            // A link met on the way (ELOOP), or a rename while resolving (EAGAIN).
            rustix::io::Errno::LOOP | rustix::io::Errno::AGAIN | rustix::io::Errno::XDEV | rustix::io::Errno::NOENT => {
                changed(&s.abs, e)
            }
            e => ContentError::source(
                &s.abs,
                format!("cannot read the file ({e}); fix its permissions or remove it from the source"),
            ),
        })?;
        let now = rustix::fs::fstat(&fd).map_err(|e| unreadable(&s.abs, e))?;
        if FileType::from_raw_mode(now.st_mode) != FileType::RegularFile
            || (now.st_dev, now.st_ino) != (seen.dev, seen.ino)
        {
            return Err(changed(&s.abs, rustix::io::Errno::STALE));
        }
        Ok(File::from(fd))
    }

    /// `openat2`'s guarantee where the kernel lacks it: every folder on the way opened
    /// relative to the last with `O_NOFOLLOW`, then the file.
    fn open_by_components(&self, rel: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
        let mut parts: Vec<&str> = rel.split('/').collect();
        let last = parts.pop().unwrap_or_default();
        let mut dir: Option<OwnedFd> = None;
        for part in parts {
            let next = rustix::fs::openat(
                dir.as_ref().map_or(self.fd.as_fd(), AsFd::as_fd),
                part,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            dir = Some(next);
        }
        rustix::fs::openat(
            dir.as_ref().map_or(self.fd.as_fd(), AsFd::as_fd),
            last,
            flags,
            Mode::empty(),
        )
    }
}

/// Refuses a source folder at `real` (a path with its links resolved) that is, is inside or
/// holds one of `private` (the server's own data: its tokens, keys and database must never
/// become package content), or that is not inside one of `roots` (when given). Roots and
/// private folders are compared by their own real paths; one that does not exist counts for
/// nothing, so a missing root allows nothing.
pub fn check_place(real: &Path, roots: Option<&[PathBuf]>, private: &[PathBuf]) -> Result<()> {
    for p in private.iter().filter_map(|p| std::fs::canonicalize(p).ok()) {
        if real.starts_with(&p) || p.starts_with(real) {
            return Err(ContentError::SourcePrivate {
                path: real.to_owned(),
                private: p,
            });
        }
    }
    let Some(roots) = roots else {
        return Ok(());
    };
    if roots
        .iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .any(|r| real.starts_with(&r))
    {
        Ok(())
    } else {
        Err(ContentError::SourceNotAllowed {
            path: real.to_owned(),
            roots: roots.to_vec(),
        })
    }
}

/// The extended attributes of `name` in `dir`, the entry itself (a link's own, never its
/// target's), sorted by name: through `/proc/self/fd`, so the folder is the one held open.
/// A file system without them, or without `/proc`, gives none.
fn read_xattrs(dir: &OwnedFd, name: &str, abs: &Path) -> Result<Vec<Xattr>> {
    let at = format!("/proc/self/fd/{}/{name}", dir.as_raw_fd());
    // The size first: most entries have none, and cost one call and no buffer.
    let size = match rustix::fs::llistxattr_query(at.as_str()) {
        Ok(0) | Err(rustix::io::Errno::NOTSUP | rustix::io::Errno::NOENT) => return Ok(Vec::new()),
        Ok(n) => n,
        Err(e) => return Err(unreadable(abs, e)),
    };
    let mut list = vec![0u8; size.min(pkgdist_core::manifest::MAX_XATTR_VALUE)];
    let n = match rustix::fs::llistxattr(at.as_str(), &mut list[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP | rustix::io::Errno::NOENT) => return Ok(Vec::new()),
        // Grew between the two calls: read it again next snapshot, as it is changing.
        Err(rustix::io::Errno::RANGE) => return Err(changed(abs, rustix::io::Errno::RANGE)),
        Err(e) => return Err(unreadable(abs, e)),
    };
    let mut out = Vec::new();
    let mut value = vec![0u8; pkgdist_core::manifest::MAX_XATTR_VALUE];
    for raw in list[..n].split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let Ok(attr) = std::str::from_utf8(raw) else {
            return Err(ContentError::source(abs, "an extended attribute's name is not UTF-8"));
        };
        match rustix::fs::lgetxattr(at.as_str(), attr, &mut value[..]) {
            Ok(len) => out.push(Xattr {
                name: attr.to_owned(),
                value: value[..len].to_vec(),
            }),
            // Listed but not readable by this process (another namespace's rules), or gone.
            Err(rustix::io::Errno::NODATA | rustix::io::Errno::PERM | rustix::io::Errno::ACCESS) => {
                tracing::warn!(path = %abs.display(), attr, "an extended attribute cannot be read: left out");
            }
            Err(e) => return Err(unreadable(abs, e)),
        }
    }
    out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(out)
}

/// What was opened is what was listed.
fn same_object(fd: &OwnedFd, listed: &rustix::fs::Stat, abs: &Path) -> Result<()> {
    let opened = rustix::fs::fstat(fd).map_err(|e| unreadable(abs, e))?;
    if (opened.st_dev, opened.st_ino) == (listed.st_dev, listed.st_ino) {
        Ok(())
    } else {
        Err(changed(abs, rustix::io::Errno::STALE))
    }
}

fn unreadable(path: &Path, e: rustix::io::Errno) -> ContentError {
    ContentError::source(
        path,
        format!("cannot be read ({e}); fix its permissions or remove it from the source"),
    )
}

fn changed(path: &Path, e: rustix::io::Errno) -> ContentError {
    ContentError::source(
        path,
        format!(
            "changed while the snapshot read it (it was replaced, or replaced by a link: {e}); nothing outside the source is read — run the snapshot again once the source is still"
        ),
    )
}
