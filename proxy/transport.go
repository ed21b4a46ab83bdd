package proxy

import (
	"net"
	"net/http"
	"time"
)

// Upstream transport limits.
const (
	// maxIdlePerHost: Go's default of 2 idle connections per host makes a
	// busy VM open and close a connection for nearly every request (it
	// halves throughput at 32 concurrent clients).
	maxIdlePerHost = 256
	// maxIdle bounds idle connections across all VMs.
	maxIdle = 4096
	// dialTimeout and tlsTimeout: a VM that does not answer within these
	// is down; the client gets 502 rather than hanging.
	dialTimeout = 10 * time.Second
	tlsTimeout  = 10 * time.Second
	// idleTimeout closes pooled connections before typical upstream
	// keep-alive timeouts do, to avoid racing a server-side close.
	idleTimeout = 90 * time.Second
)

// NewTransport returns an http.Transport sized for a reverse proxy. It
// never uses a proxy from the environment, leaves compression to the
// client and the VM (the proxy must not decode bodies it only passes on),
// and sets no response-header or overall timeout: VMs may long-poll or
// stream for as long as they like.
func NewTransport() *http.Transport {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          maxIdle,
		MaxIdleConnsPerHost:   maxIdlePerHost,
		IdleConnTimeout:       idleTimeout,
		TLSHandshakeTimeout:   tlsTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}
