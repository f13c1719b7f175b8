//! Authorization policy: who may see and use which tools, resources, resource templates and
//! prompts.
//!
//! A [`Policy`] is compiled once from configuration ([`AuthorizationConfig`] and a list of
//! [`RuleConfig`]) — globs, annotation selectors, scopes and CEL expressions, every problem
//! reported with the key it is about — and then answers [`Policy::decide`] for a caller and a
//! target without allocating unless an expression runs.
//!
//! # Semantics
//!
//! A rule *selects* a target when the target's kind is one of the rule's `kind`s (default:
//! any), its name or URI matches one of `match` (default: any), it has the `annotations` the
//! rule names (tools; MCP's defaults apply to annotations a tool leaves out) and carries all of
//! its `tags`. A rule's *conditions* are its scopes (`scopes_all`, `scopes_any`; a scope is
//! also held when a scope that includes it through `scope_hierarchy` is) and its `when`
//! expression.
//!
//! For a target, every rule that selects it counts, and the order of the rules never changes
//! the answer ([`Policy::decide`] and [`Policy::explain`] are one function):
//!
//! 1. a `deny` rule whose conditions hold denies it: [`Verdict::Hide`] when that rule's
//!    `on_deny` is `hide`, else [`Verdict::Forbid`] (no scope undoes a deny rule; when two
//!    deny rules apply, `hide` wins);
//! 2. an `allow` rule whose conditions do not hold denies it (requirements add up: a tool that
//!    two allow rules select needs what both ask). The answer is a step-up
//!    [`Verdict::Challenge`] naming every scope the operation needs when more scopes would
//!    change it — every failing rule fails on its scopes only (its `when`, if any, holds) —
//!    and at least one failing rule says `on_deny = "challenge"`; otherwise
//!    [`Verdict::Hide`] when a failing rule says `hide`; otherwise [`Verdict::Forbid`];
//! 3. otherwise, when at least one `allow` rule selects it, it is allowed;
//! 4. otherwise `authorization.default` decides (`allow` unless set; `deny` hides).
//!
//! So a set of deny rules never denies more than what the rules select, and an allow rule
//! narrows only what it selects. A deny rule with no conditions always denies what it selects.
//! An expression that fails at run time (a claim the token does not have, a type error)
//! counts as *false* in an allow rule and as *true* in a deny rule: errors never grant.
//!
//! A tool whose annotations are not known yet (the gateway learns them from `tools/list`) may
//! be selected by annotation rules: each such rule's requirements apply and a deny rule
//! applies, but such a rule never counts as allowing it.
//!
//! The deciding rule named in a [`Decision`] is the first rule, in configuration order, of
//! those that produced the answer.
//!
//! The global conditions (`authorization.global`) apply to every MCP request first
//! ([`Policy::check_global`]): a caller who lacks a global scope gets a challenge for it; one
//! who holds the scopes but fails the `when` expression gets [`Verdict::Forbid`] (asking for
//! scopes again would loop).

mod config;
mod expr;
pub mod lists;

use std::collections::{HashMap, HashSet};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde_json::Value;

pub use config::{AuthorizationConfig, ConditionsConfig, Effect, Kind, OnDeny, RuleConfig};
pub use expr::Vals;
use expr::{Expr, Facts};

use crate::{Principal, Scope};

/// A tool annotation a rule can select on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Annotation {
    /// `readOnlyHint` (MCP default: false).
    ReadOnly,
    /// `destructiveHint` (MCP default: true).
    Destructive,
    /// `idempotentHint` (MCP default: false).
    Idempotent,
    /// `openWorldHint` (MCP default: true).
    OpenWorld,
}

impl Annotation {
    /// The annotation of a JSON name (`readOnlyHint` …).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "readOnlyHint" => Annotation::ReadOnly,
            "destructiveHint" => Annotation::Destructive,
            "idempotentHint" => Annotation::Idempotent,
            "openWorldHint" => Annotation::OpenWorld,
            _ => return None,
        })
    }

    /// Its JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Annotation::ReadOnly => "readOnlyHint",
            Annotation::Destructive => "destructiveHint",
            Annotation::Idempotent => "idempotentHint",
            Annotation::OpenWorld => "openWorldHint",
        }
    }
}

