-- Keys that were removed: a removed generated (token) key can never be
-- registered again, so its revoked tokens stay revoked; a removed login key
-- comes back only when its user asks for it explicitly (ssh-key add
-- --revive), since the tokens it signed before would work again.
CREATE TABLE revoked_keys (
	fingerprint TEXT PRIMARY KEY,
	user_id     TEXT NOT NULL, -- whose key it was
	generated   INTEGER NOT NULL CHECK (generated IN (0, 1)),
	removed_at  INTEGER NOT NULL
);
