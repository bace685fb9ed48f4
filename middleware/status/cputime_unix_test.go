//go:build unix

package status_test

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time the process has used, user and system:
// the cost of work measured on a machine that other processes load.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
