//! Storage: small traits named by role, one per kind of thing stored, and [`Store`], all of
//! them together.
//!
//! | trait | keeps |
//! |---|---|
//! | [`ClientStore`] | registered clients |
//! | [`CodeStore`] | authorization codes, consumed atomically once |
//! | [`GrantStore`] | grants and their revocation |
//! | [`RefreshTokenStore`] | refresh tokens, rotated atomically with reuse detection |
//! | [`ConsentStore`] | which scopes a user approved for a client |
//! | [`UserStore`] | local users (argon2id hashes) |
//! | [`SigningKeyStore`] | signing keys |
//! | [`ReplayStore`] | `jti`s of client assertions already seen |
//!
//! Secrets (client secrets, codes, refresh tokens, registration access tokens) reach the store
//! only as [`TokenHash`]es.
//!
//! # Why boxed futures and `dyn`
//! The backend is chosen at run time from configuration (SQLite embedded, PostgreSQL for
//! several replicas), so endpoints hold an `Arc<dyn Store>`, or only the role they need
//! (`Arc<dyn CodeStore>`: trait upcasting turns one into the other). `async fn` in a trait
//! cannot be called through `dyn`, so every method returns a [`StoreFuture`], a boxed `Send`
//! future, as `mcpgate_guard::TokenVerifier` does. A generic store parameter would instead run
//! through every handler and router type; one allocation per call is nothing next to a
//! database round trip.
//!
//! # Atomic steps
//! [`CodeStore::consume_code`] and [`RefreshTokenStore::rotate_refresh_token`] decide and
//! write in one transaction: of two concurrent calls for the same code or token, exactly one
//! succeeds. Every backend proves it by running [`conformance`] (feature `conformance`).
//!
//! ```
//! use std::sync::Arc;
//! use mcpgate_issuer::store::{CodeStore, Store, sqlite::SqliteStore};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = std::env::temp_dir().join(format!("mcpgate-doc-{}", std::process::id()));
//! let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir).await.unwrap());
//! let codes: Arc<dyn CodeStore> = store.clone(); // only what the token endpoint needs
//! # drop(codes); drop(store); std::fs::remove_dir_all(&dir).ok();
//! # });
//! ```

use std::time::SystemTime;

use mcpgate_guard::BoxFuture;

#[cfg(feature = "conformance")]
pub mod conformance;
mod records;
mod revocations;
pub mod sqlite;

pub use records::{
    AuthorizationCode, ClientId, ClientKind, ClientRecord, CodeConsumption, Grant, GrantFilter,
    GrantId, KeyState, Kid, NotArgon2id, PasswordHash, RefreshRotation, RefreshToken,
    RefreshTokenRecord, ResourceUrl, RevokedGrant, RotationOutcome, Scope, Scopes,
    SigningAlgorithm, SigningKeyRecord, StoredPrivateKey, Subject, User, UserName,
};
pub use revocations::{DEFAULT_REFRESH_INTERVAL, GRANT_ID_CLAIM, Revocations};

use crate::secret::TokenHash;

