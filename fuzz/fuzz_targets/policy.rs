//! Policy decisions on arbitrary messages: never a panic, and the decision does not depend on
//! the order of the rules.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcpgate::proxy::message::Message;
use mcpgate::proxy::target::aim;
use mcpgate_guard::policy::lists::Trim;
use mcpgate_guard::policy::{AuthorizationConfig, Caller, Policy, RuleConfig, Target, Verdict};
use mcpgate_guard::{Principal, Scope, Subject};

const RULES: &str = r#"[
  {"name":"a","match":["delete_*"],"scopes_all":["admin"],"on_deny":"challenge"},
  {"name":"b","annotations":{"destructiveHint":true},"scopes_all":["write"]},
  {"name":"c","effect":"deny","match":["secret*"],"on_deny":"challenge"},
  {"name":"d","kind":["resource"],"match":["file:///private/*"],"when":"subject == 'admin'"},
  {"name":"e","effect":"deny","kind":["prompt"],"when":"method == 'prompts/get' && target.name.startsWith('x')"}
]"#;

fn policies() -> &'static (Policy, Policy) {
    static P: OnceLock<(Policy, Policy)> = OnceLock::new();
    P.get_or_init(|| {
        let rules: Vec<RuleConfig> = serde_json::from_str(RULES).unwrap();
        let mut reversed = rules.clone();
        reversed.reverse();
        let a = AuthorizationConfig::default();
        (
            Policy::compile(&a, &rules).unwrap(),
            Policy::compile(&a, &reversed).unwrap(),
        )
    })
}

fn sorted(v: Verdict) -> Verdict {
    match v {
        Verdict::Challenge { mut scopes } => {
            scopes.sort_by(|x, y| x.as_str().cmp(y.as_str()));
            Verdict::Challenge { scopes }
        }
        other => other,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::parse(data) else {
        return;
    };
    let Ok(Some(a)) = aim(&message) else {
        return;
    };
    let who = Principal::builder(Subject::new("user"))
        .scopes([Scope::new("read")])
        .build();
    let caller = Caller {
        principal: &who,
        method: message.method.as_deref().unwrap_or_default(),
    };
    let target = Target::new(a.kind, &a.name);
    let (p, q) = policies();
    let trim = Trim::default();
    let x = p.decide_call(&trim, &caller, &target);
    let y = q.decide_call(&trim, &caller, &target);
    assert_eq!(sorted(x.verdict.clone()), sorted(y.verdict));
    let (e, _) = p.explain_call(&trim, &caller, &target);
    assert_eq!(e, x);
});
