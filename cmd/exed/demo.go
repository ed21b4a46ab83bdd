package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/proxy"
	"github.com/exed-dev/exed/store"
)

const (
	demoEmail   = "demo@localhost"
	demoVM      = "demo"
	demoKeyFile = "demo_ed25519"
	// demoGitVM serves the git repository demoGitRepo, kept in the data
	// dir under demoGitDir, through git http-backend (docs/git.md).
	demoGitVM   = "demo-git"
	demoGitDir  = "demo-git"
	demoGitRepo = "repo.git"
)

// setupDemo adds what is missing of the demo (user, key, VMs), starts the
// upstreams the demo VMs point at, and prints the commands to try. stop
// closes those upstreams; call it once nothing is proxied to them.
func (a *app) setupDemo(ctx context.Context, st store.Store, c *serveConfig, hostKey ssh.Signer, sshAddr, httpAddr net.Addr, vmURL func(string) string) (stop func(), err error) {
	var closers []func() error
	stop = func() {
		for _, c := range closers {
			c()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	if err := ensureDir(c.data); err != nil {
		return nil, err
	}
	echoLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	echoSrv := &http.Server{Handler: proxy.Echo(), ReadHeaderTimeout: 10 * time.Second}
	go echoSrv.Serve(echoLn)
	closers = append(closers, echoSrv.Close)

	keyPath := filepath.Join(c.data, demoKeyFile)
	if err := a.ensureDemoUser(ctx, st, keyPath); err != nil {
		return nil, err
	}
	if err := ensureDemoVM(ctx, st, demoVM, "http://"+echoLn.Addr().String()); err != nil {
		return nil, err
	}
	gitNote, err := a.setupDemoGit(ctx, st, c.data, &closers, vmURL(demoGitVM))
	if err != nil {
		return nil, err
	}

	sshHost, sshPort := splitAddr(sshAddr)
	knownHosts := filepath.Join(c.data, "known_hosts")
	line := knownHostsLines(hostKey.PublicKey(), sshHost, sshPort)
	if err := os.WriteFile(knownHosts, []byte(line), 0o600); err != nil {
		return nil, err
	}
	fmt.Fprint(a.stdout, demoInstructions(keyPath, knownHosts, sshHost, sshPort, curlCommand(c.vmDomain, httpAddr), vmURL(demoVM), gitNote))
	return stop, nil
}

func (a *app) ensureDemoUser(ctx context.Context, st store.Store, keyPath string) error {
	var signer ssh.Signer
	if data, err := os.ReadFile(keyPath); err == nil {
		if signer, err = keys.ParsePrivateKey(data); err != nil {
			return fmt.Errorf("%s: %w", keyPath, err)
		}
	} else if errors.Is(err, os.ErrNotExist) {
		s, priv, err := keys.GenerateEd25519()
		if err != nil {
			return err
		}
		pemBytes, err := keys.MarshalPrivateKey(priv, demoEmail)
		if err != nil {
			return err
		}
		if err := os.WriteFile(keyPath, pemBytes, 0o600); err != nil {
			return err
		}
		pub := keys.MarshalAuthorized(s.PublicKey()) + " " + demoEmail + "\n"
		if err := os.WriteFile(keyPath+".pub", []byte(pub), 0o644); err != nil {
			return err
		}
		signer = s
	} else {
		return err
	}

	now := time.Now().UTC()
	key := store.Key{
		Name:        "demo",
		Fingerprint: keys.Fingerprint(signer.PublicKey()),
		PublicKey:   keys.MarshalAuthorized(signer.PublicKey()),
		AddedAt:     now,
	}
	u, err := st.UserByEmail(ctx, demoEmail)
	if errors.Is(err, store.ErrNotFound) {
		u = store.User{ID: store.NewUserID(), Email: demoEmail, CreatedAt: now}
		key.UserID = u.ID
		return st.AddUser(ctx, u, key, store.Event{Time: now, ActorID: adminActor, Via: store.ViaAdmin, Action: "user.add", Subject: demoEmail})
	} else if err != nil {
		return err
	}
	// The user exists: make sure the key on disk is one of its keys.
	if k, err := st.Key(ctx, key.Fingerprint); err == nil {
		if k.UserID != u.ID {
			return fmt.Errorf("%s belongs to another user", keyPath)
		}
		return nil
	}
	key.UserID = u.ID
	key.Name = "demo-" + strconv.FormatInt(now.Unix(), 10)
	return st.AddKey(ctx, key, store.Event{Time: now, ActorID: adminActor, Via: store.ViaAdmin, Action: "key.add", Subject: key.Fingerprint})
}

// setupDemoGit gives the demo a VM that serves a real git repository, when
// git is installed: a bare repository with one commit in the data dir
// (kept across starts, pushes included), served by git http-backend on a
// loopback port of its own, behind the VM demo-git. Its server's Close
// goes on closers. It returns the lines the demo prints about it.
func (a *app) setupDemoGit(ctx context.Context, st store.Store, data string, closers *[]func() error, url string) (string, error) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		return "  (git is not installed: no demo-git VM; with git, the demo serves a repository there)\n", nil
	}
	root, err := filepath.Abs(filepath.Join(data, demoGitDir)) // git http-backend runs in it
	if err != nil {
		return "", fmt.Errorf("demo-git: %w", err)
	}
	if err := ensureDemoRepo(ctx, gitPath, filepath.Join(root, demoGitRepo)); err != nil {
		return "", fmt.Errorf("demo-git: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("demo-git: %w", err)
	}
	gitSrv := &http.Server{Handler: proxy.GitBackend(gitPath, root), ReadHeaderTimeout: 10 * time.Second}
	go gitSrv.Serve(ln)
	*closers = append(*closers, gitSrv.Close)
	if err := ensureDemoVM(ctx, st, demoGitVM, "http://"+ln.Addr().String()); err != nil {
		return "", err
	}
	return fmt.Sprintf("  The VM demo-git serves a git repository at %s/%s: docs/git.md clones it.\n", url, demoGitRepo), nil
}

// ensureDemoRepo makes the bare repository at dir, with one commit on
// main, unless it exists. Pushes are allowed (http.receivepack): exed's
// proxy decides who reaches it.
func ensureDemoRepo(ctx context.Context, gitPath, dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err == nil {
		return nil
	}
	tmp := dir + ".new"
	os.RemoveAll(tmp)
	git := func(stdin string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, gitPath, args...)
		cmd.Env = []string{
			"HOME=" + filepath.Dir(dir), "GIT_CONFIG_NOSYSTEM=1", "PATH=" + os.Getenv("PATH"),
			"GIT_AUTHOR_NAME=exed demo", "GIT_AUTHOR_EMAIL=" + demoEmail,
			"GIT_COMMITTER_NAME=exed demo", "GIT_COMMITTER_EMAIL=" + demoEmail,
		}
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			return "", fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(string(stderr)))
		}
		return strings.TrimSpace(string(out)), nil
	}
	if _, err := git("", "init", "-q", "--bare", "--initial-branch=main", tmp); err != nil {
		return err
	}
	gd := "--git-dir=" + tmp
	if _, err := git("", gd, "config", "http.receivepack", "true"); err != nil {
		return err
	}
	blob, err := git("This repository is served by exed's demo, through the VM demo-git.\n", gd, "hash-object", "-w", "--stdin")
	if err != nil {
		return err
	}
	tree, err := git("100644 blob "+blob+"\tREADME\n", gd, "mktree")
	if err != nil {
		return err
	}
	commit, err := git("", gd, "commit-tree", "-m", "exed demo: first commit", tree)
	if err != nil {
		return err
	}
	if _, err := git("", gd, "update-ref", "refs/heads/main", commit); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// ensureDemoVM points the demo VM name at this run's upstream, creating
