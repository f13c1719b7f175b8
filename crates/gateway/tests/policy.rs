//! Authorization policy, trimming and the audit log, end to end: the real `mcpgate` binary
//! between rmcp clients (and raw HTTP) and rmcp upstreams.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Gateway, Generation, args, client, run, text_of};
use mcpgate_testkit::keys::claims;
use mcpgate_testkit::{FakeIdp, Mode, TestKey, TestUpstream};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

const TOKENS: &str = r#"[{token="reader-token", subject="rita", scopes=["mcp", "read"]}, {token="admin-token", subject="adam", scopes=["mcp", "read", "admin"]}]"#;

const POLICY: &str = r#"[
  { name = "echo for readers", match = ["echo"], scopes_all = ["read"] },
  { name = "slow needs admin", match = ["slow"], scopes_all = ["admin"], on_deny = "challenge" },
  { name = "headers only for adam", effect = "deny", match = ["headers"], when = "subject != 'adam'" },
  { name = "test resources for admins", kind = ["resource"], match = ["test://*"], scopes_all = ["admin"] }
]"#;

fn audit_file(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mcpgate-audit-{tag}-{}.jsonl", std::process::id()))
}

async fn gateway(upstream: &str, audit: &std::path::Path, extra: &[(&str, &str)]) -> Gateway {
    let audit = audit.display().to_string();
    let mut env = vec![
        ("MCPGATE_AUTH_STATIC_TOKENS", TOKENS),
        ("MCPGATE_POLICY", POLICY),
        ("MCPGATE_AUDIT_OUTPUT", audit.as_str()),
    ];
    env.extend_from_slice(extra);
    Gateway::start(
        &["--auth", "static", "--dev", "--upstream-url", upstream],
        &env,
    )
    .await
}

fn names(tools: &[rmcp::model::Tool]) -> Vec<String> {
    let mut n: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    n.sort();
    n
}

