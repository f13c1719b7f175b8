//! JWT verification: every way a token is refused, and the key sources (JWKS with rotation and
//! outages, static PEM keys, HMAC secrets).

use std::time::Duration;

use jsonwebtoken::{Algorithm, Header};
use mcpgate_guard::{
    Audience, ClaimRules, ClaimsError, JwksOptions, JwtVerifier, Malformed, TokenError,
    TokenVerifier,
};
use mcpgate_testkit::keys::{b64, claims, jwks, now};
use mcpgate_testkit::{FakeIdp, TestKey};
use serde_json::{Value, json};

const ISS: &str = "https://idp.example";
const AUD: &str = "http://127.0.0.1:8080/mcp";

fn rules() -> ClaimRules {
    let mut rules = ClaimRules::for_audience(Audience::new(AUD));
    rules.issuer = Some(ISS.into());
    rules
}

fn good_claims() -> Value {
    claims(ISS, AUD, "alice", "mcp:read mcp:write")
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

fn pem_verifier(key: &TestKey) -> JwtVerifier {
    JwtVerifier::builder(rules())
        .public_key_pem(key.public_pem.as_bytes())
        .build()
        .unwrap()
}

async fn reason(verifier: &JwtVerifier, token: &str) -> TokenError {
    verifier
        .verify(token)
        .await
        .expect_err("token must be refused")
        .reason
}

fn fast_jwks() -> JwksOptions {
    JwksOptions {
        min_refresh_interval: Duration::from_millis(200),
        ..JwksOptions::default()
    }
}

async fn jwks_verifier(idp: &FakeIdp, options: JwksOptions) -> JwtVerifier {
    JwtVerifier::builder(rules())
        .jwks(idp.jwks_url().parse().unwrap(), options)
        .build()
        .unwrap()
}

#[tokio::test]
async fn rs256_token_from_static_pem_is_accepted_with_its_claims() {
    let key = TestKey::rsa(1, "k1");
    let p = pem_verifier(&key)
        .verify(&key.sign(&good_claims()))
        .await
        .unwrap();
    assert_eq!(p.subject.as_str(), "alice");
    assert_eq!(p.client_id.as_ref().unwrap().as_str(), "test-client");
    assert!(p.scopes.contains("mcp:write"));
    assert_eq!(p.issuer.as_deref(), Some(ISS));
    assert_eq!(p.audience, [AUD]);
    assert!(p.expires_at.is_some());
    assert_eq!(p.claims["sub"], "alice");
}

#[tokio::test]
async fn es256_and_eddsa_tokens_are_accepted() {
    for key in [TestKey::ec("e1"), TestKey::ed("d1")] {
        assert!(
            pem_verifier(&key)
                .verify(&key.sign(&good_claims()))
                .await
                .is_ok(),
            "{:?}",
            key.alg
        );
    }
}

#[tokio::test]
async fn hs256_token_with_the_shared_secret_is_accepted() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let key = TestKey::hmac("h", secret);
    let v = JwtVerifier::builder(rules())
        .hmac_secret(secret.to_vec())
        .build()
        .unwrap();
    assert!(v.verify(&key.sign(&good_claims())).await.is_ok());
}

#[tokio::test]
async fn critical_header_extensions_are_refused_even_with_a_good_signature() {
    // RFC 7515 §4.1.11: a recipient that does not understand a `crit` extension MUST reject.
    let secret = b"0123456789abcdef0123456789abcdef";
    let v = JwtVerifier::builder(rules())
        .hmac_secret(secret.to_vec())
        .build()
        .unwrap();
    let signed = |header: &Value| {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(good_claims().to_string().as_bytes())
        );
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", b64(tag.as_ref()))
    };
    assert!(
        v.verify(&signed(&json!({"alg": "HS256", "typ": "JWT"})))
            .await
            .is_ok()
    );
    for header in [
        json!({"alg": "HS256", "crit": ["exp2"], "exp2": 1}),
        json!({"alg": "HS256", "b64": false, "crit": ["b64"]}),
    ] {
        assert_eq!(
            reason(&v, &signed(&header)).await,
            TokenError::Malformed(Malformed::CriticalExtension)
        );
    }
}

