//! The router, built in one place, and the server's life: bind, serve, shut down.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::auth::{self, Guard, PresenceState};
use crate::config::{AuthMode, Config, StdioSessionMode, interpolate, session_key};
use crate::dns_rebinding::{self, HostPolicy};
use crate::health::{self, Health};
use crate::listener::ClientAddress;
use crate::proxy::{self, Gateway, IdentityHeaders, TokenForwarding};
use crate::refusal::retry_after;
use crate::session::SessionSealer;
use crate::upstream::Upstream;
use crate::upstream::http::{HttpUpstream, HttpUpstreamOptions};
use crate::upstream::stdio::process::CommandSpec;
use crate::upstream::stdio::{SessionMode, StdioOptions, StdioUpstream};

/// A gateway ready to serve: the router and what start-up should report.
pub struct Prepared {
    /// The application.
    pub router: Router,
    /// The verifier, to warm up before serving.
    pub verifier: Option<Arc<dyn mcpgate_guard::TokenVerifier>>,
    /// The protected resource URL.
    pub resource: String,
    /// A stdio upstream, whose children are stopped at shutdown.
    pub stdio: Option<Arc<StdioUpstream>>,
    /// Connection limits.
    pub limits: crate::listener::Limits,
}

/// Builds the application from a validated configuration.
pub fn prepare(config: &Config) -> Result<Prepared, String> {
    let resource = auth::protected_resource(config)?;
    let guard = auth::guard(config, &resource)?;

    let upstream = match &config.upstream.command {
        Some(command) => Upstream::Stdio(StdioUpstream::new(stdio_options(config, command)?)),
        None => Upstream::Http(http_upstream(config)?),
    };

    let sessions = match &config.session.key {
        Some(key) => SessionSealer::new(
            &session_key(key.expose()).map_err(|p| format!("session.key: {p}"))?,
            config.session.max_age,
        ),
        None => {
            tracing::warn!(
                "session.key is not set: a random key was generated. Sessions end when this process does, and replicas cannot share them. Set session.key (openssl rand -base64 32) for production."
            );
            SessionSealer::random(config.session.max_age)
        }
    };
    let header = |name: &Option<String>| name.as_deref().and_then(|n| HeaderName::try_from(n).ok());
    let identity = IdentityHeaders {
        subject: header(&config.upstream.identity_headers.subject),
        client_id: header(&config.upstream.identity_headers.client_id),
        scopes: header(&config.upstream.identity_headers.scopes),
    };
    let token = match config.auth.mode {
        AuthMode::Passthrough => TokenForwarding::Forward,
        AuthMode::Jwt | AuthMode::Introspection if config.upstream.forward_token => {
            TokenForwarding::Forward
        }
        _ => TokenForwarding::Strip,
    };
    let verifier = match &guard {
        Guard::Verify(v) => Some(Arc::clone(v)),
        _ => None,
    };
    let stdio = match &upstream {
        Upstream::Stdio(s) => Some(Arc::clone(s)),
        Upstream::Http(_) => None,
    };
    let enforcer = {
        let required: Vec<mcpgate_guard::Scope> = config
            .auth
            .required_scopes
            .iter()
            .map(mcpgate_guard::Scope::new)
            .collect();
        let policy = mcpgate_guard::policy::Policy::compile(&config.authorization, &config.policy)
            .map_err(|e| {
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            })?
            .with_required_scopes(&required);
        let trim = mcpgate_guard::policy::lists::Trim::new(
            "upstream",
            &config.upstream.expose,
            &config.upstream.hide,
        )
        .map_err(|e| {
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let audit = crate::audit::Audit::start(
            crate::audit::Output::parse(&config.audit.output),
            config.audit.include.iter().any(|f| f == "arguments"),
        )
        .map_err(|e| format!("audit.output: cannot open `{}`: {e}", config.audit.output))?;
        let limits = crate::ratelimit::RateLimits::compile(&config.rate_limit).map_err(|e| {
            e.iter()
                .map(|p| format!("{}: {}", p.key, p.problem))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let enforcer = crate::enforce::Enforcer::new(
            policy,
            trim,
            config.authorization.validate_arguments,
            Arc::new(audit),
            resource.metadata_url().to_string(),
            limits,
        )
        .with_scope_names(crate::auth::scope_names(config));
        let enforcer = enforcer.is_active().then(|| Arc::new(enforcer));
        if let Some(e) = &enforcer {
            // Rate-limit allowances that are full again are forgotten: memory follows the
            // recent callers, not every caller ever seen.
            let janitor = Arc::downgrade(e);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    let Some(e) = janitor.upgrade() else { return };
                    e.forget_idle();
                }
            });
        }
        enforcer
    };
    let gateway = Arc::new(Gateway {
        enforcer,
        upstream,
        sessions,
        token,
        identity,
        max_message_bytes: config.upstream.max_response_bytes,
        max_body_bytes: config.http.max_body_bytes,
        body_timeout: config.http.body_timeout,
        bodies: Arc::new(tokio::sync::Semaphore::new(
            config
                .http
                .max_body_bytes_in_flight
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        )),
        anonymous: match &guard {
            Guard::Verify(_) => crate::anonymous::Anonymous::new(
                &config.auth.anonymous_methods,
                &config.auth.anonymous_tools,
                resource.metadata_url().to_string(),
                config
                    .auth
                    .required_scopes
                    .iter()
                    .map(mcpgate_guard::Scope::new)
                    .collect(),
                crate::auth::scope_names(config),
            )?,
            _ => None,
        },
    });
    let health = Arc::new(Health::new(Arc::clone(&gateway), verifier.clone()));

    let mut mcp = Router::new()
        .route(
            "/mcp",
            axum::routing::post(proxy::post)
                .get(proxy::get)
                .delete(proxy::delete)
                .fallback(proxy::other_method),
        )
        .with_state(Arc::clone(&gateway));
    mcp = match guard {
        Guard::Open => mcp,
        Guard::PresenceOnly => {
            let state = Arc::new(PresenceState {
                resource_metadata: resource.metadata_url().to_string(),
            });
            mcp.route_layer(axum::middleware::from_fn_with_state(
                state,
                auth::require_presence,
            ))
        }
        Guard::Verify(v) => mcp.route_layer(auth::layer(v, &resource, config)),
    };
    // Addresses refused for lack of valid credentials too often wait (outside the auth layer,
    // so that it sees the 401s).
    let unauthenticated =
        match crate::ratelimit::Rate::parse(&config.http.unauthenticated_per_address) {
            Ok(rate) if config.http.unauthenticated_per_address != "off" => {
                let limiter = Arc::new(crate::ratelimit::Unauthenticated::new(rate));
                let janitor = Arc::downgrade(&limiter);
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(60));
                    loop {
                        tick.tick().await;
                        let Some(l) = janitor.upgrade() else { return };
                        l.forget_idle();
                    }
                });
                Some(limiter)
            }
            _ => None,
        };

    let metadata = Arc::new(resource.clone());
    let mut wellknown = Router::new();
    for path in resource.well_known_paths() {
        let metadata = Arc::clone(&metadata);
        wellknown = wellknown.route(
            &path,
            get(move || async move { metadata.response().map(Body::from) }),
        );
    }

    let trusted: Arc<Vec<ipnet::IpNet>> = Arc::new(
        config
            .http
            .trusted_proxies
            .iter()
            .filter_map(|p| crate::listener::parse_net(p))
            .collect(),
    );
    let front = Arc::new(Front {
        hosts: HostPolicy::new(
            &config.public_url(),
            config.listen.ip().is_loopback(),
            &config.http.allowed_hosts,
            &config.http.allowed_origins,
        ),
        trusted: Arc::clone(&trusted),
        unauthenticated,
        verifier: verifier.clone(),
        counts_anonymous: gateway.anonymous.is_some(),
    });
    let cors = cors_layer();
    let app = Router::new()
        .merge(mcp)
        .fallback(not_found)
        .layer(cors)
        .layer(axum::middleware::from_fn_with_state(front, front_door));
    // Health routes sit outside the Host check (probes reach pods by IP), and so does the public
    // metadata (browser-based clients read it from any origin; it is served with CORS `*`).
    let mut ops = wellknown
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(health);
    if config.metrics.enabled {
        crate::metrics::install();
        ops = ops.route("/metrics", get(crate::metrics::render));
    }
    let app = ops.merge(app);

    // Behind a reverse proxy that keeps a path prefix (`https://example.com/team-a/mcp`), the
    // same routes answer under the prefix too.
    let prefix = config.public_url().path().trim_end_matches('/').to_owned();
    let router = if prefix.is_empty() {
        app
    } else {
        Router::new().nest(&prefix, app.clone()).merge(app)
    };
    Ok(Prepared {
        router,
        verifier,
        resource: resource.resource().to_string(),
        stdio,
        limits: crate::listener::Limits {
            header_timeout: config.http.header_timeout,
            max_connections: crate::listener::connection_ceiling(config.http.max_connections),
            per_address: config.http.max_connections_per_address,
            trusted,
        },
    })
}

