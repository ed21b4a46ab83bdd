package certs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/exed-dev/exed/store"
)

// Sealer protects private keys at rest: AEAD under the server's secret.
// additionalData is the blob's key, so that a sealed value moved to
// another key does not open.
type Sealer interface {
	Seal(plaintext, additionalData []byte) ([]byte, error)
	Open(sealed, additionalData []byte) ([]byte, error)
}

// sealedMagic starts every sealed value, so that Load tells a sealed value
// from one stored before a Sealer was configured (which is returned as it
// is). A PEM value starts with "-----".
var sealedMagic = []byte("exed-sealed-1\x00")

// secretKey reports whether the blob at key holds a private key: a
// certificate's (certificates/…/NAME.key) or the ACME account's
// (acme/…/users/EMAIL/NAME.key).
func secretKey(key string) bool { return strings.HasSuffix(key, ".key") }

// storage is certmagic.Storage (and TryLocker) over the registry's
// CertStore, so that every instance sharing the registry shares the
// certificates, the ACME account and the challenges in progress, and
// takes the same locks.
type storage struct {
	st     store.CertStore
	sealer Sealer // nil: private keys are stored as they are
	now    func() time.Time
	lease  time.Duration // of a lock; renewed every lease/3 while held
	poll   time.Duration // between two tries of a held lock
	log    *slog.Logger

	mu   sync.Mutex
	held map[string]*heldLock // by lock name: the locks this process holds
}

// heldLock is one lock this process holds: the holder id it took it
// under, and the keep-alive that renews its lease.
type heldLock struct {
	holder string
	stop   chan struct{}
	done   chan struct{}
}

var (
	_ certmagic.Storage   = (*storage)(nil)
	_ certmagic.TryLocker = (*storage)(nil)
)

func newStorage(st store.CertStore, sealer Sealer, now func() time.Time, lease, poll time.Duration, log *slog.Logger) *storage {
	return &storage{st: st, sealer: sealer, now: now, lease: lease, poll: poll, log: log, held: map[string]*heldLock{}}
}

// Store implements certmagic.Storage; private keys are sealed when there
// is a Sealer.
func (s *storage) Store(ctx context.Context, key string, value []byte) error {
	if s.sealer != nil && secretKey(key) {
		sealed, err := s.sealer.Seal(value, []byte(key))
		if err != nil {
			return fmt.Errorf("certs: seal %s: %w", key, err)
		}
		value = append(slices.Clip(sealedMagic), sealed...)
	}
	return s.st.PutCertBlob(ctx, store.CertBlob{Key: key, Value: value, Modified: s.now()})
}

// Load implements certmagic.Storage: fs.ErrNotExist when there is no such
// blob.
func (s *storage) Load(ctx context.Context, key string) ([]byte, error) {
	b, err := s.st.CertBlob(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fs.ErrNotExist
	}
	if err != nil {
		return nil, err
	}
	sealed, ok := bytes.CutPrefix(b.Value, sealedMagic)
	if !ok {
		return b.Value, nil
	}
	if s.sealer == nil {
		return nil, fmt.Errorf("certs: %s is sealed and this server has no secret to open it", key)
	}
	v, err := s.sealer.Open(sealed, []byte(key))
	if err != nil {
		return nil, fmt.Errorf("certs: open %s: %w", key, err)
	}
	return v, nil
}

// Delete implements certmagic.Storage: key and everything under it.
func (s *storage) Delete(ctx context.Context, key string) error {
	return s.st.DeleteCertBlobs(ctx, key)
}

// Exists implements certmagic.Storage: key is a blob or a directory.
func (s *storage) Exists(ctx context.Context, key string) bool {
	infos, err := s.st.CertBlobInfos(ctx, key)
	return err == nil && len(infos) > 0
}

