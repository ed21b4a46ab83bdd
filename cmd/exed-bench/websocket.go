package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Scenario 8: small WebSocket messages echoed by the upstream, through
// exed, the bare proxy and straight to it. Both ends speak RFC 6455
// framing themselves: an echo of single unfragmented frames needs
// nothing more, and a library would cost the load generator more.

// wsPath is the upstream's WebSocket echo endpoint.
const wsPath = "/ws"

// wsGUID is RFC 6455's fixed GUID, hashed with the client's key.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// wsMessage is what each echo carries.
const wsMessage = "exed-bench websocket echo: a small text message."

// wsMaxFrame bounds the frames either side accepts.
const wsMaxFrame = 1 << 16

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// serveWebSocketEcho is the upstream's wsPath handler: the handshake,
// then every data frame back as it came, until a close frame.
func serveWebSocketEcho(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
		http.Error(w, "websocket only", http.StatusBadRequest)
		return
	}
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer nc.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(key))
	if brw.Flush() != nil {
		return
	}
	buf := make([]byte, 0, 512)
	out := make([]byte, 0, 512)
	for {
		op, payload, err := readFrame(brw.Reader, buf[:0], true)
		if err != nil {
			return
		}
		out = appendFrame(out[:0], op, payload, false)
		if _, err := nc.Write(out); err != nil || op == 8 {
			return
		}
	}
}