#[tokio::test]
async fn short_hmac_secret_is_refused_at_build() {
    assert!(
        JwtVerifier::builder(rules())
            .hmac_secret(b"short".to_vec())
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn expired_token_is_refused() {
    let key = TestKey::rsa(1, "k1");
    let token = key.sign(&with(good_claims(), "exp", json!(now() - 120)));
    let err = pem_verifier(&key).verify(&token).await.unwrap_err();
    assert!(matches!(err.reason, TokenError::Expired { .. }));
    assert_eq!(
        err.subject.unwrap().as_str(),
        "alice",
        "the log learns whose token it was"
    );
}

#[tokio::test]
async fn token_not_yet_valid_is_refused() {
    let key = TestKey::rsa(1, "k1");
    let token = key.sign(&with(good_claims(), "nbf", json!(now() + 3600)));
    assert!(matches!(
        reason(&pem_verifier(&key), &token).await,
        TokenError::NotYetValid { .. }
    ));
}

#[tokio::test]
async fn token_without_exp_is_refused() {
    let key = TestKey::rsa(1, "k1");
    let token = key.sign(&without(good_claims(), "exp"));
    assert_eq!(
        reason(&pem_verifier(&key), &token).await,
        TokenError::Claims(ClaimsError::Missing("exp"))
    );
}

#[tokio::test]
async fn wrong_issuer_is_refused() {
    let key = TestKey::rsa(1, "k1");
    let token = key.sign(&with(good_claims(), "iss", json!("https://evil.example")));
    assert!(matches!(
        reason(&pem_verifier(&key), &token).await,
        TokenError::WrongIssuer { .. }
    ));
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    let key = TestKey::rsa(1, "k1");
    let token = key.sign(&with(
        good_claims(),
        "aud",
        json!(["https://other.example/mcp"]),
    ));
    assert!(matches!(
        reason(&pem_verifier(&key), &token).await,
        TokenError::WrongAudience { .. }
    ));
}

#[tokio::test]
async fn audience_array_naming_this_resource_is_accepted() {
    let key = TestKey::rsa(1, "k1");
    let token = key.sign(&with(
        good_claims(),
        "aud",
        json!(["https://other.example", AUD]),
    ));
    assert!(pem_verifier(&key).verify(&token).await.is_ok());
}

#[tokio::test]
async fn alg_none_is_refused() {
    let key = TestKey::rsa(1, "k1");
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(good_claims().to_string().as_bytes());
    let token = format!("{header}.{payload}.");
    assert_eq!(
        reason(&pem_verifier(&key), &token).await,
        TokenError::AlgorithmNotAllowed("none".into())
    );
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // Algorithm confusion: the attacker knows the public key and uses it as an HMAC secret.
    let rsa = TestKey::rsa(1, "k1");
    let forged = TestKey::hmac("k1", rsa.public_pem.as_bytes()).sign(&good_claims());
    assert!(matches!(
        reason(&pem_verifier(&rsa), &forged).await,
        TokenError::AlgorithmNotAllowed(_)
    ));
}

#[tokio::test]
async fn algorithm_outside_the_configured_allow_list_is_refused() {
    let key = TestKey::rsa(1, "k1");
    let v = JwtVerifier::builder(rules())
        .public_key_pem(key.public_pem.as_bytes())
        .algorithms([Algorithm::PS256])
        .build()
        .unwrap();
    assert!(matches!(
        reason(&v, &key.sign(&good_claims())).await,
        TokenError::AlgorithmNotAllowed(_)
    ));
}

#[tokio::test]
async fn token_signed_by_another_key_is_refused() {
    let token = TestKey::rsa(2, "k1").sign(&good_claims());
    assert_eq!(
        reason(&pem_verifier(&TestKey::rsa(1, "k1")), &token).await,
        TokenError::BadSignature
    );
}

#[tokio::test]
async fn tampered_payload_is_refused() {
    let key = TestKey::rsa(1, "k1");
    let token = key.sign(&good_claims());
    let parts: Vec<&str> = token.split('.').collect();
    let evil = b64(with(good_claims(), "sub", json!("admin"))
        .to_string()
        .as_bytes());
    let tampered = format!("{}.{}.{}", parts[0], evil, parts[2]);
    assert_eq!(
        reason(&pem_verifier(&key), &tampered).await,
        TokenError::BadSignature
    );
}

#[tokio::test]
async fn tampered_signature_is_refused() {
    let key = TestKey::rsa(1, "k1");
    let token = key.sign(&good_claims());
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let mut sig = sig.to_owned().into_bytes();
    sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{rest}.{}", String::from_utf8(sig).unwrap());
    assert_eq!(
        reason(&pem_verifier(&key), &tampered).await,
        TokenError::BadSignature
    );
}

#[tokio::test]
async fn malformed_tokens_are_refused_as_malformed() {
    let v = pem_verifier(&TestKey::rsa(1, "k1"));
    assert_eq!(
        reason(&v, "abc").await,
        TokenError::Malformed(Malformed::SegmentCount(1))
    );
    assert_eq!(
        reason(&v, "a.b.c.d").await,
        TokenError::Malformed(Malformed::SegmentCount(4))
    );
    assert_eq!(
        reason(&v, "").await,
        TokenError::Malformed(Malformed::Empty)
    );
    assert!(matches!(
        reason(&v, "!!!.@@@.###").await,
        TokenError::Malformed(_)
    ));
    let not_json = format!("{}.{}.{}", b64(b"not json"), b64(b"{}"), b64(b"sig"));
    assert!(matches!(
        reason(&v, &not_json).await,
        TokenError::Malformed(_)
    ));
    let header = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
    let bad_payload = format!("{header}.{}.{}", b64(b"[1,2"), b64(b"sig"));
    assert!(matches!(
        reason(&v, &bad_payload).await,
        TokenError::Malformed(_) | TokenError::BadSignature
    ));
}

#[tokio::test]
async fn oversized_token_is_refused_before_parsing() {
    let v = JwtVerifier::builder(rules())
        .public_key_pem(TestKey::rsa(1, "k1").public_pem.as_bytes())
        .max_token_bytes(100)
        .build()
        .unwrap();
    let token = "x".repeat(101);
    assert_eq!(
        reason(&v, &token).await,
        TokenError::TooLarge { len: 101, max: 100 }
    );
    let default = pem_verifier(&TestKey::rsa(1, "k1"));
    assert!(matches!(
        reason(&default, &"a.b.c".repeat(2000)).await,
        TokenError::TooLarge { .. }
    ));
}

#[tokio::test]
async fn verified_token_is_cached_but_never_past_exp() {
    let key = TestKey::rsa(1, "k1");
    let v = pem_verifier(&key);
    let token = key.sign(&with(good_claims(), "exp", json!(now() + 2)));
    let a = v.verify(&token).await.unwrap();
    let b = v.verify(&token).await.unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&a, &b),
        "second check is served from the cache"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Past exp the cache no longer answers; the full check runs (and the leeway still allows it).
    let c = v.verify(&token).await.unwrap();
    assert!(!std::sync::Arc::ptr_eq(&a, &c));
}

#[tokio::test]
async fn jwks_keys_verify_and_are_fetched_once() {
    let key = TestKey::rsa(1, "k1");
    let idp = FakeIdp::start(jwks(&[&key])).await;
    let v = jwks_verifier(&idp, fast_jwks()).await;
    for _ in 0..3 {
        v.verify(&key.sign(&good_claims())).await.unwrap();
    }
    assert_eq!(idp.jwks_hits(), 1);
}

#[tokio::test]
async fn unknown_kid_triggers_one_refetch_then_is_refused() {
    let key = TestKey::rsa(1, "k1");
    let idp = FakeIdp::start(jwks(&[&key])).await;
    let v = jwks_verifier(
        &idp,
        JwksOptions {
            min_refresh_interval: Duration::from_secs(60),
            ..JwksOptions::default()
        },
    )
    .await;
    v.warm_up().await.unwrap();
    assert_eq!(idp.jwks_hits(), 1);
    let stranger = TestKey::rsa(2, "unknown").sign(&good_claims());
    assert_eq!(
        reason(&v, &stranger).await,
        TokenError::UnknownKey("unknown".into())
    );
    // A flood of made-up kids does not hammer the identity provider.
    for i in 0..5 {
        let t = TestKey::rsa(2, &format!("made-up-{i}")).sign(&good_claims());
        assert!(matches!(reason(&v, &t).await, TokenError::UnknownKey(_)));
    }
    assert!(idp.jwks_hits() <= 2, "fetched {} times", idp.jwks_hits());
}

#[tokio::test]
async fn rotated_key_is_picked_up_through_the_unknown_kid_refetch() {
    let old = TestKey::rsa(1, "old");
    let new = TestKey::rsa(2, "new");
    let idp = FakeIdp::start(jwks(&[&old])).await;
    let v = jwks_verifier(&idp, fast_jwks()).await;
    v.verify(&old.sign(&good_claims())).await.unwrap();
    idp.set_jwks(jwks(&[&old, &new]));
    tokio::time::sleep(Duration::from_millis(250)).await;
    v.verify(&new.sign(&good_claims())).await.unwrap();
}

#[tokio::test]
async fn cached_keys_keep_serving_while_the_jwks_host_is_down() {
    let key = TestKey::rsa(1, "k1");
    let idp = FakeIdp::start(jwks(&[&key])).await;
    let v = jwks_verifier(
        &idp,
        JwksOptions {
            max_age: Duration::from_millis(50),
            ..fast_jwks()
        },
    )
    .await;
    v.warm_up().await.unwrap();
    idp.set_down(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Keys are stale and the refresh fails, but the known key still verifies.
    let fresh_token = key.sign(&with(good_claims(), "jti", json!("a")));
    v.verify(&fresh_token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    v.verify(&key.sign(&with(good_claims(), "jti", json!("b"))))
        .await
        .unwrap();
    assert!(v.is_ready());
}

#[tokio::test]
async fn no_keys_and_jwks_down_fails_closed_as_unavailable() {
    let key = TestKey::rsa(1, "k1");
    let idp = FakeIdp::start(jwks(&[&key])).await;
    idp.set_down(true);
    let v = jwks_verifier(&idp, fast_jwks()).await;
    assert!(v.warm_up().await.is_err());
    assert!(!v.is_ready());
    assert!(matches!(
        reason(&v, &key.sign(&good_claims())).await,
        TokenError::Unavailable(_)
    ));
}

#[tokio::test]
async fn kid_of_one_key_with_the_algorithm_of_another_is_refused() {
    let rsa = TestKey::rsa(1, "shared");
    let ec = TestKey::ec("ec");
    let idp = FakeIdp::start(jwks(&[&rsa, &ec])).await;
    let v = jwks_verifier(&idp, fast_jwks()).await;
    // An ES256 token that claims the RSA key's kid.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("shared".into());
    let token = ec.sign_with_header(&header, &good_claims());
    assert!(matches!(
        reason(&v, &token).await,
        TokenError::AlgorithmNotAllowed(_)
    ));
}

#[tokio::test]
async fn symmetric_keys_in_a_jwks_are_ignored() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let hmac = TestKey::hmac("sym", secret);
    let rsa = TestKey::rsa(1, "k1");
    let idp = FakeIdp::start(jwks(&[&hmac, &rsa])).await;
    let v = jwks_verifier(&idp, fast_jwks()).await;
    let token = hmac.sign(&good_claims());
    assert!(v.verify(&token).await.is_err());
}

#[tokio::test]
async fn keys_whose_key_ops_leave_out_verify_are_ignored() {
    let enc = TestKey::rsa(1, "enc");
    let sig = TestKey::rsa(2, "sig");
    let mut set = jwks(&[&enc, &sig]);
    for jwk in set["keys"].as_array_mut().unwrap() {
        let object = jwk.as_object_mut().unwrap();
        object.remove("use");
        let ops = if object["kid"] == "enc" {
            json!(["encrypt"])
        } else {
            json!(["verify"])
        };
        object.insert("key_ops".into(), ops);
    }
    let idp = FakeIdp::start(set).await;
    let v = jwks_verifier(&idp, fast_jwks()).await;
    assert!(v.verify(&sig.sign(&good_claims())).await.is_ok());
    assert!(v.verify(&enc.sign(&good_claims())).await.is_err());
}

#[tokio::test]
async fn rsa_keys_under_2048_bits_are_not_loaded() {
    let strong = TestKey::rsa(1, "strong");
    let mut set = jwks(&[&strong, &TestKey::rsa(2, "weak")]);
    // A 1024-bit modulus (0x80 then zeros: exactly 1024 bits).
    let mut n = vec![0u8; 128];
    n[0] = 0x80;
    set["keys"][1]["n"] = json!(mcpgate_testkit::keys::b64(&n));
    let keys: jsonwebtoken::jwk::JwkSet = serde_json::from_value(set).unwrap();
    let weak =
        mcpgate_guard::VerificationKey::from_jwk(&keys.keys[1], &mcpgate_guard::ALL_ALGORITHMS);
    assert!(
        weak.unwrap_err().to_string().contains("2048"),
        "the reason names the size"
    );
    assert!(
        mcpgate_guard::VerificationKey::from_jwk(&keys.keys[0], &mcpgate_guard::ALL_ALGORITHMS)
            .is_ok()
    );
}

#[tokio::test]
async fn a_claim_named_twice_refuses_the_token_at_any_depth() {
    let key = TestKey::rsa(1, "k1");
    let v = pem_verifier(&key);
    let good = good_claims();
    let mut payload = serde_json::to_string(&good).unwrap();
    payload.pop();
    for extra in [
        r#","scope":"none","scope":"admin"}"#,
        r#","client_id":"a","client_id":"b"}"#,
        r#","realm_access":{"roles":["user"],"roles":["admin"]}}"#,
    ] {
        let body = format!("{payload}{extra}");
        let token = key.sign_raw(&body);
        assert!(
            matches!(
                reason(&v, &token).await,
                TokenError::Malformed(mcpgate_guard::Malformed::RepeatedClaim)
            ),
            "{extra}"
        );
    }
    let body = format!("{payload},\"realm_access\":{{\"roles\":[\"user\"]}}}}");
    assert!(v.verify(&key.sign_raw(&body)).await.is_ok());
}

#[tokio::test]
async fn token_without_kid_is_tried_against_the_keys() {
    let key = TestKey::ec("e1");
    let idp = FakeIdp::start(jwks(&[&TestKey::rsa(1, "k1"), &key])).await;
    let v = jwks_verifier(&idp, fast_jwks()).await;
    let token = key.sign_with_header(&Header::new(Algorithm::ES256), &good_claims());
    assert!(v.verify(&token).await.is_ok());
}

#[tokio::test]
async fn concurrent_first_uses_of_a_rotated_key_all_succeed() {
    let old = TestKey::rsa(1, "old");
    let new = TestKey::rsa(2, "new");
    let idp = FakeIdp::start(jwks(&[&old])).await;
    let v = std::sync::Arc::new(
        jwks_verifier(
            &idp,
            JwksOptions {
                min_refresh_interval: Duration::from_millis(300),
                ..JwksOptions::default()
            },
        )
        .await,
    );
    v.warm_up().await.unwrap();
    idp.set_jwks(jwks(&[&old, &new]));
    tokio::time::sleep(Duration::from_millis(350)).await;
    // Ten requests race to the unknown kid: one fetches, the interval refuses the others a
    // fetch of their own, and they must all find the key the first one loaded.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let v = std::sync::Arc::clone(&v);
            let token = new.sign(&with(good_claims(), "jti", json!(i)));
            tokio::spawn(async move { v.verify(&token).await })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.is_ok(), "{:?}", r.err());
    }
    assert_eq!(idp.jwks_hits(), 2);
}

