//! Everything about a configuration that can be checked before starting: each rule names the
//! key it is about and says how to fix it. All problems are reported at once.

use std::str::FromStr;

use base64::Engine as _;
use http::HeaderName;
use mcpgate_guard::{Algorithm, ResourceUrl, Scope};

use super::{AuthMode, Config, ConfigError};

pub(super) fn check(config: &Config) -> Result<(), Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut err = |key: &str, problem: String| errors.push(ConfigError::new(key, problem));

    // Where we are.
    match &config.public_url {
        Some(url) => {
            if !matches!(url.scheme(), "http" | "https") {
                err(
                    "public_url",
                    format!("scheme must be http or https, not `{}`", url.scheme()),
                );
            }
            if url.query().is_some() || url.fragment().is_some() {
                err("public_url", "must not have a query or fragment".into());
            }
            if url.host_str().is_none() {
                err("public_url", "must have a host".into());
            }
        }
        None if !config.listen.ip().is_loopback() => err(
            "public_url",
            format!(
                "required when listen ({}) is not a loopback address: clients must be told the URL they reach the gateway at",
                config.listen
            ),
        ),
        None => {}
    }
    if let Err(e) = ResourceUrl::parse(config.public_url().as_str()) {
        err("public_url", e.to_string());
    }

    // Credentials never belong in URLs: they would be printed in logs and by check-config.
    let urls = [
        ("public_url", config.public_url.as_ref()),
        ("upstream.url", config.upstream.url.as_ref()),
        ("auth.jwks_uri", config.auth.jwks_uri.as_ref()),
        (
            "auth.introspection_url",
            config.auth.introspection_url.as_ref(),
        ),
    ];
    for (key, url) in urls {
        if let Some(url) = url
            && (!url.username().is_empty() || url.password().is_some())
        {
            err(key, "must not contain a user name or password; use upstream.headers or the introspection client settings".into());
        }
    }

    // Upstream.
    let up = &config.upstream;
    if let Some(command) = &up.command {
        if up.url.is_some() {
            err("upstream.command", "set either upstream.url (an HTTP server) or upstream.command (a stdio server), not both".into());
        }
        match command.first() {
            None => err("upstream.command", "must name a program".into()),
            Some(p) if p.trim().is_empty() => err("upstream.command", "must name a program".into()),
            Some(_) => {}
        }
        if let Some(dir) = &up.cwd
            && !dir.is_dir()
        {
            err(
                "upstream.cwd",
                format!("`{}` is not a directory", dir.display()),
            );
        }
        for (name, value) in &up.env {
            let key = format!("upstream.env.{name}");
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                err(&key, "not a valid environment variable name".into());
            }
            if let Err(p) = interpolate(value.expose()) {
                err(&key, p);
            }
        }
        if up.max_children == 0 {
            err("upstream.max_children", "must be at least 1".into());
        }
        if up.max_sessions_per_subject == 0 {
            err(
                "upstream.max_sessions_per_subject",
                "must be at least 1".into(),
            );
        }
        for (i, arg) in command.iter().enumerate() {
            if let Err(p) = interpolate(arg) {
                err("upstream.command", format!("argument {i}: {p}"));
            }
        }
        for (key, d) in [
            ("upstream.child_idle_timeout", up.child_idle_timeout),
            ("upstream.startup_timeout", up.startup_timeout),
        ] {
            if d.is_zero() {
                err(key, "must be greater than zero".into());
            }
        }
        // What only an HTTP upstream can do.
        if !up.headers.is_empty() {
            err(
                "upstream.headers",
                "applies to an HTTP upstream (upstream.url); a stdio command takes upstream.env"
                    .into(),
            );
        }
        let identity = &up.identity_headers;
        if identity.subject.is_some() || identity.client_id.is_some() || identity.scopes.is_some() {
            err(
                "upstream.identity_headers",
                "applies to an HTTP upstream (upstream.url) only".into(),
            );
        }
        if up.forward_token {
            err(
                "upstream.forward_token",
                "applies to an HTTP upstream (upstream.url) only: a stdio command gets no tokens"
                    .into(),
            );
        }
        if config.auth.mode == AuthMode::Passthrough {
            err("auth.mode", "`passthrough` needs an HTTP upstream that validates the token itself; a stdio command cannot".into());
        }
    }
    match &config.upstream.url {
        None if config.upstream.command.is_some() => {}
        None => err("upstream.url", "required: the MCP server to put behind the gateway (e.g. --upstream-url http://127.0.0.1:3000/mcp, or a stdio server with --upstream-cmd \"python -m my_server\")".into()),
        Some(url) if !matches!(url.scheme(), "http" | "https") => {
            err("upstream.url", format!("scheme must be http or https, not `{}`", url.scheme()))
        }
        Some(_) => {}
    }
    for (key, value) in [
        ("upstream.connect_timeout", config.upstream.connect_timeout),
        ("upstream.timeout", config.upstream.timeout),
        ("upstream.idle_timeout", config.upstream.idle_timeout),
        (
            "auth.introspection_timeout",
            config.auth.introspection_timeout,
        ),
        ("session.max_age", config.session.max_age),
    ] {
        if value.is_zero() {
            err(key, "must be longer than zero".into());
        }
    }
    for (name, value) in &config.upstream.headers {
        let key = format!("upstream.headers.{name}");
        if HeaderName::from_str(name).is_err() {
            err(&key, "is not a valid header name".into());
        }
        if let Err(problem) = interpolate(value.expose()) {
            err(&key, problem);
        }
    }
    let reserved = [
        "authorization",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "mcp-session-id",
    ];
    for name in &config.upstream.forward_headers {
        match HeaderName::from_str(name) {
            Err(_) => err(
                "upstream.forward_headers",
                format!("`{name}` is not a valid header name"),
            ),
            Ok(h) if reserved.contains(&h.as_str()) => err(
                "upstream.forward_headers",
                format!(
                    "`{name}` cannot be forwarded this way (use upstream.forward_token for Authorization)"
                ),
            ),
            Ok(_) => {}
        }
    }
    let identity = &config.upstream.identity_headers;
    for (key, name) in [
        ("upstream.identity_headers.subject", &identity.subject),
        ("upstream.identity_headers.client_id", &identity.client_id),
        ("upstream.identity_headers.scopes", &identity.scopes),
    ] {
        let Some(name) = name else { continue };
        match HeaderName::from_str(name) {
            Err(_) => err(key, format!("`{name}` is not a valid header name")),
            Ok(h) if reserved.contains(&h.as_str()) || h.as_str().starts_with("mcp-") => err(
                key,
                format!("`{name}` is reserved; choose another name such as X-Forwarded-User"),
            ),
            Ok(h)
                if config
                    .upstream
                    .forward_headers
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(h.as_str())) =>
            {
                err(
                    key,
                    format!(
                        "`{name}` is also in upstream.forward_headers: a client could then set the identity itself"
                    ),
                )
            }
            Ok(_) => {}
        }
    }

    // Authentication.
    let auth = &config.auth;
    let needs_issuer = |err: &mut dyn FnMut(&str, String), mode: &str| {
        if auth.issuer_url.is_none() && (mode != "jwt" || auth.issuers.is_empty()) {
            err(
                "auth.issuer_url",
                format!(
                    "required in `{mode}` mode: it is advertised to clients as the authorization server and checked as the token's `iss`"
                ),
            );
        }
    };
    match auth.mode {
        AuthMode::None if !config.listen.ip().is_loopback() => err(
            "auth.mode",
            format!("`none` is only allowed when listen is a loopback address (listen is {})", config.listen),
        ),
        AuthMode::None if !config.public_url().host_str().is_some_and(crate::dns_rebinding::is_loopback_name) => err(
            "auth.mode",
            "`none` is only allowed when public_url is a loopback URL too: a reverse proxy would otherwise publish an unauthenticated server".into(),
        ),
        AuthMode::None => {}
        AuthMode::Passthrough => {
            if auth.issuer_url.is_none() && auth.authorization_servers.is_empty() {
                err(
                    "auth.issuer_url",
                    "required in `passthrough` mode (or auth.authorization_servers): clients must be told which authorization server issues tokens for the upstream".into(),
                );
            }
        }
        AuthMode::Static => {
            if !config.dev {
                err("auth.mode", "`static` tokens are for development only: start with --dev (MCPGATE_DEV=true) to allow them".into());
            }
            if auth.static_tokens.is_empty() {
                err("auth.static_tokens", "`static` mode needs at least one token".into());
            }
            for (i, t) in auth.static_tokens.iter().enumerate() {
                let key = format!("auth.static_tokens[{i}]");
                if t.token.expose().is_empty() || t.token.expose().contains(char::is_whitespace) {
                    err(&key, "token must be non-empty and contain no whitespace".into());
                }
                if t.subject.is_empty() {
                    err(&key, "subject must not be empty".into());
                }
                for scope in &t.scopes {
                    if let Err(e) = Scope::parse(scope) {
                        err(&key, e.to_string());
                    }
                }
                if auth.static_tokens[..i]
                    .iter()
                    .any(|other| other.token.expose() == t.token.expose())
                {
                    err(&key, "the same token is listed twice (each token names one subject)".into());
                }
            }
        }
        AuthMode::Jwt => {
            needs_issuer(&mut err, "jwt");
            let sources = [auth.jwks_uri.is_some(), auth.jwt_public_key.is_some(), auth.hmac_secret.is_some()];
            for (i, issuer) in auth.issuers.iter().enumerate() {
                let key = format!("auth.issuers[{i}]");
                let template = issuer.issuer_url.contains("{tenant}");
                let url = issuer.issuer_url.replace("{tenant}", "tenant");
                match url::Url::parse(&url) {
                    Ok(u) if matches!(u.scheme(), "https" | "http") && u.host_str().is_some() && u.query().is_none() && u.fragment().is_none() => {}
                    _ => err(&format!("{key}.issuer_url"), format!("`{}` is not an http(s) URL without query or fragment", issuer.issuer_url)),
                }
                if template {
                    if let Err(e) = mcpgate_guard::IssuerPattern::tenants(&issuer.issuer_url, issuer.tenants.iter().cloned()) {
                        err(&format!("{key}.tenants"), e.to_string());
                    }
                    if issuer.jwks_uri.is_none() && issuer.jwt_public_key.is_none() {
                        err(&format!("{key}.jwks_uri"), "a `{tenant}` issuer needs jwks_uri or jwt_public_key (its metadata is per tenant)".into());
                    }
                } else if !issuer.tenants.is_empty() {
                    err(&format!("{key}.tenants"), "tenants need `{tenant}` in issuer_url".into());
                }
                if issuer.jwks_uri.is_some() && issuer.jwt_public_key.is_some() {
                    err(&format!("{key}.jwks_uri"), "give only one of jwks_uri, jwt_public_key".into());
                }
                if let Some(path) = &issuer.jwt_public_key
                    && let Err(e) = std::fs::read(path)
                {
                    err(&format!("{key}.jwt_public_key"), format!("cannot read `{}`: {e}", path.display()));
                }
                let twice = auth.issuers[..i].iter().any(|o| o.issuer_url == issuer.issuer_url)
                    || auth.issuer_url.as_deref() == Some(issuer.issuer_url.as_str());
                if twice {
                    err(&format!("{key}.issuer_url"), format!("`{}` is trusted twice", issuer.issuer_url));
                }
            }
            match sources.iter().filter(|s| **s).count() {
                // Keys from the issuer's metadata (RFC 8414 / OpenID discovery).
                0 => {
                    if let Some(issuer) = &auth.issuer_url
                        && let Err(e) = mcpgate_guard::discovery::metadata_locations(issuer)
                    {
                        err(
                            "auth.issuer_url",
                            format!("{e}; its metadata cannot be discovered (or give auth.jwks_uri, auth.jwt_public_key or auth.hmac_secret)"),
                        );
                    }
                }
                1 => {}
                _ => err("auth.jwks_uri", "give only one of auth.jwks_uri, auth.jwt_public_key, auth.hmac_secret".into()),
            }
            if let Some(path) = &auth.jwt_public_key {
                match std::fs::read(path) {
                    Err(e) => err("auth.jwt_public_key", format!("cannot read `{}`: {e}", path.display())),
                    Ok(pem) => {
                        if let Err(e) = mcpgate_guard::VerificationKey::from_pem(&pem, &mcpgate_guard::ALL_ALGORITHMS) {
                            err("auth.jwt_public_key", format!("`{}`: {e}", path.display()));
                        }
                    }
                }
            }
            if let Some(secret) = &auth.hmac_secret
                && secret.expose().len() < 32
            {
                err("auth.hmac_secret", format!("is {} bytes; at least 32 are required", secret.expose().len()));
            }
            if let Some(url) = &auth.jwks_uri
                && !matches!(url.scheme(), "http" | "https")
            {
                err("auth.jwks_uri", format!("scheme must be http or https, not `{}`", url.scheme()));
            }
        }
        AuthMode::Introspection => {
            needs_issuer(&mut err, "introspection");
            if auth.introspection_url.is_none() {
                err("auth.introspection_url", "required in `introspection` mode".into());
            }
            if auth.introspection_client_id.as_deref().unwrap_or_default().is_empty() {
                err("auth.introspection_client_id", "required in `introspection` mode".into());
            }
            if auth.introspection_client_secret.is_none() {
                err("auth.introspection_client_secret", "required in `introspection` mode".into());
            }
        }
        AuthMode::Issuer => err(
            "auth.mode",
            "`issuer` (the built-in authorization server) is not available in this release; use `jwt` or `introspection` with your identity provider".into(),
        ),
    }
    if auth.forward_token_misused(config) {
        err(
            "upstream.forward_token",
            "only applies in `jwt` and `introspection` modes".into(),
        );
    }
    if auth.mode == AuthMode::Jwt
        && let Err(problem) = algorithms(&auth.algorithms)
    {
        err("auth.algorithms", problem);
    }
    for scope in auth
        .required_scopes
        .iter()
        .chain(auth.scopes_supported.iter().flatten())
    {
        if let Err(e) = Scope::parse(scope) {
            err(
                if auth.required_scopes.contains(scope) {
                    "auth.required_scopes"
                } else {
                    "auth.scopes_supported"
                },
                e.to_string(),
            );
        }
    }
    if !auth.anonymous_methods.is_empty() || !auth.anonymous_tools.is_empty() {
        if !matches!(
            auth.mode,
            AuthMode::Jwt | AuthMode::Introspection | AuthMode::Static
        ) {
            err(
                "auth.anonymous_methods",
                format!(
                    "anonymous access is for the modes that verify tokens (`jwt`, `introspection`, `static`), not `{}`",
                    auth.mode.as_str()
                ),
            );
        }
        for method in &auth.anonymous_methods {
            if !crate::anonymous::ALLOWED_METHODS.contains(&method.as_str()) {
                err(
                    "auth.anonymous_methods",
                    format!(
                        "`{method}` cannot be allowed without a token; allowed are {} (public tools go in auth.anonymous_tools)",
                        crate::anonymous::ALLOWED_METHODS.join(", ")
                    ),
                );
            }
        }
        for pattern in &auth.anonymous_tools {
            if pattern.is_empty() {
                err("auth.anonymous_tools", "entries must not be empty".into());
            } else if let Err(e) = globset::Glob::new(pattern) {
                err("auth.anonymous_tools", format!("`{pattern}`: {e}"));
            }
        }
    }
    for (advertised, checked) in &auth.scope_map {
        for name in [advertised, checked] {
            if let Err(e) = Scope::parse(name) {
                err("auth.scope_map", e.to_string());
            }
        }
        if auth.scope_map.values().filter(|c| *c == checked).count() > 1 {
            err(
                "auth.scope_map",
                format!(
                    "`{checked}` is the checked name of more than one advertised scope; which one should clients request?"
                ),
            );
        }
    }
    if auth.audience.iter().any(String::is_empty) {
        err("auth.audience", "entries must not be empty".into());
    }
    if auth.max_token_bytes == 0 {
        err("auth.max_token_bytes", "must be greater than zero".into());
    }

    // Authorization policy, trimming, audit.
    if let Err(problems) =
        mcpgate_guard::policy::Policy::compile(&config.authorization, &config.policy)
    {
        for p in problems {
            err(&p.key, p.problem);
        }
    }
    if let Err(problems) = mcpgate_guard::policy::lists::Trim::new(
        "upstream",
        &config.upstream.expose,
        &config.upstream.hide,
    ) {
        for p in problems {
            err(&p.key, p.problem);
        }
    }
    if let Err(problems) = crate::ratelimit::RateLimits::compile(&config.rate_limit) {
        for p in problems {
            err(&p.key, p.problem);
        }
    }
    for field in &config.audit.include {
        if field != "arguments" {
            err(
                "audit.include",
                format!("`{field}` is not an optional audit field (there is: arguments)"),
            );
        }
    }
    if let crate::audit::Output::File(path) = crate::audit::Output::parse(&config.audit.output)
        && path
            .parent()
            .is_some_and(|d| !d.as_os_str().is_empty() && !d.is_dir())
    {
        err(
            "audit.output",
            format!("the directory of `{}` does not exist", path.display()),
        );
    }

    // Sessions and HTTP.
    if let Some(key) = &config.session.key
        && let Err(problem) = session_key(key.expose())
    {
        err("session.key", problem);
    }
    for origin in &config.http.allowed_origins {
        match url::Url::parse(origin) {
            Ok(u)
                if origin != "null"
                    && u.host_str().is_some()
                    && matches!(u.scheme(), "http" | "https") => {}
            _ if origin == "null" => {}
            _ => err(
                "http.allowed_origins",
                format!("`{origin}` is not an origin such as https://app.example.com"),
            ),
        }
    }
    for host in &config.http.allowed_hosts {
        if host.is_empty() || host.contains(['/', ' ']) {
            err(
                "http.allowed_hosts",
                format!("`{host}` is not a host or host:port"),
            );
        }
    }
    if config.upstream.max_response_bytes == 0 {
        err(
            "upstream.max_response_bytes",
            "must be greater than zero".into(),
        );
    }
    if config.http.unauthenticated_per_address != "off"
        && let Err(problem) =
            crate::ratelimit::Rate::parse(&config.http.unauthenticated_per_address)
    {
        err("http.unauthenticated_per_address", problem);
    }
    for proxy in &config.http.trusted_proxies {
        if crate::listener::parse_net(proxy).is_none() {
            err(
                "http.trusted_proxies",
                format!("`{proxy}` is not an IP address or CIDR range (10.0.0.0/8, ::1)"),
            );
        }
    }
    for (key, value) in [
        ("http.max_connections", config.http.max_connections),
        (
            "http.max_connections_per_address",
            config.http.max_connections_per_address,
        ),
        (
            "http.max_body_bytes_in_flight",
            config.http.max_body_bytes_in_flight,
        ),
    ] {
        if value == 0 {
            err(key, "must be greater than zero".into());
        }
    }
    for (key, value) in [
        ("http.header_timeout", config.http.header_timeout),
        ("http.body_timeout", config.http.body_timeout),
    ] {
        if value.is_zero() {
            err(key, "must be longer than zero".into());
        }
    }
    if config.http.max_body_bytes_in_flight < config.http.max_body_bytes {
        err(
            "http.max_body_bytes_in_flight",
            format!(
                "must be at least http.max_body_bytes ({}), or no body of the largest size could be read",
                config.http.max_body_bytes
            ),
        );
    }
    if config.http.max_body_bytes == 0 {
        err("http.max_body_bytes", "must be greater than zero".into());
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        err(
            "log.level",
            format!("`{}` is not a valid filter: {e}", config.log.level),
        );
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

impl super::AuthConfig {
    fn forward_token_misused(&self, config: &Config) -> bool {
        config.upstream.forward_token
            && !matches!(self.mode, AuthMode::Jwt | AuthMode::Introspection)
    }
}

/// Parses the algorithm allow-list (empty: all).
pub(crate) fn algorithms(names: &[String]) -> Result<Vec<Algorithm>, String> {
    if names.is_empty() {
        return Ok(mcpgate_guard::ALL_ALGORITHMS.to_vec());
    }
    names
        .iter()
        .map(|n| {
            Algorithm::from_str(n).map_err(|_| {
                format!("`{n}` is not a supported algorithm (RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512)")
            })
        })
        .collect()
}

/// Decodes a session key: 32 bytes, base64 (standard or URL-safe).
pub(crate) fn session_key(value: &str) -> Result<[u8; 32], String> {
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ];
    let bytes = engines
        .iter()
        .find_map(|e| e.decode(value.trim()).ok())
        .or_else(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(value.trim())
                .ok()
        })
        .ok_or("is not base64; make one with `openssl rand -base64 32`")?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("is {} bytes; it must be exactly 32", b.len()))
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
