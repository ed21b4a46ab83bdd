package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Scenario 4: requests keep arriving at a steady rate while `ssh-key
// remove` revokes the key that signed their token; none sent after the
// removal returned may be accepted.

const (
	revokeConns = 4                      // connections sending the doomed token
	revokeRate  = 1000                   // requests per second, all connections together
	revokeLead  = 300 * time.Millisecond // traffic before and after the removal
)

// stamped is one request of the revocation scenario.
type stamped struct {
	sent, done time.Time
	status     int
}

func scenarioRevoke(ctx context.Context, b *bench, t sshTarget, exedAddr string) ([]row, error) {
	client, err := sshClient(t.addr, t.signer, t.hostKey)
	if err != nil {
		return nil, err
	}
	defer client.Close()

	var (
		sentAfter, acceptedAfter, answeredLate int
		removal                                []time.Duration
	)
	for trial := range b.o.revokeTrials {
		// exe1 handles and exe0 tokens in turn: both must die with the key.
		kind := "exe1"
		if trial%2 == 1 {
			kind = "exe0"
		}
		label := b.nextLabel("revoke")
		token, err := generateToken(client, label, kind == "exe0")
		if err != nil {
			return nil, err
		}
		probe := newConn(exedAddr)
		status, err := probe.get(vmHost, token)
		probe.close()
		if err != nil || status != 200 {
			return nil, fmt.Errorf("fresh %s token: status %d, %v", kind, status, err)
		}

		stop := make(chan struct{})
		var mu sync.Mutex
		var reqs []stamped
		var wg sync.WaitGroup
		interval := time.Second * revokeConns / revokeRate
		for n := range revokeConns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := newConn(exedAddr)
				defer c.close()
				next := time.Now().Add(interval * time.Duration(n) / revokeConns)
				var mine []stamped
				for {
					select {
					case <-stop:
						mu.Lock()
						reqs = append(reqs, mine...)
						mu.Unlock()
						return
					case <-time.After(time.Until(next)): // the steady rate
					}
					next = next.Add(interval)
					s := stamped{sent: time.Now()}
					status, err := c.get(vmHost, token)
					s.done = time.Now()
					if err == nil {
						s.status = status
					}
					mine = append(mine, s)
				}
			}()
		}
		time.Sleep(revokeLead) // traffic before the removal: a steady rate, not synchronisation
		begin := time.Now()
		if _, err := sshRun(client, "ssh-key remove "+label); err != nil {
			close(stop)
			wg.Wait()
			return nil, err
		}
		returned := time.Now()
		removal = append(removal, returned.Sub(begin))
		time.Sleep(revokeLead)
		close(stop)
		wg.Wait()

		okBefore := 0
		for _, r := range reqs {
			switch {
			case r.sent.After(returned):
				sentAfter++
				if r.status == 200 {
					acceptedAfter++
				}
			case r.status == 200 && r.done.After(returned):
				answeredLate++ // in flight across the removal: either answer is right
			case r.status == 200:
				okBefore++
			}
		}
		if okBefore == 0 {
			return nil, fmt.Errorf("%s trial: no request was accepted before the removal", kind)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return []row{{
		scenario: "4 revocation",
		what: fmt.Sprintf("requests accepted that were sent after `ssh-key remove` returned (%d trials, exe1 and exe0 in turn, %d req/s: %d requests sent after; %d in flight across the removal were accepted; removal took %s, median)",
			b.o.revokeTrials, revokeRate, sentAfter, answeredLate, fmtDur(medianDur(removal))),
		result: fmt.Sprint(acceptedAfter),
		target: "0",
		met:    judgeCount(acceptedAfter, 0),
	}}, nil
}
