package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/exed-dev/exed/tokens"
)

// A token whose key the Verifier throttles (tokens.ErrThrottled) is
// answered 429 with Retry-After: 1 on every route that verifies tokens,
// never 401, and the answer says to retry later without naming the token.
// The Verifier's throttling is tested in tokens; here, the one mapping
// (verifyRefusal) and each route's answer to what it maps.
func TestThrottledTokenIs429(t *testing.T) {
	throttled := fmt.Errorf("verify: %w", &tokens.Error{Check: "signature", Reason: tokens.ReasonThrottled, Detail: "key SHA256:x over its failure budget"})
	status, msg := verifyRefusal(throttled)
	if status != http.StatusTooManyRequests || !strings.Contains(msg, "retry later") {
		t.Fatalf("throttled: %d %q, want 429 and a retry", status, msg)
	}
	if status, msg := verifyRefusal(&tokens.Error{Reason: tokens.ReasonBadSignature}); status != http.StatusUnauthorized || msg != "invalid token" {
		t.Fatalf("bad signature: %d %q, want 401 invalid token", status, msg)
	}
	if status, _ := verifyRefusal(errors.New("other")); status != http.StatusUnauthorized {
		t.Fatalf("other error: %d, want 401", status)
	}
	if got := retryAfterThrottled(); got != "1" {
		t.Fatalf("Retry-After %q, want 1 (tokens.ThrottleRetryAfter)", got)
	}

	check := func(route string, rec *httptest.ResponseRecorder) {
		t.Helper()
		if rec.Code != http.StatusTooManyRequests {
			t.Errorf("%s: status %d, want 429", route, rec.Code)
		}
		if got := rec.Header().Get("Retry-After"); got != "1" {
			t.Errorf("%s: Retry-After %q, want 1", route, got)
		}
		if got := rec.Header().Get("WWW-Authenticate"); got != "" {
			t.Errorf("%s: a challenge (%q) with a 429", route, got)
		}
		if !strings.Contains(rec.Body.String(), "retry later") {
			t.Errorf("%s: body %q does not say to retry", route, rec.Body)
		}
	}
	a := access{reason: throttled}
	a.status, a.msg = verifyRefusal(throttled)
	rec := httptest.NewRecorder()
	refuseVM(rec, &a)
	check("vm proxy", rec)
	rec = httptest.NewRecorder()
	refuseForward(rec, &a)
	check("forward auth", rec)

	h := New(Config{})
	rec = httptest.NewRecorder()
	res := execResult{status: status, body: errorBody(msg), reason: throttled}
	h.execHeaders(rec.Header(), &res)
	writeJSON(rec, res.status, res.body)
	check("exec", rec)
	// /exec's own rate limit keeps its Retry-After.
	rec = httptest.NewRecorder()
	h = New(Config{ExecRate: 0.1})
	h.execHeaders(rec.Header(), &execResult{status: http.StatusTooManyRequests})
	if got := rec.Header().Get("Retry-After"); got != "10" {
		t.Errorf("exec rate limit: Retry-After %q, want 10", got)
	}
}
