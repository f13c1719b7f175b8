//! High-entropy random tokens (authorization codes, refresh tokens, client secrets,
//! registration access tokens) and the only form in which the store keeps them: a SHA-256
//! [`TokenHash`].
//!
//! SHA-256 is the right hash here because every such token carries 256 random bits: there is
//! nothing to brute-force, so a slow password hash would only cost time on every request.
//! Passwords chosen by people are another matter; they are hashed with argon2id elsewhere.
//!
//! ```
//! use mcpgate_issuer::secret::{TokenHash, generate_token};
//!
//! let token = generate_token();
//! let hash = TokenHash::of(&token);
//! assert!(hash.matches(&TokenHash::of(&token)));
//! assert!(!hash.matches(&TokenHash::of("guess")));
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq as _;

/// Random bytes in every token this crate generates.
pub const TOKEN_BYTES: usize = 32;

/// A new random token: [`TOKEN_BYTES`] bytes from the system's random source, base64url
/// without padding (43 characters).
///
/// # Panics
/// When the operating system's random source fails, which leaves nothing safe to do.
pub fn generate_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<TOKEN_BYTES>())
}

/// `N` bytes from the system's random source.
///
/// # Panics
/// When the operating system's random source fails.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system's random source works");
    bytes
}

/// The SHA-256 digest of a token: what the store keeps and looks tokens up by, so that a copy
/// of the database holds no usable code, refresh token or secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes `token` as presented (no normalisation: tokens are compared byte for byte).
    pub fn of(token: &str) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        TokenHash(bytes)
    }

    /// A hash read back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        TokenHash(bytes)
    }

    /// The digest bytes, as stored.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Compares in constant time: for a stored hash checked against a presented token (a
    /// client secret, a registration access token), where timing must not say how much of it
    /// matched.
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl TryFrom<&[u8]> for TokenHash {
    type Error = WrongHashLength;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 32]>::try_from(bytes)
            .map(TokenHash)
            .map_err(|_| WrongHashLength(bytes.len()))
    }
}

/// Bytes that cannot be a SHA-256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a token hash is 32 bytes, found {0}")]
pub struct WrongHashLength(pub usize);

impl fmt::Debug for TokenHash {
    /// The first 8 bytes in hex: enough to tell hashes apart in a log, and no more.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_43_url_safe_characters_and_differ() {
        let a = generate_token();
        let b = generate_token();
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, b);
    }

    #[test]
    fn hash_is_sha256_of_the_token_bytes() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let hash = TokenHash::of("abc");
        assert_eq!(hash.as_bytes()[..4], [0xba, 0x78, 0x16, 0xbf]);
    }

    #[test]
    fn hash_of_wrong_length_is_refused() {
        assert_eq!(
            TokenHash::try_from(&[0u8; 31][..]),
            Err(WrongHashLength(31))
        );
    }

    #[test]
    fn debug_shows_only_a_prefix() {
        let shown = format!("{:?}", TokenHash::from_bytes([0xab; 32]));
        assert_eq!(shown, "TokenHash(abababababababab…)");
    }
}
