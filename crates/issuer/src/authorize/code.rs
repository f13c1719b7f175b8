//! Issuing an authorization code once the person approved: a new grant, and a short-lived,
//! single-use code of it stored only as its hash — taken over the client and the request's
//! `redirect_uri` parameter exactly as sent, so that the token endpoint finds the code only
//! for that client and that redirect URI
//! ([`code_hash`](crate::token::authorization_code::code_hash)).

use std::time::SystemTime;

use mcpgate_guard::Subject;

use super::request::AuthorizationRequest;
use crate::clients::registry::KnownClient;
use crate::issuer::Issuer;
use crate::secret::generate_token;
use crate::store::{AuthorizationCode, ClientKind, ClientRecord, Grant, GrantId, StoreError};
use crate::token::authorization_code::code_hash;

/// A new code for `request`, approved by `subject`: the code to send to the client.
pub async fn issue(
    issuer: &Issuer,
    client: &KnownClient,
    request: &AuthorizationRequest,
    subject: &Subject,
) -> Result<String, StoreError> {
    let now = SystemTime::now();
    ensure_stored(issuer, client, now).await?;
    let grant = Grant {
        id: GrantId::generate(),
        subject: subject.clone(),
        client_id: client.id.clone(),
        scopes: request.scopes.clone(),
        resource: Some(request.resource.clone()),
        created_at: now,
        revoked_at: None,
    };
    issuer.store.create_grant(&grant).await?;
    let code = generate_token();
    let parameter = request.redirect_uri_parameter.as_deref();
    issuer
        .store
        .insert_code(&AuthorizationCode {
            code_hash: code_hash(client.id.as_str(), parameter.unwrap_or_default(), &code),
            client_id: client.id.clone(),
            redirect_uri: parameter
                .unwrap_or(request.redirect_uri.as_str())
                .to_owned(),
            code_challenge: request.challenge.as_str().to_owned(),
            resource: Some(request.resource.clone()),
            scopes: request.scopes.clone(),
            subject: subject.clone(),
            grant_id: grant.id.clone(),
            expires_at: now + issuer.settings.code_ttl,
        })
        .await?;
    tracing::info!(target: "mcpgate::issuer", client_id = %client.id, subject = %subject, grant = %grant.id, "authorization code issued");
    Ok(code)
}

/// Makes sure the client has a row in the store, which codes, grants' refresh tokens and
/// consents refer to: a client known by its metadata document is not registered, so its
/// first approval records it.
pub(crate) async fn ensure_stored(
    issuer: &Issuer,
    client: &KnownClient,
    now: SystemTime,
) -> Result<(), StoreError> {
    if client.kind != ClientKind::MetadataDocument
        || issuer.store.get_client(&client.id).await?.is_some()
    {
        return Ok(());
    }
    let record = ClientRecord {
        client_id: client.id.clone(),
        secret_hash: None,
        registration_token_hash: None,
        kind: ClientKind::MetadataDocument,
        metadata: client.metadata.to_json(),
        created_at: now,
        last_used_at: None,
    };
    match issuer.store.insert_client(&record).await {
        // Another approval of the same client got there first.
        Ok(()) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
