// Package store is exed's registry as its users see it: the types (users,
// their SSH keys, VMs and who they are shared with, exe1 handles, browser
// sessions and their login secrets, assertion signing keys, the
// append-only audit log, the TLS certificates exed obtained itself), one
// interface per entity and the composite Store, the sentinel errors callers
// branch on, the validation of what users type, the change feed that lets
// caches hear about committed writes, and the LastUsedWriter.
//
// It links no database driver: the one implementation, over SQL for
// embedded SQLite and PostgreSQL, is package store/sqlstore. Consumers ask
// for the narrow interface they use (UserStore, KeyStore, Exe1Store,
// VMStore, ShareStore, AssertionKeyStore, EventStore, CertStore, Changes,
// or a smaller one of their own).
//
// The implementation enforces the rules (unique emails, one owner per key,
// unique key names per user, unique VM names); violations come back as the
// sentinel errors below.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors that callers branch on.
var (
	// ErrNotFound: no row matched (including a removal that matched nothing,
	// or a row that belongs to another user).
	ErrNotFound = errors.New("not found")
	// ErrExists: a uniqueness rule would be broken (email, fingerprint,
	// key name per user, VM name).
	ErrExists = errors.New("already exists")
	// ErrLastKey: the removal would leave the user without a login key.
	ErrLastKey = errors.New("last login key")
	// ErrRevoked: the key was removed once and may not be registered
	// again (see RevokedError for whose it was and what it was).
	ErrRevoked = errors.New("key was removed")
)

// RevokedError is the ErrRevoked of AddKey, AddUser and ReviveKey: the
// fingerprint was removed before. A generated key stays revoked for good;
// a login key may come back to the user it was removed from, through
// ReviveKey.
type RevokedError struct {
	Fingerprint string
	UserID      string // whose key it was
	Generated   bool
	RemovedAt   time.Time
}

func (e *RevokedError) Error() string {
	return "key " + e.Fingerprint + " was removed at " + e.RemovedAt.UTC().Format(time.RFC3339)
}

// Is makes errors.Is(err, ErrRevoked) true.
func (e *RevokedError) Is(target error) bool { return target == ErrRevoked }

// User is an account. ID is stable ("usr…") and never reused.
type User struct {
	ID        string
	Email     string
	CreatedAt time.Time
}

// UserSummary is a user with the number of keys registered to it.
type UserSummary struct {
	User
	Keys int
}

// Key is an SSH public key registered to exactly one user. A login key
// authenticates SSH sessions; a generated key (Generated) was made by
// generate-api-key to sign one token and its private half is gone.
// VM, Cmds and ExpiresAt are restrictions carried by the key itself.
type Key struct {
	UserID      string
	Name        string    // unique per user
	Fingerprint string    // "SHA256:…", unique across all users
	PublicKey   string    // authorized_keys form: "ssh-ed25519 AAAA…"
	AddedAt     time.Time // set by the caller
	LastUsedAt  time.Time // zero: never used
	Generated   bool
	VM          string    // restriction: "" for none
	Cmds        []string  // restriction: nil for none
	ExpiresAt   time.Time // restriction: zero for never
}

// VM is a named HTTP upstream owned by one user, and maybe shared with
// others.
type VM struct {
	Name      string
	OwnerID   string
	Upstream  string // http(s)://host[:port]
	Public    bool
	CreatedAt time.Time
	// SharedWith holds the ids of the users with an active share (see
	// ShareStore), sorted; nil when there are none. It comes with the VM
	// from every read, so that the access decision (tokens.Reach) needs
	// nothing else; AddVM ignores it.
	SharedWith []string
}

// Exe1 is the stored half of an exe1 handle: a hash of the handle, and the
// exe0 sealed under a key derived from the handle (see package tokens). A
// copy of this row alone yields no usable token. It goes when its signing
// key goes.
type Exe1 struct {
	ID          []byte // hash of the handle (tokens.Exe1ID)
	Fingerprint string // the signing key
	Sealed      []byte
	CreatedAt   time.Time
}

// Event is one row of the append-only audit log: who did what, to what,
// through which door.
type Event struct {
	ID      int64 // assigned by the store, in commit order
	Time    time.Time
	ActorID string // user id, "admin" for the admin commands, "system" for what a server does by itself (a scheduled key rotation)
	// Credential is what the actor acted with: the fingerprint of the SSH
	// key ("SHA256:…") that completed authentication or signed the /exec
	// token, or the id of the browser session; "" for the admin commands.
	Credential string
	Via        string // where the change came in: ViaSSH, ViaExec, ViaWeb, ViaAdmin; "" for "system"
	Action     string // e.g. "user.add", "key.add", "token.generate", "share.add", "assertion_key.add"; see docs/audit.md
	Subject    string // what it acted on: a fingerprint, a VM name, an email, "VM EMAIL"
	RemoteAddr string // "" for local admin commands
	// ActorEmail is filled in by the reads: the actor's email, "" when
	// the actor is no user (admin). Writes ignore it.
	ActorEmail string
}