/// A tool's annotations, as the tool declared them (absent ones are `None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Annotations {
    /// `readOnlyHint`.
    pub read_only: Option<bool>,
    /// `destructiveHint`.
    pub destructive: Option<bool>,
    /// `idempotentHint`.
    pub idempotent: Option<bool>,
    /// `openWorldHint`.
    pub open_world: Option<bool>,
}

impl Annotations {
    /// Reads a tool's `annotations` object (anything else reads as no annotations).
    pub fn from_json(value: Option<&Value>) -> Self {
        let get = |k: &str| value.and_then(|v| v.get(k)).and_then(Value::as_bool);
        Annotations {
            read_only: get("readOnlyHint"),
            destructive: get("destructiveHint"),
            idempotent: get("idempotentHint"),
            open_world: get("openWorldHint"),
        }
    }

    /// The value of `a`, with MCP's default when the tool leaves it out.
    pub fn get(&self, a: Annotation) -> bool {
        match a {
            Annotation::ReadOnly => self.read_only.unwrap_or(false),
            Annotation::Destructive => self.destructive.unwrap_or(true),
            Annotation::Idempotent => self.idempotent.unwrap_or(false),
            Annotation::OpenWorld => self.open_world.unwrap_or(true),
        }
    }
}

/// What a decision is about.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Its kind.
    pub kind: Kind,
    /// Name (tool, prompt) or URI (resource) or URI template (resource template).
    pub name: &'a str,
    /// A tool's annotations; `None` when not known yet.
    pub annotations: Option<&'a Annotations>,
    /// Its `_meta` tags.
    pub tags: &'a [String],
    /// Whether `annotations` and `tags` are known (learnt from a list). When not, rules that
    /// select by them may select the target: their requirements apply, but they never allow.
    pub known: bool,
}

impl<'a> Target<'a> {
    /// A target whose annotations and tags are not known.
    pub fn new(kind: Kind, name: &'a str) -> Self {
        Target {
            kind,
            name,
            annotations: None,
            tags: &[],
            known: false,
        }
    }

    /// A target with what a list said about it.
    pub fn listed(
        kind: Kind,
        name: &'a str,
        annotations: Option<&'a Annotations>,
        tags: &'a [String],
    ) -> Self {
        Target {
            kind,
            name,
            annotations,
            tags,
            known: true,
        }
    }
}

/// Who asks, and with which MCP method.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The verified principal.
    pub principal: &'a Principal,
    /// The MCP method (`tools/call`, `tools/list` …).
    pub method: &'a str,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// As if the target did not exist: left out of lists, "not found" on use.
    Hide,
    /// Listed; a call is answered `403 insufficient_scope` naming every scope the operation
    /// needs, so that the client re-authorizes once with all of them. Never `offline_access`.
    Challenge {
        /// Every scope the operation needs, the ones the caller holds included.
        scopes: Vec<Scope>,
    },
    /// Listed; a call is refused with a plain `403`: no scope would change the answer.
    Forbid,
}

impl Verdict {
    /// The word used in the audit log and by `policy explain`: `allow`, `hide`, `challenge`,
    /// `deny`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Hide => "hide",
            Verdict::Challenge { .. } => "challenge",
            Verdict::Forbid => "deny",
        }
    }

    /// Whether a list still shows the target (allowed, challenged or forbidden, not hidden).
    pub fn listed(&self) -> bool {
        !matches!(self, Verdict::Hide)
    }
}

/// A decision and the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed or not, and how a refusal is answered.
    pub verdict: Verdict,
    /// The deciding rule's name, or `default` / `global`.
    pub rule: String,
}

impl Decision {
    /// Whether the target is allowed.
    pub fn allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }

    fn new(verdict: Verdict, rule: &str) -> Self {
        Decision {
            verdict,
            rule: rule.to_owned(),
        }
    }
}

/// A problem with the policy configuration, naming its key (`policy[2].when`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct PolicyError {
    /// The configuration key.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

#[derive(Debug)]
struct Conditions {
    scopes_all: Vec<String>,
    scopes_any: Vec<String>,
    when: Option<Expr>,
}

