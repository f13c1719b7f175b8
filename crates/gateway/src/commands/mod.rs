//! What each subcommand does; `main.rs` only parses the command line and picks one.

pub mod admin;
pub mod quickstart;

use std::process::ExitCode;

use crate::cli::{self, ServeArgs};
use crate::config::{Config, LoadError, Plan};
use crate::{logging, server};

/// Loads the configuration for `args` (flags > environment > file > defaults) and builds it,
/// or says why not.
pub fn load(args: &ServeArgs) -> Result<(Config, Plan), ExitCode> {
    let fail = |e: LoadError| {
        eprintln!("mcpgate: configuration error:\n{e}");
        ExitCode::from(2)
    };
    let config = Config::load_unchecked(args.config.as_deref(), args.overrides()).map_err(fail)?;
    let plan = Plan::build(&config).map_err(|e| fail(LoadError::Invalid(e)))?;
    Ok((config, plan))
}

/// `mcpgate check-config`.
pub fn check_config(args: ServeArgs) -> ExitCode {
    let (config, plan) = match load(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match toml::to_string_pretty(&config) {
        Ok(text) => {
            println!("# effective configuration (secrets masked)\n{text}");
            for warning in plan.warnings() {
                eprintln!("warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcpgate: cannot print the configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `mcpgate policy explain`.
pub fn explain(args: cli::ExplainArgs) -> ExitCode {
    use mcpgate_guard::policy::{Annotations, Caller, Kind, Target, Verdict};
    // Only the policy's part of the configuration matters here (its problems are reported
    // below): a policy file can be explained before the rest of the deployment exists.
    let config = match Config::load_unchecked(args.serve.config.as_deref(), args.serve.overrides())
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mcpgate: configuration error:\n{e}");
            return ExitCode::from(2);
        }
    };
    let fail = |msg: String| {
        eprintln!("mcpgate: {msg}");
        ExitCode::from(2)
    };
    let claims: serde_json::Map<String, serde_json::Value> =
        match std::fs::read(&args.subject_claims)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                return fail(format!(
                    "--subject-claims {}: {e}",
                    args.subject_claims.display()
                ));
            }
        };
    let principal = match mcpgate_guard::Principal::from_claims(claims) {
        Ok(p) => p,
        Err(e) => return fail(format!("--subject-claims: {e}")),
    };
    let (kind, name, method) = match (
        &args.tool,
        &args.resource,
        &args.resource_template,
        &args.prompt,
    ) {
        (Some(t), ..) => (Kind::Tool, t.clone(), "tools/call"),
        (_, Some(r), ..) => (Kind::Resource, r.clone(), "resources/read"),
        (_, _, Some(t), _) => (Kind::ResourceTemplate, t.clone(), "completion/complete"),
        (_, _, _, Some(p)) => (Kind::Prompt, p.clone(), "prompts/get"),
        _ => {
            return fail(
                "name a target: --tool, --resource, --resource-template or --prompt".into(),
            );
        }
    };
    let annotations = match &args.annotations {
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => Some(Annotations::from_json(Some(&v))),
            Err(e) => return fail(format!("--annotations: {e}")),
        },
        None => None,
    };
    let built = match crate::config::policy::build_alone(&config) {
        Ok(p) => p,
        Err(e) => {
            return fail(
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
    };
    let (policy, trim) = (built.policy, built.trim);
    let method = args.method.as_deref().unwrap_or(method);
    let caller = Caller {
        principal: &principal,
        method,
    };
    // Resource URIs are decided in their normal spelling, as the gateway does.
    let name = match kind {
        Kind::Resource => mcpgate_guard::uri::normalize(&name).map(|n| n.into_owned()),
        Kind::ResourceTemplate => {
            mcpgate_guard::uri::normalize_template(&name).map(|n| n.into_owned())
        }
        Kind::Tool | Kind::Prompt => Ok(name),
    };
    let name = match name {
        Ok(n) => n,
        Err(e) => {
            println!("decision: refused before any rule (the gateway answers -32602: {e})");
            return ExitCode::SUCCESS;
        }
    };
    let target = Target {
        kind,
        name: &name,
        annotations: annotations.as_ref(),
        tags: &args.tags,
        known: annotations.is_some() || !args.tags.is_empty(),
    };
    let (decision, steps) = policy.explain_call(&trim, &caller, &target);
    let verdict = match &decision.verdict {
        Verdict::Challenge { scopes } => format!(
            "challenge (scopes: {})",
            mcpgate_guard::Scopes::from_iter(scopes.iter().cloned()).to_space_delimited()
        ),
        other => other.as_str().to_owned(),
    };
    println!("decision: {verdict}");
    println!("decided by: {}", decision.rule);
    if annotations.is_none() && kind == Kind::Tool && policy.uses_annotations() {
        println!(
            "(annotations not given: rules that select by annotations are treated as the gateway treats a tool it has not seen listed yet)"
        );
    }
    for step in steps {
        println!("  {}: {}", step.rule, step.outcome);
    }
    ExitCode::SUCCESS
}

/// `mcpgate serve`.
pub async fn serve(args: ServeArgs) -> ExitCode {
    let plan = match load(&args) {
        Ok((_, plan)) => plan,
        Err(code) => return code,
    };
    logging::init(plan.log.format, &plan.log.level);
    server::run(plan).await
}
