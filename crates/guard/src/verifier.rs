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
use std::time::{Duration, Instant, SystemTime};

use crate::error::Rejection;
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
    fn warm_up(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

impl<T: TokenVerifier + ?Sized> TokenVerifier for Arc<T> {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, VerifyResult> {
        (**self).verify(token)
    }

    fn is_ready(&self) -> bool {
        (**self).is_ready()
    }

    fn warm_up(&self) -> BoxFuture<'_, Result<(), String>> {
        (**self).warm_up()
    }
}

/// The SHA-256 of a token: what caches and lookup tables are keyed by, so that no table
/// holds a usable token and lookups reveal nothing through timing.
pub(crate) type TokenDigest = [u8; 32];

pub(crate) fn digest(token: &str) -> TokenDigest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Verified principals by token digest, each kept no longer than its token's `exp` nor the
/// configured bound. A repeated token then costs one hash and one lookup instead of a
/// signature check or a network round trip.
#[derive(Clone)]
pub(crate) struct VerifiedCache {
    inner: Option<moka::sync::Cache<TokenDigest, (Arc<Principal>, Instant)>>,
}

struct UntilDeadline;

impl moka::Expiry<TokenDigest, (Arc<Principal>, Instant)> for UntilDeadline {
    fn expire_after_create(
        &self,
        _key: &TokenDigest,
        value: &(Arc<Principal>, Instant),
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.1.saturating_duration_since(created_at))
    }
}

impl VerifiedCache {
    pub(crate) fn new(capacity: u64, ttl: Duration) -> Self {
        if capacity == 0 || ttl.is_zero() {
            return VerifiedCache { inner: None };
        }
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .expire_after(UntilDeadline)
            .build();
        VerifiedCache { inner: Some(cache) }
    }

    pub(crate) fn get(&self, key: &TokenDigest) -> Option<Arc<Principal>> {
        let (principal, deadline) = self.inner.as_ref()?.get(key)?;
        // moka's expiry is lazy; never hand out an entry past its deadline.
        (Instant::now() < deadline).then_some(principal)
    }

    /// Caches `principal` until its expiry (less `leeway` is not applied: the claim check
    /// already allowed it) or `ttl`, whichever comes first.
    pub(crate) fn insert(&self, key: TokenDigest, principal: Arc<Principal>, ttl: Duration) {
        let Some(cache) = &self.inner else { return };
        let now = Instant::now();
        let mut until = now + ttl;
        if let Some(exp) = principal.expires_at {
            match exp.duration_since(SystemTime::now()) {
                Ok(left) => until = until.min(now + left),
                Err(_) => return,
            }
        }
        cache.insert(key, (principal, until));
    }
}
