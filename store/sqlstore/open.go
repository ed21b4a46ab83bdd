package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers "sqlite"
)

// dbFile is the SQLite file's name inside the data dir.
const dbFile = "exed.db"

const (
	// sqliteBusyTimeout is how long an SQLite writer waits for another
	// process's write lock (the admin commands write while a server runs).
	// Writers in this process queue on the single write connection instead.
	sqliteBusyTimeout = 5 * time.Second
	// sqliteReaders caps concurrent SQLite readers: WAL lets them all run
	// at once, and there are only so many cores to run them on.
	sqliteReaders = 8
	// postgresConns caps one instance's PostgreSQL connections, so that
	// several instances fit within the server's max_connections (100 by
	// default).
	postgresConns = 20
	// connMaxIdle lets idle connections go (PostgreSQL's are processes).
	connMaxIdle = 5 * time.Minute
	// pingAfterIdle: a PostgreSQL connection idle longer than this is
	// pinged before reuse. Busy connections skip the round trip; one that
	// died while busy fails one query and is dropped.
	pingAfterIdle = 100 * time.Millisecond
)

// Open opens the registry named by dsn and applies any pending migrations:
//
//   - "" opens (or creates) SQLite at dataDir/exed.db, creating dataDir 0700;
//   - "sqlite:PATH" opens SQLite at PATH;
//   - "postgres://…" or "postgresql://…" opens PostgreSQL.
//
// The caller closes it when done.
func Open(ctx context.Context, dsn, dataDir string) (*Store, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return openPostgres(ctx, dsn)
	case strings.HasPrefix(dsn, "sqlite:"):
		return openSQLite(ctx, strings.TrimPrefix(dsn, "sqlite:"), "FULL")
	case dsn == "":
		if dataDir == "" {
			return nil, errors.New("store: no data dir for the SQLite database")
		}
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("store: create data dir: %w", err)
		}
		return openSQLite(ctx, filepath.Join(dataDir, dbFile), "FULL")
	default:
		// The DSN itself is not repeated: it may carry a password.
		return nil, errors.New(`store: unsupported database DSN: want "" (SQLite in the data dir), sqlite:PATH, or postgres://…`)
	}
}

// openSQLite opens path with two pools: one connection for writes, so that
// this process's writers queue in Go rather than spin on SQLite's busy
// handler, and a few read-only connections, which WAL lets run alongside
// the writer. synchronous is FULL except in the benchmark that measures it:
// a committed removal must survive power loss, or a revoked key could
// come back.
func openSQLite(ctx context.Context, path, synchronous string) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("store: unusable SQLite path %q (empty, or has ? or #)", path)
	}
	// Only the owner may read the registry; SQLite gives its -wal and -shm
	// files the database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open SQLite: %w", err)
	}
	f.Close()
	// Pragmas go in the DSN so that every pooled connection gets them.
	// busy_timeout comes first so that switching to WAL waits, too.
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous("+synchronous+")")
	// A write transaction takes the write lock when it begins, not at its
	// first write: a deferred one that reads first can fail with SQLITE_BUSY
	// at once, without waiting, when another writer got in between.
	q.Set("_txlock", "immediate")
	rw, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open SQLite: %w", err)
	}
	rw.SetMaxOpenConns(1)

	q.Add("_pragma", "query_only(1)")
	ro, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		rw.Close()
		return nil, fmt.Errorf("store: open SQLite: %w", err)
	}
	ro.SetMaxOpenConns(sqliteReaders)
	ro.SetMaxIdleConns(sqliteReaders)
	ro.SetConnMaxIdleTime(connMaxIdle)

	s := &Store{d: sqliteDialect, rw: rw, ro: ro}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openPostgres(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open PostgreSQL: %w", err)
	}
	// A pooled connection whose server went away (failover, a restart,
	// pg_terminate_backend, a cut network path) fails the first query sent
	// on it, and database/sql does not retry that. Pinging a connection that
	// sat idle before reusing it turns that failure into a silent reconnect,
	// at the cost of one round trip on connections that were idle anyway.
	db := stdlib.OpenDB(*cfg, stdlib.OptionShouldPing(func(_ context.Context, p stdlib.ShouldPingParams) bool {
		return p.IdleDuration > pingAfterIdle
	}))
	db.SetMaxOpenConns(postgresConns)
	db.SetMaxIdleConns(postgresConns)
	db.SetConnMaxIdleTime(connMaxIdle)
	s := &Store{d: postgresDialect, rw: db, ro: db, pgcfg: cfg, origin: newOrigin()}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}
