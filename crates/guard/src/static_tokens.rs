//! Fixed tokens for development: each maps to a principal.
//!
//! Tokens are kept only as keyed digests ([`digest`]) and looked up by digest, so the table
//! holds nothing usable and the lookup's timing says nothing about how close a guess was.
//! Never use this in production; `mcpgate` refuses it unless started with `--dev`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Malformed, TokenError};
use crate::principal::Principal;
use crate::verifier::{BoxFuture, DigestHashing, TokenDigest, TokenVerifier, VerifyResult, digest};

/// A fixed map from token to principal.
pub struct StaticTokens {
    tokens: HashMap<TokenDigest, Arc<Principal>, DigestHashing>,
}

impl std::fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticTokens")
            .field("count", &self.tokens.len())
            .finish()
    }
}

impl StaticTokens {
    /// Builds the table from `(token, principal)` pairs.
    pub fn new(entries: impl IntoIterator<Item = (String, Principal)>) -> Self {
        let tokens = entries
            .into_iter()
            .map(|(token, p)| (digest(&token), Arc::new(p)))
            .collect();
        StaticTokens { tokens }
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

impl TokenVerifier for StaticTokens {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, VerifyResult> {
        let result = if token.is_empty() {
            Err(TokenError::Malformed(Malformed::Empty).into())
        } else {
            self.tokens
                .get(&digest(token))
                .cloned()
                .ok_or_else(|| TokenError::UnknownToken.into())
        };
        Box::pin(std::future::ready(result))
    }

    fn known_good(&self, token: &str) -> bool {
        !token.is_empty() && self.tokens.contains_key(&digest(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::Subject;

    fn verifier() -> StaticTokens {
        StaticTokens::new([(
            "tok-alice".to_string(),
            Principal::builder(Subject::new("alice")).build(),
        )])
    }

    #[tokio::test]
    async fn configured_token_yields_its_principal() {
        assert_eq!(
            verifier()
                .verify("tok-alice")
                .await
                .unwrap()
                .subject
                .as_str(),
            "alice"
        );
    }

    #[tokio::test]
    async fn unknown_token_is_refused() {
        assert_eq!(
            verifier().verify("tok-alicf").await.unwrap_err().reason,
            TokenError::UnknownToken
        );
    }

    #[tokio::test]
    async fn empty_token_is_malformed() {
        assert_eq!(
            verifier().verify("").await.unwrap_err().reason,
            TokenError::Malformed(Malformed::Empty)
        );
    }
}
