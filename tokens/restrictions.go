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

// Effective is what a caller may do: the one place that computes it, for
// the command gate, minting and adding keys, over SSH, /exec and the web
// page alike. perms is nil for an SSH session, where only the key counts;
// for a token it is the token's permissions, and the result is the
// intersection of the key's restrictions and the token's own limits:
//
//   - expiry: the earlier of the key's ExpiresAt and the token's end. A
//     token is valid through the second exp (the Verifier's rule), so it
//     ends at exp+1: the gate refuses it from the same instant as the
//     proxy does, and whatever it mints or adds ends no later (a
//     generated key carries that end as its ExpiresAt, which refuses
//     its token from then on, whatever the token's own exp);
//   - cmds: the token's cmds (absent: the default list), intersected with
//     the key's;
//   - VM: the key's (a token's namespace is checked by the Verifier).
//
// So a token minted by a token, or a key added by one, is at least as
// restricted as the token that made it (attenuation): it cannot outlive
// it nor run a command it may not.
func Effective(key store.Key, perms *Permissions) Restrictions {
	r := KeyRestrictions(key)
	if perms == nil {
		return r
	}
	tok := Restrictions{ExpiresAt: perms.End()}
	if perms.HasCmds {
		tok.Cmds = slices.Clone(perms.Cmds)
		if tok.Cmds == nil {
			tok.Cmds = []string{}
		}
	} else {
		tok.Cmds = DefaultCmds()
	}
	return r.Intersect(tok)
}

// noVM is a VM name no VM can have (VM names are DNS labels): the VM of an
// intersection of two different VM restrictions, which allows no VM.
const noVM = "-"

// Intersect is what both r and other allow: the narrower VM (two different
// VMs leave none, and then no command either), the commands in both lists
// (in r's order; nil is every command), the earlier expiry.
func (r Restrictions) Intersect(other Restrictions) Restrictions {
	out := Restrictions{VM: r.VM, ExpiresAt: r.ExpiresAt}
	switch {
	case r.VM == "":
		out.VM = other.VM
	case other.VM != "" && other.VM != r.VM:
		out.VM = noVM
	}
	switch {
	case out.VM == noVM:
		out.Cmds = []string{}
	case r.Cmds == nil:
		out.Cmds = slices.Clone(other.Cmds)
	case other.Cmds == nil:
		out.Cmds = slices.Clone(r.Cmds)
	default:
		out.Cmds = []string{}
		for _, c := range r.Cmds {
			if CommandAllowed(other.Cmds, c) && !slices.Contains(out.Cmds, c) {
				out.Cmds = append(out.Cmds, c)
			}
		}
	}
	if !other.ExpiresAt.IsZero() && (out.ExpiresAt.IsZero() || other.ExpiresAt.Before(out.ExpiresAt)) {
		out.ExpiresAt = other.ExpiresAt
	}
	return out
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
