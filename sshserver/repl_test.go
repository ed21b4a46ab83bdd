package sshserver

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"

	gossh "golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/internal/testkit"
)

// replSession opens a REPL over a real SSH connection with a PTY, as an
// interactive `ssh HOST` does, and returns its input and everything it
// printed so far.
func replSession(t *testing.T, ts *testServer, signer gossh.Signer) (io.Writer, *testkit.SyncBuffer, *gossh.Session) {
	t.Helper()
	s, err := ts.dial(t, signer).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.RequestPty("xterm", 40, 120, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	stdin, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &testkit.SyncBuffer{}
	s.Stdout = out
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the prompt", func() bool { return strings.Contains(out.String(), "exed> ") })
	return stdin, out, s
}

func count(out *testkit.SyncBuffer, want string, n int) func() bool {
	return func() bool { return strings.Count(out.String(), want) >= n }
}

// TestREPLCtrlCCancelsTheLine: Ctrl-C drops the line being typed, shows
// ^C and a fresh prompt, and the session goes on (x/term alone ends it);
// the cancelled line never runs and is not in the history.
func TestREPLCtrlCCancelsTheLine(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	ts := e.startServer(t, nil)
	stdin, out, s := replSession(t, ts, alice.Signer)

	fmt.Fprint(stdin, "whoami --json\r")
	testkit.WaitFor(t, "whoami", count(out, `"email":"alice@example.com"`, 1))
	fmt.Fprint(stdin, "ssh-key remove alice-laptop\x03")
	testkit.WaitFor(t, "^C and a new prompt", count(out, "ssh-key remove alice-laptop^C\r\nexed> ", 1))
	// Ctrl-C on an empty line, then the history: up recalls whoami, not
	// the cancelled line.
	fmt.Fprint(stdin, "\x03\x1b[A\r")
	testkit.WaitFor(t, "whoami again, from history", count(out, `"email":"alice@example.com"`, 2))
	if _, err := e.Store.Key(e.ctx, alice.Key.Fingerprint); err != nil {
		t.Errorf("the cancelled ssh-key remove ran: %v", err)
	}
	fmt.Fprint(stdin, "exit\r")
	if err := s.Wait(); err != nil {
		t.Errorf("exit after Ctrl-C: %v", err)
	}
}

// TestREPLHomeEnd: the Home and End keys move the cursor, whichever of
// the usual sequences the terminal sends.
func TestREPLHomeEnd(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	ts := e.startServer(t, nil)
	stdin, out, _ := replSession(t, ts, alice.Signer)
	n := 0
	for _, keys := range []struct{ home, end string }{
		{"\x1b[H", "\x1b[F"}, {"\x1b[1~", "\x1b[4~"}, {"\x1b[7~", "\x1b[8~"}, {"\x1bOH", "\x1bOF"}, {"\x01", "\x05"},
	} {
		// "hoami --jso", Home, "w", End, "n": whoami --json.
		fmt.Fprint(stdin, "hoami --jso"+keys.home+"w"+keys.end+"n\r")
		n++
		testkit.WaitFor(t, fmt.Sprintf("whoami typed with Home %q and End %q", keys.home, keys.end), count(out, `"email":"alice@example.com"`, n))
	}
	if strings.Contains(out.String(), "unknown command") {
		t.Errorf("a line was mangled:\n%s", out.String())
	}
}

// TestREPLTabCompletes: Tab completes a command name, a group's
// subcommand, and lists the choices when the prefix is ambiguous.
func TestREPLTabCompletes(t *testing.T) {
	e := newTestEnv(t)
	alice := e.AddUser("alice@example.com", 1)
	ts := e.startServer(t, nil)
	stdin, out, _ := replSession(t, ts, alice.Signer)

	fmt.Fprint(stdin, "who\t--json\r")
	testkit.WaitFor(t, "whoami, completed", count(out, `"email":"alice@example.com"`, 1))
	fmt.Fprint(stdin, "ssh-key g\t--label=tabbed --json\r")
	testkit.WaitFor(t, "generate-api-key, completed", count(out, `"label":"tabbed"`, 1))
	fmt.Fprint(stdin, "ssh-key re\t")
	testkit.WaitFor(t, "the choices", count(out, "remove  rename", 1))
	fmt.Fprint(stdin, "\x03")
	testkit.WaitFor(t, "the cancelled line", count(out, "ssh-key re^C", 1))
}

// TestREPLStockSSH: the same keys from the stock OpenSSH client with a
// terminal (-tt): Ctrl-C cancels the line, Tab completes, the session ends
// with exit. It also pins the zero window size such a client sends (its
// stdin is no terminal): ignored, not taken as one column, which would
// break the line after every character.
func TestREPLStockSSH(t *testing.T) {
	e := newTestEnv(t)
	ts := e.startServer(t, nil)
	keyFile, knownHosts := stockClient(t, e, ts)
	cmd := testkit.SSHCommand(keyFile, knownHosts, ts.addr, []string{"-tt"})
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &testkit.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var exited atomic.Bool
	var waitErr error
	go func() { waitErr = cmd.Wait(); exited.Store(true) }()
	t.Cleanup(func() {
		if !exited.Load() {
			cmd.Process.Kill()
		}
	})
	testkit.WaitFor(t, "the prompt", count(out, "exed> ", 1))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output: %q", out.String())
		}
	})
	fmt.Fprint(stdin, "ssh-key remove stock\x03")
	testkit.WaitFor(t, "^C, on the line typed", count(out, "ssh-key remove stock^C", 1))
	fmt.Fprint(stdin, "whoa\t--json\r")
	testkit.WaitFor(t, "whoami, completed", count(out, `"email":"alice@example.com"`, 1))
	fmt.Fprint(stdin, "exit\r")
	testkit.WaitFor(t, "ssh to exit", exited.Load)
	if waitErr != nil {
		t.Errorf("ssh -tt: %v\n%s", waitErr, out.String())
	}
	u, err := e.Store.UserByEmail(e.ctx, "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if ks, err := e.Store.Keys(e.ctx, u.ID); err != nil || len(ks) != 2 {
		t.Errorf("after the cancelled remove: %d keys, %v; want both", len(ks), err)
	}
}

