package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exed-dev/exed/store"
)

// shareWorld is ada, who owns VM web (private) and blog (public), and bob.
func shareWorld(t *testing.T, s store.Store) (ada, bob store.User) {
	t.Helper()
	ada, _ = addUser(t, s, "ada@example.com")
	bob, _ = addUser(t, s, "Bob@Example.com")
	for _, vm := range []store.VM{
		{Name: "web", OwnerID: ada.ID, Upstream: "http://127.0.0.1:8000", CreatedAt: t0},
		{Name: "blog", OwnerID: ada.ID, Upstream: "http://127.0.0.1:8001", Public: true, CreatedAt: t0},
	} {
		if err := s.AddVM(context.Background(), vm, ev("admin", "vm.add", vm.Name)); err != nil {
			t.Fatal(err)
		}
	}
	return ada, bob
}

func sharedWith(t *testing.T, s store.Store, vm string) []string {
	t.Helper()
	v, err := s.VM(context.Background(), vm)
	if err != nil {
		t.Fatal(err)
	}
	return v.SharedWith
}

func testShares(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, bob := shareWorld(t, s)
	carol, _ := addUser(t, s, "carol@example.com")
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	before := eventCount(t, s)

	// Emails match whatever their case; the share names the account.
	sh, err := s.AddShare(ctx, "web", "bob@EXAMPLE.com", at(1).Add(500*time.Millisecond), ev(ada.ID, "share.add", "web bob@EXAMPLE.com"))
	if want := (store.Share{VM: "web", Email: "Bob@Example.com", UserID: bob.ID, InvitedAt: at(1)}); err != nil || sh != want || !sh.Active() {
		t.Fatalf("AddShare(bob) = %+v, %v; want %+v", sh, err, want)
	}
	if _, err := s.AddShare(ctx, "web", "carol@example.com", at(2), ev(ada.ID, "share.add", "web carol@example.com")); err != nil {
		t.Fatal(err)
	}
	// The VM comes with its shares, sorted, from every read.
	want := []string{bob.ID, carol.ID}
	if bob.ID > carol.ID {
		want = []string{carol.ID, bob.ID}
	}
	if got := sharedWith(t, s, "web"); !reflect.DeepEqual(got, want) {
		t.Fatalf("web shared with %v, want %v", got, want)
	}
	if got := sharedWith(t, s, "blog"); got != nil {
		t.Fatalf("blog shared with %v, want nobody", got)
	}
	all, err := s.VMs(ctx, "")
	if err != nil || len(all) != 2 || all[0].Name != "blog" || all[0].SharedWith != nil || !reflect.DeepEqual(all[1].SharedWith, want) {
		t.Fatalf("VMs = %+v, %v", all, err)
	}

	// Refusals: each changes nothing and appends no event.
	refusals := eventCount(t, s)
	for _, tt := range []struct {
		vm, email string
		want      error
	}{
		{"web", "BOB@example.com", store.ErrExists},
		{"web", "ada@example.com", store.ErrSelfShare},
		{"web", "ADA@example.com", store.ErrSelfShare},
		{"nosuch", "bob@example.com", store.ErrNotFound},
	} {
		_, err := s.AddShare(ctx, tt.vm, tt.email, at(3), ev(ada.ID, "share.add", tt.vm+" "+tt.email))
		wantErr(t, "AddShare("+tt.vm+", "+tt.email+")", err, tt.want)
	}
	if n := eventCount(t, s); n != refusals {
		t.Fatalf("refused shares appended %d events", n-refusals)
	}

	// Listed in the order made, with the account's email.
	shs, err := s.Shares(ctx, "web")
	wantShares := []store.Share{
		{VM: "web", Email: "Bob@Example.com", UserID: bob.ID, InvitedAt: at(1)},
		{VM: "web", Email: "carol@example.com", UserID: carol.ID, InvitedAt: at(2)},
	}
	if err != nil || !reflect.DeepEqual(shs, wantShares) {
		t.Fatalf("Shares(web) = %+v, %v", shs, err)
	}

	// Shared with bob: web, with its owner's email and all its shares.
	svs, err := s.SharedVMs(ctx, bob.ID)
	if err != nil || len(svs) != 1 || svs[0].Name != "web" || svs[0].OwnerEmail != "ada@example.com" ||
		svs[0].OwnerID != ada.ID || !reflect.DeepEqual(svs[0].SharedWith, want) {
		t.Fatalf("SharedVMs(bob) = %+v, %v", svs, err)
	}
	if svs, err := s.SharedVMs(ctx, ada.ID); err != nil || len(svs) != 0 {
		t.Fatalf("SharedVMs(ada) = %+v, %v; want none (she owns them)", svs, err)
	}

	// Removing: by email in any case; a second time is ErrNotFound.
	if err := s.RemoveShare(ctx, "web", "BOB@example.com", ev(ada.ID, "share.remove", "web bob")); err != nil {
		t.Fatal(err)
	}
	if got := sharedWith(t, s, "web"); !reflect.DeepEqual(got, []string{carol.ID}) {
		t.Fatalf("after removing bob, web shared with %v", got)
	}
	err = s.RemoveShare(ctx, "web", "bob@example.com", ev(ada.ID, "share.remove", "web bob"))
	wantErr(t, "RemoveShare twice", err, store.ErrNotFound)
	err = s.RemoveShare(ctx, "blog", "carol@example.com", ev(ada.ID, "share.remove", "blog carol"))
	wantErr(t, "RemoveShare(another VM's)", err, store.ErrNotFound)
	if svs, err := s.SharedVMs(ctx, bob.ID); err != nil || len(svs) != 0 {
		t.Fatalf("SharedVMs(bob) after removal = %+v, %v", svs, err)
	}
	// Two adds and one removal: three events.
	if n := eventCount(t, s); n != before+3 {
		t.Fatalf("%d events, want %d", n, before+3)
	}

	// Removing the VM removes its shares.
	if err := s.RemoveVM(ctx, "web", ev("admin", "vm.remove", "web")); err != nil {
		t.Fatal(err)
	}
	if svs, err := s.SharedVMs(ctx, carol.ID); err != nil || len(svs) != 0 {
		t.Fatalf("SharedVMs(carol) after vm rm = %+v, %v", svs, err)
	}
	if shs, err := s.Shares(ctx, "web"); err != nil || len(shs) != 0 {
		t.Fatalf("Shares of a removed VM = %+v, %v", shs, err)
	}
}

