//! The audit log: one JSON line per authorization decision — who (subject, client), which
//! session, what (method, target), the decision and the rule that made it, and, once the
//! upstream has answered, its status and latency. Never a token or a secret; tool arguments
//! only when the operator opts in (`audit.include = ["arguments"]`).
//!
//! Records are written by a thread of their own through a bounded queue: a slow disk never
//! holds up requests (a record that does not fit is dropped and counted in `/metrics`).
//! They reach the file in batches, within 50 ms when the gateway is quiet and within a second
//! when it is busy.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use mcpgate_guard::Principal;
use mcpgate_guard::policy::{Decision, Verdict};
use serde::Serialize;
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

/// One record.
#[derive(Debug, Serialize)]
pub struct Record {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// Who.
    pub subject: String,
    /// With which client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Which session (a digest of its id, never the id itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The MCP method.
    pub method: String,
    /// The target: tool or prompt name, resource URI, or the list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `allow`, `hide`, `challenge`, `deny`, `invalid` (arguments), `filter` (a list).
    pub decision: String,
    /// The deciding rule (`default`, `global`, `trim`, or a rule's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Scopes a challenge asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Items a list answer lost to the policy or trimming.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden: Option<usize>,
    /// The HTTP status the client got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Time to the upstream's answer (or its first bytes), in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    /// Tool arguments (only with `audit.include = ["arguments"]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    #[serde(skip)]
    started: Option<Instant>,
}

impl Record {
    /// Sets the decision.
    pub fn decide(&mut self, decision: &Decision) {
        self.rule = Some(decision.rule.clone());
        self.decision = decision.verdict.as_str().into();
        if let Verdict::Challenge { scopes } = &decision.verdict {
            self.scopes = Some(scopes.iter().map(|s| s.as_str().to_owned()).collect());
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
}

/// The audit log.
#[derive(Debug)]
pub struct Audit {
    tx: Option<std::sync::mpsc::SyncSender<String>>,
    include_arguments: bool,
}

impl Audit {
    /// An audit log writing to `output`.
    pub fn start(output: Output, include_arguments: bool) -> std::io::Result<Audit> {
        let sink: Box<dyn Write + Send> = match &output {
            Output::Off => {
                return Ok(Audit {
                    tx: None,
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
        // Buffered, and flushed when 64 KiB have gathered, nothing came for 50 ms, or a second passed: a busy
        // gateway writes records in batches, an idle one has them on disk within 50 ms.
        let mut sink = std::io::BufWriter::with_capacity(64 * 1024, sink);
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(4096);
        std::thread::Builder::new()
            .name("mcpgate-audit".into())
            .spawn(move || {
                use std::sync::mpsc::RecvTimeoutError;
                let mut flushed = Instant::now();
                loop {
                    match rx.recv_timeout(std::time::Duration::from_millis(50)) {
                        Ok(line) => {
                            let _ = sink.write_all(line.as_bytes());
                            let _ = sink.write_all(b"\n");
                            // A steady trickle is not held back for long either.
                            if flushed.elapsed() >= std::time::Duration::from_secs(1) {
                                let _ = sink.flush();
                                flushed = Instant::now();
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            let _ = sink.flush();
                            flushed = Instant::now();
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                let _ = sink.flush();
            })?;
        Ok(Audit {
            tx: Some(tx),
            include_arguments,
        })
    }

    /// Whether records are written.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Whether tool arguments go into records.
    pub fn include_arguments(&self) -> bool {
        self.include_arguments
    }

    /// A new record for `principal` calling `method`.
    pub fn record(&self, principal: &Principal, session: Option<&str>, method: &str) -> Record {
        Record {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            subject: principal.subject.to_string(),
            client_id: principal.client_id.as_ref().map(|c| c.to_string()),
            session: session.map(digest),
            method: method.to_owned(),
            target: None,
            decision: "allow".into(),
            rule: None,
            scopes: None,
            hidden: None,
            status: None,
            upstream_ms: None,
            arguments: None,
            started: None,
        }
    }

    /// Writes a record (dropped, and counted, when the queue is full).
    pub fn write(&self, record: Record) {
        let Some(tx) = &self.tx else { return };
        match serde_json::to_string(&record) {
            Ok(line) => {
                if tx.try_send(line).is_err() {
                    crate::metrics::audit_dropped();
                }
            }
            Err(e) => {
                tracing::warn!(target: "mcpgate::audit", error = %e, "audit record not written")
            }
        }
    }
}

/// A session id's digest: enough to tell sessions apart in the log, useless to resume one.
fn digest(session: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, session.as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}
