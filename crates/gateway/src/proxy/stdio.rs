//! `/mcp` in front of a stdio upstream: the Streamable HTTP side of [`crate::upstream::stdio`].
//!
//! Session clients (≤ 2025-11-25): `initialize` starts a child (per-session mode) or joins the
//! shared one; the gateway issues the sealed `Mcp-Session-Id`; requests are answered with JSON
//! when nothing comes before the answer, or with an SSE stream that carries the child's
//! progress, logging and server-to-client requests first; the GET stream carries what belongs
//! to no request; DELETE ends the session (and its child).
//!
//! Stateless clients (2026-07-28) in front of a child of the session revisions: the gateway
//! runs `initialize` itself, answers `server/discover` from it, serves `subscriptions/listen`
//! from the child's notifications, and turns the child's server-to-client requests into an
//! `input_required` result whose answers, on the client's retry, go back to the waiting child.
//! A child that answers `server/discover` gets their requests as they are.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde_json::value::RawValue;

use super::message::{Kind, Message};
use super::{Gateway, SESSION_HEADER, Who, owner, session_not_found};
use crate::jsonrpc::{self, INTERNAL_ERROR, METHOD_NOT_FOUND, error_bytes, json_response};
use crate::refusal::Refusal;
use crate::upstream::stdio::conn::{Call, Conn, Delivery, Listener, SendError};
use crate::upstream::stdio::json::{RawObject, raw, raw_text, strip_meta};
use crate::upstream::stdio::{
    Bound, Generation, META_CAPABILITIES, META_CLIENT, META_LOG_LEVEL, META_SERVER, META_VERSION,
    Refusal as NoChild, Session, SessionMode, StdioUpstream, Unpark,
};

mod translate;

/// Most URIs one emulated `subscriptions/listen` may subscribe to.
const MAX_LISTEN_URIS: usize = 100;
/// The 2026-07-28 revision, as the gateway advertises it for a child of older revisions.
const MODERN: &str = "2026-07-28";

/// `POST /mcp` with a stdio upstream.
pub async fn post(
    gw: &Gateway,
    up: &Arc<StdioUpstream>,
    who: &Who,
    headers: &HeaderMap,
    message: &Message<'_>,
    body: &[u8],
    stateless: bool,
) -> Response<Body> {
    let Some(object) = RawObject::parse(body) else {
        return Refusal::InvalidRequest("not a JSON object".into()).response(message.id);
    };
    if crate::upstream::stdio::json::has_duplicate_keys(&object) {
        // A child may read either copy of a repeated member; the gateway rewrites one.
        return Refusal::InvalidRequest(
            "a member of the message, its params or their _meta is repeated".into(),
        )
        .response(message.id);
    }
    if stateless {
        return post_stateless(up, who, message, object).await;
    }
    let method = message.method.as_deref().unwrap_or_default();
    let Some(presented) = headers.get(SESSION_HEADER) else {
        if message.kind == Kind::Request && method == "initialize" {
            return initialize(gw, up, who, object, message.id).await;
        }
        return Refusal::SessionRequired.response(message.id);
    };
    let Some(session) = gw
        .open_session(presented, who)
        .and_then(|key| up.session(key.to_str().unwrap_or_default()))
    else {
        return session_not_found(message.id);
    };
    let conn = &session.child.conn;
    match message.kind {
        Kind::Response => {
            if let Some(t) = &session.translation
                && translate::take_answer(t, &object)
            {
                return accepted();
            }
            match conn.answer(&session.key, &object).await {
                Ok(true) => accepted(),
                Ok(false) => {
                    tracing::info!(target: "mcpgate::stdio", "client answered a request it was not asked; refused");
                    Refusal::InvalidRequest(
                        "no request of the server with this id is waiting for this session's answer"
                            .into(),
                    )
                    .response(None)
                }
                Err(e) => send_failure(&e, None),
            }
        }
        Kind::Notification => {
            notify(&session, method, object).await;
            accepted()
        }
        Kind::Request => {
            if method == "initialize" {
                return Refusal::InvalidRequest("the session is already initialized".into())
                    .response(message.id);
            }
            if let Some(t) = &session.translation {
                return translate::request(up, &session, t, method, object, message.id).await;
            }
            let bound = Bound::of(method, &object);
            match conn.request(&session.key, object, true).await {
                Ok(call) => {
                    respond(up, &session, call, Relay::Stream, message.id, &bound, None).await
                }
                Err(e) => send_failure(&e, message.id),
            }
        }
    }
}

