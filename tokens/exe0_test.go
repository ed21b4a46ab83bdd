package tokens

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/keys"
)

const (
	apiNS = "v0@exe.dev"
	vmNS  = "v0@web.exe.xyz"
)

// mint signs p in ns with s, failing the test on error. It goes through
// keys.Sign directly (not MintExe0) so tests can sign payloads MintExe0
// would refuse.
func mint(t testing.TB, s ssh.Signer, ns, p string) string {
	t.Helper()
	blob, err := keys.Sign(s, ns, keys.HashSHA512, []byte(p))
	if err != nil {
		t.Fatal(err)
	}
	return FormatExe0([]byte(p), blob)
}

// parts splits a well-formed token into its encoded P and signature.
func parts(t testing.TB, token string) (p64, s64 string) {
	t.Helper()
	rest, ok := strings.CutPrefix(token, "exe0.")
	if !ok {
		t.Fatalf("not an exe0 token")
	}
	p64, s64, ok = strings.Cut(rest, ".")
	if !ok {
		t.Fatalf("no second part")
	}
	return p64, s64
}

func enc(p string) string { return base64.RawURLEncoding.EncodeToString([]byte(p)) }

// sizedToken returns a token of exactly n bytes, signed by s, by padding
// ctx; the namespace is varied since unpadded base64 never has length 4k+1.
func sizedToken(t *testing.T, s ssh.Signer, n int) string {
	t.Helper()
	for _, ns := range []string{apiNS, apiNS + "x"} {
		blob, err := keys.Sign(s, ns, keys.HashSHA512, []byte("{}"))
		if err != nil {
			t.Fatal(err)
		}
		sig := base64.RawURLEncoding.EncodeToString(blob)
		for l := 0; l < n; l++ {
			p := `{"ctx":"` + strings.Repeat("x", l) + `"}`
			tok := "exe0." + enc(p) + "." + sig
			if len(tok) == n {
				return mint(t, s, ns, p)
			}
			if len(tok) > n {
				break
			}
		}
	}
	t.Fatalf("cannot make a token of %d bytes", n)
	return ""
}

