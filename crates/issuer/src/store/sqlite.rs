//! The embedded store: one SQLite file, `<data_dir>/mcpgate.db`.
//!
//! Opened in WAL mode (readers do not wait for the writer), with a busy timeout (a writer
//! waits its turn instead of failing) and foreign keys on; the schema in `migrations/` is
//! embedded in the binary and brought up to date on open. Every step that reads and then
//! writes runs in a `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock before the
//! read, so no other writer can slip in between. Refresh rotations that arrive together are
//! written together, in one such transaction (`sqlite/rotation.rs`).
//!
//! ```
//! use mcpgate_issuer::store::{UserStore, sqlite::SqliteStore};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = SqliteStore::open_temporary().await.unwrap();
//! assert!(store.list_users().await.unwrap().is_empty());
//! # });
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::{
    AuthorizationCode, ClientId, ClientKind, ClientRecord, ClientStore, CodeConsumption, CodeStore,
    ConsentStore, Grant, GrantFilter, GrantId, GrantStore, KeyState, Kid, PasswordHash,
    RefreshRotation, RefreshToken, RefreshTokenRecord, RefreshTokenStore, ReplayStore, ResourceUrl,
    RevokedGrant, RotationOutcome, Scopes, SigningAlgorithm, SigningKeyRecord, SigningKeyStore,
    StoreError, StoreFuture, StoredPrivateKey, Subject, User, UserName, UserStore,
};
use crate::secret::{TokenHash, random_bytes};

mod rotation;

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "mcpgate.db";

/// How long a writer waits for the write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The store in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Refresh rotations waiting to be written together.
    rotations: std::sync::Arc<rotation::RotationQueue>,
    /// Removes the directory of a temporary store when the last clone is dropped.
    _temporary: Option<std::sync::Arc<TemporaryDir>>,
}

#[derive(Debug)]
struct TemporaryDir(PathBuf);

impl Drop for TemporaryDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl SqliteStore {
    /// Opens `<data_dir>/mcpgate.db`, creating the directory (mode 0700) and the file (0600)
    /// when missing, and migrates the schema.
    pub async fn open(data_dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let data_dir = data_dir.as_ref();
        let open_error = |source: std::io::Error| StoreError::Open {
            location: data_dir.display().to_string(),
            source: Box::new(source),
        };
        create_private_dir(data_dir).map_err(open_error)?;
        let path = data_dir.join(DATABASE_FILE);
        create_private_file(&path).map_err(|source| StoreError::Open {
            location: path.display().to_string(),
            source: Box::new(source),
        })?;
        Self::open_file(&path).await
    }

    /// Opens (creating if missing) the database at `path` and migrates the schema.
    pub async fn open_file(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL loses at most the last transactions on power loss, never
            // consistency; FULL would sync on every commit.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open {
                location: path.display().to_string(),
                source: Box::new(e),
            })?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(Box::new(e)))?;
        Ok(SqliteStore {
            pool,
            rotations: Default::default(),
            _temporary: None,
        })
    }

    /// A store in a new directory under the system's temporary directory, removed when the
    /// store (its last clone) is dropped. For tests: a real file, with real locking.
    pub async fn open_temporary() -> Result<Self, StoreError> {
        let suffix: String = random_bytes::<8>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let dir = std::env::temp_dir().join(format!("mcpgate-store-{suffix}"));
        let guard = std::sync::Arc::new(TemporaryDir(dir.clone()));
        let mut store = Self::open(&dir).await?;
        store._temporary = Some(guard);
        Ok(store)
    }

    /// Closes every connection, waiting for them.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

// ---- encoding -------------------------------------------------------------------------------

/// Unix seconds, rounded down.
fn secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let d = before.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            // Round towards the past, as for times after the epoch.
            -whole - i64::from(d.subsec_nanos() > 0)
        }
    }
}

fn time(s: i64) -> SystemTime {
    let d = Duration::from_secs(s.unsigned_abs());
    let t = if s >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    };
    t.unwrap_or(UNIX_EPOCH)
}

fn duration_secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// Maps an insert's error: a taken key and a missing reference get their own variants.
fn insert_error<'a>(
    what: &'static str,
    id: &'a str,
) -> impl FnOnce(sqlx::Error) -> StoreError + 'a {
    move |e| {
        if let Some(db) = e.as_database_error() {
            if db.is_unique_violation() {
                return StoreError::AlreadyExists {
                    what,
                    id: id.to_owned(),
                };
            }
            if db.is_foreign_key_violation() {
                return StoreError::MissingReference {
                    what,
                    reason: db.message().to_owned(),
                };
            }
        }
        backend(e)
    }
}

fn corrupt(what: &'static str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        reason: reason.to_string(),
    }
}

/// Reads one column, naming the row and column when it does not decode.
fn column<'r, T>(row: &'r SqliteRow, what: &'static str, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(name)
        .map_err(|e| corrupt(what, format!("column `{name}`: {e}")))
}

