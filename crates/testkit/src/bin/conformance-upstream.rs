//! `conformance-upstream`: the MCP server that the conformance suite's `server` scenarios
//! run against (directly, or through the gateway).
//!
//! It serves Streamable HTTP at `/mcp`. Clients speaking a revision up to 2025-11-25 get
//! sessions (`initialize` + `Mcp-Session-Id`); 2026-07-28 requests are served statelessly by
//! rmcp itself. The tools, resources and prompts are the fixture surface the suite expects;
//! the multi-round-trip (`input_required`) tools keep their progress in an HMAC-sealed
//! `requestState` so that no state lives on the server.
//!
//! Usage: `conformance-upstream [--listen 127.0.0.1:PORT] [--loopback-hosts-only]`.
//! Prints one line `listening on http://ADDR/mcp` to stdout once the socket is bound.
//!
//! rmcp's `Host` check is off by default because the gateway in front forwards requests with
//! its own `Host` and does the DNS-rebinding check itself. `--loopback-hosts-only` turns
//! rmcp's default loopback allow-list back on, for running the suite against this binary
//! directly.

// Sampling, roots, logging and resources/subscribe are deprecated in 2026-07-28, but the
// 2025-11-25 scenarios need them.
#![allow(deprecated)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities,
    CompleteRequestParams, CompleteResult, CompletionInfo, ContentBlock, CreateMessageRequest,
    CreateMessageRequestParams, ElicitRequest, ElicitRequestParams, ElicitationSchema,
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation, InputRequest,
    InputRequests, InputRequiredResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListRootsRequest, ListToolsResult, LoggingLevel,
    LoggingMessageNotificationParam, PaginatedRequestParams, ProgressNotificationParam, Prompt,
    PromptMessage, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate, Role, SamplingMessage,
    ServerCapabilities, ServerConfig, SetLevelRequestParams, SubscribeRequestParams, Tool,
    UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------------------------

/// A 1x1 PNG.
const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A tiny WAV file (header plus one sample).
const WAV_TINY: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

const TEXT_RESOURCE: &str = "test://static-text";
const BINARY_RESOURCE: &str = "test://static-binary";
const WATCHED_RESOURCE: &str = "test://watched-resource";

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// Builds an rmcp model value from its wire JSON; used for the static catalogue, where the
/// JSON is the clearest statement of what the suite expects.
fn wire<T: serde::de::DeserializeOwned>(value: Value) -> T {
    match serde_json::from_value(value.clone()) {
        Ok(v) => v,
        Err(e) => panic!("fixture JSON does not fit the rmcp model: {e}: {value}"),
    }
}

fn text_result(text: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(text)]).into()
}

fn is_stateless_era(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

fn client_caps(ctx: &RequestContext<RoleServer>) -> ClientCapabilities {
    ctx.client_capabilities().unwrap_or_default()
}

/// Severity rank, lowest first, as listed in the spec.
fn level_rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

fn elicitation(message: &str, schema: Value) -> ElicitRequestParams {
    ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: message.to_owned(),
        requested_schema: wire::<ElicitationSchema>(schema),
    }
}

fn elicit_input(message: &str, schema: Value) -> InputRequest {
    InputRequest::Elicitation(ElicitRequest::new(elicitation(message, schema)))
}

fn sampling_input(question: &str, max_tokens: u32) -> InputRequest {
    InputRequest::CreateMessage(CreateMessageRequest::new(CreateMessageRequestParams::new(
        vec![SamplingMessage::user_text(question)],
        max_tokens,
    )))
}

fn roots_input() -> InputRequest {
    InputRequest::ListRoots(ListRootsRequest::default())
}

fn input_required(
    requests: Vec<(&str, InputRequest)>,
    state: Option<String>,
) -> InputRequiredResult {
    let map: InputRequests = requests
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    InputRequiredResult::new(if map.is_empty() { None } else { Some(map) }, state)
}

fn name_schema() -> Value {
    json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
}

