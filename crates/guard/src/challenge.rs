//! From "no" to HTTP: the one place where refusals become status codes, `WWW-Authenticate`
//! challenges (RFC 6750 §3, RFC 9728 §5.1) and small JSON bodies.
//!
//! | refusal | status | challenge |
//! |---|---|---|
//! | no credentials | 401 | `Bearer resource_metadata="…"[, scope="…"]` (no `error`, RFC 6750 §3.1) |
//! | malformed request (token in the query, two headers, empty bearer) | 400 | `error="invalid_request"` |
//! | token refused | 401 | `error="invalid_token"` |
//! | token fine, scope missing | 403 | `error="insufficient_scope", scope="…"` |
//! | verifier cannot decide (key server down) | 503 | none; `Retry-After` |
//!
//! Bodies carry the OAuth error code and a fixed, short description; the precise reason goes to
//! the operator's log only.
//!
//! ```
//! use mcpgate_guard::challenge::Denial;
//! use mcpgate_guard::Scope;
//!
//! let response = Denial::InsufficientScope(vec![Scope::new("mcp:write")])
//!     .into_response("https://mcp.example.com/.well-known/oauth-protected-resource/mcp", &[]);
//! assert_eq!(response.status(), 403);
//! assert_eq!(
//!     response.headers()["www-authenticate"],
//!     "Bearer error=\"insufficient_scope\", scope=\"mcp:write\", \
//!      resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", \
//!      error_description=\"The access token lacks a required scope\""
//! );
//! ```

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::error::{Rejection, TokenError};
use crate::principal::{Scope, join_scopes};

/// How scopes are named to clients where that differs from how tokens carry them.
///
/// Some providers make clients request one name and put another in the token: with Microsoft
/// Entra ID a client requests `api://<app-id>/mcp` and the token carries `scp: mcp`. Checks use
/// the name in the token (`mcp`); what clients are told to request — `scopes_supported`, the
/// `scope` of every challenge — uses the name the provider understands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeNames {
    /// Checked name → advertised name.
    advertised: std::collections::HashMap<Scope, Scope>,
}

impl ScopeNames {
    /// From pairs of (advertised, checked) names.
    pub fn new(advertised_to_checked: impl IntoIterator<Item = (Scope, Scope)>) -> Self {
        ScopeNames {
            advertised: advertised_to_checked
                .into_iter()
                .map(|(advertised, checked)| (checked, advertised))
                .collect(),
        }
    }

    /// Whether no scope is renamed.
    pub fn is_empty(&self) -> bool {
        self.advertised.is_empty()
    }

    /// The name clients request for `checked`.
    pub fn advertised<'a>(&'a self, checked: &'a Scope) -> &'a Scope {
        self.advertised.get(checked).unwrap_or(checked)
    }

    /// The names clients request for `checked`, in order.
    pub fn advertise<'a>(&self, checked: impl IntoIterator<Item = &'a Scope>) -> Vec<Scope> {
        checked
            .into_iter()
            .map(|s| self.advertised(s).clone())
            .collect()
    }
}

/// Why a request is refused, as far as the client may know.
#[derive(Debug, Clone)]
pub enum Denial {
    /// No bearer credentials at all.
    MissingToken,
    /// The request is malformed (RFC 6750 `invalid_request`); the text says how.
    InvalidRequest(&'static str),
    /// The token was refused.
    InvalidToken(Rejection),
    /// The token is fine but lacks these scopes.
    InsufficientScope(Vec<Scope>),
    /// The verifier cannot decide now; the request is refused (fail closed).
    Unavailable,
}

impl Denial {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Denial::MissingToken | Denial::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Denial::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Denial::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Denial::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_code(&self) -> Option<&'static str> {
        match self {
            Denial::MissingToken => None,
            Denial::InvalidRequest(_) => Some("invalid_request"),
            Denial::InvalidToken(_) => Some("invalid_token"),
            Denial::InsufficientScope(_) => Some("insufficient_scope"),
            Denial::Unavailable => Some("temporarily_unavailable"),
        }
    }

