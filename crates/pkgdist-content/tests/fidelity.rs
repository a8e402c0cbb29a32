//! An OS tree's every kind of content survives a snapshot and an export: `rsync -aHAXS
//! --numeric-ids --dry-run --itemize-changes` from the source to the export lists nothing, and
//! a 1 GiB sparse file stays sparse. As root (CI runs as root) owners, devices and every
//! attribute namespace are checked; as another user, what it may.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;

use pkgdist_content::{Library, SnapshotOptions};
use pkgdist_core::ContentId;
use pkgdist_testkit::os_tree::{build, root, rsync_differences};

#[test]
fn an_os_tree_comes_back_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    build(&src).unwrap();
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
    let diff = rsync_differences(&src, &out).unwrap();
    assert!(diff.trim().is_empty(), "rsync would change:\n{diff}");
    // The image stays sparse: three 64 KiB extents, not a gibibyte.
    let blocks = std::fs::metadata(out.join("disk.img")).unwrap().blocks() * 512;
    assert!(blocks < 8 << 20, "disk.img takes {blocks} bytes on disk");
    // The folder's own mtime, to the nanosecond (rsync compares seconds).
    let md = std::fs::metadata(out.join("usr/bin")).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_600_000_000, 123_456_789));
}
