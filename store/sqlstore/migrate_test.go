package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exed-dev/exed/store"
)

// appliedMigrations reads schema_migrations with plain SQL.
func appliedMigrations(t *testing.T, dsn, dir string) []string {
	t.Helper()
	rows, err := rawDB(t, dsn, dir).Query(`SELECT version, name FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var v int
		var name string
		if err := rows.Scan(&v, &name); err != nil {
			t.Fatal(err)
		}
		got = append(got, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func allMigrations(t *testing.T, d dialect) []string {
	t.Helper()
	ms, err := d.migrations()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.name)
	}
	return names
}

func TestMigrationsInStep(t *testing.T) {
	// Both dialects carry the same versions, so a schema change cannot be
	// made for one backend and forgotten for the other.
	sq, pg := allMigrations(t, sqliteDialect), allMigrations(t, postgresDialect)
	if len(sq) == 0 || !reflect.DeepEqual(sq, pg) {
		t.Fatalf("sqlite migrations %v, postgres %v: want the same, non-empty", sq, pg)
	}
}

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			want := allMigrations(t, dialectOf(b))

			t.Run("Fresh", func(t *testing.T) {
				t.Parallel()
				dsn, dir := b.fresh(t)
				s, err := Open(ctx, dsn, dir)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				if got := appliedMigrations(t, dsn, dir); !reflect.DeepEqual(got, want) {
					t.Fatalf("applied %v, want %v", got, want)
				}
			})

			t.Run("Twice", func(t *testing.T) {
				t.Parallel()
				dsn, dir := b.fresh(t)
				s1, err := Open(ctx, dsn, dir)
				if err != nil {
					t.Fatal(err)
				}
				u := store.User{ID: store.NewUserID(), Email: "ada@example.com", CreatedAt: t0}
				if err := s1.AddUser(ctx, u, newKey(u.ID, "login"), ev("admin", "user.add", u.Email)); err != nil {
					t.Fatal(err)
				}
				s1.Close()
				s2, err := Open(ctx, dsn, dir)
				if err != nil {
					t.Fatalf("second Open: %v", err)
				}
				defer s2.Close()
				if got, err := s2.UserByID(ctx, u.ID); err != nil || got != u {
					t.Fatalf("user after reopening: %+v, %v", got, err)
				}
				if got := appliedMigrations(t, dsn, dir); !reflect.DeepEqual(got, want) {
					t.Fatalf("applied %v, want %v", got, want)
				}
			})

			t.Run("Concurrently", func(t *testing.T) {
				t.Parallel()
				dsn, dir := b.fresh(t)
				const opens = 4
				var wg sync.WaitGroup
				errs := make([]error, opens)
				for i := range opens {
					wg.Go(func() {
						s, err := Open(ctx, dsn, dir)
						if err == nil {
							err = s.Ping(ctx)
							s.Close()
						}
						errs[i] = err
					})
				}
				wg.Wait()
				if err := errors.Join(errs...); err != nil {
					t.Fatalf("concurrent Opens: %v", err)
				}
				if got := appliedMigrations(t, dsn, dir); !reflect.DeepEqual(got, want) {
					t.Fatalf("applied %v, want %v", got, want)
				}
			})

			// A registry made by the first release, with a user and its
			// event, migrated to today's schema: the rows stay, the old
			// event reads with no via or credential, and the log is still
			// append-only.
			t.Run("FromFirst", func(t *testing.T) {
				t.Parallel()
				dsn, dir := b.fresh(t)
				db := rawDB(t, dsn, dir) // an empty database: SQLite creates the file
				ms, err := dialectOf(b).migrations()
				if err != nil {
					t.Fatal(err)
				}
				for _, q := range []string{
					ms[0].sql,
					`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`,
					`INSERT INTO schema_migrations VALUES (1, '` + ms[0].name + `', 0)`,
					`INSERT INTO users (id, email, created_at) VALUES ('usrold0000000000', 'old@example.com', 1700000000)`,
					`INSERT INTO events (at, actor_id, action, subject, remote_addr) VALUES (1700000000, 'usrold0000000000', 'key.add', 'SHA256:x', '192.0.2.1:22')`,
				} {
					if _, err := db.Exec(q); err != nil {
						t.Fatalf("first release's schema: %v", err)
					}
				}
				s, err := Open(ctx, dsn, dir)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				if got := appliedMigrations(t, dsn, dir); !reflect.DeepEqual(got, want) {
					t.Fatalf("applied %v, want %v", got, want)
				}
				es, err := s.Events(ctx, 0, 10)
				wantEv := []store.Event{{ID: 1, Time: time.Unix(1700000000, 0).UTC(), ActorID: "usrold0000000000", Action: "key.add",
					Subject: "SHA256:x", RemoteAddr: "192.0.2.1:22", ActorEmail: "old@example.com"}}
				if err != nil || !reflect.DeepEqual(es, wantEv) {
					t.Fatalf("old events after migrating: %+v, %v", es, err)
				}
				for _, q := range []string{`UPDATE events SET via = 'ssh'`, `DELETE FROM events`} {
					if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
						t.Errorf("after migrating, %s: %v, want refused as append-only", q, err)
					}
				}
			})

			t.Run("NewerSchema", func(t *testing.T) {
				t.Parallel()
				dsn, dir := b.fresh(t)
				s, err := Open(ctx, dsn, dir)
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				if _, err := rawDB(t, dsn, dir).Exec(
					`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future.sql', 0)`); err != nil {
					t.Fatal(err)
				}
				_, err = Open(ctx, dsn, dir)
				if err == nil || !strings.Contains(err.Error(), "newer") {
					t.Fatalf("Open on a newer schema: %v, want a refusal", err)
				}
			})
		})
	}
}

