use proptest::prelude::*;

use super::*;

fn digest() -> impl Strategy<Value = Digest> {
    any::<[u8; 32]>().prop_map(Digest)
}

fn name() -> impl Strategy<Value = String> {
    // Names include the characters that sort around '/' and '.', to exercise canonical order.
    "[a-c.\\-_ é]{1,6}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn file_data(max: u32) -> impl Strategy<Value = FileData> {
    (digest(), prop::collection::vec((digest(), 1..=max), 0..5)).prop_map(|(hash, chunks)| {
        let chunks: Vec<ChunkRef> = chunks.into_iter().map(|(id, len)| ChunkRef { id, len }).collect();
        FileData {
            size: chunks.iter().map(|c| u64::from(c.len)).sum(),
            hash,
            chunks,
        }
    })
}

/// A random valid manifest: a tree of directories, files and in-package symlinks.
fn manifest() -> impl Strategy<Value = Manifest> {
    let leaf = prop_oneof![
        3 => file_data(ChunkParams::DEFAULT.max_size).prop_map(EntryKind::File),
        1 => Just(EntryKind::Directory),
        1 => Just(EntryKind::Symlink { target: "x".into() }),
    ];
    let node = (
        prop::collection::vec(name(), 1..4),
        leaf,
        0u32..0o7777,
        any::<i64>(),
        0u32..1_000_000_000,
    );
    prop::collection::vec(node, 0..24).prop_map(|nodes| {
        let mut entries: Vec<Entry> = Vec::new();
        let mut seen = HashSet::new();
        let mut dirs = HashSet::new();
        for (comps, kind, mode, secs, nanos) in nodes {
            // Create every parent as a directory first; skip paths that clash with a non-directory.
            let mut prefix = String::new();
            let mut ok = true;
            for c in &comps[..comps.len() - 1] {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(c);
                if seen.contains(&prefix) && !dirs.contains(&prefix) {
                    ok = false;
                    break;
                }
                if seen.insert(prefix.clone()) {
                    dirs.insert(prefix.clone());
                    entries.push(Entry {
                        path: RelPath::new(prefix.clone()).unwrap(),
                        mode: 0o755,
                        mtime: Timestamp::default(),
                        kind: EntryKind::Directory,
                    });
                }
            }
            let path = comps.join("/");
            if !ok || !seen.insert(path.clone()) {
                continue;
            }
            if matches!(kind, EntryKind::Directory) {
                dirs.insert(path.clone());
            }
            let kind = match kind {
                // A link to its own name stays inside the package at any depth.
                EntryKind::Symlink { .. } => EntryKind::Symlink {
                    target: comps[comps.len() - 1].clone(),
                },
                k => k,
            };
            entries.push(Entry {
                path: RelPath::new(path).unwrap(),
                mode,
                mtime: Timestamp { secs, nanos },
                kind,
            });
        }
        Manifest::new(ChunkParams::DEFAULT, entries).unwrap()
    })
}

proptest! {
    #[test]
    fn round_trips(m in manifest()) {
        let bytes = m.encode();
        let back = Manifest::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.encode(), bytes);
        prop_assert_eq!(back.id(), m.id());
    }

    #[test]
    fn entries_sorted_by_bytes(m in manifest()) {
        for w in m.entries().windows(2) {
            prop_assert!(w[0].path.as_str().as_bytes() < w[1].path.as_str().as_bytes());
        }
    }

    /// Damaged bytes never panic, and whatever is still accepted is canonical.
    #[test]
    fn damaged_bytes_are_refused_or_canonical(m in manifest(), pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut bytes = m.encode();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        if let Ok(d) = Manifest::decode(&bytes) {
            prop_assert_eq!(d.encode(), bytes.clone());
        }
        let n = cut.index(bytes.len());
        if let Ok(d) = Manifest::decode(&bytes[..n]) {
            prop_assert_eq!(d.encode(), bytes[..n].to_vec());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut with_magic = MAGIC.to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = Manifest::decode(&bytes);
        let _ = Manifest::decode(&with_magic);
    }
}

fn file(path: &str, chunks: &[u32]) -> Entry {
    let chunks: Vec<ChunkRef> = chunks
        .iter()
        .map(|&len| ChunkRef {
            id: Digest::of(&len.to_le_bytes()),
            len,
        })
        .collect();
    Entry {
        path: RelPath::new(path).unwrap(),
        mode: 0o644,
        mtime: Timestamp::default(),
        kind: EntryKind::File(FileData {
            size: chunks.iter().map(|c| u64::from(c.len)).sum(),
            hash: Digest::of(b""),
            chunks,
        }),
    }
}

