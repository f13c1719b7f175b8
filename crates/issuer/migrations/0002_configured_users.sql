-- Users the operator declares in the configuration ([[issuer.users]]) are kept in the store
-- at every start; this marks them, so that one removed from the configuration is disabled.
ALTER TABLE users ADD COLUMN configured INTEGER NOT NULL DEFAULT 0 CHECK (configured IN (0, 1));
