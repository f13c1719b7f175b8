//! Accepting connections, with limits on how many, from whom, and how long a client may take:
//! a request head must arrive within `http.header_timeout` (which also closes kept-alive
//! connections left idle that long), at most `http.max_connections` are open at once (503
//! beyond) and at most `http.max_connections_per_address` from one address (429 beyond).
//! Refused connections get a JSON-RPC error and are closed; they never reach the router.
//!
//! Each request carries the connection's peer address ([`Peer`]); [`client_address`] gives the
//! client's address, read from `X-Forwarded-For` only when the peer is a trusted proxy.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// The connection's peer address, in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Connection limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time for a request head (and most idle time between requests).
    pub header_timeout: Duration,
    /// Longest a client may leave an answer unread (a write that waits that long fails, and
    /// the connection closes).
    pub write_timeout: Duration,
    /// Most connections at once.
    pub max_connections: usize,
    /// Most connections at once from one address (trusted proxies are exempt).
    pub per_address: usize,
    /// Reverse proxies.
    pub trusted: Arc<Vec<IpNet>>,
}

/// Reads `10.0.0.0/8`, `192.0.2.1`, `::1`.
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The client's address: the peer's, or — when the peer is a trusted proxy — the last entry of
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        for hop in text.split(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                // Unreadable: trust nothing from this header.
                Err(_) => return peer,
            }
        }
    }
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

/// A connection whose first bytes must arrive in time: until [`FIRST_BYTES`] have been read,
/// a read that waits past the deadline fails. This covers what comes before hyper's own
/// request-head timer runs (the sniffing of HTTP/1 against the HTTP/2 preface), so that a
/// connection that sends nothing, or a byte and then nothing, is closed too.
///
/// Writes must make progress too: a write (or flush) that has waited [`Limits::write_timeout`]
/// for the client to read fails, so that a client that stops reading cannot hold its
/// connection, and the share of the replies' budget its answer holds, for ever.
struct FirstBytes<T> {
    inner: T,
    read: usize,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    write_timeout: Duration,
    /// Armed while a write waits for the client.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

/// Enough to tell HTTP/1 from HTTP/2 (the preface is 24 bytes); every real request is longer.
const FIRST_BYTES: usize = 24;

impl<T> FirstBytes<T> {
    fn new(inner: T, within: Duration, write_timeout: Duration) -> Self {
        FirstBytes {
            inner,
            read: 0,
            deadline: Box::pin(tokio::time::sleep(within)),
            write_timeout,
            stalled: None,
        }
    }

