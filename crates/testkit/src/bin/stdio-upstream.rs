//! `stdio-upstream`: an MCP server that speaks MCP over stdio (newline-delimited JSON-RPC on
//! stdin/stdout, diagnostics on stderr), for the tests that put a child process behind the
//! gateway.
//!
//! Its tools make the gateway's behaviour observable from the client side: which child
//! answered (`pid`), whether state leaks between sessions (`remember`/`recall`), whether
//! cancellation, progress, logging and server-to-client requests (sampling, elicitation,
//! roots) get through, and what happens when the child crashes or writes garbage.
//!
//! Usage: `stdio-upstream [--legacy] [--garbage-at-start] [--exit-at-start CODE] [--stall]`.
//!
//! - `--legacy`: answer `server/discover` with -32601, like a server of the session-based
//!   revisions (up to 2025-11-25) would.
//! - `--garbage-at-start`: write two lines that are not JSON to stdout before serving.
//! - `--exit-at-start CODE`: write `stdio-upstream: exiting` to stderr and exit with CODE.
//! - `--stall`: answer the first line (`initialize`) by hand, then never read stdin again.
//!
//! In normal mode it writes `stdio-upstream: started pid=PID` to stderr and serves until
//! stdin closes.

// Sampling, roots, logging and resources/subscribe are deprecated in 2026-07-28, but the
// session-based revisions this fixture serves need them.
#![allow(deprecated)]

use std::io::{BufRead as _, Write as _};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CreateMessageRequestParams, DiscoverRequestMethod, DiscoverResult, ElicitRequestParams,
    ElicitationAction, ElicitationSchema, GetPromptRequestParams, GetPromptResponse,
    GetPromptResult, Implementation, ListPromptsResult, ListResourcesResult, LoggingLevel,
    LoggingMessageNotificationParam, PaginatedRequestParams, ProgressNotificationParam, Prompt,
    PromptArgument, PromptMessage, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ResourceUpdatedNotificationParam, Role,
    SamplingMessage, ServerCapabilities, ServerConfig, SetLevelRequestParams,
    SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{
    ErrorData, RoleServer, ServerHandler, ServiceExt as _, schemars, tool, tool_handler,
    tool_router,
};
use serde::Deserialize;
use serde_json::{Value, json};

const HELLO_URI: &str = "test://hello";

