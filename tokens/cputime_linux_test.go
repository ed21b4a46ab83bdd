package tokens

import (
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// threadCPU is the CPU time the calling thread has used: what
// BenchmarkVerifyRatios measures, so that a machine busy with other work
// slows neither side of a ratio more than the other. The benchmark locks
// its goroutine to its thread (lockThread).
func threadCPU() time.Duration {
	var ts syscall.Timespec
	const clockThreadCPUTimeID = 3 // CLOCK_THREAD_CPUTIME_ID
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}

func lockThread() (unlock func()) {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}
