package tokens

import (
	"strings"
	"testing"
)

// TestCheckCtx: a good ctx passes; a bad one gets a short answer that
// names what is wrong and where in ctx (not in P), never P's internal
// error chain.
func TestCheckCtx(t *testing.T) {
	for _, good := range []string{`{"role":"deploy"}`, `"x"`, `[1,{"a":null}]`, `0`, `{"a":{"a":1}}`} {
		if err := CheckCtx([]byte(good)); err != nil {
			t.Errorf("CheckCtx(%s) = %v", good, err)
		}
	}
	for ctx, want := range map[string]string{
		`{role:deploy}`:      `invalid character 'r' at start of string (expecting '"') at offset 1`, // ssh ate the quotes
		`{"a":1,"a":2}`:      `duplicate key "a"`,
		`{"a":`:              "the JSON ends too soon",
		`1 2`:                "more than one JSON value",
		` {}`:                "whitespace around the value",
		"{\"a\":\n1}":        "it holds a line break or a NUL byte",
		``:                   "empty",
		`null`:               "null is no ctx at all: leave --ctx out",
		`{"role":"deploy"}}`: "invalid character '}' at start of value at offset 17",
	} {
		err := CheckCtx([]byte(ctx))
		if err == nil || err.Error() != want {
			t.Errorf("CheckCtx(%q) = %v, want %q", ctx, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "payload") {
			t.Errorf("CheckCtx(%q) speaks of P: %v", ctx, err)
		}
	}
}
