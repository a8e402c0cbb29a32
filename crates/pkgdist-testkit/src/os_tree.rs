//! An OS tree with every kind of content a package source can hold, for the fidelity tests
//! (`content export`, and site → DP → `pkgdist fetch`), and rsync as the judge of a copy.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Whether this process runs as root: devices, other owners and `trusted.*`/`security.*`
/// attributes are only made then.
pub fn root() -> bool {
    rustix::process::geteuid().is_root()
}

fn xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .map_err(|e| io::Error::other(format!("setting {name} on {}: {e}", path.display())))
}

/// A POSIX ACL as the kernel stores it (`system.posix_acl_access`): user::rw-, user:1000:r--,
/// group::r--, mask::r--, other::---.
fn acl() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 4, 1000),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// `cap_net_bind_service=ep` as `security.capability` holds it (VFS_CAP_REVISION_2).
fn capability() -> Vec<u8> {
    let mut v = 0x0200_0001u32.to_le_bytes().to_vec();
    for word in [1u32 << 10, 0, 0, 0] {
        v.extend_from_slice(&word.to_le_bytes());
    }
    v
}

/// The sparse image's size.
pub const GIB: u64 = 1 << 30;

/// Builds the tree at `src`: folders, a setuid file, names with a space, a newline, a
/// backslash and non-ASCII letters, absolute, relative and chained links, three names of one
/// file, a fifo, an ACL and `user.*` attributes (file and folder), and as root a character
/// and a block device, a file capability, a `trusted.*` attribute and entries of another
/// owner; a 1 GiB image with three data extents; old folder mtimes to the nanosecond.
pub fn build(src: &Path) -> io::Result<()> {
    use std::fs;
    fs::create_dir_all(src.join("etc/alternatives"))?;
    fs::create_dir_all(src.join("usr/bin"))?;
    fs::create_dir_all(src.join("dev"))?;
    fs::write(src.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n")?;
    fs::set_permissions(src.join("usr/bin/tool"), fs::Permissions::from_mode(0o4755))?;
    // Names with a space, a newline, a backslash and non-ASCII letters.
    for name in ["with space", "new\nline", "back\\slash", "ünïcødé ✓"] {
        fs::write(src.join(name), name.as_bytes())?;
    }
    // Links: absolute (pointing outside, as an OS tree's do), relative, and a chain.
    std::os::unix::fs::symlink("/usr/bin/tool", src.join("etc/alternatives/tool"))?;
    std::os::unix::fs::symlink("../usr/bin/tool", src.join("etc/relative"))?;
    std::os::unix::fs::symlink("etc/alternatives/tool", src.join("chain"))?;
    // Hard links: three names of one file.
    fs::write(src.join("usr/bin/busybox"), vec![7u8; 100_000])?;
    fs::hard_link(src.join("usr/bin/busybox"), src.join("usr/bin/sh"))?;
    fs::hard_link(src.join("usr/bin/busybox"), src.join("usr/bin/ls"))?;
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("dev/initctl"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )?;
    xattr(&src.join("with space"), "user.comment", b"kept")?;
    xattr(&src.join("usr/bin"), "user.folder", b"a folder's own")?;
    xattr(&src.join("with space"), "system.posix_acl_access", &acl())?;
    if root() {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("dev/null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )?;
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("dev/loop9"),
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o660),
            rustix::fs::makedev(7, 9),
        )?;
        fs::write(src.join("usr/bin/ping"), b"\x7fELF not really")?;
        xattr(&src.join("usr/bin/ping"), "security.capability", &capability())?;
        xattr(&src.join("usr/bin/ping"), "trusted.note", b"root only")?;
        // Files of another owner and group (chown last: it clears the capability).
        let other = |p: &str| -> io::Result<()> {
            rustix::fs::chownat(
                rustix::fs::CWD,
                src.join(p),
                Some(rustix::fs::Uid::from_raw(1234)),
                Some(rustix::fs::Gid::from_raw(5678)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )?;
            Ok(())
        };
        other("with space")?;
        other("etc/relative")?;
        other("dev")?;
    }
    // 1 GiB with three data extents, the rest holes.
    let f = fs::File::create(src.join("disk.img"))?;
    f.set_len(GIB)?;
    for at in [0, 300 << 20, GIB - (64 << 10)] {
        rustix::io::pwrite(&f, &[0xAB; 64 << 10], at)?;
    }
    // Folder mtimes last, as everything above moved them.
    let old = filetime(1_600_000_000, 123_456_789);
    for d in ["etc", "usr/bin", "dev", ""] {
        rustix::fs::utimensat(rustix::fs::CWD, src.join(d), &old, rustix::fs::AtFlags::empty())?;
    }
    Ok(())
}

fn filetime(secs: i64, nanos: i64) -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    };
    rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// What rsync would change to make `dest` as `src` (mtimes included, `-a`): nothing, for a
/// faithful copy.
pub fn rsync_differences(src: &Path, dest: &Path) -> io::Result<String> {
    let out = Command::new("rsync")
        .args(["-aHAXS", "--numeric-ids", "--dry-run", "--itemize-changes"])
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dest.display()))
        .output()
        .map_err(|e| io::Error::other(format!("rsync (scripts/test-deps installs it): {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "rsync: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    // The folder restored into is not package content (a manifest has no entry for its root):
    // its own mtime, mode and owner are the export's.
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.ends_with(" ./"))
        .map(|l| format!("{l}\n"))
        .collect())
}
