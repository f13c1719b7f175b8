//! `[auth]`: how clients are authenticated. Built into [`AuthPlan`]: the protected resource
//! as advertised, the guard of `/mcp` with its verifier constructed (keys read, algorithms
//! parsed, issuers compiled), scope names and anonymous access.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use mcpgate_guard::challenge::ScopeNames;
use mcpgate_guard::{
    Algorithm, Audience, ClaimRules, ClientAuth, ClientId, IntrospectionVerifier, IssuerPattern,
    Issuers, JwksOptions, JwtVerifier, JwtVerifierBuilder, Principal, ProtectedResource,
    ResourceUrl, Scope, StaticTokens, Subject,
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::settings::{Setting, s, secret};
use super::values::{self, Secret};
use super::{Config, Problems};
use crate::auth::Guard;
use crate::proxy::anonymous::Anonymous;

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

/// This section's settings.
pub(super) const SETTINGS: &[Setting] = &[
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
];

/// Authentication, built.
pub struct AuthPlan {
    /// The mode.
    pub mode: AuthMode,
    /// The protected resource, as advertised in its metadata and challenges.
    pub resource: ProtectedResource,
    /// How `/mcp` is guarded, with its verifier.
    pub guard: Guard,
    /// How scopes are named to clients (`auth.scope_map`).
    pub scope_names: ScopeNames,
    /// Scopes every request needs (as tokens carry them).
    pub required_scopes: Vec<Scope>,
    /// What may be done without a token (only when tokens are verified).
    pub anonymous: Option<Anonymous>,
    /// How often keys that did not load at start are tried again.
    pub retry_keys_every: Duration,
}

impl std::fmt::Debug for AuthPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthPlan")
            .field("mode", &self.mode)
            .field("resource", &self.resource.resource().as_str())
            .finish_non_exhaustive()
    }
}

/// Verified tokens remembered at once.
const CACHE_CAPACITY: u64 = 10_000;

