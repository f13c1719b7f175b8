//! Reading just enough of a JSON-RPC message to route and check it, and writing the
//! gateway's own JSON-RPC errors.
//!
//! The gateway is a transparent proxy: it forwards the bytes it received, unchanged. It only
//! looks at `id`, `method`, and the few `params` that routing and the 2026-07-28 header rules
//! need (`name`, `uri`, `_meta` protocol version).

use std::borrow::Cow;

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// JSON-RPC: parse error.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: invalid request.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: internal error.
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP 2026-07-28: a standard header does not match the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// The gateway's "session not found" (the code rmcp and the TS SDK use for it).
pub const SESSION_NOT_FOUND: i64 = -32001;

/// A string field that may also be absent or of another type (then it reads as absent).
#[derive(Debug, Default)]
pub struct LenientStr<'a>(pub Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for LenientStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<'a> {
            Str(#[serde(borrow)] Cow<'a, str>),
            Other(IgnoredAny),
        }
        Ok(match Either::deserialize(d)? {
            Either::Str(s) => LenientStr(Some(s)),
            Either::Other(_) => LenientStr(None),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
struct Meta<'a> {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", borrow, default)]
    protocol_version: LenientStr<'a>,
}

#[derive(Debug, Default, Deserialize)]
struct Params<'a> {
    #[serde(borrow, default)]
    name: LenientStr<'a>,
    #[serde(borrow, default)]
    uri: LenientStr<'a>,
    #[serde(rename = "_meta", borrow, default)]
    meta: Option<Meta<'a>>,
}

/// Params that are not an object (JSON-RPC allows arrays; MCP never uses them) read as empty.
#[derive(Debug, Default)]
struct LenientParams<'a>(Params<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for LenientParams<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<'a> {
            Object(#[serde(borrow)] Params<'a>),
            Other(IgnoredAny),
        }
        Ok(match Either::deserialize(d)? {
            Either::Object(p) => LenientParams(p),
            Either::Other(_) => LenientParams(Params::default()),
        })
    }
}

#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: LenientStr<'a>,
    #[serde(borrow, default)]
    params: Option<LenientParams<'a>>,
    #[serde(default)]
    result: Option<IgnoredAny>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

/// What kind of JSON-RPC message a body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request (method and id).
    Request,
    /// A notification (method, no id).
    Notification,
    /// A response the client sends back (to a server-to-client request).
    Response,
}

/// The parts of a message the gateway looks at.
#[derive(Debug)]
pub struct Message<'a> {
    /// What it is.
    pub kind: Kind,
    /// The raw `id`, when there is one (echoed in the gateway's errors).
    pub id: Option<&'a RawValue>,
    /// `method`.
    pub method: Option<Cow<'a, str>>,
    /// `params.name`.
    pub name: Option<Cow<'a, str>>,
    /// `params.uri`.
    pub uri: Option<Cow<'a, str>>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`.
    pub meta_version: Option<Cow<'a, str>>,
}

/// Why a body is not a message the gateway forwards.
#[derive(Debug)]
pub enum Unreadable<'a> {
    /// Not JSON.
    Parse,
    /// A JSON array (batching was removed in MCP 2025-06-18).
    Batch,
    /// JSON, but not a JSON-RPC message (the id, when readable, for the error).
    Invalid(Option<&'a RawValue>),
}

impl<'a> Message<'a> {
    /// Reads a body.
    pub fn parse(body: &'a [u8]) -> Result<Message<'a>, Unreadable<'a>> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            return match serde_json::from_slice::<IgnoredAny>(body) {
                Ok(_) => Err(Unreadable::Batch),
                Err(_) => Err(Unreadable::Parse),
            };
        }
        let envelope: Envelope<'a> = match serde_json::from_slice(body) {
            Ok(e) => e,
            Err(e) if e.is_syntax() || e.is_eof() => return Err(Unreadable::Parse),
            Err(_) => return Err(Unreadable::Invalid(None)),
        };
        let id = envelope.id.filter(|raw| raw.get() != "null");
        let method = envelope.method.0;
        let kind = match (
            &method,
            id,
            envelope.result.is_some() || envelope.error.is_some(),
        ) {
            (Some(_), Some(_), _) => Kind::Request,
            (Some(_), None, _) => Kind::Notification,
            (None, Some(_), true) => Kind::Response,
            _ => return Err(Unreadable::Invalid(id)),
        };
        let params = envelope.params.map(|p| p.0).unwrap_or_default();
        Ok(Message {
            kind,
            id,
            method,
            name: params.name.0,
            uri: params.uri.0,
            meta_version: params.meta.and_then(|m| m.protocol_version.0),
        })
    }
}

/// A JSON-RPC error response with `status`. `id` is echoed when known; MCP clients (and the
/// schema) expect it whenever the request could be read.
pub fn error_response(
    status: StatusCode,
    id: Option<&RawValue>,
    code: i64,
    message: &str,
) -> Response<Body> {
    let id = id.map(RawValue::get).unwrap_or("null");
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".into());
    let body =
        format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message}}}}}"#);
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A plain-text response, for refusals that are not about one message.
pub fn text_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_with_name_and_meta_is_read() {
        let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"x":[1,2]},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let m = Message::parse(body).unwrap();
        assert_eq!(m.kind, Kind::Request);
        assert_eq!(m.id.unwrap().get(), "7");
        assert_eq!(m.method.as_deref(), Some("tools/call"));
        assert_eq!(m.name.as_deref(), Some("echo"));
        assert_eq!(m.meta_version.as_deref(), Some("2026-07-28"));
    }

    #[test]
    fn notification_has_no_id() {
        let m =
            Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(m.kind, Kind::Notification);
    }

    #[test]
    fn client_response_is_recognized() {
        let m = Message::parse(br#"{"jsonrpc":"2.0","id":"s-1","result":{}}"#).unwrap();
        assert_eq!(m.kind, Kind::Response);
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let m = Message::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\"b"}}"#,
        )
        .unwrap();
        assert_eq!(m.name.as_deref(), Some("a\"b"));
    }

    #[test]
    fn odd_field_types_do_not_make_the_message_unreadable() {
        let m = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"name":5,"_meta":{"io.modelcontextprotocol/protocolVersion":3}}}"#).unwrap();
        assert_eq!(m.name, None);
        assert_eq!(m.meta_version, None);
        let m = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1,2]}"#).unwrap();
        assert_eq!(m.kind, Kind::Request);
    }

    #[test]
    fn garbage_batch_and_non_messages_are_told_apart() {
        assert!(matches!(
            Message::parse(b"{not json"),
            Err(Unreadable::Parse)
        ));
        assert!(matches!(Message::parse(b""), Err(Unreadable::Parse)));
        assert!(matches!(
            Message::parse(br#"[{"jsonrpc":"2.0","method":"a"}]"#),
            Err(Unreadable::Batch)
        ));
        assert!(matches!(
            Message::parse(br#"{"jsonrpc":"2.0","id":3}"#),
            Err(Unreadable::Invalid(Some(_)))
        ));
        assert!(matches!(
            Message::parse(b"42"),
            Err(Unreadable::Invalid(None))
        ));
    }

    #[test]
    fn error_response_echoes_the_raw_id() {
        let raw = RawValue::from_string("\"abc\"".into()).unwrap();
        let r = error_response(
            StatusCode::BAD_REQUEST,
            Some(&raw),
            HEADER_MISMATCH,
            "x \"y\"",
        );
        assert_eq!(r.status(), 400);
    }
}
