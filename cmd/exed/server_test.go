package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// server is a running `exed serve` process on free loopback ports.
type server struct {
	t        *testing.T
	data     string
	env      []string // EXED_DATA (and EXED_DB) for the admin commands
	sshAddr  string
	httpAddr string
	cmd      *exec.Cmd
	mu       sync.Mutex
	log      strings.Builder // everything the server wrote to stderr
	stdout   strings.Builder
	done     chan struct{}
}

var servingLine = regexp.MustCompile(`ssh=(\S+) http=(\S+)`)

// startServer starts exed serve on a data dir and waits until it logs its
// listening addresses.
func startServer(t *testing.T, data string, args ...string) *server {
	t.Helper()
	return startServerEnv(t, nil, data, args...)
}

// startServerEnv is startServer with env added to the server's
// environment.
func startServerEnv(t *testing.T, env []string, data string, args ...string) *server {
	t.Helper()
	s := &server{t: t, data: data, env: []string{"EXED_DATA=" + data}, done: make(chan struct{})}
	all := append([]string{"serve", "--data", data, "--ssh-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, args...)
	s.cmd = exec.Command(exedBin, all...)
	s.cmd.Env = append(os.Environ(), env...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan [2]string, 1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if m := servingLine.FindStringSubmatch(line); m != nil && strings.Contains(line, "exed serving") {
				select {
				case ready <- [2]string{m[1], m[2]}:
				default:
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		b, _ := io.ReadAll(stdout)
		s.mu.Lock()
		s.stdout.Write(b)
		s.mu.Unlock()
	}()
	go func() {
		wg.Wait()
		s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(s.stop)
	select {
	case addrs := <-ready:
		s.sshAddr, s.httpAddr = addrs[0], addrs[1]
	case <-s.done:
		t.Fatalf("exed serve exited early:\n%s", s.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("exed serve did not start:\n%s", s.logs())
	}
	return s
}

func (s *server) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("exed serve did not stop on SIGTERM")
	}
}

// sshClient is the stock OpenSSH client pinned to a server's host key.
type sshClient struct {
	s          *server
	key        string // private key file
	knownHosts string
}

func (s *server) client(t *testing.T, key string) *sshClient {
	t.Helper()
	host, port := splitHostPort(t, s.sshAddr)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	r := run(t, s.env, "", "host-key", "--host", host, "--port", port)
	if r.code != 0 {
		t.Fatalf("host-key: %s", r.stderr)
	}
	if err := os.WriteFile(kh, []byte(r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	return &sshClient{s: s, key: key, knownHosts: kh}
}

// ssh runs one command over SSH with the stock client and returns its
// output and exit status.
func (c *sshClient) ssh(t *testing.T, stdin string, command ...string) result {
	t.Helper()
	host, port := splitHostPort(t, c.s.sshAddr)
	args := []string{
		"-F", "/dev/null", "-T",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + c.knownHosts,
		"-o", "ConnectTimeout=10",
		"-i", c.key, "-p", port, "user@" + host,
	}
	return runCmd(t, nil, stdin, "ssh", append(args, command...)...)
}

func splitHostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		t.Fatalf("bad address %q", addr)
	}
	return addr[:i], addr[i+1:]
}
