package sshcmd

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"
)

func (s *Suite) whoamiCommand() *command {
	return &command{
		path:    "whoami",
		summary: "who you are",
		flags: func(fs *pflag.FlagSet) handler {
			return s.whoami
		},
	}
}

func (s *Suite) whoami(ctx context.Context, r *request) error {
	if err := noArgs(r); err != nil {
		return err
	}
	u := r.caller.User
	ks, err := s.env.Store.Keys(ctx, u.ID)
	if err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	if r.json {
		return writeJSON(r.out, struct {
			UserID  string    `json:"user_id"`
			Email   string    `json:"email"`
			SSHKeys []keyJSON `json:"ssh_keys"`
		}{u.ID, u.Email, keyObjects(ks, r.caller.Key.Fingerprint)})
	}
	fmt.Fprintf(r.out, "%s (%s)\nkey: %s %s\n", u.Email, u.ID, r.caller.Key.Name, r.caller.Key.Fingerprint)
	if kr := r.caller.limits(); kr.Any() {
		fmt.Fprintf(r.out, "restricted: %s\n", kr)
	}
	fmt.Fprintf(r.out, "\n")
	return writeKeyTable(r.out, ks, r.caller.Key.Fingerprint, r.now)
}

// noArgs refuses positional arguments for a command that takes none.
func noArgs(r *request) error {
	if len(r.args) > 0 {
		return fmt.Errorf("unexpected argument (this command takes none)")
	}
	return nil
}
