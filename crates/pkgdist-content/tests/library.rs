//! The content library's behaviour, run against every store: the in-memory one and the local
//! disk. Sources are real folders on disk in both cases.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pkgdist_content::verify::{Fault, ObjectKind};
use pkgdist_content::{ContentError, Kind, Library, LocalStore, MemoryStore, SnapshotOptions, Store};
use pkgdist_core::{ContentId, Digest};
use pkgdist_testkit::generate::Rng;
use tempfile::TempDir;

fn cid(s: &str) -> ContentId {
    s.parse().unwrap()
}

/// Runs `test` once per store kind.
fn each_store(test: impl Fn(&Library, &Path)) {
    // The racy margin is zero here so that freshly written test files get stamps at once;
    // `fresh_files_are_not_trusted_within_the_racy_margin` covers the default.
    let mem = TempDir::new().unwrap();
    test(
        &Library::new(Arc::new(MemoryStore::new())).with_racy_margin(Duration::ZERO),
        mem.path(),
    );
    let disk = TempDir::new().unwrap();
    let lib = Library::create_local(&disk.path().join("library"))
        .unwrap()
        .with_racy_margin(Duration::ZERO);
    test(&lib, disk.path());
}

/// A source tree with a large file, small files, an empty file, an empty folder and a link.
/// Every mtime is set well in the past so the quick check trusts them.
fn make_source(root: &Path, seed: u64) {
    let mut rng = Rng::new(seed);
    fs::create_dir_all(root.join("drivers/x64")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("image.wim"), rng.bytes(3 << 20)).unwrap();
    for i in 0..20 {
        fs::write(root.join(format!("drivers/x64/f{i}.inf")), rng.bytes((i * 997) % 9000)).unwrap();
    }
    fs::write(root.join("readme.txt"), b"").unwrap();
    std::os::unix::fs::symlink("drivers/x64/f1.inf", root.join("link.inf")).unwrap();
    fs::set_permissions(root.join("drivers/x64/f3.inf"), fs::Permissions::from_mode(0o755)).unwrap();
    age(root);
}

/// Sets every file's mtime to one fixed past instant (a changed file still differs in size).
fn age(root: &Path) {
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            fs::File::options()
                .write(true)
                .open(e.path())
                .unwrap()
                .set_modified(past)
                .unwrap();
        }
    }
}

fn opts(previous: Option<ContentId>) -> SnapshotOptions<'static> {
    SnapshotOptions {
        previous,
        ..Default::default()
    }
}

