package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// exedBin is the real exed binary, built once for the end-to-end tests.
var exedBin string

func TestMain(m *testing.M) {
	// A -race binary sleeps a second on exit by default; the tests start
	// and stop many of them.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	dir, err := os.MkdirTemp("", "exed-bin-")
	if err != nil {
		panic(err)
	}
	exedBin = filepath.Join(dir, "exed")
	args := []string{"build", "-o", exedBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		panic("building exed: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of a command printed, and its exit status.
type result struct {
	stdout, stderr string
	code           int
}

// run runs the exed binary with args and the given environment additions.
func run(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	return runCmd(t, env, stdin, exedBin, args...)
}

// runCmd runs any program, for the stock OpenSSH and curl sides of a test.
func runCmd(t *testing.T, env []string, stdin string, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		r.code = ee.ExitCode()
	}
	return r
}