// TestParseExe0Negatives is one row per rule of the exe0 format. Each row
// asserts that the token is refused, that the refusal names the broken
// rule, and that the Verifier reports it as malformed at the format check.
func TestParseExe0Negatives(t *testing.T) {
	s := testkit.NewSigner(t)
	good := mint(t, s, apiNS, `{"exp":4070908800}`)
	gp, gs := parts(t, good)
	withP := func(p string) string { return "exe0." + enc(p) + "." + gs }

	// P whose encoding has '-' and '_', to turn into '+' and '/'.
	var urlP string
	for i := 0; i < 3 && urlP == ""; i++ {
		p := `{"ctx":"` + strings.Repeat("a", i) + `>>>???"}`
		if e := enc(p); strings.Contains(e, "-") && strings.Contains(e, "_") {
			urlP = e
		}
	}
	if urlP == "" {
		t.Fatal("no payload with - and _ in its encoding")
	}
	// P of length 3k+1: its last base64 character carries 4 unused bits.
	tailP := `{"exp":4070908800,"ctx":"` + "a" + `"}`
	for len(tailP)%3 != 1 {
		tailP = strings.Replace(tailP, `"a`, `"aa`, 1)
	}
	tail := enc(tailP)
	last := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", tail[len(tail)-1])
	badTail := tail[:len(tail)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last+1])
	if b, err := base64.RawURLEncoding.DecodeString(badTail); err != nil || string(b) != tailP {
		t.Fatalf("badTail is not a lax encoding of the same payload: %v", err)
	}
	// P of length 3k+1, so its padded form ends in "==".
	padP := `{"exp":4070908800}`
	for len(padP)%3 == 0 {
		padP = strings.Replace(padP, "{", "{ ", 1)
	}

	tests := []struct {
		name  string
		token string
		want  string // in the error
	}{
		{"size 8193", sizedToken(t, s, MaxTokenLen+1), "longer than 8192"},

		{"prefix exe1", "exe1." + gp + "." + gs, `does not start with "exe0."`},
		{"prefix upper", "EXE0." + gp + "." + gs, `does not start with "exe0."`},
		{"prefix no dot", "exe0" + gp + "." + gs, `does not start with "exe0."`},
		{"empty", "", `does not start with "exe0."`},
		{"leading space", " " + good, `does not start with "exe0."`},
		{"leading newline", "\n" + good, `does not start with "exe0."`},

		{"one part", "exe0." + gp, "exactly two parts"},
		{"three parts", good + ".AAAA", "exactly two parts"},
		{"trailing dot", good + ".", "exactly two parts"},

		{"padding in P", "exe0." + base64.URLEncoding.EncodeToString([]byte(padP)) + "." + gs, "payload: byte"},
		{"padding in sig", "exe0." + gp + "." + base64.URLEncoding.EncodeToString([]byte("x")), "signature: byte"},
		{"plus", "exe0." + strings.ReplaceAll(urlP, "-", "+") + "." + gs, "not base64url"},
		{"slash", "exe0." + strings.ReplaceAll(urlP, "_", "/") + "." + gs, "not base64url"},
		{"non-canonical tail bits", "exe0." + badTail + "." + gs, "not canonical base64url"},
		{"impossible length", "exe0." + gp + "A." + gs, "not canonical base64url"},

		{"trailing space", good + " ", "signature: byte"},
		{"trailing newline", good + "\n", "signature: byte"},
		{"trailing CRLF", good + "\r\n", "signature: byte"},
		{"newline inside base64", "exe0." + gp[:4] + "\n" + gp[4:] + "." + gs, "payload: byte 4"},
		{"tab inside base64", "exe0." + gp + "." + gs[:8] + "\t" + gs[8:], "signature: byte 8"},

		{"CR in P", withP("{\"exp\":\r4070908800}"), "CR, LF or NUL"},
		{"LF in P", withP("{\n\"exp\":4070908800}"), "CR, LF or NUL"},
		{"NUL in P", withP("{\"ctx\":\"a\x00\"}"), "CR, LF or NUL"},
		{"LF at end of P", withP("{}\n"), "CR, LF or NUL"},

		{"P empty", withP(""), "does not start with '{'"},
		{"P array", withP(`[]`), "does not start with '{'"},
		{"P string", withP(`"x"`), "does not start with '{'"},
		{"P leading space", withP(` {}`), "does not start with '{'"},
		{"P leading tab", withP("\t{}"), "does not start with '{'"},
		{"P trailing space", withP(`{} `), "trailing whitespace"},
		{"P trailing tab", withP("{}\t"), "trailing whitespace"},

		{"invalid JSON open", withP(`{`), "invalid JSON"},
		{"invalid JSON no value", withP(`{"exp":}`), "invalid JSON"},
		{"invalid JSON trailing comma", withP(`{"ctx":1,}`), "invalid JSON"},
		{"invalid JSON unquoted name", withP(`{exp:4070908800}`), "invalid JSON"},
		{"invalid JSON single quotes", withP(`{'exp':4070908800}`), "invalid JSON"},
		{"invalid JSON garbage after", withP(`{}x`), "invalid JSON"},
		{"second object after", withP(`{}{}`), "data after the object"},
		{"invalid UTF-8", withP("{\"ctx\":\"\xff\"}"), "invalid JSON"},
		{"invalid JSON in ctx", withP(`{"ctx":[1,]}`), "invalid JSON"},

		{"duplicate top level", withP(`{"exp":4070908800,"exp":4070908800}`), `duplicate key "exp"`},
		{"duplicate top level null", withP(`{"exp":null,"exp":4070908800}`), `duplicate key "exp"`},
		{"duplicate ctx", withP(`{"ctx":{"a":1,"a":2}}`), `duplicate key "a" within "/ctx"`},
		{"duplicate deep in ctx", withP(`{"ctx":{"a":[{"b":{"c":1,"c":1}}]}}`), `duplicate key "c" within "/ctx/a/0/b"`},
		{"duplicate by escape", withP(`{"ctx":{"a":1,"\u0061":2}}`), `duplicate key "a"`},

		{"unknown key", withP(`{"foo":1}`), `unknown key "foo"`},
		{"case variant EXP", withP(`{"EXP":4070908800}`), `unknown key "EXP"`},
		{"case variant Cmds", withP(`{"Cmds":[]}`), `unknown key "Cmds"`},
		{"unknown key null", withP(`{"exp":4070908800,"sub":null}`), `unknown key "sub"`},
	}
	for _, field := range []string{"exp", "nbf"} {
		for _, v := range []struct{ name, value, want string }{
			{"float", "4070908800.0", "is not a plain integer"},
			{"1.0", "1.0", "is not a plain integer"},
			{"exponent", "1e9", "is not a plain integer"},
			{"exponent upper", "1798761E3", "is not a plain integer"},
			{"string", `"4070908800"`, "is not a number"},
			{"leading zero", "04070908800", "invalid JSON"},
			{"plus", "+4070908800", "invalid JSON"},
			{"negative", "-4070908800", "out of range"},
			{"minus zero", "-0", "out of range"},
			{"below range", "946684799", "out of range"},
			{"above range", "4102444801", "out of range"},
			{"overflows int64", "99999999999999999999", "out of range"},
			{"bool", "true", "is not a number"},
			{"array", "[4070908800]", "is not a number"},
			{"object", "{}", "is not a number"},
		} {
			want := field + " " + v.want
			if v.want == "invalid JSON" {
				want = v.want
			}
			tests = append(tests, struct{ name, token, want string }{
				field + " " + v.name, withP(`{"` + field + `":` + v.value + `}`), want,
			})
		}
	}
	for _, v := range []struct{ name, value, want string }{
		{"string", `"ls"`, "cmds is not an array"},
		{"object", `{"ls":true}`, "cmds is not an array"},
		{"number", `1`, "cmds is not an array"},
		{"true", `true`, "cmds is not an array"},
		{"empty string", `[""]`, "cmds[0] is empty"},
		{"empty string later", `["ls",""]`, "cmds[1] is empty"},
		{"number element", `[1]`, "cmds[0] is not a string"},
		{"null element", `["ls",null]`, "cmds[1] is not a string"},
		{"nested array", `[["ls"]]`, "cmds[0] is not a string"},
		{"object element", `[{}]`, "cmds[0] is not a string"},
		{"unterminated", `["ls"`, "invalid JSON"},
	} {
		tests = append(tests, struct{ name, token, want string }{
			"cmds " + v.name, withP(`{"cmds":` + v.value + `}`), v.want,
		})
	}
	tests = append(tests,
		struct{ name, token, want string }{"signature not SSHSIG", "exe0." + gp + "." + enc("hello"), "signature"},
		struct{ name, token, want string }{"signature empty", "exe0." + gp + ".", "signature"},
		struct{ name, token, want string }{"signature truncated", "exe0." + gp + "." + gs[:len(gs)-8], "signature"},
	)

	v := NewVerifier(Config{Registry: newMemRegistry()})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := ParseExe0(tt.token)
			if err == nil {
				t.Fatalf("accepted; perms %+v", x.Perms)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if len(tt.token) > 20 && strings.Contains(err.Error(), tt.token[5:20]) {
				t.Errorf("error %q contains part of the token", err)
			}
			_, err = v.Verify(context.Background(), tt.token, Target{Namespace: apiNS})
			var ve *Error
			if !errors.As(err, &ve) || ve.Reason != ReasonMalformed || ve.Check != CheckFormat {
				t.Errorf("Verify: %v, want reason %q at check %q", err, ReasonMalformed, CheckFormat)
			}
		})
	}
}

