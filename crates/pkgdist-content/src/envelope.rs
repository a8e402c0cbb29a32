//! How a chunk (or manifest) is stored: a 5-byte header, then the bytes raw or zstd-compressed.
//!
//! ```text
//! byte 0     codec: 0 raw, 1 zstd
//! bytes 1-4  uncompressed length, u32 little-endian
//! rest       payload
//! ```
//!
//! Compression is tried only where it pays: a 4 KiB sample from the middle of the data is
//! compressed first, and data whose sample does not shrink by a tenth is stored raw. OS images
//! and installers are mostly compressed already; testing a sample keeps their ingest at disk
//! speed instead of zstd speed.

use std::fmt;

const RAW: u8 = 0;
const ZSTD: u8 = 1;
const HEADER: usize = 5;
const SAMPLE: usize = 4096;
/// Largest object the envelope accepts (the largest chunk FastCDC can make is 16 MiB, and a
/// manifest of a very large package is bigger); a header claiming more is damage.
pub const MAX_LEN: usize = 1 << 30;
/// zstd level 1: ~3× faster than level 3 here for nearly the same ratio on package content.
const LEVEL: i32 = 1;

/// Why stored bytes could not be unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable(pub &'static str);

impl fmt::Display for Undecodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A reusable compressor with its own buffers; keep one per thread. Reusing them keeps the
/// ingest path free of per-chunk allocations (fresh pages cost a page fault per 4 KiB).
pub struct Packer {
    zstd: Option<zstd::bulk::Compressor<'static>>,
    /// The envelope handed out by [`Packer::pack`].
    out: Vec<u8>,
    /// Compressor output.
    scratch: Vec<u8>,
}

impl fmt::Debug for Packer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packer").finish_non_exhaustive()
    }
}

impl Default for Packer {
    fn default() -> Self {
        Self::new()
    }
}

impl Packer {
    pub fn new() -> Self {
        // If zstd cannot allocate a context we simply store raw.
        Self {
            zstd: zstd::bulk::Compressor::new(LEVEL).ok(),
            out: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Packs `data` into an envelope, compressed when that saves at least ~5%. The result
    /// borrows the packer's buffer until the next call.
    pub fn pack(&mut self, data: &[u8]) -> &[u8] {
        let compressed = self.compress(data);
        self.out.clear();
        self.out.push(if compressed.is_some() { ZSTD } else { RAW });
        // Callers never pack more than MAX_LEN; saturating keeps a bad call detectable on unpack.
        self.out
            .extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
        match compressed {
            Some(n) => self.out.extend_from_slice(&self.scratch[..n]),
            None => self.out.extend_from_slice(data),
        }
        &self.out
    }

    /// Compresses into `scratch` when a sample says it pays; the compressed length if it
    /// saved at least a twentieth.
    fn compress(&mut self, data: &[u8]) -> Option<usize> {
        let z = self.zstd.as_mut()?;
        if data.len() < 64 {
            return None;
        }
        let bound = zstd::zstd_safe::compress_bound(data.len());
        if self.scratch.capacity() < bound {
            self.scratch.reserve(bound - self.scratch.len());
        }
        if data.len() > 2 * SAMPLE {
            let start = data.len() / 2 - SAMPLE / 2;
            self.scratch.clear();
            let n = z
                .compress_to_buffer(&data[start..start + SAMPLE], &mut self.scratch)
                .ok()?;
            if n >= SAMPLE - SAMPLE / 10 {
                return None;
            }
        }
        self.scratch.clear();
        let n = z.compress_to_buffer(data, &mut self.scratch).ok()?;
        (n < data.len() - data.len() / 20).then_some(n)
    }
}

/// A chunk's envelope holding its bytes as they are: what a sender puts in a compressed group
/// of frames, where compressing across chunks does better than each alone.
pub fn raw(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + data.len());
    out.push(RAW);
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// Whether an envelope holds its chunk compressed.
pub fn is_compressed(stored: &[u8]) -> bool {
    stored.first() == Some(&ZSTD)
}

/// The uncompressed length an envelope's header claims, if it has a header.
pub fn declared_len(stored: &[u8]) -> Option<usize> {
    let h = stored.get(..HEADER)?;
    Some(u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize)
}

/// Unpacks an envelope. The caller still checks the hash: this only undoes the encoding.
pub fn unpack(stored: &[u8]) -> Result<Vec<u8>, Undecodable> {
    if stored.len() < HEADER {
        return Err(Undecodable("shorter than its header (truncated)"));
    }
    let len = u32::from_le_bytes([stored[1], stored[2], stored[3], stored[4]]) as usize;
    if len > MAX_LEN {
        return Err(Undecodable("header claims an impossible length"));
    }
    let payload = &stored[HEADER..];
    match stored[0] {
        RAW if payload.len() == len => Ok(payload.to_vec()),
        RAW => Err(Undecodable("length does not match its header (truncated or extended)")),
        ZSTD => match zstd::bulk::decompress(payload, len) {
            Ok(v) if v.len() == len => Ok(v),
            Ok(_) => Err(Undecodable("decompressed length does not match its header")),
            Err(_) => Err(Undecodable("compressed data is corrupt (truncated or altered)")),
        },
        _ => Err(Undecodable("unknown codec byte")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_data_is_compressed_and_random_is_not() {
        let mut p = Packer::new();
        let text = b"pkgdist content ".repeat(4096);
        let packed = p.pack(&text).to_vec();
        assert_eq!(packed[0], ZSTD);
        assert!(packed.len() < text.len() / 10);
        assert_eq!(unpack(&packed).unwrap(), text);

        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let random: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let packed = p.pack(&random).to_vec();
        assert_eq!(packed[0], RAW);
        assert_eq!(unpack(&packed).unwrap(), random);
    }

    #[test]
    fn damage_is_detected_not_panicked() {
        let mut p = Packer::new();
        let text = b"abcdefgh".repeat(10_000);
        let packed = p.pack(&text).to_vec();
        assert!(unpack(&packed[..packed.len() - 3]).is_err());
        assert!(unpack(&packed[..3]).is_err());
        let mut bad = packed.clone();
        bad[0] = 7;
        assert!(unpack(&bad).is_err());
        let raw = p.pack(b"xy").to_vec();
        assert!(unpack(&raw[..raw.len() - 1]).is_err());
    }
}
