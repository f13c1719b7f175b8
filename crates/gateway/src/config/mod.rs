//! Configuration: one typed struct, read from defaults, `mcpgate.toml`, `MCPGATE_*`
//! environment variables and command-line flags (each overriding the one before), then built
//! once into a [`Plan`] of typed runtime values — header names, compiled policy, keys read,
//! durations, the upstream as HTTP or stdio — with every problem named by its key. Once a plan
//! exists nothing is parsed again.
//!
//! One file per section holds its struct, its defaults, its rows of the settings table and
//! the step that builds it: [`upstream`], [`auth`], [`session`], [`http`], [`policy`],
//! [`audit`], [`log`]. The top-level keys (`listen`, `public_url`, `data_dir`, `dev`) are here.

pub mod audit;
pub mod auth;
pub mod http;
pub mod issuer;
pub mod log;
pub mod policy;
pub mod session;
mod settings;
pub mod upstream;
mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use url::Url;

pub use audit::{AuditConfig, AuditPlan};
pub use auth::{
    AuthConfig, AuthMode, AuthPlan, IntrospectionAuthMethod, IssuerConfig, StaticTokenConfig,
};
pub use http::{HttpConfig, HttpPlan};
pub use issuer::{AuthorizationServerConfig, IssuerPlan};
pub use log::{LogConfig, LogFormat, LogPlan, MetricsConfig};
pub use policy::PolicyPlan;
pub use session::{SessionConfig, SessionPlan, decode_key};
use settings::{Setting, s};
pub use settings::{env_example, reference_markdown, toml_example};
pub use upstream::{
    DEFAULT_INHERITED_ENV, IdentityHeaders, StdioSessionMode, Target, UpstreamConfig, UpstreamPlan,
};
pub use values::Secret;

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
    /// Development, `issuer` mode: a fixed user is signed in and every request approved.
    pub dev_auto_approve: bool,
    /// Development: metadata documents and discovery may be fetched from loopback over http.
    pub dev_allow_loopback_fetch: bool,
    /// The MCP server behind the gateway.
    pub upstream: UpstreamConfig,
    /// Client authentication.
    pub auth: AuthConfig,
    /// The built-in authorization server (`issuer` mode).
    pub issuer: AuthorizationServerConfig,
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

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            data_dir: PathBuf::from("./mcpgate-data"),
            dev: false,
            dev_auto_approve: false,
            dev_allow_loopback_fetch: false,
            upstream: UpstreamConfig::default(),
            auth: AuthConfig::default(),
            issuer: AuthorizationServerConfig::default(),
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

/// The top-level settings.
const SETTINGS: &[Setting] = &[
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
        "Allow development-only settings (static tokens, `dev_auto_approve`, `dev_allow_loopback_fetch`). Prints a loud warning at start.",
    ),
    s(
        "dev_auto_approve",
        Some("--dev-auto-approve"),
        "bool",
        "`issuer` mode, with `dev` and a loopback listener only: a fixed local user (`dev-user`) is signed in and every authorization request approved at once, so that clients which open a browser complete the flow with a `BROWSER` that merely follows redirects (scripts, CI). PKCE, redirect URI checks, resource binding and the fetch rules stay enforced.",
    ),
    s(
        "dev_allow_loopback_fetch",
        Some("--dev-allow-loopback-fetch"),
        "bool",
        "With `dev` and a loopback listener only: client metadata documents may be fetched from loopback addresses over http (tests that serve their own documents). `dev` alone never relaxes the fetch rules.",
    ),
];

/// A configuration built: everything the gateway needs to run, typed and checked. Made by
/// [`Plan::build`] (or [`Config::load`] then `build`); nothing in it is parsed again.
pub struct Plan {
    /// Address to bind.
    pub listen: SocketAddr,
    /// The URL clients use.
    pub public_url: Url,
    /// Where the embedded store and keys live.
    pub data_dir: PathBuf,
    /// Development-only settings allowed.
    pub dev: bool,
    /// The upstream.
    pub upstream: UpstreamPlan,
    /// Authentication.
    pub auth: AuthPlan,
    /// The built-in authorization server, in `issuer` mode.
    pub issuer: Option<IssuerPlan>,
    /// Authorization: policy, lists, rate limits.
    pub policy: PolicyPlan,
    /// The audit log.
    pub audit: AuditPlan,
    /// Session sealing.
    pub session: SessionPlan,
    /// Downstream HTTP.
    pub http: HttpPlan,
    /// Logging and metrics.
    pub log: LogPlan,
}

