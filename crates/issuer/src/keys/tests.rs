use std::sync::Arc;
use std::time::Duration;

use mcpgate_guard::{Audience, ClaimRules, JwtVerifier, TokenError, TokenVerifier};
use serde_json::json;

use super::*;
use crate::store::sqlite::SqliteStore;

const AUDIENCE: &str = "https://mcp.example.com/mcp";

fn claims(subject: &str) -> Value {
    json!({ "sub": subject, "aud": AUDIENCE, "exp": 4_000_000_000u64, "grant_id": "g1" })
}

fn verifier(keys: &SigningKeys) -> JwtVerifier {
    JwtVerifier::builder(ClaimRules::for_audience(Audience::new(AUDIENCE)))
        .key_ring(keys.key_ring())
        .build()
        .unwrap()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

async fn store() -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open_temporary().await.unwrap())
}

fn options(encryption_key: Option<[u8; 32]>) -> SigningKeysOptions {
    SigningKeysOptions {
        encryption_key,
        ..SigningKeysOptions::default()
    }
}

#[tokio::test]
async fn a_signed_token_verifies_through_the_guard_key_ring() {
    let keys = SigningKeys::load(store().await, SigningKeysOptions::default())
        .await
        .unwrap();
    let token = keys.sign(&claims("alice")).unwrap();
    let principal = verifier(&keys).verify(&token).await.unwrap();
    assert_eq!(principal.subject.as_str(), "alice");
    assert_eq!(kid_of(&token), keys.active_kid().as_str());
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
}

#[tokio::test]
async fn access_tokens_can_carry_the_at_jwt_type() {
    let keys = SigningKeys::load(store().await, SigningKeysOptions::default())
        .await
        .unwrap();
    let token = keys.sign_typed(&claims("alice"), "at+jwt").unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert!(verifier(&keys).verify(&token).await.is_ok());
}

#[tokio::test]
async fn eddsa_keys_sign_tokens_the_guard_verifies() {
    let opts = SigningKeysOptions {
        algorithm: SigningAlgorithm::EdDsa,
        ..SigningKeysOptions::default()
    };
    let keys = SigningKeys::load(store().await, opts).await.unwrap();
    let token = keys.sign(&claims("alice")).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().alg,
        jsonwebtoken::Algorithm::EdDSA
    );
    assert!(verifier(&keys).verify(&token).await.is_ok());
    assert_eq!(keys.jwks()["keys"][0]["kty"], "OKP");
}

#[tokio::test]
async fn loading_again_uses_the_stored_key() {
    let store = store().await;
    let first = SigningKeys::load(store.clone(), SigningKeysOptions::default())
        .await
        .unwrap();
    let token = first.sign(&claims("alice")).unwrap();
    let second = SigningKeys::load(store.clone(), SigningKeysOptions::default())
        .await
        .unwrap();
    assert_eq!(first.active_kid(), second.active_kid());
    assert!(verifier(&second).verify(&token).await.is_ok());
    assert_eq!(store.list_signing_keys().await.unwrap().len(), 1);
}

#[tokio::test]
async fn after_rotation_old_tokens_verify_and_new_ones_carry_the_new_kid() {
    let keys = SigningKeys::load(store().await, SigningKeysOptions::default())
        .await
        .unwrap();
    let verifier = verifier(&keys);
    let old_kid = keys.active_kid();
    let old = keys.sign(&claims("alice")).unwrap();

    let new_kid = keys.rotate().await.unwrap();
    assert_ne!(new_kid, old_kid);
    assert_eq!(keys.active_kid(), new_kid);
    let new = keys.sign(&claims("bob")).unwrap();
    assert_eq!(kid_of(&new), new_kid.as_str());

    assert!(
        verifier.verify(&old).await.is_ok(),
        "old key still verifies"
    );
    assert!(verifier.verify(&new).await.is_ok());
    let mut published: Vec<String> = keys.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    published.sort();
    let mut expected = vec![old_kid.to_string(), new_kid.to_string()];
    expected.sort();
    assert_eq!(published, expected);
}

