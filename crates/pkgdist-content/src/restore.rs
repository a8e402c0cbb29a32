//! Writing a version's tree into a folder as the manifest describes it: every kind of entry,
//! modes, owners, extended attributes (file capabilities, ACLs), hard links, holes and
//! nanosecond mtimes — as root, all of it; as another user, what it may, and a count of what
//! it could not (`Skipped`). `content export` writes a new tree with it ([`write_tree`]);
//! `pkgdist fetch` brings an existing one up to date with the same [`Tree`].
//!
//! Nothing is ever written through a symlink: the folder is held by descriptor, every entry is
//! made relative to its parent's descriptor, and every folder on the way is opened with
//! `O_NOFOLLOW | O_DIRECTORY` (a link where the package has a folder is [`ContentError::InTheWay`],
//! never followed). Names are made new (`O_EXCL`, `mkdirat`, `symlinkat`, `mknodat`,
//! `linkat` fail on an existing name); an entry of the wrong kind in an existing tree is
//! removed first (`unlinkat`, which removes the link itself, not its target).
//!
//! Order matters for fidelity: a file's data first, then its owner (a `chown` clears setuid
//! bits and file capabilities), then its mode, then its extended attributes (an ACL sets
//! the group bits of the mode it was read with), then its mtime. Folders get theirs last,
//! deepest first, since filling a folder moves its mtime and a read-only folder cannot be
//! filled.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

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

/// Writes every entry of `manifest` under `root` (an empty folder the caller made), reading
/// file data from `lib` and checking each file against its hash.
pub(crate) fn write_tree(lib: &Library, manifest: &Manifest, root: &Path) -> Result<Restored> {
    let mut tree = Tree::open(root)?.for_manifest(manifest);
    for e in manifest.entries() {
        match &e.kind {
            EntryKind::File(f) => {
                let rel = e.path.as_str();
                let (dir, name) = tree.parent_of(rel)?;
                let fd = create_file(dir, name).map_err(|err| fail(root, rel, err))?;
                write_data(lib, &fd, f, rel).map_err(|err| match err {
                    WriteError::Io(io) => fail(root, rel, io),
                    WriteError::Content(c) => c,
                })?;
                tree.finish_fd(e, &fd)?;
                tree.done.files += 1;
                tree.done.bytes += f.size;
            }
            _ => {
                tree.make(e)?;
                if !matches!(e.kind, EntryKind::Directory) {
                    tree.finish(e)?;
                }
            }
        }
    }
    tree.finish_dirs(manifest)?;
    Ok(tree.done)
}

/// A file made new in `dir`, private until its mode is set.
pub fn create_file(dir: &OwnedFd, name: &str) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
}

/// An I/O failure on `rel` under the folder at `root`.
fn fail(root: &Path, rel: &str, e: impl Into<io::Error>) -> ContentError {
    ContentError::io(root.join(rel).display(), e.into())
}

/// A folder a manifest's tree is written into, held by descriptor.
#[derive(Debug)]
pub struct Tree {
    root: OwnedFd,
    root_path: PathBuf,
    /// Whether this process may set any owner and make devices.
    privileged: bool,
    /// Whether entries carry their owner (format 2); format 1 recorded none, so none is set.
    owners: bool,
    /// The folder the last entry was made in, still open: entries come in path order, so
    /// most share it.
    parent: Option<(String, OwnedFd)>,
    pub done: Restored,
}

/// Where an entry's metadata is set: its open descriptor, or its name in an open folder
/// (links, devices and fifos, which are not opened).
enum Target<'f> {
    Fd(&'f OwnedFd),
    At(&'f OwnedFd, &'f str),
}

