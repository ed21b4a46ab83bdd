package certs_test

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exed-dev/exed/certs"
	"github.com/exed-dev/exed/certs/acmetest"
	"github.com/exed-dev/exed/internal/testkit"
)

// TestTLSALPN01OnFirstVisit: a VM added while the server runs gets a
// certificate on the first handshake that names it, validated by
// TLS-ALPN-01 on the HTTPS listener; later visits order nothing. Names
// that are not the server's (an unknown VM, a foreign domain, a removed
// VM) get no certificate, cost the CA no order and the store no write.
func TestTLSALPN01OnFirstVisit(t *testing.T) {
	t.Parallel()
	domain := testDomain("alpn")
	reg := newRegistry(t)
	tlsLn, _ := listeners(t, false)
	ca := acmetest.Run(t, acmetest.Options{TLSPort: port(tlsLn), HTTPPort: 1})
	in := startInstance(t, reg, ca, domain, tlsLn, nil, nil)

	reg.addVM(t, "web") // while the server runs
	web := in.vmHost("web")
	first := in.mustHandshake(t, web)
	if got := ca.Validated(web); !reflect.DeepEqual(got, []string{"tls-alpn-01 valid"}) {
		t.Errorf("challenges validated for %s: %q, want one tls-alpn-01", web, got)
	}
	again := in.mustHandshake(t, web)
	if ca.Orders(web) != 1 || again.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("second visit: %d orders, serial %v (first %v); want 1 order, the same certificate", ca.Orders(web), again.SerialNumber, first.SerialNumber)
	}
	// The main host, too, on first visit (Start would have ordered it).
	in.mustHandshake(t, in.mainHost)

	// Not the server's names: refused at the handshake, at no cost.
	writes := in.store.writes.Load()
	orders := ca.TotalOrders()
	for _, host := range []string{in.vmHost("nope"), "evil.example", in.vmHost("web") + ".evil.example", in.vmHost("bad_name"), in.vmDomain} {
		if _, err := in.handshake(host); !refusedHandshake(err) {
			t.Errorf("handshake for %s: %v, want refused", host, err)
		}
		if n := ca.Orders(host); n != 0 {
			t.Errorf("%d orders for %s", n, host)
		}
	}
	// A removed VM: its certificate is no longer served, nor ordered again.
	reg.removeVM(t, "web")
	in.mgr.Forget("web") // what serve does on the store's VMChanged
	if _, err := in.handshake(web); !refusedHandshake(err) {
		t.Errorf("handshake for removed VM %s: %v, want refused", web, err)
	}
	if n := ca.TotalOrders() - orders; n != 0 {
		t.Errorf("%d orders for names that are not the server's", n)
	}
	if n := in.store.writes.Load() - writes; n != 0 {
		t.Errorf("%d store writes for names that are not the server's, want 0", n)
	}
	if ca.Orders(web) != 1 {
		t.Errorf("%d orders for %s in all, want 1", ca.Orders(web), web)
	}
}

// TestHTTP01AndRedirect: with the plain-HTTP listener, a VM's certificate
// is validated by HTTP-01 there (TLS-ALPN-01 off, to pin the type), and
// every other plain-HTTP request gets a 308 to the same URL over HTTPS.
func TestHTTP01AndRedirect(t *testing.T) {
	t.Parallel()
	domain := testDomain("http")
	reg := newRegistry(t)
	tlsLn, httpLn := listeners(t, true)
	ca := acmetest.Run(t, acmetest.Options{TLSPort: port(tlsLn), HTTPPort: port(httpLn)})
	in := startInstance(t, reg, ca, domain, tlsLn, httpLn, func(c *certs.Config) { c.HTTPOnly = true })

	reg.addVM(t, "blog")
	blog := in.vmHost("blog")
	in.mustHandshake(t, blog)
	if got := ca.Validated(blog); !reflect.DeepEqual(got, []string{"http-01 valid"}) {
		t.Errorf("challenges validated for %s: %q, want one http-01", blog, got)
	}
	if ca.Orders(blog) != 1 {
		t.Errorf("%d orders for %s, want 1", ca.Orders(blog), blog)
	}

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct{ host, path, want string }{
		{blog, "/a/b?c=d&e", "https://" + blog + ":" + strconv.Itoa(port(tlsLn)) + "/a/b?c=d&e"},
		{strings.ToUpper(domain) + ".", "/", "https://" + domain + ":" + strconv.Itoa(port(tlsLn)) + "/"},
		// A challenge path with no challenge behind it is redirected too.
		{blog, "/.well-known/acme-challenge/nosuchtoken", "https://" + blog + ":" + strconv.Itoa(port(tlsLn)) + "/.well-known/acme-challenge/nosuchtoken"},
	} {
		req, _ := http.NewRequest("GET", "http://"+in.httpAddr+c.path, nil)
		req.Host = c.host
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != c.want {
			t.Errorf("GET http://%s%s = %d, Location %q; want 308 to %q", c.host, c.path, resp.StatusCode, resp.Header.Get("Location"), c.want)
		}
	}
}

