//! The auth modes other than `jwt`, and configuration checked at start.

mod common;

use common::{Gateway, Generation, client, run};
use mcpgate_testkit::idp::{INTROSPECTION_CLIENT_ID, INTROSPECTION_CLIENT_SECRET};
use mcpgate_testkit::keys::now;
use mcpgate_testkit::{FakeIdp, Mode, TestUpstream};
use serde_json::json;

const ISS: &str = "https://idp.example";

#[tokio::test]
async fn static_tokens_are_refused_without_dev() {
    let (code, _, err) = run(
        &[
            "serve",
            "--auth",
            "static",
            "--upstream-url",
            "http://127.0.0.1:1/mcp",
        ],
        &[(
            "MCPGATE_AUTH_STATIC_TOKENS",
            r#"[{token="t", subject="a"}]"#,
        )],
    );
    assert_eq!(code, 2);
    assert!(err.contains("auth.mode") && err.contains("--dev"), "{err}");
}

#[tokio::test]
async fn static_tokens_with_dev_work_and_warn_loudly() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let gw = Gateway::start(
        &["--auth", "static", "--dev", "--upstream-url", &upstream.url, "--required-scopes", "mcp"],
        &[("MCPGATE_AUTH_STATIC_TOKENS", r#"[{token="dev-token-1", subject="alice", scopes=["mcp"]}, {token="dev-token-2", subject="bob"}]"#)],
    )
    .await;
    let c = client(&gw.mcp, Some("dev-token-1"), Generation::Legacy)
        .await
        .unwrap();
    assert!(!c.list_all_tools().await.unwrap().is_empty());
    let _ = c.cancel().await;
    // bob lacks the required scope: 403 insufficient_scope.
    let r = reqwest::Client::new()
        .post(&gw.mcp)
        .bearer_auth("dev-token-2")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    let log = gw.log();
    assert!(log.contains("DEVELOPMENT MODE"), "{log}");
    assert!(!log.contains("dev-token-1") && !log.contains("dev-token-2"));
}

#[tokio::test]
async fn none_is_refused_on_a_public_address() {
    let (code, _, err) = run(
        &[
            "serve",
            "--auth",
            "none",
            "--listen",
            "0.0.0.0:0",
            "--public-url",
            "https://mcp.example.com",
            "--upstream-url",
            "http://127.0.0.1:1/mcp",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("auth.mode") && err.contains("loopback"),
        "{err}"
    );
}

#[tokio::test]
async fn none_is_refused_behind_a_public_url_even_on_loopback() {
    let (code, _, err) = run(
        &[
            "serve",
            "--auth",
            "none",
            "--public-url",
            "https://mcp.example.com",
            "--upstream-url",
            "http://127.0.0.1:1/mcp",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("auth.mode") && err.contains("public_url"),
        "{err}"
    );
}

#[tokio::test]
async fn passthrough_without_an_authorization_server_is_refused() {
    let (code, _, err) = run(
        &[
            "serve",
            "--auth",
            "passthrough",
            "--upstream-url",
            "http://127.0.0.1:1/mcp",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("auth.issuer_url"), "{err}");
}

#[tokio::test]
async fn credentials_in_urls_are_refused() {
    let (code, _, err) = run(
        &[
            "check-config",
            "--auth",
            "none",
            "--upstream-url",
            "http://user:hunter2@127.0.0.1:1/mcp",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("upstream.url") && !err.contains("hunter2"),
        "{err}"
    );
}

#[tokio::test]
async fn none_on_loopback_warns() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let gw = Gateway::start(&["--auth", "none", "--upstream-url", &upstream.url], &[]).await;
    assert!(gw.log().contains("without authentication"));
}

#[tokio::test]
async fn introspection_mode_end_to_end() {
    let idp = FakeIdp::start(json!({"keys": []})).await;
    let upstream = TestUpstream::start(Mode::StatelessJson).await;
    let url = idp.introspection_url();
    let gw = Gateway::start(
        &[
            "--auth",
            "introspection",
            "--issuer-url",
            ISS,
            "--introspection-url",
            &url,
            "--upstream-url",
            &upstream.url,
        ],
        &[
            (
                "MCPGATE_AUTH_INTROSPECTION_CLIENT_ID",
                INTROSPECTION_CLIENT_ID,
            ),
            (
                "MCPGATE_AUTH_INTROSPECTION_CLIENT_SECRET",
                INTROSPECTION_CLIENT_SECRET,
            ),
        ],
    )
    .await;
    idp.set_introspection("opaque-good", json!({"active": true, "sub": "carol", "aud": gw.mcp, "iss": ISS, "exp": now() + 600, "scope": "mcp"}));
    idp.set_introspection("opaque-elsewhere", json!({"active": true, "sub": "carol", "aud": "https://other/mcp", "iss": ISS, "exp": now() + 600}));
    idp.set_introspection("opaque-revoked", json!({"active": false}));
    for generation in [Generation::Legacy, Generation::Stateless] {
        let c = client(&gw.mcp, Some("opaque-good"), generation)
            .await
            .unwrap();
        assert!(!c.list_all_tools().await.unwrap().is_empty());
        let _ = c.cancel().await;
    }
    let http = reqwest::Client::new();
    for token in ["opaque-elsewhere", "opaque-revoked"] {
        let r = http
            .post(&gw.mcp)
            .bearer_auth(token)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{token}");
    }
    idp.set_down(true);
    let r = http
        .post(&gw.mcp)
        .bearer_auth("never-seen")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        503,
        "fails closed while the introspection endpoint is down"
    );
    let log = gw.log();
    assert!(!log.contains(INTROSPECTION_CLIENT_SECRET) && !log.contains("opaque-good"));
}

#[tokio::test]
async fn check_config_prints_the_effective_configuration_with_secrets_masked() {
    let (code, out, _) = run(
        &[
            "check-config",
            "--auth",
            "jwt",
            "--issuer-url",
            ISS,
            "--upstream-url",
            "http://127.0.0.1:3000/mcp",
        ],
        &[
            (
                "MCPGATE_AUTH_HMAC_SECRET",
                "0123456789abcdef0123456789abcdef-very-secret",
            ),
            ("MCPGATE_LOG_FORMAT", "json"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("hmac_secret = \"***\""), "{out}");
    assert!(!out.contains("very-secret"));
    assert!(out.contains("format = \"json\""));
    assert!(out.contains("issuer_url = \"https://idp.example\""));
}

#[tokio::test]
async fn check_config_names_every_bad_key() {
    let dir = std::env::temp_dir().join(format!("mcpgate-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[auth]\nmode = \"jwt\"\njwks_uri = \"https://idp/jwks\"\n[session]\nkey = \"short\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&["check-config", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    for key in ["upstream.url", "auth.issuer_url", "session.key"] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
    let (code, _, err) = run(
        &["check-config"],
        &[("MCPGATE_UPSTREAM_TIMEOUT", "forever")],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("upstream.timeout") && err.contains("MCPGATE_UPSTREAM_TIMEOUT"),
        "{err}"
    );
    let (code, _, err) = run(
        &["check-config", "--config", "/nonexistent/mcpgate.toml"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("does not exist"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn jwt_mode_with_a_static_pem_key() {
    let key = mcpgate_testkit::TestKey::ec("e1");
    let dir = std::env::temp_dir().join(format!("mcpgate-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("key.pem");
    std::fs::write(&pem, &key.public_pem).unwrap();
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let gw = Gateway::start(
        &[
            "--auth",
            "jwt",
            "--issuer-url",
            ISS,
            "--jwt-public-key",
            pem.to_str().unwrap(),
            "--upstream-url",
            &upstream.url,
        ],
        &[],
    )
    .await;
    let token = key.sign(&mcpgate_testkit::keys::claims(ISS, &gw.mcp, "dave", "mcp"));
    let c = client(&gw.mcp, Some(&token), Generation::Stateless)
        .await
        .unwrap();
    assert!(!c.list_all_tools().await.unwrap().is_empty());
    let _ = c.cancel().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn identity_that_cannot_be_sent_refuses_the_request_instead_of_going_anonymous() {
    let upstream = TestUpstream::start(Mode::StatelessJson).await;
    let gw = Gateway::start(
        &["--auth", "static", "--dev", "--upstream-url", &upstream.url],
        &[
            (
                "MCPGATE_AUTH_STATIC_TOKENS",
                r#"[{token="odd", subject="line\nbreak"}]"#,
            ),
            ("MCPGATE_UPSTREAM_IDENTITY_HEADERS_SUBJECT", "X-User"),
        ],
    )
    .await;
    let r = reqwest::Client::new()
        .post(&gw.mcp)
        .bearer_auth("odd")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        upstream
            .observed
            .calls
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}
