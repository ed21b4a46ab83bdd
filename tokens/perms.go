package tokens

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// Bounds of exp and nbf: 2000-01-01 to 2100-01-01. Anything outside is a
// mistake (seconds confused with milliseconds, a date before the product
// existed) rather than a real validity window, so it is refused instead of
// being honoured.
const (
	minTime = 946684800  // 2000-01-01T00:00:00Z
	maxTime = 4102444800 // 2100-01-01T00:00:00Z
)

// Permissions is the parsed permissions JSON P of an exe0 token.
type Permissions struct {
	Exp, Nbf int64    // unix seconds; 0 when absent (or null)
	Cmds     []string // as given
	HasCmds  bool     // false: cmds absent/null → the default list applies; true with len 0 → nothing
	Ctx      []byte   // the exact original bytes of ctx; nil when absent or null
}

// defaultCmds is what a token without cmds may run over /exec. It never
// includes generate-api-key: tokens do not mint tokens unless granted.
var defaultCmds = [...]string{"help", "ls", "whoami", "ssh-key list", "exe0-to-exe1"}

// DefaultCmds returns (a copy of) the commands granted to a token whose P
// has no cmds.
func DefaultCmds() []string { return slices.Clone(defaultCmds[:]) }

// End is the instant a token with this P stops being valid: it is valid
// through the second exp (expired when now > exp, in whole seconds), so
// it ends at exp+1. The zero time when P has no exp.
func (p Permissions) End() time.Time {
	if p.Exp == 0 {
		return time.Time{}
	}
	return time.Unix(p.Exp+1, 0).UTC()
}

// Grants reports whether path (a canonical command path such as
// "ssh-key list") is granted by the token's cmds, or by the default list
// when P has none. A parent does not grant its children.
func (p Permissions) Grants(path string) bool {
	if !p.HasCmds {
		return CommandAllowed(defaultCmds[:], path)
	}
	return CommandAllowed(p.Cmds, path)
}

// CommandAllowed is the one rule for a cmds list, a token's or a key
// restriction's: path must appear in it verbatim. "ssh-key" does not grant
// "ssh-key list", and an empty path is never granted.
func CommandAllowed(cmds []string, path string) bool {
	return path != "" && slices.Contains(cmds, path)
}

// ParsePermissions applies the rules for P: P starts with '{', has
// no leading or trailing whitespace and no CR, LF or NUL; it is valid JSON
// (UTF-8) with no duplicate names at any depth; its only names are exp, nbf,
// cmds and ctx, matched exactly (null counts as absent); exp and nbf are
// plain integers in [minTime, maxTime]; cmds is an array of non-empty
// strings; ctx is any value, kept as its exact bytes.
//
// Errors wrap ErrMalformed.
func ParsePermissions(p []byte) (Permissions, error) {
	var perms Permissions
	switch {
	case len(p) == 0 || p[0] != '{':
		return perms, malformed("payload does not start with '{'")
	case bytes.ContainsAny(p, "\r\n\x00"):
		return perms, malformed("payload contains CR, LF or NUL")
	case p[len(p)-1] == ' ' || p[len(p)-1] == '\t':
		return perms, malformed("payload has trailing whitespace")
	}

	if perms, ok := scanPermissions(p); ok {
		return perms, nil
	}
	if _, err := walkPermissions(p); err != nil {
		return Permissions{}, err
	}
	// Not reached: the scan and the walk agree (FuzzScanMatchesWalk).
	return Permissions{}, malformed("payload: invalid JSON")
}

