package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/exed-dev/exed/store"
)

// The ACME client's blobs and locks (store.CertStore). Their writes are
// single statements outside Store.write: no audit event, no Change.

// PutCertBlob implements store.CertStore.
func (s *Store) PutCertBlob(ctx context.Context, b store.CertBlob) error {
	_, err := s.rw.ExecContext(ctx,
		`INSERT INTO cert_blobs (key, value, modified_at) VALUES ($1, $2, $3)
		 ON CONFLICT (key) DO UPDATE SET value = excluded.value, modified_at = excluded.modified_at`,
		b.Key, nonNil(b.Value), b.Modified.Unix())
	if err != nil {
		return fmt.Errorf("store: put cert blob %s: %w", b.Key, dbErr(err))
	}
	return nil
}

// CertBlob implements store.CertStore.
func (s *Store) CertBlob(ctx context.Context, key string) (store.CertBlob, error) {
	b := store.CertBlob{Key: key}
	var modified int64
	err := s.ro.QueryRowContext(ctx,
		`SELECT value, modified_at FROM cert_blobs WHERE key = $1`, key).Scan(&b.Value, &modified)
	if err != nil {
		return store.CertBlob{}, fmt.Errorf("store: cert blob %s: %w", key, dbErr(err))
	}
	b.Modified = fromUnix(modified)
	return b, nil
}

// underPrefix is the condition "key is prefix or lies under prefix/", over
// the parameters $1 (prefix), $2 (prefix + "/") and $3 (prefix + "0", '0'
// being the byte after '/'): a range an index serves, where LIKE would take
// the '_' in keys for a wildcard.
const underPrefix = `($1 = '' OR key = $1 OR (key >= $2 AND key < $3))`

func prefixArgs(prefix string) []any { return []any{prefix, prefix + "/", prefix + "0"} }

// CertBlobInfos implements store.CertStore.
func (s *Store) CertBlobInfos(ctx context.Context, prefix string) ([]store.CertBlobInfo, error) {
	rows, err := s.ro.QueryContext(ctx,
		`SELECT key, length(value), modified_at FROM cert_blobs WHERE `+underPrefix+` ORDER BY key`,
		prefixArgs(prefix)...)
	if err != nil {
		return nil, fmt.Errorf("store: cert blobs %s: %w", prefix, err)
	}
	defer rows.Close()
	var infos []store.CertBlobInfo
	for rows.Next() {
		var in store.CertBlobInfo
		var modified int64
		if err := rows.Scan(&in.Key, &in.Size, &modified); err != nil {
			return nil, fmt.Errorf("store: cert blobs %s: %w", prefix, err)
		}
		in.Modified = fromUnix(modified)
		infos = append(infos, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: cert blobs %s: %w", prefix, err)
	}
	return infos, nil
}

// DeleteCertBlobs implements store.CertStore. An empty key deletes
// nothing: "everything" is never what a caller of Delete meant.
func (s *Store) DeleteCertBlobs(ctx context.Context, key string) error {
	if key == "" {
		return nil
	}
	if _, err := s.rw.ExecContext(ctx, `DELETE FROM cert_blobs WHERE `+underPrefix, prefixArgs(key)...); err != nil {
		return fmt.Errorf("store: delete cert blobs %s: %w", key, dbErr(err))
	}
	return nil
}

// AcquireCertLock implements store.CertStore in one statement: the insert
// wins a free lock; on a held one, the update applies only if the lease
// ended or the holder is the same. PostgreSQL makes a racing second insert
// wait for the first and then re-check the condition on the committed row;
// SQLite runs one writer at a time.
func (s *Store) AcquireCertLock(ctx context.Context, name, holder string, now, expires time.Time) (bool, error) {
	res, err := s.rw.ExecContext(ctx,
		`INSERT INTO cert_locks (name, holder, expires_ms) VALUES ($1, $2, $3)
		 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
		 WHERE cert_locks.expires_ms <= $4 OR cert_locks.holder = excluded.holder`,
		name, holder, expires.UnixMilli(), now.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("store: acquire cert lock %s: %w", name, dbErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: acquire cert lock %s: %w", name, err)
	}
	return n == 1, nil
}

// RenewCertLock implements store.CertStore.
func (s *Store) RenewCertLock(ctx context.Context, name, holder string, expires time.Time) error {
	err := mustAffect(s.rw.ExecContext(ctx,
		`UPDATE cert_locks SET expires_ms = $3 WHERE name = $1 AND holder = $2`,
		name, holder, expires.UnixMilli()))
	if err != nil {
		return fmt.Errorf("store: renew cert lock %s: %w", name, err)
	}
	return nil
}

// ReleaseCertLock implements store.CertStore.
func (s *Store) ReleaseCertLock(ctx context.Context, name, holder string) error {
	err := mustAffect(s.rw.ExecContext(ctx,
		`DELETE FROM cert_locks WHERE name = $1 AND holder = $2`, name, holder))
	if err != nil {
		return fmt.Errorf("store: release cert lock %s: %w", name, err)
	}
	return nil
}

// nonNil stores an empty value as an empty blob, not NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
