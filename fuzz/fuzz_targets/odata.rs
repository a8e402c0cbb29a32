//! `$filter` and the other query options come from any API client: parsing must never panic,
//! and a parsed filter printed and parsed again is the same filter (what the SQL translation
//! is built from).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pkgdist_core::odata::{Filter, Query};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let known = |_: &str| true;
    if let Ok(f) = Filter::parse(s, &known) {
        let again = Filter::parse(&f.to_string(), &known).expect("a printed filter parses");
        assert_eq!(again, f, "{s:?} printed as {f}");
    }
    let mut parts = s.splitn(5, '&');
    let mut next = || parts.next();
    let _ = Query::parse(next(), next(), next(), next(), next(), &known);
});
