package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/keys"
)

// The soak mode (-soak D): steady load on one exed for D while tokens
// churn (new ones issued over SSH, the oldest keys removed), browser
// sessions come and go and revoked tokens keep being tried; exed's RSS and
// goroutine count are sampled every minute. It fails on any wrong answer
// and on either figure growing steadily (errGrowth).

// errGrowth says a soak run saw exed's RSS or goroutines keep growing.
var errGrowth = errors.New("soak: exed keeps growing")

const (
	soakConns     = 4                      // load connections, closed loop
	soakLive      = 8                      // valid tokens in use at a time
	soakChurn     = 100 * time.Millisecond // one token issued and one key removed per tick
	soakSessionEv = 20                     // ticks per new browser session
	soakRevokedEv = 25                     // a revoked token once per this many requests
)

// soakToken is one issued token and its key's removal, when it happened.
type soakToken struct {
	token                   string
	label                   string
	removeBegin, removeDone time.Time // zero until then; under soakPool.mu
}

// soakPool is what the load picks from.
type soakPool struct {
	mu       sync.Mutex
	live     []*soakToken // valid: their keys are registered
	revoked  []*soakToken // the last few removed
	sessions []string     // valid browser session cookies (cookieCred + name=value)
}

func (p *soakPool) pick(rng *rand.Rand, i int) (t *soakToken, cookie string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case i%soakRevokedEv == soakRevokedEv-1 && len(p.revoked) > 0:
		return p.revoked[rng.IntN(len(p.revoked))], ""
	case i%7 == 3 && len(p.sessions) > 0:
		return nil, p.sessions[rng.IntN(len(p.sessions))]
	}
	return p.live[rng.IntN(len(p.live))], ""
}

// judgeAnswer says whether status is right for t's token, sent at sent
// and answered at done. An answer in flight across the removal may be
// either.
func (p *soakPool) judgeAnswer(t *soakToken, status int, sent, done time.Time) error {
	p.mu.Lock()
	begin, end := t.removeBegin, t.removeDone
	p.mu.Unlock()
	switch status {
	case 200:
		if !end.IsZero() && end.Before(sent) {
			return fmt.Errorf("token of removed key %s accepted, sent %v after the removal returned", t.label, sent.Sub(end))
		}
	case 401, 429: // 429: the failure budget, for a refused token
		if begin.IsZero() || begin.After(done) {
			return fmt.Errorf("valid token of key %s refused with %d", t.label, status)
		}
	default:
		return fmt.Errorf("token of key %s: status %d", t.label, status)
	}
	return nil
}

// soakSample is one sample of exed.
type soakSample struct {
	at         time.Duration
	rss        int64
	goroutines int
	requests   int64
}