/// The audit log's records, once `ready` holds for them (or after 5 s).
async fn audit_until(path: &std::path::Path, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let records: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if ready(&records) || Instant::now() > deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_clients_with_different_scopes_see_and_do_different_things() {
    for mode in [Mode::Sessions, Mode::StatelessJson] {
        let upstream = TestUpstream::start(mode).await;
        let audit = audit_file(&format!("two-{mode:?}"));
        let gw = gateway(&upstream.url, &audit, &[]).await;
        let rita = client(&gw.mcp, Some("reader-token"), Generation::Legacy)
            .await
            .unwrap();
        let adam = client(&gw.mcp, Some("admin-token"), Generation::Legacy)
            .await
            .unwrap();

        // Lists are filtered per caller (SSE answers for Sessions, JSON for StatelessJson).
        let rita_tools = names(&rita.list_all_tools().await.unwrap());
        let adam_tools = names(&adam.list_all_tools().await.unwrap());
        assert!(
            !rita_tools.contains(&"headers".to_owned()),
            "{mode:?}: {rita_tools:?}"
        );
        assert!(
            adam_tools.contains(&"headers".to_owned()),
            "{mode:?}: {adam_tools:?}"
        );
        // A challenged tool stays listed, so that the client can step up for it.
        assert!(
            rita_tools.contains(&"slow".to_owned()),
            "{mode:?}: {rita_tools:?}"
        );
        let rita_resources = rita.list_all_resources().await.unwrap();
        let adam_resources = adam.list_all_resources().await.unwrap();
        assert!(rita_resources.is_empty(), "{mode:?}");
        assert_eq!(adam_resources.len(), 1, "{mode:?}");

        // The same call, different answers: hidden for rita (as if it did not exist).
        let err = rita
            .call_tool(CallToolRequestParams::new("headers"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("Unknown tool: headers"), "{mode:?}: {err}");
        assert!(
            adam.call_tool(CallToolRequestParams::new("headers"))
                .await
                .is_ok()
        );
        let e = rita
            .read_resource(rmcp::model::ReadResourceRequestParams::new("test://hello"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("Resource not found"), "{e}");
        // Allowed for both.
        let r = rita
            .call_tool(
                CallToolRequestParams::new("echo").with_arguments(args(json!({"message": "hi"}))),
            )
            .await
            .unwrap();
        assert_eq!(text_of(&r), "hi");
        let _ = rita.cancel().await;
        let _ = adam.cancel().await;

        let records = audit_until(&audit, |r| {
            r.iter()
                .any(|r| r["decision"] == "allow" && r["target"] == "echo")
                && r.iter()
                    .any(|r| r["decision"] == "hide" && r["target"] == "headers")
                && r.iter().any(|r| r["decision"] == "filter")
        })
        .await;
        let log = std::fs::read_to_string(&audit).unwrap();
        assert!(
            !log.contains("reader-token") && !log.contains("admin-token"),
            "no token in the audit log"
        );
        assert!(
            !log.contains("\"hi\""),
            "no argument values unless asked for"
        );
        let hidden = records
            .iter()
            .find(|r| r["decision"] == "hide" && r["target"] == "headers")
            .expect("the hidden call is recorded");
        assert_eq!(hidden["subject"], "rita");
        assert_eq!(hidden["rule"], "headers only for adam");
        let allowed = records
            .iter()
            .find(|r| r["decision"] == "allow" && r["target"] == "echo")
            .expect("the allowed call is recorded");
        assert_eq!(allowed["status"], 200);
        assert!(allowed["upstream_ms"].as_f64().is_some(), "{allowed}");
        assert!(
            records
                .iter()
                .any(|r| r["decision"] == "filter" && r["method"] == "tools/list")
        );
        let _ = std::fs::remove_file(&audit);

        let metrics = reqwest::get(format!("{}/metrics", gw.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains(
                "mcpgate_policy_decisions_total{decision=\"hide\",method=\"tools/call\"}"
            ),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn step_up_a_client_gets_403_insufficient_scope_then_succeeds_with_the_scope() {
    const ISS: &str = "https://idp.example";
    let key = TestKey::rsa(1, "k1");
    let idp = FakeIdp::start(mcpgate_testkit::keys::jwks(&[&key])).await;
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let jwks = idp.jwks_url();
    let audit = audit_file("step-up");
    let audit_s = audit.display().to_string();
    let gw = Gateway::start(
        &[
            "--auth",
            "jwt",
            "--issuer-url",
            ISS,
            "--jwks-uri",
            &jwks,
            "--upstream-url",
            &upstream.url,
            "--required-scopes",
            "mcp",
        ],
        &[
            ("MCPGATE_POLICY", POLICY),
            ("MCPGATE_AUDIT_OUTPUT", audit_s.as_str()),
        ],
    )
    .await;
    let slow = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow","arguments":{"millis":1}}}"#;
    let post = |token: String, body: &'static str, sid: Option<String>| {
        let mcp = gw.mcp.clone();
        async move {
            let mut req = reqwest::Client::new()
                .post(mcp)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(body);
            if let Some(sid) = sid {
                req = req.header("mcp-session-id", sid);
            }
            req.send().await.unwrap()
        }
    };
    let weak = key.sign(&claims(ISS, &gw.mcp, "sam", "mcp read"));
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
    let r = post(weak.clone(), init, None).await;
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let r = post(weak.clone(), slow, Some(sid.clone())).await;
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    // Every scope the operation needs, in one challenge.
    assert!(
        challenge.contains(r#"scope="mcp admin""#) || challenge.contains(r#"scope="admin mcp""#),
        "{challenge}"
    );
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    assert!(!challenge.contains("offline_access"));
    // The client re-authorizes with those scopes (same user) and the same session goes on.
    let strong = key.sign(&claims(ISS, &gw.mcp, "sam", "mcp read admin"));
    let r = post(strong, slow, Some(sid)).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("done"), "{text}");
    let records = audit_until(&audit, |r| r.iter().any(|r| r["decision"] == "challenge")).await;
    let c = records
        .iter()
        .find(|r| r["decision"] == "challenge")
        .expect("challenge recorded");
    assert_eq!(c["rule"], "slow needs admin");
    let _ = std::fs::remove_file(&audit);
}

#[tokio::test]
async fn stateless_list_results_are_private_and_headers_must_match_the_body() {
    let upstream = TestUpstream::start(Mode::StatelessJson).await;
    let audit = audit_file("private");
    let gw = gateway(&upstream.url, &audit, &[]).await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}
    });
    let send = |method: &str, name: Option<&str>, body: Value| {
        let mut req = reqwest::Client::new()
            .post(&gw.mcp)
            .bearer_auth("reader-token")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method.to_owned());
        if let Some(n) = name {
            req = req.header("mcp-name", n.to_owned());
        }
        req.body(body.to_string()).send()
    };
    let r: Value = send(
        "tools/list",
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta": meta}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(r["result"]["cacheScope"], "private", "{r}");
    // Decided on the body: a header naming an allowed tool does not get a hidden one through.
    let r = send(
        "tools/call",
        Some("echo"),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"headers","arguments":{},"_meta": meta}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let _ = std::fs::remove_file(&audit);
}

#[tokio::test]
async fn annotations_are_learnt_from_lists_and_forgotten_when_the_list_changes() {
    let stdio = mcpgate_testkit::fixture(env!("CARGO_BIN_EXE_mcpgate"), "stdio-upstream");
    let audit = audit_file("learn");
    let audit_s = audit.display().to_string();
    let policy = r#"[
      { name = "read-only tools", annotations = { readOnlyHint = true }, scopes_all = ["read"] },
      { name = "touch", match = ["touch"], scopes_all = ["read"] }
    ]"#;
    let gw = Gateway::start(
        &[
            "--auth",
            "static",
            "--dev",
            "--upstream-cmd",
            &stdio.display().to_string(),
        ],
        &[
            ("MCPGATE_AUTH_STATIC_TOKENS", TOKENS),
            ("MCPGATE_POLICY", policy),
            ("MCPGATE_AUTHORIZATION_DEFAULT", "deny"),
            ("MCPGATE_AUDIT_OUTPUT", audit_s.as_str()),
        ],
    )
    .await;
    let c = client(&gw.mcp, Some("reader-token"), Generation::Legacy)
        .await
        .unwrap();
    let call = |name: &'static str| {
        let peer = c.peer().clone();
        async move {
            peer.call_tool(
                CallToolRequestParams::new(name)
                    .with_arguments(args(json!({"message": "x", "uri": "test://hello"}))),
            )
            .await
        }
    };
    // Before any list: echo's annotations are not known, and the default is deny.
    assert!(call("echo").await.is_err());
    let tools = names(&c.list_all_tools().await.unwrap());
    assert!(tools.contains(&"echo".to_owned()), "{tools:?}");
    assert!(
        !tools.contains(&"crash".to_owned()),
        "not read-only, default deny: {tools:?}"
    );
    assert_eq!(text_of(&call("echo").await.unwrap()), "x");
    // The upstream announces a changed tool list: what was learnt is forgotten...
    assert_eq!(text_of(&call("touch").await.unwrap()), "touched");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        call("echo").await.is_err(),
        "annotations must be learnt again"
    );
    // ... and learnt again from the next list.
    c.list_all_tools().await.unwrap();
    assert_eq!(text_of(&call("echo").await.unwrap()), "x");
    let _ = c.cancel().await;
    let _ = std::fs::remove_file(&audit);
}

