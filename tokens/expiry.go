package tokens

import (
	"fmt"
	"strconv"
	"time"
)

// maxExpiry is the latest expiry a token can carry (maxTime).
var maxExpiry = time.Unix(maxTime, 0).UTC()

// expiryUnits are the units --exp accepts; a month is 30 days and a year
// 365 (calendar months and leap years would make "1m" mean different
// things on different days).
var expiryUnits = map[byte]time.Duration{
	'h': time.Hour,
	'd': 24 * time.Hour,
	'w': 7 * 24 * time.Hour,
	'm': 30 * 24 * time.Hour,
	'y': 365 * 24 * time.Hour,
}

const expiryForms = "use never, or a positive whole number followed by h, d, w, m (30 days) or y (365 days), e.g. 90d"

// ParseExpiry parses an --exp value relative to now: "never" gives the
// zero time; N followed by h, d, w, m (30 days) or y (365 days), N a
// positive integer, gives now plus that long, truncated to the second (the
// precision tokens carry). Anything else, and any time past 2100-01-01,
// is an error naming the accepted forms.
func ParseExpiry(s string, now time.Time) (time.Time, error) {
	if s == "never" {
		return time.Time{}, nil
	}
	if len(s) < 2 {
		return time.Time{}, fmt.Errorf("invalid expiry %q: %s", s, expiryForms)
	}
	unit, ok := expiryUnits[s[len(s)-1]]
	digits := s[:len(s)-1]
	if !ok || !allDigits(digits) {
		return time.Time{}, fmt.Errorf("invalid expiry %q: %s", s, expiryForms)
	}
	n, err := strconv.ParseUint(digits, 10, 32)
	if err != nil || n == 0 {
		return time.Time{}, fmt.Errorf("invalid expiry %q: %s", s, expiryForms)
	}
	// n·unit can overflow a Duration (~292 years): compare in units.
	if limit := maxExpiry.Sub(now) / unit; limit < 0 || n > uint64(limit) {
		return time.Time{}, fmt.Errorf("invalid expiry %q: tokens cannot expire after %s", s, maxExpiry.Format(time.DateOnly))
	}
	return now.Add(time.Duration(n) * unit).Truncate(time.Second).UTC(), nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

const sinceForms = "use an RFC 3339 time (2025-06-01T12:00:00Z), or a positive whole number followed by h, d, w, m (30 days) or y (365 days), e.g. 24h or 7d"

// ParseSince parses a --since value (log, exed audit) relative to now: an
// RFC 3339 time, or a duration back from now in --exp's units (N followed
// by h, d, w, m or y). Anything else is an error naming the accepted forms.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if len(s) < 2 {
		return time.Time{}, fmt.Errorf("invalid --since %q: %s", s, sinceForms)
	}
	unit, ok := expiryUnits[s[len(s)-1]]
	digits := s[:len(s)-1]
	if !ok || !allDigits(digits) {
		return time.Time{}, fmt.Errorf("invalid --since %q: %s", s, sinceForms)
	}
	n, err := strconv.ParseUint(digits, 10, 32)
	if err != nil || n == 0 {
		return time.Time{}, fmt.Errorf("invalid --since %q: %s", s, sinceForms)
	}
	// Further back than 1970 is all of the log; n·unit could overflow.
	if limit := now.Sub(time.Unix(0, 0)) / unit; n > uint64(limit) {
		return time.Unix(0, 0).UTC(), nil
	}
	return now.Add(-time.Duration(n) * unit).Truncate(time.Second).UTC(), nil
}
