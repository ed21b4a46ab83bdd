package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/exed-dev/exed/store"
)

// On PostgreSQL, every write that announces changes also notifies the
// other processes on the same database: pg_notify on notifyChannel, in the
// write's own transaction, so that PostgreSQL delivers it only if, and
// once, the write commits. A listening store (Listen, listen.go)
// announces what it hears to its own subscribers.
//
// A payload is the sending store's origin, then one line per change: the
// kind's number, a space, the id. Ids are fingerprints, user ids, VM
// names and session hashes: short, and never a newline.
const (
	notifyChannel = "exed_changes"
	// maxPayload keeps a payload under PostgreSQL's limit of 8000 bytes;
	// a write that changed more sends several.
	maxPayload = 7900
)

// newOrigin names one Store among those notifying on a database, so that
// its listener can skip what it announced itself already.
func newOrigin() string {
	b := make([]byte, 8)
	rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// commit notifies the other processes of changes (on PostgreSQL), commits
// tx, and then, only if the commit succeeded, announces changes to this
// store's subscribers. Every write that announces goes through it.
func (s *Store) commit(ctx context.Context, tx *sql.Tx, changes []store.Change) error {
	if s.d.notify && len(changes) > 0 {
		for _, p := range encodeChanges(s.origin, changes) {
			if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, p); err != nil {
				return fmt.Errorf("notify: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", dbErr(err))
	}
	s.changes.publish(changes...)
	return nil
}

// encodeChanges is changes in payloads of at most maxPayload bytes. A
// change that cannot be spelled in one (an id with a newline, or too long)
// goes as AllChanged: the listeners drop everything rather than miss it.
func encodeChanges(origin string, changes []store.Change) []string {
	var ps []string
	var b strings.Builder
	for _, c := range changes {
		line := strconv.Itoa(int(c.Kind)) + " " + c.ID
		if strings.Contains(c.ID, "\n") || len(origin)+1+len(line) > maxPayload {
			line = strconv.Itoa(int(store.AllChanged)) + " "
		}
		if b.Len() > 0 && b.Len()+1+len(line) > maxPayload {
			ps = append(ps, b.String())
			b.Reset()
		}
		if b.Len() == 0 {
			b.WriteString(origin)
		}
		b.WriteByte('\n')
		b.WriteString(line)
	}
	if b.Len() > 0 {
		ps = append(ps, b.String())
	}
	return ps
}

// decodeChanges is encodeChanges undone, for one payload: who sent it and
// what changed. A payload it cannot read (another version's, or not ours)
// comes back as AllChanged. Kinds it does not know are kept: subscribers
// ignore them.
func decodeChanges(payload string) (origin string, changes []store.Change) {
	origin, rest, _ := strings.Cut(payload, "\n")
	for line := range strings.Lines(rest) {
		line = strings.TrimSuffix(line, "\n")
		k, id, ok := strings.Cut(line, " ")
		n, err := strconv.ParseUint(k, 10, 8)
		if !ok || err != nil || n == 0 {
			return origin, []store.Change{{Kind: store.AllChanged}}
		}
		c := store.Change{Kind: store.ChangeKind(n), ID: id}
		if c.Kind == store.AllChanged {
			c.ID = ""
		}
		changes = append(changes, c)
	}
	if len(changes) == 0 {
		return origin, []store.Change{{Kind: store.AllChanged}}
	}
	return origin, changes
}
