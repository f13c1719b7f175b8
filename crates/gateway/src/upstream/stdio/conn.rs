//! One child's JSON-RPC connection: newline-delimited messages on its stdin and stdout, and
//! the routing that sends each message the child writes to the session and stream it belongs
//! to.
//!
//! Requests going to the child get ids of the gateway's own (and their progress tokens too),
//! so that any number of sessions and streams can share one child without their ids
//! colliding; answers get the client's id back. Everything else in a message is passed on
//! byte for byte ([`RawObject`]).
//!
//! Nothing here can make memory grow without bound: the queue to the child's stdin is bounded
//! in messages and bytes, and so is what may wait for room in it — per child and per session:
//! a child that stops reading makes a few senders wait (then fail), and every sender beyond
//! that is refused at once (503 with Retry-After), so that waiting requests cannot pile up.
//! Lines from the child are capped at `max_line` bytes, and each client stream has a bounded
//! queue: a client that does not read loses notifications rather than holding up everyone
//! else.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;

use super::json::{RawObject, edit_meta, raw, raw_text};
use super::process::Pipes;

/// Messages queued for the child's stdin.
const STDIN_QUEUE: usize = 64;
/// Bytes queued for the child's stdin.
const STDIN_QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// Bytes that may wait for room in the queue; beyond, senders are refused at once.
const STDIN_WAITING_BYTES: usize = 8 * 1024 * 1024;
/// Bytes one session may have queued and waiting together.
const SESSION_BYTES: usize = 4 * 1024 * 1024;
/// Messages queued for one client stream.
pub const STREAM_QUEUE: usize = 64;

/// `_meta` key of a 2026-07-28 subscription stream's notifications.
pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// A line for the child's stdin, holding its share of the byte budgets until written.
type Queued = (Bytes, Option<Held>);

/// A line's share of the child's queue budget and of its session's.
struct Held {
    _queue: OwnedSemaphorePermit,
    _session: Option<SessionShare>,
}

/// Bytes counted against one session until dropped.
struct SessionShare {
    shares: Arc<Mutex<HashMap<SessionKey, usize>>>,
    session: SessionKey,
    bytes: usize,
}

impl SessionShare {
    fn take(
        shares: &Arc<Mutex<HashMap<SessionKey, usize>>>,
        session: &SessionKey,
        bytes: usize,
    ) -> Option<SessionShare> {
        let mut map = shares.lock().expect("shares lock");
        let used = map.entry(Arc::clone(session)).or_default();
        if *used + bytes > SESSION_BYTES && *used > 0 {
            return None;
        }
        *used += bytes;
        Some(SessionShare {
            shares: Arc::clone(shares),
            session: Arc::clone(session),
            bytes,
        })
    }
}

impl Drop for SessionShare {
    fn drop(&mut self) {
        let mut map = self.shares.lock().expect("shares lock");
        if let Some(used) = map.get_mut(&self.session) {
            *used = used.saturating_sub(self.bytes);
            if *used == 0 {
                map.remove(&self.session);
            }
        }
    }
}

/// Names a session (or an internal user) among those sharing a child.
pub type SessionKey = Arc<str>;

/// What a waiting request receives before its answer.
#[derive(Debug)]
pub enum Delivery {
    /// A notification for the client, on this request's stream.
    Message(Bytes),
    /// A request from the child to the client (sampling, elicitation, roots), on this
    /// request's stream. `child_id` is the child's id for it, raw.
    Request {
        /// The child's id.
        child_id: Box<RawValue>,
        /// The whole message.
        message: RawObject,
    },
}

/// The receiving end of a request sent to the child.
#[derive(Debug)]
pub struct Call {
    /// The gateway's id for it.
    pub gid: u64,
    /// Messages for the client that belong to it.
    pub events: mpsc::Receiver<Delivery>,
    /// Its answer (id restored); dropped unanswered when the child goes away.
    pub answer: oneshot::Receiver<Bytes>,
}

/// Why a message could not be given to the child.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The child is gone.
    #[error("the upstream command has exited")]
    Closed,
    /// The child is not reading its input.
    #[error("the upstream command is not reading its input")]
    Busy,
}

struct Pending {
    session: SessionKey,
    client_id: Box<RawValue>,
    progress: Option<Box<RawValue>>,
    events: mpsc::Sender<Delivery>,
    answer: oneshot::Sender<Bytes>,
    /// Whether `notifications/message` may go to this request's stream.
    logs: bool,
}

/// A `subscriptions/listen` stream the gateway serves itself (for a child of the session
/// revisions).
pub struct Listener {
    /// The session it belongs to.
    pub session: SessionKey,
    /// The client's listen request id, put in each notification's `_meta`.
    pub client_id: Box<RawValue>,
    /// Which notifications it asked for.
    pub tools: bool,
    /// `prompts/list_changed`.
    pub prompts: bool,
    /// `resources/list_changed`.
    pub resources: bool,
    /// `resources/updated` for these URIs.
    pub uris: HashSet<String>,
    /// Where they go.
    pub tx: mpsc::Sender<Bytes>,
}

/// Most `resources/subscribe` URIs tracked per session.
const MAX_SUBSCRIPTIONS: usize = 1000;
/// Unanswered server-to-client requests are forgotten after this.
const ASKED_TTL: Duration = Duration::from_secs(900);

#[derive(Default)]
struct Routes {
    pending: HashMap<u64, Pending>,
    /// Sessions attached to this child.
    sessions: HashSet<SessionKey>,
    /// Each session's GET stream.
    streams: HashMap<SessionKey, mpsc::Sender<Bytes>>,
    /// Emulated `subscriptions/listen` streams, by an id of the gateway's.
    listeners: HashMap<u64, Listener>,
    /// Requests from the child awaiting a client's answer: child id text → session, and when
    /// asked (unanswered ones are forgotten after a while).
    asked: HashMap<String, (SessionKey, std::time::Instant)>,
    /// `resources/subscribe` URIs per session (to route `resources/updated`).
    subscribed: HashMap<SessionKey, HashSet<String>>,
}

impl Routes {
    /// Forgets GET streams whose client has gone.
    fn prune(&mut self) {
        self.streams.retain(|_, tx| !tx.is_closed());
        self.listeners.retain(|_, l| !l.tx.is_closed());
    }