// readFrame reads one unfragmented frame into buf; masked says the peer
// must mask it (a client) or must not (a server).
func readFrame(br *bufio.Reader, buf []byte, masked bool) (op byte, payload []byte, err error) {
	var h [14]byte
	if _, err := io.ReadFull(br, h[:2]); err != nil {
		return 0, nil, err
	}
	if h[0]&0x80 == 0 || h[0]&0x70 != 0 {
		return 0, nil, errors.New("websocket: fragmented frame or reserved bits")
	}
	if (h[1]&0x80 != 0) != masked {
		return 0, nil, errors.New("websocket: wrong masking")
	}
	n := int64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(br, h[2:4]); err != nil {
			return 0, nil, err
		}
		n = int64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err := io.ReadFull(br, h[2:10]); err != nil {
			return 0, nil, err
		}
		n = int64(binary.BigEndian.Uint64(h[2:10]))
	}
	if n > wsMaxFrame {
		return 0, nil, fmt.Errorf("websocket: %d-byte frame", n)
	}
	var mask [4]byte
	if masked {
		if _, err := io.ReadFull(br, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	payload = slices.Grow(buf[:0], int(n))[:n]
	if _, err := io.ReadFull(br, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return h[0] & 0x0f, payload, nil
}

// appendFrame appends one final frame; a client masks it (with a fresh
// key, as RFC 6455 asks).
func appendFrame(b []byte, op byte, payload []byte, mask bool) []byte {
	b = append(b, 0x80|op)
	m := byte(0)
	if mask {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, m|byte(n))
	case n <= 0xffff:
		b = append(b, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !mask {
		return append(b, payload...)
	}
	var key [4]byte
	rand.Read(key[:])
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, payload...)
	for i := range payload {
		b[start+i] ^= key[i%4]
	}
	return b
}

// wsConn is one client WebSocket connection.
type wsConn struct {
	c   net.Conn
	br  *bufio.Reader
	out []byte
	in  []byte
}

// dialWS opens a WebSocket to host's wsPath at addr, with token as its
// bearer token when not empty, and checks the handshake.
func dialWS(addr, host, token string) (*wsConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", wsPath, host, key)
	if token != "" {
		fmt.Fprintf(&req, "X-Exedev-Authorization: Bearer %s\r\n", token)
	}
	req.WriteString("\r\n")
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(req.Bytes()); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 4<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		nc.Close()
		return nil, fmt.Errorf("websocket handshake: status %d, accept %q", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	nc.SetDeadline(time.Time{})
	return &wsConn{c: nc, br: br}, nil
}

// echo sends one text message and checks that the same comes back.
func (w *wsConn) echo(msg []byte) error {
	w.out = appendFrame(w.out[:0], 1, msg, true)
	if _, err := w.c.Write(w.out); err != nil {
		return err
	}
	op, got, err := readFrame(w.br, w.in[:0], false)
	w.in = got
	if err != nil {
		return err
	}
	if op != 1 || !bytes.Equal(got, msg) {
		return fmt.Errorf("echo: opcode %d, %d bytes, want the %d sent", op, len(got), len(msg))
	}
	return nil
}

// close sends a close frame, waits briefly for the peer's, and closes.
func (w *wsConn) close() {
	w.c.SetDeadline(time.Now().Add(time.Second))
	w.c.Write(appendFrame(nil, 8, []byte{3, 232}, true))
	readFrame(w.br, nil, false)
	w.c.Close()
}

// runWS opens conns WebSockets and echoes messages on each, closed loop,
// for d; the handshakes are not timed.
func runWS(ctx context.Context, addr, host, token string, conns int, d time.Duration) (*loadResult, error) {
	cs := make([]*wsConn, conns)
	defer func() {
		for _, c := range cs {
			if c != nil {
				c.close()
			}
		}
	}()
	for i := range cs {
		var err error
		if cs[i], err = dialWS(addr, host, token); err != nil {
			return nil, err
		}
	}
	var (
		mu  sync.Mutex
		all loadResult
		wg  sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte(wsMessage)
			var r loadResult
			for i := 0; i%64 != 0 || ctx.Err() == nil; i++ {
				t := time.Now()
				if !t.Before(deadline) {
					break
				}
				if err := c.echo(msg); err != nil {
					r.bad++
					r.firstBad = err.Error()
					break
				}
				r.ok++
				r.lat = append(r.lat, time.Since(t))
			}
			mu.Lock()
			all.add(&r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	all.elapsed = time.Since(start)
	slices.Sort(all.lat)
	return &all, nil
}

// wsVariant is one path to the upstream's echo.
type wsVariant struct{ name, addr, host, token string }

func scenarioWebSocket(ctx context.Context, b *bench, vs []wsVariant) ([]row, error) {
	type cell struct {
		v     int
		conns int
	}
	var cells []cell
	for _, conns := range []int{1, 32} {
		for i := range vs {
			cells = append(cells, cell{i, conns})
		}
	}
	run := func(c cell, d time.Duration) (*loadResult, error) {
		v := vs[c.v]
		r, err := runWS(ctx, v.addr, v.host, v.token, c.conns, d)
		if err == nil && r.bad > 0 {
			err = fmt.Errorf("%d wrong answers, first: %s", r.bad, r.firstBad)
		}
		if err != nil {
			return nil, fmt.Errorf("%s, %d conns: %w", v.name, c.conns, err)
		}
		return r, nil
	}
	for _, c := range cells {
		if _, err := run(c, b.o.cell/5); err != nil {
			return nil, err
		}
	}
	res := make(map[cell][]*loadResult)
	for round := range b.o.rounds {
		b.progress("scenario 8: round %d/%d", round+1, b.o.rounds)
		for j := range cells {
			c := cells[(j+round)%len(cells)]
			r, err := run(c, b.o.cell)
			if err != nil {
				return nil, err
			}
			res[c] = append(res[c], r)
		}
	}
	var rows []row
	for _, conns := range []int{1, 32} {
		scen := fmt.Sprintf("8 websocket, %d conn", conns)
		if conns > 1 {
			scen += "s"
		}
		ratios := func(a, b int) []float64 {
			var xs []float64
			ra, rb := res[cell{a, conns}], res[cell{b, conns}]
			for i := range ra {
				xs = append(xs, ra[i].rate()/rb[i].rate())
			}
			return xs
		}
		for i, v := range vs {
			var rates, p50s, p99s []float64
			for _, r := range res[cell{i, conns}] {
				rates = append(rates, r.rate())
				p50s = append(p50s, float64(r.p50()))
				p99s = append(p99s, float64(r.p99()))
			}
			rw := row{scenario: scen, what: v.name, result: sig3(median(rates)) + " msg/s",
				p50: fmtDur(time.Duration(median(p50s))), p99: fmtDur(time.Duration(median(p99s)))}
			switch i {
			case 1: // bare
				rw.ratio = fmtRatios(ratios(1, 0), "direct")
			case 2: // exed
				xs := ratios(2, 1)
				rw.ratio, rw.target, rw.met = fmtRatios(xs, "bare"), "≥ 0.9× bare", judge(median(xs), 0.9, false)
			}
			rows = append(rows, rw)
		}
	}
	return rows, nil
}
