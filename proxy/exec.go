package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/exed-dev/exed/sshcmd"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// maxExecBody bounds a /exec body (past it, 413): it is one command line,
// and the largest real one (an ssh-key add with an RSA 16384 key) is far
// below.
const maxExecBody = 64 << 10

// serveAPI serves the API host <Domain>.
func (h *Handler) serveAPI(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == jwksPath {
		h.serveJWKS(w, r)
		return
	}
	if r.URL.Path != "/exec" {
		h.serveMain(w, r) // the login routes; 404 for anything else
		return
	}
	start := time.Now()
	res := h.exec(w, r)
	h.execHeaders(w.Header(), &res)
	n := writeJSON(w, res.status, res.body)
	h.c.Metrics.ExecRequest(res.path, res.status)
	h.logExec(r, start, n, res)
}

// execHeaders sets the headers that go with res's status: Allow, the
// Bearer challenge, and the Retry-After of a 429, the key's rate limit or
// a throttled token's (verifyRefusal).
func (h *Handler) execHeaders(hdr http.Header, res *execResult) {
	switch res.status {
	case http.StatusMethodNotAllowed:
		hdr.Set("Allow", http.MethodPost)
	case http.StatusUnauthorized:
		hdr.Set("WWW-Authenticate", "Bearer")
	case http.StatusTooManyRequests:
		if errors.Is(res.reason, tokens.ErrThrottled) {
			hdr.Set("Retry-After", retryAfterThrottled())
		} else {
			hdr.Set("Retry-After", strconv.Itoa(retryAfter(h.c.ExecRate)))
		}
	}
}

// execResult is what one /exec request came to.
type execResult struct {
	status  int
	body    []byte
	path    string // canonical command path, once resolved
	carrier string
	grant   *tokens.Grant
	reason  error // why it was refused, for the log only
}

// exec runs one /exec request: method → token → verify the credential →
// rate limit → body (under its own read deadline) → split → parse → the
// command's grant → run what was parsed. Nothing of the body is read for a
// client without a valid token, or one over its rate limit, and a verified
// token is cached only once the rate limit has let the request through.
func (h *Handler) exec(w http.ResponseWriter, r *http.Request) (res execResult) {
	bodyDone := false
	fail := func(status int, msg string) execResult {
		if !bodyDone && r.ContentLength != 0 {
			abandonBody(w)
		}
		res.status, res.body = status, errorBody(msg)
		return res
	}
	if r.Method != http.MethodPost {
		return fail(http.StatusMethodNotAllowed, "method not allowed: use POST")
	}
	token, carrier, err := findToken(r.Header, false)
	res.carrier = carrier
	switch {
	case errors.Is(err, errConflict):
		res.reason = err
		return fail(http.StatusBadRequest, "conflicting tokens")
	case err != nil:
		res.reason = err
		return fail(http.StatusUnauthorized, "invalid token")
	case token == "":
		return fail(http.StatusUnauthorized, "missing token: send Authorization: Bearer with an exe0 or exe1 token")
	}
	if r.ContentLength > maxExecBody {
		return fail(http.StatusRequestEntityTooLarge, "body over 64 KiB")
	}

	pending, err := h.c.Verifier.Begin(r.Context(), token, tokens.Target{Namespace: h.ns.API()})
	if err != nil {
		res.reason = err
		return fail(verifyRefusal(err))
	}
	res.grant = pending.Grant()
	if !h.limits.allow(res.grant.Key.Fingerprint, h.c.Now()) {
		return fail(http.StatusTooManyRequests, "rate limit exceeded")
	}

	// The body of a command line arrives at once; a client trickling it
	// holds a connection, so it gets ExecBodyTimeout (a per-route
	// deadline: a global ReadTimeout would cut git pushes to VMs).
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(h.c.ExecBodyTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fail(http.StatusBadRequest, "cannot read body")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxExecBody))
	if err == nil {
		bodyDone = true
		rc.SetReadDeadline(time.Time{})
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return fail(http.StatusRequestEntityTooLarge, "body over 64 KiB")
	case err != nil:
		res.reason = fmt.Errorf("read body: %w", err)
		return fail(http.StatusBadRequest, "cannot read body")
	case len(body) == 0:
		return fail(http.StatusBadRequest, "empty body: send one command line")
	case bytes.IndexByte(body, 0) >= 0:
		return fail(http.StatusBadRequest, "NUL byte in command line")
	}
	args, err := sshcmd.Split(string(body))
	if err != nil {
		return fail(http.StatusBadRequest, err.Error())
	}
	if len(args) == 0 {
		return fail(http.StatusBadRequest, "empty command line")
	}
	inv, err := h.c.Suite.Parse(args)
	if err != nil {
		return fail(http.StatusNotFound, err.Error())
	}
	res.path = inv.Path()

	command := res.path
	if inv.IsHelp() {
		command = "" // --help is always allowed
	}
	res.grant, err = pending.Finish(command)
	if errors.Is(err, tokens.ErrNotGranted) {
		res.reason = err
		return fail(http.StatusForbidden, "command not granted by this token: "+res.path)
	}
	if err != nil {
		res.reason = err
		return fail(verifyRefusal(err))
	}
	if h.c.LastUsed != nil {
		h.c.LastUsed.Touch(res.grant.Key.Fingerprint)
	}

	ctx, cancel := context.WithTimeout(r.Context(), h.c.ExecTimeout)
	defer cancel()
	var out bytes.Buffer
	// The token acts within its key's restrictions and its own exp and
	// cmds: whatever it mints or adds is at least as restricted.
	caller := sshcmd.Caller{
		User:       res.grant.User,
		Key:        res.grant.Key,
		Limits:     tokens.Effective(res.grant.Key, &res.grant.Perms),
		Token:      true,
		RemoteAddr: r.RemoteAddr,
		Via:        store.ViaExec,
	}
	stdio := sshcmd.IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: io.Discard}
	if err := inv.Run(ctx, caller, stdio, true); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fail(http.StatusGatewayTimeout, "command timed out")
		}
		return fail(http.StatusUnprocessableEntity, err.Error())
	}
	res.status, res.body = http.StatusOK, out.Bytes()
	return res
}

