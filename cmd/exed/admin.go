package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/sshcmd"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
)

// adminActor is the audit log's actor for the local admin commands.
const adminActor = store.AdminActor

// storeFlags adds --data and --db, which every command that opens the
// registry takes, with their environment defaults.
func (a *app) storeFlags(fs *pflag.FlagSet) (data, db *string) {
	data = fs.String("data", envOr(a.getenv, "EXED_DATA", "./exed-data"), "data directory: SQLite file and host key (env EXED_DATA)")
	db = fs.String("db", a.getenv("EXED_DB"), "registry DSN, e.g. postgres://…; default: SQLite in --data (env EXED_DB)")
	return data, db
}

func (a *app) user(ctx context.Context, args []string) error {
	return a.dispatch("user", args, []subcommand{
		{"add", nil, "add a user with its first SSH key", func(args []string) error { return a.userAdd(ctx, args) }},
		{"list", []string{"ls"}, "list users", func(args []string) error { return a.userList(ctx, args) }},
	})
}

func (a *app) userAdd(ctx context.Context, args []string) error {
	fs := a.flagSet("user add", "user add --email E (--key 'ssh-ed25519 AAAA…' | --key-file F) [--name N]")
	data, db := a.storeFlags(fs)
	email := fs.String("email", "", "the user's email (unique, case-insensitive)")
	keyText := fs.String("key", "", "the user's first SSH public key, as in authorized_keys")
	keyFile := fs.String("key-file", "", "read the public key from this file")
	name := fs.String("name", "", "name for the key (default: its comment, or \"login\")")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("user add: unexpected argument %q", fs.Arg(0))
	}
	// Validate everything before the store is touched.
	if err := store.ValidateEmail(*email); err != nil {
		return fmt.Errorf("user add: %w", err)
	}
	if (*keyText == "") == (*keyFile == "") {
		return errors.New("user add: give exactly one of --key or --key-file")
	}
	line := []byte(*keyText)
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("user add: %w", err)
		}
		line = b
	}
	pub, comment, err := keys.ParsePublicKey(line)
	if err != nil {
		return fmt.Errorf("user add: %w", err)
	}
	keyName := *name
	if keyName == "" {
		keyName = keyNameFromComment(comment, "login")
	} else if err := store.ValidateKeyName(keyName); err != nil {
		return fmt.Errorf("user add: --name: %w", err)
	}

	s, err := sqlstore.Open(ctx, *db, *data)
	if err != nil {
		return err
	}
	defer s.Close()
	now := time.Now().UTC()
	u := store.User{ID: store.NewUserID(), Email: *email, CreatedAt: now}
	k := store.Key{
		UserID:      u.ID,
		Name:        keyName,
		Fingerprint: keys.Fingerprint(pub),
		PublicKey:   keys.MarshalAuthorized(pub),
		AddedAt:     now,
	}
	ev := store.Event{Time: now, ActorID: adminActor, Via: store.ViaAdmin, Action: "user.add", Subject: *email}
	if err := s.AddUser(ctx, u, k, ev); err != nil {
		if errors.Is(err, store.ErrRevoked) {
			return fmt.Errorf("user add: %w", sshcmd.RevokedKeyError(err, u.ID, ""))
		}
		if errors.Is(err, store.ErrExists) {
			return fmt.Errorf("user add: a user with that email, or that key, already exists")
		}
		return fmt.Errorf("user add: %w", err)
	}
	fmt.Fprintf(a.stdout, "added user %s (%s) with key %s %s\n", u.Email, u.ID, k.Name, k.Fingerprint)
	// Shares that were pending for this email became active with it.
	if shared, err := s.SharedVMs(ctx, u.ID); err == nil && len(shared) > 0 {
		names := make([]string, len(shared))
		for i, vm := range shared {
			names[i] = vm.Name
		}
		fmt.Fprintf(a.stdout, "pending shares now active: %s\n", strings.Join(names, ", "))
	}
	return nil
}

// keyNameFromComment derives a key name from an authorized_keys comment:
// the comment if it is a valid key name (the one rule, store.ValidateKeyName:
// no terminal escapes, newlines or spaces reach `ssh-key list` or the
// admin's terminal), else def.
func keyNameFromComment(comment, def string) string {
	if store.ValidateKeyName(comment) != nil {
		return def
	}
	return comment
}

func (a *app) userList(ctx context.Context, args []string) error {
	fs := a.flagSet("user list", "user list [--json]")
	data, db := a.storeFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	s, err := sqlstore.Open(ctx, *db, *data)
	if err != nil {
		return err
	}
	defer s.Close()
	users, err := s.Users(ctx)
	if err != nil {
		return fmt.Errorf("user list: %w", err)
	}
	if *asJSON {
		type jsonUser struct {
			UserID  string `json:"user_id"`
			Email   string `json:"email"`
			SSHKeys int    `json:"ssh_keys"`
		}
		out := struct {
			Users []jsonUser `json:"users"`
		}{Users: []jsonUser{}}
		for _, u := range users {
			out.Users = append(out.Users, jsonUser{u.ID, u.Email, u.Keys})
		}
		return writeJSON(a.stdout, out)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER ID\tEMAIL\tKEYS")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", u.ID, u.Email, u.Keys)
	}
	return tw.Flush()
}

