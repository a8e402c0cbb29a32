//! An OS tree's every kind of content survives a snapshot and an export: `rsync -aHAXS
//! --numeric-ids --dry-run --itemize-changes` from the source to the export lists nothing, and
//! a 1 GiB sparse file stays sparse. As root (CI runs as root) owners, devices and every
//! attribute namespace are checked; as another user, what it may.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use pkgdist_content::{Library, SnapshotOptions};
use pkgdist_core::ContentId;

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

fn xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setting {name} on {}: {e}", path.display()));
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

const GIB: u64 = 1 << 30;

fn build(src: &Path) {
    use std::fs;
    fs::create_dir_all(src.join("etc/alternatives")).unwrap();
    fs::create_dir_all(src.join("usr/bin")).unwrap();
    fs::create_dir_all(src.join("dev")).unwrap();
    fs::write(src.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(src.join("usr/bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    // Names with a space, a newline, a backslash and non-ASCII letters.
    for name in ["with space", "new\nline", "back\\slash", "ünïcødé ✓"] {
        fs::write(src.join(name), name.as_bytes()).unwrap();
    }
    // Links: absolute (pointing outside, as an OS tree's do), relative, and a chain.
    std::os::unix::fs::symlink("/usr/bin/tool", src.join("etc/alternatives/tool")).unwrap();
    std::os::unix::fs::symlink("../usr/bin/tool", src.join("etc/relative")).unwrap();
    std::os::unix::fs::symlink("etc/alternatives/tool", src.join("chain")).unwrap();
    // Hard links: three names of one file.
    fs::write(src.join("usr/bin/busybox"), vec![7u8; 100_000]).unwrap();
    fs::hard_link(src.join("usr/bin/busybox"), src.join("usr/bin/sh")).unwrap();
    fs::hard_link(src.join("usr/bin/busybox"), src.join("usr/bin/ls")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("dev/initctl"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    xattr(&src.join("with space"), "user.comment", b"kept");
    xattr(&src.join("usr/bin"), "user.folder", b"a folder's own");
    xattr(&src.join("with space"), "system.posix_acl_access", &acl());
    if root() {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("dev/null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("dev/loop9"),
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o660),
            rustix::fs::makedev(7, 9),
        )
        .unwrap();
        fs::write(src.join("usr/bin/ping"), b"\x7fELF not really").unwrap();
        xattr(&src.join("usr/bin/ping"), "security.capability", &capability());
        xattr(&src.join("usr/bin/ping"), "trusted.note", b"root only");
        // Files of another owner and group (chown last: it clears the capability).
        let other = |p: &str| {
            rustix::fs::chownat(
                rustix::fs::CWD,
                src.join(p),
                Some(rustix::fs::Uid::from_raw(1234)),
                Some(rustix::fs::Gid::from_raw(5678)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
        };
        other("with space");
        other("etc/relative");
        other("dev");
    }
    // 1 GiB with three data extents, the rest holes.
    let f = fs::File::create(src.join("disk.img")).unwrap();
    f.set_len(GIB).unwrap();
    for at in [0, 300 << 20, GIB - (64 << 10)] {
        rustix::io::pwrite(&f, &[0xAB; 64 << 10], at).unwrap();
    }
    // Folder mtimes last, as everything above moved them.
    let old = filetime(1_600_000_000, 123_456_789);
    for d in ["etc", "usr/bin", "dev", ""] {
        rustix::fs::utimensat(rustix::fs::CWD, src.join(d), &old, rustix::fs::AtFlags::empty()).unwrap();
    }
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
fn rsync_differences(src: &Path, dest: &Path) -> String {
    let out = Command::new("rsync")
        .args(["-aHAXS", "--numeric-ids", "--dry-run", "--itemize-changes"])
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dest.display()))
        .output()
        .expect("rsync (scripts/test-deps installs it)");
    assert!(out.status.success(), "rsync: {}", String::from_utf8_lossy(&out.stderr));
    // The folder restored into is not package content (a manifest has no entry for its root):
    // its own mtime, mode and owner are the export's.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.ends_with(" ./"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn an_os_tree_comes_back_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    build(&src);
    let lib = Library::create_local(&dir.path().join("lib")).unwrap();
    let content: ContentId = "PS100001.1".parse().unwrap();
    let outcome = lib.snapshot(&src, content, &SnapshotOptions::default()).unwrap();
    assert_eq!(outcome.stats.hard_links, 2, "{:?}", outcome.stats);
    let m = lib.manifest(content).unwrap();
    let img = m.entry("disk.img").unwrap().file().unwrap();
    assert_eq!(
        img.holes.len(),
        2,
        "three data extents, two holes between: {:?}",
        img.holes
    );
    assert!(
        lib.stored_size().unwrap().bytes < 16 << 20,
        "the holes are stored as one chunk of zeros"
    );

    let out = dir.path().join("out");
    let stats = lib.export(content, &out).unwrap();
    assert_eq!(stats.hard_links, 2);
    if root() {
        assert!(stats.skipped.is_empty(), "{:?}", stats.skipped);
    }
    let diff = rsync_differences(&src, &out);
    assert!(diff.trim().is_empty(), "rsync would change:\n{diff}");
    // The image stays sparse: three 64 KiB extents, not a gibibyte.
    let blocks = std::fs::metadata(out.join("disk.img")).unwrap().blocks() * 512;
    assert!(blocks < 8 << 20, "disk.img takes {blocks} bytes on disk");
    // The folder's own mtime, to the nanosecond (rsync compares seconds).
    let md = std::fs::metadata(out.join("usr/bin")).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_600_000_000, 123_456_789));
}
