package sqlstore

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/store"
)

// TestEncodeChanges: payloads decode to what was encoded, each under
// PostgreSQL's limit, split as needed; what cannot be spelled, or read,
// becomes AllChanged.
func TestEncodeChanges(t *testing.T) {
	var many []store.Change
	for i := range 500 { // ~25 kB of fingerprints: several payloads
		many = append(many, store.Change{Kind: store.ChangeKind(1 + i%5), ID: randomFingerprint()})
	}
	for _, tc := range []struct {
		name string
		in   []store.Change
		want []store.Change // nil: in
	}{
		{"one", []store.Change{{Kind: store.KeyChanged, ID: "SHA256:abc"}}, nil},
		{"every kind", []store.Change{
			{Kind: store.KeyChanged, ID: "SHA256:a+b/c"}, {Kind: store.UserChanged, ID: "usr1"},
			{Kind: store.VMChanged, ID: "web"}, {Kind: store.ShareChanged, ID: "web"},
			{Kind: store.SessionChanged, ID: strings.Repeat("ab", 32)}, {Kind: store.AllChanged},
		}, nil},
		{"empty id", []store.Change{{Kind: store.VMChanged, ID: ""}}, nil},
		{"many", many, nil},
		{"newline in an id", []store.Change{{Kind: store.VMChanged, ID: "a\nb"}, {Kind: store.VMChanged, ID: "c"}},
			[]store.Change{{Kind: store.AllChanged}, {Kind: store.VMChanged, ID: "c"}}},
		{"id too long", []store.Change{{Kind: store.VMChanged, ID: strings.Repeat("x", maxPayload)}},
			[]store.Change{{Kind: store.AllChanged}}},
	} {
		want := tc.want
		if want == nil {
			want = tc.in
		}
		ps := encodeChanges("origin", tc.in)
		var got []store.Change
		for _, p := range ps {
			if len(p) > maxPayload {
				t.Errorf("%s: a payload of %d bytes", tc.name, len(p))
			}
			origin, cs := decodeChanges(p)
			if origin != "origin" {
				t.Errorf("%s: origin %q", tc.name, origin)
			}
			got = append(got, cs...)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %d payloads decode to %v, want %v", tc.name, len(ps), got, want)
		}
		if tc.name == "many" && len(ps) < 2 {
			t.Errorf("many: %d payload(s), want several", len(ps))
		}
	}
	all := []store.Change{{Kind: store.AllChanged}}
	for _, p := range []string{"", "origin", "origin\n", "origin\nx y", "origin\n0 z", "origin\n1", "origin\n300 a"} {
		if _, got := decodeChanges(p); !reflect.DeepEqual(got, all) {
			t.Errorf("decode %q = %v, want %v", p, got, all)
		}
	}
	if _, got := decodeChanges("o\n9 future"); !reflect.DeepEqual(got, []store.Change{{Kind: 9, ID: "future"}}) {
		t.Errorf("a kind from a later version: %v", got)
	}
}

// heard records the changes a store announces.
type heard struct {
	mu sync.Mutex
	cs []store.Change
}

func hear(t *testing.T, s store.Changes) *heard {
	h := &heard{}
	t.Cleanup(s.Subscribe(func(c store.Change) {
		h.mu.Lock()
		h.cs = append(h.cs, c)
		h.mu.Unlock()
	}))
	return h
}

func (h *heard) all() []store.Change {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.cs)
}

// take returns what was heard since the last take.
func (h *heard) take() []store.Change {
	h.mu.Lock()
	defer h.mu.Unlock()
	cs := h.cs
	h.cs = nil
	return cs
}

func (h *heard) count(k store.ChangeKind) int {
	n := 0
	for _, c := range h.all() {
		if c.Kind == k {
			n++
		}
	}
	return n
}