func dialectOf(b testBackend) dialect {
	if b.name == "postgres" {
		return postgresDialect
	}
	return sqliteDialect
}

func TestOpenDSN(t *testing.T) {
	ctx := context.Background()

	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	// While it is open, the -wal file exists: it must be private too.
	wantMode(t, filepath.Join(dir, "exed.db-wal"), 0o600)
	s.Close()
	wantMode(t, dir, 0o700)
	wantMode(t, filepath.Join(dir, "exed.db"), 0o600)

	path := filepath.Join(t.TempDir(), "other.db")
	s, err = Open(ctx, "sqlite:"+path, "")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("sqlite:PATH did not create %s: %v", path, err)
	}

	for _, dsn := range []string{"mysql://u:hunter2@h/db", "postgre://u:hunter2@h/db", "hunter2", "sqlite:", "sqlite:/tmp/a?b"} {
		_, err := Open(ctx, dsn, t.TempDir())
		if err == nil {
			t.Fatalf("Open(%q): no error", dsn)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q): error repeats the password: %v", dsn, err)
		}
	}
	// A PostgreSQL that does not answer: the error names no password.
	_, err = Open(ctx, "postgres://exed:hunter2@127.0.0.1:1/exed?connect_timeout=5", "")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Open(unreachable PostgreSQL): %v", err)
	}
	if _, err := Open(ctx, "", ""); err == nil {
		t.Fatal(`Open("", ""): no error`)
	}
}

type pragmaQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func wantMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Fatalf("%s: mode %v, want %v", filepath.Base(path), got, want)
	}
}

// TestSQLitePragmas checks that every pooled connection, not just the
// first, runs with the settings durability and integrity depend on.
func TestSQLitePragmas(t *testing.T) {
	ctx := context.Background()
	s, err := openSQLite(ctx, filepath.Join(t.TempDir(), "x.db"), "FULL")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Connections are held until check returns, so each one is distinct.
	check := func(name string, conns int, get func() (pragmaQuerier, func())) {
		var release []func()
		defer func() {
			for _, r := range release {
				r()
			}
		}()
		for i := range conns {
			q, done := get()
			release = append(release, done)
			for pragma, want := range map[string]string{
				"journal_mode": "wal",
				"foreign_keys": "1",
				"synchronous":  "2", // FULL
				"busy_timeout": "5000",
			} {
				var got string
				if err := q.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("%s conn %d: %s = %s, want %s", name, i, pragma, got, want)
				}
			}
		}
	}
	check("reader", 3, func() (pragmaQuerier, func()) {
		c, err := s.ro.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c, func() { c.Close() }
	})
	check("writer", 1, func() (pragmaQuerier, func()) {
		c, err := s.rw.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c, func() { c.Close() }
	})
	// Readers cannot write, whatever a future query tries.
	if _, err := s.ro.ExecContext(ctx, `DELETE FROM users`); err == nil {
		t.Error("a reader connection could write")
	}
}