fn hash_column(row: &SqliteRow, what: &'static str, name: &str) -> Result<TokenHash, StoreError> {
    let bytes: Vec<u8> = column(row, what, name)?;
    TokenHash::try_from(bytes.as_slice())
        .map_err(|e| corrupt(what, format!("column `{name}`: {e}")))
}

fn optional_hash_column(
    row: &SqliteRow,
    what: &'static str,
    name: &str,
) -> Result<Option<TokenHash>, StoreError> {
    let bytes: Option<Vec<u8>> = column(row, what, name)?;
    bytes
        .map(|b| {
            TokenHash::try_from(b.as_slice())
                .map_err(|e| corrupt(what, format!("column `{name}`: {e}")))
        })
        .transpose()
}

fn time_column(row: &SqliteRow, what: &'static str, name: &str) -> Result<SystemTime, StoreError> {
    column::<i64>(row, what, name).map(time)
}

fn optional_time_column(
    row: &SqliteRow,
    what: &'static str,
    name: &str,
) -> Result<Option<SystemTime>, StoreError> {
    Ok(column::<Option<i64>>(row, what, name)?.map(time))
}

fn resource_column(
    row: &SqliteRow,
    what: &'static str,
    name: &str,
) -> Result<Option<ResourceUrl>, StoreError> {
    let value: Option<String> = column(row, what, name)?;
    value
        .map(|v| ResourceUrl::parse(&v).map_err(|e| corrupt(what, format!("column `{name}`: {e}"))))
        .transpose()
}

fn scopes_column(row: &SqliteRow, what: &'static str, name: &str) -> Result<Scopes, StoreError> {
    let value: String = column(row, what, name)?;
    Ok(Scopes::from_space_delimited(&value))
}

fn client_from_row(row: &SqliteRow) -> Result<ClientRecord, StoreError> {
    const WHAT: &str = "client";
    let kind: String = column(row, WHAT, "kind")?;
    let metadata: String = column(row, WHAT, "metadata")?;
    Ok(ClientRecord {
        client_id: ClientId::new(column::<String>(row, WHAT, "client_id")?),
        secret_hash: optional_hash_column(row, WHAT, "secret_hash")?,
        registration_token_hash: optional_hash_column(row, WHAT, "registration_token_hash")?,
        kind: ClientKind::parse(&kind)
            .ok_or_else(|| corrupt(WHAT, format!("unknown kind `{kind}`")))?,
        metadata: serde_json::from_str(&metadata)
            .map_err(|e| corrupt(WHAT, format!("metadata: {e}")))?,
        created_at: time_column(row, WHAT, "created_at")?,
        last_used_at: optional_time_column(row, WHAT, "last_used_at")?,
    })
}

fn grant_from_row(row: &SqliteRow) -> Result<Grant, StoreError> {
    const WHAT: &str = "grant";
    Ok(Grant {
        id: GrantId::new(column::<String>(row, WHAT, "grant_id")?),
        subject: Subject::new(column::<String>(row, WHAT, "subject")?),
        client_id: ClientId::new(column::<String>(row, WHAT, "client_id")?),
        scopes: scopes_column(row, WHAT, "scopes")?,
        resource: resource_column(row, WHAT, "resource")?,
        created_at: time_column(row, WHAT, "created_at")?,
        revoked_at: optional_time_column(row, WHAT, "revoked_at")?,
    })
}

fn code_from_row(row: &SqliteRow, code_hash: TokenHash) -> Result<AuthorizationCode, StoreError> {
    const WHAT: &str = "authorization code";
    Ok(AuthorizationCode {
        code_hash,
        client_id: ClientId::new(column::<String>(row, WHAT, "client_id")?),
        redirect_uri: column(row, WHAT, "redirect_uri")?,
        code_challenge: column(row, WHAT, "code_challenge")?,
        resource: resource_column(row, WHAT, "resource")?,
        scopes: scopes_column(row, WHAT, "scopes")?,
        subject: Subject::new(column::<String>(row, WHAT, "subject")?),
        grant_id: GrantId::new(column::<String>(row, WHAT, "grant_id")?),
        expires_at: time_column(row, WHAT, "expires_at")?,
    })
}

fn refresh_token_from_row(row: &SqliteRow) -> Result<RefreshTokenRecord, StoreError> {
    const WHAT: &str = "refresh token";
    Ok(RefreshTokenRecord {
        token: RefreshToken {
            token_hash: hash_column(row, WHAT, "token_hash")?,
            grant_id: GrantId::new(column::<String>(row, WHAT, "grant_id")?),
            client_id: ClientId::new(column::<String>(row, WHAT, "client_id")?),
            issued_at: time_column(row, WHAT, "issued_at")?,
            expires_at: time_column(row, WHAT, "expires_at")?,
        },
        rotated_at: optional_time_column(row, WHAT, "rotated_at")?,
        revoked_at: optional_time_column(row, WHAT, "revoked_at")?,
    })
}

