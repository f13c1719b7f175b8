//! Configuration: one typed struct, read from defaults, `mcpgate.toml`, `MCPGATE_*`
//! environment variables and command-line flags (each overriding the one before), and
//! validated once at start-up with errors that name the key and what is wrong with it.

mod settings;
mod values;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use url::Url;

pub use settings::{env_example, reference_markdown, toml_example};
pub use values::Secret;

/// How clients are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No authentication (loopback only).
    None,
    /// Require a bearer header and forward it unchanged; the upstream validates it.
    Passthrough,
    /// Fixed development tokens (needs `dev`).
    Static,
    /// JWT access tokens (JWKS, PEM key or HMAC secret).
    Jwt,
    /// RFC 7662 introspection.
    Introspection,
    /// The built-in authorization server (not in this release).
    Issuer,
}

impl AuthMode {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Passthrough => "passthrough",
            AuthMode::Static => "static",
            AuthMode::Jwt => "jwt",
            AuthMode::Introspection => "introspection",
            AuthMode::Issuer => "issuer",
        }
    }
}

/// How the gateway authenticates to the introspection endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntrospectionAuthMethod {
    /// HTTP Basic (`client_secret_basic`).
    ClientSecretBasic,
    /// In the form body (`client_secret_post`).
    ClientSecretPost,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to bind.
    pub listen: SocketAddr,
    /// The URL clients use; the protected resource is `<public_url>/mcp`.
    pub public_url: Option<Url>,
    /// Where the embedded store and keys live.
    pub data_dir: PathBuf,
    /// Allow development-only settings.
    pub dev: bool,
    /// The MCP server behind the gateway.
    pub upstream: UpstreamConfig,
    /// Client authentication.
    pub auth: AuthConfig,
    /// `Mcp-Session-Id` sealing.
    pub session: SessionConfig,
    /// Downstream HTTP limits and checks.
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
    /// What no rule decides: the default, the global conditions, scope hierarchy.
    pub authorization: mcpgate_guard::policy::AuthorizationConfig,
    /// `[[policy]]` rules.
    pub policy: Vec<mcpgate_guard::policy::RuleConfig>,
    /// `[[rate_limit]]` rules (default: 100 tool calls per second per subject; `[]` for none).
    pub rate_limit: Vec<crate::ratelimit::RateLimitConfig>,
    /// The audit log.
    pub audit: AuditConfig,
    /// `/metrics`.
    pub metrics: MetricsConfig,
}

/// The audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// `stdout`, `off`, or a file to append to.
    pub output: String,
    /// Opt-in fields: `arguments` (tool-call arguments).
    #[serde(deserialize_with = "values::list::deserialize")]
    pub include: Vec<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            output: "stdout".into(),
            include: Vec::new(),
        }
    }
}

/// `/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve Prometheus metrics at `/metrics`.
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true }
    }
}

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

