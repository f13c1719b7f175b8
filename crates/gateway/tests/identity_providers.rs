//! What real identity providers need from the gateway in `jwt` mode, each shaped like a
//! vendor: keys discovered from the issuer alone (an issuer with a path, as Keycloak's; with a
//! trailing slash, as Auth0's), the trailing-slash mismatch named at start, an issuer that
//! cannot be reached at start, and `scope`/`scp` as arrays (Spring, Duende, Okta).

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, Generation, client};
use mcpgate_testkit::keys::{claims, jwks};
use mcpgate_testkit::{FakeIdp, Mode, TestKey, TestUpstream};
use serde_json::{Value, json};

struct Provider {
    idp: FakeIdp,
    key: TestKey,
    upstream: TestUpstream,
}

impl Provider {
    async fn start() -> Provider {
        let key = TestKey::rsa(1, "k1");
        let idp = FakeIdp::start(jwks(&[&key])).await;
        let upstream = TestUpstream::start(Mode::StatelessJson).await;
        Provider { idp, key, upstream }
    }

    /// A metadata document for `issuer` at `path`, naming the JWKS.
    fn publish(&self, path: &str, issuer: &str) {
        self.idp.set_document(
            path,
            json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "jwks_uri": self.idp.jwks_url(),
                "response_types_supported": ["code"],
            }),
        );
    }

    /// A gateway trusting `issuer`, given nothing else about its keys.
    async fn gateway(&self, issuer: &str, extra: &[&str]) -> Gateway {
        let mut a = vec![
            "--auth",
            "jwt",
            "--issuer-url",
            issuer,
            "--upstream-url",
            &self.upstream.url,
        ];
        a.extend_from_slice(extra);
        Gateway::start(&a, &[("MCPGATE_AUTH_JWKS_REFRESH_INTERVAL", "1s")]).await
    }
}

