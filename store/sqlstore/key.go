package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/exed-dev/exed/store"
)

func insertKey(ctx context.Context, tx *sql.Tx, k store.Key) error {
	cmds, err := encodeCmds(k.Cmds)
	if err != nil {
		return err
	}
	if _, err = tx.ExecContext(ctx, `
		INSERT INTO keys (fingerprint, user_id, name, public_key, added_at, last_used_at,
			generated, vm, cmds, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		k.Fingerprint, k.UserID, k.Name, k.PublicKey, k.AddedAt.Unix(), nullTime(k.LastUsedAt),
		k.Generated, nullString(k.VM), cmds, nullTime(k.ExpiresAt)); err != nil {
		return err
	}
	if k.Generated {
		return nil // made fresh by generate-api-key: never removed before
	}
	// After the insert, in a statement of its own: under PostgreSQL's read
	// committed, an insert racing the key's removal waits for it on the
	// primary key, and this then sees the revoked row that removal wrote.
	return checkNotRevoked(ctx, tx, k.Fingerprint)
}

// checkNotRevoked returns a *store.RevokedError if fingerprint was removed.
func checkNotRevoked(ctx context.Context, tx *sql.Tx, fingerprint string) error {
	e := &store.RevokedError{Fingerprint: fingerprint}
	var removed int64
	err := tx.QueryRowContext(ctx,
		`SELECT user_id, generated, removed_at FROM revoked_keys WHERE fingerprint = $1`, fingerprint).
		Scan(&e.UserID, &e.Generated, &removed)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return err
	}
	e.RemovedAt = fromUnix(removed)
	return e
}

// ReviveKey implements store.KeyStore; it announces KeyChanged.
func (s *Store) ReviveKey(ctx context.Context, k store.Key, e store.Event) error {
	return s.write(ctx, "revive key "+k.Fingerprint, e, keyChanged(k.Fingerprint), func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM revoked_keys WHERE fingerprint = $1 AND user_id = $2 AND NOT generated`,
			k.Fingerprint, k.UserID); err != nil {
			return err
		}
		return insertKey(ctx, tx, k)
	})
}

// AddKey implements store.KeyStore; it announces KeyChanged.
func (s *Store) AddKey(ctx context.Context, k store.Key, e store.Event) error {
	return s.write(ctx, "add key "+k.Fingerprint, e, keyChanged(k.Fingerprint), func(tx *sql.Tx) error {
		return insertKey(ctx, tx, k)
	})
}

// AddTokenKey implements store.KeyStore; it announces KeyChanged. On SQLite
// it joins a group commit (see groupcommit.go).
func (s *Store) AddTokenKey(ctx context.Context, k store.Key, h *store.Exe1, e store.Event) error {
	if h != nil && h.Fingerprint != k.Fingerprint {
		return fmt.Errorf("store: add token key %s: exe1 handle is for %s", k.Fingerprint, h.Fingerprint)
	}
	if s.d.name == "sqlite" { // one writer: its commits queue anyway
		return s.addTokenKeyGrouped(ctx, k, h, e)
	}
	return s.write(ctx, "add token key "+k.Fingerprint, e, keyChanged(k.Fingerprint), func(tx *sql.Tx) error {
		if err := insertKey(ctx, tx, k); err != nil {
			return err
		}
		if h == nil {
			return nil
		}
		return insertExe1(ctx, tx, *h)
	})
}

const (
	keyColumns = `user_id, name, fingerprint, public_key, added_at, last_used_at,
	generated, vm, cmds, expires_at`
	keyQuery        = `SELECT ` + keyColumns + ` FROM keys WHERE fingerprint = $1`
	keyAndUserQuery = `SELECT ` + keyColumns + `, u.id, u.email, u.created_at
		FROM keys LEFT JOIN users u ON u.id = keys.user_id WHERE fingerprint = $1`
)

// keyRow is a row of keyColumns as scanned, before decoding.
type keyRow struct {
	k                 store.Key
	added             int64
	lastUsed, expires sql.NullInt64
	vm, cmds          sql.NullString
}

// dest returns Scan's destinations for keyColumns.
func (r *keyRow) dest() []any {
	return []any{&r.k.UserID, &r.k.Name, &r.k.Fingerprint, &r.k.PublicKey, &r.added, &r.lastUsed,
		&r.k.Generated, &r.vm, &r.cmds, &r.expires}
}

func (r *keyRow) key() (store.Key, error) {
	k := r.k
	k.AddedAt = fromUnix(r.added)
	k.LastUsedAt = fromNullUnix(r.lastUsed)
	k.ExpiresAt = fromNullUnix(r.expires)
	k.VM = r.vm.String
	if r.cmds.Valid {
		if err := json.Unmarshal([]byte(r.cmds.String), &k.Cmds); err != nil {
			return store.Key{}, fmt.Errorf("decode cmds: %w", err)
		}
		if k.Cmds == nil { // stored "null": not something we write
			return store.Key{}, errors.New("decode cmds: null")
		}
	}
	return k, nil
}

func scanKey(row interface{ Scan(...any) error }) (store.Key, error) {
	var r keyRow
	if err := row.Scan(r.dest()...); err != nil {
		return store.Key{}, dbErr(err)
	}
	return r.key()
}

// Key implements store.KeyStore.
func (s *Store) Key(ctx context.Context, fingerprint string) (store.Key, error) {
	k, err := scanKey(s.pointRead(ctx, s.q.key, fingerprint))
	if err != nil {
		return store.Key{}, fmt.Errorf("store: key %s: %w", fingerprint, err)
	}
	return k, nil
}

