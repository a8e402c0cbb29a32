use proptest::prelude::*;

use super::*;
use crate::chunker::Chunker;
use pkgdist_core::{ChunkParams, Entry, EntryKind, FileData, RelPath, Timestamp};

fn noise(seed: u64, n: usize) -> Vec<u8> {
    pkgdist_testkit::generate::Rng::new(seed).bytes(n)
}

const SMALL: ChunkParams = ChunkParams {
    normalization: 1,
    min_size: 2 * 1024,
    avg_size: 8 * 1024,
    max_size: 32 * 1024,
};

/// A manifest of `files`, chunked for real, and every chunk's bytes.
fn manifest_of(files: &[(&str, &[u8])]) -> (Manifest, HashMap<Digest, Vec<u8>>) {
    let chunker = Chunker::new(SMALL).unwrap();
    let mut bytes = HashMap::new();
    let mut entries = Vec::new();
    for (path, data) in files {
        let mut chunks = Vec::new();
        let mut s = chunker.stream(*data, 1 << 16);
        while let Some(c) = s.next_chunk().unwrap() {
            let id = Digest::of(c);
            bytes.insert(id, c.to_vec());
            chunks.push(ChunkRef {
                id,
                len: c.len() as u32,
            });
        }
        entries.push(Entry::new(
            RelPath::new(*path).unwrap(),
            0o644,
            Timestamp::default(),
            EntryKind::File(FileData {
                size: data.len() as u64,
                hash: Digest::of(data),
                chunks,
                holes: Vec::new(),
            }),
        ));
    }
    (Manifest::new(SMALL, entries).unwrap(), bytes)
}

fn wanted(previous: &Manifest, next: &Manifest) -> HashSet<Digest> {
    let held: HashSet<Digest> = previous.unique_chunks().iter().map(|c| c.id).collect();
    next.unique_chunks()
        .iter()
        .map(|c| c.id)
        .filter(|id| !held.contains(id))
        .collect()
}

/// Sends every wanted chunk as a delta against its bases: the delta bytes, and the chunks'.
fn send(
    b: &HashMap<Digest, Vec<ChunkRef>>,
    old: &HashMap<Digest, Vec<u8>>,
    new: &HashMap<Digest, Vec<u8>>,
    wanted: &HashSet<Digest>,
) -> (usize, usize) {
    let (mut sent, mut whole) = (0, 0);
    for id in wanted {
        let data = &new[id];
        whole += data.len();
        let Some(bases) = b.get(id) else {
            sent += data.len();
            continue;
        };
        let base: Vec<u8> = bases.iter().flat_map(|c| old[&c.id].iter().copied()).collect();
        let delta = encode(&base, data).unwrap();
        assert_eq!(&decode(&base, &delta, data.len()).unwrap(), data);
        sent += delta.len().min(data.len());
    }
    (sent, whole)
}

#[test]
fn a_small_edit_costs_about_its_own_size() {
    let base = noise(1, 64 * 1024);
    let mut data = base.clone();
    data[30_000..31_024].copy_from_slice(&noise(2, 1024));
    let delta = encode(&base, &data).unwrap();
    assert!(delta.len() < 1024 + 200, "delta of a 1 KiB edit: {} bytes", delta.len());
    assert_eq!(decode(&base, &delta, data.len()).unwrap(), data);
}

#[test]
fn a_delta_against_another_base_is_refused_or_wrong() {
    let base = noise(1, 64 * 1024);
    let mut data = base.clone();
    data[100..200].fill(7);
    let delta = encode(&base, &data).unwrap();
    let other = noise(3, 64 * 1024);
    match decode(&other, &delta, data.len()) {
        Err(_) => {}
        Ok(got) => assert_ne!(got, data),
    }
    // A length that does not match is refused, and never allocates more than asked for.
    assert!(decode(&base, &delta, data.len() - 1).is_err());
    assert!(decode(&base, &delta[..delta.len() / 2], data.len()).is_err());
}

#[test]
fn bases_follow_an_insertion_and_skip_new_files() {
    let v1 = noise(5, 256 * 1024);
    let mut v2 = v1.clone();
    v2.splice(10_000..10_000, noise(6, 1024));
    v2[200_000..202_048].copy_from_slice(&noise(7, 2048));
    let fresh = noise(8, 40 * 1024);
    let (m1, b1) = manifest_of(&[("img", &v1)]);
    let (m2, b2) = manifest_of(&[("img", &v2), ("new", &fresh)]);
    let w = wanted(&m1, &m2);
    let b = bases(&m1, &m2, &w);
    let new_file: HashSet<Digest> = m2
        .entry("new")
        .unwrap()
        .file()
        .unwrap()
        .chunks
        .iter()
        .map(|c| c.id)
        .collect();
    assert!(b.keys().all(|id| w.contains(id) && !new_file.contains(id)));
    let img_wanted: HashSet<Digest> = w.difference(&new_file).copied().collect();
    assert!(!img_wanted.is_empty());
    assert!(
        img_wanted.iter().all(|id| b.contains_key(id)),
        "every changed chunk of img has a base"
    );
    let (sent, whole) = send(&b, &b1, &b2, &img_wanted);
    // 3 KiB changed: the deltas carry about that, not the ~3 changed chunks (8-32 KiB each).
    assert!(sent < 6 * 1024, "sent {sent} bytes for {whole} bytes of changed chunks");
    assert!(whole > 3 * sent);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn deltas_round_trip_and_bases_stay_in_bounds(
        seed in any::<u64>(),
        len in 1usize..200_000,
        edits in prop::collection::vec((any::<prop::sample::Index>(), 1usize..4096, any::<bool>()), 0..8),
    ) {
        let v1 = noise(seed, len);
        let mut v2 = v1.clone();
        for (i, (at, n, insert)) in edits.iter().enumerate() {
            let at = at.index(v2.len() + 1);
            let new = noise(seed ^ (i as u64 + 11), *n);
            if *insert || at + n > v2.len() {
                v2.splice(at..at, new);
            } else {
                v2[at..at + n].copy_from_slice(&new);
            }
        }
        let (m1, b1) = manifest_of(&[("f", &v1)]);
        let (m2, b2) = manifest_of(&[("f", &v2)]);
        let w = wanted(&m1, &m2);
        let b = bases(&m1, &m2, &w);
        let old_chunks: HashSet<Digest> = m1.unique_chunks().iter().map(|c| c.id).collect();
        for (id, picked) in &b {
            prop_assert!(w.contains(id));
            prop_assert!(!picked.is_empty() && picked.len() <= MAX_BASES);
            prop_assert!(picked.iter().map(|c| c.len as usize).sum::<usize>() <= MAX_BASE_BYTES);
            prop_assert!(picked.iter().all(|c| old_chunks.contains(&c.id)));
        }
        let (sent, whole) = send(&b, &b1, &b2, &w);
        prop_assert!(sent <= whole);
    }
}
