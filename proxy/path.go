package proxy

import (
	"path"
	"strings"
	"unicode/utf8"
)

// Path hygiene: /__exe.dev/ is the proxy's own, on every VM host, and must
// stay so under every spelling that a common upstream (Tomcat, Jetty,
// Spring, nginx, Express, IIS) normalises to it. The proxy forwards the
// path as the client sent it (percent-encoding and all), so it checks the
// spellings itself rather than trusting one decoding.

// Outcomes of checkPath.
const (
	pathOK        = iota // forward it
	pathReserved         // plainly under /__exe.dev/: 404, as the reserved paths are
	pathAmbiguous        // some upstream's normalisation would put it there: 400
)

// maxDecodes is how many times a path is percent-decoded when looking for
// the reserved prefix: once is what every server does, twice is the
// double-decoding of a proxy in front of a server (or a framework that
// decodes again), three times leaves no margin for a fourth to matter to
// anyone real.
const maxDecodes = 3

// checkPath says what to do with a request whose path, as sent (escaped,
// r.URL.EscapedPath), is raw.
func checkPath(raw string) int {
	if isReserved(raw) {
		return pathReserved
	}
	if plainPath(raw) {
		return pathOK // nothing else could make it reserved: the hot path
	}
	spellings, ok := pathSpellings(raw)
	if !ok {
		return pathAmbiguous
	}
	for _, p := range spellings {
		if underReserved(p) {
			return pathAmbiguous
		}
	}
	return pathOK
}

// plainPath reports whether raw holds nothing that any normalisation but
// lowercasing and dot-segment removal (isReserved's) would change: only
// unreserved ASCII and '/', and no segment ending in '.' (IIS and Windows
// drop trailing dots) other than "." and "..".
func plainPath(raw string) bool {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '/', c == '-', c == '_', c == '~':
		case c == '.':
			if (i+1 == len(raw) || raw[i+1] == '/') && !dotSegmentEnd(raw, i) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// dotSegmentEnd reports whether the '.' at raw[i], which ends a segment,
// ends a "." or ".." segment.
func dotSegmentEnd(raw string, i int) bool {
	start := strings.LastIndexByte(raw[:i+1], '/') + 1
	seg := raw[start : i+1]
	return seg == "." || seg == ".."
}

// underReserved reports whether p, lowercased and cleaned, is /__exe.dev
// or under it.
func underReserved(p string) bool {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	p = strings.ToLower(path.Clean(p))
	return p+"/" == reservedPrefix || strings.HasPrefix(p+"/", reservedPrefix)
}

// pathSpellings returns what raw may become in an upstream's hands: up to
// maxDecodes percent-decodings, each through the byte-level rewrites
// (backslash as slash, overlong UTF-8 and fullwidth forms as ASCII,
// control bytes and spaces dropped, or the path cut at a NUL), each of
// those with path parameters (";…" in a segment, Tomcat's "..;") and
// trailing dots and spaces of segments dropped, in either order. ok is
// false for a path whose byte-level rewrites do not settle (aggressive).
func pathSpellings(raw string) (spellings []string, ok bool) {
	decoded := []string{raw}
	for d := raw; len(decoded) <= maxDecodes; {
		next, ok := percentDecode(d)
		if !ok || next == d {
			break
		}
		decoded = append(decoded, next)
		d = next
	}
	var out []string
	seen := make(map[string]bool, 4*len(decoded))
	for _, d := range decoded {
		loose, ok1 := aggressive(d, false)
		cut, ok2 := aggressive(d, true)
		if !ok1 || !ok2 {
			return nil, false
		}
		for _, b := range []string{d, backslashes(d), loose, cut} {
			if seen[b] {
				continue // the same byte-level spelling: the same segment rewrites
			}
			seen[b] = true
			if !strings.ContainsAny(b, ";. ") {
				out = append(out, b) // nothing for the segment rewrites to drop
				continue
			}
			out = append(out, b,
				segments(b, dropParams),
				segments(b, dropTrailing),
				segments(segments(b, dropParams), dropTrailing),
				segments(segments(b, dropTrailing), dropParams))
		}
	}
	return out, true
}

// percentDecode decodes every %XX in s; ok is false for a malformed escape.
func percentDecode(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return s, false
		}
		b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
		i += 2
	}
	return b.String(), true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

func backslashes(s string) string { return strings.ReplaceAll(s, `\`, "/") }

// aggressive applies every byte-level rewrite some server makes: '\' as
// '/', an overlong two-byte UTF-8 form (0xC0/0xC1 lead) as its ASCII byte,
// a fullwidth form (U+FF01–U+FF5E) as its ASCII twin, and control bytes
// and spaces dropped — or, with cut, the path ending at its first NUL.
// Servers chain such rewrites, and one can make another's input (a space
// dropped between 0xC0 and 0xAE leaves an overlong '.'; an overlong
// space is then dropped), so they are applied until nothing changes.
// Three passes settle anything a real chain of servers makes; a path
// built to need more (each pass can uncover one more nested pair, so a
// long one could take thousands) is not worth the work: ok is false, and
// the path is refused as ambiguous.
func aggressive(s string, cut bool) (string, bool) {
	for range maxRewritePasses {
		next := rewriteBytes(s, cut)
		if next == s {
			return s, true
		}
		s = next
	}
	return s, false
}

// maxRewritePasses bounds aggressive: the passes that may change a path,
// plus the one that finds nothing left to change.
const maxRewritePasses = 4

// rewriteBytes is one pass of aggressive's rewrites.
func rewriteBytes(s string, cut bool) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == 0 && cut:
			return b.String()
		case c == '\\':
			b.WriteByte('/')
			i++
		case c < ' ' || c == ' ' || c == 0x7f:
			i++
		case (c == 0xc0 || c == 0xc1) && i+1 < len(s) && s[i+1]&0xc0 == 0x80:
			b.WriteByte((c&0x1f)<<6 | s[i+1]&0x3f)
			i += 2
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRuneInString(s[i:])
			if 0xff01 <= r && r <= 0xff5e {
				b.WriteByte(byte(r - 0xfee0))
			} else {
				b.WriteString(s[i : i+n])
			}
			i += n
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

// segments rewrites each '/'-separated segment of p with f.
func segments(p string, f func(string) string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = f(s)
	}
	return strings.Join(parts, "/")
}

// dropParams drops a segment's path parameters: "x;jsessionid=1" → "x",
// "..;" → "..".
func dropParams(seg string) string {
	s, _, _ := strings.Cut(seg, ";")
	return s
}

// dropTrailing drops a segment's trailing dots and spaces, as Windows
// file names lose them; "." and ".." stay what they are.
func dropTrailing(seg string) string {
	if seg == "." || seg == ".." {
		return seg
	}
	return strings.TrimRight(seg, ". ")
}
