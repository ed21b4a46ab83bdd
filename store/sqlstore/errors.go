package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/exed-dev/exed/store"
)

// uniqueWhat names, for people, what each uniqueness rule protects. The
// keys are how each driver names the rule: PostgreSQL by constraint or
// index name, SQLite by "table.column" list (or "index 'name'" for an
// index on an expression).
var uniqueWhat = map[string]string{
	"users_pkey": "user id", "users.id": "user id",
	"users_email_lower": "email", "index 'users_email_lower'": "email",
	"keys_pkey": "key fingerprint", "keys.fingerprint": "key fingerprint",
	"keys_user_name": "key name", "keys.user_id, keys.name": "key name",
	"exe1_pkey": "exe1 handle", "exe1.id": "exe1 handle",
	"vms_pkey": "VM name", "vms.name": "VM name",
	"shares_pkey": "share", "shares.vm, shares.user_id": "share",
	"pending_shares_vm_email": "share", "index 'pending_shares_vm_email'": "share",
	"share_links_pkey": "share link", "share_links.id": "share link",
	"share_links_vm_name": "share link name", "share_links.vm, share_links.name": "share link name",
	"assertion_keys_pkey": "assertion key id", "assertion_keys.kid": "assertion key id",
	"assertion_keys_generation": "assertion key generation", "assertion_keys.generation": "assertion key generation",
}

// dbErr is the one place driver errors become the package's sentinels:
// a broken uniqueness rule is ErrExists (saying which rule), a dangling
// reference (a key for no user, an exe1 handle for no key) and an empty
// result are ErrNotFound. Anything else passes through unchanged.
func dbErr(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			return existsErr(pe.ConstraintName)
		case "23503": // foreign_key_violation
			return store.ErrNotFound
		}
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			// "…UNIQUE constraint failed: keys.user_id, keys.name (2067)"
			_, rule, _ := strings.Cut(se.Error(), "UNIQUE constraint failed: ")
			rule, _, _ = strings.Cut(rule, " (")
			return existsErr(rule)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return store.ErrNotFound
		}
	}
	return err
}

func existsErr(rule string) error {
	if what, ok := uniqueWhat[rule]; ok {
		return fmt.Errorf("%s %w", what, store.ErrExists)
	}
	return store.ErrExists
}
