//go:build unix

package netlimit

import (
	"fmt"
	"syscall"
)

// RaiseFileLimit raises the soft limit on open files (RLIMIT_NOFILE) to
// the hard one and returns the soft limit now in force. Go does this by
// itself at start on Linux and macOS; this is explicit, and says what the
// bounds are sized from.
func RaiseFileLimit() (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("netlimit: get RLIMIT_NOFILE: %w", err)
	}
	if r.Cur < r.Max {
		want := r
		want.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			r = want
		}
	}
	return uint64(r.Cur), nil
}