impl Plan {
    /// Builds every section of `config`, reporting every problem at once.
    pub fn build(config: &Config) -> Result<Plan, Vec<ConfigError>> {
        let mut p = Problems::default();
        check_top(config, &mut p);
        let upstream = upstream::build(config, &mut p);
        let auth = auth::build(config, &mut p);
        let issuer = issuer::build(config, &mut p);
        let policy = policy::build(config, &mut p);
        let audit = audit::build(config, &mut p);
        let session = session::build(config, &mut p);
        let http = http::build(config, &mut p);
        let log = log::build(config, &mut p);
        match (upstream, auth, issuer, policy, audit, session, http, log) {
            (
                Some(upstream),
                Some(auth),
                Some(issuer),
                Some(policy),
                Some(audit),
                Some(session),
                Some(http),
                Some(log),
            ) if p.is_empty() => Ok(Plan {
                listen: config.listen,
                public_url: config.public_url(),
                data_dir: config.data_dir.clone(),
                dev: config.dev,
                upstream,
                auth,
                issuer,
                policy,
                audit,
                session,
                http,
                log,
            }),
            _ => Err(p.into_errors()),
        }
    }

    /// Things that are allowed but deserve a word at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.dev {
            out.push("DEVELOPMENT MODE (dev = true): development-only settings are allowed. Never run this in production.".into());
        }
        match self.auth.mode {
            AuthMode::None => out.push("auth.mode = none: every request is let through without authentication (loopback only).".into()),
            AuthMode::Passthrough => out.push(
                "auth.mode = passthrough: the gateway only checks that a bearer token is present and forwards it; the upstream must validate it.".into(),
            ),
            AuthMode::Static => out.push("auth.mode = static: fixed development tokens are accepted. Never use this in production.".into()),
            _ => {}
        }
        if self
            .issuer
            .as_ref()
            .is_some_and(|i| i.settings.auto_approve.is_some())
        {
            out.push("dev_auto_approve = true: every authorization request is approved at once for the user `dev-user`, without a sign-in. Never run this in production.".into());
        }
        if self.auth.mode != AuthMode::Passthrough
            && self.upstream.token == crate::proxy::TokenForwarding::Forward
        {
            out.push(
                "upstream.forward_token = true: clients' tokens are forwarded to the upstream."
                    .into(),
            );
        }
        out
    }
}

/// Where we are: the URL clients reach, and no credentials in any URL.
fn check_top(config: &Config, p: &mut Problems) {
    match &config.public_url {
        Some(url) => {
            if !matches!(url.scheme(), "http" | "https") {
                p.push(
                    "public_url",
                    format!("scheme must be http or https, not `{}`", url.scheme()),
                );
            }
            if url.query().is_some() || url.fragment().is_some() {
                p.push("public_url", "must not have a query or fragment");
            }
            if url.host_str().is_none() {
                p.push("public_url", "must have a host");
            }
        }
        None if !config.listen.ip().is_loopback() => p.push(
            "public_url",
            format!(
                "required when listen ({}) is not a loopback address: clients must be told the URL they reach the gateway at",
                config.listen
            ),
        ),
        None => {}
    }
    if let Err(e) = mcpgate_guard::ResourceUrl::parse(config.public_url().as_str()) {
        p.push("public_url", e.to_string());
    }
    p.no_credentials("public_url", config.public_url.as_ref());
}

/// Problems found while building, in the order found.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<ConfigError>);

