//! Opaque (or any) tokens checked by asking the authorization server (RFC 7662).
//!
//! The verifier authenticates itself to the introspection endpoint (`client_secret_basic` or
//! `client_secret_post`), refuses `active: false`, applies the same [`ClaimRules`] as JWTs to
//! the response (issuer, audience, expiry), and caches answers no longer than the token's
//! `exp` nor the configured bound. When the endpoint is down or slower than the timeout the
//! answer is [`TokenError::Unavailable`]: the request is refused, never let through.
//!
//! ```no_run
//! use std::time::Duration;
//! use mcpgate_guard::{Audience, ClaimRules, ClientAuth, IntrospectionVerifier};
//!
//! let verifier = IntrospectionVerifier::builder(
//!     "https://login.example.com/oauth2/introspect".parse().unwrap(),
//!     ClientAuth::Basic { client_id: "mcpgate".into(), client_secret: "s3cret".into() },
//!     ClaimRules::for_audience(Audience::new("https://mcp.example.com/mcp")),
//! )
//! .timeout(Duration::from_secs(3))
//! .build()
//! .unwrap();
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};
use url::Url;

use crate::claims::ClaimRules;
use crate::error::{Rejection, TokenError};
use crate::fetch::read_limited;
use crate::principal::{ClaimsError, Principal};
use crate::verifier::{
    BoxFuture, CachedPrincipal, DEFAULT_MAX_TOKEN_BYTES, DigestHashing, TokenDigest, TokenVerifier,
    UntilDeadline, VerifyResult, check_size, digest,
};

/// How the verifier authenticates to the introspection endpoint (RFC 6749 §2.3.1).
#[derive(Clone)]
pub enum ClientAuth {
    /// HTTP Basic with the form-urlencoded client id and secret.
    Basic {
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: String,
    },
    /// `client_id` and `client_secret` in the form body.
    Post {
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: String,
    },
    /// A fixed `Authorization` header value (for example `Bearer <token of the gateway>`).
    Header(String),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAuth::Basic { client_id, .. } => write!(f, "Basic({client_id:?}, ***)"),
            ClientAuth::Post { client_id, .. } => write!(f, "Post({client_id:?}, ***)"),
            ClientAuth::Header(_) => f.write_str("Header(***)"),
        }
    }
}

/// An introspection verifier that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntrospectionConfigError {
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
}

/// Verifies tokens with an RFC 7662 introspection endpoint.
pub struct IntrospectionVerifier {
    url: Url,
    auth: ClientAuth,
    rules: ClaimRules,
    client: reqwest::Client,
    timeout: Duration,
    max_token_bytes: usize,
    cache: Option<moka::future::Cache<TokenDigest, CachedPrincipal, DigestHashing>>,
    cache_ttl: Duration,
}

impl std::fmt::Debug for IntrospectionVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionVerifier")
            .field("url", &self.url.as_str())
            .field("auth", &self.auth)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// Configures an [`IntrospectionVerifier`].
#[must_use]
pub struct IntrospectionVerifierBuilder {
    url: Url,
    auth: ClientAuth,
    rules: ClaimRules,
    timeout: Duration,
    max_token_bytes: usize,
    cache_capacity: u64,
    cache_ttl: Duration,
    client: Option<reqwest::Client>,
}

impl IntrospectionVerifierBuilder {
    /// How long one introspection call may take before the token is refused as unverifiable
    /// (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest token accepted; longer ones are refused before any call.
    pub fn max_token_bytes(mut self, max: usize) -> Self {
        self.max_token_bytes = max;
        self
    }

    /// Caches up to `capacity` positive answers for at most `ttl` each (never past the
    /// token's `exp`). Zero disables caching.
    pub fn cache(mut self, capacity: u64, ttl: Duration) -> Self {
        self.cache_capacity = capacity;
        self.cache_ttl = ttl;
        self
    }

