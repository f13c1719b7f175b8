//! List filtering on arbitrary answers: never a panic, and a filtered page never contains a
//! tool the policy hides.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcpgate_guard::policy::lists::{Trim, filter_response};
use mcpgate_guard::policy::{AuthorizationConfig, Caller, Effect, Kind, Policy, RuleConfig};
use mcpgate_guard::{Principal, Subject};

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        let rule = RuleConfig {
            effect: Effect::Deny,
            matches: vec!["secret*".into(), "file:///private/*".into()],
            ..RuleConfig::default()
        };
        Policy::compile(&AuthorizationConfig::default(), &[rule]).expect("policy")
    })
}

fuzz_target!(|data: &[u8]| {
    let who = Principal::builder(Subject::new("fuzz")).build();
    let caller = Caller {
        principal: &who,
        method: "tools/list",
    };
    for kind in [Kind::Tool, Kind::Resource] {
        let Ok(Some(page)) = filter_response(
            policy(),
            &Trim::default(),
            Some(&caller),
            kind,
            data,
            false,
            |_, _| {},
        ) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_slice(&page).expect("a filtered page is JSON");
        let field = if kind == Kind::Tool {
            "tools"
        } else {
            "resources"
        };
        for item in v["result"][field].as_array().expect("a list") {
            if kind == Kind::Tool {
                let name = item["name"].as_str().expect("kept items have names");
                assert!(!name.starts_with("secret"), "hidden tool kept: {name}");
            } else {
                let uri = item["uri"].as_str().expect("kept items have URIs");
                let normal = mcpgate_guard::uri::normalize(uri).expect("kept URIs are decidable");
                assert!(
                    !normal.starts_with("file:///private/"),
                    "hidden resource kept: {uri}"
                );
            }
        }
    }
});
