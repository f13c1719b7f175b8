//! Reading an SSE response as it passes, event by event, linear in the bytes.
//!
//! Every event's `data` is read as a JSON-RPC message before it goes on:
//! - on the stream of a request, the answer must carry that request's id, and a list answer is
//!   filtered for the caller; an answer that cannot be filtered, an event that is not
//!   JSON-RPC, an answer for another id, an event larger than the limit, and a stream that
//!   fails or goes silent end the stream with a JSON-RPC error for the request's id — never
//!   with a cut stream or an unfiltered list;
//! - notifications are shown to the enforcer (a real `notifications/tools/list_changed` makes
//!   what was learnt about tools stale);
//! - on a GET stream (no request), events that are not JSON-RPC, answers, and oversized
//!   events are dropped.
//!
//! Everything else — event names, ids, `retry`, comments, server requests — passes through
//! as it came.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use mcpgate_guard::Principal;
use mcpgate_guard::policy::Kind;
use serde_json::value::RawValue;

use super::message::{self, Message, Unreadable};
use crate::jsonrpc::{self, INTERNAL_ERROR};
use crate::proxy::enforce::Enforcer;

/// What to check in a stream.
pub struct Watch {
    /// The request whose answer the stream carries (`None`: a GET stream).
    pub request: Option<Box<RawValue>>,
    /// Sees notifications; filters the answer when `list` is set.
    pub enforcer: Option<Arc<Enforcer>>,
    /// The list to filter in the answer.
    pub list: Option<Kind>,
    /// Who the list is filtered for.
    pub principal: Option<Arc<Principal>>,
    /// Mark filtered lists `cacheScope: "private"`.
    pub private: bool,
    /// Largest event held to be read; a larger one ends a request's stream.
    pub max_event: usize,
    /// The budget of reply bytes held at once by all requests (`None`: unbounded), charged
    /// for the bytes of events not yet complete.
    pub budget: Option<Arc<tokio::sync::Semaphore>>,
}

/// Why a request's stream ends early with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    NotJsonRpc,
    NoAnswer,
    OtherId,
    Unfilterable,
    TooLarge,
    Broken,
    Silent,
    Busy,
}

impl Failure {
    fn text(self) -> &'static str {
        match self {
            Failure::NotJsonRpc => "The upstream MCP server sent an event that is not JSON-RPC",
            Failure::NoAnswer => "The upstream MCP server's stream ended without an answer",
            Failure::OtherId => "The upstream MCP server answered with another request's id",
            Failure::Unfilterable => {
                "The upstream MCP server's list answer cannot be read, so it cannot be filtered"
            }
            Failure::TooLarge => {
                "The upstream MCP server's event is larger than the gateway allows"
            }
            Failure::Broken => "The upstream MCP server's stream failed",
            Failure::Silent => {
                "The upstream MCP server went silent for longer than upstream.idle_timeout"
            }
            Failure::Busy => {
                "The gateway holds too many upstream replies at once; try again shortly"
            }
        }
    }
}

/// Where the next event ends in a buffer that is read once: the position searched up to and
/// where the current line started.
#[derive(Debug, Default)]
struct Scan {
    from: usize,
    line_start: usize,
}

impl Scan {
    /// The length of the first complete event (up to and including its blank line), searching
    /// only bytes not searched before.
    fn next_event(&mut self, buf: &[u8]) -> Option<usize> {
        let mut i = self.from;
        while i < buf.len() {
            match buf[i] {
                b'\n' | b'\r' => {
                    let width = if buf[i] == b'\r' {
                        match buf.get(i + 1) {
                            Some(b'\n') => 2,
                            Some(_) => 1,
                            // A CR at the end: wait to see whether LF follows.
                            None => break,
                        }
                    } else {
                        1
                    };
                    let empty = i == self.line_start;
                    i += width;
                    self.line_start = i;
                    if empty {
                        *self = Scan::default();
                        return Some(i);
                    }
                }
                _ => i += 1,
            }
        }
        self.from = i;
        None
    }

    /// Drops what has been searched from the front of `buf` (an event being skipped), keeping
    /// what the search still needs to know: whether it stands at the start of a line.
    fn discard(&mut self, buf: &mut BytesMut) {
        let dropped = self.from;
        let _ = buf.split_to(dropped);
        self.line_start = if self.line_start == dropped {
            0
        } else {
            usize::MAX
        };
        self.from = 0;
    }
}

