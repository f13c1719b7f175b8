//! A stand-in identity provider on 127.0.0.1: a JWKS URL and an RFC 7662 introspection
//! endpoint whose answers, latency and availability a test controls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// The client credentials the introspection endpoint expects.
pub const INTROSPECTION_CLIENT_ID: &str = "gateway";
/// See [`INTROSPECTION_CLIENT_ID`].
pub const INTROSPECTION_CLIENT_SECRET: &str = "gateway-secret:with/odd chars";

#[derive(Default)]
struct IdpState {
    jwks: Mutex<Value>,
    tokens: Mutex<HashMap<String, Value>>,
    delay: Mutex<Duration>,
    down: AtomicBool,
    jwks_hits: AtomicUsize,
    introspection_hits: AtomicUsize,
    /// Other JSON documents by path (metadata at a well-known location, say).
    documents: Mutex<HashMap<String, Value>>,
    /// Paths asked for that are not the JWKS or introspection.
    asked: Mutex<Vec<String>>,
}

/// A running fake identity provider.
pub struct FakeIdp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    state: Arc<IdpState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeIdp {
    /// Starts one serving `jwks` (a JWK Set document).
    pub async fn start(jwks: Value) -> Self {
        let state = Arc::new(IdpState::default());
        *state.jwks.lock().unwrap() = jwks;
        let app = Router::new()
            .route("/jwks", get(serve_jwks))
            .route("/introspect", post(introspect))
            .fallback(serve_document)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeIdp { base, state, task }
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.base)
    }

    /// The introspection URL.
    pub fn introspection_url(&self) -> String {
        format!("{}/introspect", self.base)
    }

    /// Replaces the JWK Set.
    pub fn set_jwks(&self, jwks: Value) {
        *self.state.jwks.lock().unwrap() = jwks;
    }

    /// Sets what introspection answers for `token` (unknown tokens get `active: false`).
    pub fn set_introspection(&self, token: &str, answer: Value) {
        self.state
            .tokens
            .lock()
            .unwrap()
            .insert(token.to_owned(), answer);
    }

    /// Makes every answer wait this long.
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// Makes every endpoint answer 503 (true) or work again (false).
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Serves `document` as JSON at `path` (e.g. `/.well-known/openid-configuration`).
    pub fn set_document(&self, path: &str, document: Value) {
        self.state
            .documents
            .lock()
            .unwrap()
            .insert(path.to_owned(), document);
    }

    /// The paths asked for besides the JWKS and introspection, in order.
    pub fn asked(&self) -> Vec<String> {
        self.state.asked.lock().unwrap().clone()
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    /// How many introspection calls were made.
    pub fn introspection_hits(&self) -> usize {
        self.state.introspection_hits.load(Ordering::SeqCst)
    }
}

async fn pause(state: &IdpState) -> Option<Response> {
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    state
        .down
        .load(Ordering::SeqCst)
        .then(|| StatusCode::SERVICE_UNAVAILABLE.into_response())
}

async fn serve_document(State(state): State<Arc<IdpState>>, uri: axum::http::Uri) -> Response {
    let path = uri.path().to_owned();
    state.asked.lock().unwrap().push(path.clone());
    if let Some(r) = pause(&state).await {
        return r;
    }
    let document = state.documents.lock().unwrap().get(&path).cloned();
    match document {
        Some(d) => Json(d).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn serve_jwks(State(state): State<Arc<IdpState>>) -> Response {
    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = pause(&state).await {
        return r;
    }
    let jwks = state.jwks.lock().unwrap().clone();
    Json(jwks).into_response()
}

async fn introspect(
    State(state): State<Arc<IdpState>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    state.introspection_hits.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = pause(&state).await {
        return r;
    }
    if !client_authenticated(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error":"invalid_client"})),
        )
            .into_response();
    }
    let token = form.get("token").cloned().unwrap_or_default();
    let answer = state
        .tokens
        .lock()
        .unwrap()
        .get(&token)
        .cloned()
        .unwrap_or_else(|| json!({"active": false}));
    Json(answer).into_response()
}

fn client_authenticated(headers: &HeaderMap) -> bool {
    use base64::Engine as _;
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return false;
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return false;
    };
    let Some((id, secret)) = text.split_once(':') else {
        return false;
    };
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    decode(id).as_deref() == Some(INTROSPECTION_CLIENT_ID)
        && decode(secret).as_deref() == Some(INTROSPECTION_CLIENT_SECRET)
}
