package sshserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gliderlabs/ssh"
	"golang.org/x/term"

	"github.com/exed-dev/exed/sshcmd"
	"github.com/exed-dev/exed/store"
	"github.com/exed-dev/exed/tokens"
)

// replWords are what the REPL itself understands, besides the commands.
var replWords = []string{"exit", "quit", "logout"}

// repl reads command lines from a terminal until exit, Ctrl-D on an empty
// line, or the connection going. Ctrl-C cancels the line being typed, as in
// a shell; Tab completes command names.
func (s *Server) repl(ctx context.Context, sess ssh.Session, c sshcmd.Caller, winCh <-chan ssh.Window) int {
	var cancelled bool // set by the key handler, read after ReadLine: one goroutine
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{newKeyReader(sess), sess}, "exed> ")
	t.History = &replHistory{History: t.History, cancelled: &cancelled}
	complete := completer(append(s.c.Suite.Paths(), replWords...))
	t.AutoCompleteCallback = func(line string, pos int, key rune) (string, int, bool) {
		switch key {
		case keyCancel:
			cancelled = true
			return line + "^C", len(line) + len("^C"), true
		case '\t':
			newLine, newPos, choices := complete(line, pos)
			if len(choices) > 1 && newLine == line {
				fmt.Fprintln(t, strings.Join(choices, "  "))
			}
			return newLine, newPos, true
		}
		return "", 0, false
	}
	go func() {
		for w := range winCh {
			// A client without a terminal of its own (ssh -tt from a
			// script) sends 0x0, which RFC 4254 says to ignore: x/term
			// would take it as one column and break every line.
			if w.Width > 0 && w.Height > 0 {
				t.SetSize(w.Width, w.Height)
			}
		}
	}()
	fmt.Fprintf(t, "exed: signed in as %s with key %s. Type help for commands, exit or Ctrl-D to leave.\n", c.User.Email, c.Key.Name)
	for {
		line, err := t.ReadLine()
		if err != nil {
			fmt.Fprintln(t)
			return 0 // Ctrl-D on an empty line, or the connection went
		}
		if cancelled || strings.ContainsRune(line, keyCancel) {
			cancelled = false
			continue
		}
		line = strings.TrimSpace(line)
		switch line {
		case "":
			continue
		case "exit", "quit", "logout":
			return 0
		}
		args, err := sshcmd.Split(line)
		if err != nil {
			fmt.Fprintln(t, err.Error())
			continue
		}
		// Look the key up again: it may have been removed or restricted
		// since the session began (perhaps by this very session).
		k, err := s.c.Store.Key(ctx, c.Key.Fingerprint)
		switch {
		case errors.Is(err, store.ErrNotFound):
			fmt.Fprintln(t, "your key is no longer registered")
			return 1
		case err != nil:
			s.c.Log.Error("ssh repl: key lookup", "fingerprint", c.Key.Fingerprint, "err", err)
			fmt.Fprintln(t, unavailableMessage)
			continue
		}
		c.Key, c.Limits = k, tokens.Effective(k, nil)
		s.run(ctx, c, args, sshcmd.IO{Stdin: strings.NewReader(""), Stdout: t, Stderr: t})
	}
}

// replHistory is the terminal's history without the lines cancelled with
// Ctrl-C.
type replHistory struct {
	term.History
	cancelled *bool
}

func (h *replHistory) Add(entry string) {
	if !*h.cancelled && !strings.ContainsRune(entry, keyCancel) {
		h.History.Add(entry)
	}
}