/// What the client answered for one input request, as far as the fixture cares.
enum Answer<'a> {
    /// No entry under that key.
    Missing,
    /// `{"action": "accept", "content": {...}}`.
    Accepted(&'a Map<String, Value>),
    /// An object of another shape (declined elicitation, sampling or roots result).
    Other(&'a Map<String, Value>),
}

/// Looks up `key` in `inputResponses`. A value that is not an object is a malformed retry.
fn answer<'a>(
    responses: Option<&'a Map<String, Value>>,
    key: &str,
) -> Result<Answer<'a>, ErrorData> {
    let Some(value) = responses.and_then(|r| r.get(key)) else {
        return Ok(Answer::Missing);
    };
    let Some(obj) = value.as_object() else {
        return Err(ErrorData::invalid_params(
            format!("inputResponses.{key} must be an object"),
            Some(json!({"key": key})),
        ));
    };
    if obj.get("action").and_then(Value::as_str) == Some("accept")
        && let Some(content) = obj.get("content").and_then(Value::as_object)
    {
        return Ok(Answer::Accepted(content));
    }
    Ok(Answer::Other(obj))
}

fn accepted_string<'a>(a: &Answer<'a>, field: &str) -> Option<&'a str> {
    match a {
        Answer::Accepted(content) => content.get(field).and_then(Value::as_str),
        _ => None,
    }
}

/// The text of a sampling answer (`{role, content: {type: "text", text}}`).
fn sampled_text<'a>(a: &Answer<'a>) -> Option<&'a str> {
    match a {
        Answer::Other(obj) | Answer::Accepted(obj) => obj.get("content")?.get("text")?.as_str(),
        Answer::Missing => None,
    }
}

fn to_map(responses: Option<&rmcp::model::InputResponses>) -> Option<Map<String, Value>> {
    responses.map(|r| r.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

// ---------------------------------------------------------------------------------------------
// requestState sealing
// ---------------------------------------------------------------------------------------------

/// Seals and opens `requestState` values: `base64url(json) "." base64url(HMAC-SHA256(json))`,
/// with a key drawn at start-up, so a state only opens in the process that issued it.
struct StateSealer {
    key: hmac::Key,
}

impl StateSealer {
    fn new() -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("random HMAC key");
        StateSealer { key }
    }

    /// `tool` binds the state to the tool (or prompt) that issued it.
    fn seal(&self, tool: &str, state: Value) -> String {
        let body = serde_json::to_vec(&json!({"for": tool, "state": state})).expect("json");
        let tag = hmac::sign(&self.key, &body);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&body),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The state a retry carries, or -32602 when it was altered or issued for something else.
    fn open(&self, tool: &str, sealed: &str) -> Result<Value, ErrorData> {
        let invalid = || ErrorData::invalid_params("requestState failed its integrity check", None);
        let (body, tag) = sealed.split_once('.').ok_or_else(invalid)?;
        let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        hmac::verify(&self.key, &body, &tag).map_err(|_| invalid())?;
        let mut value: Value = serde_json::from_slice(&body).map_err(|_| invalid())?;
        if value.get("for").and_then(Value::as_str) != Some(tool) {
            return Err(ErrorData::invalid_params(
                "requestState was issued for another request",
                None,
            ));
        }
        Ok(value
            .get_mut("state")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }
}

// ---------------------------------------------------------------------------------------------
// Catalogue
// ---------------------------------------------------------------------------------------------

fn no_args() -> Value {
    json!({"type": "object", "properties": {}})
}

fn tool(name: &str, description: &str, input_schema: Value) -> Tool {
    wire(json!({"name": name, "description": description, "inputSchema": input_schema}))
}

/// `tools/list`, in a fixed order: `test_simple_text` first (the header-validation scenario
/// calls the first tool with no arguments).
static TOOLS: LazyLock<Vec<Tool>> = LazyLock::new(|| {
    vec![
        tool(
            "test_simple_text",
            "Returns a simple text content block",
            no_args(),
        ),
        tool(
            "test_image_content",
            "Returns an image content block (1x1 PNG)",
            no_args(),
        ),
        tool(
            "test_audio_content",
            "Returns an audio content block (WAV)",
            no_args(),
        ),
        tool(
            "test_embedded_resource",
            "Returns an embedded text resource",
            no_args(),
        ),
        tool(
            "test_multiple_content_types",
            "Returns text, image and resource content together",
            no_args(),
        ),
        tool(
            "test_tool_with_logging",
            "Sends three log notifications while it runs",
            no_args(),
        ),
        tool(
            "test_error_handling",
            "Always returns a tool error (isError: true)",
            no_args(),
        ),
        tool(
            "test_tool_with_progress",
            "Reports progress 0, 50 and 100 of 100 before answering",
            no_args(),
        ),
        tool(
            "test_sampling",
            "Asks the client's LLM (sampling/createMessage) and returns its answer",
            json!({"type": "object", "properties": {"prompt": {"type": "string", "description": "Prompt to send to the LLM"}}, "required": ["prompt"]}),
        ),
        tool(
            "test_elicitation",
            "Asks the user (elicitation/create) for a username and email",
            json!({"type": "object", "properties": {"message": {"type": "string", "description": "Message shown to the user"}}, "required": ["message"]}),
        ),
        tool(
            "test_elicitation_sep1034_defaults",
            "Elicits a form whose fields all carry defaults (SEP-1034)",
            no_args(),
        ),
        tool(
            "test_elicitation_sep1330_enums",
            "Elicits a form with every enum style (SEP-1330)",
            no_args(),
        ),
        tool(
            "test_reconnection",
            "Answers after a short delay (SSE reconnection probe)",
            no_args(),
        ),
        tool(
            "test_missing_capability",
            "Needs the client's sampling capability; fails with -32021 without it",
            no_args(),
        ),
        tool(
            "test_streaming_elicitation",
            "Needs one elicitation answer; asks for it with an input_required result",
            no_args(),
        ),
        tool(
            "test_logging_tool",
            "Logs only when the request asks for a log level",
            no_args(),
        ),
        tool(
            "test_input_required_result_elicitation",
            "Multi-round-trip: asks for the user's name, then greets",
            no_args(),
        ),
        tool(
            "test_input_required_result_sampling",
            "Multi-round-trip: asks the client's LLM a question",
            no_args(),
        ),
        tool(
            "test_input_required_result_list_roots",
            "Multi-round-trip: asks for the client's roots",
            no_args(),
        ),
        tool(
            "test_input_required_result_request_state",
            "Multi-round-trip with a sealed requestState",
            no_args(),
        ),
        tool(
            "test_input_required_result_multiple_inputs",
            "Multi-round-trip with elicitation, sampling and roots at once",
            no_args(),
        ),
        tool(
            "test_input_required_result_multi_round",
            "Multi-round-trip over two rounds of input",
            no_args(),
        ),
        tool(
            "test_input_required_result_tampered_state",
            "Multi-round-trip that rejects an altered requestState",
            no_args(),
        ),
        tool(
            "test_input_required_result_capabilities",
            "Multi-round-trip that only asks for what the client declared",
            no_args(),
        ),
        tool(
            "test_custom_header",
            "Echoes `value`, which the client also mirrors into the Mcp-Param-Value header (SEP-2243)",
            json!({"type": "object", "properties": {"value": {"type": "string", "description": "Text to echo", "x-mcp-header": "Value"}}, "required": ["value"]}),
        ),
        tool(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "$anchor": "addressDef",
                        "type": "object",
                        "properties": {"street": {"type": "string"}, "city": {"type": "string"}}
                    }
                },
                "properties": {
                    "name": {"type": "string"},
                    "address": {"$ref": "#/$defs/address"},
                    "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                    "phone": {"type": "string"},
                    "email": {"type": "string"}
                },
                "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
                "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
                "then": {"required": ["phone"]},
                "else": {"required": ["email"]},
                "additionalProperties": false
            }),
        ),
    ]
});

