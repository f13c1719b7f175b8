//! Token verification cost: a full check (signature and claims) per algorithm, and a repeated
//! token served from the verified-token cache.
//!
//! `cargo bench -p mcpgate-guard --bench verify`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mcpgate_guard::{Audience, ClaimRules, JwtVerifier, TokenVerifier};
use mcpgate_testkit::TestKey;
use mcpgate_testkit::keys::claims;

const ISS: &str = "https://idp.example";
const AUD: &str = "https://mcp.example.com/mcp";

fn rules() -> ClaimRules {
    let mut r = ClaimRules::for_audience(Audience::new(AUD));
    r.issuer = Some(ISS.into());
    r
}

fn verifier(key: &TestKey, cached: bool) -> JwtVerifier {
    let builder = JwtVerifier::builder(rules());
    let builder = match key.alg {
        mcpgate_guard::Algorithm::HS256 => builder.hmac_secret(key.public_pem.as_bytes().to_vec()),
        _ => builder.public_key_pem(key.public_pem.as_bytes()),
    };
    let ttl = if cached {
        Duration::from_secs(300)
    } else {
        Duration::ZERO
    };
    builder.cache(10_000, ttl).build().unwrap()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys = [
        ("RS256", TestKey::rsa(1, "k1")),
        ("ES256", TestKey::ec("e1")),
        ("EdDSA", TestKey::ed("d1")),
        (
            "HS256",
            TestKey::hmac("h1", b"0123456789abcdef0123456789abcdef"),
        ),
    ];
    let mut group = c.benchmark_group("jwt_verify");
    for (name, key) in &keys {
        let token = key.sign(&claims(ISS, AUD, "alice", "mcp:read mcp:write"));
        let cold = verifier(key, false);
        group.bench_function(format!("{name}/cold"), |b| {
            b.iter(|| runtime.block_on(cold.verify(black_box(&token))).unwrap())
        });
        let warm = verifier(key, true);
        runtime.block_on(warm.verify(&token)).unwrap();
        group.bench_function(format!("{name}/cached"), |b| {
            b.iter(|| runtime.block_on(warm.verify(black_box(&token))).unwrap())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
