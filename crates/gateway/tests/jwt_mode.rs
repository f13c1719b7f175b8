//! End to end with the real binary in `jwt` mode: an rmcp client → mcpgate → an rmcp
//! Streamable HTTP server, for JSON and SSE responses, in both protocol generations.

mod common;

use common::{Gateway, Generation, args, client, text_of};
use mcpgate_testkit::keys::{claims, jwks};
use mcpgate_testkit::{FakeIdp, Mode, TestKey, TestUpstream};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

const ISS: &str = "https://idp.example";

struct Setup {
    idp: FakeIdp,
    key: TestKey,
    upstream: TestUpstream,
    gw: Gateway,
}

impl Setup {
    async fn new(mode: Mode, extra: &[&str]) -> Setup {
        let key = TestKey::rsa(1, "k1");
        let idp = FakeIdp::start(jwks(&[&key])).await;
        let upstream = TestUpstream::start(mode).await;
        let jwks_url = idp.jwks_url();
        let mut a = vec![
            "--auth",
            "jwt",
            "--issuer-url",
            ISS,
            "--jwks-uri",
            &jwks_url,
            "--upstream-url",
            &upstream.url,
        ];
        a.extend_from_slice(extra);
        let gw = Gateway::start(&a, &[("MCPGATE_AUTH_JWKS_REFRESH_INTERVAL", "0s")]).await;
        Setup {
            idp,
            key,
            upstream,
            gw,
        }
    }

    fn token(&self, subject: &str, scope: &str) -> String {
        self.key.sign(&claims(ISS, &self.gw.mcp, subject, scope))
    }
}

async fn full_round_trip(mode: Mode, generation: Generation) {
    let s = Setup::new(mode, &[]).await;
    let token = s.token("alice", "mcp");
    let c = client(&s.gw.mcp, Some(&token), generation)
        .await
        .expect("client connects through the gateway");
    let tools = c.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"), "{tools:?}");
    let result = c
        .call_tool(
            CallToolRequestParams::new("echo")
                .with_arguments(args(json!({"message": "hi through mcpgate"}))),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&result), "hi through mcpgate");
    let sum = c
        .call_tool(CallToolRequestParams::new("add").with_arguments(args(json!({"a": 2, "b": 40}))))
        .await
        .unwrap();
    assert_eq!(text_of(&sum), "42");
    let _ = c.cancel().await;
    assert!(
        !s.gw.log().contains(&token),
        "the token must never reach the log"
    );
}

#[tokio::test]
async fn legacy_client_through_sse_upstream() {
    full_round_trip(Mode::Sessions, Generation::Legacy).await;
}

#[tokio::test]
async fn legacy_client_through_json_upstream() {
    full_round_trip(Mode::StatelessJson, Generation::Legacy).await;
}

#[tokio::test]
async fn stateless_client_through_sse_upstream() {
    full_round_trip(Mode::Sessions, Generation::Stateless).await;
}

#[tokio::test]
async fn stateless_client_through_json_upstream() {
    full_round_trip(Mode::StatelessJson, Generation::Stateless).await;
}

