//! Streamable HTTP behaviour of the gateway that clients and intermediaries rely on: the
//! 2026-07-28 header rules, 405s, errors for bad input, upstream failures, DNS-rebinding
//! protection and cancellation. Auth is `none` (loopback) unless a test needs more.

mod common;

use std::time::Duration;

use common::Gateway;
use mcpgate_testkit::{Mode, TestUpstream};
use serde_json::{Value, json};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

async fn open(mode: Mode) -> (TestUpstream, Gateway) {
    let upstream = TestUpstream::start(mode).await;
    let gw = Gateway::start(&["--auth", "none", "--upstream-url", &upstream.url], &[]).await;
    (upstream, gw)
}

fn post(gw: &Gateway) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(&gw.mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
}

fn stateless_call(id: u64, name: &str) -> String {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {
            "name": name, "arguments": {"message": "x"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {}
            }
        }
    })
    .to_string()
}

/// The JSON-RPC message in a JSON or SSE body.
async fn message(response: reqwest::Response) -> Value {
    let sse = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    if !sse {
        return serde_json::from_str(&text).unwrap();
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|m| m.get("id").is_some())
        .expect("a response in the stream")
}

#[tokio::test]
async fn tr_18_matching_stateless_headers_pass() {
    let (_u, gw) = open(Mode::Sessions).await;
    let r = post(&gw)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .body(stateless_call(5, "echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("mcp-session-id").is_none(),
        "no sessions in 2026-07-28"
    );
    assert_eq!(message(r).await["result"]["content"][0]["text"], "x");
}

#[tokio::test]
async fn tr_18_name_header_that_disagrees_with_the_body_is_rejected_before_the_upstream() {
    let (u, gw) = open(Mode::Sessions).await;
    let r = post(&gw)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .body(stateless_call(6, "add"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32020);
    assert_eq!(body["id"], 6);
    assert_eq!(
        u.observed.calls.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn tr_18_missing_method_header_is_rejected() {
    let (_u, gw) = open(Mode::Sessions).await;
    let r = post(&gw)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-name", "echo")
        .body(stateless_call(7, "echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -32020);
}

#[tokio::test]
async fn tr_17_version_header_mismatch_is_rejected() {
    let (_u, gw) = open(Mode::Sessions).await;
    let r = post(&gw)
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .body(stateless_call(8, "echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -32020);
}

#[tokio::test]
async fn tr_21_get_and_delete_are_405_for_the_stateless_revision() {
    let (_u, gw) = open(Mode::Sessions).await;
    let http = reqwest::Client::new();
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = http
            .request(method.clone(), &gw.mcp)
            .header("mcp-protocol-version", "2026-07-28")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
        assert_eq!(r.headers()["allow"], "POST");
    }
}

#[tokio::test]
async fn server_discover_passes_through() {
    let (_u, gw) = open(Mode::StatelessJson).await;
    let body = json!({"jsonrpc":"2.0","id":9,"method":"server/discover","params":{"_meta":{
        "io.modelcontextprotocol/protocolVersion":"2026-07-28",
        "io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},
        "io.modelcontextprotocol/clientCapabilities":{}}}});
    let r = post(&gw)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "server/discover")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = message(r).await;
    assert!(
        m["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "2026-07-28"),
        "{m}"
    );
}

#[tokio::test]
async fn tr_14_legacy_session_lifecycle_with_get_stream_and_delete() {
    let (_u, gw) = open(Mode::Sessions).await;
    let init = post(&gw).body(INIT).send().await.unwrap();
    assert_eq!(init.status(), 200);
    assert_eq!(init.headers()["x-accel-buffering"], "no");
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(session.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    let _ = init.bytes().await;
    let with_session = |b: reqwest::RequestBuilder| {
        b.header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
    };
    let r = with_session(post(&gw))
        .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // The GET stream opens and stays open.
    let get = with_session(
        reqwest::Client::new()
            .get(&gw.mcp)
            .header("accept", "text/event-stream"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(get.status(), 200);
    assert!(
        get.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    drop(get);
    let del = with_session(reqwest::Client::new().delete(&gw.mcp))
        .send()
        .await
        .unwrap();
    assert!(del.status().is_success());
    let after = with_session(post(&gw))
        .body(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 404);
}

#[tokio::test]
async fn tr_13_legacy_request_without_session_gets_the_upstream_400() {
    let (_u, gw) = open(Mode::Sessions).await;
    let r = post(&gw)
        .header("mcp-protocol-version", "2025-11-25")
        .body(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn malformed_bodies_get_json_rpc_errors() {
    let (_u, gw) = open(Mode::Sessions).await;
    let r = post(&gw).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -32700);
    let r = post(&gw)
        .body(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -32600);
    let r = post(&gw)
        .body(r#"{"jsonrpc":"2.0","id":11}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["error"]["code"].clone(), body["id"].clone()),
        (json!(-32600), json!(11))
    );
}

#[tokio::test]
async fn oversized_body_is_413() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let gw = Gateway::start(
        &["--auth", "none", "--upstream-url", &upstream.url],
        &[("MCPGATE_HTTP_MAX_BODY_BYTES", "1024")],
    )
    .await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(2000)
    );
    let r = post(&gw).body(big).send().await.unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn upstream_down_gives_502_with_the_request_id() {
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let gw = Gateway::start(&["--auth", "none", "--upstream-url", &url], &[]).await;
    let r = post(&gw).body(INIT).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], 1);
    assert_eq!(body["error"]["code"], -32603);
    let r = reqwest::Client::new()
        .get(format!("{}/readyz", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn slow_upstream_gives_504() {
    // A listener that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", silent.local_addr().unwrap());
    let gw = Gateway::start(
        &["--auth", "none", "--upstream-url", &url],
        &[("MCPGATE_UPSTREAM_TIMEOUT", "1s")],
    )
    .await;
    let r = post(&gw).body(INIT).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], 1);
    drop(silent);
}

#[tokio::test]
async fn tr_03_foreign_host_and_origin_are_refused_before_anything_else() {
    let (_u, gw) = open(Mode::Sessions).await;
    let r = post(&gw)
        .header("host", "evil.example.com")
        .header("origin", "http://evil.example.com")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = post(&gw)
        .header("origin", "http://evil.example.com")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a bad Origin alone is refused");
    let good_origin = format!("http://127.0.0.1:{}", gw.port);
    let r = post(&gw)
        .header("origin", &good_origin)
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Health probes come by IP and are not refused.
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", gw.base))
        .header("host", "10.1.2.3:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn tr_01_dns_rebinding_is_refused_with_auth_on_too() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let gw = Gateway::start(
        &["--auth", "static", "--dev", "--upstream-url", &upstream.url],
        &[(
            "MCPGATE_AUTH_STATIC_TOKENS",
            r#"[{token="t0k3n", subject="alice"}]"#,
        )],
    )
    .await;
    let r = post(&gw)
        .bearer_auth("t0k3n")
        .header("origin", "http://evil.example.com")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "403 from the Origin check, not 401 from auth"
    );
}

#[tokio::test]
async fn tr_20_client_disconnect_cancels_the_upstream_request() {
    let (u, gw) = open(Mode::Sessions).await;
    let init = post(&gw).body(INIT).send().await.unwrap();
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = init.bytes().await;
    let with_session = |b: reqwest::RequestBuilder| {
        b.header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
    };
    with_session(post(&gw))
        .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .send()
        .await
        .unwrap();
    let call = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"slow","arguments":{"millis":30000}}}"#;
    let r = with_session(post(&gw)).body(call).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Wait until the upstream is working on it, then walk away.
    let started = std::time::Instant::now();
    while u
        .observed
        .slow_started
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(r);
    let started = std::time::Instant::now();
    while u
        .observed
        .cancelled
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "upstream request was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn progress_notifications_stream_through_before_the_result() {
    let (_u, gw) = open(Mode::Sessions).await;
    let body = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"progress","arguments":{"steps":3},"_meta":{
        "progressToken":"p1",
        "io.modelcontextprotocol/protocolVersion":"2026-07-28",
        "io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},
        "io.modelcontextprotocol/clientCapabilities":{}}}});
    let r = post(&gw)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "progress")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let messages: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect();
    let progress = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .count();
    assert_eq!(progress, 3, "{text}");
    assert_eq!(messages.last().unwrap()["id"], 2);
}

#[tokio::test]
async fn passthrough_requires_a_bearer_and_forwards_it() {
    let upstream = TestUpstream::start(Mode::StatelessJson).await;
    let gw = Gateway::start(
        &[
            "--auth",
            "passthrough",
            "--issuer-url",
            "https://idp.example",
            "--upstream-url",
            &upstream.url,
        ],
        &[],
    )
    .await;
    let r = post(&gw).body(INIT).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("resource_metadata=")
    );
    let c = common::client(
        &gw.mcp,
        Some("opaque-upstream-token"),
        common::Generation::Legacy,
    )
    .await
    .unwrap();
    let result = c
        .call_tool(rmcp::model::CallToolRequestParams::new("headers"))
        .await
        .unwrap();
    let seen: Value = serde_json::from_str(&common::text_of(&result)).unwrap();
    assert_eq!(seen["authorization"], "Bearer opaque-upstream-token");
    let _ = c.cancel().await;
}

#[tokio::test]
async fn oversized_upstream_reply_is_502_not_unbounded_memory() {
    let upstream = TestUpstream::start(Mode::StatelessJson).await;
    let gw = Gateway::start(
        &["--auth", "none", "--upstream-url", &upstream.url],
        &[("MCPGATE_UPSTREAM_MAX_RESPONSE_BYTES", "2000")],
    )
    .await;
    let call = |message: String| {
        json!({"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"echo","arguments":{"message": message},"_meta":{
            "io.modelcontextprotocol/protocolVersion":"2026-07-28",
            "io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},
            "io.modelcontextprotocol/clientCapabilities":{}}}})
        .to_string()
    };
    let send = |body: String| {
        post(&gw)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "echo")
            .body(body)
            .send()
    };
    assert_eq!(send(call("small".into())).await.unwrap().status(), 200);
    let r = send(call("x".repeat(5000))).await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], 21);
}

