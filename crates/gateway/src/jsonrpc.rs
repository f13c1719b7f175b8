//! JSON-RPC 2.0 as the gateway writes it: the error codes it uses, and the envelopes of the
//! answers and errors it sends (to clients, and to the children of a stdio upstream).
//!
//! Every message the gateway writes itself is built here, so that one id echoing rule and one
//! set of codes hold everywhere. Reading messages is [`crate::proxy::message`]'s job.
//!
//! ```
//! use mcpgate::jsonrpc::{self, INVALID_PARAMS};
//! use serde_json::value::RawValue;
//!
//! let id = RawValue::from_string("7".into()).unwrap();
//! assert_eq!(
//!     jsonrpc::error_body(Some(&id), INVALID_PARAMS, "Unknown tool: x"),
//!     r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"Unknown tool: x"}}"#
//! );
//! ```

use std::fmt::Display;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Response, StatusCode, header};
use serde_json::value::RawValue;

/// JSON-RPC: parse error.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: invalid request.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: method not found (HTTP 404 for a method the stateless revision removed).
pub const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC: invalid params (unknown tool or prompt, arguments that do not fit, a target
/// that cannot be read).
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC: internal error.
pub const INTERNAL_ERROR: i64 = -32603;
/// The gateway's "session not found" (the code rmcp and the TS SDK use for it).
pub const SESSION_NOT_FOUND: i64 = -32001;
/// MCP: resource not found.
pub const RESOURCE_NOT_FOUND: i64 = -32002;
/// mcpgate: the policy refuses the request, and no scope would change that (HTTP 403).
pub const FORBIDDEN: i64 = -32003;
/// mcpgate: the request needs a token (HTTP 401, with the challenge).
pub const AUTHENTICATION_REQUIRED: i64 = -32004;
/// MCP 2026-07-28: a standard header does not match the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// mcpgate: too many requests (HTTP 429, with `Retry-After`).
pub const RATE_LIMITED: i64 = -32029;

/// The id as written: the raw one, or `null` when unknown.
fn id_text(id: Option<&RawValue>) -> &str {
    id.map_or("null", RawValue::get)
}

/// The `error` member: `{"code":…,"message":…}`.
pub fn error_object(code: i64, message: &str) -> String {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".into());
    format!(r#"{{"code":{code},"message":{message}}}"#)
}

/// A JSON-RPC error message for `id` (`null` when unknown).
pub fn error_body(id: Option<&RawValue>, code: i64, message: &str) -> String {
    let id = id_text(id);
    let error = error_object(code, message);
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#)
}

/// A JSON-RPC result message for `id`; `result` is JSON text (a [`RawValue`], a
/// [`serde_json::Value`]).
pub fn result_body(id: Option<&RawValue>, result: &impl Display) -> String {
    let id = id_text(id);
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#)
}

/// [`error_body`], as bytes for a stream or a pipe.
pub fn error_bytes(id: Option<&RawValue>, code: i64, message: &str) -> Bytes {
    Bytes::from(error_body(id, code, message))
}

/// [`result_body`], as bytes for a stream or a pipe.
pub fn result_bytes(id: Option<&RawValue>, result: &impl Display) -> Bytes {
    Bytes::from(result_body(id, result))
}

/// The `code` of a JSON-RPC error message, when `bytes` is one.
pub fn error_code(bytes: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Message {
        error: Option<Error>,
    }
    #[derive(serde::Deserialize)]
    struct Error {
        code: Option<i64>,
    }
    serde_json::from_slice::<Message>(bytes).ok()?.error?.code
}

/// A JSON body with `status`.
pub fn json_response(status: StatusCode, body: impl Into<Body>) -> Response<Body> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON-RPC error response with `status`. `id` is echoed when known; MCP clients (and the
/// schema) expect it whenever the request could be read.
pub fn error_response(
    status: StatusCode,
    id: Option<&RawValue>,
    code: i64,
    message: &str,
) -> Response<Body> {
    json_response(status, error_body(id, code, message))
}

/// A refusal that is not about one message (a route, a header, a connection): a JSON-RPC
/// error with a null id, like every other refusal — [`INVALID_REQUEST`] for a 4xx status,
/// [`INTERNAL_ERROR`] for a 5xx.
pub fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    error_response(status, None, code_for_status(status), text)
}

/// The code of a refusal that is about no message: [`INTERNAL_ERROR`] for a 5xx status,
/// [`INVALID_REQUEST`] otherwise.
pub fn code_for_status(status: StatusCode) -> i64 {
    if status.is_server_error() {
        INTERNAL_ERROR
    } else {
        INVALID_REQUEST
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.into()).unwrap()
    }

    #[test]
    fn an_error_echoes_the_raw_id() {
        let body = error_body(Some(&id(r#""abc""#)), HEADER_MISMATCH, "x \"y\"");
        assert_eq!(
            body,
            r#"{"jsonrpc":"2.0","id":"abc","error":{"code":-32020,"message":"x \"y\""}}"#
        );
    }

    #[test]
    fn an_unknown_id_is_written_as_null() {
        let body = result_body(None, &serde_json::json!({}));
        assert_eq!(body, r#"{"jsonrpc":"2.0","id":null,"result":{}}"#);
    }

    #[test]
    fn the_code_of_an_error_message_is_read_and_a_result_has_none() {
        assert_eq!(
            error_code(error_body(None, METHOD_NOT_FOUND, "m").as_bytes()),
            Some(METHOD_NOT_FOUND)
        );
        assert_eq!(error_code(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#), None);
        assert_eq!(error_code(b"not json"), None);
    }

    #[test]
    fn a_refusal_about_no_message_takes_its_code_from_the_status() {
        assert_eq!(code_for_status(StatusCode::NOT_FOUND), INVALID_REQUEST);
        assert_eq!(code_for_status(StatusCode::BAD_GATEWAY), INTERNAL_ERROR);
        let r = text_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
