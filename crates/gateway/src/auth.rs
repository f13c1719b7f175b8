//! What guards `/mcp`: nothing, a bearer header's presence, or a verifier behind guard's
//! layer. Built from `[auth]` by [`crate::config::auth`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Response;
use axum::middleware::Next;
use mcpgate_guard::challenge::ScopeNames;
use mcpgate_guard::{BearerAuthLayer, ProtectedResource, Scope, TokenVerifier, bearer_token};

/// How `/mcp` is guarded.
pub enum Guard {
    /// Nothing (`none`).
    Open,
    /// A bearer header must be present; it is not checked here (`passthrough`).
    PresenceOnly,
    /// Tokens are verified.
    Verify(Arc<dyn TokenVerifier>),
    /// Tokens of the built-in issuer, verified with its keys in process once it has started.
    Issuer,
}

/// The layer that verifies tokens for `/mcp`.
pub fn layer(
    verifier: Arc<dyn TokenVerifier>,
    resource: &ProtectedResource,
    allow_anonymous: bool,
    names: ScopeNames,
    required: &[Scope],
) -> BearerAuthLayer {
    BearerAuthLayer::from_arc(verifier, resource)
        .allow_anonymous(allow_anonymous)
        .scope_names(names)
        .required_scopes(required.iter().cloned())
}

/// Where challenges point, for the `passthrough` middleware.
#[derive(Clone)]
pub struct PresenceState {
    /// The metadata URL.
    pub resource_metadata: String,
}

/// `passthrough`: refuse requests without a well-formed bearer header (with the same
/// challenges as the verifying modes); the token itself is the upstream's to check.
pub async fn require_presence(
    State(state): State<Arc<PresenceState>>,
    request: Request,
    next: Next,
) -> Response<Body> {
    match bearer_token(request.headers(), request.uri()) {
        Ok(_) => next.run(request).await,
        Err(denial) => denial
            .into_response(&state.resource_metadata, &[])
            .map(Body::from),
    }
}
