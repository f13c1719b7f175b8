//! Policy as written in configuration (`[authorization]` and `[[policy]]` in mcpgate.toml).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a rule does to the targets it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// The target is allowed when the rule's conditions hold (and denied when they do not).
    #[default]
    Allow,
    /// The target is denied when the rule's conditions hold (and the rule does nothing when
    /// they do not).
    Deny,
}

/// How a denied client is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnDeny {
    /// As if the target did not exist: hidden from lists, "not found" on use.
    #[default]
    Hide,
    /// Listed as usual; a call is answered `403 insufficient_scope` naming the scopes it
    /// needs, so that the client can re-authorize with them (step-up).
    Challenge,
}

/// The kinds of MCP component a rule can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A tool (by name).
    Tool,
    /// A resource (by URI).
    Resource,
    /// A resource template (by URI template).
    ResourceTemplate,
    /// A prompt (by name).
    Prompt,
}

impl Kind {
    /// The name used in configuration and expressions.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Resource => "resource",
            Kind::ResourceTemplate => "resource_template",
            Kind::Prompt => "prompt",
        }
    }
}

/// Conditions: scopes (all of / any of) and a CEL expression over the request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConditionsConfig {
    /// Every one of these scopes.
    pub scopes_all: Vec<String>,
    /// At least one of these scopes.
    pub scopes_any: Vec<String>,
    /// A CEL expression that must be true (see the policy documentation for what it sees).
    pub when: Option<String>,
}

/// One `[[policy]]` rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    /// A name for logs, the audit log and `policy explain` (default: `policy[N]`).
    pub name: Option<String>,
    /// `allow` (default) or `deny`.
    pub effect: Effect,
    /// Kinds selected (default: every kind).
    pub kind: Vec<Kind>,
    /// Name (tools, prompts) or URI (resources, templates) patterns; `*` and `?` globs.
    /// Empty: every name.
    #[serde(rename = "match")]
    pub matches: Vec<String>,
    /// Tool annotations the tool must have, e.g. `{ destructiveHint = true }`.
    pub annotations: BTreeMap<String, bool>,
    /// `_meta` tags the target must carry (all of them).
    pub tags: Vec<String>,
    /// Scopes every one of which is required.
    pub scopes_all: Vec<String>,
    /// Scopes at least one of which is required.
    pub scopes_any: Vec<String>,
    /// A CEL expression that must be true.
    pub when: Option<String>,
    /// How a denied client is answered (default: `authorization.on_deny`).
    pub on_deny: Option<OnDeny>,
}

/// `[authorization]`: what applies beside the rules.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// What happens to a target no rule selects.
    pub default: Effect,
    /// How denied clients are answered unless a rule says otherwise.
    pub on_deny: OnDeny,
    /// Conditions every MCP request must meet (any method, any target).
    pub global: ConditionsConfig,
    /// Scopes that include others: `{ admin = ["write"], write = ["read"] }` (transitive).
    pub scope_hierarchy: BTreeMap<String, Vec<String>>,
    /// Check tool-call arguments against the tool's `inputSchema` before they go upstream
    /// (for enforcers that see arguments, such as the gateway).
    pub validate_arguments: bool,
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        AuthorizationConfig {
            default: Effect::Allow,
            on_deny: OnDeny::Hide,
            global: ConditionsConfig::default(),
            scope_hierarchy: BTreeMap::new(),
            validate_arguments: false,
        }
    }
}
