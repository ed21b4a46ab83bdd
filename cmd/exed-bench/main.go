// Command exed-bench measures exed against its physical limits, side by
// side, in one run, and prints one markdown table of medians and ratios.
//
//	go run ./cmd/exed-bench            # the full run, under 6 minutes on 2 cores
//	go run ./cmd/exed-bench -smoke     # every scenario, tiny, in seconds
//	go run ./cmd/exed-bench -soak 10m  # steady load and churn; fails on growth or a wrong answer
//
// It builds exed, starts it (`exed serve` on a temp SQLite store), a trivial
// upstream, a bare httputil.ReverseProxy with exed's transport, and a bare
// gliderlabs/ssh server, each as its own process on 127.0.0.1, and then
// measures: (1) token verification against the bare signature check,
// (2) proxy throughput and latency at 1 and 32 connections, (3) issuance
// over SSH and cold logins with the stock OpenSSH client, (4) revocation
// under load, and across two instances on one PostgreSQL database (with
// EXED_TEST_POSTGRES_URL), (5) exed's memory, (6) registry lookups among a
// million keys, (7) a large download and upload, (8) WebSocket echoes.
// -soak D instead keeps exed under load and churn for D and fails if it
// answers wrongly or keeps growing.
// The load generator runs in this process and shares the cores with the
// servers. Absolute numbers drift on a shared machine; the ratios, taken
// within each round, are the results.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/proxy"
	"github.com/exed-dev/exed/tokens"
)

// options sizes a run.
type options struct {
	smoke         bool
	exedBin       string        // a prebuilt exed; "" builds this module's
	rounds        int           // rounds per measurement; medians are over them
	cell          time.Duration // one measurement of scenarios 2, 3 and 6
	verifyTime    time.Duration // one measurement of scenario 1
	pool          int           // distinct valid tokens (scenarios 2 and 5)
	junk          int           // junk tokens
	registryKeys  int           // keys in scenario 6's registry
	coldRuns      int           // cold ssh runs of each kind
	revokeTrials  int
	clusterTrials int           // scenario 4's cross-instance trials (with PostgreSQL)
	streamBytes   int64         // scenario 7's download and upload, each
	maxTime       time.Duration // the whole run stops with an error after this
	cpuProfile    string        // harness CPU profile (scenarios 1 and 6 run in it)
	only          string        // comma-separated scenario numbers; "" = all
	pgURL         string        // EXED_TEST_POSTGRES_URL
	soak          time.Duration // the soak mode's length; 0: the table instead
	soakSample    time.Duration // how often the soak mode samples exed
}

// fullOptions and smokeOptions are the two sizes; flags adjust them.
func fullOptions() options {
	return options{
		rounds: 5, cell: 1200 * time.Millisecond, verifyTime: 200 * time.Millisecond,
		pool: 100_000, junk: 900, registryKeys: 1_000_000, coldRuns: 41, revokeTrials: 4, clusterTrials: 20,
		streamBytes: 1 << 30,
		maxTime:     9 * time.Minute,
	}
}

func smokeOptions() options {
	return options{
		smoke: true, rounds: 1, cell: 150 * time.Millisecond, verifyTime: 10 * time.Millisecond,
		pool: 300, junk: 30, registryKeys: 5_000, coldRuns: 1, revokeTrials: 2, clusterTrials: 3,
		streamBytes: 4 << 20,
		maxTime:     2 * time.Minute,
	}
}