    fn description(&self) -> &'static str {
        match self {
            Denial::MissingToken => "Bearer authentication is required",
            Denial::InvalidRequest(what) => what,
            Denial::InvalidToken(r) => match r.reason {
                TokenError::Expired { .. } | TokenError::NotYetValid { .. } => {
                    "The access token is expired or not yet valid"
                }
                _ => "The access token is not valid for this resource",
            },
            Denial::InsufficientScope(_) => "The access token lacks a required scope",
            Denial::Unavailable => {
                "The access token cannot be checked right now; try again shortly"
            }
        }
    }

    /// The `WWW-Authenticate` value, if this refusal carries one.
    ///
    /// `required` are the scopes every request needs; they are named in the challenge of a
    /// request without credentials so that the client asks for them at once.
    pub fn challenge(&self, resource_metadata: &str, required: &[Scope]) -> Option<HeaderValue> {
        let mut params: Vec<(&str, String)> = Vec::new();
        match self {
            Denial::Unavailable => return None,
            Denial::MissingToken => {
                params.push(("resource_metadata", resource_metadata.to_owned()));
                if !required.is_empty() {
                    params.push(("scope", join_scopes(required)));
                }
                return Some(render(&params));
            }
            Denial::InsufficientScope(missing) => {
                params.push(("error", "insufficient_scope".into()));
                // All the scopes the operation needs, in one challenge (MCP 2026-07-28).
                let mut scopes: Vec<&Scope> = required.iter().collect();
                for s in missing {
                    if !scopes.contains(&s) {
                        scopes.push(s);
                    }
                }
                params.push(("scope", join_scopes(scopes)));
            }
            Denial::InvalidRequest(_) | Denial::InvalidToken(_) => {
                params.push(("error", self.error_code().unwrap_or_default().into()));
                if !required.is_empty() {
                    params.push(("scope", join_scopes(required)));
                }
            }
        }
        params.push(("resource_metadata", resource_metadata.to_owned()));
        params.push(("error_description", self.description().to_owned()));
        Some(render(&params))
    }

    /// The full response: status, challenge and JSON body.
    pub fn into_response(self, resource_metadata: &str, required: &[Scope]) -> Response<Bytes> {
        let body = match self.error_code() {
            Some(code) => {
                serde_json::json!({ "error": code, "error_description": self.description() })
            }
            None => {
                serde_json::json!({ "error": "unauthorized", "error_description": self.description() })
            }
        };
        let mut response = Response::new(Bytes::from(body.to_string()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.challenge(resource_metadata, required) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if matches!(self, Denial::Unavailable) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// Renders `Bearer k="v", …` with RFC 7230 quoted-string escaping.
fn render(params: &[(&str, String)]) -> HeaderValue {
    let mut out = String::from("Bearer ");
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                // Header values cannot carry control characters; drop them.
                c if c.is_control() => {}
                c => out.push(c),
            }
        }
        out.push('"');
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRM: &str = "https://mcp.example/.well-known/oauth-protected-resource/mcp";

    #[test]
    fn scope_names_rename_only_what_is_mapped() {
        let names = ScopeNames::new([(Scope::new("api://app/mcp"), Scope::new("mcp"))]);
        assert_eq!(
            names.advertise(&[Scope::new("mcp"), Scope::new("read")]),
            [Scope::new("api://app/mcp"), Scope::new("read")]
        );
        assert!(ScopeNames::default().is_empty());
    }

    #[test]
    fn missing_token_challenge_has_no_error_code() {
        let h = Denial::MissingToken.challenge(PRM, &[]).unwrap();
        assert_eq!(h, format!("Bearer resource_metadata=\"{PRM}\"").as_str());
    }

    #[test]
    fn missing_token_challenge_names_required_scopes() {
        let h = Denial::MissingToken
            .challenge(PRM, &[Scope::new("a"), Scope::new("b")])
            .unwrap();
        assert_eq!(
            h,
            format!("Bearer resource_metadata=\"{PRM}\", scope=\"a b\"").as_str()
        );
    }

    #[test]
    fn invalid_token_is_401_with_error_code() {
        let r = Denial::InvalidToken(TokenError::BadSignature.into()).into_response(PRM, &[]);
        assert_eq!(r.status(), 401);
        let h = r.headers()["www-authenticate"].to_str().unwrap();
        assert!(h.starts_with("Bearer error=\"invalid_token\""), "{h}");
        assert!(h.contains(&format!("resource_metadata=\"{PRM}\"")));
    }

    #[test]
    fn body_does_not_reveal_the_precise_reason() {
        let r = Denial::InvalidToken(
            TokenError::WrongIssuer {
                found: "https://evil".into(),
            }
            .into(),
        )
        .into_response(PRM, &[]);
        let body = String::from_utf8(r.body().to_vec()).unwrap();
        assert!(!body.contains("evil") && !body.contains("issuer"), "{body}");
    }

    #[test]
    fn insufficient_scope_names_required_and_missing_scopes_once() {
        let h = Denial::InsufficientScope(vec![Scope::new("b"), Scope::new("c")])
            .challenge(PRM, &[Scope::new("a"), Scope::new("b")])
            .unwrap();
        assert!(h.to_str().unwrap().contains("scope=\"a b c\""), "{h:?}");
    }

    #[test]
    fn unavailable_is_503_with_retry_after_and_no_challenge() {
        let r = Denial::Unavailable.into_response(PRM, &[]);
        assert_eq!(r.status(), 503);
        assert!(r.headers().get("www-authenticate").is_none());
        assert_eq!(r.headers()["retry-after"], "5");
    }

    #[test]
    fn quotes_in_values_are_escaped() {
        let h = render(&[("x", "a\"b\\c".into())]);
        assert_eq!(h, "Bearer x=\"a\\\"b\\\\c\"");
    }
}