/// `GET /mcp`: the session's stream for messages that belong to no request.
pub fn get(up: &StdioUpstream, key: &str) -> Response<Body> {
    let Some(session) = up.session(key) else {
        return session_not_found(None);
    };
    if let Some(t) = &session.translation {
        return translate::get(&session, t);
    }
    let rx = session.child.conn.open_stream(&session.key);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let bytes = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(sse_event(&bytes)), rx))
    });
    sse_response(Body::from_stream(stream))
}

/// `DELETE /mcp`: ends the session.
pub fn delete(up: &StdioUpstream, key: &str) -> Response<Body> {
    if up.end_session(key) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::OK;
        r
    } else {
        session_not_found(None)
    }
}

async fn initialize(
    gw: &Gateway,
    up: &Arc<StdioUpstream>,
    who: &Who,
    object: RawObject,
    id: Option<&RawValue>,
) -> Response<Body> {
    let owner = owner(who);
    let key: Arc<str> = Arc::from(format!("s-{}", crate::upstream::stdio::random_hex()));
    let params = object.object("params").unwrap_or_default();
    let limit = up.options().max_sessions_per_subject;
    if up.options().mode == SessionMode::PerSession && up.sessions_of(owner) >= limit {
        return refused(&NoChild::PerSubject(limit), id);
    }
    let (child, owns_child) = match up.options().mode {
        SessionMode::PerSession => match up.spawn(&key) {
            Ok(c) => (c, true),
            Err(e) => return refused(&e, id),
        },
        SessionMode::Shared => match up.shared_child(None).await {
            Ok(c) => (c, false),
            Err(e) => return refused(&e, id),
        },
    };
    let (child, answer, relays) =
        match handshake(up, child, owns_child, &key, object, &params, id).await {
            Ok(done) => done,
            Err(response) => return response,
        };
    let translation = child
        .translated
        .load(std::sync::atomic::Ordering::SeqCst)
        .then(|| translate::translation(&params));
    let session = Arc::new(Session {
        ephemeral: false,
        key: Arc::clone(&key),
        owner,
        child,
        owns_child,
        relays_initialized: relays,
        translation,
        last_used: std::sync::Mutex::new(Some(std::time::Instant::now())),
    });
    let Some(sealed) = gw
        .sessions
        .seal(owner, &key)
        .and_then(|s| HeaderValue::from_str(&s).ok())
    else {
        return Refusal::Internal("Session could not be created").response(id);
    };
    up.add_session(session);
    let mut response = json_response(StatusCode::OK, Bytes::from(answer.to_string()));
    response.headers_mut().insert(SESSION_HEADER, sealed);
    response
}

