use serde_json::json;

use super::*;
use crate::{Scope, Subject};

fn principal(scopes: &[&str], claims: serde_json::Value) -> Principal {
    Principal::builder(Subject::new("alice"))
        .scopes(scopes.iter().map(|s| Scope::new(*s)))
        .claims(claims.as_object().cloned().unwrap_or_default())
        .build()
}

fn policy(toml_text: &str) -> Result<Policy, Vec<PolicyError>> {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct File {
        authorization: AuthorizationConfig,
        policy: Vec<RuleConfig>,
    }
    let file: File = toml::from_str(toml_text).expect("test TOML parses");
    Policy::compile(&file.authorization, &file.policy)
}

fn tool<'a>(name: &'a str, annotations: Option<&'a Annotations>) -> Target<'a> {
    Target {
        kind: Kind::Tool,
        name,
        annotations,
        tags: &[],
        known: annotations.is_some(),
    }
}

fn decide(p: &Policy, who: &Principal, target: &Target<'_>) -> Decision {
    p.decide(
        &Caller {
            principal: who,
            method: "tools/call",
        },
        target,
    )
}

const READ_ONLY: Annotations = Annotations {
    read_only: Some(true),
    destructive: Some(false),
    idempotent: None,
    open_world: None,
};
const DESTRUCTIVE: Annotations = Annotations {
    read_only: Some(false),
    destructive: Some(true),
    idempotent: None,
    open_world: None,
};

#[test]
fn no_rules_allow_everything_and_default_deny_denies_everything() {
    let p = policy("").unwrap();
    let alice = principal(&[], json!({}));
    assert!(decide(&p, &alice, &tool("x", None)).allowed());
    let p = policy("[authorization]\ndefault = \"deny\"").unwrap();
    let d = decide(&p, &alice, &tool("x", None));
    assert!(!d.allowed());
    assert_eq!(d.rule, "default");
}

#[test]
fn name_globs_select_by_name() {
    let p = policy(
        r#"
[[policy]]
name = "delete needs admin"
match = ["delete_*"]
scopes_all = ["admin"]
"#,
    )
    .unwrap();
    let user = principal(&["mcp"], json!({}));
    let admin = principal(&["admin"], json!({}));
    assert!(!decide(&p, &user, &tool("delete_user", None)).allowed());
    assert!(decide(&p, &admin, &tool("delete_user", None)).allowed());
    // Not selected: the default (allow) decides.
    let d = decide(&p, &user, &tool("list_users", None));
    assert!(d.allowed());
    assert_eq!(d.rule, "default");
}

#[test]
fn deny_only_rule_sets_deny_only_what_they_select() {
    let p = policy(
        r#"
[[policy]]
effect = "deny"
match = ["drop_*", "shutdown"]
"#,
    )
    .unwrap();
    let anyone = principal(&["admin"], json!({}));
    assert!(!decide(&p, &anyone, &tool("drop_table", None)).allowed());
    assert!(!decide(&p, &anyone, &tool("shutdown", None)).allowed());
    assert!(decide(&p, &anyone, &tool("select", None)).allowed());
    assert!(!decide(&p, &anyone, &Target::new(Kind::Prompt, "drop_x")).allowed());
}

#[test]
fn kinds_restrict_what_a_rule_selects() {
    let p = policy(
        r#"
[[policy]]
kind = ["resource"]
match = ["ledger://*"]
when = "claims.department == 'finance'"
"#,
    )
    .unwrap();
    let finance = principal(&[], json!({"department": "finance"}));
    let sales = principal(&[], json!({"department": "sales"}));
    let ledger = Target::new(Kind::Resource, "ledger://2026/q3");
    assert!(decide(&p, &finance, &ledger).allowed());
    assert!(!decide(&p, &sales, &ledger).allowed());
    // A tool named like the pattern is not a resource.
    assert!(decide(&p, &sales, &tool("ledger://x", None)).allowed());
}

