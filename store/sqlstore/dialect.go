package sqlstore

import "fmt"

// dialect holds what differs between the two backends; the SQL of every
// query is shared (both accept $1 placeholders).
type dialect struct {
	name string // "sqlite" or "postgres": also the migrations directory
	// lockMigrations runs first in the migration transaction so that two
	// processes never migrate at once. SQLite needs none: its write
	// transactions begin IMMEDIATE, which takes the database's write lock.
	lockMigrations string
	// lockEvents runs just before an event is appended so that event ids
	// are handed out in commit order (a reader following the log by id then
	// never skips a row that commits late). SQLite needs none: it has one
	// writer at a time.
	lockEvents string
	// forUpdate locks the row a read-then-write transaction depends on.
	// SQLite has no row locks; its write transactions are already serial.
	forUpdate string
	// detachReads runs the hot point reads (see reads) without ctx's
	// cancellation. On SQLite such a read takes microseconds and, in WAL
	// mode, does not wait for writers, while the driver starts a goroutine
	// per query to watch a cancelable context, which costs about as much as
	// the read (BenchmarkVerifierLookup). PostgreSQL's reads cross a network
	// and keep it.
	detachReads bool
	// notify: every write that announces changes notifies the other
	// processes on the database too (notify.go). SQLite has no way to;
	// its readers in other processes rely on their caches' TTLs.
	notify bool
}

// Advisory lock keys (any int64, the same in every exed instance).
const (
	migrationsLockKey = 0x65786564_6d696772 // "exedmigr"
	eventsLockKey     = 0x65786564_65766e74 // "exedevnt"
)

var (
	sqliteDialect   = dialect{name: "sqlite", detachReads: true}
	postgresDialect = dialect{
		name:           "postgres",
		lockMigrations: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", migrationsLockKey),
		lockEvents:     fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", eventsLockKey),
		forUpdate:      " FOR UPDATE",
		notify:         true,
	}
)
