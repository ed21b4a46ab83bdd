package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The load generator speaks HTTP/1.1 over raw keep-alive connections with
// prebuilt requests and a minimal response reader: it shares the machine's
// cores with the servers it measures, so it should cost as little as it
// can (net/http's client costs about as much per request as a small
// server does).

// conn is one keep-alive client connection.
type conn struct {
	addr string
	c    net.Conn
	br   *bufio.Reader
	req  []byte
}

func newConn(addr string) *conn { return &conn{addr: addr} }

func (c *conn) close() {
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

// get sends GET / with the Host header and, if token is not empty, an
// X-Exedev-Authorization bearer token (or, for a token starting with
// cookieCred, the rest as the Cookie header); it returns the response
// status.
func (c *conn) get(host, token string) (int, error) {
	if c.c == nil {
		nc, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			return 0, err
		}
		c.c, c.br = nc, bufio.NewReaderSize(nc, 16<<10)
	}
	c.req = append(c.req[:0], "GET / HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, host...)
	switch cookie, ok := strings.CutPrefix(token, cookieCred); {
	case ok:
		c.req = append(c.req, "\r\nCookie: "...)
		c.req = append(c.req, cookie...)
	case token != "":
		c.req = append(c.req, "\r\nX-Exedev-Authorization: Bearer "...)
		c.req = append(c.req, token...)
	}
	c.req = append(c.req, "\r\nUser-Agent: exed-bench\r\n\r\n"...)
	if _, err := c.c.Write(c.req); err != nil {
		c.close()
		return 0, err
	}
	status, keep, err := readResponse(c.br)
	if err != nil || !keep {
		c.close()
	}
	return status, err
}

// readResponse reads one response and discards its body. keep is false
// when the server closes the connection after it.
func readResponse(br *bufio.Reader) (status int, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	length, chunked, keep := -1, false, true
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		if len(line) <= 2 {
			break
		}
		name, val, _ := bytes.Cut(line, []byte(":"))
		val = bytes.TrimSpace(val)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(val)); err != nil {
				return 0, false, fmt.Errorf("bad Content-Length %q", val)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(bytes.ToLower(val), []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			keep = !bytes.EqualFold(val, []byte("close"))
		}
	}
	switch {
	case chunked:
		if _, err := io.Copy(io.Discard, httputil.NewChunkedReader(br)); err != nil {
			return 0, false, err
		}
		for { // trailer
			line, err := br.ReadSlice('\n')
			if err != nil {
				return 0, false, err
			}
			if len(line) <= 2 {
				break
			}
		}
	case length > 0:
		if _, err := br.Discard(length); err != nil {
			return 0, false, err
		}
	case length < 0 && status != 204 && status != 304:
		return 0, false, errors.New("response without length")
	}
	return status, keep, nil
}

// source says what one request of a load run carries. i counts the
// connection's requests from 0.
type source func(i int) (token string, valid bool)

// loadResult is one load run: the requests counted as valid traffic
// (answered 200), their latencies, and everything else.
type loadResult struct {
	ok        int             // valid requests answered 200
	other     int             // junk requests (answered 401 or 429, as they must be)
	throttled int             // … of them answered 429 (the failure budget)
	bad       int             // answers that were wrong: a valid one not 200, junk not 401, errors
	firstBad  string          // what the first wrong answer was
	lat       []time.Duration // of the ok requests, sorted
	elapsed   time.Duration
}

// add counts one connection's part r into the run's total a.
func (a *loadResult) add(r *loadResult) {
	a.ok += r.ok
	a.other += r.other
	a.throttled += r.throttled
	if a.bad += r.bad; a.firstBad == "" {
		a.firstBad = r.firstBad
	}
	a.lat = append(a.lat, r.lat...)
}

func (r *loadResult) rate() float64 { return float64(r.ok) / r.elapsed.Seconds() }
func (r *loadResult) p50() time.Duration {
	return percentile(r.lat, 0.50)
}
func (r *loadResult) p99() time.Duration { return percentile(r.lat, 0.99) }

// runLoad runs conns closed-loop connections against addr for d: each
// sends its next request as soon as the last is answered.
func runLoad(ctx context.Context, addr, host string, conns int, d time.Duration, src func(conn int) source) *loadResult {
	var (
		mu  sync.Mutex
		all loadResult
		wg  sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for n := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newConn(addr)
			defer c.close()
			next := src(n)
			var r loadResult
			r.lat = make([]time.Duration, 0, 4096)
			for i := 0; i%64 != 0 || ctx.Err() == nil; i++ { // ctx now and then: it takes a lock
				token, valid := next(i)
				t := time.Now()
				if !t.Before(deadline) {
					break
				}
				status, err := c.get(host, token)
				lat := time.Since(t)
				switch {
				case err == nil && valid && status == 200:
					r.ok++
					r.lat = append(r.lat, lat)
				case err == nil && !valid && status == 401:
					r.other++
				case err == nil && !valid && status == 429:
					r.other++
					r.throttled++
				default:
					if r.bad++; r.firstBad == "" {
						r.firstBad = fmt.Sprintf("valid=%v: status %d, err %v", valid, status, err)
					}
				}
			}
			mu.Lock()
			all.add(&r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	all.elapsed = time.Since(start)
	slices.Sort(all.lat)
	return &all
}
