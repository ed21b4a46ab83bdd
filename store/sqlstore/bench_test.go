package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exed-dev/exed/store"
)

const (
	// lookupKeys is the registry size BenchmarkKeyLookup measures: far
	// more keys than one exed is likely to hold.
	lookupKeys  = 1_000_000
	keysPerUser = 1_000
	// Rows per INSERT while filling: many save PostgreSQL round trips, but
	// SQLite looks $N parameters up in a list, so its cost per parameter
	// grows with their number.
	postgresBatch = 1_000
	sqliteBatch   = 50
	benchPubKey   = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
)

// benchFingerprint is key i's fingerprint, recomputable without storing a
// million strings.
func benchFingerprint(i int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "bench key %d", i))
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// fillKeys inserts n keys (keysPerUser per user) with plain SQL in one
// transaction.
func fillKeys(b *testing.B, db *sql.DB, sqlite bool, n int) {
	b.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	if sqlite {
		// Random fingerprints land all over the index: with SQLite's
		// default 2 MB page cache a million inserts take minutes.
		if _, err := tx.ExecContext(ctx, `PRAGMA cache_size = -262144`); err != nil { // 256 MiB
			b.Fatal(err)
		}
	}
	for u := range (n + keysPerUser - 1) / keysPerUser {
		if _, err := tx.ExecContext(ctx, `INSERT INTO users (id, email, created_at) VALUES ($1, $2, 0)`,
			fmt.Sprintf("usrbench%08d", u), fmt.Sprintf("u%d@example.com", u)); err != nil {
			b.Fatal(err)
		}
	}
	batch := postgresBatch
	if sqlite {
		batch = sqliteBatch
	}
	var q strings.Builder
	args := make([]any, 0, batch*6)
	for start := 0; start < n; start += batch {
		q.Reset()
		args = args[:0]
		q.WriteString(`INSERT INTO keys (fingerprint, user_id, name, public_key, added_at, generated) VALUES `)
		for i := start; i < min(start+batch, n); i++ {
			if i > start {
				q.WriteByte(',')
			}
			p := len(args)
			fmt.Fprintf(&q, "($%d, $%d, $%d, $%d, $%d, $%d)", p+1, p+2, p+3, p+4, p+5, p+6)
			args = append(args, benchFingerprint(i), fmt.Sprintf("usrbench%08d", i/keysPerUser),
				fmt.Sprintf("key-%d", i), "ssh-ed25519 "+benchPubKey, int64(1767225600), i%2 == 0)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkKeyLookup measures Store.Key, the lookup behind every token
// check and SSH login, among a million keys, reporting the median and
// 99th-percentile latency besides the mean.
func BenchmarkKeyLookup(b *testing.B) {
	for _, be := range testBackends() {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			dsn, dir := be.fresh(b)
			s, err := Open(ctx, dsn, dir)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			start := time.Now()
			raw := rawDB(b, dsn, dir)
			fillKeys(b, raw, dsn == "", lookupKeys)
			// Measure the steady state, not the aftermath of the bulk load.
			if dsn == "" {
				_, err = raw.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
			} else {
				_, err = raw.Exec(`VACUUM ANALYZE keys`)
			}
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("%s: inserted %d keys in %v", be.name, lookupKeys, time.Since(start).Round(time.Millisecond))

			rng := rand.New(rand.NewPCG(1, 2))
			var lat []time.Duration
			for b.Loop() {
				fp := benchFingerprint(rng.IntN(lookupKeys))
				t := time.Now()
				k, err := s.Key(ctx, fp)
				lat = append(lat, time.Since(t))
				if err != nil || k.Fingerprint != fp {
					b.Fatalf("Key: %v", err)
				}
			}
			reportPercentiles(b, lat)
		})
	}
}

// verifierKeys is the registry size BenchmarkVerifierLookup measures: the
// cost it compares is per query, not per row.
const verifierKeys = 10_000

// BenchmarkVerifierLookup compares what an uncached token check asks of the
// registry: two queries parsed afresh each time and watching the context
// (Key then UserByID, as before statements were prepared), the same two
// prepared, and the one prepared join, KeyAndUser, that the Verifier uses.
func BenchmarkVerifierLookup(b *testing.B) {
	for _, be := range testBackends() {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			dsn, dir := be.fresh(b)
			s, err := Open(ctx, dsn, dir)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			fillKeys(b, rawDB(b, dsn, dir), dsn == "", verifierKeys)
			// Cancelable, as every request's context is.
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()

			lookups := []struct {
				name string
				get  func(fp string) (store.Key, store.User, error)
			}{
				{"unprepared-key-then-user", func(fp string) (store.Key, store.User, error) {
					k, err := scanKey(s.ro.QueryRowContext(ctx, keyQuery, fp))
					if err != nil {
						return store.Key{}, store.User{}, err
					}
					u, err := scanUser(s.ro.QueryRowContext(ctx, userByIDQuery, k.UserID))
					return k, u, err
				}},
				{"prepared-key-then-user", func(fp string) (store.Key, store.User, error) {
					k, err := s.Key(ctx, fp)
					if err != nil {
						return store.Key{}, store.User{}, err
					}
					u, err := s.UserByID(ctx, k.UserID)
					return k, u, err
				}},
				{"prepared-join", func(fp string) (store.Key, store.User, error) {
					return s.KeyAndUser(ctx, fp)
				}},
			}
			for _, l := range lookups {
				b.Run(l.name, func(b *testing.B) {
					rng := rand.New(rand.NewPCG(1, 2))
					for b.Loop() {
						fp := benchFingerprint(rng.IntN(verifierKeys))
						k, u, err := l.get(fp)
						if err != nil || k.Fingerprint != fp || u.ID != k.UserID {
							b.Fatalf("lookup %s: %+v, %+v, %v", fp, k, u, err)
						}
					}
				})
			}
		})
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	at := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) }
	b.ReportMetric(at(0.50), "p50-ns")
	b.ReportMetric(at(0.99), "p99-ns")
}

