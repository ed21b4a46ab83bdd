package sqlstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/exed-dev/exed/store"
)

// Login links, magic secrets and browser sessions (store.SessionStore).
// A redemption is one DELETE … RETURNING whose WHERE holds every condition
// (hash, host, not expired): the database hands the row to exactly one of
// two concurrent redemptions, and the other finds nothing.

// AddLoginLink implements store.SessionStore. It announces nothing: a link
// is only ever looked up by redeeming it.
func (s *Store) AddLoginLink(ctx context.Context, l store.LoginLink, e store.Event) error {
	cmds, err := encodeCmds(l.Cmds)
	if err != nil {
		return fmt.Errorf("store: add login link: %w", err)
	}
	return s.write(ctx, "add login link", e, nil, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `
			INSERT INTO login_links (hash, user_id, fingerprint, only_vm, cmds, target_vm, path,
				created_at, expires_at, session_expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			l.Hash, l.UserID, l.Fingerprint, nullString(l.OnlyVM), cmds, nullString(l.TargetVM), l.Path,
			l.CreatedAt.Unix(), l.ExpiresAt.Unix(), l.SessionExpiresAt.Unix())
		return err
	})
}

// RedeemLoginLink implements store.SessionStore.
func (s *Store) RedeemLoginLink(ctx context.Context, hash []byte, now time.Time, sess store.Session, e store.Event) (store.LoginLink, store.Session, error) {
	var l store.LoginLink
	err := s.writeFilling(ctx, "redeem login link", &e, func(tx *sql.Tx) ([]store.Change, error) {
		var onlyVM, cmds, targetVM sql.NullString
		var created, expires, sessExpires int64
		err := tx.QueryRowContext(ctx, `
			DELETE FROM login_links WHERE hash = $1 AND expires_at > $2
			RETURNING hash, user_id, fingerprint, only_vm, cmds, target_vm, path, created_at, expires_at, session_expires_at`,
			hash, now.Unix()).Scan(&l.Hash, &l.UserID, &l.Fingerprint, &onlyVM, &cmds, &targetVM, &l.Path,
			&created, &expires, &sessExpires)
		if err != nil {
			return nil, err // ErrNotFound: unknown, used or expired
		}
		if l.Cmds, err = decodeCmds(cmds); err != nil {
			return nil, err
		}
		l.OnlyVM, l.TargetVM = onlyVM.String, targetVM.String
		l.CreatedAt, l.ExpiresAt, l.SessionExpiresAt = fromUnix(created), fromUnix(expires), fromUnix(sessExpires)
		sess.UserID, sess.Fingerprint, sess.OnlyVM, sess.Cmds = l.UserID, l.Fingerprint, l.OnlyVM, l.Cmds
		sess.ExpiresAt = earlier(sess.ExpiresAt, l.SessionExpiresAt)
		if e.ActorID == "" {
			e.ActorID = l.UserID
		}
		return nil, insertSession(ctx, tx, sess)
	})
	if err != nil {
		return store.LoginLink{}, store.Session{}, err
	}
	return l, sess, nil
}

// AddMagicSecret implements store.SessionStore. It announces nothing.
func (s *Store) AddMagicSecret(ctx context.Context, m store.MagicSecret, e store.Event) error {
	return s.write(ctx, "add magic secret", e, nil, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `
			INSERT INTO magic_secrets (hash, user_id, host, vm, fingerprint, only_vm,
				created_at, expires_at, session_expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			m.Hash, m.UserID, m.Host, m.VM, m.Fingerprint, nullString(m.OnlyVM),
			m.CreatedAt.Unix(), m.ExpiresAt.Unix(), m.SessionExpiresAt.Unix())
		return err
	})
}

