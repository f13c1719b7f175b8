//! The router, composed in one place, and the server's one lifecycle: start what the plan
//! needs, warm up, serve, drain, stop.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::auth::{Admission, Guard};
use crate::config::{Plan, Target};
use crate::dns_rebinding::{self, HostPolicy};
use crate::endpoint::{App, Front, Parts};
use crate::health::{self, Health};
use crate::listener::ClientAddress;
use crate::proxy::Gateway;
use crate::session::SessionSealer;
use crate::upstream::Upstream;
use crate::upstream::http::HttpUpstream;
use crate::upstream::stdio::StdioUpstream;

/// A gateway ready to serve: the router and what start-up should report.
pub struct Prepared {
    /// The application.
    pub router: App,
    /// The verifier, to warm up before serving.
    pub verifier: Option<Arc<dyn mcpgate_guard::TokenVerifier>>,
    /// The protected resource URL.
    pub resource: String,
    /// A stdio upstream, whose children are stopped at shutdown.
    pub stdio: Option<Arc<StdioUpstream>>,
    /// Connection limits.
    pub limits: crate::listener::Limits,
}

/// Starts what the plan needs before it can serve — the built-in issuer in `issuer` mode
/// (its store in `data_dir`, its keys) — then composes the application.
pub async fn start(plan: Plan) -> Result<Prepared, String> {
    let issuer = match &plan.issuer {
        None => None,
        Some(issuer) => {
            let store = mcpgate_issuer::store::sqlite::SqliteStore::open(&plan.data_dir)
                .await
                .map_err(|e| format!("data_dir: {e}"))?;
            let issuer = mcpgate_issuer::issuer::Issuer::start(
                issuer.settings.clone(),
                std::sync::Arc::new(store),
            )
            .await
            .map_err(|e| format!("issuer: {e}"))?;
            tracing::info!(issuer = issuer.issuer_id().as_str(), data_dir = %plan.data_dir.display(), "built-in authorization server started");
            Some(issuer)
        }
    };
    prepare_with(plan, issuer)
}

/// Composes the application from a built plan (not in `issuer` mode: see [`start`]).
pub fn prepare(plan: Plan) -> Result<Prepared, String> {
    prepare_with(plan, None)
}

