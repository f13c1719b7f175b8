//! `stdio-upstream`: an MCP server that speaks MCP over stdio (newline-delimited JSON-RPC on
//! stdin/stdout, diagnostics on stderr), for the tests that put a child process behind the
//! gateway.
//!
//! Its tools make the gateway's behaviour observable from the client side: which child
//! answered (`pid`), whether state leaks between sessions (`remember`/`recall`), whether
//! cancellation, progress, logging and server-to-client requests (sampling, elicitation,
//! roots) get through, and what happens when the child crashes or writes garbage.
//!
//! `ask_name` and `sample_mrtr` work in both eras: in a session opened with `initialize`
//! they ask the client with a server-to-client request (like `elicit_name` and `sample`); in a
//! 2026-07-28 request (inline `_meta` negotiation) they answer with an `input_required` result
//! (multi round-trip, SEP-2322) and finish when the client retries with `inputResponses` and
//! `requestState` `"round-1"`.
//!
//! Usage: `stdio-upstream [--legacy | --modern-only] [--garbage-at-start] [--exit-at-start CODE]
//! [--stall]`.
//!
//! - `--legacy`: answer `server/discover` with -32601, like a server of the session-based
//!   revisions (up to 2025-11-25) would.
//! - `--modern-only`: support protocol 2026-07-28 only. `initialize` is answered with the
//!   unsupported-protocol-version error (-32022 in rmcp 3.11), after which rmcp stops serving and
//!   the process exits with status 1; `server/discover` and requests that carry the 2026-07-28
//!   `_meta` work.
//! - `--garbage-at-start`: write two lines that are not JSON to stdout before serving.
//! - `--exit-at-start CODE`: write `stdio-upstream: exiting` to stderr and exit with CODE.
//! - `--stall`: answer the first line (`initialize`) by hand, then never read stdin again.
//!
//! `subscriptions/listen` (2026-07-28) is supported: the server accepts `toolsListChanged`,
//! `promptsListChanged`, `resourcesListChanged` and the `resourceSubscriptions` the client asks
//! for (rmcp then narrows that to what `get_info` advertises, so `promptsListChanged` is
//! dropped), and keeps each open stream until the client cancels it or closes stdin. `touch`
//! sends its notifications on every open stream too (with `_meta`
//! `io.modelcontextprotocol/subscriptionId`; `resources/updated` only to the streams that
//! subscribed the URI).
//!
//! In normal mode it writes `stdio-upstream: started pid=PID` to stderr and serves until
//! stdin closes.

// Sampling, roots, logging and resources/subscribe are deprecated in 2026-07-28, but the
// session-based revisions this fixture serves need them.
#![allow(deprecated)]

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::{InputResponses, RequestState};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, CreateMessageRequest,
    CreateMessageRequestParams, DiscoverRequestMethod, DiscoverResult, ElicitRequest,
    ElicitRequestParams, ElicitationAction, ElicitationSchema, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, Implementation, InputRequest, InputRequests,
    InputRequiredResult, ListPromptsResult, ListResourcesResult, LoggingLevel,
    LoggingMessageNotificationParam, PaginatedRequestParams, ProgressNotificationParam, Prompt,
    PromptArgument, PromptMessage, ProtocolVersion, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Resource, ResourceContents,
    ResourceUpdatedNotificationParam, Role, SamplingMessage, ServerCapabilities, ServerConfig,
    SetLevelRequestParams, SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext, SubscriptionSendError, SubscriptionSink};