pub(super) fn build(config: &Config, p: &mut Problems) -> Option<AuthPlan> {
    let auth = &config.auth;
    let before = p.len();
    p.no_credentials("auth.jwks_uri", auth.jwks_uri.as_ref());
    // Issuers are published in the resource metadata: no credentials in them either.
    let issuer_urls = auth
        .issuer_url
        .iter()
        .map(|u| ("auth.issuer_url".to_owned(), u.clone()))
        .chain(
            auth.authorization_servers
                .iter()
                .map(|u| ("auth.authorization_servers".to_owned(), u.clone())),
        )
        .chain(auth.issuers.iter().enumerate().map(|(i, e)| {
            (
                format!("auth.issuers[{i}].issuer_url"),
                e.issuer_url.replace("{tenant}", "tenant"),
            )
        }));
    for (key, text) in issuer_urls {
        if let Ok(url) = Url::parse(&text) {
            p.no_credentials(&key, Some(&url));
        }
    }
    if auth.leeway > Duration::from_secs(300) {
        p.push(
            "auth.leeway",
            "must be at most 5m: a longer clock skew would accept tokens long expired",
        );
    }
    p.no_credentials("auth.introspection_url", auth.introspection_url.as_ref());
    p.positive_duration("auth.introspection_timeout", auth.introspection_timeout);
    let required_scopes = scopes(p, "auth.required_scopes", &auth.required_scopes);
    let advertised = match &auth.scopes_supported {
        Some(list) => scopes(p, "auth.scopes_supported", list),
        None => required_scopes.clone(),
    };
    let scope_names = scope_names(auth, p);
    if auth.audience.iter().any(String::is_empty) {
        p.push("auth.audience", "entries must not be empty");
    }
    if auth.max_token_bytes == 0 {
        p.push("auth.max_token_bytes", "must be greater than zero");
    }
    check_mode(config, p);
    let issuers = (auth.mode == AuthMode::Jwt).then(|| issuers(auth, p));
    let algorithms = (auth.mode == AuthMode::Jwt).then(|| algorithms(&auth.algorithms, p));
    if !auth.anonymous_methods.is_empty() || !auth.anonymous_tools.is_empty() {
        check_anonymous(auth, p);
    }
    let resource = ResourceUrl::parse(&format!(
        "{}/mcp",
        config.public_url().as_str().trim_end_matches('/')
    ));
    if p.len() > before {
        return None;
    }
    let resource = match resource {
        Ok(r) => r,
        // Reported by the top-level `public_url` check.
        Err(_) => return None,
    };

    // Everything read is valid: build.
    let issuers = issuers.unwrap_or_default();
    let mut metadata = ProtectedResource::new(resource).resource_name("mcpgate");
    let servers = if auth.authorization_servers.is_empty() {
        // Every trusted issuer (in `jwt` mode the list starts with `auth.issuer_url`).
        let mut all: Vec<String> = Vec::new();
        let own = (auth.mode == AuthMode::Issuer).then(|| {
            config
                .public_url()
                .as_str()
                .trim_end_matches('/')
                .to_owned()
        });
        for issuer in own
            .into_iter()
            .chain(
                auth.issuer_url
                    .iter()
                    .filter(|_| auth.mode != AuthMode::Issuer)
                    .cloned(),
            )
            .chain(issuers.iter().flat_map(|(pattern, _)| pattern.issuers()))
        {
            if !all.contains(&issuer) {
                all.push(issuer);
            }
        }
        all
    } else {
        auth.authorization_servers.clone()
    };
    for server in servers {
        metadata = metadata.authorization_server(server);
    }
    let resource = metadata.scopes_supported(scope_names.advertise(&advertised));
    let guard = guard(config, &resource, issuers, algorithms.flatten(), p)?;
    let anonymous = match &guard {
        Guard::Verify(_) | Guard::Issuer => Anonymous::new(
            &auth.anonymous_methods,
            &auth.anonymous_tools,
            resource.metadata_url().to_string(),
            required_scopes.clone(),
            scope_names.clone(),
        )
        .map_err(|e| p.push("auth.anonymous_tools", e))
        .ok()?,
        _ => None,
    };
    Some(AuthPlan {
        mode: auth.mode,
        resource,
        guard,
        scope_names,
        required_scopes,
        anonymous,
        retry_keys_every: auth.jwks_refresh_interval.max(Duration::from_secs(1)),
    })
}

/// Scope names, each checked.
fn scopes(p: &mut Problems, key: &str, names: &[String]) -> Vec<Scope> {
    names
        .iter()
        .filter_map(|name| match Scope::parse(name) {
            Ok(scope) => Some(scope),
            Err(e) => {
                p.push(key, e.to_string());
                None
            }
        })
        .collect()
}

/// `auth.scope_map`: each checked name stands for one advertised name.
fn scope_names(auth: &AuthConfig, p: &mut Problems) -> ScopeNames {
    let mut pairs = Vec::new();
    for (advertised, checked) in &auth.scope_map {
        let (a, c) = (Scope::parse(advertised), Scope::parse(checked));
        for e in [&a, &c].into_iter().filter_map(|r| r.as_ref().err()) {
            p.push("auth.scope_map", e.to_string());
        }
        if auth.scope_map.values().filter(|v| *v == checked).count() > 1 {
            p.push(
                "auth.scope_map",
                format!(
                    "`{checked}` is the checked name of more than one advertised scope; which one should clients request?"
                ),
            );
        }
        if let (Ok(a), Ok(c)) = (a, c) {
            pairs.push((a, c));
        }
    }
    ScopeNames::new(pairs)
}

