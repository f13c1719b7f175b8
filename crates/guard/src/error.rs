//! Why a bearer token was refused.
//!
//! Every reason is a variant, so that the operator's log can say exactly what went wrong
//! (`expired`, `wrong audience`, `unknown kid` …) while the client only ever learns the
//! OAuth error code. The mapping to HTTP lives in one place: [`crate::challenge`].

use std::fmt;

use crate::principal::{ClaimsError, ClientId, Subject};

/// The precise reason a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is longer than the configured limit; it was not parsed.
    #[error("token is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Length of the presented token.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The token is not a well-formed JWT (segments, base64, JSON).
    #[error("malformed token: {0}")]
    Malformed(Malformed),
    /// The header names an algorithm that is not allowed for the configured keys.
    #[error("algorithm `{0}` is not allowed")]
    AlgorithmNotAllowed(String),
    /// No configured key matches the token's `kid` (after one refresh of the key set).
    #[error("unknown key id `{0}`")]
    UnknownKey(String),
    /// The token has no `kid` and no configured key verifies it.
    #[error("no key matches the token (no `kid`)")]
    NoMatchingKey,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("expired at {exp} (now {now}, leeway {leeway}s)")]
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// The time of the check.
        now: u64,
        /// Allowed clock skew in seconds.
        leeway: u64,
    },
    /// `nbf` is in the future (beyond the leeway).
    #[error("not valid before {nbf} (now {now}, leeway {leeway}s)")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: u64,
        /// The time of the check.
        now: u64,
        /// Allowed clock skew in seconds.
        leeway: u64,
    },
    /// A claim is missing or has the wrong shape.
    #[error("{0}")]
    Claims(#[from] ClaimsError),
    /// `iss` is not the configured issuer.
    #[error("wrong issuer `{found}`")]
    WrongIssuer {
        /// The token's issuer.
        found: String,
    },
    /// None of the token's audiences is accepted here.
    #[error("wrong audience {found:?}")]
    WrongAudience {
        /// The token's audiences.
        found: Vec<String>,
    },
    /// The introspection endpoint says the token is not active.
    #[error("token is not active (introspection)")]
    Inactive,
    /// The token was revoked ([`crate::RevocationCheck`]).
    #[error("token was revoked")]
    Revoked,
    /// A static token that is not configured.
    #[error("unknown static token")]
    UnknownToken,
    /// The verifier cannot reach what it needs (JWKS or introspection endpoint down or slow).
    /// Callers fail closed: the request is refused, never allowed.
    #[error("token cannot be checked now: {0}")]
    Unavailable(String),
}

/// A value read from an unverified token, made safe for a log line: at most 64 characters,
/// control characters and quotes escaped.
#[cfg(feature = "jwt")]
pub(crate) fn printable(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(64)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().count() > 64 {
        out.push('…');
    }
    out
}

/// How a token failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// Not three dot-separated segments.
    #[error("expected 3 segments, found {0}")]
    SegmentCount(usize),
    /// A segment is not base64url.
    #[error("a segment is not base64url")]
    Base64,
    /// The header or payload is not the expected JSON.
    #[error("header or payload is not valid JSON")]
    Json,
    /// The token is empty.
    #[error("the token is empty")]
    Empty,
    /// The header names extensions that must be understood (`crit`, RFC 7515 §4.1.11); this
    /// verifier understands none.
    #[error("the header has critical extensions (crit), which are not supported")]
    CriticalExtension,
    /// The payload names a claim (or a member of one) twice.
    #[error("the payload names a claim twice")]
    RepeatedClaim,
}

/// A refused token with whatever is known of who presented it, for the operator's log.
///
/// `subject` and `client_id` are only filled in once the token's authenticity was
/// established (signature verified or introspection answered), never from an unverified
/// payload.
#[derive(Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub reason: TokenError,
    /// Whose token it was, when known.
    pub subject: Option<Subject>,
    /// Which client it was issued to, when known.
    pub client_id: Option<ClientId>,
}

impl Rejection {
    /// Whether the failure is the verifier's (backend unavailable), not the token's.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.reason, TokenError::Unavailable(_))
    }
}

impl From<TokenError> for Rejection {
    fn from(reason: TokenError) -> Self {
        Rejection {
            reason,
            subject: None,
            client_id: None,
        }
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("reason", &self.reason)
            .field("subject", &self.subject)
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.reason, f)
    }
}

impl std::error::Error for Rejection {}
