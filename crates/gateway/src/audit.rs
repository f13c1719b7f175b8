//! The audit log: one JSON line per authorization decision — who (subject, client), which
//! session, what (method, target), the decision and the rule that made it, and, once the
//! upstream has answered, its status and latency. Never a token or a secret; tool arguments
//! only when the operator opts in (`audit.include = ["arguments"]`).
//!
//! Cheap on the request path (measured in docs/performance.md): a record holds the principal
//! by reference and the time as a number; its line is written straight into a buffer
//! (a timestamp prefix formatted once per second, strings escaped by serde_json, no other
//! allocation), appended to a shared batch under a short lock. A thread of its own writes the
//! batches — within 50 ms of the first record of a quiet period, or as soon as 64 KiB have
//! gathered — so requests never wait for a disk and never wake the writer per record. A batch
//! that would grow past 8 MiB (a disk that stopped) drops records and counts them in
//! `/metrics`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mcpgate_guard::policy::{Decision, Verdict};
use mcpgate_guard::{Principal, Scope};
use serde_json::Value;

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Nowhere.
    Off,
    /// Standard output.
    Stdout,
    /// Appended to a file.
    File(PathBuf),
}

impl Output {
    /// Reads `audit.output`: `off`, `stdout`, or a file path.
    pub fn parse(value: &str) -> Output {
        match value {
            "off" | "" => Output::Off,
            "stdout" | "-" => Output::Stdout,
            path => Output::File(PathBuf::from(path)),
        }
    }
}

/// One record, filled in as the request goes.
#[derive(Debug)]
pub struct Record {
    at: SystemTime,
    principal: Arc<Principal>,
    session: Option<[u8; 8]>,
    method: Box<str>,
    /// The target: tool or prompt name, resource URI, or the list.
    pub target: Option<String>,
    /// `allow`, `hide`, `challenge`, `deny`, `invalid` (arguments), `rate_limited`, `filter`.
    pub decision: &'static str,
    /// The deciding rule (`default`, `global`, `trim`, or a rule's name).
    pub rule: Option<String>,
    /// Scopes a challenge asked for.
    pub scopes: Option<Vec<Scope>>,
    /// Items a list answer lost to the policy or trimming.
    pub hidden: Option<usize>,
    /// The HTTP status the client got.
    pub status: Option<u16>,
    /// Time to the upstream's answer (or its first bytes), in milliseconds.
    pub upstream_ms: Option<f64>,
    /// Tool arguments (only with `audit.include = ["arguments"]`).
    pub arguments: Option<Value>,
    started: Option<Instant>,
}

impl Record {
    /// Sets the decision.
    pub fn decide(&mut self, decision: &Decision) {
        self.rule = Some(decision.rule.clone());
        self.decision = decision.verdict.as_str();
        if let Verdict::Challenge { scopes } = &decision.verdict {
            self.scopes = Some(scopes.clone());
        }
    }

    /// Marks the moment the request goes upstream.
    pub fn forwarded(&mut self) {
        self.started = Some(Instant::now());
    }

