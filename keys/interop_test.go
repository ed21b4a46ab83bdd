package keys

import (
	"bytes"
	"crypto/elliptic"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sshKeygen is the stock OpenSSH tool the interop tests run against.
const sshKeygen = "/usr/bin/ssh-keygen"

// keygen runs ssh-keygen in dir with stdin and returns its stdout. A
// missing ssh-keygen fails the test: it is a dependency, not an option.
func keygen(t *testing.T, dir string, stdin []byte, args ...string) ([]byte, error) {
	t.Helper()
	if _, err := os.Stat(sshKeygen); err != nil {
		t.Fatalf("these tests need OpenSSH's ssh-keygen at %s (apt-get install openssh-client): %v", sshKeygen, err)
	}
	cmd := exec.Command(sshKeygen, args...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = &keygenError{args: args, err: err, stderr: stderr.String()}
	}
	return out, err
}

type keygenError struct {
	args   []string
	err    error
	stderr string
}

func (e *keygenError) Error() string {
	return "ssh-keygen " + strings.Join(e.args, " ") + ": " + e.err.Error() + ": " + e.stderr
}

func mustKeygen(t *testing.T, dir string, stdin []byte, args ...string) []byte {
	t.Helper()
	out, err := keygen(t, dir, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Signatures cross between ssh-keygen and this package in both directions,
// for every key type ssh-keygen makes in software and both hashes.
func TestSSHKeygenInterop(t *testing.T) {
	const namespace = "v0@web.exe.xyz"
	message := []byte(`{"exp":4070908800,"ctx":{"role":"deploy"}}`)
	for _, kt := range []struct{ name, typ, bits string }{
		{"ed25519", "ed25519", ""},
		{"ecdsa256", "ecdsa", "256"},
		{"ecdsa384", "ecdsa", "384"},
		{"ecdsa521", "ecdsa", "521"},
		{"rsa3072", "rsa", "3072"},
	} {
		t.Run(kt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			args := []string{"-q", "-t", kt.typ, "-N", "", "-C", "test@example", "-f", "key"}
			if kt.bits != "" {
				args = append(args, "-b", kt.bits)
			}
			mustKeygen(t, dir, nil, args...)

			pubLine, _ := os.ReadFile(filepath.Join(dir, "key.pub"))
			pub, comment, err := ParsePublicKey(pubLine)
			if err != nil {
				t.Fatal(err)
			}
			if comment != "test@example" {
				t.Errorf("comment %q", comment)
			}
			// Fingerprint: the second field of `ssh-keygen -lf`.
			lf := strings.Fields(string(mustKeygen(t, dir, nil, "-lf", "key.pub")))
			if len(lf) < 2 || lf[1] != Fingerprint(pub) {
				t.Errorf("Fingerprint %s, ssh-keygen -lf says %q", Fingerprint(pub), lf)
			}
			privFile, _ := os.ReadFile(filepath.Join(dir, "key"))
			signer, err := ParsePrivateKey(privFile)
			if err != nil {
				t.Fatal(err)
			}
			if MarshalAuthorized(signer.PublicKey()) != MarshalAuthorized(pub) {
				t.Fatal("private key's public half differs from key.pub")
			}
			writeFile(t, filepath.Join(dir, "allowed_signers"),
				[]byte("test@example namespaces=\""+namespace+"\" "+MarshalAuthorized(pub)+"\n"))

			for _, hash := range []string{HashSHA512, HashSHA256} {
				// ssh-keygen signs, we verify.
				signArgs := []string{"-Y", "sign", "-f", "key", "-n", namespace}
				if hash == HashSHA256 {
					signArgs = append(signArgs, "-O", "hashalg=sha256")
				}
				theirs, err := Unarmor(mustKeygen(t, dir, message, signArgs...))
				if err != nil {
					t.Fatal(err)
				}
				s, err := ParseSignature(theirs)
				if err != nil {
					t.Fatalf("%s: parse ssh-keygen's signature: %v", hash, err)
				}
				if s.Namespace != namespace || s.HashAlgorithm != hash || s.Fingerprint() != Fingerprint(pub) {
					t.Errorf("%s: parsed namespace %q hash %q fingerprint %s", hash, s.Namespace, s.HashAlgorithm, s.Fingerprint())
				}
				if err := s.Verify(message); err != nil {
					t.Fatalf("%s: verify ssh-keygen's signature: %v", hash, err)
				}
				wantErr(t, s.Verify(append(message, ' ')), ErrBadSignature, "does not verify")
				tampered := bytes.Clone(theirs)
				tampered[len(tampered)-1] ^= 1
				if s, err := ParseSignature(tampered); err == nil {
					wantErr(t, s.Verify(message), ErrBadSignature, "does not verify")
				}

				// We sign, ssh-keygen verifies.
				ours, err := Sign(signer, namespace, hash, message)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, "ours.sig"), Armor(ours))
				mustKeygen(t, dir, message, "-Y", "verify", "-f", "allowed_signers", "-I", "test@example",
					"-n", namespace, "-s", "ours.sig")
				mustKeygen(t, dir, message, "-Y", "check-novalidate", "-n", namespace, "-s", "ours.sig")
				// …and refuses it for another message or namespace, so the
				// checks above can fail.
				if _, err := keygen(t, dir, append(message, ' '), "-Y", "verify", "-f", "allowed_signers",
					"-I", "test@example", "-n", namespace, "-s", "ours.sig"); err == nil {
					t.Errorf("%s: ssh-keygen verified our signature over another message", hash)
				}
				if _, err := keygen(t, dir, message, "-Y", "check-novalidate", "-n", "v0@exe.dev", "-s", "ours.sig"); err == nil {
					t.Errorf("%s: ssh-keygen accepted our signature in another namespace", hash)
				}

				if kt.typ == "ed25519" && !bytes.Equal(ours, theirs) {
					t.Errorf("%s: ed25519 signature differs from ssh-keygen's:\n%s\n%s", hash, Armor(ours), Armor(theirs))
				}
			}
		})
	}
}

