//! `/mcp`: the MCP-aware forwarding of Streamable HTTP, for both protocol generations on one
//! endpoint.
//!
//! - Session-based revisions (2025-03-26 … 2025-11-25): `initialize` opens a session upstream;
//!   the gateway hands the client a sealed id ([`crate::session`]) bound to the subject, and
//!   swaps it back for the upstream's id on every later request, GET stream and DELETE.
//! - The stateless revision (2026-07-28): no sessions; the mirrored `Mcp-Method` / `Mcp-Name`
//!   / `MCP-Protocol-Version` headers are checked against the body ([`stateless`]); GET and
//!   DELETE get 405.
//!
//! Bodies are forwarded byte for byte; responses (JSON or SSE) are streamed back as they
//! arrive. A client that goes away mid-request cancels it upstream.

pub mod anonymous;
pub mod enforce;
pub mod message;
pub mod sse;
pub mod stateless;
mod stdio;
pub mod target;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use futures::TryStreamExt as _;
use mcpgate_guard::Principal;
use serde_json::value::RawValue;

use crate::budget::Short;
use crate::jsonrpc::{self, INTERNAL_ERROR};
use crate::refusal::Refusal;
use crate::session::{Owner, SessionSealer};
use crate::upstream::Upstream;
use crate::upstream::http::{HttpUpstream, Reply, UpstreamError};
use message::{Kind, MAX_DEPTH, Message, Unreadable};

pub(crate) static SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
/// The mirrored headers' names, made once (a name given as text is parsed on every lookup).
static MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
static MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// What the client's `Authorization` header becomes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenForwarding {
    /// Removed (the default: no token passthrough).
    Strip,
    /// Passed unchanged (`passthrough` mode, or `forward_token`).
    Forward,
}

/// Header names that describe the verified principal upstream.
#[derive(Debug, Clone, Default)]
pub struct IdentityHeaders {
    /// Subject.
    pub subject: Option<HeaderName>,
    /// Client id.
    pub client_id: Option<HeaderName>,
    /// Scopes, space-separated.
    pub scopes: Option<HeaderName>,
}

/// Everything `/mcp` needs.
pub struct Gateway {
    /// Authorization policy, trimming and the audit log (`None`: nothing to enforce).
    pub enforcer: Option<Arc<crate::proxy::enforce::Enforcer>>,
    /// The upstream.
    pub upstream: Upstream,
    /// Seals session ids.
    pub sessions: SessionSealer,
    /// Whether the client's token goes upstream.
    pub token: TokenForwarding,
    /// Identity headers to add.
    pub identity: IdentityHeaders,
    /// Largest upstream message the gateway reads (`upstream.max_response_bytes`).
    pub max_message_bytes: usize,
    /// Largest request body (`http.max_body_bytes`).
    pub max_body_bytes: usize,
    /// Time for a request body to arrive (`http.body_timeout`).
    pub body_timeout: std::time::Duration,
    /// Bytes of request bodies held at once, by all requests together
    /// (`http.max_body_bytes_in_flight`).
    pub bodies: Arc<tokio::sync::Semaphore>,
    /// What may be done without a token (`None`: nothing, or auth is off).
    pub anonymous: Option<crate::proxy::anonymous::Anonymous>,
    /// The verifier of callers' tokens (`None`: auth is off or the upstream checks them),
    /// asked whether a token a stream was opened with still holds.
    pub verifier: Option<Arc<dyn mcpgate_guard::TokenVerifier>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("upstream", &self.upstream)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// A configured identity header cannot carry the principal's value.
#[derive(Debug)]
struct IdentityUnsendable;

impl IdentityUnsendable {
    fn response(self) -> Response<Body> {
        Refusal::Internal("The caller's identity cannot be passed to the upstream").response(None)
    }
}

pub(crate) type Who = Option<axum::Extension<Arc<Principal>>>;

pub(crate) fn owner(who: &Who) -> Owner {
    match who {
        Some(axum::Extension(p)) => Owner::of(p),
        None => Owner::anonymous(),
    }
}

impl Gateway {
    /// Headers for an upstream request: the forwarded client headers, the operator's, the
    /// identity headers and, when configured, the client's token.
    ///
    /// Fails (closed) when a configured identity header cannot carry the principal's value:
    /// an upstream that trusts the header must never see the request as anonymous.
    fn upstream_headers(
        &self,
        http: &HttpUpstream,
        incoming: &HeaderMap,
        who: &Who,
    ) -> Result<HeaderMap, IdentityUnsendable> {
        let mut headers = http.forwarded_headers(incoming);
        if self.token == TokenForwarding::Forward
            && let Some(auth) = incoming.get(header::AUTHORIZATION)
        {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        if let Some(axum::Extension(p)) = who {
            let id = &self.identity;
            let mut put = |name: &Option<HeaderName>,
                           value: &str|
             -> Result<(), IdentityUnsendable> {
                let Some(name) = name else { return Ok(()) };
                let value = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
                    tracing::error!(target: "mcpgate::proxy", header = %name, subject = p.subject.as_str(), "identity value cannot be sent as a header; request refused");
                    IdentityUnsendable
                })?;
                headers.insert(name.clone(), value);
                Ok(())
            };
            put(&id.subject, p.subject.as_str())?;
            if let Some(client) = &p.client_id {
                put(&id.client_id, client.as_str())?;
            }
            put(&id.scopes, &p.scopes.to_space_delimited())?;
        }
        Ok(headers)
    }

