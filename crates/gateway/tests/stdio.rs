//! A stdio MCP server behind the gateway: rmcp clients of both generations → the real
//! `mcpgate` binary → `stdio-upstream` (crates/testkit) as a child process.
//!
//! The fixture program is built on first use ([`mcpgate_testkit::fixture`]).

// Sampling, roots and logging are deprecated by SEP-2577 but still part of the protocol that
// clients and servers speak today; the gateway must carry them.
#![allow(deprecated)]

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Gateway, Generation, args, client, run, text_of};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, CreateMessageRequestParams,
    CreateMessageResult, ElicitRequestParams, ElicitResult, ElicitationAction, Implementation,
    ListRootsResult, LoggingMessageNotificationParam, ProgressNotificationParam, Root,
    SamplingMessage,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ClientServiceExt, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};

const TOKENS: &str =
    r#"[{token="alice-token", subject="alice"}, {token="bob-token", subject="bob"}]"#;

fn fixture() -> PathBuf {
    mcpgate_testkit::fixture(env!("CARGO_BIN_EXE_mcpgate"), "stdio-upstream")
}

/// The command line for the fixture with `flags`.
fn command(flags: &str) -> String {
    format!("{} {flags}", fixture().display()).trim().to_owned()
}

/// A gateway in `static` mode (alice and bob) in front of the fixture.
async fn gateway(flags: &str, env: &[(&str, &str)]) -> Gateway {
    let cmd = command(flags);
    let mut all = vec![("MCPGATE_AUTH_STATIC_TOKENS", TOKENS)];
    all.extend_from_slice(env);
    Gateway::start(&["--auth", "static", "--dev", "--upstream-cmd", &cmd], &all).await
}

async fn call(
    c: &RunningService<RoleClient, impl rmcp::service::Service<RoleClient>>,
    tool: &str,
    a: Value,
) -> String {
    let result = c
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args(a)))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    text_of(&result)
}

fn alive(pid: u32) -> bool {
    // A zombie is as good as gone (its parent, the gateway, may be dead too).
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.contains(") Z "),
        Err(_) => false,
    }
}

async fn gone_within(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !alive(pid)
}

/// A client that answers sampling, elicitation and roots, and records notifications.
#[derive(Clone, Default)]
struct Answering {
    seen: Arc<Mutex<Vec<String>>>,
}

impl Answering {
    fn saw(&self, what: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|s| s.contains(what))
    }
}

impl ClientHandler for Answering {
    async fn create_message(
        &self,
        _params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text("forty-two"),
            "test-model".into(),
        ))
    }

    async fn create_elicitation(
        &self,
        _request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(json!({"name": "Ada"})))
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        Ok(ListRootsResult::new(vec![
            Root::new("file:///work"),
            Root::new("file:///tmp"),
        ]))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.seen
            .lock()
            .unwrap()
            .push(format!("progress {}", params.progress));
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.seen
            .lock()
            .unwrap()
            .push(format!("log {}", params.data));
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.seen.lock().unwrap().push("tools changed".into());
    }

    fn get_info(&self) -> ClientConfig {
        let capabilities: ClientCapabilities = serde_json::from_value(json!({
            "roots": {}, "sampling": {}, "elicitation": {"form": {}}
        }))
        .unwrap();
        ClientConfig::new(capabilities, Implementation::new("stdio-test", "1"))
    }
}

async fn answering_client(
    url: &str,
    token: &str,
    generation: Generation,
) -> (RunningService<RoleClient, Answering>, Answering) {
    let handler = Answering::default();
    let config =
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token.to_owned());
    let transport = StreamableHttpClientTransport::from_config(config);
    let service = match generation {
        Generation::Legacy => handler.clone().serve(transport).await,
        Generation::Stateless => {
            handler
                .clone()
                .serve_with_lifecycle(
                    transport,
                    rmcp::service::ClientLifecycleMode::Discover {
                        preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
                    },
                )
                .await
        }
    }
    .expect("client connects");
    (service, handler)
}

fn initialize_body() -> &'static str {
    r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#
}

/// Opens a session by hand; returns its id.
async fn raw_session(gw: &Gateway, token: &str) -> String {
    let r = post(gw, token, None, initialize_body()).await;
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let r = post(
        gw,
        token,
        Some(&sid),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(r.status(), 202);
    sid
}

async fn post(gw: &Gateway, token: &str, sid: Option<&str>, body: &str) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(&gw.mcp)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned());
    if let Some(sid) = sid {
        req = req.header("mcp-session-id", sid);
    }
    req.send().await.unwrap()
}

