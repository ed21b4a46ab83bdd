package store

import (
	"context"
	"time"
)

// Browser sessions: how a person (not a program) reaches a private VM. The
// `browser` command mints a login link (LoginLink); opening it starts a
// session on the main host (cookie exe-auth); from there the main host
// hands each VM host a magic secret (MagicSecret), which that host trades
// for a session of its own (cookie login-with-exe-PORT). Only SHA-256
// hashes of the link token, the secret and the cookie values are stored,
// so a copy of the database logs nobody in.
//
// Each row records the key that minted the link it descends from
// (Fingerprint): removing that key ends them all (ON DELETE CASCADE), and
// OnlyVM and the expiries carry that key's restrictions along, so that a
// browser never reaches further, or for longer, than the key that logged
// it in. A row for a VM (VM, OnlyVM) goes when the VM is removed, so a new
// VM of the same name inherits nothing.

// LoginLink is the stored half of a `browser` link: single use, short
// lived.
type LoginLink struct {
	Hash        []byte // SHA-256 of the link's token
	UserID      string
	Fingerprint string   // the key of the caller that minted it
	OnlyVM      string   // the caller's VM restriction, carried to the session: "" for none
	Cmds        []string // the caller's command restriction, carried to the session: nil for none
	TargetVM    string   // the VM the browser goes on to after login ("" for the main host)
	Path        string   // the path it goes on to ("" for /)
	CreatedAt   time.Time
	ExpiresAt   time.Time // the link's own expiry
	// SessionExpiresAt is the latest the session the link starts may end:
	// the session lifetime from minting, cut short by the minting key's own
	// expiry.
	SessionExpiresAt time.Time
}

// MagicSecret is the stored half of a secret the main host hands to one VM
// host, bound to the user and that exact host (with port): single use,
// shorter lived still.
type MagicSecret struct {
	Hash             []byte // SHA-256 of the secret
	UserID           string
	Host             string // "web.exe.xyz:443": the host, with port, it is good for
	VM               string // that host's VM
	Fingerprint      string // carried from the main-host session
	OnlyVM           string // carried from the main-host session
	CreatedAt        time.Time
	ExpiresAt        time.Time // the secret's own expiry
	SessionExpiresAt time.Time // the latest the VM session may end: the main session's end
}

// Session is one browser's login on one host.
type Session struct {
	ID          string // "ses…": public, for `sessions revoke`
	Hash        []byte // SHA-256 of the cookie value; the value itself is never stored
	UserID      string
	Host        string   // host:port the cookie was minted for
	CookieName  string   // "exe-auth" or "login-with-exe-PORT"
	VM          string   // the VM of a VM host's session; "" on the main host
	Fingerprint string   // the key that minted the login link
	OnlyVM      string   // that key's VM restriction: "" for none
	Cmds        []string // the login's command restriction (a token's cmds): nil for none
	CreatedAt   time.Time
	ExpiresAt   time.Time
	LastUsedAt  time.Time // zero: never; written at most once a minute
	UserAgent   string
}

// Expired reports whether s has ended by now: from ExpiresAt on.
func (s Session) Expired(now time.Time) bool { return !now.Before(s.ExpiresAt) }

// SessionStore holds login links, magic secrets and browser sessions.
// Redemptions are atomic: of two concurrent redemptions of one link or
// secret, on one instance or two sharing a database, exactly one wins.
// Every method that ends sessions announces SessionChanged for each.
type SessionStore interface {
	// AddLoginLink stores a login link.
	AddLoginLink(ctx context.Context, l LoginLink, e Event) error
	// RedeemLoginLink consumes the link whose hash is given, if it has not
	// expired at now, and starts s in its place, in one transaction. The
	// store fills s's UserID, Fingerprint, OnlyVM and Cmds from the link, ends s
	// at the link's SessionExpiresAt if that comes before s.ExpiresAt (or
	// s.ExpiresAt is zero), and fills e's ActorID, if empty, with the
	// user. ErrNotFound when the
	// link is unknown, used or expired: then nothing is written.
	RedeemLoginLink(ctx context.Context, hash []byte, now time.Time, s Session, e Event) (LoginLink, Session, error)
	// AddMagicSecret stores a magic secret.
	AddMagicSecret(ctx context.Context, m MagicSecret, e Event) error
	// RedeemMagicSecret consumes the secret whose hash is given, if it is
	// for host and has not expired at now, and starts s in its place, as
	// RedeemLoginLink does (s's UserID, VM, Fingerprint and OnlyVM come
	// from the secret, and its SessionExpiresAt bounds s's). ErrNotFound
	// when it is unknown,
	// used, expired or for another host: then nothing is written, and a
	// secret presented on the wrong host stays unused.
	RedeemMagicSecret(ctx context.Context, hash []byte, host string, now time.Time, s Session, e Event) (Session, error)
	// SessionAndUser looks a session up by its cookie's hash, with its
	// user, in one query: the proxy's lookup. Expiry is the caller's to
	// check (Session.Expired).
	SessionAndUser(ctx context.Context, hash []byte) (Session, User, error)
	// Sessions lists a user's sessions, oldest first.
	Sessions(ctx context.Context, userID string) ([]Session, error)
	// RevokeSession ends one of userID's sessions by its ID. ErrNotFound
	// when userID has no such session.
	RevokeSession(ctx context.Context, userID, id string, e Event) error
	// RevokeSessions ends all of userID's sessions and returns how many
	// there were.
	RevokeSessions(ctx context.Context, userID string, e Event) (int, error)
	// TouchSessions sets last_used_at for the given sessions, keyed by
	// string(Hash) (a batch from a throttled LastUsedWriter). Unknown
	// ones are ignored.
	TouchSessions(ctx context.Context, used map[string]time.Time) error
	// PurgeExpired deletes the links, secrets and sessions expired at now
	// and returns how many sessions went. It is housekeeping, not a change
	// anyone made: it appends no event.
	PurgeExpired(ctx context.Context, now time.Time) (int, error)
}
