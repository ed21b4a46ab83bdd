// Package flaghint adds "did you mean --label?" to pflag's unknown-flag
// errors, for the SSH command suite and the exed binary alike: a typo then
// costs one more try, not a trip to --help.
package flaghint

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

// maxDistance is how many single-letter edits (insert, delete, replace, or
// swap two neighbours) a typed name may be from a flag to be suggested:
// two catches "--lable" and "--cmd"; more starts suggesting unrelated
// flags of short names.
const maxDistance = 2

// Explain returns err with a suggestion appended when err is pflag's
// "unknown flag" and fs has a flag close to the name typed; otherwise err
// unchanged. The result wraps err.
func Explain(fs *pflag.FlagSet, err error) error {
	var ne *pflag.NotExistError
	if !errors.As(err, &ne) {
		return err
	}
	typed := ne.GetSpecifiedName()
	if short := ne.GetSpecifiedShortnames(); short != "" {
		// "-label=x" is parsed as the shorthands l, a, b…: the long
		// flag with one dash is the likelier mistake.
		typed, _, _ = strings.Cut(short, "=")
	}
	if s := Suggest(fs, typed); s != "" {
		return &hinted{err: err, hint: s}
	}
	return err
}

// Suggest returns the flag of fs (as "--name") closest to typed, a flag
// name without its dashes, or "" when none is close or two are equally
// close. --help counts as a flag.
func Suggest(fs *pflag.FlagSet, typed string) string {
	typed = strings.ToLower(strings.TrimLeft(typed, "-"))
	if typed == "" {
		return ""
	}
	names := []string{"help"}
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Hidden && f.Name != "help" {
			names = append(names, f.Name)
		}
	})
	sort.Strings(names)
	limit := maxDistance
	if len(typed) <= 3 {
		limit = 1
	}
	best, bestDist, tie := "", limit+1, false
	for _, n := range names {
		d := distance(typed, n)
		if strings.HasPrefix(n, typed) && len(typed) >= 2 && d > 1 {
			d = 1 // an abbreviation ("--vm-dom") is as close as a typo
		}
		switch {
		case d < bestDist:
			best, bestDist, tie = n, d, false
		case d == bestDist:
			tie = true
		}
	}
	if best == "" || tie {
		return ""
	}
	return "--" + best
}

// hinted is an unknown-flag error with the flag meant.
type hinted struct {
	err  error
	hint string
}

func (h *hinted) Error() string { return fmt.Sprintf("%v; did you mean %s?", h.err, h.hint) }
func (h *hinted) Unwrap() error { return h.err }

// distance is the optimal string alignment distance between a and b
// (Levenshtein with swaps of neighbours), over bytes: flag names are ASCII.
func distance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
