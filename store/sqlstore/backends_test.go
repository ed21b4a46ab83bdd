package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A testBackend makes fresh, empty databases of one kind.
type testBackend struct {
	name string
	// fresh returns the DSN and data dir of a new empty database, dropped
	// when the test ends.
	fresh func(t testing.TB) (dsn, dataDir string)
}

// testBackends returns SQLite and PostgreSQL. PostgreSQL comes from
// EXED_TEST_POSTGRES_URL (a superuser URL); without it the postgres runs
// are skipped, except under CI=true, where a missing PostgreSQL fails.
func testBackends() []testBackend {
	return []testBackend{
		{name: "sqlite", fresh: func(t testing.TB) (string, string) {
			return "", t.TempDir()
		}},
		{name: "postgres", fresh: freshPostgres},
	}
}

// freshPostgres creates a database of its own for t, so that tests are
// independent and can run in parallel, and drops it when t ends.
func freshPostgres(t testing.TB) (string, string) {
	t.Helper()
	admin := os.Getenv("EXED_TEST_POSTGRES_URL")
	if admin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("EXED_TEST_POSTGRES_URL is not set: CI must test PostgreSQL")
		}
		t.Skip("EXED_TEST_POSTGRES_URL is not set")
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("EXED_TEST_POSTGRES_URL: %v", err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	name := "exed_test_" + hex.EncodeToString(b)

	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		db.Close()
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		defer db.Close()
		// FORCE: a store a test forgot to close must not keep the
		// database alive.
		if _, err := db.Exec("DROP DATABASE " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	u.Path = "/" + name
	return u.String(), ""
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
