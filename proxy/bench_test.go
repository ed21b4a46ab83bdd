package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/exed-dev/exed/tokens"
)

// Proxy benchmarks: each request goes through the handler in process and
// over loopback TCP to one small upstream, in parallel (GOMAXPROCS
// goroutines). Compare BenchmarkProxyBare with the others for the cost
// exed adds.

var okUpstream = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte("ok\n"))
})

// benchWorld is a world for the proxy benchmarks: okUpstream, and logging
// as exed serve does, Info and up, into a bounded buffer (benchLog).
func benchWorld(b *testing.B, opts ...worldOption) *world {
	return newWorld(b, okUpstream, append(opts, func(c *Config) {
		l := &benchLog{}
		c.Log = slog.New(slog.NewTextHandler(l, nil))
		c.AccessLog = l
	})...)
}

// benchLog stands in for exed serve's log writer: lines copied under a
// mutex into a 64 KiB buffer, emptied when full. (The tests' growing
// buffer would hold every line of a run, and the larger heap would make
// garbage collection rarer for the benchmarks that log than for the bare
// proxy, which does not.)
type benchLog struct {
	mu  sync.Mutex
	buf [64 << 10]byte
	n   int
}

func (l *benchLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n+len(p) > len(l.buf) {
		l.n = 0
	}
	l.n += copy(l.buf[l.n:], p)
	return len(p), nil
}

func benchServe(b *testing.B, h http.Handler, host string, header func() string) {
	b.Helper()
	var set func(*http.Request)
	if header != nil {
		set = func(r *http.Request) { r.Header.Set("X-Exedev-Authorization", header()) }
	}
	benchServeWith(b, h, host, set)
}

// benchServeWith is benchServe with set adding the request's credential.
func benchServeWith(b *testing.B, h http.Handler, host string, set func(*http.Request)) {
	b.Helper()
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	defer func() {
		// CPU time per request, the handler's, the upstream's and the
		// client's together: the figure that other processes' load on the
		// machine disturbs least (ns/op counts their time slices too).
		b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	}()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodGet, "http://"+host+"/bench", nil)
			r.RemoteAddr = "127.0.0.1:1234"
			if set != nil {
				set(r)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	})
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProxyBare is httputil.ReverseProxy alone, same upstream, same
// transport settings, same buffer pool and flushing: the floor.
func BenchmarkProxyBare(b *testing.B) {
	w := benchWorld(b)
	benchServe(b, bareProxy(w), "web.exe.xyz", nil)
}

// bareProxy is the floor the proxy benchmarks compare with: a
// ReverseProxy to w's upstream with exed's transport and buffer pool.
func bareProxy(w *world) *httputil.ReverseProxy {
	u, _ := url.Parse(w.upstream.URL)
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
		},
		Transport:  NewTransport(),
		BufferPool: &bufferPool{},
	}
}

// BenchmarkProxyBareSameRequest is BenchmarkProxyBare given the requests
// of BenchmarkProxyCachedToken (the token header, which it forwards): the
// floor for allocations, the request's own header counted on both sides.
func BenchmarkProxyBareSameRequest(b *testing.B) {
	w := benchWorld(b)
	hdr := bearerHdr(w.vmToken("web", `{"ctx":{"role":"bench"}}`))
	benchServe(b, bareProxy(w), "web.exe.xyz", func() string { return hdr })
}

// BenchmarkProxyCachedToken: one token, verified once, then from the
// Verifier's cache.
func BenchmarkProxyCachedToken(b *testing.B) {
	w := benchWorld(b)
	hdr := bearerHdr(w.vmToken("web", `{"ctx":{"role":"bench"}}`))
	benchServe(b, w.h, "web.exe.xyz", func() string { return hdr })
}

// BenchmarkProxyCachedTokenAssertion: BenchmarkProxyCachedToken with
// signed identity assertions on: the reused assertion is added to each
// request.
func BenchmarkProxyCachedTokenAssertion(b *testing.B) {
	w := benchWorld(b, withAssertions(b))
	hdr := bearerHdr(w.vmToken("web", `{"ctx":{"role":"bench"}}`))
	benchServe(b, w.h, "web.exe.xyz", func() string { return hdr })
}

// BenchmarkProxySessionCookie: a browser session's VM cookie instead of a
// token (the session from the session cache), beside the VM's own cookies.
func BenchmarkProxySessionCookie(b *testing.B) {
	w := benchWorld(b)
	cookie := "_ga=GA1.1.12345; " + benchCookie(b, w) + "; theme=dark"
	benchServeWith(b, w.h, "web.exe.xyz", func(r *http.Request) { r.Header.Set("Cookie", cookie) })
}

