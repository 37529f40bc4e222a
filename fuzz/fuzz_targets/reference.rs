//! Image references: parsing never panics, and what parses prints as a reference that parses
//! back to the same thing.
#![no_main]

use lade::reference::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Reference::parse(s) {
        let again = Reference::parse(&r.to_string()).expect("a printed reference parses");
        assert_eq!(again.to_string(), r.to_string());
        let _ = r.parse_report();
    }
});
