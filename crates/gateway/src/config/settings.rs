//! Every setting, once: its key, flag, description and whether it is secret. Environment
//! variable names, the configuration reference (`docs/configuration.md`), `mcpgate.example.toml`
//! and `.env.example` are all derived from this table, and a test checks the table against the
//! [`Config`](super::Config) struct so that neither can drift.

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::Config;

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Dotted key, as in `mcpgate.toml` (`auth.jwks_uri`).
    pub key: &'static str,
    /// The command-line flag, when there is one.
    pub flag: Option<&'static str>,
    /// What it is, for the reference.
    pub doc: &'static str,
    /// Value shape, for the reference.
    pub kind: &'static str,
    /// Whether the value is masked when printed.
    pub secret: bool,
}

const fn s(
    key: &'static str,
    flag: Option<&'static str>,
    kind: &'static str,
    doc: &'static str,
) -> Setting {
    Setting {
        key,
        flag,
        doc,
        kind,
        secret: false,
    }
}

const fn secret(key: &'static str, kind: &'static str, doc: &'static str) -> Setting {
    Setting {
        key,
        flag: None,
        doc,
        kind,
        secret: true,
    }
}

/// The table.
pub const SETTINGS: &[Setting] = &[
    s("listen", Some("--listen"), "address", "Address to bind."),
    s(
        "public_url",
        Some("--public-url"),
        "URL",
        "The URL clients use (scheme, host, port and any path prefix a reverse proxy adds). The protected resource is `<public_url>/mcp`. Default: `http://<listen>`; required when `listen` is not a loopback address.",
    ),
    s(
        "data_dir",
        Some("--data-dir"),
        "path",
        "Where the embedded store and keys live.",
    ),
    s(
        "dev",
        Some("--dev"),
        "bool",
        "Allow development-only settings (static tokens). Prints a loud warning at start.",
    ),
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
    s(
        "auth.mode",
        Some("--auth"),
        "`none`, `passthrough`, `static`, `jwt`, `introspection`",
        "How clients are authenticated. `none` only on a loopback address; `passthrough` requires a bearer header and forwards it unchanged (the upstream validates; weaker); `static` needs `dev`.",
    ),
    s(
        "auth.issuer_url",
        Some("--issuer-url"),
        "URL",
        "The authorization server's issuer identifier: advertised in the Protected Resource Metadata and required as the token's `iss`. Required in `jwt` and `introspection` modes.",
    ),
    s(
        "auth.authorization_servers",
        None,
        "list",
        "Authorization servers advertised in the metadata. Default: `auth.issuer_url`.",
    ),
    s(
        "auth.jwks_uri",
        Some("--jwks-uri"),
        "URL",
        "JWKS location (`jwt` mode). Without it (and without `auth.jwt_public_key` or `auth.hmac_secret`), the JWKS is the `jwks_uri` of the issuer's metadata, fetched at start from `/.well-known/oauth-authorization-server` or `/.well-known/openid-configuration` (path-insertion forms first for an issuer with a path); the document's `issuer` must equal `auth.issuer_url` exactly, and `/readyz` fails, with the reason in the log, until it has been read.",
    ),
    s(
        "auth.jwt_public_key",
        Some("--jwt-public-key"),
        "path",
        "PEM file with a static verification key: RSA, EC P-256/P-384 or Ed25519 (`jwt` mode).",
    ),
    secret(
        "auth.hmac_secret",
        "string",
        "Shared HMAC secret, at least 32 bytes (`jwt` mode, HS256/384/512).",
    ),
    s(
        "auth.algorithms",
        None,
        "list",
        "Accepted JWT algorithms, e.g. `RS256,ES256`. Default: every algorithm that fits the configured key type. The token's header never chooses the key type.",
    ),
    s(
        "auth.audience",
        Some("--audience"),
        "list",
        "Accepted `aud` values. Default: the resource URL `<public_url>/mcp`.",
    ),
    s(
        "auth.required_scopes",
        Some("--required-scopes"),
        "list",
        "Scopes every request needs (comma-separated in flags and environment variables).",
    ),
    s(
        "auth.scopes_supported",
        None,
        "list",
        "Scopes advertised in the metadata. Default: `auth.required_scopes`. `offline_access` is never advertised.",
    ),
    s(
        "auth.scope_map",
        None,
        "table of strings",
        "Scopes clients must request under another name than the one tokens carry: `{ \"api://<app-id>/mcp\" = \"mcp\" }` (Microsoft Entra ID: clients request `api://<app-id>/mcp`, tokens carry `scp: mcp`). Required scopes, policy rules and checks use the name in the token; `scopes_supported` and the `scope` of every challenge use the advertised name.",
    ),
    s(
        "auth.anonymous_methods",
        None,
        "list",
        "Lazy authentication: methods answered without a token — any of `initialize`, `ping`, `server/discover`, `tools/list`, `resources/list`, `resources/templates/list`, `prompts/list`, `logging/setLevel` (their notifications and the client's answers go along). Any other request without a token gets the 401 challenge, naming the scopes it needs. A request with a token that is refused is refused, as always. Anonymous callers count against `http.unauthenticated_per_address`, and the policy sees them as the subject `anonymous` with no scopes. `jwt`, `introspection` and `static` modes.",
    ),
    s(
        "auth.anonymous_tools",
        None,
        "list",
        "Tools (globs) that may be called without a token. A call to another tool without one gets HTTP 401 with the challenge (and the scopes of the policy's step-up rule for that tool, if one applies); its body is a failed tool result carrying the same challenge in `_meta[\"mcp/www_authenticate\"]`, for clients that read results rather than act on the status (ChatGPT, Codex).",
    ),
    s(
        "auth.leeway",
        None,
        "duration",
        "Allowed clock skew when checking `exp` and `nbf`.",
    ),
    s(
        "auth.max_token_bytes",
        None,
        "integer",
        "Largest bearer token accepted; longer ones are refused before any parsing.",
    ),
    s(
        "auth.cache_ttl",
        None,
        "duration",
        "How long a verified token is remembered, never past its `exp`. `0s` disables the cache.",
    ),
    s(
        "auth.jwks_refresh_interval",
        None,
        "duration",
        "Minimum time between JWKS fetches caused by tokens with an unknown `kid`.",
    ),
    s(
        "auth.jwks_max_age",
        None,
        "duration",
        "Age after which JWKS keys are refetched in the background; the old keys serve meanwhile and while the JWKS host is down.",
    ),
    s(
        "auth.introspection_url",
        Some("--introspection-url"),
        "URL",
        "RFC 7662 introspection endpoint (`introspection` mode).",
    ),
    s(
        "auth.introspection_client_id",
        None,
        "string",
        "Client id the gateway uses at the introspection endpoint.",
    ),
    secret(
        "auth.introspection_client_secret",
        "string",
        "Client secret the gateway uses at the introspection endpoint.",
    ),
    s(
        "auth.introspection_auth_method",
        None,
        "`client_secret_basic`, `client_secret_post`",
        "How the gateway authenticates to the introspection endpoint.",
    ),
    s(
        "auth.introspection_timeout",
        None,
        "duration",
        "Timeout of one introspection call; a token that cannot be checked in time is refused (503).",
    ),
    secret(
        "auth.static_tokens",
        "array of tables",
        "Development tokens (`static` mode, needs `dev`): `[{ token = \"…\", subject = \"alice\", scopes = [\"mcp\"], client_id = \"cli\" }]`.",
    ),
    s(
        "auth.issuers",
        None,
        "array of tables",
        "More trusted issuers (`jwt` mode), for a migration between providers or a multi-tenant application: see docs/modes/jwt.md for an Entra ID multi-tenant example (`issuer_url` with `{tenant}`, and `tenants`). Each has its own keys (`jwks_uri`, `jwt_public_key`, or discovered from its metadata when neither is given and it is not a template) and audience (default: `auth.audience`, or the resource URL); a token is checked by the issuer its `iss` names, exactly, and refused when none does. All are advertised in the metadata's `authorization_servers`, with `auth.issuer_url` if set.",
    ),
    secret(
        "session.key",
        "base64, 32 bytes",
        "Key that seals `Mcp-Session-Id` values (owner and upstream session id, encrypted and authenticated). Replicas must share it. Generated at start when absent (sessions then end with the process). Make one with `openssl rand -base64 32`.",
    ),
    s(
        "session.max_age",
        None,
        "duration",
        "Longest life of a session; the client then starts a new one.",
    ),
    s(
        "http.allowed_hosts",
        None,
        "list",
        "Extra accepted `Host` header values (`host` or `host:port`). The public URL's host is always accepted, and loopback names when listening on loopback. Others get 403 (DNS-rebinding protection).",
    ),
    s(
        "http.allowed_origins",
        None,
        "list",
        "Extra accepted `Origin` values (e.g. `https://app.example.com`). The public URL's origin is always accepted; requests without `Origin` are not affected.",
    ),
    s(
        "http.max_body_bytes",
        None,
        "integer",
        "Largest request body accepted (413 beyond).",
    ),
    s(
        "http.max_body_bytes_in_flight",
        None,
        "integer",
        "Bytes of request bodies all requests together may hold at once (bodies arriving on many connections, or many HTTP/2 streams of one); beyond it: 503 with Retry-After.",
    ),
    s(
        "http.header_timeout",
        None,
        "duration",
        "Time for a request's head to arrive, and the longest a kept-alive connection may sit idle; then the connection is closed (slow-header attacks).",
    ),
    s(
        "http.body_timeout",
        None,
        "duration",
        "Time for a whole request body to arrive (408 beyond).",
    ),
    s(
        "http.max_connections",
        None,
        "integer",
        "Most client connections open at once; beyond it new ones get 503 and are closed. Never more than the process's open-file limit allows.",
    ),
    s(
        "http.max_connections_per_address",
        None,
        "integer",
        "Most connections open at once from one client address (see `http.trusted_proxies`); beyond it: 429.",
    ),
    s(
        "http.unauthenticated_per_address",
        None,
        "`N/second`, `N/minute`, `N/hour`, `off`",
        "How often one client address may be refused for missing or invalid credentials (401) before it is answered 429 with Retry-After until its allowance refills.",
    ),
    s(
        "http.trusted_proxies",
        None,
        "list of addresses or CIDR ranges",
        "Reverse proxies in front of the gateway: for a connection from one of them, the client address (for per-address limits and the audit log) is the last `X-Forwarded-For` entry that is not itself a trusted proxy.",
    ),
    s(
        "authorization.default",
        None,
        "`allow`, `deny`",
        "What happens to a tool, resource, template or prompt no `[[policy]]` rule selects. See docs/policy.md for how allow rules, deny rules and the default combine.",
    ),
    s(
        "authorization.on_deny",
        None,
        "`hide`, `challenge`",
        "How a denied client is answered unless a rule says otherwise: `hide` (as if the target did not exist) or `challenge` (403 `insufficient_scope` naming the scopes needed, so the client can step up).",
    ),
    s(
        "authorization.global",
        None,
        "table",
        "Conditions every MCP request must meet: `{ scopes_all = [\"mcp\"], scopes_any = [], when = \"claims.email_verified == true\" }`.",
    ),
    s(
        "authorization.scope_hierarchy",
        None,
        "table",
        "Scopes that include others (transitively): `{ admin = [\"write\"], write = [\"read\"] }`.",
    ),
    s(
        "authorization.validate_arguments",
        None,
        "bool",
        "Check `tools/call` arguments against the tool's `inputSchema` (learnt from `tools/list`) and refuse misfits with JSON-RPC -32602 before the upstream sees them.",
    ),
    s(
        "policy",
        None,
        "array of tables",
        "Authorization rules (`[[policy]]`): `name`, `effect` (`allow`/`deny`), `kind`, `match` (globs), `annotations`, `tags`, `scopes_all`, `scopes_any`, `when` (CEL), `on_deny`. See docs/policy.md.",
    ),
    s(
        "rate_limit",
        None,
        "array of tables",
        "Rate limits (`[[rate_limit]]`): `name`, `kind` (default `[\"tool\"]`), `match` (globs), `per` (`subject`, `client`, `target`, `address`; default `[\"subject\"]`; empty: everyone together), `rate` (`N/second`, `N/minute`, `N/hour`). Default: 100 tool calls per second per subject; `rate_limit = []` turns limits off. Beyond a limit: 429 with Retry-After and a JSON-RPC error. See docs/policy.md.",
    ),
    s(
        "audit.output",
        None,
        "`stdout`, `off`, path",
        "Where the audit log (one JSON line per authorization decision) goes.",
    ),
    s(
        "audit.include",
        None,
        "list",
        "Opt-in fields of audit records: `arguments` (tool-call arguments; off by default, as they may hold personal data).",
    ),
    s(
        "metrics.enabled",
        None,
        "bool",
        "Serve Prometheus metrics at `/metrics` (outside authentication, like `/healthz`).",
    ),
    s("log.format", None, "`text`, `json`", "Log format."),
    s(
        "log.level",
        None,
        "filter",
        "Log filter, e.g. `info` or `mcpgate=debug,info`. `RUST_LOG` overrides it.",
    ),
];

