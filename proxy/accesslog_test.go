package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// An access line written directly (Config.AccessLog) is byte for byte the
// line slog's TextHandler and JSONHandler write, whatever its fields hold:
// operators' parsers and the log tests read one format.
func TestAccessLogAsSlog(t *testing.T) {
	odd := []string{
		"", "plain", "with space", "a=b", `quo"te`, `back\slash`, "new\nline", "tab\there",
		"\x00\x1f\x7f", "caf\u00e9", "\u2028\u2029", "bad\xffutf8", "\u00a0nbsp", "emoji\U0001F600", "<html>&",
	}
	grant := &tokens.Grant{}
	grant.User.ID, grant.Key.Fingerprint = "usr123", "SHA256:abc+/="
	session := &sessionEntry{s: store.Session{ID: "ses 1", UserID: "usr\"2"}}
	var cases []*access
	for _, s := range odd {
		cases = append(cases,
			&access{carrier: s},
			&access{carrier: carrierCookie, session: session, reason: errors.New(s)},
			&access{carrier: "x-exedev-authorization", grant: grant, reason: &tokens.Error{Check: "sig", Reason: tokens.Reason(s), Detail: s}},
		)
	}
	cases = append(cases, &access{reason: fmt.Errorf("upstream: %w", errors.New("dial tcp: refused"))})
	durations := []time.Duration{0, 1, 999, 1500, 1_500_000, 2_500_000_000, 90 * time.Minute, -3 * time.Millisecond}
	times := []time.Time{
		time.Date(2026, 12, 3, 9, 41, 6, 0, time.UTC),
		time.Date(2026, 12, 3, 9, 41, 6, 123_456_789, time.FixedZone("X", 5*3600+1800)),
		time.Date(1999, 1, 2, 3, 4, 5, 999_999_999, time.FixedZone("Y", -7*3600)),
		time.Now(), // with a monotonic reading
	}
	for _, json := range []bool{false, true} {
		var viaSlog, direct bytes.Buffer
		newHandler := func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) }
		if json {
			newHandler = func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) }
		}
		hs := New(Config{Log: slog.New(newHandler(&viaSlog))})
		hd := New(Config{Log: slog.New(newHandler(io.Discard)), AccessLog: &direct, AccessLogJSON: json})
		n := 0
		for i, a := range cases {
			for j, s := range odd {
				r := httptest.NewRequest(http.MethodGet, "http://web.exe.xyz/", nil)
				r.Method, r.RemoteAddr = s, odd[(j+i)%len(odd)]
				at, d := times[(i+j)%len(times)], durations[(i+j)%len(durations)]
				status := []int{200, 401, 502}[(i+j)%3]
				hs.logVM(r, routeVM, odd[i%len(odd)], status, at, d, int64(i*j), a)
				hd.logVM(r, routeVM, odd[i%len(odd)], status, at, d, int64(i*j), a)
				n++
			}
		}
		want := viaSlog.Bytes()
		if !bytes.Equal(direct.Bytes(), want) {
			wl, gl := bytes.Split(want, []byte("\n")), bytes.Split(direct.Bytes(), []byte("\n"))
			for i := range min(len(wl), len(gl)) {
				if !bytes.Equal(wl[i], gl[i]) {
					t.Fatalf("json=%v: line %d differs:\n got %s\nwant %s", json, i, gl[i], wl[i])
				}
			}
			t.Fatalf("json=%v: %d lines, want %d", json, len(gl), len(wl))
		}
		if got := bytes.Count(direct.Bytes(), []byte("\n")); got != n {
			t.Errorf("json=%v: %d lines, want %d", json, got, n)
		}
	}
}

// Config.Log's level still decides: a handler at Warn drops the Info
// lines written directly too.
func TestAccessLogLevel(t *testing.T) {
	var out bytes.Buffer
	h := New(Config{Log: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})), AccessLog: &out})
	r := httptest.NewRequest(http.MethodGet, "http://web.exe.xyz/", nil)
	h.logVM(r, routeVM, "web", 200, time.Now(), time.Millisecond, 3, &access{})
	if out.Len() != 0 {
		t.Fatalf("an Info line below the handler's level: %s", out.Bytes())
	}
	h.logVM(r, routeVM, "web", 502, time.Now(), time.Millisecond, 3, &access{reason: errors.New("upstream")})
	if !bytes.Contains(out.Bytes(), []byte("level=WARN")) {
		t.Fatalf("no Warn line: %q", out.Bytes())
	}
}

// BenchmarkAccessLine: one access line of a cached-token request and of a
// refused one, written directly (Config.AccessLog) and through slog's
// TextHandler, to a writer that discards.
func BenchmarkAccessLine(b *testing.B) {
	grant := &tokens.Grant{}
	grant.User.ID, grant.Key.Fingerprint = "usrabcdefghijklmnop", "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"
	refusal := &tokens.Error{Check: "signature", Reason: tokens.ReasonBadSignature, Detail: "ssh: signature did not verify"}
	r := httptest.NewRequest(http.MethodGet, "http://web.exe.xyz/", nil)
	r.RemoteAddr = "127.0.0.1:1234"
	for _, c := range []struct {
		name string
		a    *access
	}{
		{"ok", &access{carrier: "x-exedev-authorization", grant: grant}},
		{"refused", &access{carrier: "x-exedev-authorization", reason: refusal}},
	} {
		for _, direct := range []bool{true, false} {
			cfg := Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			name := c.name + "/slog"
			if direct {
				cfg.AccessLog, name = io.Discard, c.name+"/direct"
			}
			h := New(cfg)
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					h.logVM(r, routeVM, "web", 200, time.Now(), 1234567*time.Nanosecond, 3, c.a)
				}
			})
		}
	}
}
