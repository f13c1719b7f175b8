//! Several trusted issuers behind one [`TokenVerifier`]: a migration between identity
//! providers, or a Microsoft Entra ID multi-tenant application, whose tokens carry the
//! tenant's own issuer (`https://login.microsoftonline.com/<tenant-id>/v2.0`).
//!
//! The token's `iss` is read — before anything is verified — only to choose which issuer's
//! verifier (keys, audience, rules) checks it; that verifier then checks the whole token,
//! signature included, and the verified `iss` must still be the one that chose it. A token
//! whose `iss` no configured issuer accepts is refused without touching any key.
//!
//! ```
//! use mcpgate_guard::{IssuerPattern, Issuers, StaticTokens};
//!
//! let entra = IssuerPattern::tenants(
//!     "https://login.microsoftonline.com/{tenant}/v2.0",
//!     ["72f988bf-86f1-41af-91ab-2d7cd011db47"],
//! )
//! .unwrap();
//! assert!(entra.accepts("https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"));
//! assert!(!entra.accepts("https://login.microsoftonline.com/someone-else/v2.0"));
//! let _issuers = Issuers::new().issuer(entra, StaticTokens::new([]));
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;

use crate::error::{Malformed, TokenError, printable};
use crate::verifier::{BoxFuture, TokenVerifier, VerifyResult, WarmUpError, check_size};

/// Which `iss` values an issuer entry accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerPattern {
    /// Exactly this string.
    Exact(String),
    /// `prefix` + one of `tenants` + `suffix` (a `{tenant}` template).
    Tenants {
        /// Before `{tenant}`.
        prefix: String,
        /// After `{tenant}`.
        suffix: String,
        /// The tenants allowed.
        tenants: HashSet<String>,
    },
}

/// A template that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerPatternError {
    /// `{tenant}` is missing or appears more than once.
    #[error("the issuer template must contain `{{tenant}}` exactly once")]
    Placeholder,
    /// No tenant, or an empty one, or one with characters that do not belong in a path
    /// segment.
    #[error("tenants must be non-empty path segments (letters, digits, `-`, `.`, `_`): `{0}`")]
    Tenant(String),
}

impl IssuerPattern {
    /// An issuer accepted exactly as written.
    pub fn exact(issuer: impl Into<String>) -> Self {
        IssuerPattern::Exact(issuer.into())
    }