/// Compares two folders: same entries, same bytes, same file modes.
fn assert_same_tree(a: &Path, b: &Path) {
    let list = |root: &Path| -> Vec<(String, Option<Vec<u8>>, u32)> {
        let mut v: Vec<_> = walkdir::WalkDir::new(root)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                let rel = e.path().strip_prefix(root).unwrap().to_str().unwrap().to_owned();
                let m = fs::symlink_metadata(e.path()).unwrap();
                let data = if e.file_type().is_file() {
                    Some(fs::read(e.path()).unwrap())
                } else if e.file_type().is_symlink() {
                    Some(fs::read_link(e.path()).unwrap().to_str().unwrap().as_bytes().to_vec())
                } else {
                    None
                };
                let mode = if e.file_type().is_symlink() {
                    0
                } else {
                    m.permissions().mode() & 0o777
                };
                (rel, data, mode)
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(list(a), list(b));
}

#[test]
fn snapshot_export_round_trip() {
    each_store(|lib, dir| {
        let src = dir.join("src");
        make_source(&src, 1);
        let out = lib.snapshot(&src, cid("PS100001.1"), &opts(None)).unwrap();
        assert_eq!(out.stats.files, 22);
        assert_eq!(out.stats.directories, 3);
        assert_eq!(out.stats.symlinks, 1);
        assert_eq!(out.manifest_id, lib.manifest(cid("PS100001.1")).unwrap().id());

        let dest = dir.join("export");
        let stats = lib.export(cid("PS100001.1"), &dest).unwrap();
        assert_eq!(stats.files, 22);
        assert_same_tree(&src, &dest);
        // mtimes come back too.
        let (a, b) = (
            fs::metadata(src.join("image.wim")).unwrap(),
            fs::metadata(dest.join("image.wim")).unwrap(),
        );
        assert_eq!(a.modified().unwrap(), b.modified().unwrap());
        // A second export into the now non-empty folder is refused.
        assert!(matches!(
            lib.export(cid("PS100001.1"), &dest),
            Err(ContentError::DestinationNotEmpty(_))
        ));
    });
}

#[test]
fn chunks_are_stored_once_across_packages_and_versions() {
    each_store(|lib, dir| {
        let src = dir.join("src");
        make_source(&src, 2);
        let v1 = lib.snapshot(&src, cid("PS100001.1"), &opts(None)).unwrap();
        assert!(v1.stats.chunks_new > 0);
        let chunks_after_v1 = lib.store().list(Kind::Chunk).unwrap().len();

        // Another package with the same content stores nothing new.
        let other = lib.snapshot(&src, cid("PS100002.1"), &opts(None)).unwrap();
        assert_eq!(other.stats.chunks_new, 0);
        assert_eq!(other.manifest_id, v1.manifest_id);

        // Edit 64 KiB in the middle of the large file: only a few chunks are new.
        let mut data = fs::read(src.join("image.wim")).unwrap();
        let patch = Rng::new(99).bytes(64 << 10);
        data[1 << 20..(1 << 20) + (64 << 10)].copy_from_slice(&patch);
        fs::write(src.join("image.wim"), &data).unwrap();
        let v2 = lib
            .snapshot(&src, cid("PS100001.2"), &opts(Some(cid("PS100001.1"))))
            .unwrap();
        assert!(
            v2.stats.chunks_new >= 1 && v2.stats.chunks_new <= 4,
            "{} new chunks",
            v2.stats.chunks_new
        );
        assert!(v2.stats.bytes_new < 4 * (256 << 10));
        assert!(!v2.unchanged);
        let total = lib.store().list(Kind::Chunk).unwrap().len();
        assert_eq!(total as u64, chunks_after_v1 as u64 + v2.stats.chunks_new);
        assert_eq!(
            lib.versions().unwrap(),
            vec![cid("PS100001.1"), cid("PS100001.2"), cid("PS100002.1")]
        );
        assert_eq!(
            lib.latest("PS100001".parse().unwrap()).unwrap(),
            Some(cid("PS100001.2"))
        );
    });
}

#[test]
fn delta_plan_lists_exactly_the_missing_chunks() {
    each_store(|lib, dir| {
        let src = dir.join("src");
        make_source(&src, 3);
        lib.snapshot(&src, cid("PS100001.1"), &opts(None)).unwrap();
        let held: HashSet<Digest> = lib
            .manifest(cid("PS100001.1"))
            .unwrap()
            .unique_chunks()
            .iter()
            .map(|c| c.id)
            .collect();

        // A different package, made elsewhere, sharing most content.
        let elsewhere = Library::new(Arc::new(MemoryStore::new()));
        fs::write(src.join("new.bin"), Rng::new(5).bytes(700_000)).unwrap();
        fs::write(src.join("drivers/x64/f7.inf"), b"changed").unwrap();
        elsewhere.snapshot(&src, cid("CM200007.4"), &opts(None)).unwrap();
        let wanted = elsewhere.manifest(cid("CM200007.4")).unwrap();

        let missing = lib.missing_chunks(&wanted).unwrap();
        let expected: HashSet<Digest> = wanted
            .unique_chunks()
            .iter()
            .map(|c| c.id)
            .filter(|id| !held.contains(id))
            .collect();
        assert_eq!(missing.iter().map(|c| c.id).collect::<HashSet<_>>(), expected);
        assert_eq!(missing.len(), expected.len(), "each missing chunk listed once");
        assert!(!expected.is_empty() && expected.len() < held.len());

        // Once the missing chunks arrive (verified on put), the version can be committed.
        let mut packer = pkgdist_content::envelope::Packer::new();
        for c in &missing {
            lib.put_chunk(&c.id, &elsewhere.read_chunk(c).unwrap(), &mut packer)
                .unwrap();
        }
        lib.flush().unwrap();
        assert!(lib.missing_chunks(&wanted).unwrap().is_empty());
        lib.commit(cid("CM200007.4"), &wanted).unwrap();
        assert!(lib.verify(Some(cid("CM200007.4"))).unwrap().is_clean());
    });
}

#[test]
fn put_chunk_refuses_bytes_that_do_not_match() {
    each_store(|lib, _| {
        let mut packer = pkgdist_content::envelope::Packer::new();
        let err = lib.put_chunk(&Digest::of(b"one"), b"two", &mut packer).unwrap_err();
        assert!(matches!(err, ContentError::Damaged { .. }));
        lib.flush().unwrap();
        assert!(lib.store().list(Kind::Chunk).unwrap().is_empty());
    });
}

#[test]
fn commit_refuses_missing_chunks_and_changed_versions() {
    each_store(|lib, dir| {
        let src = dir.join("src");
        make_source(&src, 4);
        let elsewhere = Library::new(Arc::new(MemoryStore::new()));
        elsewhere.snapshot(&src, cid("PS100001.1"), &opts(None)).unwrap();
        let m = elsewhere.manifest(cid("PS100001.1")).unwrap();
        assert!(matches!(
            lib.commit(cid("PS100001.1"), &m),
            Err(ContentError::Missing { .. })
        ));
        assert!(lib.versions().unwrap().is_empty());

        lib.snapshot(&src, cid("PS100001.1"), &opts(None)).unwrap();
        // Same manifest again: fine. A different one under the same ID: refused.
        lib.commit(cid("PS100001.1"), &m).unwrap();
        fs::write(src.join("readme.txt"), b"changed").unwrap();
        lib.snapshot(&src, cid("PS100001.2"), &opts(None)).unwrap();
        let m2 = lib.manifest(cid("PS100001.2")).unwrap();
        assert!(matches!(
            lib.commit(cid("PS100001.1"), &m2),
            Err(ContentError::VersionExists(_))
        ));
        assert!(matches!(
            lib.snapshot(&src, cid("PS100001.2"), &opts(None)),
            Err(ContentError::VersionExists(_))
        ));
    });
}

#[test]
fn quick_check_reuses_unchanged_files_and_checksum_rereads() {
    each_store(|lib, dir| {
        let src = dir.join("src");
        make_source(&src, 6);
        let v1 = lib.snapshot(&src, cid("PS100001.1"), &opts(None)).unwrap();
        assert_eq!(v1.stats.files_reused, 0);

        let v2 = lib
            .snapshot(&src, cid("PS100001.2"), &opts(Some(cid("PS100001.1"))))
            .unwrap();
        assert_eq!(v2.stats.files_reused, v2.stats.files);
        assert_eq!(v2.stats.bytes_read, 0);
        assert!(v2.unchanged);
        assert_eq!(v2.manifest_id, v1.manifest_id);

        // One changed file is read again; the others are not.
        fs::write(src.join("drivers/x64/f2.inf"), b"new content").unwrap();
        let v3 = lib
            .snapshot(&src, cid("PS100001.3"), &opts(Some(cid("PS100001.2"))))
            .unwrap();
        assert_eq!(v3.stats.files_reused, v3.stats.files - 1);
        assert_eq!(v3.stats.bytes_read, 11);

        // --checksum reads everything.
        let all = SnapshotOptions {
            previous: Some(cid("PS100001.3")),
            checksum: true,
            ..SnapshotOptions::default()
        };
        let v4 = lib.snapshot(&src, cid("PS100001.4"), &all).unwrap();
        assert_eq!(v4.stats.files_reused, 0);
        assert_eq!(v4.stats.bytes_read, v4.stats.bytes);
        assert_eq!(v4.manifest_id, v3.manifest_id);
    });
}

#[test]
fn quick_check_does_not_trust_a_missing_chunk() {
    each_store(|lib, dir| {
        let src = dir.join("src");
        make_source(&src, 7);
        lib.snapshot(&src, cid("PS100001.1"), &opts(None)).unwrap();
        let m = lib.manifest(cid("PS100001.1")).unwrap();
        let lost = m.entry("image.wim").unwrap().file().unwrap().chunks[0].id;
        lib.store().delete(Kind::Chunk, &lost.to_hex()).unwrap();
        let v2 = lib
            .snapshot(&src, cid("PS100001.2"), &opts(Some(cid("PS100001.1"))))
            .unwrap();
        assert_eq!(
            v2.stats.files_reused,
            v2.stats.files - 1,
            "the file with the lost chunk is read again"
        );
        assert!(lib.verify(Some(cid("PS100001.2"))).unwrap().is_clean());
    });
}

#[test]
fn gc_keeps_every_chunk_a_retained_version_needs() {
    each_store(|lib, dir| {
        let src = dir.join("src");
        make_source(&src, 8);
        lib.snapshot(&src, cid("PS100001.1"), &opts(None)).unwrap();
        let m1 = lib.manifest(cid("PS100001.1")).unwrap();
        fs::write(src.join("image.wim"), Rng::new(77).bytes(1 << 20)).unwrap();
        lib.snapshot(&src, cid("PS100001.2"), &opts(None)).unwrap();
        let m2 = lib.manifest(cid("PS100001.2")).unwrap();

        // Nothing to collect while both versions are kept.
        let r = lib.gc().unwrap();
        assert_eq!((r.chunks_removed, r.manifests_removed, r.versions_kept), (0, 0, 2));

        assert!(lib.release(cid("PS100001.1")).unwrap());
        let only_v1: HashSet<Digest> = {
            let keep: HashSet<Digest> = m2.unique_chunks().iter().map(|c| c.id).collect();
            m1.unique_chunks()
                .iter()
                .map(|c| c.id)
                .filter(|id| !keep.contains(id))
                .collect()
        };
        let r = lib.gc().unwrap();
        assert_eq!(r.chunks_removed as usize, only_v1.len());
        assert_eq!(r.manifests_removed, 1);
        assert!(r.bytes_freed > 0);
        assert!(lib.verify(None).unwrap().is_clean());
        let dest = dir.join("after-gc");
        lib.export(cid("PS100001.2"), &dest).unwrap();
        assert_same_tree(&src, &dest);
    });
}

#[test]
fn gc_refuses_to_run_when_a_manifest_is_unreadable() {
    each_store(|lib, dir| {
        let src = dir.join("src");
        make_source(&src, 9);
        lib.snapshot(&src, cid("PS100001.1"), &opts(None)).unwrap();
        fs::write(src.join("extra"), b"x").unwrap();
        lib.snapshot(&src, cid("PS100001.2"), &opts(None)).unwrap();
        let before = lib.store().list(Kind::Chunk).unwrap().len();
        let mid = lib.manifest_id(cid("PS100001.2")).unwrap().unwrap();
        lib.store().delete(Kind::Manifest, &mid.to_hex()).unwrap();
        lib.release(cid("PS100001.1")).unwrap();
        assert!(matches!(lib.gc(), Err(ContentError::GcUnsafe(_))));
        assert_eq!(lib.store().list(Kind::Chunk).unwrap().len(), before, "nothing deleted");
    });
}

#[test]
fn read_file_returns_exact_ranges() {
    each_store(|lib, dir| {
        let src = dir.join("src");
        make_source(&src, 10);
        lib.snapshot(&src, cid("PS100001.1"), &opts(None)).unwrap();
        let m = lib.manifest(cid("PS100001.1")).unwrap();
        let data = fs::read(src.join("image.wim")).unwrap();
        let mut rng = Rng::new(3);
        for _ in 0..40 {
            let a = rng.below(data.len() as u64);
            let b = a + rng.below(data.len() as u64 - a + 1);
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut lib.read_file(&m, "image.wim", a..b).unwrap(), &mut got).unwrap();
            assert_eq!(got, &data[a as usize..b as usize]);
        }
        let size = data.len() as u64;
        assert!(matches!(
            lib.read_file(&m, "image.wim", 0..size + 1),
            Err(ContentError::Range { .. })
        ));
        assert!(matches!(
            lib.read_file(&m, "nope", 0..0),
            Err(ContentError::NoSuchFile { .. })
        ));
        assert!(matches!(
            lib.read_file(&m, "drivers", 0..0),
            Err(ContentError::NoSuchFile { .. })
        ));
    });
}

