//! Filtering MCP list results (`tools/list`, `resources/list`, `resources/templates/list`,
//! `prompts/list`) per caller, and trimming (components removed for everyone).
//!
//! Works on the JSON-RPC response as bytes: items that stay are copied byte for byte, as is
//! everything else in the result (`nextCursor`, `_meta`, fields this code does not know), so a
//! page filtered here is still the upstream's page, minus what the caller may not see.

use std::borrow::Cow;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Annotations, Caller, Kind, Policy, PolicyError, Target};

/// Which list a method returns.
pub fn list_kind(method: &str) -> Option<Kind> {
    Some(match method {
        "tools/list" => Kind::Tool,
        "resources/list" => Kind::Resource,
        "resources/templates/list" => Kind::ResourceTemplate,
        "prompts/list" => Kind::Prompt,
        _ => return None,
    })
}

fn field(kind: Kind) -> &'static str {
    match kind {
        Kind::Tool => "tools",
        Kind::Resource => "resources",
        Kind::ResourceTemplate => "resourceTemplates",
        Kind::Prompt => "prompts",
    }
}

/// Patterns per kind, as configured (`[upstream.expose]`, `[upstream.hide]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KindPatterns {
    /// Tool names.
    pub tools: Option<Vec<String>>,
    /// Resource URIs.
    pub resources: Option<Vec<String>>,
    /// Resource template URI templates.
    pub resource_templates: Option<Vec<String>>,
    /// Prompt names.
    pub prompts: Option<Vec<String>>,
}

impl KindPatterns {
    fn get(&self, kind: Kind) -> Option<&Vec<String>> {
        match kind {
            Kind::Tool => self.tools.as_ref(),
            Kind::Resource => self.resources.as_ref(),
            Kind::ResourceTemplate => self.resource_templates.as_ref(),
            Kind::Prompt => self.prompts.as_ref(),
        }
    }
}

/// Trimming: what is removed for everyone, before any policy.
#[derive(Debug, Default)]
pub struct Trim {
    /// Per kind: only these (None: all).
    expose: [Option<GlobSet>; 4],
    /// Per kind: never these.
    hide: [Option<GlobSet>; 4],
}

const KINDS: [Kind; 4] = [
    Kind::Tool,
    Kind::Resource,
    Kind::ResourceTemplate,
    Kind::Prompt,
];

fn index(kind: Kind) -> usize {
    match kind {
        Kind::Tool => 0,
        Kind::Resource => 1,
        Kind::ResourceTemplate => 2,
        Kind::Prompt => 3,
    }
}

impl Trim {
    /// Compiles the `expose` and `hide` lists; `key` prefixes error keys (`upstream`).
    pub fn new(
        key: &str,
        expose: &KindPatterns,
        hide: &KindPatterns,
    ) -> Result<Trim, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let mut build = |which: &str, patterns: &KindPatterns, kind: Kind| -> Option<GlobSet> {
            let list = patterns.get(kind)?;
            let mut b = GlobSetBuilder::new();
            for p in list {
                match Glob::new(p) {
                    Ok(g) => {
                        b.add(g);
                    }
                    Err(e) => errors.push(PolicyError {
                        key: format!("{key}.{which}.{}", field_key(kind)),
                        problem: format!("`{p}` is not a valid pattern: {e}"),
                    }),
                }
                if matches!(kind, Kind::Resource | Kind::ResourceTemplate)
                    && let Err(problem) = crate::uri::check_pattern(p)
                {
                    errors.push(PolicyError {
                        key: format!("{key}.{which}.{}", field_key(kind)),
                        problem,
                    });
                }
            }
            b.build().ok()
        };
        let mut trim = Trim::default();
        for kind in KINDS {
            trim.expose[index(kind)] = build("expose", expose, kind);
            trim.hide[index(kind)] = build("hide", hide, kind);
        }
        if errors.is_empty() {
            Ok(trim)
        } else {
            Err(errors)
        }
    }

    /// Whether a component is there at all.
    pub fn visible(&self, kind: Kind, name: &str) -> bool {
        let i = index(kind);
        self.expose[i].as_ref().is_none_or(|g| g.is_match(name))
            && !self.hide[i].as_ref().is_some_and(|g| g.is_match(name))
    }

    /// Whether nothing is trimmed.
    pub fn is_empty(&self) -> bool {
        self.expose
            .iter()
            .chain(self.hide.iter())
            .all(Option::is_none)
    }
}

