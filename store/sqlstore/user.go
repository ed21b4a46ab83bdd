package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/exed-dev/exed/store"
)

// AddUser implements store.UserStore; it announces UserChanged and
// KeyChanged (the first key).
func (s *Store) AddUser(ctx context.Context, u store.User, first store.Key, e store.Event) error {
	if first.UserID != u.ID {
		return fmt.Errorf("store: add user %s: first key belongs to %q", u.ID, first.UserID)
	}
	if first.Generated {
		return fmt.Errorf("store: add user %s: first key must be a login key", u.ID)
	}
	changes := []store.Change{{Kind: store.UserChanged, ID: u.ID}, {Kind: store.KeyChanged, ID: first.Fingerprint}}
	return s.write(ctx, "add user "+u.ID, e, changes, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3)`,
			u.ID, u.Email, u.CreatedAt.Unix()); err != nil {
			return err
		}
		return insertKey(ctx, tx, first)
	})
}

const (
	userColumns   = `id, email, created_at`
	userByIDQuery = `SELECT ` + userColumns + ` FROM users WHERE id = $1`
)

func scanUser(row interface{ Scan(...any) error }) (store.User, error) {
	var u store.User
	var created int64
	if err := row.Scan(&u.ID, &u.Email, &created); err != nil {
		return store.User{}, dbErr(err)
	}
	u.CreatedAt = fromUnix(created)
	return u, nil
}

// UserByID implements store.UserStore.
func (s *Store) UserByID(ctx context.Context, id string) (store.User, error) {
	u, err := scanUser(s.pointRead(ctx, s.q.userByID, id))
	if err != nil {
		return store.User{}, fmt.Errorf("store: user %s: %w", id, err)
	}
	return u, nil
}

// UserByEmail implements store.UserStore.
func (s *Store) UserByEmail(ctx context.Context, email string) (store.User, error) {
	u, err := scanUser(s.ro.QueryRowContext(ctx,
		`SELECT `+userColumns+` FROM users WHERE lower(email) = lower($1)`, email))
	if err != nil {
		return store.User{}, fmt.Errorf("store: user %s: %w", email, err)
	}
	return u, nil
}

// Users implements store.UserStore.
func (s *Store) Users(ctx context.Context) ([]store.UserSummary, error) {
	rows, err := s.ro.QueryContext(ctx, `
		SELECT u.id, u.email, u.created_at, COUNT(k.fingerprint)
		FROM users u LEFT JOIN keys k ON k.user_id = u.id
		GROUP BY u.id, u.email, u.created_at
		ORDER BY u.created_at, u.id`)
	if err != nil {
		return nil, fmt.Errorf("store: users: %w", err)
	}
	defer rows.Close()
	var us []store.UserSummary
	for rows.Next() {
		var u store.UserSummary
		var created int64
		if err := rows.Scan(&u.ID, &u.Email, &created, &u.Keys); err != nil {
			return nil, fmt.Errorf("store: users: %w", err)
		}
		u.CreatedAt = fromUnix(created)
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: users: %w", err)
	}
	return us, nil
}
