package proxy

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/keys"
)

// The regression tests of this file pin attenuation over /exec: a token
// acts within its key's restrictions AND its own exp and cmds, so anything
// it mints or adds is at least as restricted as the token itself. Before,
// a token valid for seconds minted a never-expiring token that could run
// everything, and one granted only "ssh-key add" registered a permanent,
// unrestricted login key.

// shortToken is an API token of alice's unrestricted login key, valid for
// a minute, granting only cmds.
func (w *world) shortToken(cmds ...string) (token string, exp int64) {
	w.t.Helper()
	exp = time.Now().Add(time.Minute).Unix()
	q := make([]string, len(cmds))
	for i, c := range cmds {
		q[i] = fmt.Sprintf("%q", c)
	}
	return w.mint(w.alice.Signer, apiNamespace, fmt.Sprintf(`{"exp":%d,"cmds":[%s]}`, exp, strings.Join(q, ","))), exp
}

func TestShortLivedTokenMintsNeverExpiringToken(t *testing.T) {
	w := newWorld(t, nil)
	tok, exp := w.shortToken("ssh-key generate-api-key")
	auth := map[string]string{"Authorization": bearerHdr(tok)}

	resp, m := w.postExec("ssh-key generate-api-key --label child", auth)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("generate-api-key: %d %v", resp.StatusCode, m)
	}
	got, err := time.Parse(time.RFC3339, fmt.Sprint(m["expires_at"]))
	if err != nil {
		t.Fatalf("the child token has no expiry: %v", m)
	}
	// The parent is valid through the second exp: it ends at exp+1, and
	// so may the child, no later.
	end := time.Unix(exp+1, 0)
	if got.After(end) {
		t.Errorf("child expires at %v, after its parent ends at %v", got, end)
	}
	cmds, _ := m["cmds"].([]any)
	if len(cmds) != 1 || cmds[0] != "ssh-key generate-api-key" {
		t.Errorf("child cmds = %v, want its parent's [ssh-key generate-api-key]", m["cmds"])
	}
	// The stored key carries the same limits, and so does the token.
	k, err := w.Store.Key(context.Background(), fmt.Sprint(m["fingerprint"]))
	if err != nil {
		t.Fatal(err)
	}
	if k.ExpiresAt.IsZero() || k.ExpiresAt.After(end) || !slices.Equal(k.Cmds, []string{"ssh-key generate-api-key"}) {
		t.Errorf("child key restrictions: expires %v, cmds %v", k.ExpiresAt, k.Cmds)
	}

	// Asking for more than the parent has is refused, naming the limit.
	for _, line := range []string{
		"ssh-key generate-api-key --label a --exp 1y",
		"ssh-key generate-api-key --label b --cmds whoami",
		"ssh-key generate-api-key --label c --cmds ssh-key\\ add,ssh-key\\ generate-api-key",
	} {
		resp, m := w.postExec(line, auth)
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.HasPrefix(fmt.Sprint(m["error"]), `token of key "alice-laptop" `) {
			t.Errorf("%q: %d %v, want 422 naming the token's restriction", line, resp.StatusCode, m)
		}
	}
}

func TestSshKeyAddTokenRegistersUnrestrictedLoginKey(t *testing.T) {
	w := newWorld(t, nil)
	tok, exp := w.shortToken("ssh-key add")
	auth := map[string]string{"Authorization": bearerHdr(tok)}
	pub := testkit.NewSigner(t).PublicKey()

	resp, m := w.postExec("ssh-key add --name ci "+keys.MarshalAuthorized(pub), auth)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ssh-key add: %d %v", resp.StatusCode, m)
	}
	k, err := w.Store.Key(context.Background(), keys.Fingerprint(pub))
	if err != nil {
		t.Fatal(err)
	}
	// The token is valid through the second exp: it ends at exp+1.
	if end := time.Unix(exp+1, 0); k.ExpiresAt.IsZero() || k.ExpiresAt.After(end) {
		t.Errorf("added key expires %v: a key added by a token must not outlive it (it ends %v)", k.ExpiresAt, end)
	}
	if !slices.Equal(k.Cmds, []string{"ssh-key add"}) {
		t.Errorf("added key cmds = %v, want the token's [ssh-key add]", k.Cmds)
	}

	for _, line := range []string{
		"ssh-key add --name c --exp 1y " + keys.MarshalAuthorized(testkit.NewSigner(t).PublicKey()),
		"ssh-key add --name d --cmds whoami " + keys.MarshalAuthorized(testkit.NewSigner(t).PublicKey()),
	} {
		resp, m := w.postExec(line, auth)
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Errorf("%q: %d %v, want 422", line, resp.StatusCode, m)
		}
	}
	// Nothing of the refused lines was stored.
	ks, _ := w.Store.Keys(context.Background(), w.alice.User.ID)
	if len(ks) != 2 {
		t.Errorf("alice has %d keys, want her login key and ci", len(ks))
	}
}

func TestSshKeyRemoveTokenRemovesOwnersLoginKey(t *testing.T) {
	w := newWorld(t, nil)
	spare := w.addKey(w.alice, "spare")
	tok, _ := w.shortToken("ssh-key remove", "ssh-key rename")
	auth := map[string]string{"Authorization": bearerHdr(tok)}
	for _, line := range []string{"ssh-key remove spare", "ssh-key rename spare other"} {
		resp, m := w.postExec(line, auth)
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(m["error"]), "cannot act on key") {
			t.Errorf("%q: %d %v, want 422: the token is more restricted than that key", line, resp.StatusCode, m)
		}
	}
	if _, err := w.Store.Key(context.Background(), keys.Fingerprint(spare.PublicKey())); err != nil {
		t.Errorf("spare key gone: %v", err)
	}
}