impl Problems {
    fn push(&mut self, key: &str, problem: impl Into<String>) {
        self.0.push(ConfigError::new(key, problem));
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn into_errors(self) -> Vec<ConfigError> {
        self.0
    }

    /// Durations that must be positive.
    fn positive_duration(&mut self, key: &str, value: std::time::Duration) {
        if value.is_zero() {
            self.push(key, "must be longer than zero");
        }
    }

    /// Credentials never belong in URLs: they would be printed in logs and by check-config.
    fn no_credentials(&mut self, key: &str, url: Option<&Url>) {
        if let Some(url) = url
            && (!url.username().is_empty() || url.password().is_some())
        {
            self.push(key, "must not contain a user name or password: URLs are printed in logs and some are published (credentials for the upstream go in upstream.headers, for introspection in the auth.introspection_client_* settings)");
        }
    }
}

/// Replaces `${VAR}` with the gateway's environment variable `VAR`.
pub(crate) fn interpolate(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or("has an unterminated `${`")?;
        let name = &after[..end];
        if name.is_empty() {
            return Err("has an empty `${}`".into());
        }
        let resolved = std::env::var(name)
            .map_err(|_| format!("refers to environment variable {name}, which is not set"))?;
        out.push_str(&resolved);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
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

    /// Checks everything that can be checked without touching the network: builds the plan
    /// and sets it aside.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        Plan::build(self).map(drop)
    }
}

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
    fn the_plan_holds_an_http_upstream_with_its_headers_resolved_and_sensitive() {
        let mut c = valid_jwt();
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("MCPGATE_TEST_PLAN_KEY", "k-123") };
        c.upstream.headers.insert(
            "X-Api-Key".into(),
            Secret::new("key=${MCPGATE_TEST_PLAN_KEY}"),
        );
        c.upstream.forward_headers = vec!["X-Trace".into()];
        c.upstream.identity_headers.subject = Some("X-User".into());
        let plan = Plan::build(&c).unwrap();
        let Target::Http(options) = &plan.upstream.target else {
            panic!("an HTTP upstream");
        };
        let value = &options.extra_headers["x-api-key"];
        assert_eq!(value, "key=k-123");
        assert!(value.is_sensitive());
        assert_eq!(options.forward_extra, ["x-trace"]);
        assert_eq!(plan.upstream.identity.subject.as_ref().unwrap(), "x-user");
        assert_eq!(
            plan.auth.resource.resource().as_str(),
            "http://127.0.0.1:8080/mcp"
        );
    }

    #[test]
    fn the_plan_holds_a_stdio_upstream_with_its_environment_built() {
        let mut c = valid_jwt();
        c.upstream.url = None;
        c.upstream.command = Some(vec!["python".into(), "-m".into(), "server".into()]);
        c.upstream.inherit_env = vec![];
        c.upstream.env.insert("MODE".into(), Secret::new("test"));
        let plan = Plan::build(&c).unwrap();
        let Target::Stdio(options) = &plan.upstream.target else {
            panic!("a stdio upstream");
        };
        assert_eq!(options.command.argv, ["python", "-m", "server"]);
        assert_eq!(
            options.command.env,
            [("MODE".to_owned(), "test".to_owned())]
        );
        assert_eq!(
            plan.upstream.target.describe(),
            "stdio: python (2 arguments)"
        );
    }

    #[test]
    fn a_key_that_does_not_fit_the_algorithms_is_named_when_the_plan_is_built() {
        let dir = std::env::temp_dir().join(format!("mcpgate-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.pem");
        std::fs::write(&path, mcpgate_testkit::keys::TestKey::ec("k").public_pem).unwrap();
        let mut c = valid_jwt();
        c.auth.jwks_uri = None;
        c.auth.jwt_public_key = Some(path.clone());
        assert!(problems(&c).is_empty());
        c.auth.algorithms = vec!["RS256".into()];
        assert_eq!(problems(&c), ["auth.jwt_public_key"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_problem_of_every_section_is_reported_at_once() {
        let mut c = valid_jwt();
        c.upstream.timeout = std::time::Duration::ZERO;
        c.auth.max_token_bytes = 0;
        c.audit.include = vec!["everything".into()];
        c.session.key = Some(Secret::new("short"));
        c.http.max_body_bytes = 0;
        c.log.level = "[".into();
        assert_eq!(
            problems(&c),
            [
                "upstream.timeout",
                "auth.max_token_bytes",
                "audit.include",
                "session.key",
                "http.max_body_bytes",
                "log.level"
            ]
        );
    }

    #[test]
    fn credentials_in_issuer_urls_a_huge_leeway_and_framing_headers_are_refused() {
        let mut c = valid_jwt();
        c.auth.issuer_url = Some("https://user:pw@idp.example".into());
        assert!(problems(&c).contains(&"auth.issuer_url".to_owned()));
        let mut c = valid_jwt();
        c.auth.leeway = std::time::Duration::from_secs(3600);
        assert_eq!(problems(&c), ["auth.leeway"]);
        let mut c = valid_jwt();
        for name in ["Host", "Transfer-Encoding", "Mcp-Session-Id"] {
            c.upstream.headers.insert(name.into(), Secret::new("x"));
        }
        c.upstream
            .headers
            .insert("Authorization".into(), Secret::new("Bearer upstream-key"));
        assert_eq!(
            problems(&c),
            [
                "upstream.headers.Host",
                "upstream.headers.Mcp-Session-Id",
                "upstream.headers.Transfer-Encoding"
            ]
        );
    }

    #[test]
    fn an_upstream_url_is_described_without_its_query() {
        let mut c = valid_jwt();
        c.upstream.url = Some("http://127.0.0.1:3000/mcp?api_key=secret".parse().unwrap());
        let plan = Plan::build(&c).unwrap();
        assert_eq!(
            plan.upstream.target.describe(),
            "http://127.0.0.1:3000/mcp?%E2%80%A6"
        );
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