#[tokio::test]
async fn meta_tags_select_tools_and_unknown_tags_do_not_bypass_them() {
    let upstream = TestUpstream::start(Mode::StatelessJson).await;
    let audit = audit_file("tags");
    let gw = gateway(
        &upstream.url,
        &audit,
        &[(
            "MCPGATE_POLICY",
            r#"[{ name = "math for admins", tags = ["math"], scopes_all = ["admin"] }]"#,
        )],
    )
    .await;
    let rita = client(&gw.mcp, Some("reader-token"), Generation::Legacy)
        .await
        .unwrap();
    let adam = client(&gw.mcp, Some("admin-token"), Generation::Legacy)
        .await
        .unwrap();
    let add = || CallToolRequestParams::new("add").with_arguments(args(json!({"a": 1, "b": 2})));
    // Before any list the gateway does not know add's tags: the tag rule still applies.
    assert!(rita.call_tool(add()).await.is_err());
    assert!(!names(&rita.list_all_tools().await.unwrap()).contains(&"add".to_owned()));
    assert!(names(&adam.list_all_tools().await.unwrap()).contains(&"add".to_owned()));
    assert!(rita.call_tool(add()).await.is_err());
    assert_eq!(text_of(&adam.call_tool(add()).await.unwrap()), "3");
    let _ = rita.cancel().await;
    let _ = adam.cancel().await;
    let _ = std::fs::remove_file(&audit);
}

