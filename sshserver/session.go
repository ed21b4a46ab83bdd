package sshserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/sshcmd"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// sessionChannel wraps gliderlabs' session handler with the per-connection
// session bound and the shutdown rules.
func (s *Server) sessionChannel(srv *ssh.Server, conn *gossh.ServerConn, ch gossh.NewChannel, ctx ssh.Context) {
	st, _ := ctx.Value(connStateKey).(*connState)
	if st == nil {
		ch.Reject(gossh.Prohibited, "no session")
		return
	}
	s.mu.Lock()
	switch {
	case s.closing:
		s.mu.Unlock()
		ch.Reject(gossh.ResourceShortage, "server is shutting down")
		return
	case st.slots >= s.c.MaxSessions, st.open >= 2*s.c.MaxSessions:
		// A slot is freed before the client closes its channel (below);
		// the second bound keeps a client that never closes ended
		// sessions from piling their channels up.
		s.mu.Unlock()
		ch.Reject(gossh.ResourceShortage, "too many sessions on this connection")
		return
	}
	st.open++
	st.slots++
	s.mu.Unlock()
	// The slot goes back before the session's exit status or close is
	// sent: a client that opens its next session as soon as it sees one
	// end must find the slot free. DefaultSessionHandler returns only
	// once the client's close has been read, which may be after its next
	// open has arrived.
	var once sync.Once
	release := func() {
		once.Do(func() {
			s.mu.Lock()
			st.slots--
			s.mu.Unlock()
		})
	}
	defer func() {
		release() // the client closed first, or the channel was never accepted
		s.mu.Lock()
		st.open--
		if s.closing && st.open == 0 {
			st.conn.Close() // drained: let Shutdown finish
		}
		s.mu.Unlock()
	}()
	ssh.DefaultSessionHandler(srv, conn, slotChannel{ch, release}, ctx)
}

// slotChannel is a session's NewChannel whose accepted channel calls
// release before it tells the client the session has ended.
type slotChannel struct {
	gossh.NewChannel
	release func()
}

func (c slotChannel) Accept() (gossh.Channel, <-chan *gossh.Request, error) {
	ch, reqs, err := c.NewChannel.Accept()
	if err != nil {
		return nil, nil, err
	}
	return releasingChannel{ch, c.release}, filterRequests(reqs), nil
}

// filterRequests stands between a session's requests and gliderlabs'
// session handler, which gets wrong what exed does not support:
//
//   - env: gliderlabs keeps every one, without bound; exed uses none, so
//     each is refused;
//   - auth-agent-req@openssh.com: gliderlabs answers "success" to agent
//     forwarding, which exed does not do; x11-req likewise: refused;
//   - window-change: gliderlabs hands each to a channel of one slot that
//     only the REPL reads, so on a command session with a pty the second
//     one blocks its request loop for good, and the session's goroutines
//     (and its slot in the connection's bound) outlive the connection.
//     Only a REPL's window changes go through (its reader drains them
//     until the session ends); the others are answered here and dropped.
//
// Everything else passes unchanged, in order.
func filterRequests(in <-chan *gossh.Request) <-chan *gossh.Request {
	out := make(chan *gossh.Request)
	go func() {
		defer close(out)
		var (
			pty, repl bool
			pending   *gossh.Request // the last window change before the REPL began
		)
		for req := range in {
			switch req.Type {
			case "env", "auth-agent-req@openssh.com", "x11-req":
				req.Reply(false, nil)
				continue
			case "pty-req":
				pty = true
			case "shell", "exec":
				var cmd struct{ Value string }
				gossh.Unmarshal(req.Payload, &cmd) // shell has none: ""
				started := repl
				repl = pty && cmd.Value == "" // what handle runs as a REPL
				out <- req
				if repl && !started && pending != nil {
					out <- pending
					pending = nil
				}
				continue
			case "window-change":
				switch {
				case !pty:
					req.Reply(false, nil)
				case repl:
					out <- req
				default:
					// A command session's terminal size changes nothing;
					// before a REPL starts, only the latest counts.
					if req.WantReply {
						req.Reply(true, nil)
					}
					pending = &gossh.Request{Type: req.Type, Payload: req.Payload}
				}
				continue
			}
			out <- req
		}
	}()
	return out
}

// releasingChannel calls release before exit-status, exit-signal or close.
type releasingChannel struct {
	gossh.Channel
	release func()
}

func (c releasingChannel) SendRequest(name string, wantReply bool, payload []byte) (bool, error) {
	if name == "exit-status" || name == "exit-signal" {
		c.release()
	}
	return c.Channel.SendRequest(name, wantReply, payload)
}

func (c releasingChannel) Close() error {
	c.release()
	return c.Channel.Close()
}

