package tokens

import (
	"slices"

	"github.com/exed-dev/exed/store"
)

// Access is how a caller reaches a VM, or NoAccess.
type Access string

// The ways to reach a VM.
const (
	NoAccess     Access = ""
	AccessOwner  Access = "owner"  // the VM's owner
	AccessShare  Access = "share"  // a user the owner shared it with
	AccessPublic Access = "public" // anyone, anonymously: the VM is public
)

// Reach is the one access decision: may the user userID reach vm, and as
// what. userID "" is an anonymous caller, who reaches only a public VM. A
// signed-in user reaches a VM they own, or one shared with them (an active
// share: vm.SharedWith, read with the VM); being public lets anyone in
// anonymously but gives no user an identity there. The proxy, the
// Verifier, generate-api-key, exe0-to-exe1 and ls all ask here. It reads
// only vm: the proxy calls it on every request, with the VM it caches.
func Reach(vm *store.VM, userID string) Access {
	switch {
	case vm == nil:
		return NoAccess
	case userID != "" && vm.OwnerID == userID:
		return AccessOwner
	case userID != "" && slices.Contains(vm.SharedWith, userID):
		return AccessShare
	case userID == "" && vm.Public:
		return AccessPublic
	}
	return NoAccess
}
