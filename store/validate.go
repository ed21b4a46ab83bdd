package store

import (
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// keyNamePattern is what a key name may be: short, printable ASCII, no
// spaces or colons (so a name never looks like a fingerprint or a public
// key line, and never carries a terminal escape or a newline to whoever
// lists it).
var keyNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`)

// KeyNameRule says, for error messages, what a key name may contain.
const KeyNameRule = "use 1-64 letters, digits and . _ @ + - (starting with a letter or digit)"

// ValidateKeyName is the one rule for a key's name, on every path a name
// comes in by (ssh-key add --name or the key's comment, rename,
// generate-api-key --label, exed user add). The error does not repeat the
// name: it may hold control bytes.
func ValidateKeyName(name string) error {
	if !keyNamePattern.MatchString(name) {
		return errors.New("invalid key name: " + KeyNameRule)
	}
	return nil
}

// maxEmailLen is the longest address SMTP can carry (RFC 5321 §4.5.3.1.3:
// a 256-octet path, less its angle brackets).
const maxEmailLen = 254

// ValidateEmail accepts a bare address ("ada@example.com"): no display
// name, no angle brackets, a domain with a dot (or "localhost"). Only
// ASCII: the two backends fold case alike only for ASCII, and emails are
// compared case-insensitively.
func ValidateEmail(s string) error {
	if s == "" {
		return errors.New("email: empty")
	}
	if len(s) > maxEmailLen {
		return fmt.Errorf("email: longer than %d bytes", maxEmailLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("email %q: only printable ASCII without spaces", s)
		}
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return fmt.Errorf("email %q: not a bare address like name@example.com", s)
	}
	domain := s[strings.LastIndexByte(s, '@')+1:]
	if domain != "localhost" && !strings.Contains(domain, ".") {
		return fmt.Errorf("email %q: domain has no dot", s)
	}
	return nil
}

// maxVMNameLen is a DNS label's limit (RFC 1035): VM names are labels.
const maxVMNameLen = 63

// ValidateVMName accepts a lowercase DNS label: [a-z][a-z0-9-]{0,62}, not
// ending in '-'.
func ValidateVMName(s string) error {
	switch {
	case s == "":
		return errors.New("VM name: empty")
	case len(s) > maxVMNameLen:
		return fmt.Errorf("VM name: longer than %d characters", maxVMNameLen)
	case s[0] < 'a' || s[0] > 'z':
		return fmt.Errorf("VM name %q: must start with a lowercase letter", s)
	case s[len(s)-1] == '-':
		return fmt.Errorf("VM name %q: must not end with '-'", s)
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return fmt.Errorf("VM name %q: only a-z, 0-9 and '-' allowed", s)
		}
	}
	return nil
}

// ValidateUpstream accepts a VM's upstream, http://HOST[:PORT] or
// https://HOST[:PORT], with an optional trailing "/": no user info, path,
// query or fragment. Errors do not repeat the URL: it may hold a password.
func ValidateUpstream(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("upstream: not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https" || u.Opaque != "":
		return errors.New("upstream: must start with http:// or https://")
	case u.User != nil:
		return errors.New("upstream: must not carry user info")
	case u.Hostname() == "":
		return errors.New("upstream: no host")
	case u.Path != "" && u.Path != "/" || u.RawPath != "":
		return errors.New("upstream: must not have a path")
	case u.RawQuery != "" || u.ForceQuery:
		return errors.New("upstream: must not have a query")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return errors.New("upstream: must not have a fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return errors.New("upstream: port out of range")
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return errors.New("upstream: empty port")
	}
	return nil
}