/// The `initialize` exchange of a new session: the first handshake of a child goes to it (its
/// result is kept); a shared child's later sessions get that result. A child that only speaks
/// 2026-07-28 is served by translation: when it refuses `initialize` (some exit then, so a
/// per-session child is replaced) and answers `server/discover`, the gateway answers.
/// Returns the child, the answer for the client and whether the client's
/// `notifications/initialized` goes to the child.
async fn handshake(
    up: &Arc<StdioUpstream>,
    mut child: Arc<crate::upstream::stdio::Child>,
    owns_child: bool,
    key: &Arc<str>,
    object: RawObject,
    params: &RawObject,
    id: Option<&RawValue>,
) -> Result<(Arc<crate::upstream::stdio::Child>, RawObject, bool), Response<Body>> {
    // The child is stopped in the background: the client hears of the failure at once, not
    // after the child's stop grace.
    let give_up = |child: Arc<crate::upstream::stdio::Child>| async move {
        if owns_child {
            tokio::spawn(async move { child.shutdown().await });
        }
    };
    let mut initialized = child.initialized.lock().await;
    if let Some(result) = initialized.as_ref() {
        // A later session of the shared child: the first handshake's result, its own id.
        let answer = RawObject(vec![
            ("jsonrpc".into(), raw(&"2.0")),
            (
                "id".into(),
                id.map_or_else(|| raw_text("null".into()), ToOwned::to_owned),
            ),
            ("result".into(), result.clone()),
        ]);
        drop(initialized);
        return Ok((child, answer, false));
    }
    // A shared child was probed when it started, and so is a new per-session child of a
    // command known to speak only 2026-07-28: one without the session revisions is translated
    // at once.
    if owns_child && up.known_modern_only() {
        up.probe(&child, Some(&translate::probe_meta(params))).await;
    }
    if translate::modern_only(&child)
        && let Some((answer, result)) = translate::initialize(up, &child, false, params, id).await
    {
        *initialized = Some(result);
        drop(initialized);
        return Ok((child, answer, false));
    }
    let timeout = up.options().startup_timeout;
    let outcome = match child.conn.request(key, object, false).await {
        Ok(call) => tokio::time::timeout(timeout, call.answer).await,
        Err(e) => {
            drop(initialized);
            give_up(child).await;
            return Err(send_failure(&e, id));
        }
    };
    let reason = match outcome {
        Ok(Ok(bytes)) => match RawObject::parse(&bytes) {
            Some(answer) if answer.get("result").is_some() => {
                *initialized = answer.get("result").map(ToOwned::to_owned);
                drop(initialized);
                return Ok((child, answer, true));
            }
            _ => {
                // Refused. A per-session child may have exited over it: ask a fresh one.
                drop(initialized);
                let exited = child.conn.is_closed();
                if owns_child {
                    child.shutdown().await;
                    child = match up.spawn(key) {
                        Ok(c) => c,
                        Err(e) => return Err(refused(&e, id)),
                    };
                }
                let mut initialized = child.initialized.lock().await;
                match translate::initialize(up, &child, owns_child, params, id).await {
                    Some((answer, result)) => {
                        up.learn_modern_only(exited);
                        *initialized = Some(result);
                        drop(initialized);
                        return Ok((child, answer, false));
                    }
                    None => {
                        drop(initialized);
                        give_up(child).await;
                        return Err(json_response(StatusCode::OK, bytes));
                    }
                }
            }
        },
        Ok(Err(_)) => child.conn.exit_reason(),
        Err(_) => "the upstream command did not answer initialize in time".to_owned(),
    };
    drop(initialized);
    give_up(child).await;
    tracing::error!(target: "mcpgate::stdio", reason, "upstream command failed to initialize");
    Err(Refusal::UpstreamFailedToStart(reason).response(id))
}

/// A client notification for the child.
async fn notify(session: &Session, method: &str, object: RawObject) {
    let conn = &session.child.conn;
    match method {
        "notifications/initialized" if !session.relays_initialized => {}
        "notifications/cancelled" => {
            let target = object
                .object("params")
                .and_then(|p| p.get("requestId").map(|r| r.get().to_owned()))
                .and_then(|id| conn.find(&session.key, &id));
            if let Some(gid) = target {
                conn.cancel(gid, "cancelled by the client");
            }
        }
        _ => {
            if let Err(e) = conn
                .send_for(Some(&session.key), Bytes::from(object.to_string()))
                .await
            {
                tracing::info!(target: "mcpgate::stdio", error = %e, method, "notification not delivered");
            }
        }
    }
}

