//! Invariants of the gateway's reading of client messages, on generated messages (proptest):
//! a governed method is never let through without a decision, and the target decided on is the
//! one any JSON reader of the forwarded body finds.

use mcpgate::proxy::message::Message;
use mcpgate::proxy::target::{aim, governs, respell};
use proptest::prelude::*;

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#""echo""#.to_owned()),
        Just(r#""secret""#.to_owned()),
        Just(r#""FILE:///a/../b""#.to_owned()),
        Just(r#""file:///a%2fb""#.to_owned()),
        Just("5".to_owned()),
        Just("null".to_owned()),
        Just(r#"["x"]"#.to_owned()),
        Just(r#"{"type":"ref/prompt","name":"p"}"#.to_owned()),
        Just(r#"{"type":"ref/resource","uri":"x://h/{a}"}"#.to_owned()),
        Just(r#"{"type":"ref/prompt","name":"p","name":"q"}"#.to_owned()),
        Just("{}".to_owned()),
    ]
}

fn message() -> impl Strategy<Value = String> {
    let method = prop_oneof![
        Just("tools/call"),
        Just("prompts/get"),
        Just("resources/read"),
        Just("resources/subscribe"),
        Just("completion/complete"),
        Just("tools/list"),
    ];
    let id = prop_oneof![
        Just(None),
        Just(Some("1")),
        Just(Some("null")),
        Just(Some(r#""a""#)),
        Just(Some("1.5")),
    ];
    let member = (
        prop_oneof![
            Just("name"),
            Just("uri"),
            Just("ref"),
            Just("arguments"),
            Just("other")
        ],
        value(),
    );
    let params = prop_oneof![
        Just(None),
        Just(Some("[1]".to_owned())),
        proptest::collection::vec(member, 0..5).prop_map(|m| {
            let members: Vec<String> = m.iter().map(|(k, v)| format!(r#""{k}":{v}"#)).collect();
            Some(format!("{{{}}}", members.join(",")))
        }),
    ];
    (method, id, params).prop_map(|(method, id, params)| {
        let mut out = format!(r#"{{"jsonrpc":"2.0","method":"{method}""#);
        if let Some(id) = id {
            out.push_str(&format!(r#","id":{id}"#));
        }
        if let Some(p) = params {
            out.push_str(&format!(r#","params":{p}"#));
        }
        out.push('}');
        out
    })
}

proptest! {
    #[test]
    fn a_governed_method_is_never_forwarded_undecided(body in message()) {
        let Ok(m) = Message::parse(body.as_bytes()) else { return Ok(()); };
        let governed = m.method.as_deref().is_some_and(governs);
        match aim(&m) {
            Ok(None) => prop_assert!(!governed, "{body}"),
            Err(_) => prop_assert!(governed),
            Ok(Some(a)) => {
                prop_assert!(governed);
                // What goes upstream names exactly the decided target, for any JSON reader.
                let forwarded = if a.respelt { respell(body.as_bytes(), &a).unwrap().to_vec() } else { body.clone().into_bytes() };
                let v: serde_json::Value = serde_json::from_slice(&forwarded).unwrap();
                let p = &v["params"];
                let read = match m.method.as_deref().unwrap_or_default() {
                    "tools/call" | "prompts/get" => p["name"].as_str(),
                    "completion/complete" => p["ref"]["name"].as_str().or(p["ref"]["uri"].as_str()),
                    _ => p["uri"].as_str(),
                };
                prop_assert_eq!(read, Some(a.name.as_str()), "{}", body);
            }
        }
    }
}
