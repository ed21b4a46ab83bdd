package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/exed-dev/exed/store"
)

// AddUser implements store.UserStore; it announces UserChanged,
// KeyChanged (the first key) and ShareChanged for each VM whose pending
// share for the new email it turns into a share.
func (s *Store) AddUser(ctx context.Context, u store.User, first store.Key, e store.Event) error {
	if first.UserID != u.ID {
		return fmt.Errorf("store: add user %s: first key belongs to %q", u.ID, first.UserID)
	}
	if first.Generated {
		return fmt.Errorf("store: add user %s: first key must be a login key", u.ID)
	}
	return s.writeChanges(ctx, "add user "+u.ID, e, func(tx *sql.Tx) ([]store.Change, error) {
		// Serialised with AddShare: see lockEarly.
		if err := s.lockEarly(ctx, tx); err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3)`,
			u.ID, u.Email, u.CreatedAt.Unix()); err != nil {
			return nil, err
		}
		if err := insertKey(ctx, tx, first); err != nil {
			return nil, err
		}
		changes := []store.Change{{Kind: store.UserChanged, ID: u.ID}, {Kind: store.KeyChanged, ID: first.Fingerprint}}
		vms, err := activateShares(ctx, tx, u)
		for _, vm := range vms {
			changes = append(changes, shareChanged(vm)...)
		}
		return changes, err
	})
}

// activateShares turns the pending shares for u's email into shares of
// u's, and returns their VMs.
func activateShares(ctx context.Context, tx *sql.Tx, u store.User) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT vm FROM pending_shares WHERE lower(email) = lower($1) ORDER BY vm`, u.Email)
	if err != nil {
		return nil, fmt.Errorf("pending shares: %w", err)
	}
	var vms []string
	for rows.Next() {
		var vm string
		if err := rows.Scan(&vm); err != nil {
			rows.Close()
			return nil, fmt.Errorf("pending shares: %w", err)
		}
		vms = append(vms, vm)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(vms) == 0 {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO shares (vm, user_id, invited_at)
		SELECT vm, $1, invited_at FROM pending_shares WHERE lower(email) = lower($2)`, u.ID, u.Email); err != nil {
		return nil, fmt.Errorf("activate pending shares: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM pending_shares WHERE lower(email) = lower($1)`, u.Email); err != nil {
		return nil, fmt.Errorf("activate pending shares: %w", err)
	}
	return vms, nil
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
