package sqlstore

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/exed-dev/exed/store"
)

// The conformance tests of store.CertStore, run by TestStore on every
// backend.

func putBlob(t *testing.T, s store.Store, key string, value []byte) {
	t.Helper()
	if err := s.PutCertBlob(context.Background(), store.CertBlob{Key: key, Value: value, Modified: t0}); err != nil {
		t.Fatalf("PutCertBlob(%s): %v", key, err)
	}
}

func blobKeys(t *testing.T, s store.Store, prefix string) []string {
	t.Helper()
	infos, err := s.CertBlobInfos(context.Background(), prefix)
	if err != nil {
		t.Fatalf("CertBlobInfos(%q): %v", prefix, err)
	}
	keys := []string{}
	for _, in := range infos {
		keys = append(keys, in.Key)
	}
	return keys
}

func testCertBlobs(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, err := s.CertBlob(ctx, "certificates/x/a.crt")
	wantErr(t, "CertBlob(missing)", err, store.ErrNotFound)

	// Every byte value survives, and so does an empty value.
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	putBlob(t, s, "certificates/x/a.crt", all)
	putBlob(t, s, "empty", nil)
	got, err := s.CertBlob(ctx, "certificates/x/a.crt")
	if err != nil || !bytes.Equal(got.Value, all) || !got.Modified.Equal(t0) || got.Key != "certificates/x/a.crt" {
		t.Fatalf("CertBlob = %+v, %v", got, err)
	}
	if got, err := s.CertBlob(ctx, "empty"); err != nil || len(got.Value) != 0 {
		t.Fatalf("CertBlob(empty) = %+v, %v", got, err)
	}

	// A put replaces.
	later := t0.Add(time.Hour)
	if err := s.PutCertBlob(ctx, store.CertBlob{Key: "certificates/x/a.crt", Value: []byte("v2"), Modified: later}); err != nil {
		t.Fatal(err)
	}
	got, err = s.CertBlob(ctx, "certificates/x/a.crt")
	if err != nil || string(got.Value) != "v2" || !got.Modified.Equal(later) {
		t.Fatalf("CertBlob after replace = %+v, %v", got, err)
	}

	// A prefix is a whole path component: "a_b" is not "axb" (LIKE would
	// say it is), "a" is not "ab", and "a" lists itself and what is under
	// "a/".
	for _, k := range []string{"a", "a/b", "a/c/d", "ab", "a_b/1", "axb/1", "a.b"} {
		putBlob(t, s, "p/"+k, []byte(k))
	}
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"p/a", []string{"p/a", "p/a/b", "p/a/c/d"}},
		{"p/a/c", []string{"p/a/c/d"}},
		{"p/a_b", []string{"p/a_b/1"}},
		{"p/ab", []string{"p/ab"}},
		{"p/nope", []string{}},
		{"p", []string{"p/a", "p/a.b", "p/a/b", "p/a/c/d", "p/a_b/1", "p/ab", "p/axb/1"}},
	} {
		if got := blobKeys(t, s, c.prefix); !reflect.DeepEqual(got, c.want) {
			t.Errorf("CertBlobInfos(%q) = %q, want %q", c.prefix, got, c.want)
		}
	}
	if got := blobKeys(t, s, ""); len(got) != 9 {
		t.Errorf("CertBlobInfos(\"\") = %q, want all 9", got)
	}
	infos, err := s.CertBlobInfos(ctx, "certificates/x/a.crt")
	if err != nil || len(infos) != 1 || infos[0].Size != 2 || !infos[0].Modified.Equal(later) {
		t.Fatalf("CertBlobInfos(one) = %+v, %v", infos, err)
	}

	// Deleting a directory takes what is under it, and nothing beside it.
	if err := s.DeleteCertBlobs(ctx, "p/a"); err != nil {
		t.Fatal(err)
	}
	if got, want := blobKeys(t, s, "p"), []string{"p/a.b", "p/a_b/1", "p/ab", "p/axb/1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after deleting p/a: %q, want %q", got, want)
	}
	// Deleting nothing is no error; deleting "" deletes nothing.
	if err := s.DeleteCertBlobs(ctx, "p/nope"); err != nil {
		t.Errorf("DeleteCertBlobs(missing) = %v", err)
	}
	if err := s.DeleteCertBlobs(ctx, ""); err != nil || len(blobKeys(t, s, "")) != 6 {
		t.Errorf("DeleteCertBlobs(\"\") = %v; left %q", err, blobKeys(t, s, ""))
	}
	// No audit event: the ACME client's bookkeeping is not a person's act.
	if n := eventCount(t, s); n != 0 {
		t.Errorf("%d events after blob writes, want 0", n)
	}
}

