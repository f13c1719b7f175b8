-- The issuer's store, first version (SQLite).
-- Times are Unix seconds. Hashes are SHA-256 digests (32 bytes) of high-entropy tokens: no
-- code, refresh token, client secret or registration access token is stored in the clear.
-- Scope sets are space-delimited strings (RFC 6749 §3.3).

CREATE TABLE clients (
    client_id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('dynamic', 'static', 'metadata_document')),
    secret_hash BLOB CHECK (secret_hash IS NULL OR length(secret_hash) = 32),
    registration_token_hash BLOB UNIQUE
        CHECK (registration_token_hash IS NULL OR length(registration_token_hash) = 32),
    metadata TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER
) STRICT;

-- Pruning looks clients up by when they were last used.
CREATE INDEX clients_by_last_use ON clients (kind, coalesce(last_used_at, created_at));

-- No foreign key to clients: deleting a client revokes its grants and keeps them, so that
-- every replica learns of the revocation (see revoked_grants_since).
CREATE TABLE grants (
    grant_id TEXT PRIMARY KEY NOT NULL,
    subject TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scopes TEXT NOT NULL,
    resource TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

CREATE INDEX grants_by_subject ON grants (subject, client_id);
CREATE INDEX grants_by_client ON grants (client_id);
CREATE INDEX grants_by_revocation ON grants (revoked_at) WHERE revoked_at IS NOT NULL;

-- No foreign key to grants: the grant may be created when the code is exchanged.
CREATE TABLE authorization_codes (
    code_hash BLOB PRIMARY KEY NOT NULL CHECK (length(code_hash) = 32),
    client_id TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    grant_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    resource TEXT,
    scopes TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    consumed_at INTEGER
) STRICT;

CREATE INDEX authorization_codes_by_client ON authorization_codes (client_id);
CREATE INDEX authorization_codes_by_expiry ON authorization_codes (expires_at);

CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL CHECK (length(token_hash) = 32),
    grant_id TEXT NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
    client_id TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    rotated_at INTEGER,
    revoked_at INTEGER
) STRICT;

CREATE INDEX refresh_tokens_by_grant ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_by_client ON refresh_tokens (client_id);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);

-- One row per (subject, client) that was approved at all, and one per scope approved.
CREATE TABLE consents (
    subject TEXT NOT NULL,
    client_id TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (subject, client_id)
) STRICT;

CREATE INDEX consents_by_client ON consents (client_id);

CREATE TABLE consent_scopes (
    subject TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    PRIMARY KEY (subject, client_id, scope),
    FOREIGN KEY (subject, client_id) REFERENCES consents (subject, client_id) ON DELETE CASCADE
) STRICT;

CREATE TABLE users (
    name TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL CHECK (substr(password_hash, 1, 10) = '$argon2id$'),
    created_at INTEGER NOT NULL,
    disabled_at INTEGER
) STRICT;

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    algorithm TEXT NOT NULL,
    private_key BLOB NOT NULL,
    private_key_encryption TEXT NOT NULL CHECK (private_key_encryption IN ('none', 'aes-256-gcm')),
    public_jwk TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'verifying', 'retired')),
    retired_at INTEGER
) STRICT;

-- Exactly one key signs at a time.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';

CREATE TABLE seen_jtis (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, jti)
) STRICT;

CREATE INDEX seen_jtis_by_expiry ON seen_jtis (expires_at);
