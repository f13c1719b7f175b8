//! `[authorization]`, `[[policy]]`, `[[rate_limit]]` (and the `upstream.expose`/`hide`
//! lists): who may see and call what. Built into [`PolicyPlan`]: the policy compiled (CEL
//! included), the lists and the rate limits — what `policy explain` uses too.

use mcpgate_guard::policy::Policy;
use mcpgate_guard::policy::lists::Trim;

use super::settings::{Setting, s};
use super::{Config, Problems};
use crate::ratelimit::RateLimits;

/// This section's settings.
pub(super) const SETTINGS: &[Setting] = &[
    s(
        "authorization.default",
        None,
        "`allow`, `deny`",
        "What happens to a tool, resource, template or prompt no `[[policy]]` rule selects. See docs/policy.md for how allow rules, deny rules and the default combine.",
    ),
    s(
        "authorization.on_deny",
        None,
        "`hide`, `challenge`",
        "How a denied client is answered unless a rule says otherwise: `hide` (as if the target did not exist) or `challenge` (403 `insufficient_scope` naming the scopes needed, so the client can step up).",
    ),
    s(
        "authorization.global",
        None,
        "table",
        "Conditions every MCP request must meet: `{ scopes_all = [\"mcp\"], scopes_any = [], when = \"claims.email_verified == true\" }`.",
    ),
    s(
        "authorization.scope_hierarchy",
        None,
        "table",
        "Scopes that include others (transitively): `{ admin = [\"write\"], write = [\"read\"] }`.",
    ),
    s(
        "authorization.validate_arguments",
        None,
        "bool",
        "Check `tools/call` arguments against the tool's `inputSchema` (learnt from `tools/list`) and refuse misfits with JSON-RPC -32602 before the upstream sees them.",
    ),
    s(
        "policy",
        None,
        "array of tables",
        "Authorization rules (`[[policy]]`): `name`, `effect` (`allow`/`deny`), `kind`, `match` (globs), `annotations`, `tags`, `scopes_all`, `scopes_any`, `when` (CEL), `on_deny`. See docs/policy.md.",
    ),
    s(
        "rate_limit",
        None,
        "array of tables",
        "Rate limits (`[[rate_limit]]`): `name`, `kind` (default `[\"tool\"]`), `match` (globs), `per` (`subject`, `client`, `target`, `address`; default `[\"subject\"]`; empty: everyone together), `rate` (`N/second`, `N/minute`, `N/hour`). Default: 100 tool calls per second per subject; `rate_limit = []` turns limits off. Beyond a limit: 429 with Retry-After and a JSON-RPC error. See docs/policy.md.",
    ),
];

/// Authorization, built.
pub struct PolicyPlan {
    /// The rules, with `auth.required_scopes` as the floor of every step-up.
    pub policy: Policy,
    /// What exists at all (`upstream.expose`, `upstream.hide`).
    pub trim: Trim,
    /// `[[rate_limit]]`.
    pub rate_limits: RateLimits,
    /// Whether tool arguments are checked against their schema.
    pub validate_arguments: bool,
}

/// Builds the policy part of `config` alone (for `policy explain`, which needs nothing else).
pub fn build_alone(config: &Config) -> Result<PolicyPlan, Vec<super::ConfigError>> {
    let mut p = Problems::default();
    match build(config, &mut p) {
        Some(plan) if p.is_empty() => Ok(plan),
        _ => Err(p.into_errors()),
    }
}

pub(super) fn build(config: &Config, p: &mut Problems) -> Option<PolicyPlan> {
    let policy = Policy::compile(&config.authorization, &config.policy)
        .map_err(|problems| {
            for problem in problems {
                p.push(&problem.key, problem.problem);
            }
        })
        .ok();
    let trim = Trim::new("upstream", &config.upstream.expose, &config.upstream.hide)
        .map_err(|problems| {
            for problem in problems {
                p.push(&problem.key, problem.problem);
            }
        })
        .ok();
    let rate_limits = RateLimits::compile(&config.rate_limit)
        .map_err(|problems| {
            for problem in problems {
                p.push(&problem.key, problem.problem);
            }
        })
        .ok();
    // Scopes are checked by the auth section; here they only set the floor.
    let required: Vec<mcpgate_guard::Scope> = config
        .auth
        .required_scopes
        .iter()
        .filter_map(|s| mcpgate_guard::Scope::parse(s).ok())
        .collect();
    Some(PolicyPlan {
        policy: policy?.with_required_scopes(&required),
        trim: trim?,
        rate_limits: rate_limits?,
        validate_arguments: config.authorization.validate_arguments,
    })
}
