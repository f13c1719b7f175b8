//! Invariants that must hold for every input, checked on generated ones (proptest): normal
//! URIs are stable and decided alike under every spelling, a filtered list never holds what
//! the policy hides, and a bearer token is read from a header as the plain rules say.

use mcpgate_guard::challenge::Denial;
use mcpgate_guard::policy::lists::{Trim, filter_response};
use mcpgate_guard::policy::{AuthorizationConfig, Caller, Effect, Kind, Policy, RuleConfig};
use mcpgate_guard::uri::{normalize, normalize_template};
use mcpgate_guard::{Principal, Subject, bearer_token};
use proptest::prelude::*;

/// URI-ish text: schemes, hosts, segments, dots, escapes, slashes, fragments.
fn uri_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2F".to_owned()),
        Just("%70".to_owned()),
        Just("%C3%A9".to_owned()),
        Just("é".to_owned()),
        Just("#".to_owned()),
        Just("?".to_owned()),
        Just("{x}".to_owned()),
        Just(" ".to_owned()),
        "[a-zA-Z0-9_~-]{1,6}",
    ];
    (
        prop_oneof![
            Just("file:"),
            Just("FILE:"),
            Just("config:"),
            Just("x+y.z:"),
            Just("")
        ],
        prop_oneof![Just(""), Just("//"), Just("//Host"), Just("//u@H:80")],
        proptest::collection::vec(piece, 0..12),
    )
        .prop_map(|(s, a, p)| format!("{s}{a}{}", p.concat()))
}

fn deny(patterns: &[&str]) -> Policy {
    let rule = RuleConfig {
        effect: Effect::Deny,
        matches: patterns.iter().map(|p| (*p).to_owned()).collect(),
        ..RuleConfig::default()
    };
    Policy::compile(&AuthorizationConfig::default(), &[rule]).unwrap()
}

/// How a bearer token is read from one `Authorization` value, written as plainly as possible:
/// visible ASCII, spaces and tabs only; the scheme `Bearer` in any case; spaces around the
/// token dropped; none left inside it, and no tab.
fn plain_bearer(value: &[u8]) -> Result<String, String> {
    let Ok(text) = std::str::from_utf8(value) else {
        return Err("InvalidRequest(\"Malformed Authorization header\")".into());
    };
    if text
        .chars()
        .any(|c| !(c == '\t' || (' '..='~').contains(&c)))
    {
        return Err("InvalidRequest(\"Malformed Authorization header\")".into());
    }
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("MissingToken".into());
    }
    let token = rest.trim_matches(' ');
    if token.is_empty() {
        return Err("InvalidRequest(\"Empty bearer token\")".into());
    }
    if token.contains(' ') || token.contains('\t') {
        return Err("InvalidRequest(\"Malformed bearer token\")".into());
    }
    Ok(token.to_owned())
}

/// Header values around a token: schemes in several cases, spaces and tabs anywhere, control
/// and non-ASCII bytes, and tokens long enough to cross the 16-byte runs the reader checks.
fn authorization_value() -> impl Strategy<Value = Vec<u8>> {
    let scheme = prop_oneof![
        Just(b"Bearer".to_vec()),
        Just(b"bEaReR".to_vec()),
        Just(b"Basic".to_vec()),
        Just(b"Bearer\t".to_vec()),
        Just(Vec::new()),
    ];
    let spaces = proptest::collection::vec(prop_oneof![Just(b' '), Just(b'\t')], 0..3);
    let token = proptest::collection::vec(
        prop_oneof![
            8 => proptest::num::u8::ANY.prop_map(|b| b'a' + b % 26),
            1 => Just(b' '),
            1 => Just(b'\t'),
            1 => Just(b'.'),
            1 => proptest::num::u8::ANY,
        ],
        0..90,
    );
    (
        scheme,
        spaces,
        token,
        proptest::collection::vec(Just(b' '), 0..3),
    )
        .prop_map(|(s, sp, t, end)| [s, sp, t, end].concat())
}

proptest! {
    #[test]
    fn a_bearer_token_is_read_as_the_plain_rules_say(value in authorization_value()) {
        let Ok(header) = http::HeaderValue::from_bytes(&value) else {
            return Ok(()); // not a header value at all (a line break): never reaches the reader
        };
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, header);
        let read = bearer_token(&headers, &"/mcp".parse().unwrap())
            .map(str::to_owned)
            .map_err(|d| match d {
                Denial::MissingToken => "MissingToken".to_owned(),
                Denial::InvalidRequest(why) => format!("InvalidRequest({why:?})"),
                other => format!("{other:?}"),
            });
        prop_assert_eq!(read, plain_bearer(&value));
    }

    #[test]
    fn normal_uris_are_idempotent(text in uri_text()) {
        if let Ok(once) = normalize(&text) {
            prop_assert_eq!(normalize(&once).unwrap(), once.clone());
        }
        if let Ok(once) = normalize_template(&text) {
            prop_assert_eq!(normalize_template(&once).unwrap(), once.clone());
        }
    }

    #[test]
    fn every_spelling_of_a_private_uri_is_decided_as_private(
        segment in "[a-z]{1,8}",
        upper in any::<bool>(),
        dots in any::<bool>(),
        escape in any::<bool>(),
        slashes in any::<bool>(),
        fragment in any::<bool>(),
    ) {
        let scheme = if upper { "FILE" } else { "file" };
        let mut path = String::from("/private/");
        if escape {
            path = "/%70rivate/".into();
        }
        if dots {
            path = format!("/public/..{path}");
        }
        if slashes {
            path = path.replace('/', "//");
        }
        let mut uri = format!("{scheme}://{path}{segment}");
        if fragment {
            uri.push_str("#frag");
        }
        let normal = normalize(&uri).unwrap();
        prop_assert_eq!(normal.as_ref(), format!("file:///private/{segment}"));
    }

    #[test]
    fn a_filtered_list_never_holds_a_hidden_item(
        names in proptest::collection::vec("(secret_)?[a-z]{1,6}", 0..20),
        padding in "[ \n]{0,3}",
    ) {
        let policy = deny(&["secret_*"]);
        let who = Principal::builder(Subject::new("p")).build();
        let caller = Caller { principal: &who, method: "tools/list" };
        let items: Vec<String> = names.iter().map(|n| format!(r#"{{"name":{n:?}}}"#)).collect();
        let page = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{padding}{{"tools":[{}],"nextCursor":"c"}}}}"#, items.join(","));
        let out = filter_response(&policy, &Trim::default(), Some(&caller), Kind::Tool, page.as_bytes(), false, |_, _| {})
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let kept: Vec<&str> = v["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        prop_assert!(kept.iter().all(|n| !n.starts_with("secret_")));
        let visible = names.iter().filter(|n| !n.starts_with("secret_")).count();
        prop_assert_eq!(kept.len(), visible);
        prop_assert_eq!(&v["result"]["nextCursor"], "c");
    }
}