/// Composes the application from a built plan and the started issuer, if any: each part's
/// router and layers, in one place. What can fail here is what only running can tell
/// (opening the audit file, starting the upstream's HTTP client); everything else was
/// checked when the plan was built.
pub fn prepare_with(
    plan: Plan,
    issuer: Option<Arc<mcpgate_issuer::issuer::Issuer>>,
) -> Result<Prepared, String> {
    let Plan {
        public_url,
        upstream,
        mut auth,
        policy,
        audit,
        session,
        http,
        log,
        ..
    } = plan;
    let resource = auth.resource;
    if let Guard::Issuer = auth.guard {
        let issuer = issuer
            .as_ref()
            .ok_or("`issuer` mode: the issuer was not started (use server::start)")?;
        let verifier = issuer
            .token_verifier()
            .map_err(|e| format!("issuer: {e}"))?;
        auth.guard = Guard::Verify(Arc::new(verifier));
    }

    let target = match upstream.target {
        Target::Stdio(options) => Upstream::Stdio(StdioUpstream::new(options)),
        Target::Http(options) => Upstream::Http(HttpUpstream::new(options)?),
    };
    let sessions = match &session.key {
        Some(key) => SessionSealer::new(key, session.max_age),
        None => {
            tracing::warn!(
                "session.key is not set: a random key was generated. Sessions end when this process does, and replicas cannot share them. Set session.key (openssl rand -base64 32) for production."
            );
            SessionSealer::random(session.max_age)
        }
    };
    let verifier = match &auth.guard {
        Guard::Verify(v) => Some(Arc::clone(v)),
        _ => None,
    };
    let stdio = match &target {
        Upstream::Stdio(s) => Some(Arc::clone(s)),
        Upstream::Http(_) => None,
    };
    let enforcer = {
        let audit =
            crate::audit::Audit::start(audit.output.clone(), audit.arguments).map_err(|e| {
                match &audit.output {
                    crate::audit::Output::File(path) => {
                        format!("audit.output: cannot open `{}`: {e}", path.display())
                    }
                    _ => format!("audit.output: {e}"),
                }
            })?;
        let enforcer = crate::proxy::enforce::Enforcer::new(
            policy.policy,
            policy.trim,
            policy.validate_arguments,
            Arc::new(audit),
            resource.metadata_url().to_string(),
            policy.rate_limits,
        )
        .with_scope_names(auth.scope_names.clone());
        let enforcer = enforcer.is_active().then(|| Arc::new(enforcer));
        if let Some(e) = &enforcer {
            // Rate-limit allowances that are full again are forgotten: memory follows the
            // recent callers, not every caller ever seen.
            every_minute(Arc::downgrade(e), |e| e.forget_idle());
        }
        enforcer
    };
    let allow_anonymous = auth.anonymous.is_some();
    let gateway = Arc::new(Gateway {
        enforcer,
        upstream: target,
        sessions,
        token: upstream.token,
        identity: upstream.identity,
        max_message_bytes: upstream.max_message_bytes,
        max_body_bytes: http.max_body_bytes,
        body_timeout: http.body_timeout,
        bodies: crate::budget::of(http.max_body_bytes_in_flight),
        anonymous: auth.anonymous,
        verifier: verifier.clone(),
    });
    let health = Arc::new(Health::new(Arc::clone(&gateway), verifier.clone()));

    let admission = match auth.guard {
        Guard::Open => Admission::Open,
        Guard::PresenceOnly => Admission::Presence {
            resource_metadata: resource.metadata_url().to_string(),
        },
        Guard::Verify(v) => Admission::verify(
            v,
            &resource,
            allow_anonymous,
            auth.scope_names,
            &auth.required_scopes,
        ),
        Guard::Issuer => unreachable!("replaced by the issuer's verifier above"),
    };
    // Addresses refused for lack of valid credentials too often wait (outside the auth layer,
    // so that it sees the 401s).
    let unauthenticated = http.unauthenticated.map(|rate| {
        let limiter = Arc::new(crate::ratelimit::Unauthenticated::new(rate));
        every_minute(Arc::downgrade(&limiter), |l| l.forget_idle());
        limiter
    });

    let metadata = Arc::new(resource.clone());
    let mut wellknown = Router::new();
    for path in resource.well_known_paths() {
        let metadata = Arc::clone(&metadata);
        wellknown = wellknown.route(
            &path,
            get(move || async move { metadata.response().map(Body::from) }),
        );
    }

    let issuer_routes = issuer.as_ref().map(|issuer| {
        let door = Arc::new(IssuerDoor {
            hosts: http.hosts.clone(),
            trusted: Arc::clone(&http.limits.trusted),
        });
        issuer
            .router()
            .layer(cors_layer())
            .layer(axum::middleware::from_fn_with_state(door, issuer_door))
    });
    let front = Arc::new(Front {
        hosts: http.hosts,
        trusted: Arc::clone(&http.limits.trusted),
        unauthenticated,
        verifier: verifier.clone(),
        counts_anonymous: gateway.anonymous.is_some(),
    });
    // Unknown paths pass the same front door as the endpoint.
    let unknown = Router::new()
        .fallback(not_found)
        .layer(CorsWhenAsked(cors_layer()))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&front),
            front_door,
        ));
    // Health routes sit outside the Host check (probes reach pods by IP), and so does the public
    // metadata (browser-based clients read it from any origin; it is served with CORS `*`).
    let mut ops = wellknown
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(health);
    if log.metrics {
        crate::metrics::install();
        ops = ops.route("/metrics", get(crate::metrics::render));
    }
    let rest = ops.merge(unknown);

    // Behind a reverse proxy that keeps a path prefix (`https://example.com/team-a/mcp`), the
    // same routes answer under the prefix too.
    let prefix = public_url.path().trim_end_matches('/').to_owned();
    let mut paths = vec!["/mcp".to_owned()];
    let mut rest = if prefix.is_empty() {
        rest
    } else {
        paths.push(format!("{prefix}/mcp"));
        Router::new().nest(&prefix, rest.clone()).merge(rest)
    };
    // The issuer's routes carry its own path (the public URL's), and its well-known
    // documents sit at the origin's root: merged at the top.
    if let Some(routes) = issuer_routes {
        rest = rest.merge(routes);
    }
    let router = App::from(Parts {
        paths,
        front,
        cors: cors_layer(),
        admission,
        gateway,
        rest,
    });
    Ok(Prepared {
        router,
        verifier,
        resource: resource.resource().to_string(),
        stdio,
        limits: http.limits,
    })
}

/// Runs `tidy` on what `weak` points at every minute, until it is gone.
fn every_minute<T: Send + Sync + 'static>(
    weak: std::sync::Weak<T>,
    tidy: impl Fn(&T) + Send + 'static,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Some(it) = weak.upgrade() else { return };
            tidy(&it);
        }
    });
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