async fn post_stateless(
    up: &Arc<StdioUpstream>,
    who: &Who,
    message: &Message<'_>,
    object: RawObject,
) -> Response<Body> {
    let owner = owner(who);
    let id = message.id;
    let meta = crate::upstream::stdio::json::meta(&object);
    let session = match up.options().mode {
        SessionMode::PerSession => match up.stateless_session(owner, meta.as_ref()).await {
            Ok(s) => s,
            Err(e) => return refused(&e, id),
        },
        SessionMode::Shared => match up.shared_child(meta.as_ref()).await {
            Ok(child) => {
                // A key per request, detached when the request is done (see `ephemeral`).
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let session = Arc::new(Session {
                    ephemeral: true,
                    key: Arc::from(format!("stateless-{}-{n}", owner.hex())),
                    owner,
                    child,
                    owns_child: false,
                    relays_initialized: false,
                    translation: None,
                    last_used: std::sync::Mutex::new(None),
                });
                session.child.conn.attach(&session.key);
                session
            }
            Err(e) => return refused(&e, id),
        },
    };
    let method = message.method.as_deref().unwrap_or_default();
    let logs = meta
        .as_ref()
        .is_some_and(|m| m.get(META_LOG_LEVEL).is_some());
    let generation = session
        .child
        .generation
        .lock()
        .expect("generation lock")
        .clone();
    if let Generation::Modern(_) = generation {
        return match message.kind {
            Kind::Request => {
                let bound = Bound::of(method, &object);
                match session.child.conn.request(&session.key, object, logs).await {
                    Ok(call) => respond(up, &session, call, Relay::Modern, id, &bound, None).await,
                    Err(e) => send_failure(&e, id),
                }
            }
            Kind::Notification => {
                notify(&session, method, object).await;
                accepted()
            }
            Kind::Response => no_responses(id),
        };
    }
    // A child of the session revisions: the gateway is its session client.
    let init = match up.ensure_initialized(&session.child, meta.as_ref()).await {
        Ok(r) => r,
        Err(e) => {
            return Refusal::UpstreamFailedToStart(e.to_string()).response(id);
        }
    };
    match message.kind {
        Kind::Notification => {
            notify(&session, method, object).await;
            return accepted();
        }
        Kind::Response => return no_responses(id),
        Kind::Request => {}
    }
    match method {
        "server/discover" => discover(id, &init),
        "subscriptions/listen" => listen(&session, id, &object, &init).await,
        _ => {
            let state = object.object("params").and_then(|p| p.str("requestState"));
            let bound = Bound::of(method, &object);
            if let Some(state) = state.filter(|s| s.starts_with("mcpgate-")) {
                return resume(up, owner, &state, &object, id, &bound).await;
            }
            // The child negotiated its revision in `initialize`: the request's own revision
            // markers would tell a child that speaks both to treat it as a 2026-07-28 request.
            // Everything else in `_meta` (progress tokens, extensions) goes across.
            let mut object = object;
            strip_meta(&mut object, &[META_VERSION, META_CAPABILITIES, META_CLIENT]);
            match session.child.conn.request(&session.key, object, logs).await {
                Ok(call) => respond(up, &session, call, Relay::Translate, id, &bound, None).await,
                Err(e) => send_failure(&e, id),
            }
        }
    }
}

/// `server/discover` for a child that only has `initialize`: its result, in the new shape.
fn discover(id: Option<&RawValue>, init: &RawValue) -> Response<Body> {
    let init = RawObject::parse(init.get().as_bytes()).unwrap_or_default();
    let mut result = RawObject(vec![
        ("resultType".into(), raw(&"complete")),
        ("supportedVersions".into(), raw(&[MODERN])),
        (
            "capabilities".into(),
            init.get("capabilities")
                .map_or_else(|| raw(&serde_json::json!({})), ToOwned::to_owned),
        ),
        ("ttlMs".into(), raw(&0)),
        ("cacheScope".into(), raw(&"private")),
    ]);
    if let Some(instructions) = init.get("instructions") {
        result.set("instructions", instructions.to_owned());
    }
    if let Some(info) = init.get("serverInfo") {
        result.set(
            "_meta",
            RawObject(vec![(META_SERVER.into(), info.to_owned())]).to_raw(),
        );
    }
    json_response(StatusCode::OK, answer_bytes(id, result.to_raw()))
}

