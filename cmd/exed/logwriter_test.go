package main

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a strings.Builder safe for the flusher goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogWriter: lines are held back, then written out within the flush
// interval without any further write, and Close writes out the rest.
func TestLogWriter(t *testing.T) {
	var out syncBuffer
	l := newLogWriter(&out)
	l.Write([]byte("first\n"))
	waitFor(t, "the first line to be flushed", 5*time.Second, func() bool { return out.String() == "first\n" })
	l.Write([]byte("second\n"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "first\nsecond\n" {
		t.Errorf("after Close: %q", got)
	}
}