func main() {
	if runChild() {
		return
	}
	smoke := flag.Bool("smoke", false, "run every scenario tiny, in seconds (for tests)")
	exedBin := flag.String("exed", "", "use this exed binary instead of building one")
	rounds := flag.Int("rounds", 0, "rounds per measurement (default 5; 1 with -smoke)")
	only := flag.String("only", "", "run only these scenarios, e.g. 2,5 or 7,8 (scenario 5 needs 2)")
	registryKeys := flag.Int("registry-keys", 0, "keys in scenario 6's registry (default 1,000,000)")
	soak := flag.Duration("soak", 0, "instead of the table: soak exed for this long (e.g. 10m) under steady load and churn, sampling its RSS and goroutines each minute; fails on a wrong answer or steady growth")
	cpuProfile := flag.String("cpuprofile", "", "write the harness's CPU profile here (scenarios 1 and 6 run in process)")
	flag.Parse()
	o := fullOptions()
	if *smoke {
		o = smokeOptions()
	}
	o.exedBin, o.only, o.cpuProfile = *exedBin, *only, *cpuProfile
	if *rounds > 0 {
		o.rounds = *rounds
	}
	if *registryKeys > 0 {
		o.registryKeys = *registryKeys
	}
	o.pgURL = os.Getenv("EXED_TEST_POSTGRES_URL")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *soak > 0 {
		// Each minute; a short soak samples more often, to have a trend.
		o.soak, o.soakSample = *soak, min(time.Minute, max(time.Second, *soak/6))
		if err := runSoak(ctx, o, os.Stdout, os.Stderr); err != nil {
			stop()
			fmt.Fprintln(os.Stderr, "exed-bench:", err)
			os.Exit(1)
		}
		return
	}
	if _, err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "exed-bench:", err)
		os.Exit(1)
	}
}

// bench is one run's shared state.
type bench struct {
	o      options
	tmp    string
	log    io.Writer
	labels atomic.Int64 // numbers the keys the scenarios create (names are unique per user)
}

func (b *bench) nextLabel(prefix string) string { return fmt.Sprintf("%s%d", prefix, b.labels.Add(1)) }

func (b *bench) dir(name string) string {
	d := filepath.Join(b.tmp, name)
	os.MkdirAll(d, 0o700)
	return d
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.log, "exed-bench: "+format+"\n", args...)
}

func (b *bench) want(scenario string) bool {
	if b.o.only == "" {
		return true
	}
	for _, s := range strings.Split(b.o.only, ",") {
		if strings.TrimSpace(s) == scenario {
			return true
		}
	}
	return false
}

// run runs the scenarios, writes the table to out and returns its rows;
// progress goes to log.
func run(ctx context.Context, o options, out, log io.Writer) (rows []row, err error) {
	ctx, cancel := context.WithTimeout(ctx, o.maxTime)
	defer cancel()
	began := time.Now()
	tmp, err := os.MkdirTemp("", "exed-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	b := &bench{o: o, tmp: tmp, log: log}
	loadBefore := loadAvg()

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}

	add := func(name string, f func() ([]row, error)) error {
		if !b.want(name[:1]) {
			return nil
		}
		start := time.Now()
		b.progress("scenario %s…", name)
		rs, err := f()
		if err != nil {
			return fmt.Errorf("scenario %s: %w", name, err)
		}
		b.progress("scenario %s done in %v", name, time.Since(start).Round(time.Millisecond))
		rows = append(rows, rs...)
		return nil
	}

	// In process first, while no server runs.
	if err := add("1 verify", func() ([]row, error) { return scenarioVerify(ctx, b) }); err != nil {
		return nil, err
	}
	if err := add("6 registry", func() ([]row, error) { return scenarioRegistry(ctx, b) }); err != nil {
		return nil, err
	}

	var notes []string
	if b.want("2") || b.want("3") || b.want("4") || b.want("5") || b.want("7") || b.want("8") {
		n, srvRows, err := runServers(ctx, b)
		if err != nil {
			return nil, err
		}
		notes = n
		rows = append(rows, srvRows...)
	}
	slices.SortStableFunc(rows, func(a, b row) int { return strings.Compare(a.scenario[:1], b.scenario[:1]) })

	fmt.Fprintf(out, "exed-bench, %s: %s, %d cores (GOMAXPROCS %d), Linux %s, %s; load average %s before, %s after; %v total.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0),
		kernel(), runtime.Version(), loadBefore, loadAvg(), time.Since(began).Round(time.Second))
	writeTable(out, rows)
	fmt.Fprintln(out)
	notes = append(notes,
		fmt.Sprintf("Medians of %d rounds; each ratio is the median of the ratios taken within each round (the variants run interleaved, in a rotated order).", o.rounds),
		"The load generator runs in the harness process (raw HTTP/1.1 keep-alive connections, closed loop: each connection sends its next request when the last is answered) and shares the cores with exed, the upstream and the bare proxy, each in its own process.",
		"p50/p99: request latency as the load generator sees it.",
	)
	for _, n := range notes {
		fmt.Fprintln(out, "- "+n)
	}
	if o.smoke {
		fmt.Fprintln(out, "- SMOKE RUN: tiny sizes; the figures mean nothing.")
	}
	return rows, nil
}