/// `subscriptions/listen` for a child that only has the GET stream and `resources/subscribe`.
async fn listen(
    session: &Arc<Session>,
    id: Option<&RawValue>,
    object: &RawObject,
    init: &RawValue,
) -> Response<Body> {
    let id = id.map_or_else(|| raw_text("null".into()), ToOwned::to_owned);
    let wanted = object
        .object("params")
        .and_then(|p| p.object("notifications"))
        .unwrap_or_default();
    let flag = |k: &str| wanted.get(k).is_some_and(|v| v.get() == "true");
    let caps: serde_json::Value = RawObject::parse(init.get().as_bytes())
        .and_then(|i| i.get("capabilities").map(|c| c.get().to_owned()))
        .and_then(|c| serde_json::from_str(&c).ok())
        .unwrap_or_default();
    let can = |area: &str, what: &str| caps[area][what].as_bool().unwrap_or(false);
    let tools = flag("toolsListChanged") && can("tools", "listChanged");
    let prompts = flag("promptsListChanged") && can("prompts", "listChanged");
    let resources = flag("resourcesListChanged") && can("resources", "listChanged");
    let uris: Vec<String> = if can("resources", "subscribe") {
        wanted
            .get("resourceSubscriptions")
            .and_then(|v| serde_json::from_str(v.get()).ok())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    if uris.len() > MAX_LISTEN_URIS {
        return Refusal::InvalidParams(format!(
            "at most {MAX_LISTEN_URIS} resourceSubscriptions per subscriptions/listen"
        ))
        .response(Some(&id));
    }
    let conn = Arc::clone(&session.child.conn);
    for uri in &uris {
        let params = raw(&serde_json::json!({ "uri": uri }));
        if let Err(e) = conn
            .call("resources/subscribe", params, Duration::from_secs(10))
            .await
        {
            tracing::info!(target: "mcpgate::stdio", error = %e, "resources/subscribe for a listen stream failed");
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel(crate::upstream::stdio::conn::STREAM_QUEUE);
    let mut accepted = serde_json::Map::new();
    for (k, on) in [
        ("toolsListChanged", tools),
        ("promptsListChanged", prompts),
        ("resourcesListChanged", resources),
    ] {
        if on {
            accepted.insert(k.into(), true.into());
        }
    }
    if !uris.is_empty() {
        accepted.insert("resourceSubscriptions".into(), uris.clone().into());
    }
    let ack = RawObject(vec![
        ("jsonrpc".into(), raw(&"2.0")),
        (
            "method".into(),
            raw(&"notifications/subscriptions/acknowledged"),
        ),
        (
            "params".into(),
            RawObject(vec![
                ("notifications".into(), raw(&accepted)),
                (
                    "_meta".into(),
                    RawObject(vec![(
                        crate::upstream::stdio::conn::SUBSCRIPTION_ID.into(),
                        id.clone(),
                    )])
                    .to_raw(),
                ),
            ])
            .to_raw(),
        ),
    ]);
    let listener = conn.listen(Listener {
        session: Arc::clone(&session.key),
        client_id: id,
        tools,
        prompts,
        resources,
        uris: uris.into_iter().collect(),
        tx,
    });
    // The stream holds the session: its routes live as long as the stream.
    struct Unlisten(Arc<Conn>, u64, #[allow(dead_code)] Arc<Session>);
    impl Drop for Unlisten {
        fn drop(&mut self) {
            self.0.unlisten(self.1);
        }
    }
    let guard = Unlisten(Arc::clone(&conn), listener, Arc::clone(session));
    let first = futures::stream::once(async move { Ok(sse_event(ack.to_string().as_bytes())) });
    let rest = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        let bytes = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(sse_event(&bytes)), (rx, guard)))
    });
    use futures::StreamExt;
    sse_response(Body::from_stream(first.chain(rest)))
}

/// A 2026-07-28 client's retry with `inputResponses`: the answers go to the child, which has
/// been waiting, and the original request goes on.
async fn resume(
    up: &Arc<StdioUpstream>,
    owner: crate::session::Owner,
    state: &str,
    object: &RawObject,
    id: Option<&RawValue>,
    bound: &Bound,
) -> Response<Body> {
    let parked = match up.unpark(state, owner, bound) {
        Ok(p) => p,
        Err(Unpark::Unknown) => {
            return Refusal::InvalidParams(
                "requestState is unknown or has expired; send the request again without it".into(),
            )
            .response(id);
        }
        Err(Unpark::OtherRequest) => {
            tracing::warn!(target: "mcpgate::stdio", method = bound.method, "requestState presented with another request than the one it was issued for; refused");
            return Refusal::InvalidParams(
                "requestState belongs to another request: retry the same method with the same target"
                    .into(),
            )
            .response(id);
        }
    };
    let responses = object
        .object("params")
        .and_then(|p| p.object("inputResponses"))
        .unwrap_or_default();
    let mut parked = parked;
    let conn = Arc::clone(&parked.session.child.conn);
    // The retry's id first, so that an answer arriving right after the inputs carries it.
    let new_id = id.map_or_else(|| raw_text("null".into()), ToOwned::to_owned);
    if !conn.rebind(parked.call.gid, new_id) {
        // The child already answered (it gave up waiting, say), or went away.
        return match parked.call.answer.try_recv() {
            Ok(bytes) => match RawObject::parse(&bytes) {
                Some(mut answer) => {
                    answer.set(
                        "id",
                        id.map_or_else(|| raw_text("null".into()), ToOwned::to_owned),
                    );
                    json_response(StatusCode::OK, Bytes::from(answer.to_string()))
                }
                None => exited(&conn, id),
            },
            Err(_) => exited(&conn, id),
        };
    }
    for (key, child_id) in &parked.asked {
        let mut reply = RawObject(vec![
            ("jsonrpc".into(), raw(&"2.0")),
            ("id".into(), child_id.clone()),
        ]);
        match responses.get(key) {
            Some(value) => reply.set("result", value.to_owned()),
            None => reply.set(
                "error",
                raw_text(jsonrpc::error_object(
                    INTERNAL_ERROR,
                    "the client did not provide this input",
                )),
            ),
        }
        if let Err(e) = conn.answer(&parked.session.key, &reply).await {
            conn.forget(parked.call.gid);
            return send_failure(&e, id);
        }
    }
    respond(
        up,
        &parked.session,
        parked.call,
        Relay::Translate,
        id,
        bound,
        None,
    )
    .await
}

