//go:build linux

package main

import (
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	threadCPU = func() time.Duration {
		var ts unix.Timespec
		if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
			return 0
		}
		return time.Duration(ts.Nano())
	}
}
