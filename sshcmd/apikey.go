package sshcmd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// The ssh-key subcommands that mint and explain tokens.

func (s *Suite) generateAPIKeyCommand() *command {
	return &command{
		path:    "ssh-key generate-api-key",
		usage:   "[--label L] [--vm V] [--cmds a,b] [--exp D] [--ctx JSON] [--exe0]",
		summary: "mint a token",
		details: "Makes a fresh key pair, registers its public half under the label, signs a token\n" +
			"with it and forgets the private half. The token is printed once; remove the key\n" +
			"(ssh-key remove LABEL) to revoke it. In scripts, take it from the JSON:\n" +
			"  ssh HOST ssh-key generate-api-key --vm=web --json | jq -r .token",
		flags: func(fs *pflag.FlagSet) handler {
			label := fs.String("label", "", "`LABEL` naming the token's key (default api-key, or api-key-VM)")
			vm := fs.String("vm", "", "a token for this `VM` (yours, or shared with you), signed in v0@VM."+s.env.VMDomain+" (default: an API token, v0@"+s.env.Domain+")")
			cmds := fs.StringSlice("cmds", nil, "`COMMANDS` the token grants on /exec, comma-separated (default: "+strings.Join(tokens.DefaultCmds(), ", ")+")")
			exp := fs.String("exp", "never", "the token expires after `D`: never, or N followed by h, d, w, m (30 days) or y (365 days)")
			ctxJSON := fs.String("ctx", "", "a `JSON` value your VM receives verbatim in X-ExeDev-Token-Ctx")
			exe0 := fs.Bool("exe0", false, "print the full exe0 token instead of a short exe1 handle")
			return func(ctx context.Context, r *request) error {
				if err := noArgs(r); err != nil {
					return err
				}
				lim, err := s.requestedLimits(ctx, r, fs, *vm, *cmds, *exp)
				if err != nil {
					return err
				}
				var tokenCtx []byte
				if fs.Changed("ctx") {
					tokenCtx = []byte(*ctxJSON)
				}
				return s.generateAPIKey(ctx, r, *label, lim, tokenCtx, *exe0)
			}
		},
	}
}

// generatedJSON is generate-api-key's JSON output.
type generatedJSON struct {
	Label       string    `json:"label"`
	Token       string    `json:"token"`
	Namespace   string    `json:"namespace"`
	Fingerprint string    `json:"fingerprint"`
	VM          string    `json:"vm,omitempty"`
	Cmds        *[]string `json:"cmds,omitempty"`
	ExpiresAt   string    `json:"expires_at,omitempty"`
}

