//! Dynamic client registration (RFC 7591) at `POST /register`, and reading or deleting a
//! registration with its registration access token (RFC 7592).
//!
//! The metadata passes [`ClientMetadata`](super::metadata::ClientMetadata)'s checks — the
//! same ones as metadata documents and static clients. A confidential client's secret is
//! returned once and stored hashed; so is the registration access token. Registrations are
//! rate-limited per source address, and the operator can close registration altogether (the
//! metadata then stops advertising it).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, StatusCode, header};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use mcpgate_guard::ClientId;
use serde_json::json;

use super::metadata::{ClientMetadata, MAX_BYTES, Source};
use crate::error::{ErrorCode, OAuthError};
use crate::issuer::Issuer;
use crate::secret::{TokenHash, generate_token};
use crate::store::{ClientKind, ClientRecord};

/// The address a request came from, as the host application knows it (behind a trusted
/// proxy, the client's). Put it in the request's extensions; without it, registrations are
/// limited all together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceAddress(pub IpAddr);

/// Registrations allowed per address.
pub struct Limiter(DefaultKeyedRateLimiter<Option<IpAddr>>);

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limiter")
    }
}

impl Limiter {
    /// `n` registrations a minute per address (a burst of `n`).
    pub fn per_minute(n: u32) -> Limiter {
        let n = NonZeroU32::new(n.max(1)).expect("at least one");
        Limiter(RateLimiter::keyed(Quota::per_minute(n)))
    }

    fn allows(&self, address: Option<IpAddr>) -> bool {
        self.0.check_key(&address).is_ok()
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// `POST /register`.
pub async fn register(
    State(issuer): State<Arc<Issuer>>,
    request: axum::extract::Request,
) -> Response<Body> {
    match register_inner(&issuer, request).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(target: "mcpgate::issuer", error = %e.code, reason = %e.description, "registration refused");
            e.json()
        }
    }
}

async fn register_inner(
    issuer: &Issuer,
    request: axum::extract::Request,
) -> Result<Response<Body>, OAuthError> {
    if !issuer.settings.open_registration {
        let mut r = OAuthError::new(
            ErrorCode::AccessDenied,
            "open registration is turned off on this server; ask its operator to add the client",
        )
        .json();
        *r.status_mut() = StatusCode::FORBIDDEN;
        return Ok(r);
    }
    let address = request.extensions().get::<SourceAddress>().map(|a| a.0);
    if !issuer.registrations.allows(address) {
        return Err(OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "too many registrations from this address; try again in a minute",
        )
        .with_retry_after(60));
    }
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(OAuthError::new(
            ErrorCode::InvalidClientMetadata,
            "the registration must be application/json",
        ));
    }
    let body = tokio::time::timeout(
        crate::form::BODY_TIMEOUT,
        axum::body::to_bytes(request.into_body(), MAX_BYTES),
    )
    .await
    .map_err(|_| OAuthError::invalid_request("the body did not arrive in time"))?
    .map_err(|_| {
        OAuthError::new(
            ErrorCode::InvalidClientMetadata,
            format!("the registration is larger than {MAX_BYTES} bytes"),
        )
    })?;
    let metadata =
        ClientMetadata::from_json(&body, Source::Registration, &issuer.settings.redirect_uris)?;
    let client_id = ClientId::new(format!("mcp_{}", &generate_token()[..22]));
    let secret = metadata.auth_method.uses_secret().then(generate_token);
    let registration_token = generate_token();
    let now = SystemTime::now();
    let document = metadata.to_json();
    issuer
        .store
        .insert_client(&ClientRecord {
            client_id: client_id.clone(),
            secret_hash: secret.as_deref().map(TokenHash::of),
            registration_token_hash: Some(TokenHash::of(&registration_token)),
            kind: ClientKind::Dynamic,
            metadata: document.clone(),
            created_at: now,
            last_used_at: None,
        })
        .await
        .map_err(|e| {
            tracing::error!(target: "mcpgate::issuer", error = %e, "registration not stored");
            OAuthError::server_error()
        })?;
    let mut body = document;
    body["client_id"] = json!(client_id.as_str());
    body["client_id_issued_at"] = json!(unix(now));
    if let Some(secret) = &secret {
        body["client_secret"] = json!(secret);
        body["client_secret_expires_at"] = json!(0);
    }
    body["registration_access_token"] = json!(registration_token);
    body["registration_client_uri"] = json!(
        issuer
            .settings
            .issuer
            .endpoint(&format!("register/{}", client_id.as_str()))
    );
    tracing::info!(target: "mcpgate::issuer", client_id = %client_id, name = metadata.client_name.as_deref().unwrap_or(""), method = metadata.auth_method.as_str(), address = ?address, "client registered");
    Ok(crate::routes::private_json(StatusCode::CREATED, &body))
}

/// The registration `id` names, when `headers` carry its registration access token.
async fn owned(
    issuer: &Issuer,
    id: &str,
    headers: &HeaderMap,
) -> Result<super::registry::KnownClient, Response<Body>> {
    let unauthorized = || {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        r
    };
    let token = mcpgate_guard::bearer_token(headers, &http::Uri::from_static("/"))
        .map_err(|_| unauthorized())?;
    let client = super::registry::find(issuer, id)
        .await
        .map_err(|_| unauthorized())?;
    match &client.registration_token_hash {
        Some(hash) if TokenHash::of(token).matches(hash) => Ok(client),
        _ => Err(unauthorized()),
    }
}

/// `GET /register/{client_id}` (RFC 7592 §2.1).
pub async fn read(
    State(issuer): State<Arc<Issuer>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response<Body> {
    match owned(&issuer, &id, &headers).await {
        Ok(client) => {
            let mut body = client.metadata.to_json();
            body["client_id"] = json!(client.id.as_str());
            crate::routes::private_json(StatusCode::OK, &body)
        }
        Err(r) => r,
    }
}

/// `DELETE /register/{client_id}` (RFC 7592 §2.3): the client and its grants go.
pub async fn delete(
    State(issuer): State<Arc<Issuer>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response<Body> {
    match owned(&issuer, &id, &headers).await {
        Ok(client) => {
            match issuer
                .store
                .delete_client(&client.id, SystemTime::now())
                .await
            {
                Ok(_) => {
                    issuer.client_cache.forget(&client.id);
                    tracing::info!(target: "mcpgate::issuer", client_id = %client.id, "client deleted by its registration token");
                    let mut r = Response::new(Body::empty());
                    *r.status_mut() = StatusCode::NO_CONTENT;
                    r
                }
                Err(_) => OAuthError::server_error().json(),
            }
        }
        Err(r) => r,
    }
}
