package sshcmd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/exed-dev/exed/tokens"
)

func (s *Suite) exe0ToExe1Command() *command {
	return &command{
		path:    "exe0-to-exe1",
		usage:   "[--vm V] <exe0>",
		summary: "short handle for one of your exe0 tokens",
		details: "The exe1 handle stands for the exe0 token: every use verifies the exe0 in full,\n" +
			"and removing the key that signed it revokes both.",
		flags: func(fs *pflag.FlagSet) handler {
			vm := fs.String("vm", "", "the token is for this `VM` (yours, or shared with you) (default: an API token)")
			return func(ctx context.Context, r *request) error {
				return s.exe0ToExe1(ctx, r, *vm)
			}
		},
	}
}

func (s *Suite) exe0ToExe1(ctx context.Context, r *request, vm string) error {
	if len(r.args) != 1 {
		return errors.New("usage: exe0-to-exe1 [--vm V] <exe0>")
	}
	exe0 := r.args[0]
	switch {
	case strings.HasPrefix(exe0, tokens.Exe1Prefix):
		return errors.New("that is already an exe1 handle")
	case !strings.HasPrefix(exe0, tokens.Exe0Prefix):
		return errors.New("not an exe0 token")
	}
	target, err := s.target(ctx, r, vm)
	if err != nil {
		return err
	}
	if err := s.mine(ctx, r, exe0); err != nil {
		return err
	}
	grant, err := s.env.Verifier.Verify(ctx, exe0, target)
	if err != nil {
		return errors.New(`invalid token (run "ssh-key check-api-key" for the reason)`)
	}
	if grant.User.ID != r.caller.User.ID {
		return errNotYours
	}
	fp := grant.Key.Fingerprint
	handle, row, err := tokens.IssueExe1(exe0, fp, r.now)
	if err != nil {
		return fmt.Errorf("make exe1 handle: %w", err)
	}
	if err := s.env.Store.AddExe1(ctx, row, s.event(r, "exe1.create", fp)); err != nil {
		return fmt.Errorf("store exe1 handle: %w", err)
	}
	s.env.Log.Info("exe1 created", "user", r.caller.User.ID, "fingerprint", fp, "by", r.caller.Key.Fingerprint)
	if r.json {
		return writeJSON(r.out, map[string]string{"token": handle})
	}
	fmt.Fprintf(r.out, "token: %s\n\nIt stands for the exe0 token and will not be shown again. Revoke it with: ssh-key remove %s\n", handle, grant.Key.Name)
	return nil
}
