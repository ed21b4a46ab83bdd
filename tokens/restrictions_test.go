package tokens

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/exed-dev/exed/store"
)

// TestExpiryBoundary pins the one expiry boundary: a key is expired from
// its ExpiresAt on, not only after it (SSH login and the command gate once
// disagreed with the Verifier by one instant).
func TestExpiryBoundary(t *testing.T) {
	at := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	r := Restrictions{ExpiresAt: at}
	for _, tt := range []struct {
		now  time.Time
		want bool
	}{
		{at.Add(-time.Nanosecond), false},
		{at, true},
		{at.Add(time.Nanosecond), true},
	} {
		if got := r.Expired(tt.now); got != tt.want {
			t.Errorf("Expired(%v) = %v, want %v", tt.now, got, tt.want)
		}
	}
	if (Restrictions{}).Expired(at) {
		t.Error("no expiry counts as expired")
	}
}

func TestRestrictionsAllow(t *testing.T) {
	none := Restrictions{}
	web := Restrictions{VM: "web"}
	list := Restrictions{Cmds: []string{"ssh-key list", "whoami"}}
	nothing := Restrictions{Cmds: []string{}}
	for _, tt := range []struct {
		name string
		got  bool
		want bool
	}{
		{"none allows any VM", none.AllowsVM("db"), true},
		{"none allows the API", none.AllowsVM(""), true},
		{"web allows web", web.AllowsVM("web"), true},
		{"web refuses db", web.AllowsVM("db"), false},
		{"web refuses the API", web.AllowsVM(""), false},
		{"none allows any command", none.AllowsCommand("ssh-key add"), true},
		{"list allows its own", list.AllowsCommand("whoami"), true},
		{"list refuses others", list.AllowsCommand("ls"), false},
		{"a parent grants no child", Restrictions{Cmds: []string{"ssh-key"}}.AllowsCommand("ssh-key list"), false},
		{"[] allows nothing", nothing.AllowsCommand("whoami"), false},
		{"no command is never allowed by a list", list.AllowsCommand(""), false},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: got %v", tt.name, tt.got)
		}
	}
	if !web.Any() || !list.Any() || !nothing.Any() || none.Any() {
		t.Error("Any disagrees")
	}
}

func TestRestrictionsWithin(t *testing.T) {
	exp := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	key := Restrictions{VM: "web", Cmds: []string{"ssh-key generate-api-key", "ssh-key list"}, ExpiresAt: exp}

	got, err := key.Within(Restrictions{})
	if err != nil || got.VM != "web" || len(got.Cmds) != 2 || !got.ExpiresAt.Equal(exp) {
		t.Fatalf("Within(nothing asked) = %+v, %v: want the key's own restrictions", got, err)
	}
	got.Cmds[0] = "changed"
	if key.Cmds[0] != "ssh-key generate-api-key" {
		t.Error("Within shares the key's cmds slice")
	}
	narrower := Restrictions{VM: "web", Cmds: []string{"ssh-key list"}, ExpiresAt: exp.Add(-time.Hour)}
	if got, err := key.Within(narrower); err != nil || got.ExpiresAt != narrower.ExpiresAt || len(got.Cmds) != 1 {
		t.Errorf("Within(narrower) = %+v, %v", got, err)
	}
	for _, tt := range []struct {
		want Restrictions
		kind error
		msg  string
	}{
		{Restrictions{VM: "db"}, ErrOutsideVM, "is restricted to VM web: --vm db is outside it"},
		{Restrictions{Cmds: []string{"whoami"}}, ErrOutsideCmds, `is restricted to cmds ssh-key generate-api-key, ssh-key list: "whoami" is outside them`},
		{Restrictions{ExpiresAt: exp.Add(time.Second)}, ErrOutsideExp, "expires at 2031-01-01T00:00:00Z: --exp cannot be later"},
	} {
		_, err := key.Within(tt.want)
		if !errors.Is(err, tt.kind) || err.Error() != tt.msg {
			t.Errorf("Within(%+v) = %v, want %v %q", tt.want, err, tt.kind, tt.msg)
		}
	}
	// Unrestricted: whatever is asked is what is given.
	if got, err := (Restrictions{}).Within(narrower); err != nil || got.VM != "web" {
		t.Errorf("unrestricted Within = %+v, %v", got, err)
	}
}