/// What each mode needs, and what it forbids.
fn check_mode(config: &Config, p: &mut Problems) {
    let auth = &config.auth;
    let needs_issuer = |p: &mut Problems, mode: &str| {
        if auth.issuer_url.is_none() && (mode != "jwt" || auth.issuers.is_empty()) {
            p.push(
                "auth.issuer_url",
                format!(
                    "required in `{mode}` mode: it is advertised to clients as the authorization server and checked as the token's `iss`"
                ),
            );
        }
    };
    match auth.mode {
        AuthMode::None if !config.listen.ip().is_loopback() => p.push(
            "auth.mode",
            format!("`none` is only allowed when listen is a loopback address (listen is {})", config.listen),
        ),
        AuthMode::None if !config.public_url().host_str().is_some_and(crate::dns_rebinding::is_loopback_name) => p.push(
            "auth.mode",
            "`none` is only allowed when public_url is a loopback URL too: a reverse proxy would otherwise publish an unauthenticated server",
        ),
        AuthMode::None => {}
        AuthMode::Passthrough => {
            if auth.issuer_url.is_none() && auth.authorization_servers.is_empty() {
                p.push(
                    "auth.issuer_url",
                    "required in `passthrough` mode (or auth.authorization_servers): clients must be told which authorization server issues tokens for the upstream",
                );
            }
        }
        AuthMode::Static => {
            if !config.dev {
                p.push("auth.mode", "`static` tokens are for development only: start with --dev (MCPGATE_DEV=true) to allow them");
            }
            if auth.static_tokens.is_empty() {
                p.push("auth.static_tokens", "`static` mode needs at least one token");
            }
            for (i, t) in auth.static_tokens.iter().enumerate() {
                let key = format!("auth.static_tokens[{i}]");
                if t.token.expose().is_empty() || t.token.expose().contains(char::is_whitespace) {
                    p.push(&key, "token must be non-empty and contain no whitespace");
                }
                if t.subject.is_empty() {
                    p.push(&key, "subject must not be empty");
                }
                scopes(p, &key, &t.scopes);
                if auth.static_tokens[..i]
                    .iter()
                    .any(|other| other.token.expose() == t.token.expose())
                {
                    p.push(&key, "the same token is listed twice (each token names one subject)");
                }
            }
        }
        AuthMode::Jwt => {
            needs_issuer(p, "jwt");
            let sources = [auth.jwks_uri.is_some(), auth.jwt_public_key.is_some(), auth.hmac_secret.is_some()];
            match sources.iter().filter(|s| **s).count() {
                // Keys from the issuer's metadata (RFC 8414 / OpenID discovery).
                0 => {
                    if let Some(issuer) = &auth.issuer_url
                        && let Err(e) = mcpgate_guard::discovery::metadata_locations(issuer)
                    {
                        p.push(
                            "auth.issuer_url",
                            format!("{e}; its metadata cannot be discovered (or give auth.jwks_uri, auth.jwt_public_key or auth.hmac_secret)"),
                        );
                    }
                }
                1 => {}
                _ => p.push("auth.jwks_uri", "give only one of auth.jwks_uri, auth.jwt_public_key, auth.hmac_secret"),
            }
            if let Some(secret) = &auth.hmac_secret
                && secret.expose().len() < 32
            {
                p.push("auth.hmac_secret", format!("is {} bytes; at least 32 are required", secret.expose().len()));
            }
            if let Some(url) = &auth.jwks_uri
                && !matches!(url.scheme(), "http" | "https")
            {
                p.push("auth.jwks_uri", format!("scheme must be http or https, not `{}`", url.scheme()));
            }
        }
        AuthMode::Introspection => {
            needs_issuer(p, "introspection");
            if auth.introspection_url.is_none() {
                p.push("auth.introspection_url", "required in `introspection` mode");
            }
            if auth.introspection_client_id.as_deref().unwrap_or_default().is_empty() {
                p.push("auth.introspection_client_id", "required in `introspection` mode");
            }
            if auth.introspection_client_secret.is_none() {
                p.push("auth.introspection_client_secret", "required in `introspection` mode");
            }
        }
        AuthMode::Issuer => {
            // The gateway is the authorization server: its public URL is the issuer.
            let own = config.public_url().as_str().trim_end_matches('/').to_owned();
            if let Some(issuer) = &auth.issuer_url
                && issuer.trim_end_matches('/') != own
            {
                p.push("auth.issuer_url", format!("in `issuer` mode the issuer is this gateway ({own}); leave auth.issuer_url unset"));
            }
            for (key, set) in [
                ("auth.jwks_uri", auth.jwks_uri.is_some()),
                ("auth.jwt_public_key", auth.jwt_public_key.is_some()),
                ("auth.hmac_secret", auth.hmac_secret.is_some()),
                ("auth.introspection_url", auth.introspection_url.is_some()),
                ("auth.issuers", !auth.issuers.is_empty()),
            ] {
                if set {
                    p.push(key, "does not apply in `issuer` mode: the gateway verifies the tokens it issues with its own keys");
                }
            }
        }
    }
}