    /// A `{tenant}` template and the tenants it allows.
    pub fn tenants(
        template: &str,
        tenants: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, IssuerPatternError> {
        let mut parts = template.split("{tenant}");
        let (Some(prefix), Some(suffix), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(IssuerPatternError::Placeholder);
        };
        let tenants: HashSet<String> = tenants.into_iter().map(Into::into).collect();
        if tenants.is_empty() {
            return Err(IssuerPatternError::Tenant(String::new()));
        }
        for t in &tenants {
            if t.is_empty()
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
                || t == "."
                || t == ".."
            {
                return Err(IssuerPatternError::Tenant(printable(t)));
            }
        }
        Ok(IssuerPattern::Tenants {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
            tenants,
        })
    }

    /// Whether `iss` is one of this entry's issuers (exact comparison, RFC 8414 §3.3).
    pub fn accepts(&self, iss: &str) -> bool {
        match self {
            IssuerPattern::Exact(e) => e == iss,
            IssuerPattern::Tenants {
                prefix,
                suffix,
                tenants,
            } => iss
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                .is_some_and(|tenant| tenants.contains(tenant)),
        }
    }

    /// Every issuer this entry accepts, for the metadata's `authorization_servers`.
    pub fn issuers(&self) -> Vec<String> {
        match self {
            IssuerPattern::Exact(e) => vec![e.clone()],
            IssuerPattern::Tenants {
                prefix,
                suffix,
                tenants,
            } => {
                let mut all: Vec<String> = tenants
                    .iter()
                    .map(|t| format!("{prefix}{t}{suffix}"))
                    .collect();
                all.sort();
                all
            }
        }
    }
}

/// Tokens from several issuers, each checked by its own verifier.
#[derive(Default)]
pub struct Issuers {
    routes: Vec<(IssuerPattern, Arc<dyn TokenVerifier>)>,
    max_token_bytes: usize,
}

impl std::fmt::Debug for Issuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuers")
            .field(
                "issuers",
                &self.routes.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct IssuerOnly {
    iss: Option<serde_json::Value>,
}

impl Issuers {
    /// No issuer yet; tokens up to [`crate::DEFAULT_MAX_TOKEN_BYTES`].
    pub fn new() -> Self {
        Issuers {
            routes: Vec::new(),
            max_token_bytes: crate::verifier::DEFAULT_MAX_TOKEN_BYTES,
        }
    }

    /// Adds an issuer: tokens whose `iss` `pattern` accepts are checked by `verifier`, which
    /// must check the issuer itself too (a [`crate::JwtVerifier`] whose rules name it, or, for
    /// a template, none: the verified `iss` is checked against the pattern again here).
    #[must_use]
    pub fn issuer(mut self, pattern: IssuerPattern, verifier: impl TokenVerifier) -> Self {
        self.routes.push((pattern, Arc::new(verifier)));
        self
    }

    /// Largest token read, before anything else.
    #[must_use]
    pub fn max_token_bytes(mut self, max: usize) -> Self {
        self.max_token_bytes = max;
        self
    }

    /// Every issuer accepted, for the metadata.
    pub fn all(&self) -> Vec<String> {
        self.routes.iter().flat_map(|(p, _)| p.issuers()).collect()
    }

    fn route(&self, token: &str) -> Result<(&IssuerPattern, &Arc<dyn TokenVerifier>), TokenError> {
        check_size(token, self.max_token_bytes)?;
        let claims: IssuerOnly = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| TokenError::Malformed(Malformed::Json))?;
        let iss = match claims.iss {
            Some(serde_json::Value::String(s)) => s,
            Some(_) => return Err(TokenError::Malformed(Malformed::Json)),
            None => {
                return Err(TokenError::WrongIssuer {
                    found: String::new(),
                });
            }
        };
        self.routes
            .iter()
            .find(|(p, _)| p.accepts(&iss))
            .map(|(p, v)| (p, v))
            .ok_or(TokenError::WrongIssuer {
                found: printable(&iss),
            })
    }
}

impl TokenVerifier for Issuers {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, VerifyResult> {
        Box::pin(async move {
            let (pattern, verifier) = self.route(token)?;
            let principal = verifier.verify(token).await?;
            // The verified issuer is the one that chose the verifier (the same bytes were
            // read, but a verifier that maps claims differently must not change the answer).
            match principal.issuer.as_deref() {
                Some(iss) if pattern.accepts(iss) => Ok(principal),
                other => Err(TokenError::WrongIssuer {
                    found: printable(other.unwrap_or_default()),
                }
                .into()),
            }
        })
    }

    fn is_ready(&self) -> bool {
        self.routes.iter().all(|(_, v)| v.is_ready())
    }

    fn warm_up(&self) -> BoxFuture<'_, Result<(), WarmUpError>> {
        Box::pin(async move {
            let mut problems = Vec::new();
            for (pattern, v) in &self.routes {
                if let Err(e) = v.warm_up().await {
                    problems.push((pattern.issuers(), e));
                }
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(WarmUpError::Issuers(problems))
            }
        })
    }

    fn known_good(&self, token: &str) -> bool {
        self.route(token).is_ok_and(|(_, v)| v.known_good(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_accept_only_listed_tenants_in_the_tenant_position() {
        let p =
            IssuerPattern::tenants("https://login.example/{tenant}/v2.0", ["t1", "t-2"]).unwrap();
        assert!(p.accepts("https://login.example/t1/v2.0"));
        assert!(p.accepts("https://login.example/t-2/v2.0"));
        for no in [
            "https://login.example/t3/v2.0",
            "https://login.example/t1/v2.0/",
            "https://login.example/t1/t1/v2.0",
            "https://login.example//v2.0",
            "https://LOGIN.example/t1/v2.0",
            "https://login.example/T1/v2.0",
        ] {
            assert!(!p.accepts(no), "{no}");
        }
        assert_eq!(
            p.issuers(),
            [
                "https://login.example/t-2/v2.0",
                "https://login.example/t1/v2.0"
            ]
        );
    }

    #[test]
    fn bad_templates_and_tenants_are_refused() {
        assert_eq!(
            IssuerPattern::tenants("https://x/v2.0", ["t"]),
            Err(IssuerPatternError::Placeholder)
        );
        assert_eq!(
            IssuerPattern::tenants("https://x/{tenant}/{tenant}", ["t"]),
            Err(IssuerPatternError::Placeholder)
        );
        for bad in ["", "a/b", "..", "a b", "ä"] {
            assert!(
                IssuerPattern::tenants("https://x/{tenant}", [bad]).is_err(),
                "{bad}"
            );
        }
        assert!(IssuerPattern::tenants("https://x/{tenant}", Vec::<String>::new()).is_err());
    }
}