static RESOURCES: LazyLock<Vec<Resource>> = LazyLock::new(|| {
    vec![
        wire(
            json!({"uri": TEXT_RESOURCE, "name": "static-text", "title": "Static Text Resource",
            "description": "A static text resource for testing", "mimeType": "text/plain"}),
        ),
        wire(
            json!({"uri": BINARY_RESOURCE, "name": "static-binary", "title": "Static Binary Resource",
            "description": "A static binary resource (image) for testing", "mimeType": "image/png"}),
        ),
        wire(
            json!({"uri": WATCHED_RESOURCE, "name": "watched-resource", "title": "Watched Resource",
            "description": "A resource that can be subscribed to", "mimeType": "text/plain"}),
        ),
    ]
});

static TEMPLATES: LazyLock<Vec<ResourceTemplate>> = LazyLock::new(|| {
    vec![wire(
        json!({"uriTemplate": "test://template/{id}/data", "name": "template", "title": "Resource Template",
        "description": "A resource template with parameter substitution", "mimeType": "application/json"}),
    )]
});

static PROMPTS: LazyLock<Vec<Prompt>> = LazyLock::new(|| {
    vec![
        wire(
            json!({"name": "test_simple_prompt", "title": "Simple Test Prompt",
            "description": "A simple prompt without arguments"}),
        ),
        wire(
            json!({"name": "test_prompt_with_arguments", "title": "Prompt With Arguments",
            "description": "A prompt with required arguments", "arguments": [
                {"name": "arg1", "description": "First test argument", "required": true},
                {"name": "arg2", "description": "Second test argument", "required": true}]}),
        ),
        wire(
            json!({"name": "test_prompt_with_embedded_resource", "title": "Prompt With Embedded Resource",
            "description": "A prompt that includes an embedded resource", "arguments": [
                {"name": "resourceUri", "description": "URI of the resource to embed", "required": true}]}),
        ),
        wire(
            json!({"name": "test_prompt_with_image", "title": "Prompt With Image",
            "description": "A prompt that includes image content"}),
        ),
        wire(
            json!({"name": "test_input_required_result_prompt", "title": "Prompt Needing Input",
            "description": "Multi-round-trip prompt: asks the user for context before it is rendered"}),
        ),
    ]
});

