//! Anonymous access (lazy authentication) end to end: chosen methods and public tools without a
//! token, the 401 challenge with the scopes a protected call needs (in the header, and in the
//! failed tool result's `_meta` for clients that read results), success once a token comes,
//! and the limits that still hold.

mod common;

use common::Gateway;
use mcpgate_testkit::keys::{claims, jwks};
use mcpgate_testkit::{FakeIdp, Mode, TestKey, TestUpstream};
use serde_json::{Value, json};

const ISS: &str = "https://idp.example";
const POLICY: &str = r#"[{ name = "add needs admin", match = ["add"], scopes_all = ["admin"], on_deny = "challenge" }]"#;

struct Setup {
    _idp: FakeIdp,
    key: TestKey,
    upstream: TestUpstream,
    gw: Gateway,
}

async fn setup(mode: Mode, env: &[(&str, &str)]) -> Setup {
    let key = TestKey::rsa(1, "k1");
    let idp = FakeIdp::start(jwks(&[&key])).await;
    let upstream = TestUpstream::start(mode).await;
    let jwks_url = idp.jwks_url();
    let mut all = vec![
        ("MCPGATE_AUTH_ANONYMOUS_METHODS", "initialize, tools/list"),
        ("MCPGATE_AUTH_ANONYMOUS_TOOLS", "echo"),
        ("MCPGATE_POLICY", POLICY),
    ];
    all.extend_from_slice(env);
    let gw = Gateway::start(
        &[
            "--auth",
            "jwt",
            "--issuer-url",
            ISS,
            "--jwks-uri",
            &jwks_url,
            "--required-scopes",
            "mcp",
            "--upstream-url",
            &upstream.url,
        ],
        &all,
    )
    .await;
    Setup {
        _idp: idp,
        key,
        upstream,
        gw,
    }
}

fn stateless(id: u64, method: &str, params: Value) -> (String, String) {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let name = params
        .get("name")
        .or_else(|| params.get("uri"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    (
        json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string(),
        name,
    )
}

async fn send(
    gw: &Gateway,
    token: Option<&str>,
    method: &str,
    params: Value,
) -> (u16, Option<String>, Value) {
    let (body, name) = stateless(7, method, params);
    let mut r = reqwest::Client::new()
        .post(&gw.mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if !name.is_empty() {
        r = r.header("mcp-name", name);
    }
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.body(body).send().await.unwrap();
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let sse = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    let value = if sse {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m.get("id").is_some())
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    (status, challenge, value)
}

fn calls(upstream: &TestUpstream) -> usize {
    upstream
        .observed
        .calls
        .load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test]
async fn tools_are_listed_before_sign_in_and_a_protected_call_asks_for_its_scopes() {
    let s = setup(Mode::StatelessJson, &[]).await;
    // The tools are there for everyone to see.
    let (status, _, m) = send(&s.gw, None, "tools/list", json!({})).await;
    assert_eq!(status, 200, "{m}");
    let names: Vec<&str> = m["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"echo") && names.contains(&"add"),
        "{names:?}"
    );
    // A public tool runs without a token.
    let (status, _, m) = send(
        &s.gw,
        None,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "hi anonymous"}}),
    )
    .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["result"]["content"][0]["text"], "hi anonymous");
    assert_eq!(calls(&s.upstream), 1);
    // A protected one: 401 naming what it needs (the required scope and the step-up rule's),
    // in the header and in the failed result's _meta.
    let (status, challenge, m) = send(
        &s.gw,
        None,
        "tools/call",
        json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
    )
    .await;
    assert_eq!(status, 401, "{m}");
    let challenge = challenge.expect("a challenge");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains("resource_metadata=\""), "{challenge}");
    assert!(challenge.contains("scope=\"mcp admin\""), "{challenge}");
    assert_eq!(m["id"], 7);
    assert_eq!(m["result"]["isError"], true, "{m}");
    assert_eq!(
        m["result"]["_meta"]["mcp/www_authenticate"][0], challenge,
        "{m}"
    );
    assert_eq!(calls(&s.upstream), 1, "the protected call did not run");
    // Other requests without a token: 401 with a JSON-RPC error and the challenge.
    let (status, challenge, m) = send(
        &s.gw,
        None,
        "resources/read",
        json!({"uri": "test://hello"}),
    )
    .await;
    assert_eq!(status, 401, "{m}");
    assert!(challenge.unwrap().contains("scope=\"mcp\""));
    assert_eq!(m["error"]["code"], -32004, "{m}");
    // Signed in with what the challenge named: the call goes through.
    let token = s.key.sign(&claims(ISS, &s.gw.mcp, "alice", "mcp admin"));
    let (status, _, m) = send(
        &s.gw,
        Some(&token),
        "tools/call",
        json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
    )
    .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["result"]["content"][0]["text"], "3");
    // A token without the step-up scope is a 403 step-up, not anonymous.
    let token = s.key.sign(&claims(ISS, &s.gw.mcp, "bob", "mcp"));
    let (status, challenge, _) = send(
        &s.gw,
        Some(&token),
        "tools/call",
        json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
    )
    .await;
    assert_eq!(status, 403);
    assert!(challenge.unwrap().contains("insufficient_scope"));
}