func TestParseExe0SignatureErrors(t *testing.T) {
	s := testkit.NewSigner(t)
	gp, _ := parts(t, mint(t, s, apiNS, `{}`))
	_, err := ParseExe0("exe0." + gp + "." + enc("SSHSIG garbage"))
	if !errors.Is(err, ErrMalformed) || !errors.Is(err, keys.ErrMalformed) {
		t.Fatalf("err = %v, want both ErrMalformed and keys.ErrMalformed", err)
	}
}

func TestParseExe0Accepts(t *testing.T) {
	s := testkit.NewSigner(t)
	for _, p := range []string{
		`{}`,
		`{"exp":4070908800,"ctx":{"role":"deploy"}}`,
		`{"exp":null,"nbf":null,"cmds":null,"ctx":null}`,
		`{"ctx": {"b" : [1, 2]} ,"exp" : 946684800 }`,
		`{"nbf":4102444800,"cmds":[]}`,
		`{"\u0065xp":4070908800}`,
	} {
		tok := mint(t, s, apiNS, p)
		x, err := ParseExe0(tok)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if string(x.Payload) != p {
			t.Errorf("payload %q, want %q", x.Payload, p)
		}
		if x.Sig.Namespace != apiNS || x.Sig.Fingerprint() != keys.Fingerprint(s.PublicKey()) {
			t.Errorf("%s: signature namespace %q fingerprint %s", p, x.Sig.Namespace, x.Sig.Fingerprint())
		}
	}
	// Exactly MaxTokenLen is fine.
	tok := sizedToken(t, s, MaxTokenLen)
	if _, err := ParseExe0(tok); err != nil {
		t.Errorf("token of %d bytes: %v", len(tok), err)
	}
}

