//! Authorization policy and trimming, enforced on `/mcp` for any upstream.
//!
//! Before a message goes upstream: the global conditions, then, for a request naming a target
//! (`tools/call`, `resources/read`, `resources/subscribe`, `resources/unsubscribe`,
//! `prompts/get`, `completion/complete`), trimming and the policy — decided on the validated
//! body (the 2026-07-28 headers have already been checked against it). A hidden target is
//! answered as if it did not exist; a challenged one with `403 insufficient_scope` naming every
//! scope the operation needs. With `validate_arguments`, a tool call's arguments are checked
//! against the tool's `inputSchema`.
//!
//! After: list results (`tools/list`, `resources/list`, `resources/templates/list`,
//! `prompts/list`, JSON or SSE, page by page) lose what the caller may not see; on the
//! 2026-07-28 revision they are marked `cacheScope: "private"`. Tool annotations, tags and
//! schemas are learnt from every `tools/list` answer and forgotten on
//! `notifications/tools/list_changed`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::http::Response;
use mcpgate_guard::challenge::Denial;
use mcpgate_guard::policy::lists::{Trim, Unfilterable, filter_response, list_kind};
use mcpgate_guard::policy::{Annotations, Caller, Decision, Kind, Policy, Target, Verdict};
use mcpgate_guard::{Principal, Subject};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::audit::{Audit, Record};
use crate::proxy::message::{self, Message};
use crate::proxy::target::Aim;
use crate::refusal::Refusal;
use crate::session::Owner;

/// Most principals whose tool lists are remembered at once (the least recently used go).
const MAX_LEARNING_PRINCIPALS: u64 = 10_000;
/// Most tools remembered per principal.
const MAX_TOOLS: usize = 10_000;

/// What is known about a tool from the upstream's lists.
struct ToolEntry {
    annotations: Annotations,
    tags: Vec<String>,
    validator: Option<Arc<jsonschema::Validator>>,
}

/// Whose tools a table of what was learnt holds: the principal's identity as [`Owner`] reads
/// it, as a keyed SipHash-1-3 digest (128 bits, the key drawn once per process, each part
/// length-prefixed). In process only — sessions, which replicas share, are bound by `Owner`'s
/// SHA-256 — so it can be cheap: it is computed on every governed call that reads what was
/// learnt.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Learner(u128);

impl Learner {
    fn of(principal: &Principal) -> Self {
        use siphasher::sip128::Hasher128 as _;
        use std::hash::Hasher as _;
        static KEY: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
        let key = KEY.get_or_init(|| {
            let mut key = [0u8; 16];
            aws_lc_rs::rand::fill(&mut key).expect("the system's random source works");
            key
        });
        let (issuer, kind, subject) = Owner::identity(principal);
        let mut hasher = siphasher::sip128::SipHasher13::new_with_key(key);
        hasher.write_usize(issuer.len());
        hasher.write(issuer.as_bytes());
        hasher.write_u8(kind);
        hasher.write_usize(subject.len());
        hasher.write(subject.as_bytes());
        Learner(hasher.finish128().as_u128())
    }
}

/// The enforcer.
pub struct Enforcer {
    policy: Policy,
    trim: Trim,
    validate_arguments: bool,
    /// What each principal's lists said about tools (each principal learns from its own
    /// lists: per-session children and upstreams that tailor tools per user list different
    /// things).
    tools: moka::sync::Cache<Learner, Arc<RwLock<HashMap<String, ToolEntry>>>>,
    audit: Arc<Audit>,
    anonymous: Arc<Principal>,
    /// `resource_metadata` for challenges.
    resource_metadata: String,
    /// Rate limits.
    limits: crate::ratelimit::RateLimits,
    /// How scopes are named in step-up challenges.
    scope_names: mcpgate_guard::challenge::ScopeNames,
}

impl std::fmt::Debug for Enforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enforcer")
            .field("rules", &self.policy.len())
            .finish_non_exhaustive()
    }
}

/// What to do with a message.
pub enum Check {
    /// Forward it; `list` is set when the answer is a list to filter.
    Forward(Pending),
    /// Answer the client with this instead.
    Respond(Response<Body>),
}

