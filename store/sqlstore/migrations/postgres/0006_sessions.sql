-- PostgreSQL dialect. Browser sessions and the one-time secrets that
-- start them (login links from `browser`, magic secrets the main host hands
-- a VM host). Only SHA-256 hashes of tokens, secrets and cookie values are
-- stored. Every row goes with the key that minted its login link, and with
-- its VM.

CREATE TABLE login_links (
	hash               BYTEA PRIMARY KEY,
	user_id            TEXT NOT NULL REFERENCES users (id),
	fingerprint        TEXT NOT NULL REFERENCES keys (fingerprint) ON DELETE CASCADE,
	only_vm            TEXT REFERENCES vms (name) ON DELETE CASCADE,
	target_vm          TEXT REFERENCES vms (name) ON DELETE CASCADE,
	path               TEXT NOT NULL,
	created_at         BIGINT NOT NULL,
	expires_at         BIGINT NOT NULL,
	session_expires_at BIGINT NOT NULL
);
CREATE INDEX login_links_fingerprint ON login_links (fingerprint);
CREATE INDEX login_links_expires ON login_links (expires_at);

CREATE TABLE magic_secrets (
	hash               BYTEA PRIMARY KEY,
	user_id            TEXT NOT NULL REFERENCES users (id),
	host               TEXT NOT NULL,
	vm                 TEXT NOT NULL REFERENCES vms (name) ON DELETE CASCADE,
	fingerprint        TEXT NOT NULL REFERENCES keys (fingerprint) ON DELETE CASCADE,
	only_vm            TEXT REFERENCES vms (name) ON DELETE CASCADE,
	created_at         BIGINT NOT NULL,
	expires_at         BIGINT NOT NULL,
	session_expires_at BIGINT NOT NULL
);
CREATE INDEX magic_secrets_fingerprint ON magic_secrets (fingerprint);
CREATE INDEX magic_secrets_expires ON magic_secrets (expires_at);

CREATE TABLE sessions (
	id           TEXT PRIMARY KEY, -- public: "ses…"
	hash         BYTEA NOT NULL UNIQUE, -- SHA-256 of the cookie value
	user_id      TEXT NOT NULL REFERENCES users (id),
	host         TEXT NOT NULL,
	cookie_name  TEXT NOT NULL,
	vm           TEXT REFERENCES vms (name) ON DELETE CASCADE, -- NULL on the main host
	fingerprint  TEXT NOT NULL REFERENCES keys (fingerprint) ON DELETE CASCADE,
	only_vm      TEXT REFERENCES vms (name) ON DELETE CASCADE,
	created_at   BIGINT NOT NULL,
	expires_at   BIGINT NOT NULL,
	last_used_at BIGINT,
	user_agent   TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_fingerprint ON sessions (fingerprint);
CREATE INDEX sessions_vm ON sessions (vm);
CREATE INDEX sessions_only_vm ON sessions (only_vm);
CREATE INDEX sessions_expires ON sessions (expires_at);