impl Conditions {
    fn is_empty(&self) -> bool {
        self.scopes_all.is_empty() && self.scopes_any.is_empty() && self.when.is_none()
    }
}

#[derive(Debug)]
struct Rule {
    name: String,
    effect: Effect,
    /// Bit per [`Kind`]; 0 = every kind.
    kinds: u8,
    /// Whether the rule has `match` patterns (they live in the policy's one [`GlobSet`]).
    has_names: bool,
    annotations: Vec<(Annotation, bool)>,
    tags: Vec<String>,
    conditions: Conditions,
    on_deny: OnDeny,
}

fn kind_bit(kind: Kind) -> u8 {
    match kind {
        Kind::Tool => 1,
        Kind::Resource => 2,
        Kind::ResourceTemplate => 4,
        Kind::Prompt => 8,
    }
}

/// Whether a rule selects a target: yes, no, or maybe (annotations not known yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selects {
    Yes,
    Maybe,
    No,
}

impl Rule {
    /// `name_matches`: whether one of the rule's patterns matched the target's name.
    fn selects(&self, target: &Target<'_>, name_matches: bool) -> Selects {
        if self.kinds != 0 && self.kinds & kind_bit(target.kind) == 0 {
            return Selects::No;
        }
        if self.has_names && !name_matches {
            return Selects::No;
        }
        if self.tags.is_empty() && self.annotations.is_empty() {
            return Selects::Yes;
        }
        if !target.known {
            return Selects::Maybe;
        }
        let tagged = self
            .tags
            .iter()
            .all(|t| target.tags.iter().any(|have| have == t));
        let defaults = Annotations::default();
        let a = target.annotations.unwrap_or(&defaults);
        if tagged && self.annotations.iter().all(|(k, v)| a.get(*k) == *v) {
            Selects::Yes
        } else {
            Selects::No
        }
    }
}

/// How a rule's conditions turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// They hold.
    Holds,
    /// The expression (if any) holds, but a scope is missing: more scopes would help.
    LacksScopes,
    /// The expression does not hold.
    Fails,
}

/// Which scopes include which (the transitive closure of `scope_hierarchy`).
#[derive(Debug, Default)]
struct Hierarchy {
    /// scope → the scopes that include it, itself not listed.
    included_by: HashMap<String, Vec<String>>,
}

impl Hierarchy {
    fn new(config: &std::collections::BTreeMap<String, Vec<String>>) -> Self {
        let mut included_by: HashMap<String, Vec<String>> = HashMap::new();
        for parent in config.keys() {
            // Everything `parent` reaches.
            let mut seen = HashSet::new();
            let mut stack: Vec<&String> = config[parent].iter().collect();
            while let Some(s) = stack.pop() {
                if s == parent || !seen.insert(s.clone()) {
                    continue;
                }
                if let Some(more) = config.get(s) {
                    stack.extend(more.iter());
                }
            }
            for child in seen {
                included_by.entry(child).or_default().push(parent.clone());
            }
        }
        Hierarchy { included_by }
    }

    fn holds(&self, principal: &Principal, scope: &str) -> bool {
        principal.scopes.contains(scope)
            || self
                .included_by
                .get(scope)
                .is_some_and(|parents| parents.iter().any(|p| principal.scopes.contains(p)))
    }
}

/// A compiled policy.
#[derive(Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Every rule's `match` patterns, matched against a name in one pass.
    names: GlobSet,
    /// For each pattern of `names`, the rule it belongs to.
    pattern_rule: Vec<usize>,
    default: Effect,
    on_deny: OnDeny,
    global: Conditions,
    hierarchy: Hierarchy,
    uses_annotations: bool,
    /// Scopes every request needs (the resource server's own), named in every challenge.
    required: Vec<String>,
}

/// Why a rule did what it did, for `policy explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The rule.
    pub rule: String,
    /// What happened.
    pub outcome: String,
}

impl Policy {
    /// A policy that allows everything (no rules, default allow).
    pub fn allow_all() -> Self {
        Policy {
            rules: Vec::new(),
            names: GlobSet::empty(),
            pattern_rule: Vec::new(),
            default: Effect::Allow,
            on_deny: OnDeny::Hide,
            global: Conditions {
                scopes_all: Vec::new(),
                scopes_any: Vec::new(),
                when: None,
            },
            hierarchy: Hierarchy::default(),
            uses_annotations: false,
            required: Vec::new(),
        }
    }

