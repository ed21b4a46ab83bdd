package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/exed-dev/exed/store"
)

// insertEvent appends e to the audit log in tx. Every write calls it last,
// in its own transaction.
func insertEvent(ctx context.Context, tx *sql.Tx, e store.Event) error {
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO events (at, actor_id, action, subject, remote_addr) VALUES ($1, $2, $3, $4, $5)`,
		e.Time.Unix(), e.ActorID, e.Action, e.Subject, e.RemoteAddr); err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	return nil
}

// Events implements store.EventStore.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]store.Event, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("store: events: limit %d, want > 0", limit)
	}
	rows, err := s.ro.QueryContext(ctx, `
		SELECT id, at, actor_id, action, subject, remote_addr FROM events
		WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	defer rows.Close()
	var es []store.Event
	for rows.Next() {
		var e store.Event
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.ActorID, &e.Action, &e.Subject, &e.RemoteAddr); err != nil {
			return nil, fmt.Errorf("store: events: %w", err)
		}
		e.Time = fromUnix(at)
		es = append(es, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	return es, nil
}