#[tokio::test]
async fn upstream_refusing_the_gateway_is_a_502_not_a_client_challenge() {
    let challenge = (
        "www-authenticate",
        r#"Bearer resource_metadata="http://upstream/x""#.to_string(),
    );
    let url = common::canned_upstream(401, &[challenge], "unauthorized").await;
    let gw = Gateway::start(&["--auth", "none", "--upstream-url", &url], &[]).await;
    let r = post(&gw).body(INIT).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(
        r.headers().get("www-authenticate").is_none(),
        "the upstream's challenge is not the client's business"
    );
    assert_eq!(r.json::<Value>().await.unwrap()["id"], 1);
    assert!(gw.log().contains("upstream refused the gateway"));
}

#[tokio::test]
async fn passthrough_relays_the_upstream_challenge() {
    let challenge = (
        "www-authenticate",
        r#"Bearer error="invalid_token""#.to_string(),
    );
    let url = common::canned_upstream(401, &[challenge], "").await;
    let gw = Gateway::start(
        &[
            "--auth",
            "passthrough",
            "--issuer-url",
            "https://idp.example",
            "--upstream-url",
            &url,
        ],
        &[],
    )
    .await;
    let r = post(&gw)
        .bearer_auth("whatever")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
}

#[tokio::test]
async fn unusable_upstream_session_id_is_a_502() {
    let session = ("mcp-session-id", "s".repeat(600));
    let content_type = ("content-type", "application/json".to_string());
    let url = common::canned_upstream(
        200,
        &[session, content_type],
        r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
    )
    .await;
    let gw = Gateway::start(&["--auth", "none", "--upstream-url", &url], &[]).await;
    let r = post(&gw).body(INIT).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.headers().get("mcp-session-id").is_none());
}

