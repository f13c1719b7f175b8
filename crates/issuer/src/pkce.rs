//! Proof Key for Code Exchange (RFC 7636), S256 only.
//!
//! An authorization request must carry a `code_challenge` with `code_challenge_method=S256`;
//! a missing challenge, a missing method (which RFC 7636 reads as `plain`) and `plain` itself
//! are refused (OAuth 2.1 §4.1.1, MCP AS-05). At the token endpoint the `code_verifier` must
//! be well formed (43 to 128 unreserved characters) and hash to the challenge; the comparison
//! takes the same time whatever the input.
//!
//! ```
//! use mcpgate_issuer::pkce::CodeChallenge;
//!
//! // RFC 7636 Appendix B.
//! let challenge =
//!     CodeChallenge::parse(Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"), Some("S256")).unwrap();
//! assert!(challenge.verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").is_ok());
//! assert!(challenge.verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl").is_err());
//! ```

use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::error::OAuthError;

/// A code challenge made with S256: the base64url SHA-256 of the client's verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// Reads the `code_challenge` and `code_challenge_method` of an authorization request.
    pub fn parse(challenge: Option<&str>, method: Option<&str>) -> Result<Self, OAuthError> {
        let challenge = challenge.ok_or_else(|| {
            OAuthError::invalid_request(
                "code_challenge is required (PKCE with code_challenge_method=S256)",
            )
        })?;
        match method {
            Some("S256") => {}
            None => {
                return Err(OAuthError::invalid_request(
                    "code_challenge_method is required and must be S256 (without it the challenge would be plain)",
                ));
            }
            Some(_) => {
                return Err(OAuthError::invalid_request(
                    "code_challenge_method must be S256",
                ));
            }
        }
        // A SHA-256 digest in base64url without padding is exactly 43 characters.
        let well_formed = challenge.len() == 43
            && base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(challenge)
                .is_ok_and(|d| d.len() == 32);
        if !well_formed {
            return Err(OAuthError::invalid_request(
                "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
            ));
        }
        Ok(CodeChallenge(challenge.to_owned()))
    }

    /// The challenge as stored with the code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A challenge read back from storage (already checked when it was parsed).
    pub fn from_stored(challenge: String) -> Self {
        CodeChallenge(challenge)
    }

    /// Checks the token request's `code_verifier` against this challenge.
    pub fn verify(&self, verifier: &str) -> Result<(), OAuthError> {
        if !is_verifier(verifier) {
            return Err(OAuthError::invalid_grant(
                "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
            ));
        }
        let computed = challenge_of(verifier);
        if bool::from(computed.as_bytes().ct_eq(self.0.as_bytes())) {
            Ok(())
        } else {
            Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge of the authorization request",
            ))
        }
    }
}

/// The S256 challenge of `verifier`.
pub fn challenge_of(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// RFC 7636 §4.1: 43 to 128 characters from the unreserved set.
fn is_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn the_rfc_7636_example_verifies() {
        assert_eq!(challenge_of(VERIFIER), CHALLENGE);
        let c = CodeChallenge::parse(Some(CHALLENGE), Some("S256")).unwrap();
        c.verify(VERIFIER).unwrap();
    }

    #[test]
    fn a_missing_challenge_is_refused() {
        assert!(CodeChallenge::parse(None, Some("S256")).is_err());
    }

    #[test]
    fn plain_is_refused_and_so_is_a_missing_method() {
        let plain = CodeChallenge::parse(Some(VERIFIER), Some("plain")).unwrap_err();
        assert!(plain.description.contains("S256"));
        let missing = CodeChallenge::parse(Some(CHALLENGE), None).unwrap_err();
        assert!(missing.description.contains("plain"));
        assert!(CodeChallenge::parse(Some(CHALLENGE), Some("s256")).is_err());
    }

    #[test]
    fn a_challenge_that_is_not_a_sha256_digest_is_refused() {
        // A plain verifier passed off as an S256 challenge (a downgrade attempt).
        assert!(CodeChallenge::parse(Some(&"a".repeat(64)), Some("S256")).is_err());
        assert!(CodeChallenge::parse(Some("short"), Some("S256")).is_err());
        assert!(
            CodeChallenge::parse(Some(&format!("{}=", &CHALLENGE[..42])), Some("S256")).is_err()
        );
    }

    #[test]
    fn a_wrong_verifier_is_an_invalid_grant() {
        let c = CodeChallenge::parse(Some(CHALLENGE), Some("S256")).unwrap();
        let e = c.verify(&VERIFIER.replace('k', "l")).unwrap_err();
        assert_eq!(e.code, crate::error::ErrorCode::InvalidGrant);
    }

    #[test]
    fn short_long_and_ill_formed_verifiers_are_refused() {
        let c = CodeChallenge::parse(Some(CHALLENGE), Some("S256")).unwrap();
        assert!(c.verify(&"a".repeat(42)).is_err());
        assert!(c.verify(&"a".repeat(129)).is_err());
        assert!(c.verify(&format!("{} ", &VERIFIER[..42])).is_err());
        assert!(c.verify(&format!("{}+", &VERIFIER[..42])).is_err());
    }

    #[test]
    fn the_challenge_itself_is_not_a_verifier_for_it() {
        let c = CodeChallenge::parse(Some(CHALLENGE), Some("S256")).unwrap();
        assert!(c.verify(CHALLENGE).is_err());
    }
}
