//! The upstream's HTTP/1.1 connections, kept and reused, driven by the request that uses
//! them.
//!
//! A general-purpose client (hyper-util's) runs every connection as a task of its own and
//! hands each request to it and each answer back through channels — two hand-offs between
//! tasks per request, on the gateway's hot path. Here a request takes an idle connection (its
//! sender and the connection itself) out of the pool, drives both in its own task until the
//! answer is complete, and puts them back: no hand-off, no task per connection. An answer that
//! streams (SSE) is the exception: its connection is handed to a task of its own for as long
//! as the stream lasts, and is not reused.
//!
//! A pooled connection the upstream closed is noticed when it is taken (or when a request
//! cannot be sent on it, which is retried once on a fresh connection: the request was never
//! written). Connections idle for longer than 90 s are closed.

use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt as _;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tower::Service as _;

type Io = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;
type Driver = Pin<Box<http1::Connection<Io, Full<Bytes>>>>;

/// One connection: the half that sends and the half that must be polled for anything to move.
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: Driver,
    idle_since: Instant,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum PoolError {
    /// No connection could be made.
    Connect(String),
    /// The connection failed while the request or its answer was under way.
    Exchange(hyper::Error),
}

impl std::fmt::Display for PoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolError::Connect(e) => write!(f, "cannot connect: {e}"),
            PoolError::Exchange(e) => {
                write!(f, "{e}")?;
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    write!(f, ": {s}")?;
                    source = s.source();
                }
                Ok(())
            }
        }
    }
}

/// What came back: the head, and a body still to be read (`Streaming`, whose connection runs
/// on its own) or read in full.
pub enum Answer<T> {
    /// The body, read by `read` in the request's task.
    Read(http::response::Parts, T),
    /// A streaming body (the connection serves it from a task of its own).
    Streaming(Response<Incoming>),
}

/// The pool for one upstream (scheme, host and port).
pub struct Pool {
    connector: Mutex<HttpsConnector<HttpConnector>>,
    target: Uri,
    /// Idle connections, one list per serving thread ([`crate::threads`]) and one for any
    /// other: a connection is used on the thread whose runtime drives its socket.
    idle: Box<[Mutex<Vec<Conn>>]>,
    max_idle: usize,
}

/// Longest a connection waits in the pool.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

impl Pool {
    /// A pool connecting to `target` (its scheme, host and port) through `connector`.
    pub fn new(connector: HttpsConnector<HttpConnector>, target: Uri, max_idle: usize) -> Self {
        Pool {
            connector: Mutex::new(connector),
            target,
            idle: (0..=crate::threads::count())
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            max_idle,
        }
    }

    /// This thread's idle connections.
    fn idle(&self) -> &Mutex<Vec<Conn>> {
        &self.idle[crate::threads::current() % self.idle.len()]
    }

    /// An idle connection that is still open, or a new one.
    async fn take(&self) -> Result<(Conn, bool), PoolError> {
        loop {
            let Some(mut conn) = self.idle().lock().expect("pool lock").pop() else {
                break;
            };
            // A connection the upstream closed ends its driver: poll it once to find out.
            let ended = (&mut conn.driver).now_or_never().is_some();
            if ended
                || conn.sender.is_closed()
                || !conn.sender.is_ready()
                || conn.idle_since.elapsed() > IDLE_TIMEOUT
            {
                continue;
            }
            return Ok((conn, true));
        }
        Ok((self.connect().await?, false))
    }

    async fn connect(&self) -> Result<Conn, PoolError> {
        let mut connector = self.connector.lock().expect("connector lock").clone();
        let io = tower::ServiceExt::ready(&mut connector)
            .await
            .map_err(|e| PoolError::Connect(describe(e.as_ref())))?
            .call(self.target.clone())
            .await
            .map_err(|e| PoolError::Connect(describe(e.as_ref())))?;
        let (sender, driver) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(PoolError::Exchange)?;
        Ok(Conn {
            sender,
            driver: Box::pin(driver),
            idle_since: Instant::now(),
        })
    }

