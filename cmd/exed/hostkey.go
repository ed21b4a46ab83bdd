package main

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"net"
	"path/filepath"
	"strconv"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/exed-dev/exed/keys"
	"github.com/exed-dev/exed/sshserver"
)

// hostKeyFile is the host key's file name inside the data directory.
const hostKeyFile = "ssh_host_ed25519_key"

// hostKeyPath is --host-key when given, else the key in the data dir.
func hostKeyPath(flag, dataDir string) string {
	if flag != "" {
		return flag
	}
	return filepath.Join(dataDir, hostKeyFile)
}

// hostKey prints the server's host key as a known_hosts line, so that
// clients (CI above all) can pin it instead of trusting on first use. It
// only reads the key: a pin printed from a key it had just invented (the
// wrong --data, a typo in --host-key) would match no server, and the CI
// job would fail later with "Host key verification failed". --create makes
// the key when there is none, for a cluster's shared key made before any
// server starts.
func (a *app) hostKey(args []string) error {
	fs := a.flagSet("host-key", "host-key [--data DIR] [--host-key FILE] [--host H] [--port P] [--create]")
	data := fs.String("data", envOr(a.getenv, "EXED_DATA", "./exed-data"), "data directory (env EXED_DATA)")
	file := fs.String("host-key", a.getenv("EXED_HOST_KEY"), "host key file (default: DATA/"+hostKeyFile+"; env EXED_HOST_KEY)")
	host := fs.String("host", "localhost", "host name clients connect to")
	port := fs.Int("port", 2222, "port clients connect to")
	create := fs.Bool("create", false, "create the host key (ed25519, mode 0600) if there is none, e.g. a cluster's shared key before the first start")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("host-key: unexpected argument %q", fs.Arg(0))
	}
	if *port < 1 || *port > 65535 {
		return fmt.Errorf("host-key: --port %d out of range", *port)
	}
	path := hostKeyPath(*file, *data)
	load := sshserver.LoadHostKey
	if *create {
		load = sshserver.LoadOrCreateHostKey
	}
	signer, err := load(path)
	if errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("host-key: no host key at %s: exed serve creates it on its first start with this --data (or --host-key); "+
			"to create it now (a cluster's shared key), run: exed host-key --create --host-key %s", path, shellQuote(path))
	}
	if err != nil {
		return fmt.Errorf("host-key: %w", err)
	}
	fmt.Fprint(a.stdout, knownHostsLines(signer.PublicKey(), *host, *port))
	return nil
}

// knownHostsLines is a known_hosts line for host:port and a comment line
// with the key's fingerprint (known_hosts ignores lines starting with #).
func knownHostsLines(pub ssh.PublicKey, host string, port int) string {
	addr := knownhosts.Normalize(net.JoinHostPort(host, strconv.Itoa(port)))
	return knownhosts.Line([]string{addr}, pub) + "\n# " + keys.Fingerprint(pub) + "\n"
}
