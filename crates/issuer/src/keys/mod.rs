//! The issuer's signing keys: made on first start, kept in the store, rotated with an overlap,
//! published as a JWK Set, and handed to `mcpgate-guard` in process.
//!
//! ```
//! use std::sync::Arc;
//! use mcpgate_guard::{Audience, ClaimRules, JwtVerifier, TokenVerifier};
//! use mcpgate_issuer::keys::{SigningKeys, SigningKeysOptions};
//! use mcpgate_issuer::store::sqlite::SqliteStore;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = Arc::new(SqliteStore::open_temporary().await.unwrap());
//! let keys = SigningKeys::load(store, SigningKeysOptions::default()).await.unwrap();
//!
//! // The gateway verifies the issuer's tokens with the same keys, no HTTP in between.
//! let verifier = JwtVerifier::builder(ClaimRules::for_audience(Audience::new("https://mcp.example.com/mcp")))
//!     .key_ring(keys.key_ring())
//!     .build()
//!     .unwrap();
//! let token = keys
//!     .sign(&serde_json::json!({ "sub": "alice", "aud": "https://mcp.example.com/mcp", "exp": 4_000_000_000u64 }))
//!     .unwrap();
//! assert_eq!(verifier.verify(&token).await.unwrap().subject.as_str(), "alice");
//! assert_eq!(keys.jwks()["keys"][0]["kid"], keys.active_kid().as_str());
//! # });
//! ```
//!
//! # At rest
//! Given a 32-byte key ([`SigningKeysOptions::encryption_key`]), private keys are stored
//! sealed with AES-256-GCM. **Without one they are stored in the clear**, protected only by
//! the permissions of the data directory (the SQLite store creates it 0700, its file 0600);
//! a warning is logged when a plain key is loaded.
//!
//! # Rotation
//! [`SigningKeys::rotate`] makes a new key active at once; the previous active key stays
//! published and verifying for [`SigningKeysOptions::overlap`] — set it to the longest access
//! token lifetime plus clock leeway, so that no token outlives its key — and is retired by the
//! first [`SigningKeys::reload`] after that. Run `reload` periodically (every minute, say): it
//! also picks up rotations made by other replicas sharing the store.

mod material;
mod sealing;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{EncodingKey, Header};
use mcpgate_guard::{KeyRing, VerificationKey};
use serde_json::Value;

use crate::store::{
    KeyState, Kid, SigningAlgorithm, SigningKeyRecord, SigningKeyStore, StoreError,
    StoredPrivateKey,
};
use material::PublicJwk;
use sealing::Sealer;

/// Default [`SigningKeysOptions::overlap`]: one hour.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(3600);

/// How [`SigningKeys`] makes and keeps keys.
#[derive(Clone)]
pub struct SigningKeysOptions {
    /// The algorithm of keys made from now on (existing keys keep theirs). Default ES256.
    pub algorithm: SigningAlgorithm,
    /// Seals private keys at rest with AES-256-GCM when given. Read it from the environment
    /// or a secret store; never from the data directory the keys live in.
    pub encryption_key: Option<[u8; 32]>,
    /// How long a key replaced by a rotation keeps verifying: the longest access-token
    /// lifetime plus clock leeway.
    pub overlap: Duration,
}

impl Default for SigningKeysOptions {
    fn default() -> Self {
        SigningKeysOptions {
            algorithm: SigningAlgorithm::Es256,
            encryption_key: None,
            overlap: DEFAULT_OVERLAP,
        }
    }
}

impl std::fmt::Debug for SigningKeysOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeysOptions")
            .field("algorithm", &self.algorithm)
            .field(
                "encryption_key",
                &self.encryption_key.as_ref().map(|_| "(set)"),
            )
            .field("overlap", &self.overlap)
            .finish()
    }
}

