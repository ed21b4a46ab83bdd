package sshcmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// The ssh-key group: list, add, remove, rename. generate-api-key and
// check-api-key, which mint and explain tokens, are in apikey.go.

func (s *Suite) sshKeyListCommand() *command {
	return &command{
		path:    "ssh-key list",
		summary: "your keys and tokens",
		flags: func(fs *pflag.FlagSet) handler {
			return s.sshKeyList
		},
	}
}

func (s *Suite) sshKeyList(ctx context.Context, r *request) error {
	if err := noArgs(r); err != nil {
		return err
	}
	ks, err := s.env.Store.Keys(ctx, r.caller.User.ID)
	if err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	if r.json {
		return writeJSON(r.out, map[string]any{"ssh_keys": keyObjects(ks, r.caller.Key.Fingerprint)})
	}
	return writeKeyTable(r.out, ks, r.caller.Key.Fingerprint, r.now)
}

func (s *Suite) sshKeyAddCommand() *command {
	return &command{
		path:    "ssh-key add",
		usage:   "[--name N] [--vm V] [--cmds a,b] [--exp D] [--revive] [PUBKEY]",
		summary: "register a key (argument or stdin), optionally restricted (a deploy key for CI)",
		details: "PUBKEY is one line of a .pub file; without it the key is read from standard input:\n" +
			"  ssh HOST ssh-key add --name laptop < ~/.ssh/id_ed25519.pub\n" +
			"A key made by a restricted key (or token) is at least as restricted. A removed token key\n" +
			"stays revoked; a removed login key comes back only with --revive.",
		flags: func(fs *pflag.FlagSet) handler {
			name := fs.String("name", "", "the key's `NAME` (default: its comment, else key-N)")
			vm := fs.String("vm", "", "restrict the key to this `VM` (yours, or shared with you)")
			cmds := fs.StringSlice("cmds", nil, "restrict the key to these `COMMANDS` (comma-separated)")
			exp := fs.String("exp", "never", "the key expires after `D`: never, or N followed by h, d, w, m (30 days) or y (365 days)")
			revive := fs.Bool("revive", false, "add back a login key you removed before: the tokens it signed before its removal work again")
			return func(ctx context.Context, r *request) error {
				want, err := s.requestedLimits(ctx, r, fs, *vm, *cmds, *exp)
				if err != nil {
					return err
				}
				return s.sshKeyAdd(ctx, r, *name, want, *revive)
			}
		},
	}
}

func (s *Suite) sshKeyAdd(ctx context.Context, r *request, name string, lim tokens.Restrictions, revive bool) error {
	line, err := keyArgument(r)
	if err != nil {
		return err
	}
	pub, comment, err := keys.ParsePublicKey(line)
	switch {
	case errors.Is(err, keys.ErrPrivateKey):
		// Never echo it back: the message says what to give instead.
		return errors.New("that is a private key: give the public key (the .pub file) instead")
	case err != nil:
		return fmt.Errorf("invalid public key: %w", err)
	}
	uid := r.caller.User.ID
	existing, err := s.env.Store.Keys(ctx, uid)
	if err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	if name == "" {
		name = defaultKeyName(comment, existing)
	} else if err := validKeyName(name); err != nil {
		return err
	}
	if keyNamed(existing, name) != nil {
		return fmt.Errorf("a key named %q already exists: choose another with --name", name)
	}
	fp := keys.Fingerprint(pub)
	switch _, err := s.env.Store.Key(ctx, fp); {
	case err == nil:
		// Whose it is stays unsaid: it may be another account's.
		return fmt.Errorf("key %s is already registered", fp)
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("look up key: %w", err)
	}
	k := store.Key{
		UserID:      uid,
		Name:        name,
		Fingerprint: fp,
		PublicKey:   keys.MarshalAuthorized(pub),
		AddedAt:     r.now.UTC().Truncate(time.Second),
		VM:          lim.VM,
		Cmds:        lim.Cmds,
		ExpiresAt:   lim.ExpiresAt,
	}
	ev := s.event(r, "key.add", fp)
	add := s.env.Store.AddKey
	if revive {
		add = s.env.Store.ReviveKey
	}
	switch err := add(ctx, k, ev); {
	case errors.Is(err, store.ErrRevoked):
		return RevokedKeyError(err, uid, "ssh-key add --revive")
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("a key named %q or with fingerprint %s already exists", name, fp)
	case err != nil:
		return fmt.Errorf("add key: %w", err)
	}
	s.env.Log.Info("key added", "user", uid, "fingerprint", fp, "by", r.caller.Key.Fingerprint)
	if r.json {
		return writeJSON(r.out, struct {
			Name        string `json:"name"`
			Fingerprint string `json:"fingerprint"`
			PublicKey   string `json:"public_key"`
			Status      string `json:"status"`
		}{k.Name, k.Fingerprint, k.PublicKey, "added"})
	}
	fmt.Fprintf(r.out, "Added key %s (%s)", k.Name, k.Fingerprint)
	if kr := tokens.KeyRestrictions(k); kr.Any() {
		fmt.Fprintf(r.out, ", restricted: %s", kr)
	}
	fmt.Fprintln(r.out, ".")
	return nil
}