// UserStore holds the accounts.
type UserStore interface {
	// AddUser creates a user together with its first login key.
	AddUser(ctx context.Context, u User, first Key, e Event) error
	UserByID(ctx context.Context, id string) (User, error)
	// UserByEmail compares emails case-insensitively.
	UserByEmail(ctx context.Context, email string) (User, error)
	Users(ctx context.Context) ([]UserSummary, error)
}

// KeyStore holds the SSH keys registered to users.
type KeyStore interface {
	// AddKey registers a key (login or generated) on k.UserID. A key that
	// was removed before is refused with a *RevokedError (ErrRevoked): the
	// tokens it signed stay revoked.
	AddKey(ctx context.Context, k Key, e Event) error
	// ReviveKey is AddKey for a login key that k.UserID itself removed
	// before, asked for explicitly: the tokens it signed before its removal
	// verify again. A removed generated key, or another user's, is still
	// refused (ErrRevoked); a key never removed is simply added.
	ReviveKey(ctx context.Context, k Key, e Event) error
	// AddTokenKey registers a generated key and, when h is not nil, its
	// exe1 handle, in one transaction: generate-api-key's single write.
	AddTokenKey(ctx context.Context, k Key, h *Exe1, e Event) error
	// Key looks a key up by fingerprint, whoever owns it (the Verifier's
	// and SSH authentication's lookup).
	Key(ctx context.Context, fingerprint string) (Key, error)
	// KeyAndUser looks a key up by fingerprint together with the user it
	// belongs to, in one query: the Verifier's lookup. ErrNotFound when no
	// key has that fingerprint. A key whose user does not exist (the
	// schema's foreign key rules it out) comes back with a zero User and
	// an error wrapping ErrNotFound, so that callers can tell the two apart
	// by the Key's Fingerprint.
	KeyAndUser(ctx context.Context, fingerprint string) (Key, User, error)
	// Keys lists a user's keys, oldest first.
	Keys(ctx context.Context, userID string) ([]Key, error)
	// RemoveKey deletes one of userID's keys and every exe1 handle it
	// signed, and records its fingerprint as revoked (see AddKey).
	// ErrNotFound when userID has no such key; ErrLastKey when it is
	// userID's last login (non-generated) key.
	RemoveKey(ctx context.Context, userID, fingerprint string, e Event) error
	// RenameKey renames one of userID's keys; ErrExists if the name is taken.
	RenameKey(ctx context.Context, userID, fingerprint, newName string, e Event) error
	// TouchKeys sets last_used_at for the given fingerprints (a batch from
	// the throttled last-used writer). Unknown fingerprints are ignored.
	TouchKeys(ctx context.Context, used map[string]time.Time) error
}

// Exe1Store holds the stored halves of exe1 handles.
type Exe1Store interface {
	// AddExe1 stores an exe1 handle for an existing key.
	AddExe1(ctx context.Context, h Exe1, e Event) error
	// Exe1 looks a handle up by its ID.
	Exe1(ctx context.Context, id []byte) (Exe1, error)
}

// VMStore holds the VMs.
type VMStore interface {
	AddVM(ctx context.Context, vm VM, e Event) error
	VM(ctx context.Context, name string) (VM, error)
	// VMs lists VMs by name; ownerID "" lists all of them.
	VMs(ctx context.Context, ownerID string) ([]VM, error)
	RemoveVM(ctx context.Context, name string, e Event) error
}

// EventStore reads the audit log. Rows are appended by the writes
// themselves, never on their own.
type EventStore interface {
	// Events returns audit rows with ID > after, oldest first, at most limit.
	Events(ctx context.Context, after int64, limit int) ([]Event, error)
	// QueryEvents returns the audit rows q selects (see EventQuery).
	QueryEvents(ctx context.Context, q EventQuery) ([]Event, error)
}

// Store is the registry. Every method that writes more than one row does so
// in one transaction, and every write appends its Event in that same
// transaction. Methods that take a userID only ever touch that user's rows.
// Every committed write is announced on Changes (see Changes for which).
type Store interface {
	UserStore
	KeyStore
	Exe1Store
	VMStore
	ShareStore
	SessionStore
	AssertionKeyStore
	EventStore
	CertStore
	Changes

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	Close() error
}
