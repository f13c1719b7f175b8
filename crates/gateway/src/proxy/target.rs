//! What a request is about, read so that there is only one answer: the target the policy,
//! trimming, rate limits and the audit log decide on, and the one the upstream receives.
//!
//! The methods the gateway governs — `tools/call`, `prompts/get`, `resources/read`,
//! `resources/subscribe`, `resources/unsubscribe` and `completion/complete` — must be requests
//! (with an id), with `params` an object whose target (`name`, `uri` or `ref`) is a string read
//! from a member that appears once. Anything else is refused here, before a decision could be
//! skipped: a message the gateway cannot decide is never forwarded undecided.
//!
//! Resource URIs are decided in their normal spelling ([`mcpgate_guard::uri`]); when the
//! client spelt one otherwise, the request goes upstream with the normal spelling, so that the
//! upstream reads exactly what was decided.

use std::borrow::Cow;

use bytes::Bytes;
use mcpgate_guard::policy::Kind;

use super::message::{Field, Kind as MessageKind, Message, Reference, Shape};
use crate::upstream::stdio::json::{RawObject, raw};

/// What a governed request targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aim {
    /// Its kind.
    pub kind: Kind,
    /// The name, or the URI in its normal spelling.
    pub name: String,
    /// Whether the client spelt the URI otherwise (the body is then respelt upstream).
    pub respelt: bool,
}

/// Why a governed request is refused before any decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a request the gateway can answer (JSON-RPC -32600).
    Request(&'static str),
    /// Its parameters cannot be read for certain (JSON-RPC -32602).
    Params(String),
}

/// Whether the gateway decides on `method`'s target.
pub fn governs(method: &str) -> bool {
    matches!(
        method,
        "tools/call"
            | "prompts/get"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "completion/complete"
    )
}

/// The methods of MCP whose other spellings (`Tools/Call`, `tools/call `) are refused: an
/// upstream that reads methods case-insensitively would run them undecided.
const KNOWN: &[&str] = &[
    "tools/call",
    "prompts/get",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
    "initialize",
    "ping",
    "server/discover",
    "subscriptions/listen",
    "logging/setLevel",
];

/// Whether `method` (not one the gateway governs) could be read as an MCP method by a less
/// careful reader: it holds whitespace or control characters (an upstream may cut at NUL or
/// trim), an empty segment (`tools//call`, `/tools/call`: an upstream may collapse slashes),
/// or spells a known method with other case or with look-alike letters (`Tools/Call`,
/// `tooIs/call`).
pub fn look_alike(method: &str) -> bool {
    // MCP's methods are ASCII; letters from elsewhere (fullwidth, Cyrillic, combining
    // accents) only make look-alikes, and so do escapes.
    if !method.is_ascii()
        || method
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '%' | '\\'))
    {
        return true;
    }
    if method.contains('/') && method.split('/').any(str::is_empty) {
        return true;
    }
    if KNOWN.contains(&method) {
        return false;
    }
    let skeleton = |text: &str| -> String {
        text.chars()
            .map(|c| match c.to_ascii_lowercase() {
                'i' | '1' | '|' => 'l',
                '0' => 'o',
                '.' => '/',
                c => c,
            })
            .collect()
    };
    let mine = skeleton(method);
    KNOWN
        .iter()
        .any(|k| super::message::folds_to(method, k) || skeleton(k) == mine)
}

/// Longest target (name or URI) the gateway decides on.
pub const MAX_TARGET: usize = 8 * 1024;

