package sshcmd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// The browser commands: browser (a one-time link that logs a browser in),
// sessions and sessions revoke. A token grants them only when its cmds name
// them: they are not in the default list.

func (s *Suite) browserCommand() *command {
	return &command{
		path:    "browser",
		usage:   "[--vm V] [--path P]",
		summary: "a one-time link that logs this browser in",
		details: "Open the link in a browser: it logs that browser in (for 30 days, or until the key\n" +
			"you ran this with expires) and goes on to the VM and path given. The link works\n" +
			"once, for 15 minutes. End browser sessions with: sessions revoke",
		flags: func(fs *pflag.FlagSet) handler {
			vm := fs.String("vm", "", "go on to this `VM` once logged in")
			path := fs.String("path", "", "… at this `PATH` (default /)")
			return func(ctx context.Context, r *request) error {
				return s.browser(ctx, r, *vm, *path)
			}
		},
	}
}

func (s *Suite) browser(ctx context.Context, r *request, vm, path string) error {
	if err := noArgs(r); err != nil {
		return err
	}
	if vm != "" {
		if _, err := s.reachableVM(ctx, r.caller.User.ID, vm); err != nil {
			return err
		}
	}
	if path != "" && store.SafePath(path) != path {
		return errors.New("--path: give a path on the site: one leading /, no spaces, backslashes or control characters")
	}
	// A link, and the browser session it starts, carry the caller's
	// effective restrictions (key ∩ token): a login never widens them.
	lim, err := r.caller.limits().Within(tokens.Restrictions{VM: vm})
	if err != nil {
		return fmt.Errorf("%s %w", r.caller.subject(), err)
	}
	now := r.now.UTC()
	// The latest the session may end: the key's expiry, or a full
	// session lifetime from a redemption, which comes within the link's.
	sessionEnd := now.Add(tokens.SessionTTL + tokens.LoginLinkTTL)
	if !lim.ExpiresAt.IsZero() && lim.ExpiresAt.Before(sessionEnd) {
		sessionEnd = lim.ExpiresAt
	}
	secret := tokens.NewSecret()
	h := tokens.SecretHash(secret)
	link := store.LoginLink{
		Hash:             h[:],
		UserID:           r.caller.User.ID,
		Fingerprint:      r.caller.Key.Fingerprint,
		OnlyVM:           r.caller.limits().VM,
		TargetVM:         lim.VM,
		Path:             path,
		CreatedAt:        now.Truncate(time.Second),
		ExpiresAt:        now.Add(tokens.LoginLinkTTL),
		SessionExpiresAt: sessionEnd,
	}
	subject := s.env.Domain
	if lim.VM != "" {
		subject = lim.VM
	}
	if err := s.env.Store.AddLoginLink(ctx, link, s.event(r, "browser.link", subject)); err != nil {
		return fmt.Errorf("store login link: %w", err)
	}
	s.env.Log.Info("login link made", "user", r.caller.User.ID, "by", r.caller.Key.Fingerprint, "vm", lim.VM)
	url := s.env.APIURL + "/auth/verify?token=" + secret
	if r.json {
		return writeJSON(r.out, map[string]string{"magic_link": url})
	}
	fmt.Fprintf(r.out, "Open this link in your browser to log it in (it works once, for 15 minutes):\n\n  %s\n\n", url)
	switch {
	case lim.VM != "":
		p := path
		if p == "" {
			p = "/"
		}
		fmt.Fprintf(r.out, "It then opens %s%s.\n", s.env.VMURL(lim.VM), p)
	}
	if !lim.ExpiresAt.IsZero() {
		fmt.Fprintf(r.out, "The browser stays logged in until %s, when your key expires.\n", rfc3339(sessionEnd))
	}
	return nil
}

func (s *Suite) sessionsCommand() *command {
	return &command{
		path:    "sessions",
		summary: "your browser sessions",
		details: "End one with: sessions revoke <id>; all of them with: sessions revoke --all",
		flags: func(fs *pflag.FlagSet) handler {
			return s.sessions
		},
	}
}

