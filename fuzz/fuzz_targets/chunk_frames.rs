//! The node protocol's chunk frames arrive from a source before any chunk is verified:
//! splitting a body must never panic, and frames written back give the same body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pkgdist_proto::node::frames;

fuzz_target!(|data: &[u8]| {
    if let Ok(all) = frames::parse(data) {
        let mut again = Vec::new();
        for (id, payload) in &all {
            frames::push(&mut again, id, *payload);
        }
        assert_eq!(again, data, "frames written back differ");
    }
});
