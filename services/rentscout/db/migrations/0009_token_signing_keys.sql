-- Resume-token signing keys, so that resume works with zero configuration across restarts and replicas:
-- without RENTSCOUT_EXPORT_TOKEN_SECRET every export replica signs and verifies with these (the newest
-- signs; the one before still verifies after `rentscout db rotate-token-key`). Only the role that owns the
-- table (the one that migrates, which the services use) may read it: no grant to PUBLIC, and the analyzer's
-- rentscout_explain role, which runs callers' statements, gets nothing here.
CREATE TABLE IF NOT EXISTS token_signing_keys (
    key_id     integer     GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key        bytea       NOT NULL CHECK (length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
REVOKE ALL ON TABLE token_signing_keys FROM PUBLIC;

-- The first key: 32 bytes from PostgreSQL's strong random source (gen_random_uuid, 122 random bits per
-- UUID; eight UUIDs hashed to 256 bits).
INSERT INTO token_signing_keys (key)
SELECT sha256(convert_to(string_agg(gen_random_uuid()::text, ''), 'UTF8'))
FROM generate_series(1, 8)
WHERE NOT EXISTS (SELECT FROM token_signing_keys);
