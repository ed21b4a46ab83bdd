package tokens

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/store"
)

// past2027 are the clocks the date-independence tests run at: after the
// date a literal expiry once held (2027-01-01, which broke the suite), in
// 2031, and late in the century, before the fixtures' 2099 expiry.
var past2027 = []time.Time{
	time.Date(2027, 1, 1, 0, 0, 1, 0, time.UTC),
	time.Date(2031, 6, 1, 12, 0, 0, 0, time.UTC),
	time.Date(2098, 12, 31, 23, 0, 0, 0, time.UTC),
}

// TestVerifierPast2027 runs the key token paths with the clock set past
// 2027: the docs' recipe P (an hour ahead of now, docs/tokens.md), the
// fixtures' far-future P (exp 4070908800, 2099) and a key restricted for
// 90 days verify at each clock, and are refused once the clock passes
// their expiry. No test may depend on today's date; this one shows the
// Verifier does not either.
func TestVerifierPast2027(t *testing.T) {
	for _, now := range past2027 {
		t.Run(now.Format("2006-01-02"), func(t *testing.T) {
			f := newFixture(t, Config{CacheSize: -1})
			f.clock.Set(now)
			ctx := context.Background()
			target := Target{Namespace: vmNS, VM: f.web}

			docsP := fmt.Sprintf(`{"exp":%d,"ctx":{"role":"deploy"}}`, now.Add(time.Hour).Unix()) // valid for an hour
			fixtureP := `{"exp":4070908800,"ctx":{"role":"deploy"}}`
			ci := testkit.NewSigner(t)
			f.addKey(ci, "ci-deploy", func(k *store.Key) { k.VM = "web"; k.ExpiresAt = now.Add(90 * 24 * time.Hour) })
			for name, tok := range map[string]string{
				"docs P":            mint(t, f.signer, vmNS, docsP),
				"fixture P":         mint(t, f.signer, vmNS, fixtureP),
				"restricted key":    mint(t, ci, vmNS, `{}`),
				"exe0 with nbf now": mint(t, f.signer, vmNS, fmt.Sprintf(`{"nbf":%d}`, now.Unix())),
			} {
				if _, err := f.v.Verify(ctx, tok, target); err != nil {
					t.Errorf("%s at %s: %v", name, now, err)
				}
			}

			f.clock.Set(now.Add(2 * time.Hour))
			_, err := f.v.Verify(ctx, mint(t, f.signer, vmNS, docsP), target)
			wantReason(t, err, ReasonExpired, CheckValidity)
			f.clock.Set(now.Add(91 * 24 * time.Hour))
			_, err = f.v.Verify(ctx, mint(t, ci, vmNS, `{}`), target)
			wantReason(t, err, ReasonRestricted, CheckRestrictions)
		})
	}
}
