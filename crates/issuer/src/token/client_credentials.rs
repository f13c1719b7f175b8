//! The `client_credentials` grant (RFC 6749 §4.4; the MCP extension
//! `io.modelcontextprotocol/oauth-client-credentials`): a confidential client — a CI job, an
//! agent without a browser — gets a token for itself. The token's subject is the client, so
//! that policy can tell clients from people (`claims.sub == claims.client_id`); the resource is
//! required and bound into `aud`; no refresh token is issued. Each token gets a grant of its
//! own, so that `/revoke`, `mcpgate grants revoke` and removing the client stop it at once.

use std::time::SystemTime;

use http::HeaderMap;
use mcpgate_guard::Subject;
use serde_json::Value;

use super::access::{self, AccessToken};
use crate::clients::authentication::authenticate;
use crate::clients::metadata::AuthMethod;
use crate::clients::metadata::GrantType;
use crate::clients::registry;
use crate::error::{ErrorCode, OAuthError};
use crate::issuer::Issuer;
use crate::params::Params;
use crate::store::{ClientKind, Grant, GrantId};

/// Issues a token to the authenticated client itself.
pub async fn issue(
    issuer: &Issuer,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Value, OAuthError> {
    let client = authenticate(issuer, headers, params).await?;
    if client.authenticated_by == AuthMethod::None
        || client.kind != ClientKind::Static
        || !client.metadata.allows(GrantType::ClientCredentials)
    {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the client_credentials grant (it must be confidential, admitted by the operator, and have the grant)",
        ));
    }
    let resource = params
        .get("resource")
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidTarget, "resource is required"))?;
    let resource = issuer.settings.resources.requested(Some(resource))?;
    // Without a `scope` the client gets the scopes it was admitted with, if any.
    let asked = params.get("scope").or(client.metadata.scope.as_deref());
    let scopes = issuer.settings.scopes.requested(asked)?;
    // A client admitted with a `scope` gets no more than that.
    if let Some(allowed) = &client.metadata.scope {
        let allowed = mcpgate_guard::Scopes::from_space_delimited(allowed);
        if let Some(extra) = scopes.iter().find(|s| !allowed.contains(s.as_str())) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!("`{}` is not among this client's scopes", extra.as_str()),
            ));
        }
    }
    if scopes.contains(crate::scopes::OFFLINE_ACCESS) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "offline_access does not apply to client_credentials (no refresh token is issued)",
        ));
    }
    let subject = Subject::new(client.id.as_str());
    // Each token has a grant of its own, so that revoking it, or removing the client, stops
    // it at once like a user's.
    let grant = GrantId::generate();
    issuer
        .store
        .create_grant(&Grant {
            id: grant.clone(),
            subject: subject.clone(),
            client_id: client.id.clone(),
            scopes: scopes.clone(),
            resource: Some(resource.clone()),
            created_at: SystemTime::now(),
            revoked_at: None,
        })
        .await
        .map_err(|e| {
            tracing::error!(target: "mcpgate::issuer", error = %e, "grant not stored");
            OAuthError::server_error()
        })?;
    let (jwt, expires_in) = AccessToken {
        subject: &subject,
        client_id: &client.id,
        scopes: &scopes,
        resource: &resource,
        grant: Some(&grant),
    }
    .sign(issuer)?;
    registry::touch(issuer, &client).await;
    tracing::info!(target: "mcpgate::issuer", client_id = %client.id, "client credentials token issued");
    Ok(access::response(&jwt, expires_in, &scopes, None))
}
