package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"github.com/exed-dev/exed/store"
)

// maxGroup bounds the token keys committed in one transaction, so that one
// commit's latency stays near a single fsync's.
const maxGroup = 64

// groupCommit gathers the AddTokenKey calls that arrive while a commit is in
// flight into the next transaction: one fsync for many keys, each still on
// disk before its caller hears success. The call that finds no commit in
// flight leads; when its group is committed it hands the lead to the first
// call that queued meanwhile. Only for SQLite, whose single writer makes
// commits queue anyway.
type groupCommit struct {
	mu    sync.Mutex
	busy  bool // a leader is committing
	queue []*tokenWrite
}

// tokenWrite is one AddTokenKey call waiting for a group commit.
type tokenWrite struct {
	ctx  context.Context
	k    store.Key
	h    *store.Exe1
	e    store.Event
	done chan error    // its result, sent after the commit
	lead chan struct{} // told to commit the next group itself
}

func (s *Store) addTokenKeyGrouped(ctx context.Context, k store.Key, h *store.Exe1, e store.Event) error {
	w := &tokenWrite{ctx: ctx, k: k, h: h, e: e, done: make(chan error, 1), lead: make(chan struct{}, 1)}
	g := &s.group
	g.mu.Lock()
	g.queue = append(g.queue, w)
	lead := !g.busy
	g.busy = true
	g.mu.Unlock()
	if !lead {
		// Not ctx.Done: the lead may be handed to w, and the wait is
		// bounded by one commit. The group skips w if ctx ends by then.
		select {
		case err := <-w.done:
			return err
		case <-w.lead:
		}
	}
	g.mu.Lock()
	n := min(len(g.queue), maxGroup) // w is g.queue[0]
	batch := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.mu.Unlock()

	s.commitGroup(batch)

	g.mu.Lock()
	if len(g.queue) == 0 {
		g.busy = false
	} else {
		g.queue[0].lead <- struct{}{} // buffered, and sent once: never blocks
	}
	g.mu.Unlock()
	return <-w.done
}

// commitGroup writes batch in one transaction, each call's rows under a
// savepoint so that one call's failure (a taken fingerprint or exe1 id, an
// ended ctx) leaves the others in; once it has committed, announces the
// keys that went in, and then sends every call its result.
//
// The statements run without the callers' contexts: SQLite rolls back the
// whole transaction when a statement in it is interrupted, as a cancelled
// context does.
func (s *Store) commitGroup(batch []*tokenWrite) {
	ctx := context.Background()
	errs := make([]error, len(batch))
	err := func() error {
		tx, err := s.rw.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer tx.Rollback()
		for i, w := range batch {
			if errs[i] = w.ctx.Err(); errs[i] != nil {
				continue
			}
			if _, err := tx.ExecContext(ctx, `SAVEPOINT token_key`); err != nil {
				return fmt.Errorf("savepoint: %w", err)
			}
			if errs[i] = insertTokenKey(ctx, tx, w); errs[i] != nil {
				if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT token_key`); err != nil {
					return fmt.Errorf("rollback to savepoint: %w", err)
				}
			}
			if _, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT token_key`); err != nil {
				return fmt.Errorf("release savepoint: %w", err)
			}
		}
		// Announced by commit, in the committing goroutine, before any
		// caller hears of success.
		var changes []store.Change
		for i, w := range batch {
			if errs[i] == nil {
				changes = append(changes, keyChanged(w.k.Fingerprint)...)
			}
		}
		return s.commit(ctx, tx, changes)
	}()
	for i, w := range batch {
		if errs[i] == nil {
			errs[i] = err
		}
		if errs[i] != nil {
			errs[i] = fmt.Errorf("store: add token key %s: %w", w.k.Fingerprint, errs[i])
		}
		w.done <- errs[i]
	}
}

// insertTokenKey inserts one call's key, exe1 handle and event.
func insertTokenKey(ctx context.Context, tx *sql.Tx, w *tokenWrite) error {
	if err := insertKey(ctx, tx, w.k); err != nil {
		return dbErr(err)
	}
	if w.h != nil {
		if err := insertExe1(ctx, tx, *w.h); err != nil {
			return dbErr(err)
		}
	}
	return insertEvent(ctx, tx, w.e)
}