    /// Opens the client's session id, or says why not (logged; answered as 404).
    fn open_session(&self, presented: &HeaderValue, who: &Who) -> Option<HeaderValue> {
        let presented = presented.to_str().ok()?;
        match self.sessions.open(owner(who), presented) {
            Ok(upstream) => HeaderValue::from_str(&upstream).ok(),
            Err(e) => {
                let subject = who.as_ref().map(|axum::Extension(p)| p.subject.to_string());
                tracing::warn!(target: "mcpgate::session", reason = %e, subject, "session id refused");
                None
            }
        }
    }
}

/// Reads a request body within `http.max_body_bytes` and `http.body_timeout`, counting its
/// bytes against what all requests together may hold (`http.max_body_bytes_in_flight`; the
/// share is returned, to be held while the request lasts).
async fn read_body(
    gw: &Gateway,
    body: Body,
) -> Result<(Bytes, Option<tokio::sync::OwnedSemaphorePermit>), Refusal> {
    let read = async {
        crate::budget::collect(body, gw.max_body_bytes, &gw.bodies)
            .await
            .map_err(|short| match short {
                Short::Unreadable(_) => Refusal::BodyUnreadable,
                Short::TooLarge => Refusal::BodyTooLarge(gw.max_body_bytes),
                Short::OverBudget => {
                    tracing::warn!(target: "mcpgate::proxy", "request refused: too many request bodies in flight");
                    Refusal::BodiesInFlight
                }
            })
    };
    match tokio::time::timeout(gw.body_timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(Refusal::BodyTimeout),
    }
}

/// `POST /mcp`. (The request is taken whole: its headers are moved, not copied.)
pub async fn post(state: State<Arc<Gateway>>, request: axum::extract::Request) -> Response<Body> {
    hold_until_sent(answer(state, request).await)
}

/// A complete upstream reply's share of the replies' budget, carried with the answer built
/// from it (in its extensions) until it has been sent ([`hold_until_sent`]).
#[derive(Clone)]
struct HeldReply(
    #[allow(dead_code, reason = "held, never read")] Arc<tokio::sync::OwnedSemaphorePermit>,
);

/// Keeps the answer's share of the replies' budget until its body has been sent on: the body
/// is handed to the connection in slices, so the share lasts while the client reads.
fn hold_until_sent(mut response: Response<Body>) -> Response<Body> {
    let Some(held) = response.extensions_mut().remove::<HeldReply>() else {
        return response;
    };
    response.map(|inner| {
        Body::new(Holding {
            inner,
            pending: Bytes::new(),
            _held: held,
        })
    })
}

