package main

import "golang.org/x/sys/unix"

func init() {
	threadClock = func() int64 {
		var ts unix.Timespec
		if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
			return 0
		}
		return ts.Nano()
	}
}