func TestParsePermissions(t *testing.T) {
	tests := []struct {
		p    string
		want Permissions
	}{
		{`{}`, Permissions{}},
		{`{"exp":4070908800,"nbf":1700000000}`, Permissions{Exp: 4070908800, Nbf: 1700000000}},
		{`{"exp":946684800}`, Permissions{Exp: 946684800}},
		{`{"exp":4102444800}`, Permissions{Exp: 4102444800}},
		{`{"exp":null,"nbf":null,"cmds":null,"ctx":null}`, Permissions{}},
		{`{"cmds":[]}`, Permissions{Cmds: []string{}, HasCmds: true}},
		{`{"cmds":["ls","ssh-key list"]}`, Permissions{Cmds: []string{"ls", "ssh-key list"}, HasCmds: true}},
		{`{"cmds":["\u006cs"]}`, Permissions{Cmds: []string{"ls"}, HasCmds: true}},
		{`{"ctx":{"role":"deploy"}}`, Permissions{Ctx: []byte(`{"role":"deploy"}`)}},
		{`{"ctx": {"b" : [1, 2.50, "\u00e9"]} }`, Permissions{Ctx: []byte(`{"b" : [1, 2.50, "\u00e9"]}`)}},
		{`{"ctx":"x"}`, Permissions{Ctx: []byte(`"x"`)}},
		{`{"ctx":0}`, Permissions{Ctx: []byte(`0`)}},
		{`{"ctx":false}`, Permissions{Ctx: []byte(`false`)}},
		{"{\"ctx\":\t[]}", Permissions{Ctx: []byte(`[]`)}},
	}
	for _, tt := range tests {
		got, err := ParsePermissions([]byte(tt.p))
		if err != nil {
			t.Errorf("%s: %v", tt.p, err)
			continue
		}
		if !permsEqual(got, tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.p, got, tt.want)
		}
		if tt.want.HasCmds && got.Cmds == nil {
			t.Errorf("%s: cmds [] parsed as nil", tt.p)
		}
	}
}

func permsEqual(a, b Permissions) bool {
	if a.Exp != b.Exp || a.Nbf != b.Nbf || a.HasCmds != b.HasCmds || len(a.Cmds) != len(b.Cmds) {
		return false
	}
	for i := range a.Cmds {
		if a.Cmds[i] != b.Cmds[i] {
			return false
		}
	}
	return bytes.Equal(a.Ctx, b.Ctx) && (a.Ctx == nil) == (b.Ctx == nil)
}