// TestSharedStore: instances sharing a store order a name once between
// them, even when both are asked for it at the same moment (the store's
// lock), and an instance started later (a restart) serves the stored
// certificate without ordering.
func TestSharedStore(t *testing.T) {
	t.Parallel()
	domain := testDomain("shared")
	reg := newRegistry(t)
	lnA, _ := listeners(t, false)
	lnB, _ := listeners(t, false)
	// The CA validates on A's port: B's challenges are answered by A from
	// the store (certmagic's distributed solving).
	ca := acmetest.Run(t, acmetest.Options{TLSPort: port(lnA), HTTPPort: 1})
	a := startInstance(t, reg, ca, domain, lnA, nil, nil)
	b := startInstance(t, reg, ca, domain, lnB, nil, nil)

	for _, name := range []string{"one", "two", "three"} {
		reg.addVM(t, name)
		host := a.vmHost(name)
		var wg sync.WaitGroup
		serials := make([]string, 2)
		for i, in := range []*instance{a, b} {
			wg.Go(func() {
				c, err := in.handshake(host)
				if err != nil {
					t.Errorf("instance %d, %s: %v", i, host, err)
					return
				}
				serials[i] = c.SerialNumber.String()
			})
		}
		wg.Wait()
		if ca.Orders(host) != 1 || serials[0] != serials[1] {
			t.Errorf("%s asked of both at once: %d orders, serials %q; want 1 order, one certificate", host, ca.Orders(host), serials)
		}
	}

	// A restart: a new instance on the same store orders nothing.
	a.tlsLn.Close()
	orders := ca.TotalOrders()
	lnC, _ := listeners(t, false)
	c := startInstance(t, reg, ca, domain, lnC, nil, nil)
	for _, name := range []string{"one", "two", "three"} {
		c.mustHandshake(t, c.vmHost(name))
	}
	if n := ca.TotalOrders() - orders; n != 0 {
		t.Errorf("the restarted instance made %d orders, want 0", n)
	}
}

