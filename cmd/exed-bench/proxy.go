package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/tokens"
)

// Scenarios 2 and 5: proxy throughput and latency, and exed's memory while
// distinct tokens stream through its cache.

// benchNames are the names the harness runs exed serve under (startExed),
// and signs its tokens for.
var benchNames = tokens.Namespaces{Domain: "exe.dev", VMDomain: "exe.xyz"}

// vmHost is the bench VM's host name; its namespace is vmNamespace.
var (
	vmHost      = benchNames.VMHost("web")
	vmNamespace = benchNames.VM("web")
)

// proxyVariant is one way of serving the same request.
type proxyVariant struct {
	name   string
	addr   string
	host   string
	src    func(conn int) source
	only32 bool // run at 32 connections only
	pid    int  // the exed process serving it alone, whose CPU time is counted; 0 for none
}

// cell is one variant at one concurrency.
type cell struct {
	v     *proxyVariant
	conns int
}

// tokenSet holds the tokens scenario 2 sends.
type tokenSet struct {
	cached     string   // one valid token, sent again and again
	pool       []string // distinct valid tokens, each sent once per cycle
	next       atomic.Int64
	junk       []string // malformed, unknown-key and forged tokens, in turn
	malformed  []string // the right shape, random bytes
	unknown    []string // well-formed, signed by a key nobody registered
	forged     []string // valid tokens with one signature byte changed
	cookie     string   // a valid VM session cookie (cookieCred + name=value)
	junkCookie []string // session cookies nobody minted
}

// mintTokens signs the tokens offline with the user's registered key
// (forged ones with forger, another of the user's keys), as
// `ssh-keygen -Y sign` would: n distinct valid ones (they differ in ctx),
// and junk of three kinds.
func mintTokens(signer, forger gossh.Signer, n, junk int) (*tokenSet, error) {
	ts := &tokenSet{}
	mint := func(s gossh.Signer, i int) (string, error) {
		return tokens.MintExe0(s, vmNamespace, fmt.Appendf(nil, `{"ctx":{"bench":%d}}`, i))
	}
	var err error
	if ts.cached, err = mint(signer, -1); err != nil {
		return nil, err
	}
	ts.pool = make([]string, n)
	for i := range ts.pool {
		if ts.pool[i], err = mint(signer, i); err != nil {
			return nil, err
		}
	}
	stranger, _, err := keys.GenerateEd25519()
	if err != nil {
		return nil, err
	}
	for i := range junk {
		var t string
		switch i % 3 {
		case 0: // malformed: the right shape, random bytes
			raw := make([]byte, 300)
			rand.Read(raw)
			t = "exe0." + base64.RawURLEncoding.EncodeToString(raw[:60]) + "." + base64.RawURLEncoding.EncodeToString(raw[60:])
			ts.malformed = append(ts.malformed, t)
		case 1: // well-formed, signed by a key nobody registered
			if t, err = mint(stranger, i); err != nil {
				return nil, err
			}
			ts.unknown = append(ts.unknown, t)
		case 2: // a registered key, a signature that does not verify
			if t, err = mint(forger, n+i); err != nil {
				return nil, err
			}
			t = forge(t)
			ts.forged = append(ts.forged, t)
		}
		ts.junk = append(ts.junk, t)
	}
	return ts, nil
}