#[test]
fn bad_sources_are_refused_with_the_path_and_record_nothing() {
    use std::os::unix::ffi::OsStrExt;
    each_store(|lib, dir| {
        type Damage = Box<dyn Fn(&Path)>;
        let cases: Vec<(&str, Damage)> = vec![
            (
                "non-UTF-8 name",
                Box::new(|p: &Path| fs::write(p.join(std::ffi::OsStr::from_bytes(b"bad\xff.txt")), b"x").unwrap()),
            ),
            // Links out of the package, absolute links and fifos are content (format 2,
            // `tests/fidelity.rs`); a link whose target is not UTF-8 is not.
            (
                "non-UTF-8 link target",
                Box::new(|p: &Path| {
                    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(b"to\xfe"), p.join("sub/odd")).unwrap()
                }),
            ),
        ];
        for (i, (what, damage)) in cases.iter().enumerate() {
            let src = dir.join(format!("bad{i}"));
            fs::create_dir_all(src.join("sub")).unwrap();
            fs::write(src.join("sub/ok.txt"), b"fine").unwrap();
            damage(&src);
            let err = lib.snapshot(&src, cid("PS100001.1"), &opts(None)).unwrap_err();
            let ContentError::Source { path, .. } = &err else {
                panic!("{what}: {err}")
            };
            assert!(
                path.starts_with(&src) && path != &src,
                "{what}: error names {}",
                path.display()
            );
            assert!(lib.versions().unwrap().is_empty(), "{what}: nothing recorded");
        }
        let missing = lib
            .snapshot(&dir.join("no-such-folder"), cid("PS100001.1"), &opts(None))
            .unwrap_err();
        assert!(missing.to_string().contains("no-such-folder"));
    });
}

