// Package sshserver is exed's SSH front: a gliderlabs SSH server that
// authenticates clients by public key against the registry (only the key
// that completed authentication is the caller) and runs one sshcmd command,
// or a REPL on a terminal, per session. It also keeps the server's host key
// and the connection bounds: handshake and idle timeouts, sessions per
// connection, and a graceful Shutdown.
//
// The commands themselves are sshcmd's; this package only carries command
// lines to the Suite and its answers back.
package sshserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/metrics"
	"github.com/exed-dev/exed/sshcmd"
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

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = ssh.ErrServerClosed

// Registry is what the SSH server reads from the store: the key offered
// at login, the key with its user at each session, and the key again
// before each REPL line. store.Store satisfies it.
type Registry interface {
	Key(ctx context.Context, fingerprint string) (store.Key, error)
	KeyAndUser(ctx context.Context, fingerprint string) (store.Key, store.User, error)
}

// ServerConfig configures the SSH server.
type ServerConfig struct {
	Suite   *sshcmd.Suite
	Store   Registry
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
	hangup *hangupConn // the connection as the SSH transport writes to it
	authed atomic.Bool // public-key authentication completed
	open   int         // session channels not yet closed; guarded by Server.mu
	slots  int         // sessions counted against MaxSessions; guarded by Server.mu
}

// contextKey keys the values the server stores in gliderlabs' context.
type contextKey struct{ name string }

var connStateKey = &contextKey{"exed-conn-state"}

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
		return fmt.Errorf("sshserver: shutdown: %w", err)
	}
	return nil
}

// connect runs first for every TCP connection: it registers the
// connection and arms the handshake timeout.
func (s *Server) connect(ctx ssh.Context, conn net.Conn) net.Conn {
	hc := &hangupConn{Conn: quickAck(conn)} // no delayed-ACK stalls for Nagle-on clients
	st := &connState{conn: conn, hangup: hc}
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
	return hc
}

// openConns is the number of connections the server holds now.
func (s *Server) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