/// Shorter environment variable names the interface contract also accepts.
pub const ENV_ALIASES: &[(&str, &str)] = &[("MCPGATE_UPSTREAM_CMD", "upstream.command")];

/// The environment variable of a key: `MCPGATE_` and the key in upper case with `_` for `.`.
/// Whether `key` (a dotted key, or one inside a secret table such as `upstream.env.API_KEY`)
/// holds a secret, whose value is never printed.
pub fn is_secret(key: &str) -> bool {
    SETTINGS.iter().any(|s| {
        s.secret
            && (key == s.key
                || key
                    .strip_prefix(s.key)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('[')))
    })
}

pub fn env_name(key: &str) -> String {
    format!("MCPGATE_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// A figment provider of the `MCPGATE_*` variables among `env` that name a setting.
pub(super) fn env_provider(env: impl IntoIterator<Item = (String, String)>) -> EnvSettings {
    let mut dict = Dict::new();
    let env: Vec<(String, String)> = env.into_iter().collect();
    for setting in SETTINGS {
        let name = env_name(setting.key);
        let alias = ENV_ALIASES
            .iter()
            .find(|(_, key)| *key == setting.key)
            .map(|(alias, _)| *alias);
        let found = env
            .iter()
            .find(|(k, _)| *k == name)
            .or_else(|| alias.and_then(|alias| env.iter().find(|(k, _)| k == alias)));
        if let Some((_, raw)) = found {
            // Plain secrets stay exactly as written (`0123` must not become the number 123);
            // everything else is typed (numbers, booleans, lists, inline tables).
            let value: Value = if setting.secret && !setting.kind.contains("table") {
                Value::from(raw.clone())
            } else {
                raw.parse().expect("parsing a figment value is infallible")
            };
            let nested = figment::util::nest(setting.key, value);
            if let Value::Dict(_, d) = nested {
                dict = merge(dict, d);
            }
        }
    }
    EnvSettings(dict)
}

fn merge(mut a: Dict, b: Dict) -> Dict {
    for (k, v) in b {
        match (a.remove(&k), v) {
            (Some(Value::Dict(t, x)), Value::Dict(_, y)) => {
                a.insert(k, Value::Dict(t, merge(x, y)));
            }
            (_, v) => {
                a.insert(k, v);
            }
        }
    }
    a
}

pub(super) struct EnvSettings(Dict);

impl Provider for EnvSettings {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable").interpolater(|_, keys| env_name(&keys.join(".")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

fn default_of(key: &str) -> String {
    let defaults = serde_json::to_value(Config::default()).expect("defaults serialize");
    let mut value = &defaults;
    for part in key.split('.') {
        value = &value[part];
    }
    match value {
        serde_json::Value::Null => "(none)".into(),
        serde_json::Value::String(s) => format!("`{s}`"),
        serde_json::Value::Array(a) if a.is_empty() => "(empty)".into(),
        serde_json::Value::Object(o) if o.is_empty() => "(empty)".into(),
        other => format!("`{other}`"),
    }
}

fn toml_default(key: &str) -> String {
    let defaults = serde_json::to_value(Config::default()).expect("defaults serialize");
    let mut value = &defaults;
    for part in key.split('.') {
        value = &value[part];
    }
    match value {
        serde_json::Value::Null => "\"\"".into(),
        other => inline_toml(other),
    }
}

/// A value in TOML's inline syntax (null members left out).
fn inline_toml(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(o) => {
            let members: Vec<String> = o
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{k} = {}", inline_toml(v)))
                .collect();
            if members.is_empty() {
                "{}".into()
            } else {
                format!("{{ {} }}", members.join(", "))
            }
        }
        serde_json::Value::Array(a) => {
            format!(
                "[{}]",
                a.iter().map(inline_toml).collect::<Vec<_>>().join(", ")
            )
        }
        other => other.to_string(),
    }
}

/// `docs/configuration.md`.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         <!-- Generated from crates/gateway/src/config/settings.rs; a test keeps it in step. \
         Regenerate with `MCPGATE_BLESS=1 cargo test -p mcpgate config_files`. -->\n\n\
         mcpgate reads its settings from, in increasing precedence: built-in defaults, the \
         configuration file (`mcpgate.toml` in the working directory, or `--config FILE`), \
         `MCPGATE_*` environment variables, and command-line flags. Every value is checked at \
         start; `mcpgate check-config` prints the effective configuration (secrets masked) \
         and exits non-zero naming each key that is wrong.\n\n\
         Durations are written `30s`, `5m`, `1h` (or a number of seconds). Lists are TOML \
         arrays in the file and comma-separated in flags and environment variables.\n\n\
         | key | environment | flag | default | |\n|---|---|---|---|---|\n",
    );
    for setting in SETTINGS {
        let flag = setting.flag.map(|f| format!("`{f}`")).unwrap_or_default();
        let secret = if setting.secret {
            " **Secret**: masked when printed."
        } else {
            ""
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} ({}).{} |\n",
            setting.key,
            env_name(setting.key),
            flag,
            default_of(setting.key),
            setting.doc.trim_end_matches('.'),
            setting.kind,
            secret
        ));
    }
    out
}

