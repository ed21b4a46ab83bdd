package sqlstore

import (
	"database/sql"
	"testing"
)

// Test helpers for the external test package (sqlstore_test), which cannot
// import this package's _test files otherwise.

// A TestDatabase makes fresh, empty databases of one backend.
type TestDatabase struct {
	Name  string
	Fresh func(t testing.TB) (dsn, dataDir string)
}

func Backends() []TestDatabase {
	var ds []TestDatabase
	for _, b := range testBackends() {
		ds = append(ds, TestDatabase{Name: b.name, Fresh: b.fresh})
	}
	return ds
}

// RawDB opens the database behind (dsn, dataDir) with plain database/sql.
func RawDB(t testing.TB, dsn, dataDir string) *sql.DB { return rawDB(t, dsn, dataDir) }
