-- Sharing a VM, and an audit log people can read.

-- Active shares: an account, besides the owner, that may reach the VM.
CREATE TABLE shares (
	vm         TEXT NOT NULL REFERENCES vms (name) ON DELETE CASCADE,
	user_id    TEXT NOT NULL REFERENCES users (id),
	invited_at INTEGER NOT NULL,
	CONSTRAINT shares_pkey PRIMARY KEY (vm, user_id)
);
CREATE INDEX shares_user ON shares (user_id);

-- Pending shares: an email with no account yet. exed user add turns them
-- into shares in the transaction that creates the account.
CREATE TABLE pending_shares (
	vm         TEXT NOT NULL REFERENCES vms (name) ON DELETE CASCADE,
	email      TEXT NOT NULL,
	invited_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX pending_shares_vm_email ON pending_shares (vm, lower(email));
CREATE INDEX pending_shares_email ON pending_shares (lower(email));

-- Share links. Only a hash of the link's token is kept; name is a short
-- prefix of it, enough to tell a VM's links apart.
CREATE TABLE share_links (
	id           BLOB PRIMARY KEY,
	name         TEXT NOT NULL,
	vm           TEXT NOT NULL REFERENCES vms (name) ON DELETE CASCADE,
	created_at   INTEGER NOT NULL,
	use_count    INTEGER NOT NULL DEFAULT 0,
	last_used_at INTEGER,
	CONSTRAINT share_links_vm_name UNIQUE (vm, name)
);

-- The audit log says through which door a change came and with which
-- credential. Adding columns fires no trigger: the log stays append-only.
-- Rows from before this migration have '' in both.
ALTER TABLE events ADD COLUMN via TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN credential TEXT NOT NULL DEFAULT '';
-- A user's own log (the log command), newest first.
CREATE INDEX events_actor ON events (actor_id, id);