/// Anonymous access: only in the modes that verify tokens, only for methods that reveal
/// nothing a token would protect.
fn check_anonymous(auth: &AuthConfig, p: &mut Problems) {
    if !matches!(
        auth.mode,
        AuthMode::Jwt | AuthMode::Introspection | AuthMode::Static | AuthMode::Issuer
    ) {
        p.push(
            "auth.anonymous_methods",
            format!(
                "anonymous access is for the modes that verify tokens (`jwt`, `introspection`, `static`, `issuer`), not `{}`",
                auth.mode.as_str()
            ),
        );
    }
    for method in &auth.anonymous_methods {
        if !crate::proxy::anonymous::ALLOWED_METHODS.contains(&method.as_str()) {
            p.push(
                "auth.anonymous_methods",
                format!(
                    "`{method}` cannot be allowed without a token; allowed are {} (public tools go in auth.anonymous_tools)",
                    crate::proxy::anonymous::ALLOWED_METHODS.join(", ")
                ),
            );
        }
    }
    for pattern in &auth.anonymous_tools {
        if pattern.is_empty() {
            p.push("auth.anonymous_tools", "entries must not be empty");
        } else if let Err(e) = globset::Glob::new(pattern) {
            p.push("auth.anonymous_tools", format!("`{pattern}`: {e}"));
        }
    }
}

/// Where one issuer's keys come from, read once.
enum KeySource {
    Jwks(Url),
    Pem(Vec<u8>),
    Hmac(Vec<u8>),
    Discover(String),
}

/// One trusted issuer, read: what `iss` it accepts, its keys, its audiences.
struct TrustedIssuer {
    key: String,
    keys: KeySource,
    audience: Vec<String>,
}