// ---------------------------------------------------------------------------------------------
// The handler
// ---------------------------------------------------------------------------------------------

/// One handler per legacy session, or per request on the stateless wire.
#[derive(Clone)]
struct Fixture {
    sealer: Arc<StateSealer>,
    /// Minimum level set by `logging/setLevel` in this session (legacy only).
    log_level: Arc<Mutex<Option<LoggingLevel>>>,
}

impl Fixture {
    fn new(sealer: Arc<StateSealer>) -> Self {
        Fixture {
            sealer,
            log_level: Arc::new(Mutex::new(None)),
        }
    }

    fn session_logs(&self, level: LoggingLevel) -> bool {
        let threshold = *self.log_level.lock().expect("log level lock");
        threshold.is_none_or(|t| level_rank(level) >= level_rank(t))
    }

    async fn log(&self, ctx: &RequestContext<RoleServer>, level: LoggingLevel, data: &str) {
        let param = LoggingMessageNotificationParam::new(level, json!(data))
            .with_logger("conformance-upstream");
        if let Err(e) = ctx.peer.notify_logging_message(param).await {
            tracing::warn!("could not send a log notification: {e}");
        }
    }

    async fn call(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.clone().unwrap_or_default();
        let responses = to_map(request.input_responses.as_ref());
        let responses = responses.as_ref();
        let state = request.request_state.as_deref();
        let name = request.name.as_ref();
        match name {
            "test_simple_text" => Ok(text_result("This is a simple text response for testing.")),
            "test_image_content" => {
                Ok(CallToolResult::success(vec![ContentBlock::image(PNG_1X1, "image/png")]).into())
            }
            "test_audio_content" => Ok(CallToolResult::success(vec![ContentBlock::audio(
                WAV_TINY,
                "audio/wav",
            )])
            .into()),
            "test_embedded_resource" => Ok(CallToolResult::success(vec![ContentBlock::resource(
                ResourceContents::text(
                    "This is an embedded resource content.",
                    "test://embedded-resource",
                ),
            )])
            .into()),
            "test_multiple_content_types" => Ok(CallToolResult::success(vec![
                ContentBlock::text("Multiple content types test:"),
                ContentBlock::image(PNG_1X1, "image/png"),
                ContentBlock::resource(
                    ResourceContents::text(
                        r#"{"test":"data","value":123}"#,
                        "test://mixed-content-resource",
                    )
                    .with_mime_type("application/json"),
                ),
            ])
            .into()),
            "test_tool_with_logging" => {
                let steps = [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ];
                for (i, step) in steps.into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if self.session_logs(LoggingLevel::Info) {
                        self.log(&ctx, LoggingLevel::Info, step).await;
                    }
                }
                Ok(text_result("Tool with logging executed successfully"))
            }
            "test_error_handling" => Ok(CallToolResult::error(vec![ContentBlock::text(
                "This tool intentionally returns an error for testing",
            )])
            .into()),
            "test_tool_with_progress" => {
                let token = ctx.meta.get_progress_token();
                if let Some(token) = &token {
                    for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        let param = ProgressNotificationParam::new(token.clone(), progress)
                            .with_total(100.0)
                            .with_message(format!("Completed step {} of 3", i + 1));
                        if let Err(e) = ctx.peer.notify_progress(param).await {
                            tracing::warn!("could not send a progress notification: {e}");
                        }
                    }
                }
                let text = token
                    .and_then(|t| serde_json::to_value(&t).ok())
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .unwrap_or_else(|| "no progress token".to_owned());
                Ok(text_result(text))
            }
            "test_sampling" => {
                let prompt = required_str(&args, "prompt")?;
                let params =
                    CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 100);
                let result = ctx.peer.create_message(params).await.map_err(|e| {
                    ErrorData::internal_error(format!("sampling failed: {e}"), None)
                })?;
                let value = serde_json::to_value(&result).unwrap_or(Value::Null);
                let text = value
                    .pointer("/content/text")
                    .and_then(Value::as_str)
                    .map_or_else(|| value.to_string(), str::to_owned);
                Ok(text_result(format!("LLM response: {text}")))
            }
            "test_elicitation" => {
                let message = required_str(&args, "message")?;
                let schema = json!({"type": "object", "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"}},
                    "required": ["username", "email"]});
                let result = self.elicit(&ctx, message, schema).await?;
                Ok(text_result(format!(
                    "User response: action={}, content={}",
                    result.0, result.1
                )))
            }
            "test_elicitation_sep1034_defaults" => {
                let schema = json!({"type": "object", "properties": {
                    "name": {"type": "string", "description": "User name", "default": "John Doe"},
                    "age": {"type": "integer", "description": "User age", "default": 30},
                    "score": {"type": "number", "description": "User score", "default": 95.5},
                    "status": {"type": "string", "description": "User status", "enum": ["active", "inactive", "pending"], "default": "active"},
                    "verified": {"type": "boolean", "description": "Verification status", "default": true}}});
                let result = self
                    .elicit(
                        &ctx,
                        "Please review and update the form fields with defaults",
                        schema,
                    )
                    .await?;
                Ok(text_result(format!(
                    "Elicitation completed: action={}, content={}",
                    result.0, result.1
                )))
            }
            "test_elicitation_sep1330_enums" => {
                let schema = json!({"type": "object", "properties": {
                    "untitledSingle": {"type": "string", "description": "Pick one option", "enum": ["option1", "option2", "option3"]},
                    "titledSingle": {"type": "string", "description": "Pick one titled option", "oneOf": [
                        {"const": "value1", "title": "First Option"},
                        {"const": "value2", "title": "Second Option"},
                        {"const": "value3", "title": "Third Option"}]},
                    "legacyEnum": {"type": "string", "description": "Pick one (legacy enumNames)", "enum": ["opt1", "opt2", "opt3"],
                        "enumNames": ["Option One", "Option Two", "Option Three"]},
                    "untitledMulti": {"type": "array", "description": "Pick several options", "minItems": 1, "maxItems": 3,
                        "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                    "titledMulti": {"type": "array", "description": "Pick several titled options", "minItems": 1, "maxItems": 3,
                        "items": {"anyOf": [
                            {"const": "value1", "title": "First Choice"},
                            {"const": "value2", "title": "Second Choice"},
                            {"const": "value3", "title": "Third Choice"}]}}}});
                let result = self
                    .elicit(&ctx, "Please pick from the enum fields", schema)
                    .await?;
                Ok(text_result(format!(
                    "Elicitation completed: action={}, content={}",
                    result.0, result.1
                )))
            }
            "test_reconnection" => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(text_result("Reconnection test completed"))
            }
            "test_missing_capability" => {
                if client_caps(&ctx).sampling.is_none() {
                    return Err(ErrorData::missing_required_client_capability(
                        ClientCapabilities::builder().enable_sampling().build(),
                    ));
                }
                Ok(text_result("The client declared the sampling capability"))
            }
            "test_streaming_elicitation" => {
                let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]});
                if is_stateless_era(&ctx) {
                    let a = answer(responses, "answer")?;
                    if let Some(text) = accepted_string(&a, "answer") {
                        return Ok(text_result(format!("You answered: {text}")));
                    }
                    return Ok(input_required(
                        vec![("answer", elicit_input("Please provide an answer", schema))],
                        None,
                    )
                    .into());
                }
                let result = self
                    .elicit(&ctx, "Please provide an answer", schema)
                    .await?;
                Ok(text_result(format!(
                    "Elicitation completed: action={}, content={}",
                    result.0, result.1
                )))
            }
            "test_logging_tool" => {
                let wanted = if is_stateless_era(&ctx) {
                    ctx.meta
                        .log_level()
                        .is_some_and(|min| level_rank(LoggingLevel::Info) >= level_rank(min))
                } else {
                    self.session_logs(LoggingLevel::Info)
                };
                if wanted {
                    self.log(&ctx, LoggingLevel::Info, "test_logging_tool ran")
                        .await;
                }
                Ok(text_result("Logging tool finished"))
            }
            "test_input_required_result_elicitation" => {
                let a = answer(responses, "user_name")?;
                match accepted_string(&a, "name") {
                    Some(user) => Ok(text_result(format!("Hello, {user}!"))),
                    None if matches!(a, Answer::Missing) => Ok(input_required(
                        vec![(
                            "user_name",
                            elicit_input("What is your name?", name_schema()),
                        )],
                        None,
                    )
                    .into()),
                    None => Err(ErrorData::invalid_params(
                        "inputResponses.user_name must accept with a string content.name",
                        Some(json!({"key": "user_name"})),
                    )),
                }
            }
            "test_input_required_result_sampling" => {
                let a = answer(responses, "capital_question")?;
                match sampled_text(&a) {
                    Some(text) => Ok(text_result(format!("The model answered: {text}"))),
                    None => Ok(input_required(
                        vec![(
                            "capital_question",
                            sampling_input("What is the capital of France?", 100),
                        )],
                        None,
                    )
                    .into()),
                }
            }
            "test_input_required_result_list_roots" => {
                let a = answer(responses, "client_roots")?;
                match roots_of(&a) {
                    Some(roots) => Ok(text_result(format!("Client roots: {roots}"))),
                    None => Ok(input_required(vec![("client_roots", roots_input())], None).into()),
                }
            }
            "test_input_required_result_request_state"
            | "test_input_required_result_tampered_state" => {
                let confirm_schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]});
                let round_one = || {
                    let sealed = self.sealer.seal(name, json!({"round": 1}));
                    Ok(input_required(
                        vec![(
                            "confirm",
                            elicit_input("Please confirm", confirm_schema.clone()),
                        )],
                        Some(sealed),
                    )
                    .into())
                };
                let Some(state) = state else {
                    return round_one();
                };
                let opened = self.sealer.open(name, state)?;
                if opened.get("round").and_then(Value::as_u64) != Some(1) {
                    return Err(ErrorData::invalid_params(
                        "requestState names an unknown round",
                        None,
                    ));
                }
                match answer(responses, "confirm")? {
                    Answer::Accepted(content) => {
                        let ok = content.get("ok").and_then(Value::as_bool).unwrap_or(false);
                        Ok(text_result(format!("state-ok: confirmed={ok}")))
                    }
                    Answer::Other(_) => Ok(text_result("state-ok: not confirmed")),
                    Answer::Missing => round_one(),
                }
            }
            "test_input_required_result_multiple_inputs" => {
                let sealed = self.sealer.seal(name, json!({"round": 1}));
                let wanted = |keys: &[&str]| {
                    let mut requests = Vec::new();
                    for key in keys {
                        let request = match *key {
                            "user_name" => elicit_input("What is your name?", name_schema()),
                            "greeting" => sampling_input("Generate a greeting", 50),
                            _ => roots_input(),
                        };
                        requests.push((*key, request));
                    }
                    input_required(requests, Some(sealed.clone()))
                };
                let Some(state) = state else {
                    return Ok(wanted(&["user_name", "greeting", "client_roots"]).into());
                };
                self.sealer.open(name, state)?;
                let user = answer(responses, "user_name")?;
                let greeting = answer(responses, "greeting")?;
                let roots = answer(responses, "client_roots")?;
                let mut missing = Vec::new();
                if matches!(user, Answer::Missing) {
                    missing.push("user_name");
                }
                if sampled_text(&greeting).is_none() {
                    missing.push("greeting");
                }
                if roots_of(&roots).is_none() {
                    missing.push("client_roots");
                }
                if !missing.is_empty() {
                    return Ok(wanted(&missing).into());
                }
                Ok(text_result(format!(
                    "{} {}; roots: {}",
                    sampled_text(&greeting).unwrap_or_default(),
                    accepted_string(&user, "name").unwrap_or("stranger"),
                    roots_of(&roots).unwrap_or_default()
                )))
            }
            "test_input_required_result_multi_round" => {
                let step1 = || {
                    let sealed = self.sealer.seal(name, json!({"round": 1}));
                    Ok(input_required(
                        vec![(
                            "step1",
                            elicit_input("Step 1: What is your name?", name_schema()),
                        )],
                        Some(sealed),
                    )
                    .into())
                };
                let step2 = |user: &str| {
                    let sealed = self.sealer.seal(name, json!({"round": 2, "name": user}));
                    let schema = json!({"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]});
                    Ok(input_required(
                        vec![(
                            "step2",
                            elicit_input("Step 2: What is your favorite color?", schema),
                        )],
                        Some(sealed),
                    )
                    .into())
                };
                let Some(state) = state else { return step1() };
                let opened = self.sealer.open(name, state)?;
                match opened.get("round").and_then(Value::as_u64) {
                    Some(1) => match accepted_string(&answer(responses, "step1")?, "name") {
                        Some(user) => step2(user),
                        None => step1(),
                    },
                    Some(2) => {
                        let user = opened
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("stranger")
                            .to_owned();
                        match accepted_string(&answer(responses, "step2")?, "color") {
                            Some(color) => {
                                Ok(text_result(format!("{user}'s favorite color is {color}.")))
                            }
                            None => step2(&user),
                        }
                    }
                    _ => Err(ErrorData::invalid_params(
                        "requestState names an unknown round",
                        None,
                    )),
                }
            }
            "test_input_required_result_capabilities" => {
                let caps = client_caps(&ctx);
                let mut requests = Vec::new();
                if caps.elicitation.is_some() {
                    requests.push((
                        "user_name",
                        elicit_input("What is your name?", name_schema()),
                    ));
                }
                if caps.sampling.is_some() {
                    requests.push((
                        "capital_question",
                        sampling_input("What is the capital of France?", 100),
                    ));
                }
                if caps.roots.is_some() {
                    requests.push(("client_roots", roots_input()));
                }
                if requests.is_empty() {
                    return Err(ErrorData::missing_required_client_capability(
                        ClientCapabilities::builder().enable_elicitation().build(),
                    ));
                }
                let answered = requests
                    .iter()
                    .any(|(key, _)| responses.is_some_and(|r| r.contains_key(*key)));
                if answered {
                    return Ok(text_result("Received input for the declared capabilities"));
                }
                Ok(input_required(requests, None).into())
            }
            "test_custom_header" => Ok(text_result(format!(
                "Echo: {}",
                required_str(&args, "value")?
            ))),
            "json_schema_2020_12_tool" => Ok(text_result(format!(
                "Received arguments: {}",
                Value::Object(args)
            ))),
            _ => Err(ErrorData::invalid_params(
                format!("Unknown tool: {name}"),
                Some(json!({"name": name})),
            )),
        }
    }

    /// A legacy (server-to-client request) elicitation; returns the action and the content.
    async fn elicit(
        &self,
        ctx: &RequestContext<RoleServer>,
        message: &str,
        schema: Value,
    ) -> Result<(String, String), ErrorData> {
        let result = ctx
            .peer
            .create_elicitation(elicitation(message, schema))
            .await
            .map_err(|e| ErrorData::internal_error(format!("elicitation failed: {e}"), None))?;
        let value = serde_json::to_value(&result).unwrap_or(Value::Null);
        let action = value
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let content = value
            .get("content")
            .map_or_else(|| "null".to_owned(), Value::to_string);
        Ok((action, content))
    }
}