func TestRestrictionsCovers(t *testing.T) {
	exp := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	deploy := Restrictions{VM: "web", Cmds: []string{"ssh-key remove", "ssh-key list"}, ExpiresAt: exp}
	for _, tt := range []struct {
		other Restrictions
		kind  error // nil: covered
	}{
		{Restrictions{VM: "web", Cmds: []string{"ssh-key list"}, ExpiresAt: exp}, nil},
		{Restrictions{VM: "web", Cmds: []string{}, ExpiresAt: exp.Add(-time.Hour)}, nil},
		{Restrictions{}, ErrOutsideVM},
		{Restrictions{VM: "db", Cmds: []string{}, ExpiresAt: exp}, ErrOutsideVM},
		{Restrictions{VM: "web", ExpiresAt: exp}, ErrOutsideCmds},
		{Restrictions{VM: "web", Cmds: []string{"whoami"}, ExpiresAt: exp}, ErrOutsideCmds},
		{Restrictions{VM: "web", Cmds: []string{}}, ErrOutsideExp},
		{Restrictions{VM: "web", Cmds: []string{}, ExpiresAt: exp.Add(time.Second)}, ErrOutsideExp},
	} {
		err := deploy.Covers(tt.other)
		if tt.kind == nil && err != nil || tt.kind != nil && !errors.Is(err, tt.kind) {
			t.Errorf("Covers(%+v) = %v, want %v", tt.other, err, tt.kind)
		}
	}
	if err := (Restrictions{}).Covers(deploy); err != nil {
		t.Errorf("an unrestricted key does not cover: %v", err)
	}
}