fn user_from_row(row: &SqliteRow) -> Result<User, StoreError> {
    const WHAT: &str = "user";
    let phc: String = column(row, WHAT, "password_hash")?;
    Ok(User {
        name: UserName::new(column::<String>(row, WHAT, "name")?),
        password_hash: PasswordHash::new(phc).map_err(|e| corrupt(WHAT, e))?,
        created_at: time_column(row, WHAT, "created_at")?,
        disabled_at: optional_time_column(row, WHAT, "disabled_at")?,
        configured: column::<i64>(row, WHAT, "configured")? != 0,
    })
}

fn signing_key_from_row(row: &SqliteRow) -> Result<SigningKeyRecord, StoreError> {
    const WHAT: &str = "signing key";
    let algorithm: String = column(row, WHAT, "algorithm")?;
    let encryption: String = column(row, WHAT, "private_key_encryption")?;
    let state: String = column(row, WHAT, "state")?;
    let jwk: String = column(row, WHAT, "public_jwk")?;
    Ok(SigningKeyRecord {
        kid: Kid::new(column::<String>(row, WHAT, "kid")?),
        algorithm: SigningAlgorithm::parse(&algorithm)
            .ok_or_else(|| corrupt(WHAT, format!("unknown algorithm `{algorithm}`")))?,
        private_key: StoredPrivateKey::from_stored(&encryption, column(row, WHAT, "private_key")?)
            .ok_or_else(|| corrupt(WHAT, format!("unknown encryption `{encryption}`")))?,
        public_jwk: serde_json::from_str(&jwk)
            .map_err(|e| corrupt(WHAT, format!("public_jwk: {e}")))?,
        created_at: time_column(row, WHAT, "created_at")?,
        state: KeyState::parse(&state)
            .ok_or_else(|| corrupt(WHAT, format!("unknown state `{state}`")))?,
        retired_at: optional_time_column(row, WHAT, "retired_at")?,
    })
}

// ---- clients --------------------------------------------------------------------------------

impl ClientStore for SqliteStore {
    fn insert_client<'a>(&'a self, client: &'a ClientRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO clients (client_id, kind, secret_hash, registration_token_hash, \
                 metadata, created_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(client.client_id.as_str())
            .bind(client.kind.as_str())
            .bind(client.secret_hash.map(|h| h.as_bytes().to_vec()))
            .bind(
                client
                    .registration_token_hash
                    .map(|h| h.as_bytes().to_vec()),
            )
            .bind(client.metadata.to_string())
            .bind(secs(client.created_at))
            .bind(client.last_used_at.map(secs))
            .execute(&self.pool)
            .await
            .map_err(insert_error("client", client.client_id.as_str()))?;
            Ok(())
        })
    }

    fn put_client<'a>(&'a self, client: &'a ClientRecord) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            // One statement: the row is created or changed whole, never half.
            let created: Option<i64> = sqlx::query_scalar(
                "INSERT INTO clients (client_id, kind, secret_hash, registration_token_hash, \
                 metadata, created_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (client_id) DO UPDATE SET kind = excluded.kind, \
                 secret_hash = excluded.secret_hash, \
                 registration_token_hash = excluded.registration_token_hash, \
                 metadata = excluded.metadata \
                 RETURNING created_at",
            )
            .bind(client.client_id.as_str())
            .bind(client.kind.as_str())
            .bind(client.secret_hash.map(|h| h.as_bytes().to_vec()))
            .bind(
                client
                    .registration_token_hash
                    .map(|h| h.as_bytes().to_vec()),
            )
            .bind(client.metadata.to_string())
            .bind(secs(client.created_at))
            .bind(client.last_used_at.map(secs))
            .fetch_optional(&self.pool)
            .await
            .map_err(insert_error("client", client.client_id.as_str()))?;
            Ok(created == Some(secs(client.created_at)))
        })
    }

    fn get_client<'a>(&'a self, id: &'a ClientId) -> StoreFuture<'a, Option<ClientRecord>> {
        Box::pin(async move {
            sqlx::query("SELECT * FROM clients WHERE client_id = ?")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?
                .as_ref()
                .map(client_from_row)
                .transpose()
        })
    }

    fn list_clients(&self) -> StoreFuture<'_, Vec<ClientRecord>> {
        Box::pin(async move {
            sqlx::query("SELECT * FROM clients ORDER BY created_at, client_id")
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?
                .iter()
                .map(client_from_row)
                .collect()
        })
    }

    fn delete_client<'a>(&'a self, id: &'a ClientId, now: SystemTime) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(backend)?;
            sqlx::query(
                "UPDATE grants SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL",
            )
            .bind(secs(now))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            // Codes, refresh tokens and consents go with the client (ON DELETE CASCADE).
            let deleted = sqlx::query("DELETE FROM clients WHERE client_id = ?")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
            tx.commit().await.map_err(backend)?;
            Ok(deleted > 0)
        })
    }

    fn touch_client<'a>(&'a self, id: &'a ClientId, now: SystemTime) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let touched = sqlx::query("UPDATE clients SET last_used_at = ? WHERE client_id = ?")
                .bind(secs(now))
                .bind(id.as_str())
                .execute(&self.pool)
                .await
                .map_err(backend)?
                .rows_affected();
            if touched == 0 {
                return Err(StoreError::NotFound {
                    what: "client",
                    id: id.to_string(),
                });
            }
            Ok(())
        })
    }

    fn delete_unused_clients(
        &self,
        kind: ClientKind,
        unused_since: SystemTime,
        now: SystemTime,
    ) -> StoreFuture<'_, Vec<ClientId>> {
        Box::pin(async move {
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(backend)?;
            sqlx::query(
                "UPDATE grants SET revoked_at = ?1 WHERE revoked_at IS NULL AND client_id IN \
                 (SELECT client_id FROM clients \
                  WHERE kind = ?2 AND coalesce(last_used_at, created_at) < ?3)",
            )
            .bind(secs(now))
            .bind(kind.as_str())
            .bind(secs(unused_since))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            let rows = sqlx::query(
                "DELETE FROM clients WHERE kind = ? AND coalesce(last_used_at, created_at) < ? \
                 RETURNING client_id",
            )
            .bind(kind.as_str())
            .bind(secs(unused_since))
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            rows.iter()
                .map(|row| column::<String>(row, "client", "client_id").map(ClientId::new))
                .collect()
        })
    }
}

