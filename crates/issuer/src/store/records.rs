//! What the store keeps: one type per stored thing, and the typed outcomes of the atomic
//! steps ([`CodeConsumption`], [`RotationOutcome`]).
//!
//! Times are [`SystemTime`]s; backends keep them to the second, so a value read back is the
//! one written rounded down to a whole second.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub use mcpgate_guard::{ClientId, ResourceUrl, Scope, Scopes, Subject};

use crate::secret::{TokenHash, random_bytes};

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// Names a grant: what a user gave a client. Access tokens carry it (see
    /// [`GRANT_ID_CLAIM`](crate::store::GRANT_ID_CLAIM)) so that revoking the grant revokes them.
    GrantId
);
string_newtype!(
    /// A signing key's `kid`.
    Kid
);
string_newtype!(
    /// A local user's login name.
    UserName
);

impl GrantId {
    /// A new random grant id (128 bits, base64url).
    pub fn generate() -> Self {
        GrantId(URL_SAFE_NO_PAD.encode(random_bytes::<16>()))
    }
}

/// How a client came to be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKind {
    /// Registered through dynamic client registration (RFC 7591).
    Dynamic,
    /// Configured by the operator.
    Static,
    /// A Client ID Metadata Document: the `client_id` is a URL, fetched and cached here.
    MetadataDocument,
}

impl ClientKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Dynamic => "dynamic",
            ClientKind::Static => "static",
            ClientKind::MetadataDocument => "metadata_document",
        }
    }

    /// Reads a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "dynamic" => Some(ClientKind::Dynamic),
            "static" => Some(ClientKind::Static),
            "metadata_document" => Some(ClientKind::MetadataDocument),
            _ => None,
        }
    }
}

/// A registered client.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRecord {
    /// Its `client_id`.
    pub client_id: ClientId,
    /// SHA-256 of its secret; `None` for a public client.
    pub secret_hash: Option<TokenHash>,
    /// SHA-256 of its registration access token (RFC 7592), when it has one.
    pub registration_token_hash: Option<TokenHash>,
    /// How it came to be known.
    pub kind: ClientKind,
    /// Its client metadata (RFC 7591 §2), as registered.
    pub metadata: serde_json::Value,
    /// When it was registered.
    pub created_at: SystemTime,
    /// When it last obtained a token, if ever.
    pub last_used_at: Option<SystemTime>,
}

/// A pending authorization code, as issued at `/authorize`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizationCode {
    /// SHA-256 of the code.
    pub code_hash: TokenHash,
    /// The client it was issued to.
    pub client_id: ClientId,
    /// The `redirect_uri` of the authorization request, which the token request must repeat.
    pub redirect_uri: String,
    /// The PKCE `code_challenge` (S256, the only method accepted).
    pub code_challenge: String,
    /// The resource (RFC 8707) the tokens will be bound to.
    pub resource: Option<ResourceUrl>,
    /// The scopes granted.
    pub scopes: Scopes,
    /// Who signed in.
    pub subject: Subject,
    /// The grant the code belongs to: revoked when the code is replayed. The grant may be
    /// created before the code or when the code is exchanged.
    pub grant_id: GrantId,
    /// When the code stops being accepted.
    pub expires_at: SystemTime,
}

/// What [`consume_code`](crate::store::CodeStore::consume_code) found.
#[derive(Debug, Clone, PartialEq)]
pub enum CodeConsumption {
    /// The code was valid and is now spent; nobody else will get it.
    Consumed(Box<AuthorizationCode>),
    /// The code had been spent already: someone replays it. RFC 6749 §4.1.2 says to revoke the
    /// tokens issued from it — revoke this grant.
    AlreadyUsed(GrantId),
    /// The code expired before it was used.
    Expired,
    /// No such code.
    Unknown,
}

