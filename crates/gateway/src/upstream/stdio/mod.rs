//! A stdio MCP server as the upstream: the gateway starts the command, speaks
//! newline-delimited JSON-RPC with it, and supervises it.
//!
//! - `per-session` (the default): every MCP session gets a child of its own, with its own
//!   `initialize`; a stateless (2026-07-28) client gets one child per subject. Limits: at most
//!   `max_children` at once, idle ones stopped after `child_idle_timeout`.
//! - `shared`: one child for everyone; ids are rewritten so answers reach the right session,
//!   and later sessions' `initialize` is answered from the first handshake.
//!
//! A command that keeps dying is restarted with growing delays ([`Backoff`]); while one runs,
//! new sessions get 503 with `Retry-After`.

pub mod conn;
pub mod json;
pub mod process;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::session::Owner;
use conn::{CallError, Conn, SessionKey};
use json::{RawObject, raw};
use process::{CommandSpec, Process};

/// The newest revision with `initialize`, used when the gateway initializes a child itself.
pub const LEGACY_REVISION: &str = "2025-11-25";
/// How long a stopping child gets after its stdin closes (and again after SIGTERM).
const STOP_GRACE: Duration = Duration::from_secs(3);
/// A child that dies sooner than this after starting counts as a crash for the backoff.
const EARLY_DEATH: Duration = Duration::from_secs(10);

/// How sessions map to children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMode {
    /// A child per session.
    PerSession,
    /// One child for all.
    Shared,
}

/// Settings.
#[derive(Debug, Clone)]
pub struct StdioOptions {
    /// What to run.
    pub command: CommandSpec,
    /// Sessions and children.
    pub mode: SessionMode,
    /// Children at once (per-session mode).
    pub max_children: usize,
    /// Idle children are stopped after this (and unanswered input requests forgotten).
    pub idle_timeout: Duration,
    /// Longest silence on a response stream.
    pub stream_idle_timeout: Duration,
    /// Sessions one subject may hold at once (per-session mode).
    pub max_sessions_per_subject: usize,
    /// Time for a new child to answer its first message.
    pub startup_timeout: Duration,
    /// Time for a child to answer a request.
    pub request_timeout: Duration,
    /// Longest message accepted from a child.
    pub max_line: usize,
}

/// Which revision family a child speaks.
#[derive(Debug, Clone)]
pub enum Generation {
    /// Not asked (a session client's `initialize` went to it directly).
    Unknown,
    /// Answers `server/discover` (2026-07-28): its result.
    Stateless(Box<RawValue>),
    /// Does not: it needs `initialize` first.
    Legacy,
}

/// One running child.
pub struct Child {
    /// Its connection.
    pub conn: Arc<Conn>,
    /// What it speaks.
    pub generation: Mutex<Generation>,
    /// Its `initialize` result, once it has been initialized.
    pub initialized: tokio::sync::Mutex<Option<Box<RawValue>>>,
    /// Whether that result was made by the gateway from `server/discover` (a child that only
    /// speaks 2026-07-28): its session clients are then translated.
    pub translated: std::sync::atomic::AtomicBool,
    stop: CancellationToken,
    done: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    last_used: Mutex<Instant>,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl Drop for Child {
    /// The last user of a child went away without stopping it (a client that disconnected
    /// while its process started, a replaced shared child): stop it now.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Child {
    /// Notes a use (for the idle timeout).
    pub fn touch(&self) {
        *self.last_used.lock().expect("last_used lock") = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_used.lock().expect("last_used lock").elapsed()
    }

    /// Stops the child (stdin closed, then SIGTERM, then SIGKILL) and waits for it.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        if let Some(handle) = self.done.lock().await.take() {
            let _ = handle.await;
        }
    }
}