// KeyAndUser implements store.KeyStore.
func (s *Store) KeyAndUser(ctx context.Context, fingerprint string) (store.Key, store.User, error) {
	var r keyRow
	var uid, email sql.NullString // NULL: the key's user is missing
	var created sql.NullInt64
	err := s.pointRead(ctx, s.q.keyAndUser, fingerprint).Scan(append(r.dest(), &uid, &email, &created)...)
	if err != nil {
		return store.Key{}, store.User{}, fmt.Errorf("store: key %s: %w", fingerprint, dbErr(err))
	}
	k, err := r.key()
	if err != nil {
		return store.Key{}, store.User{}, fmt.Errorf("store: key %s: %w", fingerprint, err)
	}
	if !uid.Valid {
		return k, store.User{}, fmt.Errorf("store: user %s of key %s: %w", k.UserID, fingerprint, store.ErrNotFound)
	}
	return k, store.User{ID: uid.String, Email: email.String, CreatedAt: fromUnix(created.Int64)}, nil
}

// Keys implements store.KeyStore.
func (s *Store) Keys(ctx context.Context, userID string) ([]store.Key, error) {
	rows, err := s.ro.QueryContext(ctx,
		`SELECT `+keyColumns+` FROM keys WHERE user_id = $1 ORDER BY added_at, name`, userID)
	if err != nil {
		return nil, fmt.Errorf("store: keys of %s: %w", userID, err)
	}
	defer rows.Close()
	var ks []store.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("store: keys of %s: %w", userID, err)
		}
		ks = append(ks, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: keys of %s: %w", userID, err)
	}
	return ks, nil
}

// RemoveKey implements store.KeyStore; it announces KeyChanged.
func (s *Store) RemoveKey(ctx context.Context, userID, fingerprint string, e store.Event) error {
	return s.write(ctx, "remove key "+fingerprint, e, keyChanged(fingerprint), func(tx *sql.Tx) error {
		// Lock the user so that two removals cannot each see the other's
		// key as the one that remains.
		var id string
		if err := tx.QueryRowContext(ctx,
			`SELECT id FROM users WHERE id = $1`+s.d.forUpdate, userID).Scan(&id); err != nil {
			return err // ErrNotFound for an unknown user
		}
		var generated bool
		if err := tx.QueryRowContext(ctx,
			`SELECT generated FROM keys WHERE fingerprint = $1 AND user_id = $2`,
			fingerprint, userID).Scan(&generated); err != nil {
			return err
		}
		if !generated {
			var others int
			if err := tx.QueryRowContext(ctx,
				`SELECT COUNT(*) FROM keys WHERE user_id = $1 AND NOT generated AND fingerprint <> $2`,
				userID, fingerprint).Scan(&others); err != nil {
				return err
			}
			if others == 0 {
				return store.ErrLastKey
			}
		}
		// exe1 rows go with the key (ON DELETE CASCADE).
		if err := mustAffect(tx.ExecContext(ctx,
			`DELETE FROM keys WHERE fingerprint = $1 AND user_id = $2`, fingerprint, userID)); err != nil {
			return err
		}
		// Revoked for good: the fingerprint cannot be registered again
		// (a key revived and removed again has no row left to conflict).
		_, err := tx.ExecContext(ctx,
			`INSERT INTO revoked_keys (fingerprint, user_id, generated, removed_at) VALUES ($1, $2, $3, $4)`,
			fingerprint, userID, generated, e.Time.Unix())
		return err
	})
}

// RenameKey implements store.KeyStore; it announces KeyChanged.
func (s *Store) RenameKey(ctx context.Context, userID, fingerprint, newName string, e store.Event) error {
	return s.write(ctx, "rename key "+fingerprint, e, keyChanged(fingerprint), func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx,
			`UPDATE keys SET name = $1 WHERE fingerprint = $2 AND user_id = $3`,
			newName, fingerprint, userID))
	})
}

// TouchKeys implements store.KeyStore. It announces nothing: last use is
// not something a cache holds.
func (s *Store) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	// A fixed order, so that two instances updating overlapping batches
	// take their row locks in the same order and cannot deadlock.
	fps := make([]string, 0, len(used))
	for fp := range used {
		fps = append(fps, fp)
	}
	slices.Sort(fps)
	tx, err := s.rw.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: touch keys: begin: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `UPDATE keys SET last_used_at = $1
		WHERE fingerprint = $2 AND (last_used_at IS NULL OR last_used_at < $1)`)
	if err != nil {
		return fmt.Errorf("store: touch keys: %w", err)
	}
	defer stmt.Close()
	for _, fp := range fps {
		if _, err := stmt.ExecContext(ctx, used[fp].Unix(), fp); err != nil {
			return fmt.Errorf("store: touch key %s: %w", fp, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: touch keys: commit: %w", err)
	}
	return nil
}

// keyChanged is the one change a write to a single key announces.
func keyChanged(fingerprint string) []store.Change {
	return []store.Change{{Kind: store.KeyChanged, ID: fingerprint}}
}

// encodeCmds stores nil (no restriction) as NULL and anything else,
// including an empty list (nothing allowed), as a JSON array.
func encodeCmds(cmds []string) (sql.NullString, error) {
	if cmds == nil {
		return sql.NullString{}, nil
	}
	b, err := json.Marshal(cmds)
	if err != nil {
		return sql.NullString{}, fmt.Errorf("encode cmds: %w", err)
	}
	return sql.NullString{String: string(b), Valid: true}, nil
}