// MarshalPrivateKey writes what ssh-keygen reads, laid out as ssh-keygen
// writes it; ParsePrivateKey reads it back.
func TestMarshalPrivateKeyInterop(t *testing.T) {
	dir := t.TempDir()
	ed, edPriv := ed25519Signer(t)
	ec := ecdsaKey(t, elliptic.P384())
	for name, c := range map[string]struct {
		priv any
		pub  string
	}{
		"ed25519":  {edPriv, MarshalAuthorized(ed.PublicKey())},
		"ecdsa384": {ec, MarshalAuthorized(newSigner(t, ec).PublicKey())},
		"rsa2048":  {testRSA2048(), MarshalAuthorized(newSigner(t, testRSA2048()).PublicKey())},
	} {
		t.Run(name, func(t *testing.T) {
			data, err := MarshalPrivateKey(c.priv, "me@example")
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			if lines[0] != "-----BEGIN OPENSSH PRIVATE KEY-----" || lines[len(lines)-1] != "-----END OPENSSH PRIVATE KEY-----" {
				t.Errorf("PEM lines %q … %q", lines[0], lines[len(lines)-1])
			}
			for i, l := range lines[1 : len(lines)-2] {
				if len(l) != 70 {
					t.Errorf("line %d: %d columns, ssh-keygen writes 70", i+1, len(l))
				}
			}
			file := filepath.Join(dir, name)
			writeFile(t, file, data)
			out := strings.Fields(string(mustKeygen(t, dir, nil, "-y", "-f", file)))
			if len(out) < 3 || out[0]+" "+out[1] != c.pub || out[2] != "me@example" {
				t.Errorf("ssh-keygen -y: %q, want %s me@example", out, c.pub)
			}
			signer, err := ParsePrivateKey(data)
			if err != nil || MarshalAuthorized(signer.PublicKey()) != c.pub {
				t.Errorf("ParsePrivateKey: %v", err)
			}
		})
	}
}

// A passphrase-protected key file is refused with ErrEncryptedKey, and the
// error does not carry the file.
func TestParsePrivateKeyEncrypted(t *testing.T) {
	dir := t.TempDir()
	mustKeygen(t, dir, nil, "-q", "-t", "ed25519", "-N", "correct horse", "-f", "key")
	data, _ := os.ReadFile(filepath.Join(dir, "key"))
	_, err := ParsePrivateKey(data)
	wantErr(t, err, ErrEncryptedKey, "passphrase")
	if strings.Contains(err.Error(), "OPENSSH") || strings.Contains(err.Error(), "correct horse") {
		t.Errorf("error leaks the key: %v", err)
	}

	// Given to ParsePublicKey by mistake, it is a private key.
	_, _, err = ParsePublicKey(data)
	wantErr(t, err, ErrPrivateKey, ".pub")
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
