//! `[upstream]`: the MCP server behind the gateway — a Streamable HTTP URL or a stdio command
//! — and what crosses to it. Built into [`UpstreamPlan`]: the upstream as an enum of HTTP or
//! stdio with every header, variable and argument resolved once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

use super::settings::{Setting, s, secret};
use super::values::{self, Secret};
use super::{AuthMode, Config, Problems};
use crate::proxy::{IdentityHeaders as IdentityHeaderNames, TokenForwarding};
use crate::upstream::http::HttpUpstreamOptions;
use crate::upstream::stdio::process::CommandSpec;
use crate::upstream::stdio::{SessionMode, StdioOptions};

/// The upstream MCP server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Streamable HTTP endpoint.
    pub url: Option<Url>,
    /// Time to establish a connection.
    #[serde(with = "values::duration")]
    pub connect_timeout: Duration,
    /// Time for the upstream to answer (a JSON reply in full; a stream up to its headers).
    #[serde(with = "values::duration")]
    pub timeout: Duration,
    /// Longest silence on a response stream before it is closed.
    #[serde(with = "values::duration")]
    pub idle_timeout: Duration,
    /// Largest complete (JSON) reply accepted from the upstream, in bytes.
    pub max_response_bytes: usize,
    /// Bytes of upstream replies held at once by all requests together: JSON replies being
    /// read and stream events being assembled.
    pub max_response_bytes_in_flight: usize,
    /// Extra headers sent upstream; `${VAR}` in a value is replaced by that environment
    /// variable of the gateway.
    pub headers: BTreeMap<String, Secret>,
    /// Further client request headers to pass upstream (besides the MCP ones).
    #[serde(deserialize_with = "values::list::deserialize")]
    pub forward_headers: Vec<String>,
    /// Headers describing the verified principal.
    pub identity_headers: IdentityHeaders,
    /// Forward the client's `Authorization` header (`jwt`/`introspection` modes, for an
    /// upstream that is the token's audience and validates it again).
    pub forward_token: bool,
    /// A stdio MCP server to run instead of `url`: program and arguments (no shell).
    #[serde(deserialize_with = "values::command::deserialize")]
    pub command: Option<Vec<String>>,
    /// Working directory of the command.
    pub cwd: Option<PathBuf>,
    /// Environment variables set for the command; `${VAR}` takes the gateway's own.
    pub env: BTreeMap<String, Secret>,
    /// Variables of the gateway's environment passed to the command as they are.
    #[serde(deserialize_with = "values::list::deserialize")]
    pub inherit_env: Vec<String>,
    /// `per-session` (a child per MCP session) or `shared` (one child for all).
    pub session_mode: StdioSessionMode,
    /// Children at once (`per-session`).
    pub max_children: usize,
    /// Sessions (so processes) one subject may hold at once (`per-session`).
    pub max_sessions_per_subject: usize,
    /// A child with no requests for this long is stopped.
    #[serde(with = "values::duration")]
    pub child_idle_timeout: Duration,
    /// Time for a new child to answer its first message.
    #[serde(with = "values::duration")]
    pub startup_timeout: Duration,
    /// Only these tools, resources, templates and prompts exist (per kind; unset: all).
    pub expose: mcpgate_guard::policy::lists::KindPatterns,
    /// These never exist, for anyone.
    pub hide: mcpgate_guard::policy::lists::KindPatterns,
}

/// How MCP sessions map to processes of a stdio upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StdioSessionMode {
    /// A child per session.
    PerSession,
    /// One child for all sessions.
    Shared,
}

/// Names of the headers that carry the verified principal upstream; unset ones are not sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityHeaders {
    /// Header for the subject.
    pub subject: Option<String>,
    /// Header for the client id.
    pub client_id: Option<String>,
    /// Header for the space-separated scopes.
    pub scopes: Option<String>,
}

