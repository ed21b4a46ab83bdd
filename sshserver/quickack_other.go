//go:build !linux

package sshserver

import "net"

// quickAck is Linux-only (TCP_QUICKACK; see quickack_linux.go): elsewhere
// connections are used as they are.
func quickAck(c net.Conn) net.Conn { return c }
