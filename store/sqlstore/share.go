package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/exed-dev/exed/store"
)

// AddShare implements store.ShareStore; an active share announces
// ShareChanged (a pending one changes nobody's access).
func (s *Store) AddShare(ctx context.Context, vm, email string, at time.Time, e store.Event) (store.Share, error) {
	sh := store.Share{VM: vm, Email: email, InvitedAt: at.UTC().Truncate(time.Second)}
	err := s.writeChanges(ctx, "share VM "+vm, e, func(tx *sql.Tx) ([]store.Change, error) {
		// Serialised with AddUser: see lockEarly.
		if err := s.lockEarly(ctx, tx); err != nil {
			return nil, err
		}
		var owner string
		if err := tx.QueryRowContext(ctx, `SELECT owner_id FROM vms WHERE name = $1`, vm).Scan(&owner); err != nil {
			return nil, err // ErrNotFound for no such VM
		}
		var uid, uemail string
		err := tx.QueryRowContext(ctx, `SELECT id, email FROM users WHERE lower(email) = lower($1)`, email).Scan(&uid, &uemail)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err := tx.ExecContext(ctx, `INSERT INTO pending_shares (vm, email, invited_at) VALUES ($1, $2, $3)`,
				vm, email, sh.InvitedAt.Unix())
			return nil, err
		case err != nil:
			return nil, err
		case uid == owner:
			return nil, store.ErrSelfShare
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO shares (vm, user_id, invited_at) VALUES ($1, $2, $3)`,
			vm, uid, sh.InvitedAt.Unix()); err != nil {
			return nil, err
		}
		sh.UserID, sh.Email = uid, uemail
		return shareChanged(vm), nil
	})
	if err != nil {
		return store.Share{}, err
	}
	return sh, nil
}

// RemoveShare implements store.ShareStore; ending an active share
// announces ShareChanged.
func (s *Store) RemoveShare(ctx context.Context, vm, email string, e store.Event) error {
	return s.writeChanges(ctx, "unshare VM "+vm, e, func(tx *sql.Tx) ([]store.Change, error) {
		res, err := tx.ExecContext(ctx, `DELETE FROM shares WHERE vm = $1
			AND user_id IN (SELECT id FROM users WHERE lower(email) = lower($2))`, vm, email)
		if err != nil {
			return nil, err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return shareChanged(vm), err
		}
		return nil, mustAffect(tx.ExecContext(ctx,
			`DELETE FROM pending_shares WHERE vm = $1 AND lower(email) = lower($2)`, vm, email))
	})
}

// Shares implements store.ShareStore.
func (s *Store) Shares(ctx context.Context, vm string) ([]store.Share, error) {
	rows, err := s.ro.QueryContext(ctx, `
		SELECT u.email, s.user_id, s.invited_at FROM shares s JOIN users u ON u.id = s.user_id WHERE s.vm = $1
		UNION ALL
		SELECT p.email, '', p.invited_at FROM pending_shares p WHERE p.vm = $1
		ORDER BY 3, 1`, vm)
	if err != nil {
		return nil, fmt.Errorf("store: shares of %s: %w", vm, err)
	}
	defer rows.Close()
	var shs []store.Share
	for rows.Next() {
		sh := store.Share{VM: vm}
		var at int64
		if err := rows.Scan(&sh.Email, &sh.UserID, &at); err != nil {
			return nil, fmt.Errorf("store: shares of %s: %w", vm, err)
		}
		sh.InvitedAt = fromUnix(at)
		shs = append(shs, sh)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: shares of %s: %w", vm, err)
	}
	return shs, nil
}

// SharedVMs implements store.ShareStore.
func (s *Store) SharedVMs(ctx context.Context, userID string) ([]store.SharedVM, error) {
	rows, err := s.ro.QueryContext(ctx, `SELECT `+vmColumns+`, o.email`+vmFrom+`
		JOIN users o ON o.id = v.owner_id
		WHERE v.name IN (SELECT vm FROM shares WHERE user_id = $1)`+vmOrder, userID)
	if err != nil {
		return nil, fmt.Errorf("store: VMs shared with %s: %w", userID, err)
	}
	defer rows.Close()
	var (
		vms   []store.SharedVM
		owner string
	)
	if err := scanVMs(rows, []any{&owner}, func(vm store.VM) {
		vms = append(vms, store.SharedVM{VM: vm, OwnerEmail: owner})
	}); err != nil {
		return nil, fmt.Errorf("store: VMs shared with %s: %w", userID, err)
	}
	return vms, nil
}

// SetVMPublic implements store.ShareStore; it announces VMChanged.
func (s *Store) SetVMPublic(ctx context.Context, vm string, public bool, e store.Event) error {
	return s.write(ctx, "set VM "+vm+" public", e, vmChanged(vm), func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `UPDATE vms SET public = $1 WHERE name = $2`, public, vm))
	})
}

// AddShareLink implements store.ShareStore. It announces nothing: a link
// is looked up only when used.
func (s *Store) AddShareLink(ctx context.Context, l store.ShareLink, e store.Event) error {
	return s.write(ctx, "add share link to "+l.VM, e, nil, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO share_links (id, name, vm, created_at) VALUES ($1, $2, $3, $4)`,
			l.ID, l.Name, l.VM, l.CreatedAt.Unix())
		return err
	})
}