/// A session of a client of the session revisions, or a subject's stateless use.
#[derive(Debug)]
pub struct Session {
    /// Its key among the child's users.
    pub key: SessionKey,
    /// Who opened it.
    pub owner: Owner,
    /// Its child.
    pub child: Arc<Child>,
    /// Whether the child is its own (per-session mode).
    pub owns_child: bool,
    /// Whether its `notifications/initialized` goes to the child (false for a later session
    /// of a shared child, whose `initialize` the gateway answered).
    pub relays_initialized: bool,
    /// Set when the child only speaks 2026-07-28 and this is a session client.
    pub translation: Option<Translation>,
    /// Last request (to end abandoned sessions of a shared child).
    pub last_used: Mutex<Option<Instant>>,
    /// One stateless request's use of the shared child: detached from the child when the
    /// request is done (its answer sent, its parked state and streams gone), so that an idle
    /// shared child can be stopped.
    pub ephemeral: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.ephemeral {
            self.child.conn.detach(&self.key);
        }
    }
}

/// A session client in front of a child that only speaks 2026-07-28: the gateway answered its
/// `initialize` from `server/discover`, adds the revision's `_meta` to each request, asks the
/// client what the child's `input_required` results ask for, and keeps the GET stream fed
/// from a `subscriptions/listen` at the child.
#[derive(Debug, Default)]
pub struct Translation {
    /// `_meta` entries every request gets (revision, client info, capabilities).
    pub meta: Vec<(String, Box<RawValue>)>,
    /// Level set with `logging/setLevel`, sent as `_meta` logLevel.
    pub log_level: Mutex<Option<Box<RawValue>>>,
    /// Requests the gateway put to the client, by id, awaiting its answer.
    pub asks: Mutex<HashMap<String, tokio::sync::oneshot::Sender<Box<RawValue>>>>,
    /// `resources/subscribe` URIs.
    pub subscribed: Mutex<std::collections::BTreeSet<String>>,
    /// The GET stream's sender and the child listen request feeding it.
    pub listen: Mutex<Option<(u64, tokio::sync::mpsc::Sender<bytes::Bytes>)>>,
    /// Held while the listen request is replaced.
    pub relisten: tokio::sync::Mutex<()>,
}

/// What a request is about: its method and target (`params.name`, `params.uri`, or
/// `params.ref`), which a retry carrying the request's `requestState` must name again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The method.
    pub method: String,
    /// The target, as the gateway forwarded it (URIs in their normal spelling).
    pub target: Option<String>,
}

impl Bound {
    /// The method and target of `request`.
    pub fn of(method: &str, request: &RawObject) -> Bound {
        let params = request.object("params");
        let target = params.as_ref().and_then(|p| {
            p.str("name")
                .or_else(|| p.str("uri"))
                .or_else(|| p.get("ref").map(|r| r.get().to_owned()))
        });
        Bound {
            method: method.to_owned(),
            target,
        }
    }
}

/// Most requests waiting for their clients' input at once, in all and per owner.
const MAX_PARKED: usize = 1024;
const MAX_PARKED_PER_OWNER: usize = 32;

/// Why a parked request cannot be continued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpark {
    /// Unknown, expired, or parked by someone else.
    Unknown,
    /// Parked for another method or target: it stays parked.
    OtherRequest,
}

/// A request of a 2026-07-28 client, waiting at the child for answers the client was asked
/// for in an `input_required` result (the child asked with a server-to-client request).
#[derive(Debug)]
pub struct Parked {
    /// Who may continue it.
    pub owner: Owner,
    /// What it is about.
    pub bound: Bound,
    /// Where it runs.
    pub session: Arc<Session>,
    /// The request at the child.
    pub call: conn::Call,
    /// `inputRequests` keys and the child's ids for them.
    pub asked: Vec<(String, Box<RawValue>)>,
    expires: Instant,
}

/// Why no child can be had now.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Every slot is taken.
    #[error("all {0} upstream processes are in use")]
    Full(usize),
    /// This subject holds as many sessions as it may.
    #[error("this user already holds {0} sessions; end one (DELETE) first")]
    PerSubject(usize),
    /// The command keeps crashing; wait.
    #[error("the upstream command keeps exiting; next start allowed in {0:?}")]
    Backoff(Duration),
    /// The command could not be started.
    #[error("the upstream command could not be started: {0}")]
    Spawn(std::io::Error),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

