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
            holes: Vec::new(),
        }
    })
}

/// Holes inside a file of `size`: from sorted cut points, every other span.
fn with_holes(mut f: FileData, cuts: Vec<u64>) -> FileData {
    if f.size < 2 {
        return f;
    }
    let mut cuts: Vec<u64> = cuts.into_iter().map(|c| c % f.size).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut holes = Vec::new();
    for w in cuts.chunks(2) {
        if let [a, b] = w
            && b > a
            && holes.last().is_none_or(|h: &Hole| h.offset + h.len < *a)
        {
            holes.push(Hole { offset: *a, len: b - a });
        }
    }
    f.holes = holes;
    f
}

fn xattrs() -> impl Strategy<Value = Vec<Xattr>> {
    prop::collection::btree_map(
        "(user|security|trusted|system)\\.[a-z_]{1,8}",
        prop::collection::vec(any::<u8>(), 0..24),
        0..4,
    )
    .prop_map(|m| m.into_iter().map(|(name, value)| Xattr { name, value }).collect())
}

/// A random valid manifest of `format`: a tree of directories and files, symlinks, and in
/// format 2 hard links, devices, fifos, owners, attributes and holes.
fn manifest_of(format: Format) -> impl Strategy<Value = Manifest> {
    let v2 = format == Format::V2;
    let leaf = prop_oneof![
        3 => (file_data(ChunkParams::DEFAULT.max_size), prop::collection::vec(any::<u64>(), 0..6))
            .prop_map(move |(f, cuts)| EntryKind::File(if v2 { with_holes(f, cuts) } else { f })),
        1 => Just(EntryKind::Directory),
        1 => Just(EntryKind::Symlink { target: "x".into() }),
        1 => Just(EntryKind::HardLink { target: RelPath::new("x").unwrap() }),
        1 => (any::<u32>(), any::<u32>(), any::<bool>()).prop_map(|(major, minor, block)| if block {
            EntryKind::BlockDevice { major, minor }
        } else {
            EntryKind::CharDevice { major, minor }
        }),
        1 => Just(EntryKind::Fifo),
    ];
    let node = (
        prop::collection::vec(name(), 1..4),
        leaf,
        0u32..0o7777,
        any::<i64>(),
        0u32..1_000_000_000,
        (any::<u32>(), any::<u32>(), xattrs(), "/?[a-z/.]{1,12}"),
    );
    prop::collection::vec(node, 0..24).prop_map(move |nodes| {
        let mut entries: Vec<Entry> = Vec::new();
        let mut seen = HashSet::new();
        let mut dirs = HashSet::new();
        for (comps, kind, mode, secs, nanos, (uid, gid, xattrs, target)) in nodes {
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
                    entries.push(Entry::new(
                        RelPath::new(prefix.clone()).unwrap(),
                        0o755,
                        Timestamp::default(),
                        EntryKind::Directory,
                    ));
                }
            }
            let path = comps.join("/");
            if !ok || !seen.insert(path.clone()) {
                continue;
            }
            let kind = match kind {
                // Format 1: a link to its own name stays inside the package at any depth;
                // format 2 takes any target, absolute ones too.
                EntryKind::Symlink { .. } if v2 => EntryKind::Symlink { target },
                EntryKind::Symlink { .. } => EntryKind::Symlink {
                    target: comps[comps.len() - 1].clone(),
                },
                // A hard link names a file sorted before it, if there is one.
                EntryKind::HardLink { .. } => match entries
                    .iter()
                    .rev()
                    .find(|e| e.file().is_some() && e.path.as_str().as_bytes() < path.as_bytes())
                {
                    Some(f) if v2 => EntryKind::HardLink { target: f.path.clone() },
                    _ => continue,
                },
                EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. } | EntryKind::Fifo if !v2 => continue,
                k => k,
            };
            if matches!(kind, EntryKind::Directory) {
                dirs.insert(path.clone());
            }
            let mut e = Entry::new(RelPath::new(path).unwrap(), mode, Timestamp { secs, nanos }, kind);
            if v2 {
                (e.uid, e.gid, e.xattrs) = (uid, gid, xattrs);
            }
            entries.push(e);
        }
        Manifest::with_format(format, ChunkParams::DEFAULT, entries).unwrap()
    })
}

fn manifest() -> impl Strategy<Value = Manifest> {
    prop_oneof![manifest_of(Format::V1), manifest_of(Format::V2)]
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
        let _ = Manifest::decode(&bytes);
        for magic in [b"PKGDMAN1", b"PKGDMAN2"] {
            let mut with_magic = magic.to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = Manifest::decode(&with_magic);
        }
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
    Entry::new(
        RelPath::new(path).unwrap(),
        0o644,
        Timestamp::default(),
        EntryKind::File(FileData {
            size: chunks.iter().map(|c| u64::from(c.len)).sum(),
            hash: Digest::of(b""),
            chunks,
            holes: Vec::new(),
        }),
    )
}