#[tokio::test]
async fn a_retired_keys_tokens_stop_verifying_even_when_cached() {
    let keys = SigningKeys::load(store().await, SigningKeysOptions::default())
        .await
        .unwrap();
    let verifier = verifier(&keys);
    let old_kid = keys.active_kid();
    let old = keys.sign(&claims("alice")).unwrap();
    assert!(
        verifier.verify(&old).await.is_ok(),
        "now in the verified cache"
    );

    keys.rotate().await.unwrap();
    keys.retire(&old_kid).await.unwrap();

    let rejection = verifier.verify(&old).await.unwrap_err();
    assert!(
        matches!(rejection.reason, TokenError::UnknownKey(_)),
        "{rejection:?}"
    );
    assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 1);
    assert!(
        verifier
            .verify(&keys.sign(&claims("bob")).unwrap())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_key_past_its_overlap_is_retired_on_reload() {
    let opts = SigningKeysOptions {
        overlap: Duration::ZERO,
        ..SigningKeysOptions::default()
    };
    let keys = SigningKeys::load(store().await, opts).await.unwrap();
    let old = keys.sign(&claims("alice")).unwrap();
    keys.rotate().await.unwrap();
    keys.reload().await.unwrap();
    assert!(verifier(&keys).verify(&old).await.is_err());
    assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_active_key_cannot_be_retired() {
    let keys = SigningKeys::load(store().await, SigningKeysOptions::default())
        .await
        .unwrap();
    let err = keys.retire(&keys.active_kid()).await.unwrap_err();
    assert!(
        matches!(err, SigningKeyError::RetiringActiveKey { .. }),
        "{err}"
    );
    let err = keys.retire(&Kid::new("nope")).await.unwrap_err();
    assert!(matches!(err, SigningKeyError::UnknownKey { .. }), "{err}");
}

#[tokio::test]
async fn another_instance_sees_a_rotation_after_reload() {
    let store = store().await;
    let here = SigningKeys::load(store.clone(), SigningKeysOptions::default())
        .await
        .unwrap();
    let there = SigningKeys::load(store.clone(), SigningKeysOptions::default())
        .await
        .unwrap();
    let new_kid = there.rotate().await.unwrap();
    let token = there.sign(&claims("alice")).unwrap();
    let verifier = verifier(&here);
    assert!(verifier.verify(&token).await.is_err(), "not known yet");
    here.reload().await.unwrap();
    assert_eq!(here.active_kid(), new_kid);
    assert!(verifier.verify(&token).await.is_ok());
}

#[tokio::test]
async fn private_keys_are_sealed_when_an_encryption_key_is_given() {
    let store = store().await;
    let keys = SigningKeys::load(store.clone(), options(Some([42; 32])))
        .await
        .unwrap();
    keys.rotate().await.unwrap();
    for record in store.list_signing_keys().await.unwrap() {
        let StoredPrivateKey::Aes256Gcm(sealed) = &record.private_key else {
            panic!("{:?} stored in the clear", record.kid);
        };
        assert!(
            material::public_of(record.algorithm, sealed).is_err(),
            "sealed bytes are not a readable key"
        );
    }
    let again = SigningKeys::load(store, options(Some([42; 32])))
        .await
        .unwrap();
    assert!(
        verifier(&again)
            .verify(&keys.sign(&claims("alice")).unwrap())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn private_keys_are_stored_plain_without_an_encryption_key() {
    let store = store().await;
    SigningKeys::load(store.clone(), options(None))
        .await
        .unwrap();
    let records = store.list_signing_keys().await.unwrap();
    assert!(matches!(records[0].private_key, StoredPrivateKey::Plain(_)));
}

#[tokio::test]
async fn a_wrong_encryption_key_fails_to_load_with_a_clear_error() {
    let store = store().await;
    let kid = SigningKeys::load(store.clone(), options(Some([1; 32])))
        .await
        .unwrap()
        .active_kid();
    let err = SigningKeys::load(store, options(Some([2; 32])))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SigningKeyError::WrongEncryptionKey { kid: k } if *k == kid),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("not the one it was stored with"),
        "{err}"
    );
}

#[tokio::test]
async fn an_encrypted_key_without_the_encryption_key_fails_to_load() {
    let store = store().await;
    SigningKeys::load(store.clone(), options(Some([1; 32])))
        .await
        .unwrap();
    let err = SigningKeys::load(store, options(None)).await.unwrap_err();
    assert!(
        matches!(err, SigningKeyError::EncryptionKeyMissing { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_private_key_that_does_not_match_its_public_key_is_refused() {
    let store = store().await;
    let mut record = new_key(
        None,
        SigningAlgorithm::Es256,
        KeyState::Active,
        SystemTime::now(),
    )
    .unwrap();
    let other = new_key(
        None,
        SigningAlgorithm::Es256,
        KeyState::Active,
        SystemTime::now(),
    )
    .unwrap();
    record.public_jwk = other.public_jwk;
    store.insert_signing_key(&record).await.unwrap();
    let err = SigningKeys::load(store, options(None)).await.unwrap_err();
    assert!(matches!(err, SigningKeyError::Unusable { .. }), "{err:?}");
}

#[tokio::test]
async fn the_jwks_has_public_members_only() {
    let store = store().await;
    let keys = SigningKeys::load(store.clone(), SigningKeysOptions::default())
        .await
        .unwrap();
    keys.rotate().await.unwrap();
    // Even a stored JWK carrying a private member would not be echoed.
    let jwks = keys.jwks();
    let published = jwks["keys"].as_array().unwrap();
    assert_eq!(published.len(), 2);
    for key in published {
        let mut members: Vec<&str> = key
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
        assert_eq!(key["use"], "sig");
        assert_eq!(key["alg"], "ES256");
    }
    let text = jwks.to_string();
    for record in store.list_signing_keys().await.unwrap() {
        let StoredPrivateKey::Plain(pkcs8) = &record.private_key else {
            unreachable!("no encryption key given")
        };
        // ECPrivateKey (RFC 5915): version 1, then the 32-byte private scalar.
        let at = pkcs8
            .windows(5)
            .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
            .expect("an ECPrivateKey")
            + 5;
        use base64::Engine as _;
        let d = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&pkcs8[at..at + 32]);
        assert!(!text.contains(&d), "private scalar published");
    }
}

#[tokio::test]
async fn a_stored_jwk_with_private_members_is_published_without_them() {
    let store = store().await;
    let mut record = new_key(
        None,
        SigningAlgorithm::Es256,
        KeyState::Active,
        SystemTime::now(),
    )
    .unwrap();
    record.public_jwk["d"] = json!("c2VjcmV0");
    store.insert_signing_key(&record).await.unwrap();
    let keys = SigningKeys::load(store, options(None)).await.unwrap();
    assert!(keys.jwks()["keys"][0].get("d").is_none());
}
