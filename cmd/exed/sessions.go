package main

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/exed-dev/exed/store"
)

// sessionPurgeInterval is how often serve deletes the browser sessions,
// login links and magic secrets that have expired (they are refused from
// their expiry on anyway; this only keeps the tables small).
const sessionPurgeInterval = time.Minute

// runSessionUpkeep starts what browser sessions need beside the front: a
// last-used writer for them (at most one write a minute per session) and
// the periodic purge of what expired. stop ends both, after a last flush.
// lastUsedEvery is the writer's interval (--last-used-interval).
func runSessionUpkeep(st store.SessionStore, lastUsedEvery time.Duration, log *slog.Logger) (lastUsed *store.LastUsedWriter, stop func()) {
	lastUsed = store.NewLastUsedFunc(st.TouchSessions, lastUsedEvery, time.Now)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := lastUsed.Run(ctx); err != nil {
			log.Warn("flush session last-used", "err", err)
		}
	})
	wg.Go(func() {
		tick := time.NewTicker(sessionPurgeInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if n, err := st.PurgeExpired(ctx, time.Now()); err != nil && ctx.Err() == nil {
					log.Warn("purge expired sessions", "err", err)
				} else if n > 0 {
					log.Info("expired sessions purged", "count", n)
				}
			}
		}
	})
	return lastUsed, func() { cancel(); wg.Wait() }
}

// sshPublicAddr is the SSH address the login pages tell users to run
// `browser` against: the listener's own address when it is loopback (a
// local or demo server), else the domain, with the listener's port.
func sshPublicAddr(domain string, sshAddr net.Addr) (host string, port int) {
	a, ok := sshAddr.(*net.TCPAddr)
	if !ok {
		return domain, 0
	}
	if a.IP.IsLoopback() {
		return a.IP.String(), a.Port
	}
	return domain, a.Port
}
