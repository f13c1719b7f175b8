//! Every "no" the gateway gives at the MCP layer, and the one place where each becomes an HTTP
//! status, a JSON-RPC error code, a text and a `Retry-After`.
//!
//! | refusal | status | code | `Retry-After` |
//! |---|---|---|---|
//! | [`NotUtf8`], [`NotJson`] | 400 | -32700 parse error | |
//! | [`InvalidRequest`], [`SessionRequired`], [`BodyUnreadable`] | 400 | -32600 invalid request | |
//! | [`BodyTooLarge`] | 413 | -32600 | |
//! | [`BodyTimeout`] | 408 | -32600 | |
//! | [`HeaderMismatch`] | 400 | -32020 header mismatch | |
//! | [`MethodRemoved`] | 404 | -32601 method not found | |
//! | [`MethodNotAllowed`] | 405 (with `Allow`) | -32600 | |
//! | [`InvalidParams`] | 200 | -32602 invalid params | |
//! | [`Hidden`] tool or prompt | 200 | -32602, as the upstream would say | |
//! | [`Hidden`] resource | 200 | -32002 resource not found | |
//! | [`SessionNotFound`] | 404 | -32001 session not found (-32600 for no message) | |
//! | [`AuthenticationRequired`] | 401 (the caller adds the challenge) | -32004 | |
//! | [`Forbidden`], [`InsufficientScope`] | 403 (the caller adds the challenge) | -32003 | |
//! | [`RateLimited`] | 429 | -32029 rate limited | the wait |
//! | [`BodiesInFlight`], [`RepliesInFlight`] | 503 | -32603 internal error | 1 |
//! | [`UpstreamBusy`] | 503 | -32603 | 5 |
//! | [`UpstreamUnavailable`] | 503 | -32603 | when retrying helps |
//! | [`UpstreamNotStarted`], [`UpstreamFailedToStart`], [`UpstreamGone`], [`UpstreamFailed`] | 502 | -32603 | |
//! | [`UpstreamTimeout`] | 504 | -32603 | |
//! | [`InputUnsupported`], [`TooManyWaitingForInput`] | 200 (an answer) | -32603 | |
//! | [`Internal`] | 500 | -32603 | |
//!
//! Texts say what the client may know; the reason behind a refusal goes to the operator's log
//! where the refusal is made.
//!
//! [`NotUtf8`]: Refusal::NotUtf8
//! [`NotJson`]: Refusal::NotJson
//! [`InvalidRequest`]: Refusal::InvalidRequest
//! [`SessionRequired`]: Refusal::SessionRequired
//! [`BodyUnreadable`]: Refusal::BodyUnreadable
//! [`BodyTooLarge`]: Refusal::BodyTooLarge
//! [`BodyTimeout`]: Refusal::BodyTimeout
//! [`HeaderMismatch`]: Refusal::HeaderMismatch
//! [`MethodRemoved`]: Refusal::MethodRemoved
//! [`MethodNotAllowed`]: Refusal::MethodNotAllowed
//! [`InvalidParams`]: Refusal::InvalidParams
//! [`Hidden`]: Refusal::Hidden
//! [`SessionNotFound`]: Refusal::SessionNotFound
//! [`AuthenticationRequired`]: Refusal::AuthenticationRequired
//! [`Forbidden`]: Refusal::Forbidden
//! [`InsufficientScope`]: Refusal::InsufficientScope
//! [`RateLimited`]: Refusal::RateLimited
//! [`BodiesInFlight`]: Refusal::BodiesInFlight
//! [`RepliesInFlight`]: Refusal::RepliesInFlight
//! [`UpstreamBusy`]: Refusal::UpstreamBusy
//! [`UpstreamUnavailable`]: Refusal::UpstreamUnavailable
//! [`UpstreamNotStarted`]: Refusal::UpstreamNotStarted
//! [`UpstreamFailedToStart`]: Refusal::UpstreamFailedToStart
//! [`UpstreamGone`]: Refusal::UpstreamGone
//! [`UpstreamFailed`]: Refusal::UpstreamFailed
//! [`UpstreamTimeout`]: Refusal::UpstreamTimeout
//! [`InputUnsupported`]: Refusal::InputUnsupported
//! [`TooManyWaitingForInput`]: Refusal::TooManyWaitingForInput
//! [`Internal`]: Refusal::Internal
//!
//! ```
//! use mcpgate::refusal::Refusal;
//! use serde_json::value::RawValue;
//!
//! let id = RawValue::from_string("3".into()).unwrap();
//! let response = Refusal::UpstreamBusy.response(Some(&id));
//! assert_eq!(response.status(), 503);
//! assert_eq!(response.headers()["retry-after"], "5");
//! ```