// TestKeyReader: the translations hold across reads split anywhere, and
// everything else passes through unchanged.
func TestKeyReader(t *testing.T) {
	in := "ab\x03c\x1b[1~\x1b[A\x1bOF\x1b[4~é\x1b[8~\x1b"
	want := "ab" + string(keyCancel) + "\rc\x1b[H\x1b[A\x1b[F\x1b[Fé\x1b[F\x1b"
	for name, r := range map[string]io.Reader{
		"whole":       strings.NewReader(in),
		"a byte each": iotest.OneByteReader(strings.NewReader(in)),
		"half":        iotest.HalfReader(strings.NewReader(in)),
	} {
		got, err := io.ReadAll(newKeyReader(r))
		if err != nil || !bytes.Equal(got, []byte(want)) {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestCompleter(t *testing.T) {
	c := completer([]string{"help", "whoami", "ls", "ssh-key", "ssh-key list", "ssh-key add", "ssh-key remove", "ssh-key rename", "exit"})
	for _, tc := range []struct {
		line    string
		pos     int
		want    string
		choices int
	}{
		{"wh", 2, "whoami ", 1},
		{"ssh", 3, "ssh-key ", 1},
		{"ssh-key l", 9, "ssh-key list ", 1},
		{"ssh-key re", 10, "ssh-key re", 2},
		{"ssh-key ", 8, "ssh-key ", 4},
		{"e", 1, "exit ", 1},
		{"nosuch", 6, "nosuch", 0},
		{"whoami --j", 10, "whoami --j", 0},
		{"ssh-key list x", 14, "ssh-key list x", 0},
		{"wh --json", 2, "whoami --json", 1}, // mid-line: the space after is kept, not doubled
	} {
		got, pos, choices := c(tc.line, tc.pos)
		if got != tc.want || len(choices) != tc.choices || pos > len(got) {
			t.Errorf("complete(%q, %d) = %q, %d, %v; want %q with %d choices", tc.line, tc.pos, got, pos, choices, tc.want, tc.choices)
		}
	}
}
