package testkit

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

func TestSecretFragments(t *testing.T) {
	f := SecretFragments("exe1.ABCDEFGHIJKLMNOPQRSTUVWXYZ")
	if fmt.Sprint(f) != "[exe1.ABCDEFGHIJKLMNOPQRSTUVWXYZ ABCDEFGHIJKLMNOPQRSTUVWXYZ ABCDEFGHIJKLMNOP IJKLMNOPQRSTUVWX]" {
		t.Errorf("fragments = %v", f)
	}
}

// TestMask: each kind is masked, the same value twice gets the same mask,
// and what is not one of them is left alone.
func TestMask(t *testing.T) {
	pub := PubLine(SeededSigner(t, 1))
	in := `{"token":"exe0.eyJjdHgiOjF9.U1NIU0lH-_x","handle":"exe1.ABCDEFGHIJKLMNOPQRSTUVWXYZ",` +
		`"again":"exe1.ABCDEFGHIJKLMNOPQRSTUVWXYZ","other":"exe1.ZYXWVUTSRQPONMLKJIHGFEDCBA",` +
		`"fingerprint":"SHA256:` + strings.Repeat("a", 43) + `","public_key":"` + pub + `",` +
		`"user_id":"usralice00000000000","added_at":"2025-06-01T12:00:00Z","at":"2025-06-01T12:00:00.5+02:00",` +
		`"url":"https://web.exe.xyz/?share=K7QX2M4PABCDEFGHIJKLMNOPQR","link":"K7QX2M4P…","short":"ABCDEFGHIJKLMNOPQRSTUVWXY",` +
		`"name":"exe0-to-exe1","email":"user@example.com"}`
	want := `{"token":"<exe0-1>","handle":"<exe1-1>",` +
		`"again":"<exe1-1>","other":"<exe1-2>",` +
		`"fingerprint":"<fingerprint-1>","public_key":"<ssh-ed25519-1>",` +
		`"user_id":"<usr-1>","added_at":"<time-1>","at":"<time-2>",` +
		`"url":"https://web.exe.xyz/?share=<share-link-1>","link":"<share-link-name-1>","short":"ABCDEFGHIJKLMNOPQRSTUVWXY",` +
		`"name":"exe0-to-exe1","email":"user@example.com"}`
	if got := Mask(in); got != want {
		t.Errorf("Mask:\n got %s\nwant %s", got, want)
	}
}

// TestMaskHTML: a page's times are masked alike, whatever their form; a
// fingerprint is masked through the page's escaping; a date in a sentence
// is left.
func TestMaskHTML(t *testing.T) {
	fp := "SHA256:" + strings.Repeat("a", 20) + "+/" + strings.Repeat("b", 21)
	in := `<time datetime="2025-06-01T12:00:00Z">2025-06-01 12:00</time> <time datetime="2025-06-02T12:00:00Z">2025-06-02</time>` +
		` 2025-06-01 12:00 UTC, 2025-06-02 08:30; at 2025-06-01T12:00:01Z on 2025-06-01` +
		` <code>` + strings.ReplaceAll(fp, "+", "&#43;") + `</code> <a href="/k?key=` + url.QueryEscape(fp) + `">`
	want := `<time> <time> <when>, <when>; at <time> on 2025-06-01 <code><fingerprint-1></code> <a href="/k?key=<fingerprint-1>">`
	if got := MaskHTML(in); got != want {
		t.Errorf("MaskHTML:\n got %s\nwant %s", got, want)
	}
}

func TestClock(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	c := NewClock(t0)
	c.Advance(time.Minute)
	if got := c.Now(); !got.Equal(t0.Add(time.Minute)) || got.Location() != time.UTC {
		t.Errorf("after Advance: %v", got)
	}
	c.Set(t0)
	if !c.Now().Equal(t0) {
		t.Errorf("after Set: %v", c.Now())
	}
}

func TestSeededSigner(t *testing.T) {
	if PubLine(SeededSigner(t, 1)) != PubLine(SeededSigner(t, 1)) || PubLine(SeededSigner(t, 1)) == PubLine(SeededSigner(t, 2)) {
		t.Error("seeded signers: the same seed must give the same key, another seed another key")
	}
	if PubLine(NewSigner(t)) == PubLine(NewSigner(t)) {
		t.Error("NewSigner gave the same key twice")
	}
}

// TestRecipeVerifies: the recipe's token, from a key ssh-keygen made,
// passes SSHKeygenVerify, and a changed payload or namespace does not.
func TestRecipeVerifies(t *testing.T) {
	RequireTools(t, "bash", "ssh-keygen", "base64", "sed", "tr")
	dir := t.TempDir()
	key := SSHKeygen(t, dir, "ed25519", 0)
	if again := SSHKeygen(t, dir, "ed25519", 0); again != key+"-2" {
		t.Errorf("second key in the same dir: %s", again)
	}
	pub := readFile(t, key+".pub")
	const p = `{"ctx":{"role":"deploy"}}`
	tok := RecipeToken(t, key, "v0@web.exe.xyz", p, "sha256")
	if err := SSHKeygenVerify(t, pub, tok, "v0@web.exe.xyz", []byte(p)); err != nil {
		t.Fatal(err)
	}
	if SSHKeygenVerify(t, pub, tok, "v0@exe.dev", []byte(p)) == nil {
		t.Error("verified in another namespace")
	}
	if SSHKeygenVerify(t, pub, tok, "v0@web.exe.xyz", []byte(p+" ")) == nil {
		t.Error("verified another payload")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMaskLoginToken: a login link's token is masked as one, leaving the
// link around it, and the same token twice reads the same.
func TestMaskLoginToken(t *testing.T) {
	in := "https://exe.dev/auth/verify?token=ABCDEFGHIJKLMNOPQRSTUVWXYZ and ?token=ABCDEFGHIJKLMNOPQRSTUVWXYZ sessesaaaaaaaaaaaaaaaa"
	want := "https://exe.dev/auth/verify?token=<login-token-1> and ?token=<login-token-1> sessesaaaaaaaaaaaaaaaa"
	if got := Mask(in); got != want {
		t.Errorf("Mask = %q, want %q", got, want)
	}
	if got := Mask("id sesabcdefghijklmnop."); got != "id <ses-1>." {
		t.Errorf("session id: %q", got)
	}
}