    fn ask(&mut self, child_id: &RawValue, session: SessionKey) {
        if self.asked.len() >= 256 {
            self.asked.retain(|_, (_, at)| at.elapsed() < ASKED_TTL);
        }
        self.asked.insert(
            child_id.get().to_owned(),
            (session, std::time::Instant::now()),
        );
    }
}

/// A child's connection.
pub struct Conn {
    label: String,
    pid: u32,
    stdin: mpsc::Sender<Queued>,
    budget: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    shares: Arc<Mutex<HashMap<SessionKey, usize>>>,
    routes: Mutex<Routes>,
    next: AtomicU64,
    closed: CancellationToken,
    /// Cancelled when the gateway ends every stream (shutdown).
    streams_closed: CancellationToken,
    exit: Mutex<Option<String>>,
    send_timeout: Duration,
    /// How many of the child's unreadable lines reach the log.
    noise: Mutex<crate::logging::LineBudget>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("label", &self.label)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Starts reading and writing the child's pipes. `stop` closes its stdin (the polite way
    /// to end a stdio server); the connection closes when stdout ends or `exited` fires.
    pub fn start(
        pipes: Pipes,
        label: String,
        pid: u32,
        max_line: usize,
        send_timeout: Duration,
        stop: CancellationToken,
    ) -> Arc<Conn> {
        Conn::over(
            pipes.stdin,
            pipes.stdout,
            label,
            pid,
            max_line,
            send_timeout,
            stop,
        )
    }

    /// [`Conn::start`] over any pipes (in-memory ones in tests).
    fn over<W, R>(
        stdin: W,
        stdout: R,
        label: String,
        pid: u32,
        max_line: usize,
        send_timeout: Duration,
        stop: CancellationToken,
    ) -> Arc<Conn>
    where
        W: AsyncWrite + Unpin + Send + 'static,
        R: AsyncRead + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(STDIN_QUEUE);
        let conn = Arc::new(Conn {
            label,
            pid,
            stdin: tx,
            budget: Arc::new(Semaphore::new(STDIN_QUEUE_BYTES)),
            waiting: Arc::new(Semaphore::new(STDIN_WAITING_BYTES)),
            shares: Arc::new(Mutex::new(HashMap::new())),
            routes: Mutex::new(Routes::default()),
            next: AtomicU64::new(1),
            closed: CancellationToken::new(),
            streams_closed: CancellationToken::new(),
            exit: Mutex::new(None),
            send_timeout,
            noise: Mutex::new(crate::logging::LineBudget::new()),
        });
        tokio::spawn(write_loop(stdin, rx, stop, conn.closed.clone()));
        tokio::spawn(read_loop(Arc::clone(&conn), stdout, max_line));
        conn
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Resolves when the gateway ends every stream (shutdown) or the child is gone.
    pub async fn streams_closed(&self) {
        tokio::select! {
            _ = self.streams_closed.cancelled() => {}
            _ = self.closed.cancelled() => {}
        }
    }

    /// Whether the child is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// How the child ended, for error messages.
    pub fn exit_reason(&self) -> String {
        self.exit
            .lock()
            .expect("exit lock")
            .clone()
            .unwrap_or_else(|| "the upstream command has exited".into())
    }

    /// Marks the connection closed: every waiting request fails, every stream ends.
    pub fn close(&self, reason: String) {
        {
            let mut exit = self.exit.lock().expect("exit lock");
            if exit.is_none() {
                *exit = Some(reason);
            }
        }
        self.closed.cancel();
        let mut routes = self.routes.lock().expect("routes lock");
        // Dropping the senders ends every waiting request and stream.
        *routes = Routes::default();
    }

    /// Ends the GET and listen streams (the gateway is shutting down).
    pub fn close_streams(&self) {
        self.streams_closed.cancel();
        let mut routes = self.routes.lock().expect("routes lock");
        routes.streams.clear();
        routes.listeners.clear();
    }

    /// Attaches a session to this child.
    pub fn attach(&self, session: &SessionKey) {
        self.routes
            .lock()
            .expect("routes lock")
            .sessions
            .insert(Arc::clone(session));
    }

    /// Detaches a session: its requests, streams and questions are dropped.
    pub fn detach(&self, session: &SessionKey) -> Vec<u64> {
        let mut routes = self.routes.lock().expect("routes lock");
        routes.sessions.remove(session);
        routes.streams.remove(session);
        routes.subscribed.remove(session);
        routes.asked.retain(|_, (s, _)| s != session);
        routes.listeners.retain(|_, l| &l.session != session);
        let gone: Vec<u64> = routes
            .pending
            .iter()
            .filter(|(_, p)| &p.session == session)
            .map(|(gid, _)| *gid)
            .collect();
        for gid in &gone {
            routes.pending.remove(gid);
        }
        gone
    }

    /// How many sessions use this child.
    pub fn session_count(&self) -> usize {
        self.routes.lock().expect("routes lock").sessions.len()
    }

    /// Whether anything is in flight or listening (an idle child may be stopped).
    pub fn busy(&self) -> bool {
        let mut routes = self.routes.lock().expect("routes lock");
        routes.prune();
        !routes.pending.is_empty() || !routes.streams.is_empty() || !routes.listeners.is_empty()
    }

    /// Whether one session has anything in flight or an open stream.
    pub fn session_busy(&self, session: &SessionKey) -> bool {
        let mut routes = self.routes.lock().expect("routes lock");
        routes.prune();
        routes.streams.contains_key(session)
            || routes.pending.values().any(|p| &p.session == session)
            || routes.listeners.values().any(|l| &l.session == session)
    }

