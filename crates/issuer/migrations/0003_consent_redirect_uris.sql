-- Remembered consent is bound to the redirect URIs the person saw when approving (one per
-- line): a request for another redirect URI of the same client is asked again. Consent
-- remembered before this column existed covers no redirect URI, so it is asked again once.
ALTER TABLE consents ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '';
