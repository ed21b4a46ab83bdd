package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/exed-dev/exed/store"
)

// TestConcurrentAddTokenKey races many AddTokenKey calls, as concurrent
// generate-api-key sessions do (on SQLite they are committed in groups),
// some of which must fail: a taken fingerprint, a taken exe1 id, an ended
// context. Each failure must leave no row behind and the others in, and
// every call's answer must agree with the database.
func TestConcurrentAddTokenKey(t *testing.T) {
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := openFresh(t, b)
			ada, login := addUser(t, s, "ada@example.com")
			taken := newKey(ada.ID, "taken")
			taken.Generated = true
			takenID := []byte("taken exe1 id")
			if err := s.AddTokenKey(ctx, taken, &store.Exe1{ID: takenID, Fingerprint: taken.Fingerprint, Sealed: []byte("s"), CreatedAt: t0}, ev(ada.ID, "token.generate", taken.Fingerprint)); err != nil {
				t.Fatal(err)
			}
			ended, cancel := context.WithCancel(ctx)
			cancel()

			type call struct {
				ctx  context.Context
				k    store.Key
				h    *store.Exe1
				want error // nil, ErrExists or context.Canceled
			}
			const n = 60
			var calls []call
			for i := range n {
				k := newKey(ada.ID, fmt.Sprintf("tok-%d", i))
				k.Generated = true
				c := call{ctx: ctx, k: k}
				switch i % 4 {
				case 1:
					c.h = &store.Exe1{ID: []byte(k.Fingerprint), Fingerprint: k.Fingerprint, Sealed: []byte("s"), CreatedAt: t0}
				case 2:
					c.k.Fingerprint = login.Fingerprint // taken
					c.want = store.ErrExists
				case 3:
					if i%8 == 3 {
						c.ctx, c.want = ended, context.Canceled
					} else {
						c.h = &store.Exe1{ID: takenID, Fingerprint: k.Fingerprint, Sealed: []byte("s"), CreatedAt: t0}
						c.want = store.ErrExists
					}
				}
				calls = append(calls, c)
			}
			before := eventCount(t, s)
			start := make(chan struct{})
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i, c := range calls {
				wg.Go(func() {
					<-start
					errs[i] = s.AddTokenKey(c.ctx, c.k, c.h, ev(ada.ID, "token.generate", c.k.Fingerprint))
				})
			}
			close(start)
			wg.Wait()

			ok := 0
			for i, c := range calls {
				if c.want == nil && errs[i] != nil || c.want != nil && !errors.Is(errs[i], c.want) {
					t.Errorf("call %d: %v, want %v", i, errs[i], c.want)
				}
				_, err := s.Key(ctx, c.k.Fingerprint)
				switch {
				case errs[i] == nil:
					ok++
					if err != nil {
						t.Errorf("call %d succeeded but its key is missing: %v", i, err)
					}
				case c.k.Fingerprint != login.Fingerprint && !errors.Is(err, store.ErrNotFound):
					t.Errorf("call %d failed but its key is there: %v", i, err)
				}
			}
			if got := eventCount(t, s) - before; got != ok {
				t.Errorf("%d events for %d successful calls", got, ok)
			}
		})
	}
}
