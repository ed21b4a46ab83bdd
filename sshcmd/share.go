package sshcmd

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// The share group: who, besides its owner, may reach a VM. Every
// subcommand takes the VM first and runs only for its owner: the gate is
// in shareSubcommand, so that a new subcommand cannot forget it.

// shareCommand is the share group: on its own it lists its subcommands.
func (s *Suite) shareCommand() *command {
	return &command{
		path:    "share",
		usage:   "SUBCOMMAND",
		summary: "who may reach your VMs: people, links, public",
		group:   true,
	}
}

// shareHandler runs a share subcommand on vm, a VM the caller owns; args
// are the arguments after the VM's name.
type shareHandler func(ctx context.Context, r *request, vm store.VM, args []string) error

// shareSubcommand declares "share NAME": its arguments are the VM and then
// nargs more, and its handler runs only once the VM is found to be the
// caller's (ownedVM).
func (s *Suite) shareSubcommand(name, usage, summary, details string, nargs int, flags func(fs *pflag.FlagSet) shareHandler) *command {
	path := "share " + name
	return &command{
		path:    path,
		usage:   usage,
		summary: summary,
		details: details,
		flags: func(fs *pflag.FlagSet) handler {
			h := flags(fs)
			return func(ctx context.Context, r *request) error {
				if len(r.args) != 1+nargs {
					return fmt.Errorf("usage: %s %s", path, usage)
				}
				vm, err := s.ownedVM(ctx, r, r.args[0])
				if err != nil {
					return err
				}
				return h(ctx, r, vm, r.args[1:])
			}
		},
	}
}

// errNotOwned is the whole answer to a share command on a VM that does not
// exist or is not the caller's: the two are not told apart.
func errNotOwned(name string) error {
	return fmt.Errorf("VM %q not found or access denied", name)
}

// ownedVM returns the VM called name if the caller owns it (Reach) and the
// caller may act on it (Caller.Limits: a key restricted to one VM shares only that
// one).
func (s *Suite) ownedVM(ctx context.Context, r *request, name string) (store.VM, error) {
	if err := store.ValidateVMName(name); err != nil {
		return store.VM{}, err
	}
	if !r.caller.limits().AllowsVM(name) {
		return store.VM{}, errNotOwned(name)
	}
	vm, err := s.env.Store.VM(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.VM{}, errNotOwned(name)
	case err != nil:
		return store.VM{}, fmt.Errorf("look up VM: %w", err)
	case tokens.Reach(&vm, r.caller.User.ID) != tokens.AccessOwner:
		return store.VM{}, errNotOwned(name)
	}
	return vm, nil
}

// vmStatus is "public" or "private", as share's JSON says it.
func vmStatus(vm store.VM) string { return access(vm.Public) }

// shareUserJSON is one entry of share show's users.
type shareUserJSON struct {
	Email     string `json:"email"`
	Status    string `json:"status"` // "active" or "pending"
	InvitedAt string `json:"invited_at"`
}

// shareLinkJSON is one entry of share show's links. Token is the link's
// name: the token itself is never stored, so never shown again.
type shareLinkJSON struct {
	Token      string `json:"token"`
	CreatedAt  string `json:"created_at"`
	UseCount   int    `json:"use_count"`
	LastUsedAt string `json:"last_used_at,omitempty"`
}

func (s *Suite) shareShowCommand() *command {
	return s.shareSubcommand("show", "<vm>", "who may reach one of your VMs",
		"Lists the people it is shared with (active, or pending until an account has that\n"+
			"email) and its share links. A link's token is shown once, by share add-link; here\n"+
			"a link goes by its first characters.",
		0, func(fs *pflag.FlagSet) shareHandler { return s.shareShow })
}

