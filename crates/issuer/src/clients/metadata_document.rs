//! Client ID Metadata Documents (AS-12, AS-13): a client whose `client_id` is an https URL
//! publishes its metadata there, and the server fetches it instead of asking the client to
//! register.
//!
//! The URL must be https with a host and a path, without a fragment, user information or dot
//! segments, and written in its normal form (`https://Example.com/x` is refused rather than
//! fetched as `https://example.com/x`, so that the document's `client_id` can be compared
//! with it byte for byte). The fetch is guard's bounded [`Fetcher`]: public addresses only,
//! checked on the address actually connected to (so DNS rebinding cannot reach a private
//! one), no redirects, [`MAX_BYTES`](super::metadata::MAX_BYTES) and a few seconds at most.
//! The document's `client_id` must equal the URL exactly and its metadata passes the same
//! checks as a registration. Documents are cached as their `Cache-Control` says (`no-store`
//! and `max-age=0`: not at all; no header: five minutes; never more than a day).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mcpgate_guard::fetch::{Destinations, FetchError, FetchRules, Fetcher};
use url::Url;

use super::metadata::{ClientMetadata, MAX_BYTES, Source};
use super::redirect_uri::AllowList;
use crate::error::OAuthError;

/// How long a document without `Cache-Control` is kept.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// The longest a document is kept, whatever it says.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Time for one fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A `client_id` that is a metadata document's URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientIdUrl(Url);

/// Why a `client_id` URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientIdUrlError {
    /// Not https (or http on loopback when that is allowed for development).
    #[error("must be an https URL")]
    Scheme,
    /// No path after the host.
    #[error("must have a path after the host")]
    NoPath,
    /// A fragment, user information, or `.`/`..` segments.
    #[error("must not contain a fragment, user information or dot segments")]
    Ambiguous,
    /// Not in normal form (case of scheme or host, default port, percent-encoding).
    #[error("must be written in normal form (lower-case scheme and host, no default port)")]
    NotNormal,
}

impl ClientIdUrl {
    /// Whether `client_id` is meant as a metadata document URL (rather than an identifier
    /// this server issued).
    pub fn looks_like_one(client_id: &str) -> bool {
        let lower = client_id.get(..8).map(str::to_ascii_lowercase);
        lower.as_deref() == Some("https://") || client_id.starts_with("http://")
    }

    /// Checks `raw` as a client ID URL; `allow_loopback_http` admits `http://127.0.0.1…` and
    /// `http://localhost…` (development only).
    pub fn parse(raw: &str, allow_loopback_http: bool) -> Result<ClientIdUrl, ClientIdUrlError> {
        if raw.contains('#') || raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ClientIdUrlError::Ambiguous);
        }
        let url = Url::parse(raw).map_err(|_| ClientIdUrlError::Scheme)?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        match url.scheme() {
            "https" if url.host_str().is_some() => {}
            "http" if allow_loopback_http && loopback => {}
            _ => return Err(ClientIdUrlError::Scheme),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ClientIdUrlError::Ambiguous);
        }
        let after_host = raw
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or("");
        let path = after_host.split(['?']).next().unwrap_or("");
        if path.split('/').any(|segment| {
            segment == "."
                || segment == ".."
                || segment.eq_ignore_ascii_case("%2e")
                || segment.eq_ignore_ascii_case("%2e%2e")
        }) {
            return Err(ClientIdUrlError::Ambiguous);
        }
        if url.path() == "/" || url.path().is_empty() {
            return Err(ClientIdUrlError::NoPath);
        }
        if url.as_str() != raw {
            return Err(ClientIdUrlError::NotNormal);
        }
        Ok(ClientIdUrl(url))
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The URL, parsed.
    pub fn url(&self) -> &Url {
        &self.0
    }
}

impl std::fmt::Display for ClientIdUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// A fetched, checked document.
#[derive(Debug)]
struct Cached {
    metadata: Arc<ClientMetadata>,
    until: Instant,
}

/// Fetches, checks and caches client metadata documents.
pub struct Documents {
    fetcher: Fetcher,
    allow: AllowList,
    allow_loopback_http: bool,
    cache: moka::sync::Cache<String, Arc<Cached>>,
    /// Documents that could not be used lately, with why: not fetched again for
    /// [`FAILURE_TTL`].
    failures: moka::sync::Cache<String, OAuthError>,
    /// Fetches per host, so that the issuer cannot be made to flood one.
    per_host: governor::DefaultKeyedRateLimiter<String>,
}

