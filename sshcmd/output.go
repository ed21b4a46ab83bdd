package sshcmd

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/exed-dev/exed/store"
)

// writeJSON writes v as one line of JSON. HTML escaping is off: the output
// is read by jq and scripts, not embedded in pages.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table returns a tabwriter for short aligned text output.
func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// keyJSON is a key as every --json output shows it (whoami, ssh-key
// list): its field names are public API.
type keyJSON struct {
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint"`
	PublicKey   string    `json:"public_key"`
	AddedAt     string    `json:"added_at"`
	LastUsedAt  string    `json:"last_used_at,omitempty"`
	Current     bool      `json:"current"`
	Generated   bool      `json:"generated"`
	VM          string    `json:"vm,omitempty"`
	Cmds        *[]string `json:"cmds,omitempty"` // pointer: [] (allows nothing) must show
	ExpiresAt   string    `json:"expires_at,omitempty"`
}

// keyObject renders k; current marks the key the caller is using.
func keyObject(k store.Key, current bool) keyJSON {
	j := keyJSON{
		Name:        k.Name,
		Fingerprint: k.Fingerprint,
		PublicKey:   k.PublicKey,
		AddedAt:     rfc3339(k.AddedAt),
		Current:     current,
		Generated:   k.Generated,
		VM:          k.VM,
		Cmds:        cmdsField(k.Cmds),
	}
	if !k.LastUsedAt.IsZero() {
		j.LastUsedAt = rfc3339(k.LastUsedAt)
	}
	if !k.ExpiresAt.IsZero() {
		j.ExpiresAt = rfc3339(k.ExpiresAt)
	}
	return j
}

func keyObjects(ks []store.Key, current string) []keyJSON {
	out := make([]keyJSON, 0, len(ks))
	for _, k := range ks {
		out = append(out, keyObject(k, k.Fingerprint == current))
	}
	return out
}

// writeKeyTable prints keys as an aligned table, the current one starred.
// Tokens are keys too (kind "token"): removing the row revokes the token.
func writeKeyTable(w io.Writer, ks []store.Key, current string, now time.Time) error {
	tw := table(w)
	fmt.Fprintln(tw, "NAME\tKIND\tVM\tCMDS\tCREATED\tEXPIRES\tLAST USED\tFINGERPRINT")
	for _, k := range ks {
		name := k.Name
		if k.Fingerprint == current {
			name += " *"
		}
		kind := "login"
		if k.Generated {
			kind = "token"
		}
		vm := k.VM
		if vm == "" {
			vm = "-"
		}
		cmds := "-" // no restriction
		if k.Cmds != nil {
			cmds = listOrNothing(k.Cmds)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			name, kind, vm, cmds, day(k.AddedAt), expires(k.ExpiresAt, now), lastUsed(k.LastUsedAt), k.Fingerprint)
	}
	return tw.Flush()
}

func day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// expires shows an expiry to the minute: a token may live for an hour.
func expires(t, now time.Time) string {
	switch {
	case t.IsZero():
		return "never"
	case now.After(t):
		return t.UTC().Format("2006-01-02 15:04") + " (expired)"
	}
	return t.UTC().Format("2006-01-02 15:04")
}

func lastUsed(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return day(t)
}

// cmdsField renders a cmds list for JSON: nil (no restriction) is omitted,
// an empty list (allows nothing) shows as [].
func cmdsField(cmds []string) *[]string {
	if cmds == nil {
		return nil
	}
	return &cmds
}
