//! Running the real `mcpgate` binary on 127.0.0.1 for end-to-end tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientServiceExt, RoleClient, ServiceExt};

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running gateway process, killed on drop.
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `http://127.0.0.1:PORT/mcp`.
    pub mcp: String,
    /// The port.
    pub port: u16,
    log: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcpgate"));
    for (k, _) in std::env::vars() {
        if k.starts_with("MCPGATE_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .current_dir(std::env::temp_dir());
    cmd
}

impl Gateway {
    /// Starts `mcpgate serve ARGS` on a free port and waits until `/healthz` answers.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut full = vec!["serve", "--listen", &listen];
        full.extend_from_slice(args);
        Self::spawn(&full, env, port).await
    }

    /// Like [`Gateway::start`], with the public URL `http://127.0.0.1:PORT{prefix}` (a reverse
    /// proxy's path prefix); returns that URL too.
    pub async fn start_under(
        prefix: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (Gateway, String) {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let public = format!("http://127.0.0.1:{port}{prefix}");
        let mut full = vec!["serve", "--listen", &listen, "--public-url", &public];
        full.extend_from_slice(args);
        (Self::spawn(&full, env, port).await, public)
    }

    /// Starts `mcpgate ARGS` exactly as given (the caller chooses the port).
    pub async fn spawn(args: &[&str], env: &[(&str, &str)], port: u16) -> Gateway {
        let log =
            std::env::temp_dir().join(format!("mcpgate-test-{port}-{}.log", std::process::id()));
        let file = std::fs::File::create(&log).unwrap();
        let child = command(args, env)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("mcpgate binary runs");
        let base = format!("http://127.0.0.1:{port}");
        let mut gw = Gateway {
            child,
            mcp: format!("{base}/mcp"),
            base,
            port,
            log,
        };
        // No connection is kept open by the probe: tests count connections.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!(
                    "mcpgate exited with {status} during start-up:\n{}",
                    gw.log()
                );
            }
            if let Ok(r) = client
                .get(format!("{}/healthz", gw.base))
                .header("connection", "close")
                .send()
                .await
                && r.status().is_success()
            {
                return gw;
            }
            assert!(
                Instant::now() < deadline,
                "mcpgate did not start:\n{}",
                gw.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL (no graceful shutdown, nothing flushed) and reaps it.
    /// The log stays readable until drop.
    pub fn kill9(&mut self) {
        // `Child::kill` sends SIGKILL on Unix.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `mcpgate ARGS` to completion; returns (exit code, stdout, stderr).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = command(args, env).output().expect("mcpgate binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `mcpgate ARGS` with `stdin` on its standard input; returns (exit code, stdout,
/// stderr).
pub fn run_with_stdin(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = command(args, env)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mcpgate binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Which protocol generation an rmcp client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// `initialize` and sessions (2025-11-25).
    Legacy,
    /// `server/discover`, stateless (2026-07-28).
    Stateless,
}

/// An rmcp client connected to `url` with `token`.
pub async fn client(
    url: &str,
    token: Option<&str>,
    generation: Generation,
) -> Result<RunningService<RoleClient, ()>, String> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(t) = token {
        config = config.auth_header(t.to_owned());
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    let result = match generation {
        Generation::Legacy => ().serve(transport).await,
        Generation::Stateless => {
            ().serve_with_lifecycle(
                transport,
                rmcp::service::ClientLifecycleMode::Discover {
                    preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
                },
            )
            .await
        }
    };
    result.map_err(|e| e.to_string())
}

/// The text of the first content block of a tool result.
pub fn text_of(result: &rmcp::model::CallToolResult) -> String {
    let value = serde_json::to_value(result).unwrap();
    value["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Arguments as a JSON object.
pub fn args(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().unwrap().clone()
}

/// An "MCP server" that answers every request with the same status, headers and body, for
/// upstream behaviour the real fixtures never show (refusals, odd session ids). Returns its URL;
/// it stops when the test's runtime does.
pub async fn canned_upstream(
    status: u16,
    headers: &[(&'static str, String)],
    body: &'static str,
) -> String {
    use axum::http::{HeaderName, HeaderValue, StatusCode};
    let status = StatusCode::from_u16(status).unwrap();
    let headers: Vec<(HeaderName, HeaderValue)> = headers
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect();
    let reply = move || {
        let headers = headers.clone();
        async move {
            let mut response = axum::response::Response::new(axum::body::Body::from(body));
            *response.status_mut() = status;
            response.headers_mut().extend(headers);
            response
        }
    };
    let app = axum::Router::new().route("/mcp", axum::routing::any(reply));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// A fresh directory under the system's temporary directory, removed on drop (a data
/// directory, say).
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Made now; `what` goes into its name.
    pub fn new(what: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mcpgate-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// The path, as a string for flags.
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