/// The `[[auth.issuers]]` entries (and `auth.issuer_url` first when there are any), checked
/// and read.
fn issuers(auth: &AuthConfig, p: &mut Problems) -> Vec<(IssuerPattern, TrustedIssuer)> {
    let mut out = Vec::new();
    let pem = |p: &mut Problems, key: &str, path: &Path| match std::fs::read(path) {
        Ok(pem) => Some(pem),
        Err(e) => {
            p.push(key, format!("cannot read `{}`: {e}", path.display()));
            None
        }
    };
    let main_keys = match (&auth.jwks_uri, &auth.jwt_public_key, &auth.hmac_secret) {
        (Some(url), _, _) => Some(KeySource::Jwks(url.clone())),
        (None, Some(path), _) => pem(p, "auth.jwt_public_key", path).map(KeySource::Pem),
        (None, None, Some(secret)) => Some(KeySource::Hmac(secret.expose().as_bytes().to_vec())),
        (None, None, None) => auth.issuer_url.clone().map(KeySource::Discover),
    };
    if let (Some(issuer), Some(keys)) = (&auth.issuer_url, main_keys) {
        let pattern = IssuerPattern::exact(issuer.clone());
        out.push((
            pattern,
            TrustedIssuer {
                key: match keys {
                    KeySource::Pem(_) => "auth.jwt_public_key".into(),
                    _ => "auth".into(),
                },
                keys,
                audience: Vec::new(),
            },
        ));
    }
    for (i, issuer) in auth.issuers.iter().enumerate() {
        let key = format!("auth.issuers[{i}]");
        let before = p.len();
        let template = issuer.issuer_url.contains("{tenant}");
        let url = issuer.issuer_url.replace("{tenant}", "tenant");
        match Url::parse(&url) {
            Ok(u)
                if matches!(u.scheme(), "https" | "http")
                    && u.host_str().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none() => {}
            _ => p.push(
                &format!("{key}.issuer_url"),
                format!(
                    "`{}` is not an http(s) URL without query or fragment",
                    issuer.issuer_url
                ),
            ),
        }
        let pattern = if template {
            if issuer.jwks_uri.is_none() && issuer.jwt_public_key.is_none() {
                p.push(&format!("{key}.jwks_uri"), "a `{tenant}` issuer needs jwks_uri or jwt_public_key (its metadata is per tenant)");
            }
            match IssuerPattern::tenants(&issuer.issuer_url, issuer.tenants.iter().cloned()) {
                Ok(pattern) => Some(pattern),
                Err(e) => {
                    p.push(&format!("{key}.tenants"), e.to_string());
                    None
                }
            }
        } else {
            if !issuer.tenants.is_empty() {
                p.push(
                    &format!("{key}.tenants"),
                    "tenants need `{tenant}` in issuer_url",
                );
            }
            Some(IssuerPattern::exact(issuer.issuer_url.clone()))
        };
        if issuer.jwks_uri.is_some() && issuer.jwt_public_key.is_some() {
            p.push(
                &format!("{key}.jwks_uri"),
                "give only one of jwks_uri, jwt_public_key",
            );
        }
        let pem_key = format!("{key}.jwt_public_key");
        let keys = match (&issuer.jwks_uri, &issuer.jwt_public_key) {
            (Some(url), _) => Some(KeySource::Jwks(url.clone())),
            (None, Some(path)) => pem(p, &pem_key, path).map(KeySource::Pem),
            (None, None) => Some(KeySource::Discover(issuer.issuer_url.clone())),
        };
        let twice = auth.issuers[..i]
            .iter()
            .any(|o| o.issuer_url == issuer.issuer_url)
            || auth.issuer_url.as_deref() == Some(issuer.issuer_url.as_str());
        if twice {
            p.push(
                &format!("{key}.issuer_url"),
                format!("`{}` is trusted twice", issuer.issuer_url),
            );
        }
        if let (Some(pattern), Some(keys), true) = (pattern, keys, p.len() == before) {
            let key = match keys {
                KeySource::Pem(_) => pem_key,
                _ => key,
            };
            out.push((
                pattern,
                TrustedIssuer {
                    key,
                    keys,
                    audience: issuer.audience.clone(),
                },
            ));
        }
    }
    out
}

/// The algorithm allow-list (empty: all).
fn algorithms(names: &[String], p: &mut Problems) -> Option<Vec<Algorithm>> {
    if names.is_empty() {
        return Some(mcpgate_guard::ALL_ALGORITHMS.to_vec());
    }
    let mut out = Vec::new();
    for n in names {
        match Algorithm::from_str(n) {
            Ok(a) => out.push(a),
            Err(_) => {
                p.push("auth.algorithms", format!("`{n}` is not a supported algorithm (RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512)"));
                return None;
            }
        }
    }
    Some(out)
}