// RedeemMagicSecret implements store.SessionStore.
func (s *Store) RedeemMagicSecret(ctx context.Context, hash []byte, host string, now time.Time, sess store.Session, e store.Event) (store.Session, error) {
	err := s.writeFilling(ctx, "redeem magic secret", &e, func(tx *sql.Tx) ([]store.Change, error) {
		var onlyVM sql.NullString
		var sessExpires int64
		err := tx.QueryRowContext(ctx, `
			DELETE FROM magic_secrets WHERE hash = $1 AND host = $2 AND expires_at > $3
			RETURNING user_id, vm, fingerprint, only_vm, session_expires_at`,
			hash, host, now.Unix()).Scan(&sess.UserID, &sess.VM, &sess.Fingerprint, &onlyVM, &sessExpires)
		if err != nil {
			return nil, err // ErrNotFound: unknown, used, expired or for another host
		}
		sess.OnlyVM, sess.ExpiresAt = onlyVM.String, earlier(sess.ExpiresAt, fromUnix(sessExpires))
		if e.ActorID == "" {
			e.ActorID = sess.UserID
		}
		return nil, insertSession(ctx, tx, sess)
	})
	if err != nil {
		return store.Session{}, err
	}
	return sess, nil
}

func insertSession(ctx context.Context, tx *sql.Tx, s store.Session) error {
	cmds, err := encodeCmds(s.Cmds)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `
		INSERT INTO sessions (id, hash, user_id, host, cookie_name, vm, fingerprint, only_vm, cmds,
			created_at, expires_at, last_used_at, user_agent)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		s.ID, s.Hash, s.UserID, s.Host, s.CookieName, nullString(s.VM), s.Fingerprint, nullString(s.OnlyVM), cmds,
		s.CreatedAt.Unix(), s.ExpiresAt.Unix(), nullTime(s.LastUsedAt), s.UserAgent)
	return err
}

const (
	sessionColumns = `sessions.id, sessions.hash, sessions.user_id, sessions.host, sessions.cookie_name,
	sessions.vm, sessions.fingerprint, sessions.only_vm, sessions.cmds, sessions.created_at, sessions.expires_at,
	sessions.last_used_at, sessions.user_agent`
	sessionAndUserQuery = `SELECT ` + sessionColumns + `, u.email, u.created_at
		FROM sessions JOIN users u ON u.id = sessions.user_id WHERE sessions.hash = $1`
)

// sessionRow is a row of sessionColumns as scanned.
type sessionRow struct {
	s                store.Session
	vm, onlyVM, cmds sql.NullString
	created, expires int64
	lastUsed         sql.NullInt64
}

func (r *sessionRow) dest() []any {
	return []any{&r.s.ID, &r.s.Hash, &r.s.UserID, &r.s.Host, &r.s.CookieName, &r.vm, &r.s.Fingerprint,
		&r.onlyVM, &r.cmds, &r.created, &r.expires, &r.lastUsed, &r.s.UserAgent}
}

func (r *sessionRow) session() (store.Session, error) {
	s := r.s
	s.VM, s.OnlyVM = r.vm.String, r.onlyVM.String
	s.CreatedAt, s.ExpiresAt, s.LastUsedAt = fromUnix(r.created), fromUnix(r.expires), fromNullUnix(r.lastUsed)
	var err error
	s.Cmds, err = decodeCmds(r.cmds)
	return s, err
}

// SessionAndUser implements store.SessionStore.
func (s *Store) SessionAndUser(ctx context.Context, hash []byte) (store.Session, store.User, error) {
	var r sessionRow
	var u store.User
	var userCreated int64
	if err := s.pointRead(ctx, s.q.sessionAndUser, hash).Scan(append(r.dest(), &u.Email, &userCreated)...); err != nil {
		// The hash is not the cookie, but there is no need to print it.
		return store.Session{}, store.User{}, fmt.Errorf("store: session: %w", dbErr(err))
	}
	sess, err := r.session()
	if err != nil {
		return store.Session{}, store.User{}, fmt.Errorf("store: session: %w", err)
	}
	u.ID, u.CreatedAt = sess.UserID, fromUnix(userCreated)
	return sess, u, nil
}

// Sessions implements store.SessionStore.
func (s *Store) Sessions(ctx context.Context, userID string) ([]store.Session, error) {
	rows, err := s.ro.QueryContext(ctx,
		`SELECT `+sessionColumns+` FROM sessions WHERE user_id = $1 ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, fmt.Errorf("store: sessions of %s: %w", userID, err)
	}
	defer rows.Close()
	var ss []store.Session
	for rows.Next() {
		var r sessionRow
		if err := rows.Scan(r.dest()...); err != nil {
			return nil, fmt.Errorf("store: sessions of %s: %w", userID, err)
		}
		sess, err := r.session()
		if err != nil {
			return nil, fmt.Errorf("store: sessions of %s: %w", userID, err)
		}
		ss = append(ss, sess)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: sessions of %s: %w", userID, err)
	}
	return ss, nil
}

