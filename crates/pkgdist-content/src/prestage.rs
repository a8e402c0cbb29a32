//! Prestaged content files: one content version (its manifest and every chunk it needs) in one
//! file, carried to a DP on a disk instead of over the WAN, as ConfigMgr's `.pkgx` files are.
//!
//! Format (all integers big-endian):
//!
//! ```text
//! "PKGDIST-PRESTAGE" 0x01                 magic and format version
//! u16 len, content ID (UTF-8)             e.g. PS100001.3
//! u32 len, manifest (canonical bytes)     its BLAKE3 is the manifest hash the site knows
//! frames until the end of the file        the node protocol's chunk frames (`frames`):
//!                                         32-byte chunk id, u32 length, the chunk as stored
//! ```
//!
//! Importing trusts nothing in the file: every chunk must be one the manifest names and is
//! checked against its hash and length before it is kept; a chunk the manifest needs and the
//! file lacks, or a file cut short, fails the import. The import keeps the manifest and chunks
//! but records **no version**: a DP serves the content only once its site's install job, which
//! carries the manifest hash the site trusts, finds everything present and records it. So a
//! file made elsewhere, or tampered with, can cost disk space but never put other bytes under
//! a genuine package ID.

use std::io::{Read, Write};

use pkgdist_core::{ChunkRef, ContentId, Digest, Manifest};

use crate::envelope;
use crate::error::{ContentError, Result};
use crate::library::Library;

const MAGIC: &[u8] = b"PKGDIST-PRESTAGE\x01";

/// What a prestaged file holds, or what an import took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prestaged {
    pub content: ContentId,
    /// The manifest's hash: what the site's install job must name for the import to count.
    pub manifest_hash: Digest,
    pub chunks: u64,
    /// The chunks' bytes as stored (compressed where they compress).
    pub stored_bytes: u64,
}

fn bad(what: &str, why: impl Into<String>) -> ContentError {
    ContentError::Damaged {
        what: format!("prestaged content file {what}"),
        reason: why.into(),
    }
}

/// Writes `content` from `lib` to `out`: its manifest and every distinct chunk, as stored.
pub fn write(lib: &Library, content: ContentId, out: &mut impl Write) -> Result<Prestaged> {
    write_only(lib, content, |_| true, out)
}

/// [`write`], with only the chunks `wanted` says yes to: for a receiver that holds the others
/// (an import checks that every chunk the manifest needs is then present).
pub fn write_only(
    lib: &Library,
    content: ContentId,
    wanted: impl Fn(&Digest) -> bool,
    out: &mut impl Write,
) -> Result<Prestaged> {
    let manifest = lib.manifest(content)?;
    let bytes = manifest.encode();
    let io = |e: std::io::Error| ContentError::io("the prestaged content file", e);
    let id = content.to_string();
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&u16::try_from(id.len()).unwrap_or(u16::MAX).to_be_bytes())
        .map_err(io)?;
    out.write_all(id.as_bytes()).map_err(io)?;
    let len = u32::try_from(bytes.len()).map_err(|_| bad("(writing)", "the manifest is over 4 GiB"))?;
    out.write_all(&len.to_be_bytes()).map_err(io)?;
    out.write_all(&bytes).map_err(io)?;
    let (mut chunks, mut stored_bytes) = (0u64, 0u64);
    for c in manifest.unique_chunks().into_iter().filter(|c| wanted(&c.id)) {
        let stored = lib.chunk_envelope(&c.id)?.ok_or_else(|| ContentError::Missing {
            what: format!("chunk {} of {content}", c.id),
        })?;
        let len = u32::try_from(stored.len()).map_err(|_| bad("(writing)", "a chunk is over 4 GiB"))?;
        out.write_all(c.id.as_bytes()).map_err(io)?;
        out.write_all(&len.to_be_bytes()).map_err(io)?;
        out.write_all(&stored).map_err(io)?;
        chunks += 1;
        stored_bytes += stored.len() as u64;
    }
    out.flush().map_err(io)?;
    Ok(Prestaged {
        content,
        manifest_hash: Digest::of(&bytes),
        chunks,
        stored_bytes,
    })
}

/// Reads a prestaged file from `input` into `lib`: the manifest and its chunks, each checked;
/// no version is recorded (see the module documentation). Fails, keeping nothing it had not
/// checked, on a file that is not one, is cut short, or lacks a chunk.
pub fn import(lib: &Library, input: &mut impl Read) -> Result<Prestaged> {
    import_checked(lib, input, None, envelope::MAX_LEN)
}