/// The lines of an event, without their line endings.
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = event;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .iter()
            .position(|b| *b == b'\n' || *b == b'\r')
            .unwrap_or(rest.len());
        let line = &rest[..end];
        let mut skip = end;
        if rest.get(end) == Some(&b'\r') && rest.get(end + 1) == Some(&b'\n') {
            skip += 2;
        } else if end < rest.len() {
            skip += 1;
        }
        rest = &rest[skip..];
        Some(line)
    })
}

/// The event's data (its `data` fields joined by LF), or `None` when it has none.
fn data_of(event: &[u8]) -> Option<Vec<u8>> {
    let mut data: Option<Vec<u8>> = None;
    for line in lines(event) {
        let value = if line == b"data" {
            &b""[..]
        } else if let Some(rest) = line.strip_prefix(b"data:") {
            rest.strip_prefix(b" ").unwrap_or(rest)
        } else {
            continue;
        };
        match data.as_mut() {
            Some(d) => {
                d.push(b'\n');
                d.extend_from_slice(value);
            }
            None => data = Some(value.to_vec()),
        }
    }
    data
}

/// The event with its data replaced by `data` (one `data:` line per line of it); its other
/// fields kept as they were.
fn with_data(event: &[u8], data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(event.len().max(data.len()) + 16);
    for line in lines(event) {
        if line.is_empty() || line == b"data" || line.starts_with(b"data:") {
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    for line in data.split(|b| *b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    Bytes::from(out)
}

/// An SSE event carrying a JSON-RPC error.
pub fn error_event(id: Option<&RawValue>, code: i64, text: &str) -> Bytes {
    Bytes::from(format!(
        "event: message\ndata: {}\n\n",
        jsonrpc::error_body(id, code, text)
    ))
}

/// What to do with one event.
enum Verdict {
    Pass,
    Replace(Bytes),
    Drop,
    Fail(Failure),
}

impl Watch {
    /// What to do with `event`; `answered` says whether the request's answer went by already
    /// (a second one is dropped).
    fn judge(&self, event: &[u8], answered: &mut bool) -> Verdict {
        // No data, or empty data (the event that primes resumption, SEP-1699): nothing to
        // read.
        let Some(data) = data_of(event).filter(|d| !d.iter().all(u8::is_ascii_whitespace)) else {
            return Verdict::Pass;
        };
        let message = match Message::parse(&data) {
            Ok(m) => m,
            Err(Unreadable::Parse | Unreadable::Batch | Unreadable::Invalid(_)) => {
                return match self.request {
                    Some(_) => Verdict::Fail(Failure::NotJsonRpc),
                    None => {
                        tracing::warn!(target: "mcpgate::proxy", "event on a GET stream is not JSON-RPC; dropped");
                        Verdict::Drop
                    }
                };
            }
        };
        if message.kind != message::Kind::Response && message.has_outcome {
            // A request or notification that also carries a result: readers disagree on what
            // it is.
            return match self.request {
                Some(_) => Verdict::Fail(Failure::NotJsonRpc),
                None => Verdict::Drop,
            };
        }
        match message.kind {
            message::Kind::Notification => {
                if let Some(e) = &self.enforcer {
                    e.observe(self.principal.as_deref(), &message);
                }
                Verdict::Pass
            }
            message::Kind::Request => Verdict::Pass,
            message::Kind::Response => {
                let Some(request) = &self.request else {
                    tracing::warn!(target: "mcpgate::proxy", "answer on a GET stream; dropped");
                    return Verdict::Drop;
                };
                if message.id.map(RawValue::get) != Some(request.get()) {
                    return Verdict::Fail(Failure::OtherId);
                }
                if std::mem::replace(answered, true) {
                    tracing::warn!(target: "mcpgate::proxy", "a second answer to the same request; dropped");
                    return Verdict::Drop;
                }
                let (Some(kind), Some(enforcer)) = (self.list, &self.enforcer) else {
                    return Verdict::Pass;
                };
                match enforcer.filter(kind, self.principal.as_deref(), &data, self.private) {
                    Ok(Some(new)) => Verdict::Replace(with_data(event, &new)),
                    Ok(None) => Verdict::Pass,
                    Err(e) => {
                        tracing::error!(target: "mcpgate::policy", reason = %e, "list answer cannot be filtered; refused");
                        Verdict::Fail(Failure::Unfilterable)
                    }
                }
            }
        }
    }

    fn failure(&self, f: Failure) -> Bytes {
        error_event(self.request.as_deref(), INTERNAL_ERROR, f.text())
    }
}

struct State<S> {
    body: std::pin::Pin<Box<S>>,
    buf: BytesMut,
    scan: Scan,
    watch: Watch,
    /// Discarding an oversized event on a GET stream until its end.
    skipping: bool,
    /// Whether the start of the stream (a byte-order mark there) has been looked at.
    started: bool,
    /// Whether the request's answer went by.
    answered: bool,
    done: bool,
    /// What the bytes in `buf` hold of the budget.
    held: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<S> State<S> {
    /// Holds as much of the budget as `buf` has bytes; false when the budget has no more.
    fn charge(&mut self) -> bool {
        match &self.watch.budget {
            Some(budget) => crate::budget::hold(budget, &mut self.held, self.buf.len()),
            None => true,
        }
    }
}

/// The UTF-8 byte-order mark, which SSE readers strip from the start of a stream (WHATWG HTML,
/// "event stream interpretation").
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `events`, ended as soon as the token of `principal` no longer holds (expired, or its grant
/// revoked), checked when the stream starts and every second after.
pub fn until_token_ends<S>(
    events: S,
    principal: Arc<Principal>,
    verifier: Arc<dyn mcpgate_guard::TokenVerifier>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    let tick = tokio::time::interval(std::time::Duration::from_secs(1));
    futures::stream::unfold(
        (Box::pin(events), tick, principal, verifier),
        |(mut events, mut tick, principal, verifier)| async move {
            loop {
                tokio::select! {
                    item = events.next() => {
                        return item.map(|item| (item, (events, tick, principal, verifier)));
                    }
                    _ = tick.tick() => {
                        if !verifier.still_valid(&principal) {
                            tracing::info!(target: "mcpgate::proxy", subject = %principal.subject, "stream ended: its token expired or was revoked");
                            return None;
                        }
                    }
                }
            }
        },
    )
}

/// Checks `body`, an SSE stream, event by event (see the module documentation).
pub fn watch<S>(body: S, watch: Watch) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    let state = State {
        body: Box::pin(body),
        buf: BytesMut::new(),
        scan: Scan::default(),
        watch,
        skipping: false,
        started: false,
        answered: false,
        done: false,
        held: None,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if !st.started && (st.buf.len() >= BOM.len() || !BOM.starts_with(&st.buf)) {
                // Read as clients read it: without a leading byte-order mark.
                if st.buf.starts_with(BOM) {
                    let _ = st.buf.split_to(BOM.len());
                }
                st.started = true;
            }
            if let Some(end) = st.scan.next_event(&st.buf).filter(|_| st.started) {
                let event = st.buf.split_to(end);
                // What is left in the buffer is what stays charged.
                st.charge();
                if std::mem::take(&mut st.skipping) {
                    continue;
                }
                if event.len() > st.watch.max_event {
                    if st.watch.request.is_some() {
                        st.done = true;
                        return Some((Ok(st.watch.failure(Failure::TooLarge)), st));
                    }
                    tracing::warn!(target: "mcpgate::proxy", limit = st.watch.max_event, "oversized event on a GET stream; dropped");
                    continue;
                }
                match st.watch.judge(&event, &mut st.answered) {
                    Verdict::Pass => return Some((Ok(event.freeze()), st)),
                    Verdict::Replace(new) => return Some((Ok(new), st)),
                    Verdict::Drop => continue,
                    Verdict::Fail(f) => {
                        tracing::error!(target: "mcpgate::proxy", reason = f.text(), "upstream stream refused");
                        st.done = true;
                        return Some((Ok(st.watch.failure(f)), st));
                    }
                }
            }
            if st.skipping {
                st.scan.discard(&mut st.buf);
            } else if st.buf.len() > st.watch.max_event {
                if st.watch.request.is_some() {
                    tracing::error!(target: "mcpgate::proxy", limit = st.watch.max_event, "upstream event too large; stream ended");
                    st.done = true;
                    return Some((Ok(st.watch.failure(Failure::TooLarge)), st));
                }
                tracing::warn!(target: "mcpgate::proxy", limit = st.watch.max_event, "oversized event on a GET stream; dropped");
                st.skipping = true;
                st.scan.discard(&mut st.buf);
            }
            match st.body.next().await {
                Some(Ok(chunk)) => {
                    st.buf.extend_from_slice(&chunk);
                    if !st.charge() {
                        tracing::warn!(target: "mcpgate::proxy", "upstream event refused: too many reply bytes held at once");
                        crate::metrics::replies_over_budget();
                        if st.watch.request.is_some() {
                            st.done = true;
                            st.buf = BytesMut::new();
                            st.held = None;
                            return Some((Ok(st.watch.failure(Failure::Busy)), st));
                        }
                        // A GET stream goes on without the event it cannot hold.
                        st.skipping = true;
                        st.scan.discard(&mut st.buf);
                        st.charge();
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    if st.watch.request.is_some() {
                        let f = if e.kind() == std::io::ErrorKind::TimedOut {
                            Failure::Silent
                        } else {
                            Failure::Broken
                        };
                        tracing::error!(target: "mcpgate::proxy", error = %e, "upstream stream ended early");
                        return Some((Ok(st.watch.failure(f)), st));
                    }
                    return Some((Err(e), st));
                }
                None => {
                    st.done = true;
                    let mut out = BytesMut::new();
                    if !st.buf.is_empty() && !st.skipping {
                        // An unfinished last event: read as if it were finished.
                        let mut event = std::mem::take(&mut st.buf);
                        if !st.started && event.starts_with(BOM) {
                            let _ = event.split_to(BOM.len());
                        }
                        event.extend_from_slice(b"\n\n");
                        match st.watch.judge(&event, &mut st.answered) {
                            Verdict::Pass => out.extend_from_slice(&event),
                            Verdict::Replace(new) => out.extend_from_slice(&new),
                            Verdict::Drop => {}
                            Verdict::Fail(f) => return Some((Ok(st.watch.failure(f)), st)),
                        }
                    }
                    if st.watch.request.is_some() && !st.answered {
                        // The stream ended without the answer: say so, rather than cut off.
                        tracing::error!(target: "mcpgate::proxy", "upstream stream ended without an answer");
                        out.extend_from_slice(&st.watch.failure(Failure::NoAnswer));
                    }
                    if out.is_empty() {
                        return None;
                    }
                    return Some((Ok(out.freeze()), st));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> Option<Box<RawValue>> {
        Some(RawValue::from_string(text.to_owned()).unwrap())
    }

    fn plain(request: Option<Box<RawValue>>) -> Watch {
        Watch {
            request,
            enforcer: None,
            list: None,
            principal: None,
            private: false,
            max_event: 1024,
            budget: None,
        }
    }

    async fn run(chunks: Vec<Result<&'static str, std::io::Error>>, w: Watch) -> String {
        let chunks: Vec<Result<Bytes, std::io::Error>> = chunks
            .into_iter()
            .map(|c| c.map(|s| Bytes::from(s.to_owned())))
            .collect();
        let out: Vec<Bytes> = watch(futures::stream::iter(chunks), w)
            .map(|r| r.unwrap())
            .collect()
            .await;
        out.iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn events_end_at_a_blank_line_whatever_the_line_endings() {
        for (text, len) in [
            ("data: a\n\nrest", 9),
            ("data: a\r\n\r\nrest", 11),
            ("data: a\r\rrest", 9),
            ("data: a\n\r\nrest", 10),
        ] {
            assert_eq!(
                Scan::default().next_event(text.as_bytes()),
                Some(len),
                "{text:?}"
            );
        }
        // A CR at the end may be the start of CRLF: not an event end yet.
        assert_eq!(Scan::default().next_event(b"data: a\r\n\r"), None);
    }

    #[test]
    fn scanning_resumes_where_it_stopped() {
        let mut scan = Scan::default();
        let mut buf = b"data: ".to_vec();
        assert_eq!(scan.next_event(&buf), None);
        assert_eq!(scan.from, 6);
        buf.extend_from_slice(b"x\n");
        assert_eq!(scan.next_event(&buf), None);
        buf.extend_from_slice(b"\n");
        assert_eq!(scan.next_event(&buf), Some(9));
    }

    #[tokio::test]
    async fn answers_pass_and_other_fields_are_kept() {
        let out = run(
            vec![
                Ok("id: 1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n: comment\n\n"),
                Ok("data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n"),
            ],
            plain(id("7")),
        )
        .await;
        assert!(out.contains("id: 1\nevent: message\n"));
        assert!(out.ends_with("data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n"));
    }

    #[tokio::test]
    async fn priming_events_without_data_pass() {
        let out = run(
            vec![Ok("id: 0\nretry: 3000\ndata: \n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n")],
            plain(id("1")),
        )
        .await;
        assert!(out.starts_with("id: 0\nretry: 3000\ndata: \n\n"), "{out}");
        assert!(!out.contains("error"), "{out}");
    }

    #[tokio::test]
    async fn a_stream_that_ends_without_the_answer_says_so_and_a_second_answer_is_dropped() {
        let out = run(vec![Ok("id: 0\ndata: \n\n")], plain(id("1"))).await;
        assert!(
            out.contains("\"id\":1,\"error\"") && out.contains("without an answer"),
            "{out}"
        );
        let out = run(
            vec![Ok("data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"n\":1}}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"n\":2}}\n\n")],
            plain(id("1")),
        )
        .await;
        assert!(out.contains("\"n\":1") && !out.contains("\"n\":2"), "{out}");
    }

    #[tokio::test]
    async fn a_byte_order_mark_before_the_first_event_is_read_as_clients_read_it() {
        let out = run(
            vec![
                Ok("\u{feff}"),
                Ok("data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"),
            ],
            plain(id("1")),
        )
        .await;
        assert_eq!(
            out,
            "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"
        );
    }

    #[tokio::test]
    async fn an_answer_for_another_id_ends_the_stream_with_an_error_for_ours() {
        let out = run(
            vec![Ok(
                "data: {\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{\"secret\":1}}\n\n",
            )],
            plain(id("7")),
        )
        .await;
        assert!(!out.contains("secret"));
        assert!(out.contains("\"id\":7,\"error\""), "{out}");
    }

    #[tokio::test]
    async fn an_event_that_is_not_json_rpc_ends_the_stream_with_an_error() {
        let out = run(vec![Ok("data: <html>\n\n")], plain(id("\"a\""))).await;
        assert!(out.contains("\"id\":\"a\",\"error\""), "{out}");
        // On a GET stream it is dropped.
        let out = run(
            vec![Ok(
                "data: <html>\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n\n",
            )],
            plain(None),
        )
        .await;
        assert_eq!(out, "data: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n\n");
    }

    #[tokio::test]
    async fn an_oversized_event_ends_a_request_stream() {
        // Whole in one chunk, or arriving piece by piece.
        let big: &'static str = Box::leak(
            format!(
                "data: {{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{\"t\":\"{}\"}}}}\n\n",
                "x".repeat(2000)
            )
            .into_boxed_str(),
        );
        let out = run(vec![Ok(big)], plain(id("1"))).await;
        assert!(out.contains("larger than"), "{out}");
        assert!(!out.contains("xxxx"));
        let (a, b) = big.split_at(1500);
        let out = run(vec![Ok(a), Ok(b)], plain(id("1"))).await;
        assert!(out.contains("larger than"), "{out}");
        assert!(!out.contains("xxxx"));
    }

    #[tokio::test]
    async fn a_silent_upstream_ends_with_an_error_event_not_a_cut_stream() {
        let out = run(
            vec![
                Ok(": ping\n\n"),
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "idle")),
            ],
            plain(id("3")),
        )
        .await;
        assert!(out.contains("\"id\":3,\"error\""), "{out}");
        assert!(out.contains("idle_timeout"));
    }

    #[test]
    fn replaced_data_spanning_lines_stays_well_formed() {
        let event = b"id: 4\r\nevent: message\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n";
        assert_eq!(data_of(event).unwrap(), b"{\"a\":\n1}");
        let out = with_data(event, b"{\"b\":\n2}");
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "id: 4\nevent: message\ndata: {\"b\":\ndata: 2}\n\n"
        );
        assert_eq!(data_of(&out).unwrap(), b"{\"b\":\n2}");
    }

    #[tokio::test]
    async fn an_oversized_event_on_a_get_stream_is_skipped_in_constant_memory() {
        let mut chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("data: {\"x\":\"")];
        let piece: &'static str = Box::leak("y".repeat(512).into_boxed_str());
        chunks.extend((0..64).map(|_| Ok(piece)));
        chunks.push(Ok(
            "\"}\r\n\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"after\"}\n\n",
        ));
        let out = run(chunks, plain(None)).await;
        assert_eq!(out, "data: {\"jsonrpc\":\"2.0\",\"method\":\"after\"}\n\n");
    }

    #[test]
    fn discarding_keeps_whether_a_line_just_ended() {
        let mut scan = Scan::default();
        let mut buf = BytesMut::from(&b"xxxx\n"[..]);
        assert_eq!(scan.next_event(&buf), None);
        scan.discard(&mut buf);
        assert!(buf.is_empty());
        buf.extend_from_slice(b"\nnext");
        assert_eq!(scan.next_event(&buf), Some(1));
        let mut scan = Scan::default();
        let mut buf = BytesMut::from(&b"xxxx"[..]);
        assert_eq!(scan.next_event(&buf), None);
        scan.discard(&mut buf);
        buf.extend_from_slice(b"\nz");
        assert_eq!(scan.next_event(&buf), None);
    }
}