// it if it is missing. The upstream's port changes on every start, so an
// existing VM of that name with another upstream is replaced.
func ensureDemoVM(ctx context.Context, st store.Store, name, upstream string) error {
	u, err := st.UserByEmail(ctx, demoEmail)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	demoVM := name
	vm, err := st.VM(ctx, demoVM)
	switch {
	case err == nil && vm.Upstream == upstream:
		return nil
	case err == nil:
		if vm.OwnerID != u.ID {
			return fmt.Errorf("a VM named %s exists and belongs to another user", demoVM)
		}
		if err := st.RemoveVM(ctx, demoVM, store.Event{Time: now, ActorID: adminActor, Via: store.ViaAdmin, Action: "vm.remove", Subject: demoVM}); err != nil {
			return err
		}
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	vm = store.VM{Name: demoVM, OwnerID: u.ID, Upstream: upstream, CreatedAt: now}
	return st.AddVM(ctx, vm, store.Event{Time: now, ActorID: adminActor, Via: store.ViaAdmin, Action: "vm.add", Subject: demoVM})
}

func splitAddr(addr net.Addr) (host string, port int) {
	if a, ok := addr.(*net.TCPAddr); ok {
		host = a.IP.String()
		if a.IP.IsUnspecified() {
			host = "127.0.0.1"
		}
		return host, a.Port
	}
	return "127.0.0.1", 0
}

// curlCommand is how the printed curl lines reach this server. Under a
// .localhost VM domain (the default) with the listener on loopback, curl
// alone: it resolves every .localhost name to loopback itself, and the URL
// is the VM's real one. Otherwise --connect-to sends the request here
// whatever the URL's host, so that nothing needs changing in DNS or
// /etc/hosts.
func curlCommand(vmDomain string, httpAddr net.Addr) string {
	host, port := splitAddr(httpAddr)
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() && isLocalhostName(vmDomain) {
		return "curl"
	}
	return "curl --connect-to ::" + net.JoinHostPort(host, strconv.Itoa(port))
}

// isLocalhostName reports whether name is localhost or under it (RFC 6761:
// such names resolve to loopback).
func isLocalhostName(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	return name == "localhost" || strings.HasSuffix(name, ".localhost")
}

// demoInstructions is the block `serve --demo` prints: the exact commands
// to try, correct for the ports and paths in use. It is the README's
// Quickstart walkthrough (TestReadmeWalkthrough checks that they match).
// ssh is given the listener's IP address, not a .localhost name: unlike
// curl, ssh asks the system resolver, which may not know those names.
func demoInstructions(keyPath, knownHosts, sshHost string, sshPort int, curl, vmURL, gitNote string) string {
	ssh := fmt.Sprintf("ssh -i %s -o IdentitiesOnly=yes -o UserKnownHostsFile=%s -p %d %s",
		shellQuote(keyPath), shellQuote(knownHosts), sshPort, sshHost)
	return fmt.Sprintf(`
exed demo is running.
%[4]s
Try, in another terminal, from this directory:

  # 1. Mint a token for the demo VM over SSH, as the demo user
  exe() { %[1]s "$@"; }
  TOKEN=$(exe ssh-key generate-api-key --vm=demo --label=try --json | jq -r .token)

  # 2. Call the demo VM three ways; it answers with the headers it received
  #    (look for X-Exedev-Userid and X-Exedev-Email)
  %[2]s -H "X-Exedev-Authorization: Bearer $TOKEN" %[3]s/
  %[2]s -H "Authorization: Bearer $TOKEN" %[3]s/
  %[2]s -u "x:$TOKEN" %[3]s/

  # 3. List your keys and tokens (the token is the key named try), then revoke it
  exe ssh-key list
  exe ssh-key remove try

  # 4. The same request is now refused: 401
  %[2]s -i -H "X-Exedev-Authorization: Bearer $TOKEN" %[3]s/

  # 5. In a browser: a one-time link that logs it in and opens the demo VM
  exe browser --vm demo

`, ssh, curl, vmURL, gitNote)
}

// shellQuote quotes s for a POSIX shell when it needs it, so that the
// printed commands work for a data directory with spaces in its path.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:@%+=,-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
