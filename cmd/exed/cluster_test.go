package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/exed-dev/exed/internal/testkit"
	"github.com/exed-dev/exed/proxy"
)

// Issue 8: several exed instances behind load balancers, sharing one
// PostgreSQL registry and one SSH host key.

const (
	// clusterTTL is exed serve's default --cache-ttl, which the instances
	// below run with: the bound, after a removal on another instance or
	// after losing the database, past which a token is refused (one
	// second).
	clusterTTL = time.Second
	// clusterMigrationsLock is store/open.go's advisory lock key for
	// migrations ("exedmigr"). The test holds it while the instances start,
	// so that all three are seen queueing on it before any migrates.
	clusterMigrationsLock = 0x65786564_6d696772
	// clusterAppB is instance B's PostgreSQL application_name (set in its
	// DSN), by which the test finds B's backends to terminate them.
	clusterAppB = "exed_cluster_b"
	// probeEvery paces the probers: the resolution of the measured figures,
	// without flooding three race-instrumented servers on two cores.
	probeEvery = 10 * time.Millisecond
)

// TestClusterPostgres runs three `exed serve` processes (A, B, C) on one
// throwaway PostgreSQL database with one shared host key (and server
// secret), started at once
// so that their migrations race. B reaches the database through a relay
// the test can cut. The subtests share the cluster; each makes its own keys.
func TestClusterPostgres(t *testing.T) {
	dbURL := clusterDB(t)
	dir := t.TempDir()
	hostKey := filepath.Join(dir, "cluster_host_key")  // not there yet: the instances race to create it
	secret := filepath.Join(dir, "cluster_secret.key") // the same: one server secret for the assertion keys
	relay := newDBRelay(t, dbURL.Host)
	urlB := *dbURL
	urlB.Host = relay.addr
	q := urlB.Query()
	q.Set("application_name", clusterAppB)
	urlB.RawQuery = q.Encode()
	dsns := []string{dbURL.String(), urlB.String(), dbURL.String()}

	// Start all three while the test holds the migrations lock, and let go
	// only once all three wait on it: then they really migrate at once.
	ctx := context.Background()
	lockConn, err := pgx.Connect(ctx, dbURL.String())
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	defer lockConn.Close(ctx)
	if _, err := lockConn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(clusterMigrationsLock)); err != nil {
		t.Fatalf("take the migrations lock: %v", err)
	}
	srvs := make([]*server, 3)
	var wg sync.WaitGroup
	for i := range srvs {
		wg.Go(func() {
			data := filepath.Join(dir, fmt.Sprintf("data%c", 'A'+i))
			srvs[i] = startServer(t, data, append([]string{"--db", dsns[i], "--host-key", hostKey, "--secret-key-file", secret}, exeDevNames...)...)
		})
	}
	// Polled by hand rather than with waitFor: whatever happens, the lock
	// must be released and the starts waited for before the test can stop.
	queued := 0
	tick := time.NewTicker(10 * time.Millisecond)
	for deadline := time.Now().Add(30 * time.Second); queued < 3 && time.Now().Before(deadline); <-tick.C {
		err := lockConn.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&queued)
		if err != nil {
			t.Errorf("read pg_locks: %v", err)
			break
		}
	}
	tick.Stop()
	// Released whatever happened, so that no instance is left waiting.
	if _, err := lockConn.Exec(ctx, "SELECT pg_advisory_unlock($1)", int64(clusterMigrationsLock)); err != nil {
		t.Errorf("release the migrations lock: %v", err)
	}
	// startServer fails the test only when exed serve does not start; it
	// does so from its goroutine, and the test stops here.
	wg.Wait()
	if queued != 3 {
		t.Errorf("%d instances seen waiting on the migrations lock, want 3", queued)
	}
	if t.Failed() {
		t.FailNow()
	}
	var applied, latest int
	if err := lockConn.QueryRow(ctx, "SELECT count(*), max(version) FROM schema_migrations").Scan(&applied, &latest); err != nil || applied != latest || applied == 0 {
		t.Fatalf("schema_migrations after a racing start: %d rows, latest %d, %v", applied, latest, err)
	}
	a, b, c := srvs[0], srvs[1], srvs[2]
	for i, s := range srvs {
		// The admin commands (and the client's known_hosts) see what serve sees.
		s.env = append(s.env, "EXED_DB="+dsns[i], "EXED_HOST_KEY="+hostKey, "EXED_SECRET_KEY_FILE="+secret)
	}

	upstream := httptest.NewServer(proxy.Echo())
	defer upstream.Close()
	aliceKey := testkit.SSHKeygen(t, dir, "ed25519", 0)
	mustRun(t, a.env, "user", "add", "--email", "alice@example.com", "--key-file", aliceKey+".pub")
	mustRun(t, b.env, "vm", "add", "--name", "web", "--owner", "alice@example.com", "--upstream", upstream.URL)

	// One host identity: a single known_hosts line, naming all three
	// addresses, is enough for StrictHostKeyChecking on every instance.
	kh := sharedKnownHosts(t, a, srvs)
	alice := make([]*sshClient, 3)
	for i, s := range srvs {
		alice[i] = &sshClient{s: s, key: aliceKey, knownHosts: kh}
	}
	aliceA, aliceB, aliceC := alice[0], alice[1], alice[2]

	t.Run("shared registry", func(t *testing.T) {
		exe1 := decode[generated](t, aliceA.ok(t, "", "ssh-key generate-api-key --vm=web --label=ci-exe1 --ctx='{\"job\":1}' --json"))
		exe0 := decode[generated](t, aliceA.ok(t, "", "ssh-key generate-api-key --vm=web --label=ci-exe0 --exe0 --json"))
		api := decode[generated](t, aliceA.ok(t, "", "ssh-key generate-api-key --label=api --json"))
		if !strings.HasPrefix(exe1.Token, "exe1.") || !strings.HasPrefix(exe0.Token, "exe0.") || !strings.HasPrefix(api.Token, "exe1.") {
			t.Fatalf("generated %q, %q, %q tokens", exe1.Label, exe0.Label, api.Label)
		}
		// Listed on B, renamed on C, the new name listed on A.
		if names := listKeyNames(t, aliceB); !hasAll(names, "ci-exe1", "ci-exe0", "api") {
			t.Fatalf("B lists %q", names)
		}
		aliceC.ok(t, "", "ssh-key", "rename", "ci-exe0", "ci-exe0b")
		if names := listKeyNames(t, aliceA); !hasAll(names, "ci-exe0b") || slices.Contains(names, "ci-exe0") {
			t.Fatalf("after the rename on C, A lists %q", names)
		}
		// Issued on A, used on B and C: the proxy and /exec.
		for _, s := range []*server{b, c} {
			for _, tok := range []string{exe1.Token, exe0.Token} {
				code, body := s.curl(t, clusterVMURL(t, s), "-H", "X-Exedev-Authorization: Bearer "+tok)
				if code != "200" {
					t.Fatalf("token issued on A, used on %s: status %s", s.sshAddr, code)
				}
				h := decode[echoed](t, body).Headers
				if h["X-Exedev-Email"][0] != "alice@example.com" {
					t.Errorf("upstream got %v", h)
				}
				// The exe1 handle opens, on another instance, to the exe0 sealed on A.
				if tok == exe1.Token && (len(h["X-Exedev-Token-Ctx"]) != 1 || h["X-Exedev-Token-Ctx"][0] != `{"job":1}`) {
					t.Errorf("exe1 token's ctx upstream: %q", h["X-Exedev-Token-Ctx"])
				}
			}
			code, body := s.curl(t, clusterAPIURL(t, s), "-X", "POST", "-H", "Authorization: Bearer "+api.Token, "--data-binary", "whoami")
			if code != "200" || !strings.Contains(body, `"alice@example.com"`) {
				t.Fatalf("/exec whoami on %s: %s %s", s.sshAddr, code, body)
			}
		}
		// Removed on B: gone from the list on C.
		aliceB.ok(t, "", "ssh-key", "remove", "api")
		if names := listKeyNames(t, aliceC); slices.Contains(names, "api") {
			t.Fatalf("after the remove on B, C lists %q", names)
		}
	})

	// Issue on A, use on all three, remove on C while A, B and C are being
	// asked without pause: C refuses from the moment remove returns, A and
	// B within the cache TTL.
	t.Run("revocation", func(t *testing.T) {
		for _, exe0 := range []bool{true, false} {
			kind, flag := "exe1", ""
			if exe0 {
				kind, flag = "exe0", " --exe0"
			}
			label := "revoke-" + kind
			gen := decode[generated](t, aliceA.ok(t, "", "ssh-key generate-api-key --vm=web --label="+label+flag+" --json"))
			probers := make([]*prober, 3)
			for i, s := range srvs {
				probers[i] = startProber(t, fmt.Sprintf("%c", 'A'+i), s, gen.Token)
			}
			// Several answers on each instance: the token is in every cache.
			testkit.WaitWithin(t, "the token accepted on every instance", 10*time.Second, func() bool {
				return allProbers(probers, func(as []probeAnswer) bool { return countStatus(as, 200) >= 3 })
			})
			aliceC.ok(t, "", "ssh-key", "remove", label)
			removed := time.Now()
			testkit.WaitWithin(t, "every instance refusing the removed key's token", 10*time.Second, func() bool {
				return allProbers(probers, func(as []probeAnswer) bool {
					return as[len(as)-1].start.After(removed.Add(clusterTTL + 300*time.Millisecond))
				})
			})
			for i, p := range probers {
				m := measureSwitch(t, p.halt(), removed, []int{401}, nil)
				bound := clusterTTL
				if srvs[i] == c {
					bound = 0 // the removing instance: nothing sent after remove returned is accepted
				}
				if m.lastOK > bound {
					t.Errorf("%s token on %s, after remove on C returned: %v; want nothing accepted past %v", kind, p.name, m, bound)
				}
				t.Logf("revocation, %s token, instance %s, after remove on C returned: %v", kind, p.name, m)
			}
		}
	})

	// How long after a removal on A returns B, which had the token cached,
	// refuses it: B hears of the removal from PostgreSQL (LISTEN/NOTIFY),
	// or, if it did not, its cache entry expires within the TTL. Only the
	// TTL's bound is asserted; the figures are logged.
	t.Run("revocation delay", func(t *testing.T) {
		const trials = 50
		cb := clientTo(b)
		defer cb.CloseIdleConnections()
		url := clusterVMURL(t, b)
		delays := make([]time.Duration, 0, trials)
		for i := range trials {
			label := fmt.Sprintf("delay-%d", i)
			gen := decode[generated](t, aliceA.ok(t, "", "ssh-key generate-api-key --vm=web --label="+label+" --json"))
			if got := probe(cb, url, gen.Token); got != 200 { // now in B's cache
				t.Fatalf("trial %d: status %d on B before the removal", i, got)
			}
			aliceA.ok(t, "", "ssh-key", "remove", label)
			removed := time.Now()
			// Asked back to back, so that the figure's resolution is one
			// request's latency.
			var refused time.Duration
			for deadline := removed.Add(10 * time.Second); ; {
				sent := time.Now()
				got := probe(cb, url, gen.Token)
				if got == 401 {
					refused = sent.Sub(removed)
					break
				}
				if got != 200 || time.Now().After(deadline) {
					t.Fatalf("trial %d: status %d on B %v after the removal on A returned", i, got, sent.Sub(removed))
				}
			}
			if refused > clusterTTL {
				t.Errorf("trial %d: B accepted the removed key's token until %v after remove on A returned; want refused within %v", i, refused, clusterTTL)
			}
			delays = append(delays, refused)
		}
		slices.Sort(delays)
		pct := func(p int) time.Duration { return delays[(len(delays)*p+99)/100-1].Round(100 * time.Microsecond) }
		t.Logf("revocation delay, remove on A returned → B refuses (first refused request sent at), %d trials: min %v, p50 %v, p90 %v, p99 %v, max %v",
			trials, delays[0].Round(100*time.Microsecond), pct(50), pct(90), pct(99), delays[len(delays)-1].Round(100*time.Microsecond))
	})

	// B loses the database: it answers from its cache for at most the TTL,
	// then refuses everything; a removal made meanwhile through A holds
	// once B is back.
	t.Run("database unreachable", func(t *testing.T) {
		keep := decode[generated](t, aliceA.ok(t, "", "ssh-key generate-api-key --vm=web --label=outage-keep --json"))
		doomed := decode[generated](t, aliceA.ok(t, "", "ssh-key generate-api-key --vm=web --label=outage-doomed --json"))
		pKeep := startProber(t, "B keep", b, keep.Token)
		pDoomed := startProber(t, "B doomed", b, doomed.Token)
		probers := []*prober{pKeep, pDoomed}
		testkit.WaitWithin(t, "both tokens accepted on B", 10*time.Second, func() bool {
			return allProbers(probers, func(as []probeAnswer) bool { return countStatus(as, 200) >= 3 })
		})
		relay.cut()
		cut := time.Now()
		aliceA.ok(t, "", "ssh-key", "remove", "outage-doomed")
		testkit.WaitWithin(t, "B asked past the staleness bound", 10*time.Second, func() bool {
			return allProbers(probers, func(as []probeAnswer) bool {
				return as[len(as)-1].start.After(cut.Add(clusterTTL + 500*time.Millisecond))
			})
		})
		for _, p := range probers {
			// Refused as invalid (401) or, once the VM's cached row is stale
			// too, as unavailable (503): never forwarded.
			m := measureSwitch(t, p.halt(), cut, []int{401, 503}, nil)
			if m.lastOK > clusterTTL {
				t.Errorf("%s, after B lost the database: %v; want nothing accepted past %v", p.name, m, clusterTTL)
			}
			t.Logf("database unreachable, %s token, after the cut: %v", p.name, m)
		}

		// Back: the removal made meanwhile holds, the kept token works again.
		relay.restore()
		restored := time.Now()
		pKeep = startProber(t, "B keep", b, keep.Token)
		pDoomed = startProber(t, "B doomed", b, doomed.Token)
		testkit.WaitWithin(t, "B accepting the kept token again", 10*time.Second, func() bool {
			return countStatus(pKeep.answers(), 200) >= 3
		})
		r := measureRecovery(t, pKeep.halt(), restored)
		doomedAs := pDoomed.halt()
		for _, a := range doomedAs {
			if a.status != 401 && a.status != 503 {
				t.Fatalf("removed key's token on B after the path came back: status %d at %+v", a.status, a.start.Sub(restored))
			}
		}
		if last := doomedAs[len(doomedAs)-1].status; last != 401 {
			t.Fatalf("removed key's token on B, once back: status %d, want 401", last)
		}
		t.Logf("database unreachable, after the path came back: B keep token %v; B doomed token refused throughout (%d requests)", r, len(doomedAs))
	})

	// B's backends are killed (pg_terminate_backend) and a key removed
	// through A meanwhile: B reconnects and refuses it.
	t.Run("backend terminated", func(t *testing.T) {
		keep := decode[generated](t, aliceA.ok(t, "", "ssh-key generate-api-key --vm=web --label=term-keep --json"))
		doomed := decode[generated](t, aliceA.ok(t, "", "ssh-key generate-api-key --vm=web --label=term-doomed --exe0 --json"))
		for _, tok := range []string{keep.Token, doomed.Token} {
			if got := vmStatus(t, b, tok); got != 200 {
				t.Fatalf("before: status %d on B", got)
			}
		}
		killed := terminateBackends(t, lockConn, clusterAppB)
		terminated := time.Now()
		pKeep := startProber(t, "B keep", b, keep.Token)
		aliceA.ok(t, "", "ssh-key", "remove", "term-doomed")
		removed := time.Now()
		pDoomed := startProber(t, "B doomed", b, doomed.Token)
		testkit.WaitWithin(t, "B refusing the removed key's token and accepting the kept one", 10*time.Second, func() bool {
			as := pDoomed.answers()
			return len(as) > 0 && as[len(as)-1].start.After(removed.Add(clusterTTL+300*time.Millisecond)) &&
				countStatus(pKeep.answers(), 200) >= 3
		})
		// A request on a connection whose backend was killed fails once
		// (503 from the VM lookup) before the pool drops it: transient.
		m := measureSwitch(t, pDoomed.halt(), removed, []int{401}, []int{503})
		if m.lastOK > clusterTTL {
			t.Errorf("removed key's token on B, after remove on A returned: %v; want nothing accepted past %v", m, clusterTTL)
		}
		r := measureRecovery(t, pKeep.halt(), terminated)
		t.Logf("backend terminated: %d of B's backends killed; B doomed token, after remove on A returned: %v; B keep token %v", len(killed), m, r)
		// B serves again on fresh backends.
		rows, _ := lockConn.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", clusterAppB)
		fresh, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil || len(fresh) == 0 {
			t.Fatalf("B's backends after recovery: %v, %v", fresh, err)
		}
		for _, pid := range fresh {
			if slices.Contains(killed, pid) {
				t.Errorf("backend %d was terminated yet is still B's", pid)
			}
		}
	})

	t.Run("browser session", func(t *testing.T) { clusterBrowser(t, aliceA, b) })

	// The same label on all three instances at once: the database lets
	// exactly one have it.
	t.Run("concurrent generate-api-key", func(t *testing.T) {
		for round := range 4 {
			label := fmt.Sprintf("race-%d", round)
			results := make([]result, 3)
			var wg sync.WaitGroup
			for i, cl := range alice {
				wg.Go(func() {
					results[i] = cl.ssh(t, "", "ssh-key", "generate-api-key", "--vm=web", "--label="+label, "--json")
				})
			}
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}
			won := 0
			for i, r := range results {
				switch line := strings.TrimSpace(r.stderr); {
				case r.code == 0 && decode[generated](t, r.stdout).Label == label:
					won++
				case r.code == 1 && r.stdout == "" && !strings.Contains(line, "\n") && strings.Contains(line, "already exists"):
				default:
					t.Errorf("round %d, instance %c: exit %d, stderr %q", round, 'A'+i, r.code, r.stderr)
				}
			}
			if won != 1 {
				t.Errorf("round %d: %d instances issued %q, want exactly 1", round, won, label)
			}
			if n := countName(listKeyNames(t, aliceB), label); n != 1 {
				t.Errorf("round %d: %d keys named %q", round, n, label)
			}
		}
	})

	// Sharing across instances: bob's token is refused everywhere until
	// alice shares web with him through A; then accepted everywhere; she
	// removes the share through C while all three are asked without pause:
	// C refuses from the moment remove returns, A and B within the TTL.
	t.Run("sharing", func(t *testing.T) {
		bobKey := testkit.SSHKeygen(t, dir, "ecdsa", 256)
		mustRun(t, c.env, "user", "add", "--email", "bob@example.com", "--key-file", bobKey+".pub")
		bobB := &sshClient{s: b, key: bobKey, knownHosts: kh}
		offline := testkit.RecipeToken(t, bobKey, "v0@web.exe.xyz", `{}`, "")
		for _, s := range srvs {
			if got := vmStatus(t, s, offline); got != 401 {
				t.Fatalf("bob's token before the share, on %s: %d", s.httpAddr, got)
			}
		}
		gain := make([]*prober, 3)
		for i, s := range srvs {
			gain[i] = startProber(t, fmt.Sprintf("%c", 'A'+i), s, offline)
		}
		aliceA.ok(t, "", "share", "add", "web", "bob@example.com")
		added := time.Now()
		testkit.WaitWithin(t, "bob's token accepted on every instance", 10*time.Second, func() bool {
			return allProbers(gain, func(as []probeAnswer) bool { return as[len(as)-1].status == 200 })
		})
		for _, p := range gain {
			// A request sent just before share add returned may be the
			// first accepted one: its time is then negative, not "never".
			first, accepted := time.Duration(0), false
			for _, a := range p.halt() {
				if a.status == 200 {
					first, accepted = a.start.Sub(added), true
					break
				}
			}
			// Gaining access is bounded by the TTL too, but only losing it
			// is promised: this is reported, not checked.
			if !accepted {
				t.Errorf("share add on A: instance %s never accepted bob's token", p.name)
			}
			t.Logf("sharing, share add on A returned: instance %s first accepted bob's token from a request sent at %+v", p.name, first.Round(time.Millisecond))
		}
		// A token bob mints on B, for the VM shared through A.
		gen := decode[generated](t, bobB.ok(t, "", "ssh-key", "generate-api-key", "--vm=web", "--label=shared", "--json"))
		for _, tok := range []string{offline, gen.Token} {
			code, body := c.curl(t, clusterVMURL(t, c), "-H", "X-Exedev-Authorization: Bearer "+tok)
			if code != "200" || decode[echoed](t, body).Headers["X-Exedev-Email"][0] != "bob@example.com" {
				t.Fatalf("bob's token on C: %s %s", code, body)
			}
		}

		for _, tok := range []string{offline, gen.Token} {
			// Every instance accepts it (after the share is added again,
			// each once its cached VM ages out), and will until the removal.
			testkit.WaitWithin(t, "bob's token accepted on every instance", 10*time.Second, func() bool {
				for _, s := range srvs {
					if vmStatus(t, s, tok) != 200 {
						return false
					}
				}
				return true
			})
			loss := make([]*prober, 3)
			for i, s := range srvs {
				loss[i] = startProber(t, fmt.Sprintf("%c", 'A'+i), s, tok)
			}
			testkit.WaitWithin(t, "bob's token accepted on every instance", 10*time.Second, func() bool {
				return allProbers(loss, func(as []probeAnswer) bool { return countStatus(as, 200) >= 3 })
			})
			aliceC.ok(t, "", "share", "remove", "web", "bob@example.com")
			removed := time.Now()
			testkit.WaitWithin(t, "every instance refusing bob's token", 10*time.Second, func() bool {
				return allProbers(loss, func(as []probeAnswer) bool {
					return as[len(as)-1].start.After(removed.Add(clusterTTL + 300*time.Millisecond))
				})
			})
			for i, p := range loss {
				m := measureSwitch(t, p.halt(), removed, []int{401}, nil)
				bound := clusterTTL
				if srvs[i] == c {
					bound = 0 // the instance the share was removed through
				}
				if m.lastOK > bound {
					t.Errorf("bob's token on %s, after share remove on C returned: %v; want nothing accepted past %v", p.name, m, bound)
				}
				t.Logf("sharing, share remove on C returned, instance %s: %v", p.name, m)
			}
			aliceA.ok(t, "", "share", "add", "web", "bob@example.com") // for the next token
		}
	})

	// exed audit --follow, run beside the cluster on the same database,
	// prints a row written through another instance within a second.
	t.Run("audit follow", func(t *testing.T) {
		af := startAudit(t, a.env)
		for i, cl := range []*sshClient{aliceB, aliceC} {
			gen := decode[generated](t, cl.ok(t, "", "ssh-key", "generate-api-key", fmt.Sprintf("--label=followed-%d", i), "--json"))
			returned := time.Now()
			took := af.waitFor(t, "token.generate", gen.Fingerprint, returned)
			if took > time.Second {
				t.Errorf("audit --follow printed the row written through %s %v after the command returned, want within 1s", cl.s.sshAddr, took)
			}
			t.Logf("audit follow: a row written through instance %c printed %v after its command returned", 'B'+i, took.Round(time.Millisecond))
		}
		af.stop(t)
	})
}

