package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/exed-dev/exed/store"
)

const exe1Query = `SELECT id, fingerprint, sealed, created_at FROM exe1 WHERE id = $1`

func insertExe1(ctx context.Context, tx *sql.Tx, h store.Exe1) error {
	_, err := tx.ExecContext(ctx,
		`INSERT INTO exe1 (id, fingerprint, sealed, created_at) VALUES ($1, $2, $3, $4)`,
		h.ID, h.Fingerprint, h.Sealed, h.CreatedAt.Unix())
	return err
}

// AddExe1 implements store.Exe1Store. It announces nothing (see store.Changes).
func (s *Store) AddExe1(ctx context.Context, h store.Exe1, e store.Event) error {
	return s.write(ctx, "add exe1 for "+h.Fingerprint, e, nil, func(tx *sql.Tx) error {
		return insertExe1(ctx, tx, h)
	})
}

// Exe1 implements store.Exe1Store.
func (s *Store) Exe1(ctx context.Context, id []byte) (store.Exe1, error) {
	var h store.Exe1
	var created int64
	err := s.pointRead(ctx, s.q.exe1, id).Scan(&h.ID, &h.Fingerprint, &h.Sealed, &created)
	if err != nil {
		// The id is a hash, not the handle, but there is no need to print it.
		return store.Exe1{}, fmt.Errorf("store: exe1: %w", dbErr(err))
	}
	h.CreatedAt = fromUnix(created)
	return h, nil
}