/// The target of a governed request; `Ok(None)` for other messages.
pub fn aim(message: &Message<'_>) -> Result<Option<Aim>, Refusal> {
    let Some(method) = message.method.as_deref() else {
        return Ok(None);
    };
    if !governs(method) {
        if look_alike(method) {
            return Err(Refusal::Request(
                "the method is another spelling of an MCP method (methods are case-sensitive, without spaces, control characters or empty segments)",
            ));
        }
        return Ok(None);
    }
    if message.kind != MessageKind::Request {
        return Err(Refusal::Request(
            "this method must be sent as a request with a string or integer id",
        ));
    }
    if message.params != Shape::Object {
        return Err(Refusal::Params("params must be an object".into()));
    }
    if let Some(member) = message.repeated {
        return Err(Refusal::Params(format!(
            "{member} appears more than once (or in another spelling)"
        )));
    }
    let string = |field: &Field<'_>, what: &str| -> Result<String, Refusal> {
        match field {
            Field::Str(s) => Ok(s.to_string()),
            Field::Absent => Err(Refusal::Params(format!("{what} is required"))),
            Field::NotAString => Err(Refusal::Params(format!("{what} must be a string"))),
        }
    };
    let uri = |text: &str, template: bool| -> Result<(String, bool), Refusal> {
        let normal = if template {
            mcpgate_guard::uri::normalize_template(text)
        } else {
            mcpgate_guard::uri::normalize(text)
        };
        match normal {
            Ok(Cow::Borrowed(_)) => Ok((text.to_owned(), false)),
            Ok(Cow::Owned(n)) => Ok((n, true)),
            Err(e) => Err(Refusal::Params(format!(
                "the URI cannot be decided on: {e}"
            ))),
        }
    };
    let (kind, name, respelt) = match method {
        "tools/call" => {
            if message.arguments == Some(false) {
                return Err(Refusal::Params("params.arguments must be an object".into()));
            }
            (
                Kind::Tool,
                string(&message.name_field, "params.name")?,
                false,
            )
        }
        "prompts/get" => (
            Kind::Prompt,
            string(&message.name_field, "params.name")?,
            false,
        ),
        "completion/complete" => match &message.reference {
            Reference::Absent => return Err(Refusal::Params("params.ref is required".into())),
            Reference::Invalid(why) => return Err(Refusal::Params((*why).into())),
            Reference::Valid { kind, name, uri: u } => match (kind.as_ref(), name, u) {
                ("ref/prompt", Some(name), None) => (Kind::Prompt, name.to_string(), false),
                ("ref/resource", None, Some(u)) => {
                    let (n, respelt) = uri(u, true)?;
                    (Kind::ResourceTemplate, n, respelt)
                }
                ("ref/prompt", _, _) => {
                    return Err(Refusal::Params(
                        "params.ref of type ref/prompt takes a name and no uri".into(),
                    ));
                }
                ("ref/resource", _, _) => {
                    return Err(Refusal::Params(
                        "params.ref of type ref/resource takes a uri and no name".into(),
                    ));
                }
                _ => {
                    return Err(Refusal::Params(
                        "params.ref.type must be ref/prompt or ref/resource".into(),
                    ));
                }
            },
        },
        // resources/read, resources/subscribe, resources/unsubscribe
        _ => {
            let text = string(&message.uri_field, "params.uri")?;
            let (n, respelt) = uri(&text, false)?;
            (Kind::Resource, n, respelt)
        }
    };
    if name.len() > MAX_TARGET {
        return Err(Refusal::Params(format!(
            "the target is longer than {MAX_TARGET} bytes"
        )));
    }
    Ok(Some(Aim {
        kind,
        name,
        respelt,
    }))
}