/// See [`hold_until_sent`].
struct Holding {
    inner: Body,
    pending: Bytes,
    _held: HeldReply,
}

/// Bytes handed to the connection at a time.
const SLICE: usize = 64 * 1024;

impl hyper::body::Body for Holding {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        use std::task::Poll;
        if self.pending.is_empty() {
            match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => self.pending = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return other,
            }
        }
        let n = self.pending.len().min(SLICE);
        Poll::Ready(Some(Ok(hyper::body::Frame::data(self.pending.split_to(n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let mut hint = self.inner.size_hint();
        let pending = self.pending.len() as u64;
        hint.set_lower(hint.lower() + pending);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + pending);
        }
        hint
    }
}

async fn answer(State(gw): State<Arc<Gateway>>, request: axum::extract::Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let who: Who = parts
        .extensions
        .get::<Arc<Principal>>()
        .map(|p| axum::Extension(Arc::clone(p)));
    let address = parts
        .extensions
        .get::<crate::listener::ClientAddress>()
        .map(|a| axum::Extension(*a));
    let headers = parts.headers;
    // The body's share of the in-flight budget is held until the answer is built.
    let (body, _share) = match read_body(&gw, body).await {
        Ok(b) => b,
        Err(refusal) => return refusal.response(None),
    };
    // JSON is UTF-8 (RFC 8259): a body that is not is not forwarded for the upstream to read
    // in its own way (members the gateway skips are not otherwise checked).
    if std::str::from_utf8(&body).is_err() {
        return Refusal::NotUtf8.response(None);
    }
    if message::nests_deeper_than(&body, MAX_DEPTH) {
        return Refusal::InvalidRequest(
            format!("the message nests deeper than {MAX_DEPTH} levels").into(),
        )
        .response(None);
    }
    let message = match Message::parse(&body) {
        Ok(m) => m,
        Err(Unreadable::Parse) => return Refusal::NotJson.response(None),
        Err(Unreadable::Batch) => {
            return Refusal::InvalidRequest(
                "JSON-RPC batches are not supported (removed in MCP 2025-06-18)".into(),
            )
            .response(None);
        }
        Err(Unreadable::Invalid(id)) => {
            return Refusal::InvalidRequest(
                "not a JSON-RPC message MCP allows (ids are strings or integers, never null)"
                    .into(),
            )
            .response(id);
        }
    };
    if stateless::version_ambiguous(&headers) {
        return Refusal::InvalidRequest(
            "MCP-Protocol-Version must be given once, with one version".into(),
        )
        .response(message.id);
    }
    // A version the gateway does not know goes on: the upstream answers it with
    // UnsupportedProtocolVersionError (-32022) and the versions it supports, which only it
    // knows. Governed requests are decided on their body either way.
    if headers.get_all(&SESSION_HEADER).iter().count() > 1 {
        return Refusal::InvalidRequest("Mcp-Session-Id must be given once".into())
            .response(message.id);
    }
    let stateless = stateless::is_stateless(&message, &headers);
    if stateless && let Err(stateless::Mismatch(why)) = stateless::check_headers(&message, &headers)
    {
        tracing::info!(target: "mcpgate::proxy", method = message.method.as_deref(), reason = why, "header mismatch");
        return Refusal::HeaderMismatch(why.into()).response(message.id);
    }
    // The stateless revision removed resource subscriptions (`subscriptions/listen` replaces
    // them): such a request is answered here, whatever the upstream would make of it.
    if stateless
        && message.kind == Kind::Request
        && let Some(method @ ("resources/subscribe" | "resources/unsubscribe")) =
            message.method.as_deref()
    {
        return Refusal::MethodRemoved {
            method: method.to_owned(),
            revision: stateless::STATELESS_REVISION,
        }
        .response(message.id);
    }
    // A governed request's target, read strictly, or a refusal: never forwarded undecided.
    let aim = match target::aim(&message) {
        Ok(aim) => aim,
        Err(target::Refusal::Request(why)) => {
            tracing::info!(target: "mcpgate::proxy", method = message.method.as_deref(), reason = why, "request refused");
            return Refusal::InvalidRequest(why.into()).response(message.id);
        }
        Err(target::Refusal::Params(why)) => {
            tracing::info!(target: "mcpgate::proxy", method = message.method.as_deref(), reason = %why, "request refused");
            return Refusal::InvalidParams(format!("Invalid params: {why}")).response(message.id);
        }
    };
    // Without a token (the auth layer let it through: anonymous access is on), only what is
    // allowed anonymously goes on; anything else gets the challenge that starts the sign-in.
    if who.is_none()
        && let Some(anonymous) = &gw.anonymous
        && let Some(challenge) = anonymous.refusal(&message, aim.as_ref(), |aim| {
            gw.enforcer
                .as_ref()
                .map(|e| e.step_up_scopes(aim, message.method.as_deref().unwrap_or_default()))
                .unwrap_or_default()
        })
    {
        return challenge;
    }
    let mut pending = None;
    if let Some(enforcer) = &gw.enforcer {
        let principal = who.as_ref().map(|axum::Extension(p)| p);
        let session = headers.get(&SESSION_HEADER).and_then(|v| v.to_str().ok());
        let address = address.map(|axum::Extension(a)| a.0);
        match enforcer.check(principal, address, &message, aim.as_ref(), &body, session) {
            crate::proxy::enforce::Check::Respond(r) => return r,
            crate::proxy::enforce::Check::Forward(mut p) => {
                if let Some(record) = p.record.as_mut() {
                    if enforcer.audit().include_arguments() {
                        record.arguments = crate::proxy::enforce::arguments(&body);
                    }
                    record.forwarded();
                }
                pending = Some(p);
            }
        }
    }
    // The upstream reads the URI in the spelling that was decided on.
    let respelt = aim
        .as_ref()
        .filter(|a| a.respelt)
        .and_then(|a| target::respell(&body, a).map(|b| (b, a.name.clone())));
    let request_id: Option<Box<RawValue>> = (message.kind == Kind::Request)
        .then(|| message.id.map(ToOwned::to_owned))
        .flatten();
    // `message` keeps reading the body as received; what goes upstream is `forward`.
    let mut headers = headers;
    // The mirrored headers mean something only where they were checked against the body: a
    // request of the session revisions carries none upstream, and `Mcp-Name` goes only with
    // the methods that define it.
    if !stateless {
        headers.remove(&MCP_METHOD);
        headers.remove(&MCP_NAME);
        let params: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("mcp-param-"))
            .cloned()
            .collect();
        for p in params {
            headers.remove(p);
        }
    } else if !matches!(
        message.method.as_deref(),
        Some("tools/call" | "prompts/get" | "resources/read")
    ) {
        headers.remove(&MCP_NAME);
    }
    let forward = match respelt {
        Some((new, name)) => {
            if headers.contains_key(&MCP_NAME)
                && let Ok(v) = HeaderValue::from_str(&name)
            {
                headers.insert(MCP_NAME.clone(), v);
            }
            new
        }
        None => body.clone(),
    };
    let http = match &gw.upstream {
        Upstream::Http(h) => h,
        Upstream::Stdio(up) => {
            let r = stdio::post(&gw, up, &who, &headers, &message, &forward, stateless).await;
            return finish(&gw, pending, &who, stateless, request_id, r).await;
        }
    };
    let mut upstream_headers = match gw.upstream_headers(http, &headers, &who) {
        Ok(h) => h,
        Err(e) => return e.response(),
    };

    if stateless {
        // No sessions and no resumption in this revision: a session id or Last-Event-ID from
        // the client means nothing upstream.
        upstream_headers.remove("last-event-id");
    } else if let Some(presented) = headers.get(&SESSION_HEADER) {
        match gw.open_session(presented, &who) {
            Some(upstream_id) => {
                upstream_headers.insert(SESSION_HEADER.clone(), upstream_id);
            }
            None => return session_not_found(message.id),
        }
    }

    let initialize = !stateless
        && message.kind == Kind::Request
        && message.method.as_deref() == Some("initialize");
    let id: Option<Box<RawValue>> = message.id.map(ToOwned::to_owned);

    // A legacy request whose client disconnects is cancelled upstream explicitly; in the
    // stateless revision closing the connection is the cancellation.
    let mut cancel = match (
        &id,
        stateless,
        message.kind,
        upstream_headers.get(&SESSION_HEADER),
    ) {
        (Some(id), false, Kind::Request, Some(session)) => Some(CancelOnDrop::new(
            Arc::clone(&gw),
            id.clone(),
            session.clone(),
            upstream_headers.clone(),
        )),
        _ => None,
    };
    let method = message.method.as_deref().map(str::to_owned);
    drop(message);

    let response = match http
        .exchange(Method::POST, upstream_headers, Some(forward))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            // An unreachable upstream never got the request: nothing to cancel. One that timed
            // out or answered too much did: the guard cancels it as it drops.
            if matches!(e, UpstreamError::Unreachable(_)) {
                disarm(&mut cancel);
            }
            return upstream_failure(&e, id.as_deref(), method.as_deref());
        }
    };
    let session = if initialize {
        SessionIssue::Seal(owner(&who))
    } else {
        SessionIssue::None
    };
    let r = relay(&gw, http, response, session, cancel, id.as_deref());
    finish(&gw, pending, &who, stateless, request_id, r).await
}

