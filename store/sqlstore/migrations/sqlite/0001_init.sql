-- exed registry, SQLite dialect. Times are integer unix seconds (UTC);
-- NULL means "none" (never used, no expiry, no restriction).

CREATE TABLE users (
	id         TEXT PRIMARY KEY,
	email      TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
-- Emails are unique whatever their case.
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));

CREATE TABLE keys (
	fingerprint  TEXT PRIMARY KEY, -- one owner per key, across all users
	user_id      TEXT NOT NULL REFERENCES users (id),
	name         TEXT NOT NULL,
	public_key   TEXT NOT NULL,
	added_at     INTEGER NOT NULL,
	last_used_at INTEGER,
	generated    INTEGER NOT NULL CHECK (generated IN (0, 1)),
	vm           TEXT,    -- restriction
	cmds         TEXT,    -- restriction: JSON array of strings
	expires_at   INTEGER, -- restriction
	CONSTRAINT keys_user_name UNIQUE (user_id, name)
);

CREATE TABLE exe1 (
	id          BLOB PRIMARY KEY, -- a hash of the handle, never the handle
	fingerprint TEXT NOT NULL REFERENCES keys (fingerprint) ON DELETE CASCADE,
	sealed      BLOB NOT NULL,
	created_at  INTEGER NOT NULL
);
CREATE INDEX exe1_fingerprint ON exe1 (fingerprint);

CREATE TABLE vms (
	name       TEXT PRIMARY KEY,
	owner_id   TEXT NOT NULL REFERENCES users (id),
	upstream   TEXT NOT NULL,
	public     INTEGER NOT NULL CHECK (public IN (0, 1)),
	created_at INTEGER NOT NULL
);
CREATE INDEX vms_owner ON vms (owner_id);

-- The audit log. AUTOINCREMENT: ids only grow, so readers can follow the
-- log by id.
CREATE TABLE events (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	at          INTEGER NOT NULL,
	actor_id    TEXT NOT NULL,
	action      TEXT NOT NULL,
	subject     TEXT NOT NULL,
	remote_addr TEXT NOT NULL
);
-- Append-only: the database itself refuses to rewrite history.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
	SELECT RAISE(ABORT, 'events are append-only');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
	SELECT RAISE(ABORT, 'events are append-only');
END;