impl Tree {
    /// Holds the folder at `root` (following its own path, as the caller gave it).
    pub fn open(root: &Path) -> Result<Self> {
        let fd = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ContentError::io(root.display(), e.into()))?;
        Ok(Self {
            root: fd,
            root_path: root.to_owned(),
            privileged: rustix::process::geteuid().is_root(),
            owners: true,
            parent: None,
            done: Restored::default(),
        })
    }

    pub fn root(&self) -> &OwnedFd {
        &self.root
    }

    /// Sets owners only if `manifest` records them (format 2).
    pub fn for_manifest(mut self, manifest: &Manifest) -> Self {
        self.owners = manifest.format() == pkgdist_core::Format::V2;
        self
    }

    fn err(&self, rel: &str, e: impl Into<io::Error>) -> ContentError {
        fail(&self.root_path, rel, e)
    }

    /// Opens folder `rel` (`""`: the root) component by component, through no symlink,
    /// making the ones that are missing (0700 until finished).
    pub fn open_dir(&self, rel: &str) -> Result<OwnedFd> {
        let mut fd = rustix::io::dup(&self.root).map_err(|e| self.err(rel, e))?;
        let mut at = String::new();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let next = match rustix::fs::openat(&fd, part, flags, Mode::empty()) {
                Err(Errno::NOENT) => {
                    rustix::fs::mkdirat(&fd, part, Mode::from_raw_mode(0o700)).map_err(|e| self.err(&at, e))?;
                    rustix::fs::openat(&fd, part, flags, Mode::empty())
                }
                other => other,
            };
            fd = next.map_err(|e| match e {
                Errno::NOTDIR | Errno::LOOP => ContentError::InTheWay(self.root_path.join(&at)),
                e => self.err(&at, e),
            })?;
            self.lock_down(&fd, &at)?;
        }
        Ok(fd)
    }

    /// As root, a folder found in the destination owned by someone else, or writable by
    /// others, becomes root's and 0700 until it is finished (`finish_dirs` gives it the
    /// manifest's owner and mode): nobody can move or swap what is inside it while root
    /// writes there and sets owners and modes.
    fn lock_down(&self, fd: &OwnedFd, rel: &str) -> Result<()> {
        if !self.privileged {
            return Ok(());
        }
        let st = rustix::fs::fstat(fd).map_err(|e| self.err(rel, e))?;
        if st.st_uid != 0 || st.st_mode & 0o077 != 0 {
            rustix::fs::fchown(fd, Some(rustix::fs::Uid::ROOT), Some(rustix::fs::Gid::ROOT))
                .map_err(|e| self.err(rel, e))?;
            rustix::fs::fchmod(fd, Mode::from_raw_mode(0o700)).map_err(|e| self.err(rel, e))?;
        }
        Ok(())
    }

    /// An existing regular file that may be kept as it is: opened through no link and without
    /// blocking, it is a regular file with as many names as the manifest gives it (`names`:
    /// itself and its hard links), and as root already of the recorded owner, so nobody else
    /// holds it open for writing or reaches it from outside the tree. `None`: write it afresh.
    pub fn keepable(&mut self, e: &Entry, names: u64) -> Result<Option<OwnedFd>> {
        let rel = e.path.as_str();
        let (privileged, owners) = (self.privileged, self.owners);
        let (dir, name) = self.parent_of(rel)?;
        let Ok(fd) = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return Ok(None);
        };
        let Ok(st) = rustix::fs::fstat(&fd) else {
            return Ok(None);
        };
        let regular = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile;
        let owned = !privileged || !owners || (st.st_uid, st.st_gid) == (e.uid, e.gid);
        Ok((regular && st.st_nlink == names && owned).then_some(fd))
    }

    /// The open parent folder of `rel`, and `rel`'s last component.
    pub fn parent_of<'p>(&mut self, rel: &'p str) -> Result<(&OwnedFd, &'p str)> {
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

    /// Makes an entry that is not a regular file: a folder, link, hard link, device or fifo.
    /// One already there and the same is kept; anything else of that name goes first.
    pub fn make(&mut self, e: &Entry) -> Result<()> {
        let rel = e.path.as_str();
        let root = self.root_path.clone();
        let privileged = self.privileged;
        if matches!(e.kind, EntryKind::Directory) {
            self.open_dir(rel)?;
            self.done.directories += 1;
            return Ok(());
        }
        if let EntryKind::HardLink { target } = &e.kind {
            // Another name of a file made earlier (`Manifest` checks it is one).
            let t = target.as_str();
            let (tdir, tname) = t.rsplit_once('/').unwrap_or(("", t));
            let from = self.open_dir(tdir)?;
            let want =
                rustix::fs::statat(&from, tname, AtFlags::SYMLINK_NOFOLLOW).map_err(|err| fail(&root, t, err))?;
            let (dir, name) = self.parent_of(rel)?;
            match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino) => {}
                found => {
                    if found.is_ok() {
                        remove(dir, name).map_err(|err| fail(&root, rel, err))?;
                    }
                    rustix::fs::linkat(&from, tname, dir, name, AtFlags::empty())
                        .map_err(|err| fail(&root, rel, err))?;
                }
            }
            self.done.hard_links += 1;
            return Ok(());
        }
        if matches!(e.kind, EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. }) && !privileged {
            self.done.skipped.devices += 1;
            return Ok(());
        }
        let (dir, name) = self.parent_of(rel)?;
        let existing = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok();
        let same = match (&e.kind, &existing) {
            (EntryKind::Symlink { target }, Some(st)) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                rustix::fs::readlinkat(dir, name, Vec::new()).is_ok_and(|t| t.as_bytes() == target.as_bytes())
            }
            (EntryKind::CharDevice { major, minor }, Some(st)) => {
                FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice
                    && st.st_rdev == rustix::fs::makedev(*major, *minor)
            }
            (EntryKind::BlockDevice { major, minor }, Some(st)) => {
                FileType::from_raw_mode(st.st_mode) == FileType::BlockDevice
                    && st.st_rdev == rustix::fs::makedev(*major, *minor)
            }
            (EntryKind::Fifo, Some(st)) => FileType::from_raw_mode(st.st_mode) == FileType::Fifo,
            _ => false,
        };
        if !same {
            if existing.is_some() {
                remove(dir, name).map_err(|err| fail(&root, rel, err))?;
            }
            let made = match &e.kind {
                EntryKind::Symlink { target } => rustix::fs::symlinkat(target.as_str(), dir, name),
                EntryKind::CharDevice { major, minor } => node(dir, name, FileType::CharacterDevice, *major, *minor),
                EntryKind::BlockDevice { major, minor } => node(dir, name, FileType::BlockDevice, *major, *minor),
                _ => node(dir, name, FileType::Fifo, 0, 0),
            };
            match made {
                Ok(()) => {}
                // Root without CAP_MKNOD (a container): counted, as for another user.
                Err(Errno::PERM) if matches!(e.kind, EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. }) => {
                    self.done.skipped.devices += 1;
                    return Ok(());
                }
                Err(err) => return Err(fail(&root, rel, err)),
            }
        }
        match e.kind {
            EntryKind::Symlink { .. } => self.done.symlinks += 1,
            _ => self.done.specials += 1,
        }
        Ok(())
    }

    /// Owner, mode, attributes and mtime of an entry that is not a folder (folders:
    /// [`Tree::finish_dirs`]), found again by name, through no link.
    pub fn finish(&mut self, e: &Entry) -> Result<()> {
        let rel = e.path.as_str();
        match &e.kind {
            // A hard link is its file's other name: the file has them.
            EntryKind::HardLink { .. } | EntryKind::Directory => Ok(()),
            // A device not made (counted in `skipped`): nothing to finish.
            EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. }
                if !self.privileged || !self.exists(rel)? =>
            {
                Ok(())
            }
            EntryKind::File(_) => {
                let (dir, name) = self.parent_of(rel)?;
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|err| fail(&self.root_path, rel, err))?;
                self.finish_fd(e, &fd)
            }
            _ => {
                let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
                let fd = self.open_dir(dir)?;
                self.apply(e, Target::At(&fd, name))
            }
        }
    }

    /// Whether `rel` exists (as itself: a link is not followed).
    fn exists(&self, rel: &str) -> Result<bool> {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let fd = self.open_dir(dir)?;
        match rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// [`Tree::finish`] of a file held open.
    pub fn finish_fd(&mut self, e: &Entry, fd: &OwnedFd) -> Result<()> {
        self.apply(e, Target::Fd(fd))
    }

    /// Every folder's owner, mode, attributes and mtime, deepest first.
    pub fn finish_dirs(&mut self, manifest: &Manifest) -> Result<()> {
        for e in manifest.entries().iter().rev() {
            if matches!(e.kind, EntryKind::Directory) {
                let fd = self.open_dir(e.path.as_str())?;
                self.apply(e, Target::Fd(&fd))?;
            }
        }
        Ok(())
    }

    /// Owner, mode, extended attributes and mtime, in that order (see the module
    /// documentation).
    fn apply(&mut self, e: &Entry, at: Target<'_>) -> Result<()> {
        let rel = e.path.as_str();
        let is_link = matches!(e.kind, EntryKind::Symlink { .. });
        // Owner: root sets any; another user only its own groups, and cannot give a file away.
        if self.owners && e.uid != u32::MAX && e.gid != u32::MAX {
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
                // Not this user's to give; or, as root, an id outside this user namespace
                // (EINVAL) or a container without CAP_CHOWN.
                Err(Errno::PERM | Errno::INVAL) => self.done.skipped.owners += 1,
                Err(err) => return Err(self.err(rel, err)),
            }
        }
        // Mode: a link has none of its own. Setuid and setgid bits only as root, and only
        // with the owner they were recorded with.
        if !is_link {
            let owned = self.owners && e.uid != u32::MAX && e.gid != u32::MAX;
            let mask = if self.privileged && owned { 0o7777 } else { 0o1777 };
            let mode = Mode::from_raw_mode(e.mode & mask);
            match at {
                Target::Fd(fd) => rustix::fs::fchmod(fd, mode),
                Target::At(dir, name) => chmod_itself(dir, name, mode),
            }
            .map_err(|err| self.err(rel, err))?;
        }
        for x in &e.xattrs {
            match set_xattr(&at, x) {
                Ok(()) => {}
                // Not allowed to this user, on a link, or not supported by the file system.
                Err(Errno::PERM | Errno::ACCESS) if !self.privileged || is_link => {
                    self.done.skipped.xattrs += 1;
                }
                Err(Errno::NOTSUP) => self.done.skipped.xattrs += 1,
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
}

/// `chmod` of the entry `name` itself, never a link's target: `chmodat` has no no-follow flag
/// on Linux, so the entry is held by an `O_PATH | O_NOFOLLOW` descriptor and changed through
/// `/proc/self/fd` (a link found there is refused, not followed).
fn chmod_itself(dir: &OwnedFd, name: &str, mode: Mode) -> rustix::io::Result<()> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) == FileType::Symlink {
        return Err(Errno::LOOP);
    }
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::chmodat(rustix::fs::CWD, path.as_str(), mode, AtFlags::empty())
}

