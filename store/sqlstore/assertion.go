package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/exed-dev/exed/store"
)

// AddAssertionKey implements store.AssertionKeyStore. It announces
// nothing: each instance reads the keys again on its own schedule (see
// package assertion), and no cache holds a missing key.
func (s *Store) AddAssertionKey(ctx context.Context, k store.AssertionKey, e store.Event) error {
	return s.write(ctx, fmt.Sprintf("add assertion key %s (generation %d)", k.ID, k.Generation), e, nil, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO assertion_keys (kid, generation, public_key, sealed, created_at, sign_from) VALUES ($1, $2, $3, $4, $5, $6)`,
			k.ID, k.Generation, k.PublicKey, k.Sealed, k.CreatedAt.Unix(), k.SignFrom.Unix())
		return err
	})
}

// AssertionKeys implements store.AssertionKeyStore.
func (s *Store) AssertionKeys(ctx context.Context) ([]store.AssertionKey, error) {
	rows, err := s.ro.QueryContext(ctx,
		`SELECT kid, generation, public_key, sealed, created_at, sign_from FROM assertion_keys ORDER BY generation`)
	if err != nil {
		return nil, fmt.Errorf("store: assertion keys: %w", err)
	}
	defer rows.Close()
	var ks []store.AssertionKey
	for rows.Next() {
		var (
			k               store.AssertionKey
			created, signAt int64
		)
		if err := rows.Scan(&k.ID, &k.Generation, &k.PublicKey, &k.Sealed, &created, &signAt); err != nil {
			return nil, fmt.Errorf("store: assertion keys: %w", err)
		}
		k.CreatedAt, k.SignFrom = fromUnix(created), fromUnix(signAt)
		ks = append(ks, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: assertion keys: %w", err)
	}
	return ks, nil
}