// scanPermissions is ParsePermissions' one pass over P, after the
// framing checks: it validates the JSON (duplicate names at any depth and
// invalid UTF-8 included, exactly as jsontext's defaults refuse them) and
// applies the rules for each name as it goes. It says only whether P is
// good: a refusal is worded by walkPermissions, so the messages (and
// which rule a P breaking several is refused for) stay those of the
// two-pass walk. FuzzScanMatchesWalk holds the two to one verdict.
func scanPermissions(p []byte) (Permissions, bool) {
	var perms Permissions
	s := scanner{p: p, depth: 1}
	if !s.byte('{') {
		return perms, false
	}
	var (
		seen uint8    // a bit per top-level name: a duplicate is refused
		tmp  [64]byte // an escaped top-level name, unquoted
	)
	if s.ws(); s.peek() == '}' {
		s.i++
	} else {
		for {
			name, esc, ok := s.str()
			if !ok {
				return perms, false
			}
			if esc {
				name = unquote(name, tmp[:0])
			}
			var bit uint8
			switch string(name) {
			case "exp":
				bit = 1
			case "nbf":
				bit = 2
			case "cmds":
				bit = 4
			case "ctx":
				bit = 8
			default:
				return perms, false
			}
			if seen&bit != 0 {
				return perms, false
			}
			seen |= bit
			if s.ws(); !s.byte(':') {
				return perms, false
			}
			s.ws()
			switch bit {
			case 1:
				perms.Exp, ok = s.time()
			case 2:
				perms.Nbf, ok = s.time()
			case 4:
				perms.Cmds, perms.HasCmds, ok = s.cmds()
			case 8:
				perms.Ctx, ok = s.ctx()
			}
			if !ok {
				return perms, false
			}
			s.ws()
			if s.peek() == '}' {
				s.i++
				break
			}
			if !s.byte(',') {
				return perms, false
			}
			s.ws()
		}
	}
	s.ws()
	return perms, s.i == len(p)
}

// scanner reads P. The names of the open objects are kept for the
// duplicate check, as spans (no pointers, so the array scanPermissions
// starts them in stays on its stack); only a P with deep or wide objects
// needs more.
type scanner struct {
	p       []byte
	i       int
	names   [32]span // names of the objects now open, innermost last...
	more    []span   // ...past the first len(names)
	n       int      // how many names in all
	escaped []byte   // the names that had escapes, unquoted
	depth   int      // objects and arrays open, P's own included
}

// nameAt is the i'th name of the open objects.
func (s *scanner) nameAt(i int) span {
	if i < len(s.names) {
		return s.names[i]
	}
	return s.more[i-len(s.names)]
}

func (s *scanner) push(n span) {
	if s.n < len(s.names) {
		s.names[s.n] = n
	} else {
		s.more = append(s.more[:s.n-len(s.names)], n)
	}
	s.n++
}

// span is one name: bytes [a, b) of P, or of scanner.escaped if esc.
type span struct {
	a, b int32
	esc  bool
}

// name returns the bytes n stands for.
func (s *scanner) name(n span) []byte {
	if n.esc {
		return s.escaped[n.a:n.b]
	}
	return s.p[n.a:n.b]
}

// wideObject is how many names an object may have before its duplicate
// check moves from a scan of the names so far to a set: a P of 6 KB could
// otherwise hold an object of a thousand names and cost a million compares.
const wideObject = 16

func (s *scanner) peek() byte {
	if s.i < len(s.p) {
		return s.p[s.i]
	}
	return 0
}

