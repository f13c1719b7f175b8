//! The [`TokenVerifier`] trait: a bearer string in, a [`Principal`] or a typed
//! [`Rejection`] out.
//!
//! ```
//! use std::sync::Arc;
//! use mcpgate_guard::{Principal, Scope, StaticTokens, Subject, TokenVerifier};
//!
//! # tokio_test_block_on(async {
//! let verifier = StaticTokens::new([(
//!     "dev-token".to_string(),
//!     Principal::builder(Subject::new("alice")).scopes([Scope::new("mcp")]).build(),
//! )]);
//! let alice = verifier.verify("dev-token").await.unwrap();
//! assert_eq!(alice.subject.as_str(), "alice");
//! assert!(verifier.verify("guess").await.is_err());
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
#[cfg(any(feature = "jwt", feature = "introspection"))]
use std::time::{Duration, Instant, SystemTime};

use crate::error::Rejection;
#[cfg(any(feature = "jwt", feature = "introspection"))]
use crate::error::{Malformed, TokenError};
use crate::principal::Principal;

/// A boxed, sendable future, as returned by [`TokenVerifier::verify`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a verification yields.
pub type VerifyResult = Result<Arc<Principal>, Rejection>;

/// Checks bearer tokens.
///
/// Implementations must fail closed: when they cannot decide (a key server or introspection
/// endpoint is down), they return [`TokenError::Unavailable`](crate::TokenError::Unavailable),
/// never a principal.
pub trait TokenVerifier: Send + Sync + 'static {
    /// Verifies `token` (the bearer string, without the `Bearer ` prefix).
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, VerifyResult>;

    /// Whether the verifier has what it needs to accept tokens (for example, keys loaded).
    fn is_ready(&self) -> bool {
        true
    }

    /// Loads what the verifier needs before the first request (keys, for example). Errors are
    /// reported but not fatal: the verifier retries on demand.
    fn warm_up(&self) -> BoxFuture<'_, Result<(), WarmUpError>> {
        Box::pin(async { Ok(()) })
    }

    /// Whether `token` was accepted recently and still would be, known without verifying it
    /// again (from a cache, say) — `false` when unsure. A rate limiter uses it to let known
    /// callers through while it slows down an address that sends bad tokens.
    fn known_good(&self, _token: &str) -> bool {
        false
    }

    /// Whether a principal this verifier accepted earlier would still be accepted now: not
    /// expired and, where the verifier knows of revocations, not revoked. A proxy asks this
    /// of a long-lived stream opened with the token, to end it when the token ends.
    fn still_valid(&self, principal: &Principal) -> bool {
        principal
            .expires_at
            .is_none_or(|at| at > std::time::SystemTime::now())
    }
}

impl<T: TokenVerifier + ?Sized> TokenVerifier for Arc<T> {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, VerifyResult> {
        (**self).verify(token)
    }

    fn is_ready(&self) -> bool {
        (**self).is_ready()
    }

    fn warm_up(&self) -> BoxFuture<'_, Result<(), WarmUpError>> {
        (**self).warm_up()
    }

    fn known_good(&self, token: &str) -> bool {
        (**self).known_good(token)
    }

    fn still_valid(&self, principal: &Principal) -> bool {
        (**self).still_valid(principal)
    }
}

/// Why a verifier could not load what it needs before the first request
/// ([`TokenVerifier::warm_up`]). Not fatal: the verifier retries on demand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WarmUpError {
    /// The key set could not be loaded.
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    #[error(transparent)]
    Jwks(crate::JwksError),
    /// Verifiers behind [`Issuers`](crate::Issuers) that could not warm up, each with the
    /// issuers it serves.
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    #[error("{}", join_issuers(.0))]
    Issuers(Vec<(Vec<String>, WarmUpError)>),
    /// Any other reason (for verifiers outside this crate).
    #[error("{0}")]
    Other(String),
}

#[cfg(feature = "jwt")]
fn join_issuers(problems: &[(Vec<String>, WarmUpError)]) -> String {
    problems
        .iter()
        .map(|(issuers, e)| format!("{}: {e}", issuers.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Default largest token accepted, in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Refuses empty tokens, and tokens over `max` bytes before anything parses or sends them.
#[cfg(any(feature = "jwt", feature = "introspection"))]
pub(crate) fn check_size(token: &str, max: usize) -> Result<(), TokenError> {
    if token.len() > max {
        return Err(TokenError::TooLarge {
            len: token.len(),
            max,
        });
    }
    if token.is_empty() {
        return Err(TokenError::Malformed(Malformed::Empty));
    }
    Ok(())
}

/// A keyed 128-bit digest of a token: what caches and lookup tables are keyed by, so that no
/// table holds a usable token and lookups reveal nothing through timing.
///
/// SipHash is a pseudorandom function under its key; the key is drawn at random once per
/// process and never leaves it, and no digest is ever shown outside, so nobody can compute
/// one, test a guess offline, or make two tokens collide (a guess at a cached token's digest
/// succeeds with probability 2^-128). SipHash-1-3 — one compression round per eight bytes,
/// the variant Rust's own hash tables key with against chosen inputs — costs half of
/// SipHash-2-4 and a small fraction of SHA-256 over a typical 1 KiB token, and the digest is
/// computed on every request.
pub(crate) type TokenDigest = u128;

pub(crate) fn digest(token: &str) -> TokenDigest {
    use siphasher::sip128::Hasher128 as _;
    use std::hash::Hasher as _;
    static KEY: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut key = [0u8; 16];
        aws_lc_rs::rand::fill(&mut key).expect("the system's random source works");
        key
    });
    let mut hasher = siphasher::sip128::SipHasher13::new_with_key(key);
    hasher.write(token.as_bytes());
    hasher.finish128().as_u128()
}

/// Hashing for tables keyed by [`TokenDigest`]: the digest's own bits. It is already a keyed
/// pseudorandom value nobody outside can compute or choose, so hashing it again (as a table's
/// default hasher would, with SipHash of its own) only costs time on every lookup.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DigestBits(u64);

impl std::hash::Hasher for DigestBits {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only digests are hashed here (`write_u128`); anything else is folded in, eight bytes
        // at a time, so that the hasher stays correct if it ever is.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(29) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u128(&mut self, digest: u128) {
        // Truncation intended: both halves are uniformly random.
        #[allow(clippy::cast_possible_truncation)]
        let (low, high) = (digest as u64, (digest >> 64) as u64);
        self.0 ^= low ^ high.rotate_left(32);
    }
}