func testCertLocks(t *testing.T, s store.Store) {
	ctx := context.Background()
	lease := 10 * time.Second
	acquire := func(name, holder string, now time.Time) bool {
		t.Helper()
		ok, err := s.AcquireCertLock(ctx, name, holder, now, now.Add(lease))
		if err != nil {
			t.Fatalf("AcquireCertLock(%s, %s): %v", name, holder, err)
		}
		return ok
	}

	if !acquire("issue_cert_web", "A", t0) {
		t.Fatal("A could not take a free lock")
	}
	if acquire("issue_cert_web", "B", t0.Add(time.Second)) {
		t.Fatal("B took a lock A holds")
	}
	if !acquire("issue_cert_api", "B", t0) {
		t.Fatal("B could not take another lock")
	}
	// Taking it again extends the lease.
	if !acquire("issue_cert_web", "A", t0.Add(5*time.Second)) {
		t.Fatal("A could not take its own lock again")
	}
	if acquire("issue_cert_web", "B", t0.Add(lease)) {
		t.Fatal("B took A's lock before A's extended lease ended")
	}

	// Renewing: only by the holder.
	if err := s.RenewCertLock(ctx, "issue_cert_web", "A", t0.Add(time.Minute)); err != nil {
		t.Fatalf("A renewing its lock: %v", err)
	}
	wantErr(t, "B renewing A's lock", s.RenewCertLock(ctx, "issue_cert_web", "B", t0.Add(time.Hour)), store.ErrNotFound)
	if acquire("issue_cert_web", "B", t0.Add(59*time.Second)) {
		t.Fatal("B took A's lock before A's renewed lease ended")
	}

	// Releasing: only by the holder; then it is free.
	wantErr(t, "B releasing A's lock", s.ReleaseCertLock(ctx, "issue_cert_web", "B"), store.ErrNotFound)
	if err := s.ReleaseCertLock(ctx, "issue_cert_web", "A"); err != nil {
		t.Fatalf("A releasing its lock: %v", err)
	}
	wantErr(t, "A releasing it twice", s.ReleaseCertLock(ctx, "issue_cert_web", "A"), store.ErrNotFound)
	if !acquire("issue_cert_web", "B", t0) {
		t.Fatal("B could not take a released lock")
	}

	// A holder that died: once its lease ends (at the very millisecond),
	// another takes over, and the dead one's renewal and release fail
	// rather than touch the new holder's lock.
	if !acquire("renew_cert_x", "dead", t0) {
		t.Fatal("could not take a free lock")
	}
	if acquire("renew_cert_x", "C", t0.Add(lease-time.Millisecond)) {
		t.Fatal("C took the lock a millisecond before its lease ended")
	}
	if !acquire("renew_cert_x", "C", t0.Add(lease)) {
		t.Fatal("C could not take over a lock whose lease ended")
	}
	wantErr(t, "the dead holder renewing", s.RenewCertLock(ctx, "renew_cert_x", "dead", t0.Add(time.Hour)), store.ErrNotFound)
	wantErr(t, "the dead holder releasing", s.ReleaseCertLock(ctx, "renew_cert_x", "dead"), store.ErrNotFound)
	if acquire("renew_cert_x", "D", t0.Add(lease+time.Second)) {
		t.Fatal("D took the lock C had just taken over")
	}
	if n := eventCount(t, s); n != 0 {
		t.Errorf("%d events after lock writes, want 0", n)
	}
}

// testCertLockRace: holders racing for one lock, free or whose lease
// ended, at the same instant: exactly one wins each round.
func testCertLockRace(t *testing.T, s store.Store) {
	ctx := context.Background()
	const holders, rounds = 8, 10
	for round := range rounds {
		name := fmt.Sprintf("race_%d", round)
		now := t0
		if round%2 == 1 {
			// A dead holder's lock, whose lease ended: taken over once.
			if ok, err := s.AcquireCertLock(ctx, name, "dead", t0.Add(-time.Minute), t0.Add(-time.Second)); !ok || err != nil {
				t.Fatalf("set up a dead holder's lock: %v, %v", ok, err)
			}
		}
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []string
			start   = make(chan struct{})
		)
		for h := range holders {
			holder := fmt.Sprintf("h%d", h)
			wg.Go(func() {
				<-start
				ok, err := s.AcquireCertLock(ctx, name, holder, now, now.Add(time.Minute))
				if err != nil {
					t.Errorf("AcquireCertLock(%s, %s): %v", name, holder, err)
					return
				}
				if ok {
					mu.Lock()
					winners = append(winners, holder)
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d winners %q, want exactly one", round, len(winners), winners)
		}
		// The winner really holds it: only it can release it.
		for h := range holders {
			if holder := fmt.Sprintf("h%d", h); holder != winners[0] {
				wantErr(t, "a loser releasing", s.ReleaseCertLock(ctx, name, holder), store.ErrNotFound)
			}
		}
		if err := s.ReleaseCertLock(ctx, name, winners[0]); err != nil {
			t.Fatalf("round %d: the winner releasing: %v", round, err)
		}
	}
}
