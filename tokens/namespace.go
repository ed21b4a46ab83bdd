package tokens

import (
	"net"
	"strings"
)

// Namespaces names the SSHSIG namespaces and hosts of one deployment:
// the API's, v0@DOMAIN, and each VM's, v0@NAME.VMDOMAIN. Nothing else
// spells them out.
type Namespaces struct {
	Domain   string // the API host: "exe.localhost" (exe.dev's: "exe.dev")
	VMDomain string // VM hosts are NAME.VMDomain: "vm.localhost" (exe.dev's: "exe.xyz")
}

// namespacePrefix is the version prefix of every namespace.
const namespacePrefix = "v0@"

// API is the namespace of /exec tokens: "v0@DOMAIN".
func (n Namespaces) API() string { return namespacePrefix + n.Domain }

// VM is the namespace of tokens for the VM name: "v0@NAME.VMDOMAIN".
func (n Namespaces) VM(name string) string { return namespacePrefix + n.VMHost(name) }

// VMHost is the host name the VM name is reached at: "NAME.VMDOMAIN".
func (n Namespaces) VMHost(name string) string { return name + "." + n.VMDomain }

// For is the namespace of a token for vm, or for the API when vm is "".
func (n Namespaces) For(vm string) string {
	if vm == "" {
		return n.API()
	}
	return n.VM(vm)
}

// CanonicalHost lowercases a Host value, drops its port and one trailing
// dot: the one value used to route a request, to pick its token namespace
// and to choose a certificate. Only ASCII letters are lowered: Unicode case
// mapping would turn the Kelvin sign into "k" and route a host that no DNS
// name matches.
func CanonicalHost(host string) string {
	if strings.IndexByte(host, ':') >= 0 { // SplitHostPort's error for no port allocates
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	host = strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, host)
	return strings.TrimSuffix(host, ".")
}
