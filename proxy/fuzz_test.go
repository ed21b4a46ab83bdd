package proxy

import (
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// FuzzFindToken: carrier parsing never panics; a token it returns was
// sent; and after scrubHeaders nothing shaped like an exe token nor any
// X-ExeDev header is left for the upstream.
func FuzzFindToken(f *testing.F) {
	f.Add("Bearer exe0.a.b", "Bearer exe0.a.b", "Basic eDpleGUwLmEuYg==", "X_ExeDev_UserID")
	f.Add("", "bearer exe1.ABCDEFGHIJKLMNOPQRSTUVWXYZ", "", "x.exedev.email")
	f.Add("Basic eDpleGUwLmEuYg==", "Basic ZXhlMC5hLmI6eA==", "Bearer  \texe0.x.y ", "X-Exedev-Authorization")
	f.Fuzz(func(t *testing.T, xauth, auth1, auth2, name string) {
		hdr := http.Header{}
		if xauth != "" {
			hdr["X-Exedev-Authorization"] = []string{xauth}
		}
		for _, a := range []string{auth1, auth2} {
			if a != "" {
				hdr["Authorization"] = append(hdr["Authorization"], a)
			}
		}
		if name != "" {
			hdr[name] = []string{"spoof"}
		}
		for _, allowBasic := range []bool{true, false} {
			tok, carrier, err := findToken(hdr, allowBasic)
			if err != nil {
				if tok != "" || carrier != "" {
					t.Fatalf("error %v with token", err)
				}
				continue
			}
			if (tok == "") != (carrier == "") {
				t.Fatalf("token %q carrier %q", tok, carrier)
			}
			if carrier == carrierBasic && !allowBasic {
				t.Fatal("basic carrier when not allowed")
			}
			if carrier != "" && carrier != carrierExedev && !tokens.LooksLikeToken(tok) {
				t.Fatalf("Authorization carrier gave %q", tok)
			}
			if carrier == carrierBearer || carrier == carrierExedev {
				found := false
				for _, v := range append(hdr.Values("X-Exedev-Authorization"), hdr.Values("Authorization")...) {
					found = found || strings.Contains(v, tok)
				}
				if !found {
					t.Fatalf("token %q was not sent", tok)
				}
			}
		}
		out := hdr.Clone()
		scrubHeaders(out)
		for k, vals := range out {
			if isExedevHeader(k) {
				t.Fatalf("header %q survived", k)
			}
			if strings.EqualFold(k, "Authorization") {
				for _, v := range vals {
					if holdsToken(v) {
						t.Fatalf("Authorization %q survived", v)
					}
				}
			}
		}
	})
}

// FuzzIsExedevHeader checks the allocation-free matcher against the
// rule as written: lowercase, remove '-', '_' and '.', prefix "xexedev".
func FuzzIsExedevHeader(f *testing.F) {
	for _, s := range []string{"X-ExeDev-UserID", "x_exedev_userid", "X.EXEDEV.Email", "X-Exe-Dev", "XEXEDEV", "X-Exede", "x--e.x_e-d.e_v", "X-Forwarded-For", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		norm := strings.Map(func(r rune) rune {
			switch {
			case r == '-' || r == '_' || r == '.':
				return -1
			case 'A' <= r && r <= 'Z':
				return r + 'a' - 'A'
			}
			return r
		}, name)
		if want := strings.HasPrefix(norm, "xexedev"); isExedevHeader(name) != want {
			t.Fatalf("isExedevHeader(%q) = %v, want %v", name, !want, want)
		}
	})
}