// openDSN opens a Store on dsn, closed when the test ends.
func openDSN(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestListen: two stores on one PostgreSQL database, as two exed
// instances: every change a write through one announces is announced by
// the other too, in the same order; neither announces its own writes
// twice.
func TestListen(t *testing.T) {
	ctx := context.Background()
	dsn := testkit.FreshPostgres(t)
	w, r := openDSN(t, dsn), openDSN(t, dsn)
	wh, rh := hear(t, w), hear(t, r)
	w.Listen(nil)
	r.Listen(nil)
	testkit.WaitWithin(t, "both listening", 10*time.Second, func() bool {
		return wh.count(store.AllChanged) == 1 && rh.count(store.AllChanged) == 1
	})
	wh.take()
	rh.take()

	ada, _ := addUser(t, w, "ada@example.com")
	cat, _ := addUser(t, w, "cat@example.com")
	laptop := newKey(ada.ID, "laptop")
	tok := newKey(ada.ID, "tok")
	tok.Generated = true
	steps := []func() error{
		func() error { return w.AddKey(ctx, laptop, ev(ada.ID, "key.add", laptop.Fingerprint)) },
		func() error { return w.AddTokenKey(ctx, tok, nil, ev(ada.ID, "token.generate", tok.Fingerprint)) },
		func() error {
			return w.AddVM(ctx, store.VM{Name: "web", OwnerID: ada.ID, Upstream: "http://127.0.0.1:1", CreatedAt: t0}, ev(ada.ID, "vm.add", "web"))
		},
		func() error {
			_, err := w.AddShare(ctx, "web", cat.Email, t0, ev(ada.ID, "share.add", "web cat"))
			return err
		},
		func() error {
			l := newLink(ada, laptop)
			if err := w.AddLoginLink(ctx, l, ev(ada.ID, "browser.link", "")); err != nil {
				return err
			}
			_, _, err := w.RedeemLoginLink(ctx, l.Hash, t0, newSession("exe.dev:443", "exe-auth"), ev("", "session.start", ""))
			return err
		},
		func() error {
			_, err := w.RevokeSessions(ctx, ada.ID, ev(ada.ID, "session.revoke", ""))
			return err
		},
		func() error { return w.RemoveShare(ctx, "web", cat.Email, ev(ada.ID, "share.remove", "web cat")) },
		func() error {
			return w.RemoveKey(ctx, ada.ID, laptop.Fingerprint, ev(ada.ID, "key.remove", laptop.Fingerprint))
		},
		func() error { return w.RemoveVM(ctx, "web", ev(ada.ID, "vm.remove", "web")) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	want := wh.take() // what w announced itself, synchronously
	for _, k := range []store.ChangeKind{store.KeyChanged, store.UserChanged, store.VMChanged, store.ShareChanged, store.SessionChanged} {
		if !slices.ContainsFunc(want, func(c store.Change) bool { return c.Kind == k }) {
			t.Errorf("the writes announced no %v change: %v", k, want)
		}
	}
	// A write through r, last: once w hears it, it has been told of all
	// its own writes, committed before, and must have skipped them.
	bob := store.User{ID: store.NewUserID(), Email: "bob@example.com", CreatedAt: t0}
	bobKey := newKey(bob.ID, "login")
	if err := r.AddUser(ctx, bob, bobKey, ev("admin", "user.add", bob.Email)); err != nil {
		t.Fatal(err)
	}
	fromR := []store.Change{{Kind: store.UserChanged, ID: bob.ID}, {Kind: store.KeyChanged, ID: bobKey.Fingerprint}}
	testkit.WaitWithin(t, "w hearing r's write", 10*time.Second, func() bool { return len(wh.all()) >= len(fromR) })
	testkit.WaitWithin(t, "r hearing w's writes", 10*time.Second, func() bool { return len(rh.all()) >= len(want)+len(fromR) })
	if got := wh.take(); !reflect.DeepEqual(got, fromR) {
		t.Errorf("w heard %v,\nwant only r's write %v", got, fromR)
	}
	// r's own write it announced at once, maybe before w's had come.
	got := rh.take()
	remote := slices.DeleteFunc(slices.Clone(got), func(c store.Change) bool { return slices.Contains(fromR, c) })
	if !reflect.DeepEqual(remote, want) || len(got) != len(want)+len(fromR) {
		t.Errorf("r announced %v,\nwant w's %v in order and its own %v", got, want, fromR)
	}

	// A failed write notifies nobody: w hears only the write after it.
	if err := r.AddKey(ctx, bobKey, ev(bob.ID, "key.add", bobKey.Fingerprint)); err == nil {
		t.Fatal("AddKey with a taken fingerprint succeeded")
	}
	k := newKey(bob.ID, "after")
	if err := r.AddKey(ctx, k, ev(bob.ID, "key.add", k.Fingerprint)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitWithin(t, "w hearing r's next write", 10*time.Second, func() bool { return len(wh.all()) >= 1 })
	if got, want := wh.take(), []store.Change{{Kind: store.KeyChanged, ID: k.Fingerprint}}; !reflect.DeepEqual(got, want) {
		t.Errorf("w heard %v, want %v", got, want)
	}
}

// TestListenReconnect: when the listener's backend is terminated it
// reconnects and announces AllChanged, then hears writes again; Close
// stops it, leaving no goroutine and no backend behind, even while it is
// waiting to reconnect.
func TestListenReconnect(t *testing.T) {
	dsn := testkit.FreshPostgres(t)
	const app = "exed_listen_test"
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	w, r := openDSN(t, dsn), openDSN(t, u.String())
	db := rawDB(t, dsn, "")
	rh := hear(t, r)
	r.Listen(nil)
	r.Listen(nil) // again: nothing more
	testkit.WaitWithin(t, "r listening", 10*time.Second, func() bool { return rh.count(store.AllChanged) == 1 })
	listening := func() int {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'`, app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := listening(); n != 1 {
		t.Fatalf("%d listening backends, want 1", n)
	}

	for round := range 2 {
		var killed int
		if err := db.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&killed); err != nil || killed == 0 {
			t.Fatalf("terminate r's backends: %d, %v", killed, err)
		}
		testkit.WaitWithin(t, "r reconnected", 10*time.Second, func() bool { return rh.count(store.AllChanged) == 2+round })
		_, k := addUser(t, w, fmt.Sprintf("u%d@example.com", round))
		testkit.WaitWithin(t, "r hearing w's write after reconnecting", 10*time.Second, func() bool {
			return slices.Contains(rh.all(), store.Change{Kind: store.KeyChanged, ID: k.Fingerprint})
		})
	}

	l := r.listener
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.done:
	default:
		t.Fatal("Close returned with the listener still running")
	}
	testkit.WaitWithin(t, "r's listening backend gone", 10*time.Second, func() bool { return listening() == 0 })
	before := len(rh.all())
	addUser(t, w, "after-close@example.com")
	r.Listen(nil) // after Close: starts nothing
	if r.listener != nil {
		t.Fatal("Listen after Close started a listener")
	}

	// A listener that cannot connect waits between attempts; Close ends
	// that wait too.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := dead.Addr().(*net.TCPAddr)
	dead.Close() // nothing listens there now: every connection refused
	s := openDSN(t, dsn)
	s.pgcfg = s.pgcfg.Copy()
	s.pgcfg.Host, s.pgcfg.Port, s.pgcfg.Fallbacks = addr.IP.String(), uint16(addr.Port), nil
	s.Listen(nil)
	testkit.WaitWithin(t, "a failed connection attempt", 10*time.Second, func() bool { return listenerState() == "backoff" })
	l = s.listener
	s.Close()
	<-l.done
	if stacks := goroutines(); strings.Contains(stacks, "(*listener).") {
		t.Fatalf("a listener goroutine is left after Close:\n%s", stacks)
	}
	if got := len(rh.all()); got != before {
		t.Errorf("r announced %v after Close", rh.all()[before:])
	}
}

// listenerState says what the listener goroutine is doing, from its stack:
// "backoff" while it waits to reconnect.
func listenerState() string {
	if g := goroutines(); strings.Contains(g, "(*listener).run") && !strings.Contains(g, "(*listener).listen") {
		return "backoff"
	}
	return ""
}

func goroutines() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// BenchmarkNotifyLatency: how long after a write through one store
// returns another store on the same PostgreSQL database announces it
// (LISTEN/NOTIFY), and what notifying adds to the write. Reports the
// latency's p50 and p99 over b.N writes.
func BenchmarkNotifyLatency(b *testing.B) {
	ctx := context.Background()
	dsn := testkit.FreshPostgres(b)
	open := func() *Store {
		s, err := Open(ctx, dsn, "")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	w, r := open(), open()
	heard := make(chan store.Change, 16)
	defer r.Subscribe(func(c store.Change) {
		if c.Kind == store.KeyChanged {
			heard <- c
		}
	})()
	listening := make(chan struct{})
	cancel := r.Subscribe(func(c store.Change) {
		if c.Kind == store.AllChanged {
			close(listening)
		}
	})
	r.Listen(nil)
	<-listening
	cancel()
	u := store.User{ID: store.NewUserID(), Email: "ada@example.com", CreatedAt: t0}
	if err := w.AddUser(ctx, u, newKey(u.ID, "login"), ev("admin", "user.add", u.Email)); err != nil {
		b.Fatal(err)
	}
	<-heard // the login key's
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		k := newKey(u.ID, fmt.Sprintf("k%d", i))
		if err := w.AddKey(ctx, k, ev(u.ID, "key.add", k.Fingerprint)); err != nil {
			b.Fatal(err)
		}
		done := time.Now()
		if c := <-heard; c.ID != k.Fingerprint {
			b.Fatalf("heard %v, want %s", c, k.Fingerprint)
		}
		lat = append(lat, time.Since(done))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p int) float64 { return float64(lat[(len(lat)*p+99)/100-1].Microseconds()) / 1000 }
	b.ReportMetric(pct(50), "p50-ms")
	b.ReportMetric(pct(99), "p99-ms")
}

// BenchmarkNotifyWrite: what notifying costs a PostgreSQL write (AddKey),
// with and without pg_notify in its transaction, side by side.
func BenchmarkNotifyWrite(b *testing.B) {
	for _, notify := range []bool{false, true} {
		b.Run(fmt.Sprintf("notify=%v", notify), func(b *testing.B) {
			ctx := context.Background()
			s, err := Open(ctx, testkit.FreshPostgres(b), "")
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			s.d.notify = notify
			u := store.User{ID: store.NewUserID(), Email: "ada@example.com", CreatedAt: t0}
			if err := s.AddUser(ctx, u, newKey(u.ID, "login"), ev("admin", "user.add", u.Email)); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				k := newKey(u.ID, fmt.Sprintf("k%d", i))
				if err := s.AddKey(ctx, k, ev(u.ID, "key.add", k.Fingerprint)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
