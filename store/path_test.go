package store

import (
	"net/url"
	"strings"
	"testing"
)

func TestSafePath(t *testing.T) {
	for _, c := range []struct {
		in, want string
	}{
		{"/", "/"},
		{"/admin", "/admin"},
		{"/a/b?x=1&y=%7Ez#frag", "/a/b?x=1&y=%7Ez#frag"},
		{"/a%2Fb", "/a%2Fb"},
		{"/%E2%82%AC", "/%E2%82%AC"},
		// Off the host, or read so by a browser.
		{"", "/"},
		{"admin", "/"},
		{"//evil.example", "/"},
		{"/\\evil.example", "/"},
		{"/a\\b", "/"},
		{"https://evil.example/", "/"},
		{"/%2F/evil.example", "/"},
		{"/%2f/evil.example", "/"},
		{"/%5Cevil.example", "/"},
		{"/%252F%252Fevil.example", "/"},
		{"/%25252F/evil.example", "/"},
		{"/\t/evil.example", "/"},
		{"/a b", "/"},
		{"/a%20b", "/"},
		{"/a\nb", "/"},
		{"/a%0Ab", "/"},
		{"/a%00", "/"},
		{"/a\x7f", "/"},
		{"/caf\xc3\xa9", "/"},
		{"/a%", "/"},
		{"/a%2", "/"},
		{"/a%zz", "/"},
	} {
		if got := SafePath(c.in); got != c.want {
			t.Errorf("SafePath(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// FuzzSafePath: whatever comes in, what SafePath lets out, put after one
// of our hosts, is a URL on that very host, and so is every percent-decoded
// form of it (a browser or an upstream may decode it once more).
func FuzzSafePath(f *testing.F) {
	for _, s := range []string{"/", "/admin?x=1", "//evil", "/\\evil", "/%2F%2Fevil", "/%252F", "/a%", "http://x/", "/\t/x", "/.%2E/", "/@evil", "/:@evil"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := SafePath(in)
		if out != "/" && out != in {
			t.Fatalf("SafePath(%q) = %q: neither the input nor /", in, out)
		}
		for p, ok := out, true; ok; p, ok = percentDecodeOnce(p) {
			checkOnHost(t, in, p)
		}
	})
}

// percentDecodeOnce decodes p once if it holds an escape.
func percentDecodeOnce(p string) (string, bool) {
	if !strings.Contains(p, "%") {
		return "", false
	}
	return percentDecode(p)
}

func checkOnHost(t *testing.T, in, p string) {
	t.Helper()
	const host = "web.exe.xyz:8443"
	for _, base := range []string{"https://" + host, "https://" + host + "/deep/path"} {
		b, _ := url.Parse(base)
		ref, err := url.Parse(p)
		if err != nil {
			t.Fatalf("SafePath(%q) gives %q, which does not parse: %v", in, p, err)
		}
		if u := b.ResolveReference(ref); u.Host != host || u.Scheme != "https" || u.User != nil {
			t.Fatalf("SafePath(%q) gives %q, which leads to %q", in, p, u)
		}
		// As a browser reads it: the whole string after the host.
		abs, err := url.Parse("https://" + host + p)
		if err != nil || abs.Host != host || abs.User != nil {
			t.Fatalf("SafePath(%q): https://%s%s is host %q (%v)", in, host, p, abs.Host, err)
		}
		if strings.ContainsAny(p, "\\\t\r\n ") {
			t.Fatalf("SafePath(%q) gives %q, with a byte a browser rewrites", in, p)
		}
	}
}