// ---------------------------------------------------------------------------------------------
// Tool arguments
// ---------------------------------------------------------------------------------------------

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
struct EnvArgs {
    /// Variable name.
    name: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct RememberArgs {
    /// Text to keep in this process.
    value: String,
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

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct LogArgs {
    /// Text to send as a log notification.
    message: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SampleArgs {
    /// Prompt to send to the client's LLM.
    prompt: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct TouchArgs {
    /// Resource to report as updated.
    uri: String,
}

// ---------------------------------------------------------------------------------------------
// The handler
// ---------------------------------------------------------------------------------------------

/// The server's handler; one per process.
#[derive(Clone)]
struct StdioServer {
    /// `--legacy`: refuse `server/discover`.
    legacy: bool,
    /// What `remember` stored.
    memory: Arc<Mutex<String>>,
    /// Calls of `slow` that were cancelled before finishing.
    cancelled: Arc<AtomicUsize>,
    #[allow(dead_code, reason = "read by the code #[tool_handler] generates")]
    tool_router: ToolRouter<Self>,
}

fn peer_error(what: &str, e: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(format!("{what} failed: {e}"), None)
}

#[tool_router]
impl StdioServer {
    fn new(legacy: bool) -> Self {
        StdioServer {
            legacy,
            memory: Arc::new(Mutex::new(String::new())),
            cancelled: Arc::new(AtomicUsize::new(0)),
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Returns its message")]
    fn echo(&self, Parameters(EchoArgs { message }): Parameters<EchoArgs>) -> String {
        message
    }

    #[tool(description = "Adds two integers")]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }

    #[tool(
        description = "Returns the value of an environment variable of this process, or \"(unset)\""
    )]
    fn env(&self, Parameters(EnvArgs { name }): Parameters<EnvArgs>) -> String {
        std::env::var(name).unwrap_or_else(|_| "(unset)".to_owned())
    }

    #[tool(description = "Returns the id of this process")]
    fn pid(&self) -> String {
        std::process::id().to_string()
    }

    #[tool(description = "Stores a string in this process")]
    fn remember(&self, Parameters(RememberArgs { value }): Parameters<RememberArgs>) -> String {
        *self.memory.lock().expect("memory lock") = value;
        "remembered".to_owned()
    }

    #[tool(description = "Returns what `remember` stored, or an empty string")]
    fn recall(&self) -> String {
        self.memory.lock().expect("memory lock").clone()
    }

    #[tool(description = "Waits, then answers \"done\"; counts cancellations")]
    async fn slow(
        &self,
        Parameters(SlowArgs { millis }): Parameters<SlowArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> String {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(millis)) => "done".to_owned(),
            _ = ctx.ct.cancelled() => {
                eprintln!("stdio-upstream: cancelled");
                self.cancelled.fetch_add(1, Ordering::SeqCst);
                "cancelled".to_owned()
            }
        }
    }

    #[tool(description = "How many calls of `slow` were cancelled")]
    fn cancelled_count(&self) -> String {
        self.cancelled.load(Ordering::SeqCst).to_string()
    }

    #[tool(description = "Sends progress notifications, then answers")]
    async fn progress(
        &self,
        Parameters(ProgressArgs { steps }): Parameters<ProgressArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> String {
        if let Some(token) = ctx.meta.get_progress_token() {
            for i in 1..=steps {
                let param = ProgressNotificationParam::new(token.clone(), f64::from(i))
                    .with_total(f64::from(steps));
                if let Err(e) = ctx.peer.notify_progress(param).await {
                    eprintln!("stdio-upstream: could not send progress: {e}");
                }
            }
        }
        format!("{steps} steps")
    }

    #[tool(description = "Sends an info log notification with the message")]
    async fn log(
        &self,
        Parameters(LogArgs { message }): Parameters<LogArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        let param = LoggingMessageNotificationParam::new(LoggingLevel::Info, json!(message))
            .with_logger("stdio-upstream");
        ctx.peer
            .notify_logging_message(param)
            .await
            .map_err(|e| peer_error("logging", e))?;
        Ok("logged".to_owned())
    }

    #[tool(description = "Asks the client's LLM (sampling) and returns its answer")]
    async fn sample(
        &self,
        Parameters(SampleArgs { prompt }): Parameters<SampleArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        let params = CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 50);
        let result = ctx
            .peer
            .create_message(params)
            .await
            .map_err(|e| peer_error("sampling", e))?;
        // The content is one block, or (2025-11-25) possibly an array of blocks.
        let value = serde_json::to_value(&result).unwrap_or(Value::Null);
        let text = value
            .pointer("/content/text")
            .or_else(|| value.pointer("/content/0/text"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(format!("sampled: {text}"))
    }

    #[tool(description = "Asks the user for a name (elicitation) and greets them")]
    async fn elicit_name(&self, ctx: RequestContext<RoleServer>) -> Result<String, ErrorData> {
        let schema: ElicitationSchema = serde_json::from_value(json!({
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"]
        }))
        .expect("elicitation schema");
        let params = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: "What is your name?".to_owned(),
            requested_schema: schema,
        };
        let result = ctx
            .peer
            .create_elicitation(params)
            .await
            .map_err(|e| peer_error("elicitation", e))?;
        let name = result
            .content
            .as_ref()
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str);
        Ok(match (result.action, name) {
            (ElicitationAction::Accept, Some(name)) => format!("hello {name}"),
            _ => "declined".to_owned(),
        })
    }

    #[tool(description = "Returns the client's root URIs, joined by commas")]
    async fn roots(&self, ctx: RequestContext<RoleServer>) -> Result<String, ErrorData> {
        let result = ctx
            .peer
            .list_roots()
            .await
            .map_err(|e| peer_error("roots/list", e))?;
        Ok(result
            .roots
            .iter()
            .map(|r| r.uri.as_str())
            .collect::<Vec<_>>()
            .join(","))
    }

    #[tool(description = "Exits the process with status 3 without answering")]
    fn crash(&self) -> String {
        eprintln!("stdio-upstream: crashing");
        std::process::exit(3);
    }

    #[tool(description = "Writes a line that is not JSON to stdout, then answers \"ok\"")]
    fn garbage(&self) -> String {
        write_stdout_lines(&["this is not json"]);
        "ok".to_owned()
    }

    #[tool(description = "Sends resources/updated for the URI and tools/list_changed")]
    async fn touch(
        &self,
        Parameters(TouchArgs { uri }): Parameters<TouchArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        ctx.peer
            .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
            .await
            .map_err(|e| peer_error("resources/updated", e))?;
        ctx.peer
            .notify_tool_list_changed()
            .await
            .map_err(|e| peer_error("tools/list_changed", e))?;
        Ok("touched".to_owned())
    }
}

#[tool_handler]
impl ServerHandler for StdioServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_resources_list_changed()
                .enable_prompts()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new(
            "mcpgate-stdio-upstream",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions("mcpgate stdio test upstream")
    }

    /// Answered as usual, except with `--legacy`, where the method does not exist.
    async fn discover(
        &self,
        _context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, ErrorData> {
        if self.legacy {
            return Err(ErrorData::method_not_found::<DiscoverRequestMethod>());
        }
        Ok(DiscoverResult::from_server_info(
            self.supported_protocol_versions().into_owned(),
            self.get_info(),
        ))
    }

    async fn set_level(
        &self,
        _request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(vec![Resource::new(
            HELLO_URI, "hello",
        )]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if request.uri == HELLO_URI {
            Ok(
                ReadResourceResult::new(vec![ResourceContents::text(
                    "hello from stdio",
                    HELLO_URI,
                )])
                .into(),
            )
        } else {
            Err(ErrorData::resource_not_found(
                "no such resource",
                Some(json!({"uri": request.uri})),
            ))
        }
    }

    async fn subscribe(
        &self,
        _request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }

    async fn unsubscribe(
        &self,
        _request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
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
            .and_then(Value::as_str)
            .ok_or_else(|| ErrorData::invalid_params("missing prompt argument `name`", None))?;
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            format!("Hello, {name}!"),
        )])
        .into())
    }
}

