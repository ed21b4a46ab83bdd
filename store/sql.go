package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// sqlStore implements Store over database/sql for both dialects.
type sqlStore struct {
	d  dialect
	rw *sql.DB // writes (and reads inside write transactions)
	ro *sql.DB // reads; the same pool as rw for PostgreSQL
	q  reads   // prepared on ro

	group groupCommit // AddTokenKey's, on SQLite
}

var _ Store = (*sqlStore)(nil)

// reads are the hot read queries (every uncached token check, every proxied
// request's VM), prepared once at Open: parsing a query cost SQLite about as
// much as running it. database/sql prepares each again, lazily, on every
// pooled connection that runs it.
type reads struct {
	key, keyAndUser, userByID, vm, exe1 *sql.Stmt
}

const (
	keyQuery        = `SELECT ` + keyColumns + ` FROM keys WHERE fingerprint = $1`
	keyAndUserQuery = `SELECT ` + keyColumns + `, u.id, u.email, u.created_at
		FROM keys LEFT JOIN users u ON u.id = keys.user_id WHERE fingerprint = $1`
	userByIDQuery = `SELECT ` + userColumns + ` FROM users WHERE id = $1`
	vmQuery       = `SELECT ` + vmColumns + ` FROM vms WHERE name = $1`
	exe1Query     = `SELECT id, fingerprint, sealed, created_at FROM exe1 WHERE id = $1`
)

// pointRead runs one of s.q with args. A ctx already done still fails it.
func (s *sqlStore) pointRead(ctx context.Context, st *sql.Stmt, args ...any) *sql.Row {
	if s.d.detachReads && ctx.Err() == nil {
		ctx = context.WithoutCancel(ctx)
	}
	return st.QueryRowContext(ctx, args...)
}

// prepare prepares s.q on the read pool; the tables must exist.
func (s *sqlStore) prepare(ctx context.Context) error {
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&s.q.key, keyQuery},
		{&s.q.keyAndUser, keyAndUserQuery},
		{&s.q.userByID, userByIDQuery},
		{&s.q.vm, vmQuery},
		{&s.q.exe1, exe1Query},
	} {
		st, err := s.ro.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("store: prepare %q: %w", p.query, err)
		}
		*p.stmt = st
	}
	return nil
}

// write runs fn in a transaction, appends e in that same transaction, and
// commits. Errors come back mapped by dbErr and wrapped with op.
func (s *sqlStore) write(ctx context.Context, op string, e Event, fn func(tx *sql.Tx) error) error {
	tx, err := s.rw.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: %s: begin: %w", op, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return fmt.Errorf("store: %s: %w", op, dbErr(err))
	}
	// Last, so that PostgreSQL's event lock is held only until the commit
	// right after it.
	if s.d.lockEvents != "" {
		if _, err := tx.ExecContext(ctx, s.d.lockEvents); err != nil {
			return fmt.Errorf("store: %s: lock events: %w", op, err)
		}
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO events (at, actor_id, action, subject, remote_addr) VALUES ($1, $2, $3, $4, $5)`,
		e.Time.Unix(), e.ActorID, e.Action, e.Subject, e.RemoteAddr); err != nil {
		return fmt.Errorf("store: %s: append event: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: %s: commit: %w", op, dbErr(err))
	}
	return nil
}

// mustAffect turns a statement that matched no row into ErrNotFound.
func mustAffect(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *sqlStore) AddUser(ctx context.Context, u User, first Key, e Event) error {
	if first.UserID != u.ID {
		return fmt.Errorf("store: add user %s: first key belongs to %q", u.ID, first.UserID)
	}
	if first.Generated {
		return fmt.Errorf("store: add user %s: first key must be a login key", u.ID)
	}
	return s.write(ctx, "add user "+u.ID, e, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3)`,
			u.ID, u.Email, u.CreatedAt.Unix()); err != nil {
			return err
		}
		return insertKey(ctx, tx, first)
	})
}

const userColumns = `id, email, created_at`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	var created int64
	if err := row.Scan(&u.ID, &u.Email, &created); err != nil {
		return User{}, dbErr(err)
	}
	u.CreatedAt = fromUnix(created)
	return u, nil
}

func (s *sqlStore) UserByID(ctx context.Context, id string) (User, error) {
	u, err := scanUser(s.pointRead(ctx, s.q.userByID, id))
	if err != nil {
		return User{}, fmt.Errorf("store: user %s: %w", id, err)
	}
	return u, nil
}

func (s *sqlStore) UserByEmail(ctx context.Context, email string) (User, error) {
	u, err := scanUser(s.ro.QueryRowContext(ctx,
		`SELECT `+userColumns+` FROM users WHERE lower(email) = lower($1)`, email))
	if err != nil {
		return User{}, fmt.Errorf("store: user %s: %w", email, err)
	}
	return u, nil
}