/// What every store method returns: a boxed, sendable future of a result.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// An error from the database driver, kept as its source.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("cannot open the store at {location}: {source}")]
    Open {
        /// The file or URL.
        location: String,
        /// Why.
        #[source]
        source: BackendError,
    },
    /// The schema could not be brought up to date.
    #[error("cannot migrate the store's schema: {0}")]
    Migration(#[source] BackendError),
    /// Inserting something whose key is taken.
    #[error("{what} `{id}` already exists")]
    AlreadyExists {
        /// What kind of thing.
        what: &'static str,
        /// Its key.
        id: String,
    },
    /// Changing something that is not there.
    #[error("{what} `{id}` does not exist")]
    NotFound {
        /// What kind of thing.
        what: &'static str,
        /// Its key.
        id: String,
    },
    /// Inserting something that refers to what is not there (a code for an unknown client,
    /// a refresh token for an unknown grant).
    #[error("{what} refers to something that does not exist: {reason}")]
    MissingReference {
        /// What was being inserted.
        what: &'static str,
        /// The database's words.
        reason: String,
    },
    /// A stored row cannot be read back (edited by hand, or written by a newer version).
    #[error("stored {what} cannot be read: {reason}")]
    Corrupt {
        /// What kind of thing.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The database failed or cannot be reached.
    #[error("database error: {0}")]
    Backend(#[source] BackendError),
}

/// Registered clients.
pub trait ClientStore: Send + Sync {
    /// Stores a new client; [`StoreError::AlreadyExists`] when the `client_id` is taken.
    fn insert_client<'a>(&'a self, client: &'a ClientRecord) -> StoreFuture<'a, ()>;

    /// Stores `client`, or, when its id is taken, replaces that client's kind, secret hash,
    /// registration token hash and metadata with `client`'s, keeping when it was registered
    /// and last used, and its grants, tokens and consents (a configured client whose
    /// configuration changed keeps its users signed in). `true` when it was new.
    fn put_client<'a>(&'a self, client: &'a ClientRecord) -> StoreFuture<'a, bool>;

    /// The client with this id.
    fn get_client<'a>(&'a self, id: &'a ClientId) -> StoreFuture<'a, Option<ClientRecord>>;

    /// Every client, oldest first.
    fn list_clients(&self) -> StoreFuture<'_, Vec<ClientRecord>>;

    /// Removes a client, with its codes, refresh tokens and consents, and revokes its grants
    /// (kept, revoked, so that replicas learn of the revocation). `false` when there was no
    /// such client.
    fn delete_client<'a>(&'a self, id: &'a ClientId, now: SystemTime) -> StoreFuture<'a, bool>;

    /// Records that the client obtained a token at `now`; [`StoreError::NotFound`] when there
    /// is no such client.
    fn touch_client<'a>(&'a self, id: &'a ClientId, now: SystemTime) -> StoreFuture<'a, ()>;

    /// Deletes, as [`delete_client`](Self::delete_client) does, every client of `kind` not
    /// used (or, never used, not registered) since `unused_since`; returns their ids.
    ///
    /// Pick `unused_since` earlier than the longest refresh-token lifetime, so that no client
    /// with a live refresh token is pruned.
    fn delete_unused_clients(
        &self,
        kind: ClientKind,
        unused_since: SystemTime,
        now: SystemTime,
    ) -> StoreFuture<'_, Vec<ClientId>>;
}

/// Authorization codes.
pub trait CodeStore: Send + Sync {
    /// Stores a new code; [`StoreError::MissingReference`] when its client is not stored.
    fn insert_code<'a>(&'a self, code: &'a AuthorizationCode) -> StoreFuture<'a, ()>;

    /// Spends the code, atomically: the first call for a valid code gets
    /// [`CodeConsumption::Consumed`], every later one [`CodeConsumption::AlreadyUsed`] with
    /// the grant to revoke. The caller then checks client, redirect URI and PKCE; the code is
    /// spent whatever they say.
    fn consume_code<'a>(
        &'a self,
        code_hash: &'a TokenHash,
        now: SystemTime,
    ) -> StoreFuture<'a, CodeConsumption>;

    /// Deletes codes that expired before `before` (spent or not); returns how many. Keep
    /// spent codes a while past their expiry so that late replays are still recognised.
    fn delete_expired_codes(&self, before: SystemTime) -> StoreFuture<'_, u64>;
}

/// Grants, and their revocation.
pub trait GrantStore: Send + Sync {
    /// Stores a new grant; [`StoreError::AlreadyExists`] when the id is taken.
    fn create_grant<'a>(&'a self, grant: &'a Grant) -> StoreFuture<'a, ()>;

    /// The grant with this id.
    fn get_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, Option<Grant>>;

    /// Revokes the grant and every refresh token of it. `false` when it was not active (no
    /// such grant, or revoked already).
    fn revoke_grant<'a>(&'a self, id: &'a GrantId, now: SystemTime) -> StoreFuture<'a, bool>;

    /// Revokes every active grant of `subject` (to `client` only, when given) with their
    /// refresh tokens; returns the grants revoked.
    fn revoke_grants<'a>(
        &'a self,
        subject: &'a Subject,
        client: Option<&'a ClientId>,
        now: SystemTime,
    ) -> StoreFuture<'a, Vec<GrantId>>;

    /// The grants `filter` selects, oldest first.
    fn list_grants<'a>(&'a self, filter: &'a GrantFilter) -> StoreFuture<'a, Vec<Grant>>;

    /// Whether the grant is revoked. An unknown grant counts as revoked: fail closed.
    fn is_grant_revoked<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, bool>;

    /// Grants revoked at or after `since`, for [`Revocations`].
    fn revoked_grants_since(&self, since: SystemTime) -> StoreFuture<'_, Vec<RevokedGrant>>;

    /// Deletes grants revoked before `before`, with their refresh tokens; returns how many.
    /// Pick `before` earlier than the longest access-token lifetime, so that every replica has
    /// learnt of a revocation before its record goes.
    fn delete_revoked_grants(&self, before: SystemTime) -> StoreFuture<'_, u64>;
}

/// Refresh tokens.
pub trait RefreshTokenStore: Send + Sync {
    /// Stores a new refresh token; [`StoreError::MissingReference`] when its grant or client
    /// is not stored.
    fn insert_refresh_token<'a>(&'a self, token: &'a RefreshToken) -> StoreFuture<'a, ()>;

    /// The stored token with this hash (for revocation and introspection).
    fn get_refresh_token<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> StoreFuture<'a, Option<RefreshTokenRecord>>;