    /// The HTTP client to use.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Builds the verifier.
    pub fn build(self) -> Result<IntrospectionVerifier, IntrospectionConfigError> {
        let client = match self.client {
            Some(c) => c,
            None => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(self.timeout)
                .build()
                .map_err(|e| IntrospectionConfigError::Client(e.to_string()))?,
        };
        let cache = (self.cache_capacity > 0 && !self.cache_ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(self.cache_capacity)
                .expire_after(UntilDeadline)
                .build_with_hasher(DigestHashing::default())
        });
        Ok(IntrospectionVerifier {
            url: self.url,
            auth: self.auth,
            rules: self.rules,
            client,
            timeout: self.timeout,
            max_token_bytes: self.max_token_bytes,
            cache,
            cache_ttl: self.cache_ttl,
        })
    }
}

impl IntrospectionVerifier {
    /// Starts a verifier for the endpoint at `url`.
    pub fn builder(url: Url, auth: ClientAuth, rules: ClaimRules) -> IntrospectionVerifierBuilder {
        IntrospectionVerifierBuilder {
            url,
            auth,
            rules,
            timeout: Duration::from_secs(5),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            cache_capacity: 10_000,
            cache_ttl: Duration::from_secs(60),
            client: None,
        }
    }

    async fn introspect(&self, token: &str) -> Result<Arc<Principal>, Rejection> {
        let mut form: Vec<(&str, &str)> =
            vec![("token", token), ("token_type_hint", "access_token")];
        let mut request = self
            .client
            .post(self.url.clone())
            .header(http::header::ACCEPT, "application/json");
        match &self.auth {
            ClientAuth::Basic {
                client_id,
                client_secret,
            } => {
                // RFC 6749 §2.3.1: both parts form-urlencoded before Basic encoding.
                let id = form_urlencode(client_id);
                let secret = form_urlencode(client_secret);
                request = request.basic_auth(id, Some(secret));
            }
            ClientAuth::Post {
                client_id,
                client_secret,
            } => {
                form.push(("client_id", client_id));
                form.push(("client_secret", client_secret));
            }
            ClientAuth::Header(value) => {
                request = request.header(http::header::AUTHORIZATION, value)
            }
        }
        let unavailable =
            |why: String| Rejection::from(TokenError::Unavailable(format!("introspection: {why}")));
        let exchange = async {
            let response = request
                .form(&form)
                .send()
                .await
                .map_err(|e| unavailable(e.without_url().to_string()))?;
            if !response.status().is_success() {
                return Err(unavailable(format!("HTTP status {}", response.status())));
            }
            read_limited(response, 256 * 1024)
                .await
                .map_err(|e| unavailable(e.to_string()))
        };
        let body = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unavailable(format!("no answer within {:?}", self.timeout)))??;
        let answer: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|_| unavailable("response is not a JSON object".into()))?;
        match answer.get("active") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) | None => return Err(TokenError::Inactive.into()),
            Some(_) => return Err(unavailable("`active` is not a boolean".into())),
        }
        // Some servers introspect refresh tokens too; those are not access tokens.
        if answer
            .get("token_type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("refresh_token"))
        {
            return Err(TokenError::Claims(ClaimsError::Invalid(
                "token_type",
                "a refresh token, not an access token",
            ))
            .into());
        }
        Ok(Arc::new(self.rules.check(answer, SystemTime::now())?))
    }
}

fn form_urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

impl TokenVerifier for IntrospectionVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, VerifyResult> {
        Box::pin(async move {
            check_size(token, self.max_token_bytes)?;
            let Some(cache) = &self.cache else {
                return self.introspect(token).await;
            };
            let key = digest(token);
            if let Some(principal) = cache.get(&key).await.and_then(|e| e.fresh(0)) {
                return Ok(principal);
            }
            // Concurrent requests with the same token share one introspection call.
            let entry = cache
                .try_get_with(key, async {
                    let principal = self.introspect(token).await?;
                    let entry = CachedPrincipal::new(Arc::clone(&principal), self.cache_ttl, 0)
                        .unwrap_or(CachedPrincipal {
                            principal,
                            deadline: Instant::now(),
                            generation: 0,
                        });
                    Ok::<_, Rejection>(entry)
                })
                .await
                .map_err(|e: Arc<Rejection>| (*e).clone())?;
            Ok(entry.principal)
        })
    }
}
