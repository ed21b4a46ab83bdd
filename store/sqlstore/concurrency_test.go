package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/exed-dev/exed/store"
)

// TestConcurrentAddKey races many writers whose keys collide by
// fingerprint and by name: the database, not luck, must decide.
func TestConcurrentAddKey(t *testing.T) {
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := openFresh(t, b)
			ada, _ := addUser(t, s, "ada@example.com")
			bob, _ := addUser(t, s, "bob@example.com")

			const per = 16
			shared := randomFingerprint()
			var attempts []store.Key
			for i := range per {
				// One fingerprint, offered to both users under fresh names:
				// one wins.
				k := newKey([]string{ada.ID, bob.ID}[i%2], fmt.Sprintf("fp-%d", i))
				k.Fingerprint = shared
				attempts = append(attempts, k)
				// One name for Ada, fresh fingerprints: one wins.
				attempts = append(attempts, newKey(ada.ID, "same-name"))
				// No collision: all win.
				attempts = append(attempts, newKey(bob.ID, fmt.Sprintf("unique-%d", i)))
			}
			const wantOK = 1 + 1 + per

			start := make(chan struct{})
			errs := make([]error, len(attempts))
			var wg sync.WaitGroup
			for i, k := range attempts {
				wg.Go(func() {
					<-start
					errs[i] = s.AddKey(ctx, k, ev(k.UserID, "key.add", k.Fingerprint))
				})
			}
			close(start)
			wg.Wait()

			ok := 0
			for i, err := range errs {
				switch {
				case err == nil:
					ok++
				case !errors.Is(err, store.ErrExists):
					t.Errorf("attempt %d (%s): %v, want nil or ErrExists", i, attempts[i].Name, err)
				}
			}
			if ok != wantOK {
				t.Fatalf("%d additions succeeded, want %d", ok, wantOK)
			}
			// The database agrees with what the callers were told.
			ak, _ := s.Keys(ctx, ada.ID)
			bk, _ := s.Keys(ctx, bob.ID)
			if got := len(ak) + len(bk) - 2; got != wantOK { // less the login keys
				t.Fatalf("%d keys stored, want %d", got, wantOK)
			}
			if n := eventCount(t, s); n != 2+wantOK {
				t.Fatalf("%d events, want %d", n, 2+wantOK)
			}
		})
	}
}

// TestConcurrentAddAssertionKey: instances that rotate at once all try to
// add the next generation, through their own connections; the database
// lets exactly one have it.
func TestConcurrentAddAssertionKey(t *testing.T) {
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn, dir := b.fresh(t)
			const instances = 4
			stores := make([]*Store, instances)
			for i := range stores {
				s, err := Open(ctx, dsn, dir)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				stores[i] = s
			}
			for gen := int64(1); gen <= 3; gen++ {
				start := make(chan struct{})
				errs := make([]error, instances)
				var wg sync.WaitGroup
				for i, s := range stores {
					wg.Go(func() {
						<-start
						k := store.AssertionKey{ID: fmt.Sprintf("kid-%d-%d", gen, i), Generation: gen,
							PublicKey: []byte{4}, Sealed: []byte{0}, CreatedAt: t0, SignFrom: t0}
						errs[i] = s.AddAssertionKey(ctx, k, ev("system", "assertion_key.add", k.ID))
					})
				}
				close(start)
				wg.Wait()
				won := 0
				for i, err := range errs {
					switch {
					case err == nil:
						won++
					case !errors.Is(err, store.ErrExists):
						t.Errorf("generation %d, instance %d: %v, want nil or ErrExists", gen, i, err)
					}
				}
				if won != 1 {
					t.Fatalf("generation %d: %d instances added it, want exactly 1", gen, won)
				}
			}
			if ks, err := stores[0].AssertionKeys(ctx); err != nil || len(ks) != 3 {
				t.Fatalf("%d keys stored (%v), want 3", len(ks), err)
			}
		})
	}
}

// TestConcurrentRemoveLastKeys removes a user's two login keys at once, many
// times over: exactly one removal may win each time, or the user would be
// locked out.
func TestConcurrentRemoveLastKeys(t *testing.T) {
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := openFresh(t, b)
			const rounds = 10
			for r := range rounds {
				u, k1 := addUser(t, s, fmt.Sprintf("u%d@example.com", r))
				k2 := newKey(u.ID, "second")
				if err := s.AddKey(ctx, k2, ev(u.ID, "key.add", k2.Fingerprint)); err != nil {
					t.Fatal(err)
				}
				start := make(chan struct{})
				errs := make([]error, 2)
				var wg sync.WaitGroup
				for i, k := range []store.Key{k1, k2} {
					wg.Go(func() {
						<-start
						errs[i] = s.RemoveKey(ctx, u.ID, k.Fingerprint, ev(u.ID, "key.remove", k.Fingerprint))
					})
				}
				close(start)
				wg.Wait()
				ok := 0
				for _, err := range errs {
					switch {
					case err == nil:
						ok++
					case !errors.Is(err, store.ErrLastKey):
						t.Fatalf("round %d: %v, want nil or ErrLastKey", r, err)
					}
				}
				if ks, _ := s.Keys(ctx, u.ID); ok != 1 || len(ks) != 1 {
					t.Fatalf("round %d: %d removals succeeded, %d keys left; want 1 and 1", r, ok, len(ks))
				}
			}
		})
	}
}

// TestEventsFollowable follows the audit log by id while many writers
// append to it, as an instance watching for revocations would: the
// follower must see every event, none skipped because it committed after
// a later id.
func TestEventsFollowable(t *testing.T) {
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := openFresh(t, b)
			ada, _ := addUser(t, s, "ada@example.com")

			const writers, each = 4, 15
			done := make(chan struct{})
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range each {
						vm := store.VM{Name: fmt.Sprintf("vm-%d-%d", w, i), OwnerID: ada.ID, Upstream: "http://x", CreatedAt: t0}
						if err := s.AddVM(ctx, vm, ev("admin", "vm.add", vm.Name)); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			go func() { wg.Wait(); close(done) }()

			seen := map[int64]bool{}
			var after int64
			follow := func() {
				es, err := s.Events(ctx, after, 1000)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range es {
					seen[e.ID] = true
					after = e.ID
				}
			}
			for running := true; running; {
				select {
				case <-done:
					running = false
				default:
				}
				follow()
			}
			follow()

			all, err := s.Events(ctx, 0, 10_000)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 1+writers*each {
				t.Fatalf("%d events, want %d", len(all), 1+writers*each)
			}
			for _, e := range all {
				if !seen[e.ID] {
					t.Fatalf("follower skipped event %d (%s %s)", e.ID, e.Action, e.Subject)
				}
			}
		})
	}
}