func runSoak(ctx context.Context, o options, out, log io.Writer) error {
	tmp, err := os.MkdirTemp("", "exed-bench-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	b := &bench{o: o, tmp: tmp, log: log}
	bin := o.exedBin
	if bin == "" {
		b.progress("building exed…")
		if bin, err = buildExed(ctx, b.dir("bin")); err != nil {
			return err
		}
	}
	data := b.dir("exed")
	signer, _, err := keys.GenerateEd25519()
	if err != nil {
		return err
	}
	if _, err := exedAdmin(ctx, bin, data, "user", "add", "--email", "bench@localhost", "--key", authorizedLine(signer)); err != nil {
		return err
	}
	upstream, err := startChild(ctx, "upstream")
	if err != nil {
		return err
	}
	defer upstream.stop()
	if _, err := exedAdmin(ctx, bin, data, "vm", "add", "--name", "web", "--owner", "bench@localhost", "--upstream", "http://"+upstream.addrs[0]); err != nil {
		return err
	}
	exed, err := startExed(ctx, bin, data, filepath.Join(tmp, "exed.log"), "--admin-addr", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer exed.stop()
	if exed.adminAddr == "" {
		return errors.New("exed serve logged no admin address")
	}
	port := exed.sshAddr[strings.LastIndex(exed.sshAddr, ":")+1:]
	hostOut, err := exedAdmin(ctx, bin, data, "host-key", "--host", "127.0.0.1", "--port", port)
	if err != nil {
		return err
	}
	_, _, hostKey, _, _, err := gossh.ParseKnownHosts([]byte(hostOut))
	if err != nil {
		return fmt.Errorf("exed host-key: %w", err)
	}
	target := sshTarget{addr: exed.sshAddr, signer: signer, hostKey: hostKey}
	client, err := sshClient(target.addr, signer, hostKey)
	if err != nil {
		return fmt.Errorf("ssh to exed: %w", err)
	}
	defer client.Close()

	pool := &soakPool{}
	var issued, removed, sessions atomic.Int64
	issue := func() error {
		label := b.nextLabel("soak")
		token, err := generateToken(client, label, issued.Load()%2 == 1)
		if err != nil {
			return err
		}
		pool.mu.Lock()
		pool.live = append(pool.live, &soakToken{token: token, label: label})
		pool.mu.Unlock()
		issued.Add(1)
		return nil
	}
	revokeOldest := func() error {
		pool.mu.Lock()
		t := pool.live[0]
		pool.live = pool.live[1:]
		pool.revoked = append(pool.revoked, t)
		if len(pool.revoked) > soakLive {
			pool.revoked = pool.revoked[1:]
		}
		t.removeBegin = time.Now()
		pool.mu.Unlock()
		if _, err := sshRun(client, "ssh-key remove "+t.label); err != nil {
			return err
		}
		pool.mu.Lock()
		t.removeDone = time.Now()
		pool.mu.Unlock()
		removed.Add(1)
		return nil
	}
	newSession := func() error {
		c, err := benchSession(ctx, target, exed.httpAddr)
		if err != nil {
			return fmt.Errorf("browser session: %w", err)
		}
		pool.mu.Lock()
		pool.sessions = append(pool.sessions, cookieCred+c)
		if len(pool.sessions) > 3 {
			pool.sessions = pool.sessions[1:]
		}
		pool.mu.Unlock()
		sessions.Add(1)
		return nil
	}
	for range soakLive {
		if err := issue(); err != nil {
			return err
		}
	}
	if err := newSession(); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		wrong    []string
		wrongN   int
		failed   error
		requests atomic.Int64
	)
	fail := func(err error) {
		errMu.Lock()
		if failed == nil {
			failed = err
		}
		errMu.Unlock()
		cancel()
	}
	for n := range soakConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newConn(exed.httpAddr)
			defer c.close()
			rng := rand.New(rand.NewPCG(uint64(n), 7))
			for i := 0; ctx.Err() == nil; i++ {
				t, cookie := pool.pick(rng, i)
				cred := cookie
				if t != nil {
					cred = t.token
				}
				sent := time.Now()
				status, err := c.get(vmHost, cred)
				done := time.Now()
				if err != nil {
					if ctx.Err() == nil {
						fail(fmt.Errorf("load: %w", err))
					}
					return
				}
				requests.Add(1)
				var bad error
				if t != nil {
					bad = pool.judgeAnswer(t, status, sent, done)
				} else if status != 200 {
					bad = fmt.Errorf("valid session cookie refused with %d", status)
				}
				if bad != nil {
					errMu.Lock()
					if wrongN++; len(wrong) < 5 {
						wrong = append(wrong, bad.Error())
					}
					errMu.Unlock()
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // the churn
		defer wg.Done()
		tick := time.NewTicker(soakChurn)
		defer tick.Stop()
		for i := 1; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			err := issue()
			if err == nil {
				err = revokeOldest()
			}
			if err == nil && i%soakSessionEv == 0 {
				err = newSession()
			}
			if err != nil {
				if ctx.Err() == nil {
					fail(fmt.Errorf("churn: %w", err))
				}
				return
			}
		}
	}()

	began := time.Now()
	var samples []soakSample
	sample := func() error {
		rss, _, err := memory(exed.pid())
		if err != nil {
			return fmt.Errorf("exed's RSS: %w", err)
		}
		g, err := goroutines(ctx, exed.adminAddr)
		if err != nil {
			return fmt.Errorf("exed's goroutines: %w", err)
		}
		s := soakSample{at: time.Since(began), rss: rss, goroutines: g, requests: requests.Load()}
		samples = append(samples, s)
		fmt.Fprintf(out, "soak %v: exed RSS %s, goroutines %d; %s requests, %s tokens issued, %s keys removed, %s browser sessions\n",
			s.at.Round(time.Second), mib(s.rss), s.goroutines, group(s.requests), group(issued.Load()), group(removed.Load()), group(sessions.Load()))
		return nil
	}
	tick := time.NewTicker(o.soakSample)
	end := time.After(o.soak)
	if err := sample(); err != nil {
		fail(err)
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			if len(samples) == 0 || time.Since(began)-samples[len(samples)-1].at > o.soakSample/2 { // not just taken
				if err := sample(); err != nil {
					fail(err)
				}
			}
			break loop
		case <-tick.C:
			if err := sample(); err != nil {
				fail(err)
			}
		}
	}
	tick.Stop()
	cancel()
	wg.Wait()
	if failed != nil && !errors.Is(failed, context.Canceled) {
		return failed
	}
	if wrongN > 0 {
		return fmt.Errorf("soak: %d wrong answers, first: %s", wrongN, strings.Join(wrong, "; "))
	}
	fmt.Fprintf(out, "soak: %v, %s requests, every answer right (%s tokens issued, %s keys removed, their tokens tried after; %s browser sessions)\n",
		time.Since(began).Round(time.Second), group(requests.Load()), group(issued.Load()), group(removed.Load()), group(sessions.Load()))
	var rss, gs []float64
	for _, s := range samples {
		rss, gs = append(rss, float64(s.rss)), append(gs, float64(s.goroutines))
	}
	var grew []string
	if growing(rss) {
		grew = append(grew, fmt.Sprintf("RSS %s → %s", mib(samples[0].rss), mib(samples[len(samples)-1].rss)))
	}
	if growing(gs) {
		grew = append(grew, fmt.Sprintf("goroutines %d → %d", samples[0].goroutines, samples[len(samples)-1].goroutines))
	}
	if len(grew) > 0 {
		return fmt.Errorf("%w: %s (the last third's minimum is more than 20%% above the first third's maximum, and each third's median above the one before)", errGrowth, strings.Join(grew, ", "))
	}
	fmt.Fprintln(out, "soak: no steady growth in exed's RSS or goroutines")
	return nil
}

// growing says whether xs keep growing: the last third's minimum more
// than 20% above the first third's maximum, and the thirds' medians
// rising. Fewer than 3 samples never are.
func growing(xs []float64) bool {
	n := len(xs)
	if n < 3 {
		return false
	}
	a, c := xs[:n/3], xs[n-n/3:]
	mid := xs[n/3 : n-n/3]
	maxA, minC := a[0], c[0]
	for _, x := range a {
		maxA = max(maxA, x)
	}
	for _, x := range c {
		minC = min(minC, x)
	}
	return minC > 1.2*maxA && median(a) < median(mid) && median(mid) < median(c)
}

// goroutines reads go_goroutines from exed's admin /metrics.
func goroutines(ctx context.Context, adminAddr string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+adminAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("GET /metrics: %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no go_goroutines in /metrics")
}
