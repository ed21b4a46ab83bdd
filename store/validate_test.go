package store

import (
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

func TestNewUserID(t *testing.T) {
	re := regexp.MustCompile(`^usr[a-z2-7]{16}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := NewUserID()
		if !re.MatchString(id) {
			t.Fatalf("NewUserID() = %q, want usr + 16 lowercase base32", id)
		}
		if seen[id] {
			t.Fatalf("NewUserID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestValidateEmail(t *testing.T) {
	good := []string{
		"ada@example.com", "Ada.Lovelace+exed@mail.example.co.uk", "demo@localhost", "a_b-c@x.io",
	}
	bad := []string{
		"", "ada", "ada@", "@example.com", "ada@example", "Ada <ada@example.com>", "<ada@example.com>",
		" ada@example.com", "ada@example.com ", "ada@@example.com", "ada@.example.com", "ada@example..com",
		"ada@example.com.", `"a b"@example.com`, "ada@exämple.com", "ädä@example.com", "a\n@example.com",
		"ada@example.com (Ada)", strings.Repeat("a", 250) + "@x.io",
	}
	for _, s := range good {
		if err := ValidateEmail(s); err != nil {
			t.Errorf("ValidateEmail(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range bad {
		err := ValidateEmail(s)
		if err == nil {
			t.Errorf("ValidateEmail(%q) = nil, want an error", s)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("ValidateEmail(%q): error is not one line: %q", s, err)
		}
	}
}

func TestValidateVMName(t *testing.T) {
	good := []string{"a", "web", "my-vm-2", "a0", strings.Repeat("a", 63)}
	bad := []string{"", "Web", "2web", "-web", "web-", "we_b", "web.x", "wéb", strings.Repeat("a", 64), "a b"}
	for _, s := range good {
		if err := ValidateVMName(s); err != nil {
			t.Errorf("ValidateVMName(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range bad {
		if err := ValidateVMName(s); err == nil {
			t.Errorf("ValidateVMName(%q) = nil, want an error", s)
		}
	}
}

func TestValidateUpstream(t *testing.T) {
	good := []string{
		"http://127.0.0.1:8000", "https://example.com", "http://[::1]:3000", "http://web.internal/",
		"HTTP://example.com", "http://localhost:65535",
	}
	bad := []string{
		"", "example.com", "ftp://example.com", "http://", "http://:80", "http://user:hunter2@example.com",
		"http://example.com/path", "http://example.com?x=1", "http://example.com?", "http://example.com#f",
		"http://example.com:0", "http://example.com:65536", "http://example.com:", "http:example.com",
		"//example.com", "http://exa mple.com", "unix:///run/x.sock",
	}
	for _, s := range good {
		if err := ValidateUpstream(s); err != nil {
			t.Errorf("ValidateUpstream(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range bad {
		err := ValidateUpstream(s)
		if err == nil {
			t.Errorf("ValidateUpstream(%q) = nil, want an error", s)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ValidateUpstream(%q): error repeats the password: %v", s, err)
		}
	}
}

var vmNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

func FuzzValidateVMName(f *testing.F) {
	for _, s := range []string{"web", "a", "web-", "Web", "a-b-c", strings.Repeat("z", 63)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := vmNameRE.MatchString(s) && !strings.HasSuffix(s, "-")
		if got := ValidateVMName(s) == nil; got != want {
			t.Fatalf("ValidateVMName(%q) accepts = %v, the rule says %v", s, got, want)
		}
	})
}

func FuzzValidateEmail(f *testing.F) {
	for _, s := range []string{"ada@example.com", "demo@localhost", "Ada <ada@example.com>", "a@b", `"x"@y.z`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateEmail(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error for %q is not one line: %q", s, err)
			}
			return
		}
		a, perr := mail.ParseAddress(s)
		if perr != nil || a.Name != "" || a.Address != s {
			t.Fatalf("accepted %q, which is not a bare address", s)
		}
		domain := s[strings.LastIndexByte(s, '@')+1:]
		if domain != "localhost" && !strings.Contains(domain, ".") {
			t.Fatalf("accepted %q, whose domain has no dot", s)
		}
		if strings.ContainsFunc(s, func(r rune) bool { return r > 0x7e || r <= ' ' }) {
			t.Fatalf("accepted non-ASCII %q", s)
		}
	})
}

func FuzzValidateUpstream(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:8000", "https://example.com/", "http://u:p@h", "http://h?q", "ftp://h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateUpstream(s) != nil {
			return
		}
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("accepted %q, which does not parse: %v", s, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Hostname() == "" || u.User != nil ||
			u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
			t.Fatalf("accepted %q: %#v", s, u)
		}
		// What the proxy will dial must be what was validated.
		if again, err := url.Parse(u.String()); err != nil || again.Host != u.Host {
			t.Fatalf("accepted %q, which does not round-trip: %v", s, err)
		}
	})
}