async fn raw_pid(gw: &Gateway, token: &str, sid: &str) -> u32 {
    let r = post(
        gw,
        token,
        Some(sid),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"pid","arguments":{}}}"#,
    )
    .await;
    let v: Value = r.json().await.unwrap();
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn every_message_type_crosses_for_a_session_client() {
    let gw = gateway("", &[]).await;
    let (c, seen) = answering_client(&gw.mcp, "alice-token", Generation::Legacy).await;
    let tools = c.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "elicit_name"));
    assert_eq!(call(&c, "echo", json!({"message": "hi"})).await, "hi");
    assert_eq!(call(&c, "add", json!({"a": 2, "b": 40})).await, "42");
    // Server-to-client requests, answered by this client and routed back to the child.
    assert_eq!(
        call(&c, "sample", json!({"prompt": "q"})).await,
        "sampled: forty-two"
    );
    assert_eq!(call(&c, "elicit_name", json!({})).await, "hello Ada");
    assert_eq!(
        call(&c, "roots", json!({})).await,
        "file:///work,file:///tmp"
    );
    // Notifications: progress (token mapped back), logging, list_changed.
    let progress = c
        .call_tool(CallToolRequestParams::new("progress").with_arguments(args(json!({"steps": 3}))))
        .await;
    assert!(progress.is_ok());
    call(&c, "log", json!({"message": "hello-log"})).await;
    call(&c, "touch", json!({"uri": "test://hello"})).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(seen.saw("log") && seen.saw("tools changed")) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen.saw("hello-log"), "{:?}", seen.seen.lock().unwrap());
    assert!(seen.saw("tools changed"), "{:?}", seen.seen.lock().unwrap());
    // Resources and prompts.
    let read = c
        .read_resource(rmcp::model::ReadResourceRequestParams::new("test://hello"))
        .await
        .unwrap();
    assert!(
        serde_json::to_string(&read)
            .unwrap()
            .contains("hello from stdio")
    );
    let prompt = c
        .get_prompt(
            rmcp::model::GetPromptRequestParams::new("greet")
                .with_arguments(args(json!({"name": "Bo"}))),
        )
        .await
        .unwrap();
    assert!(
        serde_json::to_string(&prompt)
            .unwrap()
            .contains("Hello, Bo!")
    );
    let _ = c.cancel().await;
    let log = gw.log();
    assert!(
        log.contains("stdio-upstream: started"),
        "child stderr is forwarded:\n{log}"
    );
    assert!(!log.contains("alice-token"), "no token in the log");
}

