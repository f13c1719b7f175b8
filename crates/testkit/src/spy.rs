//! A permissive "MCP server" that records every message it receives and does whatever it is
//! asked — the upstream an attacker hopes for. Tests put it behind the gateway to see what
//! gets through: any `tools/call` runs, whatever the tool, and its result echoes the params
//! received. It can also misbehave on purpose (answers that are not JSON, carry another id,
//! lists that are too large or repeat members, streams that go silent).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

/// How the spy answers.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Answer requests with SSE instead of JSON.
    pub sse: bool,
    /// `tools/list` items.
    pub tools: Vec<Value>,
    /// `resources/list` items.
    pub resources: Vec<Value>,
    /// Bytes of padding added to list answers (a `padding` member of the result).
    pub list_padding: usize,
    /// Repeat the list member in list answers: a first, empty copy, then the real one.
    pub repeated_list: bool,
    /// Answer every request with this body instead (`{id}` is replaced by the request's id).
    pub raw_reply: Option<String>,
    /// On SSE: send the headers and a comment, then nothing.
    pub silent: bool,
    /// Before an SSE answer, send a notification with each of these methods.
    pub notifications_first: Vec<String>,
    /// On SSE: spread each message's JSON over several `data:` lines.
    pub split_data_lines: bool,
    /// Put this extra text in every tool result (to echo words like a notification's name).
    pub result_text: Option<String>,
    /// Wait this long before answering a `tools/call`.
    pub delay: Option<Duration>,
    /// Answer requests with this status instead of 200.
    pub status: Option<u16>,
    /// Bytes sent before anything else on an SSE stream (a byte-order mark, say).
    pub sse_prefix: Vec<u8>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            sse: false,
            tools: vec![
                json!({"name": "echo", "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}}, "annotations": {"readOnlyHint": true, "destructiveHint": false}}),
                json!({"name": "secret_tool", "inputSchema": {"type": "object"}}),
                json!({"name": "deep", "inputSchema": {"type": "object"}}),
            ],
            resources: vec![
                json!({"uri": "file:///public/readme", "name": "readme"}),
                json!({"uri": "file:///private/keys", "name": "keys"}),
                json!({"uri": "config://secrets", "name": "secrets"}),
            ],
            list_padding: 0,
            repeated_list: false,
            raw_reply: None,
            silent: false,
            notifications_first: Vec::new(),
            split_data_lines: false,
            result_text: None,
            delay: None,
            status: None,
            sse_prefix: Vec::new(),
        }
    }
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Value>>,
    headers: Mutex<Vec<Vec<(String, String)>>>,
    behaviour: Mutex<Behaviour>,
}

/// A running spy.
#[derive(Clone)]
pub struct Spy {
    /// Its `/mcp` URL.
    pub url: String,
    state: Arc<State>,
}

impl std::fmt::Debug for Spy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spy").field("url", &self.url).finish()
    }
}

