package sqlstore_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/exed-dev/exed/assertion"
	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
	"github.com/exed-dev/exed/tokens"
)

// TestDatabaseCopyYieldsNoToken stores real exe0/exe1 tokens the way
// generate-api-key and exe0-to-exe1 do, then reads every column of every
// table with plain SQL (and, for SQLite, the database files themselves):
// nothing in a copy of the database may be, contain or decode to a usable
// token or login secret (an exe1 row keeps a hash of its handle, and the
// exe0 sealed under the handle; a share link row a hash of its token and a
// short prefix of it; login links, magic secrets and browser sessions a
// hash of their token, secret or cookie value).
func TestDatabaseCopyYieldsNoToken(t *testing.T) {
	for _, db := range sqlstore.Backends() {
		t.Run(db.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn, dir := db.Fresh(t)
			s, err := sqlstore.Open(ctx, dsn, dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()

			now := time.Now().UTC().Truncate(time.Second)
			login, _, err := keys.GenerateEd25519()
			if err != nil {
				t.Fatal(err)
			}
			u := store.User{ID: store.NewUserID(), Email: "ada@example.com", CreatedAt: now}
			loginKey := store.Key{
				UserID: u.ID, Name: "login", Fingerprint: keys.Fingerprint(login.PublicKey()),
				PublicKey: keys.MarshalAuthorized(login.PublicKey()), AddedAt: now,
			}
			if err := s.AddUser(ctx, u, loginKey, store.Event{Time: now, ActorID: "admin", Action: "user.add", Subject: u.Email}); err != nil {
				t.Fatal(err)
			}

			var secrets []string // every exe0 and exe1 made
			exp := now.Add(24 * time.Hour).Unix()
			for i := range 3 {
				// generate-api-key: a fresh key, its token, its handle.
				signer, _, err := keys.GenerateEd25519()
				if err != nil {
					t.Fatal(err)
				}
				p, err := tokens.BuildPayload(exp, 0, []string{"whoami"}, true, []byte(`{"role":"deploy"}`))
				if err != nil {
					t.Fatal(err)
				}
				exe0, err := tokens.MintExe0(signer, "v0@exe.dev", p)
				if err != nil {
					t.Fatal(err)
				}
				handle, err := tokens.NewExe1()
				if err != nil {
					t.Fatal(err)
				}
				sealed, err := tokens.SealExe1(handle, exe0)
				if err != nil {
					t.Fatal(err)
				}
				k := store.Key{
					UserID: u.ID, Name: fmt.Sprintf("api-key-%d", i), Fingerprint: keys.Fingerprint(signer.PublicKey()),
					PublicKey: keys.MarshalAuthorized(signer.PublicKey()), AddedAt: now, Generated: true,
					Cmds: []string{"whoami"}, ExpiresAt: time.Unix(exp, 0),
				}
				h := store.Exe1{ID: tokens.Exe1ID(handle), Fingerprint: k.Fingerprint, Sealed: sealed, CreatedAt: now}
				if err := s.AddTokenKey(ctx, k, &h, store.Event{Time: now, ActorID: u.ID, Action: "token.generate", Subject: k.Fingerprint, RemoteAddr: "192.0.2.1:5555"}); err != nil {
					t.Fatal(err)
				}
				secrets = append(secrets, exe0, handle)

				// The store keeps what the handle's holder needs: the
				// handle still opens its token.
				got, err := s.Exe1(ctx, tokens.Exe1ID(handle))
				if err != nil {
					t.Fatal(err)
				}
				if opened, err := tokens.OpenExe1(handle, got.Sealed); err != nil || opened != exe0 {
					t.Fatalf("stored exe1 does not open with its handle: %v", err)
				}
			}
			// exe0-to-exe1 on a token signed by the login key.
			p, _ := tokens.BuildPayload(exp, 0, nil, false, nil)
			exe0, err := tokens.MintExe0(login, "v0@exe.dev", p)
			if err != nil {
				t.Fatal(err)
			}
			handle, _ := tokens.NewExe1()
			sealed, err := tokens.SealExe1(handle, exe0)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.AddExe1(ctx, store.Exe1{ID: tokens.Exe1ID(handle), Fingerprint: loginKey.Fingerprint, Sealed: sealed, CreatedAt: now},
				store.Event{Time: now, ActorID: u.ID, Action: "exe1.create", Subject: loginKey.Fingerprint}); err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, exe0, handle)

			// A share link, as share add-link stores it, used once.
			if err := s.AddVM(ctx, store.VM{Name: "web", OwnerID: u.ID, Upstream: "http://127.0.0.1:1", CreatedAt: now},
				store.Event{Time: now, ActorID: "admin", Action: "vm.add", Subject: "web"}); err != nil {
				t.Fatal(err)
			}
			link := tokens.NewShareLink()
			l := store.ShareLink{ID: tokens.ShareLinkID(link), Name: tokens.ShareLinkName(link), VM: "web", CreatedAt: now}
			if err := s.AddShareLink(ctx, l, store.Event{Time: now, ActorID: u.ID, Action: "share.link.add", Subject: "web " + l.Name}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.UseShareLink(ctx, "web", tokens.ShareLinkID(link), u.ID, now, store.Event{Time: now, ActorID: u.ID, Action: "share.link.use", Subject: "web " + l.Name}); err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, link)

			// A browser login, as the login routes store it: a link
			// redeemed into a main-host session and a magic secret into a
			// VM host's session, and a second link and secret left unused.
			ev := func(action, subject string) store.Event {
				return store.Event{Time: now, ActorID: u.ID, Action: action, Subject: subject}
			}
			for i := range 2 {
				linkToken, secret := tokens.NewSecret(), tokens.NewSecret()
				lh, sh := tokens.SecretHash(linkToken), tokens.SecretHash(secret)
				secrets = append(secrets, linkToken, secret)
				if err := s.AddLoginLink(ctx, store.LoginLink{Hash: lh[:], UserID: u.ID, Fingerprint: loginKey.Fingerprint,
					TargetVM: "web", CreatedAt: now, ExpiresAt: now.Add(time.Minute), SessionExpiresAt: now.Add(time.Hour)},
					ev("browser.link", "web")); err != nil {
					t.Fatal(err)
				}
				if err := s.AddMagicSecret(ctx, store.MagicSecret{Hash: sh[:], UserID: u.ID, Host: "web.exe.xyz:443", VM: "web",
					Fingerprint: loginKey.Fingerprint, CreatedAt: now, ExpiresAt: now.Add(time.Minute), SessionExpiresAt: now.Add(time.Hour)},
					ev("browser.authorize", "web.exe.xyz:443")); err != nil {
					t.Fatal(err)
				}
				if i == 1 {
					break // the second link and secret stay unused
				}
				mainCookie, vmCookie := tokens.NewCookieValue(), tokens.NewCookieValue()
				mh, vh := tokens.SecretHash(mainCookie), tokens.SecretHash(vmCookie)
				secrets = append(secrets, mainCookie, vmCookie)
				if _, _, err := s.RedeemLoginLink(ctx, lh[:], now, store.Session{ID: store.NewSessionID(), Hash: mh[:],
					Host: "exe.dev:443", CookieName: tokens.MainCookie, CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
					ev("session.start", "exe.dev:443")); err != nil {
					t.Fatal(err)
				}
				if _, err := s.RedeemMagicSecret(ctx, sh[:], "web.exe.xyz:443", now, store.Session{ID: store.NewSessionID(), Hash: vh[:],
					Host: "web.exe.xyz:443", CookieName: tokens.VMCookiePrefix + "443", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
					ev("session.start", "web.exe.xyz:443")); err != nil {
					t.Fatal(err)
				}
			}

			// The check below must catch a leak in any of its forms.
			for _, sec := range secrets {
				for _, form := range encodings([]byte(sec)) {
					if leak(form, secrets) == "" {
						t.Fatalf("the check misses a token stored as %.20q…", form)
					}
				}
			}

			values := dumpAll(t, sqlstore.RawDB(t, dsn, dir), dsn == "")
			if len(values) == 0 {
				t.Fatal("read nothing from the database")
			}
			for where, v := range values {
				if why := leak(v, secrets); why != "" {
					t.Errorf("%s: %s", where, why)
				}
			}
			if dsn == "" {
				s.Close() // checkpoint, then read the files as a thief would
				files, _ := filepath.Glob(filepath.Join(dir, "exed.db*"))
				for _, f := range files {
					b, err := os.ReadFile(f)
					if err != nil {
						t.Fatal(err)
					}
					if why := leak(b, secrets); why != "" {
						t.Errorf("file %s: %s", filepath.Base(f), why)
					}
				}
			}
		})
	}
}

// TestDatabaseCopyYieldsNoSigningKey stores assertion signing keys the way
// exed serve and `exed assertion rotate` do, then reads every column of
// every table with plain SQL (and, for SQLite, the database files): no
// value, in any encoding, is or contains a private signing key, and no
// 32 bytes of any value make a private key whose public half is one of
// the published keys. The secret they are sealed under is not
// in the database, and nothing opens them without it.
func TestDatabaseCopyYieldsNoSigningKey(t *testing.T) {
	for _, db := range sqlstore.Backends() {
		t.Run(db.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn, dir := db.Fresh(t)
			s, err := sqlstore.Open(ctx, dsn, dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			secretFile := filepath.Join(t.TempDir(), "secret.key")
			secret, err := assertion.LoadOrCreateSecret(secretFile)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := assertion.NewIssuer(ctx, assertion.Config{Store: s, Secret: secret, Domain: "exe.dev", VMDomain: "exe.xyz"}); err != nil {
				t.Fatal(err)
			}
			for _, now := range []bool{true, false} {
				if _, err := assertion.Rotate(ctx, s, secret, time.Now(), now, "admin"); err != nil {
					t.Fatal(err)
				}
			}
			stored, err := s.AssertionKeys(ctx)
			if err != nil || len(stored) != 3 {
				t.Fatalf("%d keys stored: %v", len(stored), err)
			}
			var secrets [][]byte // every private scalar, and the server secret
			var pubs [][]byte
			for _, k := range stored {
				priv, err := assertion.PrivateKey(secret, k)
				if err != nil {
					t.Fatal(err)
				}
				d, _ := priv.Bytes()
				secrets = append(secrets, d)
				pubs = append(pubs, k.PublicKey)
			}
			raw, err := os.ReadFile(secretFile)
			if err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, raw)

			// The check below must catch a leak in any of its forms.
			d := secrets[0]
			hidden := append(append([]byte("xyz"), d...), "tail"...) // not in a form encodings makes
			for _, form := range append(encodings(d), hidden, []byte(base64.StdEncoding.EncodeToString(hidden))) {
				if keyLeak(form, nil, pubs) == "" {
					t.Fatalf("the check misses a private key stored as %.20q…", form)
				}
			}
			values := dumpAll(t, sqlstore.RawDB(t, dsn, dir), dsn == "")
			sawSealed := 0
			for where, v := range values {
				if why := keyLeak(v, secrets, pubs); why != "" {
					t.Errorf("%s: %s", where, why)
				}
				if strings.Contains(where, "assertion_keys") && strings.HasSuffix(where, "column sealed") {
					sawSealed++
				}
			}
			if sawSealed != 3 {
				t.Fatalf("read %d sealed keys from the copy, want 3: the dump missed them", sawSealed)
			}
			// What the copy holds opens only with the secret.
			other, err := assertion.LoadOrCreateSecret(filepath.Join(t.TempDir(), "other.key"))
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range stored {
				if _, err := assertion.PrivateKey(other, k); err == nil {
					t.Errorf("key %s opens with another secret", k.ID)
				}
			}
			if dsn == "" {
				s.Close()
				files, _ := filepath.Glob(filepath.Join(dir, "exed.db*"))
				for _, f := range files {
					b, err := os.ReadFile(f)
					if err != nil {
						t.Fatal(err)
					}
					for _, sec := range secrets {
						for _, form := range encodings(sec) {
							if bytes.Contains(b, form) {
								t.Errorf("file %s holds a private key or the secret", filepath.Base(f))
							}
						}
					}
				}
			}
		})
	}
}