fn dir(path: &str) -> Entry {
    Entry::new(
        RelPath::new(path).unwrap(),
        0o755,
        Timestamp::default(),
        EntryKind::Directory,
    )
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
    Entry::new(
        RelPath::new(path).unwrap(),
        0o777,
        Timestamp::default(),
        EntryKind::Symlink { target: target.into() },
    )
}

/// `d/up -> ..` and `esc -> d/up/../victim` each look inside lexically, but the second
/// resolves through the first to outside the package.
#[test]
fn symlink_chains_cannot_escape_in_format_1() {
    let err = Manifest::with_format(
        Format::V1,
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

/// Format 2 keeps what an OS tree holds; format 1 refuses it rather than drop it.
#[test]
fn format_2_holds_os_trees_and_format_1_refuses_them() {
    let mut f = file("bin", &[100, 50]);
    f.uid = 1000;
    f.xattrs = vec![Xattr {
        name: "security.capability".into(),
        value: vec![1, 2, 3],
    }];
    let entries = vec![
        dir("dev"),
        Entry::new(
            RelPath::new("dev/null").unwrap(),
            0o666,
            Timestamp::default(),
            EntryKind::CharDevice { major: 1, minor: 3 },
        ),
        f,
        Entry::new(
            RelPath::new("bin2").unwrap(),
            0o755,
            Timestamp::default(),
            EntryKind::HardLink {
                target: RelPath::new("bin").unwrap(),
            },
        ),
        link("etc-link", "/etc/alternatives/x"),
        Entry::new(
            RelPath::new("pipe").unwrap(),
            0o600,
            Timestamp::default(),
            EntryKind::Fifo,
        ),
    ];
    let m = Manifest::new(ChunkParams::DEFAULT, entries.clone()).unwrap();
    assert_eq!(m.format(), Format::V2);
    assert_eq!(&m.encode()[..8], b"PKGDMAN2");
    assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
    assert_eq!(m.content_of(m.entry("bin2").unwrap()).unwrap().size, 150);
    assert!(Manifest::with_format(Format::V1, ChunkParams::DEFAULT, entries).is_err());
    // A hard link to nothing, or to a later entry; unsorted attributes; a hole past the end.
    let to = |t: &str| {
        Entry::new(
            RelPath::new("a").unwrap(),
            0,
            Timestamp::default(),
            EntryKind::HardLink {
                target: RelPath::new(t).unwrap(),
            },
        )
    };
    assert!(Manifest::new(ChunkParams::DEFAULT, vec![to("zz"), file("zz", &[1])]).is_err());
    assert!(Manifest::new(ChunkParams::DEFAULT, vec![to("nothing")]).is_err());
    let mut x = file("x", &[10]);
    x.xattrs = vec![
        Xattr {
            name: "user.b".into(),
            value: vec![],
        },
        Xattr {
            name: "user.a".into(),
            value: vec![],
        },
    ];
    assert!(Manifest::new(ChunkParams::DEFAULT, vec![x]).is_err());
    let mut h = file("h", &[10]);
    if let EntryKind::File(d) = &mut h.kind {
        d.holes = vec![Hole { offset: 5, len: 6 }];
    }
    assert!(Manifest::new(ChunkParams::DEFAULT, vec![h]).is_err());
}

/// A manifest from a malicious source cannot have a restore write through a link of its own:
/// `a -> /etc` then `a/passwd` is refused when decoded (an entry's parent must be a folder
/// entry), so no fetch or export ever sees it.
#[test]
fn a_link_cannot_stand_for_a_folder_of_the_manifest() {
    let evil = Manifest {
        chunker: ChunkParams::DEFAULT,
        entries: vec![link("a", "/etc"), file("a/passwd", &[10])],
        format: Format::V2,
    };
    let bytes = evil.encode();
    assert_eq!(
        Manifest::decode(&bytes).unwrap_err(),
        ManifestError::MissingParent {
            path: "a/passwd".into()
        }
    );
    // Nor a hard link to a name below a link.
    let evil = Manifest {
        chunker: ChunkParams::DEFAULT,
        entries: vec![
            link("a", "/etc"),
            Entry::new(
                RelPath::new("b").unwrap(),
                0o644,
                Timestamp::default(),
                EntryKind::HardLink {
                    target: RelPath::new("a/shadow").unwrap(),
                },
            ),
        ],
        format: Format::V2,
    };
    assert!(Manifest::decode(&evil.encode()).is_err());
}
