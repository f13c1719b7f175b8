//! Anonymous access, or lazy authentication: chosen methods (`initialize`, `tools/list` …) and
//! chosen public tools work without a token, so that a client shows the server's tools before
//! the user signs in; anything else without a token is answered with the `401` challenge that
//! starts the sign-in, naming the scopes the request needs.
//!
//! A request *with* a token is never anonymous: a token that is refused is refused (401), as
//! without anonymous access. For clients that do not act on a `401` during a session (ChatGPT,
//! Codex), the refused tool call's body is a failed tool result that carries the same challenge
//! in `_meta["mcp/www_authenticate"]`, the convention those clients read.

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use globset::{Glob, GlobSet, GlobSetBuilder};
use mcpgate_guard::Scope;
use mcpgate_guard::challenge::{Denial, ScopeNames};
use mcpgate_guard::policy::Kind;

use crate::jsonrpc;
use crate::proxy::message::{Kind as MessageKind, Message};
use crate::proxy::target::Aim;
use crate::refusal::Refusal;

/// Methods that may be allowed without a token (`auth.anonymous_methods`). Calls, reads and
/// prompts are governed per target: public tools are named in `auth.anonymous_tools`.
pub const ALLOWED_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
    "logging/setLevel",
];

/// What may be done without a token, and how the others are challenged.
#[derive(Debug)]
pub struct Anonymous {
    methods: Vec<String>,
    tools: GlobSet,
    resource_metadata: String,
    required: Vec<Scope>,
    names: ScopeNames,
}

impl Anonymous {
    /// Anonymous access as configured; `None` when nothing is allowed without a token.
    pub fn new(
        methods: &[String],
        tools: &[String],
        resource_metadata: String,
        required: Vec<Scope>,
        names: ScopeNames,
    ) -> Result<Option<Self>, String> {
        if methods.is_empty() && tools.is_empty() {
            return Ok(None);
        }
        let mut set = GlobSetBuilder::new();
        for pattern in tools {
            let glob = Glob::new(pattern)
                .map_err(|e| format!("auth.anonymous_tools: `{pattern}`: {e}"))?;
            set.add(glob);
        }
        let tools = set
            .build()
            .map_err(|e| format!("auth.anonymous_tools: {e}"))?;
        Ok(Some(Anonymous {
            methods: methods.to_vec(),
            tools,
            resource_metadata,
            required,
            names,
        }))
    }

    /// `None` when `message`, sent without a token, may go on as the anonymous caller;
    /// otherwise the challenge to answer with. `needs` gives the scopes the policy would ask
    /// for the target (step-up rules), if any.
    pub fn refusal(
        &self,
        message: &Message<'_>,
        aim: Option<&Aim>,
        needs: impl FnOnce(&Aim) -> Vec<Scope>,
    ) -> Option<Response<Body>> {
        let method = message.method.as_deref().unwrap_or_default();
        match message.kind {
            // The client's answers to the server's requests, and its notifications, belong to
            // a conversation that was admitted (governed methods never arrive as either).
            MessageKind::Response => return None,
            MessageKind::Notification if method.starts_with("notifications/") => return None,
            _ => {}
        }
        if message.kind == MessageKind::Request && self.methods.iter().any(|m| m == method) {
            return None;
        }
        if let Some(aim) = aim
            && aim.kind == Kind::Tool
            && method == "tools/call"
            && self.tools.is_match(&aim.name)
        {
            return None;
        }
        let mut scopes = self.required.clone();
        if let Some(aim) = aim {
            for s in needs(aim) {
                if !scopes.contains(&s) {
                    scopes.push(s);
                }
            }
        }
        let scopes = self.names.advertise(&scopes);
        let challenge = Denial::MissingToken
            .challenge(&self.resource_metadata, &scopes)
            .unwrap_or_else(|| HeaderValue::from_static("Bearer"));
        tracing::info!(target: "mcpgate::auth", method, target = aim.map(|a| a.name.as_str()), "no bearer token for a request that needs one; sending challenge");
        let mut response = match aim {
            // A failed tool result that carries the challenge, for clients that read the
            // result rather than act on the status.
            Some(aim) if method == "tools/call" => {
                let text = format!(
                    "Authentication required: sign in to use the tool {}",
                    aim.name
                );
                let result = serde_json::json!({
                    "content": [{"type": "text", "text": text}],
                    "isError": true,
                    "_meta": {"mcp/www_authenticate": [challenge.to_str().unwrap_or("Bearer")]},
                });
                let body = jsonrpc::result_body(message.id, &result);
                let mut r = Response::new(Body::from(body));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                r
            }
            _ => Refusal::AuthenticationRequired.response(message.id),
        };
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Some(response)
    }
}
