package tokens

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestShareLink(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok := NewShareLink()
		if err := ParseShareLink(tok); err != nil {
			t.Fatalf("NewShareLink() = %q: %v", tok, err)
		}
		if seen[tok] {
			t.Fatalf("NewShareLink repeated %q", tok)
		}
		seen[tok] = true
		name := ShareLinkName(tok)
		if !IsShareLinkName(name) || !strings.HasPrefix(tok, strings.TrimSuffix(name, ShareLinkEllipsis)) || strings.Contains(name, tok) {
			t.Fatalf("ShareLinkName(%q) = %q", tok, name)
		}
		if id := ShareLinkID(tok); len(id) != 32 || bytes.Contains(id, []byte(tok)) {
			t.Fatalf("ShareLinkID = %x", id)
		}
	}
	a, b := NewShareLink(), NewShareLink()
	if bytes.Equal(ShareLinkID(a), ShareLinkID(b)) || !bytes.Equal(ShareLinkID(a), ShareLinkID(a)) {
		t.Fatal("ShareLinkID is not a function of the token alone")
	}
	// Domain separation: a link's id is not an exe1 id of the same text.
	if bytes.Equal(ShareLinkID(a), Exe1ID(a)) {
		t.Fatal("ShareLinkID equals Exe1ID")
	}
	for _, bad := range []string{"", "ABC", strings.Repeat("A", 25), strings.Repeat("A", 27),
		strings.Repeat("a", 26), strings.Repeat("A", 25) + "1", strings.Repeat("A", 25) + "=", "exe1." + strings.Repeat("A", 21)} {
		err := ParseShareLink(bad)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseShareLink(%q) = %v, want ErrMalformed", bad, err)
		}
		if len(bad) > 3 && strings.Contains(err.Error(), bad) {
			t.Errorf("ParseShareLink's error repeats the token: %v", err)
		}
		if ShareLinkName(bad) != "" {
			t.Errorf("ShareLinkName(%q) = %q, want none", bad, ShareLinkName(bad))
		}
	}
	for _, bad := range []string{"", "ABCDEFGH", "ABCDEFG…", "ABCDEFGHI…", "abcdefgh…", "ABCDEFGH..."} {
		if IsShareLinkName(bad) {
			t.Errorf("IsShareLinkName(%q) = true", bad)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 500, time.UTC)
	for in, want := range map[string]time.Time{
		"24h":                       time.Date(2025, 5, 31, 12, 0, 0, 0, time.UTC),
		"7d":                        time.Date(2025, 5, 25, 12, 0, 0, 0, time.UTC),
		"1w":                        time.Date(2025, 5, 25, 12, 0, 0, 0, time.UTC),
		"1m":                        time.Date(2025, 5, 2, 12, 0, 0, 0, time.UTC),
		"2025-05-01T00:00:00Z":      time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC),
		"2025-05-01T02:00:00+02:00": time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC),
		"4000000000y":               time.Unix(0, 0).UTC(), // further back than anything: all of it
	} {
		got, err := ParseSince(in, now)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "h", "0d", "-1d", "1.5d", "1s", "7 d", "yesterday", "2025-05-01", "1e3h", "99999999999d"} {
		if _, err := ParseSince(bad, now); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
			t.Errorf("ParseSince(%q) = %v, want an error naming the forms", bad, err)
		}
	}
}

// FuzzParseShareLink: never panics; what is accepted has exactly the
// token's shape, and its name is a prefix of it that IsShareLinkName
// accepts.
func FuzzParseShareLink(f *testing.F) {
	f.Add(NewShareLink())
	f.Add(strings.Repeat("A", 26))
	f.Add(strings.Repeat("7", 25) + "a")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		if err := ParseShareLink(s); err != nil {
			if !errors.Is(err, ErrMalformed) || ShareLinkName(s) != "" {
				t.Fatalf("refused %q with %v, name %q", s, err, ShareLinkName(s))
			}
			return
		}
		if len(s) != ShareLinkChars || strings.Trim(s, base32Alpha) != "" {
			t.Fatalf("accepted %q", s)
		}
		if name := ShareLinkName(s); !IsShareLinkName(name) || !strings.HasPrefix(s, strings.TrimSuffix(name, ShareLinkEllipsis)) {
			t.Fatalf("name %q of %q", name, s)
		}
	})
}

// FuzzParseSince: never panics; whatever is accepted is no later than now.
func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"24h", "7d", "2025-05-01T00:00:00Z", "0d", "4294967295y", "1x", ""} {
		f.Add(s)
	}
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSince(s, now)
		if err != nil {
			return
		}
		if _, rfc := time.Parse(time.RFC3339, s); rfc != nil && got.After(now) {
			t.Fatalf("ParseSince(%q) = %v, after now", s, got)
		}
	})
}
