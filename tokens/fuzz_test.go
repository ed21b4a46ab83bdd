package tokens

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/exed-dev/exed/internal/testkit"
)

// FuzzParseExe0: never panics; whatever is accepted is within the size
// limit, has exactly one encoding (re-encoding gives the input back), and
// its permissions are those of its payload.
func FuzzParseExe0(f *testing.F) {
	s := testkit.NewSigner(f)
	for _, p := range []string{`{}`, benchPayload, `{"nbf":946684800,"cmds":[],"ctx":null}`} {
		f.Add(mint(f, s, apiNS, p))
	}
	f.Add("exe0.e30.")
	f.Add("exe0..")
	f.Add("exe1.AAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, token string) {
		x, err := ParseExe0(token)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(token) > MaxTokenLen {
			t.Fatalf("accepted %d bytes", len(token))
		}
		_, s64 := parts(t, token)
		blob, err := b64.DecodeString(s64)
		if err != nil {
			t.Fatal(err)
		}
		if again := FormatExe0(x.Payload, blob); again != token {
			t.Fatalf("accepted a non-canonical encoding:\n in  %q\n out %q", token, again)
		}
		perms, err := ParsePermissions(x.Payload)
		if err != nil || !permsEqual(perms, x.Perms) {
			t.Fatalf("payload re-parses to %+v, %v; token had %+v", perms, err, x.Perms)
		}
	})
}

// FuzzParsePermissions: never panics; whatever is accepted obeys every P
// rule when checked independently (encoding/json's tokenizer, with our own
// duplicate tracking), and BuildPayload rebuilds an equivalent P.
func FuzzParsePermissions(f *testing.F) {
	for _, p := range []string{
		`{}`, benchPayload, `{"exp":null,"nbf":null,"cmds":null,"ctx":null}`,
		`{"ctx":{"a":[{"b":{"c":1}}],"d":"\u00e9"}}`, `{"cmds":["ssh-key list"]}`,
		`{"exp":1,"exp":2}`, `{"ctx":{"a":1,"\u0061":2}}`, `{"EXP":4070908800}`, `{"exp":1e9}`,
	} {
		f.Add([]byte(p))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		perms, err := ParsePermissions(p)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if p[0] != '{' || bytes.ContainsAny(p, "\r\n\x00") || p[len(p)-1] != '}' || !utf8.Valid(p) {
			t.Fatalf("accepted %q: bad framing or encoding", p)
		}
		top, err := checkJSON(p)
		if err != nil {
			t.Fatalf("accepted %q: %v", p, err)
		}
		for _, name := range top {
			switch name {
			case "exp", "nbf", "cmds", "ctx":
			default:
				t.Fatalf("accepted %q: top-level key %q", p, name)
			}
		}
		for _, n := range []int64{perms.Exp, perms.Nbf} {
			if n != 0 && (n < minTime || n > maxTime) {
				t.Fatalf("accepted %q: time %d out of range", p, n)
			}
		}
		for _, c := range perms.Cmds {
			if c == "" {
				t.Fatalf("accepted %q: empty command", p)
			}
		}
		if perms.HasCmds != (perms.Cmds != nil) {
			t.Fatalf("accepted %q: HasCmds %v with cmds %#v", p, perms.HasCmds, perms.Cmds)
		}
		if perms.Ctx != nil && !bytes.Contains(p, perms.Ctx) {
			t.Fatalf("accepted %q: ctx %q is not its original bytes", p, perms.Ctx)
		}

		built, err := BuildPayload(perms.Exp, perms.Nbf, perms.Cmds, perms.HasCmds, perms.Ctx)
		if err != nil {
			t.Fatalf("BuildPayload of accepted %q: %v", p, err)
		}
		again, err := ParsePermissions(built)
		if err != nil || !permsEqual(again, perms) {
			t.Fatalf("%q rebuilt as %q parses to %+v, %v; want %+v", p, built, again, err, perms)
		}
	})
}

// checkJSON validates p with encoding/json's tokenizer, refusing duplicate
// names at any depth, and returns the top-level names.
func checkJSON(p []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	var top []string
	var value func(depth int) error
	value = func(depth int) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				name, err := dec.Token()
				if err != nil {
					return err
				}
				n := name.(string)
				if seen[n] {
					return errors.New("duplicate name " + n)
				}
				seen[n] = true
				if depth == 0 {
					top = append(top, n)
				}
				if err := value(depth + 1); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for dec.More() {
				if err := value(depth + 1); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	if err := value(0); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the object")
	}
	return top, nil
}