fn dir(path: &str) -> Entry {
    Entry {
        path: RelPath::new(path).unwrap(),
        mode: 0o755,
        mtime: Timestamp::default(),
        kind: EntryKind::Directory,
    }
}

#[test]
fn paths_are_normalized() {
    for bad in ["", "/a", "a/", "a//b", "./a", "a/..", "../a", "a\0b"] {
        assert!(RelPath::new(bad).is_err(), "{bad:?} should be refused");
    }
    assert!(RelPath::new("a".repeat(256)).is_err());
    assert_eq!(RelPath::new("a/b c/d.txt").unwrap().parent(), Some("a/b c"));
}

#[test]
fn refuses_missing_parent_and_duplicates() {
    let err = Manifest::new(ChunkParams::DEFAULT, vec![file("a/b", &[1])]).unwrap_err();
    assert_eq!(err, ManifestError::MissingParent { path: "a/b".into() });
    let err = Manifest::new(ChunkParams::DEFAULT, vec![file("a", &[1]), file("a", &[2])]).unwrap_err();
    assert!(matches!(err, ManifestError::Order(_)));
    // A file is not a directory.
    let err = Manifest::new(ChunkParams::DEFAULT, vec![file("a", &[1]), file("a/b", &[1])]).unwrap_err();
    assert!(matches!(err, ManifestError::MissingParent { .. }));
}

#[test]
fn refuses_inconsistent_sizes_and_oversized_chunks() {
    let mut e = file("a", &[10, 20]);
    if let EntryKind::File(f) = &mut e.kind {
        f.size = 31;
    }
    assert!(Manifest::new(ChunkParams::DEFAULT, vec![e]).is_err());
    assert!(
        Manifest::new(
            ChunkParams::DEFAULT,
            vec![file("a", &[ChunkParams::DEFAULT.max_size + 2])]
        )
        .is_err()
    );
}

#[test]
fn symlink_targets_stay_inside() {
    let link = RelPath::new("a/b/link").unwrap();
    assert!(check_symlink_target(&link, "../x").is_ok());
    assert!(check_symlink_target(&link, "../../x").is_ok());
    assert!(check_symlink_target(&link, "../../../x").is_err());
    assert!(check_symlink_target(&link, "/etc/passwd").is_err());
    assert!(check_symlink_target(&link, "c/../../../../x").is_err());
}

#[test]
fn lookup_and_children() {
    let m = Manifest::new(
        ChunkParams::DEFAULT,
        vec![file("a.txt", &[5]), dir("a"), file("a/b", &[1, 2])],
    )
    .unwrap();
    assert_eq!(
        m.entries().iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
        ["a", "a.txt", "a/b"]
    );
    assert_eq!(m.entry("a/b").unwrap().file().unwrap().size, 3);
    assert!(m.entry("a/c").is_none());
    assert_eq!(m.children("").count(), 2);
    assert_eq!(m.children("a").count(), 1);
    assert_eq!(m.total_size(), 8);
}

#[test]
fn chunk_params_ranges() {
    assert!(ChunkParams::DEFAULT.validate().is_ok());
    let p = |min, avg, max| ChunkParams {
        normalization: 1,
        min_size: min,
        avg_size: avg,
        max_size: max,
    };
    assert!(p(4096, 1024, 8192).validate().is_err());
    assert!(p(4097, 8192, 16384).validate().is_err());
    assert!(p(16, 8192, 16384).validate().is_err());
    assert!(p(1024, 4096, 32 << 20).validate().is_err());
}

fn link(path: &str, target: &str) -> Entry {
    Entry {
        path: RelPath::new(path).unwrap(),
        mode: 0o777,
        mtime: Timestamp::default(),
        kind: EntryKind::Symlink { target: target.into() },
    }
}

/// `d/up -> ..` and `esc -> d/up/../victim` each look inside lexically, but the second
/// resolves through the first to outside the package.
#[test]
fn symlink_chains_cannot_escape() {
    let err = Manifest::new(
        ChunkParams::DEFAULT,
        vec![dir("d"), link("d/up", ".."), link("esc", "d/up/../victim")],
    )
    .unwrap_err();
    assert!(err.to_string().contains("passes through another symlink"), "{err}");
    // A link to a link (as the last component) is fine, and so is a link through a real folder.
    Manifest::new(
        ChunkParams::DEFAULT,
        vec![
            dir("d"),
            file("d/f", &[1]),
            link("a", "b"),
            link("b", "d/f"),
            link("c", "d/../d/f"),
        ],
    )
    .unwrap();
}
