//! An rmcp Streamable HTTP server mounted in axum behind guard's bearer layer, using the same
//! policy engine as the gateway: tool handlers read the caller's `Principal`, `tools/list` is
//! filtered per caller, and a tool needs a scope (answered with a step-up challenge when the
//! token lacks it).
//!
//! ```sh
//! cargo run -p mcpgate-guard --example policy_server [127.0.0.1:8090]
//! # tokens: "reader" (scope mcp) and "admin" (scopes mcp admin)
//! ```
//!
//! `crates/guard/tests/policy_example.rs` runs it with rmcp clients.
//!
//! ```text
//! ```

use std::sync::Arc;

use axum::http::request::Parts;
use mcpgate_guard::policy::{AuthorizationConfig, Caller, Kind, Policy, RuleConfig, Target};
use mcpgate_guard::{
    BearerAuthLayer, Principal, ProtectedResource, ResourceUrl, Scope, StaticTokens, Subject,
};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};

/// The caller, as guard's layer put it in the HTTP request rmcp hands to handlers.
fn principal(context: &RequestContext<RoleServer>) -> Option<Arc<Principal>> {
    context
        .extensions
        .get::<Parts>()
        .and_then(|parts| parts.extensions.get::<Arc<Principal>>().cloned())
}

#[derive(Clone)]
struct Notes {
    policy: Arc<Policy>,
    #[allow(dead_code, reason = "read by the code #[tool_handler] generates")]
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Notes {
    #[tool(description = "Who am I, as the token says")]
    fn whoami(&self, context: RequestContext<RoleServer>) -> String {
        principal(&context).map_or_else(|| "nobody".into(), |p| p.subject.to_string())
    }

    #[tool(description = "Lists notes", annotations(read_only_hint = true))]
    fn list_notes(&self) -> String {
        "groceries, ideas".into()
    }

    #[tool(description = "Reads the admin's secret notes (hidden from everyone else)")]
    fn read_secrets(&self) -> String {
        "the vault code is 1234".into()
    }

    #[tool(description = "Deletes every note (needs the admin scope)")]
    fn delete_notes(&self, context: RequestContext<RoleServer>) -> String {
        format!(
            "deleted by {}",
            principal(&context).map_or_else(|| "nobody".into(), |p| p.subject.to_string())
        )
    }
}

#[tool_handler]
impl ServerHandler for Notes {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        // Only what the caller may see.
        let Some(who) = principal(&context) else {
            return Ok(ListToolsResult::with_all_items(Vec::new()));
        };
        let caller = Caller {
            principal: &who,
            method: "tools/list",
        };
        let tools = self
            .tool_router
            .list_all()
            .into_iter()
            .filter(|tool| {
                let annotations = mcpgate_guard::policy::Annotations::from_json(
                    serde_json::to_value(&tool.annotations).ok().as_ref(),
                );
                let target = Target::listed(Kind::Tool, &tool.name, Some(&annotations), &[]);
                let d = self.policy.decide(&caller, &target);
                // A challenged tool stays listed so the client can step up for it.
                d.verdict.listed()
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(who) = principal(&context) else {
            return Err(ErrorData::invalid_request("not authenticated", None));
        };
        let caller = Caller {
            principal: &who,
            method: "tools/call",
        };
        // The tool's own annotations count (a tool this server does not have has none).
        let annotations = self
            .tool_router
            .list_all()
            .into_iter()
            .find(|t| t.name == request.name)
            .map(|t| {
                mcpgate_guard::policy::Annotations::from_json(
                    serde_json::to_value(&t.annotations).ok().as_ref(),
                )
            });
        let target = match &annotations {
            Some(a) => Target::listed(Kind::Tool, &request.name, Some(a), &[]),
            None => Target::new(Kind::Tool, &request.name),
        };
        let decision = self.policy.decide(&caller, &target);
        if !decision.allowed() {
            // Inside an MCP server the step-up is a tool error naming the scopes; the gateway
            // answers it at the HTTP level (403 insufficient_scope) before the server is reached.
            let text = match decision.verdict {
                mcpgate_guard::policy::Verdict::Challenge { scopes } => {
                    format!(
                        "insufficient_scope: this tool needs {}",
                        mcpgate_guard::Scopes::from_iter(scopes).to_space_delimited()
                    )
                }
                _ => format!("Unknown tool: {}", request.name),
            };
            return Ok(CallToolResult::error(vec![ContentBlock::text(text)]).into());
        }
        let tcc = ToolCallContext::new(self, request, context);
        self.tool_router.call(tcc).await
    }
}

fn policy() -> Policy {
    let rules: Vec<RuleConfig> = serde_json::from_value(serde_json::json!([
        { "name": "delete needs admin", "match": ["delete_*"], "scopes_all": ["admin"], "on_deny": "challenge" },
        { "name": "secrets for admins only", "match": ["read_secrets"], "scopes_all": ["admin"] },
        { "name": "read-only for everyone with mcp", "annotations": { "readOnlyHint": true }, "scopes_all": ["mcp"] }
    ]))
    .expect("rules");
    Policy::compile(&AuthorizationConfig::default(), &rules).expect("a valid policy")
}

#[tokio::main]
async fn main() {
    // `policy_server [ADDR]`: where to listen (default 127.0.0.1:8090).
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let policy = Arc::new(policy());
    let resource = ProtectedResource::new(
        ResourceUrl::parse(&format!("http://{listen}/mcp")).expect("resource URL"),
    )
    .authorization_server("https://login.example.com")
    .scopes_supported([Scope::new("mcp")]);
    let tokens = StaticTokens::new([
        (
            "reader".to_owned(),
            Principal::builder(Subject::new("rita"))
                .scopes([Scope::new("mcp")])
                .build(),
        ),
        (
            "admin".to_owned(),
            Principal::builder(Subject::new("adam"))
                .scopes([Scope::new("mcp"), Scope::new("admin")])
                .build(),
        ),
    ]);
    let service: StreamableHttpService<Notes, LocalSessionManager> = StreamableHttpService::new(
        move || {
            Ok(Notes {
                policy: Arc::clone(&policy),
                tool_router: Notes::tool_router(),
            })
        },
        Default::default(),
        StreamableHttpServerConfig::default(),
    );
    let metadata = resource.clone();
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(BearerAuthLayer::new(tokens, &resource))
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            axum::routing::get(move || {
                let doc = metadata.response();
                async move { doc.map(axum::body::Body::from) }
            }),
        );
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .expect("bind the listen address");
    println!(
        "MCP server on http://{}/mcp (tokens: reader, admin)",
        listener.local_addr().expect("bound")
    );
    axum::serve(listener, app).await.expect("serve");
}