// FuzzCheckCtx: never panics, and CheckCtx accepts exactly the ctx values
// BuildPayload can put in a token: its one-line answer to a bad --ctx is
// never wrong about a good one, nor the other way round.
func FuzzCheckCtx(f *testing.F) {
	for _, c := range []string{`{"role":"deploy"}`, `{role:deploy}`, `"x"`, `1 2`, `{"a":1,"a":2}`, ` 1`, "[\n]", `null`} {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, ctx []byte) {
		checkErr := CheckCtx(ctx)
		_, buildErr := BuildPayload(0, 0, nil, false, ctx)
		if (checkErr == nil) != (buildErr == nil) {
			t.Fatalf("ctx %q: CheckCtx says %v, BuildPayload %v", ctx, checkErr, buildErr)
		}
		if checkErr != nil && len(checkErr.Error()) > maxCtxErrorDetail+60 {
			t.Fatalf("ctx %q: a %d-byte answer", ctx, len(checkErr.Error()))
		}
	})
}

// FuzzScanMatchesWalk: ParsePermissions' one-pass scan and the jsontext
// walk that words its refusals agree on every P: the same verdict, and for
// a P both accept the same Permissions, ctx byte for byte.
func FuzzScanMatchesWalk(f *testing.F) {
	for _, p := range []string{
		`{}`, benchPayload, `{"exp":null,"nbf":null,"cmds":null,"ctx":null}`,
		`{"ctx":{"a":[{"b":{"c":1}}],"d":"\u00e9"}}`, `{"cmds":["ssh-key list","\u006cs"]}`,
		`{"exp":1,"exp":2}`, `{"ctx":{"a":1,"\u0061":2}}`, `{"EXP":4070908800}`, `{"exp":1e9}`,
		`{"ctx":"\ud83d\ude00"}`, `{"ctx":"\ud83d"}`, `{"ctx":"\udc00\ud83d"}`, `{"ctx":[1.5e+3,-0,true,false,null]}`,
		`{"ctx":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"a":18}}`,
		`{"\u0065xp":4070908800}`, `{ "ctx" : [ ] , "cmds" : [ "a" , "b" ] }`, `{"exp":04070908800}`,
	} {
		f.Add([]byte(p))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) == 0 || p[0] != '{' || bytes.ContainsAny(p, "\r\n\x00") || p[len(p)-1] == ' ' || p[len(p)-1] == '\t' {
			return // refused by the framing checks, before either
		}
		scanned, ok := scanPermissions(p)
		walked, err := walkPermissions(p)
		if ok != (err == nil) {
			t.Fatalf("%q: scan ok=%v, walk %v", p, ok, err)
		}
		if ok && (!permsEqual(scanned, walked) || scanned.HasCmds != walked.HasCmds || (scanned.Cmds == nil) != (walked.Cmds == nil)) {
			t.Fatalf("%q: scan %+v, walk %+v", p, scanned, walked)
		}
	})
}

// TestScanMatchesWalkAtDepthBound: the scan and the walk agree at
// jsontext's nesting bound (P's own object counts), for arrays and
// objects, just within it and just past it.
func TestScanMatchesWalkAtDepthBound(t *testing.T) {
	for _, open := range []string{`[`, `{"a":`} {
		close := map[string]string{`[`: `]`, `{"a":`: `}`}[open]
		for _, depth := range []int{maxNesting - 1, maxNesting} { // inside ctx, so 1 + depth open
			p := []byte(`{"ctx":` + strings.Repeat(open, depth) + `0` + strings.Repeat(close, depth) + `}`)
			if open == `[` {
				p = []byte(`{"ctx":` + strings.Repeat(open, depth) + strings.Repeat(close, depth) + `}`)
			}
			_, ok := scanPermissions(p)
			_, err := walkPermissions(p)
			if ok != (err == nil) || ok != (depth < maxNesting) {
				t.Errorf("%s × %d: scan ok=%v, walk %v", open, depth, ok, err)
			}
		}
	}
}
