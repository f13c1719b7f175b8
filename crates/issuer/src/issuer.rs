//! The authorization server assembled: its settings, its state, and the router of its
//! endpoints.
//!
//! ```no_run
//! use std::sync::Arc;
//! use mcpgate_issuer::issuer::{Issuer, Settings};
//! use mcpgate_issuer::store::sqlite::SqliteStore;
//!
//! # async fn start() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(SqliteStore::open("./mcpgate-data").await?);
//! let settings = Settings::new("https://mcp.example.com", "https://mcp.example.com/mcp")?;
//! let issuer = Issuer::start(settings, store).await?;
//! // The key ring the resource server's verifier trusts, with no HTTP round trip:
//! let keys = issuer.key_ring();
//! let app: axum::Router = issuer.router();
//! # let _ = (keys, app); Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use mcpgate_guard::KeyRing;

use crate::clients::configured::{ReconcileError, StaticClient};
use crate::clients::metadata_document::Documents;
use crate::clients::redirect_uri::AllowList;
use crate::keys::{SigningKeyError, SigningKeys, SigningKeysOptions};
use crate::metadata::{IssuerId, IssuerIdError, Metadata};
use crate::resource::Resources;
use crate::scopes::Catalogue;
use crate::sealed::Sealer;
use crate::store::{Revocations, Store, StoreError};

/// What the operator decides.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The issuer identifier (`iss`); endpoints live under it.
    pub issuer: IssuerId,
    /// The resources tokens are for (the gateway's `<public_url>/mcp`).
    pub resources: Resources,
    /// The scopes that exist.
    pub scopes: Catalogue,
    /// Which redirect URIs any client may use (empty: any that is well formed).
    pub redirect_uris: AllowList,
    /// Whether `/register` is open to anyone.
    pub open_registration: bool,
    /// Registrations with no token issued for this long are removed.
    pub unused_client_ttl: Duration,
    /// Life of an access token.
    pub access_token_ttl: Duration,
    /// Life of a refresh token (each rotation starts a new one).
    pub refresh_token_ttl: Duration,
    /// How long after a rotation the same client may present the previous refresh token
    /// again and still be answered (two refreshes racing); zero: never.
    pub refresh_grace: Duration,
    /// Life of an authorization code.
    pub code_ttl: Duration,
    /// `iss` in authorization responses (RFC 9207); off only for clients that break on it.
    pub iss_parameter: bool,
    /// Development: this user is signed in and every request approved at once.
    pub auto_approve: Option<String>,
    /// Development: client metadata documents may be fetched from loopback over http.
    pub allow_loopback_fetch: bool,
    /// The signing keys' algorithm and sealing key.
    pub keys: SigningKeysOptions,
    /// Clients declared by the operator, kept in the store at start (see
    /// [`configured`](crate::clients::configured)).
    pub clients: Vec<StaticClient>,
    /// Local users declared by the operator, kept in the store at start (see
    /// [`users`](crate::users)).
    pub users: Vec<crate::users::ConfiguredUser>,
}

/// Why settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The issuer identifier.
    #[error("issuer {0}")]
    Issuer(#[from] IssuerIdError),
    /// A resource.
    #[error("resource {0}")]
    Resource(String),
}

impl Settings {
    /// Settings for `issuer` making tokens for `resource`, with the defaults: open
    /// registration, 15-minute access tokens, 30-day refresh tokens with a 30-second grace,
    /// 60-second codes, one scope-less catalogue.
    pub fn new(issuer: &str, resource: &str) -> Result<Settings, SettingsError> {
        Ok(Settings {
            issuer: IssuerId::parse(issuer)?,
            resources: Resources::new([resource]).map_err(SettingsError::Resource)?,
            scopes: Catalogue::default(),
            redirect_uris: AllowList::default(),
            open_registration: true,
            unused_client_ttl: Duration::from_secs(30 * 24 * 3600),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            refresh_grace: Duration::from_secs(30),
            code_ttl: Duration::from_secs(60),
            iss_parameter: true,
            auto_approve: None,
            allow_loopback_fetch: false,
            keys: SigningKeysOptions::default(),
            clients: Vec::new(),
            users: Vec::new(),
        })
    }

    /// The metadata these settings advertise.
    pub fn metadata(&self) -> Metadata {
        let mut m = Metadata::new(self.issuer.clone());
        m.registration = self.open_registration;
        m.scopes = self.scopes.advertised();
        m.iss_parameter = self.iss_parameter;
        m.signing_algorithm = match self.keys.algorithm {
            crate::store::SigningAlgorithm::EdDsa => "EdDSA".into(),
            _ => "ES256".into(),
        };
        m
    }
}