#[test]
fn annotations_select_tools_with_mcp_defaults() {
    let p = policy(
        r#"
[[policy]]
name = "destructive needs write"
annotations = { destructiveHint = true }
scopes_all = ["write"]

[[policy]]
name = "read-only for readers"
annotations = { readOnlyHint = true }
scopes_any = ["read", "write"]
"#,
    )
    .unwrap();
    let reader = principal(&["read"], json!({}));
    let writer = principal(&["write"], json!({}));
    assert!(decide(&p, &reader, &tool("get", Some(&READ_ONLY))).allowed());
    assert!(!decide(&p, &reader, &tool("rm", Some(&DESTRUCTIVE))).allowed());
    assert!(decide(&p, &writer, &tool("rm", Some(&DESTRUCTIVE))).allowed());
    // No annotations declared: MCP's defaults say destructive.
    let none = Annotations::default();
    assert!(!decide(&p, &reader, &tool("mystery", Some(&none))).allowed());
}

#[test]
fn unknown_annotations_never_bypass_annotation_rules() {
    let p = policy(
        r#"
[authorization]
default = "deny"

[[policy]]
annotations = { readOnlyHint = true }
scopes_all = ["read"]

[[policy]]
annotations = { destructiveHint = true }
scopes_all = ["admin"]
"#,
    )
    .unwrap();
    let reader = principal(&["read"], json!({}));
    // Not known yet: the read-only rule may select it but does not allow on its own, the
    // destructive rule's requirement applies.
    let d = decide(&p, &reader, &tool("unknown", None));
    assert!(!d.allowed(), "{d:?}");
    let admin = principal(&["read", "admin"], json!({}));
    // Every requirement met, but nothing allows it for sure: the default (deny) decides.
    assert!(!decide(&p, &admin, &tool("unknown", None)).allowed());
    assert!(decide(&p, &admin, &tool("known", Some(&READ_ONLY))).allowed());
}

#[test]
fn tags_select_on_meta_tags() {
    let p = policy(
        r#"
[[policy]]
tags = ["finance"]
scopes_all = ["finance"]
"#,
    )
    .unwrap();
    let tags = vec!["finance".to_owned(), "beta".to_owned()];
    let tagged = Target::listed(Kind::Tool, "post_entry", None, &tags);
    assert!(!decide(&p, &principal(&[], json!({})), &tagged).allowed());
    assert!(decide(&p, &principal(&["finance"], json!({})), &tagged).allowed());
    let untagged = Target::listed(Kind::Tool, "other", None, &[]);
    assert!(decide(&p, &principal(&[], json!({})), &untagged).allowed());
    // Tags not known yet: the tag rule's requirement applies.
    assert!(
        !decide(
            &p,
            &principal(&[], json!({})),
            &Target::new(Kind::Tool, "post_entry")
        )
        .allowed()
    );
}

#[test]
fn requirements_of_every_selecting_allow_rule_add_up() {
    let p = policy(
        r#"
[[policy]]
match = ["delete_*"]
scopes_all = ["admin"]

[[policy]]
annotations = { destructiveHint = true }
scopes_all = ["write"]
"#,
    )
    .unwrap();
    let admin_only = principal(&["admin"], json!({}));
    let both = principal(&["admin", "write"], json!({}));
    let d = decide(&p, &admin_only, &tool("delete_x", Some(&DESTRUCTIVE)));
    assert!(!d.allowed());
    assert!(decide(&p, &both, &tool("delete_x", Some(&DESTRUCTIVE))).allowed());
}