    /// Sets the session's GET stream (a newer one replaces an older one).
    pub fn open_stream(&self, session: &SessionKey) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        self.routes
            .lock()
            .expect("routes lock")
            .streams
            .insert(Arc::clone(session), tx);
        rx
    }

    /// The sender of the session's GET stream, when one is open.
    pub fn stream_sender(&self, session: &SessionKey) -> Option<mpsc::Sender<Bytes>> {
        self.routes
            .lock()
            .expect("routes lock")
            .streams
            .get(session)
            .cloned()
    }

    /// Registers an emulated `subscriptions/listen` stream; returns its id.
    pub fn listen(&self, listener: Listener) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.routes
            .lock()
            .expect("routes lock")
            .listeners
            .insert(id, listener);
        id
    }

    /// Ends an emulated listen stream.
    pub fn unlisten(&self, id: u64) {
        self.routes
            .lock()
            .expect("routes lock")
            .listeners
            .remove(&id);
    }

    /// Sends a client's request to the child under a gateway id. `logs`: whether logging
    /// notifications may be delivered on its stream.
    pub async fn request(
        &self,
        session: &SessionKey,
        mut message: RawObject,
        logs: bool,
    ) -> Result<Call, SendError> {
        let gid = self.next.fetch_add(1, Ordering::Relaxed);
        let client_id = message
            .remove("id")
            .unwrap_or_else(|| raw_text("null".into()));
        message.set("id", raw(&gid));
        let progress = edit_meta(&mut message, "progressToken", |old| {
            (raw(&gid), old.to_owned())
        });
        if let Some(uri) = subscription_uri(&message) {
            let mut routes = self.routes.lock().expect("routes lock");
            let set = routes.subscribed.entry(Arc::clone(session)).or_default();
            match message.str("method").as_deref() {
                Some("resources/subscribe") if set.len() < MAX_SUBSCRIPTIONS => {
                    set.insert(uri);
                }
                Some("resources/subscribe") => {}
                _ => {
                    set.remove(&uri);
                }
            }
        }
        let (events_tx, events) = mpsc::channel(STREAM_QUEUE);
        let (answer_tx, answer) = oneshot::channel();
        self.routes.lock().expect("routes lock").pending.insert(
            gid,
            Pending {
                session: Arc::clone(session),
                client_id,
                progress,
                events: events_tx,
                answer: answer_tx,
                logs,
            },
        );
        // Until the message is queued, a dropped caller must not leave its entry behind.
        struct Unsent<'a>(&'a Conn, u64, bool);
        impl Drop for Unsent<'_> {
            fn drop(&mut self) {
                if self.2 {
                    self.0.forget(self.1);
                }
            }
        }
        let mut unsent = Unsent(self, gid, true);
        self.send_for(Some(session), Bytes::from(message.to_string()))
            .await?;
        unsent.2 = false;
        Ok(Call {
            gid,
            events,
            answer,
        })
    }

    /// Gives a waiting request a new client id (a 2026-07-28 client's retry continues it).
    pub fn rebind(&self, gid: u64, client_id: Box<RawValue>) -> bool {
        match self
            .routes
            .lock()
            .expect("routes lock")
            .pending
            .get_mut(&gid)
        {
            Some(p) => {
                p.client_id = client_id;
                true
            }
            None => false,
        }
    }

    /// Stops waiting for `gid` without telling the child.
    pub fn forget(&self, gid: u64) {
        self.routes
            .lock()
            .expect("routes lock")
            .pending
            .remove(&gid);
    }

    /// Cancels `gid` at the child (`notifications/cancelled`) and stops waiting for it.
    pub fn cancel(&self, gid: u64, reason: &str) {
        if self
            .routes
            .lock()
            .expect("routes lock")
            .pending
            .remove(&gid)
            .is_none()
        {
            return;
        }
        self.send_cancel(gid, reason);
    }

    /// Tells the child that `gid` is cancelled (whether or not anyone still waits for it).
    pub fn send_cancel(&self, gid: u64, reason: &str) {
        let line = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{gid},"reason":{}}}}}"#,
            serde_json::to_string(reason).unwrap_or_else(|_| "\"\"".into())
        );
        // Best effort: a child too busy to read its input will not see it.
        let _ = self.stdin.try_send((Bytes::from(line), None));
    }

    /// The gateway id of a session's request, by the client's id.
    pub fn find(&self, session: &SessionKey, client_id: &str) -> Option<u64> {
        let routes = self.routes.lock().expect("routes lock");
        routes
            .pending
            .iter()
            .find(|(_, p)| &p.session == session && p.client_id.get() == client_id)
            .map(|(gid, _)| *gid)
    }

    /// Passes a client's answer to a request of the child's on. Only the session the request
    /// went to may answer it; anything else is dropped (false).
    pub async fn answer(
        &self,
        session: &SessionKey,
        message: &RawObject,
    ) -> Result<bool, SendError> {
        let Some(id) = message.get("id") else {
            return Ok(false);
        };
        let allowed = {
            let mut routes = self.routes.lock().expect("routes lock");
            match routes.asked.get(id.get()) {
                Some((s, _)) if s == session => {
                    routes.asked.remove(id.get());
                    true
                }
                _ => false,
            }
        };
        if !allowed {
            return Ok(false);
        }
        self.send_for(Some(session), Bytes::from(message.to_string()))
            .await?;
        Ok(true)
    }

    /// Answers a request of the child's on the gateway's own behalf (a refusal).
    pub async fn answer_unchecked(&self, message: &RawObject) -> Result<(), SendError> {
        if let Some(id) = message.get("id") {
            self.routes
                .lock()
                .expect("routes lock")
                .asked
                .remove(id.get());
        }
        self.send(Bytes::from(message.to_string())).await
    }

    /// Sends a message (the gateway's own answer to the child) as it is.
    pub async fn send(&self, line: Bytes) -> Result<(), SendError> {
        self.send_for(None, line).await
    }

    /// Sends a message of `session`'s (a notification, an answer) as it is.
    pub async fn send_for(
        &self,
        session: Option<&SessionKey>,
        line: Bytes,
    ) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        let size = line.len().clamp(1, STDIN_QUEUE_BYTES);
        let want = u32::try_from(size).unwrap_or(u32::MAX);
        // The session's share first, then room to wait: neither is waited for, so a child
        // that stops reading leaves a bounded number of senders waiting and refuses the rest.
        let share = match session {
            Some(s) => Some(SessionShare::take(&self.shares, s, size).ok_or(SendError::Busy)?),
            None => None,
        };
        let waiting = Arc::clone(&self.waiting)
            .try_acquire_many_owned(want)
            .map_err(|_| SendError::Busy)?;
        let budget = Arc::clone(&self.budget);
        let reserve = async {
            let bytes = budget
                .acquire_many_owned(want)
                .await
                .map_err(|_| SendError::Closed)?;
            let slot = self.stdin.reserve().await.map_err(|_| SendError::Closed)?;
            drop(waiting);
            slot.send((
                line,
                Some(Held {
                    _queue: bytes,
                    _session: share,
                }),
            ));
            Ok(())
        };
        match tokio::time::timeout(self.send_timeout, reserve).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Busy),
        }
    }

    /// Sends a request of the gateway's own and waits for its answer (the whole response).
    pub async fn call(
        &self,
        method: &str,
        params: Box<RawValue>,
        timeout: Duration,
    ) -> Result<RawObject, CallError> {
        let session: SessionKey = Arc::from("");
        let message = RawObject(vec![
            ("jsonrpc".into(), raw(&"2.0")),
            ("id".into(), raw(&0)),
            ("method".into(), raw(&method)),
            ("params".into(), params),
        ]);
        let call = self
            .request(&session, message, false)
            .await
            .map_err(CallError::Send)?;
        let gid = call.gid;
        match tokio::time::timeout(timeout, call.answer).await {
            Ok(Ok(bytes)) => RawObject::parse(&bytes).ok_or(CallError::Exited),
            Ok(Err(_)) => Err(CallError::Exited),
            Err(_) => {
                self.cancel(gid, "timed out");
                Err(CallError::Timeout)
            }
        }
    }

    /// Answers a request of the child's with an error.
    fn refuse(&self, child_id: &RawValue, code: i64, text: &str) {
        let line = crate::jsonrpc::error_bytes(Some(child_id), code, text);
        let _ = self.stdin.try_send((line, None));
    }

    /// Routes one line the child wrote.
    fn dispatch(&self, line: &str) {
        let Some(message) = RawObject::parse(line.as_bytes()) else {
            let allowed = self.noise.lock().ok().and_then(|mut b| b.take());
            let Some(dropped) = allowed else { return };
            if dropped > 0 {
                tracing::warn!(target: "mcpgate::stdio", session = self.label, pid = self.pid, dropped, "unreadable lines of the command were not logged (too many)");
            }
            let shown: String = line.chars().take(120).collect();
            let shown = crate::logging::printable(&shown);
            tracing::warn!(target: "mcpgate::stdio", session = self.label, pid = self.pid, bytes = line.len(), start = %shown, "upstream command wrote a line that is not a JSON-RPC message; ignored");
            return;
        };
        let method = message.str("method");
        let id = message
            .get("id")
            .filter(|id| id.get() != "null")
            .map(ToOwned::to_owned);
        match (method, id) {
            (None, Some(id)) => self.on_response(message, &id),
            (Some(_), Some(id)) => self.on_request(message, id),
            (Some(method), None) => self.on_notification(&method, message),
            (None, None) => {
                tracing::warn!(target: "mcpgate::stdio", session = self.label, "upstream command wrote a message with neither method nor id; ignored");
            }
        }
    }

    fn on_response(&self, mut message: RawObject, id: &RawValue) {
        let Ok(gid) = id.get().parse::<u64>() else {
            tracing::debug!(target: "mcpgate::stdio", session = self.label, "answer for an id the gateway did not send; ignored");
            return;
        };
        let Some(pending) = self
            .routes
            .lock()
            .expect("routes lock")
            .pending
            .remove(&gid)
        else {
            tracing::debug!(target: "mcpgate::stdio", session = self.label, gid, "late answer (cancelled or timed out); ignored");
            return;
        };
        message.set("id", pending.client_id);
        let _ = pending.answer.send(Bytes::from(message.to_string()));
    }

    fn on_request(&self, message: RawObject, child_id: Box<RawValue>) {
        let mut routes = self.routes.lock().expect("routes lock");
        routes.prune();
        // The request it belongs to: the only one in flight, or else (one session) that
        // session's GET stream or its latest request.
        let target = related(&routes);
        match target {
            Some(Target::Pending(gid)) => {
                let pending = &routes.pending[&gid];
                let session = Arc::clone(&pending.session);
                let delivery = Delivery::Request {
                    child_id: child_id.clone(),
                    message,
                };
                if pending.events.try_send(delivery).is_ok() {
                    routes.ask(&child_id, session);
                    return;
                }
            }
            Some(Target::Stream(session)) => {
                let tx = &routes.streams[&session];
                if tx.try_send(Bytes::from(message.to_string())).is_ok() {
                    routes.ask(&child_id, session);
                    return;
                }
            }
            None => {}
        }
        drop(routes);
        tracing::info!(target: "mcpgate::stdio", session = self.label, "request from the upstream command has no client stream to go to; refused");
        self.refuse(
            &child_id,
            crate::jsonrpc::INTERNAL_ERROR,
            "mcpgate: no client stream can take this request now",
        );
    }

    fn on_notification(&self, method: &str, mut message: RawObject) {
        let mut routes = self.routes.lock().expect("routes lock");
        routes.prune();
        if method == "notifications/progress" {
            let gid = message
                .object("params")
                .and_then(|p| p.get("progressToken").map(|t| t.get().parse::<u64>()))
                .and_then(Result::ok);
            let Some(pending) = gid.and_then(|g| routes.pending.get(&g)) else {
                return;
            };
            let Some(token) = pending.progress.clone() else {
                return;
            };
            if let Some(mut params) = message.object("params") {
                params.set("progressToken", token);
                message.set("params", params.to_raw());
            }
            let _ = pending
                .events
                .try_send(Delivery::Message(Bytes::from(message.to_string())));
            return;
        }
        // A notification of a 2026-07-28 child's subscription stream.
        if let Some(gid) = edit_meta(&mut message, SUBSCRIPTION_ID, |v| {
            (v.to_owned(), v.get().parse::<u64>().ok())
        })
        .flatten()
            && let Some(pending) = routes.pending.get(&gid)
        {
            let client_id = pending.client_id.clone();
            edit_meta(&mut message, SUBSCRIPTION_ID, |_| (client_id, ()));
            let _ = pending
                .events
                .try_send(Delivery::Message(Bytes::from(message.to_string())));
            return;
        }
        let text = Bytes::from(message.to_string());
        let broadcast = match method {
            "notifications/tools/list_changed" => Some(Topic::Tools),
            "notifications/prompts/list_changed" => Some(Topic::Prompts),
            "notifications/resources/list_changed" => Some(Topic::Resources),
            "notifications/resources/updated" => message
                .object("params")
                .and_then(|p| p.str("uri"))
                .map(Topic::Updated),
            _ => None,
        };
        if let Some(topic) = broadcast {
            deliver_broadcast(&mut routes, &topic, &text);
            return;
        }
        // Logging and anything else: the related stream, if there is one.
        match related(&routes) {
            Some(Target::Pending(gid)) => {
                let pending = &routes.pending[&gid];
                if pending.logs || method != "notifications/message" {
                    let _ = pending.events.try_send(Delivery::Message(text));
                }
            }
            Some(Target::Stream(session)) => {
                let _ = routes.streams[&session].try_send(text);
            }
            None => {
                tracing::debug!(target: "mcpgate::stdio", session = self.label, method, "notification with no client stream to go to; dropped");
            }
        }
    }
}