func TestRestrictionsString(t *testing.T) {
	exp := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		r    Restrictions
		want string
	}{
		{Restrictions{}, "none"},
		{Restrictions{Cmds: []string{}}, "cmds nothing"},
		{Restrictions{VM: "web", Cmds: []string{"ls", "whoami"}, ExpiresAt: exp}, "vm web, cmds ls, whoami, expires 2031-01-01T00:00:00Z"},
	} {
		if got := tt.r.String(); got != tt.want || strings.ContainsAny(got, "\r\n") {
			t.Errorf("%+v.String() = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func TestKeyRestrictions(t *testing.T) {
	k := store.Key{VM: "web", Cmds: []string{"ls"}, ExpiresAt: time.Unix(4070908800, 0)}
	r := KeyRestrictions(k)
	if r.VM != k.VM || len(r.Cmds) != 1 || !r.ExpiresAt.Equal(k.ExpiresAt) {
		t.Errorf("KeyRestrictions = %+v", r)
	}
}

func TestReach(t *testing.T) {
	private := &store.VM{Name: "web", OwnerID: "usrA"}
	public := &store.VM{Name: "blog", OwnerID: "usrA", Public: true}
	shared := &store.VM{Name: "web", OwnerID: "usrA", SharedWith: []string{"usrB", "usrC"}}
	sharedPublic := &store.VM{Name: "blog", OwnerID: "usrA", Public: true, SharedWith: []string{"usrB"}}
	for _, tt := range []struct {
		vm   *store.VM
		user string
		want Access
	}{
		{private, "usrA", AccessOwner},
		{private, "usrB", NoAccess},
		{private, "", NoAccess},
		{public, "usrA", AccessOwner},
		{public, "", AccessPublic},
		{public, "usrB", NoAccess}, // public lets anyone in anonymously, as nobody in particular
		{nil, "usrA", NoAccess},
		{shared, "usrA", AccessOwner},
		{shared, "usrB", AccessShare},
		{shared, "usrC", AccessShare},
		{shared, "usrD", NoAccess},
		{shared, "", NoAccess}, // a share is for a user, never for anonymous callers
		{sharedPublic, "usrB", AccessShare},
		{sharedPublic, "usrD", NoAccess},
		{sharedPublic, "", AccessPublic},
	} {
		if got := Reach(tt.vm, tt.user); got != tt.want {
			t.Errorf("Reach(%+v, %q) = %q, want %q", tt.vm, tt.user, got, tt.want)
		}
	}
}

func TestNamespaces(t *testing.T) {
	n := Namespaces{Domain: "exe.localhost", VMDomain: "vm.localhost"}
	if n.API() != "v0@exe.localhost" || n.VM("web") != "v0@web.vm.localhost" || n.VMHost("web") != "web.vm.localhost" ||
		n.For("") != n.API() || n.For("web") != n.VM("web") {
		t.Errorf("namespaces: %s %s %s", n.API(), n.VM("web"), n.VMHost("web"))
	}
}

// TestEffectiveAttenuates: a token's effective restrictions are its key's
// intersected with its own exp and cmds (absent: the default list), so
// nothing made under them can outlive the token or run more than it may.
func TestEffectiveAttenuates(t *testing.T) {
	keyExp := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	tokExp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	plain := store.Key{Name: "laptop"}
	ci := store.Key{Name: "ci", VM: "web", Cmds: []string{"ls", "whoami", "ssh-key add"}, ExpiresAt: keyExp}

	for _, tt := range []struct {
		name  string
		key   store.Key
		perms *Permissions
		want  Restrictions
	}{
		{"SSH: the key alone", ci, nil, KeyRestrictions(ci)},
		{"SSH: an unrestricted key", plain, nil, Restrictions{}},
		{"token without cmds: the default list", plain, &Permissions{}, Restrictions{Cmds: DefaultCmds()}},
		// A token is valid through the second exp: it ends at exp+1.
		{"token's exp and cmds", plain, &Permissions{Exp: tokExp.Unix(), Cmds: []string{"ssh-key add"}, HasCmds: true},
			Restrictions{Cmds: []string{"ssh-key add"}, ExpiresAt: tokExp.Add(time.Second)}},
		{"cmds []: nothing", plain, &Permissions{Cmds: []string{}, HasCmds: true}, Restrictions{Cmds: []string{}}},
		{"key ∩ token: the earlier expiry, the common cmds, the key's VM", ci,
			&Permissions{Exp: tokExp.Unix(), Cmds: []string{"whoami", "ssh-key list"}, HasCmds: true},
			Restrictions{VM: "web", Cmds: []string{"whoami"}, ExpiresAt: tokExp.Add(time.Second)}},
		{"a token outliving its key ends with it", ci, &Permissions{Exp: keyExp.Unix() + 3600},
			Restrictions{VM: "web", Cmds: []string{"ls", "whoami"}, ExpiresAt: keyExp}},
	} {
		got := Effective(tt.key, tt.perms)
		if got.String() != tt.want.String() || (got.Cmds == nil) != (tt.want.Cmds == nil) {
			t.Errorf("%s: Effective = %v (cmds %#v), want %v", tt.name, got, got.Cmds, tt.want)
		}
	}
}

func TestIntersect(t *testing.T) {
	a := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b := a.Add(time.Hour)
	for _, tt := range []struct {
		name     string
		r, other Restrictions
		want     Restrictions
	}{
		{"none ∩ none", Restrictions{}, Restrictions{}, Restrictions{}},
		{"VM from either", Restrictions{}, Restrictions{VM: "web"}, Restrictions{VM: "web"}},
		{"nil cmds take the other's", Restrictions{}, Restrictions{Cmds: []string{"ls"}}, Restrictions{Cmds: []string{"ls"}}},
		{"common cmds in r's order", Restrictions{Cmds: []string{"whoami", "ls", "help"}}, Restrictions{Cmds: []string{"help", "ls"}},
			Restrictions{Cmds: []string{"ls", "help"}}},
		{"disjoint cmds: nothing", Restrictions{Cmds: []string{"ls"}}, Restrictions{Cmds: []string{"whoami"}}, Restrictions{Cmds: []string{}}},
		{"the earlier expiry", Restrictions{ExpiresAt: b}, Restrictions{ExpiresAt: a}, Restrictions{ExpiresAt: a}},
		{"expiry from either", Restrictions{ExpiresAt: b}, Restrictions{}, Restrictions{ExpiresAt: b}},
	} {
		if got := tt.r.Intersect(tt.other); got.String() != tt.want.String() {
			t.Errorf("%s: %v ∩ %v = %v, want %v", tt.name, tt.r, tt.other, got, tt.want)
		}
	}
	// Two different VMs leave no VM and no command.
	none := Restrictions{VM: "web"}.Intersect(Restrictions{VM: "db"})
	if none.AllowsVM("web") || none.AllowsVM("db") || none.AllowsVM("") || none.AllowsCommand("ls") {
		t.Errorf("web ∩ db = %v allows something", none)
	}
}

// TestTokenExpiryOneBoundary: the Verifier (the proxy's check) and
// Effective (the command gate's) end a token at the same instant. The
// gate took a token as expiring at exp itself, so during the second exp
// /exec refused what the VM proxy accepted.
func TestTokenExpiryOneBoundary(t *testing.T) {
	f := newFixture(t, Config{CacheSize: -1})
	exp := t0.Add(time.Hour)
	p := fmt.Sprintf(`{"exp":%d}`, exp.Unix())
	tok := mint(t, f.signer, apiNS, p)
	for _, tt := range []struct {
		now   time.Time
		valid bool
	}{
		{exp.Add(-time.Second), true},
		{exp, true},
		{exp.Add(999 * time.Millisecond), true},
		{exp.Add(time.Second), false},
	} {
		f.clock.Set(tt.now)
		g, err := f.v.Verify(context.Background(), tok, Target{Namespace: apiNS, Command: "whoami"})
		if (err == nil) != tt.valid {
			t.Fatalf("at exp%+v: Verify err = %v, want valid %v", tt.now.Sub(exp), err, tt.valid)
		}
		perms := &Permissions{Exp: exp.Unix()}
		if err == nil {
			perms = &g.Perms
		}
		if gateExpired := Effective(f.key, perms).Expired(tt.now); gateExpired == tt.valid {
			t.Errorf("at exp%+v: the Verifier says valid %v, the gate expired %v", tt.now.Sub(exp), tt.valid, gateExpired)
		}
	}
}
