package tokens

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestBrowserSecretsShape(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		s, c := NewSecret(), NewCookieValue()
		if !ValidSecret(s) || !ValidCookieValue(c) {
			t.Fatalf("fresh secret %q / cookie %q refused by its own check", s, c)
		}
		if b, err := base64.RawURLEncoding.Strict().DecodeString(c); err != nil || len(b) != 32 {
			t.Fatalf("cookie %q: %d bytes, %v", c, len(b), err)
		}
		if tokens := CookieHash(c); tokens != SecretHash(c) {
			t.Fatalf("CookieHash(%q) differs from SecretHash", c)
		}
		if seen[s] || seen[c] {
			t.Fatal("a repeated secret")
		}
		seen[s], seen[c] = true, true
	}
	good := NewCookieValue()
	for _, bad := range []string{
		"", good[:42], good + "A", strings.Repeat("A", 42) + "B", // B: non-canonical tail bits
		strings.Repeat("A", 42) + "=", strings.Repeat("+", 43), strings.Repeat("/", 43),
	} {
		if ValidCookieValue(bad) {
			t.Errorf("ValidCookieValue(%q) = true", bad)
		}
	}
	for _, bad := range []string{"", strings.Repeat("A", 25), strings.Repeat("A", 27), strings.Repeat("a", 26), strings.Repeat("1", 26), strings.Repeat("8", 26)} {
		if ValidSecret(bad) {
			t.Errorf("ValidSecret(%q) = true", bad)
		}
	}
}

// TestBrowserNotInDefaultCmds pins that a token never grants `browser`
// (nor `sessions`) unless its cmds name it: a token for scripts must not
// log a browser in.
func TestBrowserNotInDefaultCmds(t *testing.T) {
	for _, c := range DefaultCmds() {
		if c == "browser" || strings.HasPrefix(c, "sessions") {
			t.Fatalf("default cmds include %q", c)
		}
	}
	var p Permissions
	if p.Grants("browser") {
		t.Fatal("a token without cmds grants browser")
	}
}
