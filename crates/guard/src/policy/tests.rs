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
        Verdict::Challenge { scopes } => {
            let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
            assert_eq!(scopes, ["admin", "write", "mcp"]);
        }
        other => panic!("should be challenged, got {other:?}"),
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

#[test]
fn remembered_results_never_cross_names_tags_or_annotations() {
    // Where one part ends and the next begins is part of the key: a name and tags that read
    // the same run together are different targets, and so are the same tool's annotations.
    let p = policy(
        "[[policy]]\nwhen = \"target.name == 'ab' && 'c' in target.tags && !target.annotations.destructiveHint\"",
    )
    .unwrap();
    let x = principal(&[], json!({}));
    let safe = Annotations {
        destructive: Some(false),
        ..Annotations::default()
    };
    let risky = Annotations {
        destructive: Some(true),
        ..Annotations::default()
    };
    let (c, bc) = (["c".to_owned()], ["bc".to_owned()]);
    let at = |name: &str, tags: &[String], annotations: &Annotations| {
        let target = Target::listed(Kind::Tool, name, Some(annotations), tags);
        decide(&p, &x, &target).allowed()
    };
    for _ in 0..2 {
        assert!(at("ab", &c, &safe));
        assert!(!at("a", &bc, &safe));
        assert!(!at("ab", &c, &risky));
        assert!(!at("ab", &bc, &safe));
        assert!(at("ab", &c, &safe));
    }
}

fn scopes_of(d: &Decision) -> Vec<String> {
    match &d.verdict {
        Verdict::Challenge { scopes } => scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        other => panic!("expected a challenge, got {other:?}"),
    }
}

const DOC_RULES: &str = r#"
[authorization]
global = { scopes_all = ["mcp"] }

[[policy]]
name = "read-only tools for readers"
annotations = { readOnlyHint = true }
scopes_any = ["read"]

[[policy]]
name = "delete needs admin"
kind = ["tool"]
match = ["delete_*"]
scopes_all = ["admin"]
on_deny = "challenge"

[[policy]]
name = "destructive needs write"
annotations = { destructiveHint = true }
scopes_all = ["write"]
"#;

#[test]
fn a_challenge_rule_wins_over_a_failing_hide_rule_when_more_scopes_would_help() {
    let p = policy(DOC_RULES).unwrap();
    let reader = principal(&["mcp", "read"], json!({}));
    let d = decide(&p, &reader, &tool("delete_user", Some(&DESTRUCTIVE)));
    assert_eq!(d.rule, "delete needs admin");
    assert_eq!(scopes_of(&d), ["admin", "write", "mcp"]);
    // Annotations not known yet: the same answer.
    let d = decide(&p, &reader, &tool("delete_user", None));
    assert_eq!(d.verdict.as_str(), "challenge");
}

#[test]
fn the_order_of_rules_never_changes_the_verdict() {
    let reordered = {
        let blocks: Vec<&str> = DOC_RULES.split("\n[[policy]]").collect();
        let mut out = blocks[0].to_owned();
        for b in blocks[1..].iter().rev() {
            out.push_str("\n[[policy]]");
            out.push_str(b);
        }
        out
    };
    let a = policy(DOC_RULES).unwrap();
    let b = policy(&reordered).unwrap();
    for scopes in [
        &["mcp"][..],
        &["mcp", "read"],
        &["mcp", "write"],
        &["mcp", "admin"],
        &["mcp", "admin", "write"],
    ] {
        let who = principal(scopes, json!({}));
        for (name, ann) in [
            ("delete_user", Some(&DESTRUCTIVE)),
            ("get_user", Some(&READ_ONLY)),
            ("delete_x", None),
            ("other", None),
        ] {
            let da = decide(&a, &who, &tool(name, ann));
            let db = decide(&b, &who, &tool(name, ann));
            // The same verdict; a challenge's scopes are a set, listed in rule order.
            let sorted = |v: &Verdict| match v {
                Verdict::Challenge { scopes } => {
                    let mut s = scopes.clone();
                    s.sort_by(|x, y| x.as_str().cmp(y.as_str()));
                    Verdict::Challenge { scopes: s }
                }
                other => other.clone(),
            };
            assert_eq!(
                sorted(&da.verdict),
                sorted(&db.verdict),
                "{scopes:?} {name}"
            );
            let (ea, _) = a.explain(
                &Caller {
                    principal: &who,
                    method: "tools/call",
                },
                &tool(name, ann),
            );
            assert_eq!(ea, da, "decide and explain agree");
        }
    }
}

#[test]
fn a_hide_rule_that_fails_on_its_expression_hides_even_next_to_a_challenge_rule() {
    let p = policy(
        r#"
[[policy]]
match = ["pay_*"]
scopes_all = ["payments"]
on_deny = "challenge"

[[policy]]
match = ["pay_*"]
when = "claims.department == 'finance'"
"#,
    )
    .unwrap();
    let sales = principal(&[], json!({"department": "sales"}));
    assert_eq!(
        decide(&p, &sales, &tool("pay_x", None)).verdict,
        Verdict::Hide
    );
    let finance = principal(&[], json!({"department": "finance"}));
    assert_eq!(
        scopes_of(&decide(&p, &finance, &tool("pay_x", None))),
        ["payments"]
    );
}