// runServers starts exed and the baselines and runs scenarios 2 to 5.
func runServers(ctx context.Context, b *bench) (notes []string, rows []row, err error) {
	bin := b.o.exedBin
	if bin == "" {
		b.progress("building exed…")
		if bin, err = buildExed(ctx, b.dir("bin")); err != nil {
			return nil, nil, err
		}
	}
	data := b.dir("exed")

	// The user, with a key the stock ssh client can use too.
	signer, priv, err := keys.GenerateEd25519()
	if err != nil {
		return nil, nil, err
	}
	keyFile := filepath.Join(b.tmp, "id_ed25519")
	if err := writePrivateKey(keyFile, priv); err != nil {
		return nil, nil, err
	}
	if _, err := exedAdmin(ctx, bin, data, "user", "add", "--email", "bench@localhost", "--key", authorizedLine(signer)); err != nil {
		return nil, nil, err
	}

	upstream, err := startChild(ctx, "upstream")
	if err != nil {
		return nil, nil, err
	}
	defer upstream.stop()
	if _, err := exedAdmin(ctx, bin, data, "vm", "add", "--name", "web", "--owner", "bench@localhost", "--upstream", "http://"+upstream.addrs[0]); err != nil {
		return nil, nil, err
	}
	bare, err := startChild(ctx, "bare", envUpstream+"=http://"+upstream.addrs[0])
	if err != nil {
		return nil, nil, err
	}
	defer bare.stop()

	// The main exed also answers forward auth, for scenario 2's nginx rows.
	exed, err := startExed(ctx, bin, data, filepath.Join(b.tmp, "exed.log"), "--forward-auth-addr", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if serr := exed.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	b.progress("exed pid %d: ssh %s, http %s", exed.pid(), exed.sshAddr, exed.httpAddr)
	// Scenario 2's assertions pair: two more exed processes on the same
	// registry that only ever see the cached token, one with assertions
	// on, one with --assertion=false, so that nothing but the flag tells
	// them apart (the main one's caches fill with the other variants'
	// tokens, and its heap with them).
	var pair [2]*exedProc
	if b.want("2") {
		for i, extra := range [][]string{{"--assertion=true"}, {"--assertion=false"}} {
			if pair[i], err = startExed(ctx, bin, data, filepath.Join(b.tmp, fmt.Sprintf("exed-pair%d.log", i)), extra...); err != nil {
				return nil, nil, err
			}
			defer func() {
				if serr := pair[i].stop(); serr != nil && err == nil {
					err = serr
				}
			}()
		}
	}

	// exed's host key, for both clients; the bare SSH server gets a key of
	// the same type.
	port := exed.sshAddr[strings.LastIndex(exed.sshAddr, ":")+1:]
	hostOut, err := exedAdmin(ctx, bin, data, "host-key", "--host", "127.0.0.1", "--port", port)
	if err != nil {
		return nil, nil, err
	}
	_, _, exedHostKey, _, _, err := gossh.ParseKnownHosts([]byte(hostOut))
	if err != nil {
		return nil, nil, fmt.Errorf("exed host-key: %w", err)
	}
	target := sshTarget{addr: exed.sshAddr, signer: signer, hostKey: exedHostKey}
	client, err := sshClient(target.addr, signer, exedHostKey)
	if err != nil {
		return nil, nil, fmt.Errorf("ssh to exed: %w", err)
	}
	whoami, err := sshRun(client, "whoami")
	client.Close()
	if err != nil {
		return nil, nil, err
	}
	bareHost, bareHostPriv, err := keys.GenerateEd25519()
	if err != nil {
		return nil, nil, err
	}
	bareHostFile := filepath.Join(b.tmp, "bare_host_key")
	if err := writePrivateKey(bareHostFile, bareHostPriv); err != nil {
		return nil, nil, err
	}
	bareSSH, err := startChild(ctx, "sshd", envHostKey+"="+bareHostFile, envUserKey+"="+authorizedLine(signer), envWhoami+"="+string(whoami))
	if err != nil {
		return nil, nil, err
	}
	defer bareSSH.stop()
	var stock stockSSH
	if _, err := exec.LookPath("ssh"); err == nil {
		stock = stockSSH{keyFile: keyFile, knownHosts: filepath.Join(b.tmp, "known_hosts")}
		lines := readFirstLine(hostOut) + "\n" +
			knownhosts.Line([]string{knownhosts.Normalize(bareSSH.addrs[0])}, bareHost.PublicKey()) + "\n"
		if err := os.WriteFile(stock.knownHosts, []byte(lines), 0o600); err != nil {
			return nil, nil, err
		}
	}

	t := proxy.NewTransport()
	notes = append(notes, fmt.Sprintf("Transport: exed and the bare proxy both use proxy.NewTransport(): MaxIdleConnsPerHost %d (Go's default keeps 2, so at 32 connections most requests would open a new upstream connection), MaxIdleConns %d, IdleConnTimeout %v, no proxy from the environment, compression left to client and VM; the bare proxy with Go's default transport is measured beside it.",
		t.MaxIdleConnsPerHost, t.MaxIdleConns, t.IdleConnTimeout))

	issued, extraKeys := 0, 0 // tokens issued over SSH; keys added besides
	if b.want("2") || b.want("5") {
		start := time.Now()
		// Forged tokens are signed with a second key of the user's, so
		// that the failure budget they spend (tokens throttles a key whose
		// signatures keep failing) is not the valid tokens' key's.
		forger, _, err := keys.GenerateEd25519()
		if err != nil {
			return nil, nil, err
		}
		client, err := sshClient(target.addr, signer, exedHostKey)
		if err != nil {
			return nil, nil, fmt.Errorf("ssh to exed: %w", err)
		}
		_, err = sshRun(client, "ssh-key add --name bench-forger "+authorizedLine(forger))
		client.Close()
		if err != nil {
			return nil, nil, err
		}
		extraKeys++
		ts, err := mintTokens(signer, forger, b.o.pool, b.o.junk)
		if err != nil {
			return nil, nil, err
		}
		b.progress("minted %s tokens in %v", group(int64(len(ts.pool))), time.Since(start).Round(time.Millisecond))
		if ts.cookie, err = benchSession(ctx, target, exed.httpAddr); err != nil {
			return nil, nil, fmt.Errorf("browser session: %w", err)
		}
		ts.cookie = cookieCred + ts.cookie
		ts.junkCookie = junkCookies(max(b.o.junk/3, 1))
		addrs := proxyAddrs{upstream: upstream.addrs[0], exed: exed.httpAddr,
			bare: bare.addrs[0], bareDefault: bare.addrs[1], bareFlush: bare.addrs[2]}
		if bin := findNginx(); bin != "" && b.want("2") {
			ng, err := startNginx(ctx, bin, b.dir("nginx"), upstream.addrs[0], exed.faAddr)
			if err != nil {
				return nil, nil, fmt.Errorf("nginx: %w", err)
			}
			defer ng.stop()
			addrs.nginxPlain, addrs.nginxAuth, addrs.nginxCached = ng.plain, ng.auth, ng.cached
			v, _ := exec.Command(bin, "-v").CombinedOutput()
			notes = append(notes, fmt.Sprintf("nginx rows: %s, worker_processes auto, keep-alive connections to the upstream and to exed's forward-auth listener (upstream keepalive 64), access log buffered (64 KiB, flushed every second) as exed's is; \"auth_request\" asks exed's GET /auth about every request with the docs' config (docs/forward-auth.md), with the cached token or a new valid token every request (as the exed row of that name), \"auth cache\" adds its proxy_cache lines (answers kept 5 s) and carries the cached token; the exed answering them is the main one.", strings.TrimSpace(strings.TrimPrefix(string(v), "nginx version: "))))
		} else if b.want("2") {
			notes = append(notes, "nginx rows: not measured (nginx is not installed).")
		}
		if pair[0] != nil {
			addrs.exedOn, addrs.exedOff = pair[0].httpAddr, pair[1].httpAddr
			addrs.exedOnPID, addrs.exedOffPID, addrs.upstreamPID = pair[0].pid(), pair[1].pid(), upstream.cmd.Process.Pid
		}
		start = time.Now()
		b.progress("scenario 2 proxy and 5 memory…")
		rs, err := scenarioProxy(ctx, b, addrs, ts, exed.pid())
		if err != nil {
			return nil, nil, fmt.Errorf("scenario 2: %w", err)
		}
		b.progress("scenarios 2 and 5 done in %v", time.Since(start).Round(time.Millisecond))
		rows = append(rows, rs...)
		notes = append(notes, fmt.Sprintf("Scenario 2 tokens are exe0, signed offline with the user's registered ed25519 key; the uncached variant cycles through %s distinct ones (each is a cache miss: a cycle takes longer than the 1 s cache TTL). Junk (every junk request must be answered 401, or 429 with Retry-After once the failure budget throttles it, and is; the rows count each): malformed, signed by an unregistered key, and forged (signed by a second registered key of the user's, one signature byte changed: the failure budget it spends is not the valid tokens' key's), in turn in the mixed row, and one kind each in the three rows after it; each connection alternates a valid request (the cached token) with a junk one, and the ratio compares its valid requests/s with the cached-token row's. Every exed row runs with signed identity assertions on (the default: each forwarded request carries X-ExeDev-Jwt-Assertion, reused while young) but \"assertions off\": that row and the \"assertions on\" one beside it are two more exed processes on the same registry that only ever serve the cached token, one with --assertion=false, so that the flag is all that differs; the ratio is on over off, within each round. Bare ReverseProxy: Rewrite = SetURL + SetXForwarded, exed's transport, a pooled 32 KiB copy buffer, Go's defaults otherwise (FlushInterval 0 flushes streams by itself: unknown-length responses and server-sent events).",
			group(int64(len(ts.pool)))))
	}
	if b.want("7") || b.want("8") {
		// One valid token, cached after its first use, as scenario 2's.
		token, err := tokens.MintExe0(signer, vmNamespace, []byte(`{"ctx":{"bench":"stream"}}`))
		if err != nil {
			return nil, nil, err
		}
		if b.want("7") {
			start := time.Now()
			b.progress("scenario 7 streaming…")
			rs, err := scenarioStream(ctx, b, []*streamVariant{
				{name: "direct to the upstream", addr: upstream.addrs[0], host: "upstream"},
				{name: "bare ReverseProxy (exed's transport)", addr: bare.addrs[0], host: vmHost, pid: bare.cmd.Process.Pid, bare: true},
				{name: "exed, cached token", addr: exed.httpAddr, host: vmHost, token: token, pid: exed.pid()},
			}, upstream.cmd.Process.Pid)
			if err != nil {
				return nil, nil, fmt.Errorf("scenario 7: %w", err)
			}
			b.progress("scenario 7 done in %v", time.Since(start).Round(time.Millisecond))
			rows = append(rows, rs...)
			notes = append(notes, fmt.Sprintf("Streaming: one %s download (GET, Content-Length, generated by the upstream as it goes) and one %s upload (POST, the upstream counts the bytes and answers the count) per variant and round, at most 3 rounds; a short or truncated stream fails the run. MB/s are 10^6 bytes per second of wall time; CPU is the proxy process's (exed's or the bare proxy's) and the upstream's, from /proc/PID/task/*/schedstat before and after, per GiB moved. The issue gives no target: \"≥ 0.9× bare\" is ours.", sizeName(b.o.streamBytes), sizeName(b.o.streamBytes)))
		}
		if b.want("8") {
			start := time.Now()
			b.progress("scenario 8 websocket…")
			rs, err := scenarioWebSocket(ctx, b, []wsVariant{
				{name: "direct to the upstream", addr: upstream.addrs[0], host: "upstream"},
				{name: "bare ReverseProxy (exed's transport)", addr: bare.addrs[0], host: vmHost},
				{name: "exed, cached token", addr: exed.httpAddr, host: vmHost, token: token},
			})
			if err != nil {
				return nil, nil, fmt.Errorf("scenario 8: %w", err)
			}
			b.progress("scenario 8 done in %v", time.Since(start).Round(time.Millisecond))
			rows = append(rows, rs...)
			notes = append(notes, fmt.Sprintf("WebSocket: each connection upgrades once (the handshake is not timed; through exed it carries the cached token), then echoes a %d-byte text message, closed loop: the next is sent when the last came back, unchanged (anything else fails the run). Both ends frame RFC 6455 themselves. The issue gives no target: \"≥ 0.9× bare\" is ours.", len(wsMessage)))
		}
	}
	if b.want("3") {
		start := time.Now()
		b.progress("scenario 3 issuance…")
		rs, n, err := scenarioIssue(ctx, b, target, stock, bareSSH.addrs[0])
		if err != nil {
			return nil, nil, fmt.Errorf("scenario 3: %w", err)
		}
		issued = n
		b.progress("scenario 3 done in %v", time.Since(start).Round(time.Millisecond))
		rows = append(rows, rs...)
	}
	if b.want("4") {
		start := time.Now()
		b.progress("scenario 4 revocation…")
		rs, err := scenarioRevoke(ctx, b, target, exed.httpAddr)
		if err != nil {
			return nil, nil, fmt.Errorf("scenario 4: %w", err)
		}
		rows = append(rows, rs...)
		if rs, err = scenarioCluster(ctx, b, bin, upstream.addrs[0]); err != nil {
			return nil, nil, fmt.Errorf("scenario 4, cross-instance: %w", err)
		}
		b.progress("scenario 4 done in %v", time.Since(start).Round(time.Millisecond))
		rows = append(rows, rs...)
	}
	if issued > 0 {
		// Durable means stored: every token issued has its key in the
		// registry (the revocation scenario's keys are gone again).
		list, err := exedAdmin(ctx, bin, data, "user", "list", "--json")
		if err != nil {
			return nil, nil, err
		}
		var users struct {
			Users []struct {
				Email   string `json:"email"`
				SSHKeys int    `json:"ssh_keys"`
			} `json:"users"`
		}
		if err := json.Unmarshal([]byte(list), &users); err != nil || len(users.Users) != 1 {
			return nil, nil, fmt.Errorf("exed user list --json: %v: %.200q", err, list)
		}
		if got, want := users.Users[0].SSHKeys, 1+extraKeys+issued; got != want {
			return nil, nil, fmt.Errorf("registry holds %d keys for the user, want %d (1 login key + %d more + %d issued)", got, want, extraKeys, issued)
		}
		notes = append(notes, fmt.Sprintf("Issuance: all %s tokens issued in scenario 3 have their key in the registry afterwards (exed user list agrees); exed's SQLite runs in WAL mode with synchronous=FULL, so each generate-api-key's commit is fsynced before it answers.", group(int64(issued))))
	}
	return notes, rows, nil
}