#[tokio::test]
async fn progress_notifications_arrive_with_the_clients_own_token() {
    let gw = gateway("", &[]).await;
    let sid = raw_session(&gw, "alice-token").await;
    let r = post(
        &gw,
        "alice-token",
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":"call-7","method":"tools/call","params":{"name":"progress","arguments":{"steps":2},"_meta":{"progressToken":"my-token"}}}"#,
    )
    .await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let body = r.text().await.unwrap();
    assert_eq!(
        body.matches(r#""progressToken":"my-token""#).count(),
        2,
        "{body}"
    );
    assert!(body.contains(r#""id":"call-7""#), "{body}");
    assert!(body.contains("2 steps"), "{body}");
}

#[tokio::test]
async fn per_session_mode_keeps_users_apart() {
    let gw = gateway("", &[]).await;
    let (alice, _) = answering_client(&gw.mcp, "alice-token", Generation::Legacy).await;
    let (bob, _) = answering_client(&gw.mcp, "bob-token", Generation::Legacy).await;
    call(&alice, "remember", json!({"value": "alice's secret"})).await;
    assert_eq!(call(&bob, "recall", json!({})).await, "");
    assert_eq!(call(&alice, "recall", json!({})).await, "alice's secret");
    let (pa, pb) = (
        call(&alice, "pid", json!({})).await,
        call(&bob, "pid", json!({})).await,
    );
    assert_ne!(pa, pb, "one child per session");

    // Bob cannot use Alice's session id.
    let sid = raw_session(&gw, "alice-token").await;
    let r = post(
        &gw,
        "bob-token",
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"recall","arguments":{}}}"#,
    )
    .await;
    assert_eq!(r.status(), 404);
    let _ = alice.cancel().await;
    let _ = bob.cancel().await;
}

#[tokio::test]
async fn shared_mode_serves_every_session_from_one_child() {
    let gw = gateway("", &[("MCPGATE_UPSTREAM_SESSION_MODE", "shared")]).await;
    let (alice, _) = answering_client(&gw.mcp, "alice-token", Generation::Legacy).await;
    let (bob, _) = answering_client(&gw.mcp, "bob-token", Generation::Legacy).await;
    assert_eq!(
        call(&alice, "pid", json!({})).await,
        call(&bob, "pid", json!({})).await
    );
    // Both clients number their requests the same way; answers still reach the right one.
    let mut handles = Vec::new();
    for i in 0..20 {
        let (a, b) = (alice.peer().clone(), bob.peer().clone());
        handles.push(tokio::spawn(async move {
            let ra = a
                .call_tool(
                    CallToolRequestParams::new("echo")
                        .with_arguments(args(json!({"message": format!("a{i}")}))),
                )
                .await
                .unwrap();
            let rb = b
                .call_tool(
                    CallToolRequestParams::new("echo")
                        .with_arguments(args(json!({"message": format!("b{i}")}))),
                )
                .await
                .unwrap();
            assert_eq!(text_of(&ra), format!("a{i}"));
            assert_eq!(text_of(&rb), format!("b{i}"));
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    // The second session's initialize was answered from the first handshake.
    let log = gw.log();
    assert_eq!(log.matches("upstream command started").count(), 1, "{log}");
    let _ = alice.cancel().await;
    let _ = bob.cancel().await;
}

#[tokio::test]
async fn stateless_client_with_a_modern_child() {
    let gw = gateway("", &[]).await;
    let c = client(&gw.mcp, Some("alice-token"), Generation::Stateless)
        .await
        .unwrap();
    assert!(!c.list_all_tools().await.unwrap().is_empty());
    assert_eq!(
        call(&c, "echo", json!({"message": "modern"})).await,
        "modern"
    );
    // One child per subject serves the stateless requests.
    assert_eq!(
        call(&c, "pid", json!({})).await,
        call(&c, "pid", json!({})).await
    );
    let _ = c.cancel().await;
    assert!(gw.log().contains("modern=true"), "{}", gw.log());
}

#[tokio::test]
async fn stateless_client_with_a_legacy_child_gets_translation() {
    let gw = gateway("--legacy", &[]).await;
    let (c, _) = answering_client(&gw.mcp, "alice-token", Generation::Stateless).await;
    let info = c.peer_info();
    assert!(info.is_some(), "server/discover answered by the gateway");
    assert!(!c.list_all_tools().await.unwrap().is_empty());
    assert_eq!(call(&c, "echo", json!({"message": "x"})).await, "x");
    // The child's elicitation / sampling / roots requests become input_required results;
    // rmcp's client fulfils them and retries, the gateway hands the answers to the child.
    assert_eq!(call(&c, "elicit_name", json!({})).await, "hello Ada");
    assert_eq!(
        call(&c, "sample", json!({"prompt": "q"})).await,
        "sampled: forty-two"
    );
    assert_eq!(
        call(&c, "roots", json!({})).await,
        "file:///work,file:///tmp"
    );
    let _ = c.cancel().await;
    let log = gw.log();
    assert!(log.contains("modern=false"), "{log}");
}

/// A 2026-07-28 request by hand: `Mcp-Method` and, for a named target, `Mcp-Name` headers
/// from the body; the JSON answer.
async fn modern(gw: &Gateway, token: &str, body: Value) -> Value {
    let mut request = reqwest::Client::new()
        .post(&gw.mcp)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", body["method"].as_str().unwrap());
    if let Some(name) = body["params"]["name"].as_str() {
        request = request.header("mcp-name", name);
    }
    request
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn stateless_input_required_round_trip_by_hand() {
    let gw = gateway("--legacy", &[]).await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}
    });
    let first = modern(&gw, "alice-token", json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"elicit_name","arguments":{},"_meta":meta}})).await;
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required", "{first}");
    let (key, request) = result["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(request["method"], "elicitation/create");
    let state = result["requestState"].as_str().unwrap().to_owned();

    // Bob cannot continue Alice's request.
    let stolen = modern(&gw, "bob-token", json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"elicit_name","arguments":{},"requestState":state,"inputResponses":{key: {"action":"accept","content":{"name":"Mallory"}}},"_meta":meta}})).await;
    assert_eq!(stolen["error"]["code"], -32602, "{stolen}");

    // The state is bound to its request: a retry that names another tool is refused (and the
    // parked request stays, for the real retry).
    let other = modern(&gw, "alice-token", json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"requestState":state,"inputResponses":{key: {"action":"accept","content":{"name":"Eve"}}},"_meta":meta}})).await;
    assert_eq!(other["error"]["code"], -32602, "{other}");
    assert!(
        other["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another request"),
        "{other}"
    );

    let second = modern(&gw, "alice-token", json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"elicit_name","arguments":{},"requestState":state,"inputResponses":{key: {"action":"accept","content":{"name":"Grace"}}},"_meta":meta}})).await;
    assert_eq!(second["id"], 3);
    assert_eq!(
        second["result"]["content"][0]["text"], "hello Grace",
        "{second}"
    );
    // The child answers in the session revisions' shape; the client reads the new one.
    assert_eq!(second["result"]["resultType"], "complete", "{second}");
    let plain = modern(&gw, "alice-token", json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"_meta":meta}})).await;
    assert_eq!(plain["result"]["resultType"], "complete", "{plain}");
    assert_eq!(plain["result"]["content"][0]["text"], "x", "{plain}");
    assert!(plain["result"].get("ttlMs").is_none(), "{plain}");
    // A list is a cacheable result: it carries caching hints, here "do not reuse".
    let list = modern(
        &gw,
        "alice-token",
        json!({"jsonrpc":"2.0","id":6,"method":"tools/list","params":{"_meta":meta}}),
    )
    .await;
    assert_eq!(list["result"]["resultType"], "complete", "{list}");
    assert_eq!(list["result"]["ttlMs"], 0, "{list}");
    assert_eq!(list["result"]["cacheScope"], "private", "{list}");
    assert!(
        list["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{list}"
    );
    // The state is spent.
    let again: Value = modern(&gw, "alice-token", json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"elicit_name","arguments":{},"requestState":state,"inputResponses":{},"_meta":meta}})).await;
    assert_eq!(again["error"]["code"], -32602, "{again}");
}