/// Why signing keys could not be loaded, changed or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningKeyError {
    /// The store failed.
    #[error("signing key store: {0}")]
    Store(#[from] StoreError),
    /// The cryptographic library failed to make or seal a key.
    #[error("cannot make a signing key: {0}")]
    Crypto(&'static str),
    /// A stored key is encrypted and no encryption key was given.
    #[error(
        "signing key `{kid}` is stored encrypted, but no encryption key was given: start with the encryption key it was stored with"
    )]
    EncryptionKeyMissing {
        /// The key.
        kid: Kid,
    },
    /// A stored key does not open under the encryption key given.
    #[error(
        "signing key `{kid}` cannot be decrypted: the encryption key given is not the one it was stored with, or the stored key was altered"
    )]
    WrongEncryptionKey {
        /// The key.
        kid: Kid,
    },
    /// A stored key cannot be used.
    #[error("stored signing key `{kid}` cannot be used: {reason}")]
    Unusable {
        /// The key.
        kid: Kid,
        /// Why.
        reason: String,
    },
    /// Retiring the key that signs.
    #[error("signing key `{kid}` is the active key: rotate first, then retire it")]
    RetiringActiveKey {
        /// The key.
        kid: Kid,
    },
    /// Retiring a key that is not there or retired already.
    #[error("no published signing key `{kid}`")]
    UnknownKey {
        /// The key.
        kid: Kid,
    },
    /// jsonwebtoken could not sign the claims.
    #[error("cannot sign: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// The active key, ready to sign.
struct Active {
    kid: Kid,
    algorithm: SigningAlgorithm,
    key: EncodingKey,
    /// Whether it is stored unencrypted.
    plain: bool,
}

/// What is in service: one key that signs, every key that verifies.
struct Loaded {
    active: Active,
    /// The JWK Set, as published.
    jwks: Value,
}

