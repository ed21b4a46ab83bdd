package store

// SafePath is the one check of a `redirect` (or `browser --path`) value:
// where a browser is sent once it is logged in, stored with a login link
// and checked again by every route that redirects to it. It returns p when p is a
// relative path on the same host, and "/" for anything else:
//
//   - exactly one leading '/': "//evil.example" and "/\evil.example" name
//     another host to a browser (WHATWG URL parsers read '\' as '/');
//   - no '\' anywhere, no control byte, space or DEL (a browser drops tabs
//     and newlines from a URL), and, as sent, only ASCII (raw bytes past
//     ASCII are not a valid Location; percent-encoded, they are fine);
//   - the same again after each round of percent-decoding, until nothing
//     is left to decode, so that "/%2F%2Fevil" and "/%252F…" are refused
//     too; a malformed escape is refused.
//
// So a Location made of a host of ours followed by SafePath's result never
// leaves that host (FuzzSafePath here and proxy's FuzzLoginRedirect check
// it).
func SafePath(p string) string {
	if !safePath(p) {
		return "/"
	}
	return p
}

func safePath(p string) bool {
	for raw := true; ; raw = false {
		if len(p) == 0 || p[0] != '/' || len(p) > 1 && (p[1] == '/' || p[1] == '\\') {
			return false
		}
		escapes := false
		for i := 0; i < len(p); i++ {
			switch c := p[i]; {
			case c <= ' ' || c == 0x7f || c == '\\', raw && c > 0x7f:
				return false
			case c == '%':
				escapes = true
			}
		}
		if !escapes {
			return true
		}
		next, ok := percentDecode(p)
		if !ok {
			return false
		}
		p = next
	}
}

// percentDecode decodes every %XX in s; ok is false for a '%' not followed
// by two hex digits. The result is shorter than s whenever s holds a '%'.
func percentDecode(s string) (string, bool) {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