func (s *Suite) sessionsRevokeCommand() *command {
	return &command{
		path:    "sessions revoke",
		usage:   "<id>|--all",
		summary: "end one of your browser sessions, or all of them",
		flags: func(fs *pflag.FlagSet) handler {
			all := fs.Bool("all", false, "end every one of your browser sessions")
			return func(ctx context.Context, r *request) error {
				return s.sessionsRevoke(ctx, r, *all)
			}
		},
	}
}

// sessionJSON is SESSION: its field names are public API.
type sessionJSON struct {
	ID         string `json:"id"`
	Host       string `json:"host"`
	CreatedAt  string `json:"created_at"`
	ExpiresAt  string `json:"expires_at"`
	LastUsedAt string `json:"last_used_at,omitempty"`
	UserAgent  string `json:"user_agent,omitempty"`
}

func (s *Suite) sessions(ctx context.Context, r *request) error {
	if err := noArgs(r); err != nil {
		return err
	}
	ss, err := s.env.Store.Sessions(ctx, r.caller.User.ID)
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	live := ss[:0]
	for _, x := range ss {
		if !x.Expired(r.now) { // an ended one goes when the store purges it
			live = append(live, x)
		}
	}
	list := make([]sessionJSON, 0, len(live))
	for _, x := range live {
		j := sessionJSON{ID: x.ID, Host: x.Host, CreatedAt: rfc3339(x.CreatedAt), ExpiresAt: rfc3339(x.ExpiresAt), UserAgent: x.UserAgent}
		if !x.LastUsedAt.IsZero() {
			j.LastUsedAt = rfc3339(x.LastUsedAt)
		}
		list = append(list, j)
	}
	if r.json {
		return writeJSON(r.out, map[string]any{"sessions": list})
	}
	if len(list) == 0 {
		fmt.Fprintln(r.out, "No browser sessions. Log a browser in with: browser")
		return nil
	}
	tw := table(r.out)
	fmt.Fprintln(tw, "ID\tHOST\tCREATED\tEXPIRES\tLAST USED\tUSER AGENT")
	for i, j := range list {
		ua := j.UserAgent
		if len(ua) > 40 {
			ua = ua[:37] + "..."
		}
		if ua == "" {
			ua = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Host, day(live[i].CreatedAt), expires(live[i].ExpiresAt, r.now), lastUsed(live[i].LastUsedAt), ua)
	}
	return tw.Flush()
}

func (s *Suite) sessionsRevoke(ctx context.Context, r *request, all bool) error {
	var n int
	switch {
	case all && len(r.args) == 0:
		var err error
		if n, err = s.env.Store.RevokeSessions(ctx, r.caller.User.ID, s.event(r, "session.revoke", "all")); err != nil {
			return fmt.Errorf("revoke sessions: %w", err)
		}
	case !all && len(r.args) == 1:
		id := r.args[0]
		switch err := s.env.Store.RevokeSession(ctx, r.caller.User.ID, id, s.event(r, "session.revoke", id)); {
		case errors.Is(err, store.ErrNotFound):
			return errors.New("you have no such session (see sessions)")
		case err != nil:
			return fmt.Errorf("revoke session: %w", err)
		}
		n = 1
	default:
		return errors.New("usage: sessions revoke <id>|--all")
	}
	// From here on the sessions are refused on this instance (the store's
	// SessionChanged reached the proxy's cache), within a second elsewhere.
	s.env.Log.Info("sessions revoked", "user", r.caller.User.ID, "count", n, "by", r.caller.Key.Fingerprint)
	if r.json {
		return writeJSON(r.out, map[string]int{"revoked": n})
	}
	if n == 1 {
		fmt.Fprintln(r.out, "Revoked 1 session.")
	} else {
		fmt.Fprintf(r.out, "Revoked %d sessions.\n", n)
	}
	return nil
}