func testPendingShares(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, _ := shareWorld(t, s)
	sh, err := s.AddShare(ctx, "web", "Dan@Example.com", t0, ev(ada.ID, "share.add", "web dan"))
	if err != nil || sh.Active() || sh.Email != "Dan@Example.com" {
		t.Fatalf("AddShare(no account) = %+v, %v; want a pending share", sh, err)
	}
	_, err = s.AddShare(ctx, "web", "dan@example.COM", t0, ev(ada.ID, "share.add", "web dan"))
	wantErr(t, "AddShare(pending again)", err, store.ErrExists)
	if _, err := s.AddShare(ctx, "blog", "dan@example.com", t0.Add(time.Minute), ev(ada.ID, "share.add", "blog dan")); err != nil {
		t.Fatal(err)
	}
	if got := sharedWith(t, s, "web"); got != nil {
		t.Fatalf("a pending share gives access: web shared with %v", got)
	}
	if shs, err := s.Shares(ctx, "web"); err != nil || len(shs) != 1 || shs[0].Active() || shs[0].Email != "Dan@Example.com" {
		t.Fatalf("Shares(web) = %+v, %v", shs, err)
	}

	// The account is created: both pending shares become its own, in the
	// same write (one event).
	n := eventCount(t, s)
	dan, _ := addUser(t, s, "dan@example.com")
	if got := eventCount(t, s); got != n+1 {
		t.Fatalf("AddUser appended %d events, want 1", got-n)
	}
	for _, vm := range []string{"web", "blog"} {
		if got := sharedWith(t, s, vm); !reflect.DeepEqual(got, []string{dan.ID}) {
			t.Errorf("%s shared with %v after dan's account, want dan", vm, got)
		}
	}
	shs, err := s.Shares(ctx, "web")
	if want := []store.Share{{VM: "web", Email: "dan@example.com", UserID: dan.ID, InvitedAt: t0}}; err != nil || !reflect.DeepEqual(shs, want) {
		t.Fatalf("Shares(web) after the account = %+v, %v; want %+v (invited_at kept)", shs, err, want)
	}

	// A pending share is removed like an active one.
	if _, err := s.AddShare(ctx, "web", "erin@example.com", t0, ev(ada.ID, "share.add", "web erin")); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveShare(ctx, "web", "ERIN@example.com", ev(ada.ID, "share.remove", "web erin")); err != nil {
		t.Fatal(err)
	}
	erin, _ := addUser(t, s, "erin@example.com")
	if svs, err := s.SharedVMs(ctx, erin.ID); err != nil || len(svs) != 0 {
		t.Fatalf("a removed pending share became active: %+v, %v", svs, err)
	}
}