impl Refusal {
    /// Seconds for `Retry-After`, when retrying makes sense.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Refusal::Full(_) | Refusal::PerSubject(_) => Some(5),
            Refusal::Backoff(d) => Some(d.as_secs().max(1)),
            Refusal::Spawn(_) | Refusal::ShuttingDown => None,
        }
    }
}

/// Restart delays for a command that keeps dying early: none for the first death, then 1 s,
/// 2 s, 4 s … up to 30 s; a child that lives long enough resets it.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    last: Option<Instant>,
}

impl Backoff {
    fn delay(&self) -> Duration {
        if self.failures < 2 {
            return Duration::ZERO;
        }
        Duration::from_secs(1u64 << (self.failures - 2).min(5)).min(Duration::from_secs(30))
    }

    fn wait_left(&self) -> Option<Duration> {
        let last = self.last?;
        let left = self.delay().checked_sub(last.elapsed())?;
        (!left.is_zero()).then_some(left)
    }
}

/// A subject's stateless session, filled when first needed.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Session>>>>;

/// The stdio upstream.
pub struct StdioUpstream {
    options: StdioOptions,
    sessions: Mutex<HashMap<SessionKey, Arc<Session>>>,
    /// Per-session mode: each subject's stateless child.
    /// A slot per subject, so that one subject's slow start does not hold up another's.
    stateless: Mutex<HashMap<Owner, Slot>>,
    /// Shared mode: the child.
    shared: tokio::sync::Mutex<Option<Arc<Child>>>,
    children: Arc<AtomicUsize>,
    backoff: Arc<Mutex<Backoff>>,
    stopping: CancellationToken,
    all: Mutex<Vec<std::sync::Weak<Child>>>,
    parked: Mutex<HashMap<String, Parked>>,
    /// Learnt from the first session: the command speaks only 2026-07-28, so new children
    /// are probed instead of being sent `initialize`.
    stateless_only: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for StdioUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioUpstream")
            .field("command", &self.options.command)
            .field("mode", &self.options.mode)
            .finish_non_exhaustive()
    }
}

