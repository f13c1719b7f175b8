//! Clients the operator declares: in configuration (`[[issuer.clients]]`, kept in the store
//! at every start) or once with `mcpgate clients add`. Both are checked by the same
//! [`ClientMetadata`] path as registrations and metadata documents, and may start from a
//! [`preset`](super::presets).
//!
//! A configured client is stored with the member [`ORIGIN`] in its metadata, so that at the
//! next start a client removed from the configuration is removed from the store too (its
//! grants revoked), while clients added on the command line stay. A configured client whose
//! configuration changed is changed in place: its users stay signed in.
//!
//! ```
//! use mcpgate_issuer::clients::configured::StaticClient;
//! use mcpgate_issuer::clients::redirect_uri::AllowList;
//! use serde_json::Map;
//!
//! let vscode = StaticClient::new("vscode", Some("vscode"), Map::new(), None, &AllowList::default()).unwrap();
//! assert_eq!(vscode.metadata.client_name.as_deref(), Some("Visual Studio Code"));
//! assert!(StaticClient::new("https://x.example/c.json", None, Map::new(), None, &AllowList::default()).is_err());
//! ```

use std::collections::HashSet;
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::metadata::{ClientMetadata, Source};
use super::presets;
use super::redirect_uri::AllowList;
use crate::secret::TokenHash;
use crate::store::{ClientId, ClientKind, ClientRecord, Store, StoreError};

/// The metadata member that marks a client as coming from the configuration.
pub const ORIGIN: &str = "mcpgate_origin";
const FROM_CONFIGURATION: &str = "configuration";

/// Shortest secret accepted for a configured client (generate one with
/// `openssl rand -base64 32`).
pub const MIN_SECRET: usize = 32;

/// A client the operator declared, checked.
#[derive(Debug, Clone)]
pub struct StaticClient {
    /// Its id.
    pub id: ClientId,
    /// Its metadata, checked.
    pub metadata: ClientMetadata,
    /// The metadata as stored.
    pub document: Map<String, Value>,
    /// SHA-256 of its secret, for a confidential client.
    pub secret_hash: Option<TokenHash>,
}

impl StaticClient {
    /// Checks a declared client: `id`, an optional preset, the members that add to or replace
    /// the preset's (`redirect_uris` are added to the preset's, other members replace), and
    /// its secret when it authenticates with one. The error says what to fix.
    pub fn new(
        id: &str,
        preset: Option<&str>,
        members: Map<String, Value>,
        secret: Option<&str>,
        allow: &AllowList,
    ) -> Result<StaticClient, String> {
        check_id(id)?;
        let mut document = match preset {
            Some(name) => presets::find(name)
                .ok_or_else(|| {
                    format!(
                        "preset `{name}` does not exist (there are: {})",
                        presets::names()
                    )
                })?
                .metadata(),
            None => Map::new(),
        };
        for (key, value) in members {
            match (key.as_str(), document.get_mut("redirect_uris"), value) {
                ("redirect_uris", Some(Value::Array(have)), Value::Array(more)) => {
                    for uri in more {
                        if !have.contains(&uri) {
                            have.push(uri);
                        }
                    }
                }
                (_, _, value) => {
                    document.insert(key, value);
                }
            }
        }
        document.remove(ORIGIN);
        let metadata = ClientMetadata::from_object(&document, Source::Static, allow)
            .map_err(|e| e.description)?;
        let secret_hash = match (metadata.auth_method.uses_secret(), secret) {
            (true, Some(s)) if s.len() >= MIN_SECRET => Some(TokenHash::of(s)),
            (true, Some(_)) => {
                return Err(format!(
                    "its secret is shorter than {MIN_SECRET} characters (`openssl rand -base64 32` makes one)"
                ));
            }
            (true, None) => {
                return Err(format!(
                    "authenticates with {} but has no secret",
                    metadata.auth_method.as_str()
                ));
            }
            (false, Some(_)) => {
                return Err(format!(
                    "has a secret but authenticates with {} (set token_endpoint_auth_method to client_secret_basic or client_secret_post)",
                    metadata.auth_method.as_str()
                ));
            }
            (false, None) => None,
        };
        Ok(StaticClient {
            id: ClientId::new(id),
            metadata,
            document,
            secret_hash,
        })
    }

    /// The record to store, marked as configured when `configured`.
    pub fn record(&self, configured: bool, now: SystemTime) -> ClientRecord {
        let mut document = self.document.clone();
        if configured {
            document.insert(ORIGIN.into(), Value::from(FROM_CONFIGURATION));
        }
        ClientRecord {
            client_id: self.id.clone(),
            secret_hash: self.secret_hash,
            registration_token_hash: None,
            kind: ClientKind::Static,
            metadata: Value::Object(document),
            created_at: now,
            last_used_at: None,
        }
    }
}

/// Whether a stored client came from the configuration.
pub fn is_configured(record: &ClientRecord) -> bool {
    record.kind == ClientKind::Static
        && record.metadata.get(ORIGIN).and_then(Value::as_str) == Some(FROM_CONFIGURATION)
}

