//! The application as one service: the MCP endpoint written out, everything else routed.
//!
//! A request for the endpoint — `/mcp`, or the same under the public URL's path prefix,
//! matched by exact path as a router matches a route — passes, in this order:
//! 1. the front door ([`Front`]): the client's address, the Host and Origin checks (DNS
//!    rebinding), and the per-address limit on requests without valid credentials;
//! 2. CORS, only when the request carries an `Origin` (a browser's request, or a preflight,
//!    which CORS answers itself);
//! 3. the guard ([`Admission`]), for every method;
//! 4. the method's handler: `POST`, `GET` and `DELETE`, and `405` for any other.
//!
//! Every other request goes to the router: the protected resource metadata, health, metrics
//! and the built-in issuer's routes, and not-found behind the same front door.
//!
//! The endpoint is written out rather than routed because it is the hot path: the router's
//! matching, its boxed service per layer and the `from_fn` middleware cost a tenth of the
//! gateway's user-space instructions for each forwarded call, for a choice that comes down to
//! comparing a path.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures::future::{BoxFuture, Either};
use tower::ServiceExt as _;
use tower_http::cors::CorsLayer;

use crate::auth::Admission;
use crate::dns_rebinding::{self, HostPolicy};
use crate::listener::ClientAddress;
use crate::proxy::{self, Gateway, Who};
use crate::refusal::retry_after;

/// The whole application: see the module's documentation.
#[derive(Clone)]
pub struct App {
    inner: Arc<Parts>,
}

/// What the application is made of.
pub(crate) struct Parts {
    /// The endpoint's paths: `/mcp`, and `{prefix}/mcp` behind a path prefix.
    pub(crate) paths: Vec<String>,
    pub(crate) front: Arc<Front>,
    pub(crate) cors: CorsLayer,
    pub(crate) admission: Admission,
    pub(crate) gateway: Arc<Gateway>,
    /// Every other path.
    pub(crate) rest: Router,
}

impl From<Parts> for App {
    fn from(parts: Parts) -> Self {
        App {
            inner: Arc::new(parts),
        }
    }
}

impl<B> tower::Service<axum::http::Request<B>> for App
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<
        BoxFuture<'static, Result<Response, Infallible>>,
        tower::util::Oneshot<Router, Request>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let request = request.map(Body::new);
        let path = request.uri().path();
        if !self.inner.paths.iter().any(|p| p == path) {
            return Either::Right(self.inner.rest.clone().oneshot(request));
        }
        let inner = Arc::clone(&self.inner);
        Either::Left(Box::pin(async move {
            Ok(inner.front.pass(request, |r| inner.cors_then(r)).await)
        }))
    }
}

impl Parts {
    /// CORS around the endpoint for a request that carries an `Origin`; the endpoint alone
    /// for the others (MCP clients that are not browsers), whose answers CORS would not
    /// change.
    async fn cors_then(self: &Arc<Self>, request: Request) -> Response {
        if !request.headers().contains_key(header::ORIGIN) {
            return self.endpoint(request).await;
        }
        let this = Arc::clone(self);
        let endpoint = tower::service_fn(move |request: Request| {
            let this = Arc::clone(&this);
            async move { Ok::<_, Infallible>(this.endpoint(request).await) }
        });
        match tower::Layer::layer(&self.cors, endpoint)
            .oneshot(request)
            .await
        {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// The guard, then the method's handler.
    async fn endpoint(&self, mut request: Request) -> Response {
        if let Err(refusal) = self.admission.admit(&mut request).await {
            return refusal;
        }
        let gateway = State(Arc::clone(&self.gateway));
        match *request.method() {
            Method::POST => proxy::post(gateway, request).await,
            Method::GET | Method::DELETE => {
                let who: Who = request
                    .extensions()
                    .get::<Arc<mcpgate_guard::Principal>>()
                    .map(|p| axum::Extension(Arc::clone(p)));
                let method = request.method().clone();
                let headers = request.into_parts().0.headers;
                if method == Method::GET {
                    proxy::get(gateway, who, headers).await
                } else {
                    proxy::delete(gateway, who, headers).await
                }
            }
            _ => proxy::other_method().await,
        }
    }
}

/// What every request to `/mcp` (and unknown routes) passes first: the client's address
/// ([`ClientAddress`]: the peer's, or the one a trusted proxy names), the Host and Origin
/// checks (DNS rebinding), and the per-address limit on requests without valid credentials.
pub(crate) struct Front {
    pub(crate) hosts: HostPolicy,
    pub(crate) trusted: Arc<Vec<ipnet::IpNet>>,
    pub(crate) unauthenticated: Option<Arc<crate::ratelimit::Unauthenticated>>,
    /// Lets callers whose token it accepted recently through a blocked address.
    pub(crate) verifier: Option<Arc<dyn mcpgate_guard::TokenVerifier>>,
    /// Whether requests without credentials are served (anonymous access), and so counted.
    pub(crate) counts_anonymous: bool,
}

impl Front {
    /// Checks `request` and passes it to `next`, or answers the refusal; counts the answer
    /// towards the address's limit when it refused the credentials (or there were none and
    /// anonymous access served it).
    pub(crate) async fn pass<F, Fut>(&self, mut request: Request, next: F) -> Response
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        let ip = request
            .extensions()
            .get::<crate::listener::Peer>()
            .map(|p| crate::listener::client_address(p.0.ip(), request.headers(), &self.trusted));
        if let Some(ip) = ip {
            request.extensions_mut().insert(ClientAddress(ip));
        }
        if let Some(refusal) = dns_rebinding::check(&self.hosts, &request) {
            return refusal;
        }
        let Some(limiter) = &self.unauthenticated else {
            return next(request).await;
        };
        let blocked = ip.and_then(|ip| limiter.blocked(ip)).filter(|_| {
            !self.verifier.as_ref().is_some_and(|v| {
                mcpgate_guard::bearer_token(request.headers(), request.uri())
                    .is_ok_and(|t| v.known_good(t))
            })
        });
        if let (Some(ip), Some(wait)) = (ip, blocked) {
            crate::metrics::unauthenticated_limited();
            tracing::info!(target: "mcpgate::auth", address = %ip, "refused: too many requests without valid credentials from this address");
            let mut r = crate::jsonrpc::error_response(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                crate::jsonrpc::RATE_LIMITED,
                "Too Many Requests: too many requests without valid credentials from this address",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, retry_after(wait));
            return r;
        }
        // Requests without credentials count too: anonymous access (when on) is bounded per
        // address like refusals.
        let anonymous =
            self.counts_anonymous && !request.headers().contains_key(header::AUTHORIZATION);
        let response = next(request).await;
        if (response.status() == StatusCode::UNAUTHORIZED || anonymous)
            && let Some(ip) = ip
        {
            limiter.refused(ip);
        }
        response
    }
}
