package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/store/sqlstore"
)

// exed vm share add|remove|list: an operator's view of who may reach a VM,
// the same shares the owner manages with the share commands over SSH.

func (a *app) vmShare(ctx context.Context, args []string) error {
	return a.dispatch("vm share", args, []subcommand{
		{"add", nil, "share a VM with someone, by email (pending until that account exists)", func(args []string) error { return a.vmShareAdd(ctx, args) }},
		{"remove", []string{"rm"}, "stop sharing a VM with someone", func(args []string) error { return a.vmShareRemove(ctx, args) }},
		{"list", []string{"ls"}, "who a VM is shared with, and its share links", func(args []string) error { return a.vmShareList(ctx, args) }},
	})
}

// vmShareArgs parses NAME EMAIL (or NAME alone when wantEmail is false)
// and checks both before the store is opened.
func vmShareArgs(cmd string, args []string, wantEmail bool) (name, email string, err error) {
	n := 1
	if wantEmail {
		n = 2
	}
	if len(args) != n {
		if wantEmail {
			return "", "", fmt.Errorf("%s: want a VM name and an email", cmd)
		}
		return "", "", fmt.Errorf("%s: want exactly one VM name", cmd)
	}
	name = args[0]
	if err := store.ValidateVMName(name); err != nil {
		return "", "", fmt.Errorf("%s: %w", cmd, err)
	}
	if wantEmail {
		email = args[1]
		if err := store.ValidateEmail(email); err != nil {
			return "", "", fmt.Errorf("%s: %w", cmd, err)
		}
	}
	return name, email, nil
}

func (a *app) vmShareAdd(ctx context.Context, args []string) error {
	fs := a.flagSet("vm share add", "vm share add NAME EMAIL")
	data, db := a.storeFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	name, email, err := vmShareArgs("vm share add", fs.Args(), true)
	if err != nil {
		return err
	}
	s, err := sqlstore.Open(ctx, *db, *data)
	if err != nil {
		return err
	}
	defer s.Close()
	now := time.Now().UTC()
	ev := store.Event{Time: now, ActorID: adminActor, Via: store.ViaAdmin, Action: "share.add", Subject: name + " " + email}
	sh, err := s.AddShare(ctx, name, email, now, ev)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("vm share add: no VM named %s", name)
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("vm share add: %s is already shared with %s", email, name)
	case errors.Is(err, store.ErrSelfShare):
		return fmt.Errorf("vm share add: %s owns %s", email, name)
	case err != nil:
		return fmt.Errorf("vm share add: %w", err)
	}
	if sh.Active() {
		fmt.Fprintf(a.stdout, "shared vm %s with %s (active)\n", name, sh.Email)
	} else {
		fmt.Fprintf(a.stdout, "shared vm %s with %s (pending: no account has that email yet; user add makes it active)\n", name, sh.Email)
	}
	return nil
}

func (a *app) vmShareRemove(ctx context.Context, args []string) error {
	fs := a.flagSet("vm share remove", "vm share remove NAME EMAIL")
	data, db := a.storeFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	name, email, err := vmShareArgs("vm share remove", fs.Args(), true)
	if err != nil {
		return err
	}
	s, err := sqlstore.Open(ctx, *db, *data)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.VM(ctx, name); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("vm share remove: no VM named %s", name)
	} else if err != nil {
		return fmt.Errorf("vm share remove: %w", err)
	}
	ev := store.Event{Time: time.Now().UTC(), ActorID: adminActor, Via: store.ViaAdmin, Action: "share.remove", Subject: name + " " + email}
	switch err := s.RemoveShare(ctx, name, email, ev); {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("vm share remove: %s is not shared with %s", name, email)
	case err != nil:
		return fmt.Errorf("vm share remove: %w", err)
	}
	fmt.Fprintf(a.stdout, "vm %s is no longer shared with %s\n", name, email)
	return nil
}

func (a *app) vmShareList(ctx context.Context, args []string) error {
	fs := a.flagSet("vm share list", "vm share list NAME [--json]")
	data, db := a.storeFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	name, _, err := vmShareArgs("vm share list", fs.Args(), false)
	if err != nil {
		return err
	}
	s, err := sqlstore.Open(ctx, *db, *data)
	if err != nil {
		return err
	}
	defer s.Close()
	vm, err := s.VM(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("vm share list: no VM named %s", name)
	} else if err != nil {
		return fmt.Errorf("vm share list: %w", err)
	}
	shares, err := s.Shares(ctx, name)
	if err != nil {
		return fmt.Errorf("vm share list: %w", err)
	}
	links, err := s.ShareLinks(ctx, name)
	if err != nil {
		return fmt.Errorf("vm share list: %w", err)
	}
	status := func(sh store.Share) string {
		if sh.Active() {
			return "active"
		}
		return "pending"
	}
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	access := "private"
	if vm.Public {
		access = "public"
	}
	if *asJSON {
		// The fields of share show (less its url: an operator's command
		// knows no listener).
		type user struct {
			Email     string `json:"email"`
			Status    string `json:"status"`
			InvitedAt string `json:"invited_at"`
		}
		type link struct {
			Token      string `json:"token"`
			CreatedAt  string `json:"created_at"`
			UseCount   int    `json:"use_count"`
			LastUsedAt string `json:"last_used_at,omitempty"`
		}
		out := struct {
			VMName string `json:"vm_name"`
			Status string `json:"status"`
			Users  []user `json:"users"`
			Links  []link `json:"links"`
		}{VMName: name, Status: access, Users: []user{}, Links: []link{}}
		for _, sh := range shares {
			out.Users = append(out.Users, user{sh.Email, status(sh), rfc(sh.InvitedAt)})
		}
		for _, l := range links {
			j := link{Token: l.Name, CreatedAt: rfc(l.CreatedAt), UseCount: l.UseCount}
			if !l.LastUsedAt.IsZero() {
				j.LastUsedAt = rfc(l.LastUsedAt)
			}
			out.Links = append(out.Links, j)
		}
		return writeJSON(a.stdout, out)
	}
	fmt.Fprintf(a.stdout, "vm %s (%s)\n", name, access)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EMAIL\tSTATUS\tINVITED")
	for _, sh := range shares {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", sh.Email, status(sh), rfc(sh.InvitedAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(links) > 0 {
		fmt.Fprintln(tw, "\nLINK\tCREATED\tUSES")
		for _, l := range links {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", l.Name, rfc(l.CreatedAt), l.UseCount)
		}
	}
	return tw.Flush()
}
