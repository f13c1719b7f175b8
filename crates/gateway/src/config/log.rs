//! `[log]` and `[metrics]`: what the gateway reports about itself.

use serde::{Deserialize, Serialize};

use super::settings::{Setting, s};
use super::{Config, Problems};
pub use crate::logging::LogFormat;

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `mcpgate=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// `/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve Prometheus metrics at `/metrics`.
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true }
    }
}

/// This section's settings.
pub(super) const SETTINGS: &[Setting] = &[
    s(
        "metrics.enabled",
        None,
        "bool",
        "Serve Prometheus metrics at `/metrics` (outside authentication, like `/healthz`).",
    ),
    s("log.format", None, "`text`, `json`", "Log format."),
    s(
        "log.level",
        None,
        "filter",
        "Log filter, e.g. `info` or `mcpgate=debug,info`. `RUST_LOG` overrides it.",
    ),
];

/// Logging and metrics, built.
#[derive(Debug, Clone)]
pub struct LogPlan {
    /// Text or JSON lines.
    pub format: LogFormat,
    /// The filter (checked).
    pub level: String,
    /// Whether `/metrics` is served.
    pub metrics: bool,
}

pub(super) fn build(config: &Config, p: &mut Problems) -> Option<LogPlan> {
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        p.push(
            "log.level",
            format!("`{}` is not a valid filter: {e}", config.log.level),
        );
        return None;
    }
    Some(LogPlan {
        format: config.log.format,
        level: config.log.level.clone(),
        metrics: config.metrics.enabled,
    })
}
