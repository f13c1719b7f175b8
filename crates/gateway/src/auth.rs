//! What guards `/mcp`: nothing, a bearer header's presence, or a verifier behind guard's
//! layer ([`Admission`], which the endpoint calls for every request). Built from `[auth]` by [`crate::config::auth`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::Response;
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

/// What the endpoint does with a request's credentials, made from the [`Guard`] once the
/// application is composed.
pub enum Admission {
    /// Nothing to check (`none`).
    Open,
    /// A well-formed bearer header must be present; refusals point at `resource_metadata`
    /// (`passthrough`).
    Presence {
        /// The metadata URL challenges name.
        resource_metadata: String,
    },
    /// Tokens are verified by guard's layer (which also refuses missing scopes and lets
    /// anonymous requests through when allowed).
    Verify(BearerAuthLayer),
}

impl Admission {
    /// Verifies with `verifier`; challenges name `resource`'s metadata and the `required`
    /// scopes as clients must request them.
    pub fn verify(
        verifier: Arc<dyn TokenVerifier>,
        resource: &ProtectedResource,
        allow_anonymous: bool,
        names: ScopeNames,
        required: &[Scope],
    ) -> Self {
        Admission::Verify(
            BearerAuthLayer::from_arc(verifier, resource)
                .allow_anonymous(allow_anonymous)
                .scope_names(names)
                .required_scopes(required.iter().cloned()),
        )
    }

    /// Lets the request on (with the verified principal in its extensions, in `Verify`), or
    /// gives the refusal to send instead: a challenge, `400` or `403`. In `passthrough` the
    /// token itself is the upstream's to check; only its presence and form are checked here,
    /// with the same challenges as the verifying modes.
    pub async fn admit(&self, request: &mut Request) -> Result<(), Response<Body>> {
        match self {
            Admission::Open => Ok(()),
            Admission::Presence { resource_metadata } => {
                match bearer_token(request.headers(), request.uri()) {
                    Ok(_) => Ok(()),
                    Err(denial) => {
                        Err(denial.into_response(resource_metadata, &[]).map(Body::from))
                    }
                }
            }
            Admission::Verify(layer) => layer
                .admit(request)
                .await
                .map_err(|refusal| refusal.map(Body::from)),
        }
    }
}