#[tokio::test]
async fn a_token_that_is_present_is_verified_never_taken_as_anonymous() {
    let s = setup(Mode::StatelessJson, &[]).await;
    for bad in [
        "not-a-jwt",
        &s.key
            .sign(&claims("https://evil.example", &s.gw.mcp, "alice", "mcp")),
    ] {
        let (status, challenge, _) = send(&s.gw, Some(bad), "tools/list", json!({})).await;
        assert_eq!(status, 401, "{bad}");
        assert!(challenge.unwrap().contains("invalid_token"));
    }
    // Another scheme is not "no credentials" either.
    let (body, _) = stateless(1, "tools/list", json!({}));
    let r = reqwest::Client::new()
        .post(&s.gw.mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .header("authorization", "Basic YWxpY2U6c2VjcmV0")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn an_anonymous_legacy_session_lists_tools_and_stays_anonymous() {
    let s = setup(Mode::Sessions, &[]).await;
    let http = reqwest::Client::new();
    let post = |token: Option<String>, session: Option<String>, body: &'static str| {
        let mut r = http
            .post(&s.gw.mcp)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(id) = session {
            r = r.header("mcp-session-id", id);
        }
        r.send()
    };
    let init = post(None, None, r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#).await.unwrap();
    assert_eq!(init.status(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = init.bytes().await;
    let r = post(
        None,
        Some(session.clone()),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    let r = post(
        None,
        Some(session.clone()),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("\"echo\""));
    // Sessions belong to who opened them: a signed-in caller starts its own (404 here, as
    // for any session that is not the caller's).
    let token = s.key.sign(&claims(ISS, &s.gw.mcp, "alice", "mcp admin"));
    let r = post(
        Some(token),
        Some(session.clone()),
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn anonymous_requests_count_against_the_per_address_allowance() {
    let s = setup(
        Mode::StatelessJson,
        &[("MCPGATE_HTTP_UNAUTHENTICATED_PER_ADDRESS", "3/minute")],
    )
    .await;
    let token = s.key.sign(&claims(ISS, &s.gw.mcp, "alice", "mcp"));
    assert_eq!(
        send(&s.gw, Some(&token), "tools/list", json!({})).await.0,
        200
    );
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(send(&s.gw, None, "tools/list", json!({})).await.0);
    }
    assert_eq!(&statuses[..3], [200, 200, 200], "{statuses:?}");
    assert_eq!(statuses[4], 429, "{statuses:?}");
    // A caller whose token was accepted is not held back by the address's anonymous traffic.
    let (status, _, _) = send(&s.gw, Some(&token), "tools/list", json!({})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn anonymous_access_that_cannot_work_is_refused_at_load() {
    for (env, mode) in [
        (("MCPGATE_AUTH_ANONYMOUS_METHODS", "tools/call"), "jwt"),
        (("MCPGATE_AUTH_ANONYMOUS_METHODS", "resources/read"), "jwt"),
        (("MCPGATE_AUTH_ANONYMOUS_METHODS", "Tools/List"), "jwt"),
        (("MCPGATE_AUTH_ANONYMOUS_TOOLS", "[a-"), "jwt"),
        (
            ("MCPGATE_AUTH_ANONYMOUS_METHODS", "tools/list"),
            "passthrough",
        ),
    ] {
        let (code, _, stderr) = common::run(
            &[
                "check-config",
                "--auth",
                mode,
                "--issuer-url",
                ISS,
                "--jwks-uri",
                "https://idp.example/jwks",
                "--upstream-url",
                "http://127.0.0.1:9/mcp",
            ],
            &[env],
        );
        assert_ne!(code, 0, "{env:?} {mode}");
        assert!(
            stderr.contains(
                env.0
                    .strip_prefix("MCPGATE_")
                    .unwrap()
                    .to_lowercase()
                    .replacen('_', ".", 1)
                    .as_str()
            ),
            "{env:?}: {stderr}"
        );
    }
}