// FuzzRoute: host canonicalisation and VM routing never panic, and a host
// routed to a VM names a valid VM under the VM domain.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{"web.exe.xyz", "WEB.EXE.XYZ.:443", "exe.dev", "[::1]:80", "a.b.exe.xyz", "-x.exe.xyz", "web.exe.xyz..", ":80", ""} {
		f.Add(s, "/__exe.dev/x")
	}
	h := &Handler{domain: "exe.dev", vmSuffix: ".exe.xyz"}
	f.Fuzz(func(t *testing.T, host, p string) {
		c := canonicalHost(host)
		if strings.ContainsAny(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Fatalf("canonicalHost(%q) = %q: not lowercase", host, c)
		}
		if name, ok := h.vmName(c); ok {
			if store.ValidateVMName(name) != nil || c != name+".exe.xyz" {
				t.Fatalf("host %q routed to VM %q", host, name)
			}
		}
		if strings.HasPrefix(strings.ToLower(p), "/__exe.dev/") && !isReserved(p) {
			t.Fatalf("path %q not reserved", p)
		}
		// The allocation-free shortcuts agree with the plain definitions.
		if want := plainCanonicalHost(host); c != want {
			t.Fatalf("canonicalHost(%q) = %q, plain definition %q", host, c, want)
		}
		if got, want := isReserved(p), plainIsReserved(p); got != want {
			t.Fatalf("isReserved(%q) = %v, plain definition %v", p, got, want)
		}
	})
}

// plainCanonicalHost is canonicalHost without its shortcut.
func plainCanonicalHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, host)
	return strings.TrimSuffix(host, ".")
}

// plainIsReserved is isReserved without its shortcut.
func plainIsReserved(p string) bool {
	under := func(p string) bool {
		p = strings.ToLower(p)
		return p+"/" == reservedPrefix || strings.HasPrefix(p, reservedPrefix)
	}
	return under(p) || under(path.Clean("/"+p))
}

// FuzzReservedPath: no path checkPath lets through (pathOK) becomes
// /__exe.dev or a path under it in the hands of any upstream normalisation
// the proxy knows of, each written here again independently of path.go
// (net/url's unescaping, regexps), applied alone and in pairs: up to three
// percent-decodings, '\' as '/', path parameters dropped, trailing dots and
// spaces of segments dropped, control bytes and spaces dropped, the path
// cut at NUL, overlong UTF-8 and fullwidth forms as ASCII, lowercase,
// dot segments resolved.
func FuzzReservedPath(f *testing.F) {
	for _, s := range []string{
		"/", "/x", "/__exe.dev/", "/__exe.dev;a/x", "/x/..;/__exe.dev/", "/%255F_exe.dev/", "/__exe.dev./",
		"/__exe.dev%20/", "/%00/__exe.dev/", "/x%5c..%5c__exe.dev/", "/%c0%ae%c0%ae/__exe.dev/",
		"/%ef%bc%bf_exe.dev/", "/a%2Fb", "/my%20file", "/__exe.devx",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		status := checkPath(raw)
		if status != pathOK {
			return
		}
		for _, p := range fuzzSpellings(raw) {
			if fuzzUnderReserved(p) {
				t.Fatalf("checkPath(%q) = ok, but it normalises to %q", raw, p)
			}
		}
	})
}

var (
	fuzzParams   = regexp.MustCompile(`;[^/]*`)
	fuzzTrailing = regexp.MustCompile(`[. ]+(/|$)`)
	fuzzControls = regexp.MustCompile(`[\x00-\x20\x7f]`)
)