/// Damage three chunks three ways: verify names exactly those, changes nothing, and export
/// refuses to hand out damaged bytes.
#[test]
fn verify_names_exactly_the_damaged_chunks() {
    let dir = TempDir::new().unwrap();
    let src = dir.path().join("src");
    make_source(&src, 11);
    let root = dir.path().join("library");
    let store = Arc::new(LocalStore::open(&root).unwrap());
    let lib = Library::new(store.clone());
    lib.snapshot(&src, cid("PS100001.1"), &opts(None)).unwrap();
    assert!(lib.verify(None).unwrap().is_clean());

    let m = lib.manifest(cid("PS100001.1")).unwrap();
    let image: Vec<_> = m
        .entry("image.wim")
        .unwrap()
        .file()
        .unwrap()
        .chunks
        .iter()
        .map(|c| c.id)
        .collect();
    let small = m.entry("drivers/x64/f5.inf").unwrap().file().unwrap().chunks[0].id;
    let (flipped, deleted, truncated) = (image[1], image[3], small);
    let path = |d: &Digest| store.object_path(Kind::Chunk, &d.to_hex()).unwrap();
    pkgdist_testkit::damage::flip_byte(&path(&flipped)).unwrap();
    pkgdist_testkit::damage::delete(&path(&deleted)).unwrap();
    pkgdist_testkit::damage::truncate_half(&path(&truncated)).unwrap();
    let snapshot_of_library = |root: &Path| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = walkdir::WalkDir::new(root)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file() && e.file_name() != "lock")
            .map(|e| (e.path().display().to_string(), fs::read(e.path()).unwrap()))
            .collect();
        v.sort();
        v
    };
    let before = snapshot_of_library(&root);

    for scope in [None, Some(cid("PS100001.1"))] {
        let report = lib.verify(scope).unwrap();
        let mut found: Vec<(String, Fault)> = report.problems.iter().map(|p| (p.id.clone(), p.fault)).collect();
        found.sort();
        let mut expected = vec![
            (flipped.to_hex(), Fault::Damaged),
            (deleted.to_hex(), Fault::Missing),
            (truncated.to_hex(), Fault::Damaged),
        ];
        expected.sort();
        assert_eq!(found, expected);
        for p in &report.problems {
            assert_eq!(p.object, ObjectKind::Chunk);
            let paths: Vec<_> = p.affects.iter().map(|a| a.path.as_str()).collect();
            let want = if p.id == truncated.to_hex() {
                "drivers/x64/f5.inf"
            } else {
                "image.wim"
            };
            assert!(paths.contains(&want), "{} affects {paths:?}", p.id);
        }
    }
    assert_eq!(snapshot_of_library(&root), before, "verify changed nothing");

    let dest = dir.path().join("export");
    let err = lib.export(cid("PS100001.1"), &dest).unwrap_err();
    assert!(
        matches!(err, ContentError::Damaged { .. } | ContentError::Missing { .. }),
        "{err}"
    );
    assert!(!dest.exists(), "no partial export left behind");
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "only src and library remain: {leftovers:?}");
    let mut buf = Vec::new();
    let read = std::io::Read::read_to_end(&mut lib.read_file(&m, "image.wim", 0..(1 << 20)).unwrap(), &mut buf);
    assert!(read.is_err(), "a range over a damaged chunk is an error, not data");
}

