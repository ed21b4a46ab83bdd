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
		`INSERT INTO events (at, actor_id, credential, via, action, subject, remote_addr) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		e.Time.Unix(), e.ActorID, e.Credential, e.Via, e.Action, e.Subject, e.RemoteAddr); err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	return nil
}

// eventSelect reads events with their actor's email ("" for an actor that
// is no user: admin).
const eventSelect = `SELECT e.id, e.at, e.actor_id, e.credential, e.via, e.action, e.subject, e.remote_addr,
	COALESCE(u.email, '') FROM events e LEFT JOIN users u ON u.id = e.actor_id`

// Events implements store.EventStore.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]store.Event, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("store: events: limit %d, want > 0", limit)
	}
	es, err := s.scanEvents(ctx, eventSelect+` WHERE e.id > $1 ORDER BY e.id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	return es, nil
}

// QueryEvents implements store.EventStore.
func (s *Store) QueryEvents(ctx context.Context, q store.EventQuery) ([]store.Event, error) {
	limit := q.Limit
	if limit == 0 {
		limit = store.MaxEventQuery
	}
	if limit < 0 || limit > store.MaxEventQuery {
		return nil, fmt.Errorf("store: query events: limit %d, want 1 to %d", limit, store.MaxEventQuery)
	}
	var since int64 // no event is older than 1970
	if !q.Since.IsZero() {
		since = q.Since.Unix()
	}
	order := " ORDER BY e.id"
	if q.NewestFirst {
		order += " DESC"
	}
	es, err := s.scanEvents(ctx, eventSelect+` WHERE ($1 = '' OR e.actor_id = $1) AND e.at >= $2 AND e.id > $3`+order+` LIMIT $4`,
		q.ActorID, since, q.AfterID, limit)
	if err != nil {
		return nil, fmt.Errorf("store: query events: %w", err)
	}
	return es, nil
}

func (s *Store) scanEvents(ctx context.Context, query string, args ...any) ([]store.Event, error) {
	rows, err := s.ro.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var es []store.Event
	for rows.Next() {
		var e store.Event
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.ActorID, &e.Credential, &e.Via, &e.Action, &e.Subject, &e.RemoteAddr, &e.ActorEmail); err != nil {
			return nil, err
		}
		e.Time = fromUnix(at)
		es = append(es, e)
	}
	return es, rows.Err()
}