/// After the upstream answered: the audit record is completed, and the answer is checked —
/// a JSON answer must be the answer to this request (else 502), a list answer is filtered
/// for the caller (JSON, or the answer's event in a stream), and streams are read event by
/// event ([`sse::watch`]).
async fn finish(
    gw: &Gateway,
    pending: Option<crate::proxy::enforce::Pending>,
    who: &Who,
    stateless: bool,
    request: Option<Box<RawValue>>,
    response: Response<Body>,
) -> Response<Body> {
    let mut list = None;
    if let (Some(enforcer), Some(mut pending)) = (&gw.enforcer, pending) {
        if let Some(mut record) = pending.record.take() {
            record.answered(response.status().as_u16());
            if pending.list.is_some() {
                record.decision = "filter";
            }
            enforcer.audit().write(record);
        }
        list = pending.list;
    }
    let principal: Option<Arc<Principal>> = who.as_ref().map(|axum::Extension(p)| Arc::clone(p));
    checked(gw, request, list, principal, stateless, response).await
}

/// A response checked on its way to the client (see [`finish`]); `request` is the id of the
/// request it answers (`None` for a GET stream, a notification or a client's response).
async fn checked(
    gw: &Gateway,
    request: Option<Box<RawValue>>,
    list: Option<mcpgate_guard::policy::Kind>,
    principal: Option<Arc<Principal>>,
    stateless: bool,
    response: Response<Body>,
) -> Response<Body> {
    let is_stream = crate::upstream::http::is_event_stream(response.headers());
    let (mut parts, body) = response.into_parts();
    if is_stream {
        let watch = sse::Watch {
            request,
            enforcer: gw.enforcer.clone(),
            list,
            principal,
            private: stateless,
            max_event: gw.max_message_bytes,
            budget: match &gw.upstream {
                Upstream::Http(h) => Some(Arc::clone(h.replies())),
                Upstream::Stdio(_) => None,
            },
        };
        let principal = watch.principal.clone();
        let events = sse::watch(
            http_body_util::BodyDataStream::new(body).map_err(io_error),
            watch,
        );
        parts.headers.remove(header::CONTENT_LENGTH);
        return match (principal, &gw.verifier) {
            // A stream lasts no longer than the token it was opened with: it ends when the
            // token expires or its grant is revoked (checked every second).
            (Some(principal), Some(verifier)) => Response::from_parts(
                parts,
                Body::from_stream(sse::until_token_ends(
                    events,
                    principal,
                    Arc::clone(verifier),
                )),
            ),
            _ => Response::from_parts(parts, Body::from_stream(events)),
        };
    }
    let Some(request) = request else {
        // A notification's or a client response's acknowledgement: nothing to check.
        return Response::from_parts(parts, body);
    };
    let bad = |text: &'static str| {
        tracing::error!(target: "mcpgate::proxy", reason = text, "upstream answer refused");
        Refusal::UpstreamFailed(text.into()).response(Some(&request))
    };
    let Ok(bytes) = axum::body::to_bytes(body, gw.max_message_bytes).await else {
        return bad("The upstream MCP server's reply is too large");
    };
    if !parts.status.is_success() {
        // A refusal by the upstream (a 4xx or 5xx) passes with its status when its body is
        // empty or a JSON-RPC error; anything else in it (a result, a list, a page of HTML) is
        // replaced by the gateway's own error.
        if bytes.is_empty() || is_error_for(&bytes, &request) {
            return Response::from_parts(parts, Body::from(bytes));
        }
        tracing::warn!(target: "mcpgate::proxy", status = %parts.status, "upstream refusal with a body that is not a JSON-RPC error; replaced");
        let text = match parts.status {
            StatusCode::NOT_FOUND => {
                "Not Found: the upstream MCP server does not know this session"
            }
            s if s.is_client_error() => "The upstream MCP server refused the request",
            _ => "The upstream MCP server failed",
        };
        let mut r = jsonrpc::error_response(parts.status, Some(&request), INTERNAL_ERROR, text);
        for h in [header::RETRY_AFTER, header::ALLOW] {
            if let Some(v) = parts.headers.get(&h) {
                r.headers_mut().insert(h, v.clone());
            }
        }
        return r;
    }
    // Any success (200, 201, 203 …) must be the answer to this request.
    if !answers(&bytes, &request) {
        return bad("The upstream MCP server's reply is not the answer to this request");
    }
    let (Some(kind), Some(enforcer)) = (list, &gw.enforcer) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    match enforcer.filter(kind, principal.as_deref(), &bytes, stateless) {
        Ok(Some(new)) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(new))
        }
        Ok(None) => Response::from_parts(parts, Body::from(bytes)),
        Err(e) => {
            tracing::error!(target: "mcpgate::policy", reason = %e, "list answer cannot be filtered; refused");
            bad("The upstream MCP server's list answer cannot be read, so it cannot be filtered")
        }
    }
}