/// Removes `name` from `dir`, whatever it is but a folder (a link itself, never its target).
fn remove(dir: &OwnedFd, name: &str) -> rustix::io::Result<()> {
    rustix::fs::unlinkat(dir, name, AtFlags::empty())
}

fn node(dir: &OwnedFd, name: &str, kind: FileType, major: u32, minor: u32) -> rustix::io::Result<()> {
    rustix::fs::mknodat(
        dir,
        name,
        kind,
        Mode::from_raw_mode(0o600),
        rustix::fs::makedev(major, minor),
    )
}

/// Writes a file's data into `fd` (a new, empty regular file), verified against the file's
/// hash as it goes, holes left unwritten: what a DP's cache of served files is filled with.
/// The file may hold bytes when this fails; the caller removes it.
pub fn write_verified(lib: &Library, fd: &OwnedFd, f: &FileData) -> Result<()> {
    write_data(lib, fd, f, "(served copy)").map_err(|e| match e {
        WriteError::Io(e) => ContentError::io("a served copy", e),
        WriteError::Content(e) => e,
    })
}

/// Why a file's data could not be written.
enum WriteError {
    Io(io::Error),
    Content(ContentError),
}

/// Writes a file's data, verified against its hash, leaving its holes unwritten (a range
/// the manifest calls a hole is skipped only if it really is zeros: the data wins).
fn write_data(lib: &Library, fd: &OwnedFd, f: &FileData, rel: &str) -> std::result::Result<(), WriteError> {
    let mut reader = lib.reader_for(f, 0..f.size);
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(WriteError::Content(crate::read::read_error(rel, e))),
        };
        let block = &buf[..n];
        hasher.update(block);
        for (start, end) in data_ranges(&f.holes, at, block) {
            write_all_at(fd, &block[start..end], at + start as u64).map_err(WriteError::Io)?;
        }
        at += n as u64;
    }
    // The length, holes at the end included.
    rustix::fs::ftruncate(fd, f.size).map_err(|e| WriteError::Io(e.into()))?;
    if pkgdist_core::Digest::from(hasher.finalize()) != f.hash {
        return Err(WriteError::Content(ContentError::Damaged {
            what: format!("file {rel}"),
            reason: "its bytes do not match the file hash in the manifest".into(),
        }));
    }
    Ok(())
}

