package sqlstore_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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
// token (an exe1 row keeps a hash of its handle, and the exe0 sealed
// under the handle; a share link row a hash of its token and a short
// prefix of it).
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
	cells := testkit.DumpDB(t, db, sqlite)
	tables := map[string]bool{}
	out := map[string][]byte{}
	for _, c := range cells {
		tables[c.Table] = true
		out[fmt.Sprintf("%s row %d column %s", c.Table, c.Row, c.Column)] = c.Value
	}
	if len(tables) < 5 {
		t.Fatalf("found rows in tables %v: the dump missed some", tables)
	}
	return out
}