func TestGrants(t *testing.T) {
	def := Permissions{}
	for _, c := range []string{"help", "ls", "whoami", "ssh-key list", "exe0-to-exe1"} {
		if !def.Grants(c) {
			t.Errorf("default list does not grant %q", c)
		}
	}
	for _, c := range []string{"ssh-key generate-api-key", "generate-api-key", "ssh-key", "ssh-key add", "ssh-key remove", "ssh-key list extra", "LS", "", " ls"} {
		if def.Grants(c) {
			t.Errorf("default list grants %q", c)
		}
	}
	none := Permissions{Cmds: []string{}, HasCmds: true}
	for _, c := range []string{"help", "ls", "whoami"} {
		if none.Grants(c) {
			t.Errorf("cmds [] grants %q", c)
		}
	}
	parent := Permissions{Cmds: []string{"ssh-key"}, HasCmds: true}
	if parent.Grants("ssh-key list") || parent.Grants("ssh-key generate-api-key") {
		t.Error("a parent grants its children")
	}
	if !parent.Grants("ssh-key") {
		t.Error("ssh-key not granted by [ssh-key]")
	}
	explicit := Permissions{Cmds: []string{"ssh-key generate-api-key"}, HasCmds: true}
	if !explicit.Grants("ssh-key generate-api-key") || explicit.Grants("ls") {
		t.Error("explicit cmds replace the default list")
	}

	d := DefaultCmds()
	d[0] = "generate-api-key"
	if def.Grants("generate-api-key") || DefaultCmds()[0] != "help" {
		t.Error("DefaultCmds returns the shared list")
	}
}

func TestBuildPayload(t *testing.T) {
	tests := []struct {
		exp, nbf int64
		cmds     []string
		hasCmds  bool
		ctx      string
		want     string
	}{
		{0, 0, nil, false, "", `{}`},
		{4070908800, 0, nil, false, "", `{"exp":4070908800}`},
		{4070908800, 1700000000, []string{"ls", "ssh-key list"}, true, `{"role":"deploy"}`,
			`{"exp":4070908800,"nbf":1700000000,"cmds":["ls","ssh-key list"],"ctx":{"role":"deploy"}}`},
		{0, 1700000000, nil, true, "", `{"nbf":1700000000,"cmds":[]}`},
		{0, 0, []string{"ls"}, false, `[1, 2]`, `{"ctx":[1, 2]}`},
		{0, 0, []string{`a"b\`}, true, "", `{"cmds":["a\"b\\"]}`},
	}
	for _, tt := range tests {
		var ctx []byte
		if tt.ctx != "" {
			ctx = []byte(tt.ctx)
		}
		p, err := BuildPayload(tt.exp, tt.nbf, tt.cmds, tt.hasCmds, ctx)
		if err != nil {
			t.Errorf("%s: %v", tt.want, err)
			continue
		}
		if string(p) != tt.want {
			t.Errorf("got %s, want %s", p, tt.want)
		}
		perms, err := ParsePermissions(p)
		if err != nil || perms.Exp != tt.exp || perms.Nbf != tt.nbf || perms.HasCmds != tt.hasCmds || !bytes.Equal(perms.Ctx, ctx) {
			t.Errorf("%s does not round-trip: %+v, %v", p, perms, err)
		}
	}
	for _, bad := range []struct {
		exp     int64
		cmds    []string
		hasCmds bool
		ctx     string
	}{
		{exp: 1},          // out of range
		{exp: 5000000000}, // out of range
		{cmds: []string{""}, hasCmds: true},
		{ctx: `{"a":1,"a":2}`},                  // duplicate
		{ctx: `{`},                              // invalid
		{ctx: " {}"},                            // surrounding whitespace would not round-trip
		{ctx: "{\n}"},                           // LF
		{ctx: `{} {}`},                          // two values
		{ctx: `1,"exp":4070908800`},             // smuggling a key
		{ctx: `null`},                           // would read back as absent
		{cmds: []string{"\xff"}, hasCmds: true}, // invalid UTF-8
	} {
		var ctx []byte
		if bad.ctx != "" {
			ctx = []byte(bad.ctx)
		}
		if p, err := BuildPayload(bad.exp, 0, bad.cmds, bad.hasCmds, ctx); err == nil {
			t.Errorf("BuildPayload(%+v) = %s, want an error", bad, p)
		}
	}
}