// byte consumes c if it is next.
func (s *scanner) byte(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

// ws skips JSON whitespace.
func (s *scanner) ws() {
	for s.i < len(s.p) {
		switch s.p[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// str consumes a string and returns its raw contents (between the quotes)
// and whether they hold an escape. It checks every byte: no control
// character, valid UTF-8, known escapes, and \u surrogates only in pairs.
func (s *scanner) str() (raw []byte, esc, ok bool) {
	if !s.byte('"') {
		return nil, false, false
	}
	start := s.i
	for s.i < len(s.p) {
		c := s.p[s.i]
		switch {
		case c == '"':
			raw = s.p[start:s.i]
			s.i++
			return raw, esc, true
		case c < ' ':
			return nil, false, false
		case c == '\\':
			esc = true
			n := escapeLen(s.p[s.i:])
			if n == 0 {
				return nil, false, false
			}
			s.i += n
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, n := utf8.DecodeRune(s.p[s.i:])
			if r == utf8.RuneError && n == 1 {
				return nil, false, false
			}
			s.i += n
		}
	}
	return nil, false, false
}

// escapeLen is the length of the valid escape at the start of b, or 0:
// one of \" \\ \/ \b \f \n \r \t, or \uXXXX, where a surrogate half must
// be a high one followed at once by \u and a low one.
func escapeLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	switch b[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2
	case 'u':
	default:
		return 0
	}
	r1, ok := hex4(b[2:])
	if !ok {
		return 0
	}
	if !utf16.IsSurrogate(r1) {
		return 6
	}
	if len(b) < 12 || b[6] != '\\' || b[7] != 'u' {
		return 0
	}
	r2, ok := hex4(b[8:])
	if !ok || utf16.DecodeRune(r1, r2) == utf8.RuneError {
		return 0
	}
	return 12
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// unquote appends the value of raw, a string's contents that str has
// checked, to dst.
func unquote(raw, dst []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(raw[i+2:])
			if utf16.IsSurrogate(r) {
				r2, _ := hex4(raw[i+8:])
				dst = utf8.AppendRune(dst, utf16.DecodeRune(r, r2))
				i += 12
				continue
			}
			dst = utf8.AppendRune(dst, r)
			i += 6
			continue
		default: // " \ /
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst
}

// time reads the value of exp or nbf: null, or a plain integer (no
// fraction, exponent, sign or leading zero) in [minTime, maxTime].
func (s *scanner) time() (int64, bool) {
	if s.literal("null") {
		return 0, true
	}
	start := s.i
	for s.i < len(s.p) && '0' <= s.p[s.i] && s.p[s.i] <= '9' {
		s.i++
	}
	d := s.p[start:s.i]
	// At most maxTime's 10 digits; a leading zero is not JSON.
	if len(d) == 0 || len(d) > 10 || d[0] == '0' {
		return 0, false
	}
	var n int64
	for _, c := range d {
		n = n*10 + int64(c-'0')
	}
	return n, n >= minTime && n <= maxTime
}

// cmds reads the value of cmds: null (absent), or an array of non-empty
// strings. The strings without escapes share one allocation, a copy of
// the array's text.
func (s *scanner) cmds() (cmds []string, has, ok bool) {
	if s.literal("null") {
		return nil, false, true
	}
	if !s.byte('[') {
		return nil, false, false
	}
	start := s.i
	type elem struct {
		a, b int // the raw contents' bounds in p
		esc  bool
	}
	var buf [8]elem
	elems := buf[:0]
	if s.ws(); !s.byte(']') {
		for {
			a := s.i + 1
			raw, esc, ok := s.str()
			if !ok || len(raw) == 0 {
				return nil, false, false
			}
			elems = append(elems, elem{a, a + len(raw), esc})
			s.ws()
			if s.byte(']') {
				break
			}
			if !s.byte(',') {
				return nil, false, false
			}
			s.ws()
		}
	}
	cmds = make([]string, len(elems))
	text := string(s.p[start:s.i])
	for i, e := range elems {
		if !e.esc {
			cmds[i] = text[e.a-start : e.b-start]
			continue
		}
		v := unquote(s.p[e.a:e.b], nil)
		cmds[i] = string(v) // never empty: an escape stands for at least one byte
	}
	return cmds, true, true
}

// ctx reads the value of ctx, never interpreted: nil for null, else a
// copy of its exact bytes.
func (s *scanner) ctx() ([]byte, bool) {
	if s.literal("null") {
		return nil, true
	}
	start := s.i
	if !s.value() {
		return nil, false
	}
	return bytes.Clone(s.p[start:s.i]), true
}

// literal consumes lit if it is next.
func (s *scanner) literal(lit string) bool {
	if bytes.HasPrefix(s.p[s.i:], []byte(lit)) {
		s.i += len(lit)
		return true
	}
	return false
}

// maxNesting is jsontext's bound on open objects and arrays, which the
// scan keeps so that the two agree on every P (one within MaxTokenLen
// cannot come near it).
const maxNesting = 10000

// value consumes any JSON value.
func (s *scanner) value() bool {
	switch c := s.peek(); {
	case c == '{' || c == '[':
		if s.depth++; s.depth > maxNesting {
			return false
		}
		ok := s.container(c)
		s.depth--
		return ok
	case c == '"':
		_, _, ok := s.str()
		return ok
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	}
	return false
}

// container consumes an object or an array.
func (s *scanner) container(c byte) bool {
	switch c {
	case '{':
		return s.object()
	default:
		s.i++
		if s.ws(); s.byte(']') {
			return true
		}
		for {
			if !s.value() {
				return false
			}
			s.ws()
			if s.byte(']') {
				return true
			}
			if !s.byte(',') {
				return false
			}
			s.ws()
		}
	}
}

// number consumes a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	s.byte('-')
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case '1' <= c && c <= '9':
		s.digits()
	default:
		return false
	}
	if s.byte('.') && !s.digits() {
		return false
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits consumes one or more digits.
func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.p) && '0' <= s.p[s.i] && s.p[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// object consumes an object, refusing a name it has already seen (after
// unescaping: "a" and "\u0061" are one name).
func (s *scanner) object() bool {
	s.i++ // '{'
	first := s.n
	ok := s.members(first)
	s.n = first
	return ok
}

// members consumes an object's members and its '}'; the names of the
// enclosing objects are the first first of s's names.
func (s *scanner) members(first int) bool {
	var set map[string]struct{} // once the object is wide
	if s.ws(); s.byte('}') {
		return true
	}
	for {
		a := s.i + 1
		raw, esc, ok := s.str()
		if !ok {
			return false
		}
		n := span{a: int32(a), b: int32(a + len(raw))}
		if esc {
			n.a = int32(len(s.escaped))
			s.escaped = unquote(raw, s.escaped)
			n.b, n.esc = int32(len(s.escaped)), true
		}
		name := s.name(n)
		switch {
		case set != nil:
			if _, dup := set[string(name)]; dup {
				return false
			}
			set[string(name)] = struct{}{}
		default:
			for i := first; i < s.n; i++ {
				if bytes.Equal(s.name(s.nameAt(i)), name) {
					return false
				}
			}
			s.push(n)
			if s.n-first > wideObject {
				set = make(map[string]struct{}, 2*wideObject)
				for i := first; i < s.n; i++ {
					set[string(s.name(s.nameAt(i)))] = struct{}{}
				}
			}
		}
		if s.ws(); !s.byte(':') {
			return false
		}
		s.ws()
		if !s.value() {
			return false
		}
		s.ws()
		if s.byte('}') {
			return true
		}
		if !s.byte(',') {
			return false
		}
		s.ws()
	}
}

// walkPermissions is the jsontext walk over P, after the framing checks,
// that words a refusal: the whole of P as JSON first, so a syntax error is
// reported as one rather than as whatever rule the walk reaches first,
// then the rules for each name in order. ParsePermissions calls it only
// for a P that scanPermissions refused, so its cost (two passes, a
// decoder) is never paid by a good token; FuzzScanMatchesWalk holds the
// two to the same verdict and the same Permissions.
func walkPermissions(p []byte) (Permissions, error) {
	var perms Permissions
	// jsontext's defaults are what we want: duplicate names and invalid
	// UTF-8 are errors at every depth.
	dec := jsontext.NewDecoder(bytes.NewReader(p))
	if _, err := dec.ReadValue(); err != nil {
		return perms, jsonError(err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		if err != nil {
			return perms, jsonError(err)
		}
		return perms, malformed("payload: data after the object")
	}

	// Then the rules for each name, over JSON now known to be valid
	// (so duplicate names need not be tracked again).
	dec = jsontext.NewDecoder(bytes.NewReader(p), jsontext.AllowDuplicateNames(true))
	if _, err := dec.ReadToken(); err != nil { // '{'
		return perms, jsonError(err)
	}
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			return Permissions{}, jsonError(err)
		}
		if tok.Kind() == '}' {
			return perms, nil
		}
		switch name := tok.String(); name {
		case "exp":
			perms.Exp, err = readTime(dec, name)
		case "nbf":
			perms.Nbf, err = readTime(dec, name)
		case "cmds":
			perms.Cmds, perms.HasCmds, err = readCmds(dec)
		case "ctx":
			perms.Ctx, err = readCtx(dec)
		default:
			// %.20q: enough to recognise the name, never a long echo of P.
			err = malformed("payload: unknown key %.20q (want exp, nbf, cmds or ctx)", name)
		}
		if err != nil {
			return Permissions{}, err
		}
	}
}

// readTime reads the value of exp or nbf: null, or a plain integer in range.
func readTime(dec *jsontext.Decoder, name string) (int64, error) {
	v, err := dec.ReadValue()
	if err != nil {
		return 0, jsonError(err)
	}
	switch v.Kind() {
	case 'n':
		return 0, nil
	case '0':
	default:
		return 0, malformed("payload: %s is not a number", name)
	}
	// JSON itself already refuses leading zeros and a leading '+'.
	if bytes.ContainsAny(v, ".eE") {
		return 0, malformed("payload: %s is not a plain integer", name)
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || n < minTime || n > maxTime {
		return 0, malformed("payload: %s out of range [%d, %d]", name, minTime, maxTime)
	}
	return n, nil
}

// readCmds reads the value of cmds: null (absent), or an array of non-empty
// strings. An empty array is kept as a non-nil empty slice.
func readCmds(dec *jsontext.Decoder) (cmds []string, has bool, err error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, false, jsonError(err)
	}
	switch tok.Kind() {
	case 'n':
		return nil, false, nil
	case '[':
	default:
		return nil, false, malformed("payload: cmds is not an array")
	}
	cmds = []string{}
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, false, jsonError(err)
		}
		switch tok.Kind() {
		case ']':
			return cmds, true, nil
		case '"':
		default:
			return nil, false, malformed("payload: cmds[%d] is not a string", len(cmds))
		}
		s := tok.String()
		if s == "" {
			return nil, false, malformed("payload: cmds[%d] is empty", len(cmds))
		}
		cmds = append(cmds, s)
	}
}

// readCtx reads the value of ctx, never interpreted: nil for null, else a
// copy of its exact bytes.
func readCtx(dec *jsontext.Decoder) ([]byte, error) {
	v, err := dec.ReadValue()
	if err != nil {
		return nil, jsonError(err)
	}
	if v.Kind() == 'n' {
		return nil, nil
	}
	return bytes.Clone(v), nil
}

// jsonError turns a jsontext error into a malformed-payload error of bounded
// length (jsontext's own message may quote a name of any length).
func jsonError(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return malformed("payload: invalid JSON: unexpected end")
	}
	var se *jsontext.SyntacticError
	if !errors.As(err, &se) {
		return malformed("payload: invalid JSON")
	}
	if errors.Is(err, jsontext.ErrDuplicateName) {
		return malformed("payload: duplicate key %.20q within %.60q", se.JSONPointer.LastToken(), se.JSONPointer.Parent())
	}
	if se.Err == nil {
		return malformed("payload: invalid JSON at offset %d", se.ByteOffset)
	}
	return malformed("payload: invalid JSON at offset %d: %.80s", se.ByteOffset, se.Err)
}

