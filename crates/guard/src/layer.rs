//! A tower [`Layer`](tower_layer::Layer) that lets through only requests with a valid bearer
//! token, and puts the verified [`Principal`] into the request's extensions as
//! `Arc<Principal>`.
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Extension, Router, routing::post};
//! use mcpgate_guard::{BearerAuthLayer, Principal, ProtectedResource, ResourceUrl, Scope, StaticTokens, Subject};
//!
//! let resource = ProtectedResource::new(ResourceUrl::parse("http://127.0.0.1:8080/mcp").unwrap());
//! let verifier = StaticTokens::new([("dev".to_string(), Principal::builder(Subject::new("alice")).build())]);
//! let app: Router = Router::new()
//!     .route("/mcp", post(|Extension(who): Extension<Arc<Principal>>| async move { who.subject.to_string() }))
//!     .layer(BearerAuthLayer::new(verifier, &resource).required_scopes([Scope::new("mcp")]));
//! ```
//!
//! Tokens are read from the `Authorization` header only (scheme case-insensitive). A token
//! in the query string, two `Authorization` headers or an empty bearer make the request
//! malformed (400); everything else follows [`crate::challenge`].

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Uri, header};
use tower_layer::Layer;
use tower_service::Service;

use crate::challenge::{Denial, ScopeNames};
use crate::metadata::ProtectedResource;
use crate::principal::{Principal, Scope};
use crate::verifier::{BoxFuture, TokenVerifier};

/// Requires a valid bearer token on every request of the wrapped service.
#[derive(Clone)]
pub struct BearerAuthLayer {
    shared: Arc<Shared>,
}

#[derive(Clone)]
struct Shared {
    verifier: Arc<dyn TokenVerifier>,
    resource_metadata: String,
    required: Vec<Scope>,
    /// How scopes are named in challenges.
    names: ScopeNames,
    /// `required` as named in challenges.
    advertised: Vec<Scope>,
    /// Requests without any credentials go on, without a principal.
    anonymous: bool,
}

impl BearerAuthLayer {
    /// Verifies tokens with `verifier`; challenges point at `resource`'s metadata.
    pub fn new(verifier: impl TokenVerifier, resource: &ProtectedResource) -> Self {
        Self::from_arc(Arc::new(verifier), resource)
    }

    /// Like [`BearerAuthLayer::new`] for a verifier that is already shared.
    pub fn from_arc(verifier: Arc<dyn TokenVerifier>, resource: &ProtectedResource) -> Self {
        BearerAuthLayer {
            shared: Arc::new(Shared {
                verifier,
                resource_metadata: resource.metadata_url().to_string(),
                required: Vec::new(),
                names: ScopeNames::default(),
                advertised: Vec::new(),
                anonymous: false,
            }),
        }
    }

    /// Scopes every request needs; a token without them gets `403 insufficient_scope`.
    #[must_use]
    pub fn required_scopes(self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        let mut shared = (*self.shared).clone();
        shared.required = scopes.into_iter().collect();
        shared.advertised = shared.names.advertise(&shared.required);
        BearerAuthLayer {
            shared: Arc::new(shared),
        }
    }

    /// Lets requests without any credentials (no `Authorization` header, no other scheme)
    /// through to the service, without a [`Principal`], for it to decide what the anonymous
    /// caller may do (lazy authentication). Credentials that are present are still verified,
    /// and refused when they fail.
    #[must_use]
    pub fn allow_anonymous(self, allow: bool) -> Self {
        let mut shared = (*self.shared).clone();
        shared.anonymous = allow;
        BearerAuthLayer {
            shared: Arc::new(shared),
        }
    }

    /// Names scopes in challenges as clients must request them ([`ScopeNames`]); checks
    /// still use the names tokens carry.
    #[must_use]
    pub fn scope_names(self, names: ScopeNames) -> Self {
        let mut shared = (*self.shared).clone();
        shared.advertised = names.advertise(&shared.required);
        shared.names = names;
        BearerAuthLayer {
            shared: Arc::new(shared),
        }
    }
}

impl BearerAuthLayer {
    /// What the layer's service does before it calls the wrapped service, for a caller that
    /// composes its own service: checks the request's credentials and, when they pass, puts
    /// the [`Principal`] into its extensions (none for a request without credentials, when
    /// [`allow_anonymous`](Self::allow_anonymous) lets it through). `Err` is the answer to
    /// send instead: the challenge, `400` or `403`.
    pub async fn admit<B>(&self, req: &mut Request<B>) -> Result<(), Response<Bytes>> {
        admit(&self.shared, req).await
    }
}

impl std::fmt::Debug for BearerAuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("resource_metadata", &self.shared.resource_metadata)
            .field("required", &self.shared.required)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service made by [`BearerAuthLayer`].
#[derive(Clone)]
pub struct BearerAuth<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for BearerAuth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("resource_metadata", &self.shared.resource_metadata)
            .finish_non_exhaustive()
    }
}