/// Client authentication.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The mode.
    pub mode: AuthMode,
    /// Authorization server issuer: advertised in metadata, checked as `iss`.
    pub issuer_url: Option<String>,
    /// Authorization servers advertised in the metadata (default: `issuer_url`).
    #[serde(deserialize_with = "values::list::deserialize")]
    pub authorization_servers: Vec<String>,
    /// JWKS location (`jwt` mode).
    pub jwks_uri: Option<Url>,
    /// PEM file with a static verification key (`jwt` mode).
    pub jwt_public_key: Option<PathBuf>,
    /// HMAC secret (`jwt` mode, HS256/384/512).
    pub hmac_secret: Option<Secret>,
    /// Accepted JWT algorithms (default: all that fit the key).
    #[serde(deserialize_with = "values::list::deserialize")]
    pub algorithms: Vec<String>,
    /// Accepted audiences (default: the resource URL).
    #[serde(deserialize_with = "values::list::deserialize")]
    pub audience: Vec<String>,
    /// Scopes every request needs.
    #[serde(deserialize_with = "values::list::deserialize")]
    pub required_scopes: Vec<String>,
    /// Scopes advertised in the metadata (default: `required_scopes`).
    #[serde(deserialize_with = "values::opt_list::deserialize")]
    pub scopes_supported: Option<Vec<String>>,
    /// Advertised scope name → the name tokens carry (what is checked).
    pub scope_map: BTreeMap<String, String>,
    /// Methods allowed without a token (lazy authentication).
    #[serde(deserialize_with = "values::list::deserialize")]
    pub anonymous_methods: Vec<String>,
    /// Tools (globs) that may be called without a token.
    #[serde(deserialize_with = "values::list::deserialize")]
    pub anonymous_tools: Vec<String>,
    /// Allowed clock skew for `exp` and `nbf`.
    #[serde(with = "values::duration")]
    pub leeway: Duration,
    /// Largest bearer token accepted, in bytes.
    pub max_token_bytes: usize,
    /// How long a verified token is remembered (never past its `exp`); 0 disables.
    #[serde(with = "values::duration")]
    pub cache_ttl: Duration,
    /// Minimum time between JWKS fetches caused by unknown `kid`s.
    #[serde(with = "values::duration")]
    pub jwks_refresh_interval: Duration,
    /// Age after which JWKS keys are refetched in the background.
    #[serde(with = "values::duration")]
    pub jwks_max_age: Duration,
    /// RFC 7662 endpoint (`introspection` mode).
    pub introspection_url: Option<Url>,
    /// Client id for the introspection endpoint.
    pub introspection_client_id: Option<String>,
    /// Client secret for the introspection endpoint.
    pub introspection_client_secret: Option<Secret>,
    /// How to authenticate to the introspection endpoint.
    pub introspection_auth_method: IntrospectionAuthMethod,
    /// Timeout of one introspection call; the request is refused when it passes.
    #[serde(with = "values::duration")]
    pub introspection_timeout: Duration,
    /// Development tokens (`static` mode).
    pub static_tokens: Vec<StaticTokenConfig>,
    /// More trusted issuers (`jwt` mode), each with its own keys and audience.
    pub issuers: Vec<IssuerConfig>,
}

/// One more trusted issuer (`[[auth.issuers]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Its issuer identifier, as in `iss`; with `{tenant}` for a multi-tenant issuer.
    pub issuer_url: String,
    /// The tenants a `{tenant}` template accepts.
    #[serde(default, deserialize_with = "values::list::deserialize")]
    pub tenants: Vec<String>,
    /// Its JWKS (default: discovered from its metadata).
    #[serde(default)]
    pub jwks_uri: Option<Url>,
    /// A PEM public key instead of a JWKS.
    #[serde(default)]
    pub jwt_public_key: Option<PathBuf>,
    /// Accepted `aud` values (default: `auth.audience`, or the resource URL).
    #[serde(default, deserialize_with = "values::list::deserialize")]
    pub audience: Vec<String>,
}

/// One development token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticTokenConfig {
    /// The token.
    pub token: Secret,
    /// Who it speaks for.
    pub subject: String,
    /// Its client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Its scopes.
    #[serde(default, deserialize_with = "values::list::deserialize")]
    pub scopes: Vec<String>,
}

/// `Mcp-Session-Id` sealing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// 32-byte key, base64; shared by replicas. Generated at start when absent.
    pub key: Option<Secret>,
    /// Longest life of a session.
    #[serde(with = "values::duration")]
    pub max_age: Duration,
}

