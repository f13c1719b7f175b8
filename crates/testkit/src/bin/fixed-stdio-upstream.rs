//! A trivial stdio "MCP server" for load benchmarks: answers `initialize` and
//! `server/discover` minimally, and every other request with the same small `tools/call`
//! result under the request's own id; notifications get nothing. What a benchmark measures in
//! front of it is the gateway's stdio path, not a server's work.

use std::io::{BufRead, Write};

use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    method: Option<String>,
}

const RESULT: &str = r#"{"content":[{"type":"text","text":"ok"}],"isError":false}"#;
const INIT: &str = r#"{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"fixed-stdio","version":"0"}}"#;

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Envelope<'_>>(&line) else {
            continue;
        };
        let Some(id) = msg.id else { continue };
        let (kind, body) = match msg.method.as_deref() {
            Some("initialize") => ("result", INIT),
            Some("server/discover") => ("error", r#"{"code":-32601,"message":"Method not found"}"#),
            Some(_) => ("result", RESULT),
            None => continue,
        };
        let _ = writeln!(
            out,
            r#"{{"jsonrpc":"2.0","id":{},"{kind}":{body}}}"#,
            id.get()
        );
        let _ = out.flush();
    }
}
