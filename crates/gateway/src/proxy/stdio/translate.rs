//! A session client (≤ 2025-11-25) in front of a stdio child that only speaks 2026-07-28.
//!
//! The child has no `initialize`: the gateway answers it from `server/discover`, adds the
//! revision's `_meta` (protocol version, client info and capabilities from the client's
//! `initialize`, the level from `logging/setLevel`) to every request, answers `ping`,
//! `logging/setLevel` and `resources/(un)subscribe` itself, turns the child's
//! `input_required` results into requests to the client on the response stream and sends the
//! original request again with the client's answers, and feeds the GET stream from a
//! `subscriptions/listen` request at the child.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Response, StatusCode};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use super::send_failure;
use super::streams::{CancelGuard, Relay, answer_bytes, respond, sse_event, sse_response};
use crate::jsonrpc::json_response;
use crate::refusal::Refusal;
use crate::upstream::stdio::Bound;
use crate::upstream::stdio::conn::{Delivery, SUBSCRIPTION_ID};
use crate::upstream::stdio::json::{RawObject, put_meta, raw, strip_meta};
use crate::upstream::stdio::{
    Child, Generation, META_CAPABILITIES, META_CLIENT, META_LOG_LEVEL, META_SERVER, META_VERSION,
    Session, StdioUpstream, Translation, random_hex,
};

/// Session revisions the gateway can answer `initialize` with, newest first.
const LEGACY_REVISIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// After a child refused `initialize`: when it answers `server/discover`, the gateway serves
/// the session itself. Returns the `initialize` answer (with the client's id) and its result.
pub(super) async fn initialize(
    up: &StdioUpstream,
    child: &Child,
    needs_probe: bool,
    params: &RawObject,
    id: Option<&RawValue>,
) -> Option<(RawObject, Box<RawValue>)> {
    // A per-session child has not been asked yet; a shared one was asked when it started.
    if needs_probe {
        up.probe(child, Some(&probe_meta(params))).await;
    }
    let Generation::Stateless(discovered) = StdioUpstream::generation(child) else {
        return None;
    };
    let discovered = RawObject::parse(discovered.get().as_bytes()).unwrap_or_default();
    let asked = params.str("protocolVersion").unwrap_or_default();
    let version = if LEGACY_REVISIONS.contains(&asked.as_str()) {
        asked
    } else {
        LEGACY_REVISIONS[0].to_owned()
    };
    let server_info = discovered
        .object("_meta")
        .and_then(|m| m.get(META_SERVER).map(ToOwned::to_owned))
        .unwrap_or_else(|| raw(&serde_json::json!({"name": "mcp-server", "version": "unknown"})));
    let mut result = RawObject(vec![
        ("protocolVersion".into(), raw(&version)),
        (
            "capabilities".into(),
            discovered
                .get("capabilities")
                .map_or_else(|| raw(&serde_json::json!({})), ToOwned::to_owned),
        ),
        ("serverInfo".into(), server_info),
    ]);
    if let Some(instructions) = discovered.get("instructions") {
        result.set("instructions", instructions.to_owned());
    }
    let result = result.to_raw();
    child
        .translated
        .store(true, std::sync::atomic::Ordering::SeqCst);
    tracing::info!(target: "mcpgate::stdio", pid = child.conn.pid(), "upstream command speaks only 2026-07-28; session clients are translated");
    let answer = super::answer(id, result.clone());
    Some((answer, result))
}

/// `_meta` for a `server/discover` probe on behalf of a session client (its `initialize`
/// params).
pub(super) fn probe_meta(params: &RawObject) -> RawObject {
    RawObject(vec![
        (
            META_CAPABILITIES.into(),
            params
                .get("capabilities")
                .map_or_else(|| raw(&serde_json::json!({})), ToOwned::to_owned),
        ),
        (
            META_CLIENT.into(),
            params.get("clientInfo").map_or_else(
                || raw(&serde_json::json!({"name": "mcpgate"})),
                ToOwned::to_owned,
            ),
        ),
    ])
}