#[tokio::test]
async fn session_client_with_a_child_that_only_speaks_2026_07_28() {
    for mode in ["per-session", "shared"] {
        let gw = gateway("--modern-only", &[("MCPGATE_UPSTREAM_SESSION_MODE", mode)]).await;
        for round in 0..2 {
            let (c, _) = answering_client(&gw.mcp, "alice-token", Generation::Legacy).await;
            let info = c.peer_info().unwrap();
            assert_eq!(info.protocol_version.as_str(), "2025-11-25", "{mode}");
            assert!(
                c.list_all_tools()
                    .await
                    .unwrap()
                    .iter()
                    .any(|t| t.name == "ask_name")
            );
            assert_eq!(
                call(&c, "echo", json!({"message": "old meets new"})).await,
                "old meets new"
            );
            // The child's input_required results become requests to this client; the gateway
            // sends the call again with the answers.
            assert_eq!(
                call(&c, "ask_name", json!({})).await,
                "hello Ada",
                "{mode} {round}"
            );
            assert_eq!(
                call(&c, "sample_mrtr", json!({"prompt": "q"})).await,
                "sampled: forty-two",
                "{mode} {round}"
            );
            let _ = c.cancel().await;
        }
        let log = gw.log();
        assert!(
            log.contains("session clients are translated"),
            "{mode}: {log}"
        );
        // Readiness is not hurt by the child that refused `initialize`.
        let ready = reqwest::get(format!("{}/readyz", gw.base)).await.unwrap();
        assert_eq!(ready.status(), 200, "{mode}");
    }
}

#[tokio::test]
async fn a_crash_fails_requests_in_flight_and_the_next_session_gets_a_fresh_child() {
    let gw = gateway("", &[]).await;
    let sid = raw_session(&gw, "alice-token").await;
    let first = raw_pid(&gw, "alice-token", &sid).await;
    let r = post(
        &gw,
        "alice-token",
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"crash","arguments":{}}}"#,
    )
    .await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], 9);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("exit"),
        "{v}"
    );
    // The session ended with its child.
    let r = post(
        &gw,
        "alice-token",
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":10,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(r.status(), 404);
    let sid = raw_session(&gw, "alice-token").await;
    let second = raw_pid(&gw, "alice-token", &sid).await;
    assert_ne!(first, second);
    assert!(!alive(first));
}

#[tokio::test]
async fn a_command_that_keeps_dying_is_restarted_with_backoff() {
    let gw = gateway("--exit-at-start 1", &[]).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = post(&gw, "alice-token", None, initialize_body()).await;
        statuses.push((r.status().as_u16(), r.headers().get("retry-after").cloned()));
    }
    assert_eq!(statuses[0].0, 502, "{statuses:?}");
    assert_eq!(statuses[1].0, 502, "{statuses:?}");
    assert_eq!(statuses[2].0, 503, "{statuses:?}");
    assert!(statuses[2].1.is_some(), "503 carries Retry-After");
    let ready = reqwest::get(format!("{}/readyz", gw.base)).await.unwrap();
    assert_eq!(ready.status(), 503);
}

