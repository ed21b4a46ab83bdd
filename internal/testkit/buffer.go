package testkit

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writers: a log sink for
// a server's goroutines that the test reads while they run. The zero value
// is ready to use.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Lines returns everything written so far, one string a line, without the
// line endings.
func (b *SyncBuffer) Lines() []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// Logger returns a logger writing text records at every level, debug
// included, to w.
func Logger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// SecretFragments returns s (a token, a credential) and every part of it
// long enough to identify it: its dot-separated parts of 16 bytes or more
// and 16-byte windows of each, 8 bytes apart. A log that holds none of
// them does not leak s, even cut or reassembled.
func SecretFragments(s string) []string {
	frags := []string{s}
	for _, p := range strings.Split(s, ".") {
		if len(p) < 16 {
			continue
		}
		frags = append(frags, p)
		for i := 0; i+16 <= len(p); i += 8 {
			frags = append(frags, p[i:i+16])
		}
	}
	return frags
}
