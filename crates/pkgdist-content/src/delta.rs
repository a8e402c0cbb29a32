//! Chunks sent as the difference from chunks the receiver already holds.
//!
//! Content-defined chunks move only what changed at chunk granularity: a 1 KiB edit in a file
//! resends the whole chunk around it (64 KiB on average, more for the size-biased chunk that
//! an edit tends to land in). When the receiver holds the previous version of the same file, the
//! chunks at the same place are almost the same bytes, so the sender compresses the new chunk
//! with them as a zstd *prefix* (a single-use dictionary) and only the difference crosses the
//! wire. The receiver rebuilds the chunk with the same prefix and checks its BLAKE3 as for any
//! chunk: a wrong base or a corrupt delta is refused, never stored.
//!
//! Which old chunks make a good base is decided by the receiver ([`bases`]): it knows what it
//! holds. The sender only uses a delta when it is clearly smaller than the stored chunk.

use std::collections::{HashMap, HashSet};

use pkgdist_core::{ChunkRef, Digest, Manifest};
use zstd::zstd_safe::{CCtx, CParameter, DCtx};

use crate::envelope::{self, Undecodable};
use crate::{ContentError, Library, Result};

/// At most this many base chunks per chunk.
pub const MAX_BASES: usize = 4;
/// At most this many base bytes per chunk (zstd keeps the prefix in its window).
pub const MAX_BASE_BYTES: usize = 1 << 20;
/// zstd level for deltas: level 3 finds long matches in the prefix well and is still fast;
/// deltas are made only for changed chunks, never on the bulk path.
const LEVEL: i32 = 3;
/// 4 MiB window: reaches back over the whole prefix (≤ 1 MiB) from anywhere in a chunk of the
/// default parameters (≤ 256 KiB). The receiver accepts no larger window.
const WINDOW_LOG: u32 = 22;

/// The chunks of `previous` that lie where each chunk of `next` in `wanted` lies, in the same
/// file: the receiver holds `previous`, so those are the bases it offers.
///
/// A chunk's place in the old file is found from the last chunk before it that the two files
/// share (an insertion earlier in the file shifts everything after it); with none, the same
/// offset. Chunks of files that are new in `next` get no base.
pub fn bases(previous: &Manifest, next: &Manifest, wanted: &HashSet<Digest>) -> HashMap<Digest, Vec<ChunkRef>> {
    let mut out: HashMap<Digest, Vec<ChunkRef>> = HashMap::new();
    for (entry, file) in next.files() {
        let Some(old) = previous.entry(entry.path.as_str()).and_then(|e| e.file()) else {
            continue;
        };
        if old.chunks.is_empty() {
            continue;
        }
        let mut starts = Vec::with_capacity(old.chunks.len());
        let mut first_at = HashMap::with_capacity(old.chunks.len());
        let mut at = 0u64;
        for c in &old.chunks {
            starts.push(at);
            first_at.entry(c.id).or_insert(at);
            at += u64::from(c.len);
        }
        let mut shift = 0i64; // old offset minus new offset, from the last shared chunk
        let mut at = 0u64;
        for c in &file.chunks {
            if let Some(&o) = first_at.get(&c.id) {
                shift = o as i64 - at as i64;
            } else if wanted.contains(&c.id) && !out.contains_key(&c.id) {
                let from = (at as i64 + shift).max(0) as u64;
                let picked = overlapping(&old.chunks, &starts, from, u64::from(c.len));
                if !picked.is_empty() {
                    out.insert(c.id, picked);
                }
            }
            at += u64::from(c.len);
        }
    }
    out
}