#[test]
fn challenge_names_every_scope_the_operation_needs_but_never_offline_access() {
    let p = policy(
        r#"
[authorization]
on_deny = "challenge"
global = { scopes_all = ["mcp"] }

[[policy]]
match = ["delete_*"]
scopes_all = ["admin", "offline_access"]

[[policy]]
annotations = { destructiveHint = true }
scopes_any = ["write", "owner"]
"#,
    )
    .unwrap();
    let user = principal(&["mcp"], json!({}));
    let d = decide(&p, &user, &tool("delete_x", Some(&DESTRUCTIVE)));
    match d.verdict {
        Verdict::Deny { on_deny, scopes } => {
            assert_eq!(on_deny, OnDeny::Challenge);
            assert_eq!(scopes, ["admin", "write", "mcp"]);
        }
        Verdict::Allow => panic!("should be denied"),
    }
}

#[test]
fn scope_hierarchies_are_honoured_transitively() {
    let p = policy(
        r#"
[authorization]
scope_hierarchy = { admin = ["write"], write = ["read"] }

[[policy]]
match = ["get_*"]
scopes_all = ["read"]
"#,
    )
    .unwrap();
    assert!(decide(&p, &principal(&["admin"], json!({})), &tool("get_x", None)).allowed());
    assert!(decide(&p, &principal(&["write"], json!({})), &tool("get_x", None)).allowed());
    assert!(!decide(&p, &principal(&["other"], json!({})), &tool("get_x", None)).allowed());
}

#[test]
fn expressions_see_nested_claims_scopes_method_and_target() {
    let p = policy(
        r#"
[[policy]]
match = ["admin_*"]
when = "'admin' in claims.realm_access.roles && method == 'tools/call' && target.name.startsWith('admin_') && !target.annotations.readOnlyHint && 'mcp' in scopes && subject == 'alice'"
"#,
    )
    .unwrap();
    let keycloak_admin = principal(
        &["mcp"],
        json!({"realm_access": {"roles": ["admin", "user"]}}),
    );
    let keycloak_user = principal(&["mcp"], json!({"realm_access": {"roles": ["user"]}}));
    assert!(
        decide(
            &p,
            &keycloak_admin,
            &tool("admin_reset", Some(&DESTRUCTIVE))
        )
        .allowed()
    );
    assert!(!decide(&p, &keycloak_user, &tool("admin_reset", Some(&DESTRUCTIVE))).allowed());
}

#[test]
fn failing_expressions_never_grant() {
    // The claim is missing: an error. In an allow rule it counts as false...
    let p = policy("[[policy]]\nwhen = \"claims.department == 'finance'\"").unwrap();
    let no_claim = principal(&[], json!({}));
    assert!(!decide(&p, &no_claim, &tool("x", None)).allowed());
    // ... and in a deny rule as true.
    let p = policy("[[policy]]\neffect = \"deny\"\nwhen = \"claims.contractor == true\"").unwrap();
    assert!(!decide(&p, &no_claim, &tool("x", None)).allowed());
    let employee = principal(&[], json!({"contractor": false}));
    assert!(decide(&p, &employee, &tool("x", None)).allowed());
}

#[test]
fn global_conditions_apply_to_every_request() {
    let p = policy(
        "[authorization]\nglobal = { scopes_all = [\"mcp\"], when = \"claims.email.endsWith('@example.com')\" }",
    )
    .unwrap();
    let allowed = |who: &Principal| {
        p.check_global(&Caller {
            principal: who,
            method: "tools/list",
        })
        .allowed()
    };
    assert!(allowed(&principal(
        &["mcp"],
        json!({"email": "a@example.com"})
    )));
    assert!(!allowed(&principal(
        &["mcp"],
        json!({"email": "a@evil.com"})
    )));
    assert!(!allowed(&principal(&[], json!({"email": "a@example.com"}))));
}