use rmcp::{
    ErrorData, RoleServer, ServerHandler, ServiceExt as _, schemars, tool, tool_handler,
    tool_router,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;

const HELLO_URI: &str = "test://hello";

/// The versions `--modern-only` supports.
const MODERN_ONLY_VERSIONS: &[ProtocolVersion] = &[ProtocolVersion::V_2026_07_28];

/// The `requestState` the multi-round-trip tools hand out with their `input_required` result,
/// and expect back on the retry.
const ROUND_ONE: &str = "round-1";

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

/// The open `subscriptions/listen` streams, by a key of this process's own.
type ListenStreams = Arc<Mutex<HashMap<u64, SubscriptionSink>>>;

/// Takes a listen stream out of [`ListenStreams`] when `listen` ends (or its future is dropped).
struct ListenRegistration {
    streams: ListenStreams,
    key: u64,
}

impl Drop for ListenRegistration {
    fn drop(&mut self) {
        if let Ok(mut streams) = self.streams.lock() {
            streams.remove(&self.key);
        }
    }
}

/// The server's handler; one per process.
#[derive(Clone)]
struct StdioServer {
    /// `--legacy`: refuse `server/discover`.
    legacy: bool,
    /// `--modern-only`: support 2026-07-28 only.
    modern_only: bool,
    /// What `remember` stored.
    memory: Arc<Mutex<String>>,
    /// Calls of `slow` that were cancelled before finishing.
    cancelled: Arc<AtomicUsize>,
    /// The open `subscriptions/listen` streams.
    listen_streams: ListenStreams,
    /// The key of the next listen stream.
    next_listen_key: Arc<AtomicU64>,
    /// Cancelled when stdin reaches its end, so that open listen streams end then rather than
    /// hold up rmcp's shutdown (it waits up to 5 s for running handlers).
    stdin_closed: CancellationToken,
    #[allow(dead_code, reason = "read by the code #[tool_handler] generates")]
    tool_router: ToolRouter<Self>,
}

fn peer_error(what: &str, e: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(format!("{what} failed: {e}"), None)
}

/// Whether the request belongs to the 2026-07-28 era (its `_meta` names that version or later),
/// rather than to a session opened with `initialize`.
fn is_stateless_era(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

fn text_response(text: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(text)]).into()
}

/// The form `elicit_name` and `ask_name` ask for.
fn name_elicitation() -> ElicitRequestParams {
    let schema: ElicitationSchema = serde_json::from_value(json!({
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"]
    }))
    .expect("elicitation schema");
    ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: "What is your name?".to_owned(),
        requested_schema: schema,
    }
}

/// The sampling request `sample` and `sample_mrtr` send.
fn sampling_params(prompt: String) -> CreateMessageRequestParams {
    CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 50)
}

/// The text of a `CreateMessageResult`: its content is one block, or (2025-11-25) possibly an
/// array of blocks.
fn sampled_text(result: &Value) -> Option<&str> {
    result
        .pointer("/content/text")
        .or_else(|| result.pointer("/content/0/text"))
        .and_then(Value::as_str)
}

/// An `input_required` result asking for one input under `key`, with `requestState` "round-1".
fn input_required(key: &str, request: InputRequest) -> CallToolResponse {
    let mut requests = InputRequests::new();
    requests.insert(key.to_owned(), request);
    InputRequiredResult::new(Some(requests), Some(ROUND_ONE.to_owned())).into()
}

/// Looks up the answer under `key` of a multi-round-trip retry. `Ok(None)` when there is none
/// (a first round, or a client that did not answer); an error when there is one but the
/// `requestState` is not the one the first round handed out.
fn retry_answer<'a>(
    responses: Option<&'a rmcp::model::InputResponses>,
    state: Option<&str>,
    key: &str,
) -> Result<Option<&'a Value>, ErrorData> {
    if let Some(state) = state
        && state != ROUND_ONE
    {
        return Err(ErrorData::invalid_params(
            format!("requestState must be {ROUND_ONE:?}, got {state:?}"),
            Some(json!({"requestState": state})),
        ));
    }
    let Some(answer) = responses.and_then(|r| r.get(key)) else {
        return Ok(None);
    };
    if state.is_none() {
        return Err(ErrorData::invalid_params(
            format!("inputResponses.{key} without requestState {ROUND_ONE:?}"),
            None,
        ));
    }
    Ok(Some(answer))
}

