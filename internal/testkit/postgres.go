package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresEnv names the environment variable that holds the URL of a
// PostgreSQL server for the tests, as a superuser (CREATE DATABASE).
const PostgresEnv = "EXED_TEST_POSTGRES_URL"

// postgresAdminTimeout bounds one CREATE or DROP DATABASE.
const postgresAdminTimeout = time.Minute

// FreshPostgres creates an empty database of t's own on the server at
// $EXED_TEST_POSTGRES_URL, so that tests are independent and may run in
// parallel, and returns its URL. The database is dropped when t ends, with
// any connection still open to it (a store a test forgot to close must not
// keep it alive). Without the variable, PostgreSQL is Unavailable.
func FreshPostgres(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(PostgresEnv)
	if admin == "" {
		Unavailable(t, "%s is not set: no PostgreSQL to test against", PostgresEnv)
	}
	u, err := url.Parse(admin)
	if err != nil || u.Host == "" {
		// Not the URL itself in the message: it may hold a password.
		t.Fatalf("%s: want postgres://USER@HOST:PORT/DB", PostgresEnv)
	}
	var b [8]byte
	rand.Read(b[:])
	name := "exed_test_" + hex.EncodeToString(b[:])
	if err := postgresAdmin(admin, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		if err := postgresAdmin(admin, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// postgresAdmin runs one statement on the server at admin, on a connection
// of its own.
func postgresAdmin(admin, stmt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), postgresAdminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, stmt)
	return err
}