    /// Names `scopes` — those every request needs anyway, such as the gateway's
    /// `auth.required_scopes` — in every challenge, so that a client that steps up keeps them.
    pub fn with_required_scopes(mut self, scopes: &[Scope]) -> Self {
        self.required = scopes.iter().map(|s| s.as_str().to_owned()).collect();
        self
    }

    /// Compiles a policy; every problem is reported, each with its configuration key.
    pub fn compile(
        authorization: &AuthorizationConfig,
        rules: &[RuleConfig],
    ) -> Result<Policy, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let env = expr::env();
        let global = compile_conditions(
            &env,
            "authorization.global",
            &authorization.global.scopes_all,
            &authorization.global.scopes_any,
            authorization.global.when.as_deref(),
            false,
            &mut errors,
        );
        let mut compiled = Vec::with_capacity(rules.len());
        let mut all_names = GlobSetBuilder::new();
        let mut pattern_rule = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let key = format!("policy[{i}]");
            let mut err = |field: &str, problem: String| {
                errors.push(PolicyError {
                    key: format!("{key}.{field}"),
                    problem,
                })
            };
            // Patterns of resource rules are URIs; in a rule for every kind, those that look
            // like one (`scheme://`) are (tool names may hold a `:`).
            let resources = rule
                .kind
                .iter()
                .any(|k| matches!(k, Kind::Resource | Kind::ResourceTemplate));
            for pattern in &rule.matches {
                match Glob::new(pattern) {
                    Ok(g) => {
                        all_names.add(g);
                        pattern_rule.push(i);
                    }
                    Err(e) => err("match", format!("`{pattern}` is not a valid pattern: {e}")),
                }
                let uri_like = resources || (rule.kind.is_empty() && pattern.contains("://"));
                if uri_like && let Err(problem) = crate::uri::check_pattern(pattern) {
                    err("match", problem);
                }
            }
            if rule.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                err(
                    "name",
                    "must not be empty (leave it out for `policy[N]`)".into(),
                );
            }
            if rule.tags.iter().any(|t| t.is_empty()) {
                err("tags", "a tag must not be empty".into());
            }
            let mut annotations = Vec::new();
            for (name, value) in &rule.annotations {
                match Annotation::parse(name) {
                    Some(a) => annotations.push((a, *value)),
                    None => err(
                        "annotations",
                        format!(
                            "`{name}` is not a tool annotation (readOnlyHint, destructiveHint, idempotentHint, openWorldHint)"
                        ),
                    ),
                }
            }
            if !annotations.is_empty() && !rule.kind.is_empty() && !rule.kind.contains(&Kind::Tool)
            {
                err(
                    "annotations",
                    "only tools have annotations: add \"tool\" to kind or drop annotations".into(),
                );
            }
            let kinds = if annotations.is_empty() {
                rule.kind.iter().fold(0, |acc, k| acc | kind_bit(*k))
            } else {
                // Annotations select tools only.
                kind_bit(Kind::Tool)
            };
            let conditions = compile_conditions(
                &env,
                &key,
                &rule.scopes_all,
                &rule.scopes_any,
                rule.when.as_deref(),
                true,
                &mut errors,
            );
            compiled.push(Rule {
                name: rule.name.clone().unwrap_or_else(|| key.clone()),
                effect: rule.effect,
                kinds,
                has_names: !rule.matches.is_empty(),
                annotations,
                tags: rule.tags.clone(),
                conditions,
                on_deny: rule.on_deny.unwrap_or(authorization.on_deny),
            });
        }
        let mut names = HashSet::new();
        for r in &compiled {
            if !names.insert(r.name.as_str()) {
                errors.push(PolicyError {
                    key: "policy".into(),
                    problem: format!("two rules are named `{}`", r.name),
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // Expressions may read `target.annotations` and `target.tags` too.
        let uses_annotations = global.when.is_some()
            || compiled.iter().any(|r| {
                !r.annotations.is_empty() || !r.tags.is_empty() || r.conditions.when.is_some()
            });
        let names = all_names.build().map_err(|e| {
            vec![PolicyError {
                key: "policy".into(),
                problem: format!("the match patterns cannot be compiled together: {e}"),
            }]
        })?;
        Ok(Policy {
            rules: compiled,
            names,
            pattern_rule,
            default: authorization.default,
            on_deny: authorization.on_deny,
            global,
            hierarchy: Hierarchy::new(&authorization.scope_hierarchy),
            uses_annotations,
            required: Vec::new(),
        })
    }

    /// Whether any rule selects on tool annotations or tags, or has an expression that may
    /// read them (the gateway then learns them from lists).
    pub fn uses_annotations(&self) -> bool {
        self.uses_annotations
    }

    /// Whether there are global conditions.
    pub fn has_global(&self) -> bool {
        !self.global.is_empty()
    }

    /// Whether there is anything to enforce beyond the global conditions.
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty() || self.default == Effect::Deny
    }

    /// The global conditions, which every MCP request must meet: allowed, a challenge for
    /// the global scopes the caller lacks, or [`Verdict::Forbid`] when the scopes are held but
    /// the expression does not hold (more scopes would not help).
    pub fn check_global(&self, caller: &Caller<'_>) -> Decision {
        if self.global.is_empty() {
            return Decision::new(Verdict::Allow, "global");
        }
        let mut facts = Facts::new(caller, None);
        match self.check(&self.global, caller, &mut facts, true) {
            Check::Holds => Decision::new(Verdict::Allow, "global"),
            Check::LacksScopes => {
                let mut scopes = Vec::new();
                self.add_needed(&self.global, caller, &mut scopes);
                Decision::new(self.challenge(scopes), "global")
            }
            Check::Fails => Decision::new(Verdict::Forbid, "global"),
        }
    }

    /// The whole decision on a request for `target`, as the gateway makes it and `policy
    /// explain` reports it: the global conditions first, then trimming (a trimmed target is
    /// hidden, rule `trim`), then the rules.
    pub fn decide_call(
        &self,
        trim: &lists::Trim,
        caller: &Caller<'_>,
        target: &Target<'_>,
    ) -> Decision {
        self.call(trim, caller, target, None)
    }

    /// [`Policy::decide_call`], saying what each step and rule did.
    pub fn explain_call(
        &self,
        trim: &lists::Trim,
        caller: &Caller<'_>,
        target: &Target<'_>,
    ) -> (Decision, Vec<Step>) {
        let mut steps = Vec::new();
        let decision = self.call(trim, caller, target, Some(&mut steps));
        (decision, steps)
    }

    fn call(
        &self,
        trim: &lists::Trim,
        caller: &Caller<'_>,
        target: &Target<'_>,
        mut steps: Option<&mut Vec<Step>>,
    ) -> Decision {
        let global = self.check_global(caller);
        if let Some(s) = steps.as_deref_mut()
            && self.has_global()
        {
            s.push(Step {
                rule: "authorization.global".into(),
                outcome: if global.allowed() {
                    "conditions hold".into()
                } else {
                    format!(
                        "conditions do not hold: DENIED (needs {})",
                        describe(&self.global)
                    )
                },
            });
        }
        if !global.allowed() {
            return global;
        }
        if !trim.visible(target.kind, target.name) {
            if let Some(s) = steps.as_deref_mut() {
                s.push(Step {
                    rule: "trim".into(),
                    outcome: "removed by upstream.expose / upstream.hide: HIDDEN".into(),
                });
            }
            return Decision::new(Verdict::Hide, "trim");
        }
        self.evaluate(caller, target, steps)
    }

    /// Decides whether `caller` may see or use `target` by the rules alone (no global
    /// conditions, no trimming: see [`Policy::decide_call`]).
    pub fn decide(&self, caller: &Caller<'_>, target: &Target<'_>) -> Decision {
        self.evaluate(caller, target, None)
    }

    /// Decides, and says what each rule did.
    pub fn explain(&self, caller: &Caller<'_>, target: &Target<'_>) -> (Decision, Vec<Step>) {
        let mut steps = Vec::new();
        let decision = self.evaluate(caller, target, Some(&mut steps));
        (decision, steps)
    }

    fn evaluate(
        &self,
        caller: &Caller<'_>,
        target: &Target<'_>,
        mut steps: Option<&mut Vec<Step>>,
    ) -> Decision {
        let mut facts = Facts::new(caller, Some(target));
        let mut allowed_by: Option<&Rule> = None;
        // Deny rules that apply, and allow rules whose conditions fail (with whether only
        // their scopes are lacking), in configuration order.
        let mut denied_by: Vec<&Rule> = Vec::new();
        let mut failing: Vec<(&Rule, bool)> = Vec::new();
        // Every allow rule that selects the target: their scopes make up a challenge.
        let mut requiring: Vec<&Rule> = Vec::new();
        // One pass over every pattern of every rule.
        let mut named = [0u64; 4];
        let mut named_big: Vec<bool> = Vec::new();
        let big = self.rules.len() > 256;
        if big {
            named_big = vec![false; self.rules.len()];
        }
        if !self.pattern_rule.is_empty() {
            for p in self.names.matches(target.name) {
                let r = self.pattern_rule[p];
                if big {
                    named_big[r] = true;
                } else {
                    named[r / 64] |= 1 << (r % 64);
                }
            }
        }
        // What each rule did, for `policy explain`; written only when asked for (the gateway
        // decides every call without it).
        let mut note = |rule: &Rule, outcome: &dyn Fn() -> String| {
            if let Some(s) = steps.as_deref_mut() {
                s.push(Step {
                    rule: rule.name.clone(),
                    outcome: outcome(),
                });
            }
        };
        for (i, rule) in self.rules.iter().enumerate() {
            let name_matches = if big {
                named_big[i]
            } else {
                named[i / 64] & (1 << (i % 64)) != 0
            };
            let selects = rule.selects(target, name_matches);
            if selects == Selects::No {
                note(rule, &|| "does not select this target".into());
                continue;
            }
            let maybe = selects == Selects::Maybe;
            match rule.effect {
                Effect::Deny => {
                    // A failing expression counts as true here: errors never grant.
                    if self.check(&rule.conditions, caller, &mut facts, false) == Check::Holds {
                        note(rule, &|| "deny rule applies: DENIED".into());
                        denied_by.push(rule);
                    } else {
                        note(rule, &|| "deny rule's conditions do not hold".into());
                    }
                }
                Effect::Allow => {
                    requiring.push(rule);
                    match self.check(&rule.conditions, caller, &mut facts, true) {
                        Check::Holds => {
                            note(rule, &|| {
                                if maybe {
                                    "may select this tool (annotations not known yet); conditions hold, but it does not allow on its own".into()
                                } else {
                                    "allow rule's conditions hold".into()
                                }
                            });
                            if !maybe && allowed_by.is_none() {
                                allowed_by = Some(rule);
                            }
                        }
                        outcome => {
                            note(rule, &|| {
                                format!(
                                    "allow rule's conditions do not hold: DENIED (needs {})",
                                    describe(&rule.conditions)
                                )
                            });
                            failing.push((rule, outcome == Check::LacksScopes));
                        }
                    }
                }
            }
        }
        if !denied_by.is_empty() {
            return match denied_by.iter().find(|r| r.on_deny == OnDeny::Hide) {
                Some(rule) => Decision::new(Verdict::Hide, &rule.name),
                None => Decision::new(Verdict::Forbid, &denied_by[0].name),
            };
        }
        if !failing.is_empty() {
            let step_up = failing.iter().all(|(_, scopes_only)| *scopes_only);
            let challenger = failing.iter().find(|(r, _)| r.on_deny == OnDeny::Challenge);
            if step_up && let Some((rule, _)) = challenger {
                let mut scopes = Vec::new();
                for r in &requiring {
                    self.add_needed(&r.conditions, caller, &mut scopes);
                }
                self.add_needed(&self.global, caller, &mut scopes);
                return Decision::new(self.challenge(scopes), &rule.name);
            }
            return match failing.iter().find(|(r, _)| r.on_deny == OnDeny::Hide) {
                Some((rule, _)) => Decision::new(Verdict::Hide, &rule.name),
                None => {
                    // Every failing rule says challenge, but one fails on its expression.
                    let (rule, _) = failing
                        .iter()
                        .find(|(_, scopes_only)| !scopes_only)
                        .unwrap_or(&failing[0]);
                    Decision::new(Verdict::Forbid, &rule.name)
                }
            };
        }
        match allowed_by {
            Some(rule) => Decision::new(Verdict::Allow, &rule.name),
            None => Decision::new(
                match self.default {
                    Effect::Allow => Verdict::Allow,
                    Effect::Deny => Verdict::Hide,
                },
                "default",
            ),
        }
    }

    /// A challenge naming `scopes`, then the required ones; never `offline_access`.
    fn challenge(&self, mut scopes: Vec<String>) -> Verdict {
        for s in &self.required {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        scopes.retain(|s| s != "offline_access");
        Verdict::Challenge {
            scopes: scopes.into_iter().map(Scope::new).collect(),
        }
    }

    /// Whether `conditions` hold for `caller`. `allowing`: whether an expression that fails
    /// at run time counts as false (allow rules) or as true (deny rules).
    fn check(
        &self,
        conditions: &Conditions,
        caller: &Caller<'_>,
        facts: &mut Facts<'_>,
        allowing: bool,
    ) -> Check {
        let p = caller.principal;
        let all = conditions
            .scopes_all
            .iter()
            .all(|s| self.hierarchy.holds(p, s));
        let any = conditions.scopes_any.is_empty()
            || conditions
                .scopes_any
                .iter()
                .any(|s| self.hierarchy.holds(p, s));
        let when = match &conditions.when {
            None => true,
            Some(expr) => match expr.eval(facts) {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!(target: "mcpgate::policy", expression = expr.source(), error = %e, "policy expression failed; counted as {}", if allowing { "false" } else { "true" });
                    !allowing
                }
            },
        };
        match (all && any, when) {
            (true, true) => Check::Holds,
            (false, true) => Check::LacksScopes,
            (_, false) => Check::Fails,
        }
    }

    /// Adds to `scopes` what `conditions` ask: all of `scopes_all`, and of `scopes_any` the
    /// first one held (or the first one, when none is).
    fn add_needed(&self, conditions: &Conditions, caller: &Caller<'_>, scopes: &mut Vec<String>) {
        let mut add = |s: &String| {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        };
        conditions.scopes_all.iter().for_each(&mut add);
        if let Some(s) = conditions
            .scopes_any
            .iter()
            .find(|s| self.hierarchy.holds(caller.principal, s))
            .or(conditions.scopes_any.first())
        {
            add(s);
        }
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The default for what no rule selects.
    pub fn default_effect(&self) -> Effect {
        self.default
    }

    /// How denials are answered unless a rule says otherwise.
    pub fn default_on_deny(&self) -> OnDeny {
        self.on_deny
    }
}

fn describe(c: &Conditions) -> String {
    let mut parts = Vec::new();
    if !c.scopes_all.is_empty() {
        parts.push(format!("all of scopes [{}]", c.scopes_all.join(", ")));
    }
    if !c.scopes_any.is_empty() {
        parts.push(format!("one of scopes [{}]", c.scopes_any.join(", ")));
    }
    if let Some(e) = &c.when {
        parts.push(format!("`{}` to be true", e.source()));
    }
    parts.join(" and ")
}

fn compile_conditions(
    env: &std::sync::Arc<cel::Env>,
    key: &str,
    scopes_all: &[String],
    scopes_any: &[String],
    when: Option<&str>,
    has_target: bool,
    errors: &mut Vec<PolicyError>,
) -> Conditions {
    for (field, list) in [("scopes_all", scopes_all), ("scopes_any", scopes_any)] {
        for s in list {
            if crate::Scope::parse(s).is_err() {
                errors.push(PolicyError {
                    key: format!("{key}.{field}"),
                    problem: format!("`{s}` is not a valid scope"),
                });
            }
        }
    }
    let when = when.and_then(|source| match Expr::compile(env, source, has_target) {
        Ok(e) => Some(e),
        Err(problem) => {
            errors.push(PolicyError {
                key: format!("{key}.when"),
                problem,
            });
            None
        }
    });
    Conditions {
        scopes_all: scopes_all.to_vec(),
        scopes_any: scopes_any.to_vec(),
        when,
    }
}

#[cfg(test)]
mod tests;
