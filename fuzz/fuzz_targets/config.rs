//! Configuration parsing on arbitrary TOML: never a panic; errors name a key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpgate::config::{Config, LoadError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(LoadError::Invalid(errors)) = Config::from_toml_str(text) {
        assert!(!errors.is_empty());
        assert!(errors.iter().all(|e| !e.key.is_empty()));
    }
});