// ErrCtxHeader: a ctx that could never be sent to a VM in the
// X-ExeDev-Token-Ctx header.
var ErrCtxHeader = errors.New("ctx cannot travel in a header")

// CheckCtxHeader is the one rule for what a ctx may hold to reach a VM:
// its bytes must make an HTTP header value (RFC 9110 field-value: no
// control byte but tab). JSON allows a raw DEL (0x7f) inside strings, and
// tab, CR and LF between values, which the P rules only partly refuse: a
// token with such a ctx is refused at minting (generate-api-key, exed token
// mint, MintExe0) and, if minted elsewhere, by the proxy on every use.
func CheckCtxHeader(ctx []byte) error {
	for _, c := range ctx {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Errorf("tokens: %w: it holds the control byte 0x%02x (escape it in a JSON string: \\u%04x)", ErrCtxHeader, c, c)
		}
	}
	return nil
}

// BuildPayload makes P, as generate-api-key and token mint do:
// {"exp":…,"nbf":…,"cmds":[…],"ctx":…} in that order, leaving out a zero exp
// or nbf, cmds when hasCmds is false, and a nil ctx. ctx is inserted
// verbatim, so it must be one compact-enough JSON value: no surrounding
// whitespace, no CR or LF. The result always passes ParsePermissions.
func BuildPayload(exp, nbf int64, cmds []string, hasCmds bool, ctx []byte) ([]byte, error) {
	p := []byte{'{'}
	sep := func() {
		if len(p) > 1 {
			p = append(p, ',')
		}
	}
	if exp != 0 {
		p = strconv.AppendInt(append(p, `"exp":`...), exp, 10)
	}
	if nbf != 0 {
		sep()
		p = strconv.AppendInt(append(p, `"nbf":`...), nbf, 10)
	}
	if hasCmds {
		sep()
		p = append(p, `"cmds":[`...)
		for i, c := range cmds {
			if i > 0 {
				p = append(p, ',')
			}
			var err error
			if p, err = jsontext.AppendQuote(p, c); err != nil {
				return nil, fmt.Errorf("tokens: build payload: cmds[%d]: %w", i, err)
			}
		}
		p = append(p, ']')
	}
	if ctx != nil {
		sep()
		p = append(append(p, `"ctx":`...), ctx...)
	}
	p = append(p, '}')

	perms, err := ParsePermissions(p)
	if err != nil {
		return nil, fmt.Errorf("tokens: build payload: %w", err)
	}
	if !bytes.Equal(perms.Ctx, ctx) {
		return nil, fmt.Errorf("tokens: build payload: ctx must be one JSON value without surrounding whitespace")
	}
	return p, nil
}