fn field_key(kind: Kind) -> &'static str {
    match kind {
        Kind::Tool => "tools",
        Kind::Resource => "resources",
        Kind::ResourceTemplate => "resource_templates",
        Kind::Prompt => "prompts",
    }
}

/// What the gateway learns about a tool from a list: its annotations, tags and input schema.
#[derive(Debug, Clone)]
pub struct ToolFacts {
    /// Declared annotations.
    pub annotations: Annotations,
    /// `_meta` tags.
    pub tags: Vec<String>,
    /// `inputSchema`, raw.
    pub input_schema: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    uri: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "uriTemplate")]
    uri_template: Option<Cow<'a, str>>,
    #[serde(default)]
    annotations: Option<Value>,
    #[serde(default, rename = "_meta")]
    meta: Option<Value>,
    #[serde(borrow, default, rename = "inputSchema")]
    input_schema: Option<&'a RawValue>,
}

/// `_meta` tags of a component: the strings of `_meta.tags`, and every `_meta` key whose value
/// is `true`.
pub fn tags_of(meta: Option<&Value>) -> Vec<String> {
    let Some(Value::Object(meta)) = meta else {
        return Vec::new();
    };
    let mut tags: Vec<String> = meta
        .get("tags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    tags.extend(
        meta.iter()
            .filter(|(_, v)| **v == Value::Bool(true))
            .map(|(k, _)| k.clone()),
    );
    tags
}

/// What a character of a member name is to readers that match names without regard to case:
/// ASCII in lower case, and the four other characters whose simple case mapping is an ASCII
/// letter — `ſ` (long s) as `s`, `K` (Kelvin sign) as `k` (Go's `encoding/json`), `ı`
/// (dotless i) and `İ` (dotted capital I) as `i` (Java's `equalsIgnoreCase`, .NET's
/// ignore-case comparisons). `None` for any other character.
pub fn fold_char(c: char) -> Option<char> {
    match c {
        '\u{17F}' => Some('s'),
        '\u{212A}' => Some('k'),
        '\u{130}' | '\u{131}' => Some('i'),
        c if c.is_ascii() => Some(c.to_ascii_lowercase()),
        _ => None,
    }
}

/// Whether `key` is another spelling of `member`: equal when compared as case-insensitive
/// readers do ([`fold_char`]) but not the same text. Some JSON readers match members that
/// way, the last one winning, so a message holding both spellings means different things to
/// different readers.
pub fn folds_to(key: &str, member: &str) -> bool {
    if key == member || key.len() < member.len() || key.len() > member.len() * 3 {
        return false;
    }
    let mut chars = key.chars();
    for m in member.chars() {
        match chars.next().and_then(fold_char) {
            Some(c) if c == m.to_ascii_lowercase() => {}
            _ => return false,
        }
    }
    chars.next().is_none()
}

/// Why a list answer cannot be filtered (and so must not be passed on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unfilterable {
    /// Not a JSON-RPC response at all.
    #[error("the answer is not a JSON-RPC response")]
    NotAResponse,
    /// A member appears twice (readers disagree on which one counts).
    #[error("the answer repeats a member")]
    RepeatedMember,
    /// A result without the list it should carry, or a list that is not an array.
    #[error("the result has no readable list")]
    NoList,
}