// List implements certmagic.Storage as its FileStorage does: the files and
// directories under dir, only its direct children unless recursive;
// fs.ErrNotExist when there is nothing under dir.
func (s *storage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	infos, err := s.st.CertBlobInfos(ctx, dir)
	if err != nil {
		return nil, err
	}
	var keys []string
	seen := map[string]bool{}
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, in := range infos {
		rest, ok := strings.CutPrefix(in.Key, dir+"/")
		if dir == "" {
			rest, ok = in.Key, true
		}
		if !ok || rest == "" {
			continue // dir itself is a file
		}
		parts := strings.Split(rest, "/")
		if !recursive {
			parts = parts[:1]
		}
		for i := range parts {
			add(joinKey(dir, strings.Join(parts[:i+1], "/")))
		}
	}
	if len(keys) == 0 {
		return nil, fs.ErrNotExist
	}
	return keys, nil
}

func joinKey(dir, rest string) string {
	if dir == "" {
		return rest
	}
	return dir + "/" + rest
}

// Stat implements certmagic.Storage.
func (s *storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	infos, err := s.st.CertBlobInfos(ctx, key)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	for _, in := range infos {
		if in.Key == key {
			return certmagic.KeyInfo{Key: key, Modified: in.Modified, Size: in.Size, IsTerminal: true}, nil
		}
	}
	if len(infos) > 0 {
		return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
	}
	return certmagic.KeyInfo{}, fs.ErrNotExist
}

// Lock implements certmagic.Locker: it waits until this process holds the
// lock called name, or ctx is done. Two callers in this process wait for
// each other as two processes do: each try is made under a holder id of
// its own.
func (s *storage) Lock(ctx context.Context, name string) error {
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("certs: lock %s: %w", name, ctx.Err())
		case <-tick.C:
		}
	}
}

// TryLock implements certmagic.TryLocker: one try at the lock called
// name. Once taken, its lease is renewed in the background until Unlock.
func (s *storage) TryLock(ctx context.Context, name string) (bool, error) {
	holder := newHolder()
	now := s.now()
	ok, err := s.st.AcquireCertLock(ctx, name, holder, now, now.Add(s.lease))
	if err != nil || !ok {
		return false, err
	}
	h := &heldLock{holder: holder, stop: make(chan struct{}), done: make(chan struct{})}
	s.mu.Lock()
	s.held[name] = h
	s.mu.Unlock()
	go s.keepAlive(name, h)
	return true, nil
}

// keepAlive renews h's lease on name every lease/3 until h is released.
// A renewal that finds the lock taken over (this process stalled past its
// lease) stops: the other holder's work goes on.
func (s *storage) keepAlive(name string, h *heldLock) {
	defer close(h.done)
	tick := time.NewTicker(s.lease / 3)
	defer tick.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.lease/3)
		err := s.st.RenewCertLock(ctx, name, h.holder, s.now().Add(s.lease))
		cancel()
		if errors.Is(err, store.ErrNotFound) {
			s.log.Warn("tls: lost a lock: its lease ended before it was renewed", "lock", name)
			return
		}
		if err != nil {
			s.log.Warn("tls: renew a lock's lease", "lock", name, "err", err)
		}
	}
}

// Unlock implements certmagic.Locker.
func (s *storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("certs: unlock %s: not held by this process", name)
	}
	close(h.stop)
	<-h.done
	if err := s.st.ReleaseCertLock(ctx, name, h.holder); err != nil {
		return fmt.Errorf("certs: unlock %s: %w", name, err)
	}
	return nil
}

// releaseAll lets go of every lock this process still holds (at Stop).
func (s *storage) releaseAll(ctx context.Context) {
	s.mu.Lock()
	names := make([]string, 0, len(s.held))
	for name := range s.held {
		names = append(names, name)
	}
	s.mu.Unlock()
	for _, name := range names {
		if err := s.Unlock(ctx, name); err != nil {
			s.log.Warn("tls: release a lock at shutdown", "lock", name, "err", err)
		}
	}
}

// newHolder is a fresh holder id: 16 random bytes, hex.
func newHolder() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