enum Target {
    Pending(u64),
    Stream(SessionKey),
}

enum Topic {
    Tools,
    Prompts,
    Resources,
    Updated(String),
}

/// The stream a message of the child's that names no request belongs to: the only request
/// in flight; else, when one session uses the child, its GET stream or its latest request.
/// With several sessions and several requests it cannot be told: `None`.
fn related(routes: &Routes) -> Option<Target> {
    // The sessions with client requests in flight.
    let mut pending = routes.pending.iter().filter(|(_, p)| !p.session.is_empty());
    let owner: &SessionKey = match pending.next() {
        Some((_, first)) => {
            if pending.any(|(_, p)| p.session != first.session) {
                // Several sessions have requests in flight: it cannot be told whose this is.
                return None;
            }
            Some(&first.session)
        }
        None => {
            // Nothing in flight: only a child with one session can be followed.
            let mut sessions = routes.sessions.iter();
            match (sessions.next(), sessions.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        }
    }?;
    // With several sessions on the child, a session that has the only request in flight may
    // still not be the one the message is about: only a child of one session is followed
    // further than its requests.
    let single_session = routes.sessions.len() <= 1;
    let requests: Vec<u64> = routes
        .pending
        .iter()
        .filter(|(_, p)| &p.session == owner)
        .map(|(gid, _)| *gid)
        .collect();
    if requests.len() == 1 && single_session {
        return Some(Target::Pending(requests[0]));
    }
    if !single_session {
        return None;
    }
    if routes.streams.contains_key(owner) {
        return Some(Target::Stream(Arc::clone(owner)));
    }
    requests.into_iter().max().map(Target::Pending)
}

fn deliver_broadcast(routes: &mut Routes, topic: &Topic, text: &Bytes) {
    let single = routes.sessions.len() == 1;
    let sessions: Vec<SessionKey> = routes.sessions.iter().cloned().collect();
    for session in sessions {
        if let Topic::Updated(uri) = topic
            && !single
            && !routes
                .subscribed
                .get(&session)
                .is_some_and(|s| s.contains(uri))
        {
            continue;
        }
        if let Some(tx) = routes.streams.get(&session) {
            let _ = tx.try_send(text.clone());
        } else if session.starts_with("s-")
            && let Some(pending) = routes
                .pending
                .iter()
                .filter(|(_, p)| p.session == session)
                .max_by_key(|(gid, _)| **gid)
                .map(|(_, p)| p)
        {
            let _ = pending.events.try_send(Delivery::Message(text.clone()));
        }
    }
    for listener in routes.listeners.values() {
        let wanted = match topic {
            Topic::Tools => listener.tools,
            Topic::Prompts => listener.prompts,
            Topic::Resources => listener.resources,
            Topic::Updated(uri) => listener.uris.contains(uri),
        };
        if !wanted {
            continue;
        }
        let Some(mut message) = RawObject::parse(text) else {
            continue;
        };
        super::json::put_meta(&mut message, SUBSCRIPTION_ID, listener.client_id.clone());
        let _ = listener.tx.try_send(Bytes::from(message.to_string()));
    }
}

fn subscription_uri(message: &RawObject) -> Option<String> {
    match message.str("method").as_deref() {
        Some("resources/subscribe" | "resources/unsubscribe") => {
            message.object("params").and_then(|p| p.str("uri"))
        }
        _ => None,
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut stdin: W,
    mut rx: mpsc::Receiver<Queued>,
    stop: CancellationToken,
    closed: CancellationToken,
) {
    loop {
        // The budget share is held until the line is written.
        let (line, _budget) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = closed.cancelled() => break,
            item = rx.recv() => match item {
                Some(item) => item,
                None => break,
            },
        };
        // Newlines frame messages; JSON text has them only as whitespace, so they can go.
        let line: Bytes = if line.contains(&b'\n') || line.contains(&b'\r') {
            line.iter()
                .map(|b| if *b == b'\n' || *b == b'\r' { b' ' } else { *b })
                .collect::<Vec<u8>>()
                .into()
        } else {
            line
        };
        let write = async {
            stdin.write_all(&line).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        };
        let result = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = write => r,
        };
        if result.is_err() {
            break;
        }
    }
    // Dropping stdin closes it: the child's signal to exit.
    drop(stdin);
}