#[tool_router]
impl StdioServer {
    fn new(legacy: bool, modern_only: bool, stdin_closed: CancellationToken) -> Self {
        StdioServer {
            legacy,
            modern_only,
            memory: Arc::new(Mutex::new(String::new())),
            cancelled: Arc::new(AtomicUsize::new(0)),
            listen_streams: Arc::new(Mutex::new(HashMap::new())),
            next_listen_key: Arc::new(AtomicU64::new(0)),
            stdin_closed,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Returns its message",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    fn echo(&self, Parameters(EchoArgs { message }): Parameters<EchoArgs>) -> String {
        message
    }

    #[tool(
        description = "Adds two integers",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true
        )
    )]
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
        sample_via_peer(prompt, &ctx).await
    }

    #[tool(description = "Asks the user for a name (elicitation) and greets them")]
    async fn elicit_name(&self, ctx: RequestContext<RoleServer>) -> Result<String, ErrorData> {
        elicit_name_via_peer(&ctx).await
    }

    #[tool(
        description = "Asks the user for a name and greets them: with an input_required result \
                       (key \"name\") in a 2026-07-28 request, by elicitation in a session"
    )]
    async fn ask_name(
        &self,
        ctx: RequestContext<RoleServer>,
        RequestState(state): RequestState,
        InputResponses(responses): InputResponses,
    ) -> Result<CallToolResponse, ErrorData> {
        if !is_stateless_era(&ctx) {
            return elicit_name_via_peer(&ctx).await.map(text_response);
        }
        let Some(answer) = retry_answer(responses.as_ref(), state.as_deref(), "name")? else {
            return Ok(input_required(
                "name",
                InputRequest::Elicitation(ElicitRequest::new(name_elicitation())),
            ));
        };
        let name = (answer.get("action").and_then(Value::as_str) == Some("accept"))
            .then(|| answer.pointer("/content/name").and_then(Value::as_str))
            .flatten();
        Ok(text_response(match name {
            Some(name) => format!("hello {name}"),
            None => "declined".to_owned(),
        }))
    }

    #[tool(
        description = "Asks the client's LLM and returns its answer: with an input_required \
                       result (key \"answer\") in a 2026-07-28 request, by sampling in a session"
    )]
    async fn sample_mrtr(
        &self,
        Parameters(SampleArgs { prompt }): Parameters<SampleArgs>,
        ctx: RequestContext<RoleServer>,
        RequestState(state): RequestState,
        InputResponses(responses): InputResponses,
    ) -> Result<CallToolResponse, ErrorData> {
        if !is_stateless_era(&ctx) {
            return sample_via_peer(prompt, &ctx).await.map(text_response);
        }
        let Some(answer) = retry_answer(responses.as_ref(), state.as_deref(), "answer")? else {
            return Ok(input_required(
                "answer",
                InputRequest::CreateMessage(CreateMessageRequest::new(sampling_params(prompt))),
            ));
        };
        let text = sampled_text(answer).ok_or_else(|| {
            ErrorData::invalid_params(
                "inputResponses.answer must be a CreateMessageResult with text content",
                Some(json!({"key": "answer"})),
            )
        })?;
        Ok(text_response(format!("sampled: {text}")))
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

    #[tool(
        description = "Writes terminal escape sequences to stdout (not JSON) and stderr, then answers \"ok\""
    )]
    fn ansi(&self) -> String {
        write_stdout_lines(&["\u{1b}[2J\u{1b}[31mstdout-escape\u{7}"]);
        eprintln!("\u{1b}[31mstderr-escape\r\u{1b}[0m");
        "ok".to_owned()
    }

    #[tool(
        description = "Sends resources/updated for the URI and tools/list_changed, to the peer \
                       and on every open subscriptions/listen stream that accepted them"
    )]
    async fn touch(
        &self,
        Parameters(TouchArgs { uri }): Parameters<TouchArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        ctx.peer
            .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri.clone()))
            .await
            .map_err(|e| peer_error("resources/updated", e))?;
        ctx.peer
            .notify_tool_list_changed()
            .await
            .map_err(|e| peer_error("tools/list_changed", e))?;
        let streams: Vec<SubscriptionSink> = self
            .listen_streams
            .lock()
            .expect("listen streams lock")
            .values()
            .cloned()
            .collect();
        for sink in streams {
            stream_sent(
                "resources/updated",
                sink.notify_resource_updated(uri.clone()).await,
            )?;
            stream_sent("tools/list_changed", sink.notify_tool_list_changed().await)?;
        }
        Ok("touched".to_owned())
    }
}

