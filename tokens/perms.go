package tokens

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"

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

	// First the whole of P as JSON, so a syntax error is reported as one
	// rather than as whatever rule the walk below reaches first.
	// jsontext's defaults are what we want: duplicate names and invalid
	// UTF-8 are errors at every depth.
	// IsValid is the cheap check; a decoder says what is wrong.
	if !jsontext.Value(p).IsValid() {
		dec := jsontext.NewDecoder(bytes.NewReader(p))
		if _, err := dec.ReadValue(); err != nil {
			return perms, jsonError(err)
		}
		if _, err := dec.ReadToken(); err != nil && err != io.EOF {
			return perms, jsonError(err)
		}
		return perms, malformed("payload: data after the object")
	}

	// Then the rules for each name, over JSON now known to be valid
	// (so duplicate names need not be tracked again).
	dec := jsontext.NewDecoder(bytes.NewReader(p), jsontext.AllowDuplicateNames(true))
	if _, err := dec.ReadToken(); err != nil { // '{'
		return perms, jsonError(err)
	}
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			return Permissions{}, jsonError(err)
		}
		if tok.Kind() == '}' {
			break
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
	return perms, nil
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