#[tokio::test]
async fn get_and_delete_without_a_session_are_refused() {
    let (_u, gw) = open(Mode::Sessions).await;
    let http = reqwest::Client::new();
    let get = http
        .get(&gw.mcp)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    let delete = http.delete(&gw.mcp).send().await.unwrap();
    assert_eq!(delete.status(), 400);
}

#[tokio::test]
async fn cors_preflight_answers_allowed_origins_and_refuses_others() {
    let (_u, gw) = open(Mode::Sessions).await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, &gw.mcp)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, mcp-param-region",
            )
            .send()
    };
    let ok = preflight("http://localhost:6274").await.unwrap();
    assert!(ok.status().is_success());
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "http://localhost:6274"
    );
    let allowed = ok.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("mcp-param-region"), "{allowed}");
    let evil = preflight("http://evil.example.com").await.unwrap();
    assert_eq!(evil.status(), 403);
    assert!(evil.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn stateless_resource_subscriptions_are_method_not_found_with_or_without_params() {
    // SEP-2575: 2026-07-28 removed resources/subscribe and resources/unsubscribe
    // (subscriptions/listen replaces them). The gateway answers 404 / -32601 itself, whatever
    // the params, and nothing reaches the upstream.
    let spy = mcpgate_testkit::Spy::start(mcpgate_testkit::Behaviour::default()).await;
    let gw = Gateway::start(&["--auth", "none", "--upstream-url", &spy.url], &[]).await;
    for method in ["resources/subscribe", "resources/unsubscribe"] {
        for params in [
            json!({"uri": "test://x"}),
            json!({}),
            json!({"uri": ["a", "b"]}),
        ] {
            let mut params = params;
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {}
            });
            let body = json!({"jsonrpc":"2.0","id":4,"method":method,"params":params});
            let r = post(&gw)
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", method)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 404, "{method} {params}");
            let m = message(r).await;
            assert_eq!(m["error"]["code"], -32601, "{m}");
            assert_eq!(m["id"], 4, "{m}");
        }
    }
    assert!(spy.calls("resources/subscribe").is_empty());
    assert!(spy.calls("resources/unsubscribe").is_empty());
}

#[tokio::test]
async fn a_repeated_or_listed_protocol_version_is_refused_before_anything_reads_it() {
    // The gateway reading one revision and the upstream another would apply another
    // revision's rules (found by the third black-box round: `resources/subscribe` went through).
    let spy = mcpgate_testkit::Spy::start(mcpgate_testkit::Behaviour::default()).await;
    let gw = Gateway::start(&["--auth", "none", "--upstream-url", &spy.url], &[]).await;
    let body =
        r#"{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"test://x"}}"#;
    for versions in [
        &["2025-06-18", "2026-07-28"][..],
        &["2026-07-28", "2025-06-18"][..],
        &["2026-07-28,2025-06-18"][..],
        &["2025-06-18, 2025-11-25"][..],
    ] {
        let mut r = post(&gw).header("mcp-method", "resources/subscribe");
        for v in versions {
            r = r.header("mcp-protocol-version", *v);
        }
        let r = r.body(body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{versions:?}");
        let m = message(r).await;
        assert_eq!(m["error"]["code"], -32600, "{m}");
        assert_eq!(m["id"], 3, "{m}");
    }
    assert!(spy.seen().is_empty(), "{:?}", spy.seen());
}
