//! Schedule strings (`RefreshSchedule`, ConfigMgr's interval strings) come from API
//! clients: reading them and computing the next occurrence must never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pkgdist_core::schedule::{next_after, read_from_string, write_to_string};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(tokens) = read_from_string(s) {
        let _ = write_to_string(&tokens);
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let _ = next_after(&tokens, now, &jiff::tz::TimeZone::UTC);
    }
});
