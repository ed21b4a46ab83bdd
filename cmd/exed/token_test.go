package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// recipe is SPEC §2's shell recipe for minting a token with stock ssh-keygen.
const recipe = `set -e
b64url() { tr -d '\n=' | tr '+/' '-_'; }
SIG=$(printf '%s' "$P" | ssh-keygen -Y sign -f "$KEY" -n "$NS" $HASHOPT)
printf '%s' "exe0.$(printf '%s' "$P" | base64 | b64url).$(echo "$SIG" | sed '1d;$d' | b64url)"
`

// keygen makes a key pair with the stock ssh-keygen and returns the
// private key's path.
func keygen(t *testing.T, dir, typ string, bits int) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("id_%s_%d", typ, bits))
	args := []string{"-q", "-t", typ, "-N", "", "-C", "test", "-f", path}
	if bits > 0 {
		args = append(args, "-b", fmt.Sprint(bits))
	}
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	return path
}

// recipeToken mints a token with the shell recipe.
func recipeToken(t *testing.T, key, ns, payload, hash string) string {
	t.Helper()
	hashOpt := ""
	if hash != "" {
		hashOpt = "-O hashalg=" + hash
	}
	r := runCmd(t, []string{"P=" + payload, "KEY=" + key, "NS=" + ns, "HASHOPT=" + hashOpt}, "", "bash", "-c", recipe)
	if r.code != 0 {
		t.Fatalf("recipe: %s", r.stderr)
	}
	return r.stdout
}

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
		key := keygen(t, dir, c.typ, c.bits)
		fp := fingerprintOf(t, key+".pub")
		for _, hash := range []string{"sha512", "sha256"} {
			t.Run(fmt.Sprintf("%s-%d-%s", c.typ, c.bits, hash), func(t *testing.T) {
				tok := recipeToken(t, key, "v0@web.exe.xyz", payload, hash)
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
			r := run(t, nil, "", "token", "mint", "--key", key, "--vm", "web", "--perms", payload)
			if r.code != 0 {
				t.Fatalf("mint: %s", r.stderr)
			}
			tok := strings.TrimSpace(r.stdout)
			if c.typ == "ed25519" {
				if want := recipeToken(t, key, "v0@web.exe.xyz", payload, ""); tok != want {
					t.Errorf("ed25519 mint differs from the recipe:\n got %s\nwant %s", tok, want)
				}
			}
			sshKeygenVerify(t, dir, key+".pub", tok, "v0@web.exe.xyz", payload)
		})
	}
}

// sshKeygenVerify checks an exe0 token with `ssh-keygen -Y verify`.
func sshKeygenVerify(t *testing.T, dir, pubPath, tok, ns, payload string) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] != "exe0" {
		t.Fatalf("not an exe0 token: %q", tok)
	}
	pub, err := os.ReadFile(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	signers := filepath.Join(dir, "allowed_signers")
	if err := os.WriteFile(signers, []byte("me@test "+string(pub)), 0o600); err != nil {
		t.Fatal(err)
	}
	// Undo the recipe: base64url → base64 with padding → armor.
	b64 := strings.NewReplacer("-", "+", "_", "/").Replace(parts[2])
	for len(b64)%4 != 0 {
		b64 += "="
	}
	var armored strings.Builder
	armored.WriteString("-----BEGIN SSH SIGNATURE-----\n")
	for len(b64) > 70 {
		armored.WriteString(b64[:70] + "\n")
		b64 = b64[70:]
	}
	armored.WriteString(b64 + "\n-----END SSH SIGNATURE-----\n")
	sigPath := filepath.Join(dir, "token.sig")
	if err := os.WriteFile(sigPath, []byte(armored.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, nil, payload, "ssh-keygen", "-Y", "verify", "-f", signers, "-I", "me@test", "-n", ns, "-s", sigPath)
	if r.code != 0 {
		t.Fatalf("ssh-keygen -Y verify refused exed's token: %s%s", r.stdout, r.stderr)
	}
}

// TestTokenInspectRefusals: a token that breaks a rule, or whose
// signature does not verify, exits non-zero with one line on stderr.
func TestTokenInspectRefusals(t *testing.T) {
	dir := t.TempDir()
	key := keygen(t, dir, "ed25519", 0)
	good := recipeToken(t, key, "v0@exe.dev", `{"cmds":["whoami"]}`, "")
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + b64url(`{"cmds":["ls"]}`) + "." + parts[2]
	dupKeys := recipeToken(t, key, "v0@exe.dev", `{"exp":4070908800,"exp":4070908801}`, "")
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
