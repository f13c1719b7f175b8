//! JWT access tokens: signature with keys from a JWKS URL, a static PEM key or an HMAC
//! secret; then issuer, audience, expiry and not-before ([`ClaimRules`]).
//!
//! ```no_run
//! use mcpgate_guard::{Audience, ClaimRules, JwtVerifier, JwksOptions};
//!
//! let mut rules = ClaimRules::for_audience(Audience::new("https://mcp.example.com/mcp"));
//! rules.issuer = Some("https://login.example.com/realms/acme".into());
//! let verifier = JwtVerifier::builder(rules)
//!     .jwks("https://login.example.com/realms/acme/protocol/openid-connect/certs".parse().unwrap(), JwksOptions::default())
//!     .build()
//!     .unwrap();
//! ```
//!
//! Order of checks, cheapest and safest first: size (before any parsing), shape, the verified
//! cache, the header's algorithm against the allow-list of the configured keys, key lookup by
//! `kid` (one JWKS refresh for an unknown `kid`), signature, claims.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, decode, decode_header};
use serde_json::{Map, Value};
use url::Url;

use crate::claims::ClaimRules;
use crate::error::{Malformed, Rejection, TokenError, printable};
use crate::fetch::{Destinations, FetchRules, Fetcher};
use crate::jwks::{JwksOptions, JwksSource};
use crate::keys::{ALL_ALGORITHMS, KeyError, VerificationKey};
use crate::principal::Principal;
use crate::verifier::{
    BoxFuture, DEFAULT_MAX_TOKEN_BYTES, TokenVerifier, VerifiedCache, VerifyResult, WarmUpError,
    check_size, digest,
};

enum Keys {
    Static(Vec<VerificationKey>),
    Jwks(Arc<JwksSource>),
    Ring(Arc<KeyRing>),
}