/// Downstream HTTP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Extra accepted `Host` values (the public URL's host is always accepted).
    #[serde(deserialize_with = "values::list::deserialize")]
    pub allowed_hosts: Vec<String>,
    /// Extra accepted `Origin` values (the public URL's origin is always accepted).
    #[serde(deserialize_with = "values::list::deserialize")]
    pub allowed_origins: Vec<String>,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Bytes of request bodies held at once by all requests together.
    pub max_body_bytes_in_flight: usize,
    /// Time for a request head to arrive (and most time a kept-alive connection may sit idle).
    #[serde(with = "values::duration")]
    pub header_timeout: Duration,
    /// Time for a whole request body to arrive.
    #[serde(with = "values::duration")]
    pub body_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one client address.
    pub max_connections_per_address: usize,
    /// How often one address may be refused for lack of valid credentials (`N/minute`, or
    /// `off`) before it is answered 429 until the allowance refills.
    pub unauthenticated_per_address: String,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client
    /// address for per-address limits.
    #[serde(deserialize_with = "values::list::deserialize")]
    pub trusted_proxies: Vec<String>,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `mcpgate=debug,info`.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            data_dir: PathBuf::from("./mcpgate-data"),
            dev: false,
            upstream: UpstreamConfig::default(),
            auth: AuthConfig::default(),
            session: SessionConfig::default(),
            http: HttpConfig::default(),
            log: LogConfig::default(),
            authorization: Default::default(),
            policy: Vec::new(),
            rate_limit: crate::ratelimit::default_rules(),
            audit: AuditConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
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

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Jwt,
            issuer_url: None,
            authorization_servers: Vec::new(),
            jwks_uri: None,
            jwt_public_key: None,
            hmac_secret: None,
            algorithms: Vec::new(),
            audience: Vec::new(),
            required_scopes: Vec::new(),
            scopes_supported: None,
            scope_map: BTreeMap::new(),
            anonymous_methods: Vec::new(),
            anonymous_tools: Vec::new(),
            leeway: Duration::from_secs(30),
            max_token_bytes: mcpgate_guard::DEFAULT_MAX_TOKEN_BYTES,
            cache_ttl: Duration::from_secs(300),
            jwks_refresh_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(600),
            introspection_url: None,
            introspection_client_id: None,
            introspection_client_secret: None,
            introspection_auth_method: IntrospectionAuthMethod::ClientSecretBasic,
            introspection_timeout: Duration::from_secs(5),
            static_tokens: Vec::new(),
            issuers: Vec::new(),
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            key: None,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            max_body_bytes_in_flight: 256 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connections_per_address: 64,
            unauthenticated_per_address: "120/minute".into(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// A configuration problem: which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key, e.g. `auth.jwks_uri`.
    pub key: String,
    /// What is wrong with it and how to fix it.
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(key: &str, problem: impl Into<String>) -> Self {
        ConfigError {
            key: key.to_owned(),
            problem: problem.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// A file, variable or flag could not be read into the struct.
    Parse(Box<figment::Error>),
    /// Values were read but do not make a usable configuration.
    Invalid(Vec<ConfigError>),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Parse(e) => {
                for (i, err) in e.clone().into_iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    let key = err.path.join(".");
                    let source = err.metadata.as_ref().map(|m| m.name.to_string());
                    let origin = match (&err.metadata, source) {
                        (Some(m), _) if m.name.contains("environment") => {
                            format!(" (from environment variable {})", settings::env_name(&key))
                        }
                        (Some(m), Some(_)) => match &m.source {
                            Some(src) => format!(" (from {src})"),
                            None => format!(" (from {})", m.name),
                        },
                        _ => String::new(),
                    };
                    let what = describe_kind(&err.kind, settings::is_secret(&key));
                    let key = if key.is_empty() {
                        "configuration".to_owned()
                    } else {
                        key
                    };
                    write!(f, "{key}: {what}{origin}")?;
                }
                Ok(())
            }
            LoadError::Invalid(errors) => {
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}

/// What went wrong reading a value, without the value when it is a secret's, and without the
/// quoted line of a file that does not parse (it may hold a secret).
fn describe_kind(kind: &figment::error::Kind, secret: bool) -> String {
    use figment::error::{Actual, Kind};
    let shape = |a: &Actual| -> String {
        match a {
            Actual::Str(_) | Actual::Char(_) => "a string".into(),
            Actual::Bytes(_) => "bytes".into(),
            Actual::Bool(_) => "a boolean".into(),
            Actual::Unsigned(_) | Actual::Signed(_) => "an integer".into(),
            Actual::Float(_) => "a number".into(),
            Actual::Seq => "a list".into(),
            Actual::Map => "a table".into(),
            other => format!("{other}"),
        }
    };
    match kind {
        Kind::InvalidType(actual, expected) if secret => {
            format!(
                "invalid type: found {}, expected {expected} (the value is secret: not shown)",
                shape(actual)
            )
        }
        Kind::InvalidValue(actual, expected) if secret => {
            format!(
                "invalid value: found {}, expected {expected} (the value is secret: not shown)",
                shape(actual)
            )
        }
        Kind::Message(text) => {
            // A TOML syntax error quotes the offending line: keep its position and reason only.
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| {
                    !l.is_empty()
                        && !l.starts_with('|')
                        && !l.chars().next().is_some_and(|c| c.is_ascii_digit())
                        && !l.starts_with('^')
                })
                .collect();
            if lines.len() > 1 || text.contains('|') {
                lines.join(": ")
            } else if secret {
                "invalid value (the value is secret: not shown)".into()
            } else {
                text.clone()
            }
        }
        other if secret => {
            let text = other.to_string();
            match text.find(['"', '`']) {
                Some(i) => format!("{}(the value is secret: not shown)", &text[..i]),
                None => text,
            }
        }
        other => other.to_string(),
    }
}

/// Settings given on the command line, as dotted keys and values.
pub type Overrides = Vec<(&'static str, figment::value::Value)>;

impl Config {
    /// Reads the configuration: defaults < `file` (or `./mcpgate.toml` if it exists) <
    /// `MCPGATE_*` variables < `overrides`, then validates it.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Config, LoadError> {
        if let Some(path) = file
            && !path.is_file()
        {
            let problem = format!("file `{}` does not exist or is not a file", path.display());
            return Err(LoadError::Invalid(vec![ConfigError::new(
                "config", problem,
            )]));
        }
        let config = Self::figment(file, overrides, std::env::vars())
            .extract::<Config>()
            .map_err(|e| LoadError::Parse(Box::new(e)))?;
        config.validate().map_err(LoadError::Invalid)?;
        Ok(config)
    }

    /// Reads the configuration as [`Config::load`] does, without checking it as a whole (for
    /// commands that use one part of it, such as `policy explain`).
    pub fn load_unchecked(file: Option<&Path>, overrides: Overrides) -> Result<Config, LoadError> {
        if let Some(path) = file
            && !path.is_file()
        {
            let problem = format!("file `{}` does not exist or is not a file", path.display());
            return Err(LoadError::Invalid(vec![ConfigError::new(
                "config", problem,
            )]));
        }
        Self::figment(file, overrides, std::env::vars())
            .extract::<Config>()
            .map_err(|e| LoadError::Parse(Box::new(e)))
    }

    /// Reads a configuration from TOML text alone (no file, no environment), then validates
    /// it: what `check-config` says of a file with this text.
    pub fn from_toml_str(text: &str) -> Result<Config, LoadError> {
        let config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract::<Config>()
            .map_err(|e| LoadError::Parse(Box::new(e)))?;
        config.validate().map_err(LoadError::Invalid)?;
        Ok(config)
    }

    /// The layered sources, with environment variables taken from `env` (for tests).
    pub fn figment(
        file: Option<&Path>,
        overrides: Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            // The default file is optional.
            None if Path::new("mcpgate.toml").is_file() => {
                figment = figment.merge(Toml::file_exact("mcpgate.toml"))
            }
            None => {}
        }
        figment = figment.merge(settings::env_provider(env));
        for (key, value) in overrides {
            figment = figment.merge(Serialized::default(key, value));
        }
        figment
    }

    /// The public URL: `public_url`, or `http://<listen>`.
    pub fn public_url(&self) -> Url {
        match &self.public_url {
            Some(url) => url.clone(),
            None => Url::parse(&format!("http://{}", self.listen))
                .expect("a socket address makes a URL"),
        }
    }

    /// Checks everything that can be checked without touching the network.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        validate::check(self)
    }
}

