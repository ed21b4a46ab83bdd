package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/exed-dev/exed/internal/testkit"
)

type inspected struct {
	Namespace      string          `json:"namespace"`
	Fingerprint    string          `json:"fingerprint"`
	KeyType        string          `json:"key_type"`
	HashAlgorithm  string          `json:"hash_algorithm"`
	Permissions    json.RawMessage `json:"permissions"`
	SignatureValid bool            `json:"signature_valid"`
	Expired        bool            `json:"expired"`
	NotYetValid    bool            `json:"not_yet_valid"`
}

func fingerprintOf(t *testing.T, pubPath string) string {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-lf", pubPath).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))[1]
}

// TestTokenInterop: tokens from the stock ssh-keygen recipe pass
// `exed token inspect`, and `exed token mint` tokens verify with
// `ssh-keygen -Y verify`, for every key type and both hashes.
func TestTokenInterop(t *testing.T) {
	dir := t.TempDir()
	const payload = `{"exp":4070908800,"ctx":{"role":"deploy"}}`
	cases := []struct {
		typ     string
		bits    int
		keyType string
	}{
		{"ed25519", 0, "ssh-ed25519"},
		{"ecdsa", 256, "ecdsa-sha2-nistp256"},
		{"ecdsa", 384, "ecdsa-sha2-nistp384"},
		{"ecdsa", 521, "ecdsa-sha2-nistp521"},
		{"rsa", 3072, "ssh-rsa"},
	}
	for _, c := range cases {
		key := testkit.SSHKeygen(t, dir, c.typ, c.bits)
		fp := fingerprintOf(t, key+".pub")
		for _, hash := range []string{"sha512", "sha256"} {
			t.Run(fmt.Sprintf("%s-%d-%s", c.typ, c.bits, hash), func(t *testing.T) {
				tok := testkit.RecipeToken(t, key, "v0@web.exe.xyz", payload, hash)
				r := run(t, nil, "", "token", "inspect", tok)
				if r.code != 0 {
					t.Fatalf("inspect refused a recipe token: %s", r.stderr)
				}
				var got inspected
				if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
					t.Fatalf("inspect output: %v\n%s", err, r.stdout)
				}
				if got.Namespace != "v0@web.exe.xyz" || got.Fingerprint != fp || got.KeyType != c.keyType ||
					got.HashAlgorithm != hash || !got.SignatureValid || got.Expired || got.NotYetValid {
					t.Errorf("inspect = %+v", got)
				}
				if string(got.Permissions) != payload {
					t.Errorf("permissions = %s, want %s", got.Permissions, payload)
				}
			})
		}
		t.Run(fmt.Sprintf("mint-%s-%d", c.typ, c.bits), func(t *testing.T) {
			// exe.dev's VM domain, given explicitly (the default is vm.localhost).
			r := run(t, nil, "", "token", "mint", "--key", key, "--vm-domain", "exe.xyz", "--vm", "web", "--perms", payload)
			if r.code != 0 {
				t.Fatalf("mint: %s", r.stderr)
			}
			tok := strings.TrimSpace(r.stdout)
			if c.typ == "ed25519" {
				if want := testkit.RecipeToken(t, key, "v0@web.exe.xyz", payload, ""); tok != want {
					t.Errorf("ed25519 mint differs from the recipe:\n got %s\nwant %s", tok, want)
				}
			}
			sshKeygenVerify(t, key+".pub", tok, "v0@web.exe.xyz", payload)
		})
	}
}

// sshKeygenVerify checks an exe0 token with `ssh-keygen -Y verify`
// against the public key in the file pubPath.
func sshKeygenVerify(t *testing.T, pubPath, tok, ns, payload string) {
	t.Helper()
	pub, err := os.ReadFile(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := testkit.SSHKeygenVerify(t, string(pub), tok, ns, []byte(payload)); err != nil {
		t.Fatalf("refused exed's token: %v", err)
	}
}

// TestTokenInspectRefusals: a token that breaks a rule, or whose
// signature does not verify, exits non-zero with one line on stderr.
func TestTokenInspectRefusals(t *testing.T) {
	dir := t.TempDir()
	key := testkit.SSHKeygen(t, dir, "ed25519", 0)
	good := testkit.RecipeToken(t, key, "v0@exe.dev", `{"cmds":["whoami"]}`, "")
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + b64url(`{"cmds":["ls"]}`) + "." + parts[2]
	dupKeys := testkit.RecipeToken(t, key, "v0@exe.dev", `{"exp":4070908800,"exp":4070908801}`, "")
	for name, tok := range map[string]string{
		"tampered payload": tampered,
		"duplicate keys":   dupKeys,
		"not a token":      "hello",
		"padding":          good + "=",
	} {
		t.Run(name, func(t *testing.T) {
			r := run(t, nil, "", "token", "inspect", tok)
			if r.code == 0 {
				t.Fatalf("inspect accepted a bad token; stdout %s", r.stdout)
			}
			if lines := strings.Count(strings.TrimSpace(r.stderr), "\n"); lines != 0 || r.stderr == "" {
				t.Errorf("want one line on stderr, got %q", r.stderr)
			}
			if strings.Contains(r.stderr, tok) {
				t.Errorf("stderr repeats the token")
			}
		})
	}
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestTokenMintCtxThatCannotTravelInHeader: `exed token mint` refuses a
// ctx no header can carry (a raw DEL), given as --ctx or inside --perms,
// with one line and no token: the same rule (tokens.CheckCtxHeader) the
// proxy applies to a token minted elsewhere.
func TestTokenMintCtxThatCannotTravelInHeader(t *testing.T) {
	dir := t.TempDir()
	key := testkit.SSHKeygen(t, dir, "ed25519", 0)
	for _, args := range [][]string{
		{"--ctx", "\"a\x7fb\""},
		{"--perms", "{\"ctx\":[\"\x7f\"]}"},
	} {
		r := run(t, nil, "", append([]string{"token", "mint", "--key", key}, args...)...)
		if r.code == 0 || r.stdout != "" || !strings.Contains(r.stderr, "cannot travel in a header") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("token mint %q: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
}