func (s *sqlStore) Users(ctx context.Context) ([]UserSummary, error) {
	rows, err := s.ro.QueryContext(ctx, `
		SELECT u.id, u.email, u.created_at, COUNT(k.fingerprint)
		FROM users u LEFT JOIN keys k ON k.user_id = u.id
		GROUP BY u.id, u.email, u.created_at
		ORDER BY u.created_at, u.id`)
	if err != nil {
		return nil, fmt.Errorf("store: users: %w", err)
	}
	defer rows.Close()
	var us []UserSummary
	for rows.Next() {
		var u UserSummary
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

func insertKey(ctx context.Context, tx *sql.Tx, k Key) error {
	cmds, err := encodeCmds(k.Cmds)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `
		INSERT INTO keys (fingerprint, user_id, name, public_key, added_at, last_used_at,
			generated, vm, cmds, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		k.Fingerprint, k.UserID, k.Name, k.PublicKey, k.AddedAt.Unix(), nullTime(k.LastUsedAt),
		k.Generated, nullString(k.VM), cmds, nullTime(k.ExpiresAt))
	return err
}

func (s *sqlStore) AddKey(ctx context.Context, k Key, e Event) error {
	return s.write(ctx, "add key "+k.Fingerprint, e, func(tx *sql.Tx) error {
		return insertKey(ctx, tx, k)
	})
}

func (s *sqlStore) AddTokenKey(ctx context.Context, k Key, h *Exe1, e Event) error {
	if h != nil && h.Fingerprint != k.Fingerprint {
		return fmt.Errorf("store: add token key %s: exe1 handle is for %s", k.Fingerprint, h.Fingerprint)
	}
	if s.d.name == "sqlite" { // one writer: its commits queue anyway
		return s.addTokenKeyGrouped(ctx, k, h, e)
	}
	return s.write(ctx, "add token key "+k.Fingerprint, e, func(tx *sql.Tx) error {
		if err := insertKey(ctx, tx, k); err != nil {
			return err
		}
		if h == nil {
			return nil
		}
		return insertExe1(ctx, tx, *h)
	})
}

const keyColumns = `user_id, name, fingerprint, public_key, added_at, last_used_at,
	generated, vm, cmds, expires_at`

// keyRow is a row of keyColumns as scanned, before decoding.
type keyRow struct {
	k                 Key
	added             int64
	lastUsed, expires sql.NullInt64
	vm, cmds          sql.NullString
}

// dest returns Scan's destinations for keyColumns.
func (r *keyRow) dest() []any {
	return []any{&r.k.UserID, &r.k.Name, &r.k.Fingerprint, &r.k.PublicKey, &r.added, &r.lastUsed,
		&r.k.Generated, &r.vm, &r.cmds, &r.expires}
}

func (r *keyRow) key() (Key, error) {
	k := r.k
	k.AddedAt = fromUnix(r.added)
	k.LastUsedAt = fromNullUnix(r.lastUsed)
	k.ExpiresAt = fromNullUnix(r.expires)
	k.VM = r.vm.String
	if r.cmds.Valid {
		if err := json.Unmarshal([]byte(r.cmds.String), &k.Cmds); err != nil {
			return Key{}, fmt.Errorf("decode cmds: %w", err)
		}
		if k.Cmds == nil { // stored "null": not something we write
			return Key{}, errors.New("decode cmds: null")
		}
	}
	return k, nil
}

func scanKey(row interface{ Scan(...any) error }) (Key, error) {
	var r keyRow
	if err := row.Scan(r.dest()...); err != nil {
		return Key{}, dbErr(err)
	}
	return r.key()
}

func (s *sqlStore) Key(ctx context.Context, fingerprint string) (Key, error) {
	k, err := scanKey(s.pointRead(ctx, s.q.key, fingerprint))
	if err != nil {
		return Key{}, fmt.Errorf("store: key %s: %w", fingerprint, err)
	}
	return k, nil
}

func (s *sqlStore) KeyAndUser(ctx context.Context, fingerprint string) (Key, User, error) {
	var r keyRow
	var uid, email sql.NullString // NULL: the key's user is missing
	var created sql.NullInt64
	err := s.pointRead(ctx, s.q.keyAndUser, fingerprint).Scan(append(r.dest(), &uid, &email, &created)...)
	if err != nil {
		return Key{}, User{}, fmt.Errorf("store: key %s: %w", fingerprint, dbErr(err))
	}
	k, err := r.key()
	if err != nil {
		return Key{}, User{}, fmt.Errorf("store: key %s: %w", fingerprint, err)
	}
	if !uid.Valid {
		return k, User{}, fmt.Errorf("store: user %s of key %s: %w", k.UserID, fingerprint, ErrNotFound)
	}
	return k, User{ID: uid.String, Email: email.String, CreatedAt: fromUnix(created.Int64)}, nil
}

func (s *sqlStore) Keys(ctx context.Context, userID string) ([]Key, error) {
	rows, err := s.ro.QueryContext(ctx,
		`SELECT `+keyColumns+` FROM keys WHERE user_id = $1 ORDER BY added_at, name`, userID)
	if err != nil {
		return nil, fmt.Errorf("store: keys of %s: %w", userID, err)
	}
	defer rows.Close()
	var ks []Key
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

func (s *sqlStore) RemoveKey(ctx context.Context, userID, fingerprint string, e Event) error {
	return s.write(ctx, "remove key "+fingerprint, e, func(tx *sql.Tx) error {
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
				return ErrLastKey
			}
		}
		// exe1 rows go with the key (ON DELETE CASCADE).
		return mustAffect(tx.ExecContext(ctx,
			`DELETE FROM keys WHERE fingerprint = $1 AND user_id = $2`, fingerprint, userID))
	})
}

func (s *sqlStore) RenameKey(ctx context.Context, userID, fingerprint, newName string, e Event) error {
	return s.write(ctx, "rename key "+fingerprint, e, func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx,
			`UPDATE keys SET name = $1 WHERE fingerprint = $2 AND user_id = $3`,
			newName, fingerprint, userID))
	})
}

func (s *sqlStore) TouchKeys(ctx context.Context, used map[string]time.Time) error {
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

func insertExe1(ctx context.Context, tx *sql.Tx, h Exe1) error {
	_, err := tx.ExecContext(ctx,
		`INSERT INTO exe1 (id, fingerprint, sealed, created_at) VALUES ($1, $2, $3, $4)`,
		h.ID, h.Fingerprint, h.Sealed, h.CreatedAt.Unix())
	return err
}

func (s *sqlStore) AddExe1(ctx context.Context, h Exe1, e Event) error {
	return s.write(ctx, "add exe1 for "+h.Fingerprint, e, func(tx *sql.Tx) error {
		return insertExe1(ctx, tx, h)
	})
}

func (s *sqlStore) Exe1(ctx context.Context, id []byte) (Exe1, error) {
	var h Exe1
	var created int64
	err := s.pointRead(ctx, s.q.exe1, id).Scan(&h.ID, &h.Fingerprint, &h.Sealed, &created)
	if err != nil {
		// The id is a hash, not the handle, but there is no need to print it.
		return Exe1{}, fmt.Errorf("store: exe1: %w", dbErr(err))
	}
	h.CreatedAt = fromUnix(created)
	return h, nil
}

func (s *sqlStore) AddVM(ctx context.Context, vm VM, e Event) error {
	return s.write(ctx, "add VM "+vm.Name, e, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO vms (name, owner_id, upstream, public, created_at) VALUES ($1, $2, $3, $4, $5)`,
			vm.Name, vm.OwnerID, vm.Upstream, vm.Public, vm.CreatedAt.Unix())
		return err
	})
}