impl Spy {
    /// Starts a spy on a free loopback port (it stops when the test's runtime does).
    pub async fn start(behaviour: Behaviour) -> Spy {
        let state = Arc::new(State {
            seen: Mutex::new(Vec::new()),
            headers: Mutex::new(Vec::new()),
            behaviour: Mutex::new(behaviour),
        });
        let shared = Arc::clone(&state);
        let app = axum::Router::new().route(
            "/mcp",
            axum::routing::any(move |headers: HeaderMap, body: Bytes| {
                let state = Arc::clone(&shared);
                async move {
                    let delay = state.behaviour.lock().unwrap().delay;
                    let is_call = serde_json::from_slice::<Value>(&body)
                        .is_ok_and(|m| m["method"] == "tools/call" && m.get("id").is_some());
                    if let (Some(d), true) = (delay, is_call) {
                        // Recorded on arrival, answered late.
                        tokio::time::sleep(d).await;
                    }
                    answer(&state, &headers, &body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Spy { url, state }
    }

    /// Changes how it answers from now on.
    pub fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.state.behaviour.lock().unwrap());
    }

    /// Every message received so far (bodies that were not JSON as strings).
    pub fn seen(&self) -> Vec<Value> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The request headers of every message received so far, in order.
    pub fn headers_seen(&self) -> Vec<Vec<(String, String)>> {
        self.state.headers.lock().unwrap().clone()
    }

    /// The messages received with `method`.
    pub fn calls(&self, method: &str) -> Vec<Value> {
        self.seen()
            .into_iter()
            .filter(|m| m["method"] == method)
            .collect()
    }

    /// Forgets what was received.
    pub fn clear(&self) {
        self.state.seen.lock().unwrap().clear();
    }
}

fn answer(state: &State, headers: &HeaderMap, body: &[u8]) -> Response {
    let message: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    state.seen.lock().unwrap().push(message.clone());
    state.headers.lock().unwrap().push(
        headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    );
    if headers
        .get(header::ACCEPT)
        .is_some_and(|a| a == "text/event-stream")
        && body.is_empty()
    {
        // A GET stream: nothing to say.
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let b = state.behaviour.lock().unwrap().clone();
    let (Some(method), Some(id)) = (message["method"].as_str(), message.get("id")) else {
        return status(StatusCode::ACCEPTED);
    };
    if let Some(raw) = &b.raw_reply {
        let text = raw.replace("{id}", &id.to_string());
        return reply(&b, text, method);
    }
    let list = |field: &str, items: &[Value]| {
        let mut text = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"#);
        if b.repeated_list {
            text.push_str(&format!(r#""{field}":[],"#));
        }
        text.push_str(&format!(
            r#""{field}":{}"#,
            serde_json::to_string(items).unwrap()
        ));
        if b.list_padding > 0 {
            text.push_str(&format!(r#","padding":"{}""#, "p".repeat(b.list_padding)));
        }
        text.push_str("}}");
        text
    };
    let text = match method {
        "initialize" => json!({"jsonrpc": "2.0", "id": id, "result": {
            "protocolVersion": message["params"]["protocolVersion"].as_str().unwrap_or("2025-11-25"),
            "capabilities": {"tools": {"listChanged": true}, "resources": {"subscribe": true}, "prompts": {}, "completions": {}},
            "serverInfo": {"name": "spy", "version": "1"}
        }})
        .to_string(),
        "tools/list" => list("tools", &b.tools),
        "resources/list" => list("resources", &b.resources),
        "resources/templates/list" => list("resourceTemplates", &[]),
        "prompts/list" => list("prompts", &[]),
        _ => {
            let mut text = format!("ran {method} {}", message["params"]);
            if let Some(extra) = &b.result_text {
                text.push(' ');
                text.push_str(extra);
            }
            json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}]}})
                .to_string()
        }
    };
    let mut r = reply(&b, text, method);
    if method == "initialize" {
        r.headers_mut()
            .insert("mcp-session-id", "spy-session".parse().unwrap());
    }
    r
}

fn status(s: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = s;
    r
}

fn reply(b: &Behaviour, text: String, method: &str) -> Response {
    let status = StatusCode::from_u16(b.status.unwrap_or(200)).unwrap_or(StatusCode::OK);
    if !b.sse || method == "initialize" {
        let mut r = Response::new(Body::from(text));
        if method != "initialize" {
            *r.status_mut() = status;
        }
        r.headers_mut()
            .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        return r;
    }
    let events = async_stream(
        text,
        b.silent,
        b.notifications_first.clone(),
        b.split_data_lines,
    );
    let prefix = futures::stream::iter(
        (!b.sse_prefix.is_empty())
            .then(|| Ok::<_, std::io::Error>(Bytes::from(b.sse_prefix.clone()))),
    );
    let mut r = Response::new(Body::from_stream(futures::StreamExt::chain(prefix, events)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
    r
}

fn async_stream(
    text: String,
    silent: bool,
    before: Vec<String>,
    split: bool,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let data = |json: &str| -> String {
        if split {
            // A line break after every comma outside strings is still the same JSON.
            let mut out = String::from("data: ");
            let mut in_string = false;
            let mut escaped = false;
            for c in json.chars() {
                out.push(c);
                if in_string {
                    match (escaped, c) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => in_string = false,
                        _ => {}
                    }
                } else if c == '"' {
                    in_string = true;
                } else if c == ',' {
                    out.push_str("\ndata: ");
                }
            }
            out.push('\n');
            out
        } else {
            format!("data: {json}\n")
        }
    };
    let mut chunks: Vec<Bytes> = vec![];
    for method in &before {
        let json = format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":{{}}}}"#);
        chunks.push(Bytes::from(format!("{}\n", data(&json))));
    }
    if !silent {
        chunks.push(Bytes::from(format!("{}\n", data(&text))));
    }
    futures::stream::unfold(
        (chunks.into_iter(), silent),
        |(mut it, silent)| async move {
            match it.next() {
                Some(c) => Some((Ok(c), (it, silent))),
                None if silent => {
                    // Silent: never another byte.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    None
                }
                None => None,
            }
        },
    )
}
