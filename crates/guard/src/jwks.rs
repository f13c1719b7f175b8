//! Keys fetched from a JWKS URL: cached, refreshed when they grow old or when a token names a
//! `kid` that is not known yet (at most once per configured interval, so that a stream of
//! tokens with made-up `kid`s cannot hammer the identity provider), and kept in service when
//! the JWKS host is briefly down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::Jwk;
use serde::Deserialize;
use url::Url;

use crate::discovery::DiscoveryError;
use crate::fetch::{FetchError, Fetcher};
use crate::keys::{VerificationKey, keys_from_jwks};

/// Why a key set could not be loaded ([`JwksSource::refresh`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The `jwks_uri` could not be discovered from the issuer's metadata.
    #[error("discovery: {0}")]
    Discovery(#[from] DiscoveryError),
    /// The JWKS document could not be fetched.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The document is not a JWK Set (the parser's message).
    #[error("not a JWK Set: {0}")]
    NotAJwkSet(String),
    /// No key of the set can verify tokens with the allowed algorithms.
    #[error("the JWK Set has no usable signing key")]
    NoUsableKey,
}

/// How a [`JwksSource`] fetches and refreshes.
#[derive(Debug, Clone)]
pub struct JwksOptions {
    /// Minimum time between two fetches triggered by unknown `kid`s.
    pub min_refresh_interval: Duration,
    /// Age after which keys are refreshed in the background.
    pub max_age: Duration,
    /// Timeout of one fetch.
    pub timeout: Duration,
    /// Largest JWKS document accepted.
    pub max_bytes: usize,
}

impl Default for JwksOptions {
    fn default() -> Self {
        JwksOptions {
            min_refresh_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(600),
            timeout: Duration::from_secs(5),
            max_bytes: 1024 * 1024,
        }
    }
}

pub(crate) struct KeySet {
    pub(crate) keys: Vec<VerificationKey>,
    fetched_at: Instant,
}

/// Where the key set is.
enum Location {
    /// A configured JWKS URL.
    Fixed(Url),
    /// The `jwks_uri` of an issuer's metadata, discovered on the first fetch.
    Issuer {
        issuer: String,
        found: ArcSwapOption<Url>,
    },
}

/// A JWKS URL (given, or discovered from an issuer's metadata) and the keys last fetched from
/// it.
pub struct JwksSource {
    location: Location,
    fetcher: Fetcher,
    allowed: Vec<Algorithm>,
    options: JwksOptions,
    current: ArcSwapOption<KeySet>,
    /// Serializes fetches and remembers when the last one started.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    refreshing: AtomicBool,
    /// Bumped whenever a key in service is withdrawn.
    generation: AtomicU64,
}

impl std::fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSource")
            .field("url", &self.describe())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct RawJwkSet {
    keys: Vec<serde_json::Value>,
}

impl JwksSource {
    /// A source for `url`. Nothing is fetched until [`JwksSource::refresh`] or the first token.
    pub fn new(url: Url, fetcher: Fetcher, allowed: &[Algorithm], options: JwksOptions) -> Self {
        Self::at(Location::Fixed(url), fetcher, allowed, options)
    }

    /// A source for the `jwks_uri` in `issuer`'s metadata ([`crate::discovery`]), found on the
    /// first fetch and kept after that.
    pub fn from_issuer(
        issuer: impl Into<String>,
        fetcher: Fetcher,
        allowed: &[Algorithm],
        options: JwksOptions,
    ) -> Self {
        let location = Location::Issuer {
            issuer: issuer.into(),
            found: ArcSwapOption::empty(),
        };
        Self::at(location, fetcher, allowed, options)
    }