func testSetVMPublic(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, _ := shareWorld(t, s)
	for _, public := range []bool{true, false, false} {
		if err := s.SetVMPublic(ctx, "web", public, ev(ada.ID, "vm.public", "web")); err != nil {
			t.Fatal(err)
		}
		if vm, err := s.VM(ctx, "web"); err != nil || vm.Public != public {
			t.Fatalf("after SetVMPublic(%v): %+v, %v", public, vm, err)
		}
	}
	err := s.SetVMPublic(ctx, "nosuch", true, ev(ada.ID, "vm.public", "nosuch"))
	wantErr(t, "SetVMPublic(unknown)", err, store.ErrNotFound)
}

func testShareLinks(t *testing.T, s store.Store) {
	ctx := context.Background()
	ada, bob := shareWorld(t, s)
	l1 := store.ShareLink{ID: []byte("link one id"), Name: "AAAAAAAA…", VM: "web", CreatedAt: t0}
	l2 := store.ShareLink{ID: []byte("link two id"), Name: "BBBBBBBB…", VM: "web", CreatedAt: t0.Add(time.Minute)}
	for _, l := range []store.ShareLink{l2, l1} {
		if err := s.AddShareLink(ctx, l, ev(ada.ID, "share.link.add", "web "+l.Name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name string
		l    store.ShareLink
		want error
	}{
		{"taken id", store.ShareLink{ID: l1.ID, Name: "CCCCCCCC…", VM: "blog", CreatedAt: t0}, store.ErrExists},
		{"taken name on the VM", store.ShareLink{ID: []byte("x"), Name: l1.Name, VM: "web", CreatedAt: t0}, store.ErrExists},
		{"no such VM", store.ShareLink{ID: []byte("y"), Name: "DDDDDDDD…", VM: "nosuch", CreatedAt: t0}, store.ErrNotFound},
	} {
		err := s.AddShareLink(ctx, tt.l, ev(ada.ID, "share.link.add", "x"))
		wantErr(t, "AddShareLink("+tt.name+")", err, tt.want)
	}
	// The same name on another VM is another link.
	if err := s.AddShareLink(ctx, store.ShareLink{ID: []byte("blog link"), Name: l1.Name, VM: "blog", CreatedAt: t0}, ev(ada.ID, "share.link.add", "blog")); err != nil {
		t.Fatal(err)
	}
	ls, err := s.ShareLinks(ctx, "web")
	if err != nil || !reflect.DeepEqual(ls, []store.ShareLink{l1, l2}) {
		t.Fatalf("ShareLinks(web) = %+v, %v", ls, err)
	}

	// bob uses l1 twice: one share, two uses.
	used := t0.Add(time.Hour)
	for i := 1; i <= 2; i++ {
		got, err := s.UseShareLink(ctx, "web", l1.ID, bob.ID, used.Add(time.Duration(i)*time.Second), ev(bob.ID, "share.link.use", "web "+l1.Name))
		if err != nil || got.UseCount != i || !got.LastUsedAt.Equal(used.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("UseShareLink #%d = %+v, %v", i, got, err)
		}
	}
	if got := sharedWith(t, s, "web"); !reflect.DeepEqual(got, []string{bob.ID}) {
		t.Fatalf("after bob used the link, web shared with %v", got)
	}
	shs, _ := s.Shares(ctx, "web")
	if len(shs) != 1 || !shs[0].InvitedAt.Equal(used.Add(time.Second)) {
		t.Fatalf("the link's share = %+v, want invited when first used", shs)
	}
	// The owner using it counts a use and makes no share.
	if got, err := s.UseShareLink(ctx, "web", l1.ID, ada.ID, used, ev(ada.ID, "share.link.use", "web")); err != nil || got.UseCount != 3 {
		t.Fatalf("owner's use = %+v, %v", got, err)
	}
	if got := sharedWith(t, s, "web"); !reflect.DeepEqual(got, []string{bob.ID}) {
		t.Fatalf("the owner's use shared web with %v", got)
	}
	// A link of another VM, or no link, is not found and changes nothing.
	n := eventCount(t, s)
	for _, tt := range []struct {
		vm string
		id []byte
	}{{"blog", l1.ID}, {"web", []byte("nope")}, {"nosuch", l1.ID}} {
		_, err := s.UseShareLink(ctx, tt.vm, tt.id, bob.ID, used, ev(bob.ID, "share.link.use", "x"))
		wantErr(t, fmt.Sprintf("UseShareLink(%s, %q)", tt.vm, tt.id), err, store.ErrNotFound)
	}
	if got := eventCount(t, s); got != n {
		t.Fatalf("refused uses appended %d events", got-n)
	}

	// Removing the link keeps the share it made.
	if err := s.RemoveShareLink(ctx, "web", l1.ID, ev(ada.ID, "share.link.remove", "web")); err != nil {
		t.Fatal(err)
	}
	err = s.RemoveShareLink(ctx, "web", l1.ID, ev(ada.ID, "share.link.remove", "web"))
	wantErr(t, "RemoveShareLink twice", err, store.ErrNotFound)
	err = s.RemoveShareLink(ctx, "blog", l2.ID, ev(ada.ID, "share.link.remove", "blog"))
	wantErr(t, "RemoveShareLink(another VM's)", err, store.ErrNotFound)
	if got := sharedWith(t, s, "web"); !reflect.DeepEqual(got, []string{bob.ID}) {
		t.Fatalf("after removing the link, web shared with %v", got)
	}
	if ls, err := s.ShareLinks(ctx, "web"); err != nil || len(ls) != 1 || ls[0].Name != l2.Name {
		t.Fatalf("ShareLinks after removal = %+v, %v", ls, err)
	}
}

// TestPendingShareNotLostToConcurrentAddUser races AddShare for an email that has no
// account with AddUser creating that account, many times over: whichever
// commits first, the share must end up active, never pending for an
// account that exists.
func TestPendingShareNotLostToConcurrentAddUser(t *testing.T) {
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := openFresh(t, b)
			ada, _ := shareWorld(t, s)
			for i := range 20 {
				email := fmt.Sprintf("racer%d@example.com", i)
				u := store.User{ID: store.NewUserID(), Email: email, CreatedAt: t0}
				var wg sync.WaitGroup
				var shareErr, userErr error
				wg.Go(func() {
					_, shareErr = s.AddShare(ctx, "web", strings.ToUpper(email), t0, ev(ada.ID, "share.add", "web "+email))
				})
				wg.Go(func() { userErr = s.AddUser(ctx, u, newKey(u.ID, "login"), ev("admin", "user.add", email)) })
				wg.Wait()
				if err := errors.Join(shareErr, userErr); err != nil {
					t.Fatal(err)
				}
				shs, err := s.Shares(ctx, "web")
				if err != nil {
					t.Fatal(err)
				}
				for _, sh := range shs {
					if strings.EqualFold(sh.Email, email) && sh.UserID != u.ID {
						t.Fatalf("round %d: share %+v left pending for an account that exists", i, sh)
					}
				}
				if got := sharedWith(t, s, "web"); len(got) != i+1 {
					t.Fatalf("round %d: web shared with %d users, want %d", i, len(got), i+1)
				}
			}
		})
	}
}