// ---- authorization codes ----------------------------------------------------------------------

impl CodeStore for SqliteStore {
    fn insert_code<'a>(&'a self, code: &'a AuthorizationCode) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO authorization_codes (code_hash, client_id, grant_id, subject, \
                 redirect_uri, code_challenge, resource, scopes, expires_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(code.code_hash.as_bytes().to_vec())
            .bind(code.client_id.as_str())
            .bind(code.grant_id.as_str())
            .bind(code.subject.as_str())
            .bind(code.redirect_uri.as_str())
            .bind(code.code_challenge.as_str())
            .bind(code.resource.as_ref().map(ResourceUrl::as_str))
            .bind(code.scopes.to_space_delimited())
            .bind(secs(code.expires_at))
            .execute(&self.pool)
            .await
            .map_err(insert_error("authorization code", "(hash)"))?;
            Ok(())
        })
    }

    fn consume_code<'a>(
        &'a self,
        code_hash: &'a TokenHash,
        now: SystemTime,
    ) -> StoreFuture<'a, CodeConsumption> {
        Box::pin(async move {
            let hash = code_hash.as_bytes().to_vec();
            // The one statement that spends the code: of concurrent callers, one updates the
            // row and the others find it spent.
            let spent = sqlx::query(
                "UPDATE authorization_codes SET consumed_at = ?1 \
                 WHERE code_hash = ?2 AND consumed_at IS NULL AND expires_at > ?1 \
                 RETURNING *",
            )
            .bind(secs(now))
            .bind(&hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
            if let Some(row) = spent {
                return Ok(CodeConsumption::Consumed(Box::new(code_from_row(
                    &row, *code_hash,
                )?)));
            }
            // Not spent now: say why. A code does not come back to life, so this read cannot
            // undo the decision above.
            let row = sqlx::query(
                "SELECT grant_id, consumed_at FROM authorization_codes WHERE code_hash = ?",
            )
            .bind(&hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
            Ok(match row {
                None => CodeConsumption::Unknown,
                Some(row) => {
                    const WHAT: &str = "authorization code";
                    if optional_time_column(&row, WHAT, "consumed_at")?.is_some() {
                        CodeConsumption::AlreadyUsed(GrantId::new(column::<String>(
                            &row, WHAT, "grant_id",
                        )?))
                    } else {
                        CodeConsumption::Expired
                    }
                }
            })
        })
    }

    fn delete_expired_codes(&self, before: SystemTime) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            Ok(
                sqlx::query("DELETE FROM authorization_codes WHERE expires_at < ?")
                    .bind(secs(before))
                    .execute(&self.pool)
                    .await
                    .map_err(backend)?
                    .rows_affected(),
            )
        })
    }
}

// ---- grants ---------------------------------------------------------------------------------