/// [`import`] of one expected version: the stream must be `content` under manifest `hash`
/// (a manifest of at most `max_manifest` bytes), checked before any chunk is read, so a
/// stream of anything else stores nothing.
pub fn import_expected(
    lib: &Library,
    input: &mut impl Read,
    content: ContentId,
    hash: Digest,
    max_manifest: usize,
) -> Result<Prestaged> {
    import_checked(lib, input, Some((content, hash)), max_manifest)
}

fn import_checked(
    lib: &Library,
    input: &mut impl Read,
    expect: Option<(ContentId, Digest)>,
    max_manifest: usize,
) -> Result<Prestaged> {
    let mut magic = [0u8; MAGIC.len()];
    read_exact(input, &mut magic, "header")?;
    if magic != MAGIC {
        return Err(bad(
            "header",
            "this is not a pkgdist prestaged content file (or of a newer format)",
        ));
    }
    let id_len = usize::from(u16::from_be_bytes(read_array(input, "content ID")?));
    let mut id = vec![0u8; id_len];
    read_exact(input, &mut id, "content ID")?;
    let content: ContentId = std::str::from_utf8(&id)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("content ID", "it is not a content ID such as PS100001.3"))?;
    if expect.is_some_and(|(c, _)| c != content) {
        return Err(bad("content ID", format!("it is {content}, not the version expected")));
    }
    let len = u32::from_be_bytes(read_array(input, "manifest length")?) as usize;
    if len > envelope::MAX_LEN.min(max_manifest) {
        return Err(bad("manifest", "it is larger than any manifest may be"));
    }
    let mut bytes = Vec::new();
    input
        .take(len as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| ContentError::io("the prestaged content file", e))?;
    if bytes.len() != len {
        return Err(bad("manifest", "the file ends inside it"));
    }
    let manifest_hash = Digest::of(&bytes);
    if expect.is_some_and(|(_, h)| h != manifest_hash) {
        return Err(bad(
            "manifest",
            format!("it is not the manifest of {content} expected (its hash differs)"),
        ));
    }
    let manifest = Manifest::decode(&bytes)?;
    let wanted: std::collections::HashMap<Digest, ChunkRef> =
        manifest.unique_chunks().into_iter().map(|c| (c.id, c)).collect();
    let (mut chunks, mut stored_bytes) = (0u64, 0u64);
    // Each chunk once: a stream that repeats one could otherwise go on for ever.
    let mut seen = std::collections::HashSet::new();
    loop {
        let mut id = [0u8; 32];
        match input.read(&mut id[..1]) {
            Ok(0) => break,
            Ok(_) => read_exact(input, &mut id[1..], "chunk id")?,
            Err(e) => return Err(ContentError::io("the prestaged content file", e)),
        }
        let id = Digest(id);
        let chunk = wanted
            .get(&id)
            .ok_or_else(|| bad("chunks", format!("chunk {id} is not one {content} needs")))?;
        if !seen.insert(id) {
            return Err(bad("chunks", format!("chunk {id} comes twice")));
        }
        let len = u32::from_be_bytes(read_array(input, "chunk length")?) as usize;
        // A chunk as stored is at most a little larger than the chunk itself.
        if len > chunk_limit(chunk) {
            return Err(bad("chunks", format!("chunk {id} is stored larger than it can be")));
        }
        let mut stored = vec![0u8; len];
        read_exact(input, &mut stored, "chunk")?;
        lib.put_envelope(chunk, &stored)?;
        chunks += 1;
        stored_bytes += len as u64;
    }
    lib.flush()?;
    if let Some(c) = lib.missing_chunks(&manifest)?.first() {
        return Err(bad("chunks", format!("it lacks chunk {} of {content}", c.id)));
    }
    lib.hold_prestaged(content, &bytes)?;
    Ok(Prestaged {
        content,
        manifest_hash,
        chunks,
        stored_bytes,
    })
}

/// The most a stored chunk of `chunk`'s length may take: its bytes and an envelope's header.
fn chunk_limit(chunk: &ChunkRef) -> usize {
    usize::try_from(chunk.len).unwrap_or(usize::MAX).saturating_add(1024)
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], what: &str) -> Result<()> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => bad(what, "the file ends inside it"),
        _ => ContentError::io("the prestaged content file", e),
    })
}

