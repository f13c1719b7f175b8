//! `[audit]`: the audit log, one JSON line per authorization decision. Built into
//! [`AuditPlan`]: where it goes and what it holds.

use serde::{Deserialize, Serialize};

use super::settings::{Setting, s};
use super::values;
use super::{Config, Problems};
use crate::audit::Output;

/// The audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// `stdout`, `off`, or a file to append to.
    pub output: String,
    /// Opt-in fields: `arguments` (tool-call arguments).
    #[serde(deserialize_with = "values::list::deserialize")]
    pub include: Vec<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            output: "stdout".into(),
            include: Vec::new(),
        }
    }
}

/// This section's settings.
pub(super) const SETTINGS: &[Setting] = &[
    s(
        "audit.output",
        None,
        "`stdout`, `off`, path",
        "Where the audit log (one JSON line per authorization decision) goes.",
    ),
    s(
        "audit.include",
        None,
        "list",
        "Opt-in fields of audit records: `arguments` (tool-call arguments; off by default, as they may hold personal data).",
    ),
];

/// The audit log, built (the file is opened at start).
#[derive(Debug)]
pub struct AuditPlan {
    /// Where records go.
    pub output: Output,
    /// Whether tool-call arguments are recorded.
    pub arguments: bool,
}

pub(super) fn build(config: &Config, p: &mut Problems) -> Option<AuditPlan> {
    let audit = &config.audit;
    let before = p.len();
    for field in &audit.include {
        if field != "arguments" {
            p.push(
                "audit.include",
                format!("`{field}` is not an optional audit field (there is: arguments)"),
            );
        }
    }
    let output = Output::parse(&audit.output);
    if let Output::File(path) = &output
        && path
            .parent()
            .is_some_and(|d| !d.as_os_str().is_empty() && !d.is_dir())
    {
        p.push(
            "audit.output",
            format!("the directory of `{}` does not exist", path.display()),
        );
    }
    (p.len() == before).then(|| AuditPlan {
        output,
        arguments: audit.include.iter().any(|f| f == "arguments"),
    })
}
