package sshcmd

import (
	"context"
	"fmt"
	"regexp"

	"github.com/spf13/pflag"

	"github.com/exed-dev/exed/tokens"
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
	if len(r.args) == 0 {
		return nil
	}
	// Over ssh, a flag value with a space in it ("--label='a b'" typed in
	// the local shell) arrives as a flag and a stray word.
	const hint = "this command takes none; over ssh, a value with spaces or quotes needs a second layer of quotes"
	if a := r.args[0]; strayWord.MatchString(a) && !tokens.LooksLikeToken(a) {
		return fmt.Errorf("unexpected argument %q (%s)", a, hint)
	}
	return fmt.Errorf("unexpected argument (%s)", hint)
}

// strayWord is what an unexpected argument must look like to be repeated
// in the error: a short plain word, never a pasted token or key.
var strayWord = regexp.MustCompile(`^[A-Za-z0-9._@+,:-]{1,32}$`)
