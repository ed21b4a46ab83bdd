// Package sshcmd is exed's command table: the commands (help, whoami, ls,
// ssh-key …, exe0-to-exe1, share …, log, browser, sessions), how a command
// line is split and parsed, and how each command prints text or JSON.
//
// The command table exists once, here: SSH sessions (package sshserver) and
// the HTTP /exec API both dispatch through it. Each command declares its
// flags beside its handler (one file per command group); the dispatcher in
// this file parses flags, answers --help, enforces the caller key's own
// restrictions and buffers output so that nothing reaches stdout when a
// command fails. It knows nothing of SSH connections or HTTP.
package sshcmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/exed-dev/exed/internal/flaghint"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// Registry is what the commands read and write: the caller's keys, exe1
// handles, VMs (read, and shared), the audit log (read), and browser
// sessions and login links.
// store.Store satisfies it.
type Registry interface {
	store.KeyStore
	store.Exe1Store
	store.ShareStore
	store.SessionStore
	VM(ctx context.Context, name string) (store.VM, error)
	VMs(ctx context.Context, ownerID string) ([]store.VM, error)
	QueryEvents(ctx context.Context, q store.EventQuery) ([]store.Event, error)
}

// Env holds the suite's dependencies, passed in explicitly.
type Env struct {
	Store Registry
	// Verifier checks tokens for exe0-to-exe1 and check-api-key. Its cache
	// hears of removed keys from the store's change feed (store.Changes),
	// which whoever builds the Env subscribes it to: revocation is then
	// immediate on this instance.
	Verifier *tokens.Verifier
	Domain   string // "exe.dev": API namespace v0@Domain
	VMDomain string // "exe.xyz": VM namespace v0@NAME.VMDomain
	// VMURL returns the URL users reach a VM at (ls's https_url, the curl
	// line of generate-api-key); nil means "https://NAME.VMDomain".
	VMURL func(vm string) string
	// APIURL is the main host's URL as users reach it (the curl line of an
	// API token, the link `browser` prints); "" means "https://Domain".
	APIURL string
	Now    func() time.Time // nil means time.Now
	Log    *slog.Logger     // nil means discard
}

// Caller is who runs a command: the key that completed SSH
// authentication, the key that signed the /exec token, or the key that
// logged a browser in (the web page), and its user.
//
// Limits are the caller's effective restrictions (tokens.Effective): the
// key's own over SSH, the key's intersected with the token's exp and cmds
// over /exec, those the browser's login carried on the web page. The
// command gate, and everything a command makes or acts on (minting,
// adding, removing and renaming keys, the VMs it may name), go by them,
// never by the raw key; the key's own restrictions always apply as well,
// so a Caller whose Limits were left zero is limited by its key alone.
type Caller struct {
	User       store.User
	Key        store.Key
	Limits     tokens.Restrictions
	Token      bool // the caller is a token Key signed (/exec), not a session of Key's
	RemoteAddr string
	// Via is where the command came in (store.ViaSSH, ViaExec, ViaWeb),
	// as the audit log records it.
	Via string
	// Credential is what the audit log records the change was made with,
	// when it is not Key itself: the browser session's id for the web
	// page. "" means Key's fingerprint.
	Credential string
}

// subject names the caller in a refusal: `key "laptop"`, or for a token
// `token of key "laptop"` (its limits may be the token's, not the key's).
func (c Caller) subject() string {
	if c.Token {
		return fmt.Sprintf("token of key %q", c.Key.Name)
	}
	return fmt.Sprintf("key %q", c.Key.Name)
}

// limits is what c may do: its Limits within its key's own restrictions.
func (c Caller) limits() tokens.Restrictions {
	return tokens.KeyRestrictions(c.Key).Intersect(c.Limits)
}

// IO is a command's standard streams.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// ErrUnknownCommand is returned (wrapped, naming the command) by Parse
// and Run for a command line that names no command.
var ErrUnknownCommand = errors.New("unknown command")

// MaxStdin bounds what a command reads from standard input (a public key
// for ssh-key add): the largest OpenSSH public key (RSA 16384) is ~2.8 KB,
// so 16 KiB is ample and keeps a client from making us buffer more. The
// SSH server applies it to a session's stdin as well.
const MaxStdin = 16 << 10

// Suite runs the command suite. It is safe for concurrent use.
type Suite struct {
	env      Env
	ns       tokens.Namespaces
	commands []*command          // in the order help lists them
	byPath   map[string]*command // "ssh-key list" → its command
}

// handler runs one parsed invocation of a command.
type handler func(ctx context.Context, r *request) error

// command is one entry of the command table.
type command struct {
	path    string // canonical path, the name cmds grant: "ssh-key list"
	usage   string // synopsis after the path: "[--name N] [PUBKEY]"
	summary string // one line, for help's list and JSON description
	details string // optional paragraph for --help
	group   bool   // a group ("ssh-key") only lists its subcommands
	// flags declares the command's flags on fs and returns its handler, so
	// a command's flags sit beside the code that reads them. A fresh
	// FlagSet is made for every invocation: the Suite is shared.
	flags func(fs *pflag.FlagSet) handler
}

