//! Session clients (≤ 2025-11-25): `initialize` opens a session on a child of its own
//! (per-session mode) or on the shared one, and the gateway issues the sealed
//! `Mcp-Session-Id`; later requests, the client's notifications and its answers to the child's
//! requests name that session; the GET stream carries what belongs to no request; DELETE ends
//! the session (and its child).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::value::RawValue;

use super::super::message::{Kind, Message};
use super::super::{Gateway, SESSION_HEADER, Who, owner, session_not_found};
use super::streams::{Relay, respond, sse_event, sse_response};
use super::{accepted, answer, notify, refused, send_failure, translate};
use crate::jsonrpc::json_response;
use crate::refusal::Refusal;
use crate::upstream::stdio::json::RawObject;
use crate::upstream::stdio::{
    Bound, Child, Refusal as NoChild, Session, SessionMode, StdioUpstream,
};

/// A session client's message (anything but the shape checks of [`super::post`]).
pub(super) async fn post(
    gw: &Gateway,
    up: &Arc<StdioUpstream>,
    who: &Who,
    headers: &HeaderMap,
    message: &Message<'_>,
    object: RawObject,
) -> Response<Body> {
    let method = message.method.as_deref().unwrap_or_default();
    let Some(presented) = headers.get(&SESSION_HEADER) else {
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
    response
        .headers_mut()
        .insert(SESSION_HEADER.clone(), sealed);
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
    mut child: Arc<Child>,
    owns_child: bool,
    key: &Arc<str>,
    object: RawObject,
    params: &RawObject,
    id: Option<&RawValue>,
) -> Result<(Arc<Child>, RawObject, bool), Response<Body>> {
    // The child is stopped in the background: the client hears of the failure at once, not
    // after the child's stop grace.
    let give_up = |child: Arc<Child>| async move {
        if owns_child {
            tokio::spawn(async move { child.shutdown().await });
        }
    };
    let mut initialized = child.initialized.lock().await;
    if let Some(result) = initialized.as_ref() {
        // A later session of the shared child: the first handshake's result, its own id.
        let answer = answer(id, result.clone());
        drop(initialized);
        return Ok((child, answer, false));
    }
    // A shared child was probed when it started, and so is a new per-session child of a
    // command known to speak only 2026-07-28: one without the session revisions is translated
    // at once.
    if owns_child && up.known_stateless_only() {
        up.probe(&child, Some(&translate::probe_meta(params))).await;
    }
    if translate::stateless_only(&child)
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
                        up.learn_stateless_only(exited);
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