/// The old chunks overlapping `[from, from + len)` (at least the one at `from`), within the
/// limits on base count and bytes.
fn overlapping(chunks: &[ChunkRef], starts: &[u64], from: u64, len: u64) -> Vec<ChunkRef> {
    // The chunk containing `from` (or the last one, when `from` is past the old file's end).
    let first = starts.partition_point(|&s| s <= from).saturating_sub(1);
    let mut picked = Vec::new();
    let mut bytes = 0usize;
    for (c, &s) in chunks[first..].iter().zip(&starts[first..]) {
        if (!picked.is_empty() && s >= from + len)
            || picked.len() == MAX_BASES
            || bytes + c.len as usize > MAX_BASE_BYTES
        {
            break;
        }
        bytes += c.len as usize;
        picked.push(*c);
    }
    picked
}

/// `data` compressed against `base`; `None` when zstd fails (the caller sends the chunk whole).
pub fn encode(base: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let mut cctx = CCtx::try_create()?;
    cctx.set_parameter(CParameter::CompressionLevel(LEVEL)).ok()?;
    cctx.set_parameter(CParameter::WindowLog(WINDOW_LOG)).ok()?;
    cctx.ref_prefix(base).ok()?;
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
    cctx.compress2(&mut out, data).ok()?;
    Some(out)
}

/// Rebuilds `len` bytes from `delta` and the `base` it was made against. The caller still
/// checks the hash: a wrong base decodes to wrong bytes, or fails here.
pub fn decode(base: &[u8], delta: &[u8], len: usize) -> Result<Vec<u8>, Undecodable> {
    let mut dctx = DCtx::try_create().ok_or(Undecodable("cannot allocate a zstd context"))?;
    dctx.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(WINDOW_LOG))
        .map_err(|_| Undecodable("cannot set the delta window"))?;
    dctx.ref_prefix(base)
        .map_err(|_| Undecodable("cannot use the base as a prefix"))?;
    let mut out = Vec::with_capacity(len);
    match dctx.decompress(&mut out, delta) {
        Ok(n) if n == len => Ok(out),
        Ok(_) => Err(Undecodable("the delta decodes to another length than the chunk's")),
        Err(_) => Err(Undecodable("the delta is corrupt or was made against another base")),
    }
}

/// Sender: the delta for a chunk stored as `stored`, against the `bases` a receiver named,
/// when it is at least a tenth smaller than the stored chunk. `None` (send it whole) when a
/// base is not here, the bases are too large, or the delta does not pay.
pub fn for_sending(lib: &Library, stored: &[u8], bases: &[Digest]) -> Option<Vec<u8>> {
    if bases.is_empty() || bases.len() > MAX_BASES {
        return None;
    }
    let data = envelope::unpack(stored).ok()?;
    let mut base = Vec::new();
    for id in bases {
        base.extend_from_slice(&lib.chunk_bytes(id).ok()??);
        if base.len() > MAX_BASE_BYTES {
            return None;
        }
    }
    let delta = encode(&base, &data)?;
    (delta.len() < stored.len() - stored.len() / 10).then_some(delta)
}

/// Receiver: `chunk`'s bytes from a delta against `bases` (held here), checked against its
/// hash. A base found damaged is deleted, so that the next plan no longer offers it.
pub fn rebuild(lib: &Library, bases: &[ChunkRef], delta: &[u8], chunk: &ChunkRef) -> Result<Vec<u8>> {
    let mut base = Vec::new();
    for b in bases {
        match lib.read_chunk(b) {
            Ok(bytes) => base.extend_from_slice(&bytes),
            Err(e) => {
                if matches!(e, ContentError::Damaged { .. }) {
                    lib.keep_if_sound(b)?;
                }
                return Err(e);
            }
        }
    }
    let damaged = |reason: String| ContentError::Damaged {
        what: format!("received chunk {} (sent as a delta)", chunk.id),
        reason,
    };
    let data = decode(&base, delta, chunk.len as usize).map_err(|e| damaged(e.to_string()))?;
    if Digest::of(&data) != chunk.id {
        return Err(damaged("it does not rebuild to its hash".into()));
    }
    Ok(data)
}

#[cfg(test)]
mod tests;