#[test]
fn memory_store_damage_is_found_too() {
    let dir = TempDir::new().unwrap();
    let src = dir.path().join("src");
    make_source(&src, 12);
    let store = Arc::new(MemoryStore::new());
    let lib = Library::new(store.clone());
    lib.snapshot(&src, cid("PS100001.1"), &opts(None)).unwrap();
    let m = lib.manifest(cid("PS100001.1")).unwrap();
    let c = m.entry("image.wim").unwrap().file().unwrap().chunks[2].id;
    assert!(store.tamper(Kind::Chunk, &c.to_hex(), |v| {
        let n = v.len();
        v[n - 1] ^= 1;
    }));
    let report = lib.verify(None).unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].id, c.to_hex());
}

#[test]
fn gc_waits_for_other_processes_using_the_library() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("library");
    let a = Library::create_local(&root).unwrap();
    let b = Library::open_local(&root).unwrap();
    assert!(matches!(
        a.gc(),
        Err(ContentError::Store(pkgdist_content::StoreError::Busy(_)))
    ));
    drop(b);
    a.gc().unwrap();
    // After a refused upgrade the shared lock is held again: another gc elsewhere must wait.
    let c = Library::open_local(&root).unwrap();
    assert!(c.gc().is_err());
}

#[test]
fn open_refuses_a_folder_that_is_not_a_library() {
    let dir = TempDir::new().unwrap();
    assert!(matches!(
        Library::open_local(dir.path()),
        Err(ContentError::NotALibrary(_))
    ));
}