/// A forwarded message's bookkeeping, for the answer and the audit record.
pub struct Pending {
    /// A list to filter in the answer.
    pub list: Option<Kind>,
    /// The audit record, completed when the answer comes.
    pub record: Option<Record>,
}

impl Enforcer {
    /// An enforcer.
    pub fn new(
        policy: Policy,
        trim: Trim,
        validate_arguments: bool,
        audit: Arc<Audit>,
        resource_metadata: String,
        limits: crate::ratelimit::RateLimits,
    ) -> Self {
        Enforcer {
            policy,
            trim,
            validate_arguments,
            tools: moka::sync::Cache::builder()
                .max_capacity(MAX_LEARNING_PRINCIPALS)
                .time_to_idle(std::time::Duration::from_secs(3600))
                .build(),
            audit,
            anonymous: Arc::new(Principal::builder(Subject::new("anonymous")).build()),
            resource_metadata,
            limits,
            scope_names: Default::default(),
        }
    }

    /// Names scopes in step-up challenges as clients must request them (`auth.scope_map`).
    #[must_use]
    pub fn with_scope_names(mut self, names: mcpgate_guard::challenge::ScopeNames) -> Self {
        self.scope_names = names;
        self
    }

    /// Whether what lists say about tools is used (and so learnt).
    fn learns(&self) -> bool {
        self.validate_arguments || self.policy.uses_annotations()
    }

    /// Whether anything is enforced at all (otherwise the gateway skips every step).
    pub fn is_active(&self) -> bool {
        self.policy.has_rules()
            || !self.trim.is_empty()
            || self.validate_arguments
            || self.audit.enabled()
            || self.policy.has_global()
            || !self.limits.is_empty()
    }

    /// Checks a client message before it goes upstream. `aim` is the target of a governed
    /// request, already read strictly ([`crate::proxy::target::aim`]).
    pub fn check(
        &self,
        who: Option<&Arc<Principal>>,
        address: Option<std::net::IpAddr>,
        message: &Message<'_>,
        aim: Option<&Aim>,
        body: &[u8],
        session: Option<&str>,
    ) -> Check {
        let owner = who.unwrap_or(&self.anonymous);
        let principal: &Principal = owner;
        let (Some(method), message::Kind::Request) = (message.method.as_deref(), message.kind)
        else {
            // Notifications and the client's responses carry no target, but the global
            // conditions apply to them too: a refused subject sends nothing upstream.
            let method = message.method.as_deref().unwrap_or("(response)");
            let caller = Caller { principal, method };
            let global = self.policy.check_global(&caller);
            if !global.allowed() {
                let mut record = self.audit.record(owner, session, method);
                record.decide(&global);
                self.audit.write(record);
                crate::metrics::decision(global.verdict.as_str(), method);
                return Check::Respond(self.refuse(&global, message, None));
            }
            return Check::Forward(Pending {
                list: None,
                record: None,
            });
        };
        let caller = Caller { principal, method };
        let mut record = self.audit.record(owner, session, method);
        let global = self.policy.check_global(&caller);
        if !global.allowed() {
            record.decide(&global);
            self.audit.write(record);
            crate::metrics::decision(global.verdict.as_str(), method);
            return Check::Respond(self.refuse(&global, message, None));
        }
        if let Some(kind) = list_kind(method) {
            record.target = Some(kind.as_str().to_owned() + "s");
            return Check::Forward(Pending {
                list: Some(kind),
                record: Some(record),
            });
        }
        let Some(aim) = aim else {
            crate::metrics::decision("allow", method);
            return Check::Forward(Pending {
                list: None,
                record: Some(record),
            });
        };
        record.target = Some(aim.name.clone());
        let (decision, listed, validator) = self.decide_on(&caller, aim);
        record.decide(&decision);
        if !decision.allowed() {
            crate::metrics::decision(record.decision, method);
            self.audit.write(record);
            return Check::Respond(self.refuse(&decision, message, Some(aim)));
        }
        if self.validate_arguments
            && aim.kind == Kind::Tool
            && method == "tools/call"
            && let Err(problem) = validate(listed, validator.as_deref(), body)
        {
            record.decision = "invalid";
            crate::metrics::decision("invalid", method);
            self.audit.write(record);
            let refusal = Refusal::InvalidParams(format!(
                "Invalid arguments for tool {}: {problem}",
                aim.name
            ));
            return Check::Respond(refusal.response(message.id));
        }
        if let Err(limited) = self.limits.check(principal, address, aim.kind, &aim.name) {
            record.decision = "rate_limited";
            record.rule = Some(limited.rule.clone());
            crate::metrics::decision("rate_limited", method);
            self.audit.write(record);
            tracing::info!(target: "mcpgate::policy", subject = principal.subject.as_str(), rule = limited.rule, target = aim.name, "rate limit reached");
            let refusal = Refusal::RateLimited {
                rule: limited.rule.clone(),
                wait: limited.retry_after,
            };
            return Check::Respond(refusal.response(message.id));
        }
        crate::metrics::decision("allow", method);
        Check::Forward(Pending {
            list: None,
            record: Some(record),
        })
    }