/// What a stdio upstream inherits from the gateway's environment unless told otherwise: what
/// programs need to run (`npx`, `uvx` and `python` find themselves and their caches), never
/// the gateway's own settings or credentials.
pub const DEFAULT_INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(300),
            max_response_bytes: 16 * 1024 * 1024,
            max_response_bytes_in_flight: 256 * 1024 * 1024,
            headers: BTreeMap::new(),
            forward_headers: Vec::new(),
            identity_headers: IdentityHeaders::default(),
            forward_token: false,
            command: None,
            cwd: None,
            env: BTreeMap::new(),
            inherit_env: DEFAULT_INHERITED_ENV
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            session_mode: StdioSessionMode::PerSession,
            max_children: 32,
            max_sessions_per_subject: 8,
            child_idle_timeout: Duration::from_secs(900),
            startup_timeout: Duration::from_secs(60),
            expose: Default::default(),
            hide: Default::default(),
        }
    }
}

/// This section's settings.
pub(super) const SETTINGS: &[Setting] = &[
    s(
        "upstream.url",
        Some("--upstream-url"),
        "URL",
        "The upstream MCP server's Streamable HTTP endpoint.",
    ),
    s(
        "upstream.connect_timeout",
        None,
        "duration",
        "Time allowed to connect to the upstream.",
    ),
    s(
        "upstream.timeout",
        None,
        "duration",
        "Time allowed for the upstream to answer a request: a JSON reply in full, a stream up to its first bytes (the stream may then run longer, see upstream.idle_timeout). Past it: 504.",
    ),
    s(
        "upstream.idle_timeout",
        None,
        "duration",
        "Longest silence on an upstream response stream before the gateway closes it.",
    ),
    s(
        "upstream.max_response_bytes",
        None,
        "integer",
        "Largest complete (JSON) reply accepted from the upstream; a larger one becomes a 502. Streams are not limited.",
    ),
    s(
        "upstream.max_response_bytes_in_flight",
        None,
        "integer",
        "Bytes of upstream replies all requests together may hold at once (JSON replies being read, stream events not yet complete); a reply that would go beyond it is refused with 503 and Retry-After (on a stream: an error event), so that large answers to many callers at once cannot exhaust memory.",
    ),
    secret(
        "upstream.headers",
        "table of strings",
        "Extra headers sent with every upstream request, e.g. the upstream's own credentials: `{ \"X-Api-Key\" = \"${UPSTREAM_KEY}\" }`. `${VAR}` is replaced by the gateway's environment variable VAR. Values are never logged.",
    ),
    s(
        "upstream.forward_headers",
        None,
        "list",
        "Client request headers passed upstream besides the MCP ones (`Accept`, `Content-Type`, `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`, `Last-Event-ID`, `User-Agent`, trace context). Everything else, including `Authorization` and cookies, is dropped.",
    ),
    s(
        "upstream.identity_headers.subject",
        None,
        "header name",
        "Header that carries the verified subject upstream (e.g. `X-Forwarded-User`). Unset: not sent. Client-sent headers of that name are always removed.",
    ),
    s(
        "upstream.identity_headers.client_id",
        None,
        "header name",
        "Header that carries the verified client id upstream.",
    ),
    s(
        "upstream.identity_headers.scopes",
        None,
        "header name",
        "Header that carries the verified scopes (space-separated) upstream.",
    ),
    s(
        "upstream.forward_token",
        None,
        "bool",
        "Forward the client's `Authorization` header upstream (`jwt` and `introspection` modes only). Only for an upstream that is itself the token's audience and validates it again.",
    ),
    s(
        "upstream.command",
        Some("--upstream-cmd"),
        "command line or array",
        "A stdio MCP server to run and serve instead of `upstream.url`: `[\"npx\", \"-y\", \"@modelcontextprotocol/server-everything\"]`, or one string split like a shell would split it (quotes, backslashes) but never run through a shell. Also read from `MCPGATE_UPSTREAM_CMD`.",
    ),
    s(
        "upstream.cwd",
        None,
        "path",
        "Working directory of the command (default: the gateway's).",
    ),
    secret(
        "upstream.env",
        "table",
        "Environment variables set for the command: `{ API_KEY = \"${MY_API_KEY}\" }`. `${VAR}` is replaced by the gateway's variable VAR. Values are never logged.",
    ),
    s(
        "upstream.inherit_env",
        None,
        "list",
        "Variables of the gateway's environment passed to the command unchanged. Nothing else of the gateway's environment (its settings, its credentials) reaches the command.",
    ),
    s(
        "upstream.session_mode",
        None,
        "`per-session`, `shared`",
        "`per-session`: every MCP session gets its own process, so users never share upstream state (a 2026-07-28 client gets one per subject). `shared`: one process serves everyone.",
    ),
    s(
        "upstream.max_children",
        None,
        "integer",
        "Most processes at once in `per-session` mode; a new session beyond it gets 503 with Retry-After.",
    ),
    s(
        "upstream.expose",
        None,
        "table",
        "Trimming: only these exist, for everyone, per kind: `{ tools = [\"search_*\", \"get_*\"], resources = [\"docs://*\"], resource_templates = [...], prompts = [...] }` (globs; a kind left out keeps all).",
    ),
    s(
        "upstream.hide",
        None,
        "table",
        "Trimming: these never exist, for anyone, per kind (same shape as `upstream.expose`).",
    ),
    s(
        "upstream.max_sessions_per_subject",
        None,
        "integer",
        "Most sessions (so processes) one subject may hold at once in `per-session` mode, so that one user cannot take every process; beyond it: 503 with Retry-After.",
    ),
    s(
        "upstream.child_idle_timeout",
        None,
        "duration",
        "A process with nothing in flight and no open stream for this long is stopped (its session ends).",
    ),
    s(
        "upstream.startup_timeout",
        None,
        "duration",
        "Time for a new process to answer its first message (`initialize` or `server/discover`).",
    ),
];

