//! From the `[auth]` configuration to a protected resource and the layer that guards `/mcp`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Response;
use axum::middleware::Next;
use mcpgate_guard::challenge::ScopeNames;
use mcpgate_guard::{
    Audience, BearerAuthLayer, ClaimRules, ClientAuth, ClientId, IntrospectionVerifier,
    IssuerPattern, Issuers, JwksOptions, JwtVerifier, Principal, ProtectedResource, ResourceUrl,
    Scope, StaticTokens, Subject, TokenVerifier, bearer_token,
};

use crate::config::{AuthMode, Config, IntrospectionAuthMethod};

/// How `/mcp` is guarded.
pub enum Guard {
    /// Nothing (`none`).
    Open,
    /// A bearer header must be present; it is not checked here (`passthrough`).
    PresenceOnly,
    /// Tokens are verified.
    Verify(Arc<dyn TokenVerifier>),
}

/// The protected resource as configured.
pub fn protected_resource(config: &Config) -> Result<ProtectedResource, String> {
    let base = config.public_url();
    let resource = ResourceUrl::parse(&format!("{}/mcp", base.as_str().trim_end_matches('/')))
        .map_err(|e| format!("public_url: {e}"))?;
    let mut pr = ProtectedResource::new(resource).resource_name("mcpgate");
    let servers = if config.auth.authorization_servers.is_empty() {
        let mut all: Vec<String> = config.auth.issuer_url.iter().cloned().collect();
        for issuer in &config.auth.issuers {
            all.extend(issuer_pattern(issuer)?.issuers());
        }
        all
    } else {
        config.auth.authorization_servers.clone()
    };
    for server in servers {
        pr = pr.authorization_server(server);
    }
    let advertised = config
        .auth
        .scopes_supported
        .as_ref()
        .unwrap_or(&config.auth.required_scopes);
    let names = scope_names(config);
    Ok(
        pr.scopes_supported(
            names.advertise(&advertised.iter().map(Scope::new).collect::<Vec<_>>()),
        ),
    )
}

/// How scopes are named to clients (`auth.scope_map`).
pub fn scope_names(config: &Config) -> ScopeNames {
    ScopeNames::new(
        config
            .auth
            .scope_map
            .iter()
            .map(|(advertised, checked)| (Scope::new(advertised), Scope::new(checked))),
    )
}