// clusterDB creates a fresh database on EXED_TEST_POSTGRES_URL's server
// (testkit.FreshPostgres) and returns its URL, with the port spelled out
// for the relays; the database is dropped when the test ends.
func clusterDB(t *testing.T) *url.URL {
	t.Helper()
	u, err := url.Parse(testkit.FreshPostgres(t))
	if err != nil {
		t.Fatal(err)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "5432")
	}
	return u
}

// dbRelay is a TCP relay between one exed instance and PostgreSQL that the
// test can cut — new connections refused, open ones closed, as when the
// network between them fails — and restore on the same address.
type dbRelay struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener // nil while cut
	conns map[net.Conn]bool
	wg    sync.WaitGroup // the accept loop and the copies
}

func newDBRelay(t *testing.T, target string) *dbRelay {
	r := &dbRelay{t: t, target: target, addr: "127.0.0.1:0", conns: make(map[net.Conn]bool)}
	r.restore()
	t.Cleanup(r.cut)
	return r
}

// restore listens on the relay's address again.
func (r *dbRelay) restore() {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatalf("relay: %v", err)
	}
	r.mu.Lock()
	r.ln, r.addr = ln, ln.Addr().String()
	r.mu.Unlock()
	r.wg.Go(func() { r.accept(ln) })
}