/// A same-size rewrite that restores the mtime (`cp -p`, `touch -r`) is still noticed: the
/// ctime moved.
#[test]
fn quick_check_notices_a_restored_mtime() {
    each_store(|lib, dir| {
        let src = dir.join("src");
        make_source(&src, 13);
        lib.snapshot(&src, cid("PS100001.1"), &opts(None)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let f = src.join("drivers/x64/f4.inf");
        let old_mtime = fs::metadata(&f).unwrap().modified().unwrap();
        let mut data = fs::read(&f).unwrap();
        data[0] ^= 0xFF;
        fs::write(&f, &data).unwrap();
        // Put the mtime back exactly (only on this file: setting an mtime moves the ctime).
        fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old_mtime)
            .unwrap();
        assert_eq!(fs::metadata(&f).unwrap().modified().unwrap(), old_mtime);
        let v2 = lib
            .snapshot(&src, cid("PS100001.2"), &opts(Some(cid("PS100001.1"))))
            .unwrap();
        assert_eq!(v2.stats.files_reused, v2.stats.files - 1);
        assert!(!v2.unchanged);
        let dest = dir.join("out");
        lib.export(cid("PS100001.2"), &dest).unwrap();
        assert_eq!(fs::read(dest.join("drivers/x64/f4.inf")).unwrap(), data);
    });
}