// RemoveShareLink implements store.ShareStore. It announces nothing: the
// shares the link made stay.
func (s *Store) RemoveShareLink(ctx context.Context, vm string, id []byte, e store.Event) error {
	return s.write(ctx, "remove share link of "+vm, e, nil, func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `DELETE FROM share_links WHERE vm = $1 AND id = $2`, vm, id))
	})
}

const shareLinkColumns = `id, name, vm, created_at, use_count, last_used_at`

func scanShareLink(row interface{ Scan(...any) error }) (store.ShareLink, error) {
	var l store.ShareLink
	var created int64
	var used sql.NullInt64
	if err := row.Scan(&l.ID, &l.Name, &l.VM, &created, &l.UseCount, &used); err != nil {
		return store.ShareLink{}, err
	}
	l.CreatedAt, l.LastUsedAt = fromUnix(created), fromNullUnix(used)
	return l, nil
}

// ShareLinks implements store.ShareStore.
func (s *Store) ShareLinks(ctx context.Context, vm string) ([]store.ShareLink, error) {
	rows, err := s.ro.QueryContext(ctx,
		`SELECT `+shareLinkColumns+` FROM share_links WHERE vm = $1 ORDER BY created_at, name`, vm)
	if err != nil {
		return nil, fmt.Errorf("store: share links of %s: %w", vm, err)
	}
	defer rows.Close()
	var ls []store.ShareLink
	for rows.Next() {
		l, err := scanShareLink(rows)
		if err != nil {
			return nil, fmt.Errorf("store: share links of %s: %w", vm, err)
		}
		ls = append(ls, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: share links of %s: %w", vm, err)
	}
	return ls, nil
}

// UseShareLink implements store.ShareStore; a share it makes announces
// ShareChanged.
func (s *Store) UseShareLink(ctx context.Context, vm string, id []byte, userID string, at time.Time, e store.Event) (store.ShareLink, error) {
	var l store.ShareLink
	err := s.writeChanges(ctx, "use share link of "+vm, e, func(tx *sql.Tx) ([]store.Change, error) {
		if err := mustAffect(tx.ExecContext(ctx,
			`UPDATE share_links SET use_count = use_count + 1, last_used_at = $1 WHERE vm = $2 AND id = $3`,
			at.Unix(), vm, id)); err != nil {
			return nil, err
		}
		var err error
		if l, err = scanShareLink(tx.QueryRowContext(ctx,
			`SELECT `+shareLinkColumns+` FROM share_links WHERE vm = $1 AND id = $2`, vm, id)); err != nil {
			return nil, err
		}
		// The owner needs no share; anyone else keeps the one they have.
		res, err := tx.ExecContext(ctx, `INSERT INTO shares (vm, user_id, invited_at)
			SELECT name, $1, $2 FROM vms WHERE name = $3 AND owner_id <> $1
			ON CONFLICT DO NOTHING`, userID, at.Unix(), vm)
		if err != nil {
			return nil, err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return nil, err
		}
		return shareChanged(vm), nil
	})
	if err != nil {
		return store.ShareLink{}, err
	}
	return l, nil
}

// shareChanged is the one change a write to VM name's shares announces.
func shareChanged(name string) []store.Change {
	return []store.Change{{Kind: store.ShareChanged, ID: name}}
}