#[tokio::test]
async fn unverified_header_values_are_made_safe_for_the_log() {
    let idp = FakeIdp::start(jwks(&[&TestKey::rsa(1, "k1")])).await;
    let v = jwks_verifier(&idp, fast_jwks()).await;
    let evil_kid = format!("x\nINFO forged log line{}", "y".repeat(200));
    let token = TestKey::rsa(2, &evil_kid).sign(&good_claims());
    match reason(&v, &token).await {
        TokenError::UnknownKey(kid) => {
            assert!(!kid.contains('\n'), "{kid}");
            assert!(kid.chars().count() < 80, "{kid}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn withdrawn_key_is_no_longer_trusted_from_the_cache() {
    let old = TestKey::rsa(1, "old");
    let new = TestKey::rsa(2, "new");
    let idp = FakeIdp::start(jwks(&[&old])).await;
    let v = jwks_verifier(&idp, fast_jwks()).await;
    let token = old.sign(&good_claims());
    v.verify(&token).await.unwrap();
    // The identity provider withdraws the old key (say, it leaked); the next refresh sees it.
    idp.set_jwks(jwks(&[&new]));
    tokio::time::sleep(Duration::from_millis(250)).await;
    v.verify(&new.sign(&good_claims())).await.unwrap();
    assert!(matches!(
        reason(&v, &token).await,
        TokenError::UnknownKey(_)
    ));
}

#[tokio::test]
async fn unknown_kid_while_the_jwks_host_is_down_is_unavailable_not_invalid() {
    let key = TestKey::rsa(1, "k1");
    let idp = FakeIdp::start(jwks(&[&key])).await;
    let v = jwks_verifier(&idp, fast_jwks()).await;
    v.warm_up().await.unwrap();
    idp.set_down(true);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let rotated = TestKey::rsa(2, "rotated").sign(&good_claims());
    assert!(matches!(
        reason(&v, &rotated).await,
        TokenError::Unavailable(_)
    ));
    v.verify(&key.sign(&good_claims())).await.unwrap();
}

fn ring_key(key: &TestKey) -> mcpgate_guard::VerificationKey {
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(jwks(&[key])["keys"][0].clone()).unwrap();
    mcpgate_guard::VerificationKey::from_jwk(&jwk, &mcpgate_guard::ALL_ALGORITHMS).unwrap()
}

#[tokio::test]
async fn keys_supplied_in_process_verify_and_a_withdrawn_key_stops_trusting_cached_tokens() {
    let k1 = TestKey::rsa(1, "k1");
    let k2 = TestKey::rsa(2, "k2");
    let ring = std::sync::Arc::new(mcpgate_guard::KeyRing::new(vec![ring_key(&k1)]));
    let verifier = JwtVerifier::builder(rules())
        .key_ring(std::sync::Arc::clone(&ring))
        .build()
        .unwrap();
    assert!(verifier.is_ready());
    let old = k1.sign(&good_claims());
    assert!(verifier.verify(&old).await.is_ok());
    assert!(verifier.known_good(&old));
    // Rotation that keeps k1 (k2 added): still trusted.
    ring.replace(vec![ring_key(&k1), ring_key(&k2)]);
    assert!(verifier.known_good(&old));
    let new = k2.sign(&good_claims());
    assert!(verifier.verify(&new).await.is_ok());
    // k1 withdrawn: its tokens are refused, cached or not.
    ring.replace(vec![ring_key(&k2)]);
    assert!(!verifier.known_good(&old));
    assert!(matches!(
        reason(&verifier, &old).await,
        TokenError::UnknownKey(_)
    ));
    assert!(verifier.verify(&new).await.is_ok());
    // An empty ring is not ready and refuses everything.
    ring.replace(vec![]);
    assert!(!verifier.is_ready());
    assert!(verifier.verify(&new).await.is_err());
}

struct Revoked(std::sync::Mutex<Vec<String>>);

impl mcpgate_guard::RevocationCheck for Revoked {
    fn is_revoked(&self, principal: &mcpgate_guard::Principal) -> bool {
        let jti = principal.claims.get("jti").and_then(Value::as_str);
        jti.is_some_and(|j| self.0.lock().unwrap().iter().any(|r| r == j))
    }
}

#[tokio::test]
async fn a_revocation_applies_at_once_to_cached_tokens_too() {
    let key = TestKey::rsa(1, "k1");
    let revoked = std::sync::Arc::new(Revoked(std::sync::Mutex::new(Vec::new())));
    let verifier = JwtVerifier::builder(rules())
        .public_key_pem(key.public_pem.as_bytes())
        .revocation(revoked.clone())
        .build()
        .unwrap();
    let a = key.sign(&with(good_claims(), "jti", json!("grant-a")));
    let b = key.sign(&with(good_claims(), "jti", json!("grant-b")));
    assert!(verifier.verify(&a).await.is_ok());
    assert!(verifier.verify(&b).await.is_ok());
    assert!(verifier.known_good(&a));
    revoked.0.lock().unwrap().push("grant-a".into());
    let refused = verifier.verify(&a).await.unwrap_err();
    assert_eq!(refused.reason, TokenError::Revoked);
    assert_eq!(refused.subject.as_ref().map(|s| s.as_str()), Some("alice"));
    assert!(!verifier.known_good(&a));
    assert!(verifier.verify(&b).await.is_ok());
}

#[tokio::test]
async fn a_principal_stays_valid_as_long_as_its_token_would_verify_and_no_longer() {
    let key = TestKey::rsa(1, "k1");
    let revoked = std::sync::Arc::new(Revoked(std::sync::Mutex::new(Vec::new())));
    let verifier = JwtVerifier::builder(rules())
        .public_key_pem(key.public_pem.as_bytes())
        .revocation(revoked.clone())
        .build()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Expired 10 s ago: still inside the 30 s leeway, so it verifies and stays valid.
    let late = key.sign(&with(
        with(good_claims(), "exp", json!(now - 10)),
        "jti",
        json!("grant-a"),
    ));
    let principal = verifier.verify(&late).await.unwrap();
    assert!(verifier.still_valid(&principal));
    revoked.0.lock().unwrap().push("grant-a".into());
    assert!(!verifier.still_valid(&principal), "revoked");
    // Past the leeway: no longer valid, as it no longer verifies.
    let mut gone = (*principal).clone();
    gone.expires_at = Some(std::time::SystemTime::now() - Duration::from_secs(31));
    gone.claims.remove("jti");
    assert!(!verifier.still_valid(&gone));
}