fn read_array<const N: usize>(input: &mut impl Read, what: &str) -> Result<[u8; N]> {
    let mut b = [0u8; N];
    read_exact(input, &mut b, what)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library(dir: &std::path::Path) -> Library {
        Library::create_local(dir).unwrap()
    }

    #[test]
    fn a_version_goes_through_a_file_and_is_recorded_only_by_the_site() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("a.bin"), pkgdist_testkit::generate::Rng::new(3).bytes(700_000)).unwrap();
        std::fs::write(src.join("sub/b.txt"), b"prestaged").unwrap();
        let site = library(&dir.path().join("site"));
        let content: ContentId = "PS100001.1".parse().unwrap();
        site.snapshot(&src, content, &crate::snapshot::SnapshotOptions::default())
            .unwrap();
        let mut file = Vec::new();
        let written = write(&site, content, &mut file).unwrap();
        assert_eq!(Some(written.manifest_hash), site.manifest_id(content).unwrap());

        let dp = library(&dir.path().join("dp"));
        let got = import(&dp, &mut file.as_slice()).unwrap();
        assert_eq!(got, written);
        assert!(dp.versions().unwrap().is_empty(), "an import records no version");
        assert_eq!(dp.prestaged().unwrap(), vec![(content, got.manifest_hash)]);
        dp.gc().unwrap();
        let manifest = dp.load_manifest(&got.manifest_hash).unwrap();
        assert!(dp.missing_chunks(&manifest).unwrap().is_empty(), "held through a gc");
        // What the site's job then does: record it under the hash it trusts.
        dp.commit(content, &manifest).unwrap();
        assert!(dp.prestaged().unwrap().is_empty(), "recorded: the hold is dropped");

        // A file cut short, a chunk changed, a stranger's chunk: refused.
        let other = library(&dir.path().join("other"));
        for cut in [5, MAGIC.len() + 4, file.len() - 1] {
            assert!(import(&other, &mut &file[..cut]).is_err(), "cut at {cut}");
        }
        let mut changed = file.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        assert!(import(&other, &mut changed.as_slice()).is_err(), "a changed chunk");
        let mut stranger = file.clone();
        stranger.extend_from_slice(&[7u8; 32]);
        stranger.extend_from_slice(&1u32.to_be_bytes());
        stranger.push(0);
        let e = import(&other, &mut stranger.as_slice()).unwrap_err().to_string();
        assert!(e.contains("not one"), "{e}");
        assert!(import(&other, &mut &b"not a prestage file at all"[..]).is_err());

        // Only the chunks a receiver lacks: enough for one that holds the rest, not for one
        // that does not; a chunk sent twice is refused.
        let stored = |lib: &Library| {
            manifest
                .unique_chunks()
                .into_iter()
                .filter(|c| lib.has_chunk(&c.id).unwrap())
                .count()
        };
        let half = library(&dir.path().join("half"));
        let first = manifest.unique_chunks()[0];
        half.put_envelope(&first, &site.chunk_envelope(&first.id).unwrap().unwrap())
            .unwrap();
        half.flush().unwrap();
        let mut rest = Vec::new();
        let sent = write_only(&site, content, |id| !half.has_chunk(id).unwrap(), &mut rest).unwrap();
        assert_eq!(sent.chunks as usize, manifest.unique_chunks().len() - 1);
        assert!(rest.len() < file.len());
        assert_eq!(
            import(&half, &mut rest.as_slice()).unwrap().manifest_hash,
            got.manifest_hash
        );
        assert_eq!(stored(&half), manifest.unique_chunks().len());
        let e = import(&library(&dir.path().join("empty")), &mut rest.as_slice())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("lacks chunk {}", first.id)), "{e}");
        let frame = rest[rest.len()
            - (32
                + 4
                + site
                    .chunk_envelope(&manifest.unique_chunks().last().unwrap().id)
                    .unwrap()
                    .unwrap()
                    .len())..]
            .to_vec();
        let mut twice = file.clone();
        twice.extend_from_slice(&frame);
        let e = import(&library(&dir.path().join("twice")), &mut twice.as_slice())
            .unwrap_err()
            .to_string();
        assert!(e.contains("comes twice"), "{e}");
    }
}