/// The ranges of `block` (at file offset `at`) to write: all of it but the parts inside a
/// hole that are zeros.
pub fn data_ranges(holes: &[Hole], at: u64, block: &[u8]) -> Vec<(usize, usize)> {
    let end = at + block.len() as u64;
    let mut out = Vec::new();
    let mut from = 0usize;
    // Holes are sorted and apart: start at the first that ends after `at`, stop past `end`.
    let first = holes.partition_point(|h| h.offset + h.len <= at);
    for h in holes[first..].iter().take_while(|h| h.offset < end) {
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

/// Writes all of `buf` at offset `at`.
pub fn write_all_at(fd: &OwnedFd, mut buf: &[u8], mut at: u64) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_of_zeros_are_skipped_and_data_wins() {
        let holes = [Hole { offset: 10, len: 10 }, Hole { offset: 30, len: 100 }];
        let mut block = vec![1u8; 40];
        block[10..20].fill(0);
        block[30..40].fill(0);
        assert_eq!(data_ranges(&holes, 0, &block), [(0, 10), (20, 30)]);
        // A "hole" that holds data is written.
        block[12] = 9;
        assert_eq!(data_ranges(&holes, 0, &block), [(0, 30)]);
        // A block inside a hole, all zeros: nothing to write.
        assert!(data_ranges(&holes, 50, &[0u8; 20]).is_empty());
        assert_eq!(data_ranges(&[], 0, &[5u8; 3]), [(0, 3)]);
    }
}
