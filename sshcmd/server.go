package sshcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/metrics"
	"github.com/exed-dev/exed/store"
)

// Defaults for ServerConfig's bounds.
const (
	// DefaultHandshakeTimeout bounds key exchange plus authentication, so
	// unauthenticated connections cannot pile up (OpenSSH allows 120s for
	// a person typing a passphrase; keys from an agent need far less).
	DefaultHandshakeTimeout = 30 * time.Second
	// DefaultIdleTimeout closes a connection with no traffic, e.g. a REPL
	// left open or a client that never sends stdin's EOF.
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultMaxSessions bounds concurrent sessions (channels) on one
	// connection; OpenSSH's MaxSessions default is 10.
	DefaultMaxSessions = 10
)

// authLookupTimeout bounds the registry lookup made for each offered key.
const authLookupTimeout = 5 * time.Second

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = ssh.ErrServerClosed

// ServerRegistry is what the SSH server reads from the store: the key
// offered at login, the key with its user at each session, and the key
// again before each REPL line. store.Store satisfies it.
type ServerRegistry interface {
	Key(ctx context.Context, fingerprint string) (store.Key, error)
	KeyAndUser(ctx context.Context, fingerprint string) (store.Key, store.User, error)
}

// ServerConfig configures the SSH server.
type ServerConfig struct {
	Suite   *Suite
	Store   ServerRegistry
	HostKey gossh.Signer
	Log     *slog.Logger // nil means discard

	HandshakeTimeout time.Duration // 0: DefaultHandshakeTimeout
	IdleTimeout      time.Duration // 0: DefaultIdleTimeout; < 0: none
	MaxTimeout       time.Duration // absolute connection lifetime; 0: none
	MaxSessions      int           // per connection; 0: DefaultMaxSessions

	// LastUsed, if set, is told each key that logs in
	// (*store.LastUsedWriter, which throttles the writes).
	LastUsed interface{ Touch(fingerprint string) }
	Now      func() time.Time // nil means time.Now
	Metrics  *metrics.Metrics // connections, sessions, auth failures, commands; nil means none
}

// Server is the SSH front of the command suite: public-key authentication
// against the registry, then one command (or a REPL) per session.
type Server struct {
	c   ServerConfig
	srv *ssh.Server

	mu       sync.Mutex
	closing  bool
	conns    map[*connState]struct{}
	sessions sync.WaitGroup // running session handlers; Add only under mu while !closing
}

// connState is what the server keeps about one connection.
type connState struct {
	conn   net.Conn
	authed atomic.Bool // public-key authentication completed
	open   int         // session channels not yet closed; guarded by Server.mu
	slots  int         // sessions counted against MaxSessions; guarded by Server.mu
}

// contextKey keys the values the server stores in gliderlabs' context.
type contextKey struct{ name string }

var connStateKey = &contextKey{"exed-conn-state"}

// extFingerprint is the Permissions extension that carries the identity
// from authentication to the session: the fingerprint of the key that
// completed authentication.
const extFingerprint = "exed-key-fingerprint"

// NewServer returns a Server for c.
func NewServer(c ServerConfig) *Server {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	switch {
	case c.IdleTimeout == 0:
		c.IdleTimeout = DefaultIdleTimeout
	case c.IdleTimeout < 0:
		c.IdleTimeout = 0
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	s := &Server{c: c, conns: make(map[*connState]struct{})}
	s.srv = &ssh.Server{
		Handler:              s.handle,
		HostSigners:          []ssh.Signer{c.HostKey},
		IdleTimeout:          c.IdleTimeout,
		MaxTimeout:           c.MaxTimeout,
		ConnCallback:         s.connect,
		ServerConfigCallback: s.serverConfig,
		ChannelHandlers:      map[string]ssh.ChannelHandler{"session": s.sessionChannel},
		// No request or subsystem handlers: port forwarding, agent
		// channels and sftp are all refused.
		RequestHandlers:   map[string]ssh.RequestHandler{},
		SubsystemHandlers: map[string]ssh.SubsystemHandler{},
	}
	return s
}

// Serve accepts connections on ln until Shutdown; it then returns
// ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(ln)
}

// Shutdown stops accepting connections and new sessions, closes idle
// connections, and waits until running sessions finish or ctx is done;
// then it closes whatever is left and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for st := range s.conns {
		if st.open == 0 {
			st.conn.Close()
		}
	}
	s.mu.Unlock()

	err := s.srv.Shutdown(ctx) // listeners, then waits for connections
	if err == nil {
		done := make(chan struct{})
		go func() { s.sessions.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		s.srv.Close()
		return fmt.Errorf("sshcmd: shutdown: %w", err)
	}
	return nil
}

