package sshserver

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/keys"
)

func TestLoadOrCreateHostKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "ssh_host_ed25519_key")
	first, err := LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if first.PublicKey().Type() != "ssh-ed25519" {
		t.Errorf("host key type %s", first.PublicKey().Type())
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key file: %v, %v", fi.Mode(), err)
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v", di.Mode())
	}
	again, err := LoadOrCreateHostKey(path)
	if err != nil || keys.Fingerprint(again.PublicKey()) != keys.Fingerprint(first.PublicKey()) {
		t.Fatalf("second start got another key: %v", err)
	}
	// Stock OpenSSH reads it.
	if _, err := exec.LookPath("ssh-keygen"); err == nil {
		out, err := exec.Command("ssh-keygen", "-y", "-f", path).Output()
		if err != nil || !strings.HasPrefix(string(out), testkit.PubLine(first)) {
			t.Errorf("ssh-keygen -y: %q, %v", out, err)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}

	// Readable by others: refused, as sshd would.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateHostKey(path); err == nil || !strings.Contains(err.Error(), "too open") {
		t.Errorf("0644 host key: %v", err)
	}
	// Not a key: refused, naming the file.
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	if _, err := LoadOrCreateHostKey(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("garbage host key: %v", err)
	}
}

// TestLoadOrCreateHostKeyRace: processes starting at once on an empty data
// dir end up with one key.
func TestLoadOrCreateHostKeyRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host_key")
	const n = 8
	fps := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := LoadOrCreateHostKey(path)
			if err != nil {
				t.Error(err)
				return
			}
			fps[i] = keys.Fingerprint(s.PublicKey())
		}()
	}
	wg.Wait()
	for _, fp := range fps[1:] {
		if fp != fps[0] {
			t.Fatalf("different host keys: %v", fps)
		}
	}
}