func (s *Suite) shareShow(ctx context.Context, r *request, vm store.VM, _ []string) error {
	shares, err := s.env.Store.Shares(ctx, vm.Name)
	if err != nil {
		return fmt.Errorf("list shares: %w", err)
	}
	links, err := s.env.Store.ShareLinks(ctx, vm.Name)
	if err != nil {
		return fmt.Errorf("list share links: %w", err)
	}
	users := make([]shareUserJSON, 0, len(shares))
	for _, sh := range shares {
		status := "pending"
		if sh.Active() {
			status = "active"
		}
		users = append(users, shareUserJSON{sh.Email, status, rfc3339(sh.InvitedAt)})
	}
	ls := make([]shareLinkJSON, 0, len(links))
	for _, l := range links {
		j := shareLinkJSON{Token: l.Name, CreatedAt: rfc3339(l.CreatedAt), UseCount: l.UseCount}
		if !l.LastUsedAt.IsZero() {
			j.LastUsedAt = rfc3339(l.LastUsedAt)
		}
		ls = append(ls, j)
	}
	url := s.env.VMURL(vm.Name)
	if r.json {
		return writeJSON(r.out, struct {
			VMName string          `json:"vm_name"`
			Status string          `json:"status"`
			URL    string          `json:"url"`
			Users  []shareUserJSON `json:"users"`
			Links  []shareLinkJSON `json:"links"`
		}{vm.Name, vmStatus(vm), url, users, ls})
	}
	fmt.Fprintf(r.out, "%s: %s, %s\n\n", vm.Name, vmStatus(vm), url)
	if len(users) == 0 {
		fmt.Fprintln(r.out, "Shared with nobody.")
	} else {
		tw := table(r.out)
		fmt.Fprintln(tw, "EMAIL\tSTATUS\tINVITED")
		for _, sh := range shares {
			status := "pending"
			if sh.Active() {
				status = "active"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", sh.Email, status, day(sh.InvitedAt))
		}
		tw.Flush()
	}
	fmt.Fprintln(r.out)
	if len(links) == 0 {
		fmt.Fprintln(r.out, "No share links.")
		return nil
	}
	tw := table(r.out)
	fmt.Fprintln(tw, "LINK\tCREATED\tUSES\tLAST USED")
	for _, l := range links {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", l.Name, day(l.CreatedAt), l.UseCount, lastUsed(l.LastUsedAt))
	}
	return tw.Flush()
}

func (s *Suite) shareAddCommand() *command {
	return s.shareSubcommand("add", "<vm> <email> [--message M]", "share one of your VMs with someone, by email",
		"They then reach it with their own tokens and browser sessions, under their own\n"+
			"identity. An email with no account yet is a pending share: it becomes active when\n"+
			"the account is created (exed user add).",
		1, func(fs *pflag.FlagSet) shareHandler {
			// exe.dev emails the message; exed sends no email.
			fs.String("message", "", "a `MESSAGE` for them (accepted as exe.dev does; exed sends no email, so it is not delivered)")
			return s.shareAdd
		})
}

func (s *Suite) shareAdd(ctx context.Context, r *request, vm store.VM, args []string) error {
	email := args[0]
	if err := store.ValidateEmail(email); err != nil {
		return err
	}
	if strings.EqualFold(email, r.caller.User.Email) {
		return fmt.Errorf("you own %s: there is no need to share it with yourself", vm.Name)
	}
	sh, err := s.env.Store.AddShare(ctx, vm.Name, email, r.now, s.event(r, "share.add", vm.Name+" "+email))
	switch {
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("%s is already shared with %s", email, vm.Name)
	case errors.Is(err, store.ErrSelfShare):
		return fmt.Errorf("you own %s: there is no need to share it with yourself", vm.Name)
	case errors.Is(err, store.ErrNotFound):
		return errNotOwned(vm.Name) // removed meanwhile
	case err != nil:
		return fmt.Errorf("share: %w", err)
	}
	s.env.Log.Info("vm shared", "vm", vm.Name, "user", r.caller.User.ID, "active", sh.Active(), "by", r.caller.Key.Fingerprint)
	msg := fmt.Sprintf("%s can now reach %s with their own tokens and sessions", sh.Email, vm.Name)
	if !sh.Active() {
		msg = fmt.Sprintf("%s has no account yet: the share of %s becomes active when it is created", sh.Email, vm.Name)
	}
	if r.json {
		return writeJSON(r.out, struct {
			Status     string `json:"status"`
			VMName     string `json:"vm_name"`
			SharedWith string `json:"shared_with"`
			Message    string `json:"message"`
		}{"success", vm.Name, sh.Email, msg})
	}
	fmt.Fprintf(r.out, "%s.\n", msg)
	return nil
}

func (s *Suite) shareRemoveCommand() *command {
	return s.shareSubcommand("remove", "<vm> <email>", "stop sharing one of your VMs with someone",
		"Their tokens and sessions for it are refused from the next request.",
		1, func(fs *pflag.FlagSet) shareHandler { return s.shareRemove })
}

func (s *Suite) shareRemove(ctx context.Context, r *request, vm store.VM, args []string) error {
	email := args[0]
	if err := store.ValidateEmail(email); err != nil {
		return err
	}
	switch err := s.env.Store.RemoveShare(ctx, vm.Name, email, s.event(r, "share.remove", vm.Name+" "+email)); {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%s is not shared with %s (see share show %s)", vm.Name, email, vm.Name)
	case err != nil:
		return fmt.Errorf("unshare: %w", err)
	}
	// From here on the removed user's tokens for vm are refused on this
	// instance: the removal's store.ShareChanged dropped the proxy's
	// cached VM before RemoveShare returned.
	s.env.Log.Info("vm unshared", "vm", vm.Name, "user", r.caller.User.ID, "by", r.caller.Key.Fingerprint)
	return s.writeSuccess(r, vm, fmt.Sprintf("%s can no longer reach %s", email, vm.Name))
}

// writeSuccess prints {"status":"success","vm_name","message"}, or the
// message as a sentence (it starts with an email or a capital).
func (s *Suite) writeSuccess(r *request, vm store.VM, msg string) error {
	if r.json {
		return writeJSON(r.out, struct {
			Status  string `json:"status"`
			VMName  string `json:"vm_name"`
			Message string `json:"message"`
		}{"success", vm.Name, msg})
	}
	fmt.Fprintf(r.out, "%s.\n", msg)
	return nil
}

func (s *Suite) shareSetPublicCommand(public bool) *command {
	name, summary, details := "set-private", "make one of your VMs private: tokens or a session needed", ""
	if public {
		name, summary = "set-public", "make one of your VMs public: anyone may reach it without a token"
		details = "Anonymous visitors reach it without identity headers; a valid token or session\n" +
			"still brings its user's identity, and an invalid token is still refused."
	}
	return s.shareSubcommand(name, "<vm>", summary, details, 0, func(fs *pflag.FlagSet) shareHandler {
		return func(ctx context.Context, r *request, vm store.VM, _ []string) error {
			return s.shareSetPublic(ctx, r, vm, public)
		}
	})
}

func (s *Suite) shareSetPublic(ctx context.Context, r *request, vm store.VM, public bool) error {
	changed := vm.Public != public
	if changed {
		action := "vm.private"
		if public {
			action = "vm.public"
		}
		switch err := s.env.Store.SetVMPublic(ctx, vm.Name, public, s.event(r, action, vm.Name)); {
		case errors.Is(err, store.ErrNotFound):
			return errNotOwned(vm.Name)
		case err != nil:
			return fmt.Errorf("set %s: %w", vmStatus(store.VM{Public: public}), err)
		}
	}
	vm.Public = public
	if r.json {
		return writeJSON(r.out, struct {
			VMName string `json:"vm_name"`
			Status string `json:"status"`
		}{vm.Name, vmStatus(vm)})
	}
	switch {
	case !changed:
		fmt.Fprintf(r.out, "%s is already %s.\n", vm.Name, vmStatus(vm))
	case public:
		fmt.Fprintf(r.out, "%s is now public: anyone may reach %s without a token.\n", vm.Name, s.env.VMURL(vm.Name))
	default:
		fmt.Fprintf(r.out, "%s is now private: only you and those it is shared with may reach it.\n", vm.Name)
	}
	return nil
}

// maxLinkTries bounds add-link's attempts at a link whose name is free on
// the VM (two links' names collide with odds of 2^-40 per pair).
const maxLinkTries = 3

func (s *Suite) shareAddLinkCommand() *command {
	return s.shareSubcommand("add-link", "<vm>", "a link that shares one of your VMs with whoever opens it",
		"Anyone logged in who opens the link gets an active share, which outlives the link.\n"+
			"The link is shown once; share show lists it by its first characters, which\n"+
			"share remove-link also takes.",
		0, func(fs *pflag.FlagSet) shareHandler { return s.shareAddLink })
}

func (s *Suite) shareAddLink(ctx context.Context, r *request, vm store.VM, _ []string) error {
	var token string
	var l store.ShareLink
	for try := 1; ; try++ {
		token = tokens.NewShareLink()
		l = store.ShareLink{ID: tokens.ShareLinkID(token), Name: tokens.ShareLinkName(token), VM: vm.Name, CreatedAt: r.now.UTC()}
		err := s.env.Store.AddShareLink(ctx, l, s.event(r, "share.link.add", vm.Name+" "+l.Name))
		if err == nil {
			break
		}
		switch {
		case errors.Is(err, store.ErrExists) && try < maxLinkTries:
			continue
		case errors.Is(err, store.ErrNotFound):
			return errNotOwned(vm.Name)
		default:
			return fmt.Errorf("add share link: %w", err)
		}
	}
	s.env.Log.Info("share link added", "vm", vm.Name, "link", l.Name, "user", r.caller.User.ID, "by", r.caller.Key.Fingerprint)
	url := s.env.VMURL(vm.Name) + "/?share=" + token
	if r.json {
		return writeJSON(r.out, struct {
			Status string `json:"status"`
			VMName string `json:"vm_name"`
			Token  string `json:"token"`
			URL    string `json:"url"`
		}{"success", vm.Name, token, url})
	}
	fmt.Fprintf(r.out, "Share link for %s (it will not be shown again):\n\n%s\n\n", vm.Name, url)
	fmt.Fprintf(r.out, "Whoever opens it logged in gets an active share of %s. Remove it with: share remove-link %s %s\n", vm.Name, vm.Name, l.Name)
	return nil
}

func (s *Suite) shareRemoveLinkCommand() *command {
	return s.shareSubcommand("remove-link", "<vm> <token>", "remove a share link of one of your VMs",
		"Give the link's token, or its name as share show lists it. The shares the link\n"+
			"made stay (share remove ends them).",
		1, func(fs *pflag.FlagSet) shareHandler { return s.shareRemoveLink })
}

func (s *Suite) shareRemoveLink(ctx context.Context, r *request, vm store.VM, args []string) error {
	l, err := s.findShareLink(ctx, vm, args[0])
	if err != nil {
		return err
	}
	switch err := s.env.Store.RemoveShareLink(ctx, vm.Name, l.ID, s.event(r, "share.link.remove", vm.Name+" "+l.Name)); {
	case errors.Is(err, store.ErrNotFound):
		return errNoSuchLink(vm.Name)
	case err != nil:
		return fmt.Errorf("remove share link: %w", err)
	}
	s.env.Log.Info("share link removed", "vm", vm.Name, "link", l.Name, "user", r.caller.User.ID, "by", r.caller.Key.Fingerprint)
	return s.writeSuccess(r, vm, fmt.Sprintf("Share link %s of %s removed (the shares it made stay)", l.Name, vm.Name))
}

func errNoSuchLink(vm string) error {
	return fmt.Errorf("%s has no such share link (give its token, or its name as share show %s lists it)", vm, vm)
}

// findShareLink finds vm's link by its token or its name. The token is
// never repeated in an error.
func (s *Suite) findShareLink(ctx context.Context, vm store.VM, ref string) (store.ShareLink, error) {
	if !tokens.IsShareLinkName(ref) && tokens.ParseShareLink(ref) != nil {
		return store.ShareLink{}, errNoSuchLink(vm.Name)
	}
	links, err := s.env.Store.ShareLinks(ctx, vm.Name)
	if err != nil {
		return store.ShareLink{}, fmt.Errorf("list share links: %w", err)
	}
	var id []byte
	if tokens.ParseShareLink(ref) == nil {
		id = tokens.ShareLinkID(ref)
	}
	for _, l := range links {
		if l.Name == ref || id != nil && subtle.ConstantTimeCompare(l.ID, id) == 1 {
			return l, nil
		}
	}
	return store.ShareLink{}, errNoSuchLink(vm.Name)
}
