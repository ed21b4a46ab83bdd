package store_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"maps"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
)

// t0 is a whole second, so it survives the store's second precision.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// openStore opens a real registry (SQLite in a temp dir): the writer's
// batches are checked against what TouchKeys really stores.
func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// addUser creates a user with one login key and returns both.
func addUser(t *testing.T, s store.Store, email string) (store.User, store.Key) {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	u := store.User{ID: store.NewUserID(), Email: email, CreatedAt: t0}
	k := store.Key{
		UserID:      u.ID,
		Name:        "login",
		Fingerprint: "SHA256:" + base64.RawStdEncoding.EncodeToString(b),
		PublicKey:   "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlogin",
		AddedAt:     t0,
	}
	e := store.Event{Time: t0, ActorID: "admin", Action: "user.add", Subject: email}
	if err := s.AddUser(context.Background(), u, k, e); err != nil {
		t.Fatalf("AddUser(%s): %v", email, err)
	}
	return u, k
}

// touchRecorder passes everything to a real store and remembers the
// batches TouchKeys was given.
type touchRecorder struct {
	store.Store
	mu      sync.Mutex
	batches []map[string]time.Time
}

func (r *touchRecorder) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	r.mu.Lock()
	r.batches = append(r.batches, maps.Clone(used))
	r.mu.Unlock()
	return r.Store.TouchKeys(ctx, used)
}

func (r *touchRecorder) writes() []map[string]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]time.Time(nil), r.batches...)
}

func lastUsed(t *testing.T, s store.Store, fp string) time.Time {
	t.Helper()
	k, err := s.Key(context.Background(), fp)
	if err != nil {
		t.Fatal(err)
	}
	return k.LastUsedAt
}

// TestLastUsedWriter runs in a synctest bubble, where time is fake: the
// writer keeps its default clock (time.Now) and the test moves time on
// with time.Sleep, which in a bubble returns at once with the clock
// advanced (it waits for nothing).
func TestLastUsedWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		start := time.Now() // midnight UTC 2000-01-01 in the bubble: a whole second
		s := openStore(t)
		_, k1 := addUser(t, s, "ada@example.com")
		_, k2 := addUser(t, s, "bob@example.com")
		rec := &touchRecorder{Store: s}
		w := store.NewLastUsedWriter(rec, time.Minute, nil)

		// Many uses within a minute: one write, with the first use's time.
		for range 100 {
			w.Touch(k1.Fingerprint)
			time.Sleep(100 * time.Millisecond)
		}
		w.Touch(k2.Fingerprint)
		if n := w.Backlog(); n != 2 {
			t.Fatalf("Backlog = %d, want 2", n)
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if n := w.Backlog(); n != 0 {
			t.Fatalf("Backlog after Flush = %d, want 0", n)
		}
		if got := lastUsed(t, s, k1.Fingerprint); !got.Equal(start) {
			t.Fatalf("k1 last used %v, want %v", got, start)
		}
		if got := lastUsed(t, s, k2.Fingerprint); !got.Equal(start.Add(10 * time.Second)) {
			t.Fatalf("k2 last used %v, want %v", got, start.Add(10*time.Second))
		}

		// Still within k1's minute: nothing to write, and Flush writes nothing.
		time.Sleep(40 * time.Second) // start+50s
		w.Touch(k1.Fingerprint)
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got := len(rec.writes()); got != 1 {
			t.Fatalf("%d writes within one interval, want 1", got)
		}

		// A minute after the first note, the next use is written again.
		time.Sleep(10 * time.Second) // start+60s
		w.Touch(k1.Fingerprint)
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		want := start.Add(time.Minute)
		if got := lastUsed(t, s, k1.Fingerprint); !got.Equal(want) {
			t.Fatalf("k1 last used %v, want %v", got, want)
		}
		ws := rec.writes()
		if len(ws) != 2 || len(ws[1]) != 1 {
			t.Fatalf("writes = %v, want a second batch with k1 only", ws)
		}

		// Notes past the interval are dropped, so memory does not grow with
		// every key ever seen.
		time.Sleep(2 * time.Minute)
		w.Flush(ctx)
		if noted := store.NotedKeys(w); noted != 0 {
			t.Fatalf("%d stale notes kept", noted)
		}
	})
}

func TestLastUsedTouchNoAlloc(t *testing.T) {
	s := openStore(t)
	_, k := addUser(t, s, "ada@example.com")
	clock := testkit.NewClock(t0)
	w := store.NewLastUsedWriter(s, time.Minute, clock.Now)
	fp := k.Fingerprint
	w.Touch(fp)
	if allocs := testing.AllocsPerRun(1000, func() { w.Touch(fp) }); allocs != 0 {
		t.Fatalf("Touch of a recently noted key: %v allocations, want 0", allocs)
	}
}

func TestLastUsedRetry(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s1, err := sqlstore.Open(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	_, k := addUser(t, s1, "ada@example.com")
	s1.Close() // every write now fails

	rec := &touchRecorder{Store: s1}
	clock := testkit.NewClock(t0)
	w := store.NewLastUsedWriter(rec, time.Minute, clock.Now)
	w.Touch(k.Fingerprint)
	if err := w.Flush(ctx); err == nil {
		t.Fatal("Flush to a closed store: no error")
	}
	if n := w.Backlog(); n != 1 {
		t.Fatalf("Backlog after a failed flush = %d, want 1 (kept for retry)", n)
	}

	s2, err := sqlstore.Open(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	rec.Store = s2
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(t, s2, k.Fingerprint); !got.Equal(t0) {
		t.Fatalf("last used after retry %v, want %v", got, t0)
	}
}

// TestLastUsedRun drives Run's ticker in a synctest bubble: time is fake,
// so the test sees the write at exactly one interval, not before, and
// synctest.Wait (every goroutine of the bubble blocked: Run is back waiting
// for its next tick) replaces polling.
func TestLastUsedRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s := openStore(t)
		_, k1 := addUser(t, s, "ada@example.com")
		_, k2 := addUser(t, s, "bob@example.com")
		w := store.NewLastUsedWriter(s, time.Minute, nil)
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error, 1)
		go func() { ran <- w.Run(ctx) }()

		w.Touch(k1.Fingerprint)
		time.Sleep(time.Minute - time.Nanosecond)
		synctest.Wait()
		if got := lastUsed(t, s, k1.Fingerprint); !got.IsZero() {
			t.Fatalf("k1 written at %v, before Run's first tick", got)
		}
		time.Sleep(time.Nanosecond) // Run's first tick
		synctest.Wait()
		if got := lastUsed(t, s, k1.Fingerprint); !got.Equal(start) {
			t.Fatalf("after Run's first tick, k1 last used %v, want %v", got, start)
		}

		// Stopping flushes what is left.
		w.Touch(k2.Fingerprint)
		cancel()
		if err := <-ran; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if got := lastUsed(t, s, k2.Fingerprint); !got.Equal(start.Add(time.Minute)) {
			t.Fatalf("k2 last used %v after Run stopped, want %v", got, start.Add(time.Minute))
		}
	})
}
