//! `/healthz` (the process is up) and `/readyz` (the upstream answers and the verifier has its
//! keys).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mcpgate_guard::TokenVerifier;
use serde_json::json;
use tokio::sync::Mutex;

use crate::proxy::Gateway;

/// What readiness looks at.
pub struct Health {
    gateway: Arc<Gateway>,
    verifier: Option<Arc<dyn TokenVerifier>>,
    /// The last upstream probe, reused for a moment so that probes do not hammer it.
    last: Mutex<Option<(Instant, bool)>>,
}

impl Health {
    /// Readiness for `gateway` and `verifier`.
    pub fn new(gateway: Arc<Gateway>, verifier: Option<Arc<dyn TokenVerifier>>) -> Self {
        Health {
            gateway,
            verifier,
            last: Mutex::new(None),
        }
    }

    async fn upstream_reachable(&self) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, ok)) = *last
            && at.elapsed() < Duration::from_secs(2)
        {
            return ok;
        }
        let ok = self.gateway.upstream.ready().await;
        *last = Some((Instant::now(), ok));
        ok
    }
}

/// `GET /healthz`.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`.
pub async fn readyz(State(health): State<Arc<Health>>) -> Response {
    let upstream = health.upstream_reachable().await;
    let keys = health.verifier.as_ref().is_none_or(|v| v.is_ready());
    let ready = upstream && keys;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": { "upstream": upstream, "keys": keys },
    });
    (status, Json(body)).into_response()
}
