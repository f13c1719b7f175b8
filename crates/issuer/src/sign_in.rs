//! Who the person at the authorization server is. For now: local users with argon2id password
//! hashes ([`LocalUsers`]); an upstream identity provider (federation) is the other kind of
//! sign-in to come, behind the same outcome — a [`Subject`] or a [`SignInError`].
//!
//! Three choices keep a flood of sign-in attempts from hurting anyone else:
//!
//! - argon2id is slow on purpose (tens of milliseconds of CPU and 19 MiB each), so it runs
//!   off the async runtime ([`tokio::task::spawn_blocking`]) and at most
//!   [`SignInLimits::concurrent_verifications`] at a time: other requests keep being served
//!   while attempts queue;
//! - attempts are throttled per user name and per source address (the
//!   [`SourceAddress`](crate::clients::registration::SourceAddress) the host application
//!   puts in the request's extensions) before any hash is computed, and a throttled attempt
//!   is answered only after [`SignInLimits::throttled_delay`]: a client that keeps posting
//!   over its budget gets one answer a second per connection rather than as many as it can
//!   send, which caps what a flood costs this server (and a guesser's rate) at the
//!   connections it may open;
//! - a user name that does not exist, or a disabled user, costs the same verification as a
//!   wrong password against a real hash, and gets the same answer, so neither the message nor
//!   the time says which user names exist.
//!
//! ```
//! use mcpgate_issuer::sign_in::{hash_password, verify_password};
//!
//! let hash = hash_password("correct horse").unwrap();
//! assert!(hash.as_str().starts_with("$argon2id$"));
//! assert!(verify_password(&hash, "correct horse"));
//! assert!(!verify_password(&hash, "battery staple"));
//! ```

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use mcpgate_guard::Subject;
use tokio::sync::Semaphore;

use crate::store::{PasswordHash, UserName, UserStore};

/// Longest user name considered (longer ones are wrong without a lookup).
pub const MAX_USER_NAME: usize = 256;
/// Longest password considered.
pub const MAX_PASSWORD: usize = 1024;

/// How hard sign-in attempts are throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInLimits {
    /// Attempts a minute for one user name (a burst of this many, then one every
    /// `60 / n` seconds).
    pub per_user_per_minute: u32,
    /// Attempts a minute from one source address.
    pub per_address_per_minute: u32,
    /// Password verifications running at once.
    pub concurrent_verifications: usize,
    /// How long an attempt waits for a verification slot before the server says it is busy.
    pub queue_timeout: Duration,
    /// How long a throttled attempt's answer is held back (for at most
    /// [`MAX_HELD_BACK`] attempts at a time; beyond that they are answered at once).
    pub throttled_delay: Duration,
}

/// Throttled answers held back at once (each is a timer and its connection).
pub const MAX_HELD_BACK: usize = 512;

impl Default for SignInLimits {
    fn default() -> Self {
        SignInLimits {
            per_user_per_minute: 5,
            per_address_per_minute: 30,
            concurrent_verifications: 2,
            queue_timeout: Duration::from_secs(10),
            throttled_delay: Duration::from_secs(1),
        }
    }
}

/// Why a sign-in failed. Show [`WrongCredentials`](Self::WrongCredentials) as one message,
/// whatever was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    /// The user name or the password is wrong, or the user is disabled.
    #[error("user name or password is wrong")]
    WrongCredentials,
    /// Too many attempts for this user name or from this address.
    #[error("too many sign-in attempts; try again in {retry_after} seconds")]
    Throttled {
        /// Seconds until the next attempt is allowed.
        retry_after: u64,
    },
    /// Every verification slot stayed taken for too long.
    #[error("the server is busy; try again shortly")]
    Busy,
    /// The user could not be read.
    #[error("the user store failed")]
    Store,
}

/// Local users: throttled, bounded argon2id verification against the [`UserStore`].
pub struct LocalUsers {
    limits: SignInLimits,
    verifications: Arc<Semaphore>,
    held_back: Semaphore,
    per_user: DefaultKeyedRateLimiter<String>,
    per_address: DefaultKeyedRateLimiter<Option<IpAddr>>,
    throttle_notices: DefaultKeyedRateLimiter<Option<IpAddr>>,
    /// Keys the tags that name failed user names in the log; made at start, never stored.
    log_tags: aws_lc_rs::hmac::Key,
}

impl std::fmt::Debug for LocalUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalUsers")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Default for LocalUsers {
    fn default() -> Self {
        LocalUsers::new(SignInLimits::default())
    }
}

/// Keys kept by a limiter before the ones whose limit has fully recovered are dropped.
const LIMITER_KEYS: usize = 10_000;

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least one"))
}

