//! Access tokens: short-lived JWTs (`typ: at+jwt`, RFC 9068) signed with the issuer's active
//! key, carrying `iss`, `sub`, `aud` (the resource), `client_id`, `scope`, `exp`, `iat`,
//! `jti` and the grant they came from, and the token response that carries them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcpgate_guard::{ClientId, ResourceUrl, Scopes, Subject};
use serde_json::{Value, json};

use crate::error::OAuthError;
use crate::issuer::Issuer;
use crate::secret::generate_token;
use crate::store::GRANT_ID_CLAIM;
use crate::store::GrantId;

/// What an access token says.
#[derive(Debug, Clone)]
pub struct AccessToken<'a> {
    /// Who.
    pub subject: &'a Subject,
    /// Through which client.
    pub client_id: &'a ClientId,
    /// With which scopes.
    pub scopes: &'a Scopes,
    /// For which resource.
    pub resource: &'a ResourceUrl,
    /// From which grant (none for `client_credentials`).
    pub grant: Option<&'a GrantId>,
}

fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl AccessToken<'_> {
    /// The signed JWT and its life in seconds.
    pub fn sign(&self, issuer: &Issuer) -> Result<(String, u64), OAuthError> {
        let ttl: Duration = issuer.settings.access_token_ttl;
        let now = seconds(SystemTime::now());
        let mut claims = json!({
            "iss": issuer.settings.issuer.as_str(),
            "sub": self.subject.as_str(),
            "aud": self.resource.as_str(),
            "client_id": self.client_id.as_str(),
            "scope": self.scopes.to_space_delimited(),
            "iat": now,
            "nbf": now,
            "exp": now + ttl.as_secs(),
            "jti": generate_token(),
        });
        if let Some(grant) = self.grant {
            claims[GRANT_ID_CLAIM] = json!(grant.as_str());
        }
        let jwt = issuer.keys.sign_typed(&claims, "at+jwt").map_err(|e| {
            tracing::error!(target: "mcpgate::issuer", error = %e, "signing failed");
            OAuthError::server_error()
        })?;
        Ok((jwt, ttl.as_secs()))
    }
}

/// The token response (RFC 6749 §5.1).
pub fn response(
    access_token: &str,
    expires_in: u64,
    scopes: &Scopes,
    refresh_token: Option<&str>,
) -> Value {
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": scopes.to_space_delimited(),
    });
    if let Some(refresh) = refresh_token {
        body["refresh_token"] = json!(refresh);
    }
    body
}