/// Verification keys supplied in process — an authorization server in the same process
/// hands its signing keys' public halves to the verifier directly, no HTTP round trip — and
/// replaced as keys rotate. Tokens verified with a key that is later withdrawn are no longer
/// served from the verified-token cache.
#[derive(Default)]
pub struct KeyRing {
    keys: arc_swap::ArcSwap<Vec<VerificationKey>>,
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.keys.load().len())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A ring holding `keys`.
    pub fn new(keys: Vec<VerificationKey>) -> Self {
        KeyRing {
            keys: arc_swap::ArcSwap::from_pointee(keys),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Puts `keys` in service instead of the current ones. When a key in service is not
    /// among them, tokens it verified stop being trusted from the cache.
    pub fn replace(&self, keys: Vec<VerificationKey>) {
        let old = self.keys.load();
        let withdrawn = old.iter().any(|k| {
            !keys
                .iter()
                .any(|n| n.kid == k.kid && n.algorithms == k.algorithms)
        });
        self.keys.store(Arc::new(keys));
        if withdrawn {
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// The keys in service.
    pub fn keys(&self) -> Arc<Vec<VerificationKey>> {
        self.keys.load_full()
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Whether a token that verified has been revoked since: consulted on every verification,
/// cached ones included, so a revocation takes effect at once. An authorization server in
/// the same process implements it over its grants (by `jti`, or by subject and client).
/// It must be cheap and must not block: it runs on every request.
pub trait RevocationCheck: Send + Sync + 'static {
    /// Whether `principal`'s token (its claims are in `principal.claims`) is revoked.
    fn is_revoked(&self, principal: &Principal) -> bool;
}

/// Verifies JWT access tokens.
pub struct JwtVerifier {
    keys: Keys,
    allowed: Vec<Algorithm>,
    rules: ClaimRules,
    max_token_bytes: usize,
    cache: VerifiedCache,
    revocation: Option<Arc<dyn RevocationCheck>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            Keys::Static(k) => format!("{} static key(s)", k.len()),
            Keys::Jwks(src) => format!("{src:?}"),
            Keys::Ring(ring) => format!("{ring:?}"),
        };
        f.debug_struct("JwtVerifier")
            .field("keys", &keys)
            .field("allowed", &self.allowed)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// Configures a [`JwtVerifier`].
#[must_use]
pub struct JwtVerifierBuilder {
    rules: ClaimRules,
    allowed: Vec<Algorithm>,
    source: Option<KeySource>,
    max_token_bytes: usize,
    cache_capacity: u64,
    cache_ttl: Duration,
    client: Option<Fetcher>,
    revocation: Option<Arc<dyn RevocationCheck>>,
}

enum KeySource {
    Jwks(Url, JwksOptions),
    Discover(String, JwksOptions),
    Ring(Arc<KeyRing>),
    Pem(Vec<u8>),
    Hmac(Vec<u8>),
}

/// A verifier that cannot be built as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtConfigError {
    /// No key source was given.
    #[error("no key source: give a JWKS URL, a PEM public key or an HMAC secret")]
    NoKeySource,
    /// The key cannot be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The algorithm allow-list is empty.
    #[error("the algorithm allow-list is empty")]
    NoAlgorithms,
    /// The HTTP client for JWKS could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
}

impl JwtVerifierBuilder {
    /// Fetches keys from a JWKS URL.
    pub fn jwks(mut self, url: Url, options: JwksOptions) -> Self {
        self.source = Some(KeySource::Jwks(url, options));
        self
    }

    /// Verifies with keys from the `jwks_uri` in `issuer`'s RFC 8414 or OpenID metadata,
    /// discovered on [`TokenVerifier::warm_up`] or the first token (see [`crate::discovery`]).
    pub fn jwks_from_issuer(mut self, issuer: impl Into<String>, options: JwksOptions) -> Self {
        self.source = Some(KeySource::Discover(issuer.into(), options));
        self
    }

    /// Verifies with the keys of `ring`, supplied and rotated in process.
    pub fn key_ring(mut self, ring: Arc<KeyRing>) -> Self {
        self.source = Some(KeySource::Ring(ring));
        self
    }

    /// Consults `check` on every verification (cached ones included); a revoked token is
    /// refused with [`TokenError::Revoked`].
    pub fn revocation(mut self, check: Arc<dyn RevocationCheck>) -> Self {
        self.revocation = Some(check);
        self
    }

    /// Verifies with one static public key (PEM).
    pub fn public_key_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.source = Some(KeySource::Pem(pem.into()));
        self
    }

    /// Verifies with a shared HMAC secret.
    pub fn hmac_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.source = Some(KeySource::Hmac(secret.into()));
        self
    }

    /// Restricts the algorithms accepted (intersected with what the key type allows).
    pub fn algorithms(mut self, allowed: impl IntoIterator<Item = Algorithm>) -> Self {
        self.allowed = allowed.into_iter().collect();
        self
    }

    /// Largest token accepted; longer ones are refused before any parsing.
    pub fn max_token_bytes(mut self, max: usize) -> Self {
        self.max_token_bytes = max;
        self
    }

    /// Keeps up to `capacity` verified tokens for at most `ttl` (never past their `exp`).
    /// A zero capacity or ttl disables the cache.
    pub fn cache(mut self, capacity: u64, ttl: Duration) -> Self {
        self.cache_capacity = capacity;
        self.cache_ttl = ttl;
        self
    }

    /// How the JWKS and the issuer's metadata are fetched (default: anywhere, since the
    /// operator configured the URL, 1 MiB, the JWKS options' timeout, no redirects).
    pub fn fetcher(mut self, fetcher: Fetcher) -> Self {
        self.client = Some(fetcher);
        self
    }

    /// Builds the verifier. Static keys are parsed now; a JWKS is fetched on
    /// [`TokenVerifier::warm_up`] or the first token.
    pub fn build(self) -> Result<JwtVerifier, JwtConfigError> {
        if self.allowed.is_empty() {
            return Err(JwtConfigError::NoAlgorithms);
        }
        let keys = match self.source.ok_or(JwtConfigError::NoKeySource)? {
            KeySource::Pem(pem) => {
                Keys::Static(vec![VerificationKey::from_pem(&pem, &self.allowed)?])
            }
            KeySource::Hmac(secret) => Keys::Static(vec![VerificationKey::from_hmac_secret(
                &secret,
                &self.allowed,
            )?]),
            KeySource::Jwks(url, options) => {
                let client = client(self.client, &options)?;
                Keys::Jwks(Arc::new(JwksSource::new(
                    url,
                    client,
                    &self.allowed,
                    options,
                )))
            }
            KeySource::Ring(ring) => Keys::Ring(ring),
            KeySource::Discover(issuer, options) => {
                let client = client(self.client, &options)?;
                Keys::Jwks(Arc::new(JwksSource::from_issuer(
                    issuer,
                    client,
                    &self.allowed,
                    options,
                )))
            }
        };
        Ok(JwtVerifier {
            keys,
            allowed: self.allowed,
            rules: self.rules,
            max_token_bytes: self.max_token_bytes,
            cache: VerifiedCache::new(self.cache_capacity, self.cache_ttl),
            revocation: self.revocation,
        })
    }
}

/// The given fetcher, or one for an operator-configured URL.
fn client(given: Option<Fetcher>, options: &JwksOptions) -> Result<Fetcher, JwtConfigError> {
    match given {
        Some(f) => Ok(f),
        None => Fetcher::new(FetchRules {
            destinations: Destinations::Any,
            max_bytes: options.max_bytes,
            timeout: options.timeout,
            max_redirects: 0,
        })
        .map_err(|e| JwtConfigError::Client(e.to_string())),
    }
}

impl JwtVerifier {
    /// Starts a verifier that applies `rules` to every authentic token.
    pub fn builder(rules: ClaimRules) -> JwtVerifierBuilder {
        JwtVerifierBuilder {
            rules,
            allowed: ALL_ALGORITHMS.to_vec(),
            source: None,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            cache_capacity: 10_000,
            cache_ttl: Duration::from_secs(300),
            client: None,
            revocation: None,
        }
    }

    /// The JWKS source, when keys come from one.
    pub fn jwks(&self) -> Option<&Arc<JwksSource>> {
        match &self.keys {
            Keys::Jwks(src) => Some(src),
            Keys::Static(_) | Keys::Ring(_) => None,
        }
    }

    /// Changes whenever a key is withdrawn from the JWKS: cached verifications made before
    /// then are no longer trusted.
    fn key_generation(&self) -> u64 {
        match &self.keys {
            Keys::Static(_) => 0,
            Keys::Jwks(source) => source.generation(),
            Keys::Ring(ring) => ring.generation(),
        }
    }

    fn unless_revoked(&self, principal: Arc<Principal>) -> VerifyResult {
        match &self.revocation {
            Some(check) if check.is_revoked(&principal) => Err(Rejection {
                reason: TokenError::Revoked,
                subject: Some(principal.subject.clone()),
                client_id: principal.client_id.clone(),
            }),
            _ => Ok(principal),
        }
    }

    async fn verify_uncached(&self, token: &str) -> Result<Map<String, Value>, Rejection> {
        let header = decode_header(token).map_err(|e| header_error(token, &e))?;
        if has_critical_extensions(token) {
            return Err(TokenError::Malformed(Malformed::CriticalExtension).into());
        }
        if !self.allowed.contains(&header.alg) {
            return Err(TokenError::AlgorithmNotAllowed(format!("{:?}", header.alg)).into());
        }
        match &self.keys {
            Keys::Static(keys) => verify_with(keys, header.kid.as_deref(), header.alg, token),
            Keys::Ring(ring) => verify_with(&ring.keys(), header.kid.as_deref(), header.alg, token),
            Keys::Jwks(source) => {
                let mut refreshed = false;
                loop {
                    let set = match source.keys() {
                        Some(set) => set,
                        None => {
                            source
                                .refresh()
                                .await
                                .map_err(|e| TokenError::Unavailable(format!("JWKS: {e}")))?;
                            refreshed = true;
                            source
                                .keys()
                                .ok_or_else(|| TokenError::Unavailable("JWKS not loaded".into()))?
                        }
                    };
                    match verify_with(&set.keys, header.kid.as_deref(), header.alg, token) {
                        // A kid we have never seen may be a freshly rotated key: refetch once.
                        Err(r) if matches!(r.reason, TokenError::UnknownKey(_)) && !refreshed => {
                            refreshed = true;
                            match source.refresh().await {
                                // Refreshed now, or by a concurrent request moments ago (the
                                // interval then refuses another fetch): look again either way.
                                Ok(_) => continue,
                                // The kid may be a rotated key we cannot fetch now: that is
                                // the key server's failure, not the token's (503, not 401).
                                Err(e) => {
                                    return Err(
                                        TokenError::Unavailable(format!("JWKS: {e}")).into()
                                    );
                                }
                            }
                        }
                        other => return other,
                    }
                }
            }
        }
    }
}

/// Whether the token's payload holds an object with the same member twice, at any depth.
fn has_repeated_members(token: &str) -> bool {
    use serde::de::{Deserializer as _, MapAccess, SeqAccess, Visitor};

    struct Unique;
    impl<'de> Visitor<'de> for Unique {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key) {
                    return Err(serde::de::Error::custom("repeated member"));
                }
                map.next_value::<UniqueValue>()?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<UniqueValue>()?.is_some() {}
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }
    struct UniqueValue;
    impl<'de> serde::Deserialize<'de> for UniqueValue {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Unique).map(|()| UniqueValue)
        }
    }
    let Some(payload) = token.split('.').nth(1) else {
        return false;
    };
    let Ok(bytes) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('='))
    else {
        return false;
    };
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    de.deserialize_any(Unique).is_err()
}

