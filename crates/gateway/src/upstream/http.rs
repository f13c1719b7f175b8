//! The upstream MCP server over Streamable HTTP: which request headers go up, which response
//! headers come down, and response bodies streamed through chunk by chunk with an idle timeout.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use bytes::Bytes;
use futures::{Stream, StreamExt};
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
    url: Url,
    client: reqwest::Client,
    extra_headers: HeaderMap,
    forward_extra: Vec<HeaderName>,
    response_timeout: Duration,
    idle_timeout: Duration,
}

impl std::fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpUpstream")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

/// Why the upstream could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connection refused, reset, DNS, TLS …
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// No response headers within `upstream.timeout`.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
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
}

impl HttpUpstream {
    /// A client for the upstream; connections are pooled and reused.
    pub fn new(options: HttpUpstreamOptions) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("upstream HTTP client: {e}"))?;
        Ok(HttpUpstream {
            url: options.url,
            client,
            extra_headers: options.extra_headers,
            forward_extra: options.forward_extra,
            response_timeout: options.response_timeout,
            idle_timeout: options.idle_timeout,
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

    /// Sends a request and waits for the response headers (at most `upstream.timeout`).
    pub async fn send(
        &self,
        method: Method,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut request = self
            .client
            .request(method, self.url.clone())
            .headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        match tokio::time::timeout(self.response_timeout, request.send()).await {
            Err(_) => Err(UpstreamError::Timeout(self.response_timeout)),
            Ok(Err(e)) => Err(UpstreamError::Unreachable(describe(&e))),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// Whether the upstream answers HTTP at all (any status counts), for `/readyz`.
    pub async fn reachable(&self) -> bool {
        let request = self
            .client
            .get(self.url.clone())
            .header(header::ACCEPT, "text/event-stream")
            .headers(self.extra_headers.clone());
        matches!(
            tokio::time::timeout(Duration::from_secs(2), request.send()).await,
            Ok(Ok(_))
        )
    }

    /// The response headers that go back to the client (the session id is handled by the
    /// caller).
    pub fn returned_headers(response: &reqwest::Response, pass_auth_challenge: bool) -> HeaderMap {
        let mut out = HeaderMap::with_capacity(4);
        for (name, value) in response.headers() {
            let s = name.as_str();
            if RETURNED.contains(&s) || (pass_auth_challenge && s == "www-authenticate") {
                out.append(name.clone(), value.clone());
            }
        }
        if is_event_stream(response.headers()) {
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
        response: reqwest::Response,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let idle = self.idle_timeout;
        futures::stream::unfold(Some(response.bytes_stream()), move |state| async move {
            let mut inner = state?;
            match tokio::time::timeout(idle, inner.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(inner))),
                Ok(Some(Err(e))) => Some((Err(std::io::Error::other(describe(&e))), None)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "upstream stream idle",
                    )),
                    None,
                )),
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
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

fn describe(e: &reqwest::Error) -> String {
    // The URL is the operator's own configuration, not a secret, but keep messages short.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
