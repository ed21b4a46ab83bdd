package sshcmd

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/exed-dev/exed/tokens"
)

func (s *Suite) lsCommand() *command {
	return &command{
		path:    "ls",
		summary: "VMs you can reach: yours, and those shared with you",
		flags: func(fs *pflag.FlagSet) handler {
			return s.ls
		},
	}
}

type vmJSON struct {
	Name     string `json:"vm_name"`
	HTTPSURL string `json:"https_url"`
	Public   bool   `json:"public"`
}

type sharedVMJSON struct {
	vmJSON
	OwnerEmail string `json:"owner_email"`
}

func (s *Suite) ls(ctx context.Context, r *request) error {
	if err := noArgs(r); err != nil {
		return err
	}
	uid := r.caller.User.ID
	vms, err := s.env.Store.VMs(ctx, uid)
	if err != nil {
		return fmt.Errorf("list VMs: %w", err)
	}
	shared, err := s.env.Store.SharedVMs(ctx, uid)
	if err != nil {
		return fmt.Errorf("list shared VMs: %w", err)
	}
	kr := r.caller.limits()
	list := make([]vmJSON, 0, len(vms))
	for _, vm := range vms {
		if !kr.AllowsVM(vm.Name) || tokens.Reach(&vm, uid) == tokens.NoAccess {
			continue // a key restricted to one VM reaches only that one
		}
		list = append(list, vmJSON{vm.Name, s.env.VMURL(vm.Name), vm.Public})
	}
	sharedList := make([]sharedVMJSON, 0, len(shared))
	for _, vm := range shared {
		if !kr.AllowsVM(vm.Name) || tokens.Reach(&vm.VM, uid) != tokens.AccessShare {
			continue
		}
		sharedList = append(sharedList, sharedVMJSON{vmJSON{vm.Name, s.env.VMURL(vm.Name), vm.Public}, vm.OwnerEmail})
	}
	if r.json {
		return writeJSON(r.out, struct {
			VMs       []vmJSON       `json:"vms"`
			SharedVMs []sharedVMJSON `json:"shared_vms"`
		}{list, sharedList})
	}
	if len(list) == 0 && len(sharedList) == 0 {
		fmt.Fprintln(r.out, "You have no VMs.")
		return nil
	}
	if len(list) > 0 {
		tw := table(r.out)
		fmt.Fprintln(tw, "NAME\tURL\tACCESS")
		for _, vm := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", vm.Name, vm.HTTPSURL, access(vm.Public))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(sharedList) > 0 {
		if len(list) > 0 {
			fmt.Fprintln(r.out)
		}
		fmt.Fprintln(r.out, "Shared with you:")
		tw := table(r.out)
		fmt.Fprintln(tw, "NAME\tURL\tACCESS\tOWNER")
		for _, vm := range sharedList {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", vm.Name, vm.HTTPSURL, access(vm.Public), vm.OwnerEmail)
		}
		return tw.Flush()
	}
	return nil
}

func access(public bool) string {
	if public {
		return "public"
	}
	return "private"
}