// abandonBody gives up on a request body that was not (or not wholly)
// read: net/http would otherwise wait for it after the reply, to reuse the
// connection, and a client that never sends it would hold the connection
// as long as it likes. The connection closes after the reply instead.
func abandonBody(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	http.NewResponseController(w).SetReadDeadline(time.Now())
}

// errorBody is {"error":msg}.
func errorBody(msg string) []byte {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	return b
}

// writeJSON writes a JSON reply (body is already encoded) and returns the
// number of body bytes written.
func writeJSON(w http.ResponseWriter, status int, body []byte) int64 {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	n, _ := w.Write(body)
	if len(body) > 0 && body[len(body)-1] != '\n' {
		m, _ := w.Write([]byte{'\n'})
		n += m
	}
	return int64(n)
}

// retryAfter is the whole seconds until one more request is allowed.
func retryAfter(l rate.Limit) int {
	if l <= 0 || l == rate.Inf {
		return 1
	}
	return max(1, int(math.Ceil(1/float64(l))))
}

// logExec writes the one log line of a /exec request: the command path,
// never its arguments (they may hold a token) nor its error text. bytes is
// the size of the reply body.
func (h *Handler) logExec(r *http.Request, start time.Time, bytes int64, res execResult) {
	now := time.Now()
	l, ok := h.startLine(now, slog.LevelInfo, "exec", false)
	if !ok {
		return
	}
	l.str("route", "exec")
	l.int("status", int64(res.status))
	l.duration("duration", now.Sub(start))
	l.int("bytes", bytes)
	l.str("remote_addr", r.RemoteAddr)
	if res.path != "" {
		l.str("command", res.path)
	}
	if res.carrier != "" {
		l.str("carrier", res.carrier)
	}
	if g := res.grant; g != nil {
		l.str("user_id", g.User.ID)
		l.str("fingerprint", g.Key.Fingerprint)
	}
	if res.reason != nil {
		appendReason(&l, res.reason)
	}
	h.writeLine(&l)
}
