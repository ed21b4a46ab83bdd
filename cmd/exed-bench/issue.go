package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/sshserver"
)

// Scenario 3: issuance over one multiplexed SSH connection, and cold
// logins with the stock OpenSSH client.

// sshTarget is what the issuance and revocation scenarios reach exed by.
type sshTarget struct {
	addr    string
	signer  gossh.Signer
	hostKey gossh.PublicKey
}

// sessionRetryWait is how long a worker waits before opening a session
// again after exed refused it for the per-connection bound.
const sessionRetryWait = time.Millisecond

func scenarioIssue(ctx context.Context, b *bench, t sshTarget, stock stockSSH, bareSSHAddr string) (rows []row, issued int, err error) {
	// Cold logins first, while the user has few keys (whoami lists them).
	rows, issued, err = coldSSH(ctx, b, t, stock, bareSSHAddr)
	if err != nil {
		return nil, 0, err
	}

	client, err := sshClient(t.addr, t.signer, t.hostKey)
	if err != nil {
		return nil, 0, fmt.Errorf("ssh to exed: %w", err)
	}
	defer client.Close()
	// As many sessions at once as exed allows on one connection.
	workers := sshserver.DefaultMaxSessions
	var (
		rates   []float64
		retried atomic.Int64
	)
	for round := range b.o.rounds + 1 { // round 0 warms up
		var (
			n        atomic.Int64
			mu       sync.Mutex
			firstErr error
			wg       sync.WaitGroup
		)
		d := b.o.cell
		if round == 0 {
			d /= 5
		}
		start := time.Now()
		deadline := start.Add(d)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) && ctx.Err() == nil {
					out, err := sshRun(client, "ssh-key generate-api-key --json --label "+b.nextLabel("mux"))
					var oce *gossh.OpenChannelError
					if errors.As(err, &oce) && oce.Reason == gossh.ResourceShortage {
						// exed frees a session's slot a moment after its
						// client has seen it close.
						retried.Add(1)
						time.Sleep(sessionRetryWait)
						continue
					}
					if err == nil && !bytes.Contains(out, []byte(`"token"`)) {
						err = fmt.Errorf("generate-api-key printed no token: %.100q", out)
					}
					if err != nil {
						mu.Lock()
						firstErr = keepFirst(firstErr, err)
						mu.Unlock()
						return
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return nil, 0, firstErr
		}
		issued += int(n.Load())
		if round > 0 {
			rates = append(rates, float64(n.Load())/time.Since(start).Seconds())
		}
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
	}
	rate := median(rates)
	r := row{
		scenario: "3 issuance",
		what:     fmt.Sprintf("generate-api-key, %d sessions at a time on one SSH connection, each stored durably (SQLite WAL, synchronous=FULL)", workers),
		result:   sig3(rate) + " tokens/s",
		target:   "≥ 1,200/s",
		met:      judge(rate, 1200, false),
	}
	if n := retried.Load(); n > 0 {
		r.what += fmt.Sprintf("; %d session opens refused as over the bound and retried", n)
	}
	return append([]row{r}, rows...), issued, nil
}

// coldSSH times one-command logins with the stock OpenSSH client, each a
// new process and connection: whoami and generate-api-key against exed,
// whoami against the bare gliderlabs server. It returns the rows and the
// number of tokens it issued.
func coldSSH(ctx context.Context, b *bench, t sshTarget, stock stockSSH, bareSSHAddr string) ([]row, int, error) {
	if stock.keyFile == "" {
		return []row{{scenario: "3 cold ssh", what: "stock OpenSSH client", result: "n/a (no ssh on PATH)"}}, 0, nil
	}
	var whoami, gen, bare []time.Duration
	issued := 0
	runs := []func() error{
		func() error { d, err := stock.run(ctx, t.addr, "whoami"); whoami = append(whoami, d); return err },
		func() error {
			d, err := stock.run(ctx, t.addr, "ssh-key generate-api-key --label "+b.nextLabel("cold"))
			gen = append(gen, d)
			issued++
			return err
		},
		func() error { d, err := stock.run(ctx, bareSSHAddr, "whoami"); bare = append(bare, d); return err },
	}
	// Interleaved, in a rotated order, so that drift falls on all three
	// alike; the first round warms up.
	for i := range b.o.coldRuns + 1 {
		for j := range runs {
			if err := runs[(i+j)%len(runs)](); err != nil {
				return nil, 0, err
			}
		}
		if i == 0 {
			whoami, gen, bare = nil, nil, nil
		}
	}
	mw, mg, mb := medianDur(whoami), medianDur(gen), medianDur(bare)
	genRatio := float64(mg) / float64(mw)
	bareRatio := float64(mw) / float64(mb)
	note := func(ds []time.Duration) string {
		return fmt.Sprintf(" (wall time, median of %d, max %s)", len(ds), fmtDur(maxDur(ds)))
	}
	return []row{
		{scenario: "3 cold ssh", what: "`ssh HOST whoami`, exed" + note(whoami), result: fmtDur(mw)},
		{scenario: "3 cold ssh", what: "`ssh HOST ssh-key generate-api-key`, exed" + note(gen), result: fmtDur(mg),
			ratio: fmtRatio(genRatio) + " whoami", target: "≤ 1.05× whoami", met: judge(genRatio, 1.05, true)},
		{scenario: "3 cold ssh", what: "`ssh HOST whoami`, bare gliderlabs/ssh with default settings" + note(bare), result: fmtDur(mb)},
		{scenario: "3 cold ssh", what: "exed whoami vs bare gliderlabs whoami", result: fmtDur(mw) + " vs " + fmtDur(mb),
			ratio: fmtRatio(bareRatio) + " bare", target: "≤ 0.4× bare", met: judge(bareRatio, 0.4, true)},
	}, issued, nil
}

func maxDur(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// keepFirst keeps the first non-nil error.
func keepFirst(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