impl StdioUpstream {
    /// An upstream that runs `options.command`; starts the idle reaper.
    pub fn new(options: StdioOptions) -> Arc<Self> {
        let upstream = Arc::new(StdioUpstream {
            options,
            sessions: Mutex::new(HashMap::new()),
            stateless: Mutex::new(HashMap::new()),
            shared: tokio::sync::Mutex::new(None),
            children: Arc::new(AtomicUsize::new(0)),
            backoff: Arc::new(Mutex::new(Backoff::default())),
            stopping: CancellationToken::new(),
            all: Mutex::new(Vec::new()),
            parked: Mutex::new(HashMap::new()),
            stateless_only: std::sync::atomic::AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&upstream);
        let every = (upstream.options.idle_timeout / 2)
            .clamp(Duration::from_millis(100), Duration::from_secs(5));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(upstream) = weak.upgrade() else {
                    break;
                };
                if upstream.stopping.is_cancelled() {
                    break;
                }
                upstream.reap().await;
            }
        });
        upstream
    }

    /// The settings.
    pub fn options(&self) -> &StdioOptions {
        &self.options
    }

    /// Whether a new child could start now (for `/readyz`).
    pub fn ready(&self) -> bool {
        !self.stopping.is_cancelled()
            && self
                .backoff
                .lock()
                .expect("backoff lock")
                .wait_left()
                .is_none()
    }

    /// Starts a child. `label` names it in the log.
    pub fn spawn(&self, label: &str) -> Result<Arc<Child>, Refusal> {
        if self.stopping.is_cancelled() {
            return Err(Refusal::ShuttingDown);
        }
        if let Some(left) = self.backoff.lock().expect("backoff lock").wait_left() {
            return Err(Refusal::Backoff(left));
        }
        // Reserve a slot first, so that concurrent starts cannot pass the limit together.
        let limit = match self.options.mode {
            SessionMode::PerSession => self.options.max_children,
            SessionMode::Shared => usize::MAX,
        };
        if self
            .children
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_err()
        {
            return Err(Refusal::Full(self.options.max_children));
        }
        let (process, pipes) = match Process::spawn(&self.options.command, label) {
            Ok(p) => p,
            Err(e) => {
                self.children.fetch_sub(1, Ordering::SeqCst);
                let mut backoff = self.backoff.lock().expect("backoff lock");
                backoff.failures += 1;
                backoff.last = Some(Instant::now());
                tracing::error!(target: "mcpgate::stdio", error = %e, program = self.options.command.argv.first().map(String::as_str).unwrap_or_default(), "upstream command could not be started");
                return Err(Refusal::Spawn(e));
            }
        };
        let stop = CancellationToken::new();
        let conn = Conn::start(
            pipes,
            label.to_owned(),
            process.pid(),
            self.options.max_line,
            self.options.request_timeout,
            stop.clone(),
        );
        let handle = tokio::spawn(supervise(
            process,
            Arc::clone(&conn),
            stop.clone(),
            Arc::clone(&self.children),
            Arc::clone(&self.backoff),
        ));
        let child = Arc::new(Child {
            conn,
            generation: Mutex::new(Generation::Unknown),
            initialized: tokio::sync::Mutex::new(None),
            translated: std::sync::atomic::AtomicBool::new(false),
            stop,
            done: tokio::sync::Mutex::new(Some(handle)),
            last_used: Mutex::new(Instant::now()),
        });
        let mut all = self.all.lock().expect("all lock");
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&child));
        Ok(child)
    }

    /// Remembers that the command speaks only 2026-07-28. The child that taught it may have
    /// exited over the `initialize` it refused: that exit is not a crash.
    pub fn learn_stateless_only(&self, child_exited: bool) {
        if !self
            .stateless_only
            .swap(true, std::sync::atomic::Ordering::SeqCst)
            && child_exited
        {
            let mut backoff = self.backoff.lock().expect("backoff lock");
            backoff.failures = backoff.failures.saturating_sub(1);
        }
    }

    /// Whether the command is known to speak only 2026-07-28.
    pub fn known_stateless_only(&self) -> bool {
        self.stateless_only
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many sessions `owner` holds.
    pub fn sessions_of(&self, owner: Owner) -> usize {
        self.sessions
            .lock()
            .expect("sessions lock")
            .values()
            .filter(|s| s.owner == owner && !s.child.conn.is_closed())
            .count()
    }

    /// Registers a session.
    pub fn add_session(&self, session: Arc<Session>) {
        session.child.conn.attach(&session.key);
        self.sessions
            .lock()
            .expect("sessions lock")
            .insert(Arc::clone(&session.key), session);
    }

    /// A live session by key.
    pub fn session(&self, key: &str) -> Option<Arc<Session>> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let session = sessions.get(key)?;
        if session.child.conn.is_closed() {
            sessions.remove(key);
            return None;
        }
        session.child.touch();
        *session.last_used.lock().expect("last_used lock") = Some(Instant::now());
        Some(Arc::clone(session))
    }

    /// Ends a session; in per-session mode its child is stopped (in the background).
    pub fn end_session(&self, key: &str) -> bool {
        let Some(session) = self.sessions.lock().expect("sessions lock").remove(key) else {
            return false;
        };
        for gid in session.child.conn.detach(&session.key) {
            session.child.conn.send_cancel(gid, "session ended");
        }
        if session.owns_child {
            let child = Arc::clone(&session.child);
            tokio::spawn(async move { child.shutdown().await });
        }
        true
    }

    /// The shared child (started, and asked `server/discover`, when there is none alive).
    pub async fn shared_child(&self, meta: Option<&RawObject>) -> Result<Arc<Child>, Refusal> {
        let mut shared = self.shared.lock().await;
        if let Some(child) = shared.as_ref()
            && !child.conn.is_closed()
        {
            child.touch();
            return Ok(Arc::clone(child));
        }
        let child = self.spawn("shared")?;
        self.probe(&child, meta).await;
        *shared = Some(Arc::clone(&child));
        Ok(child)
    }

    /// Per-session mode: the subject's child for stateless requests.
    pub async fn stateless_session(
        &self,
        owner: Owner,
        meta: Option<&RawObject>,
    ) -> Result<Arc<Session>, Refusal> {
        let mut slot = loop {
            let slot_arc = Arc::clone(
                self.stateless
                    .lock()
                    .expect("stateless lock")
                    .entry(owner)
                    .or_default(),
            );
            let slot = Arc::clone(&slot_arc).lock_owned().await;
            // The reaper may have retired this slot while we waited for it: take the current one.
            let current = self
                .stateless
                .lock()
                .expect("stateless lock")
                .get(&owner)
                .is_some_and(|s| Arc::ptr_eq(s, &slot_arc));
            if current {
                break slot;
            }
        };
        if let Some(s) = slot.as_ref()
            && !s.child.conn.is_closed()
        {
            s.child.touch();
            return Ok(Arc::clone(s));
        }
        let key: SessionKey = Arc::from(format!("stateless-{}", random_hex()));
        let child = self.spawn(&key)?;
        self.probe(&child, meta).await;
        let session = Arc::new(Session {
            ephemeral: false,
            key,
            owner,
            child,
            owns_child: true,
            relays_initialized: false,
            translation: None,
            last_used: Mutex::new(None),
        });
        session.child.conn.attach(&session.key);
        *slot = Some(Arc::clone(&session));
        Ok(session)
    }

    /// What [`Self::probe`] learnt.
    pub fn generation(child: &Child) -> Generation {
        child.generation.lock().expect("generation lock").clone()
    }

    /// Asks a new child `server/discover` (what a 2026-07-28 stdio client does first) to
    /// learn which revisions it speaks; any error means the session revisions only.
    pub async fn probe(&self, child: &Child, meta: Option<&RawObject>) {
        let mut m = RawObject::default();
        m.set(META_VERSION, raw(&"2026-07-28"));
        m.set(META_CAPABILITIES, raw(&serde_json::json!({})));
        m.set(META_CLIENT, client_info());
        if let Some(given) = meta {
            for key in [META_CAPABILITIES, META_CLIENT] {
                if let Some(v) = given.get(key) {
                    m.set(key, v.to_owned());
                }
            }
        }
        let params = RawObject(vec![("_meta".into(), m.to_raw())]).to_raw();
        let generation = match child
            .conn
            .call("server/discover", params, self.options.startup_timeout)
            .await
        {
            Ok(answer) => match answer.get("result") {
                Some(result) => Generation::Stateless(result.to_owned()),
                None => Generation::Legacy,
            },
            Err(e) => {
                tracing::debug!(target: "mcpgate::stdio", error = %e, "server/discover probe failed");
                Generation::Legacy
            }
        };
        tracing::info!(target: "mcpgate::stdio", pid = child.conn.pid(), modern = matches!(generation, Generation::Stateless(_)), "upstream command probed");
        *child.generation.lock().expect("generation lock") = generation;
    }

    /// Initializes a child of the session revisions on a stateless client's behalf (once),
    /// with the client's `_meta` capabilities and client info. Returns the result.
    pub async fn ensure_initialized(
        &self,
        child: &Child,
        meta: Option<&RawObject>,
    ) -> Result<Box<RawValue>, CallError> {
        let mut initialized = child.initialized.lock().await;
        if let Some(result) = initialized.as_ref() {
            return Ok(result.clone());
        }
        let capabilities = meta
            .and_then(|m| m.get(META_CAPABILITIES))
            .map(ToOwned::to_owned)
            .unwrap_or_else(|| raw(&serde_json::json!({})));
        let info = meta
            .and_then(|m| m.get(META_CLIENT))
            .map(ToOwned::to_owned)
            .unwrap_or_else(client_info);
        let params = RawObject(vec![
            ("protocolVersion".into(), raw(&LEGACY_REVISION)),
            ("capabilities".into(), capabilities),
            ("clientInfo".into(), info),
        ])
        .to_raw();
        let answer = child
            .conn
            .call("initialize", params, self.options.startup_timeout)
            .await?;
        let Some(result) = answer.get("result") else {
            return Err(CallError::Exited);
        };
        child
            .conn
            .send(bytes::Bytes::from_static(
                br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            ))
            .await
            .map_err(CallError::Send)?;
        *initialized = Some(result.to_owned());
        Ok(result.to_owned())
    }

    /// Parks a request until its client answers; returns the `requestState` handle, or
    /// `None` when too many requests wait already (in all, or for this owner).
    pub fn park(
        &self,
        owner: Owner,
        session: Arc<Session>,
        call: conn::Call,
        asked: Vec<(String, Box<RawValue>)>,
        bound: Bound,
    ) -> Option<String> {
        {
            let parked = self.parked.lock().expect("parked lock");
            if parked.len() >= MAX_PARKED
                || parked.values().filter(|p| p.owner == owner).count() >= MAX_PARKED_PER_OWNER
            {
                return None;
            }
        }
        let token = format!("mcpgate-{}", random_hex());
        let parked = Parked {
            owner,
            bound,
            session,
            call,
            asked,
            expires: Instant::now() + self.options.idle_timeout,
        };
        self.parked
            .lock()
            .expect("parked lock")
            .insert(token.clone(), parked);
        Some(token)
    }

    /// Takes a parked request back, when `owner` parked it, it has not expired, and the
    /// retry is the same request (`bound`: method and target).
    pub fn unpark(&self, token: &str, owner: Owner, bound: &Bound) -> Result<Parked, Unpark> {
        let mut parked = self.parked.lock().expect("parked lock");
        match parked.get(token) {
            Some(p) if p.owner == owner && p.expires > Instant::now() => {
                if p.bound != *bound {
                    return Err(Unpark::OtherRequest);
                }
                parked.remove(token).ok_or(Unpark::Unknown)
            }
            _ => Err(Unpark::Unknown),
        }
    }

    /// Stops idle children and forgets dead sessions.
    async fn reap(&self) {
        let idle = self.options.idle_timeout;
        let now = Instant::now();
        let expired: Vec<Parked> = {
            let mut parked = self.parked.lock().expect("parked lock");
            let keys: Vec<String> = parked
                .iter()
                .filter(|(_, p)| p.expires <= now)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| parked.remove(k)).collect()
        };
        for p in expired {
            p.session
                .child
                .conn
                .cancel(p.call.gid, "input was not provided in time");
        }
        let expired: Vec<SessionKey> = {
            let sessions = self.sessions.lock().expect("sessions lock");
            sessions
                .values()
                .filter(|s| {
                    let unused = s
                        .last_used
                        .lock()
                        .expect("last_used lock")
                        .is_none_or(|at| at.elapsed() >= idle);
                    s.child.conn.is_closed()
                        || (s.owns_child && !s.child.conn.busy() && s.child.idle_for() >= idle)
                        || (!s.owns_child && unused && !s.child.conn.session_busy(&s.key))
                })
                .map(|s| Arc::clone(&s.key))
                .collect()
        };
        for key in expired {
            tracing::info!(target: "mcpgate::stdio", session = %key, "session ended (idle or upstream gone)");
            self.end_session(&key);
        }
        let slots: Vec<(Owner, Slot)> = self
            .stateless
            .lock()
            .expect("stateless lock")
            .iter()
            .map(|(o, s)| (*o, Arc::clone(s)))
            .collect();
        for (owner, slot) in slots {
            // A slot being filled right now is not idle.
            let Ok(mut slot) = slot.try_lock() else {
                continue;
            };
            let stale = slot.as_ref().is_none_or(|s| {
                s.child.conn.is_closed() || (!s.child.conn.busy() && s.child.idle_for() >= idle)
            });
            if stale {
                if let Some(s) = slot.take() {
                    let child = Arc::clone(&s.child);
                    tokio::spawn(async move { child.shutdown().await });
                }
                // Retired while still locked: a request waiting for this slot sees it is no
                // longer the current one and takes a fresh slot.
                self.stateless
                    .lock()
                    .expect("stateless lock")
                    .remove(&owner);
                drop(slot);
            }
        }
        let mut shared = self.shared.lock().await;
        if let Some(child) = shared.as_ref()
            && !child.conn.is_closed()
            && child.conn.session_count() == 0
            && !child.conn.busy()
            && child.idle_for() >= idle
        {
            let child = shared.take().expect("checked");
            tokio::spawn(async move { child.shutdown().await });
        }
    }

    /// Refuses new children and ends every GET and listen stream; requests in flight go on.
    pub fn drain(&self) {
        self.stopping.cancel();
        for session in self.sessions.lock().expect("sessions lock").values() {
            if let Some(t) = &session.translation {
                t.listen.lock().expect("listen lock").take();
            }
        }
        for child in self
            .all
            .lock()
            .expect("all lock")
            .iter()
            .filter_map(std::sync::Weak::upgrade)
        {
            child.conn.close_streams();
        }
    }

    /// Stops every child and refuses new ones.
    pub async fn shutdown(&self) {
        self.stopping.cancel();
        let children: Vec<Arc<Child>> = self
            .all
            .lock()
            .expect("all lock")
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        self.sessions.lock().expect("sessions lock").clear();
        self.stateless.lock().expect("stateless lock").clear();
        self.shared.lock().await.take();
        futures::future::join_all(children.iter().map(|c| c.shutdown())).await;
    }
}