/// The upstream, built: where requests go and what travels with them.
pub struct UpstreamPlan {
    /// An HTTP server or a stdio command.
    pub target: Target,
    /// Headers that carry the verified principal upstream.
    pub identity: IdentityHeaderNames,
    /// Whether the client's token is forwarded.
    pub token: TokenForwarding,
    /// Largest complete reply accepted, in bytes.
    pub max_message_bytes: usize,
}

/// The upstream MCP server.
pub enum Target {
    /// A Streamable HTTP endpoint.
    Http(HttpUpstreamOptions),
    /// A stdio program the gateway runs.
    Stdio(StdioOptions),
}

impl Target {
    /// The upstream, for the start-up line: a command's program only (its arguments may carry
    /// credentials, a DSN or a key), never its environment.
    pub fn describe(&self) -> String {
        match self {
            // The query may carry a key: not shown.
            Target::Http(options) => {
                let mut url = options.url.clone();
                if url.query().is_some() {
                    url.set_query(Some("…"));
                }
                url.to_string()
            }
            Target::Stdio(options) => format!(
                "stdio: {} ({} arguments)",
                options
                    .command
                    .argv
                    .first()
                    .map(String::as_str)
                    .unwrap_or_default(),
                options.command.argv.len().saturating_sub(1)
            ),
        }
    }
}

/// Header names no setting may claim: the gateway sets or strips them itself.
const RESERVED: [&str; 6] = [
    "authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "mcp-session-id",
];

pub(super) fn build(config: &Config, p: &mut Problems) -> Option<UpstreamPlan> {
    let up = &config.upstream;
    p.no_credentials("upstream.url", up.url.as_ref());
    for (key, value) in [
        ("upstream.connect_timeout", up.connect_timeout),
        ("upstream.timeout", up.timeout),
        ("upstream.idle_timeout", up.idle_timeout),
    ] {
        p.positive_duration(key, value);
    }
    if up.max_response_bytes == 0 {
        p.push("upstream.max_response_bytes", "must be greater than zero");
    }
    if up.max_response_bytes_in_flight < up.max_response_bytes {
        p.push(
            "upstream.max_response_bytes_in_flight",
            format!(
                "must be at least upstream.max_response_bytes ({}), or no reply of the largest size could ever be read",
                up.max_response_bytes
            ),
        );
    }
    let target = match (&up.command, &up.url) {
        (Some(command), url) => {
            if url.is_some() {
                p.push("upstream.command", "set either upstream.url (an HTTP server) or upstream.command (a stdio server), not both");
            }
            stdio(config, command, p).map(Target::Stdio)
        }
        (None, None) => {
            p.push("upstream.url", "required: the MCP server to put behind the gateway (e.g. --upstream-url http://127.0.0.1:3000/mcp, or a stdio server with --upstream-cmd \"python -m my_server\")");
            None
        }
        (None, Some(url)) => http(config, url, p).map(Target::Http),
    };
    let identity = identity_headers(up, p);
    let token = match config.auth.mode {
        AuthMode::Passthrough => TokenForwarding::Forward,
        AuthMode::Jwt | AuthMode::Introspection if up.forward_token => TokenForwarding::Forward,
        _ => TokenForwarding::Strip,
    };
    if up.forward_token && !matches!(config.auth.mode, AuthMode::Jwt | AuthMode::Introspection) {
        p.push(
            "upstream.forward_token",
            "only applies in `jwt` and `introspection` modes",
        );
    }
    Some(UpstreamPlan {
        target: target?,
        identity: identity?,
        token,
        max_message_bytes: up.max_response_bytes,
    })
}

