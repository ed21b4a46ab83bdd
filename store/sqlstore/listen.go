package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/exed-dev/exed/store"
)

const (
	// listenMinBackoff and listenMaxBackoff bound the wait before
	// reconnecting the listener: it doubles from the first to the second
	// while connecting keeps failing. Meanwhile the caches' TTLs hold.
	listenMinBackoff = 100 * time.Millisecond
	listenMaxBackoff = 10 * time.Second
	// listenStable: a connection that lasted this long was a good one, and
	// the next reconnect starts again from listenMinBackoff.
	listenStable = 30 * time.Second
	// listenPingEvery: after this long without a notification the listener
	// pings, so that a connection that died without a word (a network
	// path gone silent) is noticed and replaced, rather than waited on for
	// ever with notifications lost. listenPingTimeout bounds that ping and
	// each connection attempt.
	listenPingEvery   = 15 * time.Second
	listenPingTimeout = 5 * time.Second
)

// listener is the one connection on which a PostgreSQL store hears the
// other processes' writes (notify.go) and announces them to its own
// subscribers.
type listener struct {
	cfg    *pgx.ConnConfig
	origin string // the store's own, whose notifications it skips
	c      *changes
	log    *slog.Logger

	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
}

// Listen starts hearing, on one dedicated connection, the writes other
// processes (other exed instances, the admin commands) commit to the same
// PostgreSQL database, and announces each to this store's subscribers
// (store.Changes) as if it had been written here. Each time it connects,
// the first time included, it announces store.AllChanged: what was
// committed while it was not listening went unheard. When the connection
// drops it reconnects, waiting longer after each failure (up to 10 s),
// logging each loss to log (nil: no logging). Its own writes, announced
// already, it skips. Close stops it.
//
// On SQLite, Listen does nothing: another process sharing the file cannot
// be heard, and the caches' TTLs bound how long its writes go unseen. A
// second call does nothing either.
func (s *Store) Listen(log *slog.Logger) {
	if s.pgcfg == nil {
		return
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	if s.listener != nil || s.closed {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{cfg: s.pgcfg, origin: s.origin, c: &s.changes, log: log, cancel: cancel, done: make(chan struct{})}
	s.listener = l
	go l.run(ctx)
}

// stop ends run and waits for it: once stop returns, nothing is announced.
func (l *listener) stop() {
	l.cancel()
	<-l.done
}

// run listens until ctx ends, reconnecting after each lost connection.
func (l *listener) run(ctx context.Context) {
	defer close(l.done)
	backoff := listenMinBackoff
	for {
		began := time.Now()
		err := l.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) >= listenStable {
			backoff = listenMinBackoff
		}
		// Jittered, so that instances that lost the database together do
		// not all come back in the same instant.
		wait := backoff/2 + rand.N(backoff/2+1)
		l.log.Warn("store: change notifications lost: reconnecting", "err", err, "after", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, listenMaxBackoff)
	}
}

// listen connects, LISTENs, announces AllChanged, and then announces every
// notification that comes, until the connection fails (its error) or ctx
// ends (nil).
func (l *listener) listen(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, listenPingTimeout)
	conn, err := pgx.ConnectConfig(cctx, l.cfg)
	if err == nil {
		_, err = conn.Exec(cctx, "LISTEN "+notifyChannel)
	}
	cancel()
	if conn != nil {
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			conn.Close(cctx)
		}()
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("listen: %w", err)
	}
	// Listening from here on: whatever committed before went unheard.
	l.c.publish(store.Change{Kind: store.AllChanged})
	for {
		wctx, cancel := context.WithTimeout(ctx, listenPingEvery)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// Quiet for a while: make sure the connection still is one.
			pctx, cancel := context.WithTimeout(ctx, listenPingTimeout)
			err = conn.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("ping: %w", err)
			}
		case err != nil:
			return fmt.Errorf("wait for notification: %w", err)
		case n.Channel == notifyChannel:
			if origin, changes := decodeChanges(n.Payload); origin != l.origin {
				l.c.publish(changes...)
			}
		}
	}
}
