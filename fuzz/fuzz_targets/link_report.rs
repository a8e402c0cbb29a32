//! A child site's report reaches its parent as JSON: reading it must never panic, and a
//! field given twice is refused as the site's body reader refuses it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let typed = serde_json::from_slice::<pkgdist_db::Report>(data);
    if typed.is_ok() {
        // What the typed read took is JSON: the strict reader takes it too, or says why.
        let _ = pkgdist_proto::json::from_slice_strict(data);
    }
});
