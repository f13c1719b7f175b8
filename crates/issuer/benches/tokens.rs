//! The issuer's hot paths: signing an access token (ES256 and EdDSA), and verifying one with
//! the key ring the gateway uses in process.
//!
//! `cargo bench -p mcpgate-issuer --bench tokens`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mcpgate_guard::{Audience, ClaimRules, JwtVerifier, TokenVerifier};
use mcpgate_issuer::keys::{SigningKeys, SigningKeysOptions};
use mcpgate_issuer::store::SigningAlgorithm;
use mcpgate_issuer::store::sqlite::SqliteStore;
use serde_json::json;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for (name, algorithm) in [
        ("ES256", SigningAlgorithm::Es256),
        ("EdDSA", SigningAlgorithm::EdDsa),
    ] {
        let (keys, _store) = runtime.block_on(async {
            let store = Arc::new(SqliteStore::open_temporary().await.unwrap());
            let options = SigningKeysOptions {
                algorithm,
                ..SigningKeysOptions::default()
            };
            (
                SigningKeys::load(store.clone(), options).await.unwrap(),
                store,
            )
        });
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({
            "iss": "https://mcp.example.com", "sub": "alice", "aud": "https://mcp.example.com/mcp",
            "client_id": "mcp_abc", "scope": "mcp", "iat": now, "exp": now + 900, "jti": "x",
        });
        c.bench_function(&format!("sign access token {name}"), |b| {
            b.iter(|| black_box(keys.sign_typed(black_box(&claims), "at+jwt").unwrap()))
        });
        let mut rules = ClaimRules::for_audience(Audience::new("https://mcp.example.com/mcp"));
        rules.issuer = Some("https://mcp.example.com".into());
        let verifier = JwtVerifier::builder(rules)
            .key_ring(keys.key_ring())
            .cache(0, Duration::ZERO)
            .build()
            .unwrap();
        let token = keys.sign_typed(&claims, "at+jwt").unwrap();
        c.bench_function(
            &format!("verify own token {name} (key ring, no cache)"),
            |b| {
                b.iter(|| {
                    runtime.block_on(async {
                        black_box(verifier.verify(black_box(&token)).await.unwrap())
                    })
                })
            },
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
