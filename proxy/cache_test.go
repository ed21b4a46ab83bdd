package proxy

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// TestForgetVM: with the change feed wired to ForgetVM, as exed serve
// wires it, a VM removed or added through this store is seen by the very
// next request, well within the cache's TTL.
func TestForgetVM(t *testing.T) {
	clock := testkit.NewClock(time.Now()) // never advanced: no entry expires
	w := newWorld(t, nil, func(c *Config) { c.Now = clock.Now })
	t.Cleanup(w.Store.Subscribe(func(c store.Change) {
		if c.Kind == store.VMChanged {
			w.h.ForgetVM(c.ID)
		}
	}))
	if resp, _ := w.get("pub.exe.xyz", "/", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if err := w.Store.RemoveVM(context.Background(), "pub", store.Event{Time: time.Now(), ActorID: "admin", Action: "vm.remove", Subject: "pub"}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := w.get("pub.exe.xyz", "/", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("after RemoveVM: status %d, want 404", resp.StatusCode)
	}
	// The cached "no such VM" goes too when it is added.
	w.AddVM("pub", w.alice, true)
	if resp, _ := w.get("pub.exe.xyz", "/", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("after AddVM: status %d, want 200", resp.StatusCode)
	}
}

// vmReader counts VM lookups and runs during before answering.
type vmReader struct {
	store.VMStore
	reads  atomic.Int64
	during func()
}

func (r *vmReader) VM(ctx context.Context, name string) (store.VM, error) {
	r.reads.Add(1)
	if r.during != nil {
		r.during()
	}
	return store.VM{Name: name, OwnerID: "usrx", Upstream: "http://127.0.0.1:1"}, nil
}

// TestForgetDuringLoad: a VM that changes while the cache is reading it
// is not cached as read, which might be from before the change.
func TestForgetDuringLoad(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	r := &vmReader{}
	c := newVMCache(r, func() time.Time { return now }, tokens.Namespaces{Domain: "exe.dev", VMDomain: "exe.xyz"})
	r.during = func() { c.forget("web") }
	if _, err := c.get(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	r.during = nil
	for range 2 {
		if _, err := c.get(ctx, "web"); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.reads.Load(); n != 2 {
		t.Errorf("%d reads, want 2: the first answer was cached across a forget, or the second was not cached", n)
	}
}

// TestForgetAll: AllChanged (changes may have gone unheard) drops the
// cached VMs and browser sessions at once, whatever they are, and keeps a
// load in flight from caching what it read.
func TestForgetAll(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	r := &vmReader{}
	c := newVMCache(r, func() time.Time { return now }, tokens.Namespaces{Domain: "exe.dev", VMDomain: "exe.xyz"})
	for _, name := range []string{"web", "api"} {
		if _, err := c.get(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	c.forgetAll()
	for _, name := range []string{"web", "api"} {
		if _, err := c.get(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.reads.Load(); n != 4 {
		t.Errorf("%d reads, want 4: forgetAll left an entry cached", n)
	}
	r.during = c.forgetAll
	if _, err := c.get(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	r.during = nil
	if _, err := c.get(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if n := r.reads.Load(); n != 6 {
		t.Errorf("%d reads, want 6: a load across forgetAll was cached", n)
	}
}

// sessionReader counts session lookups; every cookie hash is a session.
type sessionReader struct {
	store.SessionStore
	reads atomic.Int64
}

func (r *sessionReader) SessionAndUser(ctx context.Context, hash []byte) (store.Session, store.User, error) {
	r.reads.Add(1)
	return store.Session{Hash: hash, ExpiresAt: time.Now().Add(time.Hour)}, store.User{ID: "usrx"}, nil
}

// TestForgetAllSessions: AllChanged drops every cached session, however
// it was keyed, so a session ended on an instance whose notice went
// unheard is read again.
func TestForgetAllSessions(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	r := &sessionReader{}
	c := newSessionCache(r, func() time.Time { return now })
	hashes := [][32]byte{{1}, {2}}
	get := func() {
		for _, h := range hashes {
			if _, err := c.get(ctx, h, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	get()
	get()
	if n := r.reads.Load(); n != 2 {
		t.Fatalf("%d reads, want 2: sessions not cached", n)
	}
	c.forget(store.Change{Kind: store.AllChanged})
	get()
	if n := r.reads.Load(); n != 4 {
		t.Errorf("%d reads, want 4: AllChanged left a session cached", n)
	}
}
