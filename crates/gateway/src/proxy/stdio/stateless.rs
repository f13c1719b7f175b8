//! 2026-07-28 clients, which have no sessions. A child that speaks the revision gets their
//! requests as they are. In front of a child of the session revisions the gateway is that
//! child's session client: it runs `initialize` itself, answers `server/discover` from it,
//! serves `subscriptions/listen` from the child's notifications, and turns the child's
//! server-to-client requests into an `input_required` result: the call is parked, and the
//! client's retry (with `requestState` and `inputResponses`) brings the answers to the child,
//! which has been waiting, and unparks it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Response, StatusCode};
use serde_json::value::RawValue;

use super::super::message::{Kind, Message};
use super::super::{Who, owner};
use super::streams::{Relay, answer_bytes, respond, sse_event, sse_response};
use super::{accepted, exited, notify, refused, send_failure};
use crate::jsonrpc::{self, INTERNAL_ERROR, METHOD_NOT_FOUND, json_response};
use crate::refusal::Refusal;
use crate::upstream::stdio::conn::{Call, Conn, Delivery, Listener};
use crate::upstream::stdio::json::{RawObject, raw, raw_text, strip_meta};
use crate::upstream::stdio::{
    Bound, Generation, META_CAPABILITIES, META_CLIENT, META_LOG_LEVEL, META_SERVER, META_VERSION,
    Session, SessionMode, StdioUpstream, Unpark,
};

/// Most URIs one emulated `subscriptions/listen` may subscribe to.
const MAX_LISTEN_URIS: usize = 100;
/// The 2026-07-28 revision, as the gateway advertises it for a child of older revisions.
const STATELESS: &str = "2026-07-28";

/// A 2026-07-28 client's message (after the shape checks of [`super::post`]).
pub(super) async fn post(
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
    if let Generation::Stateless(_) = generation {
        return match message.kind {
            Kind::Request => {
                let bound = Bound::of(method, &object);
                match session.child.conn.request(&session.key, object, logs).await {
                    Ok(call) => {
                        respond(up, &session, call, Relay::Stateless, id, &bound, None).await
                    }
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
        ("supportedVersions".into(), raw(&[STATELESS])),
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

/// Turns a request of the child's into an `input_required` result for a 2026-07-28 client and
/// parks the call until the client's retry brings the answer. Requests that cannot be put
/// that way are refused at the child, and the call is given up.
pub(super) fn input_required(
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

/// A 2026-07-28 client sent a response: it is never asked anything.
fn no_responses(id: Option<&RawValue>) -> Response<Body> {
    Refusal::InvalidRequest("clients of this revision do not send responses".into()).response(id)
}