// keyLeak says why v would give a thief a signing key, or "" if it would
// not: it is or holds a private scalar or the secret in some encoding,
// parses as a private key (PKCS #8, SEC 1, a JWK with "d"), or 32 bytes of
// it, taken as a P-256 scalar, give one of the public keys pubs.
func keyLeak(v []byte, secrets, pubs [][]byte) string {
	for _, form := range decodings(v) {
		for _, sec := range secrets {
			for _, enc := range encodings(sec) {
				if bytes.Contains(form, enc) {
					return "contains a private key or the server secret"
				}
			}
		}
		if _, err := x509.ParsePKCS8PrivateKey(form); err == nil {
			return "parses as a PKCS #8 private key"
		}
		if _, err := x509.ParseECPrivateKey(form); err == nil {
			return "parses as a SEC 1 private key"
		}
		var jwk struct{ D string }
		if json.Unmarshal(form, &jwk) == nil && jwk.D != "" {
			return "holds a JWK with a private part"
		}
		for i := 0; i+32 <= len(form); i++ {
			priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), form[i:i+32])
			if err != nil {
				continue
			}
			pub, _ := priv.PublicKey.Bytes()
			for _, p := range pubs {
				if bytes.Equal(pub, p) {
					return fmt.Sprintf("bytes %d..%d are a signing key", i, i+32)
				}
			}
		}
	}
	return ""
}

