//! A delta-compressed chunk arrives from a source and is decoded against a chunk the node
//! holds before its hash is checked: decoding must never panic or allocate past the length
//! the manifest gives.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let base_len = usize::from(u16::from_le_bytes([data[0], data[1]])).min(data.len() - 4);
    let len = usize::from(u16::from_le_bytes([data[2], data[3]]));
    let (base, delta) = data[4..].split_at(base_len);
    if let Ok(out) = pkgdist_content::delta::decode(base, delta, len) {
        assert_eq!(out.len(), len, "decoded to another length");
    }
});