// connect runs first for every TCP connection: it registers the
// connection and arms the handshake timeout.
func (s *Server) connect(ctx ssh.Context, conn net.Conn) net.Conn {
	st := &connState{conn: conn}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil // gliderlabs closes it
	}
	s.conns[st] = struct{}{}
	s.mu.Unlock()
	ctx.SetValue(connStateKey, st)
	s.c.Metrics.SSHConnOpened()

	// gliderlabs has no handshake timeout and resets deadlines on every
	// read, so a timer closes the connection unless authentication has
	// completed by then.
	timer := time.AfterFunc(s.c.HandshakeTimeout, func() {
		if !st.authed.Load() {
			conn.Close()
		}
	})
	context.AfterFunc(ctx, func() { // ctx ends when the connection closes
		timer.Stop()
		s.mu.Lock()
		delete(s.conns, st)
		s.mu.Unlock()
		s.c.Metrics.SSHConnClosed()
	})
	return quickAck(conn) // no delayed-ACK stalls for Nagle-on clients
}

// serverConfig builds the x/crypto configuration for one connection.
//
// Identity is the key that COMPLETED authentication. x/crypto calls
// PublicKeyCallback for every key a client offers, including keys it only
// queries without proving it holds them, so gliderlabs' PublicKeyHandler
// (which records the last key seen in the shared context and returns one
// shared *Permissions) can name the wrong key: CVE-2024-45337's class, as in
// soft-serve GHSA-pchf-49fh-w34r. Instead PublicKeyCallback only says
// whether a key may log in and returns a fresh Permissions per key, and
// VerifiedPublicKeyCallback — which x/crypto calls only after the client's
// signature with that very key has verified — records the fingerprint in
// the connection's final Permissions. Sessions read it from the
// *gossh.ServerConn and nowhere else.
//
// With no gliderlabs auth handlers set, gliderlabs turns NoClientAuth on;
// NoClientAuthCallback then refuses "none" so that public keys are the
// only way in.
func (s *Server) serverConfig(ctx ssh.Context) *gossh.ServerConfig {
	st, _ := ctx.Value(connStateKey).(*connState)
	return &gossh.ServerConfig{
		// SupportedAlgorithms leaves out SHA-1 "ssh-rsa" signatures.
		PublicKeyAuthAlgorithms: gossh.SupportedAlgorithms().PublicKeyAuths,
		PublicKeyCallback: func(meta gossh.ConnMetadata, pub gossh.PublicKey) (*gossh.Permissions, error) {
			k, err := s.loginKey(ctx, pub)
			if err != nil && !errors.Is(err, errKeyExpired) {
				return nil, err
			}
			// An expired key is refused below, once the client has proved
			// it holds the key: only then may the refusal say why.
			return &gossh.Permissions{Extensions: map[string]string{extFingerprint: k.Fingerprint}}, nil
		},
		VerifiedPublicKeyCallback: func(meta gossh.ConnMetadata, pub gossh.PublicKey, perms *gossh.Permissions, _ string) (*gossh.Permissions, error) {
			fp := keys.Fingerprint(pub)
			if perms == nil || perms.Extensions[extFingerprint] != fp {
				return nil, errors.New("sshcmd: verified key is not the approved one")
			}
			// Look again: the key may have gone between offer and signature.
			switch k, err := s.loginKey(ctx, pub); {
			case errors.Is(err, errKeyExpired):
				// Told to the key's holder (ssh prints the banner), so
				// that a CI job whose deploy key expired says so.
				msg := fmt.Sprintf("exed: key %q expired at %s\r\n", k.Name, rfc3339(k.ExpiresAt))
				return nil, &gossh.BannerError{Err: err, Message: msg}
			case err != nil:
				return nil, err
			}
			if st != nil {
				st.authed.Store(true)
			}
			return &gossh.Permissions{Extensions: map[string]string{extFingerprint: fp}}, nil
		},
		NoClientAuthCallback: func(gossh.ConnMetadata) (*gossh.Permissions, error) {
			return nil, errors.New("sshcmd: public key authentication required")
		},
		AuthLogCallback: func(meta gossh.ConnMetadata, method string, err error) {
			if err != nil && method != "none" {
				s.c.Metrics.SSHAuthFailure()
				s.c.Log.Debug("ssh auth failed", "remote", meta.RemoteAddr().String(), "method", method, "err", err)
			}
		},
	}
}