use std::borrow::Cow;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Response, StatusCode, header};
use mcpgate_guard::policy::Kind;
use serde_json::value::RawValue;

use crate::jsonrpc::{
    self, AUTHENTICATION_REQUIRED, FORBIDDEN, HEADER_MISMATCH, INTERNAL_ERROR, INVALID_PARAMS,
    INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, RATE_LIMITED, RESOURCE_NOT_FOUND,
    SESSION_NOT_FOUND,
};

/// Why the gateway answers a request itself instead of forwarding it, or instead of the
/// upstream's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The body is not UTF-8.
    NotUtf8,
    /// The body is not JSON.
    NotJson,
    /// Not a request the gateway forwards; the text says why (it follows "Invalid Request: ").
    InvalidRequest(Cow<'static, str>),
    /// A session revision's request without `Mcp-Session-Id`.
    SessionRequired,
    /// The body could not be read.
    BodyUnreadable,
    /// The body is larger than `http.max_body_bytes` (the limit).
    BodyTooLarge(usize),
    /// The body did not arrive within `http.body_timeout`.
    BodyTimeout,
    /// A 2026-07-28 header does not match the body; the text says how.
    HeaderMismatch(Cow<'static, str>),
    /// A method a revision removed.
    MethodRemoved {
        /// The method.
        method: String,
        /// The revision that removed it.
        revision: &'static str,
    },
    /// An HTTP method `/mcp` does not take: the `Allow` header, and the text.
    MethodNotAllowed {
        /// What `Allow` says.
        allow: &'static str,
        /// The text.
        text: &'static str,
    },
    /// The request's parameters do not do; the text is the whole message.
    InvalidParams(String),
    /// A target the caller may not know of, answered as the upstream answers one that does not
    /// exist.
    Hidden {
        /// What it is.
        kind: Kind,
        /// Its name or URI.
        name: String,
    },
    /// No such session (or not the caller's).
    SessionNotFound,
    /// A request without a token that needs one.
    AuthenticationRequired,
    /// The policy refuses, and no scope would change that.
    Forbidden,
    /// The policy wants more scopes (space-delimited, as advertised).
    InsufficientScope(String),
    /// A rate limit was reached: the rule's name, and how long until it allows again.
    RateLimited {
        /// The rule.
        rule: String,
        /// Until a request is allowed again.
        wait: Duration,
    },
    /// All requests together hold as many body bytes as they may.
    BodiesInFlight,
    /// All requests together hold as many upstream reply bytes as they may.
    RepliesInFlight,
    /// The upstream command is not reading its input.
    UpstreamBusy,
    /// No upstream process can take the request now: why, and in how many seconds to retry
    /// (when retrying helps).
    UpstreamUnavailable {
        /// Why (for the client).
        why: String,
        /// Seconds for `Retry-After`.
        retry_after: Option<u64>,
    },
    /// The upstream command could not be started.
    UpstreamNotStarted,
    /// The upstream command started but failed its `initialize` (why).
    UpstreamFailedToStart(String),
    /// The upstream went away (how, when known).
    UpstreamGone(Option<String>),
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The upstream failed or answered in a way that cannot be passed on; the text says how.
    UpstreamFailed(Cow<'static, str>),
    /// The upstream asked the client for input that this request cannot carry.
    InputUnsupported,
    /// Too many requests wait for a client's input.
    TooManyWaitingForInput,
    /// The gateway itself failed; the text says at what.
    Internal(&'static str),
}

/// What a refusal is on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts<'a> {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON-RPC error code.
    pub code: i64,
    /// The error message.
    pub text: Cow<'a, str>,
    /// Seconds for `Retry-After`, when retrying later helps.
    pub retry_after: Option<u64>,
}

impl Refusal {
    /// The one mapping: status, code, text and `Retry-After` of each refusal. `for_message`:
    /// whether it answers a message that was read (a request with an id), rather than a
    /// route or a body-less request.
    pub fn parts(&self, for_message: bool) -> Parts<'_> {
        use Refusal::*;
        let (status, code, text): (StatusCode, i64, Cow<'_, str>) = match self {
            NotUtf8 => (
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
                "Parse error: the body is not UTF-8".into(),
            ),
            NotJson => (
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
                "Parse error: the body is not JSON".into(),
            ),
            InvalidRequest(why) => (
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                format!("Invalid Request: {why}").into(),
            ),
            SessionRequired => (
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                "Bad Request: Mcp-Session-Id header is required".into(),
            ),
            BodyUnreadable => (
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                "Bad Request: the body could not be read".into(),
            ),
            BodyTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                INVALID_REQUEST,
                format!(
                    "Payload Too Large: the body is larger than {limit} bytes (http.max_body_bytes)"
                )
                .into(),
            ),
            BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                INVALID_REQUEST,
                "Request Timeout: the body did not arrive in time (http.body_timeout)".into(),
            ),
            HeaderMismatch(why) => (
                StatusCode::BAD_REQUEST,
                HEADER_MISMATCH,
                format!("Header mismatch: {why}").into(),
            ),
            MethodRemoved { method, revision } => (
                StatusCode::NOT_FOUND,
                METHOD_NOT_FOUND,
                format!("Method not found: {method} was removed in MCP {revision}").into(),
            ),
            MethodNotAllowed { text, .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                INVALID_REQUEST,
                (*text).into(),
            ),
            InvalidParams(text) => (StatusCode::OK, INVALID_PARAMS, text.as_str().into()),
            Hidden { kind, name } => match kind {
                Kind::Tool => (
                    StatusCode::OK,
                    INVALID_PARAMS,
                    format!("Unknown tool: {name}").into(),
                ),
                Kind::Prompt => (
                    StatusCode::OK,
                    INVALID_PARAMS,
                    format!("Unknown prompt: {name}").into(),
                ),
                Kind::Resource | Kind::ResourceTemplate => (
                    StatusCode::OK,
                    RESOURCE_NOT_FOUND,
                    format!("Resource not found: {name}").into(),
                ),
            },
            SessionNotFound if for_message => (
                StatusCode::NOT_FOUND,
                SESSION_NOT_FOUND,
                "Session not found".into(),
            ),
            SessionNotFound => (
                StatusCode::NOT_FOUND,
                INVALID_REQUEST,
                "Not Found: Session not found".into(),
            ),
            AuthenticationRequired => (
                StatusCode::UNAUTHORIZED,
                AUTHENTICATION_REQUIRED,
                "Authentication required: this request needs a bearer token".into(),
            ),
            Forbidden => (
                StatusCode::FORBIDDEN,
                FORBIDDEN,
                "Forbidden: the gateway's authorization policy does not allow this request"
                    .into(),
            ),
            InsufficientScope(scopes) => (
                StatusCode::FORBIDDEN,
                FORBIDDEN,
                format!("Insufficient scope: this request needs the scopes {scopes}").into(),
            ),
            RateLimited { rule, wait } => (
                StatusCode::TOO_MANY_REQUESTS,
                RATE_LIMITED,
                format!(
                    "Rate limit reached ({rule}); retry in {} s",
                    retry_after_secs(*wait)
                )
                .into(),
            ),
            BodiesInFlight => (
                StatusCode::SERVICE_UNAVAILABLE,
                INTERNAL_ERROR,
                "Service Unavailable: the gateway is receiving too many request bodies; try again shortly".into(),
            ),
            RepliesInFlight => (
                StatusCode::SERVICE_UNAVAILABLE,
                INTERNAL_ERROR,
                "Service Unavailable: the gateway holds too many upstream replies at once; try again shortly".into(),
            ),
            UpstreamBusy => (
                StatusCode::SERVICE_UNAVAILABLE,
                INTERNAL_ERROR,
                "The upstream MCP server is not accepting requests".into(),
            ),
            UpstreamUnavailable { why, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                INTERNAL_ERROR,
                format!("The upstream MCP server is unavailable: {why}").into(),
            ),
            UpstreamNotStarted => (
                StatusCode::BAD_GATEWAY,
                INTERNAL_ERROR,
                "The upstream MCP server could not be started".into(),
            ),
            UpstreamFailedToStart(why) => (
                StatusCode::BAD_GATEWAY,
                INTERNAL_ERROR,
                format!("The upstream MCP server failed to start: {why}").into(),
            ),
            UpstreamGone(None) => (
                StatusCode::BAD_GATEWAY,
                INTERNAL_ERROR,
                "The upstream MCP server went away".into(),
            ),
            UpstreamGone(Some(how)) => (
                StatusCode::BAD_GATEWAY,
                INTERNAL_ERROR,
                format!("The upstream MCP server went away: {how}").into(),
            ),
            UpstreamTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                INTERNAL_ERROR,
                "The upstream MCP server did not answer in time".into(),
            ),
            UpstreamFailed(text) => (StatusCode::BAD_GATEWAY, INTERNAL_ERROR, text.as_ref().into()),
            InputUnsupported => (
                StatusCode::OK,
                INTERNAL_ERROR,
                "The upstream MCP server asked the client for input that this request cannot carry"
                    .into(),
            ),
            TooManyWaitingForInput => (
                StatusCode::OK,
                INTERNAL_ERROR,
                "Too many requests are waiting for input; answer or abandon one first".into(),
            ),
            Internal(text) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                INTERNAL_ERROR,
                (*text).into(),
            ),
        };
        let retry_after = match self {
            RateLimited { wait, .. } => Some(retry_after_secs(*wait)),
            BodiesInFlight | RepliesInFlight => Some(1),
            UpstreamBusy => Some(5),
            UpstreamUnavailable { retry_after, .. } => *retry_after,
            _ => None,
        };
        Parts {
            status,
            code,
            text,
            retry_after,
        }
    }

    /// The JSON-RPC error message for `id` (for a stream, or an answer in a body).
    pub fn body(&self, id: Option<&RawValue>) -> Bytes {
        let parts = self.parts(id.is_some());
        jsonrpc::error_bytes(id, parts.code, &parts.text)
    }

    /// The response for the request `id` (`None`: not known, or no message): the error
    /// message, with its status and headers.
    pub fn response(&self, id: Option<&RawValue>) -> Response<Body> {
        let parts = self.parts(id.is_some());
        let mut response = jsonrpc::error_response(parts.status, id, parts.code, &parts.text);
        let headers = response.headers_mut();
        if let Some(secs) = parts.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Refusal::MethodNotAllowed { allow, .. } = self {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

impl axum::response::IntoResponse for Refusal {
    /// The response to no particular message (a null id).
    fn into_response(self) -> axum::response::Response {
        self.response(None)
    }
}

/// A wait in whole seconds, rounded up, at least one (what `Retry-After` says).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// A `Retry-After` value: whole seconds, at least one.
pub fn retry_after(wait: Duration) -> HeaderValue {
    HeaderValue::from(retry_after_secs(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Box<RawValue> {
        RawValue::from_string("9".into()).unwrap()
    }

    async fn error_of(r: Response<Body>) -> (StatusCode, serde_json::Value) {
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[test]
    fn a_wait_is_rounded_up_to_a_whole_second_and_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(7)), 7);
    }

    #[tokio::test]
    async fn a_rate_limit_says_the_same_wait_in_its_text_and_its_header() {
        let r = Refusal::RateLimited {
            rule: "calls".into(),
            wait: Duration::from_millis(2100),
        }
        .response(Some(&id()));
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        let (status, body) = error_of(r).await;
        assert_eq!(status, 429);
        assert_eq!(body["error"]["code"], RATE_LIMITED);
        assert_eq!(
            body["error"]["message"],
            "Rate limit reached (calls); retry in 3 s"
        );
    }

    #[tokio::test]
    async fn a_hidden_target_reads_like_one_that_does_not_exist() {
        let hidden = |kind| Refusal::Hidden {
            kind,
            name: "x".into(),
        };
        let (status, body) = error_of(hidden(Kind::Tool).response(Some(&id()))).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (StatusCode::OK, &INVALID_PARAMS.into())
        );
        assert_eq!(body["error"]["message"], "Unknown tool: x");
        assert_eq!(body["id"], 9);
        assert_eq!(hidden(Kind::Resource).parts(true).code, RESOURCE_NOT_FOUND);
    }

    #[tokio::test]
    async fn session_not_found_has_its_own_code_only_for_a_message() {
        assert_eq!(Refusal::SessionNotFound.parts(true).code, SESSION_NOT_FOUND);
        let (status, body) = error_of(Refusal::SessionNotFound.response(None)).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], INVALID_REQUEST);
        assert_eq!(body["id"], serde_json::Value::Null);
    }

    #[test]
    fn retry_after_goes_only_with_refusals_that_retrying_can_help() {
        assert_eq!(Refusal::UpstreamBusy.parts(true).retry_after, Some(5));
        assert_eq!(Refusal::BodiesInFlight.parts(false).retry_after, Some(1));
        assert_eq!(Refusal::UpstreamNotStarted.parts(true).retry_after, None);
        assert!(
            !Refusal::Forbidden
                .response(None)
                .headers()
                .contains_key(header::RETRY_AFTER)
        );
    }

    #[test]
    fn a_method_not_allowed_names_what_is_allowed() {
        let r = Refusal::MethodNotAllowed {
            allow: "POST",
            text: "Method Not Allowed",
        }
        .response(None);
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[header::ALLOW], "POST");
    }
}
