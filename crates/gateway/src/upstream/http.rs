//! The upstream MCP server over Streamable HTTP: which request headers go up, which response
//! headers come down, and response bodies streamed through chunk by chunk with an idle timeout.
//!
//! Requests go through a pooled hyper client (HTTP/1.1 and HTTP/2, TLS with rustls and the
//! platform's trust store); this is the gateway's hot path, so the upstream URI is parsed once
//! and nothing is copied that need not be.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri, header};
use bytes::Bytes;
use futures::Stream;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
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
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    extra_headers: HeaderMap,
    forward_extra: Vec<HeaderName>,
    response_timeout: Duration,
    idle_timeout: Duration,
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
    /// No response headers (or, for a JSON reply, no whole body) in time.
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

/// An upstream response.
pub type UpstreamResponse = Response<Incoming>;

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
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|e| format!("TLS trust store: {e}"))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(https);
        Ok(HttpUpstream {
            uri,
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
    ) -> Result<UpstreamResponse, UpstreamError> {
        let mut request = Request::new(Full::new(body.unwrap_or_default()));
        *request.method_mut() = method;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = headers;
        match tokio::time::timeout(self.response_timeout, self.client.request(request)).await {
            Err(_) => Err(UpstreamError::Timeout(self.response_timeout)),
            Ok(Err(e)) => Err(UpstreamError::Unreachable(describe(&e))),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// Whether the upstream answers HTTP at all (any status counts), for `/readyz`.
    pub async fn reachable(&self) -> bool {
        let mut headers = self.extra_headers.clone();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        let probe = async { self.send(Method::GET, headers, None).await.is_ok() };
        tokio::time::timeout(Duration::from_secs(2), probe)
            .await
            .unwrap_or(false)
    }

    /// The response headers that go back to the client (the session id is handled by the
    /// caller).
    pub fn returned_headers(response: &UpstreamResponse, pass_auth_challenge: bool) -> HeaderMap {
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

    /// A whole (non-stream) response body, within `upstream.idle_timeout`.
    pub async fn read_body(&self, response: UpstreamResponse) -> Result<Bytes, UpstreamError> {
        match tokio::time::timeout(self.idle_timeout, response.into_body().collect()).await {
            Err(_) => Err(UpstreamError::Timeout(self.idle_timeout)),
            Ok(Err(e)) => Err(UpstreamError::Unreachable(describe(&e))),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
        }
    }

    /// The response body as a stream of chunks, passed on as they arrive. The stream ends with
    /// an error if the upstream is silent longer than `upstream.idle_timeout`.
    pub fn body_stream(
        &self,
        response: UpstreamResponse,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let idle = self.idle_timeout;
        futures::stream::unfold(Some(response.into_body()), move |state| async move {
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
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
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
