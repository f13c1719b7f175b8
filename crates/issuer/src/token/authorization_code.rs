//! The `authorization_code` grant (RFC 6749 §4.1.3, OAuth 2.1 §4.1.3).
//!
//! The code is single use and short-lived, and bound to the client, the redirect URI, the
//! PKCE challenge and the resource of its authorization request. The binding to client and
//! redirect URI is part of what is stored — the hash of the code is taken over them too — so
//! a request from another client or with another redirect URI finds no code and consumes
//! nothing, while a replay of a spent code revokes the grant issued from it.

use std::time::SystemTime;

use http::HeaderMap;
use serde_json::Value;

use super::access::{self, AccessToken};
use crate::clients::authentication::authenticate;
use crate::clients::metadata::GrantType;
use crate::clients::registry;
use crate::error::{ErrorCode, OAuthError};
use crate::issuer::Issuer;
use crate::params::Params;
use crate::pkce::CodeChallenge;
use crate::secret::{TokenHash, generate_token};
use crate::store::{CodeConsumption, RefreshToken};

/// The stored hash of `code` issued to `client_id` for `redirect_uri` (the authorization
/// request's `redirect_uri` parameter exactly, or empty when it had none).
pub fn code_hash(client_id: &str, redirect_uri: &str, code: &str) -> TokenHash {
    TokenHash::of(&format!(
        "mcpgate code v1\0{client_id}\0{redirect_uri}\0{code}"
    ))
}

/// Exchanges a code for tokens.
pub async fn exchange(
    issuer: &Issuer,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Value, OAuthError> {
    // Check: the client first (a failure consumes nothing), then the code.
    let client = authenticate(issuer, headers, params).await?;
    if !client.metadata.allows(GrantType::AuthorizationCode) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client did not register the authorization_code grant",
        ));
    }
    let code = params.require("code")?;
    let verifier = params.require("code_verifier")?;
    let redirect_uri = params.get("redirect_uri").unwrap_or_default();
    let now = SystemTime::now();
    let hash = code_hash(client.id.as_str(), redirect_uri, code);
    let record = match issuer.store.consume_code(&hash, now).await.map_err(|e| {
        tracing::error!(target: "mcpgate::issuer", error = %e, "code consumption failed");
        OAuthError::server_error()
    })? {
        CodeConsumption::Consumed(record) => record,
        CodeConsumption::AlreadyUsed(grant) => {
            let _ = issuer.revocations.revoke_grant(&grant, now).await;
            tracing::warn!(target: "mcpgate::issuer", client_id = %client.id, grant = %grant, "authorization code replayed: its grant is revoked");
            return Err(OAuthError::invalid_grant(
                "the code was already used; the tokens issued from it are revoked",
            ));
        }
        CodeConsumption::Expired => {
            return Err(OAuthError::invalid_grant("the code has expired"));
        }
        CodeConsumption::Unknown => {
            return Err(OAuthError::invalid_grant(
                "unknown code, or not issued to this client for this redirect_uri",
            ));
        }
    };
    CodeChallenge::from_stored(record.code_challenge.clone()).verify(verifier)?;
    let resource = match (&record.resource, params.get("resource")) {
        (Some(bound), Some(_)) => {
            let asked = issuer
                .settings
                .resources
                .requested(params.get("resource"))?;
            if asked != *bound {
                return Err(OAuthError::new(
                    ErrorCode::InvalidTarget,
                    "resource differs from the authorization request's",
                ));
            }
            bound.clone()
        }
        (Some(bound), None) => bound.clone(),
        (None, asked) => issuer.settings.resources.requested(asked)?,
    };
    let grant = issuer
        .store
        .get_grant(&record.grant_id)
        .await
        .map_err(|_| OAuthError::server_error())?;
    if grant.as_ref().is_none_or(|g| g.revoked_at.is_some()) {
        return Err(OAuthError::invalid_grant(
            "the grant behind this code was revoked",
        ));
    }

    // Issue.
    let (jwt, expires_in) = AccessToken {
        subject: &record.subject,
        client_id: &client.id,
        scopes: &record.scopes,
        resource: &resource,
        grant: Some(&record.grant_id),
    }
    .sign(issuer)?;
    let refresh = generate_token();
    issuer
        .store
        .insert_refresh_token(&RefreshToken {
            token_hash: TokenHash::of(&refresh),
            grant_id: record.grant_id.clone(),
            client_id: client.id.clone(),
            issued_at: now,
            expires_at: now + issuer.settings.refresh_token_ttl,
        })
        .await
        .map_err(|e| {
            tracing::error!(target: "mcpgate::issuer", error = %e, "refresh token not stored");
            OAuthError::server_error()
        })?;
    registry::touch(issuer, &client).await;
    tracing::info!(target: "mcpgate::issuer", client_id = %client.id, subject = %record.subject, grant = %record.grant_id, "code exchanged");
    Ok(access::response(
        &jwt,
        expires_in,
        &record.scopes,
        Some(&refresh),
    ))
}