// BenchmarkProxySessionCookieAssertion: BenchmarkProxySessionCookie with
// signed identity assertions on.
func BenchmarkProxySessionCookieAssertion(b *testing.B) {
	w := benchWorld(b, withAssertions(b))
	cookie := "_ga=GA1.1.12345; " + benchCookie(b, w) + "; theme=dark"
	benchServeWith(b, w.h, "web.exe.xyz", func(r *http.Request) { r.Header.Set("Cookie", cookie) })
}

// BenchmarkProxyNewToken: every request carries a token never seen before
// (pre-minted outside the timer): registry lookup, signature check and a
// cache insert each time.
func BenchmarkProxyNewToken(b *testing.B) {
	w := benchWorld(b)
	b.StopTimer()
	pool := make([]string, b.N+1)
	for i := range pool {
		pool[i] = bearerHdr(w.mint(w.alice.Signer, vmNamespace("web"), `{"ctx":`+strconv.Itoa(i)+`}`))
	}
	var next atomic.Int64
	b.StartTimer()
	benchServe(b, w.h, "web.exe.xyz", func() string { return pool[next.Add(1)-1] })
}

// BenchmarkProxyPublicNoToken: a public VM, no token: routing, VM cache
// and header rewrite only.
func BenchmarkProxyPublicNoToken(b *testing.B) {
	w := benchWorld(b)
	benchServe(b, w.h, "pub.exe.xyz", nil)
}

// BenchmarkRewriteHeaders is the header hygiene and identity rewrite on a
// browser-sized header set (the Clone is included: the proxy clones too).
func BenchmarkRewriteHeaders(b *testing.B) {
	base := http.Header{
		"Accept":                 {"text/html,application/xhtml+xml"},
		"Accept-Encoding":        {"gzip, deflate, br"},
		"Accept-Language":        {"en-GB,en;q=0.9"},
		"Cookie":                 {"session=abc; theme=dark"},
		"User-Agent":             {"Mozilla/5.0 (X11; Linux x86_64)"},
		"Authorization":          {"Basic YWRtaW46cHc="},
		"X-Exedev-Authorization": {"Bearer exe1.ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
		"X-Exedev-Userid":        {"usrspoofed"},
		"Referer":                {"https://web.exe.xyz/"},
		"Sec-Fetch-Mode":         {"navigate"},
	}
	g := &tokens.Grant{}
	g.User.ID, g.User.Email, g.Perms.Ctx = "usrabcdefghijklmnop", "alice@example.com", []byte(`{"role":"deploy"}`)
	b.ReportAllocs()
	for b.Loop() {
		h := base.Clone()
		scrubHeaders(h)
		h.Set(headerUserID, g.User.ID)
		h.Set(headerEmail, g.User.Email)
		h.Set(headerCtx, string(g.Perms.Ctx))
	}
}

// BenchmarkCheckPath: the reserved-path check on an ordinary path (the hot
// path, no allocation) and on one with percent-encoding (every upstream
// spelling tried).
func BenchmarkCheckPath(b *testing.B) {
	for _, p := range []string{"/api/v1/items/42", "/files/my%20report%2Fq3.pdf"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				checkPath(p)
			}
		})
	}
}

// memTransport answers every request at once from memory, as okUpstream
// would: with it, the in-memory benchmarks measure the proxy's own cost
// per request without the loopback round trip and the upstream's, which
// are the same for the bare proxy and exed and dominate the others.
type memTransport struct{}

func (memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/plain"}},
		Body:          io.NopCloser(strings.NewReader("ok\n")),
		ContentLength: 3, Request: r,
	}, nil
}

// BenchmarkProxyInMemory: the bare proxy and exed's handler (a cached
// token, a session cookie, each with assertions off and on) over
// memTransport.
func BenchmarkProxyInMemory(b *testing.B) {
	mem := func(c *Config) { c.Transport = memTransport{} }
	b.Run("bare", func(b *testing.B) {
		w := benchWorld(b)
		rp := bareProxy(w)
		rp.Transport = memTransport{}
		benchServe(b, rp, "web.exe.xyz", nil)
	})
	for _, assert := range []bool{false, true} {
		opts := []worldOption{mem}
		suffix := ""
		if assert {
			opts, suffix = append(opts, withAssertions(b)), "-assertion"
		}
		b.Run("token"+suffix, func(b *testing.B) {
			w := benchWorld(b, opts...)
			hdr := bearerHdr(w.vmToken("web", `{"ctx":{"role":"bench"}}`))
			benchServe(b, w.h, "web.exe.xyz", func() string { return hdr })
		})
		b.Run("cookie"+suffix, func(b *testing.B) {
			w := benchWorld(b, opts...)
			cookie := "_ga=GA1.1.12345; " + benchCookie(b, w) + "; theme=dark"
			benchServeWith(b, w.h, "web.exe.xyz", func(r *http.Request) { r.Header.Set("Cookie", cookie) })
		})
	}
}
