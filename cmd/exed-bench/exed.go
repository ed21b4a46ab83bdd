package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// buildExed builds the exed binary into dir.
func buildExed(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "exed")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/exed-dev/exed/cmd/exed")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build exed: %w\n%s", err, out)
	}
	return bin, nil
}

// exedAdmin runs one admin command (user add, vm add, host-key…) against
// the data dir and returns its stdout.
func exedAdmin(ctx context.Context, bin, data string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, append(args, "--data", data)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("exed %s: %w: %s", strings.Join(args[:min(2, len(args))], " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// exedProc is a running `exed serve`.
type exedProc struct {
	cmd       *exec.Cmd
	sshAddr   string
	httpAddr  string
	faAddr    string // the forward-auth listener, with --forward-auth-addr
	adminAddr string // the admin listener (/metrics), with --admin-addr
	logFile   *os.File
	exited    chan struct{} // closed when the process has gone
	waitErr   error         // set before exited closes
}

// servingLine matches exed's start-up log line; forwardAuthAddr the
// forward-auth listener's address in it.
var (
	servingLine     = regexp.MustCompile(`msg="exed serving" ssh=(\S+) http=(\S+)`)
	forwardAuthAddr = regexp.MustCompile(`msg="exed serving" .*forward_auth=(\S+)`)
	adminListenAddr = regexp.MustCompile(`msg="exed serving" .*admin=(\S+)`)
)

// startExed starts `exed serve` (with the extra flags) on loopback ports
// the kernel picks, logging to a file (so its log costs exed, not the
// harness), and waits for its "exed serving" line.
func startExed(ctx context.Context, bin, data, logPath string, extra ...string) (*exedProc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	// The names the harness's tokens are signed for (benchNames).
	args := append([]string{"serve", "--data", data, "--ssh-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--domain", benchNames.Domain, "--vm-domain", benchNames.VMDomain}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start exed: %w", err)
	}
	p := &exedProc{cmd: cmd, logFile: logFile, exited: make(chan struct{})}
	go func() { p.waitErr = cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		data, _ := os.ReadFile(logPath)
		if m := servingLine.FindSubmatch(data); m != nil {
			p.sshAddr, p.httpAddr = string(m[1]), string(m[2])
			if fa := forwardAuthAddr.FindSubmatch(data); fa != nil {
				p.faAddr = string(fa[1])
			}
			if ad := adminListenAddr.FindSubmatch(data); ad != nil {
				p.adminAddr = string(ad[1])
			}
			return p, nil
		}
		select {
		case <-p.exited:
			logFile.Close()
			return nil, fmt.Errorf("exed serve exited: %v: %s", p.waitErr, lastLines(data, 5))
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("exed serve did not log its addresses: %s", lastLines(data, 5))
		}
	}
}

func (p *exedProc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM (a graceful shutdown) and kills exed if it has not
// gone after a few seconds.
func (p *exedProc) stop() error {
	defer p.logFile.Close()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.waitErr != nil {
			return fmt.Errorf("exed serve: %w", p.waitErr)
		}
		return nil
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		return errors.New("exed serve: killed after it did not stop on SIGTERM")
	}
}

// lastLines returns the last n lines of b, for error messages.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// sshClient dials addr with signer over x/crypto, checking the host key.
func sshClient(addr string, signer gossh.Signer, hostKey gossh.PublicKey) (*gossh.Client, error) {
	return gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User:            "bench",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.FixedHostKey(hostKey),
		Timeout:         10 * time.Second,
	})
}

// sshRun runs one command in a new session of c and returns its stdout;
// a non-zero exit is an error carrying stderr.
func sshRun(c *gossh.Client, cmd string) ([]byte, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var out, errOut bytes.Buffer
	s.Stdout, s.Stderr = &out, &errOut
	if err := s.Run(cmd); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", firstWords(cmd, 2), err, strings.TrimSpace(errOut.String()))
	}
	return out.Bytes(), nil
}

// generateToken issues a token for VM web over c (`ssh-key
// generate-api-key --json`), labelled label: an exe1 handle, or with exe0
// an exe0 token.
func generateToken(c *gossh.Client, label string, exe0 bool) (string, error) {
	cmd := "ssh-key generate-api-key --json --vm web --label " + label
	if exe0 {
		cmd += " --exe0"
	}
	out, err := sshRun(c, cmd)
	if err != nil {
		return "", err
	}
	var gen struct{ Token string }
	if err := json.Unmarshal(out, &gen); err != nil || gen.Token == "" {
		return "", fmt.Errorf("generate-api-key --json: no token in %.100q", out)
	}
	return gen.Token, nil
}

// firstWords names a command without its arguments (which may be tokens).
func firstWords(s string, n int) string {
	f := strings.Fields(s)
	return strings.Join(f[:min(n, len(f))], " ")
}

// stockSSH runs OpenSSH's client, cold: a new process, connection, key
// exchange and login for one command. Nothing from the user's own
// configuration, agent or known_hosts takes part.
type stockSSH struct {
	keyFile    string
	knownHosts string
}

func (s stockSSH) run(ctx context.Context, addr, command string) (time.Duration, error) {
	host, port, ok := strings.Cut(addr, ":")
	if !ok {
		return 0, fmt.Errorf("bad address %q", addr)
	}
	cmd := exec.CommandContext(ctx, "ssh", "-F", "/dev/null",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", s.keyFile,
		"-o", "UserKnownHostsFile="+s.knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR",
		"-p", port, "bench@"+host, command)
	cmd.Env = withoutAgent(os.Environ())
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("ssh %s: %w: %s", firstWords(command, 2), err, strings.TrimSpace(errOut.String()))
	}
	return d, nil
}

func withoutAgent(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "SSH_AUTH_SOCK=") {
			out = append(out, kv)
		}
	}
	return out
}

// readFirstLine returns the first line of s.
func readFirstLine(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Scan()
	return sc.Text()
}