    /// The decision on `aim` for `caller` — global conditions, trimming, then the rules: the
    /// one decision function `policy explain` uses too — with what was learnt about the tool:
    /// whether it was listed, and its argument validator.
    fn decide_on(
        &self,
        caller: &Caller<'_>,
        aim: &Aim,
    ) -> (Decision, bool, Option<Arc<jsonschema::Validator>>) {
        // What was learnt about tools matters only to rules and expressions that read
        // annotations or tags, and to argument validation.
        let table = self
            .learns()
            .then(|| self.tools.get(&Learner::of(caller.principal)))
            .flatten();
        let tools = table.as_ref().map(|t| t.read().expect("tools lock"));
        let entry = (aim.kind == Kind::Tool)
            .then(|| tools.as_ref().and_then(|t| t.get(&aim.name)))
            .flatten();
        let no_tags = Vec::new();
        let target = Target {
            kind: aim.kind,
            name: &aim.name,
            annotations: entry.map(|e| &e.annotations),
            tags: entry.map_or(&no_tags, |e| &e.tags),
            known: entry.is_some(),
        };
        let decision = self.policy.decide_call(&self.trim, caller, &target);
        (
            decision,
            entry.is_some(),
            entry.and_then(|e| e.validator.clone()),
        )
    }

    /// The scopes a step-up rule asks for `aim` (requested with `method`) from a caller
    /// without any (the anonymous caller), for the challenge of a request without a token;
    /// empty when no rule would step up.
    pub fn step_up_scopes(&self, aim: &Aim, method: &str) -> Vec<mcpgate_guard::Scope> {
        let caller = Caller {
            principal: &self.anonymous,
            method,
        };
        match self.decide_on(&caller, aim).0.verdict {
            Verdict::Challenge { scopes } => scopes,
            _ => Vec::new(),
        }
    }

    /// Forgets rate-limit allowances that are full again.
    pub fn forget_idle(&self) {
        self.limits.forget_idle();
    }

    /// The answer to a refusal: "not found" for a hidden target, a step-up challenge, or a
    /// plain 403.
    fn refuse(
        &self,
        decision: &Decision,
        message: &Message<'_>,
        aim: Option<&Aim>,
    ) -> Response<Body> {
        match &decision.verdict {
            Verdict::Challenge { scopes } => {
                // The challenge header as guard makes it (the policy's scopes already include
                // the required ones); the body is a JSON-RPC error for the request, like every
                // other refusal of the gateway's.
                let scopes = self.scope_names.advertise(scopes);
                let denial = Denial::InsufficientScope(scopes.clone());
                let wanted = mcpgate_guard::Scopes::from_iter(scopes.iter().cloned());
                let mut r =
                    Refusal::InsufficientScope(wanted.to_space_delimited()).response(message.id);
                if let Some(challenge) = denial.challenge(&self.resource_metadata, &[]) {
                    r.headers_mut()
                        .insert(axum::http::header::WWW_AUTHENTICATE, challenge);
                }
                r
            }
            Verdict::Hide => match aim {
                Some(aim) => Refusal::Hidden {
                    kind: aim.kind,
                    name: aim.name.clone(),
                }
                .response(message.id),
                None => Refusal::Forbidden.response(message.id),
            },
            Verdict::Forbid => Refusal::Forbidden.response(message.id),
            Verdict::Allow => Refusal::Internal("Internal error").response(message.id),
        }
    }