/// A static `client_id`: short, printable, unreserved characters, and not a URL (an https
/// `client_id` names a metadata document).
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err("client_id must be 1 to 128 characters".into());
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    {
        return Err(format!(
            "client_id `{}` may hold only letters, digits and - . _ ~",
            id.escape_default()
        ));
    }
    Ok(())
}

/// Makes the store's configured clients the configuration's: each one stored or changed in
/// place, and those no longer configured removed (their grants revoked). Clients added on the
/// command line, registered or known by metadata document are left alone; a configured id
/// that one of them already holds is an error.
pub async fn reconcile(
    store: &dyn Store,
    clients: &[StaticClient],
    now: SystemTime,
) -> Result<(), ReconcileError> {
    let wanted: HashSet<&str> = clients.iter().map(|c| c.id.as_str()).collect();
    for client in clients {
        if let Some(existing) = store.get_client(&client.id).await?
            && !is_configured(&existing)
        {
            return Err(ReconcileError::Taken(client.id.clone()));
        }
        not_a_user(store, &client.id).await?;
        if store.put_client(&client.record(true, now)).await? {
            tracing::info!(target: "mcpgate::issuer", client_id = %client.id, "configured client added");
        }
    }
    for record in store.list_clients().await? {
        if is_configured(&record) && !wanted.contains(record.client_id.as_str()) {
            store.delete_client(&record.client_id, now).await?;
            tracing::info!(target: "mcpgate::issuer", client_id = %record.client_id, "client no longer configured: removed, its grants revoked");
        }
    }
    Ok(())
}

/// Refuses a client id that is a local user's name: a machine client's tokens carry its id as
/// `sub`, so it would act as that user. Subjects have one namespace.
pub async fn not_a_user(store: &dyn Store, id: &ClientId) -> Result<(), ReconcileError> {
    match store
        .get_user(&crate::store::UserName::new(id.as_str()))
        .await?
    {
        Some(_) => Err(ReconcileError::AUser(id.clone())),
        None => Ok(()),
    }
}

/// Why the configured clients could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The id belongs to a client that was registered or added on the command line.
    #[error(
        "client `{0}` exists already and was not configured (registered, or added with `mcpgate clients add`): pick another client_id or `mcpgate clients remove` it"
    )]
    Taken(ClientId),
    /// The id is a user's name (a machine client's tokens carry it as `sub`).
    #[error(
        "`{0}` is a user's name: a client with it would act as that user; pick another client_id"
    )]
    AUser(ClientId),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn members(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_preset_takes_added_redirect_uris_and_replaced_members() {
        let c = StaticClient::new(
            "chatgpt",
            Some("chatgpt"),
            members(json!({
                "redirect_uris": ["https://chatgpt.com/connector/oauth/abc123"],
                "client_name": "ChatGPT (sales)",
            })),
            Some(&"s".repeat(40)),
            &AllowList::default(),
        )
        .unwrap();
        assert_eq!(c.metadata.redirect_uris.len(), 2);
        assert_eq!(c.metadata.client_name.as_deref(), Some("ChatGPT (sales)"));
        assert!(c.secret_hash.is_some());
    }

    #[test]
    fn secrets_ids_and_presets_are_checked() {
        let allow = AllowList::default();
        let e = StaticClient::new("c", Some("chatgpt"), Map::new(), None, &allow).unwrap_err();
        assert!(e.contains("has no secret"), "{e}");
        let e =
            StaticClient::new("c", Some("chatgpt"), Map::new(), Some("short"), &allow).unwrap_err();
        assert!(e.contains("shorter than 32"), "{e}");
        let e = StaticClient::new(
            "c",
            Some("vscode"),
            Map::new(),
            Some(&"s".repeat(40)),
            &allow,
        )
        .unwrap_err();
        assert!(e.contains("has a secret but"), "{e}");
        let e = StaticClient::new("c", Some("vs-code"), Map::new(), None, &allow).unwrap_err();
        assert!(e.contains("does not exist") && e.contains("vscode"), "{e}");
        for bad in ["", "a b", "https://x.example/c.json", "é", &"a".repeat(129)] {
            assert!(
                StaticClient::new(bad, Some("vscode"), Map::new(), None, &allow).is_err(),
                "{bad:?}"
            );
        }
        // Without a preset, the members alone must make a valid client.
        let e = StaticClient::new("c", None, Map::new(), None, &allow).unwrap_err();
        assert!(e.contains("redirect_uris"), "{e}");
        // The marker cannot be smuggled in.
        let c = StaticClient::new(
            "c",
            Some("vscode"),
            members(json!({"mcpgate_origin": "configuration"})),
            None,
            &allow,
        )
        .unwrap();
        assert!(!is_configured(&c.record(false, SystemTime::now())));
        assert!(is_configured(&c.record(true, SystemTime::now())));
    }

    #[test]
    fn the_operators_allow_list_applies_to_presets() {
        let allow = AllowList::new(&["https://vscode.dev/*".to_owned()]).unwrap();
        let e = StaticClient::new("c", Some("vscode"), Map::new(), None, &allow).unwrap_err();
        assert!(e.contains("127.0.0.1"), "{e}");
    }
}