impl GrantStore for SqliteStore {
    fn create_grant<'a>(&'a self, grant: &'a Grant) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO grants (grant_id, subject, client_id, scopes, resource, created_at, \
                 revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(grant.id.as_str())
            .bind(grant.subject.as_str())
            .bind(grant.client_id.as_str())
            .bind(grant.scopes.to_space_delimited())
            .bind(grant.resource.as_ref().map(ResourceUrl::as_str))
            .bind(secs(grant.created_at))
            .bind(grant.revoked_at.map(secs))
            .execute(&self.pool)
            .await
            .map_err(insert_error("grant", grant.id.as_str()))?;
            Ok(())
        })
    }

    fn get_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, Option<Grant>> {
        Box::pin(async move {
            sqlx::query("SELECT * FROM grants WHERE grant_id = ?")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?
                .as_ref()
                .map(grant_from_row)
                .transpose()
        })
    }

    fn revoke_grant<'a>(&'a self, id: &'a GrantId, now: SystemTime) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(backend)?;
            let revoked = sqlx::query(
                "UPDATE grants SET revoked_at = ? WHERE grant_id = ? AND revoked_at IS NULL",
            )
            .bind(secs(now))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
            revoke_refresh_tokens_of(&mut tx, id, now).await?;
            tx.commit().await.map_err(backend)?;
            Ok(revoked > 0)
        })
    }

    fn revoke_grants<'a>(
        &'a self,
        subject: &'a Subject,
        client: Option<&'a ClientId>,
        now: SystemTime,
    ) -> StoreFuture<'a, Vec<GrantId>> {
        Box::pin(async move {
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(backend)?;
            let ids = revoke_grants_of_subject(
                &mut tx,
                subject.as_str(),
                client.map(ClientId::as_str),
                secs(now),
            )
            .await?;
            tx.commit().await.map_err(backend)?;
            Ok(ids)
        })
    }

    fn list_grants<'a>(&'a self, filter: &'a GrantFilter) -> StoreFuture<'a, Vec<Grant>> {
        Box::pin(async move {
            sqlx::query(
                "SELECT * FROM grants \
                 WHERE (?1 IS NULL OR subject = ?1) AND (?2 IS NULL OR client_id = ?2) \
                 AND (?3 OR revoked_at IS NULL) \
                 ORDER BY created_at, grant_id",
            )
            .bind(filter.subject.as_ref().map(Subject::as_str))
            .bind(filter.client_id.as_ref().map(ClientId::as_str))
            .bind(filter.include_revoked)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(grant_from_row)
            .collect()
        })
    }

    fn is_grant_revoked<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let row = sqlx::query("SELECT revoked_at FROM grants WHERE grant_id = ?")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
            match row {
                None => Ok(true),
                Some(row) => Ok(optional_time_column(&row, "grant", "revoked_at")?.is_some()),
            }
        })
    }

    fn revoked_grants_since(&self, since: SystemTime) -> StoreFuture<'_, Vec<RevokedGrant>> {
        Box::pin(async move {
            sqlx::query(
                "SELECT grant_id, revoked_at FROM grants WHERE revoked_at >= ? \
                 ORDER BY revoked_at",
            )
            .bind(secs(since))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(|row| {
                Ok(RevokedGrant {
                    id: GrantId::new(column::<String>(row, "grant", "grant_id")?),
                    revoked_at: time_column(row, "grant", "revoked_at")?,
                })
            })
            .collect()
        })
    }

    fn delete_revoked_grants(&self, before: SystemTime) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            // Their refresh tokens go with them (ON DELETE CASCADE).
            Ok(sqlx::query("DELETE FROM grants WHERE revoked_at < ?")
                .bind(secs(before))
                .execute(&self.pool)
                .await
                .map_err(backend)?
                .rows_affected())
        })
    }
}

/// Revokes the refresh tokens of `grant`, and forgets the consent of its subject and client
/// (the next authorization asks again), in `tx`.
async fn revoke_refresh_tokens_of(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    grant: &GrantId,
    now: SystemTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM consents WHERE (subject, client_id) IN \
         (SELECT subject, client_id FROM grants WHERE grant_id = ?)",
    )
    .bind(grant.as_str())
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = ? WHERE grant_id = ? AND revoked_at IS NULL",
    )
    .bind(secs(now))
    .bind(grant.as_str())
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(())
}

// ---- refresh tokens -------------------------------------------------------------------------

impl RefreshTokenStore for SqliteStore {
    fn insert_refresh_token<'a>(&'a self, token: &'a RefreshToken) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, grant_id, client_id, issued_at, \
                 expires_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(token.token_hash.as_bytes().to_vec())
            .bind(token.grant_id.as_str())
            .bind(token.client_id.as_str())
            .bind(secs(token.issued_at))
            .bind(secs(token.expires_at))
            .execute(&self.pool)
            .await
            .map_err(insert_error("refresh token", "(hash)"))?;
            Ok(())
        })
    }

    fn get_refresh_token<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> StoreFuture<'a, Option<RefreshTokenRecord>> {
        Box::pin(async move {
            sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = ?")
                .bind(hash.as_bytes().to_vec())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?
                .as_ref()
                .map(refresh_token_from_row)
                .transpose()
        })
    }

    fn rotate_refresh_token<'a>(
        &'a self,
        rotation: &'a RefreshRotation,
    ) -> StoreFuture<'a, RotationOutcome> {
        Box::pin(async move { self.rotations.rotate(&self.pool, rotation).await })
    }

    fn delete_expired_refresh_tokens(&self, before: SystemTime) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            Ok(
                sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < ?")
                    .bind(secs(before))
                    .execute(&self.pool)
                    .await
                    .map_err(backend)?
                    .rows_affected(),
            )
        })
    }
}