#[tokio::test]
async fn terminal_escapes_from_a_child_never_reach_the_log_raw() {
    let gw = gateway("", &[]).await;
    let (c, _) = answering_client(&gw.mcp, "alice-token", Generation::Legacy).await;
    assert_eq!(call(&c, "ansi", json!({})).await, "ok");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(gw.log().contains("stderr-escape") && gw.log().contains("stdout-escape")) {
        assert!(Instant::now() < deadline, "{}", gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = gw.log();
    assert!(
        !log.contains('\u{1b}') && !log.contains('\u{7}'),
        "raw escapes in the log"
    );
    assert!(log.contains("\\u{1b}[31mstderr-escape"), "{log}");
    let _ = c.cancel().await;
}

#[tokio::test]
async fn too_many_requests_waiting_for_input_are_refused() {
    let gw = gateway("--legacy", &[]).await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}
    });
    let client = reqwest::Client::new();
    let mut outcomes = Vec::new();
    for i in 0..34 {
        let r: Value = client
            .post(&gw.mcp)
            .bearer_auth("alice-token")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "elicit_name")
            .body(json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"elicit_name","arguments":{},"_meta":meta}}).to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        outcomes.push(r["result"]["resultType"] == "input_required");
    }
    assert!(outcomes[..32].iter().all(|p| *p), "{outcomes:?}");
    assert!(!outcomes[32] && !outcomes[33], "{outcomes:?}");
}

#[tokio::test]
async fn an_idle_shared_child_is_stopped_after_stateless_clients_used_it() {
    let gw = gateway(
        "",
        &[
            ("MCPGATE_UPSTREAM_SESSION_MODE", "shared"),
            ("MCPGATE_UPSTREAM_CHILD_IDLE_TIMEOUT", "1s"),
        ],
    )
    .await;
    let (c, _) = answering_client(&gw.mcp, "alice-token", Generation::Stateless).await;
    let pid: u32 = call(&c, "pid", json!({})).await.parse().unwrap();
    let _ = c.cancel().await;
    assert!(
        gone_within(pid, Duration::from_secs(20)).await,
        "the shared child {pid} was never stopped"
    );
}

#[tokio::test]
async fn a_child_that_does_not_start_in_time_is_answered_at_once() {
    // A child that never answers and ignores a closed stdin: stopping it takes the stop grace
    // (seconds). The client hears of the failure before the child is gone.
    let gw = Gateway::start(
        &[
            "--auth",
            "static",
            "--dev",
            "--upstream-cmd",
            "sh -c 'echo started-$$ >&2; exec sleep 60'",
        ],
        &[
            ("MCPGATE_AUTH_STATIC_TOKENS", TOKENS),
            ("MCPGATE_UPSTREAM_STARTUP_TIMEOUT", "1s"),
            ("MCPGATE_UPSTREAM_INHERIT_ENV", "PATH"),
        ],
    )
    .await;
    let r = reqwest::Client::new()
        .post(&gw.mcp)
        .bearer_auth("alice-token")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert!(r.status().as_u16() >= 500, "{}", r.status());
    let log = gw.log();
    let pid: u32 = log
        .split("started-")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{log}"));
    assert!(alive(pid), "the answer waited for the child's stop");
    assert!(
        gone_within(pid, Duration::from_secs(15)).await,
        "the child was not stopped"
    );
}

#[tokio::test]
async fn garbage_on_stdout_is_logged_and_ignored() {
    let gw = gateway("--garbage-at-start", &[]).await;
    let c = client(&gw.mcp, Some("alice-token"), Generation::Legacy)
        .await
        .unwrap();
    assert_eq!(call(&c, "garbage", json!({})).await, "ok");
    assert_eq!(
        call(&c, "echo", json!({"message": "still fine"})).await,
        "still fine"
    );
    let _ = c.cancel().await;
    assert!(gw.log().contains("not a JSON-RPC message"), "{}", gw.log());
}

