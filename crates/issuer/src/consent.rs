//! Consent: what a person is asked to approve, and the record of what they approved.
//!
//! The question ([`Question`]) is built from facts the issuer checked, never from what the
//! client says about itself alone: where the browser will be sent back to (the redirect
//! URI's host, which a client cannot fake, AS-13), how the client became known (anyone can
//! register dynamically; a metadata document is identified by the URL it lives at; a
//! configured client was added by the operator), and each scope with the operator's words
//! for it. The client's name is shown too, but as a claim.
//!
//! Free of HTTP: the page is [`crate::pages`]', the handlers [`crate::authorize::flow`]'s.

use std::time::SystemTime;

use mcpgate_guard::{ClientId, Scopes, Subject};

use crate::authorize::request::AuthorizationRequest;
use crate::clients::redirect_uri::Kind;
use crate::clients::registry::KnownClient;
use crate::scopes::{Catalogue, OFFLINE_ACCESS};
use crate::store::{ClientKind, ConsentStore, StoreError};

/// How a client became known to the issuer, as the consent page tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// It registered itself (RFC 7591): anyone can, so its name proves nothing.
    Registered,
    /// Its `client_id` is the URL of its metadata document.
    MetadataDocument {
        /// That URL.
        url: String,
    },
    /// The operator configured it.
    Configured,
}

/// One scope asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskedScope {
    /// The scope.
    pub name: String,
    /// What it lets the client do, in the operator's words (or ours, for `offline_access`).
    pub description: Option<String>,
}

/// What the person is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The client's name (its own claim), or its id.
    pub client_name: String,
    /// The client's id.
    pub client_id: String,
    /// The host the browser is sent back to.
    pub redirect_host: String,
    /// The kind of place that is.
    pub redirect_kind: Kind,
    /// How the client became known.
    pub provenance: Provenance,
    /// The scopes, in the order asked.
    pub scopes: Vec<AskedScope>,
    /// The resource the tokens will be for.
    pub resource: String,
}

impl Question {
    /// The question for `request` from `client`.
    pub fn new(client: &KnownClient, request: &AuthorizationRequest, scopes: &Catalogue) -> Self {
        let provenance = match client.kind {
            ClientKind::Dynamic => Provenance::Registered,
            ClientKind::MetadataDocument => Provenance::MetadataDocument {
                url: client.id.as_str().to_owned(),
            },
            ClientKind::Static => Provenance::Configured,
        };
        Question {
            client_name: client.display_name(),
            client_id: client.id.as_str().to_owned(),
            redirect_host: request.redirect_uri.display_host(),
            redirect_kind: request.redirect_uri.kind(),
            provenance,
            scopes: request
                .scopes
                .iter()
                .map(|scope| AskedScope {
                    name: scope.as_str().to_owned(),
                    description: match scopes.describe(scope) {
                        Some(d) => Some(d.to_owned()),
                        None if scope.as_str() == OFFLINE_ACCESS => {
                            Some("Stay connected when you are not using it".to_owned())
                        }
                        None => None,
                    },
                })
                .collect(),
            resource: request.resource.as_str().to_owned(),
        }
    }
}

/// Whether `subject` approved every one of `scopes` for `client` before, answering at
/// `redirect_uri` exactly (the one they were shown): a request that would send the answer
/// elsewhere — another port of a loopback client, a URI a metadata document added since — is
/// asked again (RFC 8252 §8.6).
pub async fn given(
    store: &dyn ConsentStore,
    subject: &Subject,
    client: &ClientId,
    scopes: &Scopes,
    redirect_uri: &str,
) -> Result<bool, StoreError> {
    store
        .consent_covers(subject, client, scopes, redirect_uri)
        .await
}

/// Records that `subject` approved `scopes` for `client` answering at `redirect_uri`.
pub async fn remember(
    store: &dyn ConsentStore,
    subject: &Subject,
    client: &ClientId,
    scopes: &Scopes,
    redirect_uri: &str,
) -> Result<(), StoreError> {
    store
        .remember_consent(subject, client, scopes, redirect_uri, SystemTime::now())
        .await
}