/// With the default margin, files written just before a snapshot are read again next time.
#[test]
fn fresh_files_are_not_trusted_within_the_racy_margin() {
    let dir = TempDir::new().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("fresh"), b"just written").unwrap();
    let lib = Library::new(Arc::new(MemoryStore::new()));
    lib.snapshot(&src, cid("PS100001.1"), &opts(None)).unwrap();
    let v2 = lib
        .snapshot(&src, cid("PS100001.2"), &opts(Some(cid("PS100001.1"))))
        .unwrap();
    assert_eq!(v2.stats.files_reused, 0);
    assert_eq!(v2.stats.bytes_read, 12);
}

/// Many writers racing to record the same content ID with different content: exactly one
/// wins, the rest are told the version exists, and the winner's content is what is recorded.
#[test]
fn racing_commits_record_a_version_exactly_once() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("library");
    Library::create_local(&root).unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6u64)
            .map(|i| {
                let root = root.clone();
                let src = dir.path().join(format!("src{i}"));
                s.spawn(move || {
                    fs::create_dir_all(&src).unwrap();
                    fs::write(src.join("f"), Rng::new(i).bytes(300_000)).unwrap();
                    // Separate libraries on one folder: as separate processes would be.
                    let lib = Library::open_local(&root).unwrap();
                    (
                        i,
                        lib.snapshot(&src, cid("PS100001.1"), &opts(None))
                            .map(|o| o.manifest_id),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (_, r) in &results {
        if let Err(e) = r {
            assert!(matches!(e, ContentError::VersionExists(_)), "{e}");
        }
    }
    let lib = Library::open_local(&root).unwrap();
    let (i, Ok(id)) = winners[0] else { unreachable!() };
    assert_eq!(lib.manifest_id(cid("PS100001.1")).unwrap(), Some(*id));
    let dest = dir.path().join("out");
    lib.export(cid("PS100001.1"), &dest).unwrap();
    assert_eq!(fs::read(dest.join("f")).unwrap(), Rng::new(*i).bytes(300_000));
    assert!(lib.verify(None).unwrap().is_clean());
}

#[test]
fn whole_library_verify_checks_unreferenced_manifests() {
    let store = Arc::new(MemoryStore::new());
    let lib = Library::new(store.clone());
    let bogus = Digest::of(b"not a manifest");
    store.put(Kind::Manifest, &bogus.to_hex(), b"\x00garbage").unwrap();
    store.flush().unwrap();
    let report = lib.verify(None).unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].object, ObjectKind::Manifest);
    assert_eq!(report.problems[0].id, bogus.to_hex());
}

/// The symlink-swap race (issue 15): while snapshots run, another thread keeps swapping a
/// subfolder of the source for a symlink to a folder outside it that holds a file of the same
/// name and a secret. Every snapshot either fails with a source error naming the changed path
/// or is made of the real folder's content: none ever holds a byte from outside. (The walk and
/// the reads went by path before: a swapped parent was followed.)
#[test]
fn a_folder_swapped_for_a_link_never_brings_outside_content_in() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = TempDir::new().unwrap();
    let lib = Library::create_local(&dir.path().join("library"))
        .unwrap()
        .with_racy_margin(Duration::ZERO);
    let src = dir.path().join("src");
    let outside = dir.path().join("outside");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(src.join("top.txt"), b"top").unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("sub/f{i}.txt")), format!("inside {i}")).unwrap();
        fs::write(outside.join(format!("f{i}.txt")), format!("SECRET {i}")).unwrap();
    }
    fs::write(outside.join("secret.key"), b"SECRET KEY").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (src, outside, stop) = (src.clone(), outside.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let (sub, aside) = (src.join("sub"), src.join("sub.real"));
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                fs::rename(&sub, &aside).unwrap();
                std::os::unix::fs::symlink(&outside, &sub).unwrap();
                std::thread::yield_now();
                fs::remove_file(&sub).unwrap();
                fs::rename(&aside, &sub).unwrap();
                swaps += 1;
                // Real for a moment: some snapshots see only the real folder.
                std::thread::sleep(Duration::from_millis(2));
            }
            swaps
        })
    };
    let (mut whole, mut refused) = (0, 0);
    for n in 1..=1000u32 {
        let id = cid(&format!("PS100001.{n}"));
        match lib.snapshot(&src, id, &opts(None)) {
            Ok(_) => {
                whole += 1;
                let out = dir.path().join(format!("export{n}"));
                lib.export(id, &out).unwrap();
                for e in walkdir::WalkDir::new(&out).min_depth(1) {
                    let e = e.unwrap();
                    assert_ne!(e.file_name(), "secret.key", "snapshot {n} listed the outside folder");
                    if e.file_type().is_file() {
                        let text = fs::read_to_string(e.path()).unwrap();
                        assert!(
                            !text.contains("SECRET"),
                            "snapshot {n}: {} holds {text:?}",
                            e.path().display()
                        );
                    }
                }
                fs::remove_dir_all(&out).unwrap();
            }
            Err(ContentError::Source { path, .. }) => {
                assert!(path.starts_with(&src), "snapshot {n} failed on {}", path.display());
                refused += 1;
            }
            Err(e) => panic!("snapshot {n}: {e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 100, "the swapper ran only {swaps} times");
    // Both outcomes happen, or the race was not exercised.
    println!("{whole} whole, {refused} refused, {swaps} swaps");
    assert!(whole > 0 && refused > 0, "{whole} whole, {refused} refused");
}

/// A snapshot held to allowed roots judges the folder it opened, wherever its path led: a
/// link inside a root to a folder outside is refused, a folder inside is taken.
#[test]
fn a_snapshot_held_to_roots_judges_the_folder_it_opened() {
    let dir = TempDir::new().unwrap();
    let lib = Library::create_local(&dir.path().join("library")).unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    fs::create_dir_all(root.join("app")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(root.join("app/a.txt"), b"a").unwrap();
    fs::write(outside.join("b.txt"), b"b").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    let roots = vec![root.clone()];
    let held = SnapshotOptions {
        allowed_roots: Some(&roots),
        ..SnapshotOptions::default()
    };
    let err = lib.snapshot(&root.join("link"), cid("PS100001.1"), &held).unwrap_err();
    assert!(
        matches!(&err, ContentError::SourceNotAllowed { path, .. } if path == &outside.canonicalize().unwrap()),
        "{err}"
    );
    assert!(lib.snapshot(&root.join("app"), cid("PS100001.1"), &held).is_ok());
}
