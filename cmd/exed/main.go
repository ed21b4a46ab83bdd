// Command exed runs exe.dev-style SSH-key-signed tokens: an SSH server with
// a command suite that issues, lists and revokes tokens, an HTTP front that
// checks them (a VM auth proxy and the /exec API), and the admin commands
// around one registry. This package only parses flags and wires the
// packages together.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// app carries the process's standard streams and environment, so the
// commands below have no hidden inputs and can be tested in-process.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// notify is signal.Notify: serve asks it for SIGHUP (reload the TLS
	// certificate). nil in tests run in-process: no signal is caught.
	notify func(c chan<- os.Signal, sig ...os.Signal)
}

const usage = `exed: SSH-key-signed access tokens for VMs.

Usage:
  exed serve [flags]          run the SSH server and the HTTP front
  exed user add|list          manage users
  exed vm add|list|rm|share   manage VMs and who they are shared with
  exed audit                  the audit log: every change, who made it, how (--follow streams it)
  exed token mint|inspect     sign a token offline, or decode one
  exed assertion jwks|keys|rotate
                              the signing keys of the identity assertions
  exed host-key               print the SSH host key as a known_hosts line
  exed healthcheck            exit 0 if exed serve answers (the container HEALTHCHECK)
  exed version                print the version
  exed help                   this text

Run "exed COMMAND --help" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, notify: signal.Notify}
	code := a.run(ctx, os.Args[1:], stop)
	stop()
	os.Exit(code)
}

// run dispatches one command line and returns the exit status. stop ends
// the signal handling, so that a second signal kills the process at once.
func (a *app) run(ctx context.Context, args []string, stop func()) int {
	if len(args) == 0 {
		fmt.Fprint(a.stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = a.serve(ctx, rest, stop)
	case "user":
		err = a.user(ctx, rest)
	case "vm":
		err = a.vm(ctx, rest)
	case "audit":
		err = a.audit(ctx, rest)
	case "token":
		err = a.token(rest)
	case "assertion":
		err = a.assertion(ctx, rest)
	case "host-key":
		err = a.hostKey(rest)
	case "healthcheck":
		err = a.healthcheck(ctx, rest)
	case "version", "--version", "-v":
		fmt.Fprintf(a.stdout, "exed %s\n", version)
	case "help", "--help", "-h":
		fmt.Fprint(a.stdout, usage)
	default:
		err = fmt.Errorf("unknown command %q (try \"exed help\")", cmd)
	}
	switch {
	case err == nil:
		return 0
	case err == pflag.ErrHelp:
		return 0
	default:
		fmt.Fprintf(a.stderr, "exed: %s\n", oneLine(err.Error()))
		return 1
	}
}

// flagSet returns a FlagSet that reports errors instead of exiting and
// prints its usage to stdout when --help is asked for.
func (a *app) flagSet(name, synopsis string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(a.stdout, "Usage: exed %s\n\nFlags:\n", synopsis)
		fs.SetOutput(a.stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parse parses args. On --help or -h pflag itself prints the usage (once)
// and parse returns pflag.ErrHelp, so that the command stops with status 0.
func parse(fs *pflag.FlagSet, args []string) error {
	return fs.Parse(args)
}

// oneLine keeps an error message to one line, as the spec promises.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
}

// subcommand is one command of a group such as `exed vm`.
type subcommand struct {
	name    string
	aliases []string
	summary string
	run     func(args []string) error
}

// dispatch runs the subcommand of group that args name, or prints the
// group's usage for --help.
func (a *app) dispatch(group string, args []string, subs []subcommand) error {
	names := make([]string, len(subs))
	for i, sc := range subs {
		names[i] = sc.name
	}
	synopsis := "exed " + group + " " + strings.Join(names, "|")
	if len(args) == 0 {
		return errors.New("usage: " + synopsis)
	}
	switch args[0] {
	case "--help", "-h", "help":
		fmt.Fprintf(a.stdout, "Usage: %s\n\n", synopsis)
		for _, sc := range subs {
			fmt.Fprintf(a.stdout, "  %-8s %s\n", sc.name, sc.summary)
		}
		return nil
	}
	for _, sc := range subs {
		if args[0] == sc.name || slices.Contains(sc.aliases, args[0]) {
			return sc.run(args[1:])
		}
	}
	return fmt.Errorf("unknown %s command %q (want %s)", group, args[0], strings.Join(names, ", "))
}
