package main

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// The import graph, as docs/architecture.md draws it, checked against the
// real tree: `go list` says what each package imports and links, the rules
// below say what it must not, and the document's graph and table must be
// exactly what `go list` gives (regenerate them from the failure message).

const module = "github.com/exed-dev/exed"

// What the heavy dependencies are, by import path prefix.
var (
	dbDrivers  = []string{"github.com/jackc/pgx", "modernc.org/sqlite"}
	sshServer  = []string{"github.com/gliderlabs/ssh"}
	prometheus = []string{"github.com/prometheus"}
	acmeClient = []string{"github.com/caddyserver/certmagic", "github.com/letsencrypt/pebble"}
)

// mustNotLink is what each package must not link, even indirectly: the
// token rules and the registry types stay pure, the command table and the
// HTTP front reach the database only through the store interfaces, and
// only the binary links the ACME client.
var mustNotLink = map[string][][]string{
	"keys":   {dbDrivers, sshServer, prometheus, acmeClient},
	"tokens": {dbDrivers, sshServer, prometheus, acmeClient},
	"store":  {dbDrivers, sshServer, prometheus, acmeClient},
	// The assertions sign and publish; the store is reached through its
	// interface, and metrics are the caller's business.
	"assertion": {dbDrivers, sshServer, prometheus, acmeClient},
	"sshcmd":    {dbDrivers, sshServer, acmeClient},
	"proxy":     {dbDrivers, sshServer, acmeClient},
	"metrics":   {acmeClient},
	// The binary links the ACME client, never the test CA.
	"cmd/exed": {{"github.com/letsencrypt/pebble", "github.com/letsencrypt/challtestsrv"}},
}

// linkTable is the rows of the document's table of heavy dependencies.
var linkTable = []string{"keys", "tokens", "store", "store/sqlstore", "metrics", "sshcmd", "sshserver", "proxy", "assertion"}

// pkg is one package of the module as `go list` sees it (without its
// tests): its path inside the module, its module imports, and every
// package it links.
type pkg struct {
	path     string
	imports  []string // of the module, as paths inside it
	external []string // imports from outside the module
	deps     []string // everything it links, full import paths
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}	{{join .Imports " "}}	{{join .Deps " "}}`, "./...")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	var ps []pkg
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			t.Fatalf("go list line %q", line)
		}
		p := pkg{path: inModule(f[0]), deps: strings.Fields(f[2])}
		for _, imp := range strings.Fields(f[1]) {
			if rel := inModule(imp); rel != imp {
				p.imports = append(p.imports, rel)
			} else {
				p.external = append(p.external, imp)
			}
		}
		ps = append(ps, p)
	}
	return ps
}

// inModule returns path relative to the module ("store/sqlstore"), or
// path itself when it is not the module's.
func inModule(path string) string {
	rel, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return path
	}
	return rel
}

func under(path, dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }

func matching(deps, prefixes []string) []string {
	var out []string
	for _, d := range deps {
		for _, p := range prefixes {
			if under(d, p) {
				out = append(out, d)
			}
		}
	}
	return out
}

// TestImportGraph holds the rules of docs/architecture.md's "Import graph".
func TestImportGraph(t *testing.T) {
	ps := listPackages(t)
	byPath := map[string]pkg{}
	for _, p := range ps {
		byPath[p.path] = p
	}
	for name, banned := range mustNotLink {
		p, ok := byPath[name]
		if !ok {
			t.Fatalf("no package %s", name)
		}
		for _, b := range banned {
			if got := matching(p.deps, b); len(got) > 0 {
				t.Errorf("%s links %s (and %d more of %v)", name, got[0], len(got)-1, b)
			}
		}
	}
	for _, p := range ps {
		for _, imp := range p.imports {
			switch {
			case under(imp, "cmd"):
				t.Errorf("%s imports %s: nothing imports a command", p.path, imp)
			case imp == "store/sqlstore" && !under(p.path, "cmd") && !under(p.path, "internal/testkit"):
				t.Errorf("%s imports store/sqlstore: only the commands (and tests) open the SQL store; the rest ask for store's interfaces", p.path)
			case under(imp, "internal/testkit") && !under(p.path, "internal/testkit"):
				t.Errorf("%s imports %s: the test kit is for _test.go files only", p.path, imp)
			}
		}
	}
	// testkit itself imports nothing of the module, so that every
	// package's internal tests can use it without an import cycle.
	for _, name := range []string{"internal/testkit", "internal/testkit/promtest"} {
		if p := byPath[name]; len(p.imports) > 0 {
			t.Errorf("%s imports %v", name, p.imports)
		}
	}
}

// TestArchitectureDoc: docs/architecture.md's import graph and its table
// of heavy dependencies are the ones `go list` gives.
func TestArchitectureDoc(t *testing.T) {
	ps := listPackages(t)
	graph := renderGraph(ps)
	if got := docBlocks(t, "docs/architecture.md", "## Import graph", "text"); len(got) != 1 || got[0] != graph {
		t.Errorf("docs/architecture.md's import graph is not the tree's; `go list` gives:\n%s", graph)
	}
	table := renderLinkTable(t, ps)
	var rows []string
	for _, line := range strings.Split(docSection(t, "docs/architecture.md", "### What each package links"), "\n") {
		if strings.HasPrefix(line, "|") {
			rows = append(rows, line)
		}
	}
	if got := strings.Join(rows, "\n") + "\n"; got != table {
		t.Errorf("docs/architecture.md's table of what each package links is not the tree's; `go list -deps` gives:\n%s", table)
	}
}

// renderGraph draws each package and the module packages it imports.
func renderGraph(ps []pkg) string {
	width := 0
	for _, p := range ps {
		width = max(width, len(p.path))
	}
	var b strings.Builder
	for _, p := range ps {
		imports := "(nothing of the module)"
		if len(p.imports) > 0 {
			imports = strings.Join(p.imports, " ")
		}
		fmt.Fprintf(&b, "%-*s → %s\n", width, p.path, imports)
	}
	return b.String()
}

// renderLinkTable says, for each library package, whether it links a
// database driver, the SSH server and Prometheus, and through which of
// its imports when not directly.
func renderLinkTable(t *testing.T, ps []pkg) string {
	byPath := map[string]pkg{}
	for _, p := range ps {
		byPath[p.path] = p
	}
	cell := func(p pkg, prefixes []string) string {
		switch {
		case len(matching(p.deps, prefixes)) == 0:
			return "no"
		case len(matching(p.external, prefixes)) > 0:
			return "yes"
		}
		var through []string
		for _, imp := range p.imports {
			if len(matching(byPath[imp].deps, prefixes)) > 0 {
				through = append(through, "`"+imp+"`")
			}
		}
		return "yes, through " + strings.Join(through, ", ")
	}
	var b strings.Builder
	b.WriteString("| package | database drivers (pgx, modernc.org/sqlite) | SSH server (gliderlabs/ssh) | Prometheus |\n")
	b.WriteString("| --- | --- | --- | --- |\n")
	for _, name := range linkTable {
		p, ok := byPath[name]
		if !ok {
			t.Fatalf("no package %s", name)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", name, cell(p, dbDrivers), cell(p, sshServer), cell(p, prometheus))
	}
	return b.String()
}