// request is one invocation of a command, as its handler sees it.
type request struct {
	caller Caller
	args   []string  // positional arguments, flags removed
	stdin  io.Reader // at most MaxStdin bytes
	out    *bytes.Buffer
	json   bool
	now    time.Time
}

// New returns a Suite over env.
func New(env Env) *Suite {
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Log == nil {
		env.Log = slog.New(slog.DiscardHandler)
	}
	if env.VMURL == nil {
		ns := tokens.Namespaces{Domain: env.Domain, VMDomain: env.VMDomain}
		env.VMURL = func(vm string) string { return "https://" + ns.VMHost(vm) }
	}
	if env.APIURL == "" {
		env.APIURL = "https://" + env.Domain
	}
	s := &Suite{env: env, ns: tokens.Namespaces{Domain: env.Domain, VMDomain: env.VMDomain}, byPath: make(map[string]*command)}
	s.commands = []*command{
		s.helpCommand(),
		s.whoamiCommand(),
		s.lsCommand(),
		s.sshKeyCommand(),
		s.sshKeyListCommand(),
		s.sshKeyAddCommand(),
		s.sshKeyRemoveCommand(),
		s.sshKeyRenameCommand(),
		s.generateAPIKeyCommand(),
		s.checkAPIKeyCommand(),
		s.exe0ToExe1Command(),
		s.shareCommand(),
		s.shareShowCommand(),
		s.shareAddCommand(),
		s.shareRemoveCommand(),
		s.shareSetPublicCommand(true),
		s.shareSetPublicCommand(false),
		s.shareAddLinkCommand(),
		s.shareRemoveLinkCommand(),
		s.logCommand(),
		s.browserCommand(),
		s.sessionsCommand(),
		s.sessionsRevokeCommand(),
	}
	for _, c := range s.commands {
		s.byPath[c.path] = c
	}
	return s
}

// lookup finds the command args name and returns it with the rest of the
// line (flags and arguments). No command at all means help.
func (s *Suite) lookup(args []string) (*command, []string, error) {
	if len(args) == 0 {
		return s.byPath["help"], nil, nil
	}
	name := args[0]
	if name == "--help" || name == "-h" {
		return s.byPath["help"], args[1:], nil
	}
	c, ok := s.byPath[name]
	if !ok || strings.Contains(name, " ") {
		return nil, nil, unknownCommand(name)
	}
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		// A group only has subcommands; a command may have some too
		// ("sessions revoke"), and otherwise takes arguments.
		if sub, ok := s.byPath[name+" "+args[1]]; ok && !strings.Contains(args[1], " ") {
			return sub, args[2:], nil
		}
		if c.group {
			return nil, nil, unknownCommand(name + " " + args[1])
		}
	}
	return c, args[1:], nil
}

// echoable is what an unknown command name must look like to be repeated
// in the error: anything else (a pasted token, control characters) is not.
var echoable = regexp.MustCompile(`^[a-z0-9-]{1,32}( [a-z0-9-]{1,32})?$`)

func unknownCommand(name string) error {
	if !echoable.MatchString(name) {
		return fmt.Errorf("%w (run \"help\" for the list)", ErrUnknownCommand)
	}
	return fmt.Errorf("%w %q (run \"help\" for the list)", ErrUnknownCommand, name)
}

// Invocation is a command line resolved against the command table and
// parsed against its command's flags, once: what the caller logs, counts
// or authorizes (Path, IsHelp) is exactly what Run then runs. Make one with
// Suite.Parse; it is meant to be run once.
type Invocation struct {
	s        *Suite
	cmd      *command
	fs       *pflag.FlagSet
	run      handler
	args     []string
	json     bool
	help     bool  // only prints usage: --help/-h, help itself, a bare group
	helpFlag bool  // --help or -h was given
	err      error // the flags did not parse; Run returns it
}

// Path is the command's canonical path ("ssh-key list", "whoami"), the
// name a key's or token's cmds grant. An empty line is "help".
func (inv *Invocation) Path() string { return inv.cmd.path }

// IsHelp reports whether the line only asks for help (help, a bare group,
// or --help/-h parsed as a flag): Run then only prints usage and changes
// nothing, which is why /exec allows it whatever the token's cmds. A line
// whose flags do not parse is not help ("--label --help" sets the label;
// "--bogus --help" is a flag error).
func (inv *Invocation) IsHelp() bool { return inv.err == nil && inv.help }

// Parse resolves args (a split command line) to its command and parses
// the command's flags. It fails only when args name no command
// (ErrUnknownCommand, wrapped, naming it). Flags that do not parse still
// give an Invocation, with its Path, that is not help and whose Run
// returns the flag error: /exec answers an unknown command (404) before it
// checks the token, and a bad flag (422) only after the token's grant for
// that command has been checked.
func (s *Suite) Parse(args []string) (*Invocation, error) {
	c, rest, err := s.lookup(args)
	if err != nil {
		return nil, err
	}
	return s.parseFlags(c, rest), nil
}

