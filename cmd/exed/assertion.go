package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/exed-dev/exed/assertion"
	"github.com/exed-dev/exed/store/sqlstore"
)

// secretKeyFile is the server secret's file name inside the data directory.
const secretKeyFile = "secret.key"

// secretKeyPath is --secret-key-file when given, else the secret in the
// data dir.
func secretKeyPath(flag, dataDir string) string {
	if flag != "" {
		return flag
	}
	return filepath.Join(dataDir, secretKeyFile)
}

// secretFlag adds --secret-key-file with its environment default.
func (a *app) secretFlag(fs *pflag.FlagSet) *string {
	return fs.String("secret-key-file", a.getenv("EXED_SECRET_KEY_FILE"),
		"the server secret sealing the assertion signing keys (default DATA/"+secretKeyFile+", created on first use; env EXED_SECRET_KEY_FILE)")
}

func (a *app) assertion(ctx context.Context, args []string) error {
	return a.dispatch("assertion", args, []subcommand{
		{"jwks", nil, "print the JSON Web Key Set that verifies the identity assertions", func(args []string) error { return a.assertionJWKS(ctx, args) }},
		{"keys", []string{"list", "ls"}, "list the assertion signing keys and their state", func(args []string) error { return a.assertionKeys(ctx, args) }},
		{"rotate", nil, "add a new signing key (signs in 24 h, or at once with --now)", func(args []string) error { return a.assertionRotate(ctx, args) }},
	})
}

func (a *app) assertionJWKS(ctx context.Context, args []string) error {
	fs := a.flagSet("assertion jwks", "assertion jwks")
	data, db := a.storeFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("assertion jwks: unexpected argument %q", fs.Arg(0))
	}
	s, err := sqlstore.Open(ctx, *db, *data)
	if err != nil {
		return err
	}
	defer s.Close()
	keys, err := s.AssertionKeys(ctx)
	if err != nil {
		return fmt.Errorf("assertion jwks: %w", err)
	}
	jwks, err := assertion.JWKS(keys, time.Now())
	if err != nil {
		return fmt.Errorf("assertion jwks: %w", err)
	}
	_, err = fmt.Fprintf(a.stdout, "%s\n", jwks)
	return err
}

func (a *app) assertionKeys(ctx context.Context, args []string) error {
	fs := a.flagSet("assertion keys", "assertion keys [--json]")
	data, db := a.storeFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("assertion keys: unexpected argument %q", fs.Arg(0))
	}
	s, err := sqlstore.Open(ctx, *db, *data)
	if err != nil {
		return err
	}
	defer s.Close()
	keys, err := s.AssertionKeys(ctx)
	if err != nil {
		return fmt.Errorf("assertion keys: %w", err)
	}
	status := assertion.Status(keys, time.Now())
	if *asJSON {
		type jsonKey struct {
			KID         string `json:"kid"`
			Generation  int64  `json:"generation"`
			State       string `json:"state"`
			PublishedAt string `json:"published_at"`
			SignsFrom   string `json:"signs_from"`
			SignsUntil  string `json:"signs_until"`
			RetiresAt   string `json:"retires_at"`
			Planned     bool   `json:"planned"`
		}
		out := struct {
			Keys []jsonKey `json:"keys"`
		}{Keys: []jsonKey{}}
		for _, st := range status {
			out.Keys = append(out.Keys, jsonKey{st.ID, st.Generation, string(st.State),
				rfc3339(st.CreatedAt), rfc3339(st.SignFrom), rfc3339(st.SignUntil), rfc3339(st.RetireAt), st.Planned})
		}
		return writeJSON(a.stdout, out)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tGEN\tSTATE\tPUBLISHED\tSIGNS FROM\tSIGNS UNTIL\tRETIRES")
	for _, st := range status {
		until, retires := rfc3339(st.SignUntil), rfc3339(st.RetireAt)
		switch {
		case !st.SignUntil.After(st.SignFrom):
			until = "never (overtaken)"
		case st.Planned:
			until, retires = until+" (planned)", retires+" (planned)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", st.ID, st.Generation, st.State,
			rfc3339(st.CreatedAt), rfc3339(st.SignFrom), until, retires)
	}
	return tw.Flush()
}

func (a *app) assertionRotate(ctx context.Context, args []string) error {
	fs := a.flagSet("assertion rotate", "assertion rotate [--now] [--secret-key-file F]\n\n"+
		"Adds a new signing key. It is published at once and signs from 24 h later (every verifier that\n"+
		"caches the JWKS for its one hour has it by then), or at once with --now (when the signing key may\n"+
		"have leaked). Running instances switch within a minute of its turn. The previous keys stay\n"+
		"published for 7 days after they stop signing: what they signed keeps verifying.")
	data, db := a.storeFlags(fs)
	secretFile := a.secretFlag(fs)
	now := fs.Bool("now", false, "sign with the new key at once instead of in 24 h")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("assertion rotate: unexpected argument %q", fs.Arg(0))
	}
	s, err := sqlstore.Open(ctx, *db, *data)
	if err != nil {
		return err
	}
	defer s.Close()
	secret, err := assertion.LoadOrCreateSecret(secretKeyPath(*secretFile, *data))
	if err != nil {
		return err
	}
	k, err := assertion.Rotate(ctx, s, secret, time.Now(), *now, adminActor)
	var wrong *assertion.WrongSecretError
	if errors.As(err, &wrong) {
		return err
	}
	if err != nil {
		return fmt.Errorf("assertion rotate: %w", err)
	}
	fmt.Fprintf(a.stdout, "added assertion key %s (generation %d), published now, signs from %s\n",
		k.ID, k.Generation, rfc3339(k.SignFrom))
	return nil
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
