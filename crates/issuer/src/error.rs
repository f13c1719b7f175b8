//! Every refusal of the authorization server, in one place.
//!
//! A refusal is an [`ErrorCode`] (RFC 6749 §4.1.2.1 and §5.2, RFC 7591 §3.2.2, RFC 8707 §2,
//! RFC 7009 §2.2.1) and a description that tells the client's developer what to fix without
//! revealing anything secret. How it reaches the client depends on where it happened:
//!
//! - from the token, registration, introspection and revocation endpoints: JSON
//!   ([`OAuthError::json`]), with `Cache-Control: no-store`, 401 and a `Basic` challenge for a
//!   client that tried HTTP Basic and failed;
//! - from `/authorize` once the client and its redirect URI are known to belong together: a
//!   redirect carrying `error`, `error_description`, `state` and `iss` ([`OAuthError::redirect`],
//!   RFC 9207);
//! - from `/authorize` before then: a page, never a redirect (an unchecked redirect URI would
//!   make the server an open redirector, OAuth 2.1 §7.12.2).
//!
//! ```
//! use mcpgate_issuer::error::{ErrorCode, OAuthError};
//!
//! let e = OAuthError::new(ErrorCode::InvalidGrant, "the code was already used");
//! let response = e.json();
//! assert_eq!(response.status(), 400);
//! assert_eq!(response.headers()["cache-control"], "no-store");
//! ```

use std::borrow::Cow;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use url::Url;

/// The OAuth error codes this server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A parameter is missing, repeated, malformed or not allowed here.
    InvalidRequest,
    /// The client is unknown or failed to authenticate.
    InvalidClient,
    /// The code, refresh token or assertion is invalid, expired, used or revoked, or does not
    /// belong to this client, redirect URI or verifier.
    InvalidGrant,
    /// The client may not use this grant type.
    UnauthorizedClient,
    /// The grant type is not one this server supports.
    UnsupportedGrantType,
    /// A requested scope is unknown or not available to this client or user.
    InvalidScope,
    /// The `resource` is not one this server issues tokens for (RFC 8707).
    InvalidTarget,
    /// The user (or the server's policy) refused.
    AccessDenied,
    /// Only `response_type=code` exists.
    UnsupportedResponseType,
    /// A redirect URI in a registration is not acceptable (RFC 7591).
    InvalidRedirectUri,
    /// Registration metadata is not acceptable (RFC 7591).
    InvalidClientMetadata,
    /// Revocation of this kind of token is not supported (RFC 7009).
    UnsupportedTokenType,
    /// Something failed inside the server; nothing was changed.
    ServerError,
    /// The server cannot answer now (storage unavailable, throttled); try again later.
    TemporarilyUnavailable,
    /// `prompt=none`, but the user would have to sign in (OpenID Connect Core §3.1.2.6).
    LoginRequired,
    /// `prompt=none`, but the user would have to approve.
    ConsentRequired,
}

impl ErrorCode {
    /// The code as sent in `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
        }
    }

    /// The HTTP status of a JSON answer carrying this code (RFC 6749 §5.2: 400, except 401
    /// for a failed client authentication).
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the code and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// The code.
    pub code: ErrorCode,
    /// Sent as `error_description`: what was wrong, never a secret or a token.
    pub description: Cow<'static, str>,
    /// The client tried HTTP Basic authentication (a 401 then carries a `Basic` challenge,
    /// RFC 6749 §5.2).
    pub basic_challenge: bool,
    /// Seconds after which to try again (`temporarily_unavailable`).
    pub retry_after: Option<u64>,
}

impl OAuthError {
    /// A refusal with `code` and `description`.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: description.into(),
            basic_challenge: false,
            retry_after: None,
        }
    }

    /// `invalid_request`.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// `invalid_client`.
    pub fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, description)
    }

    /// `invalid_grant`.
    pub fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    /// `server_error`, for a failure inside the server (the cause goes to the log, not here).
    pub fn server_error() -> Self {
        Self::new(
            ErrorCode::ServerError,
            "the authorization server failed; nothing was changed, try again",
        )
    }

    /// Marks the refusal as one of HTTP Basic client authentication.
    pub fn with_basic_challenge(mut self) -> Self {
        self.basic_challenge = true;
        self
    }

    /// Asks the client to wait `seconds` before trying again.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The JSON body: `{"error": …, "error_description": …}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": self.code.as_str(),
            "error_description": self.description,
        })
    }

    /// The answer of a JSON endpoint (token, registration, introspection, revocation).
    pub fn json(&self) -> Response {
        let mut response = Response::new(Body::from(self.body().to_string()));
        *response.status_mut() = self.code.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.code == ErrorCode::InvalidClient && self.basic_challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mcpgate\", charset=\"UTF-8\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }

    /// Where to send the browser for an authorization request that failed after its client
    /// and redirect URI were validated: `redirect_uri` with `error`, `error_description`,
    /// `state` (when the request had one) and `iss` (when given; RFC 9207) added to its query.
    pub fn redirect(&self, redirect_uri: &Url, state: Option<&str>, iss: Option<&str>) -> Url {
        let mut url = redirect_uri.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("error", self.code.as_str());
            query.append_pair("error_description", &self.description);
            if let Some(state) = state {
                query.append_pair("state", state);
            }
            if let Some(iss) = iss {
                query.append_pair("iss", iss);
            }
        }
        url
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl std::error::Error for OAuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(url: &Url) -> Vec<(String, String)> {
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn a_failed_client_authentication_is_a_401() {
        let r = OAuthError::invalid_client("unknown client").json();
        assert_eq!(r.status(), 401);
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn a_failed_basic_authentication_carries_a_basic_challenge() {
        let r = OAuthError::invalid_client("wrong secret")
            .with_basic_challenge()
            .json();
        assert!(
            r.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Basic ")
        );
    }

    #[test]
    fn json_answers_are_never_cached() {
        let r = OAuthError::invalid_grant("expired").json();
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn unavailable_says_when_to_try_again() {
        let r = OAuthError::new(ErrorCode::TemporarilyUnavailable, "busy")
            .with_retry_after(3)
            .json();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn a_redirect_keeps_the_redirect_uris_own_query_and_adds_state_and_iss() {
        let uri = Url::parse("https://app.example/cb?tenant=a").unwrap();
        let url = OAuthError::new(ErrorCode::AccessDenied, "the user said no").redirect(
            &uri,
            Some("xyz"),
            Some("https://auth.example"),
        );
        assert_eq!(
            pairs(&url),
            [
                ("tenant".to_owned(), "a".to_owned()),
                ("error".to_owned(), "access_denied".to_owned()),
                (
                    "error_description".to_owned(),
                    "the user said no".to_owned()
                ),
                ("state".to_owned(), "xyz".to_owned()),
                ("iss".to_owned(), "https://auth.example".to_owned()),
            ]
        );
    }

    #[test]
    fn a_redirect_without_state_has_none() {
        let uri = Url::parse("http://127.0.0.1:5000/cb").unwrap();
        let url = OAuthError::invalid_request("x").redirect(&uri, None, None);
        assert!(pairs(&url).iter().all(|(k, _)| k != "state" && k != "iss"));
    }
}