// maxCtxErrorDetail bounds how much of jsontext's message CheckCtx repeats
// (it may quote a name of any length).
const maxCtxErrorDetail = 80

// CheckCtx reports what is wrong with ctx as a token's ctx, in words for
// the person who typed it: it must be one JSON value, without duplicate
// names, whitespace around it, or a line break or NUL byte anywhere (P may
// hold none), and not null (which in P means no ctx). The error names the problem and its byte offset in ctx, not
// P's: generate-api-key and token mint check --ctx with it before building
// P, so that a shell that ate the quotes gets a one-line answer.
func CheckCtx(ctx []byte) error {
	switch {
	case len(ctx) == 0:
		return errors.New("empty")
	case bytes.ContainsAny(ctx, "\r\n\x00"):
		return errors.New("it holds a line break or a NUL byte")
	case bytes.IndexAny(ctx[:1], " \t") == 0 || bytes.IndexAny(ctx[len(ctx)-1:], " \t") == 0:
		return errors.New("whitespace around the value")
	}
	dec := jsontext.NewDecoder(bytes.NewReader(ctx))
	v, err := dec.ReadValue()
	if err == nil && v.Kind() == 'n' {
		return errors.New("null is no ctx at all: leave --ctx out") // P's null counts as absent
	}
	if err == nil {
		if _, err = dec.ReadToken(); err == io.EOF {
			return nil
		} else if err == nil {
			return errors.New("more than one JSON value")
		}
	}
	var se *jsontext.SyntacticError
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("the JSON ends too soon")
	case !errors.As(err, &se):
		return errors.New("not valid JSON")
	case errors.Is(err, jsontext.ErrDuplicateName):
		return fmt.Errorf("duplicate key %.20q", se.JSONPointer.LastToken())
	case se.Err == nil:
		return fmt.Errorf("not valid JSON at offset %d", se.ByteOffset)
	}
	return fmt.Errorf("%.*s at offset %d", maxCtxErrorDetail, se.Err, se.ByteOffset)
}