/// Whether the token's header lists `crit` extensions (RFC 7515 §4.1.11: a recipient that
/// does not understand them MUST reject the token; this one understands none).
fn has_critical_extensions(token: &str) -> bool {
    let Some(segment) = token.split('.').next() else {
        return false;
    };
    let Ok(bytes) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment.trim_end_matches('='))
    else {
        return false;
    };
    serde_json::from_slice::<Map<String, Value>>(&bytes).is_ok_and(|h| h.contains_key("crit"))
}

fn verify_with(
    keys: &[VerificationKey],
    kid: Option<&str>,
    alg: Algorithm,
    token: &str,
) -> Result<Map<String, Value>, Rejection> {
    let mut candidates = keys.iter().filter(|k| match (kid, &k.kid) {
        (Some(wanted), Some(have)) => wanted == have,
        // A token without kid is tried against every key; a key without kid (static
        // keys) accepts any kid.
        _ => true,
    });
    let mut tried_any = false;
    let mut alg_refused = false;
    let mut last = None;
    for key in &mut candidates {
        if !key.algorithms.contains(&alg) {
            alg_refused = true;
            continue;
        }
        tried_any = true;
        match decode::<Map<String, Value>>(token, &key.key, &key.validation) {
            // A claim given twice means different things to readers that keep the first and
            // those that keep the last (`{"scope":"none","scope":"admin"}`): refused, as the
            // registered claims already are.
            Ok(_) if has_repeated_members(token) => {
                return Err(TokenError::Malformed(Malformed::RepeatedClaim).into());
            }
            Ok(data) => return Ok(data.claims),
            Err(e) => {
                let err = map_error(e.kind());
                if err != TokenError::BadSignature {
                    return Err(err.into());
                }
                last = Some(err);
            }
        }
    }
    match (tried_any, kid) {
        (true, _) => Err(last.unwrap_or(TokenError::BadSignature).into()),
        (false, _) if alg_refused => {
            Err(TokenError::AlgorithmNotAllowed(format!("{alg:?}")).into())
        }
        (false, Some(kid)) => Err(TokenError::UnknownKey(printable(kid)).into()),
        (false, None) => Err(TokenError::NoMatchingKey.into()),
    }
}