/// `mcpgate.example.toml`: every setting, commented out at its default.
pub fn toml_example() -> String {
    let mut out = String::from(
        "# mcpgate.example.toml: every setting with its default, commented out.\n\
         # Generated from crates/gateway/src/config/settings.rs (see docs/configuration.md).\n\
         # Copy to mcpgate.toml and uncomment what you change.\n",
    );
    let mut tables: Vec<&str> = Vec::new();
    for setting in SETTINGS {
        let table = setting.key.rsplit_once('.').map_or("", |(t, _)| t);
        if !tables.contains(&table) {
            tables.push(table);
        }
    }
    for table in tables {
        if !table.is_empty() {
            out.push_str(&format!("\n[{table}]\n"));
        }
        for setting in SETTINGS
            .iter()
            .filter(|s| s.key.rsplit_once('.').map_or("", |(t, _)| t) == table)
        {
            let name = setting.key.rsplit('.').next().unwrap_or(setting.key);
            out.push('\n');
            for line in wrap(setting.doc, 96) {
                out.push_str(&format!("# {line}\n"));
            }
            out.push_str(&format!("# {name} = {}\n", toml_default(setting.key)));
        }
    }
    out
}

/// `.env.example`: every setting as an environment variable.
pub fn env_example() -> String {
    let mut out = String::from(
        "# .env.example: every mcpgate setting as an environment variable, commented out.\n\
         # Generated from crates/gateway/src/config/settings.rs (see docs/configuration.md).\n\
         # Lists are comma-separated; tables and arrays of tables use TOML inline syntax.\n",
    );
    for setting in SETTINGS {
        out.push('\n');
        for line in wrap(setting.doc, 96) {
            out.push_str(&format!("# {line}\n"));
        }
        let default = toml_default(setting.key);
        let default = default.trim_matches('"');
        let default = if default == "[]" { "" } else { default };
        out.push_str(&format!("# {}={}\n", env_name(setting.key), default));
    }
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_owned());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) if SETTINGS.iter().all(|s| s.key != prefix) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&key, v, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }

    #[test]
    fn every_config_field_has_exactly_one_setting() {
        let mut keys = Vec::new();
        leaves(
            "",
            &serde_json::to_value(Config::default()).unwrap(),
            &mut keys,
        );
        let table: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        for key in &keys {
            assert!(
                table.contains(&key.as_str()),
                "config field `{key}` has no entry in SETTINGS"
            );
        }
        for key in &table {
            assert!(
                keys.iter().any(|k| k == key),
                "SETTINGS entry `{key}` is not a config field"
            );
            assert_eq!(
                table.iter().filter(|k| *k == key).count(),
                1,
                "`{key}` is listed twice"
            );
        }
    }

    #[test]
    fn env_names_follow_the_interface_contract() {
        assert_eq!(env_name("auth.issuer_url"), "MCPGATE_AUTH_ISSUER_URL");
        assert_eq!(env_name("auth.mode"), "MCPGATE_AUTH_MODE");
        assert_eq!(env_name("upstream.url"), "MCPGATE_UPSTREAM_URL");
        assert_eq!(env_name("dev"), "MCPGATE_DEV");
    }

    /// docs/configuration.md, mcpgate.example.toml and .env.example are generated from the
    /// table; this keeps the committed copies in step (`MCPGATE_BLESS=1` rewrites them).
    #[test]
    fn config_files_match_the_settings_table() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let files = [
            (root.join("docs/configuration.md"), reference_markdown()),
            (root.join("mcpgate.example.toml"), toml_example()),
            (root.join(".env.example"), env_example()),
        ];
        for (path, expected) in files {
            if std::env::var_os("MCPGATE_BLESS").is_some() {
                std::fs::write(&path, &expected).unwrap();
                continue;
            }
            let actual = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                actual == expected,
                "{} is out of date: run `MCPGATE_BLESS=1 cargo test -p mcpgate config_files`",
                path.display()
            );
        }
    }

    #[test]
    fn example_toml_parses_into_the_default_config() {
        // Uncomment every setting that has a default value: the keys must sit in the right
        // tables and the defaults must read back.
        let uncommented: String = toml_example()
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.contains(" = ")
                        && !rest.ends_with(" = \"\"")
                        && rest.split(' ').next().is_some_and(|k| {
                            k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        }) =>
                {
                    rest.to_owned()
                }
                _ => line.to_owned(),
            })
            .map(|l| l + "\n")
            .collect();
        let figment =
            figment::Figment::from(figment::providers::Serialized::defaults(Config::default()))
                .merge(
                    <figment::providers::Toml as figment::providers::Format>::string(&uncommented),
                );
        figment
            .extract::<Config>()
            .expect("the example file is valid");
    }

    #[test]
    fn secrets_are_marked() {
        for key in [
            "auth.hmac_secret",
            "auth.introspection_client_secret",
            "session.key",
            "auth.static_tokens",
            "upstream.headers",
        ] {
            assert!(
                SETTINGS.iter().any(|s| s.key == key && s.secret),
                "{key} must be secret"
            );
        }
    }
}
