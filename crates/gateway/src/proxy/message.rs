//! Reading just enough of a JSON-RPC message to route and check it. (What the gateway writes
//! itself is [`crate::jsonrpc`]'s.)
//!
//! The gateway is a transparent proxy: it forwards the bytes it received, unchanged. It only
//! looks at `id`, `method`, and the few `params` that routing and the 2026-07-28 header rules
//! need (`name`, `uri`, `_meta` protocol version).

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A string field that may also be absent or of another type (then it reads as absent).
/// Read without buffering: this runs on every request.
#[derive(Debug, Default)]
pub struct LenientStr<'a>(pub Option<Cow<'a, str>>);

struct LenientStrVisitor;

impl<'de> Visitor<'de> for LenientStrVisitor {
    type Value = LenientStr<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(LenientStr(Some(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(LenientStr(Some(Cow::Owned(v.to_owned()))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(LenientStr(Some(Cow::Owned(v))))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(LenientStr(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(LenientStr(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(LenientStr(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(LenientStr(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(LenientStr(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(LenientStr(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(LenientStr(None))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LenientStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientStrVisitor)
    }
}

/// A member of `params` the gateway reads: absent, a string, or something else.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Field<'a> {
    /// Not there.
    #[default]
    Absent,
    /// A string.
    Str(Cow<'a, str>),
    /// Another JSON type.
    NotAString,
}

impl<'a> Field<'a> {
    fn of(value: LenientStr<'a>) -> Self {
        match value.0 {
            Some(s) => Field::Str(s),
            None => Field::NotAString,
        }
    }
}

/// What `params` is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// No `params`.
    #[default]
    Absent,
    /// An object (the only shape MCP uses).
    Object,
    /// An array (JSON-RPC's positional parameters) or a scalar.
    Other,
}

/// `params.ref` of `completion/complete`, read strictly: an object with a string `type` and a
/// string `name` or `uri`, and nothing else.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Reference<'a> {
    /// Not there.
    #[default]
    Absent,
    /// Readable.
    Valid {
        /// `type`: `ref/prompt` or `ref/resource`.
        kind: Cow<'a, str>,
        /// `name`.
        name: Option<Cow<'a, str>>,
        /// `uri`.
        uri: Option<Cow<'a, str>>,
    },
    /// Present, but not what the schema says (the text says how).
    Invalid(&'static str),
}

/// The parts of `params` the gateway reads. Everything else in them is skipped unread.
#[derive(Debug, Default)]
struct Params<'a> {
    shape: Shape,
    name: Field<'a>,
    uri: Field<'a>,
    reference: Reference<'a>,
    /// Whether `arguments` is there, and an object.
    arguments: Option<bool>,
    meta_version: Option<Cow<'a, str>>,
    /// The first member the gateway reads that appears twice.
    repeated: Option<&'static str>,
}

/// `params` (`is_meta` false) or `params._meta` (`is_meta` true).
struct ParamsVisitor {
    is_meta: bool,
}

impl<'de> Visitor<'de> for ParamsVisitor {
    type Value = Params<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Params {
            shape: Shape::Object,
            ..Params::default()
        };
        let mut seen = [false; 5];
        let mut once = |out: &mut Params<'de>, i: usize, what: &'static str| {
            if std::mem::replace(&mut seen[i], true) && out.repeated.is_none() {
                out.repeated = Some(what);
            }
        };
        while let Some(LenientStr(key)) = map.next_key::<LenientStr<'de>>()? {
            match (self.is_meta, key.as_deref().unwrap_or_default()) {
                (false, "name") => {
                    once(&mut out, 0, "params.name");
                    out.name = Field::of(map.next_value::<LenientStr<'de>>()?);
                }
                (false, "uri") => {
                    once(&mut out, 1, "params.uri");
                    out.uri = Field::of(map.next_value::<LenientStr<'de>>()?);
                }
                (false, "arguments") => {
                    once(&mut out, 2, "params.arguments");
                    out.arguments = Some(map.next_value::<IsObject>()?.0);
                }
                (false, "ref") => {
                    once(&mut out, 3, "params.ref");
                    out.reference = map.next_value::<StrictRef<'de>>()?.0;
                }
                (false, "_meta") => {
                    once(&mut out, 4, "params._meta");
                    let meta = map.next_value::<MetaParams<'de>>()?.0;
                    out.meta_version = meta.meta_version;
                    if out.repeated.is_none() {
                        out.repeated = meta.repeated;
                    }
                }
                (true, "io.modelcontextprotocol/protocolVersion") => {
                    if out.meta_version.is_some() && out.repeated.is_none() {
                        out.repeated = Some("params._meta's protocol version");
                    }
                    out.meta_version = map.next_value::<LenientStr<'de>>()?.0
                }
                (is_meta, other) => {
                    let watched: &[(&str, &'static str)] = if is_meta {
                        &[(
                            "io.modelcontextprotocol/protocolVersion",
                            "params._meta's protocol version",
                        )]
                    } else {
                        &[
                            ("name", "params.name"),
                            ("uri", "params.uri"),
                            ("arguments", "params.arguments"),
                            ("ref", "params.ref"),
                            ("_meta", "params._meta"),
                        ]
                    };
                    if out.repeated.is_none()
                        && let Some((_, what)) = watched.iter().find(|(w, _)| folds_to(other, w))
                    {
                        out.repeated = Some(what);
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Params::other())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Params::other())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Params::other())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Params::other())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Params::other())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Params::other())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        // `"params": null`: no parameters.
        Ok(Params::default())
    }
}

impl Params<'_> {
    fn other() -> Self {
        Params {
            shape: Shape::Other,
            ..Params::default()
        }
    }
}

/// Whether a value is an object (read without keeping it).
struct IsObject(bool);

impl<'de> Deserialize<'de> for IsObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IsObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IsObject, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(IsObject(true))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<IsObject, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(IsObject(false))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<IsObject, E> {
                Ok(IsObject(false))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<IsObject, E> {
                Ok(IsObject(false))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<IsObject, E> {
                Ok(IsObject(false))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<IsObject, E> {
                Ok(IsObject(false))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<IsObject, E> {
                Ok(IsObject(false))
            }
            fn visit_unit<E: de::Error>(self) -> Result<IsObject, E> {
                Ok(IsObject(false))
            }
        }
        d.deserialize_any(V)
    }
}

/// `params.ref`, read strictly.
struct StrictRef<'a>(Reference<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for StrictRef<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictRef<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictRef<'de>, A::Error> {
                let (mut kind, mut name, mut uri) = (None, None, None);
                let mut problem = None;
                while let Some(LenientStr(key)) = map.next_key::<LenientStr<'de>>()? {
                    let slot = match key.as_deref() {
                        Some("type") => &mut kind,
                        Some("name") => &mut name,
                        Some("uri") => &mut uri,
                        Some(other)
                            if ["type", "name", "uri"].iter().any(|m| folds_to(other, m)) =>
                        {
                            map.next_value::<IgnoredAny>()?;
                            problem.get_or_insert("params.ref has a member in another spelling");
                            continue;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            problem.get_or_insert(
                                "params.ref has a member other than type, name and uri",
                            );
                            continue;
                        }
                    };
                    let value = Field::of(map.next_value::<LenientStr<'de>>()?);
                    if slot.is_some() {
                        problem.get_or_insert("params.ref repeats a member");
                    }
                    match value {
                        Field::Str(s) => *slot = Some(s),
                        _ => {
                            problem
                                .get_or_insert("params.ref's type, name and uri must be strings");
                        }
                    }
                }
                Ok(StrictRef(match (problem, kind) {
                    (Some(p), _) => Reference::Invalid(p),
                    (None, None) => Reference::Invalid("params.ref.type is missing"),
                    (None, Some(kind)) => Reference::Valid { kind, name, uri },
                }))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictRef<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(StrictRef(Reference::Invalid(
                    "params.ref must be an object",
                )))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<StrictRef<'de>, E> {
                Ok(StrictRef(Reference::Invalid(
                    "params.ref must be an object",
                )))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<StrictRef<'de>, E> {
                Ok(StrictRef(Reference::Invalid(
                    "params.ref must be an object",
                )))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<StrictRef<'de>, E> {
                Ok(StrictRef(Reference::Invalid(
                    "params.ref must be an object",
                )))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<StrictRef<'de>, E> {
                Ok(StrictRef(Reference::Invalid(
                    "params.ref must be an object",
                )))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<StrictRef<'de>, E> {
                Ok(StrictRef(Reference::Invalid(
                    "params.ref must be an object",
                )))
            }
            fn visit_unit<E: de::Error>(self) -> Result<StrictRef<'de>, E> {
                Ok(StrictRef(Reference::Invalid(
                    "params.ref must be an object",
                )))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default)]
struct LenientParams<'a>(Params<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for LenientParams<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParamsVisitor { is_meta: false })
            .map(LenientParams)
    }
}

struct MetaParams<'a>(Params<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for MetaParams<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParamsVisitor { is_meta: true })
            .map(MetaParams)
    }
}

/// The members of a message, read once each. A member that differs from one of JSON-RPC's
/// only in case (`Method`, `Params`, `ID`, or with the two non-ASCII letters that fold to
/// ASCII ones) makes the message ambiguous: some JSON readers (Go's `encoding/json`) match
/// members case-insensitively, the last one winning.
#[derive(Debug, Default)]
struct Envelope<'a> {
    /// Raw, `null` included.
    id: Option<&'a RawValue>,
    method: LenientStr<'a>,
    /// Whether `method` is there but not a string.
    method_not_a_string: bool,
    params: Option<LenientParams<'a>>,
    /// Whether `result` or `error` is there (whatever its value).
    outcome: bool,
    /// A member given twice, or in another spelling.
    ambiguous: bool,
}

const ENVELOPE_MEMBERS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];

impl<'de: 'a, 'a> Deserialize<'de> for Envelope<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON-RPC message")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Envelope::default();
                let mut seen = [false; 6];
                while let Some(LenientStr(key)) = map.next_key::<LenientStr<'de>>()? {
                    let key = key.unwrap_or_default();
                    let exact = ENVELOPE_MEMBERS.iter().position(|m| *m == key);
                    let Some(i) = exact else {
                        if ENVELOPE_MEMBERS.iter().any(|m| folds_to(&key, m)) {
                            out.ambiguous = true;
                        }
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    if std::mem::replace(&mut seen[i], true) {
                        out.ambiguous = true;
                    }
                    match i {
                        1 => out.id = Some(map.next_value::<&'de RawValue>()?),
                        2 => {
                            out.method = map.next_value::<LenientStr<'de>>()?;
                            out.method_not_a_string = out.method.0.is_none();
                        }
                        3 => out.params = Some(map.next_value::<LenientParams<'de>>()?),
                        4 | 5 => {
                            map.next_value::<IgnoredAny>()?;
                            out.outcome = true;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

pub use mcpgate_guard::policy::lists::folds_to;

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
    /// Whether it has a `result` or an `error` (a request that also has one is not one a
    /// server may send).
    pub has_outcome: bool,
    /// `method`.
    pub method: Option<Cow<'a, str>>,
    /// `params.name`, when it is a string.
    pub name: Option<Cow<'a, str>>,
    /// `params.uri`, when it is a string.
    pub uri: Option<Cow<'a, str>>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`.
    pub meta_version: Option<Cow<'a, str>>,
    /// What `params` is.
    pub params: Shape,
    /// `params.name` as it is, for deciding on it.
    pub name_field: Field<'a>,
    /// `params.uri` as it is, for deciding on it.
    pub uri_field: Field<'a>,
    /// `params.ref`, strictly read.
    pub reference: Reference<'a>,
    /// Whether `params.arguments` is there (`Some`), and an object (`Some(true)`).
    pub arguments: Option<bool>,
    /// The first member of `params` the gateway reads that appears twice.
    pub repeated: Option<&'static str>,
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
    /// Reads a body. A message with `"id": null`, or an id that is neither a string nor an
    /// integer, is not one MCP allows (it would be read as a notification by some and as a
    /// request by others).
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
        if envelope.ambiguous || envelope.method_not_a_string {
            return Err(Unreadable::Invalid(None));
        }
        let id = match envelope.id {
            Some(raw) if !valid_id(raw) => return Err(Unreadable::Invalid(None)),
            id => id,
        };
        let method = envelope.method.0;
        let kind = match (&method, id, envelope.outcome) {
            (Some(_), Some(_), _) => Kind::Request,
            (Some(_), None, _) => Kind::Notification,
            (None, Some(_), true) => Kind::Response,
            _ => return Err(Unreadable::Invalid(id)),
        };
        let params = envelope.params.map(|p| p.0).unwrap_or_default();
        Ok(Message {
            kind,
            id,
            has_outcome: envelope.outcome,
            method,
            name: match &params.name {
                Field::Str(s) => Some(s.clone()),
                _ => None,
            },
            uri: match &params.uri {
                Field::Str(s) => Some(s.clone()),
                _ => None,
            },
            meta_version: params.meta_version,
            params: params.shape,
            name_field: params.name,
            uri_field: params.uri,
            reference: params.reference,
            arguments: params.arguments,
            repeated: params.repeated,
        })
    }
}

/// Deepest nesting of arrays and objects the gateway reads or forwards, anywhere in a
/// message.
pub const MAX_DEPTH: usize = 64;

/// Whether `body` nests arrays and objects deeper than `max` (strings are skipped: brackets in
/// them do not count). Linear in the body's length; runs before anything else reads it.
pub fn nests_deeper_than(body: &[u8], max: usize) -> bool {
    // Nesting never goes deeper than the body has `[` and `{` bytes, in strings or not: most
    // bodies have fewer than `max` of them, and are decided by a count that runs sixteen bytes
    // at a time instead of a scan that looks at each.
    mcpgate_guard::bytes::count(body, |b| b == b'[' || b == b'{') > max && deeper_by_scan(body, max)
}

/// [`nests_deeper_than`], byte by byte.
fn deeper_by_scan(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// MCP ids are strings or integers, never null.
fn valid_id(raw: &RawValue) -> bool {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => true,
        Some(b'-' | b'0'..=b'9') => text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn counting_openers_first_decides_nesting_as_the_scan_does(
            body in "[\\[\\]{}\"\\\\a,:]{0,600}",
            max in 0usize..70,
        ) {
            proptest::prop_assert_eq!(
                nests_deeper_than(body.as_bytes(), max),
                deeper_by_scan(body.as_bytes(), max)
            );
        }
    }

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
    fn strings_the_gateway_decides_on_are_read_strictly() {
        // A lone surrogate escape is no character: in a member the gateway reads, the message
        // is refused. (In members it skips, JSON's grammar allows it and the bytes pass as
        // they came; no decision depends on them.)
        assert!(
            Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"name":"\ud800"}}"#)
                .is_err()
        );
        assert!(
            Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"other":"\ud800"}}"#)
                .is_ok()
        );
        // A broken escape is not JSON anywhere.
        assert!(
            Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"other":"\q"}}"#)
                .is_err()
        );
    }
}
