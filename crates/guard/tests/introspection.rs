//! RFC 7662 introspection: answers accepted and refused, and failing closed when the endpoint
//! is down or slow.

use std::time::Duration;

use mcpgate_guard::{
    Audience, ClaimRules, ClientAuth, IntrospectionVerifier, TokenError, TokenVerifier,
};
use mcpgate_testkit::FakeIdp;
use mcpgate_testkit::idp::{INTROSPECTION_CLIENT_ID, INTROSPECTION_CLIENT_SECRET};
use mcpgate_testkit::keys::now;
use serde_json::json;

const AUD: &str = "http://127.0.0.1:8080/mcp";
const ISS: &str = "https://idp.example";

fn verifier(idp: &FakeIdp, auth: ClientAuth) -> IntrospectionVerifier {
    let mut rules = ClaimRules::for_audience(Audience::new(AUD));
    rules.issuer = Some(ISS.into());
    IntrospectionVerifier::builder(idp.introspection_url().parse().unwrap(), auth, rules)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

fn basic() -> ClientAuth {
    ClientAuth::Basic {
        client_id: INTROSPECTION_CLIENT_ID.into(),
        client_secret: INTROSPECTION_CLIENT_SECRET.into(),
    }
}

fn active(aud: &str) -> serde_json::Value {
    json!({"active": true, "sub": "bob", "client_id": "cli", "scope": "mcp", "aud": aud, "iss": ISS, "exp": now() + 600})
}

#[tokio::test]
async fn active_token_is_accepted_and_cached() {
    let idp = FakeIdp::start(json!({"keys": []})).await;
    idp.set_introspection("opaque-1", active(AUD));
    let v = verifier(&idp, basic());
    let p = v.verify("opaque-1").await.unwrap();
    assert_eq!(p.subject.as_str(), "bob");
    assert!(p.scopes.contains("mcp"));
    v.verify("opaque-1").await.unwrap();
    assert_eq!(
        idp.introspection_hits(),
        1,
        "the second check is served from the cache"
    );
}

#[tokio::test]
async fn concurrent_checks_of_one_token_share_one_call() {
    let idp = FakeIdp::start(json!({"keys": []})).await;
    idp.set_introspection("opaque-1", active(AUD));
    idp.set_delay(Duration::from_millis(100));
    let v = verifier(&idp, basic());
    let (a, b, c) = tokio::join!(
        v.verify("opaque-1"),
        v.verify("opaque-1"),
        v.verify("opaque-1")
    );
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
    assert_eq!(idp.introspection_hits(), 1);
}

#[tokio::test]
async fn inactive_token_is_refused() {
    let idp = FakeIdp::start(json!({"keys": []})).await;
    idp.set_introspection("revoked", json!({"active": false}));
    let v = verifier(&idp, basic());
    assert_eq!(
        v.verify("revoked").await.unwrap_err().reason,
        TokenError::Inactive
    );
    assert_eq!(
        v.verify("never-issued").await.unwrap_err().reason,
        TokenError::Inactive
    );
}

#[tokio::test]
async fn token_for_another_audience_is_refused() {
    let idp = FakeIdp::start(json!({"keys": []})).await;
    idp.set_introspection("other", active("https://other.example/mcp"));
    let v = verifier(&idp, basic());
    let err = v.verify("other").await.unwrap_err();
    assert!(matches!(err.reason, TokenError::WrongAudience { .. }));
    assert_eq!(err.subject.unwrap().as_str(), "bob");
}

#[tokio::test]
async fn expired_answer_is_refused() {
    let idp = FakeIdp::start(json!({"keys": []})).await;
    let mut answer = active(AUD);
    answer["exp"] = json!(now() - 3600);
    idp.set_introspection("old", answer);
    assert!(matches!(
        verifier(&idp, basic())
            .verify("old")
            .await
            .unwrap_err()
            .reason,
        TokenError::Expired { .. }
    ));
}

#[tokio::test]
async fn endpoint_down_fails_closed() {
    let idp = FakeIdp::start(json!({"keys": []})).await;
    idp.set_introspection("opaque-1", active(AUD));
    idp.set_down(true);
    let err = verifier(&idp, basic())
        .verify("opaque-1")
        .await
        .unwrap_err();
    assert!(matches!(err.reason, TokenError::Unavailable(_)));
}

#[tokio::test]
async fn endpoint_unreachable_fails_closed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    drop(listener);
    let rules = ClaimRules::for_audience(Audience::new(AUD));
    let v = IntrospectionVerifier::builder(url.parse().unwrap(), basic(), rules)
        .build()
        .unwrap();
    assert!(matches!(
        v.verify("t").await.unwrap_err().reason,
        TokenError::Unavailable(_)
    ));
}

#[tokio::test]
async fn slow_endpoint_times_out_and_fails_closed() {
    let idp = FakeIdp::start(json!({"keys": []})).await;
    idp.set_introspection("opaque-1", active(AUD));
    idp.set_delay(Duration::from_secs(3));
    let started = std::time::Instant::now();
    let err = verifier(&idp, basic())
        .verify("opaque-1")
        .await
        .unwrap_err();
    assert!(matches!(err.reason, TokenError::Unavailable(_)));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn wrong_client_credentials_fail_closed() {
    let idp = FakeIdp::start(json!({"keys": []})).await;
    idp.set_introspection("opaque-1", active(AUD));
    let v = verifier(
        &idp,
        ClientAuth::Basic {
            client_id: INTROSPECTION_CLIENT_ID.into(),
            client_secret: "wrong".into(),
        },
    );
    assert!(matches!(
        v.verify("opaque-1").await.unwrap_err().reason,
        TokenError::Unavailable(_)
    ));
}

#[tokio::test]
async fn oversized_token_is_not_sent() {
    let idp = FakeIdp::start(json!({"keys": []})).await;
    let v = verifier(&idp, basic());
    assert!(matches!(
        v.verify(&"x".repeat(9000)).await.unwrap_err().reason,
        TokenError::TooLarge { .. }
    ));
    assert_eq!(idp.introspection_hits(), 0);
}

#[tokio::test]
async fn answers_without_exp_or_iss_are_accepted_when_the_rules_allow() {
    let idp = FakeIdp::start(json!({"keys": []})).await;
    idp.set_introspection("bare", json!({"active": true, "sub": "erin", "aud": AUD}));
    let mut rules = ClaimRules::for_audience(Audience::new(AUD));
    rules.issuer = Some(ISS.into());
    rules.require_exp = false;
    rules.require_iss = false;
    let v =
        IntrospectionVerifier::builder(idp.introspection_url().parse().unwrap(), basic(), rules)
            .build()
            .unwrap();
    assert_eq!(v.verify("bare").await.unwrap().subject.as_str(), "erin");
    // A present iss must still match.
    idp.set_introspection(
        "foreign",
        json!({"active": true, "sub": "erin", "aud": AUD, "iss": "https://evil.example"}),
    );
    assert!(matches!(
        v.verify("foreign").await.unwrap_err().reason,
        TokenError::WrongIssuer { .. }
    ));
}

#[tokio::test]
async fn refresh_tokens_are_not_access_tokens() {
    let idp = FakeIdp::start(json!({"keys": []})).await;
    let mut answer = active(AUD);
    answer["token_type"] = json!("refresh_token");
    idp.set_introspection("rt", answer);
    assert!(matches!(
        verifier(&idp, basic())
            .verify("rt")
            .await
            .unwrap_err()
            .reason,
        TokenError::Claims(_)
    ));
}
