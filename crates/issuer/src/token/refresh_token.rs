//! The `refresh_token` grant (RFC 6749 §6, OAuth 2.1 §4.3): every use rotates the token
//! (AS-09). Presenting a token that was already rotated revokes the whole grant — someone
//! holds a copy — except within a short grace window in which the same client presenting the
//! token it just rotated is answered again, so that two refreshes racing each other do not
//! sign the user out. The swap is one atomic step in the store.
//!
//! Within the grace window the client gets back the very token the rotation issued — not a
//! new one — so that a second party presenting a stolen token inside the window cannot start
//! a chain of its own: both now hold the same token, and whichever uses it second is caught
//! as reuse. A presentation within the window of a rotation this process does not remember
//! (made before a restart, or by another replica) is refused rather than answered with a
//! second token.
//!
//! A refused request changes nothing: the scope and resource it asks for are checked in the
//! same step as the rotation, before it writes.

use std::time::SystemTime;

use http::HeaderMap;
use mcpgate_guard::Scopes;
use serde_json::Value;

use super::access::{self, AccessToken};
use crate::clients::authentication::authenticate;
use crate::clients::metadata::GrantType;
use crate::clients::registry;
use crate::error::{ErrorCode, OAuthError};
use crate::issuer::Issuer;
use crate::params::Params;
use crate::secret::{TokenHash, generate_token};
use crate::store::{RefreshRotation, RotationOutcome};

/// Refresh tokens issued by rotations in the last grace window, by the hash of the token
/// they replaced.
pub struct RecentRotations(moka::sync::Cache<[u8; 32], (String, mcpgate_guard::ClientId)>);

impl std::fmt::Debug for RecentRotations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecentRotations")
    }
}

impl RecentRotations {
    /// Kept for `grace`.
    pub fn new(grace: std::time::Duration) -> Self {
        RecentRotations(
            moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(grace.max(std::time::Duration::from_millis(1)))
                .build(),
        )
    }
}

/// Exchanges a refresh token for new tokens.
pub async fn refresh(
    issuer: &Issuer,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Value, OAuthError> {
    let client = authenticate(issuer, headers, params).await?;
    // Refresh tokens go to every client of the authorization_code grant.
    if !client.metadata.allows(GrantType::RefreshToken)
        && !client.metadata.allows(GrantType::AuthorizationCode)
    {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the refresh_token grant",
        ));
    }
    let presented = params.require("refresh_token")?;
    // What the request asks for is checked before anything changes: a refused request leaves
    // the token as it was. Against this issuer's resources here; against the grant's scopes
    // and resource in the store, in the same step as the rotation.
    let asked_scopes = params.get("scope").map(Scopes::from_space_delimited);
    let asked_resource = match params.get("resource") {
        Some(_) => Some(
            issuer
                .settings
                .resources
                .requested(params.get("resource"))?,
        ),
        None => None,
    };
    let now = SystemTime::now();
    let presented_hash = TokenHash::of(presented);
    let mut replacement = generate_token();
    let outcome = issuer
        .store
        .rotate_refresh_token(&RefreshRotation {
            presented: presented_hash,
            replacement: TokenHash::of(&replacement),
            replacement_expires_at: now + issuer.settings.refresh_token_ttl,
            client_id: client.id.clone(),
            now,
            grace: issuer.settings.refresh_grace,
            scopes: asked_scopes.clone(),
            resource: asked_resource.clone(),
        })
        .await
        .map_err(|e| {
            tracing::error!(target: "mcpgate::issuer", error = %e, "refresh rotation failed");
            OAuthError::server_error()
        })?;
    let grant = match outcome {
        RotationOutcome::Rotated(grant) => {
            if !issuer.settings.refresh_grace.is_zero() {
                issuer.recent_rotations.0.insert(
                    *presented_hash.as_bytes(),
                    (replacement.clone(), client.id.clone()),
                );
            }
            grant
        }
        RotationOutcome::WithinGrace(grant) => {
            // The token the rotation issued, again. A rotation this process did not make (on
            // another replica, or before a restart) is not known here: then the request is
            // refused, and nothing is issued — a second token would start a second chain
            // that reuse detection could not see.
            let mut again = None;
            for _ in 0..20 {
                again = issuer.recent_rotations.0.get(presented_hash.as_bytes());
                if again.is_some() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            match again {
                Some((token, owner)) if owner == client.id => replacement = token,
                Some(_) => {
                    return Err(OAuthError::invalid_grant(
                        "unknown refresh token, or not issued to this client",
                    ));
                }
                None => {
                    tracing::warn!(target: "mcpgate::issuer", client_id = %client.id, grant = %grant.id, "refresh token presented again within the grace window of a rotation not made here: refused, nothing issued");
                    return Err(OAuthError::invalid_grant(
                        "the refresh token was just used; use the tokens that request received, or sign in again",
                    ));
                }
            }
            tracing::info!(target: "mcpgate::issuer", client_id = %client.id, grant = %grant.id, "refresh token presented again within the grace window");
            grant
        }
        RotationOutcome::Reused(grant) => {
            issuer.revocations.mark_revoked(&grant, now);
            tracing::warn!(target: "mcpgate::issuer", client_id = %client.id, grant = %grant, "refresh token reused: the grant is revoked");
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used; the grant is revoked — sign in again",
            ));
        }
        RotationOutcome::Expired => {
            return Err(OAuthError::invalid_grant(
                "the refresh token has expired — sign in again",
            ));
        }
        RotationOutcome::Revoked => {
            return Err(OAuthError::invalid_grant(
                "the refresh token was revoked — sign in again",
            ));
        }
        RotationOutcome::WrongClient | RotationOutcome::Unknown => {
            return Err(OAuthError::invalid_grant(
                "unknown refresh token, or not issued to this client",
            ));
        }
        RotationOutcome::ScopeNotGranted(extra) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!("`{extra}` was not granted"),
            ));
        }
        RotationOutcome::OtherResource => {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "resource differs from the grant's",
            ));
        }
    };
    // A narrower scope may be asked for, never a wider one (the store refused wider).
    let scopes = asked_scopes.unwrap_or_else(|| grant.scopes.clone());
    let resource = match (&grant.resource, asked_resource) {
        (Some(bound), _) => bound.clone(),
        (None, Some(asked)) => asked,
        (None, None) => issuer.settings.resources.requested(None)?,
    };
    let (jwt, expires_in) = AccessToken {
        subject: &grant.subject,
        client_id: &client.id,
        scopes: &scopes,
        resource: &resource,
        grant: Some(&grant.id),
    }
    .sign(issuer)?;
    registry::touch(issuer, &client).await;
    tracing::info!(target: "mcpgate::issuer", client_id = %client.id, subject = %grant.subject, grant = %grant.id, "refresh token rotated");
    Ok(access::response(
        &jwt,
        expires_in,
        &scopes,
        Some(&replacement),
    ))
}