func (s *Suite) generateAPIKey(ctx context.Context, r *request, label string, lim tokens.Restrictions, tokenCtx []byte, asExe0 bool) error {
	if label == "" {
		label = "api-key"
		if lim.VM != "" {
			label += "-" + lim.VM
		}
	}
	if validKeyName(label) != nil {
		return fmt.Errorf("--label %.64q is not a valid label: %s", label, keyNameRule)
	}
	if tokenCtx != nil {
		if err := tokens.CheckCtx(tokenCtx); err != nil {
			return fmt.Errorf("--ctx is not valid JSON: %v; over ssh the JSON needs a second layer of quotes: "+
				`ssh HOST "ssh-key generate-api-key --ctx='{\"role\":\"deploy\"}'"`, err)
		}
	}
	if err := tokens.CheckCtxHeader(tokenCtx); err != nil {
		return fmt.Errorf("--ctx: %v", err)
	}
	var exp int64
	if !lim.ExpiresAt.IsZero() {
		exp = lim.ExpiresAt.Unix()
	}
	payload, err := tokens.BuildPayload(exp, 0, lim.Cmds, lim.Cmds != nil, tokenCtx)
	if err != nil {
		if tokenCtx != nil {
			return fmt.Errorf("--ctx must be one valid JSON value without duplicate keys: %v", err)
		}
		return fmt.Errorf("build token: %w", err)
	}

	signer, priv, err := keys.GenerateEd25519()
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	// The private half exists only for this call: zero it when done
	// (best effort; it is never stored or printed).
	defer clear(priv)
	ns := s.ns.For(lim.VM)
	exe0, err := tokens.MintExe0(signer, ns, payload)
	if err != nil {
		return fmt.Errorf("sign token: %w", err)
	}
	fp := keys.Fingerprint(signer.PublicKey())
	k := store.Key{
		UserID:      r.caller.User.ID,
		Name:        label,
		Fingerprint: fp,
		PublicKey:   keys.MarshalAuthorized(signer.PublicKey()),
		AddedAt:     r.now.UTC().Truncate(time.Second),
		Generated:   true,
		VM:          lim.VM,
		Cmds:        lim.Cmds,
		ExpiresAt:   lim.ExpiresAt,
	}
	token := exe0
	var handle *store.Exe1
	if !asExe0 {
		var row store.Exe1
		if token, row, err = tokens.IssueExe1(exe0, fp, r.now); err != nil {
			return fmt.Errorf("make exe1 handle: %w", err)
		}
		handle = &row
	}
	// One write: the key, the handle and the audit row, or nothing. The
	// key and handle are fresh, so a uniqueness failure is the label (no
	// listing of the user's keys first: that would grow with them).
	switch err := s.env.Store.AddTokenKey(ctx, k, handle, s.event(r, "token.generate", fp)); {
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("a key named %q already exists: choose another with --label", label)
	case err != nil:
		return fmt.Errorf("store token key: %w", err)
	}
	s.env.Log.Info("token generated", "user", r.caller.User.ID, "fingerprint", fp, "by", r.caller.Key.Fingerprint, "vm", lim.VM)

	out := generatedJSON{
		Label:       label,
		Token:       token,
		Namespace:   ns,
		Fingerprint: fp,
		VM:          lim.VM,
	}
	if lim.Cmds != nil {
		out.Cmds = cmdsField(lim.Cmds)
	}
	if !lim.ExpiresAt.IsZero() {
		out.ExpiresAt = rfc3339(lim.ExpiresAt)
	}
	if r.json {
		return writeJSON(r.out, out)
	}
	return s.writeGenerated(r, out)
}