// loginKey returns the registered key pub may log in with: known, not a
// generated (token) key, not expired (errKeyExpired, with the key).
func (s *Server) loginKey(ctx context.Context, pub gossh.PublicKey) (store.Key, error) {
	if err := keys.AllowedKey(pub); err != nil {
		return store.Key{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, authLookupTimeout)
	defer cancel()
	k, err := s.c.Store.Key(ctx, keys.Fingerprint(pub))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Key{}, errors.New("sshcmd: unknown key")
	case err != nil:
		s.c.Log.Error("ssh auth: key lookup", "err", err)
		return store.Key{}, errors.New("sshcmd: key lookup failed")
	case k.Generated:
		return store.Key{}, errors.New("sshcmd: token keys cannot log in")
	case !k.ExpiresAt.IsZero() && s.c.Now().After(k.ExpiresAt):
		return k, errKeyExpired
	}
	return k, nil
}

// errKeyExpired is loginKey's refusal of a login key past its --exp.
var errKeyExpired = errors.New("sshcmd: key expired")

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
	return releasingChannel{ch, c.release}, reqs, nil
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
	args, err := Split(sess.RawCommand())
	if err != nil {
		s.logCommand(caller, "", 1, 0, 0)
		fail(sess, err.Error())
		return
	}
	sess.Exit(s.run(ctx, caller, args, IO{Stdin: sess, Stdout: sess, Stderr: sess.Stderr()}))
}

// caller is the identity of a session: the key that completed
// authentication, as recorded in the connection's Permissions, looked up
// again now (it may have been removed, renamed or restricted since), with
// its user.
func (s *Server) caller(ctx ssh.Context, sess ssh.Session) (Caller, error) {
	conn, _ := ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn)
	if conn == nil || conn.Permissions == nil || conn.Permissions.Extensions[extFingerprint] == "" {
		return Caller{}, errors.New("not authenticated")
	}
	fp := conn.Permissions.Extensions[extFingerprint]
	// One query for the key and its user: the key may have been removed,
	// renamed or restricted since the connection authenticated.
	k, u, err := s.c.Store.KeyAndUser(ctx, fp)
	switch {
	case errors.Is(err, store.ErrNotFound) && k.Fingerprint == "":
		return Caller{}, errors.New("your key is no longer registered")
	case err != nil:
		s.c.Log.Error("ssh session: key lookup", "fingerprint", fp, "err", err)
		return Caller{}, errors.New("internal error: key lookup failed")
	case k.Generated:
		return Caller{}, errors.New("token keys cannot log in")
	}
	return Caller{User: u, Key: k, RemoteAddr: sess.RemoteAddr().String()}, nil
}

// run runs one command line and returns its exit status, printing a
// failure as one line on stderr.
func (s *Server) run(ctx context.Context, c Caller, args []string, stdio IO) int {
	start := time.Now()
	// Commands read at most maxStdin bytes; the limit is also applied here
	// so no command can read more by accident.
	stdio.Stdin = io.LimitReader(stdio.Stdin, maxStdin+1)
	out := &countingWriter{w: stdio.Stdout}
	stdio.Stdout = out
	code := 0
	if err := s.c.Suite.Run(ctx, c, args, stdio, false); err != nil {
		fmt.Fprintln(stdio.Stderr, err.Error())
		code = 1
	}
	path, _ := s.c.Suite.Resolve(args)
	s.logCommand(c, path, code, time.Since(start), out.n)
	return code
}

// logCommand logs and counts one command: who, with which key, which
// command path, how it ended, how long it took and how many bytes it wrote
// to stdout. Never its arguments, which may hold tokens. path comes from
// the command table (Suite.Resolve), "" when none resolved: a fixed set,
// fit for a metrics label.
func (s *Server) logCommand(c Caller, path string, code int, d time.Duration, bytes int64) {
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

// repl reads command lines from a terminal until exit or Ctrl-D.
func (s *Server) repl(ctx context.Context, sess ssh.Session, c Caller, winCh <-chan ssh.Window) int {
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
		args, err := Split(line)
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
		c.Key = k
		s.run(ctx, c, args, IO{Stdin: strings.NewReader(""), Stdout: t, Stderr: t})
	}
}

// fail ends a session with one line on stderr and exit status 1.
func fail(sess ssh.Session, msg string) {
	fmt.Fprintln(sess.Stderr(), msg)
	sess.Exit(1)
}
