package testkit

import (
	"bytes"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// Cell is one value of a database as DumpDB read it. Value is nil for
// NULL.
type Cell struct {
	Table, Column string
	Row           int // the row's place in the order the database returned it
	Value         []byte
}

// Dump is what DumpDB read: the names of every table, empty ones
// included, and every value.
type Dump struct {
	Tables []string
	Cells  []Cell
}

// DumpDB reads every column of every row of every table of db (SQLite
// when sqlite is set, else PostgreSQL's current schema), with plain SQL:
// what a copy of the database would hold.
func DumpDB(t testing.TB, db *sql.DB, sqlite bool) Dump {
	t.Helper()
	q := `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1`
	if sqlite {
		q = `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1`
	}
	var tables []string
	rows, err := db.Query(q)
	if err != nil {
		t.Fatalf("dump: list tables: %v", err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatalf("dump: list tables: %v", err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatalf("dump: list tables: %v", err)
	}
	var cells []Cell
	for _, table := range tables {
		rows, err := db.Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		cols, _ := rows.Columns()
		for n := 0; rows.Next(); n++ {
			vals := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatalf("dump %s: %v", table, err)
			}
			for i, c := range cols {
				cells = append(cells, Cell{Table: table, Column: c, Row: n, Value: bytes.Clone(vals[i])})
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		rows.Close()
	}
	return Dump{Tables: tables, Cells: cells}
}

// DumpText renders d as one line per row, "table: col=value …", the lines
// sorted: two dumps of the same data compare equal whatever order the
// database returned the rows in, and a diff shows what changed.
func DumpText(d Dump) string {
	cells := d.Cells
	var lines []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			lines = append(lines, cur.String())
			cur.Reset()
		}
	}
	for i, c := range cells {
		if i == 0 || c.Table != cells[i-1].Table || c.Row != cells[i-1].Row {
			flush()
			cur.WriteString(c.Table + ":")
		}
		v := "NULL"
		if c.Value != nil {
			v = fmt.Sprintf("%q", c.Value)
		}
		cur.WriteString(" " + c.Column + "=" + v)
	}
	flush()
	slices.Sort(lines)
	return strings.Join(lines, "\n") + "\n"
}