// writeGenerated prints a new token for a person: what it is, the token on
// a line of its own starting "token: ", and how to use and revoke it.
func (s *Suite) writeGenerated(r *request, g generatedJSON) error {
	tw := table(r.out)
	fmt.Fprintf(tw, "label:\t%s\n", g.Label)
	if g.VM != "" {
		fmt.Fprintf(tw, "vm:\t%s\n", g.VM)
	}
	fmt.Fprintf(tw, "namespace:\t%s\n", g.Namespace)
	fmt.Fprintf(tw, "fingerprint:\t%s\n", g.Fingerprint)
	if g.ExpiresAt != "" {
		fmt.Fprintf(tw, "expires:\t%s\n", g.ExpiresAt)
	} else {
		fmt.Fprintf(tw, "expires:\tnever\n")
	}
	switch {
	case g.Cmds != nil:
		fmt.Fprintf(tw, "cmds:\t%s\n", listOrNothing(*g.Cmds))
	case g.VM == "":
		fmt.Fprintf(tw, "cmds:\tdefault (%s)\n", strings.Join(tokens.DefaultCmds(), ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(r.out, "\ntoken: %s\n\n", g.Token)
	fmt.Fprintln(r.out, "It will not be shown again. Revoke it with: ssh-key remove "+g.Label)
	if g.VM != "" {
		fmt.Fprintf(r.out, "Use it:  curl -H \"X-Exedev-Authorization: Bearer $TOKEN\" %s/\n", s.env.VMURL(g.VM))
	} else {
		fmt.Fprintf(r.out, "Use it:  curl -X POST -H \"Authorization: Bearer $TOKEN\" -d whoami %s/exec\n", s.env.APIURL)
	}
	fmt.Fprintln(r.out, "Scripts: add --json and read .token (… --json | jq -r .token)")
	return nil
}

func (s *Suite) checkAPIKeyCommand() *command {
	return &command{
		path:    "ssh-key check-api-key",
		usage:   "[--vm V] <token>",
		summary: "explain why one of your tokens is or is not valid",
		flags: func(fs *pflag.FlagSet) handler {
			vm := fs.String("vm", "", "check it as a token for this `VM` (yours, or shared with you) (default: as an API token)")
			return func(ctx context.Context, r *request) error {
				return s.checkAPIKey(ctx, r, *vm)
			}
		},
	}
}

func (s *Suite) checkAPIKey(ctx context.Context, r *request, vm string) error {
	if len(r.args) != 1 {
		return errors.New("usage: ssh-key check-api-key [--vm V] <token>")
	}
	token := r.args[0]
	target, err := s.target(ctx, r, vm)
	if err != nil {
		return err
	}
	var checks []tokens.Check
	switch err := s.mine(ctx, r, token); {
	case errors.Is(err, errNotYours):
		// Someone else's token: no details about it.
		checks = []tokens.Check{{Name: tokens.CheckKey, OK: false, Detail: "not your key"}}
	case err != nil:
		return err
	default:
		checks = s.env.Verifier.Explain(ctx, token, target)
	}
	valid := len(checks) > 0
	for _, c := range checks {
		valid = valid && c.OK
	}
	if checks == nil {
		checks = []tokens.Check{}
	}
	if r.json {
		return writeJSON(r.out, struct {
			Valid  bool           `json:"valid"`
			Checks []tokens.Check `json:"checks"`
		}{valid, checks})
	}
	if valid {
		fmt.Fprintln(r.out, "valid: yes")
	} else {
		fmt.Fprintln(r.out, "valid: no")
	}
	tw := table(r.out)
	for _, c := range checks {
		ok := "ok"
		if !c.OK {
			ok = "FAIL"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", ok, c.Name, c.Detail)
	}
	return tw.Flush()
}

// target is what a token is checked for: a VM of the caller's, or the API.
// A caller restricted to one VM names only that one (without --vm, it is
// the default), as everywhere else.
func (s *Suite) target(ctx context.Context, r *request, vm string) (tokens.Target, error) {
	lim, err := r.caller.limits().Within(tokens.Restrictions{VM: vm})
	if err != nil {
		return tokens.Target{}, fmt.Errorf("%s %w", r.caller.subject(), err)
	}
	vm = lim.VM
	if vm == "" {
		return tokens.Target{Namespace: s.ns.API()}, nil
	}
	v, err := s.reachableVM(ctx, r.caller.User.ID, vm)
	if err != nil {
		return tokens.Target{}, err
	}
	return tokens.Target{Namespace: s.ns.VM(vm), VM: &v}, nil
}

// errNotYours is the whole answer about a token another user's key signed.
var errNotYours = errors.New("not your key: you can only check and convert tokens signed by your own keys")

// mine returns errNotYours when token was signed by a registered key of
// another user. A token that does not parse, or whose key is unknown, is
// left to the Verifier to explain: neither says anything about anyone.
func (s *Suite) mine(ctx context.Context, r *request, token string) error {
	fp := s.signerFingerprint(ctx, token)
	if fp == "" {
		return nil
	}
	k, err := s.env.Store.Key(ctx, fp)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("look up key: %w", err)
	case k.UserID != r.caller.User.ID:
		return errNotYours
	}
	return nil
}

// signerFingerprint returns the fingerprint of the key that signed token
// (for exe1, the one its stored row names), or "" when that is unknown.
func (s *Suite) signerFingerprint(ctx context.Context, token string) string {
	if strings.HasPrefix(token, tokens.Exe1Prefix) {
		if tokens.ParseExe1(token) != nil {
			return ""
		}
		h, err := s.env.Store.Exe1(ctx, tokens.Exe1ID(token))
		if err != nil {
			return ""
		}
		return h.Fingerprint
	}
	t, err := tokens.ParseExe0(token)
	if err != nil {
		return ""
	}
	return t.Sig.Fingerprint()
}