// encodings returns b and the base64 and hex forms it might be stored in.
func encodings(b []byte) [][]byte {
	forms := [][]byte{b, []byte(hex.EncodeToString(b)), []byte(strings.ToUpper(hex.EncodeToString(b)))}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		forms = append(forms, []byte(enc.EncodeToString(b)))
	}
	return forms
}

// decodings returns v and whatever v decodes to as base64 or hex.
func decodings(v []byte) [][]byte {
	forms := [][]byte{v}
	s := strings.TrimSpace(string(v))
	if b, err := hex.DecodeString(s); err == nil {
		forms = append(forms, b)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			forms = append(forms, b)
		}
	}
	return forms
}

// tokenish matches the start of an exe0 token or a whole exe1 handle (and
// not an event action such as "exe1.create").
var tokenish = regexp.MustCompile(`exe0\.[A-Za-z0-9_-]{16}|exe1\.[A-Z2-7]{26}`)

// leak says why v would give a thief a token, or "" if it would not.
func leak(v []byte, secrets []string) string {
	for _, form := range decodings(v) {
		if _, err := tokens.ParseExe0(string(form)); err == nil {
			return "parses as an exe0 token"
		}
		if err := tokens.ParseExe1(string(form)); err == nil {
			return "parses as an exe1 handle"
		}
		for _, sec := range secrets {
			for _, enc := range encodings([]byte(sec)) {
				if bytes.Contains(form, enc) {
					return "contains a token"
				}
			}
		}
		if tokenish.Match(form) {
			return "contains something shaped like a token"
		}
	}
	return ""
}

// dumpAll reads every column of every row of every table, keyed by
// "table row N column C".
func dumpAll(t *testing.T, db *sql.DB, sqlite bool) map[string][]byte {
	t.Helper()
	d := testkit.DumpDB(t, db, sqlite)
	if len(d.Tables) < 5 {
		t.Fatalf("found tables %v: the query missed some", d.Tables)
	}
	out := map[string][]byte{}
	for _, c := range d.Cells {
		out[fmt.Sprintf("%s row %d column %s", c.Table, c.Row, c.Column)] = c.Value
	}
	return out
}