/// CORS for the requests that carry an `Origin` — every request a browser sends across origins,
/// and every preflight — and nothing for the others (MCP clients that are not browsers: the
/// hot path), whose answers CORS headers would not change.
#[derive(Clone)]
struct CorsWhenAsked(CorsLayer);

impl<S: Clone> tower::Layer<S> for CorsWhenAsked {
    type Service = CorsOrPlain<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CorsOrPlain {
            cors: Arc::new(self.0.clone()),
            inner,
        }
    }
}

/// See [`CorsWhenAsked`]. The router clones this for every request: the CORS settings are
/// shared, and wrapped around the inner service only for a request that needs them.
#[derive(Clone)]
struct CorsOrPlain<S> {
    cors: Arc<CorsLayer>,
    inner: S,
}

impl<S, B, RB> tower::Service<axum::http::Request<B>> for CorsOrPlain<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<RB>> + Clone,
    RB: Default,
{
    type Response = axum::http::Response<RB>;
    type Error = S::Error;
    type Future = futures::future::Either<tower_http::cors::ResponseFuture<S::Future>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        if request.headers().contains_key(header::ORIGIN) {
            // The ready service goes into the CORS wrapper; a clone stays behind.
            let fresh = self.inner.clone();
            let ready = std::mem::replace(&mut self.inner, fresh);
            futures::future::Either::Left(tower::Layer::layer(&*self.cors, ready).call(request))
        } else {
            futures::future::Either::Right(self.inner.call(request))
        }
    }
}

async fn not_found() -> Response {
    crate::jsonrpc::text_response(StatusCode::NOT_FOUND, "Not Found")
}

/// What every request to the built-in issuer passes first: the client's address (for its
/// per-address limits) and the Host check. Not the Origin check: browser-based clients call
/// the token, registration and metadata endpoints from their own origin by design; the
/// issuer's pages protect their forms themselves.
struct IssuerDoor {
    hosts: HostPolicy,
    trusted: Arc<Vec<ipnet::IpNet>>,
}

async fn issuer_door(
    axum::extract::State(door): axum::extract::State<Arc<IssuerDoor>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(peer) = request.extensions().get::<crate::listener::Peer>() {
        let ip = crate::listener::client_address(peer.0.ip(), request.headers(), &door.trusted);
        request.extensions_mut().insert(ClientAddress(ip));
        request
            .extensions_mut()
            .insert(mcpgate_issuer::clients::registration::SourceAddress(ip));
    }
    if let Some(refusal) = dns_rebinding::check_host(&door.hosts, &request) {
        return refusal;
    }
    next.run(request).await
}

/// The front door for routed requests (unknown paths).
async fn front_door(
    axum::extract::State(front): axum::extract::State<Arc<Front>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    front.pass(request, |r| next.run(r)).await
}

/// Serves until SIGINT/SIGTERM, then lets requests finish for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    router: App,
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

/// Runs the gateway for a built plan until it is told to stop: warm up, serve, drain, stop.
pub async fn run(plan: Plan) -> ExitCode {
    for warning in plan.warnings() {
        tracing::warn!("{warning}");
    }
    let listen = plan.listen;
    let mode = plan.auth.mode.as_str();
    let retry_keys_every = plan.auth.retry_keys_every;
    let upstream = plan.upstream.target.describe();
    let prepared = match start(plan).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("mcpgate: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(verifier) = &prepared.verifier
        && let Err(e) = verifier.warm_up().await
    {
        tracing::warn!("token keys not loaded yet ({e}); requests will be refused until they are");
        // Tried again in the background until they load (`/readyz` says so meanwhile); a
        // token arriving in between also tries, no more often than the refresh floor allows.
        let verifier = std::sync::Arc::clone(verifier);
        let every = retry_keys_every;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if verifier.is_ready() {
                    break;
                }
                match verifier.warm_up().await {
                    Ok(()) if verifier.is_ready() => {
                        tracing::info!("token keys loaded");
                        break;
                    }
                    Ok(()) => {}
                    Err(e) => tracing::warn!("token keys still not loaded ({e})"),
                }
            }
        });
    }
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mcpgate: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(
        listen = %local,
        resource = %prepared.resource,
        upstream = %upstream,
        auth = mode,
        "mcpgate listening"
    );
    let stdio = prepared.stdio.clone();
    let result = serve(
        listener,
        prepared.router,
        prepared.limits,
        Duration::from_secs(10),
        stdio.clone(),
    )
    .await;
    if let Some(stdio) = stdio {
        // Requests are done (or out of time): the children go, gently first.
        stdio.shutdown().await;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcpgate: server error: {e}");
            ExitCode::FAILURE
        }
    }
}