/// Filters one JSON-RPC response to a list request of `kind`: `Ok(Some(page))` is the page
/// the caller may see, `Ok(None)` an error response (passed on as it is), and an answer that
/// cannot be read for certain is an error, never passed on unfiltered.
/// `private`: mark the result `cacheScope: "private"` (2026-07-28: it depends on the caller).
/// `learn` sees every tool of the page (before filtering) with what the policy needs.
/// Resource URIs and URI templates are matched in their normal spelling
/// ([`crate::uri::normalize`]); an item whose URI cannot be normalised is left out.
pub fn filter_response(
    policy: &Policy,
    trim: &Trim,
    caller: Option<&Caller<'_>>,
    kind: Kind,
    response: &[u8],
    private: bool,
    mut learn: impl FnMut(&str, ToolFacts),
) -> Result<Option<Vec<u8>>, Unfilterable> {
    let envelope: RawMembers<'_> =
        serde_json::from_slice(response).map_err(|_| Unfilterable::NotAResponse)?;
    let envelope = envelope.unique(&["jsonrpc", "id", "result", "error"])?;
    let get = |k: &str| envelope.iter().find(|(name, _)| name == k).map(|(_, v)| *v);
    let Some(id) = get("id") else {
        return Err(Unfilterable::NotAResponse);
    };
    let result = match (get("result"), get("error")) {
        (Some(r), None) => r,
        (None, Some(_)) => return Ok(None),
        _ => return Err(Unfilterable::NotAResponse),
    };
    let list_field = field(kind);
    let members = serde_json::from_str::<RawMembers<'_>>(result.get())
        .map_err(|_| Unfilterable::NoList)?
        .unique(&[list_field, "nextCursor", "cacheScope"])?;
    let items: Vec<&RawValue> = match members.iter().find(|(k, _)| k == list_field) {
        Some((_, v)) => serde_json::from_str(v.get()).map_err(|_| Unfilterable::NoList)?,
        None => return Err(Unfilterable::NoList),
    };
    let mut kept: Vec<&RawValue> = Vec::with_capacity(items.len());
    for raw in items {
        // An item whose members can be read two ways is left out (fail closed).
        let readable = serde_json::from_str::<RawMembers<'_>>(raw.get())
            .ok()
            .and_then(|m| {
                m.unique(&[
                    "name",
                    "uri",
                    "uriTemplate",
                    "annotations",
                    "_meta",
                    "inputSchema",
                ])
                .ok()
            })
            .is_some();
        if !readable {
            continue;
        }
        let Ok(item) = serde_json::from_str::<Item<'_>>(raw.get()) else {
            continue;
        };
        let name: Option<Cow<'_, str>> = match kind {
            Kind::Tool | Kind::Prompt => item.name.as_deref().map(Cow::Borrowed),
            Kind::Resource => item
                .uri
                .as_deref()
                .and_then(|u| crate::uri::normalize(u).ok()),
            Kind::ResourceTemplate => item
                .uri_template
                .as_deref()
                .and_then(|u| crate::uri::normalize_template(u).ok()),
        };
        let Some(name) = name else { continue };
        let name: &str = &name;
        let annotations = Annotations::from_json(item.annotations.as_ref());
        let tags = tags_of(item.meta.as_ref());
        if kind == Kind::Tool {
            learn(
                name,
                ToolFacts {
                    annotations,
                    tags: tags.clone(),
                    input_schema: item.input_schema.map(ToOwned::to_owned),
                },
            );
        }
        if !trim.visible(kind, name) {
            continue;
        }
        if let Some(caller) = caller {
            let target = Target::listed(
                kind,
                name,
                (kind == Kind::Tool).then_some(&annotations),
                &tags,
            );
            // Challenged and forbidden targets stay listed (so that the client can find them
            // and step up); hidden ones go.
            if !policy.decide(caller, &target).verdict.listed() {
                continue;
            }
        }
        kept.push(raw);
    }
    // Rebuild: the result's members in order, the list replaced, cacheScope set when asked.
    let mut out = String::with_capacity(response.len());
    out.push_str(r#"{"jsonrpc":"2.0","id":"#);
    out.push_str(id.get());
    out.push_str(r#","result":{"#);
    let mut first = true;
    let mut put = |out: &mut String, k: &str, v: &str| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&serde_json::to_string(k).unwrap_or_default());
        out.push(':');
        out.push_str(v);
    };
    for (k, v) in &members {
        match k.as_ref() {
            k if k == list_field => {
                let mut list = String::from("[");
                for (i, item) in kept.iter().enumerate() {
                    if i > 0 {
                        list.push(',');
                    }
                    list.push_str(item.get());
                }
                list.push(']');
                put(&mut out, k, &list);
            }
            "cacheScope" if private => {}
            k => put(&mut out, k, v.get()),
        }
    }
    if private {
        put(&mut out, "cacheScope", r#""private""#);
    }
    out.push_str("}}");
    Ok(Some(out.into_bytes()))
}