#[tokio::test]
async fn arguments_are_checked_against_the_tools_input_schema() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let audit = audit_file("validate");
    let gw = gateway(
        &upstream.url,
        &audit,
        &[
            ("MCPGATE_AUTHORIZATION_VALIDATE_ARGUMENTS", "true"),
            ("MCPGATE_POLICY", "[]"),
        ],
    )
    .await;
    let c = client(&gw.mcp, Some("reader-token"), Generation::Legacy)
        .await
        .unwrap();
    c.list_all_tools().await.unwrap();
    let err = c
        .call_tool(
            CallToolRequestParams::new("add")
                .with_arguments(args(json!({"a": "secret-value", "b": 2}))),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Invalid arguments for tool add"), "{err}");
    assert!(err.contains("arguments/a"), "{err}");
    assert!(
        !err.contains("secret-value"),
        "values are not echoed: {err}"
    );
    let ok = c
        .call_tool(CallToolRequestParams::new("add").with_arguments(args(json!({"a": 40, "b": 2}))))
        .await
        .unwrap();
    assert_eq!(text_of(&ok), "42");
    let _ = c.cancel().await;
    let _ = std::fs::remove_file(&audit);
}

#[tokio::test]
async fn trimming_removes_tools_for_everyone() {
    let upstream = TestUpstream::start(Mode::StatelessJson).await;
    let audit = audit_file("trim");
    let gw = gateway(
        &upstream.url,
        &audit,
        &[
            ("MCPGATE_POLICY", "[]"),
            ("MCPGATE_UPSTREAM_EXPOSE", r#"{ tools = ["echo", "add"] }"#),
            (
                "MCPGATE_UPSTREAM_HIDE",
                r#"{ tools = ["add"], prompts = ["*"] }"#,
            ),
        ],
    )
    .await;
    let adam = client(&gw.mcp, Some("admin-token"), Generation::Legacy)
        .await
        .unwrap();
    assert_eq!(names(&adam.list_all_tools().await.unwrap()), ["echo"]);
    assert!(adam.list_all_prompts().await.unwrap().is_empty());
    let err = adam
        .call_tool(CallToolRequestParams::new("add").with_arguments(args(json!({"a": 1, "b": 2}))))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Unknown tool: add"), "{err}");
    let _ = adam.cancel().await;
    let _ = std::fs::remove_file(&audit);
}

#[test]
fn policy_configuration_errors_name_the_rule() {
    let (code, _, err) = run(
        &[
            "check-config",
            "--auth",
            "none",
            "--upstream-url",
            "http://127.0.0.1:1/mcp",
        ],
        &[(
            "MCPGATE_POLICY",
            r#"[{ name = "x", when = "request.tool == 'a'" }]"#,
        )],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("policy[0].when") && err.contains("`request` is not available"),
        "{err}"
    );
    let (code, _, err) = run(
        &[
            "check-config",
            "--auth",
            "none",
            "--upstream-url",
            "http://127.0.0.1:1/mcp",
        ],
        &[(
            "MCPGATE_AUTHORIZATION_GLOBAL",
            r#"{ when = "target.name == 'a'" }"#,
        )],
    );
    assert_eq!(code, 2);
    assert!(err.contains("authorization.global.when"), "{err}");
    let (code, _, err) = run(
        &[
            "check-config",
            "--auth",
            "none",
            "--upstream-url",
            "http://127.0.0.1:1/mcp",
        ],
        &[
            ("MCPGATE_AUDIT_INCLUDE", "arguments,tokens"),
            ("MCPGATE_AUDIT_OUTPUT", "/nonexistent-dir/audit.jsonl"),
            ("MCPGATE_UPSTREAM_EXPOSE", r#"{ tools = ["["] }"#),
        ],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("audit.include") && err.contains("`tokens`"),
        "{err}"
    );
    assert!(err.contains("audit.output"), "{err}");
    assert!(err.contains("upstream.expose.tools"), "{err}");
}

#[tokio::test]
async fn global_conditions_refuse_every_request_that_does_not_meet_them() {
    let upstream = TestUpstream::start(Mode::StatelessJson).await;
    let audit = audit_file("global");
    let gw = gateway(
        &upstream.url,
        &audit,
        &[
            ("MCPGATE_POLICY", "[]"),
            (
                "MCPGATE_AUTHORIZATION_GLOBAL",
                r#"{ when = "subject == 'adam'" }"#,
            ),
        ],
    )
    .await;
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let send = |token: &'static str| {
        reqwest::Client::new()
            .post(&gw.mcp)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(list)
            .send()
    };
    let refused = send("reader-token").await.unwrap();
    assert_eq!(refused.status(), 403);
    // No scope can satisfy an expression: no step-up challenge is offered.
    assert!(!refused.headers().contains_key("www-authenticate"));
    assert_eq!(send("admin-token").await.unwrap().status(), 200);
    let records = audit_until(&audit, |r| r.iter().any(|r| r["rule"] == "global")).await;
    assert!(
        records
            .iter()
            .any(|r| r["rule"] == "global" && r["subject"] == "rita")
    );
    let _ = std::fs::remove_file(&audit);
}

#[test]
fn policy_explain_says_which_rule_decided() {
    let claims = std::env::temp_dir().join(format!("mcpgate-claims-{}.json", std::process::id()));
    std::fs::write(&claims, r#"{"sub": "rita", "scope": "mcp read"}"#).unwrap();
    let (code, out, err) = run(
        &[
            "policy",
            "explain",
            "--auth",
            "none",
            "--upstream-url",
            "http://127.0.0.1:1/mcp",
            "--subject-claims",
            &claims.display().to_string(),
            "--tool",
            "slow",
        ],
        &[("MCPGATE_POLICY", POLICY)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("decision: challenge (scopes: admin)"), "{out}");
    assert!(out.contains("decided by: slow needs admin"), "{out}");
    assert!(
        out.contains("echo for readers: does not select this target"),
        "{out}"
    );
    let (_, out, _) = run(
        &[
            "policy",
            "explain",
            "--auth",
            "none",
            "--upstream-url",
            "http://127.0.0.1:1/mcp",
            "--subject-claims",
            &claims.display().to_string(),
            "--tool",
            "headers",
        ],
        &[("MCPGATE_POLICY", POLICY)],
    );
    assert!(
        out.contains("decision: hide") && out.contains("headers only for adam"),
        "{out}"
    );
    let _ = std::fs::remove_file(&claims);
}

#[tokio::test]
async fn each_page_is_filtered_and_keeps_its_cursor_in_json_and_in_sse() {
    const PAGE: &str = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"headers","inputSchema":{"type":"object"}}],"nextCursor":"page-2"}}"#;
    const SSE: &str = "id: 1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"echo\",\"inputSchema\":{\"type\":\"object\"}},{\"name\":\"headers\",\"inputSchema\":{\"type\":\"object\"}}],\"nextCursor\":\"page-2\"}}\n\n";
    for (body, content_type) in [(PAGE, "application/json"), (SSE, "text/event-stream")] {
        let upstream =
            common::canned_upstream(200, &[("content-type", content_type.into())], body).await;
        let audit = audit_file("page");
        let gw = gateway(&upstream, &audit, &[]).await;
        let text = reqwest::Client::new()
            .post(&gw.mcp)
            .bearer_auth("reader-token")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"cursor":"page-1"}}"#)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains(r#""name":"echo""#), "{content_type}: {text}");
        assert!(
            !text.contains(r#""name":"headers""#),
            "{content_type}: {text}"
        );
        assert!(
            text.contains(r#""nextCursor":"page-2""#),
            "{content_type}: {text}"
        );
        let _ = std::fs::remove_file(&audit);
    }
}

