package sshcmd

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// defaultLogLimit is how many rows log shows without --limit.
const defaultLogLimit = 50

func (s *Suite) logCommand() *command {
	return &command{
		path:    "log",
		usage:   "[--since D] [--limit N]",
		summary: "your audit log, newest first",
		details: "Every change you made: keys added, removed and renamed, tokens generated, shares\n" +
			"and share links, VMs made public or private; when, through which door (ssh, exec,\n" +
			"web) and from where.",
		flags: func(fs *pflag.FlagSet) handler {
			since := fs.String("since", "", "only events since `D`: an RFC 3339 time, or N followed by h, d, w, m (30 days) or y (365 days) back from now, e.g. 24h or 7d")
			limit := fs.Int("limit", defaultLogLimit, fmt.Sprintf("show at most `N` events (1 to %d)", store.MaxEventQuery))
			return func(ctx context.Context, r *request) error {
				if err := noArgs(r); err != nil {
					return err
				}
				if *limit < 1 || *limit > store.MaxEventQuery {
					return fmt.Errorf("--limit: want 1 to %d", store.MaxEventQuery)
				}
				q := store.EventQuery{ActorID: r.caller.User.ID, NewestFirst: true, Limit: *limit}
				if *since != "" {
					t, err := tokens.ParseSince(*since, r.now)
					if err != nil {
						return err
					}
					q.Since = t
				}
				return s.log(ctx, r, q)
			}
		},
	}
}

// EventJSON is an audit row as log --json and exed audit --json print it:
// its field names are public API.
type EventJSON struct {
	ID         int64  `json:"id"`
	At         string `json:"at"`
	Action     string `json:"action"`
	ActorEmail string `json:"actor_email"`
	Via        string `json:"via"`
	RemoteAddr string `json:"remote_addr,omitempty"`
	Subject    string `json:"subject"`
}

// EventObject renders e for JSON.
func EventObject(e store.Event) EventJSON {
	return EventJSON{e.ID, rfc3339(e.Time), e.Action, e.ActorEmail, e.Via, e.RemoteAddr, e.Subject}
}

func (s *Suite) log(ctx context.Context, r *request, q store.EventQuery) error {
	evs, err := s.env.Store.QueryEvents(ctx, q)
	if err != nil {
		return fmt.Errorf("read the log: %w", err)
	}
	if r.json {
		list := make([]EventJSON, 0, len(evs))
		for _, e := range evs {
			list = append(list, EventObject(e))
		}
		return writeJSON(r.out, map[string]any{"events": list})
	}
	if len(evs) == 0 {
		fmt.Fprintln(r.out, "No events.")
		return nil
	}
	tw := table(r.out)
	fmt.Fprintln(tw, "TIME\tACTION\tVIA\tFROM\tSUBJECT")
	for _, e := range evs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format("2006-01-02 15:04:05"), e.Action,
			orDash(e.Via), orDash(e.RemoteAddr), e.Subject)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
