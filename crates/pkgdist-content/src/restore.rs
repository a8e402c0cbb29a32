//! Writing a version's tree into a folder as the manifest describes it: every kind of entry,
//! modes, owners, extended attributes (file capabilities, ACLs), hard links, holes and
//! nanosecond mtimes — as root, all of it; as another user, what it may, and a count of what
//! it could not (`Skipped`).
//!
//! Nothing is ever written through a symlink: the folder is held by descriptor, every entry is
//! made relative to its parent's descriptor, and every folder on the way is opened with
//! `O_NOFOLLOW | O_DIRECTORY`. A name is always made new (`O_EXCL`, `mkdirat`, `symlinkat`,
//! `mknodat`, `linkat` fail on an existing name), so nothing planted earlier is reused.
//!
//! Order matters for fidelity: a file's data first, then its owner (a `chown` clears setuid
//! bits and file capabilities), then its mode, then its extended attributes (an ACL sets
//! the group bits of the mode it was read with), then its mtime. Folders get theirs last,
//! deepest first, since filling a folder moves its mtime and a read-only folder cannot be
//! filled.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use pkgdist_core::{Entry, EntryKind, FileData, Hole, Manifest, Timestamp, Xattr};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use serde::Serialize;

use crate::error::{ContentError, Result};
use crate::library::Library;

/// What a restore could not do as the user it ran as (it needs root), by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Entries left owned by the restoring user rather than the recorded owner.
    pub owners: u64,
    /// Device nodes not made.
    pub devices: u64,
    /// Extended attributes not set (`trusted.*`, `security.*`, or `user.*` on a link).
    pub xattrs: u64,
}

impl Skipped {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What a restore wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Restored {
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub hard_links: u64,
    /// Device nodes and fifos made.
    pub specials: u64,
    pub bytes: u64,
    pub skipped: Skipped,
}

/// Writes every entry of `manifest` under `root` (an empty folder the caller made, held by
/// descriptor), reading file data from `lib` and checking each file against its hash.
pub(crate) fn write_tree(lib: &Library, manifest: &Manifest, root: &OwnedFd, root_path: &Path) -> Result<Restored> {
    let mut w = Writer {
        lib,
        root,
        root_path,
        privileged: rustix::process::geteuid().is_root(),
        parent: None,
        done: Restored::default(),
    };
    for e in manifest.entries() {
        w.entry(e)?;
    }
    for e in manifest.entries().iter().rev() {
        if matches!(e.kind, EntryKind::Directory) {
            let fd = w.open_dir(e.path.as_str())?;
            w.finish(e, Target::Fd(&fd))?;
        }
    }
    Ok(w.done)
}

struct Writer<'a> {
    lib: &'a Library,
    root: &'a OwnedFd,
    root_path: &'a Path,
    /// Whether this process may set any owner and make devices.
    privileged: bool,
    /// The folder the last entry was made in, still open: entries come in path order, so
    /// most share it.
    parent: Option<(String, OwnedFd)>,
    done: Restored,
}

/// Where an entry's metadata is set: its open descriptor, or its name in an open folder
/// (links, devices and fifos, which are not opened).
enum Target<'f> {
    Fd(&'f OwnedFd),
    At(&'f OwnedFd, &'f str),
}

/// An I/O failure on `rel` under the folder at `root`.
fn fail(root: &Path, rel: &str, e: impl Into<io::Error>) -> ContentError {
    ContentError::io(root.join(rel).display(), e.into())
}

