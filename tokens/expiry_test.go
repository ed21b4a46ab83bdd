package tokens

import (
	"strings"
	"testing"
	"time"
)

func TestParseExpiry(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 500, time.UTC)
	base := now.Truncate(time.Second)
	day := 24 * time.Hour
	good := []struct {
		in   string
		want time.Time
	}{
		{"never", time.Time{}},
		{"1h", base.Add(time.Hour)},
		{"36h", base.Add(36 * time.Hour)},
		{"1d", base.Add(day)},
		{"90d", base.Add(90 * day)},
		{"2w", base.Add(14 * day)},
		{"1m", base.Add(30 * day)},
		{"6m", base.Add(180 * day)},
		{"1y", base.Add(365 * day)},
		{"74y", base.Add(74 * 365 * day)},
		{"007d", base.Add(7 * day)},
	}
	for _, tt := range good {
		got, err := ParseExpiry(tt.in, now)
		if err != nil {
			t.Errorf("ParseExpiry(%q): %v", tt.in, err)
			continue
		}
		if !got.Equal(tt.want) {
			t.Errorf("ParseExpiry(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	bad := []struct{ in, want string }{
		{"", "use never, or"},
		{"Never", "use never, or"},
		{"d", "use never, or"},
		{"10", "use never, or"},
		{"0d", "use never, or"},
		{"0h", "use never, or"},
		{"-1d", "use never, or"},
		{"+1d", "use never, or"},
		{"1.5d", "use never, or"},
		{"1D", "use never, or"},
		{"1s", "use never, or"},
		{"1 d", "use never, or"},
		{" 1d", "use never, or"},
		{"1dd", "use never, or"},
		{"1e3d", "use never, or"},
		{"99999999999999999999d", "use never, or"}, // does not fit an integer
		{"4294967295y", "cannot expire after 2100-01-01"},
		{"76y", "cannot expire after 2100-01-01"},
		{"9999999h", "cannot expire after 2100-01-01"},
	}
	for _, tt := range bad {
		got, err := ParseExpiry(tt.in, now)
		if err == nil {
			t.Errorf("ParseExpiry(%q) = %v, want an error", tt.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseExpiry(%q) error = %q, want it to contain %q", tt.in, err, tt.want)
		}
	}
	// Past the limit, nothing is accepted.
	if got, err := ParseExpiry("1h", time.Date(2100, 1, 1, 0, 0, 1, 0, time.UTC)); err == nil {
		t.Errorf("ParseExpiry after 2100 = %v, want an error", got)
	}
}
