//! Chunk frames in groups, compressed across chunks (`zstd-groups`, asked for with
//! `x-pkgdist-frames-accept`). A chunk is stored compressed on its own, fast (`envelope`,
//! zstd level 1), which does badly for small files (a 3 KiB Perl module compresses little
//! alone, much among its neighbours) and leaves a tenth on the table for the rest. So, for a
//! receiver that asks, a sender puts every chunk that is stored compressed into the group as
//! it is (a raw envelope) and compresses the group, about a mebibyte, at [`LEVEL`]: on a
//! Debian servicing (perl, python3, curl…) that is fewer bytes than `rsync -z` moves.
//! Chunks stored raw (they did not compress: images, installers) keep their envelopes, and a
//! group that is mostly such goes as it is, costing no CPU. The price is the sender's CPU on
//! compressible content, about 120 MB/s a core: a WAN's rate, well under a LAN's. The
//! receiver checks every chunk against its hash as before and stores a chunk that came raw
//! compressed again (`Packer`), as it would have come.
//!
//! Body: groups one after another, each `u8 kind` (0 as is, 1 zstd), `u32` length on the
//! wire, `u32` length of its frames (big-endian), then the bytes.

/// The group's zstd level: what `rsync -z`'s level 3 does on a whole stream, and a little
/// more, since a group is only a mebibyte of context.
pub const LEVEL: i32 = 5;
const HEADER: usize = 9;

/// One group as it goes on the wire: compressed if `compressible` (the bytes of chunks put in
/// raw) make up a quarter of it or more, and compression paid.
pub fn seal(frames: &[u8], compressible: usize) -> Vec<u8> {
    let compressed = (compressible * 4 >= frames.len())
        .then(|| zstd::bulk::compress(frames, LEVEL).ok())
        .flatten()
        .filter(|c| c.len() < frames.len());
    let (kind, body) = match &compressed {
        Some(c) => (1u8, c.as_slice()),
        None => (0u8, frames),
    };
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.push(kind);
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(frames.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Why a grouped body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("chunk frame groups: {0}")]
pub struct GroupError(&'static str);

/// The frames of a grouped body, at most `cap` bytes of them.
pub fn open(mut body: &[u8], cap: usize) -> Result<Vec<u8>, GroupError> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let h = body.get(..HEADER).ok_or(GroupError("a group header is cut short"))?;
        let wire = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
        let raw = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) as usize;
        let bytes = body
            .get(HEADER..HEADER + wire)
            .ok_or(GroupError("a group is cut short"))?;
        if out.len() + raw > cap {
            return Err(GroupError("the groups hold more than the chunks asked for"));
        }
        match h[0] {
            0 if wire == raw => out.extend_from_slice(bytes),
            1 => {
                let frames =
                    zstd::bulk::decompress(bytes, raw).map_err(|_| GroupError("a group does not decompress"))?;
                if frames.len() != raw {
                    return Err(GroupError("a group's length does not match its header"));
                }
                out.extend_from_slice(&frames);
            }
            _ => return Err(GroupError("a group of an unknown kind")),
        }
        body = &body[HEADER + wire..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_round_trip_and_damage_is_refused() {
        let small = b"use strict; use warnings; sub x { 1 }\n".repeat(200);
        let a = seal(&small, small.len());
        assert_eq!(a[0], 1, "small chunks compress together");
        let random = pkgdist_testkit::generate::Rng::new(2).bytes(100_000);
        let b = seal(&random, 0);
        assert_eq!(b[0], 0, "a group of large chunks goes as it is");
        let body = [a.clone(), b].concat();
        let opened = open(&body, 1 << 20).unwrap();
        assert_eq!(opened, [small.clone(), random].concat());
        assert!(open(&body, 1000).is_err(), "over the cap");
        assert!(open(&body[..body.len() - 1], 1 << 20).is_err());
        let mut bad = a.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(open(&bad, 1 << 20).map_or(true, |f| f != small));
        assert!(open(&[7, 0, 0, 0, 0, 0, 0, 0, 0], 10).is_err());
    }
}