/// An HTTP upstream: its headers resolved (`${VAR}`) and typed once.
fn http(config: &Config, url: &Url, p: &mut Problems) -> Option<HttpUpstreamOptions> {
    let up = &config.upstream;
    let mut ok = true;
    if !matches!(url.scheme(), "http" | "https") {
        p.push(
            "upstream.url",
            format!("scheme must be http or https, not `{}`", url.scheme()),
        );
        ok = false;
    }
    let mut extra_headers = HeaderMap::new();
    for (name, value) in &up.headers {
        let key = format!("upstream.headers.{name}");
        let Ok(header) = HeaderName::from_str(name) else {
            p.push(&key, "is not a valid header name");
            ok = false;
            continue;
        };
        // The framing and routing headers are the gateway's (`Authorization` may be the
        // upstream's own credential, so it is allowed).
        if matches!(
            header.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection" | "te" | "upgrade"
        ) || header.as_str().starts_with("mcp-")
        {
            p.push(
                &key,
                "is set by the gateway itself and cannot be configured",
            );
            ok = false;
            continue;
        }
        let value = match super::interpolate(value.expose()) {
            Ok(v) => v,
            Err(problem) => {
                p.push(&key, problem);
                ok = false;
                continue;
            }
        };
        match HeaderValue::try_from(value) {
            Ok(mut value) => {
                value.set_sensitive(true);
                extra_headers.insert(header, value);
            }
            Err(_) => {
                p.push(&key, "is not a valid header value");
                ok = false;
            }
        }
    }
    let mut forward_extra = Vec::new();
    for name in &up.forward_headers {
        match HeaderName::from_str(name) {
            Err(_) => {
                p.push(
                    "upstream.forward_headers",
                    format!("`{name}` is not a valid header name"),
                );
                ok = false;
            }
            Ok(h) if RESERVED.contains(&h.as_str()) => {
                p.push(
                    "upstream.forward_headers",
                    format!(
                        "`{name}` cannot be forwarded this way (use upstream.forward_token for Authorization)"
                    ),
                );
                ok = false;
            }
            Ok(h) => forward_extra.push(h),
        }
    }
    ok.then(|| HttpUpstreamOptions {
        url: url.clone(),
        extra_headers,
        forward_extra,
        connect_timeout: up.connect_timeout,
        response_timeout: up.timeout,
        idle_timeout: up.idle_timeout,
        max_response_bytes: up.max_response_bytes,
        max_response_bytes_in_flight: up.max_response_bytes_in_flight,
    })
}