fn errors(toml_text: &str) -> Vec<String> {
    match policy(toml_text) {
        Ok(_) => Vec::new(),
        Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn configuration_errors_name_the_rule_and_what_is_wrong() {
    let e = errors("[[policy]]\nwhen = \"claims.a ==\"");
    assert!(
        e[0].starts_with("policy[0].when: not a valid CEL expression"),
        "{e:?}"
    );
    // A variable that does not exist at decision time: an error, not a rule that never matches.
    let e = errors("[[policy]]\nwhen = \"request.tool == 'x'\"");
    assert!(
        e[0].contains("policy[0].when") && e[0].contains("`request` is not available"),
        "{e:?}"
    );
    let e = errors("[[policy]]\nwhen = \"target.tool_name == 'x'\"");
    assert!(e[0].contains("`target.tool_name` does not exist"), "{e:?}");
    let e = errors("[[policy]]\nwhen = \"target.annotations.readonly\"");
    assert!(
        e[0].contains("`target.annotations.readonly` does not exist"),
        "{e:?}"
    );
    let e = errors("[[policy]]\nwhen = \"hasRole('admin')\"");
    assert!(e[0].contains("`hasRole`"), "{e:?}");
    let e = errors("[authorization]\nglobal = { when = \"target.name == 'x'\" }");
    assert!(
        e[0].starts_with("authorization.global.when") && e[0].contains("`target` is not available"),
        "{e:?}"
    );
    let e = errors("[[policy]]\nmatch = [\"a[\"]");
    assert!(e[0].starts_with("policy[0].match"), "{e:?}");
    let e = errors("[[policy]]\nannotations = { readonly = true }");
    assert!(
        e[0].starts_with("policy[0].annotations") && e[0].contains("readonly"),
        "{e:?}"
    );
    let e = errors("[[policy]]\nkind = [\"prompt\"]\nannotations = { readOnlyHint = true }");
    assert!(e[0].contains("only tools have annotations"), "{e:?}");
    let e = errors("[[policy]]\nscopes_all = [\"bad scope\"]");
    assert!(e[0].starts_with("policy[0].scopes_all"), "{e:?}");
    let e = errors("[[policy]]\nname = \"x\"\n[[policy]]\nname = \"x\"");
    assert!(e[0].contains("two rules are named `x`"), "{e:?}");
    // Every problem at once.
    let e = errors("[[policy]]\nwhen = \"nope.x\"\n[[policy]]\nmatch = [\"[\"]");
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn explain_says_what_each_rule_did() {
    let p = policy(
        r#"
[[policy]]
name = "admin tools"
match = ["admin_*"]
scopes_all = ["admin"]

[[policy]]
name = "contractors"
effect = "deny"
when = "claims.contractor == true"
"#,
    )
    .unwrap();
    let who = principal(&["mcp"], json!({"contractor": false}));
    let (d, steps) = p.explain(
        &Caller {
            principal: &who,
            method: "tools/call",
        },
        &tool("admin_reset", None),
    );
    assert!(!d.allowed());
    assert_eq!(d.rule, "admin tools");
    assert_eq!(steps.len(), 2);
    assert!(
        steps[0].outcome.contains("needs all of scopes [admin]"),
        "{steps:?}"
    );
    assert!(steps[1].outcome.contains("do not hold"), "{steps:?}");
}

#[test]
fn remembered_results_never_cross_targets_methods_or_principals() {
    let p = policy(
        "[[policy]]\nwhen = \"target.name == 'a' && method == 'tools/call' && claims.team == 'x'\"",
    )
    .unwrap();
    let x = principal(&[], json!({"team": "x"}));
    let y = principal(&[], json!({"team": "y"}));
    let at = |who: &Principal, name: &str, method: &str| {
        p.decide(
            &Caller {
                principal: who,
                method,
            },
            &tool(name, None),
        )
        .allowed()
    };
    for _ in 0..2 {
        assert!(at(&x, "a", "tools/call"));
        assert!(!at(&x, "b", "tools/call"));
        assert!(!at(&x, "a", "tools/list"));
        assert!(!at(&y, "a", "tools/call"));
    }
    // Many targets: the memory of one principal stays bounded and answers stay right.
    for i in 0..100 {
        assert!(!at(&x, &format!("t{i}"), "tools/call"));
    }
    assert!(at(&x, "a", "tools/call"));
}