    /// Completes the record with the answer's status.
    pub fn answered(&mut self, status: u16) {
        self.status = Some(status);
        if let Some(at) = self.started {
            self.upstream_ms = Some((at.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0);
        }
    }

    /// The record as one JSON line (with its newline), appended to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"time":""#);
        timestamp(self.at, out);
        out.extend_from_slice(br#"","subject":"#);
        string(self.principal.subject.as_str(), out);
        if let Some(c) = &self.principal.client_id {
            out.extend_from_slice(br#","client_id":"#);
            string(c.as_str(), out);
        }
        if let Some(s) = &self.session {
            out.extend_from_slice(br#","session":""#);
            hex(s, out);
            out.push(b'"');
        }
        out.extend_from_slice(br#","method":"#);
        string(&self.method, out);
        if let Some(t) = &self.target {
            out.extend_from_slice(br#","target":"#);
            string(t, out);
        }
        out.extend_from_slice(br#","decision":""#);
        out.extend_from_slice(self.decision.as_bytes());
        out.push(b'"');
        if let Some(r) = &self.rule {
            out.extend_from_slice(br#","rule":"#);
            string(r, out);
        }
        if let Some(scopes) = &self.scopes {
            out.extend_from_slice(br#","scopes":["#);
            for (i, s) in scopes.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(s.as_str(), out);
            }
            out.push(b']');
        }
        if let Some(h) = self.hidden {
            out.extend_from_slice(br#","hidden":"#);
            out.extend_from_slice(itoa(h as u64, &mut [0; 20]));
        }
        if let Some(s) = self.status {
            out.extend_from_slice(br#","status":"#);
            out.extend_from_slice(itoa(u64::from(s), &mut [0; 20]));
        }
        if let Some(ms) = self.upstream_ms {
            out.extend_from_slice(br#","upstream_ms":"#);
            let _ = write!(out, "{ms}");
        }
        if let Some(a) = &self.arguments {
            out.extend_from_slice(br#","arguments":"#);
            let _ = serde_json::to_writer(&mut *out, a);
        }
        out.extend_from_slice(b"}\n");
    }
}

/// A JSON string, escaped by serde_json.
fn string(s: &str, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, s);
}

fn hex(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// `2026-11-23T14:02:11.417Z`: the part up to the seconds is formatted once per second (per
/// thread), the milliseconds every time.
fn timestamp(at: SystemTime, out: &mut Vec<u8>) {
    thread_local! {
        static PREFIX: std::cell::RefCell<(u64, [u8; 19])> = const { std::cell::RefCell::new((u64::MAX, [0; 19])) };
    }
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    PREFIX.with(|p| {
        let mut p = p.borrow_mut();
        if p.0 != secs {
            let text = humantime::format_rfc3339_seconds(at).to_string();
            let bytes = text.as_bytes();
            if bytes.len() >= 19 {
                p.1.copy_from_slice(&bytes[..19]);
                p.0 = secs;
            }
        }
        out.extend_from_slice(&p.1);
    });
    let ms = since.subsec_millis();
    out.push(b'.');
    out.push(b'0' + (ms / 100) as u8);
    out.push(b'0' + (ms / 10 % 10) as u8);
    out.push(b'0' + (ms % 10) as u8);
    out.push(b'Z');
}

/// The batch records go into, and the writer thread's signal.
struct Batch {
    state: Mutex<Pending>,
    ready: Condvar,
}

struct Pending {
    lines: Vec<u8>,
    closed: bool,
}

/// Bytes gathered before the writer is woken early.
const EARLY: usize = 64 * 1024;
/// Most bytes waiting to be written; beyond, records are dropped and counted.
const MAX_PENDING: usize = 8 * 1024 * 1024;
/// How long a batch gathers once its first record came.
const GATHER: Duration = Duration::from_millis(50);

/// The audit log.
pub struct Audit {
    batch: Option<Arc<Batch>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    include_arguments: bool,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("enabled", &self.batch.is_some())
            .finish_non_exhaustive()
    }
}

impl Audit {
    /// An audit log writing to `output`.
    pub fn start(output: Output, include_arguments: bool) -> std::io::Result<Audit> {
        let sink: Box<dyn Write + Send> = match &output {
            Output::Off => {
                return Ok(Audit {
                    batch: None,
                    writer: Mutex::new(None),
                    include_arguments,
                });
            }
            Output::Stdout => Box::new(std::io::stdout()),
            Output::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let batch = Arc::new(Batch {
            state: Mutex::new(Pending {
                lines: Vec::with_capacity(EARLY),
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let shared = Arc::clone(&batch);
        let handle = std::thread::Builder::new()
            .name("mcpgate-audit".into())
            .spawn(move || write_batches(&shared, sink))?;
        Ok(Audit {
            batch: Some(batch),
            writer: Mutex::new(Some(handle)),
            include_arguments,
        })
    }

    /// Whether records are written.
    pub fn enabled(&self) -> bool {
        self.batch.is_some()
    }

    /// Whether tool arguments go into records.
    pub fn include_arguments(&self) -> bool {
        self.include_arguments
    }

    /// A new record for `principal` calling `method`.
    pub fn record(
        &self,
        principal: &Arc<Principal>,
        session: Option<&str>,
        method: &str,
    ) -> Record {
        Record {
            at: SystemTime::now(),
            principal: Arc::clone(principal),
            session: session.filter(|_| self.enabled()).map(digest),
            method: method.into(),
            target: None,
            decision: "allow",
            rule: None,
            scopes: None,
            hidden: None,
            status: None,
            upstream_ms: None,
            arguments: None,
            started: None,
        }
    }

    /// Writes a record (dropped, and counted, when the batch is full).
    pub fn write(&self, record: Record) {
        let Some(batch) = &self.batch else { return };
        thread_local! {
            static LINE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(512));
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            record.write_line(&mut line);
            let mut pending = batch.state.lock().expect("audit lock");
            if pending.lines.len() + line.len() > MAX_PENDING {
                drop(pending);
                crate::metrics::audit_dropped();
                return;
            }
            let was_empty = pending.lines.is_empty();
            pending.lines.extend_from_slice(&line);
            let early = pending.lines.len() >= EARLY;
            drop(pending);
            // One wake-up per batch, not per record.
            if was_empty || early {
                batch.ready.notify_one();
            }
        });
    }
}

impl Drop for Audit {
    /// What is gathered is written before the log goes.
    fn drop(&mut self) {
        if let Some(batch) = &self.batch {
            batch.state.lock().expect("audit lock").closed = true;
            batch.ready.notify_one();
        }
        if let Some(handle) = self.writer.lock().expect("writer lock").take() {
            let _ = handle.join();
        }
    }
}

fn write_batches(batch: &Batch, mut sink: Box<dyn Write + Send>) {
    let mut spare: Vec<u8> = Vec::with_capacity(EARLY);
    loop {
        let mut pending = batch.state.lock().expect("audit lock");
        while pending.lines.is_empty() && !pending.closed {
            pending = batch.ready.wait(pending).expect("audit lock");
        }
        if pending.lines.is_empty() && pending.closed {
            break;
        }
        // Gather for a moment, unless a lot has come.
        let until = Instant::now() + GATHER;
        while pending.lines.len() < EARLY && !pending.closed {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            pending = batch
                .ready
                .wait_timeout(pending, left)
                .expect("audit lock")
                .0;
        }
        let lines = std::mem::replace(&mut pending.lines, std::mem::take(&mut spare));
        drop(pending);
        let _ = sink.write_all(&lines);
        let _ = sink.flush();
        spare = lines;
        spare.clear();
    }
    let _ = sink.flush();
}

/// A session id's digest: enough to tell sessions apart in the log, useless to resume one.
fn digest(session: &str) -> [u8; 8] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, session.as_bytes());
    let mut out = [0u8; 8];
    out.copy_from_slice(&d.as_ref()[..8]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpgate_guard::{ClientId, Subject};

    fn record() -> Record {
        let who = Arc::new(
            Principal::builder(Subject::new("al\"ice"))
                .client_id(ClientId::new("app"))
                .build(),
        );
        let audit = Audit::start(Output::Off, false).unwrap();
        let mut r = audit.record(&who, None, "tools/call");
        r.at = UNIX_EPOCH + Duration::from_millis(1_764_633_731_417);
        r.target = Some("delete_user".into());
        r.decision = "challenge";
        r.rule = Some("delete needs admin".into());
        r.scopes = Some(vec![Scope::new("admin"), Scope::new("mcp")]);
        r.status = Some(403);
        r.upstream_ms = Some(3.41);
        r
    }

    #[test]
    fn a_record_is_one_json_line_with_the_documented_fields() {
        let mut out = Vec::new();
        record().write_line(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("}\n"));
        assert_eq!(
            text,
            "{\"time\":\"2025-12-02T00:02:11.417Z\",\"subject\":\"al\\\"ice\",\"client_id\":\"app\",\"method\":\"tools/call\",\"target\":\"delete_user\",\"decision\":\"challenge\",\"rule\":\"delete needs admin\",\"scopes\":[\"admin\",\"mcp\"],\"status\":403,\"upstream_ms\":3.41}\n"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["subject"], "al\"ice");
    }

    #[test]
    fn the_timestamp_prefix_is_reused_within_a_second_and_renewed_after() {
        let base = UNIX_EPOCH + Duration::from_secs(1_764_633_731);
        let mut a = Vec::new();
        timestamp(base + Duration::from_millis(5), &mut a);
        let mut b = Vec::new();
        timestamp(base + Duration::from_millis(999), &mut b);
        let mut c = Vec::new();
        timestamp(base + Duration::from_millis(1_001), &mut c);
        assert_eq!(a, b"2025-12-02T00:02:11.005Z");
        assert_eq!(b, b"2025-12-02T00:02:11.999Z");
        assert_eq!(c, b"2025-12-02T00:02:12.001Z");
    }

    #[test]
    fn records_reach_the_file_in_batches_and_on_drop() {
        let path =
            std::env::temp_dir().join(format!("mcpgate-audit-unit-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let audit = Audit::start(Output::File(path.clone()), false).unwrap();
        let who = Arc::new(Principal::builder(Subject::new("bob")).build());
        for i in 0..1000 {
            let mut r = audit.record(&who, Some("session-id"), "tools/call");
            r.target = Some(format!("t{i}"));
            audit.write(r);
        }
        drop(audit);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        let last: Value = serde_json::from_str(lines[999]).unwrap();
        assert_eq!(last["target"], "t999");
        assert_eq!(last["session"].as_str().unwrap().len(), 16);
        let _ = std::fs::remove_file(&path);
    }
}