func (r *dbRelay) accept(ln net.Listener) {
	for {
		client, err := ln.Accept()
		if err != nil {
			return // cut
		}
		server, err := net.Dial("tcp", r.target)
		if err != nil {
			client.Close()
			continue
		}
		r.mu.Lock()
		if r.ln != ln { // cut meanwhile
			r.mu.Unlock()
			client.Close()
			server.Close()
			return
		}
		r.conns[client], r.conns[server] = true, true
		r.mu.Unlock()
		r.wg.Go(func() { r.pipe(client, server) })
		r.wg.Go(func() { r.pipe(server, client) })
	}
}

// pipe copies one direction; when it ends, the whole connection goes.
func (r *dbRelay) pipe(dst, src net.Conn) {
	io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// cut closes the listener and every relayed connection.
func (r *dbRelay) cut() {
	r.mu.Lock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		c.Close()
	}
	clear(r.conns)
	r.mu.Unlock()
	r.wg.Wait()
}

// probeAnswer is one request's outcome, with when it was sent and answered.
type probeAnswer struct {
	start, end time.Time
	status     int
}

// prober asks one instance's VM proxy with one token again and again,
// from its own goroutine, until halted. It never fails the test itself:
// an error is recorded as status 0, which measure reports.
type prober struct {
	name string
	stop context.CancelFunc
	done chan struct{}

	mu  sync.Mutex
	got []probeAnswer
}