/// The body with its URI in the normal spelling, for an aim that was respelt (`None` when the
/// body cannot be rewritten, which cannot happen for a body [`aim`] accepted).
pub fn respell(body: &[u8], aim: &Aim) -> Option<Bytes> {
    let mut message = RawObject::parse(body)?;
    let mut params = message.object("params")?;
    match aim.kind {
        Kind::ResourceTemplate => {
            let mut reference = params.object("ref")?;
            reference.set("uri", raw(&aim.name));
            params.set("ref", reference.to_raw());
        }
        _ => params.set("uri", raw(&aim.name)),
    }
    message.set("params", params.to_raw());
    Some(Bytes::from(message.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aim_of(body: &str) -> Result<Option<Aim>, Refusal> {
        let m = Message::parse(body.as_bytes()).expect("a message");
        aim(&m)
    }

    fn params_refusal(body: &str) -> String {
        match aim_of(body) {
            Err(Refusal::Params(why)) => why,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_tool_call_names_its_tool() {
        let a = aim_of(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.kind, a.name.as_str(), a.respelt),
            (Kind::Tool, "echo", false)
        );
    }

    #[test]
    fn other_methods_have_no_target() {
        assert_eq!(
            aim_of(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[1]}"#),
            Ok(None)
        );
    }

    #[test]
    fn look_alikes_of_mcp_methods_are_refused_and_real_methods_are_not() {
        for method in [
            "tools/call\u{0}",
            "tools//call",
            "/tools/call",
            "tools/call/",
            " tools/call",
            "tools/list\t",
            "tooIs/call",
            "Tools/List",
            "resources/rea\u{200b}d",
            "in1tialize",
            "prompts/get\u{feff}",
            "tools/\u{ff43}all",
            "t\u{43e}ols/call",
            "tools/call\u{301}",
            "tools%2Fcall",
            "tools.call",
            "tools\\call",
        ] {
            assert!(look_alike(method), "{method:?}");
        }
        for method in [
            "tools/list",
            "initialize",
            "notifications/initialized",
            "notifications/tools/list_changed",
            "x-vendor/custom",
            "ping",
            "logging/setLevel",
            "elicitation/create",
        ] {
            assert!(!look_alike(method), "{method:?}");
        }
    }

    #[test]
    fn governed_notifications_are_refused() {
        let r = aim_of(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}"#);
        assert!(matches!(r, Err(Refusal::Request(_))), "{r:?}");
        assert!(
            Message::parse(
                br#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"x"}}"#
            )
            .is_err()
        );
        assert!(
            Message::parse(
                br#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"x"}}"#
            )
            .is_err()
        );
        assert!(
            Message::parse(
                br#"{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{"name":"x"}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn positional_or_missing_params_are_refused() {
        params_refusal(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["x"]}"#);
        params_refusal(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#);
        params_refusal(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"x"}"#);
        params_refusal(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":null}"#);
    }

    #[test]
    fn targets_that_are_not_strings_are_refused() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["x"]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":null}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":{"a":1}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":1}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#,
        ] {
            params_refusal(body);
        }
    }

    #[test]
    fn a_repeated_member_the_gateway_reads_is_refused() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ok","name":"evil"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ok","arguments":{},"arguments":{"a":1}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a:b","uri":"c:d"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a"},"ref":{"type":"ref/prompt","name":"b"}}}"#,
        ] {
            assert!(params_refusal(body).contains("more than once"), "{body}");
        }
    }

    #[test]
    fn completion_refs_are_read_strictly() {
        let ok = aim_of(r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"a","value":""}}}"#)
            .unwrap()
            .unwrap();
        assert_eq!((ok.kind, ok.name.as_str()), (Kind::Prompt, "p"));
        let t = aim_of(r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"FILE:///{x}"}}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.kind, t.name.as_str(), t.respelt),
            (Kind::ResourceTemplate, "file:///{x}", true)
        );
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a","name":"b"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a","extra":1}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a","uri":"x:y"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/tool","name":"a"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"name":"a"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":5}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":"ref/prompt"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{}}"#,
        ] {
            params_refusal(body);
        }
    }

    #[test]
    fn resource_uris_are_decided_and_sent_in_their_normal_spelling() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"FILE:///public/../private/x#f","_meta":{"k":1}}}"#;
        let a = aim_of(body).unwrap().unwrap();
        assert_eq!((a.name.as_str(), a.respelt), ("file:///private/x", true));
        let out = respell(body.as_bytes(), &a).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///private/x","_meta":{"k":1}}}"#
        );
        assert!(params_refusal(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a%2fb"}}"#).contains("URI"));
    }

    #[test]
    fn deep_nesting_is_seen_anywhere_and_strings_do_not_count() {
        use super::super::message::nests_deeper_than;
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(nests_deeper_than(deep.as_bytes(), 64));
        let inside = format!(r#"{{"params":{{"arguments":{}}}}}"#, deep);
        assert!(nests_deeper_than(inside.as_bytes(), 64));
        let quoted = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(100), "{".repeat(100));
        assert!(!nests_deeper_than(quoted.as_bytes(), 64));
    }
}
