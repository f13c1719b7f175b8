//! URI normalisation on arbitrary text: never a panic, normal forms are stable, and a normal
//! form has no dot segments, fragment or control characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpgate_guard::uri::{normalize, normalize_template};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(once) = normalize(text) {
        let twice = normalize(&once).expect("a normal form normalises");
        assert_eq!(once, twice);
        assert!(!once.contains('#'));
        assert!(!once.chars().any(char::is_control));
        // The path (after the scheme and authority, before the query) has no dot segments and
        // no empty segments.
        let before_query = once.split('?').next().unwrap_or_default();
        let after_scheme = before_query.split_once(':').map_or("", |(_, r)| r);
        let path = match after_scheme.strip_prefix("//") {
            Some(rest) => rest.find('/').map_or("", |i| &rest[i..]),
            None => after_scheme,
        };
        for segment in path.split('/').skip(1) {
            assert!(segment != "." && segment != "..", "{once}");
        }
        assert!(!path.contains("//"), "{once}");
    }
    if let Ok(once) = normalize_template(text) {
        assert_eq!(normalize_template(&once).expect("stable"), once);
    }
});
