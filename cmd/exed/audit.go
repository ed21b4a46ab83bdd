package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/exed-dev/exed/sshcmd"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
	"github.com/exed-dev/exed/tokens"
)

// auditPoll is how often audit --follow asks the registry for new rows:
// a row committed by any instance is printed within about this long (the
// store hands out event ids in commit order, so following by id misses
// none).
const auditPoll = 200 * time.Millisecond

// audit prints the audit log, oldest first: everything, or one user's
// rows (--user: what they did), from --since on; --follow then prints new
// rows as they are committed, by whichever instance, until interrupted.
func (a *app) audit(ctx context.Context, args []string) error {
	fs := a.flagSet("audit", "audit [--user EMAIL] [--since D] [--json] [--follow]")
	data, db := a.storeFlags(fs)
	userEmail := fs.String("user", "", "only what the user with this `EMAIL` did")
	since := fs.String("since", "", "only rows since `D`: an RFC 3339 time, or N followed by h, d, w, m (30 days) or y (365 days) back from now, e.g. 24h or 7d")
	asJSON := fs.Bool("json", false, "print one JSON object a line: {\"id\",\"at\",\"action\",\"actor_email\",\"via\",\"remote_addr\"?,\"subject\"}")
	follow := fs.Bool("follow", false, "keep printing rows as they are written, until interrupted")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("audit: unexpected argument %q", fs.Arg(0))
	}
	var q store.EventQuery
	if *since != "" {
		t, err := tokens.ParseSince(*since, time.Now())
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		q.Since = t
	}
	if *userEmail != "" {
		if err := store.ValidateEmail(*userEmail); err != nil {
			return fmt.Errorf("audit: --user: %w", err)
		}
	}
	s, err := sqlstore.Open(ctx, *db, *data)
	if err != nil {
		return err
	}
	defer s.Close()
	if *userEmail != "" {
		u, err := s.UserByEmail(ctx, *userEmail)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("audit: no user with email %s", *userEmail)
		} else if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		q.ActorID = u.ID
	}
	print := a.printEvent
	if *asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetEscapeHTML(false)
		print = func(e store.Event) error { return enc.Encode(sshcmd.EventObject(e)) }
	}
	// Everything there is now, a page at a time.
	if err := printEvents(ctx, s, &q, print); err != nil {
		return err
	}
	if !*follow {
		return nil
	}
	tick := time.NewTicker(auditPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil // interrupted: the normal end of --follow
		case <-tick.C:
		}
		if err := printEvents(ctx, s, &q, print); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// printEvents prints the rows q selects after q.AfterID, oldest first, and
// moves q.AfterID past them.
func printEvents(ctx context.Context, s store.EventStore, q *store.EventQuery, print func(store.Event) error) error {
	for {
		evs, err := s.QueryEvents(ctx, *q)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		for _, e := range evs {
			if err := print(e); err != nil {
				return fmt.Errorf("audit: write: %w", err)
			}
			q.AfterID = e.ID
		}
		if len(evs) < store.MaxEventQuery {
			return nil
		}
	}
}

// printEvent writes one row as a line of text: id, time, actor, via, from,
// action, subject ("-" for what is empty).
func (a *app) printEvent(e store.Event) error {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	actor := e.ActorEmail
	if actor == "" {
		actor = e.ActorID // admin
	}
	_, err := fmt.Fprintf(a.stdout, "%d %s %s %s %s %s %s\n", e.ID, e.Time.UTC().Format(time.RFC3339),
		dash(actor), dash(e.Via), dash(e.RemoteAddr), e.Action, dash(e.Subject))
	return err
}
