-- exed registry, PostgreSQL dialect. Times are integer unix seconds (UTC);
-- NULL means "none" (never used, no expiry, no restriction).

CREATE TABLE users (
	id         TEXT PRIMARY KEY,
	email      TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
-- Emails are unique whatever their case.
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));

CREATE TABLE keys (
	fingerprint  TEXT PRIMARY KEY, -- one owner per key, across all users
	user_id      TEXT NOT NULL REFERENCES users (id),
	name         TEXT NOT NULL,
	public_key   TEXT NOT NULL,
	added_at     BIGINT NOT NULL,
	last_used_at BIGINT,
	generated    BOOLEAN NOT NULL,
	vm           TEXT,   -- restriction
	cmds         TEXT,   -- restriction: JSON array of strings
	expires_at   BIGINT, -- restriction
	CONSTRAINT keys_user_name UNIQUE (user_id, name)
);

CREATE TABLE exe1 (
	id          BYTEA PRIMARY KEY, -- a hash of the handle, never the handle
	fingerprint TEXT NOT NULL REFERENCES keys (fingerprint) ON DELETE CASCADE,
	sealed      BYTEA NOT NULL,
	created_at  BIGINT NOT NULL
);
CREATE INDEX exe1_fingerprint ON exe1 (fingerprint);

CREATE TABLE vms (
	name       TEXT PRIMARY KEY,
	owner_id   TEXT NOT NULL REFERENCES users (id),
	upstream   TEXT NOT NULL,
	public     BOOLEAN NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE INDEX vms_owner ON vms (owner_id);

-- The audit log. Ids are handed out in commit order (the store takes an
-- advisory lock before each append), so readers can follow the log by id.
CREATE TABLE events (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at          BIGINT NOT NULL,
	actor_id    TEXT NOT NULL,
	action      TEXT NOT NULL,
	subject     TEXT NOT NULL,
	remote_addr TEXT NOT NULL
);
-- Append-only: the database itself refuses to rewrite history.
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'events are append-only';
END
$$;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE OR TRUNCATE ON events
	FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
