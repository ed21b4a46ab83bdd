// Package sqlstore is the registry's one implementation (store.Store) over
// database/sql, for two backends: embedded SQLite (the default) and
// PostgreSQL (when several exed instances share one registry). The SQL of
// every query is shared; what differs is in dialect.go.
//
// Each entity's queries are in its own file (user.go, key.go, exe1.go,
// vm.go, share.go, session.go, assertion.go, event.go, cert.go). The schema is the numbered migrations under
// migrations/, applied by Open. Driver errors become store's sentinel
// errors in one place (errors.go). SQLite's AddTokenKey calls are committed
// in groups (groupcommit.go). Every committed write is announced to the
// subscribers of store.Changes (changes.go) and, on PostgreSQL, notified to
// the other processes on the database (notify.go), which hear it once they
// listen (listen.go).
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/exed-dev/exed/store"
)

// Store implements store.Store over database/sql for both dialects. Open
// returns one; it is safe for concurrent use.
type Store struct {
	d  dialect
	rw *sql.DB // writes (and reads inside write transactions)
	ro *sql.DB // reads; the same pool as rw for PostgreSQL
	q  reads   // prepared on ro

	group   groupCommit // AddTokenKey's, on SQLite
	changes changes     // the subscribers to committed writes

	// On PostgreSQL: how to connect the listener (listen.go), and the
	// origin its notifications carry (notify.go). nil and "" on SQLite.
	pgcfg  *pgx.ConnConfig
	origin string

	listenMu sync.Mutex
	listener *listener // nil until Listen
	closed   bool      // Close was called: Listen starts nothing
}

var _ store.Store = (*Store)(nil)

// reads are the hot read queries (every uncached token check, every proxied
// request's VM), prepared once at Open: parsing a query cost SQLite about as
// much as running it. database/sql prepares each again, lazily, on every
// pooled connection that runs it. Their SQL is beside the entity each reads.
type reads struct {
	key, keyAndUser, userByID, vm, exe1, sessionAndUser *sql.Stmt
}

// pointRead runs one of s.q with args. A ctx already done still fails it.
func (s *Store) pointRead(ctx context.Context, st *sql.Stmt, args ...any) *sql.Row {
	return st.QueryRowContext(s.readCtx(ctx), args...)
}

// readCtx is the context a hot point read runs in (see dialect.detachReads).
func (s *Store) readCtx(ctx context.Context) context.Context {
	if s.d.detachReads && ctx.Err() == nil {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

// prepare prepares s.q on the read pool; the tables must exist.
func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&s.q.key, keyQuery},
		{&s.q.keyAndUser, keyAndUserQuery},
		{&s.q.userByID, userByIDQuery},
		{&s.q.vm, vmQuery},
		{&s.q.exe1, exe1Query},
		{&s.q.sessionAndUser, sessionAndUserQuery},
	} {
		st, err := s.ro.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("store: prepare %q: %w", p.query, err)
		}
		*p.stmt = st
	}
	return nil
}

// write runs fn in a transaction, appends e in that same transaction, and
// commits (see commit); then, and only then, it announces changes to the
// subscribers.
// Errors come back mapped by dbErr and wrapped with op.
func (s *Store) write(ctx context.Context, op string, e store.Event, changes []store.Change, fn func(tx *sql.Tx) error) error {
	return s.writeChanges(ctx, op, e, func(tx *sql.Tx) ([]store.Change, error) {
		return changes, fn(tx)
	})
}

// writeChanges is write for a write that learns what it changed as it
// goes: fn returns the changes to announce once committed.
func (s *Store) writeChanges(ctx context.Context, op string, e store.Event, fn func(tx *sql.Tx) ([]store.Change, error)) error {
	return s.writeFilling(ctx, op, &e, fn)
}

// writeFilling is writeChanges for a write whose event fn completes (its
// ActorID, from the row a redemption consumed) before it is appended.
func (s *Store) writeFilling(ctx context.Context, op string, e *store.Event, fn func(tx *sql.Tx) ([]store.Change, error)) error {
	tx, err := s.rw.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: %s: begin: %w", op, err)
	}
	defer tx.Rollback()
	changes, err := fn(tx)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, dbErr(err))
	}
	// Last, so that PostgreSQL's event lock is held only until the commit
	// right after it.
	if s.d.lockEvents != "" {
		if _, err := tx.ExecContext(ctx, s.d.lockEvents); err != nil {
			return fmt.Errorf("store: %s: lock events: %w", op, err)
		}
	}
	if err := insertEvent(ctx, tx, *e); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if err := s.commit(ctx, tx, changes); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return nil
}

// lockEarly takes, at the start of a write transaction, the lock that
// every write takes just before its event (dialect.lockEvents), so that
// two writes that each read what the other writes run one after the
// other: AddUser, which turns the new email's pending shares into shares,
// and AddShare, which makes a pending share when it finds no account.
// Without it, on PostgreSQL, each could commit without seeing the other,
// leaving a pending share for an account that exists. The lock is taken
// again before the event: PostgreSQL's advisory locks are re-entrant. On
// SQLite a write transaction holds the database's one write lock already.
func (s *Store) lockEarly(ctx context.Context, tx *sql.Tx) error {
	if s.d.lockEvents == "" {
		return nil
	}
	if _, err := tx.ExecContext(ctx, s.d.lockEvents); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	return nil
}

// mustAffect turns a statement that matched no row into ErrNotFound.
func mustAffect(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.ro.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Close implements store.Store: it stops the listener (see Listen), then
// closes the prepared statements and the connection pools. The subscribers
// are not told; once Close has returned, nothing heard from other
// processes is announced to them.
func (s *Store) Close() error {
	s.listenMu.Lock()
	l := s.listener
	s.listener, s.closed = nil, true
	s.listenMu.Unlock()
	if l != nil {
		l.stop()
	}
	var err error
	for _, st := range []*sql.Stmt{s.q.key, s.q.keyAndUser, s.q.userByID, s.q.vm, s.q.exe1, s.q.sessionAndUser} {
		if st != nil { // nil: Open failed before preparing it
			err = errors.Join(err, st.Close())
		}
	}
	err = errors.Join(err, s.rw.Close())
	if s.ro != s.rw {
		err = errors.Join(err, s.ro.Close())
	}
	return err
}

// Times are stored as integer unix seconds; zero (never, none) as NULL.

func fromUnix(sec int64) time.Time { return time.Unix(sec, 0).UTC() }

func nullTime(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.Unix(), Valid: true}
}

func fromNullUnix(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromUnix(n.Int64)
}

func nullString(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}
