package main

import (
	"fmt"
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
// clients (CI above all) can pin it instead of trusting on first use.
// The key is created if this is the first use of the data dir, so it can
// be pinned before the server first starts.
func (a *app) hostKey(args []string) error {
	fs := a.flagSet("host-key", "host-key [--data DIR] [--host-key FILE] [--host H] [--port P]")
	data := fs.String("data", envOr(a.getenv, "EXED_DATA", "./exed-data"), "data directory (env EXED_DATA)")
	file := fs.String("host-key", a.getenv("EXED_HOST_KEY"), "host key file (default: DATA/"+hostKeyFile+"; env EXED_HOST_KEY)")
	host := fs.String("host", "localhost", "host name clients connect to")
	port := fs.Int("port", 2222, "port clients connect to")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("host-key: unexpected argument %q", fs.Arg(0))
	}
	if *port < 1 || *port > 65535 {
		return fmt.Errorf("host-key: --port %d out of range", *port)
	}
	signer, err := sshserver.LoadOrCreateHostKey(hostKeyPath(*file, *data))
	if err != nil {
		return err
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
