package proxy

import (
	"net"
	"net/http"
	"path"
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
