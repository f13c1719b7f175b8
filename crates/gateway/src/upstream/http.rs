//! The upstream MCP server over Streamable HTTP: which request headers go up, which response
//! headers come down, and response bodies streamed through chunk by chunk with an idle timeout.
//!
//! Requests go through the gateway's own pool of HTTP/1.1 connections ([`super::pool`]; TLS
//! with rustls and the platform's trust store), each driven by the request that uses it; this
//! is the gateway's hot path, so the upstream URI is parsed once and nothing is copied that
//! need not be.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, header};
use bytes::Bytes;
use futures::Stream;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::budget::Short;
use hyper_util::client::legacy::connect::HttpConnector;
use url::Url;

/// Client request headers that always pass (besides `Mcp-Param-*`).
const FORWARDED: &[&str] = &[
    "accept",
    "content-type",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "user-agent",
    "traceparent",
    "tracestate",
    "baggage",
];

/// Upstream response headers that pass back to the client.
const RETURNED: &[&str] = &[
    "content-type",
    "cache-control",
    "allow",
    "retry-after",
    "mcp-protocol-version",
];

/// How to reach the upstream.
pub struct HttpUpstream {
    uri: Uri,
    /// The request target as sent (origin form: path and query) and the `Host` header.
    path: Uri,
    host: HeaderValue,
    pool: super::pool::Pool,
    extra_headers: HeaderMap,
    forward_extra: Vec<HeaderName>,
    response_timeout: Duration,
    idle_timeout: Duration,
    max_response_bytes: usize,
    /// Bytes of replies held at once, by all requests together.
    replies: std::sync::Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpUpstream")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

/// Why the upstream could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connection refused, reset, DNS, TLS …
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// No answer (for a JSON reply: the whole of it; for a stream: its headers) in time.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// A complete reply over `upstream.max_response_bytes`.
    #[error("upstream reply is larger than {0} bytes")]
    TooLarge(usize),
    /// All requests together hold `upstream.max_response_bytes_in_flight` of replies.
    #[error("too many upstream reply bytes held at once")]
    OverBudget,
}

/// Settings for [`HttpUpstream::new`].
pub struct HttpUpstreamOptions {
    /// Endpoint.
    pub url: Url,
    /// Headers added to every request (already interpolated).
    pub extra_headers: HeaderMap,
    /// Additional client headers to pass.
    pub forward_extra: Vec<HeaderName>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Time to response headers.
    pub response_timeout: Duration,
    /// Silence allowed on a response stream.
    pub idle_timeout: Duration,
    /// Largest complete reply accepted.
    pub max_response_bytes: usize,
    /// Bytes of replies held at once by all requests together.
    pub max_response_bytes_in_flight: usize,
}

/// What a complete reply holds of the replies' budget, until it has been sent on (or dropped).
pub type Held = Option<std::sync::Arc<tokio::sync::OwnedSemaphorePermit>>;

/// What the upstream answered.
pub enum Reply {
    /// A complete reply (JSON, or an empty `202`), and what its bytes hold of the budget.
    Whole(http::response::Parts, Bytes, Held),
    /// An SSE stream, to be relayed as it arrives.
    Stream(http::response::Parts, Incoming),
}

impl Reply {
    /// Status and headers.
    pub fn parts(&self) -> &http::response::Parts {
        match self {
            Reply::Whole(p, _, _) | Reply::Stream(p, _) => p,
        }
    }
}