/// The issuer's signing keys. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct SigningKeys {
    store: Arc<dyn SigningKeyStore>,
    options: SigningKeysOptions,
    sealer: Option<Sealer>,
    loaded: ArcSwap<Loaded>,
    ring: Arc<KeyRing>,
    /// One change (load, rotation, retirement) at a time in this process.
    changes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("active", &self.loaded.load().active.kid)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// Loads the keys from `store`, making (and storing) a key when none is active, and
    /// retiring keys past their overlap.
    pub async fn load(
        store: Arc<dyn SigningKeyStore>,
        options: SigningKeysOptions,
    ) -> Result<Self, SigningKeyError> {
        let sealer = options
            .encryption_key
            .as_ref()
            .map(Sealer::new)
            .transpose()
            .map_err(SigningKeyError::Crypto)?;
        let (loaded, verification) = load_from(
            &*store,
            sealer.as_ref(),
            options.algorithm,
            SystemTime::now(),
        )
        .await?;
        if loaded.active.plain {
            tracing::warn!(
                kid = %loaded.active.kid,
                encryption_key_given = sealer.is_some(),
                "the active signing key is stored unencrypted; give an encryption key and rotate to seal new keys"
            );
        }
        Ok(SigningKeys {
            store,
            options,
            sealer,
            loaded: ArcSwap::from_pointee(loaded),
            ring: Arc::new(KeyRing::new(verification)),
            changes: tokio::sync::Mutex::new(()),
        })
    }

    /// Reads the keys again: picks up rotations by other replicas and retires keys past their
    /// overlap. The [`key_ring`](Self::key_ring) follows.
    pub async fn reload(&self) -> Result<(), SigningKeyError> {
        let _one_at_a_time = self.changes.lock().await;
        self.reload_locked().await
    }

    async fn reload_locked(&self) -> Result<(), SigningKeyError> {
        let (loaded, verification) = load_from(
            &*self.store,
            self.sealer.as_ref(),
            self.options.algorithm,
            SystemTime::now(),
        )
        .await?;
        self.loaded.store(Arc::new(loaded));
        self.ring.replace(verification);
        Ok(())
    }

    /// Makes a new key (of [`SigningKeysOptions::algorithm`]) the active one. The previous
    /// key keeps verifying for [`SigningKeysOptions::overlap`]. Returns the new `kid`.
    pub async fn rotate(&self) -> Result<Kid, SigningKeyError> {
        let _one_at_a_time = self.changes.lock().await;
        let now = SystemTime::now();
        // Published first, then made active: the order a JWKS consumer elsewhere needs.
        let record = new_key(
            self.sealer.as_ref(),
            self.options.algorithm,
            KeyState::Verifying,
            now,
        )?;
        self.store.insert_signing_key(&record).await?;
        if let Err(e) = self
            .store
            .activate_signing_key(&record.kid, now + self.options.overlap)
            .await
        {
            // Do not leave a key published that never signed.
            let _ = self.store.retire_signing_key(&record.kid, now).await;
            return Err(e.into());
        }
        self.reload_locked().await?;
        Ok(record.kid)
    }

    /// Retires a key now, before its overlap ends: tokens it signed stop verifying. The active
    /// key cannot be retired; rotate first.
    pub async fn retire(&self, kid: &Kid) -> Result<(), SigningKeyError> {
        let _one_at_a_time = self.changes.lock().await;
        if self.loaded.load().active.kid == *kid {
            return Err(SigningKeyError::RetiringActiveKey { kid: kid.clone() });
        }
        if !self
            .store
            .retire_signing_key(kid, SystemTime::now())
            .await?
        {
            return Err(SigningKeyError::UnknownKey { kid: kid.clone() });
        }
        self.reload_locked().await
    }

    /// The `kid` of the key that signs.
    pub fn active_kid(&self) -> Kid {
        self.loaded.load().active.kid.clone()
    }

    /// The public JWK Set (`{"keys": [...]}`) of every key that verifies: `kty`, `crv`, `x`,
    /// `y`, `kid`, `alg` and `use: sig`, never a private member.
    pub fn jwks(&self) -> Value {
        self.loaded.load().jwks.clone()
    }

    /// Signs `claims` with the active key, `kid` in the header, `typ: JWT`.
    pub fn sign(&self, claims: &Value) -> Result<String, SigningKeyError> {
        self.sign_typed(claims, "JWT")
    }

    /// Signs `claims` with the active key and the header `typ` given (`at+jwt` for access
    /// tokens, RFC 9068 §2.1).
    pub fn sign_typed(&self, claims: &Value, typ: &str) -> Result<String, SigningKeyError> {
        let loaded = self.loaded.load();
        let active = &loaded.active;
        let mut header = Header::new(active.algorithm.jwt_algorithm());
        header.kid = Some(active.kid.to_string());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &active.key).map_err(SigningKeyError::Sign)
    }

    /// The verification keys, for `mcpgate_guard::JwtVerifierBuilder::key_ring`: kept in step
    /// with every rotation, retirement and reload.
    pub fn key_ring(&self) -> Arc<KeyRing> {
        Arc::clone(&self.ring)
    }
}

/// A new key pair as a record to store.
fn new_key(
    sealer: Option<&Sealer>,
    algorithm: SigningAlgorithm,
    state: KeyState,
    now: SystemTime,
) -> Result<SigningKeyRecord, SigningKeyError> {
    let generated = material::generate(algorithm).map_err(SigningKeyError::Crypto)?;
    let kid = generated.public.thumbprint();
    let private_key = match sealer {
        Some(sealer) => StoredPrivateKey::Aes256Gcm(
            sealer
                .seal(&kid, &generated.pkcs8)
                .map_err(SigningKeyError::Crypto)?,
        ),
        None => StoredPrivateKey::Plain(generated.pkcs8),
    };
    Ok(SigningKeyRecord {
        public_jwk: generated.public.to_json(&kid, algorithm),
        kid,
        algorithm,
        private_key,
        created_at: now,
        state,
        retired_at: None,
    })
}