// BenchmarkRemoveKeySync prices synchronous=FULL, which makes a committed
// removal survive power loss, against NORMAL, which in WAL mode may lose the
// last commits (and so bring a revoked key back).
func BenchmarkRemoveKeySync(b *testing.B) {
	for _, mode := range []string{"FULL", "NORMAL"} {
		b.Run("synchronous="+mode, func(b *testing.B) {
			ctx := context.Background()
			path := filepath.Join(b.TempDir(), dbFile)
			s, err := openSQLite(ctx, path, mode)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			fillKeys(b, s.rw, true, b.N+1)
			b.ResetTimer()
			for i := range b.N {
				// Even keys are generated, odd ones log in; each user's last
				// login key is refused, one removal in a thousand.
				err := s.RemoveKey(ctx, fmt.Sprintf("usrbench%08d", i/keysPerUser), benchFingerprint(i), store.Event{})
				if err != nil && !errors.Is(err, store.ErrLastKey) {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVMLookup measures Store.VM, the proxy's lookup on a VM cache
// miss (once a second per VM in use), now that it brings the VM's shares
// in the same statement: a VM shared with nobody, and one shared with 20
// users, beside the single-row query it replaced (the VM alone).
func BenchmarkVMLookup(b *testing.B) {
	for _, be := range testBackends() {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			s := openFresh(b, be)
			owner := store.User{ID: "usrbenchowner000", Email: "owner@example.com", CreatedAt: t0}
			if err := s.AddUser(ctx, owner, newKey(owner.ID, "login"), ev("admin", "user.add", owner.Email)); err != nil {
				b.Fatal(err)
			}
			for _, name := range []string{"alone", "shared"} {
				if err := s.AddVM(ctx, store.VM{Name: name, OwnerID: owner.ID, Upstream: "http://127.0.0.1:1", CreatedAt: t0}, ev("admin", "vm.add", name)); err != nil {
					b.Fatal(err)
				}
			}
			for i := range 20 {
				u := store.User{ID: fmt.Sprintf("usrbenchshare%03d", i), Email: fmt.Sprintf("s%d@example.com", i), CreatedAt: t0}
				if err := s.AddUser(ctx, u, newKey(u.ID, "login"), ev("admin", "user.add", u.Email)); err != nil {
					b.Fatal(err)
				}
				if _, err := s.AddShare(ctx, "shared", u.Email, t0, ev(owner.ID, "share.add", u.Email)); err != nil {
					b.Fatal(err)
				}
			}
			for _, tt := range []struct {
				name, vm string
				shares   int
			}{{"no shares", "alone", 0}, {"20 shares", "shared", 20}} {
				b.Run(tt.name, func(b *testing.B) {
					for b.Loop() {
						vm, err := s.VM(ctx, tt.vm)
						if err != nil || len(vm.SharedWith) != tt.shares {
							b.Fatalf("VM(%s) = %+v, %v", tt.vm, vm, err)
						}
					}
				})
			}
			b.Run("single-row query, no shares", func(b *testing.B) {
				st, err := s.ro.PrepareContext(ctx, `SELECT name, owner_id, upstream, public, created_at FROM vms WHERE name = $1`)
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				for b.Loop() {
					var vm store.VM
					var created int64
					if err := s.pointRead(ctx, st, "alone").Scan(&vm.Name, &vm.OwnerID, &vm.Upstream, &vm.Public, &created); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