#[tokio::test]
async fn delete_ends_the_session_and_its_child() {
    let gw = gateway("", &[]).await;
    let sid = raw_session(&gw, "alice-token").await;
    let pid = raw_pid(&gw, "alice-token", &sid).await;
    assert!(alive(pid));
    let r = reqwest::Client::new()
        .delete(&gw.mcp)
        .bearer_auth("alice-token")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        gone_within(pid, Duration::from_secs(10)).await,
        "child {pid} still running"
    );
    let r = post(
        &gw,
        "alice-token",
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn unknown_session_ids_get_404_and_missing_ones_400() {
    let gw = gateway("", &[]).await;
    let r = post(
        &gw,
        "alice-token",
        Some("made-up"),
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(r.status(), 404);
    let r = post(
        &gw,
        "alice-token",
        None,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn too_many_children_get_503_with_retry_after() {
    let gw = gateway("", &[("MCPGATE_UPSTREAM_MAX_CHILDREN", "1")]).await;
    let _sid = raw_session(&gw, "alice-token").await;
    let r = post(&gw, "bob-token", None, initialize_body()).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_request_at_the_child() {
    let gw = gateway("", &[]).await;
    let sid = raw_session(&gw, "alice-token").await;
    let slow = post(
        &gw,
        "alice-token",
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow","arguments":{"millis":20000}}}"#,
    );
    // Give up after a moment: the connection closes with the request unanswered.
    let _ = tokio::time::timeout(Duration::from_millis(500), slow).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.log().contains("stdio-upstream: cancelled") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gw.log().contains("stdio-upstream: cancelled"),
        "{}",
        gw.log()
    );
}

#[tokio::test]
async fn the_child_gets_only_the_environment_it_is_given() {
    let gw = gateway(
        "",
        &[
            (
                "MCPGATE_UPSTREAM_ENV",
                r#"{ GREETING = "hi ${SECRET_SOURCE}" }"#,
            ),
            ("SECRET_SOURCE", "there"),
        ],
    )
    .await;
    let c = client(&gw.mcp, Some("alice-token"), Generation::Legacy)
        .await
        .unwrap();
    assert_eq!(
        call(&c, "env", json!({"name": "GREETING"})).await,
        "hi there"
    );
    // The gateway's own settings (here: its static tokens) do not reach the child.
    assert_eq!(
        call(&c, "env", json!({"name": "MCPGATE_AUTH_STATIC_TOKENS"})).await,
        "(unset)"
    );
    assert_ne!(call(&c, "env", json!({"name": "PATH"})).await, "(unset)");
    let _ = c.cancel().await;
    assert!(!gw.log().contains("hi there"), "env values are not logged");
}

#[tokio::test]
async fn a_child_that_stops_reading_does_not_make_the_gateway_grow() {
    // Rate limits off: what is measured is the stdio queue's own push-back.
    let gw = gateway(
        "--stall",
        &[
            ("MCPGATE_UPSTREAM_TIMEOUT", "300ms"),
            ("MCPGATE_RATE_LIMIT", "[]"),
        ],
    )
    .await;
    let sid = raw_session(&gw, "alice-token").await;
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let before = rss(gw.pid());
    let filler = "x".repeat(256 * 1024);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{filler}"}}}}}}"#
    );
    // Two rounds of 8 clients × 30 requests × 256 KiB (60 MiB each) offered to a child that
    // reads nothing.
    let round = || {
        let mut workers = Vec::new();
        for _ in 0..8 {
            let (mcp, sid, body) = (gw.mcp.clone(), sid.clone(), body.clone());
            workers.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut statuses = Vec::new();
                for _ in 0..30 {
                    let status = client
                        .post(&mcp)
                        .bearer_auth("alice-token")
                        .header("content-type", "application/json")
                        .header("accept", "application/json, text/event-stream")
                        .header("mcp-session-id", &sid)
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16();
                    statuses.push(status);
                }
                statuses
            }));
        }
        async move {
            let mut statuses = Vec::new();
            for w in workers {
                statuses.extend(w.await.unwrap());
            }
            statuses
        }
    };
    let first = round().await;
    let middle = rss(gw.pid());
    let second = round().await;
    let after = rss(gw.pid());
    for statuses in [&first, &second] {
        // Every request got an answer (no hang): refused as busy, or timed out at the child.
        assert!(
            statuses.iter().all(|s| *s == 503 || *s == 504),
            "{statuses:?}"
        );
        assert!(statuses.contains(&503), "the bounded queue pushes back");
    }
    // What may be held: the queue's byte budget (8 MiB), the pipe, and the requests in flight
    // (8 × a few copies of 256 KiB), plus what the allocator keeps — and offering the second
    // 60 MiB must not add to it.
    assert!(
        middle < before + 64 * 1024,
        "RSS grew from {before} KiB to {middle} KiB"
    );
    // An unbounded queue would add most of the 60 MiB offered again (and more: each waiting
    // request holds several copies of its body); the allocator's own slack is a few MiB.
    assert!(
        after < middle + 20 * 1024,
        "RSS kept growing: {before} → {middle} → {after} KiB"
    );
}

