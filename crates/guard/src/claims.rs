//! The claim checks every verifier applies once a token is known to be authentic:
//! issuer, audience, expiry and not-before, with a leeway for clock skew.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::error::{Rejection, TokenError};
use crate::principal::{ClaimsError, Principal, numeric_date};
use crate::resource::Audience;

/// What an authentic token must also satisfy to be accepted here.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    /// Accepted `iss`; `None` skips the check.
    pub issuer: Option<String>,
    /// Accepted audiences; the token must name at least one. Empty skips the check
    /// (never do that in front of an MCP server: RFC 8707 audience binding is a MUST).
    pub audiences: Vec<Audience>,
    /// Allowed clock skew for `exp` and `nbf`.
    pub leeway: Duration,
    /// Whether a token without `exp` is refused.
    pub require_exp: bool,
    /// Whether a token without `iss` is refused when `issuer` is set (a present `iss` must
    /// always match). JWTs: yes. Introspection answers, where `iss` is optional (RFC 7662): the
    /// endpoint itself vouches for the token.
    pub require_iss: bool,
}

impl ClaimRules {
    /// Rules for one audience, `exp` required, 30 s leeway, no issuer check.
    pub fn for_audience(audience: Audience) -> Self {
        ClaimRules {
            issuer: None,
            audiences: vec![audience],
            leeway: Duration::from_secs(30),
            require_exp: true,
            require_iss: true,
        }
    }

    /// Checks `claims` and turns them into a [`Principal`].
    ///
    /// Time checks come first, then issuer and audience, so that the log names the most
    /// actionable reason; the rejection carries the subject and client when the claims name
    /// them.
    pub fn check(
        &self,
        claims: Map<String, Value>,
        now: SystemTime,
    ) -> Result<Principal, Rejection> {
        let principal =
            Principal::from_claims(claims).map_err(|e| Rejection::from(TokenError::from(e)))?;
        let known = |reason: TokenError| Rejection {
            reason,
            subject: Some(principal.subject.clone()),
            client_id: principal.client_id.clone(),
        };
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let leeway = self.leeway.as_secs();
        match numeric_date(&principal.claims, "exp").map_err(|e| known(e.into()))? {
            Some(exp) if exp.saturating_add(leeway) <= now => {
                return Err(known(TokenError::Expired { exp, now, leeway }));
            }
            None if self.require_exp => return Err(known(ClaimsError::Missing("exp").into())),
            _ => {}
        }
        if let Some(nbf) = numeric_date(&principal.claims, "nbf").map_err(|e| known(e.into()))?
            && nbf > now.saturating_add(leeway)
        {
            return Err(known(TokenError::NotYetValid { nbf, now, leeway }));
        }
        if let Some(expected) = &self.issuer {
            match &principal.issuer {
                Some(found) if found == expected => {}
                Some(found) => {
                    return Err(known(TokenError::WrongIssuer {
                        found: found.clone(),
                    }));
                }
                None if self.require_iss => return Err(known(ClaimsError::Missing("iss").into())),
                None => {}
            }
        }
        if !self.audiences.is_empty() {
            if principal.audience.is_empty() {
                return Err(known(ClaimsError::Missing("aud").into()));
            }
            let accepted = principal
                .audience
                .iter()
                .any(|presented| self.audiences.iter().any(|aud| aud.matches(presented)));
            if !accepted {
                return Err(known(TokenError::WrongAudience {
                    found: principal.audience.clone(),
                }));
            }
        }
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: Some("https://issuer.example".into()),
            audiences: vec![Audience::new("https://mcp.example/mcp")],
            leeway: Duration::from_secs(30),
            require_exp: true,
            require_iss: true,
        }
    }

    fn check(v: Value) -> Result<Principal, Rejection> {
        rules().check(
            v.as_object().unwrap().clone(),
            UNIX_EPOCH + Duration::from_secs(NOW),
        )
    }

    fn good() -> Value {
        json!({"sub":"alice","iss":"https://issuer.example","aud":"https://mcp.example/mcp","exp":NOW+60})
    }

    #[test]
    fn good_claims_are_accepted() {
        assert_eq!(check(good()).unwrap().subject.as_str(), "alice");
    }

    #[test]
    fn expired_token_is_refused_with_subject_for_the_log() {
        let mut v = good();
        v["exp"] = json!(NOW - 31);
        let err = check(v).unwrap_err();
        assert!(matches!(err.reason, TokenError::Expired { .. }));
        assert_eq!(err.subject.unwrap().as_str(), "alice");
    }

    #[test]
    fn expiry_within_leeway_is_accepted() {
        let mut v = good();
        v["exp"] = json!(NOW - 29);
        assert!(check(v).is_ok());
    }

    #[test]
    fn missing_exp_is_refused() {
        let mut v = good();
        v.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            check(v).unwrap_err().reason,
            TokenError::Claims(ClaimsError::Missing("exp"))
        );
    }

    #[test]
    fn exp_as_string_is_refused() {
        let mut v = good();
        v["exp"] = json!("tomorrow");
        assert_eq!(
            check(v).unwrap_err().reason,
            TokenError::Claims(ClaimsError::Invalid("exp", "not a number"))
        );
    }

    #[test]
    fn future_nbf_is_refused() {
        let mut v = good();
        v["nbf"] = json!(NOW + 31);
        assert!(matches!(
            check(v).unwrap_err().reason,
            TokenError::NotYetValid { .. }
        ));
    }

    #[test]
    fn wrong_issuer_is_refused() {
        let mut v = good();
        v["iss"] = json!("https://evil.example");
        assert_eq!(
            check(v).unwrap_err().reason,
            TokenError::WrongIssuer {
                found: "https://evil.example".into()
            }
        );
    }

    #[test]
    fn missing_issuer_is_refused_when_one_is_configured() {
        let mut v = good();
        v.as_object_mut().unwrap().remove("iss");
        assert_eq!(
            check(v).unwrap_err().reason,
            TokenError::Claims(ClaimsError::Missing("iss"))
        );
    }

    #[test]
    fn wrong_audience_is_refused() {
        let mut v = good();
        v["aud"] = json!(["https://other.example/mcp"]);
        assert!(matches!(
            check(v).unwrap_err().reason,
            TokenError::WrongAudience { .. }
        ));
    }

    #[test]
    fn audience_array_containing_the_resource_is_accepted() {
        let mut v = good();
        v["aud"] = json!(["https://other.example", "https://mcp.example/mcp"]);
        assert!(check(v).is_ok());
    }

    #[test]
    fn missing_audience_is_refused() {
        let mut v = good();
        v.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            check(v).unwrap_err().reason,
            TokenError::Claims(ClaimsError::Missing("aud"))
        );
    }
}