impl LocalUsers {
    /// Local users throttled as `limits` says.
    pub fn new(limits: SignInLimits) -> LocalUsers {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        LocalUsers {
            log_tags: aws_lc_rs::hmac::Key::generate(aws_lc_rs::hmac::HMAC_SHA256, &rng)
                .expect("the system's random source works"),
            limits,
            verifications: Arc::new(Semaphore::new(limits.concurrent_verifications.max(1))),
            held_back: Semaphore::new(MAX_HELD_BACK),
            per_user: RateLimiter::keyed(per_minute(limits.per_user_per_minute)),
            per_address: RateLimiter::keyed(per_minute(limits.per_address_per_minute)),
            throttle_notices: RateLimiter::keyed(per_minute(6)),
        }
    }

    /// Whether a throttled attempt from `address` should be logged: the first, then one every
    /// ten seconds, so that a flood of refused attempts does not become a flood of log lines.
    pub fn report_throttled(&self, address: Option<IpAddr>) -> bool {
        if self.throttle_notices.len() > LIMITER_KEYS {
            self.throttle_notices.retain_recent();
        }
        self.throttle_notices.check_key(&address).is_ok()
    }

    /// Waits [`SignInLimits::throttled_delay`] before a throttled attempt is answered, unless
    /// [`MAX_HELD_BACK`] answers are waiting already.
    pub async fn hold_back_throttled(&self) {
        if let Ok(_held) = self.held_back.try_acquire() {
            tokio::time::sleep(self.limits.throttled_delay).await;
        }
    }

