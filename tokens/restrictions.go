package tokens

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/exed-dev/exed/store"
)

// Restrictions are the limits a key carries (ssh-key add --vm/--cmds/--exp,
// or those recorded on a generated token key): the one type every rule about
// them goes through — the Verifier, SSH login, the command gate, minting and
// adding keys, and what ls and ssh-key list show.
//
// The zero value restricts nothing.
type Restrictions struct {
	VM        string    // the only VM it may be used for; "" for any
	Cmds      []string  // the only commands it may run; nil for any, [] for none
	ExpiresAt time.Time // when it stops working; zero for never
}

// KeyRestrictions returns the restrictions k carries.
func KeyRestrictions(k store.Key) Restrictions {
	return Restrictions{VM: k.VM, Cmds: k.Cmds, ExpiresAt: k.ExpiresAt}
}

// Any reports whether r restricts anything at all.
func (r Restrictions) Any() bool {
	return r.VM != "" || r.Cmds != nil || !r.ExpiresAt.IsZero()
}

// Expired reports whether r's expiry has come: from ExpiresAt on, not
// after it. This is the one expiry boundary, used everywhere.
func (r Restrictions) Expired(now time.Time) bool {
	return !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt)
}

// AllowsVM reports whether r may be used for VM vm; vm "" means the API,
// which a VM-restricted key may not use.
func (r Restrictions) AllowsVM(vm string) bool {
	return r.VM == "" || r.VM == vm
}

// AllowsCommand reports whether r may run the command at path (a canonical
// path such as "ssh-key list").
func (r Restrictions) AllowsCommand(path string) bool {
	return r.Cmds == nil || CommandAllowed(r.Cmds, path)
}

// Errors of Within and Covers: the restriction that was exceeded. Their
// texts complete a sentence that begins with the restricted key ("key
// "ci" is restricted to VM web: ...").
var (
	ErrOutsideVM   = errors.New("outside the VM restriction")
	ErrOutsideCmds = errors.New("outside the cmds restriction")
	ErrOutsideExp  = errors.New("outside the expiry restriction")
)

// outside is a Within or Covers refusal: which restriction, in words.
type outside struct {
	kind error
	msg  string
}

func (e *outside) Error() string        { return e.msg }
func (e *outside) Is(target error) bool { return target == e.kind }

// Within fits wanted inside r, for a key or token made under r: what wanted
// leaves open (no VM, nil cmds, no expiry) r fills in; what it asks beyond
// r is refused, naming the restriction. So anything made by a restricted
// key is at least as restricted as the key itself.
func (r Restrictions) Within(wanted Restrictions) (Restrictions, error) {
	if r.VM != "" {
		switch wanted.VM {
		case "":
			wanted.VM = r.VM
		case r.VM:
		default:
			return Restrictions{}, &outside{ErrOutsideVM, fmt.Sprintf("is restricted to VM %s: --vm %s is outside it", r.VM, wanted.VM)}
		}
	}
	if r.Cmds != nil {
		if wanted.Cmds == nil {
			wanted.Cmds = slices.Clone(r.Cmds)
		}
		for _, c := range wanted.Cmds {
			if !CommandAllowed(r.Cmds, c) {
				return Restrictions{}, &outside{ErrOutsideCmds, fmt.Sprintf("is restricted to cmds %s: %q is outside them", listOrNothing(r.Cmds), c)}
			}
		}
	}
	if !r.ExpiresAt.IsZero() {
		switch {
		case wanted.ExpiresAt.IsZero():
			wanted.ExpiresAt = r.ExpiresAt
		case wanted.ExpiresAt.After(r.ExpiresAt):
			return Restrictions{}, &outside{ErrOutsideExp, fmt.Sprintf("expires at %s: --exp cannot be later", rfc3339(r.ExpiresAt))}
		}
	}
	return wanted, nil
}

// Covers returns nil when other is at least as restricted as r in every
// respect (same VM, a subset of the cmds, an expiry no later), so that a
// key under r may act on a key under other; otherwise an error naming the
// first respect in which other is wider ("is restricted to VM web and that
// key is not"). An unrestricted r covers everything.
func (r Restrictions) Covers(other Restrictions) error {
	switch {
	case r.VM != "" && other.VM == "":
		return &outside{ErrOutsideVM, fmt.Sprintf("is restricted to VM %s and that key is not", r.VM)}
	case r.VM != "" && other.VM != r.VM:
		return &outside{ErrOutsideVM, fmt.Sprintf("is restricted to VM %s and that key is for VM %s", r.VM, other.VM)}
	case r.Cmds != nil && other.Cmds == nil:
		return &outside{ErrOutsideCmds, fmt.Sprintf("is restricted to cmds %s and that key is not", listOrNothing(r.Cmds))}
	case !r.ExpiresAt.IsZero() && other.ExpiresAt.IsZero():
		return &outside{ErrOutsideExp, fmt.Sprintf("expires at %s and that key does not", rfc3339(r.ExpiresAt))}
	case !r.ExpiresAt.IsZero() && other.ExpiresAt.After(r.ExpiresAt):
		return &outside{ErrOutsideExp, fmt.Sprintf("expires at %s and that key expires later", rfc3339(r.ExpiresAt))}
	}
	if r.Cmds != nil {
		for _, c := range other.Cmds {
			if !CommandAllowed(r.Cmds, c) {
				return &outside{ErrOutsideCmds, fmt.Sprintf("is restricted to cmds %s and that key may run %q", listOrNothing(r.Cmds), c)}
			}
		}
	}
	return nil
}

// String describes r in one line: "vm web, cmds ls, whoami, expires
// 2026-01-02T15:04:05Z", or "none".
func (r Restrictions) String() string {
	var parts []string
	if r.VM != "" {
		parts = append(parts, "vm "+r.VM)
	}
	if r.Cmds != nil {
		parts = append(parts, "cmds "+listOrNothing(r.Cmds))
	}
	if !r.ExpiresAt.IsZero() {
		parts = append(parts, "expires "+rfc3339(r.ExpiresAt))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// listOrNothing shows a cmds list; an empty one allows nothing.
func listOrNothing(l []string) string {
	if len(l) == 0 {
		return "nothing"
	}
	return strings.Join(l, ", ")
}

// rfc3339 formats t as exed shows times: RFC 3339, UTC, seconds.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