const vmColumns = `name, owner_id, upstream, public, created_at`

func scanVM(row interface{ Scan(...any) error }) (VM, error) {
	var vm VM
	var created int64
	if err := row.Scan(&vm.Name, &vm.OwnerID, &vm.Upstream, &vm.Public, &created); err != nil {
		return VM{}, dbErr(err)
	}
	vm.CreatedAt = fromUnix(created)
	return vm, nil
}

func (s *sqlStore) VM(ctx context.Context, name string) (VM, error) {
	vm, err := scanVM(s.pointRead(ctx, s.q.vm, name))
	if err != nil {
		return VM{}, fmt.Errorf("store: VM %s: %w", name, err)
	}
	return vm, nil
}

func (s *sqlStore) VMs(ctx context.Context, ownerID string) ([]VM, error) {
	rows, err := s.ro.QueryContext(ctx,
		`SELECT `+vmColumns+` FROM vms WHERE $1 = '' OR owner_id = $1 ORDER BY name`, ownerID)
	if err != nil {
		return nil, fmt.Errorf("store: VMs: %w", err)
	}
	defer rows.Close()
	var vms []VM
	for rows.Next() {
		vm, err := scanVM(rows)
		if err != nil {
			return nil, fmt.Errorf("store: VMs: %w", err)
		}
		vms = append(vms, vm)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: VMs: %w", err)
	}
	return vms, nil
}

func (s *sqlStore) RemoveVM(ctx context.Context, name string, e Event) error {
	return s.write(ctx, "remove VM "+name, e, func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `DELETE FROM vms WHERE name = $1`, name))
	})
}

func (s *sqlStore) Events(ctx context.Context, after int64, limit int) ([]Event, error) {
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
	var es []Event
	for rows.Next() {
		var e Event
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

func (s *sqlStore) Ping(ctx context.Context) error {
	if err := s.ro.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

func (s *sqlStore) Close() error {
	var err error
	for _, st := range []*sql.Stmt{s.q.key, s.q.keyAndUser, s.q.userByID, s.q.vm, s.q.exe1} {
		if st != nil { // nil: Open failed before preparing it
			err = errors.Join(err, st.Close())
		}
	}
	err = errors.Join(err, s.rw.Close())
	if s.ro != s.rw {
		err = errors.Join(err, s.ro.Close())
	}
	return err
}

// Times are stored as integer unix seconds; zero (never, none) as NULL.

func fromUnix(sec int64) time.Time { return time.Unix(sec, 0).UTC() }

func nullTime(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.Unix(), Valid: true}
}

func fromNullUnix(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromUnix(n.Int64)
}

func nullString(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
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