/// Splits a documented command line on spaces, as a shell does with the single quotes the
/// page uses (no spaces inside them).
fn words(line: &str) -> Vec<String> {
    line.split_whitespace()
        .map(|w| {
            w.strip_prefix('\'')
                .and_then(|w| w.strip_suffix('\''))
                .unwrap_or(w)
                .to_owned()
        })
        .collect()
}

/// The fenced block of `lang` that follows `after` in `text`.
fn block_after<'a>(text: &'a str, after: &str, lang: &str) -> &'a str {
    let start = text
        .find(after)
        .unwrap_or_else(|| panic!("`{after}` not in the page"));
    let rest = &text[start + after.len()..];
    let fence = format!("```{lang}\n");
    let open = rest
        .find(&fence)
        .unwrap_or_else(|| panic!("no {lang} block after `{after}`"))
        + fence.len();
    let close = rest[open..].find("```").unwrap() + open;
    &rest[open..close]
}

#[tokio::test]
async fn docs_policy_example_holds_verbatim() {
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/policy.md"),
    )
    .unwrap();
    let config = block_after(&page, "# Authorization policy", "toml");
    let claims = block_after(&page, "### The example above, for a reader", "json");
    let command = block_after(&page, "### The example above, for a reader", "sh").trim();
    let expected = block_after(&page, &format!("{command}\n```"), "");
    let dir = std::env::temp_dir().join(format!("mcpgate-doc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("mcpgate.toml");
    let claims_path = dir.join("reader.json");
    std::fs::write(&config_path, config).unwrap();
    std::fs::write(&claims_path, claims).unwrap();
    let mut args = words(command);
    assert_eq!(args[0], "mcpgate");
    args.remove(0);
    for a in args.iter_mut() {
        if a == "mcpgate.toml" {
            *a = config_path.display().to_string();
        } else if a == "reader.json" {
            *a = claims_path.display().to_string();
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The page's audit file is a deployment path; everything else is the page's.
    let (code, out, err) = run(&args, &[("MCPGATE_AUDIT_OUTPUT", "off")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, expected,
        "policy explain disagrees with docs/policy.md"
    );

    // The gateway, with the same configuration, answers the reader as the page says.
    let spy = mcpgate_testkit::Spy::start(mcpgate_testkit::Behaviour {
        tools: vec![
            json!({"name": "delete_user", "inputSchema": {"type": "object"}, "annotations": {"destructiveHint": true}}),
            json!({"name": "get_user", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true, "destructiveHint": false}}),
        ],
        ..Default::default()
    })
    .await;
    let audit = audit_file("doc-example");
    let audit_s = audit.display().to_string();
    let config_s = config_path.display().to_string();
    let gw = Gateway::start(
        &[
            "--config",
            &config_s,
            "--auth",
            "static",
            "--dev",
            "--upstream-url",
            &spy.url,
        ],
        &[
            (
                "MCPGATE_AUTH_STATIC_TOKENS",
                r#"[{token="rita-token", subject="rita", scopes=["mcp", "read"]}]"#,
            ),
            ("MCPGATE_AUDIT_OUTPUT", audit_s.as_str()),
        ],
    )
    .await;
    let post = |body: &'static str| {
        reqwest::Client::new()
            .post(&gw.mcp)
            .bearer_auth("rita-token")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body)
            .send()
    };
    post(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .await
        .unwrap();
    let r = post(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_user","arguments":{}}}"#)
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.contains(r#"error="insufficient_scope", scope="admin write mcp""#),
        "{challenge}"
    );
    let records = audit_until(&audit, |r| r.iter().any(|x| x["target"] == "delete_user")).await;
    let record = records
        .iter()
        .find(|x| x["target"] == "delete_user")
        .unwrap();
    assert_eq!(record["decision"], "challenge");
    let decided_by = expected
        .lines()
        .find_map(|l| l.strip_prefix("decided by: "))
        .unwrap();
    assert_eq!(
        record["rule"], decided_by,
        "audit and explain name the same rule"
    );
    assert!(spy.calls("tools/call").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&audit);
}

#[test]
fn expressions_that_cannot_work_are_configuration_errors() {
    let dir = std::env::temp_dir().join(format!("mcpgate-cel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let check = |name: &str, when: &str| {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!("[auth]\nmode = \"none\"\n[upstream]\nurl = \"http://127.0.0.1:9/mcp\"\n[[policy]]\nmatch = [\"x\"]\nwhen = {when:?}\n"),
        )
        .unwrap();
        run(
            &["check-config", "--config", &path.display().to_string()],
            &[],
        )
    };
    let (code, _, err) = check("misspelt", "claims.email.endsWithh('@example.com')");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("policy[0].when") && err.contains("endsWithh"),
        "{err}"
    );
    let (code, _, err) = check("number", "1 + 1");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("true or false"), "{err}");
    let (code, _, err) = check("macro", "scopes.exists(s, s == 'admin')");
    assert_eq!(code, 0, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