    fn at(
        location: Location,
        fetcher: Fetcher,
        allowed: &[Algorithm],
        options: JwksOptions,
    ) -> Self {
        JwksSource {
            location,
            fetcher,
            allowed: allowed.to_vec(),
            options,
            current: ArcSwapOption::empty(),
            last_attempt: tokio::sync::Mutex::new(None),
            refreshing: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }

    /// The keys currently in service, if any were ever loaded. Keys older than the maximum
    /// age are refreshed in the background while the old ones keep serving.
    pub(crate) fn keys(self: &Arc<Self>) -> Option<Arc<KeySet>> {
        let keys = self.current.load_full();
        if let Some(set) = &keys
            && set.fetched_at.elapsed() > self.options.max_age
        {
            self.refresh_in_background();
        }
        keys
    }

    /// Changes whenever a key in service is withdrawn.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The JWKS URL, or the issuer it is discovered from, for logs.
    /// The JWKS URL for the log: without its query (which may carry a key).
    fn describe(&self) -> String {
        let shown = |url: &Url| {
            let mut url = url.clone();
            if url.query().is_some() {
                url.set_query(Some("…"));
            }
            url.to_string()
        };
        match &self.location {
            Location::Fixed(url) => shown(url),
            Location::Issuer { issuer, found } => match found.load_full() {
                Some(url) => shown(&url),
                None => format!("(from the metadata of {issuer})"),
            },
        }
    }

    /// The JWKS URL, discovering it first when it comes from an issuer's metadata.
    async fn url(&self) -> Result<Url, JwksError> {
        match &self.location {
            Location::Fixed(url) => Ok(url.clone()),
            Location::Issuer { issuer, found } => {
                if let Some(url) = found.load_full() {
                    return Ok((*url).clone());
                }
                let metadata = crate::discovery::discover(&self.fetcher, issuer).await?;
                tracing::info!(target: "mcpgate::jwks", issuer = %issuer, metadata = %metadata.location, jwks_uri = %metadata.jwks_uri, "issuer metadata discovered");
                found.store(Some(Arc::new(metadata.jwks_uri.clone())));
                Ok(metadata.jwks_uri)
            }
        }
    }

    /// Whether keys have been loaded.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    fn refresh_in_background(self: &Arc<Self>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::clone(self);
        handle.spawn(async move {
            let _ = me.refresh().await;
            me.refreshing.store(false, Ordering::Release);
        });
    }

    /// Fetches the key set now, unless a fetch started less than the minimum interval ago
    /// (then returns `Ok(false)`). On failure the keys in service stay in service.
    pub async fn refresh(&self) -> Result<bool, JwksError> {
        let mut last = self.last_attempt.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.options.min_refresh_interval) {
            return Ok(false);
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(target: "mcpgate::jwks", url = %self.describe(), keys = keys.len(), "JWKS loaded");
                let withdrawn = self.current.load().as_ref().is_some_and(|old| {
                    old.keys.iter().any(|k| {
                        !keys
                            .iter()
                            .any(|n| n.kid == k.kid && n.algorithms == k.algorithms)
                    })
                });
                if withdrawn {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    tracing::info!(target: "mcpgate::jwks", "a key was withdrawn; cached verifications are dropped");
                }
                self.current.store(Some(Arc::new(KeySet {
                    keys,
                    fetched_at: Instant::now(),
                })));
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(target: "mcpgate::jwks", url = %self.describe(), error = %e, kept = self.is_loaded(), "JWKS fetch failed");
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<VerificationKey>, JwksError> {
        let url = self.url().await?;
        let body = self
            .fetcher
            .get(&url, "application/json, application/jwk-set+json")
            .await?;
        let raw: RawJwkSet =
            serde_json::from_slice(&body).map_err(|e| JwksError::NotAJwkSet(e.to_string()))?;
        let jwks: Vec<Jwk> = raw
            .keys
            .into_iter()
            .filter_map(|v| match serde_json::from_value::<Jwk>(v) {
                Ok(jwk) => Some(jwk),
                Err(e) => {
                    tracing::warn!(target: "mcpgate::jwks", error = %e, "skipping a JWK that cannot be parsed");
                    None
                }
            })
            .collect();
        let (keys, skipped) =
            keys_from_jwks(&jsonwebtoken::jwk::JwkSet { keys: jwks }, &self.allowed);
        for e in skipped {
            tracing::warn!(target: "mcpgate::jwks", error = %e, "skipping a JWK");
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(keys)
    }
}