/// Builds the guard for the configured mode.
pub fn guard(config: &Config, resource: &ProtectedResource) -> Result<Guard, String> {
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
    let cache_capacity = 10_000;
    Ok(match auth.mode {
        AuthMode::None => Guard::Open,
        AuthMode::Passthrough => Guard::PresenceOnly,
        AuthMode::Static => {
            let tokens = auth.static_tokens.iter().map(|t| {
                let mut p = Principal::builder(Subject::new(&t.subject))
                    .scopes(t.scopes.iter().map(Scope::new));
                if let Some(c) = &t.client_id {
                    p = p.client_id(ClientId::new(c));
                }
                (t.token.expose().to_owned(), p.build())
            });
            Guard::Verify(Arc::new(StaticTokens::new(tokens)))
        }
        AuthMode::Jwt if !auth.issuers.is_empty() => {
            let allowed = crate::config::validate_algorithms(&auth.algorithms)?;
            let options = JwksOptions {
                min_refresh_interval: auth.jwks_refresh_interval,
                max_age: auth.jwks_max_age,
                ..JwksOptions::default()
            };
            let mut issuers = Issuers::new().max_token_bytes(auth.max_token_bytes);
            let base = |issuer: Option<String>, audience: &[String]| {
                let mut r = rules();
                r.issuer = issuer;
                if !audience.is_empty() {
                    r.audiences = audience.iter().map(Audience::new).collect();
                }
                JwtVerifier::builder(r)
                    .algorithms(allowed.clone())
                    .max_token_bytes(auth.max_token_bytes)
                    .cache(cache_capacity, auth.cache_ttl)
            };
            if let Some(issuer) = &auth.issuer_url {
                let mut builder = base(Some(issuer.clone()), &[]);
                if let Some(url) = &auth.jwks_uri {
                    builder = builder.jwks(url.clone(), options.clone());
                } else if let Some(path) = &auth.jwt_public_key {
                    builder = builder.public_key_pem(read_pem("auth.jwt_public_key", path)?);
                } else if let Some(secret) = &auth.hmac_secret {
                    builder = builder.hmac_secret(secret.expose().as_bytes().to_vec());
                } else {
                    builder = builder.jwks_from_issuer(issuer.clone(), options.clone());
                }
                let verifier = builder.build().map_err(|e| format!("auth: {e}"))?;
                issuers = issuers.issuer(IssuerPattern::exact(issuer.clone()), verifier);
            }
            for (i, entry) in auth.issuers.iter().enumerate() {
                let pattern = issuer_pattern(entry)?;
                let exact = matches!(pattern, IssuerPattern::Exact(_));
                // A template's issuer is checked against its tenants by `Issuers`.
                let mut builder = base(exact.then(|| entry.issuer_url.clone()), &entry.audience);
                if let Some(url) = &entry.jwks_uri {
                    builder = builder.jwks(url.clone(), options.clone());
                } else if let Some(path) = &entry.jwt_public_key {
                    builder = builder.public_key_pem(read_pem(
                        &format!("auth.issuers[{i}].jwt_public_key"),
                        path,
                    )?);
                } else {
                    builder = builder.jwks_from_issuer(entry.issuer_url.clone(), options.clone());
                }
                let verifier = builder
                    .build()
                    .map_err(|e| format!("auth.issuers[{i}]: {e}"))?;
                issuers = issuers.issuer(pattern, verifier);
            }
            Guard::Verify(Arc::new(issuers))
        }
        AuthMode::Jwt => {
            let allowed = crate::config::validate_algorithms(&auth.algorithms)?;
            let mut builder = JwtVerifier::builder(rules())
                .algorithms(allowed)
                .max_token_bytes(auth.max_token_bytes)
                .cache(cache_capacity, auth.cache_ttl);
            if let Some(url) = &auth.jwks_uri {
                let options = JwksOptions {
                    min_refresh_interval: auth.jwks_refresh_interval,
                    max_age: auth.jwks_max_age,
                    ..JwksOptions::default()
                };
                builder = builder.jwks(url.clone(), options);
            } else if let Some(path) = &auth.jwt_public_key {
                let pem = std::fs::read(path).map_err(|e| {
                    format!("auth.jwt_public_key: cannot read `{}`: {e}", path.display())
                })?;
                builder = builder.public_key_pem(pem);
            } else if let Some(secret) = &auth.hmac_secret {
                builder = builder.hmac_secret(secret.expose().as_bytes().to_vec());
            } else if let Some(issuer) = &auth.issuer_url {
                // No key source given: the issuer's metadata names its JWKS.
                let options = JwksOptions {
                    min_refresh_interval: auth.jwks_refresh_interval,
                    max_age: auth.jwks_max_age,
                    ..JwksOptions::default()
                };
                builder = builder.jwks_from_issuer(issuer.clone(), options);
            }
            Guard::Verify(Arc::new(builder.build().map_err(|e| format!("auth: {e}"))?))
        }
        AuthMode::Introspection => {
            let url = auth
                .introspection_url
                .clone()
                .ok_or("auth.introspection_url: required")?;
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
                .cache(
                    cache_capacity,
                    auth.cache_ttl.min(std::time::Duration::from_secs(60)),
                )
                .build()
                .map_err(|e| e.to_string())?;
            Guard::Verify(Arc::new(verifier))
        }
        AuthMode::Issuer => {
            return Err("auth.mode: `issuer` is not available in this release".into());
        }
    })
}

/// What `iss` values an `[[auth.issuers]]` entry accepts.
fn issuer_pattern(entry: &crate::config::IssuerConfig) -> Result<IssuerPattern, String> {
    if entry.issuer_url.contains("{tenant}") {
        IssuerPattern::tenants(&entry.issuer_url, entry.tenants.iter().cloned())
            .map_err(|e| format!("auth.issuers: `{}`: {e}", entry.issuer_url))
    } else {
        Ok(IssuerPattern::exact(entry.issuer_url.clone()))
    }
}

fn read_pem(key: &str, path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key}: cannot read `{}`: {e}", path.display()))
}

/// The layer that verifies tokens for `/mcp`.
pub fn layer(
    verifier: Arc<dyn TokenVerifier>,
    resource: &ProtectedResource,
    config: &Config,
) -> BearerAuthLayer {
    BearerAuthLayer::from_arc(verifier, resource)
        .allow_anonymous(
            !config.auth.anonymous_methods.is_empty() || !config.auth.anonymous_tools.is_empty(),
        )
        .scope_names(scope_names(config))
        .required_scopes(config.auth.required_scopes.iter().map(Scope::new))
}

/// Where challenges point, for the `passthrough` middleware.
#[derive(Clone)]
pub struct PresenceState {
    /// The metadata URL.
    pub resource_metadata: String,
}

/// `passthrough`: refuse requests without a well-formed bearer header (with the same
/// challenges as the verifying modes); the token itself is the upstream's to check.
pub async fn require_presence(
    State(state): State<Arc<PresenceState>>,
    request: Request,
    next: Next,
) -> Response<Body> {
    match bearer_token(request.headers(), request.uri()) {
        Ok(_) => next.run(request).await,
        Err(denial) => denial
            .into_response(&state.resource_metadata, &[])
            .map(Body::from),
    }
}