// parse is Parse with a flag error returned as an error.
func (s *Suite) parse(args []string) (*Invocation, error) {
	inv, err := s.Parse(args)
	if err != nil {
		return nil, err
	}
	if inv.err != nil {
		return nil, inv.err
	}
	return inv, nil
}

// parseFlags parses rest against c's flags.
func (s *Suite) parseFlags(c *command, rest []string) *Invocation {
	fs := pflag.NewFlagSet(c.path, pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, never printed
	fs.Usage = func() {}
	fs.SortFlags = false
	inv := &Invocation{s: s, cmd: c, fs: fs}
	if c.flags != nil {
		inv.run = c.flags(fs)
	}
	fs.BoolVar(&inv.json, "json", false, "print JSON (field names are stable: use them in scripts)")
	switch err := fs.Parse(rest); {
	case errors.Is(err, pflag.ErrHelp):
		// Parsing stopped at --help: a --json after it still counts.
		inv.help, inv.helpFlag = true, true
		inv.json = inv.json || wantsJSON(rest)
	case err != nil:
		inv.err = fmt.Errorf("%s: %v (see %s --help)", c.path, flaghint.Explain(fs, err), c.path)
		return inv
	}
	inv.args = fs.Args()
	if c.group || c.path == "help" {
		inv.help = true
	}
	return inv
}

// wantsJSON reports whether args hold --json as a flag (before any "--").
func wantsJSON(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--json", "--json=true":
			return true
		}
	}
	return false
}

// Run parses and runs one command line (already split): Parse, then the
// Invocation's Run, for callers that need nothing from the parse.
func (s *Suite) Run(ctx context.Context, c Caller, args []string, stdio IO, forceJSON bool) error {
	inv, err := s.Parse(args)
	if err != nil {
		return err
	}
	return inv.Run(ctx, c, stdio, forceJSON)
}

// Run runs the parsed command line for caller c. forceJSON outputs JSON as
// if --json was given (/exec). It returns nil on success; on failure an
// error whose text is one clear line for the user, and nothing is written
// to Stdout.
func (inv *Invocation) Run(ctx context.Context, c Caller, stdio IO, forceJSON bool) error {
	if inv.err != nil {
		return inv.err
	}
	s := inv.s
	asJSON := inv.json || forceJSON
	var out bytes.Buffer
	now := s.env.Now()
	var err error
	switch {
	case inv.cmd.path == "help" && !inv.helpFlag:
		err = s.help(&out, inv.args, asJSON)
	case inv.help:
		err = s.usage(&out, inv.cmd, inv.fs, asJSON)
	default:
		if err = s.authorize(c, inv.cmd.path, now); err != nil {
			return err
		}
		stdin := stdio.Stdin
		if stdin == nil {
			stdin = strings.NewReader("")
		}
		err = inv.run(ctx, &request{
			caller: c,
			args:   inv.args,
			stdin:  stdin,
			out:    &out,
			json:   asJSON,
			now:    now,
		})
	}
	if err != nil {
		if msg := err.Error(); strings.ContainsAny(msg, "\r\n") {
			return errors.New(oneLine(msg))
		}
		return err
	}
	if _, err := stdio.Stdout.Write(out.Bytes()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// keyAdmin are the commands that change which keys an account has, or
// who may reach its VMs; a restricted key may run them only when its cmds
// name them explicitly.
var keyAdmin = []string{"ssh-key add", "ssh-key remove", "ssh-key rename",
	"share add", "share remove", "share set-public", "share set-private", "share add-link", "share remove-link"}

// authorize is the gate every command passes (the parent carries it, so a
// new command cannot forget it): the caller's effective restrictions (its
// key's, and over /exec its token's too).
func (s *Suite) authorize(c Caller, path string, now time.Time) error {
	lim := c.limits()
	if lim.Expired(now) {
		return fmt.Errorf("%s expired at %s", c.subject(), rfc3339(lim.ExpiresAt))
	}
	if !lim.AllowsCommand(path) {
		return fmt.Errorf("%s may only run %s: %q is not among them", c.subject(), listOrNothing(lim.Cmds), path)
	}
	if slices.Contains(keyAdmin, path) && lim.Any() && !tokens.CommandAllowed(lim.Cmds, path) {
		return fmt.Errorf("%s is restricted (%s): it cannot run %q unless its cmds name it", c.subject(), lim, path)
	}
	return nil
}

func listOrNothing(l []string) string {
	if len(l) == 0 {
		return "nothing"
	}
	return strings.Join(l, ", ")
}

// oneLine keeps an error message to one line, as the spec promises.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return s
}

// rfc3339 formats t as the JSON times are: RFC 3339, UTC, seconds.
func rfc3339(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}