// fuzzSpellings is FuzzReservedPath's own list of what an upstream may make
// of raw.
func fuzzSpellings(raw string) []string {
	decoded := []string{raw}
	for d := raw; len(decoded) < 4; {
		u, err := url.PathUnescape(d)
		if err != nil || u == d {
			break
		}
		decoded = append(decoded, u)
		d = u
	}
	rules := []func(string) string{
		func(s string) string { return strings.ReplaceAll(s, `\`, "/") },
		func(s string) string { return fuzzParams.ReplaceAllString(s, "") },
		func(s string) string {
			// Keep "." and ".." segments: they are not trailing dots.
			parts := strings.Split(s, "/")
			for i, p := range parts {
				if p != "." && p != ".." {
					parts[i] = fuzzTrailing.ReplaceAllString(p, "$1")
				}
			}
			return strings.Join(parts, "/")
		},
		func(s string) string { return fuzzControls.ReplaceAllString(s, "") },
		func(s string) string { s, _, _ = strings.Cut(s, "\x00"); return s },
		func(s string) string {
			s = strings.ReplaceAll(s, "\xc0\xae", ".")
			s = strings.ReplaceAll(s, "\xc0\xaf", "/")
			return strings.Map(func(r rune) rune {
				if r >= 0xff01 && r <= 0xff5e {
					return r - 0xfee0
				}
				return r
			}, s)
		},
	}
	var out []string
	for _, d := range decoded {
		out = append(out, d)
		for _, a := range rules {
			out = append(out, a(d))
			for _, b := range rules {
				out = append(out, b(a(d)))
			}
		}
	}
	return out
}

func fuzzUnderReserved(p string) bool {
	p = strings.ToLower(path.Clean("/" + p))
	return p == "/__exe.dev" || strings.HasPrefix(p, "/__exe.dev/")
}

// FuzzBasicDecoding: whatever an Authorization value is, if any of the
// ways a server may decode its credential (either alphabet, padded or not,
// whitespace dropped) gives something holding an exe token, holdsToken
// says so (scrubHeaders then drops it); and a Basic credential whose
// password is a token is the request's credential.
func FuzzBasicDecoding(f *testing.F) {
	f.Add("Basic", "git", "exe0.a.b", byte(0))
	f.Add("basic", "", "exe1.ABCDEFGHIJKLMNOPQRSTUVWXYZ", byte(1))
	f.Add("Basic", "exe0.x.y", "", byte(2))
	f.Add("BASIC", "me", "hunter2", byte(3))
	f.Fuzz(func(t *testing.T, scheme, user, pass string, how byte) {
		cred := user + ":" + pass
		encs := []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding}
		enc := encs[int(how)%len(encs)].EncodeToString([]byte(cred))
		if how&4 != 0 && len(enc) > 4 {
			enc = enc[:4] + " \t" + enc[4:]
		}
		v := scheme + " " + enc
		if containsToken(cred) && !holdsToken(v) {
			t.Fatalf("holdsToken(%q) = false; it decodes to %q", v, cred)
		}
		hdr := http.Header{"Authorization": {v}}
		scrubHeaders(hdr)
		for _, left := range hdr.Values("Authorization") {
			for _, e := range encs {
				_, c, _ := strings.Cut(left, " ")
				if b, err := e.DecodeString(strings.Join(strings.Fields(c), "")); err == nil && containsToken(string(b)) {
					t.Fatalf("%q survived scrubHeaders", left)
				}
			}
		}
		if strings.EqualFold(scheme, "basic") && tokens.LooksLikeToken(pass) && !strings.Contains(user, ":") {
			tok, carrier, err := findToken(http.Header{"Authorization": {v}}, true)
			if err == nil && (tok != pass || carrier != carrierBasic) {
				t.Fatalf("findToken(%q) = %q, %q: want the password as a Basic credential", v, tok, carrier)
			}
		}
	})
}

// FuzzShareLinkIn: never panics; what it finds is a well-formed link token
// that was in the query as a "share" value, and the rest is the query
// without that one parameter.
func FuzzShareLinkIn(f *testing.F) {
	tok := "K7QX2M4PABCDEFGHIJKLMNOPQR"
	for _, q := range []string{"", "a=1", "share=" + tok, "a=1&share=" + tok + "&b", "share=x&share=" + tok, "share=K7QX%32M4PABCDEFGHIJKLMNOPQR", "share", "&&share=&"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		token, rest, ok := shareLinkIn(q)
		if !ok {
			if token != "" || rest != q {
				t.Fatalf("shareLinkIn(%q) = %q, %q, false", q, token, rest)
			}
			return
		}
		if tokens.ParseShareLink(token) != nil || len(rest) >= len(q) {
			t.Fatalf("shareLinkIn(%q) = %q, %q", q, token, rest)
		}
		if !strings.Contains(q, "share=") || strings.Count(rest, "&") > strings.Count(q, "&") {
			t.Fatalf("shareLinkIn(%q): rest %q", q, rest)
		}
	})
}