func startProber(t *testing.T, name string, s *server, token string) *prober {
	ctx, cancel := context.WithCancel(context.Background())
	p := &prober{name: name, stop: cancel, done: make(chan struct{})}
	client, url := clientTo(s), clusterVMURL(t, s)
	go func() {
		defer close(p.done)
		defer client.CloseIdleConnections()
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		for {
			a := probeAnswer{start: time.Now()}
			a.status = probe(client, url, token)
			a.end = time.Now()
			p.mu.Lock()
			p.got = append(p.got, a)
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { p.halt() })
	return p
}

func (p *prober) answers() []probeAnswer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

// halt stops the prober and returns everything it saw.
func (p *prober) halt() []probeAnswer {
	p.stop()
	<-p.done
	return p.answers()
}

func allProbers(ps []*prober, cond func([]probeAnswer) bool) bool {
	for _, p := range ps {
		if as := p.answers(); len(as) == 0 || !cond(as) {
			return false
		}
	}
	return true
}

func countStatus(as []probeAnswer, status int) int {
	n := 0
	for _, a := range as {
		if a.status == status {
			n++
		}
	}
	return n
}

// switchover is what a prober saw around an event at t0 (a removal
// returning, or the database path cut), in times after t0. The instance
// switched from accepting to refusing between lastOK and refusedFrom; a
// refusal's answer comes back later by the request's own latency.
type switchover struct {
	lastOK      time.Duration // the last accepted request was sent then (< 0: none sent after t0)
	refusedFrom time.Duration // the first refused request was sent then (< 0: refused before t0)
	refusedBack time.Duration // and its answer came back then
	n           int           // requests sent after t0
	transient   int           // answers with a transient status
}

func (m switchover) String() string {
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	s := fmt.Sprintf("last accepted request sent at %+v, first refused one sent at %+v (answer back at %+v); %d requests after",
		ms(m.lastOK), ms(m.refusedFrom), ms(m.refusedBack), m.n)
	if m.transient > 0 {
		s += fmt.Sprintf(", %d transient failures", m.transient)
	}
	return s
}

// measureSwitch checks that the answers go from accepted to refused (one of
// refusals) once and never back, and says when. A transient status may
// come anywhere: a failed request that is neither.
func measureSwitch(t *testing.T, as []probeAnswer, t0 time.Time, refusals, transient []int) switchover {
	t.Helper()
	m := switchover{lastOK: -time.Hour}
	firstRefused := -1
	for i, a := range as {
		if a.start.After(t0) {
			m.n++
		}
		switch {
		case slices.Contains(transient, a.status):
			m.transient++
		case a.status == 200 && firstRefused >= 0:
			t.Fatalf("accepted again at %+v, having refused at %+v", a.start.Sub(t0), as[firstRefused].start.Sub(t0))
		case a.status == 200:
			m.lastOK = a.start.Sub(t0)
		case slices.Contains(refusals, a.status):
			if firstRefused < 0 {
				firstRefused = i
			}
		default:
			t.Fatalf("answer %d: status %d, want 200 or one of %v", i, a.status, append(refusals, transient...))
		}
	}
	if firstRefused < 0 {
		t.Fatalf("never refused (%d answers)", len(as))
	}
	m.refusedFrom = as[firstRefused].start.Sub(t0)
	m.refusedBack = as[firstRefused].end.Sub(t0)
	return m
}

// recovery is when a token valid all along was accepted again for good
// after an event at t0 (the database coming back), and how it was refused
// before.
type recovery struct {
	back    time.Duration // every request sent from then on was accepted
	refused map[int]int   // status → count, after t0 and before back
}

func (r recovery) String() string {
	return fmt.Sprintf("accepted for good from a request sent at %+v, refusals before %v", r.back.Round(time.Millisecond), r.refused)
}

// measureRecovery checks that a valid token's refusals after t0 were only ever
// "invalid token" or "unavailable" (never another error), that it ends
// accepted, and says from when.
func measureRecovery(t *testing.T, as []probeAnswer, t0 time.Time) recovery {
	t.Helper()
	r := recovery{refused: map[int]int{}}
	from := -1 // first answer of the final run of 200s
	for i, a := range as {
		if !a.start.After(t0) {
			continue
		}
		switch a.status {
		case 200:
			if from < 0 {
				from = i
			}
		case 401, 503:
			r.refused[a.status]++
			from = -1
		default:
			t.Fatalf("status %d at %+v", a.status, a.start.Sub(t0))
		}
	}
	if from < 0 {
		t.Fatal("not accepted again")
	}
	r.back = as[from].start.Sub(t0)
	return r
}

// clientTo is an HTTP client whose every connection goes to s's HTTP
// listener, whatever the URL's host (as curl --connect-to).
func clientTo(s *server) *http.Client {
	var d net.Dialer
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, s.httpAddr)
		}},
	}
}

