//! Finding the client a request names, whatever made it known: a registration or a static
//! client in the store, or a client ID metadata document fetched from its URL.
//!
//! A `client_id` the issuer does not know — never registered, deleted, or pruned after a long
//! silence — is `invalid_client` with status 401, which tells MCP clients to register again.

use std::sync::Arc;
use std::time::SystemTime;

use mcpgate_guard::ClientId;

use super::metadata::{AuthMethod, ClientMetadata, GrantType, Source};
use super::metadata_document::ClientIdUrl;
use crate::error::OAuthError;
use crate::issuer::Issuer;
use crate::secret::TokenHash;
use crate::store::ClientKind;

/// Registered and configured clients read recently, so that a refresh or a code exchange
/// does not read and check the same client again. Kept for [`CLIENT_CACHE_TTL`]: a client
/// removed by another process (`mcpgate clients remove`) is still found for that long, but
/// nothing it could do with it counts — its grants are revoked and its codes deleted in the
/// store at once, and the refresh and code exchange decide in the store's own transaction.
/// Clients that may mint tokens on their own (`client_credentials`) are never kept: for them
/// the store is read every time, so that removing one stops it at once.
pub struct ClientCache(moka::sync::Cache<String, KnownClient>);

/// How long a client read from the store is reused.
pub const CLIENT_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

impl Default for ClientCache {
    fn default() -> Self {
        ClientCache(
            moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(CLIENT_CACHE_TTL)
                .build(),
        )
    }
}

impl ClientCache {
    /// Forgets a client (deleted or changed here).
    pub fn forget(&self, id: &ClientId) {
        self.0.invalidate(id.as_str());
    }

    /// Keeps `client`, unless it may mint tokens on its own (see above).
    fn keep(&self, client: KnownClient) {
        if !client.metadata.allows(GrantType::ClientCredentials) {
            self.0.insert(client.id.as_str().to_owned(), client);
        }
    }
}

/// Longest `client_id` looked up.
pub const MAX_CLIENT_ID: usize = 2048;

/// A client the issuer knows.
#[derive(Debug, Clone)]
pub struct KnownClient {
    /// Its id.
    pub id: ClientId,
    /// How it became known.
    pub kind: ClientKind,
    /// Its metadata, checked.
    pub metadata: Arc<ClientMetadata>,
    /// SHA-256 of its secret, for a confidential client.
    pub secret_hash: Option<TokenHash>,
    /// SHA-256 of its registration access token (RFC 7592).
    pub registration_token_hash: Option<TokenHash>,
    /// When it last obtained a token.
    pub last_used_at: Option<SystemTime>,
    /// How it authenticated on this request: its declared method until
    /// [`authenticate`](super::authentication::authenticate) says otherwise (a metadata
    /// document may list several).
    pub authenticated_by: AuthMethod,
}

impl KnownClient {
    /// The name to show a person: the client's own, else its id.
    pub fn display_name(&self) -> String {
        self.metadata
            .client_name
            .clone()
            .unwrap_or_else(|| self.id.as_str().to_owned())
    }
}

/// The client `client_id` names.
pub async fn find(issuer: &Issuer, client_id: &str) -> Result<KnownClient, OAuthError> {
    if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID {
        return Err(OAuthError::invalid_client("client_id is empty or too long"));
    }
    if ClientIdUrl::looks_like_one(client_id) {
        let url = issuer.documents.client_id(client_id)?;
        let metadata = issuer.documents.get(&url).await?;
        return Ok(KnownClient {
            id: ClientId::new(url.as_str()),
            kind: ClientKind::MetadataDocument,
            authenticated_by: metadata.auth_method,
            metadata,
            secret_hash: None,
            registration_token_hash: None,
            last_used_at: None,
        });
    }
    if let Some(known) = issuer.client_cache.0.get(client_id) {
        return Ok(known);
    }
    let id = ClientId::new(client_id);
    let record = issuer
        .store
        .get_client(&id)
        .await
        .map_err(|e| {
            tracing::error!(target: "mcpgate::issuer", error = %e, "client lookup failed");
            OAuthError::server_error()
        })?
        .ok_or_else(|| {
            OAuthError::invalid_client(
                "unknown client_id (it may have been removed): register the client again",
            )
        })?;
    let source = match record.kind {
        ClientKind::Dynamic => Source::Registration,
        _ => Source::Static,
    };
    let object = record.metadata.as_object().cloned().unwrap_or_default();
    let metadata = ClientMetadata::from_object(&object, source, &issuer.settings.redirect_uris)
        .map_err(|e| {
            tracing::warn!(target: "mcpgate::issuer", client_id = %id, error = %e, "a stored client no longer passes the checks");
            OAuthError::invalid_client(format!(
                "this client's registration is no longer acceptable ({}): register again",
                e.description
            ))
        })?;
    let known = KnownClient {
        id,
        kind: record.kind,
        authenticated_by: metadata.auth_method,
        metadata: Arc::new(metadata),
        secret_hash: record.secret_hash,
        registration_token_hash: record.registration_token_hash,
        last_used_at: record.last_used_at,
    };
    issuer.client_cache.keep(known.clone());
    Ok(known)
}

/// Records that the client obtained a token (registrations unused for long are pruned).
pub async fn touch(issuer: &Issuer, client: &KnownClient) {
    if client.kind == ClientKind::MetadataDocument {
        return;
    }
    // Pruning counts in days: one write an hour per client is plenty, and keeps a write off
    // the path of every refresh.
    let now = SystemTime::now();
    if client.last_used_at.is_some_and(|t| {
        now.duration_since(t)
            .is_ok_and(|d| d < std::time::Duration::from_secs(3600))
    }) {
        return;
    }
    match issuer.store.touch_client(&client.id, now).await {
        Ok(()) => {
            let mut touched = client.clone();
            touched.last_used_at = Some(now);
            touched.authenticated_by = touched.metadata.auth_method;
            issuer.client_cache.keep(touched);
        }
        Err(e) => {
            tracing::warn!(target: "mcpgate::issuer", client_id = %client.id, error = %e, "client last use not recorded");
        }
    }
}
