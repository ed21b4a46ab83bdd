//go:build !unix

package netlimit

// RaiseFileLimit reports no limit where there is no RLIMIT_NOFILE; the
// bounds are then sized from a conventional 8192.
func RaiseFileLimit() (uint64, error) { return 8192, nil }