// RevokeSession implements store.SessionStore; it announces SessionChanged.
func (s *Store) RevokeSession(ctx context.Context, userID, id string, e store.Event) error {
	return s.writeChanges(ctx, "revoke session "+id, e, func(tx *sql.Tx) ([]store.Change, error) {
		changes, err := deleteSessions(ctx, tx, `DELETE FROM sessions WHERE id = $1 AND user_id = $2 RETURNING hash`, id, userID)
		if err == nil && len(changes) == 0 {
			err = store.ErrNotFound
		}
		return changes, err
	})
}

// RevokeSessions implements store.SessionStore; it announces
// SessionChanged for each session.
func (s *Store) RevokeSessions(ctx context.Context, userID string, e store.Event) (int, error) {
	var n int
	err := s.writeChanges(ctx, "revoke sessions of "+userID, e, func(tx *sql.Tx) ([]store.Change, error) {
		changes, err := deleteSessions(ctx, tx, `DELETE FROM sessions WHERE user_id = $1 RETURNING hash`, userID)
		n = len(changes)
		return changes, err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// deleteSessions runs a DELETE … RETURNING hash and returns a
// SessionChanged for each row it deleted.
func deleteSessions(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]store.Change, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var changes []store.Change
	for rows.Next() {
		var hash []byte
		if err := rows.Scan(&hash); err != nil {
			return nil, err
		}
		changes = append(changes, store.Change{Kind: store.SessionChanged, ID: hex.EncodeToString(hash)})
	}
	return changes, rows.Err()
}

// TouchSessions implements store.SessionStore. It announces nothing.
func (s *Store) TouchSessions(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	// A fixed order, as in TouchKeys: no deadlock between instances.
	hashes := make([]string, 0, len(used))
	for h := range used {
		hashes = append(hashes, h)
	}
	slices.Sort(hashes)
	tx, err := s.rw.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: touch sessions: begin: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `UPDATE sessions SET last_used_at = $1
		WHERE hash = $2 AND (last_used_at IS NULL OR last_used_at < $1)`)
	if err != nil {
		return fmt.Errorf("store: touch sessions: %w", err)
	}
	defer stmt.Close()
	for _, h := range hashes {
		if _, err := stmt.ExecContext(ctx, used[h].Unix(), []byte(h)); err != nil {
			return fmt.Errorf("store: touch session: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: touch sessions: commit: %w", err)
	}
	return nil
}

// PurgeExpired implements store.SessionStore; it announces SessionChanged
// for each session it deletes.
func (s *Store) PurgeExpired(ctx context.Context, now time.Time) (int, error) {
	tx, err := s.rw.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("store: purge expired: begin: %w", err)
	}
	defer tx.Rollback()
	for _, q := range []string{
		`DELETE FROM login_links WHERE expires_at <= $1`,
		`DELETE FROM magic_secrets WHERE expires_at <= $1`,
	} {
		if _, err := tx.ExecContext(ctx, q, now.Unix()); err != nil {
			return 0, fmt.Errorf("store: purge expired: %w", err)
		}
	}
	changes, err := deleteSessions(ctx, tx, `DELETE FROM sessions WHERE expires_at <= $1 RETURNING hash`, now.Unix())
	if err != nil {
		return 0, fmt.Errorf("store: purge expired sessions: %w", err)
	}
	if err := s.commit(ctx, tx, changes); err != nil {
		return 0, fmt.Errorf("store: purge expired: %w", err)
	}
	return len(changes), nil
}

// earlier is the earlier of a session's own expiry (zero: none asked for)
// and the bound its link or secret carries.
func earlier(asked, bound time.Time) time.Time {
	if asked.IsZero() || bound.Before(asked) {
		return bound
	}
	return asked
}