// ---------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------

/// Writes whole lines to stdout under its lock, so they do not interleave with rmcp's frames
/// (rmcp's stdio writer goes through the same `std::io::Stdout`).
fn write_stdout_lines(lines: &[&str]) {
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

#[derive(Default)]
struct Args {
    legacy: bool,
    garbage_at_start: bool,
    exit_at_start: Option<i32>,
    stall: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--legacy" => args.legacy = true,
            "--garbage-at-start" => args.garbage_at_start = true,
            "--stall" => args.stall = true,
            "--exit-at-start" => {
                let code = it.next().ok_or("--exit-at-start needs an exit code")?;
                let code = code
                    .parse()
                    .map_err(|e| format!("bad --exit-at-start code {code:?}: {e}"))?;
                args.exit_at_start = Some(code);
            }
            "-h" | "--help" => {
                eprintln!(
                    "usage: stdio-upstream [--legacy] [--garbage-at-start] [--exit-at-start CODE] [--stall]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// `--stall`: answers the first line (taken to be `initialize`) without rmcp, then sleeps
/// forever without reading stdin again.
fn stall() -> ! {
    eprintln!("stdio-upstream: stalling pid={}", std::process::id());
    let mut line = String::new();
    if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
        eprintln!("stdio-upstream: cannot read stdin: {e}");
    }
    let id = serde_json::from_str::<Value>(&line)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(Value::Null);
    let response = json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "stall", "version": "0"}
        }
    });
    write_stdout_lines(&[&response.to_string()]);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Normal mode: serves MCP over stdio until stdin closes.
async fn serve(legacy: bool) {
    eprintln!("stdio-upstream: started pid={}", std::process::id());
    let service = match StdioServer::new(legacy)
        .serve(rmcp::transport::io::stdio())
        .await
    {
        Ok(service) => service,
        Err(e) => {
            eprintln!("stdio-upstream: could not start serving: {e}");
            std::process::exit(1);
        }
    };
    match service.waiting().await {
        Ok(reason) => eprintln!("stdio-upstream: stopped: {reason:?}"),
        Err(e) => eprintln!("stdio-upstream: service task failed: {e}"),
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("stdio-upstream: {e}");
            std::process::exit(2);
        }
    };
    if let Some(code) = args.exit_at_start {
        eprintln!("stdio-upstream: exiting");
        std::process::exit(code);
    }
    if args.garbage_at_start {
        write_stdout_lines(&["garbage line one", "<<< not json either >>>"]);
    }
    if args.stall {
        stall();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(serve(args.legacy));
    // Do not wait for tasks still running (e.g. a `slow` call) once stdin has closed.
    runtime.shutdown_timeout(Duration::from_millis(100));
}
