package sshserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// authLookupTimeout bounds the registry lookup made for each offered key.
const authLookupTimeout = 5 * time.Second

// extFingerprint is the Permissions extension that carries the identity
// from authentication to the session: the fingerprint of the key that
// completed authentication.
const extFingerprint = "exed-key-fingerprint"

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
			if errors.Is(err, errUnavailable) {
				return nil, s.unavailable(st, err)
			}
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
				return nil, errors.New("sshserver: verified key is not the approved one")
			}
			// Look again: the key may have gone between offer and signature.
			switch k, err := s.loginKey(ctx, pub); {
			case errors.Is(err, errKeyExpired):
				// Told to the key's holder (ssh prints the banner), so
				// that a CI job whose deploy key expired says so.
				msg := fmt.Sprintf("exed: key %q expired at %s\r\n", k.Name, k.ExpiresAt.UTC().Format(time.RFC3339))
				return nil, &gossh.BannerError{Err: err, Message: msg}
			case errors.Is(err, errUnavailable):
				return nil, s.unavailable(st, err)
			case err != nil:
				return nil, err
			}
			if st != nil {
				st.authed.Store(true)
			}
			return &gossh.Permissions{Extensions: map[string]string{extFingerprint: fp}}, nil
		},
		NoClientAuthCallback: func(gossh.ConnMetadata) (*gossh.Permissions, error) {
			return nil, errors.New("sshserver: public key authentication required")
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
		return store.Key{}, errors.New("sshserver: unknown key")
	case err != nil:
		s.c.Log.Error("ssh auth: key lookup", "err", err)
		return store.Key{}, errUnavailable
	case k.Generated:
		return store.Key{}, errors.New("sshserver: token keys cannot log in")
	case tokens.KeyRestrictions(k).Expired(s.c.Now()):
		return k, errKeyExpired
	}
	return k, nil
}

// errKeyExpired is loginKey's refusal of a login key past its --exp.
var errKeyExpired = errors.New("sshserver: key expired")

// errUnavailable is loginKey's answer when the registry cannot say whether
// a key may log in (down, timing out): the fault is the server's, not the
// key's.
var errUnavailable = errors.New("sshserver: registry unavailable")

// unavailableBanner is what the client is told when the registry cannot be
// asked about its key. ssh prints a banner (unless run with -q).
const unavailableBanner = "exed: " + unavailableMessage + "\r\n"

// unavailableMessage is the one line for a registry that cannot be asked.
const unavailableMessage = "service unavailable: the registry cannot be reached; try again later"

// unavailable is the login's answer when the registry cannot be reached: a
// banner saying so, then the connection closed right after it, so that the
// client does not go on to report "Permission denied (publickey)" as if its
// key were unknown.
func (s *Server) unavailable(st *connState, err error) error {
	if st != nil && st.hangup != nil {
		st.hangup.afterNextWrite()
	}
	return &gossh.BannerError{Err: err, Message: unavailableBanner}
}
