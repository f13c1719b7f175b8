//! How a call's messages reach the client: its answer as JSON when nothing comes before it,
//! else an SSE stream that carries the child's progress, logging and requests first, driven
//! by a task of its own that cancels the call at the child when the client goes away.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Response, StatusCode, header};
use serde_json::value::RawValue;

use super::stateless::input_required;
use super::{exited, translate};
use crate::jsonrpc::{self, INTERNAL_ERROR, METHOD_NOT_FOUND, error_bytes, json_response};
use crate::refusal::Refusal;
use crate::upstream::stdio::conn::{Call, Conn, Delivery};
use crate::upstream::stdio::json::RawObject;
use crate::upstream::stdio::{Bound, Session, StdioUpstream};

/// How the child's messages reach the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Relay {
    /// A session client: everything on the response stream.
    Stream,
    /// A 2026-07-28 client and child: as they come.
    Stateless,
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

pub(super) async fn next(call: &mut Call, events_open: &mut bool) -> Step {
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
pub(super) struct CancelGuard {
    pub(super) conn: Arc<Conn>,
    pub(super) gid: u64,
    pub(super) armed: bool,
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
pub(super) async fn respond(
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
            let bytes = if relay == Relay::Translate {
                translate::completed(bytes, &bound.method)
            } else {
                bytes
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
pub(super) const MAX_ROUNDS: usize = 10;

pub(super) struct Drive {
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
pub(super) async fn drive(mut d: Drive) {
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
                        let bytes = if d.relay == Relay::Translate {
                            translate::completed(bytes, &d.bound.method)
                        } else {
                            bytes
                        };
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

pub(super) fn answer_bytes(id: Option<&RawValue>, result: Box<RawValue>) -> Bytes {
    jsonrpc::result_bytes(id, &result)
}

pub(super) fn is_method_not_found(bytes: &[u8]) -> bool {
    jsonrpc::error_code(bytes) == Some(METHOD_NOT_FOUND)
}

pub(super) fn sse_event(data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 24);
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

pub(super) fn sse_response(body: Body) -> Response<Body> {
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
