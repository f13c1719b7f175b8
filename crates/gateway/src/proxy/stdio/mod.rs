//! `/mcp` in front of a stdio upstream: the Streamable HTTP side of [`crate::upstream::stdio`].
//! This module reads the message and sends it to the code for its client's kind:
//!
//! - [`session`]: session clients (≤ 2025-11-25). `initialize` starts a child (per-session
//!   mode) or joins the shared one; the gateway issues the sealed `Mcp-Session-Id`; the GET
//!   stream carries what belongs to no request; DELETE ends the session (and its child).
//! - [`stateless`]: 2026-07-28 clients. In front of a child of the session revisions the
//!   gateway runs `initialize` itself, answers `server/discover` from it, serves
//!   `subscriptions/listen` from the child's notifications, and turns the child's
//!   server-to-client requests into an `input_required` result whose answers, on the client's
//!   retry, go back to the waiting child. A child that answers `server/discover` gets their
//!   requests as they are.
//! - [`streams`]: how a call's answer goes back — JSON when nothing comes before it, else an
//!   SSE stream that carries the child's progress, logging and requests first.
//! - [`translate`]: session clients in front of a child that only speaks 2026-07-28.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Response, StatusCode};
use serde_json::value::RawValue;

use super::message::Message;
use super::{Gateway, Who};
use crate::refusal::Refusal;
use crate::upstream::stdio::conn::{Conn, SendError};
use crate::upstream::stdio::json::{RawObject, raw, raw_text};
use crate::upstream::stdio::{Refusal as NoChild, Session, StdioUpstream};

mod session;
mod stateless;
mod streams;
mod translate;

pub use session::{delete, get};

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
        return stateless::post(up, who, message, object).await;
    }
    session::post(gw, up, who, headers, message, object).await
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

/// A JSON-RPC answer for `id` with `result`, to change further before it is sent.
fn answer(id: Option<&RawValue>, result: Box<RawValue>) -> RawObject {
    RawObject(vec![
        ("jsonrpc".into(), raw(&"2.0")),
        (
            "id".into(),
            id.map_or_else(|| raw_text("null".into()), ToOwned::to_owned),
        ),
        ("result".into(), result),
    ])
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

fn accepted() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}
