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
		summary: "VMs you can reach",
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

func (s *Suite) ls(ctx context.Context, r *request) error {
	if err := noArgs(r); err != nil {
		return err
	}
	vms, err := s.env.Store.VMs(ctx, r.caller.User.ID)
	if err != nil {
		return fmt.Errorf("list VMs: %w", err)
	}
	list := make([]vmJSON, 0, len(vms))
	kr := r.caller.limits()
	for _, vm := range vms {
		if !kr.AllowsVM(vm.Name) || tokens.Reach(&vm, r.caller.User.ID) == tokens.NoAccess {
			continue // a key restricted to one VM reaches only that one
		}
		list = append(list, vmJSON{vm.Name, s.env.VMURL(vm.Name), vm.Public})
	}
	if r.json {
		return writeJSON(r.out, map[string]any{"vms": list})
	}
	if len(list) == 0 {
		fmt.Fprintln(r.out, "You have no VMs.")
		return nil
	}
	tw := table(r.out)
	fmt.Fprintln(tw, "NAME\tURL\tACCESS")
	for _, vm := range list {
		access := "private"
		if vm.Public {
			access = "public"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", vm.Name, vm.HTTPSURL, access)
	}
	return tw.Flush()
}