/// Reads the store into what is in service, making a first key if there is none.
async fn load_from(
    store: &dyn SigningKeyStore,
    sealer: Option<&Sealer>,
    algorithm: SigningAlgorithm,
    now: SystemTime,
) -> Result<(Loaded, Vec<VerificationKey>), SigningKeyError> {
    let mut records = store.list_signing_keys().await?;
    if !records.iter().any(|r| r.state == KeyState::Active) {
        let first = new_key(sealer, algorithm, KeyState::Active, now)?;
        match store.insert_signing_key(&first).await {
            Ok(()) => {
                tracing::info!(kid = %first.kid, alg = algorithm.as_str(), "made a new signing key")
            }
            // Another replica made one at the same moment: use theirs.
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        records = store.list_signing_keys().await?;
    }
    for record in &mut records {
        let overlap_over = record.retired_at.is_some_and(|at| at <= now);
        if record.state == KeyState::Verifying && overlap_over {
            store.retire_signing_key(&record.kid, now).await?;
            record.state = KeyState::Retired;
        }
    }
    let active = records
        .iter()
        .find(|r| r.state == KeyState::Active)
        .ok_or_else(|| StoreError::Corrupt {
            what: "signing keys",
            reason: "no active key after making one".into(),
        })?;
    let active = open_active(active, sealer)?;

    let mut published = Vec::new();
    let mut verification = Vec::new();
    for record in records.iter().filter(|r| r.state != KeyState::Retired) {
        let unusable = |reason: String| SigningKeyError::Unusable {
            kid: record.kid.clone(),
            reason,
        };
        let public = PublicJwk::from_json(&record.public_jwk)
            .filter(|p| p.fits(record.algorithm))
            .ok_or_else(|| unusable("stored public JWK is not a key of its algorithm".into()))?;
        let jwk_json = public.to_json(&record.kid, record.algorithm);
        let jwk: Jwk = serde_json::from_value(jwk_json.clone())
            .map_err(|e| unusable(format!("public JWK: {e}")))?;
        let key = VerificationKey::from_jwk(&jwk, &[record.algorithm.jwt_algorithm()])
            .map_err(|e| unusable(e.to_string()))?;
        published.push(jwk_json);
        verification.push(key);
    }
    let loaded = Loaded {
        active,
        jwks: serde_json::json!({ "keys": published }),
    };
    Ok((loaded, verification))
}

/// Opens the active key's private half and checks it against its published public half.
fn open_active(
    record: &SigningKeyRecord,
    sealer: Option<&Sealer>,
) -> Result<Active, SigningKeyError> {
    let kid = &record.kid;
    let pkcs8 = match (&record.private_key, sealer) {
        (StoredPrivateKey::Plain(bytes), _) => bytes.clone(),
        (StoredPrivateKey::Aes256Gcm(sealed), Some(sealer)) => sealer
            .open(kid, sealed)
            .ok_or_else(|| SigningKeyError::WrongEncryptionKey { kid: kid.clone() })?,
        (StoredPrivateKey::Aes256Gcm(_), None) => {
            return Err(SigningKeyError::EncryptionKeyMissing { kid: kid.clone() });
        }
    };
    let unusable = |reason: &str| SigningKeyError::Unusable {
        kid: kid.clone(),
        reason: reason.to_owned(),
    };
    let derived = material::public_of(record.algorithm, &pkcs8).map_err(unusable)?;
    if PublicJwk::from_json(&record.public_jwk).as_ref() != Some(&derived) {
        return Err(unusable(
            "the private key does not match the stored public key",
        ));
    }
    Ok(Active {
        kid: kid.clone(),
        algorithm: record.algorithm,
        key: material::encoding_key(record.algorithm, &pkcs8),
        plain: matches!(record.private_key, StoredPrivateKey::Plain(_)),
    })
}

#[cfg(test)]
mod tests;
