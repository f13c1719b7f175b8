//! Bearer extraction and JWT verification on arbitrary header bytes: never a panic, and never
//! a principal from a token the key did not sign.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcpgate_guard::{Audience, ClaimRules, JwtVerifier, TokenVerifier};

fn verifier() -> &'static JwtVerifier {
    static V: OnceLock<JwtVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let mut rules = ClaimRules::for_audience(Audience::new("https://mcp.example.com/mcp"));
        rules.issuer = Some("https://issuer.example.com".into());
        JwtVerifier::builder(rules)
            .hmac_secret(b"fuzzing-secret-fuzzing-secret-32".to_vec())
            .build()
            .expect("verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, value);
    let uri: http::Uri = "/mcp".parse().unwrap();
    let Ok(token) = mcpgate_guard::bearer_token(&headers, &uri) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Random bytes never carry a valid HMAC signature.
    assert!(runtime.block_on(verifier().verify(token)).is_err());
});