/// Revokes every live grant of `subject` (through `client` only, if given) and their refresh
/// tokens, in `tx`.
async fn revoke_grants_of_subject(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    subject: &str,
    client: Option<&str>,
    now: i64,
) -> Result<Vec<GrantId>, StoreError> {
    let rows = sqlx::query(
        "UPDATE grants SET revoked_at = ?1 \
         WHERE subject = ?2 AND (?3 IS NULL OR client_id = ?3) AND revoked_at IS NULL \
         RETURNING grant_id",
    )
    .bind(now)
    .bind(subject)
    .bind(client)
    .fetch_all(&mut **tx)
    .await
    .map_err(backend)?;
    let ids = rows
        .iter()
        .map(|row| column::<String>(row, "grant", "grant_id").map(GrantId::new))
        .collect::<Result<Vec<_>, _>>()?;
    for id in &ids {
        revoke_refresh_tokens_of(tx, id, time(now)).await?;
    }
    Ok(ids)
}

// ---- consents -------------------------------------------------------------------------------

impl ConsentStore for SqliteStore {
    fn remember_consent<'a>(
        &'a self,
        subject: &'a Subject,
        client: &'a ClientId,
        scopes: &'a Scopes,
        redirect_uri: &'a str,
        now: SystemTime,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(backend)?;
            let before: Option<String> = sqlx::query_scalar(
                "SELECT redirect_uris FROM consents WHERE subject = ? AND client_id = ?",
            )
            .bind(subject.as_str())
            .bind(client.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            // One per line (redirect URIs hold no control characters), the newest last.
            let mut uris: Vec<&str> = before
                .as_deref()
                .unwrap_or_default()
                .lines()
                .filter(|u| !u.is_empty() && *u != redirect_uri)
                .collect();
            uris.push(redirect_uri);
            let keep = uris.len().saturating_sub(super::MAX_CONSENTED_REDIRECTS);
            let uris = uris[keep..].join("\n");
            sqlx::query(
                "INSERT INTO consents (subject, client_id, granted_at, redirect_uris) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (subject, client_id) DO UPDATE SET \
                 granted_at = excluded.granted_at, redirect_uris = excluded.redirect_uris",
            )
            .bind(subject.as_str())
            .bind(client.as_str())
            .bind(secs(now))
            .bind(&uris)
            .execute(&mut *tx)
            .await
            .map_err(insert_error("consent", client.as_str()))?;
            for scope in scopes.iter() {
                sqlx::query(
                    "INSERT INTO consent_scopes (subject, client_id, scope) VALUES (?, ?, ?) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(subject.as_str())
                .bind(client.as_str())
                .bind(scope.as_str())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
            tx.commit().await.map_err(backend)?;
            Ok(())
        })
    }

    fn consent_covers<'a>(
        &'a self,
        subject: &'a Subject,
        client: &'a ClientId,
        scopes: &'a Scopes,
        redirect_uri: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT c.redirect_uris, s.scope FROM consents c LEFT JOIN consent_scopes s \
                 ON s.subject = c.subject AND s.client_id = c.client_id \
                 WHERE c.subject = ? AND c.client_id = ?",
            )
            .bind(subject.as_str())
            .bind(client.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            let Some(first) = rows.first() else {
                return Ok(false);
            };
            let uris: String = column(first, "consent", "redirect_uris")?;
            if !uris.lines().any(|u| u == redirect_uri) {
                return Ok(false);
            }
            let approved = rows
                .iter()
                .map(|row| column::<Option<String>>(row, "consent", "scope"))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(scopes
                .iter()
                .all(|wanted| approved.iter().flatten().any(|s| s == wanted.as_str())))
        })
    }

    fn forget_consent<'a>(
        &'a self,
        subject: &'a Subject,
        client: &'a ClientId,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let deleted = sqlx::query("DELETE FROM consents WHERE subject = ? AND client_id = ?")
                .bind(subject.as_str())
                .bind(client.as_str())
                .execute(&self.pool)
                .await
                .map_err(backend)?
                .rows_affected();
            Ok(deleted > 0)
        })
    }
}

// ---- users ----------------------------------------------------------------------------------