// forge changes one character of the token's signature (inside the raw
// ed25519 signature at the end of the blob), keeping the base64 canonical.
func forge(token string) string {
	b := []byte(token)
	i := len(b) - 20
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func noToken(int) source { return func(int) (string, bool) { return "", true } }

func (ts *tokenSet) cachedSrc(int) source {
	return func(int) (string, bool) { return ts.cached, true }
}

func (ts *tokenSet) poolSrc(int) source {
	return func(int) (string, bool) {
		return ts.pool[int(ts.next.Add(1)-1)%len(ts.pool)], true
	}
}

// mixSrc alternates the cached valid token with junk from list.
func (ts *tokenSet) mixSrc(list []string) func(int) source {
	return func(conn int) source {
		return func(i int) (string, bool) {
			if i%2 == 0 {
				return ts.cached, true
			}
			return list[(conn*131+i/2)%len(list)], false
		}
	}
}

type proxyAddrs struct {
	upstream, exed string
	exedOn         string // the assertions pair: exed with assertions on,
	exedOff        string // … and with --assertion=false; "" when not started
	// The pair's processes and the upstream's, whose CPU time per request
	// is measured while the pair is.
	exedOnPID, exedOffPID, upstreamPID int
	bare                               string // the baseline
	bareDefault                        string // … with Go's default transport
	bareFlush                          string // … with FlushInterval -1, as exed has it
	// nginx as a plain proxy, and asking exed's forward auth first,
	// without and with its auth cache; "" when nginx is not installed.
	nginxPlain, nginxAuth, nginxCached string
}

func scenarioProxy(ctx context.Context, b *bench, a proxyAddrs, ts *tokenSet, exedPID int) ([]row, error) {
	direct := &proxyVariant{name: "direct to the upstream", addr: a.upstream, host: "upstream", src: noToken}
	bare := &proxyVariant{name: "bare ReverseProxy (exed's transport)", addr: a.bare, host: vmHost, src: noToken}
	bareDef := &proxyVariant{name: "bare ReverseProxy, Go's default transport instead", addr: a.bareDefault, host: vmHost, src: noToken, only32: true}
	bareFlush := &proxyVariant{name: "bare ReverseProxy, FlushInterval -1 (flush after every write)", addr: a.bareFlush, host: vmHost, src: noToken, only32: true}
	cached := &proxyVariant{name: "exed, cached token", addr: a.exed, host: vmHost, src: ts.cachedSrc}
	cachedOn := &proxyVariant{name: "exed, cached token, assertions on (a process of its own)", addr: a.exedOn, host: vmHost, src: ts.cachedSrc, pid: a.exedOnPID}
	cachedOff := &proxyVariant{name: "exed, cached token, assertions off (a process of its own)", addr: a.exedOff, host: vmHost, src: ts.cachedSrc, pid: a.exedOffPID}
	fresh := &proxyVariant{name: "exed, a new valid token every request", addr: a.exed, host: vmHost, src: ts.poolSrc}
	junk := &proxyVariant{name: "exed, 50% junk: its valid requests", addr: a.exed, host: vmHost, src: ts.mixSrc(ts.junk)}
	malformed := &proxyVariant{name: "exed, 50% malformed tokens (cheapest junk): its valid requests", addr: a.exed, host: vmHost, src: ts.mixSrc(ts.malformed), only32: true}
	unknown := &proxyVariant{name: "exed, 50% tokens of an unregistered key: its valid requests", addr: a.exed, host: vmHost, src: ts.mixSrc(ts.unknown), only32: true}
	forged := &proxyVariant{name: "exed, 50% forged signatures (dearest junk): its valid requests", addr: a.exed, host: vmHost, src: ts.mixSrc(ts.forged), only32: true}
	cookie := &proxyVariant{name: "exed, valid browser session cookie", addr: a.exed, host: vmHost, src: ts.cookieSrc}
	junkCookie := &proxyVariant{name: "exed, 50% junk session cookies: its valid requests", addr: a.exed, host: vmHost, src: ts.mixSrc(ts.junkCookie), only32: true}
	ngPlain := &proxyVariant{name: "nginx, plain proxy_pass", addr: a.nginxPlain, host: vmHost, src: noToken}
	ngAuth := &proxyVariant{name: "nginx + auth_request → exed forward auth, cached token", addr: a.nginxAuth, host: vmHost, src: ts.cachedSrc}
	ngFresh := &proxyVariant{name: "nginx + auth_request → exed forward auth, a new valid token every request", addr: a.nginxAuth, host: vmHost, src: ts.poolSrc}
	ngCached := &proxyVariant{name: "nginx + auth_request → exed forward auth, auth cache 5 s", addr: a.nginxCached, host: vmHost, src: ts.cachedSrc}
	variants := []*proxyVariant{direct, bare, bareDef, bareFlush, cached, cachedOn, cachedOff, fresh, junk, malformed, unknown, forged, cookie, junkCookie, ngPlain, ngAuth, ngFresh, ngCached}
	variants = slices.DeleteFunc(variants, func(v *proxyVariant) bool { return v.addr == "" })

	var cells []cell
	for _, conns := range []int{1, 32} {
		for _, v := range variants {
			if !v.only32 || conns == 32 {
				cells = append(cells, cell{v, conns})
			}
		}
	}
	rssBefore, _, memErr := memory(exedPID)

	// Warm every path up (connections, caches, the Go runtimes), then
	// rounds; each round runs the cells in a rotated order so slow drift
	// in the machine's load falls on all of them alike.
	for _, c := range cells {
		if r := runLoad(ctx, c.v.addr, c.v.host, c.conns, b.o.cell/5, c.v.src); r.bad > 0 {
			return nil, fmt.Errorf("%s, %d conns: %d wrong answers, first: %s", c.v.name, c.conns, r.bad, r.firstBad)
		}
	}
	res := make(map[cell][]*loadResult)
	cpu := make(map[cell][]cpuPerRequest) // the cells with a pid, when /proc tells
	for round := range b.o.rounds {
		b.progress("scenario 2: round %d/%d", round+1, b.o.rounds)
		for j := range cells {
			c := cells[(j+round)%len(cells)]
			var before [2]time.Duration
			var cpuErr error
			if c.v.pid != 0 {
				before, cpuErr = cpuTimes(c.v.pid, a.upstreamPID)
			}
			r := runLoad(ctx, c.v.addr, c.v.host, c.conns, b.o.cell, c.v.src)
			if c.v.pid != 0 && cpuErr == nil && r.ok > 0 {
				if after, err := cpuTimes(c.v.pid, a.upstreamPID); err == nil {
					cpu[c] = append(cpu[c], cpuPerRequest{
						exed:     (after[0] - before[0]) / time.Duration(r.ok),
						upstream: (after[1] - before[1]) / time.Duration(r.ok),
					})
				}
			}
			if r.bad > 0 {
				return nil, fmt.Errorf("%s, %d conns: %d wrong answers, first: %s", c.v.name, c.conns, r.bad, r.firstBad)
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			res[c] = append(res[c], r)
		}
	}

	var rows []row
	for _, conns := range []int{1, 32} {
		scen := fmt.Sprintf("2 proxy, %d conn", conns)
		if conns > 1 {
			scen += "s"
		}
		// ratios are a/b's rates in the same round, one per round.
		ratios := func(a, b *proxyVariant) []float64 {
			var xs []float64
			ra, rb := res[cell{a, conns}], res[cell{b, conns}]
			for i := range ra {
				xs = append(xs, ra[i].rate()/rb[i].rate())
			}
			return xs
		}
		for _, v := range variants {
			rs := res[cell{v, conns}]
			if rs == nil {
				continue
			}
			var rates, p50s, p99s []float64
			var junkRates []float64
			var refused, throttled int
			for _, r := range rs {
				refused += r.other - r.throttled
				throttled += r.throttled
				rates = append(rates, r.rate())
				p50s = append(p50s, float64(r.p50()))
				p99s = append(p99s, float64(r.p99()))
				junkRates = append(junkRates, float64(r.other)/r.elapsed.Seconds())
			}
			rw := row{
				scenario: scen, what: v.name,
				result: sig3(median(rates)) + " req/s",
				p50:    fmtDur(time.Duration(median(p50s))),
				p99:    fmtDur(time.Duration(median(p99s))),
			}
			switch v {
			case bare:
				rw.ratio = fmtRatios(ratios(bare, direct), "direct")
			case bareDef, bareFlush:
				rw.ratio = fmtRatios(ratios(v, bare), "bare")
			case cached:
				xs := ratios(cached, bare)
				rw.ratio, rw.target, rw.met = fmtRatios(xs, "bare"), "≥ 0.95× bare", judge(median(xs), 0.95, false)
			case cachedOn:
				xs := ratios(cachedOn, cachedOff)
				rw.ratio, rw.target, rw.met = fmtRatios(xs, "off"), "≥ 0.97× off", judge(median(xs), 0.97, false)
			case cachedOff:
				rw.ratio = fmtRatios(ratios(cachedOff, bare), "bare")
				rows = append(rows, rw)
				rows = append(rows, cpuRows(scen, cpu[cell{cachedOn, conns}], cpu[cell{cachedOff, conns}])...)
				continue
			case ngPlain:
				rw.ratio = fmtRatios(ratios(v, bare), "bare")
			case ngAuth, ngFresh, ngCached:
				rw.ratio = fmtRatios(ratios(v, bare), "bare") + "; " + fmtRatios(ratios(v, ngPlain), "nginx plain")
			case fresh:
				xs := ratios(fresh, bare)
				rw.ratio, rw.target, rw.met = fmtRatios(xs, "bare"), "≥ 0.65× bare", judge(median(xs), 0.65, false)
			case cookie:
				xs := ratios(cookie, cached)
				rw.ratio, rw.target, rw.met = fmtRatios(xs, "cached token"), "≥ 0.97× cached token", judge(median(xs), 0.97, false)
			case junkCookie:
				rw.result += junkNote(median(junkRates), refused, throttled)
				xs := ratios(junkCookie, malformed)
				rw.ratio, rw.target, rw.met = fmtRatios(xs, "malformed tokens"), "≥ 0.97× malformed-token row", judge(median(xs), 0.97, false)
			case junk, malformed, unknown, forged:
				rw.result += junkNote(median(junkRates), refused, throttled)
				xs := ratios(v, cached)
				rw.ratio, rw.target, rw.met = fmtRatios(xs, "valid-only"), "≥ 0.7× valid-only", judge(median(xs), 0.7, false)
			}
			rows = append(rows, rw)
		}
	}

	// Scenario 5: go on until every token of the pool has been through
	// the cache, then read exed's peak RSS.
	start := time.Now()
	sent := ts.next.Load()
	for ts.next.Load() < int64(len(ts.pool)) {
		if r := runLoad(ctx, a.exed, vmHost, 32, b.o.cell, ts.poolSrc); r.bad > 0 {
			return nil, fmt.Errorf("cache fill: %d wrong answers, first: %s", r.bad, r.firstBad)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	b.progress("scenario 5: %d more distinct tokens in %v", ts.next.Load()-sent, time.Since(start).Round(time.Millisecond))
	rss, peak, err := memory(exedPID)
	if memErr != nil || err != nil {
		rows = append(rows, row{scenario: "5 memory", what: "exed RSS", result: "n/a (needs /proc)"})
		return rows, nil
	}
	distinct := min(ts.next.Load(), int64(len(ts.pool)))
	perEntry := float64(peak-rssBefore) / float64(min(distinct, tokens.DefaultCacheSize))
	rows = append(rows,
		row{scenario: "5 memory", what: "exed RSS before scenario 2", result: mib(rssBefore)},
		row{scenario: "5 memory", what: fmt.Sprintf("exed peak RSS (VmHWM) after %s distinct valid tokens", group(ts.next.Load())), result: mib(peak)},
		row{scenario: "5 memory", what: "exed RSS at the end", result: mib(rss)},
		row{scenario: "5 memory", what: fmt.Sprintf("cache bound: %s entries (tokens.DefaultCacheSize), TTL 1 s; peak growth per cached token", group(tokens.DefaultCacheSize)),
			result: fmt.Sprintf("%.1f KiB", perEntry/1024)},
	)
	return rows, nil
}

// junkNote says how fast junk was answered, and how: 401, or 429 once
// the failure budget throttles the source (both are right answers).
func junkNote(rate float64, refused, throttled int) string {
	return fmt.Sprintf(" (+ %s junk/s: %s answered 401, %s 429)", sig3(rate), group(int64(refused)), group(int64(throttled)))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// cpuPerRequest is the CPU time one cell of the assertions pair cost per
// answered request: in the exed process serving it, and in the upstream.
type cpuPerRequest struct{ exed, upstream time.Duration }

// cpuTimes reads the CPU time of the two processes.
func cpuTimes(a, b int) ([2]time.Duration, error) {
	ta, err := cpuTime(a)
	if err != nil {
		return [2]time.Duration{}, err
	}
	tb, err := cpuTime(b)
	return [2]time.Duration{ta, tb}, err
}

// cpuRows are the assertions pair's CPU figures: what exed itself spends
// per request with assertions on and off (its ratio is off ÷ on, the
// throughput exed alone would keep), and what the upstream spends reading
// what it is sent. Nothing when /proc did not tell.
func cpuRows(scen string, on, off []cpuPerRequest) []row {
	if len(on) == 0 || len(on) != len(off) {
		return nil
	}
	var exedOn, exedOff, upOn, upOff, exedRatio, upRatio []float64
	for i := range on {
		exedOn, exedOff = append(exedOn, float64(on[i].exed)), append(exedOff, float64(off[i].exed))
		upOn, upOff = append(upOn, float64(on[i].upstream)), append(upOff, float64(off[i].upstream))
		exedRatio = append(exedRatio, float64(off[i].exed)/float64(on[i].exed))
		upRatio = append(upRatio, float64(off[i].upstream)/float64(on[i].upstream))
	}
	dur := func(xs []float64) string { return fmtDur(time.Duration(median(xs))) }
	return []row{
		{scenario: scen, what: "exed's own CPU per request, assertions on / off (the pair's processes)",
			result: dur(exedOn) + " / " + dur(exedOff), ratio: fmtRatios(exedRatio, "off ÷ on"),
			target: "≥ 0.97×", met: judge(median(exedRatio), 0.97, false)},
		{scenario: scen, what: "the upstream's CPU per request meanwhile, on / off (it reads the assertion header)",
			result: dur(upOn) + " / " + dur(upOff), ratio: fmtRatios(upRatio, "off ÷ on")},
	}
}