// completer returns the Tab completion over words (command paths such as
// "ssh-key list", and single words): it completes the word before the
// cursor, the command's first word or, after a group, its second. One
// match is completed with a space after it; several are completed as far
// as they agree, and returned as choices; the line is kept when nothing
// matches, or after the second word.
func completer(words []string) func(line string, pos int) (string, int, []string) {
	return func(line string, pos int) (string, int, []string) {
		head, tail := line[:pos], line[pos:]
		start := strings.LastIndexByte(head, ' ') + 1
		before, word := strings.Fields(head[:start]), head[start:]
		if len(before) > 1 || strings.HasPrefix(word, "-") {
			return line, pos, nil
		}
		var choices []string
		for _, w := range words {
			parts := strings.Fields(w)
			if len(parts) != len(before)+1 || !slices.Equal(parts[:len(before)], before) {
				continue
			}
			if last := parts[len(parts)-1]; strings.HasPrefix(last, word) && !slices.Contains(choices, last) {
				choices = append(choices, last)
			}
		}
		switch len(choices) {
		case 0:
			return line, pos, nil
		case 1:
			done := choices[0] + " "
			if strings.HasPrefix(tail, " ") {
				done = choices[0]
			}
			return head[:start] + done + tail, start + len(done), choices
		}
		common := choices[0]
		for _, c := range choices[1:] {
			for !strings.HasPrefix(c, common) {
				common = common[:len(common)-1]
			}
		}
		return head[:start] + common + tail, start + len(common), choices
	}
}

// keyCancel stands for Ctrl-C in the input the terminal reads: a rune of
// Unicode's private use area that no keyboard sends. x/term's own Ctrl-C
// handling ends ReadLine as if the input had ended, and loses what was
// typed after it; keyReader hands it keyCancel and Enter instead, so that
// Ctrl-C ends the line, which the REPL then drops.
const keyCancel = '\uE003'

// keyTranslations are the key sequences keyReader rewrites before x/term
// sees them: Ctrl-C, and the Home and End keys as the terminals that do
// not send ESC [ H and ESC [ F send them (VT220 and rxvt style ESC [ 1 ~,
// ESC [ 4 ~, ESC [ 7 ~, ESC [ 8 ~, and xterm's application mode ESC O H,
// ESC O F), which x/term would otherwise ignore.
var keyTranslations = []struct{ from, to string }{
	{"\x03", string(keyCancel) + "\r"},
	{"\x1b[1~", "\x1b[H"}, {"\x1b[7~", "\x1b[H"}, {"\x1bOH", "\x1b[H"},
	{"\x1b[4~", "\x1b[F"}, {"\x1b[8~", "\x1b[F"}, {"\x1bOF", "\x1b[F"},
}

// keyReader rewrites keyTranslations in what it reads. A sequence split
// across two reads is held back until the rest arrives.
type keyReader struct {
	r    io.Reader
	buf  []byte // read, not yet translated: a possible start of a sequence
	out  []byte // translated, not yet returned
	read [256]byte
	err  error
}

func newKeyReader(r io.Reader) *keyReader { return &keyReader{r: r} }

func (k *keyReader) Read(p []byte) (int, error) {
	for len(k.out) == 0 {
		if k.err != nil {
			if len(k.buf) > 0 { // the input ended inside a sequence: as it was
				k.out, k.buf = k.buf, nil
				break
			}
			return 0, k.err
		}
		n, err := k.r.Read(k.read[:])
		k.buf = append(k.buf, k.read[:n]...)
		k.err = err
		k.translate()
	}
	n := copy(p, k.out)
	k.out = k.out[n:]
	return n, nil
}

// translate moves k.buf to k.out, rewriting the sequences, and keeps in
// k.buf only a tail that may be the start of one.
func (k *keyReader) translate() {
	b := k.buf
	var out []byte
	for len(b) > 0 {
		matched, partial := false, false
		for _, tr := range keyTranslations {
			switch {
			case strings.HasPrefix(string(b), tr.from):
				out = append(out, tr.to...)
				b = b[len(tr.from):]
				matched = true
			case len(b) < len(tr.from) && strings.HasPrefix(tr.from, string(b)):
				partial = true
			}
			if matched {
				break
			}
		}
		if matched {
			continue
		}
		if partial && k.err == nil {
			break // wait for the rest
		}
		_, size := utf8.DecodeRune(b)
		out = append(out, b[:size]...)
		b = b[size:]
	}
	k.out = append(k.out, out...)
	k.buf = append(k.buf[:0:0], b...)
}