/// Whether a probed child lists no revision with `initialize` among its supported versions.
pub(super) fn stateless_only(child: &Child) -> bool {
    let Generation::Stateless(discovered) = StdioUpstream::generation(child) else {
        return false;
    };
    let versions: Vec<String> = RawObject::parse(discovered.get().as_bytes())
        .and_then(|d| d.get("supportedVersions").map(|v| v.get().to_owned()))
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default();
    !versions.is_empty()
        && !versions
            .iter()
            .any(|v| LEGACY_REVISIONS.contains(&v.as_str()))
}

/// The translation state of a session opened with `params` (its `initialize` params).
pub(super) fn translation(params: &RawObject) -> Translation {
    let meta = vec![
        (META_VERSION.to_owned(), raw(&"2026-07-28")),
        (
            META_CAPABILITIES.to_owned(),
            params
                .get("capabilities")
                .map_or_else(|| raw(&serde_json::json!({})), ToOwned::to_owned),
        ),
        (
            META_CLIENT.to_owned(),
            params.get("clientInfo").map_or_else(
                || raw(&serde_json::json!({"name": "mcp-client"})),
                ToOwned::to_owned,
            ),
        ),
    ];
    Translation {
        meta,
        ..Translation::default()
    }
}

/// Adds the session's `_meta` to a request (keeping what the client put there).
fn with_meta(t: &Translation, mut message: RawObject) -> RawObject {
    let existing = crate::upstream::stdio::json::meta(&message).unwrap_or_default();
    for (key, value) in &t.meta {
        if existing.get(key).is_none() {
            put_meta(&mut message, key, value.clone());
        }
    }
    if existing.get(META_LOG_LEVEL).is_none()
        && let Some(level) = t.log_level.lock().expect("level lock").clone()
    {
        put_meta(&mut message, META_LOG_LEVEL, level);
    }
    message
}

fn empty_result(id: Option<&RawValue>) -> Response<Body> {
    json_response(
        StatusCode::OK,
        answer_bytes(id, raw(&serde_json::json!({}))),
    )
}

/// A request of a translated session.
pub(super) async fn request(
    up: &Arc<StdioUpstream>,
    session: &Arc<Session>,
    t: &Translation,
    method: &str,
    object: RawObject,
    id: Option<&RawValue>,
) -> Response<Body> {
    match method {
        // The 2026-07-28 revision has no ping: the gateway answers for a child that is there.
        "ping" => return empty_result(id),
        "logging/setLevel" => {
            let level = object
                .object("params")
                .and_then(|p| p.get("level").map(ToOwned::to_owned));
            *t.log_level.lock().expect("level lock") = level;
            return empty_result(id);
        }
        "resources/subscribe" | "resources/unsubscribe" => {
            if let Some(uri) = object.object("params").and_then(|p| p.str("uri")) {
                let mut subscribed = t.subscribed.lock().expect("subscribed lock");
                if method == "resources/subscribe" {
                    if subscribed.len() >= 1000 {
                        return Refusal::InvalidParams(
                            "too many resource subscriptions in this session (1000)".into(),
                        )
                        .response(id);
                    }
                    subscribed.insert(uri);
                } else {
                    subscribed.remove(&uri);
                }
            }
            relisten(session, t).await;
            return empty_result(id);
        }
        _ => {}
    }
    let message = with_meta(t, object);
    let original = RawObject(message.0.clone());
    match session
        .child
        .conn
        .request(&session.key, message, true)
        .await
    {
        Ok(call) => {
            let bound = Bound::of(method, &original);
            respond(up, session, call, Relay::Stream, id, &bound, Some(original)).await
        }
        Err(e) => send_failure(&e, id),
    }
}

