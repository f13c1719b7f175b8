//! JSON-RPC envelope reading and target extraction on arbitrary bodies: never a panic, a
//! governed method never passes without a target, and the target is what a JSON reader sees.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpgate::proxy::message::{MAX_DEPTH, Message, nests_deeper_than};
use mcpgate::proxy::target::{aim, governs, respell};

fuzz_target!(|data: &[u8]| {
    if nests_deeper_than(data, MAX_DEPTH) {
        return;
    }
    let Ok(message) = Message::parse(data) else {
        return;
    };
    let governed = message.method.as_deref().is_some_and(governs);
    match aim(&message) {
        Ok(None) => assert!(!governed),
        Ok(Some(a)) => {
            assert!(governed);
            // The target is the one a JSON reader finds (members are unique, so first and
            // last agree).
            // (A lone surrogate escape in a member the gateway skips is JSON's grammar but not
            // serde_json's Value: nothing to compare against then.)
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
                return;
            };
            let p = &v["params"];
            let read = match message.method.as_deref().unwrap_or_default() {
                "tools/call" | "prompts/get" => p["name"].as_str(),
                "completion/complete" => p["ref"]["name"].as_str().or(p["ref"]["uri"].as_str()),
                _ => p["uri"].as_str(),
            }
            .map(str::to_owned);
            let read = read.expect("a target");
            if a.respelt {
                let body = respell(data, &a).expect("respelt");
                let again = Message::parse(&body).expect("still a message");
                let b = aim(&again)
                    .expect("still decidable")
                    .expect("still governed");
                assert_eq!(b.name, a.name);
                assert!(!b.respelt, "normal form is stable");
            } else {
                assert_eq!(read, a.name);
            }
        }
        // Refused: a governed method that cannot be decided, or another spelling of one.
        Err(_) => {}
    }
});
