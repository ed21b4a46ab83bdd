package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/proxy"
	"github.com/exed-dev/exed/sshserver"
	"github.com/exed-dev/exed/store"
)

const (
	demoEmail   = "demo@localhost"
	demoVM      = "demo"
	demoKeyFile = "demo_ed25519"
)

// setupDemo adds what is missing of the demo (user, key, VM), starts the
// echo upstream the demo VM points at, and prints the commands to try.
func (a *app) setupDemo(ctx context.Context, st store.Store, c *serveConfig, sshAddr, httpAddr net.Addr, vmURL func(string) string) (*http.Server, error) {
	if err := ensureDir(c.data); err != nil {
		return nil, err
	}
	echoLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	echoSrv := &http.Server{Handler: proxy.Echo(), ReadHeaderTimeout: 10 * time.Second}
	go echoSrv.Serve(echoLn)

	keyPath := filepath.Join(c.data, demoKeyFile)
	if err := a.ensureDemoUser(ctx, st, keyPath); err != nil {
		echoSrv.Close()
		return nil, err
	}
	if err := ensureDemoVM(ctx, st, "http://"+echoLn.Addr().String()); err != nil {
		echoSrv.Close()
		return nil, err
	}

	hostKey, err := sshserver.LoadOrCreateHostKey(hostKeyPath(c.hostKey, c.data))
	if err != nil {
		echoSrv.Close()
		return nil, err
	}
	sshHost, sshPort := splitAddr(sshAddr)
	knownHosts := filepath.Join(c.data, "known_hosts")
	line := knownHostsLines(hostKey.PublicKey(), sshHost, sshPort)
	if err := os.WriteFile(knownHosts, []byte(line), 0o600); err != nil {
		echoSrv.Close()
		return nil, err
	}
	fmt.Fprint(a.stdout, demoInstructions(keyPath, knownHosts, sshHost, sshPort, httpAddr, vmURL(demoVM)))
	return echoSrv, nil
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

// ensureDemoVM points the demo VM at this run's echo upstream, creating
// it if it is missing. Its upstream's port changes on every start, so an
// existing demo VM with another upstream is replaced.
func ensureDemoVM(ctx context.Context, st store.Store, upstream string) error {
	u, err := st.UserByEmail(ctx, demoEmail)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
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

// demoInstructions is the block `serve --demo` prints: the exact commands
// to try, correct for the ports and paths in use. It is the README's
// Quickstart walkthrough (TestReadmeWalkthrough checks that they match).
func demoInstructions(keyPath, knownHosts, sshHost string, sshPort int, httpAddr net.Addr, vmURL string) string {
	httpHost, httpPort := splitAddr(httpAddr)
	ssh := fmt.Sprintf("ssh -i %s -o IdentitiesOnly=yes -o UserKnownHostsFile=%s -p %d %s",
		shellQuote(keyPath), shellQuote(knownHosts), sshPort, sshHost)
	// --connect-to sends the request to this server whatever the URL's host,
	// so the VM's real URL works without touching DNS or /etc/hosts.
	curl := "curl --connect-to ::" + net.JoinHostPort(httpHost, strconv.Itoa(httpPort))
	return fmt.Sprintf(`
exed demo is running. Try, in another terminal, from this directory:

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

`, ssh, curl, vmURL)
}

// shellQuote quotes s for a POSIX shell when it needs it, so that the
// printed commands work for a data directory with spaces in its path.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:@%+=,-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