/// Whether `bytes` is a JSON-RPC error response for `request` (or with a null id, as for a
/// message the upstream could not read), and nothing else: a member besides `jsonrpc`, `id`
/// and `error` — a `Result` that case-insensitive readers take for the result, say — or one
/// given twice, and it is not.
fn is_error_for(bytes: &[u8], request: &RawValue) -> bool {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Reply<'a> {
        #[serde(rename = "jsonrpc")]
        _jsonrpc: Option<serde::de::IgnoredAny>,
        #[serde(borrow)]
        id: Option<&'a RawValue>,
        result: Option<serde::de::IgnoredAny>,
        error: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Reply<'_>>(bytes) {
        Ok(r) => {
            r.error.is_some()
                && r.result.is_none()
                && r.id
                    .is_none_or(|id| id.get() == request.get() || id.get() == "null")
        }
        Err(_) => false,
    }
}

/// A body error as an I/O error, keeping a timeout recognisable as one.
fn io_error(e: axum::Error) -> std::io::Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return std::io::Error::new(std::io::ErrorKind::TimedOut, io.to_string());
        }
        source = s.source();
    }
    std::io::Error::other(e)
}

/// Whether `bytes` is a JSON-RPC response (a result or an error, not both) to `request`.
fn answers(bytes: &[u8], request: &RawValue) -> bool {
    #[derive(serde::Deserialize)]
    struct Reply<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
        result: Option<serde::de::IgnoredAny>,
        error: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Reply<'_>>(bytes) {
        Ok(r) => {
            r.id.map(RawValue::get) == Some(request.get())
                && (r.result.is_some() != r.error.is_some())
        }
        Err(_) => false,
    }
}