fn required_str<'a>(args: &'a Map<String, Value>, key: &str) -> Result<&'a str, ErrorData> {
    args.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ErrorData::invalid_params(format!("missing string argument `{key}`"), None))
}

/// The root URIs of a `roots/list` answer.
fn roots_of(a: &Answer<'_>) -> Option<String> {
    let (Answer::Other(obj) | Answer::Accepted(obj)) = a else {
        return None;
    };
    let roots = obj.get("roots")?.as_array()?;
    Some(
        roots
            .iter()
            .filter_map(|r| r.get("uri").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerConfig {
        // No subscribe/listChanged flags: subscriptions/listen is not implemented, and the
        // legacy resources/subscribe handlers below work without being advertised.
        let capabilities: ServerCapabilities = wire(
            json!({"tools": {}, "prompts": {}, "resources": {}, "logging": {}, "completions": {}}),
        );
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "mcpgate-conformance-upstream",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions("Fixture server for the MCP conformance suite")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(TOOLS.clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        TOOLS.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.call(request, context).await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(RESOURCES.clone()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(
            TEMPLATES.clone(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        let contents = match uri {
            TEXT_RESOURCE => {
                ResourceContents::text("This is the content of the static text resource.", uri)
            }
            BINARY_RESOURCE => ResourceContents::blob(PNG_1X1, uri).with_mime_type("image/png"),
            WATCHED_RESOURCE => ResourceContents::text("Watched resource content", uri),
            _ => match template_id(uri) {
                Some(id) => ResourceContents::text(
                    json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")})
                        .to_string(),
                    uri,
                )
                .with_mime_type("application/json"),
                None => {
                    return Err(ErrorData::invalid_params(
                        "Resource not found",
                        Some(json!({"uri": uri})),
                    ));
                }
            },
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
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
        Ok(ListPromptsResult::with_all_items(PROMPTS.clone()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let arg = |key: &str| {
            request
                .arguments
                .as_ref()
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ErrorData::invalid_params(format!("missing prompt argument `{key}`"), None)
                })
        };
        let messages = match request.name.as_str() {
            "test_simple_prompt" => vec![PromptMessage::new_text(
                Role::User,
                "This is a simple prompt for testing.",
            )],
            "test_prompt_with_arguments" => {
                let (arg1, arg2) = (arg("arg1")?, arg("arg2")?);
                vec![PromptMessage::new_text(
                    Role::User,
                    format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
                )]
            }
            "test_prompt_with_embedded_resource" => {
                let uri = arg("resourceUri")?;
                vec![
                    PromptMessage::new(
                        Role::User,
                        ContentBlock::resource(ResourceContents::text(
                            "Embedded resource content for testing.",
                            uri,
                        )),
                    ),
                    PromptMessage::new_text(
                        Role::User,
                        "Please process the embedded resource above.",
                    ),
                ]
            }
            "test_prompt_with_image" => vec![
                PromptMessage::new(Role::User, ContentBlock::image(PNG_1X1, "image/png")),
                PromptMessage::new_text(Role::User, "Please analyze the image above."),
            ],
            "test_input_required_result_prompt" => {
                let responses = to_map(request.input_responses.as_ref());
                let a = answer(responses.as_ref(), "user_context")?;
                match accepted_string(&a, "context") {
                    Some(context) => vec![PromptMessage::new_text(
                        Role::User,
                        format!("Answer using this context: {context}"),
                    )],
                    None => {
                        let schema = json!({"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]});
                        return Ok(input_required(
                            vec![(
                                "user_context",
                                elicit_input("What context should the prompt use?", schema),
                            )],
                            None,
                        )
                        .into());
                    }
                }
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("Unknown prompt: {other}"),
                    Some(json!({"name": other})),
                ));
            }
        };
        Ok(GetPromptResult::new(messages).into())
    }

    async fn complete(
        &self,
        _request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        Ok(CompleteResult::new(wire::<CompletionInfo>(
            json!({"values": [], "total": 0, "hasMore": false}),
        )))
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *self.log_level.lock().expect("log level lock") = Some(request.level);
        Ok(())
    }
}

/// `test://template/{id}/data` → `id`.
fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix("test://template/")?
        .strip_suffix("/data")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

// ---------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------

struct Args {
    listen: SocketAddr,
    loopback_hosts_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        loopback_hosts_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        match flag.as_str() {
            "--listen" => {
                let value = inline
                    .or_else(|| it.next())
                    .ok_or("--listen needs an address")?;
                args.listen = value
                    .parse()
                    .map_err(|e| format!("bad --listen address {value:?}: {e}"))?;
            }
            "--loopback-hosts-only" => args.loopback_hosts_only = true,
            "-h" | "--help" => {
                println!(
                    "usage: conformance-upstream [--listen 127.0.0.1:PORT] [--loopback-hosts-only]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
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
            eprintln!("conformance-upstream: {e}");
            std::process::exit(2);
        }
    };

    let ct = CancellationToken::new();
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_json_response(false)
        .with_cancellation_token(ct.clone());
    if !args.loopback_hosts_only {
        config = config.disable_allowed_hosts();
    }
    let sealer = Arc::new(StateSealer::new());
    let service: StreamableHttpService<Fixture, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(Fixture::new(Arc::clone(&sealer))),
        Default::default(),
        config,
    );
    let router = axum::Router::new().nest_service("/mcp", service);

    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("conformance-upstream: cannot bind {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().expect("local address");
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{addr}/mcp");
        let _ = out.flush();
    }

    let shutdown = ct.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.cancel();
    });
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(ct.cancelled_owned())
        .await
    {
        eprintln!("conformance-upstream: server error: {e}");
        std::process::exit(1);
    }
}
