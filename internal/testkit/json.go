package testkit

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
)

// JSONObject decodes out, which must be exactly one JSON object (as a
// command prints with --json), and returns it with its field names,
// sorted.
func JSONObject(t testing.TB, out string) (map[string]any, []string) {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not a JSON object: %q: %v", out, err)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value: %q", out)
	}
	return m, slices.Sorted(maps.Keys(m))
}