fn map_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => TokenError::AlgorithmNotAllowed("mismatch".into()),
        ErrorKind::Base64(_) => TokenError::Malformed(Malformed::Base64),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => TokenError::Malformed(Malformed::Json),
        ErrorKind::InvalidToken => TokenError::Malformed(Malformed::SegmentCount(0)),
        // Key problems (a JWK whose numbers do not make a valid key) end as a failed
        // signature: nothing about such a token can be trusted.
        _ => TokenError::BadSignature,
    }
}

/// Explains a header that jsonwebtoken refused. When the header is readable JSON with an
/// `alg` jsonwebtoken does not know (`none`, for instance), say so: that is an attack worth
/// naming in the log.
fn header_error(token: &str, err: &jsonwebtoken::errors::Error) -> Rejection {
    let segment = token.split('.').next().unwrap_or_default();
    let alg = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
        .map(|header| header.get("alg").and_then(Value::as_str).map(str::to_owned));
    match alg {
        Some(Some(alg)) => TokenError::AlgorithmNotAllowed(printable(&alg)).into(),
        Some(None) => TokenError::Malformed(Malformed::Json).into(),
        None => map_error(err.kind()).into(),
    }
}

/// Checks size and shape before anything else touches the token.
pub(crate) fn precheck(token: &str, max: usize) -> Result<(), TokenError> {
    check_size(token, max)?;
    let segments = crate::bytes::count(token.as_bytes(), |b| b == b'.') + 1;
    if segments != 3 {
        return Err(TokenError::Malformed(Malformed::SegmentCount(segments)));
    }
    Ok(())
}

