package certs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// ErrRateLimited: ordering a certificate for one more new name now would
// pass --acme-rate. The name is tried again on a later visit.
var ErrRateLimited = errors.New("certs: new-name order limit reached (--acme-rate)")

const (
	// rateWindow is the window --acme-rate counts new names over.
	rateWindow = time.Hour
	// rateKey holds the times of the new-name orders of the last window,
	// for every instance sharing the registry; rateLock guards it.
	rateKey  = "exed/acme/new-name-orders.json"
	rateLock = "exed_acme_new_name_orders"
)

// rateLimit allows at most n new-name orders per rateWindow across every
// instance sharing the store: the order times live in the store, so that
// neither another instance nor a restart (a crash loop) starts a fresh
// budget.
type rateLimit struct {
	s   *storage
	n   int
	now func() time.Time
}

// take records one new-name order now, or returns ErrRateLimited when n
// were recorded within the last window.
func (r *rateLimit) take(ctx context.Context) error {
	if err := r.s.Lock(ctx, rateLock); err != nil {
		return err
	}
	defer r.s.Unlock(context.WithoutCancel(ctx), rateLock)
	var times []int64 // unix milliseconds
	b, err := r.s.Load(ctx, rateKey)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("certs: read the order log: %w", err)
	default:
		if err := json.Unmarshal(b, &times); err != nil {
			return fmt.Errorf("certs: read the order log: %w", err)
		}
	}
	now := r.now()
	since := now.Add(-rateWindow).UnixMilli()
	kept := times[:0]
	for _, t := range times {
		if t > since {
			kept = append(kept, t)
		}
	}
	if len(kept) >= r.n {
		return ErrRateLimited
	}
	b, err = json.Marshal(append(kept, now.UnixMilli()))
	if err != nil {
		return err
	}
	if err := r.s.Store(ctx, rateKey, b); err != nil {
		return fmt.Errorf("certs: write the order log: %w", err)
	}
	return nil
}
