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
use axum::http::{Response, StatusCode};
use mcpgate_guard::challenge::Denial;
use mcpgate_guard::policy::lists::{Trim, Unfilterable, filter_response, list_kind};
use mcpgate_guard::policy::{Annotations, Caller, Decision, Kind, Policy, Target, Verdict};
use mcpgate_guard::{Principal, Subject};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::audit::{Audit, Record};
use crate::proxy::message::{self, Message};
use crate::proxy::target::Aim;

/// What is known about a tool from the upstream's lists.
struct ToolEntry {
    annotations: Annotations,
    tags: Vec<String>,
    validator: Option<Arc<jsonschema::Validator>>,
}

/// The enforcer.
pub struct Enforcer {
    policy: Policy,
    trim: Trim,
    validate_arguments: bool,
    tools: RwLock<HashMap<String, ToolEntry>>,
    audit: Arc<Audit>,
    anonymous: Arc<Principal>,
    /// `resource_metadata` for challenges.
    resource_metadata: String,
    /// Rate limits.
    limits: crate::ratelimit::RateLimits,
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
            tools: RwLock::new(HashMap::new()),
            audit,
            anonymous: Arc::new(Principal::builder(Subject::new("anonymous")).build()),
            resource_metadata,
            limits,
        }
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
            // Notifications of ungoverned methods and responses carry no target.
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
        let tools = self.tools.read().expect("tools lock");
        let entry = (aim.kind == Kind::Tool)
            .then(|| tools.get(&aim.name))
            .flatten();
        let no_tags = Vec::new();
        let target = Target {
            kind: aim.kind,
            name: &aim.name,
            annotations: entry.map(|e| &e.annotations),
            tags: entry.map_or(&no_tags, |e| &e.tags),
            known: entry.is_some(),
        };
        // Global conditions (again: they hold), trimming, then the rules — the one decision
        // function `policy explain` uses too.
        let decision = self.policy.decide_call(&self.trim, &caller, &target);
        let listed = entry.is_some();
        let validator = entry.and_then(|e| e.validator.clone());
        drop(tools);
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
            return Check::Respond(message::error_response(
                StatusCode::OK,
                message.id,
                message::INVALID_PARAMS,
                &format!("Invalid arguments for tool {}: {problem}", aim.name),
            ));
        }
        if let Err(limited) = self.limits.check(principal, address, aim.kind, &aim.name) {
            record.decision = "rate_limited";
            record.rule = Some(limited.rule.clone());
            crate::metrics::decision("rate_limited", method);
            self.audit.write(record);
            tracing::info!(target: "mcpgate::policy", subject = principal.subject.as_str(), rule = limited.rule, target = aim.name, "rate limit reached");
            let mut r = message::error_response(
                StatusCode::TOO_MANY_REQUESTS,
                message.id,
                message::RATE_LIMITED,
                &format!(
                    "Rate limit reached ({}); retry in {} s",
                    limited.rule,
                    limited.retry_after.as_secs().max(1)
                ),
            );
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                crate::server::retry_after(limited.retry_after),
            );
            return Check::Respond(r);
        }
        crate::metrics::decision("allow", method);
        Check::Forward(Pending {
            list: None,
            record: Some(record),
        })
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
            Verdict::Challenge { scopes } => Denial::InsufficientScope(scopes.clone())
                // The policy's scopes already include the required ones.
                .into_response(&self.resource_metadata, &[])
                .map(Body::from),
            Verdict::Hide => match aim {
                Some(aim) => not_found(message.id, aim.kind, &aim.name),
                None => forbidden(message.id),
            },
            Verdict::Forbid => forbidden(message.id),
            Verdict::Allow => message::error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                message.id,
                message::INTERNAL_ERROR,
                "Internal error",
            ),
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
        if !learnt.is_empty() {
            let mut tools = self.tools.write().expect("tools lock");
            for (name, facts) in learnt {
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
    pub fn observe(&self, notification: &Message<'_>) {
        if notification.kind == message::Kind::Notification
            && notification.method.as_deref() == Some("notifications/tools/list_changed")
        {
            self.tools.write().expect("tools lock").clear();
            tracing::debug!(target: "mcpgate::policy", "tool list changed: annotations will be learnt again");
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
    let arguments = arguments_of(body)
        .map_err(|_| "the arguments cannot be read (a number out of range, say)".to_owned())?;
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

fn forbidden(id: Option<&RawValue>) -> Response<Body> {
    message::error_response(
        StatusCode::FORBIDDEN,
        id,
        message::FORBIDDEN,
        "Forbidden: the gateway's authorization policy does not allow this request",
    )
}

/// What the upstream would answer for a target that does not exist.
fn not_found(id: Option<&RawValue>, kind: Kind, name: &str) -> Response<Body> {
    let (code, text) = match kind {
        Kind::Tool => (message::INVALID_PARAMS, format!("Unknown tool: {name}")),
        Kind::Prompt => (message::INVALID_PARAMS, format!("Unknown prompt: {name}")),
        Kind::Resource | Kind::ResourceTemplate => (
            message::RESOURCE_NOT_FOUND,
            format!("Resource not found: {name}"),
        ),
    };
    message::error_response(StatusCode::OK, id, code, &text)
}
