//! The 2026-07-28 (stateless) revision's standard request headers: `MCP-Protocol-Version`,
//! `Mcp-Method` and `Mcp-Name` mirror the body and must agree with it. The gateway checks
//! them itself, before anything is decided on them, so that a request whose headers say one
//! thing and whose body says another never gets through (400, JSON-RPC -32020).

use axum::http::{HeaderMap, HeaderName};
use base64::Engine as _;

use super::message::{Kind, Message};

/// The first revision without sessions.
pub const STATELESS_REVISION: &str = "2026-07-28";

/// Whether the request uses the stateless revision: its `_meta` names a protocol version, or
/// its `MCP-Protocol-Version` header names 2026-07-28 or later.
pub fn is_stateless(message: &Message<'_>, headers: &HeaderMap) -> bool {
    message.meta_version.is_some() || header_version(headers).is_some_and(is_stateless_version)
}

/// Whether a version string is the stateless revision or later (dates compare as strings).
pub fn is_stateless_version(version: &str) -> bool {
    version.len() == 10 && version.as_bytes()[4] == b'-' && version >= STATELESS_REVISION
}

/// The header's name, made once (a name given as text is parsed on every lookup).
static MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// Whether `MCP-Protocol-Version` is given more than once or as a list: readers then disagree
/// on the revision (the gateway would read the first, an upstream perhaps the last), and with
/// it on which rules apply.
pub fn version_ambiguous(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(&MCP_PROTOCOL_VERSION).iter();
    match (values.next(), values.next()) {
        (Some(_), Some(_)) => true,
        (Some(v), None) => v.as_bytes().contains(&b','),
        _ => false,
    }
}

/// The `MCP-Protocol-Version` header, if present and readable.
pub fn header_version(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(&MCP_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// What does not match, for the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch(pub &'static str);

/// Checks the mirrored headers of a stateless message against its body.
pub fn check_headers(message: &Message<'_>, headers: &HeaderMap) -> Result<(), Mismatch> {
    if let Some(meta) = &message.meta_version {
        match mirrored(headers, "mcp-protocol-version")? {
            Some(h) if h == *meta => {}
            Some(_) => {
                return Err(Mismatch(
                    "MCP-Protocol-Version header does not match _meta protocolVersion",
                ));
            }
            None => return Err(Mismatch("MCP-Protocol-Version header is required")),
        }
    }
    if message.kind == Kind::Response {
        return Ok(());
    }
    let method = message.method.as_deref().unwrap_or_default();
    match mirrored(headers, "mcp-method")? {
        Some(h) if h == method => {}
        Some(_) => {
            return Err(Mismatch(
                "Mcp-Method header does not match the body's method",
            ));
        }
        None if message.kind == Kind::Request => {
            return Err(Mismatch("Mcp-Method header is required"));
        }
        None => {}
    }
    let expected = match method {
        "tools/call" | "prompts/get" => message.name.as_deref(),
        "resources/read" => message.uri.as_deref(),
        _ => return Ok(()),
    };
    match (mirrored(headers, "mcp-name")?, expected) {
        (Some(h), Some(body)) if h == body => Ok(()),
        (Some(_), _) => Err(Mismatch("Mcp-Name header does not match the body")),
        (None, _) => Err(Mismatch("Mcp-Name header is required for this method")),
    }
}

/// Reads a mirrored header: surrounding whitespace ignored, `=?base64?…?=` decoded. More than
/// one value, or a value that cannot be read, is a mismatch.
fn mirrored(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, Mismatch> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Mismatch("a standard MCP header is repeated"));
    }
    let text = std::str::from_utf8(value.as_bytes())
        .map_err(|_| Mismatch("a standard MCP header is not UTF-8"))?
        .trim();
    match text
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| Mismatch("a standard MCP header has invalid base64"))?;
            String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| Mismatch("a standard MCP header is not UTF-8"))
        }
        None => Ok(Some(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn call(name: &str) -> Vec<u8> {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
        )
        .into_bytes()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ]
    }

    #[test]
    fn tr_18_matching_headers_are_accepted() {
        let body = call("echo");
        assert_eq!(
            check_headers(&Message::parse(&body).unwrap(), &headers(&good())),
            Ok(())
        );
    }

    #[test]
    fn tr_18_name_mismatch_is_rejected() {
        let body = call("delete_everything");
        assert!(check_headers(&Message::parse(&body).unwrap(), &headers(&good())).is_err());
    }

    #[test]
    fn tr_18_missing_method_header_is_rejected() {
        let body = call("echo");
        let h = headers(&[("mcp-protocol-version", "2026-07-28"), ("mcp-name", "echo")]);
        assert!(check_headers(&Message::parse(&body).unwrap(), &h).is_err());
    }

    #[test]
    fn tr_18_method_values_are_case_sensitive() {
        let body = call("echo");
        let h = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "TOOLS/CALL"),
            ("mcp-name", "echo"),
        ]);
        assert!(check_headers(&Message::parse(&body).unwrap(), &h).is_err());
    }

    #[test]
    fn tr_18_surrounding_whitespace_is_ignored() {
        let body = call("echo");
        let h = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "  echo  "),
        ]);
        assert_eq!(check_headers(&Message::parse(&body).unwrap(), &h), Ok(()));
    }

    #[test]
    fn tr_18_base64_sentinel_is_decoded_and_bad_base64_rejected() {
        let body = call("echo");
        let h = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?ZWNobw==?="),
        ]);
        assert_eq!(check_headers(&Message::parse(&body).unwrap(), &h), Ok(()));
        let h = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?ZW!!bw==?="),
        ]);
        assert!(check_headers(&Message::parse(&body).unwrap(), &h).is_err());
    }

    #[test]
    fn tr_17_version_header_mismatch_is_rejected() {
        let body = call("echo");
        let h = headers(&[
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ]);
        assert!(check_headers(&Message::parse(&body).unwrap(), &h).is_err());
    }

    #[test]
    fn tr_18_repeated_name_header_is_rejected() {
        let body = call("echo");
        let mut pairs = good();
        pairs.push(("mcp-name", "echo"));
        assert!(check_headers(&Message::parse(&body).unwrap(), &headers(&pairs)).is_err());
    }

    #[test]
    fn stateless_versions_are_recognized() {
        assert!(is_stateless_version("2026-07-28"));
        assert!(is_stateless_version("2027-01-01"));
        assert!(!is_stateless_version("2025-11-25"));
        assert!(!is_stateless_version("v999.0.0"));
    }
}
