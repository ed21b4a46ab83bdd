package testkit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Golden compares got with the file testdata/golden/name of the package
// under test, or writes got there when update is set (each package that
// has golden files declares an -update flag: go test ./sshcmd -update).
// What users read is public API: a change to it shows as a diff in review.
func Golden(t testing.TB, name, got string, update bool) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// GoldenJSON is Golden for a command's JSON output: out must be exactly one
// line of compact JSON (as the commands print it); the golden file holds it
// masked (see Mask) and indented, one field a line, so that a change to a
// field shows as a one-line diff.
func GoldenJSON(t testing.TB, name, out string, update bool) {
	t.Helper()
	line, ok := strings.CutSuffix(out, "\n")
	if !ok || strings.Contains(line, "\n") {
		t.Fatalf("%s: want one line of JSON ending in a newline, got %q", name, out)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(line)); err != nil {
		t.Fatalf("%s: not JSON: %v: %q", name, err, out)
	}
	if compact.String() != line {
		t.Fatalf("%s: JSON is not compact: %q", name, out)
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, []byte(Mask(line)), "", "  "); err != nil {
		t.Fatalf("%s: masking broke the JSON: %v", name, err)
	}
	Golden(t, name, indented.String()+"\n", update)
}

// masks are what changes from run to run, or is a secret, in what exed
// prints: one pattern a kind, each replaced by <KIND-N>, N counting the
// distinct values of that kind in order of appearance (so that the same
// token twice reads as the same mask). Tokens come first: their base64
// could hold anything the others match.
var masks = []struct {
	kind  string
	re    *regexp.Regexp
	group bool // mask only the first group of each match
}{
	{"exe0", regexp.MustCompile(`exe0\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`), false},
	{"exe1", regexp.MustCompile(`exe1\.[A-Z2-7]{26}`), false},
	{"fingerprint", regexp.MustCompile(`SHA256:[A-Za-z0-9+/]{43}`), false},
	{"ssh-ed25519", regexp.MustCompile(`ssh-ed25519 AAAA[A-Za-z0-9+/]+={0,2}`), false},
	// A login link's token (its group only is masked), before share links
	// take every other 26 characters of [A-Z2-7].
	{"login-token", regexp.MustCompile(`[?&]token=([A-Z2-7]{26})\b`), true},
	{"share-link", regexp.MustCompile(`\b[A-Z2-7]{26}\b`), false},
	{"share-link-name", regexp.MustCompile(`\b[A-Z2-7]{8}…`), false},
	{"usr", regexp.MustCompile(`\busr[a-z0-9]{16}\b`), false},
	{"ses", regexp.MustCompile(`\bses[a-z2-7]{16}\b`), false},
	{"time", regexp.MustCompile(`\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`), false},
}

// Mask replaces the exe0 and exe1 tokens, SHA256 fingerprints, ssh-ed25519
// public keys, login link and share link tokens, share link names, user
// and session ids and RFC 3339 times in s by <KIND-N> placeholders.
func Mask(s string) string {
	for _, m := range masks {
		seen := map[string]int{}
		mask := func(v string) string {
			n, ok := seen[v]
			if !ok {
				n = len(seen) + 1
				seen[v] = n
			}
			return fmt.Sprintf("<%s-%d>", m.kind, n)
		}
		if !m.group {
			s = m.re.ReplaceAllStringFunc(s, mask)
			continue
		}
		// Only the first group is masked; the rest of the match stays.
		var b strings.Builder
		last := 0
		for _, ix := range m.re.FindAllStringSubmatchIndex(s, -1) {
			b.WriteString(s[last:ix[2]])
			b.WriteString(mask(s[ix[2]:ix[3]]))
			last = ix[3]
		}
		s = b.String() + s[last:]
	}
	return s
}

// Times as a page shows them: an element <time datetime=…>…</time>
// (whatever its text: a day, a time to the minute), and a time to the
// minute in a sentence, with or without its zone.
var (
	timeElement = regexp.MustCompile(`<time datetime="[^"]*">[^<]*</time>`)
	humanTime   = regexp.MustCompile(`\b\d{4}-\d\d-\d\d \d\d:\d\d(?: UTC)?`)
	numbered    = regexp.MustCompile(`<(time|when)-\d+>`)
)

// escapedFingerprint is a fingerprint percent-encoded in a URL's query.
var escapedFingerprint = regexp.MustCompile(`SHA256%3[aA][A-Za-z0-9%]+`)

// MaskHTML is Mask for a web page, whose escaping it sees through first
// (html/template writes "+" as "&#43;", and a fingerprint in a link's
// query percent-encoded). Its times are many, and a few milliseconds
// apart may fall in two seconds or minutes: each is masked alike, without
// a number — every <time> element as <time>, every other time to the
// minute ("2025-06-01 14:03 UTC") as <when>.
func MaskHTML(s string) string {
	s = strings.ReplaceAll(s, "&#43;", "+")
	s = escapedFingerprint.ReplaceAllStringFunc(s, func(v string) string {
		if u, err := url.QueryUnescape(v); err == nil {
			return u
		}
		return v
	})
	s = timeElement.ReplaceAllString(s, "<time>")
	s = Mask(s)
	s = humanTime.ReplaceAllString(s, "<when>")
	return numbered.ReplaceAllString(s, "<$1>")
}

// GoldenHTML is Golden for a web page, masked (MaskHTML): what a browser
// shows is public too.
func GoldenHTML(t testing.TB, name, page string, update bool) {
	t.Helper()
	Golden(t, name, MaskHTML(page), update)
}