fn http_upstream(config: &Config) -> Result<HttpUpstream, String> {
    let upstream_url = config
        .upstream
        .url
        .clone()
        .ok_or("upstream.url: required")?;
    let mut extra_headers = axum::http::HeaderMap::new();
    for (name, value) in &config.upstream.headers {
        let key = format!("upstream.headers.{name}");
        let value = interpolate(value.expose()).map_err(|p| format!("{key}: {p}"))?;
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| format!("{key}: not a valid header name"))?;
        let mut value =
            HeaderValue::try_from(value).map_err(|_| format!("{key}: not a valid header value"))?;
        value.set_sensitive(true);
        extra_headers.insert(name, value);
    }
    let forward_extra = config
        .upstream
        .forward_headers
        .iter()
        .map(|h| {
            HeaderName::try_from(h.as_str())
                .map_err(|_| format!("upstream.forward_headers: `{h}` is not a header name"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    HttpUpstream::new(HttpUpstreamOptions {
        url: upstream_url,
        extra_headers,
        forward_extra,
        connect_timeout: config.upstream.connect_timeout,
        response_timeout: config.upstream.timeout,
        idle_timeout: config.upstream.idle_timeout,
        max_response_bytes: config.upstream.max_response_bytes,
    })
}

/// The stdio upstream's settings; the child's environment is built here, once: the inherited
/// variables that are set, then `upstream.env` with `${VAR}` replaced.
fn stdio_options(config: &Config, command: &[String]) -> Result<StdioOptions, String> {
    let up = &config.upstream;
    let mut env: Vec<(String, String)> = up
        .inherit_env
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| (name.clone(), v)))
        .collect();
    for (name, value) in &up.env {
        let value = interpolate(value.expose()).map_err(|p| format!("upstream.env.{name}: {p}"))?;
        env.retain(|(k, _)| k != name);
        env.push((name.clone(), value));
    }
    Ok(StdioOptions {
        command: CommandSpec {
            argv: command
                .iter()
                .map(|a| interpolate(a).map_err(|p| format!("upstream.command: {p}")))
                .collect::<Result<_, _>>()?,
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

/// CORS for browser-based clients. The Origin has already passed the DNS-rebinding check (the
/// outer layer), which is the one place that decides which origins are allowed; CORS only
/// tells the browser so.
fn cors_layer() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        // The origin is checked; any request header the browser asks for (the MCP ones,
        // `Mcp-Param-*`, `Authorization`) may then be sent.
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            header::WWW_AUTHENTICATE,
            HeaderName::from_static("mcp-session-id"),
        ])
        .max_age(Duration::from_secs(600))
}

async fn not_found() -> Response {
    crate::proxy::message::text_response(StatusCode::NOT_FOUND, "Not Found")
}

/// What every request to `/mcp` (and unknown routes) passes first, in one middleware: the
/// client's address ([`ClientAddress`]: the peer's, or the one a trusted proxy names), the
/// Host and Origin checks (DNS rebinding), and the per-address limit on requests without valid
/// credentials.
struct Front {
    hosts: HostPolicy,
    trusted: Arc<Vec<ipnet::IpNet>>,
    unauthenticated: Option<Arc<crate::ratelimit::Unauthenticated>>,
    /// Lets callers whose token it accepted recently through a blocked address.
    verifier: Option<Arc<dyn mcpgate_guard::TokenVerifier>>,
    /// Whether requests without credentials are served (anonymous access), and so counted.
    counts_anonymous: bool,
}

async fn front_door(
    axum::extract::State(front): axum::extract::State<Arc<Front>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<crate::listener::Peer>()
        .map(|p| crate::listener::client_address(p.0.ip(), request.headers(), &front.trusted));
    if let Some(ip) = ip {
        request.extensions_mut().insert(ClientAddress(ip));
    }
    if let Some(refusal) = dns_rebinding::check(&front.hosts, &request) {
        return refusal;
    }
    let Some(limiter) = &front.unauthenticated else {
        return next.run(request).await;
    };
    let blocked = ip.and_then(|ip| limiter.blocked(ip)).filter(|_| {
        !front.verifier.as_ref().is_some_and(|v| {
            mcpgate_guard::bearer_token(request.headers(), request.uri())
                .is_ok_and(|t| v.known_good(t))
        })
    });
    if let (Some(ip), Some(wait)) = (ip, blocked) {
        crate::metrics::unauthenticated_limited();
        tracing::info!(target: "mcpgate::auth", address = %ip, "refused: too many requests without valid credentials from this address");
        let mut r = crate::proxy::message::error_response(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            crate::proxy::message::RATE_LIMITED,
            "Too Many Requests: too many requests without valid credentials from this address",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, retry_after(wait));
        return r;
    }
    // Requests without credentials count too: anonymous access (when on) is bounded per
    // address like refusals.
    let anonymous =
        front.counts_anonymous && !request.headers().contains_key(header::AUTHORIZATION);
    let response = next.run(request).await;
    if (response.status() == StatusCode::UNAUTHORIZED || anonymous)
        && let Some(ip) = ip
    {
        limiter.refused(ip);
    }
    response
}

/// Serves until SIGINT/SIGTERM, then lets requests finish for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: crate::listener::Limits,
    grace: Duration,
    stdio: Option<Arc<StdioUpstream>>,
) -> std::io::Result<()> {
    let stop = async move {
        shutdown_signal().await;
        tracing::info!(
            "shutting down: no new connections; waiting up to {grace:?} for requests in flight"
        );
        if let Some(stdio) = &stdio {
            // Streams that wait for server messages are not requests in flight: they end now.
            stdio.drain();
        }
    };
    crate::listener::serve(listener, router, limits, stop, grace).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
