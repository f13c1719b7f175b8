//! `/metrics`: Prometheus counters for authorization decisions, answers and the audit log.

use std::sync::OnceLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder (once per process).
pub fn install() {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (tests): then counts go there.
        let _ = metrics::set_global_recorder(recorder);
        handle
    });
    // The decision counters are registered once (a label lookup per request costs more than
    // the rest of the audit path); they are exported from the start, at zero.
    DECISION_COUNTERS.get_or_init(|| {
        DECISIONS
            .iter()
            .flat_map(|d| {
                METHODS.iter().chain(["other"].iter()).map(move |m| {
                    metrics::counter!("mcpgate_policy_decisions_total", "decision" => *d, "method" => *m)
                })
            })
            .collect()
    });
}

const DECISIONS: [&str; 7] = [
    "allow",
    "hide",
    "challenge",
    "invalid",
    "filter",
    "rate_limited",
    "deny",
];

static DECISION_COUNTERS: OnceLock<Vec<metrics::Counter>> = OnceLock::new();

/// Methods are client input: only MCP's own become label values.
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "subscriptions/listen",
];

fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

/// Counts a decision.
pub fn decision(decision: &str, method: &str) {
    let d = DECISIONS
        .iter()
        .position(|d| *d == decision)
        .unwrap_or(DECISIONS.len() - 1);
    let decision = DECISIONS[d];
    if let Some(counters) = DECISION_COUNTERS.get() {
        let m = METHODS
            .iter()
            .position(|m| *m == method)
            .unwrap_or(METHODS.len());
        counters[d * (METHODS.len() + 1) + m].increment(1);
        return;
    }
    metrics::counter!(
        "mcpgate_policy_decisions_total",
        "decision" => decision,
        "method" => method_label(method)
    )
    .increment(1);
}

/// Counts an audit record that could not be queued.
pub fn audit_dropped() {
    metrics::counter!("mcpgate_audit_records_dropped_total").increment(1);
}

/// Counts a call refused by a rate limit (`rule` is the operator's rule name).
pub fn rate_limited(rule: &str) {
    metrics::counter!("mcpgate_rate_limited_total", "rule" => rule.to_owned()).increment(1);
}

/// Counts a request refused for lack of valid credentials from an address that has been
/// refused too often.
pub fn unauthenticated_limited() {
    metrics::counter!("mcpgate_unauthenticated_limited_total").increment(1);
}

/// Counts a connection refused because of a limit (`limit`: `total` or `per_address`).
pub fn connection_refused(limit: &'static str) {
    metrics::counter!("mcpgate_connections_refused_total", "limit" => limit).increment(1);
}

/// Counts an upstream reply (or stream event) refused because all requests together held the
/// most reply bytes allowed (`upstream.max_response_bytes_in_flight`).
pub fn replies_over_budget() {
    metrics::counter!("mcpgate_upstream_replies_over_budget_total").increment(1);
}

/// `GET /metrics`.
pub async fn render() -> Response {
    let body = HANDLE
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}
