-- Signing keys of the signed identity assertions. The private key is
-- only ever stored sealed under the server secret, which is not in the
-- database. One key per generation: of two instances rotating at once,
-- exactly one insert succeeds.
CREATE TABLE assertion_keys (
	kid        TEXT PRIMARY KEY, -- RFC 7638 thumbprint of the public JWK
	generation INTEGER NOT NULL,
	public_key BLOB NOT NULL,    -- uncompressed P-256 point
	sealed     BLOB NOT NULL,    -- AES-256-GCM under the server secret, kid as associated data
	created_at INTEGER NOT NULL, -- published from
	sign_from  INTEGER NOT NULL, -- may sign from
	CONSTRAINT assertion_keys_generation UNIQUE (generation)
);
