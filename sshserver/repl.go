package sshserver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gliderlabs/ssh"
	"golang.org/x/term"

	"github.com/exed-dev/exed/sshcmd"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// repl reads command lines from a terminal until exit or Ctrl-D.
func (s *Server) repl(ctx context.Context, sess ssh.Session, c sshcmd.Caller, winCh <-chan ssh.Window) int {
	t := term.NewTerminal(sess, "exed> ")
	go func() {
		for w := range winCh {
			t.SetSize(w.Width, w.Height)
		}
	}()
	fmt.Fprintf(t, "exed: signed in as %s with key %s. Type help for commands, exit or Ctrl-D to leave.\n", c.User.Email, c.Key.Name)
	for {
		line, err := t.ReadLine()
		if err != nil {
			fmt.Fprintln(t)
			return 0 // Ctrl-D, Ctrl-C or the connection went
		}
		line = strings.TrimSpace(line)
		switch line {
		case "":
			continue
		case "exit", "quit", "logout":
			return 0
		}
		args, err := sshcmd.Split(line)
		if err != nil {
			fmt.Fprintln(t, err.Error())
			continue
		}
		// Look the key up again: it may have been removed or restricted
		// since the session began (perhaps by this very session).
		k, err := s.c.Store.Key(ctx, c.Key.Fingerprint)
		switch {
		case errors.Is(err, store.ErrNotFound):
			fmt.Fprintln(t, "your key is no longer registered")
			return 1
		case err != nil:
			s.c.Log.Error("ssh repl: key lookup", "fingerprint", c.Key.Fingerprint, "err", err)
			fmt.Fprintln(t, "internal error: key lookup failed")
			continue
		}
		c.Key, c.Limits = k, tokens.Effective(k, nil)
		s.run(ctx, c, args, sshcmd.IO{Stdin: strings.NewReader(""), Stdout: t, Stderr: t})
	}
}
