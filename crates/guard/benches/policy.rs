//! Policy cost: one decision against 100 rules (globs, annotations, scopes and CEL
//! expressions) for one principal, and filtering a 500-tool `tools/list` answer.
//!
//! `cargo bench -p mcpgate-guard --bench policy`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mcpgate_guard::policy::lists::{Trim, filter_response};
use mcpgate_guard::policy::{
    Annotations, AuthorizationConfig, Caller, Effect, Kind, Policy, RuleConfig, Target,
};
use mcpgate_guard::{Principal, Scope, Subject};
use serde_json::json;

/// 100 rules: 40 name globs with scopes, 30 annotation rules, 20 CEL expressions over claims
/// and target, 10 deny rules; the target is selected by a handful, as in a real policy.
fn rules() -> Vec<RuleConfig> {
    let mut rules = Vec::new();
    for i in 0..40 {
        rules.push(RuleConfig {
            name: Some(format!("glob {i}")),
            matches: vec![format!("service{i}_*"), format!("*_{i}_admin")],
            scopes_all: vec![format!("scope{i}")],
            ..Default::default()
        });
    }
    for i in 0..30 {
        let mut annotations = std::collections::BTreeMap::new();
        annotations.insert(
            ["readOnlyHint", "destructiveHint", "idempotentHint"][i % 3].to_owned(),
            i % 2 == 0,
        );
        rules.push(RuleConfig {
            name: Some(format!("annotations {i}")),
            matches: vec![format!("tool{i}*")],
            annotations,
            scopes_any: vec!["read".into(), format!("extra{i}")],
            ..Default::default()
        });
    }
    for i in 0..20 {
        rules.push(RuleConfig {
            name: Some(format!("expression {i}")),
            kind: vec![Kind::Tool],
            matches: vec![if i < 3 { "get_*".into() } else { format!("cel{i}_*") }],
            when: Some(format!(
                "'staff' in claims.realm_access.roles && claims.department != 'dept{i}' && target.name.startsWith('get_')"
            )),
            ..Default::default()
        });
    }
    for i in 0..10 {
        rules.push(RuleConfig {
            name: Some(format!("deny {i}")),
            effect: Effect::Deny,
            matches: vec![format!("forbidden{i}_*")],
            ..Default::default()
        });
    }
    rules
}

fn principal() -> Principal {
    Principal::builder(Subject::new("alice"))
        .scopes(["mcp", "read", "scope7"].map(Scope::new))
        .claims(
            json!({"sub": "alice", "department": "finance", "realm_access": {"roles": ["staff", "user"]}})
                .as_object()
                .cloned()
                .unwrap(),
        )
        .build()
}

fn tools_list(n: usize) -> Vec<u8> {
    let tools: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            json!({
                "name": if i % 5 == 0 { format!("forbidden{}_x", i % 10) } else { format!("get_item_{i}") },
                "description": "Returns an item from the catalogue by its identifier, with its history.",
                "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
                "annotations": {"readOnlyHint": true, "destructiveHint": false}
            })
        })
        .collect();
    serde_json::to_vec(
        &json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools, "nextCursor": "2"}}),
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let policy = Policy::compile(&AuthorizationConfig::default(), &rules()).unwrap();
    assert_eq!(policy.len(), 100);
    let who = principal();
    let caller = Caller {
        principal: &who,
        method: "tools/call",
    };
    let annotations = Annotations {
        read_only: Some(true),
        destructive: Some(false),
        ..Default::default()
    };
    let target = Target {
        kind: Kind::Tool,
        name: "get_invoice",
        annotations: Some(&annotations),
        tags: &[],
        known: true,
    };
    assert!(policy.decide(&caller, &target).allowed());
    c.bench_function(
        "decide, 100 rules (3 target expressions, repeated target: remembered)",
        |b| b.iter(|| black_box(policy.decide(black_box(&caller), black_box(&target)))),
    );
    c.bench_function(
        "decide, 100 rules (3 target expressions, first decision of a principal)",
        |b| {
            b.iter_batched(
                principal,
                |fresh| {
                    let caller = Caller {
                        principal: &fresh,
                        method: "tools/call",
                    };
                    black_box(policy.decide(&caller, black_box(&target)).allowed())
                },
                criterion::BatchSize::SmallInput,
            )
        },
    );
    let plain = Target {
        kind: Kind::Tool,
        name: "service7_restart",
        annotations: Some(&annotations),
        tags: &[],
        known: true,
    };
    c.bench_function("decide, 100 rules (no expression runs)", |b| {
        b.iter(|| black_box(policy.decide(black_box(&caller), black_box(&plain))))
    });

    // Expressions that read only the principal are evaluated once per principal.
    let claims_rules: Vec<RuleConfig> = (0..100)
        .map(|i| RuleConfig {
            name: Some(format!("r{i}")),
            matches: vec![if i < 3 {
                "get_*".into()
            } else {
                format!("svc{i}_*")
            }],
            when: Some(format!(
                "'staff' in claims.realm_access.roles && claims.department != 'dept{i}'"
            )),
            ..Default::default()
        })
        .collect();
    let claims_policy = Policy::compile(&AuthorizationConfig::default(), &claims_rules).unwrap();
    assert!(claims_policy.decide(&caller, &target).allowed());
    c.bench_function(
        "decide, 100 rules (3 claims-only expressions, remembered)",
        |b| b.iter(|| black_box(claims_policy.decide(black_box(&caller), black_box(&target)))),
    );

    let page = tools_list(500);
    let trim = Trim::default();
    let list_caller = Caller {
        principal: &who,
        method: "tools/list",
    };
    c.bench_function("filter a 500-tool tools/list, 100 rules", |b| {
        b.iter(|| {
            black_box(filter_response(
                &policy,
                &trim,
                Some(&list_caller),
                Kind::Tool,
                black_box(&page),
                false,
                |_, _| {},
            ))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