impl UserStore for SqliteStore {
    fn add_user<'a>(&'a self, user: &'a User) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO users (name, password_hash, created_at, disabled_at, configured) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(user.name.as_str())
            .bind(user.password_hash.as_str())
            .bind(secs(user.created_at))
            .bind(user.disabled_at.map(secs))
            .bind(i64::from(user.configured))
            .execute(&self.pool)
            .await
            .map_err(insert_error("user", user.name.as_str()))?;
            Ok(())
        })
    }

    fn get_user<'a>(&'a self, name: &'a UserName) -> StoreFuture<'a, Option<User>> {
        Box::pin(async move {
            sqlx::query("SELECT * FROM users WHERE name = ?")
                .bind(name.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?
                .as_ref()
                .map(user_from_row)
                .transpose()
        })
    }

    fn list_users(&self) -> StoreFuture<'_, Vec<User>> {
        Box::pin(async move {
            sqlx::query("SELECT * FROM users ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?
                .iter()
                .map(user_from_row)
                .collect()
        })
    }

    fn put_user<'a>(&'a self, user: &'a User) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(backend)?;
            let before: Option<(i64, Option<i64>)> =
                sqlx::query_as("SELECT created_at, disabled_at FROM users WHERE name = ?")
                    .bind(user.name.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(backend)?;
            // One already disabled keeps the time it was disabled.
            let disabled_at = match (user.disabled_at, before) {
                (None, _) => None,
                (Some(_), Some((_, Some(was)))) => Some(was),
                (Some(now), _) => Some(secs(now)),
            };
            sqlx::query(
                "INSERT INTO users (name, password_hash, created_at, disabled_at, configured) \
                 VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash, \
                 disabled_at = excluded.disabled_at, configured = excluded.configured",
            )
            .bind(user.name.as_str())
            .bind(user.password_hash.as_str())
            .bind(secs(user.created_at))
            .bind(disabled_at)
            .bind(i64::from(user.configured))
            .execute(&mut *tx)
            .await
            .map_err(insert_error("user", user.name.as_str()))?;
            let newly_disabled = disabled_at.is_some() && before.is_none_or(|(_, d)| d.is_none());
            if newly_disabled {
                revoke_grants_of_subject(
                    &mut tx,
                    user.name.as_str(),
                    None,
                    disabled_at.unwrap_or_default(),
                )
                .await?;
            }
            tx.commit().await.map_err(backend)?;
            Ok(before.is_none())
        })
    }

    fn disable_user<'a>(&'a self, name: &'a UserName, now: SystemTime) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(backend)?;
            let disabled = sqlx::query(
                "UPDATE users SET disabled_at = ? WHERE name = ? AND disabled_at IS NULL",
            )
            .bind(secs(now))
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
            if disabled > 0 {
                revoke_grants_of_subject(&mut tx, name.as_str(), None, secs(now)).await?;
            }
            tx.commit().await.map_err(backend)?;
            Ok(disabled > 0)
        })
    }
}

// ---- signing keys -------------------------------------------------------------------------

impl SigningKeyStore for SqliteStore {
    fn insert_signing_key<'a>(&'a self, key: &'a SigningKeyRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO signing_keys (kid, algorithm, private_key, private_key_encryption, \
                 public_jwk, created_at, state, retired_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(key.kid.as_str())
            .bind(key.algorithm.as_str())
            .bind(key.private_key.bytes().to_vec())
            .bind(key.private_key.encryption())
            .bind(key.public_jwk.to_string())
            .bind(secs(key.created_at))
            .bind(key.state.as_str())
            .bind(key.retired_at.map(secs))
            .execute(&self.pool)
            .await
            .map_err(insert_error("signing key", key.kid.as_str()))?;
            Ok(())
        })
    }

    fn list_signing_keys(&self) -> StoreFuture<'_, Vec<SigningKeyRecord>> {
        Box::pin(async move {
            sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, kid")
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?
                .iter()
                .map(signing_key_from_row)
                .collect()
        })
    }

    fn activate_signing_key<'a>(
        &'a self,
        kid: &'a Kid,
        previous_retires_at: SystemTime,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(backend)?;
            let known = sqlx::query(
                "SELECT 1 FROM signing_keys WHERE kid = ? AND state IN ('active', 'verifying')",
            )
            .bind(kid.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            if known.is_none() {
                return Err(StoreError::NotFound {
                    what: "signing key (active or verifying)",
                    id: kid.to_string(),
                });
            }
            sqlx::query(
                "UPDATE signing_keys SET state = 'verifying', retired_at = ? \
                 WHERE state = 'active' AND kid <> ?",
            )
            .bind(secs(previous_retires_at))
            .bind(kid.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            sqlx::query(
                "UPDATE signing_keys SET state = 'active', retired_at = NULL WHERE kid = ?",
            )
            .bind(kid.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            Ok(())
        })
    }

    fn retire_signing_key<'a>(&'a self, kid: &'a Kid, now: SystemTime) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let retired = sqlx::query(
                "UPDATE signing_keys SET state = 'retired', retired_at = ? \
                 WHERE kid = ? AND state <> 'retired'",
            )
            .bind(secs(now))
            .bind(kid.as_str())
            .execute(&self.pool)
            .await
            .map_err(backend)?
            .rows_affected();
            Ok(retired > 0)
        })
    }
}

