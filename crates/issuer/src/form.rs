//! Reading a POSTed form within a size and time limit: the only way request bodies reach the
//! token, introspection, revocation, sign-in and consent endpoints.

use std::time::Duration;

use axum::body::Body;
use http::{HeaderMap, header};

use crate::error::OAuthError;
use crate::params::{MAX_BYTES, Params};

/// Time for a whole form body to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The parameters of an `application/x-www-form-urlencoded` body.
pub async fn read(headers: &HeaderMap, body: Body) -> Result<Params, OAuthError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BYTES))
        .await
        .map_err(|_| OAuthError::invalid_request("the body did not arrive in time"))?
        .map_err(|_| {
            OAuthError::invalid_request(format!("the body is larger than {MAX_BYTES} bytes"))
        })?;
    Params::parse(&bytes)
}