async fn readyz(gw: &Gateway) -> (u16, Value) {
    let r = reqwest::get(format!("{}/readyz", gw.base)).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The Protected Resource Metadata.
async fn metadata(gw: &Gateway) -> Value {
    reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        gw.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

async fn wait_ready(gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while readyz(gw).await.0 != 200 {
        assert!(Instant::now() < deadline, "never ready:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn lists_tools(gw: &Gateway, token: &str) -> Result<usize, String> {
    let c = client(&gw.mcp, Some(token), Generation::Stateless)
        .await
        .map_err(|e| e.to_string())?;
    let tools = c.list_all_tools().await.map_err(|e| e.to_string())?;
    let _ = c.cancel().await;
    Ok(tools.len())
}

#[tokio::test]
async fn keycloak_shaped_issuer_with_a_path_is_discovered_from_the_issuer_alone() {
    let p = Provider::start().await;
    let issuer = format!("{}/realms/acme", p.idp.base);
    // Keycloak serves only the OpenID document appended to the issuer.
    p.publish("/realms/acme/.well-known/openid-configuration", &issuer);
    let gw = p.gateway(&issuer, &[]).await;
    wait_ready(&gw).await;
    let token = p.key.sign(&claims(&issuer, &gw.mcp, "alice", "mcp"));
    assert!(lists_tools(&gw, &token).await.unwrap() > 0);
    // The RFC 8414 and OpenID path-insertion forms were tried first, in that order.
    assert_eq!(
        &p.idp.asked()[..3],
        [
            "/.well-known/oauth-authorization-server/realms/acme",
            "/.well-known/openid-configuration/realms/acme",
            "/realms/acme/.well-known/openid-configuration",
        ]
    );
    // The metadata advertises the issuer as configured.
    let prm = metadata(&gw).await;
    assert_eq!(prm["authorization_servers"], json!([issuer]));
}

#[tokio::test]
async fn rfc_8414_path_insertion_is_preferred_when_both_exist() {
    let p = Provider::start().await;
    let issuer = format!("{}/tenant", p.idp.base);
    p.publish("/.well-known/oauth-authorization-server/tenant", &issuer);
    p.publish(
        "/tenant/.well-known/openid-configuration",
        "https://elsewhere.example",
    );
    let gw = p.gateway(&issuer, &[]).await;
    wait_ready(&gw).await;
    let token = p.key.sign(&claims(&issuer, &gw.mcp, "alice", "mcp"));
    assert!(lists_tools(&gw, &token).await.is_ok());
}

#[tokio::test]
async fn auth0_shaped_issuer_with_a_trailing_slash_works_when_configured_exactly() {
    let p = Provider::start().await;
    let issuer = format!("{}/", p.idp.base);
    p.publish("/.well-known/openid-configuration", &issuer);
    let gw = p.gateway(&issuer, &[]).await;
    wait_ready(&gw).await;
    let token = p.key.sign(&claims(&issuer, &gw.mcp, "alice", "mcp"));
    assert!(lists_tools(&gw, &token).await.unwrap() > 0);
}

#[tokio::test]
async fn a_trailing_slash_mismatch_is_named_at_start_and_nothing_is_trusted() {
    let p = Provider::start().await;
    let published = format!("{}/", p.idp.base);
    p.publish("/.well-known/openid-configuration", &published);
    let configured = p.idp.base.clone();
    let gw = p.gateway(&configured, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.log().contains("trailing slash") {
        assert!(Instant::now() < deadline, "not reported:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = gw.log();
    assert!(log.contains(&format!("`{published}`")), "{log}");
    let (status, body) = readyz(&gw).await;
    assert_eq!(status, 503);
    assert_eq!(body["checks"]["keys"], false);
    // Tokens of either spelling are refused: the keys were never loaded.
    for iss in [&published, &configured] {
        let token = p.key.sign(&claims(iss, &gw.mcp, "alice", "mcp"));
        assert!(lists_tools(&gw, &token).await.is_err());
    }
    assert_eq!(
        p.idp.jwks_hits(),
        0,
        "keys named by a foreign document are not fetched"
    );
}

#[tokio::test]
async fn a_document_for_another_issuer_is_not_trusted() {
    let p = Provider::start().await;
    p.publish(
        "/.well-known/oauth-authorization-server",
        "https://attacker.example",
    );
    let gw = p.gateway(&p.idp.base, &[]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(readyz(&gw).await.0, 503);
    assert!(gw.log().contains("attacker.example"), "{}", gw.log());
    assert_eq!(p.idp.jwks_hits(), 0);
}

#[tokio::test]
async fn an_issuer_unreachable_at_start_fails_readiness_until_it_answers() {
    let p = Provider::start().await;
    let issuer = p.idp.base.clone();
    p.publish("/.well-known/oauth-authorization-server", &issuer);
    p.idp.set_down(true);
    let gw = p.gateway(&issuer, &[]).await;
    let (status, body) = readyz(&gw).await;
    assert_eq!(status, 503);
    assert_eq!(body["checks"]["keys"], false);
    assert!(gw.log().contains("discovery"), "{}", gw.log());
    p.idp.set_down(false);
    // Retried in the background, without any token arriving.
    wait_ready(&gw).await;
    let token = p.key.sign(&claims(&issuer, &gw.mcp, "alice", "mcp"));
    assert!(lists_tools(&gw, &token).await.is_ok());
}

#[tokio::test]
async fn jwks_uri_overrides_discovery() {
    let p = Provider::start().await;
    // No metadata anywhere: the explicit JWKS is used and nothing is discovered.
    let issuer = "https://idp.example";
    let jwks = p.idp.jwks_url();
    let gw = p.gateway(issuer, &["--jwks-uri", &jwks]).await;
    wait_ready(&gw).await;
    assert!(p.idp.asked().is_empty(), "{:?}", p.idp.asked());
}

#[tokio::test]
async fn an_issuer_that_cannot_be_looked_up_is_a_config_error_naming_the_key() {
    let (code, _, stderr) = common::run(
        &[
            "check-config",
            "--auth",
            "jwt",
            "--issuer-url",
            "https://idp.example/?tenant=a",
            "--upstream-url",
            "http://127.0.0.1:9/mcp",
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("auth.issuer_url"), "{stderr}");
}

#[tokio::test]
async fn scope_and_scp_arrays_are_read_as_scopes() {
    let p = Provider::start().await;
    let issuer = p.idp.base.clone();
    p.publish("/.well-known/oauth-authorization-server", &issuer);
    let gw = p.gateway(&issuer, &["--required-scopes", "mcp"]).await;
    wait_ready(&gw).await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(&issuer, &gw.mcp, "alice", "");
        c.as_object_mut().unwrap().remove("scope");
        f(&mut c);
        p.key.sign(&c)
    };
    // Spring Authorization Server / Duende: `scope` as an array.
    let t = with(&|c| c["scope"] = json!(["openid", "mcp"]));
    assert!(lists_tools(&gw, &t).await.is_ok());
    // Okta: `scp` as an array; Entra: `scp` as a space-separated string.
    let t = with(&|c| c["scp"] = json!(["mcp"]));
    assert!(lists_tools(&gw, &t).await.is_ok());
    let t = with(&|c| c["scp"] = json!("openid mcp"));
    assert!(lists_tools(&gw, &t).await.is_ok());
    // An array without the scope is a 403 with the step-up challenge, not a malformed token.
    let t = with(&|c| c["scope"] = json!(["openid"]));
    let r = reqwest::Client::new()
        .post(&gw.mcp)
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    assert!(challenge.contains("scope=\"mcp\""), "{challenge}");
    // Non-string members make the token malformed (401), never silently scope-less.
    let t = with(&|c| c["scope"] = json!(["mcp", 7]));
    assert!(lists_tools(&gw, &t).await.is_err());
}

#[tokio::test]
async fn entra_shaped_scope_names_are_advertised_as_requested_and_checked_as_issued() {
    let p = Provider::start().await;
    let issuer = p.idp.base.clone();
    p.publish("/.well-known/oauth-authorization-server", &issuer);
    let a = [
        "--auth",
        "jwt",
        "--issuer-url",
        &issuer,
        "--upstream-url",
        &p.upstream.url,
        "--required-scopes",
        "mcp",
    ];
    let gw = Gateway::start(
        &a,
        &[
            ("MCPGATE_AUTH_JWKS_REFRESH_INTERVAL", "1s"),
            (
                "MCPGATE_AUTH_SCOPE_MAP",
                r#"{ "api://app-1/mcp" = "mcp", "api://app-1/admin" = "admin" }"#,
            ),
            (
                "MCPGATE_POLICY",
                r#"[{ name = "echo needs admin", match = ["echo"], scopes_all = ["admin"], on_deny = "challenge" }]"#,
            ),
        ],
    )
    .await;
    wait_ready(&gw).await;
    let prm = metadata(&gw).await;
    assert_eq!(prm["scopes_supported"], json!(["api://app-1/mcp"]));
    let post = |token: Option<String>, body: &'static str| {
        let mut r = reqwest::Client::new()
            .post(&gw.mcp)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    // No token: the challenge names what the client must ask the provider for.
    let r = post(None, PING).await.unwrap();
    assert_eq!(r.status(), 401);
    let h = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(h.contains("scope=\"api://app-1/mcp\""), "{h}");
    // A token without it: 403, same name.
    let sign = |scp: &str| {
        let mut c = claims(&issuer, &gw.mcp, "alice", "");
        c.as_object_mut().unwrap().remove("scope");
        c["scp"] = json!(scp);
        p.key.sign(&c)
    };
    let r = post(Some(sign("openid")), PING).await.unwrap();
    assert_eq!(r.status(), 403);
    let h = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(h.contains("scope=\"api://app-1/mcp\""), "{h}");
    // The token carries the short name, as Entra issues it: accepted.
    let token = sign("mcp");
    assert!(lists_tools(&gw, &token).await.is_ok());
    // A policy step-up names the advertised form too.
    let c = client(&gw.mcp, Some(&token), Generation::Stateless)
        .await
        .unwrap();
    let _ = c.cancel().await;
    let call = json!({
        "jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"echo","arguments":{"message":"x"},"_meta":{
            "io.modelcontextprotocol/protocolVersion":"2026-07-28",
            "io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},
            "io.modelcontextprotocol/clientCapabilities":{}}}
    });
    let r = reqwest::Client::new()
        .post(&gw.mcp)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .body(call.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let h = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(h.contains("api://app-1/admin"), "{h}");
    assert!(h.contains("api://app-1/mcp"), "{h}");
    assert!(!h.contains("\"admin"), "{h}");
}

#[tokio::test]
async fn a_scope_map_naming_one_checked_scope_twice_is_refused_at_load() {
    let (code, _, stderr) = common::run(
        &[
            "check-config",
            "--auth",
            "jwt",
            "--issuer-url",
            "https://idp.example",
            "--upstream-url",
            "http://127.0.0.1:9/mcp",
        ],
        &[(
            "MCPGATE_AUTH_SCOPE_MAP",
            r#"{ "api://a/mcp" = "mcp", "api://b/mcp" = "mcp" }"#,
        )],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("auth.scope_map"), "{stderr}");
}

#[tokio::test]
async fn two_issuers_at_once_each_with_its_own_keys_and_audience() {
    // The old provider (discovered) and the new one (explicit JWKS, its own audience).
    let old = Provider::start().await;
    let old_issuer = old.idp.base.clone();
    old.publish("/.well-known/oauth-authorization-server", &old_issuer);
    let new_key = TestKey::rsa(2, "new-1");
    let new_idp = FakeIdp::start(jwks(&[&new_key])).await;
    let new_issuer = format!("{}/tenant-b", new_idp.base);
    let issuers = format!(
        r#"[{{ issuer_url = "{new_issuer}", jwks_uri = "{}", audience = ["api://mcp-new"] }}]"#,
        new_idp.jwks_url()
    );
    let gw = Gateway::start(
        &[
            "--auth",
            "jwt",
            "--issuer-url",
            &old_issuer,
            "--upstream-url",
            &old.upstream.url,
        ],
        &[
            ("MCPGATE_AUTH_JWKS_REFRESH_INTERVAL", "1s"),
            ("MCPGATE_AUTH_ISSUERS", &issuers),
        ],
    )
    .await;
    wait_ready(&gw).await;
    // Both are advertised.
    let prm = metadata(&gw).await;
    assert_eq!(
        prm["authorization_servers"],
        json!([old_issuer, new_issuer])
    );
    // Each issuer's tokens, with its own key and audience, are accepted.
    let t_old = old.key.sign(&claims(&old_issuer, &gw.mcp, "alice", "mcp"));
    assert!(lists_tools(&gw, &t_old).await.is_ok());
    let t_new = new_key.sign(&claims(&new_issuer, "api://mcp-new", "alice", "mcp"));
    assert!(lists_tools(&gw, &t_new).await.is_ok());
    // Crossing them is refused: another issuer's key, another issuer's audience, an
    // issuer nobody trusts, a spelling of a trusted one.
    for bad in [
        old.key
            .sign(&claims(&new_issuer, "api://mcp-new", "alice", "mcp")),
        new_key.sign(&claims(&old_issuer, &gw.mcp, "alice", "mcp")),
        new_key.sign(&claims(&new_issuer, &gw.mcp, "alice", "mcp")),
        new_key.sign(&claims(
            "https://evil.example",
            "api://mcp-new",
            "alice",
            "mcp",
        )),
        new_key.sign(&claims(
            &format!("{new_issuer}/"),
            "api://mcp-new",
            "alice",
            "mcp",
        )),
    ] {
        assert!(lists_tools(&gw, &bad).await.is_err());
    }
}

#[tokio::test]
async fn an_entra_multi_tenant_issuer_accepts_the_listed_tenants_only() {
    let p = Provider::start().await;
    let template = format!("{}/{{tenant}}/v2.0", p.idp.base);
    let issuers = format!(
        r#"[{{ issuer_url = "{template}", tenants = ["72f988bf-86f1-41af", "contoso"], jwks_uri = "{}", audience = ["6e8f0c1a-app"] }}]"#,
        p.idp.jwks_url()
    );
    let gw = Gateway::start(
        &["--auth", "jwt", "--upstream-url", &p.upstream.url],
        &[("MCPGATE_AUTH_ISSUERS", &issuers)],
    )
    .await;
    wait_ready(&gw).await;
    let tenant = |t: &str| format!("{}/{t}/v2.0", p.idp.base);
    let prm = metadata(&gw).await;
    assert_eq!(
        prm["authorization_servers"],
        json!([tenant("72f988bf-86f1-41af"), tenant("contoso")])
    );
    for ok in ["72f988bf-86f1-41af", "contoso"] {
        let t = p
            .key
            .sign(&claims(&tenant(ok), "6e8f0c1a-app", "alice", "mcp"));
        assert!(lists_tools(&gw, &t).await.is_ok(), "{ok}");
    }
    for bad in [
        tenant("fabrikam"),
        tenant("contoso/x"),
        tenant("Contoso"),
        format!("{}/contoso/v2.0/", p.idp.base),
        format!("{}//v2.0", p.idp.base),
    ] {
        let t = p.key.sign(&claims(&bad, "6e8f0c1a-app", "alice", "mcp"));
        assert!(lists_tools(&gw, &t).await.is_err(), "{bad}");
    }
}

#[tokio::test]
async fn issuer_lists_that_cannot_work_are_refused_at_load_naming_the_entry() {
    for (issuers, key) in [
        (
            r#"[{ issuer_url = "https://x/{tenant}/v2.0" }]"#,
            "auth.issuers[0].tenants",
        ),
        (
            r#"[{ issuer_url = "https://x/{tenant}/v2.0", tenants = ["a"] }]"#,
            "auth.issuers[0].jwks_uri",
        ),
        (
            r#"[{ issuer_url = "https://x", tenants = ["a"] }]"#,
            "auth.issuers[0].tenants",
        ),
        (
            r#"[{ issuer_url = "not a url" }]"#,
            "auth.issuers[0].issuer_url",
        ),
        (
            r#"[{ issuer_url = "https://idp.example" }]"#,
            "auth.issuers[0].issuer_url",
        ),
        (
            r#"[{ issuer_url = "https://y", audiance = ["x"] }]"#,
            "audiance",
        ),
    ] {
        let (code, _, stderr) = common::run(
            &[
                "check-config",
                "--auth",
                "jwt",
                "--issuer-url",
                "https://idp.example",
                "--upstream-url",
                "http://127.0.0.1:9/mcp",
            ],
            &[("MCPGATE_AUTH_ISSUERS", issuers)],
        );
        assert_ne!(code, 0, "{issuers}");
        assert!(stderr.contains(key), "{issuers}: {stderr}");
    }
}