impl HttpUpstream {
    /// A client for the upstream; connections are pooled and reused.
    pub fn new(options: HttpUpstreamOptions) -> Result<Self, String> {
        let uri: Uri = options
            .url
            .as_str()
            .parse()
            .map_err(|e| format!("upstream.url: {e}"))?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(options.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        // HTTP/1.1 only (over TLS too): it measured as fast as HTTP/2 here, and lets the pool
        // drive each connection from the request that uses it (see `pool`).
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|e| format!("TLS trust store: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let authority = uri
            .authority()
            .ok_or("upstream.url: has no host")?
            .as_str()
            .to_owned();
        let host = HeaderValue::from_str(&authority).map_err(|_| "upstream.url: bad host")?;
        let path: Uri = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e| format!("upstream.url: {e}"))?;
        let pool = super::pool::Pool::new(https, uri.clone(), 256);
        Ok(HttpUpstream {
            uri,
            path,
            host,
            pool,
            extra_headers: options.extra_headers,
            forward_extra: options.forward_extra,
            response_timeout: options.response_timeout,
            idle_timeout: options.idle_timeout,
            max_response_bytes: options.max_response_bytes,
            replies: crate::budget::of(options.max_response_bytes_in_flight),
        })
    }

    /// The client headers that go upstream: the MCP ones, `Mcp-Param-*`, and those the
    /// operator listed. Everything else (Authorization, cookies, forwarding headers, anything
    /// pretending to be an identity header) stays behind.
    pub fn forwarded_headers(&self, incoming: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::with_capacity(8);
        for (name, value) in incoming {
            let s = name.as_str();
            if FORWARDED.contains(&s)
                || s.starts_with("mcp-param-")
                || self.forward_extra.contains(name)
            {
                out.append(name.clone(), value.clone());
            }
        }
        for (name, value) in &self.extra_headers {
            out.insert(name.clone(), value.clone());
        }
        out
    }

    /// Sends a request and waits for the answer: a JSON (or empty) reply whole, a stream up to
    /// its headers. Both within `upstream.timeout`, with one timer.
    pub async fn exchange(
        &self,
        method: Method,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Reply, UpstreamError> {
        let mut request = Request::new(Full::new(body.unwrap_or_default()));
        *request.method_mut() = method;
        *request.uri_mut() = self.path.clone();
        *request.headers_mut() = headers;
        request
            .headers_mut()
            .insert(header::HOST, self.host.clone());
        let max = self.max_response_bytes;
        let budget = &self.replies;
        let exchange = async {
            // Read whole, each chunk charged to the budget as it arrives.
            let read = |body: Incoming| async move {
                crate::budget::collect(body, max, budget)
                    .await
                    .map(|(bytes, held)| (bytes, held.map(std::sync::Arc::new)))
                    .map_err(|short| match short {
                        Short::Unreadable(e) => UpstreamError::Unreachable(describe(&e)),
                        Short::TooLarge => UpstreamError::TooLarge(max),
                        Short::OverBudget => UpstreamError::OverBudget,
                    })
            };
            match self
                .pool
                .exchange(request, |p| is_event_stream(&p.headers), read)
                .await
            {
                Ok(super::pool::Answer::Read(parts, (bytes, held))) => {
                    Ok(Reply::Whole(parts, bytes, held))
                }
                Ok(super::pool::Answer::Streaming(response)) => {
                    let (parts, body) = response.into_parts();
                    Ok(Reply::Stream(parts, body))
                }
                Err(Ok(e)) => Err(e),
                Err(Err(e)) => Err(UpstreamError::Unreachable(e.to_string())),
            }
        };
        tokio::time::timeout(self.response_timeout, exchange)
            .await
            .unwrap_or(Err(UpstreamError::Timeout(self.response_timeout)))
    }

    /// The budget of reply bytes held at once, which stream events are charged to as well.
    pub fn replies(&self) -> &std::sync::Arc<tokio::sync::Semaphore> {
        &self.replies
    }

    /// Whether the upstream answers HTTP at all (any status counts), for `/readyz`.
    pub async fn reachable(&self) -> bool {
        let mut headers = self.extra_headers.clone();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::HOST, self.host.clone());
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = self.path.clone();
        *request.headers_mut() = headers;
        // Any HTTP answer counts; the body (perhaps a stream) is not read.
        let probe = async {
            self.pool
                .exchange(request, |_| true, |_| async { Ok::<(), ()>(()) })
                .await
                .is_ok()
        };
        tokio::time::timeout(Duration::from_secs(2), probe)
            .await
            .unwrap_or(false)
    }

    /// The response headers that go back to the client (the session id is handled by the
    /// caller).
    pub fn returned_headers(parts: &http::response::Parts, pass_auth_challenge: bool) -> HeaderMap {
        let mut out = HeaderMap::with_capacity(4);
        for (name, value) in &parts.headers {
            let s = name.as_str();
            if RETURNED.contains(&s) || (pass_auth_challenge && s == "www-authenticate") {
                out.append(name.clone(), value.clone());
            }
        }
        if is_event_stream(&parts.headers) {
            // Tell reverse proxies (nginx) not to buffer the stream.
            out.insert(
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            );
        }
        out
    }

    /// The response body as a stream of chunks, passed on as they arrive. The stream ends with
    /// an error if the upstream is silent longer than `upstream.idle_timeout`.
    pub fn body_stream(
        &self,
        body: Incoming,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let idle = self.idle_timeout;
        futures::stream::unfold(Some(body), move |state| async move {
            let mut body = state?;
            loop {
                match tokio::time::timeout(idle, body.frame()).await {
                    Ok(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) if data.is_empty() => continue,
                        Ok(data) => return Some((Ok(data), Some(body))),
                        // Trailers: nothing to pass on.
                        Err(_) => continue,
                    },
                    Ok(Some(Err(e))) => {
                        return Some((Err(std::io::Error::other(describe(&e))), None));
                    }
                    Ok(None) => return None,
                    Err(_) => {
                        return Some((
                            Err(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "upstream stream idle",
                            )),
                            None,
                        ));
                    }
                }
            }
        })
    }
}

/// Whether headers announce an SSE body.
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .as_bytes()
                .get(..17)
                .is_some_and(|t| t.eq_ignore_ascii_case(b"text/event-stream"))
        })
}

fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