impl Writer<'_> {
    fn err(&self, rel: &str, e: impl Into<io::Error>) -> ContentError {
        fail(self.root_path, rel, e)
    }

    /// Opens folder `rel` (`""`: the root) component by component, through no symlink.
    fn open_dir(&self, rel: &str) -> Result<OwnedFd> {
        let mut fd = rustix::io::dup(self.root).map_err(|e| self.err(rel, e))?;
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            fd = rustix::fs::openat(
                &fd,
                part,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.err(rel, e))?;
        }
        Ok(fd)
    }

    /// The open parent folder of `rel`, and `rel`'s last component.
    fn parent_of<'p>(&mut self, rel: &'p str) -> Result<(&OwnedFd, &'p str)> {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        if self.parent.as_ref().is_none_or(|(d, _)| d != dir) {
            let fd = self.open_dir(dir)?;
            self.parent = Some((dir.to_owned(), fd));
        }
        match &self.parent {
            Some((_, fd)) => Ok((fd, name)),
            None => Err(self.err(rel, io::Error::other("the parent folder is not open"))),
        }
    }

    fn entry(&mut self, e: &Entry) -> Result<()> {
        let rel = e.path.as_str();
        let privileged = self.privileged;
        let root = self.root_path;
        match &e.kind {
            EntryKind::Directory => {
                let (dir, name) = self.parent_of(rel)?;
                rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)).map_err(|err| fail(root, rel, err))?;
                self.done.directories += 1;
            }
            EntryKind::File(f) => {
                let (dir, name) = self.parent_of(rel)?;
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|err| fail(root, rel, err))?;
                self.write_data(&fd, f, rel)?;
                self.finish(e, Target::Fd(&fd))?;
                self.done.files += 1;
                self.done.bytes += f.size;
            }
            EntryKind::Symlink { target } => {
                let (dir, name) = self.parent_of(rel)?;
                rustix::fs::symlinkat(target.as_str(), dir, name).map_err(|err| fail(root, rel, err))?;
                self.finish_at(e, rel)?;
                self.done.symlinks += 1;
            }
            EntryKind::HardLink { target } => {
                // Another name of a file made earlier (`Manifest` checks it is one).
                let t = target.as_str();
                let (tdir, tname) = t.rsplit_once('/').unwrap_or(("", t));
                let from = self.open_dir(tdir)?;
                let (dir, name) = self.parent_of(rel)?;
                rustix::fs::linkat(&from, tname, dir, name, AtFlags::empty()).map_err(|err| fail(root, rel, err))?;
                self.done.hard_links += 1;
            }
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                if !privileged {
                    self.done.skipped.devices += 1;
                    return Ok(());
                }
                let kind = if matches!(e.kind, EntryKind::BlockDevice { .. }) {
                    FileType::BlockDevice
                } else {
                    FileType::CharacterDevice
                };
                let (dir, name) = self.parent_of(rel)?;
                rustix::fs::mknodat(
                    dir,
                    name,
                    kind,
                    Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(*major, *minor),
                )
                .map_err(|err| fail(root, rel, err))?;
                self.finish_at(e, rel)?;
                self.done.specials += 1;
            }
            EntryKind::Fifo => {
                let (dir, name) = self.parent_of(rel)?;
                rustix::fs::mknodat(dir, name, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                    .map_err(|err| fail(root, rel, err))?;
                self.finish_at(e, rel)?;
                self.done.specials += 1;
            }
        }
        Ok(())
    }

    /// [`Writer::finish`] of an entry made by name in its parent folder.
    fn finish_at(&mut self, e: &Entry, rel: &str) -> Result<()> {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let fd = match &self.parent {
            Some((d, fd)) if d == dir => rustix::io::dup(fd).map_err(|err| self.err(rel, err))?,
            _ => self.open_dir(dir)?,
        };
        self.finish(e, Target::At(&fd, name))
    }

    /// Owner, mode, extended attributes and mtime, in that order (see the module
    /// documentation).
    fn finish(&mut self, e: &Entry, at: Target<'_>) -> Result<()> {
        let rel = e.path.as_str();
        let is_link = matches!(e.kind, EntryKind::Symlink { .. });
        // Owner: root sets any; another user only its own groups, and cannot give a file away.
        if e.uid != u32::MAX && e.gid != u32::MAX {
            let (uid, gid) = (
                Some(rustix::fs::Uid::from_raw(e.uid)),
                Some(rustix::fs::Gid::from_raw(e.gid)),
            );
            let owned = match at {
                Target::Fd(fd) => rustix::fs::fchown(fd, uid, gid),
                Target::At(dir, name) => rustix::fs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
            };
            match owned {
                Ok(()) => {}
                Err(Errno::PERM) if !self.privileged => self.done.skipped.owners += 1,
                Err(err) => return Err(self.err(rel, err)),
            }
        }
        // Mode: a link has none of its own.
        if !is_link {
            let mask = if self.privileged { 0o7777 } else { 0o777 };
            let mode = Mode::from_raw_mode(e.mode & mask);
            match at {
                Target::Fd(fd) => rustix::fs::fchmod(fd, mode),
                Target::At(dir, name) => rustix::fs::chmodat(dir, name, mode, AtFlags::empty()),
            }
            .map_err(|err| self.err(rel, err))?;
        }
        for x in &e.xattrs {
            match set_xattr(&at, x) {
                Ok(()) => {}
                Err(Errno::PERM | Errno::ACCESS | Errno::NOTSUP) if !self.privileged || is_link => {
                    self.done.skipped.xattrs += 1;
                }
                Err(err) => return Err(self.err(&format!("{rel} (attribute {})", x.name), err)),
            }
        }
        let times = Timestamps {
            last_access: timespec(e.mtime),
            last_modification: timespec(e.mtime),
        };
        match at {
            Target::Fd(fd) => rustix::fs::futimens(fd, &times),
            Target::At(dir, name) => rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW),
        }
        .map_err(|err| self.err(rel, err))
    }

    /// Writes a file's data, verified against its hash, leaving its holes unwritten (a range
    /// the manifest calls a hole is skipped only if it really is zeros: the data wins).
    fn write_data(&self, fd: &OwnedFd, f: &FileData, rel: &str) -> Result<()> {
        let mut reader = self.lib.reader_for(f, 0..f.size);
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return Err(crate::read::read_error(rel, e)),
            };
            let block = &buf[..n];
            hasher.update(block);
            for (start, end) in data_ranges(&f.holes, at, block) {
                write_all_at(fd, &block[start..end], at + start as u64).map_err(|err| self.err(rel, err))?;
            }
            at += n as u64;
        }
        // The length, holes at the end included.
        rustix::fs::ftruncate(fd, f.size).map_err(|err| self.err(rel, err))?;
        if pkgdist_core::Digest::from(hasher.finalize()) != f.hash {
            return Err(ContentError::Damaged {
                what: format!("file {rel}"),
                reason: "its bytes do not match the file hash in the manifest".into(),
            });
        }
        Ok(())
    }
}

