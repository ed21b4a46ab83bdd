package sqlstore

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/exed-dev/exed/internal/testkit"
)

// A testBackend makes fresh, empty databases of one kind.
type testBackend struct {
	name string
	// fresh returns the DSN and data dir of a new empty database, dropped
	// when the test ends.
	fresh func(t testing.TB) (dsn, dataDir string)
}

// testBackends returns SQLite and PostgreSQL. Each PostgreSQL database is
// a fresh one on the server at EXED_TEST_POSTGRES_URL (testkit.FreshPostgres);
// without it the postgres runs are skipped, except under CI=true, where a
// missing PostgreSQL fails.
func testBackends() []testBackend {
	return []testBackend{
		{name: "sqlite", fresh: func(t testing.TB) (string, string) {
			return "", t.TempDir()
		}},
		{name: "postgres", fresh: func(t testing.TB) (string, string) {
			return testkit.FreshPostgres(t), ""
		}},
	}
}

// openFresh opens a Store on a fresh database of backend b.
func openFresh(t testing.TB, b testBackend) *Store {
	t.Helper()
	dsn, dir := b.fresh(t)
	s, err := Open(context.Background(), dsn, dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawDB opens the database behind (dsn, dataDir) with plain database/sql,
// to look at what the store really wrote.
func rawDB(t testing.TB, dsn, dataDir string) *sql.DB {
	t.Helper()
	driver, src := "pgx", dsn
	if dsn == "" {
		driver, src = "sqlite", filepath.Join(dataDir, dbFile)
	}
	db, err := sql.Open(driver, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