/// A stdio upstream. The child's environment is built here, once: the inherited variables
/// that are set, then `upstream.env` with `${VAR}` replaced.
fn stdio(config: &Config, command: &[String], p: &mut Problems) -> Option<StdioOptions> {
    let up = &config.upstream;
    let before = p.len();
    if command
        .first()
        .is_none_or(|program| program.trim().is_empty())
    {
        p.push("upstream.command", "must name a program");
    }
    if let Some(dir) = &up.cwd
        && !dir.is_dir()
    {
        p.push(
            "upstream.cwd",
            format!("`{}` is not a directory", dir.display()),
        );
    }
    let mut env: Vec<(String, String)> = up
        .inherit_env
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| (name.clone(), v)))
        .collect();
    for (name, value) in &up.env {
        let key = format!("upstream.env.{name}");
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            p.push(&key, "not a valid environment variable name");
        }
        match super::interpolate(value.expose()) {
            Ok(value) => {
                env.retain(|(k, _)| k != name);
                env.push((name.clone(), value));
            }
            Err(problem) => p.push(&key, problem),
        }
    }
    if up.max_children == 0 {
        p.push("upstream.max_children", "must be at least 1");
    }
    if up.max_sessions_per_subject == 0 {
        p.push("upstream.max_sessions_per_subject", "must be at least 1");
    }
    let mut argv = Vec::with_capacity(command.len());
    for (i, arg) in command.iter().enumerate() {
        match super::interpolate(arg) {
            Ok(arg) => argv.push(arg),
            Err(problem) => p.push("upstream.command", format!("argument {i}: {problem}")),
        }
    }
    for (key, d) in [
        ("upstream.child_idle_timeout", up.child_idle_timeout),
        ("upstream.startup_timeout", up.startup_timeout),
    ] {
        if d.is_zero() {
            p.push(key, "must be greater than zero");
        }
    }
    // What only an HTTP upstream can do.
    if !up.headers.is_empty() {
        p.push(
            "upstream.headers",
            "applies to an HTTP upstream (upstream.url); a stdio command takes upstream.env",
        );
    }
    let identity = &up.identity_headers;
    if identity.subject.is_some() || identity.client_id.is_some() || identity.scopes.is_some() {
        p.push(
            "upstream.identity_headers",
            "applies to an HTTP upstream (upstream.url) only",
        );
    }
    if up.forward_token {
        p.push(
            "upstream.forward_token",
            "applies to an HTTP upstream (upstream.url) only: a stdio command gets no tokens",
        );
    }
    if config.auth.mode == AuthMode::Passthrough {
        p.push("auth.mode", "`passthrough` needs an HTTP upstream that validates the token itself; a stdio command cannot");
    }
    (p.len() == before).then(|| StdioOptions {
        command: CommandSpec {
            argv,
            cwd: up.cwd.clone(),
            env,
        },
        mode: match up.session_mode {
            StdioSessionMode::PerSession => SessionMode::PerSession,
            StdioSessionMode::Shared => SessionMode::Shared,
        },
        max_children: up.max_children,
        max_sessions_per_subject: up.max_sessions_per_subject,
        idle_timeout: up.child_idle_timeout,
        stream_idle_timeout: up.idle_timeout,
        startup_timeout: up.startup_timeout,
        request_timeout: up.timeout,
        max_line: up.max_response_bytes,
    })
}

/// The identity headers, named once; none may be one the gateway owns or one a client could
/// set itself.
fn identity_headers(up: &UpstreamConfig, p: &mut Problems) -> Option<IdentityHeaderNames> {
    let before = p.len();
    let identity = &up.identity_headers;
    let mut name = |key: &str, name: &Option<String>| -> Option<HeaderName> {
        let name = name.as_ref()?;
        match HeaderName::from_str(name) {
            Err(_) => p.push(key, format!("`{name}` is not a valid header name")),
            Ok(h) if RESERVED.contains(&h.as_str()) || h.as_str().starts_with("mcp-") => p.push(
                key,
                format!("`{name}` is reserved; choose another name such as X-Forwarded-User"),
            ),
            Ok(h)
                if up
                    .forward_headers
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(h.as_str())) =>
            {
                p.push(
                    key,
                    format!(
                        "`{name}` is also in upstream.forward_headers: a client could then set the identity itself"
                    ),
                )
            }
            Ok(h) => return Some(h),
        }
        None
    };
    let headers = IdentityHeaderNames {
        subject: name("upstream.identity_headers.subject", &identity.subject),
        client_id: name("upstream.identity_headers.client_id", &identity.client_id),
        scopes: name("upstream.identity_headers.scopes", &identity.scopes),
    };
    (p.len() == before).then_some(headers)
}