/// `GET /mcp`: the legacy revisions' server-to-client stream.
pub async fn get(State(gw): State<Arc<Gateway>>, who: Who, headers: HeaderMap) -> Response<Body> {
    // Only sessions have a stream; without one there is nothing to listen to.
    within_session(&gw, &who, &headers, Method::GET, method_not_allowed).await
}

/// `DELETE /mcp`: ends a legacy session.
pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    who: Who,
    headers: HeaderMap,
) -> Response<Body> {
    let missing = || Refusal::SessionRequired.response(None);
    within_session(&gw, &who, &headers, Method::DELETE, missing).await
}

/// A body-less request on a legacy session (GET stream, DELETE). The stateless revision has
/// neither (405); a session the caller does not own does not exist (404).
async fn within_session(
    gw: &Gateway,
    who: &Who,
    headers: &HeaderMap,
    method: Method,
    no_session: impl FnOnce() -> Response<Body>,
) -> Response<Body> {
    if stateless::header_version(headers).is_some_and(stateless::is_stateless_version) {
        return method_not_allowed();
    }
    let Some(presented) = headers.get(&SESSION_HEADER) else {
        return no_session();
    };
    let Some(upstream_id) = gw.open_session(presented, who) else {
        return session_not_found(None);
    };
    let http = match &gw.upstream {
        Upstream::Http(h) => h,
        Upstream::Stdio(up) => {
            let key = upstream_id.to_str().unwrap_or_default();
            return if method == Method::GET {
                let r = stdio::get(up, key);
                let principal = who.as_ref().map(|axum::Extension(p)| Arc::clone(p));
                checked(gw, None, None, principal, false, r).await
            } else {
                stdio::delete(up, key)
            };
        }
    };
    let mut upstream_headers = match gw.upstream_headers(http, headers, who) {
        Ok(h) => h,
        Err(e) => return e.response(),
    };
    upstream_headers.insert(SESSION_HEADER.clone(), upstream_id);
    let what = method.to_string();
    match http.exchange(method, upstream_headers, None).await {
        Ok(response) => {
            let r = relay(gw, http, response, SessionIssue::None, None, None);
            let principal = who.as_ref().map(|axum::Extension(p)| Arc::clone(p));
            checked(gw, None, None, principal, false, r).await
        }
        Err(e) => upstream_failure(&e, None, Some(&what)),
    }
}