    /// Keeps a connection whose exchange is over (its driver has not ended).
    fn put_back(&self, mut conn: Conn) {
        // Let the connection see that the exchange is over, then keep it if it is reusable.
        if (&mut conn.driver).now_or_never().is_some() || !conn.sender.is_ready() {
            return;
        }
        conn.idle_since = Instant::now();
        let mut idle = self.idle().lock().expect("pool lock");
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    /// Sends `request` and reads its answer: when `streams` says the head announces a stream,
    /// the body is left to the caller (and the connection to a task of its own); otherwise
    /// `read` reads it in this task while the connection is driven here, and the connection
    /// goes back to the pool.
    pub async fn exchange<T, E, F, Fut>(
        &self,
        request: Request<Full<Bytes>>,
        streams: impl Fn(&http::response::Parts) -> bool,
        read: F,
    ) -> Result<Answer<T>, Result<E, PoolError>>
    where
        F: FnOnce(Incoming) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let (mut conn, reused) = self.take().await.map_err(Err)?;
        let (sent, mut ended) =
            drive(&mut conn.driver, conn.sender.try_send_request(request)).await;
        let response = match sent {
            Some(Ok(r)) => r,
            Some(Err(mut failed)) => {
                // Not written at all (a reused connection that had just closed): once more on
                // a fresh one.
                match failed.take_message() {
                    Some(request) if reused => {
                        let mut fresh = self.connect().await.map_err(Err)?;
                        let (again, fresh_ended) =
                            drive(&mut fresh.driver, fresh.sender.send_request(request)).await;
                        conn = fresh;
                        ended = fresh_ended;
                        match again {
                            Some(Ok(r)) => r,
                            Some(Err(e)) => return Err(Err(PoolError::Exchange(e))),
                            None => return Err(Err(closed())),
                        }
                    }
                    _ => return Err(Err(PoolError::Exchange(failed.into_error()))),
                }
            }
            None => return Err(Err(closed())),
        };
        let (parts, body) = response.into_parts();
        if streams(&parts) {
            // The stream's connection runs on its own until the stream ends; the sender goes,
            // so the connection closes then.
            if !ended {
                let Conn { driver, .. } = conn;
                tokio::spawn(async move {
                    let _ = driver.await;
                });
            }
            return Ok(Answer::Streaming(Response::from_parts(parts, body)));
        }
        let value = if ended {
            // The connection is over (the upstream closed it after answering): what is left
            // of the body is already here.
            read(body).await.map_err(Ok)?
        } else {
            let (value, now_ended) = drive(&mut conn.driver, read(body)).await;
            ended = now_ended;
            match value {
                Some(Ok(v)) => v,
                Some(Err(e)) => return Err(Ok(e)),
                None => return Err(Err(closed())),
            }
        };
        if !ended {
            self.put_back(conn);
        }
        Ok(Answer::Read(parts, value))
    }
}

fn closed() -> PoolError {
    PoolError::Connect("the upstream closed the connection".into())
}

/// Polls `work` and the connection's driver together until `work` is done (`None` when the
/// connection ended first and `work` could not finish); also says whether the driver ended
/// (then it must not be polled again).
///
/// Each wakes the other as it hands it something (the driver when the answer's head or the
/// body's bytes are there, the body when it wants more): both are polled through an
/// [`Absorber`](crate::wake::Absorber), so that such a hand-off is answered by polling the two
/// again at once rather than the whole task from the top.
async fn drive<O>(driver: &mut Driver, work: impl Future<Output = O>) -> (Option<O>, bool) {
    use std::task::Poll;
    let mut work = std::pin::pin!(work);
    let mut ended = false;
    let absorber = crate::wake::Absorber::new();
    let out = std::future::poll_fn(|cx| {
        absorber.poll(cx, |own| {
            if let Poll::Ready(out) = work.as_mut().poll(own) {
                return Poll::Ready(Some(out));
            }
            if driver.as_mut().poll(own).is_ready() {
                ended = true;
                // The connection is over; what `work` waits for will not come unless it is
                // already there.
                return match work.as_mut().poll(own) {
                    Poll::Ready(out) => Poll::Ready(Some(out)),
                    Poll::Pending => Poll::Ready(None),
                };
            }
            Poll::Pending
        })
    })
    .await;
    (out, ended)
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
