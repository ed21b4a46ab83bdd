-- TLS certificates exed obtains itself (--acme): the ACME client's blobs,
-- shared by every instance, and its named locks.

-- Keys are slash-separated paths; listing a prefix compares keys as bytes
-- (SQLite's default BINARY collation). Private keys arrive sealed when the
-- server has a secret.
CREATE TABLE cert_blobs (
	key         TEXT PRIMARY KEY,
	value       BLOB NOT NULL,
	modified_at INTEGER NOT NULL
);

-- One row per lock held. A lease that ended (expires_ms at or before now)
-- may be taken over: its holder is taken to be dead. Milliseconds, not
-- seconds: a lease is renewed every few seconds while its holder works.
CREATE TABLE cert_locks (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_ms INTEGER NOT NULL
);
