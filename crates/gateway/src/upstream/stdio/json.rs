//! Editing a JSON-RPC message without touching what the gateway does not change: a JSON
//! object read as its members in order, each value kept as raw text, so that numbers, strings
//! and fields the gateway does not know go through byte for byte.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A JSON object as members in order, values raw.
#[derive(Debug, Default)]
pub struct RawObject(pub Vec<(String, Box<RawValue>)>);

impl RawObject {
    /// Reads `text` as an object; anything else is `None`.
    pub fn parse(text: &[u8]) -> Option<RawObject> {
        serde_json::from_slice(text).ok()
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// Sets `key` (replacing it in place, or appending it).
    pub fn set(&mut self, key: &str, value: Box<RawValue>) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Box<RawValue>> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(at).1)
    }

    /// The member `key` read as an object.
    pub fn object(&self, key: &str) -> Option<RawObject> {
        self.get(key)
            .and_then(|v| RawObject::parse(v.get().as_bytes()))
    }

    /// The member `key` as a string.
    pub fn str(&self, key: &str) -> Option<String> {
        self.get(key)
            .and_then(|v| serde_json::from_str(v.get()).ok())
    }

    /// The object as raw JSON.
    pub fn to_raw(&self) -> Box<RawValue> {
        RawValue::from_string(self.to_string()).expect("an object serializes to valid JSON")
    }
}

impl fmt::Display for RawObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for RawObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push((k, v));
                }
                Ok(RawObject(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// Raw JSON for a value the gateway makes.
pub fn raw(value: &impl Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("gateway values serialize")
}

/// Raw JSON text, checked.
pub fn raw_text(text: String) -> Box<RawValue> {
    RawValue::from_string(text).expect("gateway JSON is valid")
}

/// `params._meta` of a message, when it is an object.
pub fn meta(message: &RawObject) -> Option<RawObject> {
    message.object("params")?.object("_meta")
}

/// Rewrites `params._meta[key]` of `message` with `f` (which sees the current value) and puts
/// the result back. Returns what `f` returned, or `None` when there is no such value.
pub fn edit_meta<T>(
    message: &mut RawObject,
    key: &str,
    f: impl FnOnce(&RawValue) -> (Box<RawValue>, T),
) -> Option<T> {
    let mut params = message.object("params")?;
    let mut meta = params.object("_meta")?;
    let (new, out) = f(meta.get(key)?);
    meta.set(key, new);
    params.set("_meta", meta.to_raw());
    message.set("params", params.to_raw());
    Some(out)
}

/// Sets `params._meta[key]` of a request (creating `params` and `_meta` when absent).
pub fn put_meta(message: &mut RawObject, key: &str, value: Box<RawValue>) {
    let mut params = message.object("params").unwrap_or_default();
    let mut meta = params.object("_meta").unwrap_or_default();
    meta.set(key, value);
    params.set("_meta", meta.to_raw());
    message.set("params", params.to_raw());
}

/// Whether the message, its `params` or their `_meta` repeat a member (children differ in
/// which copy they read, so such a message cannot be rewritten safely).
pub fn has_duplicate_keys(message: &RawObject) -> bool {
    fn repeats(o: &RawObject) -> bool {
        let mut seen = std::collections::HashSet::with_capacity(o.0.len());
        o.0.iter().any(|(k, _)| !seen.insert(k.as_str()))
    }
    if repeats(message) {
        return true;
    }
    let Some(params) = message.object("params") else {
        return false;
    };
    repeats(&params) || params.object("_meta").is_some_and(|m| repeats(&m))
}

/// Removes `keys` from `params._meta` (and `_meta` itself when nothing is left).
pub fn strip_meta(message: &mut RawObject, keys: &[&str]) {
    let Some(mut params) = message.object("params") else {
        return;
    };
    let Some(mut meta) = params.object("_meta") else {
        return;
    };
    let before = meta.0.len();
    meta.0.retain(|(k, _)| !keys.contains(&k.as_str()));
    if meta.0.len() == before {
        return;
    }
    if meta.0.is_empty() {
        params.remove("_meta");
    } else {
        params.set("_meta", meta.to_raw());
    }
    message.set("params", params.to_raw());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_numbers_survive_unchanged() {
        let text = br#"{"jsonrpc":"2.0","id":7,"method":"x","params":{"big":123456789012345678901234567890,"f":1.50}}"#;
        let mut o = RawObject::parse(text).unwrap();
        o.set("id", raw(&42u64));
        assert_eq!(
            o.to_string(),
            r#"{"jsonrpc":"2.0","id":42,"method":"x","params":{"big":123456789012345678901234567890,"f":1.50}}"#
        );
    }

    #[test]
    fn meta_is_edited_in_place() {
        let text = br#"{"id":1,"params":{"a":1,"_meta":{"progressToken":"t","x":2}}}"#;
        let mut o = RawObject::parse(text).unwrap();
        let old = edit_meta(&mut o, "progressToken", |v| {
            (raw(&9u64), v.get().to_owned())
        });
        assert_eq!(old.as_deref(), Some("\"t\""));
        assert_eq!(
            o.to_string(),
            r#"{"id":1,"params":{"a":1,"_meta":{"progressToken":9,"x":2}}}"#
        );
        assert!(edit_meta(&mut o, "absent", |v| (v.to_owned(), ())).is_none());
    }

    #[test]
    fn meta_is_created_when_absent() {
        let mut o = RawObject::parse(br#"{"id":1,"method":"m"}"#).unwrap();
        put_meta(&mut o, "k", raw(&"v"));
        assert_eq!(
            o.to_string(),
            r#"{"id":1,"method":"m","params":{"_meta":{"k":"v"}}}"#
        );
    }

    #[test]
    fn repeated_members_are_found_at_every_level_that_is_rewritten() {
        let dup = |t: &str| has_duplicate_keys(&RawObject::parse(t.as_bytes()).unwrap());
        assert!(!dup(r#"{"id":1,"params":{"_meta":{"progressToken":1}}}"#));
        assert!(dup(r#"{"id":1,"id":2}"#));
        assert!(dup(r#"{"id":1,"params":{"a":1,"a":2}}"#));
        assert!(dup(
            r#"{"id":1,"params":{"_meta":{"progressToken":"a","progressToken":57}}}"#
        ));
    }

    #[test]
    fn non_objects_are_refused() {
        assert!(RawObject::parse(b"[1]").is_none());
        assert!(RawObject::parse(b"nope").is_none());
    }
}
