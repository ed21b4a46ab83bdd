package sshcmd

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

func (s *Suite) helpCommand() *command {
	return &command{
		path:    "help",
		usage:   "[CMD]",
		summary: "list commands, or show one command's usage",
		// help has no handler: Run answers it from the table (see help).
	}
}

// sshKeyCommand is the ssh-key group: on its own it lists its subcommands.
func (s *Suite) sshKeyCommand() *command {
	return &command{
		path:    "ssh-key",
		usage:   "SUBCOMMAND",
		summary: "manage your SSH keys and API tokens",
		group:   true,
	}
}

// commandJSON is one entry of help's JSON output.
type commandJSON struct {
	Name        string        `json:"name"`
	Description string        `json:"description"`
	Subcommands []commandJSON `json:"subcommands,omitempty"`
}

// help writes the list of commands, or one command's usage when args
// name one ("help ssh-key add").
func (s *Suite) help(w *bytes.Buffer, args []string, asJSON bool) error {
	if len(args) > 0 {
		if args[0] == "help" && len(args) == 1 {
			return s.usage(w, s.byPath["help"], nil, asJSON)
		}
		inv, err := s.parse(append(args[:len(args):len(args)], "--help"))
		if err != nil {
			return err
		}
		return s.usage(w, inv.cmd, inv.fs, asJSON)
	}
	if asJSON {
		var list []commandJSON
		for _, c := range s.commands {
			if strings.Contains(c.path, " ") {
				continue // listed under its group
			}
			list = append(list, s.commandObject(c))
		}
		return writeJSON(w, map[string]any{"commands": list})
	}
	fmt.Fprintln(w, "Commands:")
	tw := table(w)
	for _, c := range s.commands {
		if c.group {
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\n", c.path, c.summary)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nRun \"help CMD\" or \"CMD --help\" for a command's flags; every command takes --json.")
	return nil
}

// commandObject renders c, with its subcommands when it is a group.
func (s *Suite) commandObject(c *command) commandJSON {
	j := commandJSON{Name: c.path, Description: c.summary}
	if !strings.Contains(c.path, " ") { // a group, or a command with subcommands
		for _, sub := range s.commands {
			if strings.HasPrefix(sub.path, c.path+" ") {
				j.Subcommands = append(j.Subcommands, commandJSON{Name: sub.path, Description: sub.summary})
			}
		}
	}
	return j
}

func synopsis(c *command) string {
	if c.usage == "" {
		return c.path
	}
	return c.path + " " + c.usage
}

// usage writes one command's help: synopsis, summary, details and flags.
func (s *Suite) usage(w io.Writer, c *command, fs *pflag.FlagSet, asJSON bool) error {
	if asJSON {
		return writeJSON(w, map[string]any{"commands": []commandJSON{s.commandObject(c)}})
	}
	fmt.Fprintf(w, "Usage: %s\n\n%s.\n", synopsis(c), capitalize(c.summary))
	if c.details != "" {
		fmt.Fprintf(w, "\n%s\n", c.details)
	}
	var subs []*command
	for _, sub := range s.commands {
		if strings.HasPrefix(sub.path, c.path+" ") {
			subs = append(subs, sub)
		}
	}
	if len(subs) > 0 {
		fmt.Fprintln(w, "\nSubcommands:")
		tw := table(w)
		for _, sub := range subs {
			fmt.Fprintf(tw, "  %s\t%s\n", sub.path, sub.summary)
		}
		tw.Flush()
	}
	if fs != nil && fs.HasFlags() {
		fmt.Fprintln(w, "\nFlags:")
		tw := table(w)
		fs.VisitAll(func(f *pflag.Flag) {
			// A `QUOTED` word in a flag's usage names its value.
			name, usage := pflag.UnquoteUsage(f)
			flag := "--" + f.Name
			if f.Value.Type() != "bool" {
				flag += " " + name
			}
			if d := f.DefValue; d != "" && d != "[]" && d != "false" {
				usage += " (default " + d + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\n", flag, usage)
		})
		tw.Flush()
	}
	return nil
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Paths returns every command's canonical path ("help", "ssh-key",
// "ssh-key list", …) in the order help lists them: what a REPL completes.
func (s *Suite) Paths() []string {
	paths := make([]string, len(s.commands))
	for i, c := range s.commands {
		paths[i] = c.path
	}
	return paths
}