/// The guard of `/mcp`, its verifier constructed (nothing is fetched yet).
fn guard(
    config: &Config,
    resource: &ProtectedResource,
    issuers: Vec<(IssuerPattern, TrustedIssuer)>,
    algorithms: Option<Vec<Algorithm>>,
    p: &mut Problems,
) -> Option<Guard> {
    let auth = &config.auth;
    let rules = || {
        let audiences = if auth.audience.is_empty() {
            vec![Audience::from(resource.resource())]
        } else {
            auth.audience.iter().map(Audience::new).collect()
        };
        ClaimRules {
            issuer: auth.issuer_url.clone(),
            audiences,
            leeway: auth.leeway,
            // RFC 7662 makes `exp` and `iss` optional in introspection answers: the endpoint
            // vouches for the token, and the cache bound still limits how long one is trusted.
            require_exp: auth.mode == AuthMode::Jwt,
            require_iss: auth.mode == AuthMode::Jwt,
        }
    };
    Some(match auth.mode {
        AuthMode::None => Guard::Open,
        AuthMode::Passthrough => Guard::PresenceOnly,
        AuthMode::Static => {
            let tokens = auth.static_tokens.iter().map(|t| {
                let mut principal = Principal::builder(Subject::new(&t.subject))
                    .scopes(t.scopes.iter().map(Scope::new));
                if let Some(c) = &t.client_id {
                    principal = principal.client_id(ClientId::new(c));
                }
                (t.token.expose().to_owned(), principal.build())
            });
            Guard::Verify(Arc::new(StaticTokens::new(tokens)))
        }
        AuthMode::Jwt => {
            let allowed = algorithms?;
            let options = JwksOptions {
                min_refresh_interval: auth.jwks_refresh_interval,
                max_age: auth.jwks_max_age,
                ..JwksOptions::default()
            };
            let verifier = |pattern: &IssuerPattern, trusted: TrustedIssuer, p: &mut Problems| {
                let mut r = rules();
                // A template's issuer is checked against its tenants by `Issuers`.
                r.issuer = match pattern {
                    IssuerPattern::Exact(issuer) => Some(issuer.clone()),
                    _ => None,
                };
                if !trusted.audience.is_empty() {
                    r.audiences = trusted.audience.iter().map(Audience::new).collect();
                }
                let builder: JwtVerifierBuilder = JwtVerifier::builder(r)
                    .algorithms(allowed.clone())
                    .max_token_bytes(auth.max_token_bytes)
                    .cache(CACHE_CAPACITY, auth.cache_ttl);
                let builder = match trusted.keys {
                    KeySource::Jwks(url) => builder.jwks(url, options.clone()),
                    KeySource::Pem(pem) => builder.public_key_pem(pem),
                    KeySource::Hmac(secret) => builder.hmac_secret(secret),
                    KeySource::Discover(issuer) => {
                        builder.jwks_from_issuer(issuer, options.clone())
                    }
                };
                builder
                    .build()
                    .map_err(|e| p.push(&trusted.key, e.to_string()))
                    .ok()
            };
            if auth.issuers.is_empty() {
                let (pattern, trusted) = issuers.into_iter().next()?;
                Guard::Verify(Arc::new(verifier(&pattern, trusted, p)?))
            } else {
                let mut all = Issuers::new().max_token_bytes(auth.max_token_bytes);
                for (pattern, trusted) in issuers {
                    let v = verifier(&pattern, trusted, p)?;
                    all = all.issuer(pattern, v);
                }
                Guard::Verify(Arc::new(all))
            }
        }
        AuthMode::Introspection => {
            let url = auth.introspection_url.clone()?;
            let client_id = auth.introspection_client_id.clone().unwrap_or_default();
            let client_secret = auth
                .introspection_client_secret
                .as_ref()
                .map(|s| s.expose().to_owned())
                .unwrap_or_default();
            let client_auth = match auth.introspection_auth_method {
                IntrospectionAuthMethod::ClientSecretBasic => ClientAuth::Basic {
                    client_id,
                    client_secret,
                },
                IntrospectionAuthMethod::ClientSecretPost => ClientAuth::Post {
                    client_id,
                    client_secret,
                },
            };
            let verifier = IntrospectionVerifier::builder(url, client_auth, rules())
                .timeout(auth.introspection_timeout)
                .max_token_bytes(auth.max_token_bytes)
                .cache(CACHE_CAPACITY, auth.cache_ttl.min(Duration::from_secs(60)))
                .build()
                .map_err(|e| p.push("auth.introspection_url", e.to_string()))
                .ok()?;
            Guard::Verify(Arc::new(verifier))
        }
        // The verifier is made when the issuer starts (its keys live in its store).
        AuthMode::Issuer => Guard::Issuer,
    })
}