    /// A write's outcome, failed once it has waited for the client past the write timeout.
    fn progress<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<std::io::Result<R>>,
    ) -> std::task::Poll<std::io::Result<R>> {
        use std::task::Poll;
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.write_timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing of the answer in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for FirstBytes<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                self.read += buf.filled().len() - before;
                Poll::Ready(result)
            }
            Poll::Pending if self.read < FIRST_BYTES => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no request in time",
                ))),
                Poll::Pending => Poll::Pending,
            },
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for FirstBytes<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, polled)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, polled)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, polled)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Counts open connections per address.
#[derive(Debug, Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One open connection, counted until dropped.
struct Slot {
    per: Arc<PerAddress>,
    ip: Option<IpAddr>,
    _total: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut map = self.per.0.lock().expect("per-address lock");
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

/// The open-file limit raised as far as allowed, and the connection limit kept under it (each
/// connection is a file; the upstream and stdio children need some too).
pub fn connection_ceiling(wanted: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return wanted;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max.min(1 << 20),
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    let files = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
    let ceiling = files.saturating_sub(256).max(16);
    if wanted > ceiling {
        tracing::warn!(
            "http.max_connections = {wanted} is more than the open-file limit allows; using {ceiling}"
        );
    }
    wanted.min(ceiling)
}

/// The client's address, for per-address limits and logs: the peer's, or the one a trusted
/// proxy names ([`client_address`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub std::net::IpAddr);

fn refusal(status: StatusCode, text: &'static str) -> Response<Body> {
    // A 429 is a rate limit like the others (-32029); a 503 the server's own state.
    let code = if status == StatusCode::TOO_MANY_REQUESTS {
        crate::jsonrpc::RATE_LIMITED
    } else {
        crate::jsonrpc::INTERNAL_ERROR
    };
    let mut r = crate::jsonrpc::error_response(status, None, code, text);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Most refused connections being answered at once.
const MAX_REFUSING: usize = 64;

/// Answers a refused connection (one of a bounded number at a time), or closes it at once.
fn refuse_bounded(
    refusing: &Arc<tokio::sync::Semaphore>,
    stream: tokio::net::TcpStream,
    status: StatusCode,
    text: &'static str,
) {
    match Arc::clone(refusing).try_acquire_owned() {
        Ok(permit) => {
            tokio::spawn(async move {
                refuse(stream, status, text).await;
                drop(permit);
            });
        }
        Err(_) => drop(stream),
    }
}

/// Answers every request of a refused connection, then closes it.
async fn refuse(stream: tokio::net::TcpStream, status: StatusCode, text: &'static str) {
    let service =
        hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| async move {
            Ok::<_, Infallible>(refusal(status, text))
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(1))
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
}

/// Serves `router` on `listener` until `stop` resolves; then waits up to `grace` for open
/// connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    router: crate::endpoint::App,
    limits: Limits,
    stop: impl std::future::Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let total = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    // Refused connections are answered by a few tasks at most; beyond, they are closed at once
    // (each holds a file until it is answered).
    let refusing = Arc::new(tokio::sync::Semaphore::new(MAX_REFUSING));
    let per = Arc::new(PerAddress::default());
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Streams are requests: a few per connection (bodies are bounded in all, too).
        .max_concurrent_streams(32)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let threads = crate::threads::Threads::start()?;
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of files, most likely: wait for connections to close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = Arc::clone(&total).try_acquire_owned() else {
            crate::metrics::connection_refused("total");
            tracing::warn!(%peer, limit = limits.max_connections, "connection refused: too many open connections");
            refuse_bounded(
                &refusing,
                stream,
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable: the gateway has too many open connections; try again shortly",
            );
            continue;
        };
        let ip = peer.ip();
        let counted = (!limits.trusted.iter().any(|n| n.contains(&ip))).then_some(ip);
        if let Some(ip) = counted {
            let mut map = per.0.lock().expect("per-address lock");
            let n = map.entry(ip).or_default();
            if *n >= limits.per_address {
                drop(map);
                crate::metrics::connection_refused("per_address");
                tracing::warn!(%peer, limit = limits.per_address, "connection refused: too many open connections from this address");
                refuse_bounded(
                    &refusing,
                    stream,
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too Many Requests: too many open connections from this address",
                );
                continue;
            }
            *n += 1;
        }
        let slot = Slot {
            per: Arc::clone(&per),
            ip: counted,
            _total: permit,
        };
        let router = router.clone();
        let service = TowerToHyperService::new(router.map_request(
            move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(Peer(peer));
                req
            },
        ));
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        let first_bytes = limits.header_timeout;
        let write_timeout = limits.write_timeout;
        // Served on one of the serving threads, start to end ([`crate::threads`]).
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "connection dropped: cannot hand it to a serving thread");
                continue;
            }
        };
        threads.next().spawn(async move {
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "connection dropped: cannot serve it on this thread");
                    return;
                }
            };
            let io = TokioIo::new(FirstBytes::new(stream, first_bytes, write_timeout));
            let conn = builder
                .serve_connection_with_upgrades(io, service)
                .into_owned();
            // Not through an absorber (`crate::wake`): hyper's connection yields after a
            // batch of pipelined requests so that the thread's other connections are served,
            // and an absorber would take that yield for a hand-off and go on.
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("requests still open after {grace:?}; closing them");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted = vec![parse_net("10.0.0.0/8").unwrap()];
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        // From a proxy: the last hop that is not a proxy.
        assert_eq!(
            client_address(
                proxy,
                &headers(&["198.51.100.1, 203.0.113.9, 10.9.9.9"]),
                &trusted
            ),
            client
        );
        // From anyone else: the header is ignored.
        assert_eq!(
            client_address(client, &headers(&["1.1.1.1"]), &trusted),
            client
        );
        // Unreadable header: the proxy itself.
        assert_eq!(
            client_address(proxy, &headers(&["nonsense"]), &trusted),
            proxy
        );
        assert_eq!(client_address(proxy, &headers(&[]), &trusted), proxy);
    }

    #[test]
    fn networks_and_single_addresses_are_read() {
        assert!(parse_net("10.0.0.0/8").is_some());
        assert!(parse_net("::1").is_some());
        assert!(parse_net("192.0.2.7").is_some());
        assert!(parse_net("example.com").is_none());
    }
}