#[tokio::test]
async fn rs_05_unauthenticated_client_is_challenged_and_can_discover_the_authorization_server() {
    let s = Setup::new(Mode::Sessions, &["--required-scopes", "mcp"]).await;
    let http = reqwest::Client::new();
    let r = http
        .post(&s.gw.mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let metadata_url = format!("{}/.well-known/oauth-protected-resource/mcp", s.gw.base);
    assert_eq!(
        challenge,
        format!("Bearer resource_metadata=\"{metadata_url}\", scope=\"mcp\"")
    );
    // Follow the challenge as a client would.
    let doc: Value = http
        .get(&metadata_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["resource"], s.gw.mcp);
    assert_eq!(doc["authorization_servers"], json!([ISS]));
    assert_eq!(doc["scopes_supported"], json!(["mcp"]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    // The root form for clients that probe it.
    let root: Value = http
        .get(format!(
            "{}/.well-known/oauth-protected-resource",
            s.gw.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root["resource"], s.gw.mcp);
    // rmcp's client sees the same refusal.
    assert!(client(&s.gw.mcp, None, Generation::Legacy).await.is_err());
}

#[tokio::test]
async fn rs_28_bad_tokens_are_refused_on_every_method() {
    let s = Setup::new(Mode::Sessions, &[]).await;
    let http = reqwest::Client::new();
    let other_key = TestKey::rsa(2, "k1").sign(&claims(ISS, &s.gw.mcp, "alice", "mcp"));
    let wrong_aud = s
        .key
        .sign(&claims(ISS, "https://other.example/mcp", "alice", "mcp"));
    let wrong_iss = s
        .key
        .sign(&claims("https://evil.example", &s.gw.mcp, "alice", "mcp"));
    let mut expired = claims(ISS, &s.gw.mcp, "alice", "mcp");
    expired["exp"] = json!(1_000_000);
    let expired = s.key.sign(&expired);
    for token in [
        other_key.as_str(),
        wrong_aud.as_str(),
        wrong_iss.as_str(),
        expired.as_str(),
        "not-a-jwt",
    ] {
        for method in [
            reqwest::Method::POST,
            reqwest::Method::GET,
            reqwest::Method::DELETE,
        ] {
            let r = http
                .request(method.clone(), &s.gw.mcp)
                .bearer_auth(token)
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{method} with a bad token");
            let h = r.headers()["www-authenticate"].to_str().unwrap();
            assert!(h.contains("error=\"invalid_token\""), "{h}");
        }
    }
    let log = s.gw.log();
    assert!(
        log.contains("wrong audience") && log.contains("wrong issuer") && log.contains("expired"),
        "{log}"
    );
    assert!(
        log.contains("alice"),
        "the log names whose token was refused"
    );
    for token in [other_key, wrong_aud, wrong_iss, expired] {
        assert!(!log.contains(&token));
    }
}

#[tokio::test]
async fn rs_37_session_of_one_subject_is_refused_to_another() {
    let s = Setup::new(Mode::Sessions, &[]).await;
    let alice = s.token("alice", "mcp");
    let mallory = s.token("mallory", "mcp");
    let http = reqwest::Client::new();
    let init = http
        .post(&s.gw.mcp)
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = init.bytes().await;
    let list = |token: String, session: String| {
        let http = http.clone();
        let url = s.gw.mcp.clone();
        async move {
            http.post(url)
                .bearer_auth(token)
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25")
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
                .send()
                .await
                .unwrap()
        }
    };
    // The owner continues.
    let notify = http
        .post(&s.gw.mcp)
        .bearer_auth(&alice)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(notify.status(), 202);
    assert_eq!(list(alice.clone(), session.clone()).await.status(), 200);
    // A refreshed access token for the same principal (other bytes, other `exp` and `jti`)
    // continues the session: it is bound to issuer + subject, not to the token.
    let mut refreshed = mcpgate_testkit::keys::claims(ISS, &s.gw.mcp, "alice", "mcp");
    refreshed["exp"] = json!(refreshed["exp"].as_u64().unwrap() + 1200);
    refreshed["jti"] = json!("refreshed-1");
    let refreshed = s.key.sign(&refreshed);
    assert_ne!(refreshed, alice);
    assert_eq!(list(refreshed, session.clone()).await.status(), 200);
    // Another subject with a perfectly valid token: as if the session did not exist.
    let hijack = list(mallory.clone(), session.clone()).await;
    assert_eq!(hijack.status(), 404);
    let body: Value = hijack.json().await.unwrap();
    assert_eq!(body["id"], 2);
    // GET and DELETE likewise.
    let get = http
        .get(&s.gw.mcp)
        .bearer_auth(&mallory)
        .header("mcp-session-id", &session)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 404);
    let del = http
        .delete(&s.gw.mcp)
        .bearer_auth(&mallory)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 404);
    // A made-up or raw upstream-looking session id is refused too.
    assert_eq!(
        list(alice.clone(), "00000000-0000-0000-0000-000000000000".into())
            .await
            .status(),
        404
    );
    // The owner can still use it, then end it.
    assert_eq!(list(alice.clone(), session.clone()).await.status(), 200);
    let del = http
        .delete(&s.gw.mcp)
        .bearer_auth(&alice)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert!(del.status().is_success());
    assert_eq!(
        list(alice, session).await.status(),
        404,
        "an ended session is gone"
    );
}

#[tokio::test]
async fn jwks_key_rotation_during_a_run() {
    let s = Setup::new(Mode::Sessions, &[]).await;
    let c = client(
        &s.gw.mcp,
        Some(&s.token("alice", "mcp")),
        Generation::Legacy,
    )
    .await
    .unwrap();
    c.list_all_tools().await.unwrap();
    // The identity provider rotates: a new key is published and the old one withdrawn.
    let new_key = TestKey::rsa(2, "k2");
    s.idp.set_jwks(jwks(&[&new_key]));
    let fresh = new_key.sign(&claims(ISS, &s.gw.mcp, "alice", "mcp"));
    let c2 = client(&s.gw.mcp, Some(&fresh), Generation::Stateless)
        .await
        .expect("token signed with the rotated key is accepted");
    assert!(!c2.list_all_tools().await.unwrap().is_empty());
    assert!(s.idp.jwks_hits() >= 2);
    let _ = c.cancel().await;
    let _ = c2.cancel().await;
}

#[tokio::test]
async fn rs_33_client_token_never_reaches_the_upstream_and_identity_headers_do() {
    let key = TestKey::rsa(1, "k1");
    let idp = FakeIdp::start(jwks(&[&key])).await;
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let jwks_url = idp.jwks_url();
    let gw = Gateway::start(
        &[
            "--auth",
            "jwt",
            "--issuer-url",
            ISS,
            "--jwks-uri",
            &jwks_url,
            "--upstream-url",
            &upstream.url,
        ],
        &[
            ("MCPGATE_UPSTREAM_IDENTITY_HEADERS_SUBJECT", "X-User"),
            ("MCPGATE_UPSTREAM_IDENTITY_HEADERS_SCOPES", "X-Scopes"),
            (
                "MCPGATE_UPSTREAM_HEADERS",
                "{X-Upstream-Key=\"${UPSTREAM_SECRET_FOR_TEST}\"}",
            ),
            ("UPSTREAM_SECRET_FOR_TEST", "s3cr3t-upstream"),
        ],
    )
    .await;
    let token = key.sign(&claims(ISS, &gw.mcp, "alice", "mcp extra"));
    let mut config =
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            gw.mcp.clone(),
        )
        .auth_header(token.clone());
    // A client that tries to claim another identity and smuggle cookies.
    let mut custom = std::collections::HashMap::new();
    custom.insert(
        http::HeaderName::from_static("x-user"),
        http::HeaderValue::from_static("admin"),
    );
    custom.insert(
        http::HeaderName::from_static("cookie"),
        http::HeaderValue::from_static("session=abc"),
    );
    config = config.custom_headers(custom);
    let c = rmcp::ServiceExt::serve(
        (),
        rmcp::transport::StreamableHttpClientTransport::from_config(config),
    )
    .await
    .unwrap();
    let result = c
        .call_tool(CallToolRequestParams::new("headers"))
        .await
        .unwrap();
    let seen: Value = serde_json::from_str(&text_of(&result)).unwrap();
    assert!(seen.get("authorization").is_none(), "upstream saw {seen}");
    assert!(seen.get("cookie").is_none(), "upstream saw {seen}");
    assert_eq!(
        seen["x-user"], "alice",
        "the verified subject, not the client's claim"
    );
    assert_eq!(seen["x-scopes"], "mcp extra");
    assert_eq!(seen["x-upstream-key"], "s3cr3t-upstream");
    let _ = c.cancel().await;
    let log = gw.log();
    assert!(!log.contains("s3cr3t-upstream") && !log.contains(&token));
}

#[tokio::test]
async fn public_url_with_a_path_prefix_is_followed_everywhere() {
    let key = TestKey::rsa(1, "k1");
    let idp = FakeIdp::start(jwks(&[&key])).await;
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let jwks_url = idp.jwks_url();
    let (gw, public) = Gateway::start_under(
        "/team-a",
        &[
            "--auth",
            "jwt",
            "--issuer-url",
            ISS,
            "--jwks-uri",
            &jwks_url,
            "--upstream-url",
            &upstream.url,
        ],
        &[],
    )
    .await;
    let port = gw.port;
    let resource = format!("{public}/mcp");
    let metadata =
        format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/team-a/mcp");
    let http = reqwest::Client::new();
    // The challenge points at the RFC 9728 location derived from the prefixed resource …
    let r = http
        .post(format!("{public}/mcp"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains(&format!("resource_metadata=\"{metadata}\""))
    );
    // … which names the prefixed resource, as do the forms a prefix-stripping proxy forwards.
    for url in [
        metadata.clone(),
        format!("{public}/.well-known/oauth-protected-resource/mcp"),
        format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"),
    ] {
        let doc: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(doc["resource"], resource, "{url}");
    }
    // A token for the prefixed resource works whether or not the proxy strips the prefix.
    let token = key.sign(&claims(ISS, &resource, "alice", "mcp"));
    for url in [resource.clone(), gw.mcp.clone()] {
        let c = client(&url, Some(&token), Generation::Stateless)
            .await
            .unwrap();
        assert!(!c.list_all_tools().await.unwrap().is_empty());
        let _ = c.cancel().await;
    }
    // A token for the unprefixed URL is for another resource.
    let wrong = key.sign(&claims(ISS, &gw.mcp, "alice", "mcp"));
    assert!(
        client(&resource, Some(&wrong), Generation::Stateless)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn readiness_reports_keys_and_upstream() {
    let s = Setup::new(Mode::Sessions, &[]).await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/readyz", s.gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(s.upstream);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = http
        .get(format!("{}/readyz", s.gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["upstream"], false);
    assert_eq!(body["checks"]["keys"], true);
}