    /// Exchanges a refresh token for its replacement, atomically (compare and swap): see
    /// [`RotationOutcome`]. Of concurrent rotations of one token exactly one is
    /// [`RotationOutcome::Rotated`]; a reuse outside the grace window revokes the whole grant
    /// in the same transaction.
    fn rotate_refresh_token<'a>(
        &'a self,
        rotation: &'a RefreshRotation,
    ) -> StoreFuture<'a, RotationOutcome>;

    /// Deletes refresh tokens that expired before `before`; returns how many.
    fn delete_expired_refresh_tokens(&self, before: SystemTime) -> StoreFuture<'_, u64>;
}

/// Redirect URIs remembered per consent.
pub const MAX_CONSENTED_REDIRECTS: usize = 16;

/// What users approved.
pub trait ConsentStore: Send + Sync {
    /// Records that `subject` approved `scopes` for `client` answering at `redirect_uri`, in
    /// addition to what they approved before (the last [`MAX_CONSENTED_REDIRECTS`] redirect
    /// URIs are kept).
    fn remember_consent<'a>(
        &'a self,
        subject: &'a Subject,
        client: &'a ClientId,
        scopes: &'a Scopes,
        redirect_uri: &'a str,
        now: SystemTime,
    ) -> StoreFuture<'a, ()>;

    /// Whether `subject` approved every one of `scopes` for `client` answering at
    /// `redirect_uri`, exactly as written (an empty set: whether they approved the client
    /// there at all). Revoking a grant forgets the consent of its subject and client.
    fn consent_covers<'a>(
        &'a self,
        subject: &'a Subject,
        client: &'a ClientId,
        scopes: &'a Scopes,
        redirect_uri: &'a str,
    ) -> StoreFuture<'a, bool>;

    /// Forgets what `subject` approved for `client`; `false` when there was nothing.
    fn forget_consent<'a>(
        &'a self,
        subject: &'a Subject,
        client: &'a ClientId,
    ) -> StoreFuture<'a, bool>;
}

/// Local users.
pub trait UserStore: Send + Sync {
    /// Adds a user; [`StoreError::AlreadyExists`] when the name is taken.
    fn add_user<'a>(&'a self, user: &'a User) -> StoreFuture<'a, ()>;

    /// The user with this name.
    fn get_user<'a>(&'a self, name: &'a UserName) -> StoreFuture<'a, Option<User>>;

    /// Every user, by name.
    fn list_users(&self) -> StoreFuture<'_, Vec<User>>;

    /// Adds the user, or changes the one with this name to `user` (password hash, whether
    /// configured, and whether disabled — one already disabled keeps its time), keeping its
    /// `created_at`, in one step; `true` when the user was added. A user this disables has
    /// their grants revoked in the same step.
    fn put_user<'a>(&'a self, user: &'a User) -> StoreFuture<'a, bool>;

    /// Disables a user and revokes every grant they gave, in one step; `false` when there is
    /// no such user or they were disabled already.
    fn disable_user<'a>(&'a self, name: &'a UserName, now: SystemTime) -> StoreFuture<'a, bool>;
}

/// Signing keys.
pub trait SigningKeyStore: Send + Sync {
    /// Stores a new key; [`StoreError::AlreadyExists`] when its `kid` is taken, or when it is
    /// [`KeyState::Active`] and another key is (one active key at a time).
    fn insert_signing_key<'a>(&'a self, key: &'a SigningKeyRecord) -> StoreFuture<'a, ()>;

    /// Every key, oldest first.
    fn list_signing_keys(&self) -> StoreFuture<'_, Vec<SigningKeyRecord>>;

    /// Makes `kid` the active key, in one transaction: the key active until now becomes
    /// [`KeyState::Verifying`] until `previous_retires_at`. [`StoreError::NotFound`] when
    /// `kid` is unknown or retired.
    fn activate_signing_key<'a>(
        &'a self,
        kid: &'a Kid,
        previous_retires_at: SystemTime,
    ) -> StoreFuture<'a, ()>;

    /// Retires a key: no longer published or verifying. `false` when there is no such key or
    /// it was retired already.
    fn retire_signing_key<'a>(&'a self, kid: &'a Kid, now: SystemTime) -> StoreFuture<'a, bool>;
}

/// Replay protection for client assertions (`private_key_jwt`, RFC 7523).
pub trait ReplayStore: Send + Sync {
    /// Records that `issuer` used `jti`, until `expires_at` (the assertion's `exp`). `false`
    /// when the pair was seen before and has not expired at `now`: a replay.
    fn remember_jti<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> StoreFuture<'a, bool>;

    /// Forgets `jti`s that expired before `now`; returns how many.
    fn prune_jtis(&self, now: SystemTime) -> StoreFuture<'_, u64>;
}

/// Every role together: what a backend implements and the issuer holds.
pub trait Store:
    ClientStore
    + CodeStore
    + GrantStore
    + RefreshTokenStore
    + ConsentStore
    + UserStore
    + SigningKeyStore
    + ReplayStore
{
}

impl<T> Store for T where
    T: ClientStore
        + CodeStore
        + GrantStore
        + RefreshTokenStore
        + ConsentStore
        + UserStore
        + SigningKeyStore
        + ReplayStore
{
}