/// An object's members in order, values raw.
struct RawMembers<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> RawMembers<'a> {
    /// The members, when no name appears twice and none of `watched` appears in another
    /// spelling ([`folds_to`]).
    fn unique(self, watched: &[&str]) -> Result<Vec<(Cow<'a, str>, &'a RawValue)>, Unfilterable> {
        let members = self.0;
        let mut seen = std::collections::HashSet::with_capacity(members.len());
        if members.iter().all(|(k, _)| seen.insert(k.as_ref()))
            && !members
                .iter()
                .any(|(k, _)| watched.iter().any(|w| folds_to(k, w)))
        {
            Ok(members)
        } else {
            Err(Unfilterable::RepeatedMember)
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawMembers<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawMembers<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    let v: &'de RawValue = map.next_value()?;
                    members.push((k, v));
                }
                Ok(RawMembers(members))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{AuthorizationConfig, RuleConfig};
    use crate::{Principal, Scope, Subject};

    fn rules(toml_text: &str) -> Policy {
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct File {
            authorization: AuthorizationConfig,
            policy: Vec<RuleConfig>,
        }
        let f: File = toml::from_str(toml_text).unwrap();
        Policy::compile(&f.authorization, &f.policy).unwrap()
    }

    const PAGE: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"get_user","annotations":{"readOnlyHint":true},"inputSchema":{"type":"object"}},{"name":"delete_user","annotations":{"destructiveHint":true}},{"name":"ledger","_meta":{"tags":["finance"]}}],"nextCursor":"page-2","_meta":{"x":1}}}"#;

    #[test]
    fn items_the_caller_may_not_see_are_removed_and_the_rest_is_kept_byte_for_byte() {
        let p = rules(
            "[[policy]]\nmatch = [\"delete_*\"]\nscopes_all = [\"admin\"]\n[[policy]]\ntags = [\"finance\"]\nscopes_all = [\"finance\"]",
        );
        let who = Principal::builder(Subject::new("a"))
            .scopes([Scope::new("mcp")])
            .build();
        let caller = Caller {
            principal: &who,
            method: "tools/list",
        };
        let mut learnt = Vec::new();
        let out = filter_response(
            &p,
            &Trim::default(),
            Some(&caller),
            Kind::Tool,
            PAGE.as_bytes(),
            false,
            |n, f| learnt.push((n.to_owned(), f)),
        )
        .unwrap()
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"get_user","annotations":{"readOnlyHint":true},"inputSchema":{"type":"object"}}],"nextCursor":"page-2","_meta":{"x":1}}}"#
        );
        assert_eq!(learnt.len(), 3);
        assert_eq!(learnt[0].1.annotations.read_only, Some(true));
        assert_eq!(learnt[2].1.tags, ["finance"]);
    }

    #[test]
    fn private_results_are_marked() {
        let p = Policy::allow_all();
        let out = filter_response(
            &p,
            &Trim::default(),
            None,
            Kind::Tool,
            PAGE.as_bytes(),
            true,
            |_, _| {},
        )
        .unwrap()
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["cacheScope"], "private");
        assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn trimming_removes_for_everyone() {
        let expose = KindPatterns {
            tools: Some(vec!["get_*".into(), "ledger".into()]),
            ..Default::default()
        };
        let hide = KindPatterns {
            tools: Some(vec!["ledger".into()]),
            ..Default::default()
        };
        let trim = Trim::new("upstream", &expose, &hide).unwrap();
        assert!(trim.visible(Kind::Tool, "get_user"));
        assert!(!trim.visible(Kind::Tool, "ledger"));
        assert!(!trim.visible(Kind::Tool, "delete_user"));
        assert!(trim.visible(Kind::Prompt, "anything"));
        let out = filter_response(
            &Policy::allow_all(),
            &trim,
            None,
            Kind::Tool,
            PAGE.as_bytes(),
            false,
            |_, _| {},
        )
        .unwrap()
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 1);
        let bad = KindPatterns {
            prompts: Some(vec!["[".into()]),
            ..Default::default()
        };
        let e = Trim::new("upstream", &bad, &KindPatterns::default()).unwrap_err();
        assert_eq!(e[0].key, "upstream.expose.prompts");
    }

    #[test]
    fn error_answers_are_left_alone() {
        let p = Policy::allow_all();
        let t = Trim::default();
        assert_eq!(
            filter_response(
                &p,
                &t,
                None,
                Kind::Tool,
                br#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x"}}"#,
                true,
                |_, _| {}
            ),
            Ok(None)
        );
    }

    #[test]
    fn answers_that_cannot_be_read_for_certain_are_refused() {
        let p = Policy::allow_all();
        let t = Trim::default();
        let f =
            |body: &[u8], kind: Kind| filter_response(&p, &t, None, kind, body, true, |_, _| {});
        assert_eq!(f(b"not json", Kind::Tool), Err(Unfilterable::NotAResponse));
        assert_eq!(f(PAGE.as_bytes(), Kind::Prompt), Err(Unfilterable::NoList));
        assert_eq!(
            f(
                br#"{"jsonrpc":"2.0","id":1,"result":{"tools":{}}}"#,
                Kind::Tool
            ),
            Err(Unfilterable::NoList)
        );
        assert_eq!(
            f(
                br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"tools":[{"name":"x"}]}}"#,
                Kind::Tool
            ),
            Err(Unfilterable::RepeatedMember)
        );
        assert_eq!(
            f(
                br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"result":{"tools":[{"name":"x"}]}}"#,
                Kind::Tool
            ),
            Err(Unfilterable::RepeatedMember)
        );
        assert_eq!(
            f(
                br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"error":{}}"#,
                Kind::Tool
            ),
            Err(Unfilterable::NotAResponse)
        );
    }

    #[test]
    fn members_in_another_spelling_are_not_passed_on() {
        let p = rules("[[policy]]\neffect = \"deny\"\nmatch = [\"secret*\"]");
        let who = Principal::builder(Subject::new("a")).build();
        let caller = Caller {
            principal: &who,
            method: "tools/list",
        };
        let f = |body: &[u8]| {
            filter_response(
                &p,
                &Trim::default(),
                Some(&caller),
                Kind::Tool,
                body,
                false,
                |_, _| {},
            )
        };
        // A second list under another spelling of its name: refused.
        assert_eq!(
            f(br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"Tools":[{"name":"secret"}]}}"#),
            Err(Unfilterable::RepeatedMember)
        );
        assert_eq!(
            f(br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"Result":{"tools":[{"name":"secret"}]}}"#),
            Err(Unfilterable::RepeatedMember)
        );
        // An item with two names: left out.
        let out = f(br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo","Name":"secret"},{"name":"ok"}]}}"#)
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 1);
        assert!(
            folds_to("Name", "name")
                && folds_to("paramſ", "params")
                && folds_to("\u{212A}ind", "kind")
                && folds_to("ur\u{131}", "uri")
                && folds_to("\u{130}d", "id")
                && folds_to("na\u{130}e", "naie")
        );
        assert!(
            !folds_to("name", "name") && !folds_to("names", "name") && !folds_to("nämе", "name")
        );
    }

    #[test]
    fn resources_are_matched_in_their_normal_spelling() {
        let p = rules(
            "[[policy]]\neffect = \"deny\"\nkind = [\"resource\"]\nmatch = [\"file:///private/*\"]",
        );
        let who = Principal::builder(Subject::new("a")).build();
        let caller = Caller {
            principal: &who,
            method: "resources/list",
        };
        let page = br#"{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"FILE:///public/../private/a"},{"uri":"file:///%70rivate/b"},{"uri":"file:///private//c#x"},{"uri":"file:///a%2fb"},{"uri":"file:///public/ok"}]}}"#;
        let out = filter_response(
            &p,
            &Trim::default(),
            Some(&caller),
            Kind::Resource,
            page,
            false,
            |_, _| {},
        )
        .unwrap()
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let uris: Vec<&str> = v["result"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["uri"].as_str().unwrap())
            .collect();
        // Listed as the upstream spelt them; the ambiguous one is left out.
        assert_eq!(uris, ["file:///public/ok"]);
    }
}