/// Why the issuer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The signing keys.
    #[error("signing keys: {0}")]
    Keys(#[from] SigningKeyError),
    /// The outbound fetcher for metadata documents.
    #[error("fetcher: {0}")]
    Fetch(#[from] mcpgate_guard::fetch::FetchError),
    /// The verifier of the issuer's own tokens.
    #[error("token verifier: {0}")]
    Verifier(String),
    /// The configured clients.
    #[error("issuer.clients: {0}")]
    Clients(#[from] ReconcileError),
    /// The configured users.
    #[error("issuer.users: {0}")]
    Users(#[from] crate::users::ReconcileError),
}

/// A verifier of this issuer's access tokens: its keys in process, its revocations, its
/// resources as audiences, no cache (what introspection and revocation use). A resource
/// server uses [`Issuer::token_verifier`], which caches verified tokens.
pub fn own_token_verifier(
    settings: &Settings,
    keys: Arc<KeyRing>,
    revocations: Arc<Revocations>,
) -> Result<mcpgate_guard::JwtVerifier, StartError> {
    verifier_of(settings, keys, revocations, 0, Duration::ZERO)
}

fn verifier_of(
    settings: &Settings,
    keys: Arc<KeyRing>,
    revocations: Arc<Revocations>,
    cache_capacity: u64,
    cache_ttl: Duration,
) -> Result<mcpgate_guard::JwtVerifier, StartError> {
    let rules = mcpgate_guard::ClaimRules {
        issuer: Some(settings.issuer.as_str().to_owned()),
        audiences: settings
            .resources
            .all()
            .iter()
            .map(mcpgate_guard::Audience::from)
            .collect(),
        // The issuer's own clock made `exp`: no skew to allow for.
        leeway: Duration::ZERO,
        require_exp: true,
        require_iss: true,
    };
    mcpgate_guard::JwtVerifier::builder(rules)
        .algorithms([
            mcpgate_guard::Algorithm::ES256,
            mcpgate_guard::Algorithm::EdDSA,
        ])
        .key_ring(keys)
        .revocation(revocations)
        .cache(cache_capacity, cache_ttl)
        .build()
        .map_err(|e| StartError::Verifier(e.to_string()))
}

/// Removes what has no use any more: dynamic registrations unused for `unused`, expired codes
/// and refresh tokens, and expired assertion ids. Failures are logged and tried next time.
pub async fn prune(store: &dyn Store, unused: Duration) {
    let now = std::time::SystemTime::now();
    match store
        .delete_unused_clients(crate::store::ClientKind::Dynamic, now - unused, now)
        .await
    {
        Ok(ids) if !ids.is_empty() => {
            tracing::info!(target: "mcpgate::issuer", removed = ids.len(), "registrations unused for too long were removed (their clients register again)");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(target: "mcpgate::issuer", error = %e, "unused registrations not removed")
        }
    }
    let _ = store.delete_expired_codes(now).await;
    let _ = store.delete_expired_refresh_tokens(now).await;
    let _ = store.prune_jtis(now).await;
}

/// The running authorization server: what every endpoint reads.
pub struct Issuer {
    /// Settings.
    pub settings: Settings,
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Signing keys.
    pub keys: Arc<SigningKeys>,
    /// Client metadata documents.
    pub documents: Documents,
    /// Revoked grants, for the verifier of the tokens this issuer makes.
    pub revocations: Arc<Revocations>,
    /// Seals pending authorization requests, sign-ins and CSRF tokens.
    pub sealer: Sealer,
    /// The documents served at the well-known paths.
    pub metadata: Metadata,
    /// Verifies the access tokens this issuer made (introspection, revocation).
    pub own_tokens: mcpgate_guard::JwtVerifier,
    /// Registrations per source address.
    pub registrations: crate::clients::registration::Limiter,
    /// The refresh tokens just issued by a rotation, for the grace window: a client that
    /// presents the previous token again gets the same one back, not a chain of its own.
    pub recent_rotations: crate::token::refresh_token::RecentRotations,
    /// Local users' sign-in: bounded, throttled password verification.
    pub sign_in: crate::sign_in::LocalUsers,
    /// Clients read recently.
    pub client_cache: crate::clients::registry::ClientCache,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.settings.issuer.as_str())
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Starts the issuer over `store`: loads (or makes) the signing keys and starts the
    /// background tasks (revocations refreshed every second, keys reloaded every minute).
    pub async fn start(
        settings: Settings,
        store: Arc<dyn Store>,
    ) -> Result<Arc<Issuer>, StartError> {
        let mut key_options = settings.keys.clone();
        key_options.overlap = key_options
            .overlap
            .max(settings.access_token_ttl + Duration::from_secs(60));
        let keys = Arc::new(SigningKeys::load(store.clone(), key_options).await?);
        let revocations = Arc::new(Revocations::new(
            store.clone(),
            settings.access_token_ttl + Duration::from_secs(60),
        ));
        revocations.refresh().await?;
        revocations.spawn_refresh(crate::store::DEFAULT_REFRESH_INTERVAL);
        let reload = Arc::downgrade(&keys);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(keys) = reload.upgrade() else { return };
                if let Err(e) = keys.reload().await {
                    tracing::warn!(target: "mcpgate::issuer", error = %e, "signing keys not reloaded");
                }
            }
        });
        // Housekeeping, hourly: registrations unused for too long (clients register again),
        // spent codes, expired refresh tokens and assertion ids.
        let tidy = Arc::downgrade(&store);
        let unused = settings.unused_client_ttl;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tick.tick().await;
                let Some(store) = tidy.upgrade() else { return };
                prune(&*store, unused).await;
            }
        });
        let documents = Documents::new(
            settings.redirect_uris.clone(),
            settings.allow_loopback_fetch,
        )?;
        let metadata = settings.metadata();
        let own_tokens = own_token_verifier(&settings, keys.key_ring(), Arc::clone(&revocations))?;
        // Last, once everything that can fail has not: a start that fails (a sealed key and
        // no key to open it, say) changes no client and no user.
        let now = std::time::SystemTime::now();
        crate::clients::configured::reconcile(&*store, &settings.clients, now).await?;
        crate::users::reconcile(&*store, &settings.users, now).await?;
        Ok(Arc::new(Issuer {
            own_tokens,
            registrations: crate::clients::registration::Limiter::per_minute(20),
            recent_rotations: crate::token::refresh_token::RecentRotations::new(
                settings.refresh_grace,
            ),
            sign_in: crate::sign_in::LocalUsers::default(),
            client_cache: crate::clients::registry::ClientCache::default(),
            settings,
            store,
            keys,
            documents,
            revocations,
            sealer: Sealer::random(),
            metadata,
        }))
    }

    /// A builder: the issuer identifier and the resource its tokens are for, then a store (or
    /// a data directory for the embedded SQLite store) and any settings to change.
    pub fn builder(issuer: &str, resource: &str) -> Builder {
        Builder {
            settings: Settings::new(issuer, resource),
            store: None,
        }
    }

    /// A verifier of this issuer's tokens for the resource server beside it (guard's
    /// `BearerAuthLayer`): the keys in process, and a token verified once is not verified
    /// again while cached (a client sends the same token on every request); the revocation
    /// check runs on cached tokens too, so a revoked grant is refused within a second.
    pub fn token_verifier(&self) -> Result<mcpgate_guard::JwtVerifier, StartError> {
        verifier_of(
            &self.settings,
            self.key_ring(),
            self.revocation_check(),
            10_000,
            Duration::from_secs(300),
        )
    }

    /// The keys a resource server verifies this issuer's tokens with, in process.
    pub fn key_ring(&self) -> Arc<KeyRing> {
        self.keys.key_ring()
    }

    /// The revocation check for the verifier of this issuer's tokens.
    pub fn revocation_check(&self) -> Arc<Revocations> {
        Arc::clone(&self.revocations)
    }

    /// The issuer identifier.
    pub fn issuer_id(&self) -> &IssuerId {
        &self.settings.issuer
    }

    /// Every endpoint: metadata, JWKS, registration, `/authorize` (with sign-in and consent),
    /// `/token`, introspection and revocation.
    pub fn router(self: &Arc<Self>) -> Router {
        crate::routes::router(Arc::clone(self))
    }
}