    /// Signs `name` in with `password`, from `address` when known.
    pub async fn sign_in(
        &self,
        users: &dyn UserStore,
        name: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<Subject, SignInError> {
        self.admit_address(address)?;
        self.sign_in_admitted(users, name, password).await
    }

    /// Counts one attempt from `address`, refusing it when that address made too many: the
    /// first step of [`sign_in`](Self::sign_in), for a caller that wants to refuse a flood
    /// before reading anything else of the request. Follow it with
    /// [`sign_in_admitted`](Self::sign_in_admitted).
    pub fn admit_address(&self, address: Option<IpAddr>) -> Result<(), SignInError> {
        if self.per_address.len() > LIMITER_KEYS {
            self.per_address.retain_recent();
        }
        let now = DefaultClock::default().now();
        self.per_address
            .check_key(&address)
            .map_err(|not_until| SignInError::Throttled {
                retry_after: not_until.wait_time_from(now).as_secs().max(1),
            })
    }

    /// What the log says of a user name that failed to sign in: a short keyed digest, so that
    /// attempts on one name can be told apart without writing what was typed — a password
    /// typed into the name field cannot be confirmed from the log, the key being this
    /// process's own.
    pub fn log_tag(&self, name: &str) -> String {
        aws_lc_rs::hmac::sign(&self.log_tags, name.as_bytes()).as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Signs `name` in with `password`, the source address already admitted by
    /// [`admit_address`](Self::admit_address): throttled per user name, then verified.
    pub async fn sign_in_admitted(
        &self,
        users: &dyn UserStore,
        name: &str,
        password: &str,
    ) -> Result<Subject, SignInError> {
        self.throttle_user(name)?;
        let user = if name.is_empty() || name.len() > MAX_USER_NAME {
            None
        } else {
            users.get_user(&UserName::new(name)).await.map_err(|e| {
                tracing::error!(target: "mcpgate::issuer", error = %e, "user lookup failed");
                SignInError::Store
            })?
        };
        let active = user.as_ref().is_some_and(|u| u.disabled_at.is_none());
        // Without a usable user the password is still checked, against a hash nobody's
        // password matches: the same work, the same answer.
        let hash = match &user {
            Some(u) if password.len() <= MAX_PASSWORD => u.password_hash.clone(),
            _ => decoy_hash().clone(),
        };
        let password = password.get(..MAX_PASSWORD).unwrap_or(password).to_owned();
        let matches = self.verify(hash, password).await?;
        match user {
            Some(user) if matches && active => Ok(Subject::new(user.name.as_str())),
            _ => Err(SignInError::WrongCredentials),
        }
    }

    fn throttle_user(&self, name: &str) -> Result<(), SignInError> {
        if self.per_user.len() > LIMITER_KEYS {
            self.per_user.retain_recent();
        }
        let key: String = name.chars().take(MAX_USER_NAME).collect();
        let now = DefaultClock::default().now();
        self.per_user
            .check_key(&key)
            .map_err(|not_until| SignInError::Throttled {
                retry_after: not_until.wait_time_from(now).as_secs().max(1),
            })
    }

    #[cfg(test)]
    fn throttle(&self, name: &str, address: Option<IpAddr>) -> Result<(), SignInError> {
        // The address first: an address that guesses many names is refused before it uses
        // up any one user's attempts.
        self.admit_address(address)?;
        self.throttle_user(name)
    }

    async fn verify(&self, hash: PasswordHash, password: String) -> Result<bool, SignInError> {
        let permit = tokio::time::timeout(
            self.limits.queue_timeout,
            Arc::clone(&self.verifications).acquire_owned(),
        )
        .await
        .map_err(|_| SignInError::Busy)?
        .map_err(|_| SignInError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify_password(&hash, &password)
        })
        .await
        .map_err(|_| SignInError::Busy)
    }
}

/// Whether `password` is the one `hash` was made from. Blocking and slow (argon2id): call it
/// off the async runtime, as [`LocalUsers`] does.
pub fn verify_password(hash: &PasswordHash, password: &str) -> bool {
    let Ok(parsed) = argon2::password_hash::phc::PasswordHash::new(hash.as_str()) else {
        return false;
    };
    // The parameters come from the stored hash, so hashes made with other costs still verify.
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashPasswordError {
    /// The password is empty.
    #[error("the password is empty")]
    Empty,
    /// The password is longer than [`MAX_PASSWORD`] bytes.
    #[error("the password is longer than {MAX_PASSWORD} bytes")]
    TooLong,
    /// argon2 failed (no random salt, out of memory).
    #[error("argon2: {0}")]
    Argon2(String),
}

/// The argon2id hash of a new password (argon2's default cost: 19 MiB, 2 passes, a random
/// salt), for `users add`. Blocking and slow.
pub fn hash_password(password: &str) -> Result<PasswordHash, HashPasswordError> {
    if password.is_empty() {
        return Err(HashPasswordError::Empty);
    }
    if password.len() > MAX_PASSWORD {
        return Err(HashPasswordError::TooLong);
    }
    let salt: [u8; 16] = crate::secret::random_bytes();
    let phc = Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| HashPasswordError::Argon2(e.to_string()))?;
    PasswordHash::new(phc.to_string()).map_err(|e| HashPasswordError::Argon2(e.to_string()))
}

/// A hash of a random password, made once, that unknown users are checked against.
fn decoy_hash() -> &'static PasswordHash {
    static DECOY: OnceLock<PasswordHash> = OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password(&crate::secret::generate_token()).expect("argon2 hashes a random password")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("s3cret").unwrap();
        assert!(verify_password(&hash, "s3cret"));
        assert!(!verify_password(&hash, "s3cret "));
    }

    #[test]
    fn empty_and_oversized_passwords_are_not_hashed() {
        assert!(matches!(hash_password(""), Err(HashPasswordError::Empty)));
        assert!(matches!(
            hash_password(&"a".repeat(MAX_PASSWORD + 1)),
            Err(HashPasswordError::TooLong)
        ));
    }

    #[test]
    fn a_malformed_stored_hash_never_verifies() {
        let hash = PasswordHash::new("$argon2id$garbage").unwrap();
        assert!(!verify_password(&hash, "anything"));
    }

    #[test]
    fn log_tags_tell_names_apart_and_are_keyed() {
        let users = LocalUsers::default();
        assert_eq!(users.log_tag("nobody-xff"), users.log_tag("nobody-xff"));
        assert_ne!(users.log_tag("nobody-xff"), users.log_tag("nobody-xfg"));
        // Not the plain digest of the name (which anyone could compute from a guess)...
        let plain = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"nobody-xff");
        let plain: String = plain.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(users.log_tag("nobody-xff"), plain);
        // ...nor the same in another process.
        assert_ne!(
            LocalUsers::default().log_tag("nobody-xff"),
            users.log_tag("nobody-xff")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_answers_are_held_back_up_to_a_bound() {
        let users = Arc::new(LocalUsers::new(SignInLimits {
            throttled_delay: Duration::from_secs(10),
            ..SignInLimits::default()
        }));
        let start = tokio::time::Instant::now();
        let held: Vec<_> = (0..MAX_HELD_BACK)
            .map(|_| {
                let users = Arc::clone(&users);
                tokio::spawn(async move {
                    users.hold_back_throttled().await;
                    tokio::time::Instant::now()
                })
            })
            .collect();
        while users.held_back.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        // Beyond the bound, an answer goes at once.
        users.hold_back_throttled().await;
        assert_eq!(tokio::time::Instant::now(), start);
        for answered in held {
            assert!(answered.await.unwrap() - start >= Duration::from_secs(10));
        }
    }

    #[test]
    fn the_address_limit_applies_across_user_names() {
        let users = LocalUsers::new(SignInLimits {
            per_address_per_minute: 2,
            ..SignInLimits::default()
        });
        let address = Some(IpAddr::from([192, 0, 2, 1]));
        assert!(users.throttle("a", address).is_ok());
        assert!(users.throttle("b", address).is_ok());
        assert!(matches!(
            users.throttle("c", address),
            Err(SignInError::Throttled { retry_after }) if retry_after >= 1
        ));
        assert!(
            users
                .throttle("c", Some(IpAddr::from([192, 0, 2, 2])))
                .is_ok()
        );
    }

    #[test]
    fn the_user_limit_applies_across_addresses() {
        let users = LocalUsers::new(SignInLimits {
            per_user_per_minute: 1,
            ..SignInLimits::default()
        });
        assert!(users.throttle("alice", Some([192, 0, 2, 1].into())).is_ok());
        assert!(
            users
                .throttle("alice", Some([192, 0, 2, 2].into()))
                .is_err()
        );
        assert!(users.throttle("bob", Some([192, 0, 2, 2].into())).is_ok());
    }
}
