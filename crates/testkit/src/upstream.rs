//! An MCP server over Streamable HTTP for the tests to put behind the gateway: a few tools
//! that make the gateway's behaviour observable (what headers arrived, whether a request was
//! cancelled), one resource and one prompt.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, ListPromptsResult,
    ListResourcesResult, PaginatedRequestParams, ProgressNotificationParam, Prompt, PromptArgument,
    PromptMessage, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, Role, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// What the upstream observed, for assertions.
#[derive(Default, Debug)]
pub struct Observed {
    /// Calls of the `slow` tool that were cancelled before finishing.
    pub cancelled: AtomicUsize,
    /// Calls of the `slow` tool that started.
    pub slow_started: AtomicUsize,
    /// Every `tools/call`.
    pub calls: AtomicUsize,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// Text to send back.
    message: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SlowArgs {
    /// How long to take.
    millis: u64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ProgressArgs {
    /// How many progress notifications to send before answering.
    steps: u32,
}

/// The test server's handler.
#[derive(Clone)]
pub struct TestServer {
    observed: Arc<Observed>,
    #[allow(dead_code, reason = "read by the code #[tool_handler] generates")]
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl TestServer {
    /// A handler that records into `observed`.
    pub fn new(observed: Arc<Observed>) -> Self {
        TestServer {
            observed,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Returns its message",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    fn echo(&self, Parameters(EchoArgs { message }): Parameters<EchoArgs>) -> String {
        self.observed.calls.fetch_add(1, Ordering::SeqCst);
        message
    }

    #[tool(
        description = "Adds two integers",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true
        ),
        meta = rmcp::model::MetaObject(
            serde_json::json!({"tags": ["math"]}).as_object().cloned().unwrap_or_default()
        )
    )]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        self.observed.calls.fetch_add(1, Ordering::SeqCst);
        (a + b).to_string()
    }

    #[tool(description = "Returns the HTTP request headers this server received, as JSON")]
    fn headers(&self, Extension(parts): Extension<http::request::Parts>) -> String {
        self.observed.calls.fetch_add(1, Ordering::SeqCst);
        let map: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
                )
            })
            .collect();
        serde_json::Value::Object(map).to_string()
    }

    #[tool(description = "Waits, then answers; records cancellation")]
    async fn slow(
        &self,
        Parameters(SlowArgs { millis }): Parameters<SlowArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> String {
        self.observed.calls.fetch_add(1, Ordering::SeqCst);
        self.observed.slow_started.fetch_add(1, Ordering::SeqCst);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(millis)) => "done".to_owned(),
            _ = ctx.ct.cancelled() => {
                self.observed.cancelled.fetch_add(1, Ordering::SeqCst);
                "cancelled".to_owned()
            }
        }
    }

    #[tool(description = "Sends progress notifications, then answers")]
    async fn progress(
        &self,
        Parameters(ProgressArgs { steps }): Parameters<ProgressArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> String {
        self.observed.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(token) = ctx.meta.get_progress_token() {
            for i in 1..=steps {
                let _ = ctx
                    .peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), f64::from(i))
                            .with_total(f64::from(steps)),
                    )
                    .await;
            }
        }
        format!("{steps} steps")
    }
}

#[tool_handler]
impl ServerHandler for TestServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
        .with_instructions("mcpgate test upstream")
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(vec![Resource::new(
            "test://hello",
            "hello",
        )]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if request.uri == "test://hello" {
            Ok(ReadResourceResult::new(vec![ResourceContents::text(
                "hello, world",
                "test://hello",
            )])
            .into())
        } else {
            Err(ErrorData::resource_not_found("no such resource", None))
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let arg = PromptArgument::new("name").with_required(true);
        Ok(ListPromptsResult::with_all_items(vec![Prompt::new(
            "greet",
            Some("Greets someone"),
            Some(vec![arg]),
        )]))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if request.name != "greet" {
            return Err(ErrorData::invalid_params("no such prompt", None));
        }
        let name = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("name"))
            .and_then(|v| v.as_str())
            .unwrap_or("stranger")
            .to_owned();
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            format!("Say hello to {name}"),
        )])
        .into())
    }
}

/// How the test upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Legacy clients get sessions and SSE responses.
    Sessions,
    /// No sessions; plain JSON responses where possible.
    StatelessJson,
}

/// A running test upstream.
pub struct TestUpstream {
    /// `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    /// What it observed.
    pub observed: Arc<Observed>,
    ct: CancellationToken,
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.ct.cancel();
    }
}

impl TestUpstream {
    /// Starts one on a free loopback port.
    pub async fn start(mode: Mode) -> Self {
        let observed = Arc::new(Observed::default());
        let ct = CancellationToken::new();
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(mode == Mode::Sessions)
            .with_json_response(mode == Mode::StatelessJson)
            .with_cancellation_token(ct.clone());
        let for_factory = Arc::clone(&observed);
        let service: StreamableHttpService<TestServer, LocalSessionManager> =
            StreamableHttpService::new(
                move || Ok(TestServer::new(Arc::clone(&for_factory))),
                Default::default(),
                config,
            );
        let router = axum::Router::new().nest_service("/mcp", service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let shutdown = ct.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
        });
        TestUpstream { url, observed, ct }
    }
}
