//! A manifest from a source (another DP, the parent site) is decoded before its hash is
//! known to match: decoding must never panic, and what decodes must encode back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pkgdist_core::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::decode(data) {
        assert_eq!(m.encode(), data, "a decoded manifest encodes to other bytes");
    }
});