/// What a user gave a client: the root every refresh and access token of one sign-in hangs
/// from.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// Its id.
    pub id: GrantId,
    /// Who gave it.
    pub subject: Subject,
    /// To which client.
    pub client_id: ClientId,
    /// The scopes granted.
    pub scopes: Scopes,
    /// The resource (RFC 8707) tokens are bound to.
    pub resource: Option<ResourceUrl>,
    /// When it was given.
    pub created_at: SystemTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<SystemTime>,
}

/// Which grants [`list_grants`](crate::store::GrantStore::list_grants) returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrantFilter {
    /// Only this subject's.
    pub subject: Option<Subject>,
    /// Only this client's.
    pub client_id: Option<ClientId>,
    /// Revoked grants too.
    pub include_revoked: bool,
}

/// A revoked grant and when it was revoked, as replicas learn of revocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedGrant {
    /// The grant.
    pub id: GrantId,
    /// When it was revoked.
    pub revoked_at: SystemTime,
}

/// A refresh token to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// SHA-256 of the token.
    pub token_hash: TokenHash,
    /// The grant it refreshes.
    pub grant_id: GrantId,
    /// The client it was issued to; only that client may use it.
    pub client_id: ClientId,
    /// When it was issued.
    pub issued_at: SystemTime,
    /// When it stops being accepted.
    pub expires_at: SystemTime,
}

/// A stored refresh token and what has happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// The token as issued.
    pub token: RefreshToken,
    /// When it was exchanged for a new one, if it was.
    pub rotated_at: Option<SystemTime>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<SystemTime>,
}

/// A refresh-token exchange: `presented` is to be replaced by `replacement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRotation {
    /// SHA-256 of the token the client presented.
    pub presented: TokenHash,
    /// SHA-256 of the token that replaces it.
    pub replacement: TokenHash,
    /// When the replacement stops being accepted.
    pub replacement_expires_at: SystemTime,
    /// The authenticated client presenting it.
    pub client_id: ClientId,
    /// The time of the request.
    pub now: SystemTime,
    /// How long after a rotation the same client may present the old token again and be
    /// answered (a response lost on the network, two tabs refreshing at once). Zero turns it
    /// off: any second use is reuse.
    pub grace: Duration,
    /// The scopes the request asks for, when it names any: a request for one the grant does
    /// not hold is refused before anything changes.
    pub scopes: Option<Scopes>,
    /// The resource the request names (already found to be one of the issuer's): refused
    /// before anything changes when the grant is bound to another.
    pub resource: Option<ResourceUrl>,
}

/// What [`rotate_refresh_token`](crate::store::RefreshTokenStore::rotate_refresh_token)
/// did.
#[derive(Debug, Clone, PartialEq)]
pub enum RotationOutcome {
    /// The presented token was current; it is now rotated and the replacement is stored.
    Rotated(Grant),
    /// The presented token was rotated less than `grace` ago, by this client. Nothing is
    /// stored: the caller answers with the replacement that rotation issued, if it has it,
    /// and refuses otherwise — never a second current token for one grant.
    WithinGrace(Grant),
    /// The presented token had been rotated before, outside the grace window: a stolen token
    /// is in play. The whole grant and all its refresh tokens are now revoked.
    Reused(GrantId),
    /// The presented token expired.
    Expired,
    /// The presented token, or its grant, was revoked.
    Revoked,
    /// The presented token belongs to another client. Nothing changed.
    WrongClient,
    /// No such token.
    Unknown,
    /// The request asks for this scope, which the grant does not hold. Nothing changed.
    ScopeNotGranted(String),
    /// The request names a resource other than the grant's. Nothing changed.
    OtherResource,
}

/// An argon2id hash in PHC string form (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), produced by
/// whoever takes the password. The store refuses anything else, so that a plain password
/// can never be stored by mistake.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Accepts a PHC string of the argon2id algorithm.
    pub fn new(phc: impl Into<String>) -> Result<Self, NotArgon2id> {
        let phc = phc.into();
        if phc.starts_with("$argon2id$") && phc.len() > "$argon2id$".len() {
            Ok(PasswordHash(phc))
        } else {
            Err(NotArgon2id)
        }
    }

    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(…)")
    }
}

