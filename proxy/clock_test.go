package proxy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/internal/testkit/testreg"
	"github.com/exed-dev/exed/sshcmd"
	"github.com/exed-dev/exed/tokens"
)

// TestProxyPast2027: the proxy verifies a fixture token (alice's seeded
// key over the fixtures' P, exp 2099) and a token minted an hour ahead of
// the clock, with the clock set past 2027 — in 2031 and in 2098 — and
// refuses the second once the clock passes its exp. Nothing on the path
// reads the real date.
func TestProxyPast2027(t *testing.T) {
	for _, now := range []time.Time{
		time.Date(2031, 6, 1, 12, 0, 0, 0, time.UTC),
		time.Date(2098, 12, 31, 23, 0, 0, 0, time.UTC),
	} {
		t.Run(now.Format("2006"), func(t *testing.T) {
			clock := testkit.NewClock(now)
			reg := testreg.Open(t, clock.Now)
			up := httptest.NewServer(Echo())
			t.Cleanup(up.Close)
			reg.Upstream = up.URL
			alice := reg.AddUser("alice@example.com", 1)
			reg.AddVM("web", alice, false)
			suite := sshcmd.New(sshcmd.Env{Store: reg.Store, Verifier: reg.Verifier, Domain: testDomain, VMDomain: testVMDomain, Now: clock.Now})
			h := New(Config{Store: reg.Store, Verifier: reg.Verifier, Suite: suite, Domain: testDomain, VMDomain: testVMDomain, Now: clock.Now})
			get := func(tok string) int {
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				r.Host = "web." + testVMDomain
				r.Header.Set("X-Exedev-Authorization", "Bearer "+tok)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				return rec.Code
			}
			mint := func(p string) string {
				tok, err := tokens.MintExe0(alice.Signer, vmNamespace("web"), []byte(p))
				if err != nil {
					t.Fatal(err)
				}
				return tok
			}
			fixture := mint(`{"exp":4070908800,"ctx":{"role":"deploy"}}`)
			hour := mint(fmt.Sprintf(`{"exp":%d}`, now.Add(time.Hour).Unix()))
			if c := get(fixture); c != http.StatusOK {
				t.Errorf("fixture token at %s: %d", now, c)
			}
			if c := get(hour); c != http.StatusOK {
				t.Errorf("token an hour ahead at %s: %d", now, c)
			}
			clock.Advance(2 * time.Hour)
			if c := get(hour); c != http.StatusUnauthorized {
				t.Errorf("token an hour ahead, two hours on: %d, want 401", c)
			}
		})
	}
}
