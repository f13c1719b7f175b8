//! `POST /token`: one module per grant, each with a check half and an issue half.
//!
//! Every answer is JSON with `Cache-Control: no-store`; a failed client authentication is 401
//! (with a `Basic` challenge when Basic was tried) and consumes nothing.

pub mod access;
pub mod authorization_code;
pub mod client_credentials;
pub mod refresh_token;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Response, StatusCode};

use crate::error::{ErrorCode, OAuthError};
use crate::issuer::Issuer;

/// `POST /token`.
pub async fn token(
    State(issuer): State<Arc<Issuer>>,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    let answer = async {
        let params = crate::form::read(&headers, body).await?;
        match params.get("grant_type") {
            Some("authorization_code") => {
                authorization_code::exchange(&issuer, &headers, &params).await
            }
            Some("refresh_token") => refresh_token::refresh(&issuer, &headers, &params).await,
            Some("client_credentials") => {
                client_credentials::issue(&issuer, &headers, &params).await
            }
            Some(other) => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!(
                    "grant_type `{}` is not supported (authorization_code, refresh_token, client_credentials)",
                    other.chars().take(60).collect::<String>()
                ),
            )),
            None => Err(OAuthError::invalid_request("grant_type is missing")),
        }
    }
    .await;
    match answer {
        Ok(body) => crate::routes::private_json(StatusCode::OK, &body),
        Err(e) => {
            tracing::info!(target: "mcpgate::issuer", error = %e.code, reason = %e.description, "token request refused");
            e.json()
        }
    }
}
