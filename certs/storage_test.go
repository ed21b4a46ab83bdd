package certs

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"io/fs"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
)

func openStore(t *testing.T) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testStorage(st store.CertStore, sealer Sealer, lease time.Duration) *storage {
	return newStorage(st, sealer, time.Now, lease, 10*time.Millisecond, slog.New(slog.DiscardHandler))
}

// gcmSealer is AES-GCM under a random key, the nonce in front.
type gcmSealer struct{ aead cipher.AEAD }

func newGCMSealer(t *testing.T) *gcmSealer {
	key := make([]byte, 32)
	rand.Read(key)
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return &gcmSealer{aead}
}

func (g *gcmSealer) Seal(p, ad []byte) ([]byte, error) {
	nonce := make([]byte, g.aead.NonceSize())
	rand.Read(nonce)
	return g.aead.Seal(nonce, nonce, p, ad), nil
}

func (g *gcmSealer) Open(s, ad []byte) ([]byte, error) {
	n := g.aead.NonceSize()
	if len(s) < n {
		return nil, errors.New("short")
	}
	return g.aead.Open(nil, s[:n], s[n:], ad)
}

// TestStorageSealsPrivateKeys: with a Sealer, private keys (certificate
// and account keys) are stored sealed and bound to their key; the rest is
// stored as it is; a key stored before the Sealer existed still loads.
func TestStorageSealsPrivateKeys(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	s := testStorage(st, newGCMSealer(t), time.Second)
	keyPEM := []byte("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI…\n-----END EC PRIVATE KEY-----\n")
	for _, key := range []string{
		"certificates/acme-v02/web.exe.xyz/web.exe.xyz.key",
		"acme/acme-v02/users/ops@example.com/ops.key",
	} {
		if err := s.Store(ctx, key, keyPEM); err != nil {
			t.Fatal(err)
		}
		raw, err := st.CertBlob(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw.Value, []byte("PRIVATE KEY")) || !bytes.HasPrefix(raw.Value, sealedMagic) {
			t.Errorf("%s stored in the clear: %q", key, raw.Value)
		}
		if got, err := s.Load(ctx, key); err != nil || !bytes.Equal(got, keyPEM) {
			t.Errorf("Load(%s) = %q, %v", key, got, err)
		}
		// Moved to another key, it does not open.
		moved := strings.Replace(key, "web", "evil", 2)
		if moved == key {
			moved = key + ".moved.key"
		}
		if err := st.PutCertBlob(ctx, store.CertBlob{Key: moved, Value: raw.Value}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(ctx, moved); err == nil {
			t.Errorf("a sealed key moved to %s opened", moved)
		}
		// Without the secret, it does not open either (and says why).
		if _, err := testStorage(st, nil, time.Second).Load(ctx, key); err == nil || !strings.Contains(err.Error(), "sealed") {
			t.Errorf("Load without a Sealer = %v", err)
		}
	}
	// Certificates are public: stored as they are.
	if err := s.Store(ctx, "certificates/acme-v02/web.exe.xyz/web.exe.xyz.crt", []byte("CERT")); err != nil {
		t.Fatal(err)
	}
	if raw, _ := st.CertBlob(ctx, "certificates/acme-v02/web.exe.xyz/web.exe.xyz.crt"); string(raw.Value) != "CERT" {
		t.Errorf("certificate stored as %q", raw.Value)
	}
	// A key stored before the Sealer was configured loads as it was.
	if err := st.PutCertBlob(ctx, store.CertBlob{Key: "old/old.key", Value: keyPEM}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(ctx, "old/old.key"); err != nil || !bytes.Equal(got, keyPEM) {
		t.Errorf("Load(unsealed key) = %q, %v", got, err)
	}
}

// TestStorageFileSemantics: certmagic's Storage contract, as its
// FileStorage keeps it.
func TestStorageFileSemantics(t *testing.T) {
	ctx := context.Background()
	s := testStorage(openStore(t), nil, time.Second)
	if _, err := s.Load(ctx, "nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
	for _, k := range []string{"certificates/ca/a.test/a.test.crt", "certificates/ca/a.test/a.test.json", "certificates/ca/b.test/b.test.crt", "acme/ca/users/x/x.json"} {
		if err := s.Store(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	list := func(dir string, recursive bool) []string {
		t.Helper()
		got, err := s.List(ctx, dir, recursive)
		if err != nil {
			t.Fatalf("List(%q, %v): %v", dir, recursive, err)
		}
		return got
	}
	if got, want := list("certificates", false), []string{"certificates/ca"}; !reflect.DeepEqual(got, want) {
		t.Errorf("List(certificates) = %q, want %q", got, want)
	}
	if got, want := list("certificates/ca", false), []string{"certificates/ca/a.test", "certificates/ca/b.test"}; !reflect.DeepEqual(got, want) {
		t.Errorf("List(certificates/ca) = %q, want %q", got, want)
	}
	want := []string{"certificates/ca", "certificates/ca/a.test", "certificates/ca/a.test/a.test.crt", "certificates/ca/a.test/a.test.json", "certificates/ca/b.test", "certificates/ca/b.test/b.test.crt"}
	if got := list("certificates", true); !reflect.DeepEqual(got, want) {
		t.Errorf("List(certificates, recursive) = %q, want %q", got, want)
	}
	if _, err := s.List(ctx, "nope", false); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("List(missing) = %v, want fs.ErrNotExist", err)
	}
	if !s.Exists(ctx, "certificates/ca") || !s.Exists(ctx, "certificates/ca/a.test/a.test.crt") || s.Exists(ctx, "certificates/c") {
		t.Error("Exists: wrong for a directory, a file or a prefix that is no component")
	}
	if ki, err := s.Stat(ctx, "certificates/ca/a.test/a.test.crt"); err != nil || !ki.IsTerminal || ki.Size != int64(len("certificates/ca/a.test/a.test.crt")) {
		t.Errorf("Stat(file) = %+v, %v", ki, err)
	}
	if ki, err := s.Stat(ctx, "certificates/ca"); err != nil || ki.IsTerminal {
		t.Errorf("Stat(dir) = %+v, %v", ki, err)
	}
	if _, err := s.Stat(ctx, "nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(missing) = %v", err)
	}
	if err := s.Delete(ctx, "certificates/ca/a.test"); err != nil {
		t.Fatal(err)
	}
	if got, want := list("certificates/ca", false), []string{"certificates/ca/b.test"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after Delete: %q, want %q", got, want)
	}
	if err := s.Delete(ctx, "nope"); err != nil {
		t.Errorf("Delete(missing) = %v", err)
	}
}

// TestStorageLocks: two processes sharing a store (two storages): one
// holds a lock at a time; a holder that keeps renewing keeps it past its
// lease; the waiter gets it when it is released; a holder that died (no
// renewals) loses it once its lease ends.
func TestStorageLocks(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	const lease = time.Second
	a, b := testStorage(st, nil, lease), testStorage(st, nil, lease)

	if err := a.Lock(ctx, "issue_cert_web"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "issue_cert_web"); ok || err != nil {
		t.Fatalf("B.TryLock on A's lock = %v, %v", ok, err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, "issue_cert_web") }()
	// A holds it for three leases: its keep-alive renews it, and B, trying
	// every 10 ms, does not get it.
	select {
	case err := <-got:
		t.Fatalf("B took the lock A keeps renewing (%v)", err)
	case <-time.After(3 * lease):
	}
	if err := a.Unlock(ctx, "issue_cert_web"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("B did not get the lock A released")
	}
	if err := b.Unlock(ctx, "issue_cert_web"); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx, "issue_cert_web"); err == nil {
		t.Error("A unlocked a lock it no longer holds")
	}

	// A holder that died: its lease ends and B takes over.
	now := time.Now()
	if ok, err := st.AcquireCertLock(ctx, "renew_cert_api", "dead", now, now.Add(lease)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.Lock(waitCtx, "renew_cert_api"); err != nil {
		t.Fatalf("B waiting for a dead holder's lock: %v", err)
	}
	if since := time.Since(now); since < lease {
		t.Errorf("B took the dead holder's lock after %v, before its lease ended", since)
	}
	// A canceled wait returns.
	short, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	if err := a.Lock(short, "renew_cert_api"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock past its context = %v", err)
	}
	b.releaseAll(ctx)
	if ok, err := a.TryLock(ctx, "renew_cert_api"); !ok || err != nil {
		t.Errorf("after releaseAll, A.TryLock = %v, %v", ok, err)
	}
	a.releaseAll(ctx)
}

// TestZapToSlog: certmagic's zap lines reach slog with their fields, Info
// demoted to Debug.
func TestZapToSlog(t *testing.T) {
	var buf bytes.Buffer
	l := zapLogger(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l.Named("obtain").With(zap.String("identifier", "web.exe.xyz")).Info("lock acquired", zap.Int("attempt", 2))
	l.Error("could not get certificate", zap.Error(errors.New("boom")))
	out := buf.String()
	for _, want := range []string{
		`level=DEBUG msg="lock acquired" identifier=web.exe.xyz logger=certmagic.obtain attempt=2`,
		`level=ERROR msg="could not get certificate" logger=certmagic error=boom`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log output lacks %q:\n%s", want, out)
		}
	}
	buf.Reset()
	quiet := zapLogger(slog.NewTextHandler(&buf, nil)) // Info and up
	quiet.Info("chatter")
	if buf.Len() != 0 {
		t.Errorf("certmagic Info logged at Info: %s", buf.String())
	}
}