/// Reads the bearer token of a request: from the `Authorization` header only.
///
/// Errors are the refusals to send: [`Denial::MissingToken`] when there are no bearer
/// credentials (including other schemes such as `Basic`), [`Denial::InvalidRequest`] for a
/// token in the query string, repeated headers, or an empty or malformed token.
pub fn bearer_token<'a>(headers: &'a HeaderMap, uri: &Uri) -> Result<&'a str, Denial> {
    if let Some(query) = uri.query()
        && url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "access_token")
    {
        return Err(Denial::InvalidRequest(
            "Access tokens are not accepted in the query string",
        ));
    }
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(Denial::MissingToken)?;
    if values.next().is_some() {
        return Err(Denial::InvalidRequest("More than one Authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| Denial::InvalidRequest("Malformed Authorization header"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Denial::MissingToken);
    }
    let token = rest.trim_matches(' ');
    if token.is_empty() {
        return Err(Denial::InvalidRequest("Empty bearer token"));
    }
    // `to_str` already refused control characters other than tab; spaces and tabs remain.
    if crate::bytes::any(token.as_bytes(), |b| b == b' ' || b == b'\t') {
        return Err(Denial::InvalidRequest("Malformed bearer token"));
    }
    Ok(token)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BearerAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // Take the service that was driven to readiness; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            match admit(&shared, &mut req).await {
                Ok(()) => inner.call(req).await,
                Err(refusal) => Ok(refusal.map(ResBody::from)),
            }
        })
    }
}

async fn admit<B>(shared: &Shared, req: &mut Request<B>) -> Result<(), Response<Bytes>> {
    match authenticate(shared, req.headers(), req.uri()).await {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            Ok(())
        }
        Err(Denial::MissingToken)
            if shared.anonymous && !req.headers().contains_key(header::AUTHORIZATION) =>
        {
            Ok(())
        }
        Err(denial) => Err(denial.into_response(&shared.resource_metadata, &shared.advertised)),
    }
}

async fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Arc<Principal>, Denial> {
    let token = bearer_token(headers, uri).inspect_err(|denial| log_denial(denial, uri))?;
    let principal = match shared.verifier.verify(token).await {
        Ok(p) => p,
        Err(rejection) => {
            let denial = if rejection.is_unavailable() {
                Denial::Unavailable
            } else {
                Denial::InvalidToken(rejection.clone())
            };
            tracing::info!(
                target: "mcpgate::auth",
                reason = %rejection.reason,
                subject = rejection.subject.as_ref().map(|s| s.as_str()),
                client_id = rejection.client_id.as_ref().map(|c| c.as_str()),
                path = uri.path(),
                "token rejected"
            );
            return Err(denial);
        }
    };
    let missing = principal.scopes.missing(&shared.required);
    if !missing.is_empty() {
        let missing: Vec<Scope> = missing.into_iter().cloned().collect();
        tracing::info!(
            target: "mcpgate::auth",
            reason = "missing scope",
            missing = %crate::principal::join_scopes(&missing),
            subject = principal.subject.as_str(),
            client_id = principal.client_id.as_ref().map(|c| c.as_str()),
            path = uri.path(),
            "token lacks a required scope"
        );
        return Err(Denial::InsufficientScope(shared.names.advertise(&missing)));
    }
    Ok(principal)
}

fn log_denial(denial: &Denial, uri: &Uri) {
    match denial {
        Denial::MissingToken => {
            tracing::debug!(target: "mcpgate::auth", path = uri.path(), "no bearer token; sending challenge")
        }
        Denial::InvalidRequest(why) => {
            tracing::info!(target: "mcpgate::auth", reason = why, path = uri.path(), "malformed authorization")
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(
            bearer_token(&headers(&["bEaReR abc"]), &uri("/mcp")).unwrap(),
            "abc"
        );
    }

    #[test]
    fn missing_header_is_missing_token() {
        assert!(matches!(
            bearer_token(&headers(&[]), &uri("/mcp")),
            Err(Denial::MissingToken)
        ));
    }

    #[test]
    fn basic_scheme_counts_as_no_bearer_credentials() {
        assert!(matches!(
            bearer_token(&headers(&["Basic YTpi"]), &uri("/mcp")),
            Err(Denial::MissingToken)
        ));
    }

    #[test]
    fn empty_bearer_is_invalid_request() {
        assert!(matches!(
            bearer_token(&headers(&["Bearer "]), &uri("/mcp")),
            Err(Denial::InvalidRequest(_))
        ));
        assert!(matches!(
            bearer_token(&headers(&["Bearer"]), &uri("/mcp")),
            Err(Denial::InvalidRequest(_))
        ));
    }

    #[test]
    fn two_authorization_headers_are_invalid_request() {
        assert!(matches!(
            bearer_token(&headers(&["Bearer a", "Bearer b"]), &uri("/mcp")),
            Err(Denial::InvalidRequest(_))
        ));
    }

    #[test]
    fn token_in_query_string_is_invalid_request_even_with_a_header() {
        assert!(matches!(
            bearer_token(&headers(&["Bearer a"]), &uri("/mcp?access_token=a")),
            Err(Denial::InvalidRequest(_))
        ));
    }

    #[test]
    fn token_with_inner_space_is_invalid_request() {
        assert!(matches!(
            bearer_token(&headers(&["Bearer a b"]), &uri("/mcp")),
            Err(Denial::InvalidRequest(_))
        ));
    }
}