/// Results that must carry caching hints in the 2026-07-28 revision.
const CACHEABLE: [&str; 6] = [
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// A child of the session revisions answers in their shape; a 2026-07-28 client reads a
/// result's `resultType`, and on the cacheable results (`tools/list`, `resources/read`, …)
/// caching hints. A success without them gets `"resultType": "complete"` and, when
/// cacheable, `"ttlMs": 0, "cacheScope": "private"` — the child said nothing about
/// freshness, so nothing is to be reused; errors, and members the child did send, go as
/// they came.
pub(super) fn completed(bytes: Bytes, method: &str) -> Bytes {
    let Some(mut message) = RawObject::parse(&bytes) else {
        return bytes;
    };
    let Some(mut result) = message.object("result") else {
        return bytes;
    };
    let mut changed = false;
    let mut fill = |key: &str, value: Box<RawValue>| {
        if result.get(key).is_none() {
            result.set(key, value);
            changed = true;
        }
    };
    fill("resultType", raw(&"complete"));
    if CACHEABLE.contains(&method) {
        fill("ttlMs", raw(&0));
        fill("cacheScope", raw(&"private"));
    }
    if !changed {
        return bytes;
    }
    message.set("result", result.to_raw());
    Bytes::from(message.to_string())
}

/// Whether an answer is an `input_required` result.
pub(super) fn is_input_required(bytes: &[u8]) -> bool {
    RawObject::parse(bytes)
        .and_then(|a| a.object("result"))
        .and_then(|r| r.str("resultType"))
        .is_some_and(|t| t == "input_required")
}

/// Puts each of an `input_required` result's requests to the client on its stream and waits
/// for the answers. `Ok(None)`: the client went away.
pub(super) async fn ask_client(
    t: &Translation,
    answer: &[u8],
    tx: &mpsc::Sender<Bytes>,
    wait: Duration,
) -> Result<Option<(RawObject, Option<Box<RawValue>>)>, String> {
    let result = RawObject::parse(answer)
        .and_then(|a| a.object("result"))
        .ok_or("the upstream's input_required result is unreadable")?;
    let requests = result.object("inputRequests").unwrap_or_default();
    let state = result.get("requestState").map(ToOwned::to_owned);
    let mut waiting = Vec::new();
    for (key, request) in &requests.0 {
        let request = RawObject::parse(request.get().as_bytes())
            .ok_or("an input request of the upstream is unreadable")?;
        let id = format!("mcpgate-{}", &random_hex()[..16]);
        let mut message = RawObject(vec![
            ("jsonrpc".into(), raw(&"2.0")),
            ("id".into(), raw(&id)),
        ]);
        for field in ["method", "params"] {
            if let Some(v) = request.get(field) {
                message.set(field, v.to_owned());
            }
        }
        let (answer_tx, answer_rx) = oneshot::channel();
        t.asks
            .lock()
            .expect("asks lock")
            .insert(id.clone(), answer_tx);
        waiting.push((key.clone(), id, answer_rx));
        if tx.send(Bytes::from(message.to_string())).await.is_err() {
            t.asks.lock().expect("asks lock").clear();
            return Ok(None);
        }
    }
    let mut answers = RawObject::default();
    for (key, id, rx) in waiting {
        let got = tokio::select! {
            _ = tx.closed() => None,
            got = tokio::time::timeout(wait, rx) => Some(got),
        };
        t.asks.lock().expect("asks lock").remove(&id);
        let Some(got) = got else {
            t.asks.lock().expect("asks lock").clear();
            return Ok(None);
        };
        match got {
            Ok(Ok(value)) => answers.set(&key, value),
            Ok(Err(_)) => {
                return Err("the client refused the upstream's request for input".into());
            }
            Err(_) => {
                return Err("the client did not answer the upstream's question in time".into());
            }
        }
    }
    Ok(Some((answers, state)))
}

/// The original request again, with the client's answers (and the child's state).
pub(super) fn retried(
    original: &RawObject,
    (answers, state): (RawObject, Option<Box<RawValue>>),
) -> RawObject {
    let mut message = RawObject(original.0.clone());
    let mut params = message.object("params").unwrap_or_default();
    params.set("inputResponses", answers.to_raw());
    match state {
        Some(state) => params.set("requestState", state),
        None => {
            params.remove("requestState");
        }
    }
    message.set("params", params.to_raw());
    message
}

/// A client's answer to a question the gateway put to it: true when it was one.
pub(super) fn take_answer(t: &Translation, object: &RawObject) -> bool {
    let Some(id) = object.str("id") else {
        return false;
    };
    let Some(tx) = t.asks.lock().expect("asks lock").remove(&id) else {
        return false;
    };
    // A refusal (an error) is passed on as no answer: the call then fails with a clear error.
    if let Some(result) = object.get("result") {
        let _ = tx.send(result.to_owned());
    }
    true
}

/// `GET /mcp` of a translated session: what the child sends outside any request (as a child
/// of either revision may on stdio), and a `subscriptions/listen` at the child, feed it.
pub(super) fn get(session: &Arc<Session>, t: &Translation) -> Response<Body> {
    let rx = session.child.conn.open_stream(&session.key);
    let Some(tx) = session.child.conn.stream_sender(&session.key) else {
        return crate::proxy::session_not_found(None);
    };
    *t.listen.lock().expect("listen lock") = Some((0, tx));
    let session2 = Arc::clone(session);
    tokio::spawn(async move {
        if let Some(t) = &session2.translation {
            relisten(&session2, t).await;
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let bytes = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(sse_event(&bytes)), rx))
    });
    sse_response(Body::from_stream(stream))
}

