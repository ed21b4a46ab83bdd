package sshserver

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	gossh "golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/keys"
)

// LoadOrCreateHostKey reads the OpenSSH private host key at path, or, when
// there is none, creates an ed25519 one there (mode 0600, directory 0700).
// Creation is atomic: a temporary file is linked into place, so a crash
// never leaves half a key and two processes starting at once agree on one.
// Like sshd, it refuses a key file that others can read.
func LoadOrCreateHostKey(path string) (gossh.Signer, error) {
	signer, err := LoadHostKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createHostKey(path); err != nil {
			return nil, err
		}
		signer, err = LoadHostKey(path)
	}
	return signer, err
}

// LoadHostKey reads the OpenSSH private host key at path and never creates
// one: a missing file is an error that wraps fs.ErrNotExist. Like sshd, it
// refuses a key file that others can read.
func LoadHostKey(path string) (gossh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sshserver: host key: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("sshserver: host key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("sshserver: host key %s: permissions %04o are too open (chmod 600 it)", path, fi.Mode().Perm())
	}
	signer, err := keys.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("sshserver: host key %s: %w", path, err)
	}
	return signer, nil
}

func createHostKey(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("sshserver: create host key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("sshserver: create host key: %w", err)
	}
	pem, err := keys.MarshalPrivateKey(priv, "exed host key")
	clear(priv)
	if err != nil {
		return fmt.Errorf("sshserver: create host key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".host-key-*") // mode 0600
	if err != nil {
		return fmt.Errorf("sshserver: create host key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(pem)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sshserver: create host key: %w", err)
	}
	// Link fails if the key appeared meanwhile: then that one is used.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("sshserver: create host key: %w", err)
	}
	return nil
}