mod validate;

pub(crate) use validate::{algorithms as validate_algorithms, interpolate, session_key};

#[cfg(test)]
mod tests {
    use super::*;
    use figment::value::Value;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn extract(
        file: Option<&str>,
        overrides: Overrides,
        vars: &[(&str, &str)],
    ) -> Result<Config, LoadError> {
        let dir = std::env::temp_dir().join(format!(
            "mcpgate-cfg-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mcpgate.toml");
        std::fs::write(&path, file.unwrap_or("")).unwrap();
        let result = Config::figment(Some(&path), overrides, env(vars))
            .extract::<Config>()
            .map_err(|e| LoadError::Parse(Box::new(e)));
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::SeqCst)
    }

    #[test]
    fn flag_beats_environment_beats_file_beats_default() {
        let file =
            "listen = \"127.0.0.1:1000\"\n[auth]\nmode = \"none\"\nissuer_url = \"https://file\"\n";
        let c = extract(Some(file), vec![], &[]).unwrap();
        assert_eq!(c.listen.port(), 1000);
        let c = extract(
            Some(file),
            vec![],
            &[
                ("MCPGATE_LISTEN", "127.0.0.1:2000"),
                ("MCPGATE_AUTH_ISSUER_URL", "https://env"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 2000);
        assert_eq!(c.auth.issuer_url.as_deref(), Some("https://env"));
        let c = extract(
            Some(file),
            vec![("listen", Value::from("127.0.0.1:3000"))],
            &[("MCPGATE_LISTEN", "127.0.0.1:2000")],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 3000);
        assert_eq!(c.auth.mode, AuthMode::None);
        let c = extract(None, vec![], &[]).unwrap();
        assert_eq!(c.listen.port(), 8080);
    }

    #[test]
    fn comma_separated_lists_and_durations_from_the_environment() {
        let c = extract(
            None,
            vec![],
            &[
                ("MCPGATE_AUTH_REQUIRED_SCOPES", "mcp:read, mcp:write"),
                ("MCPGATE_AUTH_LEEWAY", "45s"),
                ("MCPGATE_UPSTREAM_TIMEOUT", "10"),
            ],
        )
        .unwrap();
        assert_eq!(c.auth.required_scopes, ["mcp:read", "mcp:write"]);
        assert_eq!(c.auth.leeway, std::time::Duration::from_secs(45));
        assert_eq!(c.upstream.timeout, std::time::Duration::from_secs(10));
    }

    #[test]
    fn static_tokens_and_headers_from_the_environment() {
        let c = extract(
            None,
            vec![],
            &[
                (
                    "MCPGATE_AUTH_STATIC_TOKENS",
                    r#"[{token="abc", subject="alice", scopes=["mcp"]}]"#,
                ),
                ("MCPGATE_UPSTREAM_HEADERS", r#"{X-Api-Key="k"}"#),
            ],
        )
        .unwrap();
        assert_eq!(c.auth.static_tokens[0].subject, "alice");
        assert_eq!(c.auth.static_tokens[0].token.expose(), "abc");
        assert_eq!(c.upstream.headers["X-Api-Key"].expose(), "k");
    }

    #[test]
    fn secrets_from_the_environment_are_kept_verbatim() {
        let c = extract(
            None,
            vec![],
            &[
                (
                    "MCPGATE_AUTH_HMAC_SECRET",
                    "0123456789012345678901234567890123",
                ),
                ("MCPGATE_AUTH_INTROSPECTION_CLIENT_SECRET", "true"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.auth.hmac_secret.unwrap().expose(),
            "0123456789012345678901234567890123"
        );
        assert_eq!(c.auth.introspection_client_secret.unwrap().expose(), "true");
    }

    #[test]
    fn bad_value_names_the_key_and_the_variable() {
        let err = extract(None, vec![], &[("MCPGATE_AUTH_MODE", "magic")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.mode"), "{err}");
        assert!(err.contains("MCPGATE_AUTH_MODE"), "{err}");
        let err = extract(None, vec![], &[("MCPGATE_AUTH_LEEWAY", "soon")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("auth.leeway") && err.contains("not a duration"),
            "{err}"
        );
    }

    #[test]
    fn unknown_file_key_is_an_error_naming_it() {
        let err = extract(Some("[auth]\nmod = \"jwt\"\n"), vec![], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("mod"), "{err}");
    }

    fn valid_jwt() -> Config {
        let mut c = Config::default();
        c.upstream.url = Some("http://127.0.0.1:3000/mcp".parse().unwrap());
        c.auth.issuer_url = Some("https://idp.example".into());
        c.auth.jwks_uri = Some("https://idp.example/jwks".parse().unwrap());
        c
    }

    fn problems(c: &Config) -> Vec<String> {
        c.validate()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.key)
            .collect()
    }

    #[test]
    fn valid_jwt_config_passes() {
        assert_eq!(problems(&valid_jwt()), Vec::<String>::new());
    }

    #[test]
    fn jwt_without_issuer_is_named() {
        let mut c = valid_jwt();
        c.auth.issuer_url = None;
        c.auth.jwks_uri = None;
        assert_eq!(problems(&c), ["auth.issuer_url"]);
    }

    #[test]
    fn jwt_with_an_issuer_alone_discovers_its_keys_if_the_issuer_can_be_looked_up() {
        let mut c = valid_jwt();
        c.auth.jwks_uri = None;
        assert!(problems(&c).is_empty());
        c.auth.issuer_url = Some("https://idp.example/?tenant=x".into());
        assert_eq!(problems(&c), ["auth.issuer_url"]);
    }

    #[test]
    fn none_mode_on_a_public_address_is_refused() {
        let mut c = valid_jwt();
        c.auth.mode = AuthMode::None;
        c.listen = "0.0.0.0:8080".parse().unwrap();
        c.public_url = Some("https://mcp.example.com".parse().unwrap());
        assert_eq!(problems(&c), ["auth.mode"]);
    }

    #[test]
    fn static_mode_needs_dev() {
        let mut c = valid_jwt();
        c.auth.mode = AuthMode::Static;
        c.auth.static_tokens = vec![StaticTokenConfig {
            token: Secret::new("t"),
            subject: "a".into(),
            client_id: None,
            scopes: vec![],
        }];
        assert_eq!(problems(&c), ["auth.mode"]);
        c.dev = true;
        assert!(problems(&c).is_empty());
    }

    #[test]
    fn public_listen_needs_a_public_url() {
        let mut c = valid_jwt();
        c.listen = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(problems(&c), ["public_url"]);
    }

    #[test]
    fn short_hmac_secret_and_bad_session_key_are_named() {
        let mut c = valid_jwt();
        c.auth.jwks_uri = None;
        c.auth.hmac_secret = Some(Secret::new("short"));
        c.session.key = Some(Secret::new("not-32-bytes"));
        assert_eq!(problems(&c), ["auth.hmac_secret", "session.key"]);
    }

    #[test]
    fn identity_header_cannot_also_be_forwarded_from_the_client() {
        let mut c = valid_jwt();
        c.upstream.identity_headers.subject = Some("X-User".into());
        c.upstream.forward_headers = vec!["x-user".into()];
        assert_eq!(problems(&c), ["upstream.identity_headers.subject"]);
    }

    #[test]
    fn header_value_referring_to_a_missing_variable_is_named() {
        let mut c = valid_jwt();
        c.upstream.headers.insert(
            "X-Key".into(),
            Secret::new("${MCPGATE_SURELY_UNSET_VARIABLE}"),
        );
        assert_eq!(problems(&c), ["upstream.headers.X-Key"]);
    }

    #[test]
    fn secrets_never_print() {
        let mut c = valid_jwt();
        c.auth.hmac_secret = Some(Secret::new("super-secret-value-super-secret-value"));
        c.upstream
            .headers
            .insert("X-Key".into(), Secret::new("header-secret"));
        let printed = toml::to_string(&c).unwrap() + &format!("{c:?}");
        assert!(
            !printed.contains("super-secret") && !printed.contains("header-secret"),
            "{printed}"
        );
    }
}