// TestRenewalByItself: a short-lived certificate (the CA issues them for
// 10 seconds) is renewed by the maintenance loop in its renewal window,
// with no visit and no restart, and the renewed one is served. While it
// is that close to expiry, Status and Warnings say so.
func TestRenewalByItself(t *testing.T) {
	t.Parallel()
	domain := testDomain("renew")
	reg := newRegistry(t)
	tlsLn, _ := listeners(t, false)
	ca := acmetest.Run(t, acmetest.Options{TLSPort: port(tlsLn), HTTPPort: 1, Validity: 10 * time.Second})
	in := startInstance(t, reg, ca, domain, tlsLn, nil, func(c *certs.Config) {
		c.RenewCheckInterval = 200 * time.Millisecond
	})
	reg.addVM(t, "app")
	host := in.vmHost("app")
	first := in.mustHandshake(t, host)
	if life := first.NotAfter.Sub(first.NotBefore); life > 10*time.Second {
		t.Fatalf("certificate lives %v, want a short-lived one", life)
	}
	st := in.mgr.Status()
	if st.Managed != 1 || st.Expiring != 1 || st.SoonestExpiry.IsZero() {
		t.Errorf("Status = %+v, want one managed certificate, expiring", st)
	}
	if w := strings.Join(in.mgr.Warnings(), "\n"); !strings.Contains(w, "certificate for "+host+" expires in") {
		t.Errorf("Warnings = %q, want the expiring certificate", w)
	}

	testkit.WaitWithin(t, "the certificate renewed in the background", 30*time.Second, func() bool {
		return ca.Renewals(host) >= 1 && in.mgr.Status().Renewed >= 1
	})
	testkit.WaitWithin(t, "the renewed certificate served", 10*time.Second, func() bool {
		c, err := in.handshake(host)
		return err == nil && c.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	if n := ca.Orders(host) - ca.Renewals(host); n != 1 {
		t.Errorf("%d new orders for %s, want 1 (the rest renewals)", n, host)
	}
}

// TestRenewalFailureReported: a renewal the CA refuses is counted and
// named in Warnings, and the current certificate is still served.
func TestRenewalFailureReported(t *testing.T) {
	t.Parallel()
	domain := testDomain("fail")
	reg := newRegistry(t)
	tlsLn, _ := listeners(t, false)
	ca := acmetest.Run(t, acmetest.Options{TLSPort: port(tlsLn), HTTPPort: 1, Validity: 20 * time.Second})
	in := startInstance(t, reg, ca, domain, tlsLn, nil, func(c *certs.Config) {
		c.RenewCheckInterval = 200 * time.Millisecond
	})
	reg.addVM(t, "app")
	host := in.vmHost("app")
	ca.RefuseRepeatOrders(true) // the first order goes through, its renewals fail
	first := in.mustHandshake(t, host)
	testkit.WaitWithin(t, "the failed renewal reported", 30*time.Second, func() bool {
		return in.mgr.Status().Failing == 1
	})
	if st := in.mgr.Status(); st.RenewalFailures < 1 || st.Renewed != 0 {
		t.Errorf("Status = %+v, want a renewal failure and no renewal", st)
	}
	if w := strings.Join(in.mgr.Warnings(), "\n"); !strings.Contains(w, "renewal of the certificate for "+host+" failed") {
		t.Errorf("Warnings = %q, want the failed renewal", w)
	}
	if c, err := in.handshake(host); err != nil || c.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("after the failed renewal: %v; want the current certificate served", err)
	}
}

// TestOrderRateUnderBurst: a burst of first visits to new VMs, all at once
// on two instances sharing the store, orders at most Rate names; the rest
// are refused without an order and counted. Renewals and names already
// stored do not count.
func TestOrderRateUnderBurst(t *testing.T) {
	t.Parallel()
	domain := testDomain("burst")
	const rate, burst = 3, 8
	reg := newRegistry(t)
	lnA, _ := listeners(t, false)
	lnB, _ := listeners(t, false)
	ca := acmetest.Run(t, acmetest.Options{TLSPort: port(lnA), HTTPPort: 1})
	limit := func(c *certs.Config) { c.Rate = rate }
	a := startInstance(t, reg, ca, domain, lnA, nil, limit)
	b := startInstance(t, reg, ca, domain, lnB, nil, limit)

	var hosts []string
	for i := range burst {
		name := "vm" + strconv.Itoa(i)
		reg.addVM(t, name)
		hosts = append(hosts, a.vmHost(name))
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		served []string
	)
	for i, host := range hosts {
		in := []*instance{a, b}[i%2]
		wg.Go(func() {
			if _, err := in.handshake(host); err == nil {
				mu.Lock()
				served = append(served, host)
				mu.Unlock()
			} else if !refusedHandshake(err) {
				t.Errorf("handshake for %s: %v", host, err)
			}
		})
	}
	wg.Wait()
	if len(served) != rate {
		t.Errorf("%d of %d new names got a certificate, want %d", len(served), burst, rate)
	}
	if n := ca.TotalOrders(); n != rate {
		t.Errorf("the CA saw %d orders, want %d", n, rate)
	}
	for _, host := range hosts {
		want := 0
		if slices.Contains(served, host) {
			want = 1
		}
		if ca.Orders(host) != want {
			t.Errorf("%s: %d orders, want %d", host, ca.Orders(host), want)
		}
	}
	if limited := a.mgr.Status().RateLimited + b.mgr.Status().RateLimited; limited != burst-rate {
		t.Errorf("%d refusals counted, want %d", limited, burst-rate)
	}
	// A name already in the store is served by the other instance too, the
	// limit reached or not.
	for _, host := range served {
		if _, err := b.handshake(host); err != nil {
			t.Errorf("stored %s on B with the limit reached: %v", host, err)
		}
	}
	if n := ca.TotalOrders(); n != rate {
		t.Errorf("the CA saw %d orders after the stored names were served, want %d", n, rate)
	}
}

// TestConfigErrors: what New refuses.
func TestConfigErrors(t *testing.T) {
	reg := newRegistry(t)
	good := certs.Config{Store: reg.Store, Registry: reg, Domain: "exe.test", VMDomain: "vm.test", Email: "ops@example.com", TLSAddr: "127.0.0.1:443"}
	for name, mutate := range map[string]func(*certs.Config){
		"no email":             func(c *certs.Config) { c.Email = "" },
		"no store":             func(c *certs.Config) { c.Store = nil },
		"no domain":            func(c *certs.Config) { c.Domain = "" },
		"negative rate":        func(c *certs.Config) { c.Rate = -1 },
		"bad TLS address":      func(c *certs.Config) { c.TLSAddr = "nowhere" },
		"HTTP-01 without HTTP": func(c *certs.Config) { c.HTTPOnly = true },
	} {
		c := good
		mutate(&c)
		if _, err := certs.New(c); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	m, err := certs.New(good)
	if err != nil {
		t.Fatal(err)
	}
	m.Stop() // without Start
}

// TestRedirectHandler: the port is left out when it is 443; a Host that
// could turn the redirect elsewhere is refused.
func TestRedirectHandler(t *testing.T) {
	for _, c := range []struct {
		port       int
		host, path string
		code       int
		location   string
	}{
		{443, "Web.exe.xyz:80", "/x?y=1", 308, "https://web.exe.xyz/x?y=1"},
		{8443, "exe.dev", "/", 308, "https://exe.dev:8443/"},
		{443, "", "/", 400, ""},
		{443, "evil.example@exe.dev", "/", 400, ""},
	} {
		req := httptest.NewRequest("GET", "http://placeholder"+c.path, nil)
		req.Host = c.host
		rec := httptest.NewRecorder()
		certs.RedirectHandler(c.port).ServeHTTP(rec, req)
		if rec.Code != c.code || rec.Header().Get("Location") != c.location {
			t.Errorf("port %d, Host %q: %d %q; want %d %q", c.port, c.host, rec.Code, rec.Header().Get("Location"), c.code, c.location)
		}
	}
}

// TestSweepDropsRemovedVM: a VM removed where this instance does not hear
// of it (another instance, an admin command) loses its certificate here
// at the next sweep: no longer served, never ordered again.
func TestSweepDropsRemovedVM(t *testing.T) {
	t.Parallel()
	domain := testDomain("sweep")
	reg := newRegistry(t)
	tlsLn, _ := listeners(t, false)
	ca := acmetest.Run(t, acmetest.Options{TLSPort: port(tlsLn), HTTPPort: 1})
	in := startInstance(t, reg, ca, domain, tlsLn, nil, func(c *certs.Config) { c.SweepInterval = 50 * time.Millisecond })
	in.mgr.Start()
	testkit.WaitFor(t, "the main host's certificate", func() bool { return in.mgr.Status().Managed == 1 })
	reg.addVM(t, "tmp")
	host := in.vmHost("tmp")
	in.mustHandshake(t, host)
	if st := in.mgr.Status(); st.Managed != 2 {
		t.Fatalf("Status = %+v, want 2 managed", st)
	}
	reg.removeVM(t, "tmp") // Forget is not called: this instance did not hear of it
	testkit.WaitFor(t, "the sweep dropping the removed VM", func() bool { return in.mgr.Status().Managed == 1 })
	if _, err := in.handshake(host); !refusedHandshake(err) {
		t.Errorf("handshake for the swept VM: %v, want refused", err)
	}
	if ca.Orders(host) != 1 || ca.Orders(domain) != 1 {
		t.Errorf("orders: %d for %s, %d for the main host; want 1 each", ca.Orders(host), host, ca.Orders(domain))
	}
	if w := in.mgr.Warnings(); len(w) != 0 {
		t.Errorf("Warnings = %q, want none", w)
	}
}