/// A string that is not an argon2id PHC string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an argon2id PHC string (`$argon2id$…`)")]
pub struct NotArgon2id;

/// A local user.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// The login name.
    pub name: UserName,
    /// The argon2id hash of the password.
    pub password_hash: PasswordHash,
    /// When the user was added.
    pub created_at: SystemTime,
    /// When the user was disabled, if they were; a disabled user cannot sign in.
    pub disabled_at: Option<SystemTime>,
    /// Declared in the configuration (kept in the store at every start), not added by
    /// `mcpgate users add`.
    pub configured: bool,
}

/// The algorithms the issuer signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SigningAlgorithm {
    /// ECDSA on P-256 with SHA-256, the default: supported by every JOSE library.
    #[default]
    Es256,
    /// Ed25519.
    EdDsa,
}

impl SigningAlgorithm {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// Reads a JOSE `alg` name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "ES256" => Some(SigningAlgorithm::Es256),
            "EdDSA" => Some(SigningAlgorithm::EdDsa),
            _ => None,
        }
    }

    /// The same algorithm as jsonwebtoken names it.
    pub fn jwt_algorithm(self) -> jsonwebtoken::Algorithm {
        match self {
            SigningAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            SigningAlgorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

/// Where a signing key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Signs new tokens (exactly one key at a time), and verifies.
    Active,
    /// Published and verifying, not signing: a key about to become active, or a former
    /// active key until `retired_at`, so that tokens it signed stay valid until they expire.
    Verifying,
    /// Neither signs nor verifies, nor is published.
    Retired,
}

impl KeyState {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Verifying => "verifying",
            KeyState::Retired => "retired",
        }
    }

    /// Reads a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(KeyState::Active),
            "verifying" => Some(KeyState::Verifying),
            "retired" => Some(KeyState::Retired),
            _ => None,
        }
    }
}

/// A private key as stored: PKCS#8 DER, plain or sealed with AES-256-GCM.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredPrivateKey {
    /// PKCS#8 DER, unencrypted.
    Plain(Vec<u8>),
    /// `nonce (12 bytes) || ciphertext || tag` of the PKCS#8 DER under AES-256-GCM, with the
    /// `kid` as associated data.
    Aes256Gcm(Vec<u8>),
}

impl StoredPrivateKey {
    /// The name of the encryption, as stored.
    pub fn encryption(&self) -> &'static str {
        match self {
            StoredPrivateKey::Plain(_) => "none",
            StoredPrivateKey::Aes256Gcm(_) => "aes-256-gcm",
        }
    }

    /// The stored bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            StoredPrivateKey::Plain(b) | StoredPrivateKey::Aes256Gcm(b) => b,
        }
    }

    /// Rebuilds a stored key from its encryption name and bytes.
    pub fn from_stored(encryption: &str, bytes: Vec<u8>) -> Option<Self> {
        match encryption {
            "none" => Some(StoredPrivateKey::Plain(bytes)),
            "aes-256-gcm" => Some(StoredPrivateKey::Aes256Gcm(bytes)),
            _ => None,
        }
    }
}

impl fmt::Debug for StoredPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoredPrivateKey({}, …)", self.encryption())
    }
}

/// A signing key as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningKeyRecord {
    /// Its `kid` (the RFC 7638 thumbprint of the public key).
    pub kid: Kid,
    /// What it signs with.
    pub algorithm: SigningAlgorithm,
    /// The private key.
    pub private_key: StoredPrivateKey,
    /// The public key as a JWK (no private members).
    pub public_jwk: serde_json::Value,
    /// When it was made.
    pub created_at: SystemTime,
    /// Where it is in its life.
    pub state: KeyState,
    /// When it stops (or stopped) verifying; `None` while it has no end.
    pub retired_at: Option<SystemTime>,
}