func (a *app) vm(ctx context.Context, args []string) error {
	return a.dispatch("vm", args, []subcommand{
		{"add", nil, "add a VM: a named upstream owned by a user", func(args []string) error { return a.vmAdd(ctx, args) }},
		{"list", []string{"ls"}, "list VMs", func(args []string) error { return a.vmList(ctx, args) }},
		{"rm", []string{"remove"}, "remove a VM", func(args []string) error { return a.vmRemove(ctx, args) }},
		{"share", nil, "who a VM is shared with: add, remove, list", func(args []string) error { return a.vmShare(ctx, args) }},
	})
}

func (a *app) vmAdd(ctx context.Context, args []string) error {
	fs := a.flagSet("vm add", "vm add --name N --owner EMAIL --upstream http(s)://HOST[:PORT] [--public]")
	data, db := a.storeFlags(fs)
	name := fs.String("name", "", "VM name: a lowercase DNS label")
	owner := fs.String("owner", "", "email of the user who owns the VM")
	upstream := fs.String("upstream", "", "the VM's web server, http(s)://HOST[:PORT]")
	public := fs.Bool("public", false, "serve the VM without a token (identity headers only with one)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("vm add: unexpected argument %q", fs.Arg(0))
	}
	if err := store.ValidateVMName(*name); err != nil {
		return fmt.Errorf("vm add: %w", err)
	}
	if err := store.ValidateEmail(*owner); err != nil {
		return fmt.Errorf("vm add: --owner: %w", err)
	}
	if err := store.ValidateUpstream(*upstream); err != nil {
		return fmt.Errorf("vm add: %w", err)
	}
	s, err := sqlstore.Open(ctx, *db, *data)
	if err != nil {
		return err
	}
	defer s.Close()
	u, err := s.UserByEmail(ctx, *owner)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("vm add: no user with email %s", *owner)
	} else if err != nil {
		return fmt.Errorf("vm add: %w", err)
	}
	now := time.Now().UTC()
	vm := store.VM{Name: *name, OwnerID: u.ID, Upstream: *upstream, Public: *public, CreatedAt: now}
	ev := store.Event{Time: now, ActorID: adminActor, Via: store.ViaAdmin, Action: "vm.add", Subject: *name}
	if err := s.AddVM(ctx, vm, ev); err != nil {
		if errors.Is(err, store.ErrExists) {
			return fmt.Errorf("vm add: a VM named %s already exists", *name)
		}
		return fmt.Errorf("vm add: %w", err)
	}
	fmt.Fprintf(a.stdout, "added vm %s (owner %s) -> %s\n", vm.Name, u.Email, vm.Upstream)
	return nil
}

func (a *app) vmList(ctx context.Context, args []string) error {
	fs := a.flagSet("vm list", "vm list [--json]")
	data, db := a.storeFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	s, err := sqlstore.Open(ctx, *db, *data)
	if err != nil {
		return err
	}
	defer s.Close()
	vms, err := s.VMs(ctx, "")
	if err != nil {
		return fmt.Errorf("vm list: %w", err)
	}
	// The owner is shown by email: look each owner up once.
	emails := map[string]string{}
	for _, vm := range vms {
		if _, ok := emails[vm.OwnerID]; ok {
			continue
		}
		u, err := s.UserByID(ctx, vm.OwnerID)
		if err != nil {
			return fmt.Errorf("vm list: owner of %s: %w", vm.Name, err)
		}
		emails[vm.OwnerID] = u.Email
	}
	if *asJSON {
		type jsonVM struct {
			Name     string `json:"vm_name"`
			Owner    string `json:"owner"`
			Upstream string `json:"upstream"`
			Public   bool   `json:"public"`
		}
		out := struct {
			VMs []jsonVM `json:"vms"`
		}{VMs: []jsonVM{}}
		for _, vm := range vms {
			out.VMs = append(out.VMs, jsonVM{vm.Name, emails[vm.OwnerID], vm.Upstream, vm.Public})
		}
		return writeJSON(a.stdout, out)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tOWNER\tUPSTREAM\tPUBLIC")
	for _, vm := range vms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\n", vm.Name, emails[vm.OwnerID], vm.Upstream, vm.Public)
	}
	return tw.Flush()
}

func (a *app) vmRemove(ctx context.Context, args []string) error {
	fs := a.flagSet("vm rm", "vm rm NAME")
	data, db := a.storeFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("vm rm: want exactly one VM name")
	}
	name := fs.Arg(0)
	if err := store.ValidateVMName(name); err != nil {
		return fmt.Errorf("vm rm: %w", err)
	}
	s, err := sqlstore.Open(ctx, *db, *data)
	if err != nil {
		return err
	}
	defer s.Close()
	ev := store.Event{Time: time.Now().UTC(), ActorID: adminActor, Via: store.ViaAdmin, Action: "vm.remove", Subject: name}
	if err := s.RemoveVM(ctx, name, ev); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("vm rm: no VM named %s", name)
		}
		return fmt.Errorf("vm rm: %w", err)
	}
	fmt.Fprintf(a.stdout, "removed vm %s\n", name)
	return nil
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