#[test]
fn a_challenge_rule_failing_on_its_expression_is_a_plain_refusal() {
    let p = policy(
        r#"
[[policy]]
match = ["x"]
scopes_all = ["a"]
when = "subject == 'bob'"
on_deny = "challenge"
"#,
    )
    .unwrap();
    let alice = principal(&["a"], json!({}));
    assert_eq!(
        decide(&p, &alice, &tool("x", None)).verdict,
        Verdict::Forbid
    );
}

#[test]
fn a_deny_rule_with_challenge_is_a_plain_refusal_and_hide_wins_between_deny_rules() {
    let p = policy(
        r#"
[[policy]]
name = "no x"
effect = "deny"
match = ["x*"]
on_deny = "challenge"

[[policy]]
name = "no xy"
effect = "deny"
match = ["xy"]
"#,
    )
    .unwrap();
    let who = principal(&["admin"], json!({}));
    let d = decide(&p, &who, &tool("x1", None));
    assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Forbid, "no x"));
    let d = decide(&p, &who, &tool("xy", None));
    assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Hide, "no xy"));
    assert!(Verdict::Forbid.listed());
    assert!(!Verdict::Hide.listed());
}

#[test]
fn global_conditions_challenge_only_for_scopes_the_caller_lacks() {
    let p = policy(
        r#"
[authorization]
global = { scopes_all = ["mcp"], when = "claims.email.endsWith('@example.com')" }
"#,
    )
    .unwrap();
    let caller = |who| Caller {
        principal: who,
        method: "tools/list",
    };
    let outsider = principal(&["mcp"], json!({"email": "eve@evil.test"}));
    assert_eq!(p.check_global(&caller(&outsider)).verdict, Verdict::Forbid);
    let no_scope = principal(&[], json!({"email": "al@example.com"}));
    assert_eq!(scopes_of(&p.check_global(&caller(&no_scope))), ["mcp"]);
    let fine = principal(&["mcp"], json!({"email": "al@example.com"}));
    assert!(p.check_global(&caller(&fine)).allowed());
}

#[test]
fn challenges_name_the_required_scopes_too() {
    let p = policy(DOC_RULES)
        .unwrap()
        .with_required_scopes(&[Scope::new("mcp"), Scope::new("base")]);
    let reader = principal(&["mcp", "read", "base"], json!({}));
    let d = decide(&p, &reader, &tool("delete_user", Some(&DESTRUCTIVE)));
    assert_eq!(scopes_of(&d), ["admin", "write", "mcp", "base"]);
}

#[test]
fn misspelt_functions_macros_and_non_boolean_expressions_are_decided_at_load() {
    let e = errors("[[policy]]\nwhen = \"claims.email.endsWithh('@x.com')\"");
    assert!(
        e[0].contains("endsWithh") && e[0].starts_with("policy[0].when"),
        "{e:?}"
    );
    let e = errors("[[policy]]\nwhen = \"sizee(scopes) > 0\"");
    assert!(e[0].contains("sizee"), "{e:?}");
    assert!(policy("[[policy]]\nwhen = \"scopes.exists(s, s == 'admin')\"").is_ok());
    assert!(policy("[[policy]]\nwhen = \"scopes.all(s, s.startsWith('a'))\"").is_ok());
    assert!(policy("[[policy]]\nwhen = \"claims.groups.exists_one(g, g == 'x')\"").is_ok());
    assert!(
        policy("[[policy]]\nwhen = \"has(claims.email) && type(claims.email) == string\"").is_ok()
    );
    for bad in ["1 + 1", "'yes'", "[true]", "size(scopes)", "true ? 1 : 2"] {
        let e = errors(&format!("[[policy]]\nwhen = \"{bad}\""));
        assert!(
            e.iter().any(|m| m.contains("true or false")),
            "{bad}: {e:?}"
        );
    }
    // Expressions that fail for every caller, whatever the token.
    for bad in [
        "!subject",
        "subject.endsWith(1)",
        "1 / 0 == 1",
        "'a' in subject",
        "target.annotations.readOnlyHint + 1 == 2",
        "scopes.all(s, s)",
        "scopes[0]",
    ] {
        let e = errors(&format!("[[policy]]\nwhen = \"{bad}\""));
        assert!(!e.is_empty(), "{bad} was accepted");
    }
    // What depends on the caller's values is fine.
    assert!(policy("[[policy]]\nwhen = \"scopes[1] == 'admin'\"").is_ok());
    assert!(policy("[[policy]]\nwhen = \"claims.level > 3\"").is_ok());
    // A macro's variable is not visible outside it.
    let e = errors("[[policy]]\nwhen = \"scopes.exists(s, s == 'a') && s == 'b'\"");
    assert!(e[0].contains("`s`"), "{e:?}");
    let e = errors("[authorization]\nglobal = { when = \"claims.a.endsWithh('x')\" }");
    assert!(e[0].starts_with("authorization.global.when"), "{e:?}");
}

#[test]
fn policy_matches_resources_in_their_normal_spelling() {
    let p = policy(
        r#"
[authorization]
default = "deny"

[[policy]]
kind = ["resource"]
match = ["file:///public/*"]
"#,
    )
    .unwrap();
    let who = principal(&[], json!({}));
    let read = |uri: &str| {
        decide(
            &p,
            &who,
            &Target::new(Kind::Resource, &crate::uri::normalize(uri).unwrap()),
        )
    };
    assert!(read("FILE:///public/a").allowed());
    assert!(!read("file:///public/../private/a").allowed());
    assert!(!read("file:///%70rivate/a").allowed());
}