enum SessionIssue {
    None,
    Seal(Owner),
}

fn relay(
    gw: &Gateway,
    http: &HttpUpstream,
    reply: Reply,
    session: SessionIssue,
    mut cancel: Option<CancelOnDrop>,
    id: Option<&RawValue>,
) -> Response<Body> {
    let parts = reply.parts();
    let status = parts.status;
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
        && gw.token == TokenForwarding::Strip
    {
        // The upstream refused the gateway's own credentials: a configuration problem on our
        // side, not something the client can fix by re-authorizing.
        disarm(&mut cancel);
        tracing::error!(target: "mcpgate::proxy", %status, "upstream refused the gateway's request; check upstream.headers");
        return Refusal::UpstreamFailed("The upstream MCP server refused the gateway".into())
            .response(id);
    }
    let mut headers = HttpUpstream::returned_headers(parts, gw.token == TokenForwarding::Forward);
    if let SessionIssue::Seal(owner) = session
        && let Some(upstream_id) = parts
            .headers
            .get(&SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
    {
        match gw
            .sessions
            .seal(owner, upstream_id)
            .and_then(|s| HeaderValue::from_str(&s).ok())
        {
            Some(sealed) => {
                headers.insert(SESSION_HEADER.clone(), sealed);
            }
            None => {
                disarm(&mut cancel);
                tracing::error!(target: "mcpgate::proxy", "upstream session id is unusable (too long)");
                return Refusal::UpstreamFailed(
                    "The upstream MCP server sent an unusable session id".into(),
                )
                .response(id);
            }
        }
    }
    let mut share = None;
    let body = match reply {
        // A stream: pass each chunk on as it arrives; if the client goes away first, cancel.
        Reply::Stream(_, body) => Body::from_stream(guarded(http.body_stream(body), cancel.take())),
        // A single JSON message (or an empty 202), complete: it goes back with a Content-Length.
        Reply::Whole(_, bytes, held) => {
            disarm(&mut cancel);
            share = held.map(HeldReply);
            Body::from(bytes)
        }
    };
    let mut out = Response::new(body);
    if let Some(share) = share {
        out.extensions_mut().insert(share);
    }
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

fn disarm(cancel: &mut Option<CancelOnDrop>) {
    if let Some(c) = cancel.as_mut() {
        c.disarm();
    }
}

/// Passes `stream` on; if it is dropped before it ends (the client went away), the guard
/// cancels the request upstream.
fn guarded<S>(
    stream: S,
    guard: Option<CancelOnDrop>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send
where
    S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    use futures::StreamExt;
    futures::stream::unfold(
        (Box::pin(stream), guard),
        |(mut stream, mut guard)| async move {
            match stream.next().await {
                Some(item) => Some((item, (stream, guard))),
                None => {
                    if let Some(g) = guard.as_mut() {
                        g.disarm();
                    }
                    None
                }
            }
        },
    )
}

/// Sends `notifications/cancelled` upstream for a legacy request whose client went away
/// before its response arrived.
struct CancelOnDrop {
    gw: Arc<Gateway>,
    id: Box<RawValue>,
    headers: HeaderMap,
    armed: bool,
}

impl CancelOnDrop {
    fn new(
        gw: Arc<Gateway>,
        id: Box<RawValue>,
        session: HeaderValue,
        mut headers: HeaderMap,
    ) -> Self {
        headers.insert(SESSION_HEADER.clone(), session);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.remove(&MCP_METHOD);
        headers.remove(&MCP_NAME);
        headers.remove("last-event-id");
        CancelOnDrop {
            gw,
            id,
            headers,
            armed: true,
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let body = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{},"reason":"client disconnected"}}}}"#,
            self.id.get()
        );
        let gw = Arc::clone(&self.gw);
        let headers = std::mem::take(&mut self.headers);
        runtime.spawn(async move {
            let Upstream::Http(http) = &gw.upstream else { return };
            match http.exchange(Method::POST, headers, Some(Bytes::from(body))).await {
                Ok(_) => tracing::debug!(target: "mcpgate::proxy", "client went away; request cancelled upstream"),
                Err(e) => tracing::debug!(target: "mcpgate::proxy", error = %e, "could not cancel upstream request"),
            }
        });
    }
}