/// The outcome of sending a notification on a listen stream: a notification the stream did not
/// accept (e.g. `resources/updated` for a URI it did not subscribe), or a stream that closed
/// meanwhile, is skipped; a transport failure is an error.
fn stream_sent(what: &str, result: Result<(), SubscriptionSendError>) -> Result<(), ErrorData> {
    match result {
        Ok(())
        | Err(
            SubscriptionSendError::NotificationNotAccepted(_)
            | SubscriptionSendError::SubscriptionClosed,
        ) => Ok(()),
        Err(e) => Err(peer_error(&format!("{what} on a listen stream"), e)),
    }
}

/// `sample` in a session: a `sampling/createMessage` request to the client.
async fn sample_via_peer(
    prompt: String,
    ctx: &RequestContext<RoleServer>,
) -> Result<String, ErrorData> {
    let result = ctx
        .peer
        .create_message(sampling_params(prompt))
        .await
        .map_err(|e| peer_error("sampling", e))?;
    let value = serde_json::to_value(&result).unwrap_or(Value::Null);
    Ok(format!(
        "sampled: {}",
        sampled_text(&value).unwrap_or_default()
    ))
}

/// `elicit_name` in a session: an `elicitation/create` request to the client.
async fn elicit_name_via_peer(ctx: &RequestContext<RoleServer>) -> Result<String, ErrorData> {
    let result = ctx
        .peer
        .create_elicitation(name_elicitation())
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

    /// Every version rmcp knows, or with `--modern-only` just 2026-07-28.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(if self.modern_only {
            MODERN_ONLY_VERSIONS
        } else {
            ProtocolVersion::KNOWN_VERSIONS
        })
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

    /// The list-changed categories, and whatever resource URIs the client asks for.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = SubscriptionFilter::builder()
            .tools_list_changed()
            .prompts_list_changed()
            .resources_list_changed()
            .build();
        accepted
            .resource_subscriptions
            .clone_from(&requested.resource_subscriptions);
        Some(accepted)
    }

    /// Keeps the stream's sink in `listen_streams` (for `touch`) until the client cancels it
    /// (rmcp then drops the final result) or closes stdin (the stream then ends with its final
    /// result).
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let key = self.next_listen_key.fetch_add(1, Ordering::SeqCst);
        self.listen_streams
            .lock()
            .expect("listen streams lock")
            .insert(key, context.sink().clone());
        let _registration = ListenRegistration {
            streams: self.listen_streams.clone(),
            key,
        };
        tokio::select! {
            () = context.cancelled() => {}
            () = self.stdin_closed.cancelled() => {}
        }
        Ok(())
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
    modern_only: bool,
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
            "--modern-only" => args.modern_only = true,
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
                    "usage: stdio-upstream [--legacy | --modern-only] [--garbage-at-start] [--exit-at-start CODE] [--stall]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.legacy && args.modern_only {
        return Err("--legacy and --modern-only exclude each other".to_owned());
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

/// Stdin for rmcp, cancelling a token when it reaches its end (or fails).
struct WatchedStdin {
    inner: tokio::io::Stdin,
    closed: CancellationToken,
}

impl AsyncRead for WatchedStdin {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &poll {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                self.closed.cancel();
            }
            Poll::Ready(Err(_)) => self.closed.cancel(),
            _ => {}
        }
        poll
    }
}

/// Normal mode: serves MCP over stdio until stdin closes.
async fn serve(legacy: bool, modern_only: bool) {
    eprintln!("stdio-upstream: started pid={}", std::process::id());
    let stdin_closed = CancellationToken::new();
    let (stdin, stdout) = rmcp::transport::io::stdio();
    let stdin = WatchedStdin {
        inner: stdin,
        closed: stdin_closed.clone(),
    };
    let service = match StdioServer::new(legacy, modern_only, stdin_closed)
        .serve((stdin, stdout))
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
    runtime.block_on(serve(args.legacy, args.modern_only));
    // Do not wait for tasks still running (e.g. a `slow` call) once stdin has closed.
    runtime.shutdown_timeout(Duration::from_millis(100));
}