    /// Filters a list answer for the caller (and learns what it says about tools).
    /// `Ok(None)`: an error answer, to pass on as it is; an answer that cannot be filtered is
    /// an error, never passed on.
    pub fn filter(
        &self,
        kind: Kind,
        who: Option<&Principal>,
        answer: &[u8],
        private: bool,
    ) -> Result<Option<Vec<u8>>, Unfilterable> {
        let principal: &Principal = who.unwrap_or(&self.anonymous);
        let method = match kind {
            Kind::Tool => "tools/list",
            Kind::Resource => "resources/list",
            Kind::ResourceTemplate => "resources/templates/list",
            Kind::Prompt => "prompts/list",
        };
        let caller = Caller { principal, method };
        let mut learnt = Vec::new();
        let out = filter_response(
            &self.policy,
            &self.trim,
            Some(&caller),
            kind,
            answer,
            private,
            |name, facts| learnt.push((name.to_owned(), facts)),
        );
        if !learnt.is_empty() && out.is_ok() && self.learns() {
            let table = self.tools.get_with(Learner::of(principal), || {
                Arc::new(RwLock::new(HashMap::new()))
            });
            let mut tools = table.write().expect("tools lock");
            for (name, facts) in learnt {
                if tools.len() >= MAX_TOOLS && !tools.contains_key(&name) {
                    break;
                }
                let validator = if self.validate_arguments {
                    facts
                        .input_schema
                        .as_ref()
                        .and_then(|s| serde_json::from_str::<Value>(s.get()).ok())
                        .and_then(|s| jsonschema::validator_for(&s).ok())
                        .map(Arc::new)
                } else {
                    None
                };
                tools.insert(
                    name,
                    ToolEntry {
                        annotations: facts.annotations,
                        tags: facts.tags,
                        validator,
                    },
                );
            }
        }
        out
    }

    /// Sees a notification from the upstream: a changed tool list makes what was learnt
    /// about tools stale. Only a real `notifications/tools/list_changed` message counts — not
    /// a tool result that merely contains the words.
    /// It concerns the principal on whose stream it came (`who`).
    pub fn observe(&self, who: Option<&Principal>, notification: &Message<'_>) {
        if notification.kind == message::Kind::Notification
            && notification.method.as_deref() == Some("notifications/tools/list_changed")
        {
            let principal: &Principal = who.unwrap_or(&self.anonymous);
            self.tools.invalidate(&Learner::of(principal));
            tracing::debug!(target: "mcpgate::policy", subject = principal.subject.as_str(), "tool list changed: annotations will be learnt again");
        }
    }

    /// The audit log.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }
}

/// A tool call's arguments, for an audit record that includes them.
pub fn arguments(body: &[u8]) -> Option<Value> {
    arguments_of(body).ok()
}

/// A tool call's arguments (`{}` when it has none); an error when they cannot be read — a
/// number out of range, say.
fn arguments_of(body: &[u8]) -> Result<Value, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct P {
        params: Option<Params>,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        arguments: Option<Value>,
    }
    Ok(serde_json::from_slice::<P>(body)?
        .params
        .and_then(|p| p.arguments)
        .unwrap_or_else(|| Value::Object(Default::default())))
}

/// A tool call's arguments read for validation, refusing what another reader could read
/// otherwise: a member given twice or in another spelling (at any depth), or a number that
/// cannot be held exactly (more than 17 significant digits, an integer beyond 64 bits).
fn strict_arguments(body: &[u8]) -> Result<Value, String> {
    #[derive(serde::Deserialize)]
    struct P<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(borrow)]
        arguments: Option<&'a RawValue>,
    }
    let unreadable = || "the arguments cannot be read (a number out of range, say)".to_owned();
    let p: P<'_> = serde_json::from_slice(body).map_err(|_| unreadable())?;
    let Some(raw) = p.params.and_then(|p| p.arguments) else {
        return Ok(Value::Object(Default::default()));
    };
    unambiguous(raw)?;
    serde_json::from_str(raw.get()).map_err(|_| unreadable())
}

