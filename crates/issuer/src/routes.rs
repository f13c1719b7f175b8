//! Every route of the authorization server, in one visible place.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Response, header};
use axum::routing::{get, post};

use crate::issuer::Issuer;

/// The router: paths are relative to the issuer's origin, under the issuer's path.
pub fn router(issuer: Arc<Issuer>) -> Router {
    let base = issuer.settings.issuer.path().to_owned();
    let mut router = Router::new();
    for (i, path) in issuer
        .settings
        .issuer
        .well_known_paths()
        .into_iter()
        .enumerate()
    {
        // The RFC 8414 location serves the RFC 8414 document; the OpenID ones the OpenID
        // document (the same facts, with the members OpenID Discovery requires).
        router = if i == 0 {
            router.route(&path, get(oauth_metadata))
        } else {
            router.route(&path, get(openid_metadata))
        };
    }
    router
        .route(&format!("{base}/jwks.json"), get(jwks))
        .route(
            &format!("{base}/authorize"),
            get(crate::authorize::flow::authorize),
        )
        .route(
            &format!("{base}/authorize/sign-in"),
            post(crate::authorize::flow::sign_in),
        )
        .route(
            &format!("{base}/authorize/consent"),
            post(crate::authorize::flow::consent),
        )
        .route(&format!("{base}/token"), post(crate::token::token))
        .route(
            &format!("{base}/register"),
            post(crate::clients::registration::register),
        )
        .route(
            &format!("{base}/register/{{client_id}}"),
            get(crate::clients::registration::read).delete(crate::clients::registration::delete),
        )
        .route(
            &format!("{base}/introspect"),
            post(crate::introspection::introspect),
        )
        .route(&format!("{base}/revoke"), post(crate::revocation::revoke))
        .with_state(issuer)
}

/// A JSON document that anyone may read and cache briefly.
pub(crate) fn public_json(value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// A JSON answer that must not be stored (tokens, registrations, introspection).
pub(crate) fn private_json(status: http::StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn oauth_metadata(State(issuer): State<Arc<Issuer>>) -> Response<Body> {
    public_json(&issuer.metadata.document())
}

async fn openid_metadata(State(issuer): State<Arc<Issuer>>) -> Response<Body> {
    public_json(&issuer.metadata.openid_document())
}

async fn jwks(State(issuer): State<Arc<Issuer>>) -> Response<Body> {
    public_json(&issuer.keys.jwks())
}