/// How long a document that could not be used is not fetched again.
pub const FAILURE_TTL: Duration = Duration::from_secs(30);

/// Fetches a minute to one host, at most.
pub const FETCHES_PER_HOST_PER_MINUTE: u32 = 60;

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documents")
            .field("cached", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl Documents {
    /// Documents fetched from public addresses only (or from loopback too, over http, when
    /// `allow_loopback` is set for development), with every redirect URI checked against
    /// `allow`.
    pub fn new(allow: AllowList, allow_loopback: bool) -> Result<Documents, FetchError> {
        let fetcher = Fetcher::new(FetchRules {
            destinations: if allow_loopback {
                Destinations::PublicAndLoopback
            } else {
                Destinations::Public
            },
            max_bytes: MAX_BYTES,
            timeout: FETCH_TIMEOUT,
            max_redirects: 0,
        })?;
        Ok(Documents {
            fetcher,
            allow,
            allow_loopback_http: allow_loopback,
            cache: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(MAX_TTL)
                .build(),
            failures: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(FAILURE_TTL)
                .build(),
            per_host: governor::RateLimiter::keyed(governor::Quota::per_minute(
                std::num::NonZeroU32::new(FETCHES_PER_HOST_PER_MINUTE).expect("not zero"),
            )),
        })
    }

    /// Reads `client_id` as a metadata document URL under these rules.
    pub fn client_id(&self, client_id: &str) -> Result<ClientIdUrl, OAuthError> {
        ClientIdUrl::parse(client_id, self.allow_loopback_http)
            .map_err(|e| OAuthError::invalid_client(format!("a client_id that is a URL {e}")))
    }

    /// The metadata of `id`: from the cache while it is fresh, else fetched and checked.
    pub async fn get(&self, id: &ClientIdUrl) -> Result<Arc<ClientMetadata>, OAuthError> {
        if let Some(hit) = self.cache.get(id.as_str())
            && hit.until > Instant::now()
        {
            return Ok(Arc::clone(&hit.metadata));
        }
        if let Some(failed) = self.failures.get(id.as_str()) {
            return Err(failed);
        }
        let host = id.url().host_str().unwrap_or_default().to_ascii_lowercase();
        if self.per_host.len() > 10_000 {
            self.per_host.retain_recent();
        }
        if self.per_host.check_key(&host).is_err() {
            tracing::warn!(target: "mcpgate::issuer", client_id = %id, "client metadata document not fetched: too many fetches from its host");
            return Err(OAuthError::new(
                crate::error::ErrorCode::TemporarilyUnavailable,
                "too many client metadata documents are being fetched from this host; try again in a minute",
            ));
        }
        let result = self.fetch(id).await;
        if let Err(e) = &result {
            self.failures.insert(id.as_str().to_owned(), e.clone());
        }
        result
    }

    async fn fetch(&self, id: &ClientIdUrl) -> Result<Arc<ClientMetadata>, OAuthError> {
        let fetched = self
            .fetcher
            .fetch(id.url(), "application/json")
            .await
            .map_err(|e| {
                // The reason stays in the log: the caller is told only that it failed, so
                // that the fetcher is no probe of what the server can reach.
                tracing::info!(target: "mcpgate::issuer", client_id = %id, error = %e, "client metadata document not fetched");
                OAuthError::invalid_client(format!(
                    "the client metadata document at {id} could not be fetched (the server's log says why)"
                ))
            })?;
        let value: serde_json::Value = serde_json::from_slice(&fetched.body).map_err(|_| {
            OAuthError::invalid_client(format!("the client metadata document at {id} is not JSON"))
        })?;
        let Some(object) = value.as_object() else {
            return Err(OAuthError::invalid_client(format!(
                "the client metadata document at {id} is not a JSON object"
            )));
        };
        if object.get("client_id").and_then(|v| v.as_str()) != Some(id.as_str()) {
            return Err(OAuthError::invalid_client(format!(
                "the client metadata document at {id} names another client_id (it must be its own URL, exactly)"
            )));
        }
        let metadata = ClientMetadata::from_object(object, Source::MetadataDocument, &self.allow)
            .map_err(|e| {
            OAuthError::invalid_client(format!(
                "the client metadata document at {id} is not acceptable: {}",
                e.description
            ))
        })?;
        let metadata = Arc::new(metadata);
        let ttl = ttl(&fetched.headers);
        if !ttl.is_zero() {
            self.cache.insert(
                id.as_str().to_owned(),
                Arc::new(Cached {
                    metadata: Arc::clone(&metadata),
                    until: Instant::now() + ttl,
                }),
            );
        }
        tracing::info!(target: "mcpgate::issuer", client_id = %id, cached_for = ?ttl, "client metadata document fetched");
        Ok(metadata)
    }

    /// Forgets a cached document (an operator action, or a document that changed).
    pub fn forget(&self, id: &ClientIdUrl) {
        self.cache.invalidate(id.as_str());
        self.failures.invalidate(id.as_str());
    }
}

/// How long a document may be kept, from its `Cache-Control`.
fn ttl(headers: &http::HeaderMap) -> Duration {
    let mut ttl = DEFAULT_TTL;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                return Duration::ZERO;
            }
            if let Some(seconds) = lower.strip_prefix("max-age=") {
                match seconds.trim_matches('"').parse::<u64>() {
                    Ok(s) => ttl = Duration::from_secs(s),
                    Err(_) => return Duration::ZERO,
                }
            }
        }
    }
    ttl.min(MAX_TTL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_urls_must_be_https_with_a_path_in_normal_form() {
        let ok = "https://claude.ai/oauth/claude-code-client-metadata";
        assert_eq!(ClientIdUrl::parse(ok, false).unwrap().as_str(), ok);
        for (raw, e) in [
            ("http://app.example/client.json", ClientIdUrlError::Scheme),
            ("https://app.example", ClientIdUrlError::NoPath),
            ("https://app.example/", ClientIdUrlError::NoPath),
            ("https://app.example/c.json#x", ClientIdUrlError::Ambiguous),
            (
                "https://u:p@app.example/c.json",
                ClientIdUrlError::Ambiguous,
            ),
            (
                "https://app.example/a/../c.json",
                ClientIdUrlError::Ambiguous,
            ),
            (
                "https://app.example/a/./c.json",
                ClientIdUrlError::Ambiguous,
            ),
            (
                "https://app.example/a/%2e%2e/c.json",
                ClientIdUrlError::Ambiguous,
            ),
            ("https://APP.example/c.json", ClientIdUrlError::NotNormal),
            (
                "https://app.example:443/c.json",
                ClientIdUrlError::NotNormal,
            ),
            ("HTTPS://app.example/c.json", ClientIdUrlError::NotNormal),
        ] {
            assert_eq!(ClientIdUrl::parse(raw, false), Err(e), "{raw}");
        }
    }

    #[test]
    fn loopback_http_is_only_for_development() {
        let raw = "http://127.0.0.1:9000/client.json";
        assert!(ClientIdUrl::parse(raw, false).is_err());
        assert!(ClientIdUrl::parse(raw, true).is_ok());
        assert!(ClientIdUrl::parse("http://10.0.0.1/client.json", true).is_err());
    }

    #[test]
    fn issued_client_ids_do_not_look_like_urls() {
        assert!(ClientIdUrl::looks_like_one("https://app.example/c.json"));
        assert!(ClientIdUrl::looks_like_one("HTTPS://app.example/c.json"));
        assert!(!ClientIdUrl::looks_like_one("mcpgate-3fZ8"));
    }

    fn headers(cache_control: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in cache_control {
            h.append(http::header::CACHE_CONTROL, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cache_control_decides_how_long_a_document_is_kept() {
        assert_eq!(ttl(&headers(&[])), DEFAULT_TTL);
        assert_eq!(ttl(&headers(&["max-age=60"])), Duration::from_secs(60));
        assert_eq!(ttl(&headers(&["public, max-age=0"])), Duration::ZERO);
        assert_eq!(ttl(&headers(&["no-store"])), Duration::ZERO);
        assert_eq!(ttl(&headers(&["max-age=60", "no-cache"])), Duration::ZERO);
        assert_eq!(ttl(&headers(&["max-age=99999999"])), MAX_TTL);
        assert_eq!(ttl(&headers(&["max-age=soon"])), Duration::ZERO);
    }
}
