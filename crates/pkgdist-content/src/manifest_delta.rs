//! A manifest on the wire: zstd-compressed, and when the receiver holds an earlier version of
//! the package, compressed with that version's manifest as the dictionary (zstd's
//! "patch-from"), so a refresh that changed a few files sends a few kilobytes of manifest
//! rather than all of it (1.7 MB for a 20,000-file package).
//!
//! The receiver checks the manifest it rebuilds against the hash it trusts, as for one sent
//! whole: a wrong base, or a damaged or hostile body, can only fail the fetch. Decoding is
//! bounded: at most `cap` bytes out, and a window of at most [`MAX_WINDOW_LOG`].

use std::io;

/// The encodings a sender may use, as the response header names them.
pub const ZSTD: &str = "zstd";

/// The largest zstd window a sender uses or a receiver accepts (2^27: 128 MiB, a manifest of
/// about three million files with its base).
pub const MAX_WINDOW_LOG: u32 = 27;

const LEVEL: i32 = 9;

/// The window that covers `base` and `bytes` together, so every match into the base is in reach.
fn window_log(base: usize, bytes: usize) -> u32 {
    let need = (base + bytes).max(1 << 20);
    (usize::BITS - (need - 1).leading_zeros()).clamp(20, MAX_WINDOW_LOG)
}

/// `bytes` compressed, against `base` when given (the receiver must hold the same base).
pub fn encode(bytes: &[u8], base: Option<&[u8]>) -> crate::Result<Vec<u8>> {
    let base = base.unwrap_or_default();
    let compress = || -> io::Result<Vec<u8>> {
        let mut c = zstd::bulk::Compressor::with_dictionary(LEVEL, base)?;
        c.set_parameter(zstd::zstd_safe::CParameter::WindowLog(window_log(
            base.len(),
            bytes.len(),
        )))?;
        c.set_parameter(zstd::zstd_safe::CParameter::EnableLongDistanceMatching(true))?;
        c.compress(bytes)
    };
    compress().map_err(|e| crate::ContentError::io("a manifest's encoding", e))
}

/// The manifest bytes `body` encodes against `base`, at most `cap` of them.
pub fn decode(body: &[u8], base: Option<&[u8]>, cap: usize) -> io::Result<Vec<u8>> {
    let mut d = zstd::bulk::Decompressor::with_dictionary(base.unwrap_or_default())?;
    d.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(MAX_WINDOW_LOG))?;
    d.decompress(body, cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_change_travels_small_and_a_wrong_base_fails() {
        let mut rng = pkgdist_testkit::generate::Rng::new(4);
        let base = rng.bytes(1_500_000);
        let mut new = base.clone();
        new[700_000..700_100].copy_from_slice(&rng.bytes(100));
        new.extend_from_slice(&rng.bytes(500));
        let whole = encode(&new, None).unwrap();
        let delta = encode(&new, Some(&base)).unwrap();
        assert!(delta.len() < 2_000, "a delta of {} bytes", delta.len());
        assert!(whole.len() > 1_000_000, "random bytes do not compress");
        assert_eq!(decode(&delta, Some(&base), 4 << 20).unwrap(), new);
        assert_eq!(decode(&whole, None, 4 << 20).unwrap(), new);
        // Another base rebuilds other bytes or fails; the cap holds.
        let other = rng.bytes(1_500_000);
        assert!(decode(&delta, Some(&other), 4 << 20).map_or(true, |b| b != new));
        assert!(decode(&whole, None, 1_000).is_err());
        assert!(decode(b"not zstd at all", None, 1_000).is_err());
    }
}
