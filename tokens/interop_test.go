package tokens

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/store"
)

// keygen makes a key pair with stock ssh-keygen in dir and returns the
// private key's path and our signer for it.
func keygen(t *testing.T, dir, typ string, bits int) (string, ssh.Signer) {
	t.Helper()
	path := testkit.SSHKeygen(t, dir, typ, bits)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := keys.ParsePrivateKey(data)
	if err != nil {
		t.Fatalf("ParsePrivateKey(%s): %v", typ, err)
	}
	return path, s
}

// TestInteropSSHKeygen: tokens made by stock ssh-keygen with the documented
// recipe parse and verify, for every key type and both hashes; ours for
// ed25519 are byte-identical; and the usual refusals hold for them.
func TestInteropSSHKeygen(t *testing.T) {
	testkit.RequireTools(t, "ssh-keygen", "bash")
	dir := t.TempDir()
	f := newFixture(t, Config{CacheSize: -1})
	ctx := context.Background()
	const p = `{"exp":4070908800,"ctx":{"role":"deploy"}}`

	for _, kt := range []struct {
		typ  string
		bits int
		want string // the key type in the signature
	}{
		{"ed25519", 0, ssh.KeyAlgoED25519},
		{"ecdsa", 256, ssh.KeyAlgoECDSA256},
		{"ecdsa", 384, ssh.KeyAlgoECDSA384},
		{"ecdsa", 521, ssh.KeyAlgoECDSA521},
		{"rsa", 3072, ssh.KeyAlgoRSA},
	} {
		path, signer := keygen(t, dir, kt.typ, kt.bits)
		f.addKey(signer, filepath.Base(path), func(*store.Key) {})
		for _, h := range []struct{ opt, hash string }{
			{"", keys.HashSHA512}, // ssh-keygen's default
			{"sha256", keys.HashSHA256},
		} {
			name := filepath.Base(path) + "/" + h.hash
			t.Run(name, func(t *testing.T) {
				tok := testkit.RecipeToken(t, path, vmNS, p, h.opt)
				x, err := ParseExe0(tok)
				if err != nil {
					t.Fatalf("ParseExe0: %v", err)
				}
				if x.Sig.HashAlgorithm != h.hash || x.Sig.PublicKey.Type() != kt.want || string(x.Payload) != p {
					t.Fatalf("parsed hash %q key %q payload %q", x.Sig.HashAlgorithm, x.Sig.PublicKey.Type(), x.Payload)
				}
				g, err := f.v.Verify(ctx, tok, Target{Namespace: vmNS, VM: f.web})
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if g.Key.Fingerprint != keys.Fingerprint(signer.PublicKey()) || string(g.Perms.Ctx) != `{"role":"deploy"}` {
					t.Fatalf("grant %+v", g)
				}

				// Signed for the VM, not the API.
				_, err = f.v.Verify(ctx, tok, Target{Namespace: apiNS})
				wantReason(t, err, ReasonNamespace, CheckNamespace)
				// P changed under the same signature.
				_, s64 := parts(t, tok)
				_, err = f.v.Verify(ctx, "exe0."+enc(`{"exp":4070908801,"ctx":{"role":"deploy"}}`)+"."+s64, Target{Namespace: vmNS, VM: f.web})
				wantReason(t, err, ReasonBadSignature, CheckSignature)
			})
		}
		if kt.typ == "ed25519" {
			tok := testkit.RecipeToken(t, path, vmNS, p, "")
			ours, err := MintExe0(signer, vmNS, []byte(p))
			if err != nil {
				t.Fatal(err)
			}
			if ours != tok {
				t.Fatalf("MintExe0 differs from the recipe:\n ours   %s\n recipe %s", ours, tok)
			}
		}
	}

	// A key ssh-keygen made but nobody registered.
	path, _ := keygen(t, t.TempDir(), "ed25519", 0)
	_, err := f.v.Verify(ctx, testkit.RecipeToken(t, path, apiNS, `{}`, ""), Target{Namespace: apiNS})
	wantReason(t, err, ReasonUnknownKey, CheckKey)
}

func TestMintExe0(t *testing.T) {
	s := testkit.NewSigner(t)
	tok, err := MintExe0(s, apiNS, []byte(`{"cmds":["ls"]}`))
	if err != nil {
		t.Fatal(err)
	}
	x, err := ParseExe0(tok)
	if err != nil {
		t.Fatal(err)
	}
	if x.Sig.HashAlgorithm != keys.HashSHA512 || x.Sig.Namespace != apiNS {
		t.Fatalf("hash %q namespace %q", x.Sig.HashAlgorithm, x.Sig.Namespace)
	}
	if err := x.Sig.Verify(x.Payload); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"exp":1}`, ` {}`, `{"a":1}`, "{}\n"} {
		if _, err := MintExe0(s, apiNS, []byte(bad)); err == nil {
			t.Errorf("MintExe0(%q) succeeded", bad)
		}
	}
	big := `{"ctx":"` + strings.Repeat("x", MaxTokenLen) + `"}`
	if _, err := MintExe0(s, apiNS, []byte(big)); err == nil {
		t.Error("MintExe0 made a token over MaxTokenLen")
	}
}