/// (Re)opens the child listen request that feeds the session's GET stream, with the current
/// resource subscriptions.
async fn relisten(session: &Arc<Session>, t: &Translation) {
    // One at a time: two at once would leave two listens feeding one stream.
    let _one = t.relisten.lock().await;
    let Some((old, tx)) = t.listen.lock().expect("listen lock").clone() else {
        return;
    };
    let conn = Arc::clone(&session.child.conn);
    if old != 0 {
        conn.cancel(old, "subscriptions changed");
    }
    let uris: Vec<String> = t
        .subscribed
        .lock()
        .expect("subscribed lock")
        .iter()
        .cloned()
        .collect();
    let params = serde_json::json!({
        "notifications": {
            "toolsListChanged": true,
            "promptsListChanged": true,
            "resourcesListChanged": true,
            "resourceSubscriptions": uris,
        }
    });
    let message = with_meta(
        t,
        RawObject(vec![
            ("jsonrpc".into(), raw(&"2.0")),
            (
                "id".into(),
                raw(&format!("mcpgate-listen-{}", &random_hex()[..8])),
            ),
            ("method".into(), raw(&"subscriptions/listen")),
            ("params".into(), raw(&params)),
        ]),
    );
    let mut call = match conn.request(&session.key, message, false).await {
        Ok(call) => call,
        Err(e) => {
            tracing::info!(target: "mcpgate::stdio", error = %e, "could not open subscriptions/listen at the upstream");
            return;
        }
    };
    *t.listen.lock().expect("listen lock") = Some((call.gid, tx.clone()));
    let guard = CancelGuard {
        conn,
        gid: call.gid,
        armed: true,
    };
    tokio::spawn(async move {
        let _guard = guard;
        let conn = Arc::clone(&_guard.conn);
        loop {
            let event = tokio::select! {
                _ = tx.closed() => return,
                _ = conn.streams_closed() => return,
                event = call.events.recv() => event,
            };
            let Some(Delivery::Message(bytes)) = event else {
                return;
            };
            let Some(mut message) = RawObject::parse(&bytes) else {
                continue;
            };
            if message.str("method").as_deref() == Some("notifications/subscriptions/acknowledged")
            {
                continue;
            }
            strip_meta(&mut message, &[SUBSCRIPTION_ID]);
            if tx.send(Bytes::from(message.to_string())).await.is_err() {
                return;
            }
        }
    });
}