async fn read_loop<R: AsyncRead + Unpin>(conn: Arc<Conn>, stdout: R, max_line: usize) {
    let mut lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(max_line));
    // After a decoding error the reader yields one `None` and then goes on reading.
    let mut after_error = false;
    loop {
        let next = tokio::select! {
            _ = conn.closed.cancelled() => break,
            next = lines.next() => next,
        };
        match next {
            None if after_error => after_error = false,
            None => break,
            Some(Ok(line)) => {
                if !line.trim().is_empty() {
                    conn.dispatch(&line);
                }
            }
            Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                after_error = true;
                tracing::warn!(target: "mcpgate::stdio", session = conn.label, pid = conn.pid, max_line, "upstream command wrote a message longer than upstream.max_response_bytes; dropped");
            }
            Some(Err(LinesCodecError::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                after_error = true;
                tracing::warn!(target: "mcpgate::stdio", session = conn.label, pid = conn.pid, "upstream command wrote a line that is not UTF-8; ignored");
            }
            Some(Err(LinesCodecError::Io(e))) => {
                tracing::warn!(target: "mcpgate::stdio", session = conn.label, error = %e, "reading the upstream command's output failed");
                break;
            }
        }
    }
    // Usually the child has exited: give the supervisor a moment to report how, which says
    // more than "output closed".
    tokio::select! {
        _ = conn.closed.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
    }
    conn.close("the upstream command closed its output".into());
}

