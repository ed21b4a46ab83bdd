package testkit

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Unavailable ends a test that lacks something it needs (a program, a
// database): it skips the test on a developer's machine, and fails it under
// CI=true, where everything must be installed.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI must provide it)", msg)
	}
	t.Skip(msg)
}

// RequireTools finds the stock programs a test drives, on PATH, and
// returns the last one's path; a missing one is Unavailable.
func RequireTools(t testing.TB, names ...string) string {
	t.Helper()
	var path string
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			Unavailable(t, "%s not installed", n)
		}
		path = p
	}
	return path
}

// SSHKeygen makes a key pair of type typ ("ed25519", "ecdsa", "rsa"; bits
// when not 0) with stock ssh-keygen, unencrypted, in dir, and returns the
// private key's path; the public key is beside it, with ".pub". The file is
// id_TYPE (id_TYPEBITS with bits), or id_TYPE-2, -3… when that is taken.
// A missing ssh-keygen fails the test; call RequireTools first to skip.
func SSHKeygen(t testing.TB, dir, typ string, bits int) string {
	t.Helper()
	base := "id_" + typ
	args := []string{"-q", "-t", typ, "-N", "", "-C", "test"}
	if bits != 0 {
		base += strconv.Itoa(bits)
		args = append(args, "-b", strconv.Itoa(bits))
	}
	path := filepath.Join(dir, base)
	for n := 2; ; n++ {
		if _, err := os.Lstat(path); os.IsNotExist(err) {
			break
		}
		path = filepath.Join(dir, base+"-"+strconv.Itoa(n))
	}
	args = append(args, "-f", path)
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return path
}

// Recipe is the shell recipe that mints an exe0 token with stock OpenSSH,
// as exed's documentation gives it, word for word but for its inputs, which
// come from the environment: P (the permissions JSON), KEY (the private
// key file), NS (the namespace) and OPTS (more ssh-keygen options, such as
// -O hashalg=sha256). It prints the token.
const Recipe = `set -eu
b64url() { tr -d '\n=' | tr '+/' '-_'; }
SIG=$(printf '%s' "$P" | ssh-keygen -Y sign -f "$KEY" -n "$NS" $OPTS)
TOKEN="exe0.$(printf '%s' "$P" | base64 | b64url).$(echo "$SIG" | sed '1d;$d' | b64url)"
printf '%s' "$TOKEN"
`

// RecipeToken runs Recipe through bash and returns the token it mints from
// payload with the key at keyPath, in namespace, hashed with hashAlg
// ("sha256", "sha512"; "" for ssh-keygen's default).
func RecipeToken(t testing.TB, keyPath, namespace, payload, hashAlg string) string {
	t.Helper()
	opts := ""
	if hashAlg != "" {
		opts = "-O hashalg=" + hashAlg
	}
	cmd := exec.Command("bash", "-c", Recipe)
	cmd.Env = append(os.Environ(), "P="+payload, "KEY="+keyPath, "NS="+namespace, "OPTS="+opts)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("recipe: %v: %s", err, stderr.String())
	}
	return string(out)
}

// SSHKeygenVerify checks with `ssh-keygen -Y verify` that the signature of
// the exe0 token is pubLine's over payload in namespace, and returns
// ssh-keygen's refusal as an error. It undoes the recipe by hand (base64url
// to armored base64), so that exed's own code is not on both sides of the
// check.
func SSHKeygenVerify(t testing.TB, pubLine, token, namespace string, payload []byte) error {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != "exe0" {
		t.Fatalf("not an exe0 token: %q", token)
	}
	blob, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatalf("token signature: %v", err)
	}
	b64 := base64.StdEncoding.EncodeToString(blob)
	var armored strings.Builder
	armored.WriteString("-----BEGIN SSH SIGNATURE-----\n")
	for len(b64) > 70 {
		armored.WriteString(b64[:70] + "\n")
		b64 = b64[70:]
	}
	armored.WriteString(b64 + "\n-----END SSH SIGNATURE-----\n")

	dir := t.TempDir()
	signers := filepath.Join(dir, "allowed_signers")
	sig := filepath.Join(dir, "token.sig")
	if err := os.WriteFile(signers, []byte("test@exed "+strings.TrimSpace(pubLine)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sig, []byte(armored.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ssh-keygen", "-Y", "verify", "-f", signers, "-I", "test@exed", "-n", namespace, "-s", sig)
	cmd.Stdin = bytes.NewReader(payload)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ssh-keygen -Y verify: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}
