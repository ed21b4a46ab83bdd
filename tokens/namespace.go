package tokens

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