/// The [`std::hash::BuildHasher`] of [`DigestBits`].
pub(crate) type DigestHashing = std::hash::BuildHasherDefault<DigestBits>;

/// A verified principal as kept in a cache: until `deadline`, and only while the key set it
/// was verified with (`generation`) is still the one in service.
#[cfg(any(feature = "jwt", feature = "introspection"))]
#[derive(Clone)]
pub(crate) struct CachedPrincipal {
    pub(crate) principal: Arc<Principal>,
    pub(crate) deadline: Instant,
    pub(crate) generation: u64,
}

#[cfg(any(feature = "jwt", feature = "introspection"))]
impl CachedPrincipal {
    /// An entry for `principal` lasting `ttl`, never past the token's `exp`; `None` when the
    /// token is already past it (the claim check's leeway allowed it, the cache does not).
    pub(crate) fn new(principal: Arc<Principal>, ttl: Duration, generation: u64) -> Option<Self> {
        let now = Instant::now();
        let mut deadline = now + ttl;
        if let Some(exp) = principal.expires_at {
            deadline = deadline.min(now + exp.duration_since(SystemTime::now()).ok()?);
        }
        Some(CachedPrincipal {
            principal,
            deadline,
            generation,
        })
    }

    /// The principal, if the entry is still good.
    pub(crate) fn fresh(self, generation: u64) -> Option<Arc<Principal>> {
        // moka's expiry is lazy; never hand out an entry past its deadline.
        (Instant::now() < self.deadline && self.generation == generation).then_some(self.principal)
    }
}

/// Expires cache entries at their deadline.
#[cfg(any(feature = "jwt", feature = "introspection"))]
pub(crate) struct UntilDeadline;

#[cfg(any(feature = "jwt", feature = "introspection"))]
impl moka::Expiry<TokenDigest, CachedPrincipal> for UntilDeadline {
    fn expire_after_create(
        &self,
        _key: &TokenDigest,
        value: &CachedPrincipal,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.deadline.saturating_duration_since(created_at))
    }
}

/// Verified principals by token digest. A repeated token then costs one hash and one lookup
/// instead of a signature check.
#[cfg(feature = "jwt")]
#[derive(Clone)]
pub(crate) struct VerifiedCache {
    inner: Option<moka::sync::Cache<TokenDigest, CachedPrincipal, DigestHashing>>,
    ttl: Duration,
}

#[cfg(feature = "jwt")]
impl VerifiedCache {
    pub(crate) fn new(capacity: u64, ttl: Duration) -> Self {
        if capacity == 0 || ttl.is_zero() {
            return VerifiedCache { inner: None, ttl };
        }
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .expire_after(UntilDeadline)
            .build_with_hasher(DigestHashing::default());
        VerifiedCache {
            inner: Some(cache),
            ttl,
        }
    }

    pub(crate) fn get(&self, key: &TokenDigest, generation: u64) -> Option<Arc<Principal>> {
        self.inner.as_ref()?.get(key)?.fresh(generation)
    }

    pub(crate) fn insert(&self, key: TokenDigest, principal: Arc<Principal>, generation: u64) {
        if let (Some(cache), Some(entry)) = (
            &self.inner,
            CachedPrincipal::new(principal, self.ttl, generation),
        ) {
            cache.insert(key, entry);
        }
    }
}

#[cfg(all(test, feature = "jwt"))]
mod tests {
    use super::*;
    use crate::JwksError;
    use crate::fetch::FetchError;

    #[test]
    fn warm_up_errors_read_as_before() {
        let e = WarmUpError::Issuers(vec![
            (
                vec!["https://a.example".into(), "https://b.example".into()],
                WarmUpError::Jwks(JwksError::Fetch(FetchError::Status(503))),
            ),
            (
                vec!["https://c.example".into()],
                WarmUpError::Jwks(JwksError::NoUsableKey),
            ),
        ]);
        assert_eq!(
            e.to_string(),
            "https://a.example, https://b.example: HTTP status 503; \
             https://c.example: the JWK Set has no usable signing key"
        );
        assert_eq!(
            WarmUpError::Jwks(JwksError::NotAJwkSet("EOF".into())).to_string(),
            "not a JWK Set: EOF"
        );
    }
}