/// The ranges of `block` (at file offset `at`) to write: all of it but the parts inside a
/// hole that are zeros.
fn data_ranges(holes: &[Hole], at: u64, block: &[u8]) -> Vec<(usize, usize)> {
    let end = at + block.len() as u64;
    let mut out = Vec::new();
    let mut from = 0usize;
    for h in holes.iter().filter(|h| h.offset < end && h.offset + h.len > at) {
        let hs = usize::try_from(h.offset.saturating_sub(at))
            .unwrap_or(usize::MAX)
            .min(block.len());
        let he = usize::try_from((h.offset + h.len).min(end) - at).unwrap_or(block.len());
        if hs >= he || block[hs..he].iter().any(|b| *b != 0) {
            continue;
        }
        if hs > from {
            out.push((from, hs));
        }
        from = he;
    }
    if from < block.len() {
        out.push((from, block.len()));
    }
    out
}

fn write_all_at(fd: &OwnedFd, mut buf: &[u8], mut at: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let n = rustix::io::pwrite(fd, buf, at)?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        buf = &buf[n..];
        at += n as u64;
    }
    Ok(())
}

/// Sets one extended attribute: on the open file, or on the entry itself (never a link's
/// target) through `/proc/self/fd`, so the folder is the one held open.
fn set_xattr(at: &Target<'_>, x: &Xattr) -> rustix::io::Result<()> {
    match at {
        Target::Fd(fd) => rustix::fs::fsetxattr(fd, x.name.as_str(), &x.value, XattrFlags::empty()),
        Target::At(dir, name) => {
            let path = format!("/proc/self/fd/{}/{name}", dir.as_fd().as_raw_fd());
            rustix::fs::lsetxattr(path.as_str(), x.name.as_str(), &x.value, XattrFlags::empty())
        }
    }
}

fn timespec(t: Timestamp) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: i64::from(t.nanos),
    }
}