/// Why a gateway's own request failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// It could not be sent.
    #[error("{0}")]
    Send(SendError),
    /// The child went away first.
    #[error("the upstream command exited")]
    Exited,
    /// No answer in time.
    #[error("the upstream command did not answer in time")]
    Timeout,
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream, Lines};

    use super::*;

    /// The child's side of an in-memory connection: what the gateway wrote to its stdin, and
    /// its stdout to write to.
    struct FakeChild {
        stdin: Lines<BufReader<DuplexStream>>,
        stdout: DuplexStream,
    }

    impl FakeChild {
        async fn read(&mut self) -> RawObject {
            let line = tokio::time::timeout(Duration::from_secs(5), self.stdin.next_line())
                .await
                .expect("the gateway wrote to the child in time")
                .expect("stdin readable")
                .expect("stdin open");
            RawObject::parse(line.as_bytes()).expect("a JSON object")
        }

        /// The child answers the gateway's request `gid` with `result`.
        async fn answer(&mut self, gid: u64, result: &str) {
            self.write(&format!(
                r#"{{"jsonrpc":"2.0","id":{gid},"result":{result}}}"#
            ))
            .await;
        }

        async fn write(&mut self, line: &str) {
            self.stdout.write_all(line.as_bytes()).await.unwrap();
            self.stdout.write_all(b"\n").await.unwrap();
        }
    }

    fn connect_with(send_timeout: Duration, pipe: usize) -> (Arc<Conn>, FakeChild) {
        let (gateway_stdin, child_stdin) = tokio::io::duplex(pipe);
        let (child_stdout, gateway_stdout) = tokio::io::duplex(64 * 1024);
        let conn = Conn::over(
            gateway_stdin,
            gateway_stdout,
            "test".into(),
            1,
            1024 * 1024,
            send_timeout,
            CancellationToken::new(),
        );
        let child = FakeChild {
            stdin: BufReader::new(child_stdin).lines(),
            stdout: child_stdout,
        };
        (conn, child)
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#;
    const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

    /// A client's request of `session`, sent to the child (logging allowed on its stream).
    async fn request(conn: &Conn, session: &str, text: &str) -> Call {
        conn.request(&key(session), message(text), true)
            .await
            .unwrap()
    }

    /// The same, with logging kept off its stream.
    async fn request_without_logs(conn: &Conn, session: &str, text: &str) -> Call {
        conn.request(&key(session), message(text), false)
            .await
            .unwrap()
    }

    fn connect() -> (Arc<Conn>, FakeChild) {
        connect_with(Duration::from_secs(5), 64 * 1024)
    }

    fn key(name: &str) -> SessionKey {
        Arc::from(name)
    }

    fn message(text: &str) -> RawObject {
        RawObject::parse(text.as_bytes()).unwrap()
    }

    async fn recv<T>(rx: &mut mpsc::Receiver<T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("delivered in time")
            .expect("channel open")
    }

    fn delivered_text(delivery: Delivery) -> RawObject {
        match delivery {
            Delivery::Message(bytes) => RawObject::parse(&bytes).unwrap(),
            Delivery::Request { .. } => panic!("a message was expected, not a request"),
        }
    }

    /// A pending request of `session` in `routes`, with its events receiver.
    fn pending(routes: &mut Routes, gid: u64, session: &str) -> mpsc::Receiver<Delivery> {
        let (events, rx) = mpsc::channel(STREAM_QUEUE);
        let (answer, _) = oneshot::channel();
        routes.pending.insert(
            gid,
            Pending {
                session: key(session),
                client_id: raw(&gid),
                progress: None,
                events,
                answer,
                logs: true,
            },
        );
        rx
    }

    fn stream(routes: &mut Routes, session: &str) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        routes.sessions.insert(key(session));
        routes.streams.insert(key(session), tx);
        rx
    }

    #[tokio::test]
    async fn a_request_goes_to_the_child_under_a_gateway_id_and_its_answer_comes_back_with_the_client_id()
     {
        let (conn, mut child) = connect();
        let call = request(
            &conn,
            "s-a",
            r#"{"jsonrpc":"2.0","id":"abc","method":"tools/list"}"#,
        )
        .await;
        let sent = child.read().await;
        assert_eq!(sent.get("id").unwrap().get(), call.gid.to_string());
        child.answer(call.gid, r#"{}"#).await;
        let answer = RawObject::parse(&call.answer.await.unwrap()).unwrap();
        assert_eq!(answer.get("id").unwrap().get(), r#""abc""#);
    }

    #[tokio::test]
    async fn two_sessions_using_the_same_client_id_get_distinct_ids_at_the_child() {
        let (conn, mut child) = connect();
        let a = request(&conn, "s-a", PING).await;
        let b = request(&conn, "s-b", PING).await;
        let (first, second) = (child.read().await, child.read().await);
        assert_ne!(
            first.get("id").unwrap().get(),
            second.get("id").unwrap().get()
        );
        assert_ne!(a.gid, b.gid);
        assert_eq!(conn.find(&key("s-a"), "1"), Some(a.gid));
        assert_eq!(conn.find(&key("s-b"), "1"), Some(b.gid));
        assert_eq!(conn.find(&key("s-c"), "1"), None);
    }

    #[tokio::test]
    async fn a_progress_token_is_the_gateways_at_the_child_and_the_clients_on_the_way_back() {
        let (conn, mut child) = connect();
        let with_token = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"t","_meta":{"progressToken":"mine"}}}"#;
        let mut call = request(&conn, "s-a", with_token).await;
        let sent = child.read().await;
        let token = sent.object("params").unwrap().object("_meta").unwrap();
        assert_eq!(
            token.get("progressToken").unwrap().get(),
            call.gid.to_string()
        );
        child
            .write(&format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{},"progress":1}}}}"#,
                call.gid
            ))
            .await;
        let progress = delivered_text(recv(&mut call.events).await);
        let params = progress.object("params").unwrap();
        assert_eq!(params.get("progressToken").unwrap().get(), r#""mine""#);
    }

    #[tokio::test]
    async fn an_answer_to_an_id_the_gateway_never_sent_is_ignored() {
        let (conn, mut child) = connect();
        let mut call = request(&conn, "s-a", PING).await;
        child.read().await;
        child
            .write(r#"{"jsonrpc":"2.0","id":"not-ours","result":{}}"#)
            .await;
        child.answer(call.gid + 1000, r#"{}"#).await;
        child.answer(call.gid, r#"{"n":1}"#).await;
        let answer = RawObject::parse(&(&mut call.answer).await.unwrap()).unwrap();
        assert_eq!(answer.get("result").unwrap().get(), r#"{"n":1}"#);
    }

    #[tokio::test]
    async fn a_rebound_request_answers_with_the_new_client_id() {
        let (conn, mut child) = connect();
        let call = request(&conn, "stateless-a", CALL).await;
        child.read().await;
        assert!(conn.rebind(call.gid, raw(&"retry-2")));
        assert!(!conn.rebind(call.gid + 1, raw(&"other")));
        child.answer(call.gid, r#"{}"#).await;
        let answer = RawObject::parse(&call.answer.await.unwrap()).unwrap();
        assert_eq!(answer.get("id").unwrap().get(), r#""retry-2""#);
    }

    #[tokio::test]
    async fn cancel_tells_the_child_and_stops_waiting_while_forget_only_stops_waiting() {
        let (conn, mut child) = connect();
        let cancelled = request(&conn, "s-a", PING).await;
        let forgotten = request(&conn, "s-a", PING).await;
        child.read().await;
        child.read().await;
        conn.forget(forgotten.gid);
        conn.cancel(cancelled.gid, "bored");
        let notice = child.read().await;
        assert_eq!(
            notice.str("method").as_deref(),
            Some("notifications/cancelled")
        );
        let params = notice.object("params").unwrap();
        assert_eq!(
            params.get("requestId").unwrap().get(),
            cancelled.gid.to_string()
        );
        assert_eq!(params.str("reason").as_deref(), Some("bored"));
        // Both answers are dropped unanswered; nothing else was sent about `forgotten`.
        assert!(cancelled.answer.await.is_err());
        assert!(forgotten.answer.await.is_err());
        assert!(!conn.busy());
    }

    #[tokio::test]
    async fn a_request_of_the_child_goes_to_the_only_request_in_flight_and_only_its_session_may_answer()
     {
        let (conn, mut child) = connect();
        conn.attach(&key("s-a"));
        let mut call = request(&conn, "s-a", CALL).await;
        child.read().await;
        child
            .write(r#"{"jsonrpc":"2.0","id":"q1","method":"roots/list"}"#)
            .await;
        let Delivery::Request { child_id, .. } = recv(&mut call.events).await else {
            panic!("the child's request was expected");
        };
        assert_eq!(child_id.get(), r#""q1""#);
        let reply = message(r#"{"jsonrpc":"2.0","id":"q1","result":{"roots":[]}}"#);
        assert!(!conn.answer(&key("s-b"), &reply).await.unwrap());
        assert!(conn.answer(&key("s-a"), &reply).await.unwrap());
        assert_eq!(child.read().await.get("id").unwrap().get(), r#""q1""#);
        // Answered once: a second answer is not passed on.
        assert!(!conn.answer(&key("s-a"), &reply).await.unwrap());
    }

    #[tokio::test]
    async fn a_request_of_the_child_with_no_stream_to_go_to_is_refused_at_the_child() {
        let (_conn, mut child) = connect();
        child
            .write(r#"{"jsonrpc":"2.0","id":7,"method":"sampling/createMessage"}"#)
            .await;
        let refusal = child.read().await;
        assert_eq!(refusal.get("id").unwrap().get(), "7");
        let error = refusal.object("error").unwrap();
        assert_eq!(
            error.get("code").unwrap().get(),
            crate::jsonrpc::INTERNAL_ERROR.to_string()
        );
    }

    #[tokio::test]
    async fn logging_reaches_only_a_request_that_asked_for_it() {
        let (conn, mut child) = connect();
        let mut quiet = request_without_logs(&conn, "s-a", CALL).await;
        child.read().await;
        child
            .write(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#)
            .await;
        child
            .write(r#"{"jsonrpc":"2.0","method":"notifications/other","params":{}}"#)
            .await;
        let first = delivered_text(recv(&mut quiet.events).await);
        assert_eq!(first.str("method").as_deref(), Some("notifications/other"));
    }

    #[test]
    fn a_message_about_no_request_goes_to_the_only_request_in_flight() {
        let mut routes = Routes::default();
        routes.sessions.insert(key("s-a"));
        let _rx = pending(&mut routes, 3, "s-a");
        assert!(matches!(related(&routes), Some(Target::Pending(3))));
    }

    #[test]
    fn a_message_about_no_request_of_a_single_session_prefers_its_get_stream_over_several_requests()
    {
        let mut routes = Routes::default();
        let _stream = stream(&mut routes, "s-a");
        let _one = pending(&mut routes, 3, "s-a");
        let _two = pending(&mut routes, 4, "s-a");
        assert!(matches!(related(&routes), Some(Target::Stream(s)) if &*s == "s-a"));
        routes.streams.clear();
        // Without a stream: the latest request.
        assert!(matches!(related(&routes), Some(Target::Pending(4))));
    }

    #[test]
    fn a_message_about_no_request_cannot_be_placed_when_several_sessions_share_the_child() {
        let mut routes = Routes::default();
        let _a = stream(&mut routes, "s-a");
        let _b = stream(&mut routes, "s-b");
        assert!(
            related(&routes).is_none(),
            "nothing in flight, two sessions"
        );
        let _one = pending(&mut routes, 1, "s-a");
        assert!(
            related(&routes).is_none(),
            "one session busy, but two attached"
        );
        let _two = pending(&mut routes, 2, "s-b");
        assert!(related(&routes).is_none(), "two sessions busy");
    }

    #[test]
    fn the_gateways_own_requests_do_not_make_a_message_belong_to_them() {
        let mut routes = Routes::default();
        let mut rx = stream(&mut routes, "s-a");
        // The gateway's own calls have the empty session key.
        let _own = pending(&mut routes, 9, "");
        assert!(matches!(related(&routes), Some(Target::Stream(s)) if &*s == "s-a"));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_list_change_goes_to_every_session_and_to_listeners_that_asked_with_their_id() {
        let mut routes = Routes::default();
        let mut a = stream(&mut routes, "s-a");
        let mut b = stream(&mut routes, "s-b");
        let (tx, mut wants) = mpsc::channel(4);
        let (other_tx, mut ignores) = mpsc::channel(4);
        let listener = |tools: bool, tx| Listener {
            session: key("stateless-x"),
            client_id: raw(&"listen-1"),
            tools,
            prompts: false,
            resources: false,
            uris: HashSet::new(),
            tx,
        };
        routes.listeners.insert(1, listener(true, tx));
        routes.listeners.insert(2, listener(false, other_tx));
        let text =
            Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#);
        deliver_broadcast(&mut routes, &Topic::Tools, &text);
        assert_eq!(a.try_recv().unwrap(), text);
        assert_eq!(b.try_recv().unwrap(), text);
        let heard = RawObject::parse(&wants.try_recv().unwrap()).unwrap();
        let meta = heard.object("params").unwrap().object("_meta").unwrap();
        assert_eq!(meta.get(SUBSCRIPTION_ID).unwrap().get(), r#""listen-1""#);
        assert!(ignores.try_recv().is_err());
    }

    #[test]
    fn a_resource_update_goes_only_to_sessions_subscribed_to_it_when_several_share_the_child() {
        let mut routes = Routes::default();
        let mut a = stream(&mut routes, "s-a");
        let mut b = stream(&mut routes, "s-b");
        routes
            .subscribed
            .entry(key("s-a"))
            .or_default()
            .insert("file:///x".into());
        let text = Bytes::from_static(b"{}");
        deliver_broadcast(&mut routes, &Topic::Updated("file:///x".into()), &text);
        assert!(a.try_recv().is_ok());
        assert!(b.try_recv().is_err());
    }

    #[test]
    fn only_subscribe_and_unsubscribe_name_a_subscription_uri() {
        let uri = |text: &str| subscription_uri(&message(text));
        assert_eq!(
            uri(r#"{"method":"resources/subscribe","params":{"uri":"a:b"}}"#).as_deref(),
            Some("a:b")
        );
        assert_eq!(
            uri(r#"{"method":"resources/unsubscribe","params":{"uri":"a:b"}}"#).as_deref(),
            Some("a:b")
        );
        assert_eq!(
            uri(r#"{"method":"resources/read","params":{"uri":"a:b"}}"#),
            None
        );
        assert_eq!(uri(r#"{"method":"resources/subscribe","params":{}}"#), None);
    }

    #[test]
    fn prune_forgets_streams_and_listeners_whose_client_went_away() {
        let mut routes = Routes::default();
        let gone = stream(&mut routes, "s-gone");
        let _kept = stream(&mut routes, "s-kept");
        drop(gone);
        routes.prune();
        assert!(!routes.streams.contains_key("s-gone"));
        assert!(routes.streams.contains_key("s-kept"));
    }

    #[test]
    fn old_questions_are_forgotten_once_many_are_waiting() {
        let mut routes = Routes::default();
        let Some(long_ago) =
            std::time::Instant::now().checked_sub(ASKED_TTL + Duration::from_secs(1))
        else {
            return; // The clock cannot go back that far (a machine just booted).
        };
        for i in 0..256 {
            routes.asked.insert(i.to_string(), (key("s-a"), long_ago));
        }
        routes.ask(&raw(&"new"), key("s-b"));
        assert_eq!(routes.asked.len(), 1);
        assert!(routes.asked.contains_key(r#""new""#));
    }

    #[test]
    fn a_session_gets_its_first_message_whatever_its_size_and_nothing_past_its_budget_after() {
        let shares = Arc::new(Mutex::new(HashMap::new()));
        let a = key("s-a");
        let big = SessionShare::take(&shares, &a, SESSION_BYTES * 2).expect("first message fits");
        assert!(SessionShare::take(&shares, &a, 1).is_none());
        // Another session has its own budget.
        assert!(SessionShare::take(&shares, &key("s-b"), 1).is_some());
        drop(big);
        assert!(
            !shares.lock().unwrap().contains_key(&a),
            "an idle session is forgotten"
        );
        let half = SessionShare::take(&shares, &a, SESSION_BYTES / 2).unwrap();
        let other_half = SessionShare::take(&shares, &a, SESSION_BYTES / 2).unwrap();
        assert!(SessionShare::take(&shares, &a, 1).is_none());
        drop((half, other_half));
        assert!(shares.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_session_past_its_byte_budget_is_refused_at_once_while_others_still_send() {
        // The child reads nothing: what is sent stays queued.
        let (conn, _child) = connect_with(Duration::from_millis(200), 1024);
        let line = Bytes::from(vec![b' '; SESSION_BYTES / 4]);
        for _ in 0..4 {
            conn.send_for(Some(&key("s-a")), line.clone())
                .await
                .unwrap();
        }
        let refused = conn.send_for(Some(&key("s-a")), line.clone()).await;
        assert!(matches!(refused, Err(SendError::Busy)));
        conn.send_for(Some(&key("s-b")), line).await.unwrap();
    }

    #[tokio::test]
    async fn a_child_that_stops_reading_turns_senders_away_once_its_queue_budget_is_full() {
        let (conn, _child) = connect_with(Duration::from_millis(200), 1024);
        let line = Bytes::from(vec![b' '; STDIN_QUEUE_BYTES / 8]);
        for _ in 0..8 {
            conn.send(line.clone()).await.unwrap();
        }
        assert!(matches!(conn.send(line).await, Err(SendError::Busy)));
    }

    #[tokio::test]
    async fn a_closed_connection_refuses_to_send_and_ends_every_waiting_request() {
        let (conn, mut child) = connect();
        let call = request(&conn, "s-a", PING).await;
        child.read().await;
        conn.close("gone".into());
        assert!(call.answer.await.is_err());
        assert!(matches!(
            conn.send(Bytes::from_static(b"{}")).await,
            Err(SendError::Closed)
        ));
        assert_eq!(conn.exit_reason(), "gone");
    }
}
