package main

import (
	"errors"
	"os"

	win "golang.org/x/sys/windows"
)

// tryLock locks one byte far past the pid written at the start of the
// file: a Windows lock is mandatory, and the daemon refused reads the pid.
func tryLock(f *os.File) error {
	err := win.LockFileEx(win.Handle(f.Fd()), win.LOCKFILE_EXCLUSIVE_LOCK|win.LOCKFILE_FAIL_IMMEDIATELY,
		0, 1, 0, &win.Overlapped{OffsetHigh: 1})
	if errors.Is(err, win.ERROR_LOCK_VIOLATION) {
		return errLocked
	}
	return err
}
