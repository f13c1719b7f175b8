//! The composed app in process: `server::prepare` from a configuration, then requests sent
//! to the router directly (no listener, no child process) — how a Rust author embeds the
//! gateway, and a fast check that the parts are wired together.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use mcpgate::config::{AuthMode, Config, Plan, Secret, StaticTokenConfig};
use mcpgate_testkit::{Mode, TestUpstream};
use serde_json::{Value, json};
use tower::ServiceExt as _;

fn config(upstream: &str) -> Config {
    let mut c = Config {
        dev: true,
        ..Config::default()
    };
    c.upstream.url = Some(upstream.parse().unwrap());
    c.auth.mode = AuthMode::Static;
    c.auth.required_scopes = vec!["mcp".into()];
    c.auth.static_tokens = vec![StaticTokenConfig {
        token: Secret::new("in-process-token"),
        subject: "alice".into(),
        client_id: None,
        scopes: vec!["mcp".into()],
    }];
    c.validate().expect("a valid configuration");
    c
}

fn call(token: Option<&str>) -> Request<Body> {
    let body = json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{
        "name":"echo","arguments":{"message":"in process"},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",
                 "io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},
                 "io.modelcontextprotocol/clientCapabilities":{}}}});
    let mut r = Request::post("/mcp")
        .header("host", "127.0.0.1:8080")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::from(body.to_string())).unwrap()
}

async fn json_body(r: axum::response::Response) -> Value {
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data:").map(str::trim).map(str::to_owned))
        .unwrap_or(text);
    serde_json::from_str(&data).unwrap()
}

#[tokio::test]
async fn the_composed_app_guards_and_forwards_in_process() {
    let upstream = TestUpstream::start(Mode::StatelessJson).await;
    let prepared = mcpgate::server::prepare(Plan::build(&config(&upstream.url)).unwrap()).unwrap();
    let app = prepared.router;
    // The metadata names the resource.
    let r = app
        .clone()
        .oneshot(
            Request::get("/.well-known/oauth-protected-resource/mcp")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_body(r).await["resource"], "http://127.0.0.1:8080/mcp");
    // Without a token: the challenge.
    let r = app.clone().oneshot(call(None)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("resource_metadata=")
    );
    // With one: forwarded to the real upstream and answered.
    let r = app
        .clone()
        .oneshot(call(Some("in-process-token")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        json_body(r).await["result"]["content"][0]["text"],
        "in process"
    );
    // A foreign Host is refused before anything else.
    let mut foreign = call(Some("in-process-token"));
    foreign
        .headers_mut()
        .insert("host", "evil.example".parse().unwrap());
    let r = app.oneshot(foreign).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_repeated_session_id_is_refused_and_unknown_versions_are_still_decided() {
    let upstream = TestUpstream::start(Mode::StatelessJson).await;
    let app = mcpgate::server::prepare(Plan::build(&config(&upstream.url)).unwrap())
        .unwrap()
        .router;
    // An unknown version is the upstream's to answer; the gateway still requires the token
    // for the call.
    let mut r = call(None);
    r.headers_mut()
        .insert("mcp-protocol-version", "garbage".parse().unwrap());
    assert_eq!(
        app.clone().oneshot(r).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let mut r = call(Some("in-process-token"));
    r.headers_mut()
        .append("mcp-session-id", "a".parse().unwrap());
    r.headers_mut()
        .append("mcp-session-id", "b".parse().unwrap());
    let r = app.clone().oneshot(r).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