/// Assembles an [`Issuer`]: see [`Issuer::builder`].
pub struct Builder {
    settings: Result<Settings, SettingsError>,
    store: Option<StoreChoice>,
}

enum StoreChoice {
    Given(Arc<dyn Store>),
    DataDir(std::path::PathBuf),
}

/// Why [`Builder::build`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The issuer identifier or resource.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// Neither [`Builder::store`] nor [`Builder::data_dir`] was called.
    #[error("no store: call .store(..) or .data_dir(..)")]
    NoStore,
    /// Starting failed.
    #[error(transparent)]
    Start(#[from] StartError),
}

impl Builder {
    /// Keeps everything in `store`.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(StoreChoice::Given(store));
        self
    }

    /// Keeps everything in the embedded SQLite store in `dir` (created if missing).
    pub fn data_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.store = Some(StoreChoice::DataDir(dir.into()));
        self
    }

    /// The scopes clients may ask for.
    pub fn scopes(self, scopes: Catalogue) -> Self {
        self.configure(|s| s.scopes = scopes)
    }

    /// Changes any other setting.
    pub fn configure(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        if let Ok(settings) = &mut self.settings {
            change(settings);
        }
        self
    }

    /// Opens the store, loads or makes the signing keys, and starts.
    pub async fn build(self) -> Result<Arc<Issuer>, BuildError> {
        let settings = self.settings?;
        let store: Arc<dyn Store> = match self.store.ok_or(BuildError::NoStore)? {
            StoreChoice::Given(store) => store,
            StoreChoice::DataDir(dir) => Arc::new(
                crate::store::sqlite::SqliteStore::open(dir)
                    .await
                    .map_err(StartError::from)?,
            ),
        };
        Ok(Issuer::start(settings, store).await?)
    }
}