// keyArgument returns the public key given as arguments (an unquoted
// "type base64 comment" arrives as several words) or, without arguments,
// read from standard input, at most MaxStdin bytes.
func keyArgument(r *request) ([]byte, error) {
	if len(r.args) > 0 {
		return []byte(strings.Join(r.args, " ")), nil
	}
	data, err := io.ReadAll(io.LimitReader(r.stdin, MaxStdin+1))
	if err != nil {
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	if len(data) > MaxStdin {
		return nil, fmt.Errorf("standard input is over %d KiB: give one public key", MaxStdin>>10)
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("no public key: give it as an argument or on standard input")
	}
	if bytes.ContainsAny(data, "\r\n") && !bytes.Contains(data, []byte("PRIVATE KEY")) {
		return nil, errors.New("give one public key, not several lines")
	}
	return data, nil
}

// keyNameRule says what a key name (a token's label) may contain.
const keyNameRule = store.KeyNameRule

// validKeyName is store.ValidateKeyName: one name rule on every path.
func validKeyName(name string) error { return store.ValidateKeyName(name) }

// defaultKeyName is the key's comment when it makes a valid, free name,
// else the first free "key-N".
func defaultKeyName(comment string, existing []store.Key) string {
	if validKeyName(comment) == nil && keyNamed(existing, comment) == nil {
		return comment
	}
	for n := len(existing) + 1; ; n++ {
		name := fmt.Sprintf("key-%d", n)
		if keyNamed(existing, name) == nil {
			return name
		}
	}
}

func keyNamed(ks []store.Key, name string) *store.Key {
	for i := range ks {
		if ks[i].Name == name {
			return &ks[i]
		}
	}
	return nil
}

// findKey finds one of the caller's keys by name, fingerprint or public key.
func (s *Suite) findKey(ctx context.Context, r *request, ref string) (store.Key, error) {
	ks, err := s.env.Store.Keys(ctx, r.caller.User.ID)
	if err != nil {
		return store.Key{}, fmt.Errorf("list keys: %w", err)
	}
	if k := keyNamed(ks, ref); k != nil {
		return *k, nil
	}
	fp := ref
	if pub, _, err := keys.ParsePublicKey([]byte(ref)); err == nil {
		fp = keys.Fingerprint(pub)
	}
	for _, k := range ks {
		if k.Fingerprint == fp {
			return k, nil
		}
	}
	return store.Key{}, errors.New("you have no such key (give its name, fingerprint or public key; see ssh-key list)")
}

func (s *Suite) sshKeyRemoveCommand() *command {
	return &command{
		path:    "ssh-key remove",
		usage:   "<name|fingerprint|pubkey>",
		summary: "remove a key: revokes every token it signed",
		flags: func(fs *pflag.FlagSet) handler {
			return s.sshKeyRemove
		},
	}
}

func (s *Suite) sshKeyRemove(ctx context.Context, r *request) error {
	if len(r.args) == 0 {
		return errors.New("usage: ssh-key remove <name|fingerprint|pubkey>")
	}
	k, err := s.findKey(ctx, r, strings.Join(r.args, " "))
	if err != nil {
		return err
	}
	if err := covers(r.caller, k); err != nil {
		return err
	}
	switch err := s.env.Store.RemoveKey(ctx, r.caller.User.ID, k.Fingerprint, s.event(r, "key.remove", k.Fingerprint)); {
	case errors.Is(err, store.ErrLastKey):
		return fmt.Errorf("refusing to remove %s: it is your last login key, and removing it would lock you out (add another first)", k.Name)
	case errors.Is(err, store.ErrNotFound):
		return errors.New("you have no such key (see ssh-key list)")
	case err != nil:
		return fmt.Errorf("remove key: %w", err)
	}
	// From here on every token the key signed is refused on this instance:
	// the removal's store.KeyChanged reached the Verifier's cache before
	// RemoveKey returned (see Env.Verifier). Other instances see the
	// removal when their cache entries age out.
	s.env.Log.Info("key removed", "user", r.caller.User.ID, "fingerprint", k.Fingerprint, "by", r.caller.Key.Fingerprint)
	if r.json {
		return writeJSON(r.out, struct {
			Name        string `json:"name"`
			Fingerprint string `json:"fingerprint"`
			Status      string `json:"status"`
		}{k.Name, k.Fingerprint, "deleted"})
	}
	fmt.Fprintf(r.out, "Removed key %s (%s).", k.Name, k.Fingerprint)
	if k.Generated {
		fmt.Fprint(r.out, " Its token no longer works.")
	} else {
		fmt.Fprint(r.out, " Tokens it signed no longer work.")
	}
	fmt.Fprintln(r.out)
	return nil
}

func (s *Suite) sshKeyRenameCommand() *command {
	return &command{
		path:    "ssh-key rename",
		usage:   "<old> <new>",
		summary: "rename a key",
		flags: func(fs *pflag.FlagSet) handler {
			return s.sshKeyRename
		},
	}
}

func (s *Suite) sshKeyRename(ctx context.Context, r *request) error {
	if len(r.args) != 2 {
		return errors.New("usage: ssh-key rename <old> <new>")
	}
	k, err := s.findKey(ctx, r, r.args[0])
	if err != nil {
		return err
	}
	if err := covers(r.caller, k); err != nil {
		return err
	}
	newName := r.args[1]
	if err := validKeyName(newName); err != nil {
		return err
	}
	if newName == k.Name {
		return fmt.Errorf("the key is already named %s", newName)
	}
	switch err := s.env.Store.RenameKey(ctx, r.caller.User.ID, k.Fingerprint, newName, s.event(r, "key.rename", k.Fingerprint)); {
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("a key named %q already exists", newName)
	case errors.Is(err, store.ErrNotFound):
		return errors.New("you have no such key (see ssh-key list)")
	case err != nil:
		return fmt.Errorf("rename key: %w", err)
	}
	if r.json {
		return writeJSON(r.out, struct {
			Fingerprint string `json:"fingerprint"`
			OldName     string `json:"old_name"`
			NewName     string `json:"new_name"`
			Status      string `json:"status"`
		}{k.Fingerprint, k.Name, newName, "renamed"})
	}
	fmt.Fprintf(r.out, "Renamed %s to %s (%s).\n", k.Name, newName, k.Fingerprint)
	return nil
}

// event is the audit row for a change made by r's caller.
func (s *Suite) event(r *request, action, subject string) store.Event {
	cred := r.caller.Credential
	if cred == "" {
		cred = r.caller.Key.Fingerprint
	}
	return store.Event{
		Time:       r.now.UTC(),
		ActorID:    r.caller.User.ID,
		Credential: cred,
		Via:        r.caller.Via,
		Action:     action,
		Subject:    subject,
		RemoteAddr: r.caller.RemoteAddr,
	}
}

// requestedLimits reads --vm, --cmds and --exp, checks each, and fits them
// within the caller's effective restrictions (Caller.Limits). Cmds nil means --cmds was not
// given: no cmds restriction (for a token, the default list).
func (s *Suite) requestedLimits(ctx context.Context, r *request, fs *pflag.FlagSet, vm string, cmds []string, exp string) (tokens.Restrictions, error) {
	var want tokens.Restrictions
	if vm != "" {
		if _, err := s.reachableVM(ctx, r.caller.User.ID, vm); err != nil {
			return tokens.Restrictions{}, err
		}
		want.VM = vm
	}
	if fs.Changed("cmds") {
		want.Cmds = []string{} // --cmds= grants nothing, not the defaults
		for _, c := range cmds {
			c = strings.TrimSpace(c)
			if cmd, ok := s.byPath[c]; !ok || cmd.group {
				return tokens.Restrictions{}, fmt.Errorf("--cmds: unknown command %q (see help)", c)
			}
			if !slices.Contains(want.Cmds, c) {
				want.Cmds = append(want.Cmds, c)
			}
		}
	}
	t, err := tokens.ParseExpiry(exp, r.now)
	if err != nil {
		return tokens.Restrictions{}, fmt.Errorf("--exp: %w", err)
	}
	want.ExpiresAt = t
	got, err := r.caller.limits().Within(want)
	if err != nil {
		return tokens.Restrictions{}, fmt.Errorf("%s %w", r.caller.subject(), err)
	}
	return got, nil
}

// covers refuses a restricted caller c acting on a key k that is less
// restricted than c's effective restrictions: a deploy key (or a token)
// granted "ssh-key remove" to revoke its own tokens must not be able to
// remove its owner's other keys. A caller may always act on its own key.
func covers(c Caller, k store.Key) error {
	if c.Key.Fingerprint == k.Fingerprint {
		return nil
	}
	if err := c.limits().Covers(tokens.KeyRestrictions(k)); err != nil {
		return fmt.Errorf("%s %w, so it cannot act on key %q", c.subject(), err, k.Name)
	}
	return nil
}

// reachableVM returns the VM named name if userID may reach it (Reach),
// for --vm: a VM of theirs, or one shared with them.
func (s *Suite) reachableVM(ctx context.Context, userID, name string) (store.VM, error) {
	if err := store.ValidateVMName(name); err != nil {
		return store.VM{}, fmt.Errorf("--vm: %w", err)
	}
	vm, err := s.env.Store.VM(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && tokens.Reach(&vm, userID) == tokens.NoAccess:
		// The same answer whether it does not exist or is someone else's.
		return store.VM{}, fmt.Errorf("you have no VM named %s (see ls)", name)
	case err != nil:
		return store.VM{}, fmt.Errorf("look up VM: %w", err)
	}
	return vm, nil
}

// RevokedKeyError is the one message for a key that was removed and is
// registered again (store.ErrRevoked), for ssh-key add and exed user add:
// a token key stays revoked; a login key of userID's own may come back
// with the revive command named, knowing that the tokens it signed before
// its removal would work again. Another user's removed key is refused
// without saying more.
func RevokedKeyError(err error, userID, revive string) error {
	var re *store.RevokedError
	switch {
	case !errors.As(err, &re):
		return fmt.Errorf("that key was removed before and cannot be registered again")
	case re.Generated:
		return fmt.Errorf("key %s was a token key and was removed: it stays revoked, with every token it signed (make a new one)", re.Fingerprint)
	case re.UserID == userID && revive != "":
		return fmt.Errorf("key %s was removed at %s: tokens it signed before then would work again; to add it anyway, run %s", re.Fingerprint, rfc3339(re.RemovedAt), revive)
	}
	return fmt.Errorf("key %s was removed before and cannot be registered again (use a new key)", re.Fingerprint)
}