/// How the child's messages reach the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relay {
    /// A session client: everything on the response stream.
    Stream,
    /// A 2026-07-28 client and child: as they come.
    Modern,
    /// A 2026-07-28 client and a child of the session revisions: the child's requests become
    /// an `input_required` result.
    Translate,
}

/// One step of a call.
pub(super) enum Step {
    Event(Delivery),
    Answer(Bytes),
    Gone,
}

async fn next(call: &mut Call, events_open: &mut bool) -> Step {
    if *events_open {
        tokio::select! {
            biased;
            event = call.events.recv() => match event {
                Some(e) => return Step::Event(e),
                None => *events_open = false,
            },
            answer = &mut call.answer => return match answer {
                Ok(bytes) => Step::Answer(bytes),
                Err(_) => Step::Gone,
            },
        }
    }
    match (&mut call.answer).await {
        Ok(bytes) => Step::Answer(bytes),
        Err(_) => Step::Gone,
    }
}

/// Cancels the request at the child when dropped armed (the client went away, or timed out).
struct CancelGuard {
    conn: Arc<Conn>,
    gid: u64,
    armed: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.armed {
            self.conn.cancel(self.gid, "client disconnected");
        }
    }
}

/// Answers a call: JSON when the answer comes first, else an SSE stream. `retry` is the
/// original request of a translated session client, sent again with the client's answers
/// when the child's result is `input_required`.
async fn respond(
    up: &Arc<StdioUpstream>,
    session: &Arc<Session>,
    mut call: Call,
    relay: Relay,
    id: Option<&RawValue>,
    bound: &Bound,
    retry: Option<RawObject>,
) -> Response<Body> {
    let mut guard = CancelGuard {
        conn: Arc::clone(&session.child.conn),
        gid: call.gid,
        armed: true,
    };
    let mut events_open = true;
    let first = match tokio::time::timeout(
        up.options().request_timeout,
        next(&mut call, &mut events_open),
    )
    .await
    {
        Ok(step) => step,
        Err(_) => {
            return Refusal::UpstreamTimeout.response(id);
        }
    };
    match first {
        Step::Answer(bytes) if retry.is_none() || !translate::is_input_required(&bytes) => {
            guard.armed = false;
            let status = if relay != Relay::Stream && is_method_not_found(&bytes) {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            return json_response(status, bytes);
        }
        Step::Gone => {
            guard.armed = false;
            return exited(&session.child.conn, id);
        }
        Step::Event(Delivery::Request { child_id, message }) if relay == Relay::Translate => {
            guard.armed = false;
            let answer = input_required(up, session, call, id, bound, child_id, message);
            return json_response(StatusCode::OK, answer);
        }
        _ => {}
    }
    // Something comes before the answer: a stream, driven by a task of its own that stops
    // (and cancels at the child) when the client goes away.
    let (tx, rx) = tokio::sync::mpsc::channel(crate::upstream::stdio::conn::STREAM_QUEUE);
    tokio::spawn(drive(Drive {
        up: Arc::clone(up),
        session: Arc::clone(session),
        call: Some(call),
        guard: Some(guard),
        events_open,
        relay,
        id: id.map(ToOwned::to_owned),
        bound: bound.clone(),
        retry,
        first: Some(first),
        tx,
    }));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let bytes = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(sse_event(&bytes)), rx))
    });
    sse_response(Body::from_stream(stream))
}

/// Most `input_required` rounds the gateway runs for one translated request.
const MAX_ROUNDS: usize = 10;

struct Drive {
    up: Arc<StdioUpstream>,
    session: Arc<Session>,
    call: Option<Call>,
    guard: Option<CancelGuard>,
    events_open: bool,
    relay: Relay,
    id: Option<Box<RawValue>>,
    bound: Bound,
    retry: Option<RawObject>,
    first: Option<Step>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
}

