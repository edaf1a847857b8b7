package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// errLocked is what tryLock returns when another process holds the lock.
var errLocked = errors.New("locked")

// lockDir takes an exclusive lock on dir/LOCK, held until the file is
// closed or the process ends; what names dir in errors ("data
// directory"). Two daemons on one data_dir would both serve, interleave
// their NOTIFY CSeqs and overwrite each other's acknowledged state in the
// store, so the second is refused; so is a second daemon on one SQLite
// file kept outside data_dir, whose writes do not check another
// daemon's (internal/store: Resource). The lock is the kernel's (flock),
// not the file's existence: it goes with the process however that ends,
// and a LOCK left by a crash blocks nothing.
func lockDir(dir, what string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", what, err)
	}
	if err := tryLock(f); err != nil {
		f.Close()
		if !errors.Is(err, errLocked) {
			return nil, fmt.Errorf("lock %s: %s: %w", what, path, err)
		}
		holder := "another process"
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				holder = "pid " + strconv.Itoa(pid)
			}
		}
		return nil, fmt.Errorf("%s %s is in use by %s (%s is locked): each daemon needs a data_dir and a SQLite store of its own",
			what, dir, holder, path)
	}
	// The holder's pid is only for the message above: the lock is what
	// counts, so a failure to write it is not one to stop for.
	if f.Truncate(0) == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