// handle runs one session: a command, a REPL, or help.
func (s *Server) handle(sess ssh.Session) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		fail(sess, "server is shutting down")
		return
	}
	s.sessions.Add(1)
	s.mu.Unlock()
	defer s.sessions.Done()
	s.c.Metrics.SSHSession()

	ctx := sess.Context()
	caller, err := s.caller(ctx, sess)
	if err != nil {
		fail(sess, err.Error())
		return
	}
	if s.c.LastUsed != nil {
		s.c.LastUsed.Touch(caller.Key.Fingerprint)
	}
	if sess.RawCommand() == "" {
		if _, winCh, isPty := sess.Pty(); isPty {
			sess.Exit(s.repl(ctx, sess, caller, winCh))
			return
		}
	}
	args, err := sshcmd.Split(sess.RawCommand())
	if err != nil {
		s.logCommand(caller, "", 1, 0, 0)
		fail(sess, err.Error())
		return
	}
	sess.Exit(s.run(ctx, caller, args, sshcmd.IO{Stdin: sess, Stdout: sess, Stderr: sess.Stderr()}))
}

// caller is the identity of a session: the key that completed
// authentication, as recorded in the connection's Permissions, looked up
// again now (it may have been removed, renamed or restricted since), with
// its user.
func (s *Server) caller(ctx ssh.Context, sess ssh.Session) (sshcmd.Caller, error) {
	conn, _ := ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn)
	if conn == nil || conn.Permissions == nil || conn.Permissions.Extensions[extFingerprint] == "" {
		return sshcmd.Caller{}, errors.New("not authenticated")
	}
	fp := conn.Permissions.Extensions[extFingerprint]
	// One query for the key and its user: the key may have been removed,
	// renamed or restricted since the connection authenticated.
	k, u, err := s.c.Store.KeyAndUser(ctx, fp)
	switch {
	case errors.Is(err, store.ErrNotFound) && k.Fingerprint == "":
		return sshcmd.Caller{}, errors.New("your key is no longer registered")
	case err != nil:
		s.c.Log.Error("ssh session: key lookup", "fingerprint", fp, "err", err)
		return sshcmd.Caller{}, errors.New(unavailableMessage)
	case k.Generated:
		return sshcmd.Caller{}, errors.New("token keys cannot log in")
	}
	return sshcmd.Caller{User: u, Key: k, Limits: tokens.Effective(k, nil), RemoteAddr: sess.RemoteAddr().String(), Via: store.ViaSSH}, nil
}

// run runs one command line and returns its exit status, printing a
// failure as one line on stderr.
func (s *Server) run(ctx context.Context, c sshcmd.Caller, args []string, stdio sshcmd.IO) int {
	start := time.Now()
	// Commands read at most sshcmd.MaxStdin bytes; the limit is also
	// applied here so no command can read more by accident.
	stdio.Stdin = io.LimitReader(stdio.Stdin, sshcmd.MaxStdin+1)
	out := &countingWriter{w: stdio.Stdout}
	stdio.Stdout = out
	code, path := 0, ""
	inv, err := s.c.Suite.Parse(args)
	if err == nil {
		path = inv.Path()
		err = inv.Run(ctx, c, stdio, false)
	}
	if err != nil {
		fmt.Fprintln(stdio.Stderr, err.Error())
		code = 1
	}
	s.logCommand(c, path, code, time.Since(start), out.n)
	return code
}

// logCommand logs and counts one command: who, with which key, which
// command path, how it ended, how long it took and how many bytes it wrote
// to stdout. Never its arguments, which may hold tokens. path comes from
// the command table (Invocation.Path), "" when none resolved: a fixed set,
// fit for a metrics label.
func (s *Server) logCommand(c sshcmd.Caller, path string, code int, d time.Duration, bytes int64) {
	s.c.Metrics.SSHCommand(path, code)
	if path == "" {
		path = "(unknown)"
	}
	s.c.Log.LogAttrs(context.Background(), slog.LevelInfo, "ssh command",
		slog.String("route", "ssh"),
		slog.String("user", c.User.ID),
		slog.String("fingerprint", c.Key.Fingerprint),
		slog.String("command", path),
		slog.Int("exit", code),
		slog.Duration("duration", d),
		slog.Int64("bytes", bytes),
		slog.String("remote", c.RemoteAddr),
	)
}

// countingWriter counts what a command writes to stdout, for the log.
type countingWriter struct {
	w io.Writer
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n += int64(n)
	return n, err
}

// fail ends a session with one line on stderr and exit status 1.
func fail(sess ssh.Session, msg string) {
	fmt.Fprintln(sess.Stderr(), msg)
	sess.Exit(1)
}