fn unambiguous(raw: &RawValue) -> Result<(), String> {
    let text = raw.get().trim_start();
    match text.as_bytes().first() {
        Some(b'{') => {
            let members: Vec<(std::borrow::Cow<'_, str>, &RawValue)> =
                serde_json::from_str::<RawObject<'_>>(text)
                    .map_err(|_| "the arguments cannot be read".to_owned())?
                    .0;
            let mut seen = std::collections::HashSet::with_capacity(members.len());
            for (key, value) in &members {
                if !seen.insert(fold(key)) {
                    return Err(format!(
                        "the member `{}` of the arguments is given twice (or in another spelling)",
                        crate::logging::printable(&key.chars().take(64).collect::<String>())
                    ));
                }
                unambiguous(value)?;
            }
            Ok(())
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)
                .map_err(|_| "the arguments cannot be read".to_owned())?;
            items.into_iter().try_for_each(unambiguous)
        }
        Some(b'-' | b'0'..=b'9') if !exact_number(text.trim_end()) => Err(
            "a number in the arguments cannot be read exactly (more than 17 significant digits)"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// A member name as case-insensitive readers see it.
fn fold(key: &str) -> String {
    key.chars()
        .map(|c| mcpgate_guard::policy::lists::fold_char(c).unwrap_or(c))
        .collect()
}

/// Whether a JSON number literal is read without losing precision.
fn exact_number(literal: &str) -> bool {
    if !literal.contains(['.', 'e', 'E']) {
        return literal.parse::<i64>().is_ok() || literal.parse::<u64>().is_ok();
    }
    let mantissa = literal.split(['e', 'E']).next().unwrap_or_default();
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    significant.len() <= 17
}

/// An object's members in order, values raw.
struct RawObject<'a>(Vec<(std::borrow::Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    members.push((k, map.next_value::<&'de RawValue>()?));
                }
                Ok(RawObject(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// Checks a tool call's arguments against the tool's `inputSchema`. A call that cannot be
/// checked — a tool never seen listed, a schema that cannot be used, arguments that cannot be
/// read — is refused, never let through unchecked.
fn validate(
    listed: bool,
    validator: Option<&jsonschema::Validator>,
    body: &[u8],
) -> Result<(), String> {
    if !listed {
        return Err(
            "the gateway has not seen this tool listed yet, so its arguments cannot be checked; list tools (tools/list) first".into(),
        );
    }
    let Some(validator) = validator else {
        return Err("the tool's inputSchema cannot be used to check arguments".into());
    };
    let arguments = strict_arguments(body)?;
    let problems: Vec<String> = validator
        .iter_errors(&arguments)
        .take(5)
        .map(|e| {
            // Where and which schema keyword; never the value (it may be personal).
            let at = format!("arguments{}", e.instance_path());
            match e.kind() {
                jsonschema::error::ValidationErrorKind::Required { property } => {
                    format!("{at}: missing required property {property}")
                }
                _ => {
                    let keyword = e.schema_path().to_string();
                    let keyword = keyword.rsplit('/').next().unwrap_or_default().to_owned();
                    format!("{at}: does not satisfy `{keyword}`")
                }
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Result<Value, String> {
        strict_arguments(
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{text}}}}}"#)
                .as_bytes(),
        )
    }

    #[test]
    fn arguments_another_reader_could_read_otherwise_are_refused() {
        assert!(args(r#"{"text":"a","n":10}"#).is_ok());
        assert!(args(r#"{"text":1,"text":"a"}"#).is_err());
        assert!(args(r#"{"text":"a","Text":1}"#).is_err());
        assert!(args(r#"{"a":{"b":1,"b":2}}"#).is_err());
        assert!(args(r#"{"a":[{"x":1,"X":2}]}"#).is_err());
        assert!(args(r#"{"n":10.0000000000000000001}"#).is_err());
        assert!(args(r#"{"n":123456789012345678901234}"#).is_err());
        assert!(args(r#"{"n":1e400}"#).is_err());
        // Precise enough, however written.
        assert!(args(r#"{"n":10.000000000000000000}"#).is_ok());
        assert!(args(r#"{"n":0.1,"m":-2.5e-3,"k":18446744073709551615}"#).is_ok());
    }
}