impl Drive {
    fn finish(&mut self) {
        if let Some(g) = self.guard.as_mut() {
            g.armed = false;
        }
        self.guard = None;
        self.call = None;
    }

    fn error(&self, text: &str) -> Bytes {
        error_bytes(self.id.as_deref(), INTERNAL_ERROR, text)
    }

    fn refusal(&self, refusal: &Refusal) -> Bytes {
        refusal.body(self.id.as_deref())
    }
}

/// Relays one call's messages to the client's stream until its answer.
async fn drive(mut d: Drive) {
    let mut rounds = 0;
    loop {
        let step = match d.first.take() {
            Some(step) => step,
            None => {
                let Some(call) = d.call.as_mut() else { return };
                let idle = d.up.options().stream_idle_timeout;
                tokio::select! {
                    biased;
                    // The client went away: the guard cancels the request at the child.
                    _ = d.tx.closed() => return,
                    step = tokio::time::timeout(idle, next(call, &mut d.events_open)) => match step {
                        Ok(step) => step,
                        Err(_) => {
                            // Cancelled at the child when `d` (and its armed guard) goes.
                            let e = d.refusal(&Refusal::UpstreamTimeout);
                            let _ = d.tx.send(e).await;
                            return;
                        }
                    },
                }
            }
        };
        let out = match step {
            Step::Event(Delivery::Message(bytes)) => bytes,
            Step::Event(Delivery::Request { child_id, message }) => {
                if d.relay != Relay::Translate {
                    Bytes::from(message.to_string())
                } else {
                    if let Some(g) = d.guard.as_mut() {
                        g.armed = false;
                    }
                    d.guard = None;
                    let Some(call) = d.call.take() else { return };
                    let answer = input_required(
                        &d.up,
                        &d.session,
                        call,
                        d.id.as_deref(),
                        &d.bound,
                        child_id,
                        message,
                    );
                    let _ = d.tx.send(answer).await;
                    return;
                }
            }
            Step::Answer(bytes) => {
                let translated = d.retry.is_some()
                    && d.session.translation.is_some()
                    && rounds < MAX_ROUNDS
                    && translate::is_input_required(&bytes);
                let again = if translated {
                    d.finish();
                    rounds += 1;
                    let session = Arc::clone(&d.session);
                    let Some(t) = session.translation.as_ref() else {
                        return;
                    };
                    let wait = d.up.options().stream_idle_timeout;
                    match translate::ask_client(t, &bytes, &d.tx, wait).await {
                        Ok(Some(answers)) => d
                            .retry
                            .as_ref()
                            .map(|original| translate::retried(original, answers)),
                        // The client went away.
                        Ok(None) => return,
                        Err(why) => {
                            let e = d.error(&why);
                            let _ = d.tx.send(e).await;
                            return;
                        }
                    }
                } else {
                    None
                };
                match again {
                    Some(message) => {
                        let conn = Arc::clone(&d.session.child.conn);
                        match conn.request(&d.session.key, message, true).await {
                            Ok(call) => {
                                d.guard = Some(CancelGuard {
                                    conn,
                                    gid: call.gid,
                                    armed: true,
                                });
                                d.call = Some(call);
                                d.events_open = true;
                                continue;
                            }
                            Err(e) => {
                                let e = d.error(&e.to_string());
                                let _ = d.tx.send(e).await;
                                return;
                            }
                        }
                    }
                    None => {
                        d.finish();
                        let _ = d.tx.send(bytes).await;
                        return;
                    }
                }
            }
            Step::Gone => {
                d.finish();
                let gone = Refusal::UpstreamGone(Some(d.session.child.conn.exit_reason()));
                let e = d.refusal(&gone);
                let _ = d.tx.send(e).await;
                return;
            }
        };
        if d.tx.send(out).await.is_err() {
            return;
        }
    }
}