fn upstream_failure(
    e: &UpstreamError,
    id: Option<&RawValue>,
    what: Option<&str>,
) -> Response<Body> {
    tracing::error!(target: "mcpgate::proxy", error = %e, request = what, "upstream request failed");
    let refusal = match e {
        UpstreamError::Unreachable(_) => {
            Refusal::UpstreamFailed("The upstream MCP server is unreachable".into())
        }
        UpstreamError::TooLarge(_) => {
            Refusal::UpstreamFailed("The upstream MCP server's reply is too large".into())
        }
        UpstreamError::Timeout(_) => Refusal::UpstreamTimeout,
        UpstreamError::OverBudget => {
            crate::metrics::replies_over_budget();
            Refusal::RepliesInFlight
        }
    };
    refusal.response(id)
}

pub(crate) fn session_not_found(id: Option<&RawValue>) -> Response<Body> {
    Refusal::SessionNotFound.response(id)
}

/// Any other HTTP method on `/mcp` (`PUT`, `PATCH` …): 405 with a JSON-RPC error.
pub async fn other_method() -> Response<Body> {
    Refusal::MethodNotAllowed {
        allow: "GET, POST, DELETE",
        text: "Method Not Allowed: /mcp takes POST, GET and DELETE",
    }
    .response(None)
}

fn method_not_allowed() -> Response<Body> {
    Refusal::MethodNotAllowed {
        allow: "POST",
        text: "Method Not Allowed",
    }
    .response(None)
}