#[tokio::test]
async fn shutdown_stops_children_and_sigkill_leaves_no_orphans() {
    // SIGTERM: children are stopped before the gateway exits.
    let gw = gateway("", &[]).await;
    let sid = raw_session(&gw, "alice-token").await;
    let pid = raw_pid(&gw, "alice-token", &sid).await;
    unsafe {
        libc::kill(gw.pid() as i32, libc::SIGTERM);
    }
    assert!(
        gone_within(pid, Duration::from_secs(15)).await,
        "child {pid} outlived SIGTERM"
    );

    // SIGKILL: the kernel takes the children down with the gateway.
    let gw = gateway("", &[]).await;
    let sid = raw_session(&gw, "alice-token").await;
    let pid = raw_pid(&gw, "alice-token", &sid).await;
    unsafe {
        libc::kill(gw.pid() as i32, libc::SIGKILL);
    }
    assert!(
        gone_within(pid, Duration::from_secs(10)).await,
        "child {pid} outlived SIGKILL"
    );
}

#[tokio::test]
async fn idle_children_are_stopped_and_their_sessions_end() {
    let gw = gateway("", &[("MCPGATE_UPSTREAM_CHILD_IDLE_TIMEOUT", "1s")]).await;
    let sid = raw_session(&gw, "alice-token").await;
    let pid = raw_pid(&gw, "alice-token", &sid).await;
    assert!(
        gone_within(pid, Duration::from_secs(10)).await,
        "idle child {pid} still running"
    );
    let r = post(
        &gw,
        "alice-token",
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_command_that_never_answers_times_out_at_start() {
    let gw = Gateway::start(
        &["--auth", "none", "--upstream-cmd", "sleep 600"],
        &[("MCPGATE_UPSTREAM_STARTUP_TIMEOUT", "1s")],
    )
    .await;
    let started = Instant::now();
    let r = reqwest::Client::new()
        .post(&gw.mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(started.elapsed() < Duration::from_secs(8));
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("in time"),
        "{v}"
    );
}

#[tokio::test]
async fn the_get_stream_carries_what_belongs_to_no_request() {
    let gw = gateway("", &[]).await;
    let sid = raw_session(&gw, "alice-token").await;
    let mut stream = reqwest::Client::new()
        .get(&gw.mcp)
        .bearer_auth("alice-token")
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let r = post(
        &gw,
        "alice-token",
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"touch","arguments":{"uri":"test://hello"}}}"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(seen.contains("notifications/tools/list_changed")
        && seen.contains("notifications/resources/updated"))
        && Instant::now() < deadline
    {
        match tokio::time::timeout(Duration::from_secs(5), stream.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    assert!(seen.contains("notifications/tools/list_changed"), "{seen}");
    // Bob cannot listen on Alice's session.
    let r = reqwest::Client::new()
        .get(&gw.mcp)
        .bearer_auth("bob-token")
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_get_stream_of_a_translated_session_is_fed_by_subscriptions_listen() {
    let gw = gateway("--modern-only", &[]).await;
    let sid = raw_session(&gw, "alice-token").await;
    // Answered by the gateway (the child has no resources/subscribe); it becomes part of the
    // subscriptions/listen request that feeds the GET stream.
    let r = post(
        &gw,
        "alice-token",
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"test://hello"}}"#,
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"], json!({}), "{v}");
    let mut stream = reqwest::Client::new()
        .get(&gw.mcp)
        .bearer_auth("alice-token")
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // Let the gateway open the listen request at the child.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = post(
        &gw,
        "alice-token",
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"touch","arguments":{"uri":"test://hello"}}}"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(seen.contains("notifications/tools/list_changed")
        && seen.contains("notifications/resources/updated"))
        && Instant::now() < deadline
    {
        match tokio::time::timeout(Duration::from_secs(5), stream.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    assert!(
        seen.contains("notifications/tools/list_changed"),
        "{seen}\n{}",
        gw.log()
    );
    assert!(seen.contains("notifications/resources/updated"), "{seen}");
    // The listen request's own bookkeeping stays between the gateway and the child.
    assert!(!seen.contains("subscriptions/acknowledged"), "{seen}");
    assert!(!seen.contains("subscriptionId"), "{seen}");
}

#[tokio::test]
async fn subscriptions_listen_is_served_for_a_stateless_client_of_a_legacy_child() {
    let gw = gateway("--legacy", &[]).await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}
    });
    let send = |method: &str, name: Option<&str>, body: Value| {
        let mut req = reqwest::Client::new()
            .post(&gw.mcp)
            .bearer_auth("alice-token")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method.to_owned())
            .body(body.to_string());
        if let Some(name) = name {
            req = req.header("mcp-name", name.to_owned());
        }
        req.send()
    };
    let mut listen = send(
        "subscriptions/listen",
        None,
        json!({"jsonrpc":"2.0","id":"listen-1","method":"subscriptions/listen","params":{
            "notifications": {"toolsListChanged": true, "resourceSubscriptions": ["test://hello"]},
            "_meta": meta}}),
    )
    .await
    .unwrap();
    assert_eq!(listen.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    // The acknowledgement comes first.
    while !seen.contains("subscriptions/acknowledged") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), listen.chunk())
            .await
            .expect("acknowledged in time")
            .unwrap()
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        seen.contains(r#""io.modelcontextprotocol/subscriptionId":"listen-1""#),
        "{seen}"
    );
    assert!(
        seen.contains(r#""resourceSubscriptions":["test://hello"]"#),
        "{seen}"
    );
    let r = send(
        "tools/call",
        Some("touch"),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"touch","arguments":{"uri":"test://hello"},"_meta":meta}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(seen.contains("notifications/tools/list_changed")
        && seen.contains("notifications/resources/updated"))
        && Instant::now() < deadline
    {
        match tokio::time::timeout(Duration::from_secs(5), listen.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    assert!(seen.contains("notifications/tools/list_changed"), "{seen}");
    assert!(seen.contains("notifications/resources/updated"), "{seen}");
    assert_eq!(
        seen.matches(r#""io.modelcontextprotocol/subscriptionId":"listen-1""#)
            .count(),
        3,
        "every notification names the listen request: {seen}"
    );
}

fn children_of(pid: u32) -> Vec<u32> {
    let out = std::process::Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|p| alive(*p))
        .collect()
}

#[tokio::test]
async fn a_client_that_leaves_while_its_process_starts_leaves_no_process() {
    let gw = Gateway::start(
        &["--auth", "none", "--upstream-cmd", "sleep 600"],
        &[("MCPGATE_UPSTREAM_STARTUP_TIMEOUT", "60s")],
    )
    .await;
    let request = reqwest::Client::new()
        .post(&gw.mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize_body())
        .send();
    let _ = tokio::time::timeout(Duration::from_millis(700), request).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !children_of(gw.pid()).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(children_of(gw.pid()), Vec::<u32>::new(), "{}", gw.log());
}

#[tokio::test]
async fn a_get_stream_the_client_closed_does_not_keep_the_process_alive() {
    let gw = gateway("", &[("MCPGATE_UPSTREAM_CHILD_IDLE_TIMEOUT", "1s")]).await;
    let sid = raw_session(&gw, "alice-token").await;
    let pid = raw_pid(&gw, "alice-token", &sid).await;
    let stream = reqwest::Client::new()
        .get(&gw.mcp)
        .bearer_auth("alice-token")
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    drop(stream);
    assert!(
        gone_within(pid, Duration::from_secs(10)).await,
        "child {pid} kept by a closed GET stream"
    );
}

#[tokio::test]
async fn repeated_members_and_unasked_answers_are_refused() {
    let gw = gateway("", &[]).await;
    let sid = raw_session(&gw, "alice-token").await;
    let r = post(
        &gw,
        "alice-token",
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"progress","arguments":{"steps":1},"_meta":{"progressToken":"a","progressToken":57}}}"#,
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = post(
        &gw,
        "alice-token",
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":"never-asked","result":{}}"#,
    )
    .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn one_subject_cannot_take_every_process() {
    let gw = gateway("", &[("MCPGATE_UPSTREAM_MAX_SESSIONS_PER_SUBJECT", "2")]).await;
    raw_session(&gw, "alice-token").await;
    raw_session(&gw, "alice-token").await;
    let r = post(&gw, "alice-token", None, initialize_body()).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    // Others are not affected.
    raw_session(&gw, "bob-token").await;
}

#[test]
fn command_configuration_errors_name_the_key() {
    let (code, _, err) = run(
        &[
            "serve",
            "--auth",
            "none",
            "--upstream-cmd",
            "python -m server",
            "--upstream-url",
            "http://127.0.0.1:1/mcp",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("upstream.command"), "{err}");
    let (code, _, err) = run(
        &[
            "serve",
            "--auth",
            "none",
            "--upstream-cmd",
            "python \"unbalanced",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("upstream.command"), "{err}");
    let (code, _, err) = run(
        &[
            "serve",
            "--auth",
            "passthrough",
            "--issuer-url",
            "https://idp.example",
            "--upstream-cmd",
            "srv",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("passthrough"), "{err}");
}

#[tokio::test]
async fn a_command_that_cannot_start_is_a_clear_502() {
    let gw = Gateway::start(
        &[
            "--auth",
            "none",
            "--upstream-cmd",
            "/nonexistent/mcp-server --flag",
        ],
        &[],
    )
    .await;
    let r = reqwest::Client::new()
        .post(&gw.mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be started")
    );
}
