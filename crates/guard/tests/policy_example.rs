//! `examples/policy_server.rs`, run as a process and used by rmcp clients with different
//! tokens: lists filtered per caller, handlers that read the principal, a tool that needs a
//! scope, and no access without a token.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> Server {
    // Built by `cargo test` (examples are compiled with the package's tests).
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|debug| debug.join("examples/policy_server"))
        .unwrap();
    assert!(
        bin.exists(),
        "build it: cargo build -p mcpgate-guard --example policy_server"
    );
    let mut child = Command::new(bin)
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("the example prints its URL")
        .to_owned();
    Server(child, url)
}

async fn client(url: &str, token: &str) -> Result<RunningService<RoleClient, ()>, String> {
    let config =
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token.to_owned());
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .map_err(|e| e.to_string())
}

fn text(r: &rmcp::model::CallToolResult) -> String {
    serde_json::to_value(r).unwrap()["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_example_enforces_the_policy_per_caller() {
    let server = start();
    let reader = client(&server.1, "reader").await.unwrap();
    let admin = client(&server.1, "admin").await.unwrap();

    let mut seen: Vec<String> = reader
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    seen.sort();
    // Hidden from the reader; the tool that needs a scope stays listed (step-up).
    assert_eq!(seen, ["delete_notes", "list_notes", "whoami"]);
    let admin_tools = admin.list_all_tools().await.unwrap();
    assert!(admin_tools.iter().any(|t| t.name == "read_secrets"));

    // Handlers read the principal.
    let who = reader
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    assert_eq!(text(&who), "rita");

    // A tool that needs a scope.
    let refused = reader
        .call_tool(CallToolRequestParams::new("delete_notes"))
        .await
        .unwrap();
    assert_eq!(refused.is_error, Some(true));
    assert!(
        text(&refused).contains("insufficient_scope"),
        "{}",
        text(&refused)
    );
    let done = admin
        .call_tool(CallToolRequestParams::new("delete_notes"))
        .await
        .unwrap();
    assert_eq!(text(&done), "deleted by adam");

    // No token, no access.
    assert!(client(&server.1, "wrong").await.is_err());
    let _ = reader.cancel().await;
    let _ = admin.cancel().await;
}