// ---- replay ---------------------------------------------------------------------------------

impl ReplayStore for SqliteStore {
    fn remember_jti<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            // One statement: a new pair is inserted, an expired one taken over, a live one left
            // alone (no row changed: a replay).
            let changed = sqlx::query(
                "INSERT INTO seen_jtis (issuer, jti, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (issuer, jti) DO UPDATE SET expires_at = excluded.expires_at \
                 WHERE seen_jtis.expires_at <= ?4",
            )
            .bind(issuer)
            .bind(jti)
            .bind(secs(expires_at))
            .bind(secs(now))
            .execute(&self.pool)
            .await
            .map_err(backend)?
            .rows_affected();
            Ok(changed > 0)
        })
    }

    fn prune_jtis(&self, now: SystemTime) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            Ok(sqlx::query("DELETE FROM seen_jtis WHERE expires_at <= ?")
                .bind(secs(now))
                .execute(&self.pool)
                .await
                .map_err(backend)?
                .rows_affected())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_to_the_second() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_999);
        assert_eq!(
            time(secs(t)),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
    }

    #[test]
    fn rotations_go_on_after_the_runtime_that_wrote_them_is_gone() {
        let first = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store = first.block_on(SqliteStore::open_temporary()).unwrap();
        let now = SystemTime::now();
        let unknown = RefreshRotation {
            presented: TokenHash::of("not issued"),
            replacement: TokenHash::of("replacement"),
            replacement_expires_at: now,
            client_id: ClientId::new("app"),
            now,
            grace: Duration::ZERO,
            scopes: None,
            resource: None,
        };
        // Rotations queued, and their runtime dropped at once, whatever the task writing them
        // was doing.
        for _ in 0..8 {
            let (store, r) = (store.clone(), unknown.clone());
            first.spawn(async move { store.rotate_refresh_token(&r).await });
        }
        first.shutdown_background();
        let second = tokio::runtime::Runtime::new().unwrap();
        // A rotation queued while the old task is still being dropped fails with it (it never
        // hangs); the next one is written by a new task.
        let outcome = second.block_on(async {
            for _ in 0..3 {
                let attempt = tokio::time::timeout(
                    Duration::from_secs(10),
                    store.rotate_refresh_token(&unknown),
                )
                .await
                .expect("the queue is not left waiting for a task that is gone");
                if let Ok(outcome) = attempt {
                    return Some(outcome);
                }
            }
            None
        });
        assert_eq!(outcome, Some(RotationOutcome::Unknown));
    }

    #[test]
    fn times_before_the_epoch_round_towards_the_past() {
        let t = UNIX_EPOCH - Duration::from_millis(1_500);
        assert_eq!(secs(t), -2);
        assert_eq!(time(-2), UNIX_EPOCH - Duration::from_secs(2));
    }

    #[tokio::test]
    async fn the_database_file_is_created_private() {
        let store = SqliteStore::open_temporary().await.unwrap();
        let dir = store._temporary.as_ref().unwrap().0.clone();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let file = std::fs::metadata(dir.join(DATABASE_FILE)).unwrap();
            assert_eq!(file.permissions().mode() & 0o077, 0);
            let d = std::fs::metadata(&dir).unwrap();
            assert_eq!(d.permissions().mode() & 0o077, 0);
        }
        drop(store);
        assert!(!dir.exists(), "a temporary store removes its directory");
    }

    #[tokio::test]
    async fn reopening_keeps_the_data_and_migrates_once() {
        use crate::store::UserStore as _;
        let store = SqliteStore::open_temporary().await.unwrap();
        let dir = store._temporary.as_ref().unwrap().0.clone();
        let user = User {
            name: UserName::new("alice"),
            password_hash: PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")
                .unwrap(),
            created_at: UNIX_EPOCH,
            disabled_at: None,
            configured: false,
        };
        store.add_user(&user).await.unwrap();
        let again = SqliteStore::open(&dir).await.unwrap();
        assert_eq!(again.get_user(&user.name).await.unwrap(), Some(user));
    }

    #[tokio::test]
    async fn journal_mode_is_wal_and_foreign_keys_are_on() {
        let store = SqliteStore::open_temporary().await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(fk, 1);
    }

    #[tokio::test]
    async fn a_directory_that_cannot_be_created_is_reported_with_its_path() {
        let err = SqliteStore::open("/proc/mcpgate-cannot-exist")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(
            err.to_string().contains("/proc/mcpgate-cannot-exist"),
            "{err}"
        );
    }
}
