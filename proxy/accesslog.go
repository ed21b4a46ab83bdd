package proxy

import (
	"context"
	"log/slog"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// The access log: one line per request for a VM host (logVM). It is the
// hottest line exed writes, so with Config.AccessLog set the proxy
// formats it itself, appending into a pooled buffer, byte for byte as
// slog's TextHandler (or JSONHandler) with no options would: what slog
// costs per line (a Record, the caller's PC, the handler's generic walk
// over attributes, the Duration's string) was a third of what the proxy
// adds to a cached-token request. Without it, the line goes through
// Config.Log as any other.

// accessLineCap is what a pooled buffer starts with: a line with a user,
// fingerprint and reason fits.
const accessLineCap = 512

// accessLine gathers the fields of one line, either formatted into buf
// (directly, for Config.AccessLog) or as a slog.Record for Config.Log.
type accessLine struct {
	direct bool // format into buf; else add to rec
	json   bool
	buf    []byte
	pooled *[]byte // where buf came from
	rec    slog.Record
}

// begin starts a directly formatted line: time, level and message, as
// slog's handlers write the built-in keys.
func (l *accessLine) begin(t time.Time, level slog.Level, msg string) {
	t = t.Round(0) // as slog: no monotonic reading
	if l.json {
		l.buf = append(l.buf, `{"time":"`...)
		l.buf = t.AppendFormat(l.buf, time.RFC3339Nano)
		l.buf = append(l.buf, `","level":"`...)
		l.buf = append(l.buf, level.String()...)
		l.buf = append(l.buf, `","msg":`...)
		l.buf = strconv.AppendQuote(l.buf, msg) // a constant: no escaping needed
		return
	}
	l.buf = append(l.buf, "time="...)
	l.buf = appendRFC3339Millis(l.buf, t)
	l.buf = append(l.buf, " level="...)
	l.buf = append(l.buf, level.String()...)
	l.buf = append(l.buf, " msg="...)
	l.buf = append(l.buf, msg...) // a constant: no quoting needed
}

// end finishes a directly formatted line.
func (l *accessLine) end() {
	if l.json {
		l.buf = append(l.buf, "}\n"...)
		return
	}
	l.buf = append(l.buf, '\n')
}

// key starts the field key (a constant that needs no quoting or escaping).
func (l *accessLine) key(k string) {
	if l.json {
		l.buf = append(l.buf, ',', '"')
		l.buf = append(l.buf, k...)
		l.buf = append(l.buf, '"', ':')
		return
	}
	l.buf = append(l.buf, ' ')
	l.buf = append(l.buf, k...)
	l.buf = append(l.buf, '=')
}

func (l *accessLine) str(k, v string) {
	if !l.direct {
		l.rec.AddAttrs(slog.String(k, v))
		return
	}
	l.key(k)
	switch {
	case l.json:
		l.buf = append(l.buf, '"')
		l.buf = appendEscapedJSONString(l.buf, v)
		l.buf = append(l.buf, '"')
	case needsQuoting(v):
		l.buf = strconv.AppendQuote(l.buf, v)
	default:
		l.buf = append(l.buf, v...)
	}
}

func (l *accessLine) int(k string, v int64) {
	if !l.direct {
		l.rec.AddAttrs(slog.Int64(k, v))
		return
	}
	l.key(k)
	l.buf = strconv.AppendInt(l.buf, v, 10)
}

func (l *accessLine) duration(k string, d time.Duration) {
	if !l.direct {
		l.rec.AddAttrs(slog.Duration(k, d))
		return
	}
	l.key(k)
	if l.json {
		l.buf = strconv.AppendInt(l.buf, int64(d), 10) // as json.Marshal does
		return
	}
	l.buf = append(l.buf, d.String()...) // String is inlined: its bytes stay on the stack
}

// startLine starts a line of msg (a constant that needs no quoting) at
// level, at time at, if Config.Log logs that level: written directly to
// Config.AccessLog when direct and that is set, else through Config.Log.
// Add the fields, then writeLine.
func (h *Handler) startLine(at time.Time, level slog.Level, msg string, direct bool) (accessLine, bool) {
	if !h.c.Log.Enabled(context.Background(), level) {
		return accessLine{}, false
	}
	if !direct || h.c.AccessLog == nil {
		// A Record without the caller's PC: slog.Logger would take one
		// with runtime.Callers on every line.
		return accessLine{rec: slog.NewRecord(at, level, msg, 0)}, true
	}
	l := accessLine{direct: true, json: h.c.AccessLogJSON, pooled: h.lines.Get().(*[]byte)}
	l.buf = (*l.pooled)[:0]
	l.begin(at, level, msg)
	return l, true
}

// writeLine writes what startLine started: one Write to
// Config.AccessLog, as slog's handlers write a line, or the Record to
// Config.Log's handler.
func (h *Handler) writeLine(l *accessLine) {
	if !l.direct {
		h.c.Log.Handler().Handle(context.Background(), l.rec)
		return
	}
	l.end()
	h.c.AccessLog.Write(l.buf)
	if cap(l.buf) <= 4*accessLineCap { // an outsized line's buffer is not kept
		*l.pooled = l.buf
		h.lines.Put(l.pooled)
	}
}

// What follows is slog's own formatting (log/slog, Go 1.26: text_handler.go,
// json_handler.go and handler.go), so that a directly written line is the
// line slog writes.

// needsQuoting is slog's TextHandler rule for quoting a string value.
func needsQuoting(s string) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			// Quote anything except a backslash that would need quoting in a
			// JSON string, as well as space and '='.
			if b != '\\' && (b == ' ' || b == '=' || !jsonSafe(b)) {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// jsonSafe reports whether ASCII b goes into a JSON string unescaped: all
// but the control characters, '"' and '\\' (slog's safeSet).
func jsonSafe(b byte) bool { return b >= 0x20 && b != '"' && b != '\\' && b < utf8.RuneSelf }

// appendRFC3339Millis is slog's TextHandler time: RFC 3339 with exactly
// three digits of milliseconds.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	// RFC3339Nano trims trailing zeros, so add 1/10 ms to keep 4 digits
	// after the period and drop the fourth.
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...)
}

// appendEscapedJSONString is slog's JSONHandler string escaping (no HTML
// escaping; invalid UTF-8 as U+FFFD; U+2028 and U+2029 escaped).
func appendEscapedJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if jsonSafe(b) {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\')
			switch b {
			case '\\', '"':
				buf = append(buf, b)
			case '\n':
				buf = append(buf, 'n')
			case '\r':
				buf = append(buf, 'r')
			case '\t':
				buf = append(buf, 't')
			default:
				// The other bytes < 0x20.
				buf = append(buf, 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// LINE SEPARATOR and PARAGRAPH SEPARATOR: valid JSON, but not
		// JavaScript.
		if c == '\u2028' || c == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\u202`...)
			buf = append(buf, hex[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(buf, s[start:]...)
}
