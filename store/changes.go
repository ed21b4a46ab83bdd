package store

// ChangeKind says what changed.
type ChangeKind uint8

// The kinds of change; a subscriber ignores kinds it does not know.
const (
	// KeyChanged: ID is a key's fingerprint. The key was added, removed
	// (its exe1 handles with it), renamed or restricted.
	KeyChanged ChangeKind = iota + 1
	// UserChanged: ID is a user id. The user was added.
	UserChanged
	// VMChanged: ID is a VM's name. The VM was added, removed or changed
	// (a removal takes the browser sessions for it along: see
	// SessionStore).
	VMChanged
	// ShareChanged: ID is a VM's name. Who the VM is shared with changed:
	// a share added or removed, or made by a share link or by the account
	// a pending share was waiting for. A cache holding the VM's
	// VM.SharedWith drops it.
	ShareChanged
	// SessionChanged: ID is the hex SHA-256 of a browser session's cookie
	// (Session.Hash). The session ended: revoked, logged out, or deleted
	// once expired.
	SessionChanged
	// AllChanged: ID is empty. Anything may have changed; drop everything.
	// Announced when changes may have gone unheard: on PostgreSQL, each
	// time the store (re)connects to hear other processes' writes, since
	// those committed while it was not listening were announced to nobody.
	AllChanged
)

// String names k for logs and test failures.
func (k ChangeKind) String() string {
	switch k {
	case KeyChanged:
		return "key"
	case UserChanged:
		return "user"
	case VMChanged:
		return "vm"
	case ShareChanged:
		return "share"
	case SessionChanged:
		return "session"
	case AllChanged:
		return "all"
	}
	return "unknown"
}

// Change is one entity touched by a committed write.
type Change struct {
	Kind ChangeKind
	ID   string // what identifies the entity of Kind (see the kinds)
}

// Changes lets caches hear about committed writes: a cache in front of the
// store subscribes and drops the entries a change names, so that a write
// is seen at once, not when the entry's TTL runs out.
//
// A write made through this process announces one Change per entity it
// affected, after its transaction commits, and never for a write that
// failed or was rolled back. Writes made by other processes are announced
// only where the store can hear of them: on PostgreSQL, once the store
// listens (sqlstore's Listen), another process's committed writes are
// announced here too, a moment after they commit, and AllChanged stands in
// for whatever may have been missed while not listening. A cache keeps its
// TTL as the bound for what goes unheard (SQLite shared with an admin
// command, a lost connection before it is noticed).
//
// Writes that change nothing a cache holds announce nothing (TouchKeys, AddExe1: a handle is only ever looked up once it exists, and
// a failed lookup is not cached; AddShareLink, RemoveShareLink: a link is
// looked up only when used).
type Changes interface {
	// Subscribe calls fn with every Change announced from now on, until
	// cancel is called; once cancel has returned, no new call of fn begins.
	// fn runs synchronously in the goroutine of the write that committed
	// (for writes committed together, the one that committed the group),
	// before that write's method returns; another process's writes, in
	// the store's listening goroutine: it must be cheap and must not
	// block, nor call the store. Subscribers are called in the order they
	// subscribed. cancel may be called more than once, and from fn.
	Subscribe(fn func(Change)) (cancel func())
}