// probe requests url with token and returns the status, or 0 if there was
// no HTTP answer.
func probe(c *http.Client, url, token string) int {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	req.Header.Set("X-Exedev-Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// vmStatus is one request to s's VM web with token.
func vmStatus(t *testing.T, s *server, token string) int {
	t.Helper()
	c := clientTo(s)
	defer c.CloseIdleConnections()
	got := probe(c, clusterVMURL(t, s), token)
	if got == 0 {
		t.Fatalf("no HTTP answer from %s", s.httpAddr)
	}
	return got
}

func clusterVMURL(t *testing.T, s *server) string {
	_, port := splitHostPort(t, s.httpAddr)
	return "http://web.exe.xyz:" + port + "/"
}

func clusterAPIURL(t *testing.T, s *server) string {
	_, port := splitHostPort(t, s.httpAddr)
	return "http://exe.dev:" + port + "/exec"
}

// sharedKnownHosts writes one known_hosts line naming every instance's SSH
// address with the host key `exed host-key` reads from the shared file.
func sharedKnownHosts(t *testing.T, s *server, srvs []*server) string {
	t.Helper()
	host, port := splitHostPort(t, s.sshAddr)
	line, _, _ := strings.Cut(mustRun(t, s.env, "host-key", "--host", host, "--port", port), "\n")
	_, key, ok := strings.Cut(line, " ")
	if !ok {
		t.Fatalf("host-key printed %q", line)
	}
	var addrs []string
	for _, s := range srvs {
		host, port := splitHostPort(t, s.sshAddr)
		addrs = append(addrs, "["+host+"]:"+port)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte(strings.Join(addrs, ",")+" "+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return kh
}

// listKeyNames is the names `ssh-key list --json` shows through c.
func listKeyNames(t *testing.T, c *sshClient) []string {
	t.Helper()
	list := decode[struct {
		SSHKeys []keyJSON `json:"ssh_keys"`
	}](t, c.ok(t, "", "ssh-key", "list", "--json"))
	var names []string
	for _, k := range list.SSHKeys {
		names = append(names, k.Name)
	}
	return names
}

func hasAll(have []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func countName(have []string, s string) int {
	n := 0
	for _, h := range have {
		if h == s {
			n++
		}
	}
	return n
}

// terminateBackends kills every PostgreSQL backend whose application_name
// is app, and returns their process ids.
func terminateBackends(t *testing.T, conn *pgx.Conn, app string) []int32 {
	t.Helper()
	// In the select list, not the WHERE clause: PostgreSQL may evaluate
	// WHERE conditions in any order, and this must kill only app's backends.
	type killed struct {
		Pid        int32
		Terminated bool
	}
	rows, _ := conn.Query(context.Background(),
		"SELECT pid, pg_terminate_backend(pid) AS terminated FROM pg_stat_activity WHERE application_name = $1", app)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByName[killed])
	if err != nil || len(got) == 0 {
		t.Fatalf("terminate %s's backends: %d found, %v", app, len(got), err)
	}
	var pids []int32
	for _, k := range got {
		if !k.Terminated {
			t.Fatalf("backend %d of %s not terminated", k.Pid, app)
		}
		pids = append(pids, k.Pid)
	}
	return pids
}