impl TokenVerifier for JwtVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, VerifyResult> {
        Box::pin(async move {
            precheck(token, self.max_token_bytes)?;
            let key = digest(token);
            let generation = self.key_generation();
            if let Some(principal) = self.cache.get(&key, generation) {
                return self.unless_revoked(principal);
            }
            let claims = self.verify_uncached(token).await?;
            let principal = Arc::new(self.rules.check(claims, SystemTime::now())?);
            self.cache.insert(key, Arc::clone(&principal), generation);
            self.unless_revoked(principal)
        })
    }

    fn is_ready(&self) -> bool {
        match &self.keys {
            Keys::Static(_) => true,
            Keys::Jwks(source) => source.is_loaded(),
            Keys::Ring(ring) => !ring.keys().is_empty(),
        }
    }

    fn still_valid(&self, principal: &Principal) -> bool {
        // With the leeway `verify` allows: a stream must not end while the same token would
        // still open a new one (the client would reconnect in a loop).
        principal
            .expires_at
            .is_none_or(|at| at + self.rules.leeway > SystemTime::now())
            && self
                .revocation
                .as_ref()
                .is_none_or(|check| !check.is_revoked(principal))
    }

    fn known_good(&self, token: &str) -> bool {
        precheck(token, self.max_token_bytes).is_ok()
            && self
                .cache
                .get(&digest(token), self.key_generation())
                .is_some_and(|p| self.unless_revoked(p).is_ok())
    }

    fn warm_up(&self) -> BoxFuture<'_, Result<(), WarmUpError>> {
        Box::pin(async move {
            match &self.keys {
                Keys::Static(_) | Keys::Ring(_) => Ok(()),
                Keys::Jwks(source) => source
                    .refresh()
                    .await
                    .map(|_| ())
                    .map_err(WarmUpError::Jwks),
            }
        })
    }
}
