package store

import (
	"context"
	"errors"
	"time"
)

// ErrSelfShare: the share would be with the VM's own owner, who reaches it
// already.
var ErrSelfShare = errors.New("VM is shared with its owner")

// Share is one person a VM is shared with. An active share names an
// account (UserID); a pending one only an email, for which no account
// exists yet: it becomes active, in the same transaction, when an account
// with that email is created (AddUser).
type Share struct {
	VM        string
	Email     string // the account's email when active; as the owner typed it when pending
	UserID    string // "" while pending
	InvitedAt time.Time
}

// Active reports whether the share names an account.
func (s Share) Active() bool { return s.UserID != "" }

// SharedVM is a VM shared with a user, with its owner's email.
type SharedVM struct {
	VM
	OwnerEmail string
}

// ShareLink is a link that shares a VM with whoever opens it while logged
// in (the share it makes outlives the link). The link's token is a secret
// that the store never holds: ID is a hash of it (tokens.ShareLinkID), and
// Name a short prefix of it that names the link in listings without
// revealing it.
type ShareLink struct {
	ID         []byte
	Name       string // unique per VM
	VM         string
	CreatedAt  time.Time
	UseCount   int
	LastUsedAt time.Time // zero: never used
}

// ShareStore holds who, besides its owner, may reach a VM: shares (active
// and pending), share links, and the VM's public flag. Every write appends
// its Event in its transaction; those that change who may reach a VM
// announce ShareChanged (or, for the public flag, VMChanged).
type ShareStore interface {
	// AddShare shares vm with email: an active share when an account has
	// that email (compared case-insensitively), else a pending one. It
	// returns the share as stored. ErrNotFound when there is no VM vm,
	// ErrSelfShare when email is its owner's, ErrExists when vm is
	// already shared with email (active or pending).
	AddShare(ctx context.Context, vm, email string, at time.Time, e Event) (Share, error)
	// RemoveShare ends vm's share with email, active or pending.
	// ErrNotFound when there is none.
	RemoveShare(ctx context.Context, vm, email string, e Event) error
	// Shares lists vm's shares, active and pending, in the order they
	// were made.
	Shares(ctx context.Context, vm string) ([]Share, error)
	// SharedVMs lists the VMs shared with userID (active shares), by name.
	SharedVMs(ctx context.Context, userID string) ([]SharedVM, error)
	// SetVMPublic sets vm's public flag (share set-public, set-private).
	// ErrNotFound when there is no VM vm.
	SetVMPublic(ctx context.Context, vm string, public bool, e Event) error

	// AddShareLink stores a new link. ErrNotFound when there is no VM
	// l.VM; ErrExists when its ID, or its Name on that VM, is taken.
	AddShareLink(ctx context.Context, l ShareLink, e Event) error
	// RemoveShareLink removes vm's link with that ID. ErrNotFound when vm
	// has none.
	RemoveShareLink(ctx context.Context, vm string, id []byte, e Event) error
	// ShareLinks lists vm's links, oldest first.
	ShareLinks(ctx context.Context, vm string) ([]ShareLink, error)
	// UseShareLink redeems vm's link with that ID for userID, at: the link
	// counts one more use, and userID, unless it owns vm, gets an active
	// share (kept if it had one already). It returns the link as it now
	// is. ErrNotFound when vm has no such link.
	UseShareLink(ctx context.Context, vm string, id []byte, userID string, at time.Time, e Event) (ShareLink, error)
}