/// `_meta` keys of the 2026-07-28 revision.
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// Client capabilities in `_meta`.
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// Client info in `_meta`.
pub const META_CLIENT: &str = "io.modelcontextprotocol/clientInfo";
/// Requested log level in `_meta`.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// Server info in a result's `_meta`.
pub const META_SERVER: &str = "io.modelcontextprotocol/serverInfo";

fn client_info() -> Box<RawValue> {
    raw(&serde_json::json!({"name": "mcpgate", "version": env!("CARGO_PKG_VERSION")}))
}

/// 128 random bits, hex.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits for the child to exit (by itself, or because `stop` asked it to), and closes its
/// connection with the reason.
async fn supervise(
    mut process: Process,
    conn: Arc<Conn>,
    stop: CancellationToken,
    children: Arc<AtomicUsize>,
    backoff: Arc<Mutex<Backoff>>,
) {
    let started = Instant::now();
    let pid = process.pid();
    let exited = tokio::select! {
        status = process.wait() => Some(status),
        // Asked to stop; but a child whose output already ended died by itself.
        _ = stop.cancelled() => match process.exit_status() {
            Some(status) => Some(Ok(status)),
            None if conn.is_closed() => {
                tokio::time::timeout(Duration::from_secs(1), process.wait()).await.ok()
            }
            None => None,
        },
    };
    let Some(status) = exited else {
        // Asked to stop.
        conn.close("the session ended".into());
        process.stop(STOP_GRACE).await;
        children.fetch_sub(1, Ordering::SeqCst);
        return;
    };
    let status = status
        .map(|s| s.to_string())
        .unwrap_or_else(|e| e.to_string());
    tracing::warn!(target: "mcpgate::stdio", pid, %status, "upstream command exited");
    {
        let mut b = backoff.lock().expect("backoff lock");
        if started.elapsed() < EARLY_DEATH {
            b.failures += 1;
            b.last = Some(Instant::now());
        } else {
            *b = Backoff::default();
        }
    }
    conn.close(format!("the upstream command exited ({status})"));
    // Whatever the child started goes with it.
    process.stop(Duration::ZERO).await;
    children.fetch_sub(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut b = Backoff::default();
        assert_eq!(b.delay(), Duration::ZERO);
        b.failures = 1;
        assert_eq!(b.delay(), Duration::ZERO);
        b.failures = 2;
        assert_eq!(b.delay(), Duration::from_secs(1));
        b.failures = 4;
        assert_eq!(b.delay(), Duration::from_secs(4));
        b.failures = 40;
        assert_eq!(b.delay(), Duration::from_secs(30));
    }
}