/// Turns a request of the child's into an `input_required` result for a 2026-07-28 client and
/// parks the call until the client's retry brings the answer. Requests that cannot be put
/// that way are refused at the child, and the call is given up.
fn input_required(
    up: &Arc<StdioUpstream>,
    session: &Arc<Session>,
    mut call: Call,
    id: Option<&RawValue>,
    bound: &Bound,
    child_id: Box<RawValue>,
    message: RawObject,
) -> Bytes {
    let method = bound.method.as_str();
    let conn = &session.child.conn;
    let mut asked = Vec::new();
    let mut requests = RawObject::default();
    let mut take = |child_id: Box<RawValue>, message: RawObject| {
        let kind = message.str("method").unwrap_or_default();
        let key = format!("input-{}", asked.len() + 1);
        let mut request = RawObject(vec![("method".into(), raw(&kind))]);
        if let Some(params) = message.get("params") {
            request.set("params", params.to_owned());
        }
        requests.set(&key, request.to_raw());
        asked.push((key, child_id));
    };
    take(child_id, message);
    // Requests the child sent together go in one round.
    while let Ok(event) = call.events.try_recv() {
        // Progress sent between the requests is not carried in an input_required result.
        if let Delivery::Request { child_id, message } = event {
            take(child_id, message);
        }
    }
    let mrtr_methods = ["tools/call", "prompts/get", "resources/read"];
    let answerable = |m: &str| {
        matches!(
            m,
            "sampling/createMessage" | "elicitation/create" | "roots/list"
        )
    };
    let all_answerable = RawObject::parse(requests.to_string().as_bytes())
        .map(|r| {
            r.0.iter().all(|(_, v)| {
                RawObject::parse(v.get().as_bytes())
                    .and_then(|o| o.str("method"))
                    .is_some_and(|m| answerable(&m))
            })
        })
        .unwrap_or(false);
    if !mrtr_methods.contains(&method) || !all_answerable {
        for (_, child_id) in &asked {
            let refusal = RawObject(vec![
                ("jsonrpc".into(), raw(&"2.0")),
                ("id".into(), child_id.clone()),
                (
                    "error".into(),
                    raw_text(jsonrpc::error_object(
                        METHOD_NOT_FOUND,
                        "mcpgate: this client cannot be asked that during this request",
                    )),
                ),
            ]);
            let conn = Arc::clone(conn);
            tokio::spawn(async move {
                let _ = conn.answer_unchecked(&refusal).await;
            });
        }
        conn.cancel(
            call.gid,
            "the upstream asked the client something it cannot be asked",
        );
        return Refusal::InputUnsupported.body(id);
    }
    let gid = call.gid;
    let Some(token) = up.park(
        session.owner,
        Arc::clone(session),
        call,
        asked,
        bound.clone(),
    ) else {
        tracing::warn!(target: "mcpgate::stdio", "too many requests waiting for input; request refused");
        conn.cancel(gid, "too many requests are waiting for input");
        return Refusal::TooManyWaitingForInput.body(id);
    };
    let result = RawObject(vec![
        ("resultType".into(), raw(&"input_required")),
        ("inputRequests".into(), requests.to_raw()),
        ("requestState".into(), raw(&token)),
    ]);
    answer_bytes(id, result.to_raw())
}

fn answer_bytes(id: Option<&RawValue>, result: Box<RawValue>) -> Bytes {
    jsonrpc::result_bytes(id, &result)
}

fn is_method_not_found(bytes: &[u8]) -> bool {
    jsonrpc::error_code(bytes) == Some(METHOD_NOT_FOUND)
}

fn exited(conn: &Conn, id: Option<&RawValue>) -> Response<Body> {
    let reason = conn.exit_reason();
    tracing::warn!(target: "mcpgate::stdio", reason, "request failed: upstream command gone");
    Refusal::UpstreamGone(Some(reason)).response(id)
}

fn send_failure(e: &SendError, id: Option<&RawValue>) -> Response<Body> {
    match e {
        SendError::Closed => Refusal::UpstreamGone(None).response(id),
        SendError::Busy => {
            tracing::warn!(target: "mcpgate::stdio", "upstream command is not reading its input; request refused");
            Refusal::UpstreamBusy.response(id)
        }
    }
}

/// No upstream process can take the request.
fn refused(e: &NoChild, id: Option<&RawValue>) -> Response<Body> {
    tracing::warn!(target: "mcpgate::stdio", reason = %e, "no upstream process for this request");
    let refusal = match e {
        NoChild::Spawn(_) => Refusal::UpstreamNotStarted,
        other => Refusal::UpstreamUnavailable {
            why: other.to_string(),
            retry_after: other.retry_after(),
        },
    };
    refusal.response(id)
}

/// A 2026-07-28 client sent a response: it is never asked anything.
fn no_responses(id: Option<&RawValue>) -> Response<Body> {
    Refusal::InvalidRequest("clients of this revision do not send responses".into()).response(id)
}

fn accepted() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

fn sse_event(data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 24);
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn sse_response(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}
